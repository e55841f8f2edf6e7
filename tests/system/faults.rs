//! Faults as they happen to an operator's cluster of three nodes, each scenario on its own
//! cluster (PostgreSQL, the panel, three daemons in containers) and checked only through what
//! the panel's API shows, plus what each node itself says for the convergence checks:
//!
//! * a daemon stopped: its node is offline within three heartbeat intervals, requests about
//!   the other nodes stay as fast as before (measured), and after its restart the node is
//!   reconciled and its servers are in the state they really are in;
//! * a node partitioned from the network while its servers run, the panel changed meanwhile,
//!   then healed: no server started twice, no lifecycle event lost, the views converge;
//! * the panel `kill -9`ed during a burst of 100 creates and started again: every server is
//!   complete or marked failed, no allocation leaked, each node holds exactly the panel's
//!   servers;
//! * a daemon `kill -9`ed with running servers: they keep running and are re-adopted.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// One cluster at a time: each test holds a std mutex for its whole (single-runtime) body.
#![allow(clippy::await_holding_lock)]

use nexus_system_tests::api::wait_for;
use nexus_system_tests::docker::{running, started_at, try_docker};
use nexus_system_tests::{
    Api, Cluster, ClusterConfig, Console, T, busybox_egg, docker_ready, one_cluster_at_a_time, percentile,
    running_server_on,
};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The heartbeat interval the clusters run with.
const INTERVAL: Duration = Duration::from_secs(1);

