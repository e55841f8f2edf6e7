//! `nexus-panel up` end to end, as an operator runs it: the real binary in a temporary data
//! directory, with its local node on Docker. Log in over HTTP, import an egg, create a server
//! on the busybox image, start it (Running on its done line), read its console over the
//! node's WebSocket with the panel-issued token, send a command and see its output, stop it,
//! delete it (its port is free again), make an API key with `nexus-panel keys create` and use
//! it; Ctrl-C stops the panel, and a second `up` reuses everything (no new admin, no egg
//! imported twice). Needs Docker and the busybox test image; fails under `CI=true` without.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Client;
use common::up::Up;
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

/// `kill -9` during a burst of creates, then a restart: every server the panel stored is
/// installed or failed (none stuck half-made), and exactly the stored servers hold ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panel_killed_during_a_burst_of_creates_leaves_nothing_half_made() {
    if !common::docker_ready() {
        return;
    }
    const BURST: usize = 30;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut up = Up::start_with_ports(&data, "30440-30479", "127.0.0.1:0");
    let password = up.password.clone().unwrap();
    let admin = Client::login(&up.url, "admin", &password).await;
    let node_id = admin.get("/api/v1/nodes").await["data"][0]["id"].as_str().unwrap().to_owned();
    up.node_containers = Some(format!("label={}={node_id}", nexus_agent::NODE_LABEL));
    let (_, key) =
        admin.call(reqwest::Method::POST, "/api/v1/account/api-keys", Some(json!({"kind":"application"}))).await;
    let key = key["secret"].as_str().unwrap().to_owned();
    let me = admin.get("/api/v1/account").await["id"].clone();
    let egg = admin.get("/api/v1/eggs").await["data"][0]["id"].clone();

    let http = reqwest::Client::new();
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..BURST {
        let (http, url, key) = (http.clone(), up.url.clone(), key.clone());
        let body = json!({ "name": format!("burst-{i}"), "owner": me, "egg": egg, "limits": { "memory_mb": 32 } });
        creates
            .spawn(async move { http.post(format!("{url}/api/v1/servers")).bearer_auth(key).json(&body).send().await });
    }
    // Kill the whole process (panel and its local node) once a third have answered.
    let mut answered = 0;
    while let Some(result) = creates.join_next().await {
        if result.unwrap().is_ok_and(|r| r.status() == 201) {
            answered += 1;
        }
        if answered == BURST / 3 {
            up.child.kill().unwrap();
            let _ = up.child.wait();
            break;
        }
    }
    creates.abort_all();

    let node_containers = up.node_containers.take();
    drop(up);
    // Listening everywhere, the panel still prints (and its node uses) a loopback URL.
    let mut again = Up::start_with_ports(&data, "30440-30479", "0.0.0.0:0");
    assert!(again.url.starts_with("http://127.0.0.1:"), "{}", again.url);
    again.node_containers = node_containers;
    let admin = Client::login(&again.url, "admin", &password).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let servers = loop {
        let servers = admin.get("/api/v1/servers?per_page=100").await["data"].as_array().unwrap().clone();
        let settled = servers.iter().all(|s| s["state"] == "installed" || s["state"] == "install_failed");
        if settled {
            break servers;
        }
        let states: Vec<String> = servers
            .iter()
            .filter(|s| s["state"] != "installed" && s["state"] != "install_failed")
            .map(|s| format!("{} {} {}", s["name"], s["id"], s["state"]))
            .collect();
        assert!(Instant::now() < deadline, "servers not settled after the restart: {states:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(servers.len() >= answered, "every answered create is stored ({} < {answered})", servers.len());
    let allocations =
        admin.get(&format!("/api/v1/nodes/{node_id}/allocations")).await["data"].as_array().unwrap().clone();
    let holders: Vec<&Value> = allocations.iter().map(|a| &a["server"]).filter(|s| !s.is_null()).collect();
    assert_eq!(holders.len(), servers.len(), "one port per stored server, none leaked");
    for server in &servers {
        assert!(holders.contains(&&server["id"]), "{} holds no port", server["id"]);
    }
    eprintln!("burst: {answered} answered before kill -9, {} stored, all settled", servers.len());
    again.interrupt();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexus_panel_up_runs_a_server_from_login_to_removal_and_restarts_on_its_data() {
    if !common::docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut up = Up::start(&data);
    let password = up.password.clone().expect("the first start prints the admin password");
    let admin = Client::login(&up.url, "admin@nexus.local", &password).await;
    let node = admin.get("/api/v1/nodes").await["data"][0].clone();
    assert_eq!(node["name"], "local");
    let node_id = node["id"].as_str().unwrap().to_owned();
    up.node_containers = Some(format!("label={}={node_id}", nexus_agent::NODE_LABEL));
    let shipped = admin.get("/api/v1/eggs").await["data"].as_array().unwrap().len();
    assert!(shipped >= 1, "the panel ships eggs");

    // The local node comes online through its heartbeats.
    let deadline = Instant::now() + T;
    while admin.get(&format!("/api/v1/nodes/{node_id}")).await["status"] != "online" {
        assert!(Instant::now() < deadline, "the local node never came online");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Import an egg file, as an admin uploads it.
    let egg = admin.import_busybox_egg().await;
    assert_eq!(egg["name"], "Busybox echo");

    // A bad value is refused naming the variable; nothing is left behind.
    let me = admin.get("/api/v1/account").await["id"].clone();
    let mut create = json!({
        "name": "echo", "owner": me, "egg": egg["id"], "limits": { "memory_mb": 128 },
        "variables": { "GREETING": "hello from up", "MAX_PLAYERS": "500" },
    });
    let (status, error) = admin.call(reqwest::Method::POST, "/api/v1/servers", Some(create.clone())).await;
    assert_eq!((status, error["error"]["field"].as_str()), (422, Some("MAX_PLAYERS")), "{error}");
    assert_eq!(admin.get("/api/v1/servers").await["data"].as_array().unwrap().len(), 0);

    create["variables"]["MAX_PLAYERS"] = json!("8");
    let (status, created) = admin.call(reqwest::Method::POST, "/api/v1/servers", Some(create)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["delivery"], "sent");
    let server = created["server"]["id"].as_str().unwrap().to_owned();
    admin.wait_state(&server, "installed").await;
    assert_eq!(admin.get(&format!("/api/v1/servers/{server}")).await["allocation"]["port"], 30410);

    // The console, straight from the node with the panel's token.
    let access = admin.get(&format!("/api/v1/servers/{server}/websocket")).await;
    let url = format!("{}?token={}", access["socket"].as_str().unwrap(), access["token"].as_str().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str()).await.expect("console socket");
    let (status, _) = admin
        .call(reqwest::Method::POST, &format!("/api/v1/servers/{server}/power"), Some(json!({"action":"start"})))
        .await;
    assert_eq!(status, 202);
    let mut console = String::new();
    let seen = |console: &str, needle: &str| console.contains(needle);
    let deadline = tokio::time::Instant::now() + T;
    while !seen(&console, "hello from up on port 30410") {
        let message = tokio::time::timeout_at(deadline, socket.next()).await.expect("a console line in time");
        console.push_str(&message.unwrap().unwrap().into_text().unwrap());
    }
    admin.wait_state(&server, "running").await;
    let (status, _) = admin
        .call(reqwest::Method::POST, &format!("/api/v1/servers/{server}/command"), Some(json!({"command":"ping up"})))
        .await;
    assert_eq!(status, 204);
    while !seen(&console, "echo: ping up") {
        let message = tokio::time::timeout_at(deadline, socket.next()).await.expect("the command's output in time");
        console.push_str(&message.unwrap().unwrap().into_text().unwrap());
    }
    let _ = socket.close(None).await;
    // Live figures from the node, through the panel.
    let deadline = Instant::now() + T;
    loop {
        let resources = admin.get(&format!("/api/v1/servers/{server}/resources")).await;
        if resources["stats"].is_object() {
            assert_eq!(resources["state"], "running", "{resources}");
            assert!(resources["stats"]["memory_limit_bytes"].as_u64().unwrap() > 0, "{resources}");
            break;
        }
        assert!(Instant::now() < deadline, "no stats sample: {resources}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    files_through_the_panel(&admin, &server).await;
    // What was done to the server is in its activity, with who did it.
    let activity = admin.get(&format!("/api/v1/servers/{server}/activity")).await;
    let actions: Vec<&str> =
        activity["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"POST /api/v1/servers/{id}/power"), "{actions:?}");
    assert!(actions.contains(&"POST /api/v1/servers/{id}/command"), "{actions:?}");
    assert!(activity["data"][0]["actor"] == me, "{activity}");

    let (status, _) = admin
        .call(reqwest::Method::POST, &format!("/api/v1/servers/{server}/power"), Some(json!({"action":"stop"})))
        .await;
    assert_eq!(status, 202);
    admin.wait_state(&server, "stopped").await;

    // An API key from the command line, used as a billing system would.
    let key = common::up::create_key(&data, "admin@nexus.local", "application");
    assert!(key.starts_with("ptla_") && key.len() == 53, "{key}");
    let listed: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/servers", up.url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"][0]["id"], server);

    // Delete: the node removes it, the panel drops the row and frees the port.
    let (status, _) = admin.call(reqwest::Method::DELETE, &format!("/api/v1/servers/{server}"), None).await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + T;
    while admin.call(reqwest::Method::GET, &format!("/api/v1/servers/{server}"), None).await.0 != 404 {
        assert!(Instant::now() < deadline, "the server was never removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let allocations = admin.get(&format!("/api/v1/nodes/{node_id}/allocations")).await;
    assert!(allocations["data"].as_array().unwrap().iter().all(|a| a["server"].is_null()), "{allocations}");

    // Ctrl-C, then a second start on the same data.
    let node_containers = up.node_containers.clone();
    up.interrupt();
    let mut again = Up::start(&data);
    again.node_containers = node_containers;
    assert_eq!(again.password, None, "a second start creates no admin");
    let admin = Client::login(&again.url, "admin", &password).await;
    assert_eq!(admin.get("/api/v1/nodes").await["data"].as_array().unwrap().len(), 1, "the same local node");
    assert_eq!(admin.get("/api/v1/eggs").await["data"].as_array().unwrap().len(), shipped + 1, "no egg imported twice");
    again.interrupt();
}

/// The file manager's routes, forwarded to the node: write, read, download, rename, copy,
/// folders, compress and decompress, delete, and refusals that keep their meaning.
async fn files_through_the_panel(admin: &Client, server: &str) {
    use reqwest::Method;
    let files = format!("/api/v1/servers/{server}/files");
    let put = |path: &str, body: &'static [u8]| {
        admin
            .http
            .put(format!("{}{files}/contents?file={path}", admin.base))
            .header("cookie", &admin.cookie)
            .header("x-csrf-token", &admin.csrf)
            .body(body)
            .send()
    };
    let response = put("notes%20one.txt", b"hello \xc3\xa9\n").await.unwrap();
    assert_eq!(response.status(), 200);
    let entry: Value = response.json().await.unwrap();
    assert_eq!((entry["name"].as_str(), entry["size"].as_u64()), (Some("notes one.txt"), Some(9)), "{entry}");
    let (status, text) = admin.call(Method::GET, &format!("{files}/contents?file=notes%20one.txt"), None).await;
    assert_eq!((status, text), (200, Value::String("hello é\n".into())));
    let download = admin
        .http
        .get(format!("{}{files}/download?file=notes%20one.txt", admin.base))
        .header("cookie", &admin.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.headers()["content-disposition"], "attachment; filename*=UTF-8''notes%20one%2Etxt");
    assert_eq!(download.bytes().await.unwrap().as_ref(), b"hello \xc3\xa9\n");

    let (status, _) = admin.call(Method::POST, &format!("{files}/create-folder"), Some(json!({"path": "dir"}))).await;
    assert_eq!(status, 200);
    let (status, body) = admin
        .call(Method::POST, &format!("{files}/rename"), Some(json!({"from": "notes one.txt", "to": "a.txt"})))
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) =
        admin.call(Method::POST, &format!("{files}/copy"), Some(json!({"from": "a.txt", "to": "dir/b.txt"}))).await;
    assert_eq!(status, 200, "{body}");
    let (status, archive) = admin
        .call(
            Method::POST,
            &format!("{files}/compress"),
            Some(json!({"files": ["a.txt", "dir"], "destination": "x.tar.gz"})),
        )
        .await;
    assert_eq!((status, archive["name"].as_str()), (200, Some("x.tar.gz")), "{archive}");
    for gone in ["a.txt", "dir"] {
        let (status, body) = admin.call(Method::DELETE, &format!("{files}?file={gone}"), None).await;
        assert_eq!(status, 204, "{body}");
    }
    let (status, summary) =
        admin.call(Method::POST, &format!("{files}/decompress"), Some(json!({"file": "x.tar.gz"}))).await;
    assert_eq!(status, 200, "{summary}");
    let listed = admin.get(&format!("{files}?directory=dir")).await;
    assert_eq!(listed[0]["name"], "b.txt", "{listed}");
    let (status, text) = admin.call(Method::GET, &format!("{files}/contents?file=dir/b.txt"), None).await;
    assert_eq!((status, text), (200, Value::String("hello é\n".into())));

    // Refusals keep the node's meaning; nothing leaves the server's root.
    let (status, error) = admin.call(Method::GET, &format!("{files}/contents?file=../../../etc/passwd"), None).await;
    assert_eq!((status, error["error"]["code"].as_str()), (400, Some("outside_root")), "{error}");
    // Dot segments never reach another route of the node (its server details, another
    // server's files) through the node's token.
    for hostile in ["..", "%2e%2e", &format!("../../{server}"), "../../../api/system"] {
        let (status, error) = admin.call(Method::GET, &format!("{files}/contents?file={hostile}"), None).await;
        assert!(
            status == 400 && ["outside_root", "invalid_path"].contains(&error["error"]["code"].as_str().unwrap()),
            "{hostile}: {status} {error}"
        );
    }
    let (status, error) = admin.call(Method::GET, &format!("{files}?directory=a.txt"), None).await;
    assert_eq!((status, error["error"]["code"].as_str()), (422, Some("not_a_directory")), "{error}");
    let (status, error) = admin.call(Method::GET, &format!("{files}/contents?file=dir"), None).await;
    assert_eq!((status, error["error"]["code"].as_str()), (422, Some("not_a_file")), "{error}");
    let (status, error) = admin.call(Method::GET, &format!("{files}/contents?file=nope.txt"), None).await;
    assert_eq!((status, error["error"]["code"].as_str()), (404, Some("not_found")), "{error}");
    let (status, error) = admin.call(Method::DELETE, &format!("{files}?file=/"), None).await;
    assert_eq!(status, 422, "{error}");
}
