//! Crash safety of the real binary: `nexus-wings` runs as a child process, servers are
//! created and started through its API, the daemon is `kill -9`ed and started again with the
//! same configuration. Every running server must be re-adopted (same container, not
//! restarted, state `running`, console attached: commands reach it and new clients get the
//! replay), and no container may be started twice or left behind. Then SIGTERM: the daemon
//! exits cleanly and leaves the servers running.
//!
//! The kill -9 walk runs on Docker and on Podman (`runtime = "podman"`).
//!
//! Needs Docker, Podman and `nexus-test/busybox:latest`; skips without them, fails under
//! `CI=true`.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code: a failed expectation fails the test")]

mod support;

use nexus_core::ids::NodeId;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use support::*;

const T: Duration = Duration::from_secs(30);
const SERVERS: usize = 3;

/// A node's configuration and log in a temporary directory, for daemons started and killed
/// in turn; its containers are removed at the end.
struct Setup {
    dir: tempfile::TempDir,
    node: NodeId,
    client: Client,
    config: std::path::PathBuf,
    log: std::path::PathBuf,
    _cleanup: Cleanup,
}

impl Setup {
    fn new() -> Self {
        Self::with(|_| {})
    }

    /// A node on `engine` (`runtime = "podman"` and the test socket for Podman).
    fn on(engine: Engine) -> Self {
        Self::with(|c| {
            if engine == Engine::Podman {
                c.runtime = nexus_wings::config::RuntimeKind::Podman;
                c.podman_socket = Engine::podman_socket().into();
            }
        })
    }