/// p99 of `rounds` passes over `paths`, milliseconds.
async fn p99(api: &Api, paths: &[String], rounds: usize) -> f64 {
    let mut times = Vec::new();
    for _ in 0..rounds {
        for path in paths {
            let started = Instant::now();
            let (status, body) = api.call(Method::GET, path, None).await;
            assert_eq!(status, 200, "GET {path}: {body}");
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    percentile(&mut times, 99.0)
}

async fn events(api: &Api, server: &str) -> Vec<Value> {
    api.get(&format!("/api/v1/servers/{server}/events")).await.as_array().cloned().unwrap_or_default()
}

/// Waits until the panel's state of every server node `i` holds equals the node's own, and
/// the node holds exactly the servers the panel places on it; the node's view.
async fn converged(cluster: &Cluster, i: usize) -> BTreeMap<String, String> {
    let mut last = String::new();
    let deadline = Instant::now() + T;
    loop {
        if let Some(node) = cluster.node_servers(i).await {
            let panel: BTreeMap<String, String> = cluster
                .api
                .all(&format!("/api/v1/servers?node={}", cluster.nodes[i].id))
                .await
                .iter()
                .map(|s| (s["id"].as_str().unwrap().to_owned(), s["state"].as_str().unwrap().to_owned()))
                .collect();
            if panel == node {
                return node;
            }
            last = format!("panel {panel:?}\nnode  {node:?}");
        }
        assert!(Instant::now() < deadline, "node {i} and the panel never agreed:\n{last}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_daemon_goes_offline_in_three_intervals_and_is_reconciled_on_restart() {
    if !docker_ready() {
        return;
    }
    let _one = one_cluster_at_a_time();
    let cluster = Cluster::start(ClusterConfig { first_port: 31200, ..Default::default() }).await;
    let api = &cluster.api;
    let egg = cluster.import_egg(busybox_egg()).await;
    let me = cluster.admin_id().await;
    let [n0, n1, n2] = [0, 1, 2].map(|i| cluster.nodes[i].id.clone());
    let steady = running_server_on(api, &egg, &me, "steady", &n0).await;
    let exits = running_server_on(api, &egg, &me, "exits", &n0).await;
    let others = [
        running_server_on(api, &egg, &me, "other-1", &n1).await,
        running_server_on(api, &egg, &me, "other-2", &n2).await,
    ];
    let steady_started = started_at(&Cluster::server_container(&steady));

    // Requests about the other nodes: their servers' live resources (forwarded to the node)
    // and the server list.
    let paths: Vec<String> = others
        .iter()
        .map(|s| format!("/api/v1/servers/{s}/resources"))
        .chain([format!("/api/v1/servers?node={n1}"), "/api/v1/servers".to_owned()])
        .collect();
    let before = p99(api, &paths, 25).await;

    let stopping = Instant::now();
    cluster.stop_node(0);
    cluster.wait_node(&cluster.nodes[0], "offline").await;
    let offline_after = stopping.elapsed();
    let during = p99(api, &paths, 25).await;
    // A request about the stopped node's server fails in words, and fast.
    let asked = Instant::now();
    let (status, body) = api.call(Method::GET, &format!("/api/v1/servers/{steady}/resources"), None).await;
    let refused_in = asked.elapsed();
    eprintln!(
        "[faults] node offline {:.2} s after its daemon stopped (3 intervals = {:.1} s); p99 of requests about \
         other nodes {before:.1} ms before, {during:.1} ms while it is down; a request about it answered {status} \
         in {:.0} ms",
        offline_after.as_secs_f64(),
        (INTERVAL * 3).as_secs_f64(),
        refused_in.as_secs_f64() * 1000.0
    );
    // Three intervals after the daemon's last heartbeat, which came before `docker stop`
    // began; half an interval for the poll, the sweep's tick and a loaded machine.
    assert!(offline_after <= INTERVAL * 3 + INTERVAL / 2, "offline after {offline_after:?}");
    assert!(during <= before.max(50.0) * 3.0, "requests about other nodes slowed: {before:.1} → {during:.1} ms");
    assert!(status >= 500 && body["error"]["message"].is_string(), "{status} {body}");
    assert!(refused_in < Duration::from_secs(6), "the node timeout bounds it: {refused_in:?}");
    // The node's servers do not depend on its daemon.
    assert!(running(&Cluster::server_container(&steady)) && running(&Cluster::server_container(&exits)));
    // While the daemon is away, one server's process ends behind its back.
    try_docker(&["stop", "-t", "5", &Cluster::server_container(&exits)]).unwrap();

    cluster.start_node(0);
    cluster.wait_node(&cluster.nodes[0], "online").await;
    let node = converged(&cluster, 0).await;
    assert_eq!(node[&steady], "running", "{node:?}");
    assert_ne!(node[&exits], "running", "the exited server is not shown running: {node:?}");
    assert_eq!(started_at(&Cluster::server_container(&steady)), steady_started, "re-adopted, not restarted");
    let mut console = Console::open(api, &steady).await;
    console.send("still here").await;
    console.wait_line("echo: still here").await;
    console.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_converges_after_healing_with_nothing_started_twice_or_lost() {
    if !docker_ready() {
        return;
    }
    let _one = one_cluster_at_a_time();
    let cluster = Cluster::start(ClusterConfig { first_port: 31300, ..Default::default() }).await;
    let api = &cluster.api;
    let egg = cluster.import_egg(busybox_egg()).await;
    let me = cluster.admin_id().await;
    let n0 = cluster.nodes[0].id.clone();
    let steady = running_server_on(api, &egg, &me, "steady", &n0).await;
    let exits = running_server_on(api, &egg, &me, "exits", &n0).await;
    let suspended = running_server_on(api, &egg, &me, "to-suspend", &n0).await;
    let deleted = running_server_on(api, &egg, &me, "to-delete", &n0).await;
    let steady_started = started_at(&Cluster::server_container(&steady));
    let events_before = events(api, &exits).await.len();

    cluster.partition(0);
    cluster.wait_node(&cluster.nodes[0], "offline").await;
    // The panel changes things meanwhile; each is stored and told to the node when it is back.
    api.expect(Method::POST, &format!("/api/v1/servers/{suspended}/suspend"), None, 200).await;
    let (status, body) = api.call(Method::DELETE, &format!("/api/v1/servers/{deleted}"), None).await;
    assert_eq!(status, 202, "{body}");
    let late = api
        .expect(
            Method::POST,
            "/api/v1/servers",
            Some(json!({ "name": "created-meanwhile", "owner": me, "egg": egg["id"], "limits": { "memory_mb": 128 }, "node": n0 })),
            201,
        )
        .await;
    assert_eq!(late["delivery"], "pending", "{late}");
    let late = late["server"]["id"].as_str().unwrap().to_owned();
    // A power action cannot reach the node: refused in words, nothing recorded as done.
    let (status, body) =
        api.call(Method::POST, &format!("/api/v1/servers/{steady}/power"), Some(json!({"action":"restart"}))).await;
    assert!(status >= 500, "a restart through a partition: {status} {body}");
    // On the node's side of the partition, a server's process ends: its events wait in the
    // node's outbox.
    try_docker(&["stop", "-t", "5", &Cluster::server_container(&exits)]).unwrap();
    tokio::time::sleep(INTERVAL * 3).await;
    assert_eq!(api.state(&exits).await, "running", "the panel cannot know yet");

    cluster.heal(0);
    cluster.wait_node(&cluster.nodes[0], "online").await;
    // The deleted server is gone from both sides; the views agree.
    wait_for("the deleted server was never removed", T, async || {
        api.call(Method::GET, &format!("/api/v1/servers/{deleted}"), None).await.0 == 404
    })
    .await;
    api.wait_state(&late, "installed").await;
    let node = converged(&cluster, 0).await;
    assert!(!node.contains_key(&deleted), "{node:?}");
    assert_eq!(node[&steady], "running");
    assert_eq!(node[&suspended], "suspended", "the suspension reached the node: {node:?}");
    assert!(!running(&Cluster::server_container(&suspended)), "a suspended server does not run");
    // Nothing started twice: the untouched server's container is the same process, and its
    // history holds one start.
    assert_eq!(started_at(&Cluster::server_container(&steady)), steady_started);
    let starts = events(api, &steady).await.iter().filter(|e| e["to"] == "starting").count();
    assert_eq!(starts, 1, "{:?}", events(api, &steady).await);
    // No lifecycle event lost: the crash during the partition (the node restarts a crashed
    // server) is in the panel's history, which ends in the state the node has.
    let history = events(api, &exits).await;
    assert!(history.len() > events_before, "the partition's events arrived: {history:?}");
    assert_eq!(history[0]["to"], node[&exits].as_str(), "newest event = the node's state: {history:?}");
    let crashed = history.iter().any(|e| e["from"] == "running" && e["to"] == "crashed" && e["trigger"] == "exited");
    assert!(crashed, "the exit during the partition was delivered: {history:?}");
    for pair in history.windows(2) {
        assert_eq!(pair[0]["from"], pair[1]["to"], "the history has no gap: {history:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_panel_during_100_creates_leaves_every_server_complete_or_failed_and_no_port_leaked() {
    if !docker_ready() {
        return;
    }
    let _one = one_cluster_at_a_time();
    let cluster = Cluster::start(ClusterConfig {
        placement: "spread",
        first_port: 31400,
        ports_per_node: 40,
        ..Default::default()
    })
    .await;
    let api = cluster.api.clone();
    let egg = cluster.import_egg(busybox_egg()).await;
    let me = cluster.admin_id().await;

    // 100 creates, 8 at a time; the panel is killed once a quarter have been answered.
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut burst = tokio::task::JoinSet::new();
    let queue = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
    for i in 0..100 {
        let (api, egg, me, answered, queue) = (api.clone(), egg.clone(), me.clone(), answered.clone(), queue.clone());
        burst.spawn(async move {
            let _slot = queue.acquire().await.unwrap();
            let body =
                json!({ "name": format!("burst-{i}"), "owner": me, "egg": egg["id"], "limits": { "memory_mb": 32 } });
            let outcome = api.try_call(Method::POST, "/api/v1/servers", Some(body)).await;
            answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            outcome
                .ok()
                .filter(|(status, _)| *status == 201)
                .map(|(_, body)| body["server"]["id"].as_str().unwrap().to_owned())
        });
    }
    wait_for("the burst never got going", T, async || answered.load(std::sync::atomic::Ordering::SeqCst) >= 25).await;
    cluster.kill_panel(0);
    let mut created = BTreeSet::new();
    while let Some(outcome) = burst.join_next().await {
        created.extend(outcome.unwrap());
    }
    assert!(created.len() >= 25 && created.len() < 100, "the kill landed mid-burst: {} created", created.len());
    cluster.start_panel(0).await;

    // Every server the panel has ends installed or install_failed; every answered create is
    // among them.
    let settled = async || {
        let servers = api.all("/api/v1/servers").await;
        servers.iter().all(|s| s["state"] == "installed" || s["state"] == "install_failed").then_some(servers)
    };
    let deadline = Instant::now() + T * 2;
    let servers = loop {
        if let Some(servers) = settled().await {
            break servers;
        }
        if Instant::now() > deadline {
            let mut unsettled = Vec::new();
            for s in api.all("/api/v1/servers").await {
                if s["state"] != "installed" && s["state"] != "install_failed" {
                    let i = cluster.node_index(s["node"].as_str().unwrap());
                    let on_node = cluster.node_servers(i).await.and_then(|n| n.get(s["id"].as_str().unwrap()).cloned());
                    let history = events(&api, s["id"].as_str().unwrap()).await;
                    unsettled.push(format!(
                        "{} {} panel {} node {on_node:?} events {history:?}",
                        s["name"], s["id"], s["state"]
                    ));
                }
            }
            panic!("servers never settled:\n{}", unsettled.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let ids: BTreeSet<String> = servers.iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect();
    assert!(created.is_subset(&ids), "an answered create is missing");
    let failed = servers.iter().filter(|s| s["state"] == "install_failed").count();
    // No leaked allocation: each server holds its own primary port, and only servers hold
    // ports.
    let mut held = BTreeMap::new();
    for node in &cluster.nodes {
        for allocation in api.all(&format!("/api/v1/nodes/{}/allocations", node.id)).await {
            if let Some(server) = allocation["server"].as_str() {
                assert!(ids.contains(server), "allocation {allocation} held by a server that does not exist");
                assert!(held.insert(server.to_owned(), allocation["id"].clone()).is_none(), "{server} holds two ports");
            }
        }
    }
    assert_eq!(held.len(), ids.len(), "every server holds exactly one port");
    for server in &servers {
        assert_eq!(held[server["id"].as_str().unwrap()], server["primary_allocation"]);
    }
    // Each node holds exactly the panel's servers, in the panel's states.
    for i in 0..cluster.nodes.len() {
        converged(&cluster, i).await;
    }
    eprintln!(
        "[faults] panel killed during 100 creates: {} answered 201, {} servers exist, {failed} install failed, \
         {} ports held",
        created.len(),
        ids.len(),
        held.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemon_leaves_its_servers_running_and_readopts_them() {
    if !docker_ready() {
        return;
    }
    let _one = one_cluster_at_a_time();
    let cluster = Cluster::start(ClusterConfig { nodes: 2, first_port: 31900, ..Default::default() }).await;
    let api = &cluster.api;
    let egg = cluster.import_egg(busybox_egg()).await;
    let me = cluster.admin_id().await;
    let n1 = cluster.nodes[1].id.clone();
    let servers =
        [running_server_on(api, &egg, &me, "a", &n1).await, running_server_on(api, &egg, &me, "b", &n1).await];
    let before: Vec<String> = servers.iter().map(|s| started_at(&Cluster::server_container(s))).collect();

    cluster.kill_node(1);
    cluster.wait_node(&cluster.nodes[1], "offline").await;
    for server in &servers {
        assert!(running(&Cluster::server_container(server)), "{server} died with its daemon");
    }
    cluster.start_node(1);
    cluster.wait_node(&cluster.nodes[1], "online").await;
    let node = converged(&cluster, 1).await;
    for (server, started) in servers.iter().zip(&before) {
        assert_eq!(node[server], "running");
        assert_eq!(&started_at(&Cluster::server_container(server)), started, "{server} was restarted");
        // Re-adopted: the console is attached again and power works.
        let mut console = Console::open(api, server).await;
        console.send("after the kill").await;
        console.wait_line("echo: after the kill").await;
        console.close().await;
        api.expect(Method::POST, &format!("/api/v1/servers/{server}/power"), Some(json!({"action":"stop"})), 202).await;
        api.wait_state(server, "stopped").await;
    }
    assert_eq!(cluster.server_containers(1).len(), 0, "stopped servers' containers stop");
}
