//! `nexus-panel serve` in production shape, on PostgreSQL and on MariaDB: the panel binary
//! from a configuration file, a node registered through the API whose configuration file
//! (downloaded from the panel) starts a separate `nexus-wings` process on Docker. A server
//! goes from creation to its console line and removal; the daemon is stopped (its node goes
//! offline within three heartbeat intervals while listing servers stays as fast) and started
//! again (online, its server still there); and two panel processes on the one database run
//! a due schedule exactly once. Needs PostgreSQL, MariaDB, Docker and the busybox image;
//! fails under `CI=true` without them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, T};
use futures::StreamExt;
use nexus_core::store::Store;
use nexus_store_sql::backend::{Mysql, Postgres};
use nexus_store_sql::testing::{TestBackend, throwaway};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PANEL: &str = env!("CARGO_BIN_EXE_nexus-panel");

/// A child process killed with the test.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    fn stop(mut self) {
        Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.0.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The daemon binary, built next to the panel's (the workspace's test command builds it; a
/// lone `cargo test -p nexus-panel` builds it here).
fn wings_binary() -> PathBuf {
    let path = Path::new(PANEL).with_file_name("nexus-wings");
    if !path.exists() {
        let status = Command::new(env!("CARGO")).args(["build", "-p", "nexus-wings", "--bin", "nexus-wings"]).status();
        assert!(status.is_ok_and(|s| s.success()), "building nexus-wings failed");
    }
    path
}