    fn with(adjust: impl FnOnce(&mut nexus_wings::config::Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let node = NodeId::new();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config_path = dir.path().join("wings.toml");
        let mut config = config(dir.path(), node, addr);
        adjust(&mut config);
        std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
        let log = dir.path().join("daemon.log");
        Self { client: Client::new(addr), node, config: config_path, log, _cleanup: Cleanup(node), dir }
    }

    /// The daemon as a child process, its stderr appended to the log.
    fn spawn(&self) -> Wings {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        Wings::spawn(&self.config, log.into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_readopts_every_server_on_docker() {
    kill_9_and_restart_readopts_every_server(Engine::Docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_readopts_every_server_on_podman() {
    kill_9_and_restart_readopts_every_server(Engine::Podman).await;
}

async fn kill_9_and_restart_readopts_every_server(engine: Engine) {
    let probe_dir = tempfile::tempdir().unwrap();
    if engine.runtime(probe_dir.path()).await.is_none() {
        return;
    }
    let setup = Setup::on(engine);
    let node_containers = |node, only_running| node_containers_on(engine, node, only_running);
    let inspect = |id: &str, format: &str| inspect_on(engine, id, format);
    let (node, c) = (setup.node, &setup.client);

    let mut daemon = setup.spawn();
    c.wait_up(T).await;

    // Create and start the servers; one more stays stopped.
    let mut ids = Vec::new();
    for _ in 0..SERVERS + 1 {
        let spec = busybox_spec();
        let (status, body) = c.post("/api/servers", serde_json::to_value(&spec).unwrap()).await;
        assert_eq!(status, 201, "{body}");
        ids.push(spec.id);
    }
    let (running, stopped) = ids.split_at(SERVERS);
    for id in running {
        let (status, body) = c.post(&format!("/api/servers/{id}/power?wait=true"), json!({ "action": "start" })).await;
        assert_eq!(status, 204, "{body}");
    }
    for id in running {
        c.wait_state(*id, "running", T).await;
        let (status, _) =
            c.post(&format!("/api/servers/{id}/commands"), json!({ "command": "before the crash" })).await;
        assert_eq!(status, 204);
    }
    let mut socket = console(&c.base, running[0], None).await;
    until(&mut socket, T, |e| is_line(e, "got: before the crash")).await;
    let started = |ids: Vec<String>| -> BTreeMap<String, String> {
        ids.into_iter().map(|id| (inspect(&id, "{{.State.StartedAt}}"), id)).map(|(at, id)| (id, at)).collect()
    };
    let before = started(node_containers(node, true));
    assert_eq!(before.len(), SERVERS, "one running container per started server");

    // kill -9, and the servers do not notice.
    daemon.kill9();
    drop(socket);
    assert_eq!(node_containers(node, true).len(), SERVERS, "containers survive the daemon");

    let mut daemon = setup.spawn();
    c.wait_up(T).await;
    for id in running {
        c.wait_state(*id, "running", T).await;
    }
    c.wait_state(stopped[0], "installed", T).await;
    let after = started(node_containers(node, true));
    assert_eq!(after, before, "same containers, same start times: none restarted, none added");
    assert_eq!(node_containers(node, false).len(), SERVERS, "no stray container (running or not)");
    for id in after.keys() {
        assert_eq!(inspect(id, "{{.RestartCount}}"), "0");
    }

    // The console is attached again: commands arrive, output is fanned out and replayed.
    for id in running {
        let (status, body) =
            c.post(&format!("/api/servers/{id}/commands"), json!({ "command": "after the restart" })).await;
        assert_eq!(status, 204, "{body}");
    }
    for id in running {
        let mut socket = console(&c.base, *id, None).await;
        until(&mut socket, T, |e| is_line(e, "got: after the restart")).await;
        send_command(&mut socket, "live again").await;
        until(&mut socket, T, |e| is_line(e, "got: live again")).await;
    }
    let (_, list) = c.get("/api/servers").await;
    assert_eq!(list.as_array().unwrap().len(), SERVERS + 1);

    // A second crash right after a state change: the stopped server stays stopped, the one
    // stopped through the API stays stopped too.
    let (status, _) =
        c.post(&format!("/api/servers/{}/power?wait=true", running[2]), json!({ "action": "stop" })).await;
    assert_eq!(status, 204);
    c.wait_state(running[2], "stopped", T).await;
    daemon.kill9();
    let mut daemon = setup.spawn();
    c.wait_up(T).await;
    c.wait_state(running[0], "running", T).await;
    c.wait_state(running[1], "running", T).await;
    c.wait_state(running[2], "stopped", T).await;
    assert_eq!(node_containers(node, true).len(), SERVERS - 1);

    // SIGTERM: clean exit, servers keep running.
    let status = daemon.terminate(T);
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        std::fs::read_to_string(&setup.log).unwrap_or_default()
    );
    assert_eq!(node_containers(node, true).len(), SERVERS - 1, "SIGTERM leaves servers running");
    let log_text = std::fs::read_to_string(&setup.log).unwrap();
    assert!(log_text.contains("servers keep running"), "{log_text}");
}

/// `kill -9` while an install script runs as root: the install container would run on, and
/// what it planted (a set-uid copy of a shell, a root-owned file) would stay in the server's
/// directory. The restarted daemon removes the container, hands the files to the server's
/// user with set-id bits cleared, and reports the install as failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_an_install_leaves_no_install_running_and_no_root_files() {
    use std::os::unix::fs::MetadataExt;
    if docker().await.is_none() {
        return;
    }
    let setup = Setup::new();
    let (dir, c) = (&setup.dir, &setup.client);
    let mut daemon = setup.spawn();
    c.wait_up(T).await;

    let mut spec = busybox_spec();
    spec.install.script =
        "cp /bin/busybox /mnt/server/suid; chmod 4755 /mnt/server/suid; echo x > /mnt/server/rootfile; sleep 600"
            .into();
    let (status, body) = c.post("/api/servers?install=true", serde_json::to_value(&spec).unwrap()).await;
    assert_eq!(status, 201, "{body}");
    let data = dir.path().join("volumes").join(spec.id.to_string());
    let planted = data.join("rootfile");
    let deadline = std::time::Instant::now() + T;
    while !planted.exists() {
        assert!(std::time::Instant::now() < deadline, "the install script never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let install_container = || {
        let out = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("name=nexus-install-{}", spec.id)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert!(!install_container().is_empty(), "the install runs in its container");
    assert_eq!(std::fs::metadata(data.join("suid")).unwrap().mode() & 0o4000, 0o4000);

    daemon.kill9();
    assert!(!install_container().is_empty(), "the install container outlives the daemon");
    let _daemon = setup.spawn();
    c.wait_up(T).await;
    c.wait_state(spec.id, "install_failed", T).await;
    assert_eq!(install_container(), "", "the interrupted install's container is removed");
    for name in ["suid", "rootfile"] {
        let meta = std::fs::symlink_metadata(data.join(name)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (988, 988), "{name} handed to the server's user");
        assert_eq!(meta.mode() & 0o6000, 0, "{name} keeps no set-id bit");
    }
}

/// `kill -9` while a server starts; its done line appears while the daemon is down. The
/// restarted daemon reads what the container printed since it started: the server becomes
/// `running` (it used to stay `starting` forever), and the console replay shows those lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_done_line_printed_while_the_daemon_is_down_is_seen_at_re_adoption() {
    if docker().await.is_none() {
        return;
    }
    let setup = Setup::new();
    let c = &setup.client;
    let mut daemon = setup.spawn();
    c.wait_up(T).await;

    let mut spec = busybox_spec();
    spec.startup = r#"echo booting; sleep 3; echo "server ready"; while read line; do echo "got: $line"; done"#.into();
    let id = spec.id;
    assert_eq!(c.post("/api/servers", serde_json::to_value(&spec).unwrap()).await.0, 201);
    let (status, body) = c.post(&format!("/api/servers/{id}/power?wait=true"), json!({ "action": "start" })).await;
    assert_eq!(status, 204, "{body}");
    let (_, details) = c.get(&format!("/api/servers/{id}")).await;
    assert_eq!(details["state"], "starting", "{details}");
    daemon.kill9();
    tokio::time::sleep(Duration::from_secs(5)).await;

    let _daemon = setup.spawn();
    c.wait_up(T).await;
    c.wait_state(id, "running", Duration::from_secs(10)).await;
    let mut socket = console(&c.base, id, None).await;
    until(&mut socket, Duration::from_secs(5), |e| is_line(e, "booting")).await;
    until(&mut socket, Duration::from_secs(5), |e| is_line(e, "server ready")).await;
}

/// Two daemons on one state directory would adopt, stop and restart the same containers: the
/// second one exits at start with an error naming the directory, and the first keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_state_directory_exits() {
    if docker().await.is_none() {
        return;
    }
    let setup = Setup::new();
    let _first = setup.spawn();
    setup.client.wait_up(T).await;
    let other = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let second_config = setup.dir.path().join("second.toml");
    std::fs::write(&second_config, toml::to_string(&config(setup.dir.path(), setup.node, other)).unwrap()).unwrap();
    let second_log = setup.dir.path().join("second.log");
    let mut second = Wings::spawn(&second_config, std::fs::File::create(&second_log).unwrap().into());
    let deadline = std::time::Instant::now() + T;
    let status = loop {
        if let Some(status) = second.0.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "the second daemon kept running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success(), "the second daemon exited with {status}");
    let said = std::fs::read_to_string(&second_log).unwrap();
    assert!(said.contains("already uses the state directory"), "{said}");
    let (status, _) = setup.client.get("/api/system").await;
    assert_eq!(status, 200, "the first daemon keeps serving");
}
