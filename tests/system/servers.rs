//! Servers from real eggs across a three-node cluster, driven through the panel's API with
//! the credentials it hands out: placement spreads or packs as the panel is configured; each
//! server's files, console and power work through the panel and its node; the community
//! Teeworlds egg runs a real game server on the Debian-built image.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// One cluster at a time: each test holds a std mutex for its whole (single-runtime) body.
#![allow(clippy::await_holding_lock)]

use nexus_system_tests::{
    Api, Cluster, ClusterConfig, Console, busybox_egg, create_server, docker_ready, one_cluster_at_a_time,
};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const TEEWORLDS_EGG: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/eggs/parkervcp__game_eggs__teeworlds__egg-teeworlds.json");

async fn power(api: &Api, server: &str, action: &str) {
    api.expect(Method::POST, &format!("/api/v1/servers/{server}/power"), Some(json!({ "action": action })), 202).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spread_puts_one_server_on_each_node_and_every_server_works_through_the_panel() {
    if !docker_ready() {
        return;
    }
    let _one = one_cluster_at_a_time();
    let cluster = Cluster::start(ClusterConfig { placement: "spread", first_port: 31000, ..Default::default() }).await;
    let api = &cluster.api;
    let egg = cluster.import_egg(busybox_egg()).await;
    let me = cluster.admin_id().await;

    let mut servers = Vec::new();
    for i in 0..3 {
        let created = create_server(api, &egg, &me, &format!("echo-{i}"), 256).await;
        assert_eq!(created["delivery"], "sent", "{created}");
        servers.push(created["server"].clone());
    }
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for server in &servers {
        *per_node.entry(server["node"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "spread: one server on each node, got {per_node:?}");

    for (i, server) in servers.iter().enumerate() {
        let id = server["id"].as_str().unwrap();
        api.wait_state(id, "installed").await;
        // Files, through the panel to the server's node.
        let properties = api.text(&format!("/api/v1/servers/{id}/files/contents?file=server.properties")).await;
        assert!(properties.contains("motd=nexus"), "the install script's file: {properties}");
        api.write_file(id, "notes/hello.txt", &format!("hello {i}")).await;
        let listed = api.get(&format!("/api/v1/servers/{id}/files?directory=notes")).await;
        assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
        assert_eq!(
            api.text(&format!("/api/v1/servers/{id}/files/contents?file=notes/hello.txt")).await,
            format!("hello {i}")
        );

        // Console and power: start, a command, restart, stop.
        let mut console = Console::open(api, id).await;
        power(api, id, "start").await;
        let port = server_port(api, id).await;
        console.wait_line(&format!("hello on port {port}")).await;
        api.wait_state(id, "running").await;
        console.send(&format!("ping {i}")).await;
        console.wait_line(&format!("echo: ping {i}")).await;
        // A restart runs the process again: its greeting comes a second time.
        power(api, id, "restart").await;
        console.wait_lines(&format!("hello on port {port}"), 2).await;
        api.wait_state(id, "running").await;
        power(api, id, "stop").await;
        api.wait_state(id, "stopped").await;
        console.close().await;
        // The container ran on the node the panel placed the server on.
        let node = cluster.node_index(server["node"].as_str().unwrap());
        let containers = nexus_system_tests::docker::try_docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label={}={}", nexus_agent::NODE_LABEL, cluster.nodes[node].id),
            "--format",
            "{{.Names}}",
        ])
        .unwrap();
        assert!(containers.contains(id), "server {id} has no container of node {node}: {containers}");
    }

    // The community Teeworlds egg, on the Teeworlds image (see `teeworlds_egg`).
    let egg = cluster.import_egg(teeworlds_egg()).await;
    let created = api
        .expect(
            Method::POST,
            "/api/v1/servers",
            Some(json!({ "name": "teeworlds", "owner": me, "egg": egg["id"], "limits": { "memory_mb": 512 },
                         "variables": { "SERVER_NAME": "Nexus on three nodes" } })),
            201,
        )
        .await;
    let id = created["server"]["id"].as_str().unwrap();
    api.wait_state(id, "installed").await;
    let mut console = Console::open(api, id).await;
    power(api, id, "start").await;
    console.wait_line("server name is 'Nexus on three nodes'").await;
    api.wait_state(id, "running").await;
    let autoexec = api.text(&format!("/api/v1/servers/{id}/files/contents?file=autoexec.cfg")).await;
    let port = server_port(api, id).await;
    assert!(autoexec.contains(&format!("sv_port {port}\n")), "the egg's config patch: {autoexec}");
    power(api, id, "stop").await;
    api.wait_state(id, "stopped").await;
    console.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bin_pack_fills_one_node_before_the_next() {
    if !docker_ready() {
        return;
    }
    let _one = one_cluster_at_a_time();
    let cluster = Cluster::start(ClusterConfig {
        placement: "bin_pack",
        node_memory_mb: 1024,
        first_port: 31100,
        ..Default::default()
    })
    .await;
    let api = &cluster.api;
    let egg = cluster.import_egg(busybox_egg()).await;
    let me = cluster.admin_id().await;
    let mut nodes = Vec::new();
    for i in 0..6 {
        let created = create_server(api, &egg, &me, &format!("packed-{i}"), 256).await;
        nodes.push(created["server"]["node"].as_str().unwrap().to_owned());
    }
    // Four 256 MiB servers fill a 1,024 MiB node; the next two go to a second node.
    assert!(nodes[..4].iter().all(|n| *n == nodes[0]), "bin-pack: the first four on one node: {nodes:?}");
    assert!(nodes[4] != nodes[0] && nodes[5] == nodes[4], "bin-pack: then the next node: {nodes:?}");
    for server in api.all("/api/v1/servers").await {
        api.wait_state(server["id"].as_str().unwrap(), "installed").await;
    }
}

/// The port of a server's primary allocation.
async fn server_port(api: &Api, server: &str) -> u64 {
    let view = api.get(&format!("/api/v1/servers/{server}")).await;
    let node = view["node"].as_str().unwrap();
    let allocations = api.all(&format!("/api/v1/nodes/{node}/allocations")).await;
    let primary = allocations.iter().find(|a| a["id"] == view["primary_allocation"]).expect("the primary allocation");
    primary["port"].as_u64().unwrap()
}

/// The community Teeworlds egg, changed only where this machine differs from the internet
/// (as `nexus_conformance::teeworlds` explains): its image is the Debian-built
/// `nexus-test/teeworlds`; its install script lays out what the release download would
/// (Debian's build of the same release and data, the egg's storage and config files) instead
/// of downloading; and it is also up at the line the server prints once its socket is bound,
/// because its own done string needs a master server on the internet.
fn teeworlds_egg() -> Vec<u8> {
    let mut egg: Value = serde_json::from_slice(&std::fs::read(TEEWORLDS_EGG).expect("the Teeworlds egg")).unwrap();
    egg["docker_images"] = json!({ "Teeworlds": "nexus-test/teeworlds:latest" });
    egg["scripts"]["installation"] = json!({
        "container": "nexus-test/teeworlds:latest",
        "entrypoint": "bash",
        "script": "cd /mnt/server\n\
                   ln -sf /usr/games/teeworlds-server teeworlds_srv\n\
                   ln -sf /usr/share/games/teeworlds/data data\n\
                   printf 'add_path $CURRENTDIR\\nadd_path $DATADIR\\n' > storage.cfg\n\
                   printf 'sv_name Teeworlds Server\\nsv_motd Welcome\\nbindaddr 127.0.0.1\\nsv_port 8303\\nsv_register 0\\n' > autoexec.cfg\n",
    });
    let startup: Value = serde_json::from_str(egg["config"]["startup"].as_str().unwrap()).unwrap();
    let done = startup["done"].as_str().unwrap().to_owned();
    egg["config"]["startup"] = Value::String(json!({ "done": [done, "server name is '"] }).to_string());
    serde_json::to_vec(&egg).unwrap()
}