/// Starts `serve` with `config`; its URL and, on a first start, the admin password.
fn serve(config: &Path) -> (Process, String, Option<String>) {
    let mut child = Command::new(PANEL)
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let process = Process(child);
    let (url, password) = common::up::read_banner(stdout);
    (process, url.expect("the panel printed its address"), password)
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !done().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// p99 of `n` server listings, milliseconds.
async fn list_p99(admin: &Client, n: usize) -> f64 {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        admin.get("/api/v1/servers").await;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    times[(n * 99 / 100).min(n - 1)]
}

/// The whole flow on backend `B`; game ports from `first_port` (each backend its own, the
/// tests run in parallel).
async fn whole_system<B: TestBackend>(first_port: u16) {
    if !common::docker_ready() {
        return;
    }
    let Some(db) = throwaway::<B>() else { return };
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("node-secret");
    // As an editor saves it: with a final newline, which is not part of the secret.
    write_private(&secret, "a node secret for the serve test, 32+ bytes long\n");
    let port = free_port();
    let config = dir.path().join("panel.toml");
    let panel_config = |port: u16| {
        format!(
            "listen = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\ndatabase_url = \"{}\"\n\
             node_secret_file = \"{}\"\nnode_scheme = \"http\"\nheartbeat_interval_secs = 1\nnode_timeout_secs = 5\n",
            db.url,
            secret.display()
        )
    };
    write_private(&config, &panel_config(port));
    let (panel, url, password) = serve(&config);
    let admin = Client::login(&url, "admin@nexus.local", &password.expect("first start prints the password")).await;
    // `keys create --config` works on the same database: the key it prints is accepted.
    let made = Command::new(PANEL)
        .args(["keys", "create", "--user", "admin@nexus.local", "--kind", "application", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(made.status.success(), "keys create: {}", String::from_utf8_lossy(&made.stderr));
    let key = String::from_utf8(made.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("ptla_"), "{key}");
    let listed = reqwest::Client::new().get(format!("{url}/api/v1/servers")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(listed.status(), 200);

    // A node registered through the API; its configuration file starts a separate daemon.
    let daemon_port = free_port();
    let (status, node) = admin
        .call(
            reqwest::Method::POST,
            "/api/v1/nodes",
            Some(json!({ "name": "node-1", "fqdn": "127.0.0.1", "daemon_port": daemon_port,
                         "capacity": { "memory_mb": 4096, "disk_mb": 10240, "cpu_percent": 200 } })),
        )
        .await;
    assert_eq!(status, 201, "{node}");
    let node_id = node["node"]["id"].as_str().unwrap().to_owned();
    let filter = format!("label={}={node_id}", nexus_agent::NODE_LABEL);
    let _containers = scopeguard(filter);
    let (status, _) = admin
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/nodes/{node_id}/allocations"),
            Some(json!({ "ip": "127.0.0.1", "ports": format!("{first_port}-{}", first_port + 4) })),
        )
        .await;
    assert_eq!(status, 201);
    let text = admin
        .http
        .get(format!("{url}/api/v1/nodes/{node_id}/configuration"))
        .header("cookie", &admin.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains(&format!("node_id = \"{node_id}\"")), "{text}");
    let wings_config = dir.path().join("wings.toml");
    let text = text.replace(&format!("0.0.0.0:{daemon_port}"), &format!("127.0.0.1:{daemon_port}"));
    write_private(
        &wings_config,
        &format!(
            "{text}data_root = \"{}\"\nstate_dir = \"{}\"\nheartbeat_interval_secs = 1\n",
            dir.path().join("volumes").display(),
            dir.path().join("state").display()
        ),
    );
    let start_wings = || {
        Process(
            Command::new(wings_binary())
                .arg("--config")
                .arg(&wings_config)
                .env("TMPDIR", dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let wings = start_wings();
    let node_status = async |admin: &Client| admin.get(&format!("/api/v1/nodes/{node_id}")).await["status"].clone();
    wait_for("the node never came online", async || node_status(&admin).await == "online").await;

    // A server from an imported egg, through install, start, console and command.
    let egg = admin.import_busybox_egg().await;
    let me = admin.get("/api/v1/account").await["id"].clone();
    let (status, created) = admin
        .call(
            reqwest::Method::POST,
            "/api/v1/servers",
            Some(json!({ "name": "echo", "owner": me, "egg": egg["id"], "limits": { "memory_mb": 128 },
                         "variables": { "GREETING": "hello from serve" } })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let server = created["server"]["id"].as_str().unwrap().to_owned();
    admin.wait_state(&server, "installed").await;
    let access = admin.get(&format!("/api/v1/servers/{server}/websocket")).await;
    let socket_url = format!("{}?token={}", access["socket"].as_str().unwrap(), access["token"].as_str().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(socket_url.as_str()).await.unwrap();
    admin
        .call(reqwest::Method::POST, &format!("/api/v1/servers/{server}/power"), Some(json!({"action":"start"})))
        .await;
    let mut console = String::new();
    let deadline = tokio::time::Instant::now() + T;
    while !console.contains(&format!("hello from serve on port {first_port}")) {
        let message = tokio::time::timeout_at(deadline, socket.next()).await.expect("a console line in time");
        console.push_str(&message.unwrap().unwrap().into_text().unwrap());
    }
    admin.wait_state(&server, "running").await;

    // Two panel processes on the database: a due schedule runs exactly once.
    let second_port = free_port();
    let second_config = dir.path().join("panel-2.toml");
    write_private(&second_config, &panel_config(second_port));
    let (second, _, none) = serve(&second_config);
    assert_eq!(none, None, "the second process makes no admin");
    let store: Box<dyn Store> = Box::new(nexus_store_sql::SqlStore::<B>::connect(&db.url).await.unwrap());
    let (status, schedule) = admin
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/servers/{server}/schedules"),
            Some(json!({ "name": "say once", "cron": "0 4 * * *",
                         "tasks": [{ "action": { "kind": "command", "payload": "once" } }] })),
        )
        .await;
    assert_eq!(status, 201, "{schedule}");
    let schedule_id = schedule["id"].as_str().unwrap().parse().unwrap();
    for round in 1..=3 {
        let mut due = store.get_schedule(schedule_id).await.unwrap();
        due.next_run_at = Some(chrono::Utc::now() - chrono::Duration::seconds(1));
        store.update_schedule(&due).await.unwrap();
        let runs = async || {
            let activity = admin.get(&format!("/api/v1/servers/{server}/activity?per_page=100")).await;
            activity["data"].as_array().unwrap().iter().filter(|e| e["action"] == "schedule.run").count()
        };
        wait_for("the schedule never ran", async || runs().await >= round).await;
        // Both runners tick every 5 s: give the slower one its chance to run it twice.
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(runs().await, round, "each due run exactly once");
    }
    let deadline = tokio::time::Instant::now() + T;
    while console.matches("echo: once").count() < 3 {
        let message = tokio::time::timeout_at(deadline, socket.next()).await.expect("the scheduled commands");
        console.push_str(&message.unwrap().unwrap().into_text().unwrap());
    }
    second.stop();

    // The daemon stops: its node goes offline within three intervals; listing stays fast.
    let before = list_p99(&admin, 50).await;
    let stopped_at = Instant::now();
    wings.stop();
    wait_for("the node never went offline", async || node_status(&admin).await == "offline").await;
    let offline_after = stopped_at.elapsed();
    // Three 1-second intervals, and the 100 ms this test polls at.
    assert!(offline_after <= Duration::from_millis(3100), "offline after {offline_after:?}");
    let during = list_p99(&admin, 50).await;
    eprintln!(
        "list p99: {before:.1} ms with the node up, {during:.1} ms with it down; offline after {offline_after:?}"
    );
    assert!(during < before.max(5.0) * 4.0, "listing slowed down: {before:.1} → {during:.1} ms");

    // Started again: online, the server re-adopted (still running), then stopped and deleted.
    let wings = start_wings();
    wait_for("the node never came back", async || node_status(&admin).await == "online").await;
    assert_eq!(admin.get(&format!("/api/v1/servers/{server}")).await["state"], "running");
    admin.call(reqwest::Method::POST, &format!("/api/v1/servers/{server}/power"), Some(json!({"action":"stop"}))).await;
    admin.wait_state(&server, "stopped").await;
    let (status, _) = admin.call(reqwest::Method::DELETE, &format!("/api/v1/servers/{server}"), None).await;
    assert_eq!(status, 202);
    wait_for("the server was never removed", async || {
        admin.call(reqwest::Method::GET, &format!("/api/v1/servers/{server}"), None).await.0 == 404
    })
    .await;
    wings.stop();
    panel.stop();
}

/// Removes the node's containers when dropped.
fn scopeguard(filter: String) -> impl Drop {
    struct Guard(String);
    impl Drop for Guard {
        fn drop(&mut self) {
            let Ok(out) = Command::new("docker").args(["ps", "-aq", "--filter", &self.0]).output() else { return };
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
            if !ids.is_empty() {
                let _ = Command::new("docker").arg("rm").arg("-f").args(&ids).output();
            }
        }
    }
    Guard(filter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_postgres_with_a_separate_daemon() {
    whole_system::<Postgres>(30420).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_mariadb_with_a_separate_daemon() {
    whole_system::<Mysql>(30430).await;
}
