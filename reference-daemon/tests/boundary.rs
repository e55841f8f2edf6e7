//! The node as a tenant boundary, end to end on Docker through the daemon's API: what a
//! server's process and its install script can leave on the host, disk limits against the
//! server's own writes, installs that never end, and who sees install output.
//!
//! Needs Docker and `nexus-test/busybox:latest`; skips without them, fails under `CI=true`.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code: a failed expectation fails the test")]

mod support;

use nexus_core::model::Permission;
use nexus_wings::auth::TokenSigner;
use serde_json::{Value, json};
use std::os::unix::fs::MetadataExt as _;
use std::time::{Duration, Instant};
use support::*;

const T: Duration = Duration::from_secs(60);
const USER: (u32, u32) = (988, 988);

/// An install script running as root leaves a set-uid-root binary and tries a device node;
/// the server then runs as the unprivileged user. On the host: the data root and the server
/// directory are private, everything inside belongs to the container user with no set-id bit,
/// no device node exists, and the install log (which echoes secrets) is private too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_servers_leave_on_the_host_is_inert() {
    let Some(docker) = docker().await else { return };
    let daemon = TestDaemon::start(docker, |_| {}).await;
    let c = &daemon.client;
    let mut spec = busybox_spec();
    spec.install.script = "id -u; cp /bin/busybox /mnt/server/suid; chmod 4755 /mnt/server/suid; \
        chmod 2755 /mnt/server; mknod /mnt/server/dev c 1 3 || echo mknod-refused; echo secret=hunter2"
        .into();
    spec.startup = r#"echo "uid=$(id -u)"; echo "server ready"; while read line; do :; done"#.into();
    let id = spec.id;
    let (status, body) = c.post("/api/servers?install=true", serde_json::to_value(&spec).unwrap()).await;
    assert_eq!(status, 201, "{body}");
    c.wait_state(id, "installed", T).await;

    let root = daemon.dir.path().join("volumes");
    assert_eq!(std::fs::metadata(&root).unwrap().mode() & 0o777, 0o700, "data root is private");
    let dir = daemon.data_dir(id);
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o700, USER.0, USER.1), "server dir");
    let suid = std::fs::metadata(dir.join("suid")).unwrap();
    assert_eq!((suid.uid(), suid.gid()), USER, "installed files belong to the container user");
    assert_eq!(suid.mode() & 0o6000, 0, "set-id bits cleared: {:o}", suid.mode());
    assert!(!dir.join("dev").exists(), "no device node on the host");
    let log_path = root.join(".install-logs").join(format!("{id}.log"));
    assert_eq!(std::fs::metadata(&log_path).unwrap().mode() & 0o777, 0o600, "install log is private");
    assert_eq!(std::fs::metadata(log_path.parent().unwrap()).unwrap().mode() & 0o777, 0o700);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("mknod-refused") && log.lines().any(|l| l == "0"),
        "installs run as root without mknod: {log}"
    );

    // Install output is only for callers with install_read.
    let signer = TokenSigner::new(SECRET.as_bytes(), Duration::from_secs(900)).unwrap();
    let mint = |permissions: Vec<Permission>| signer.mint(id, &permissions, Duration::from_secs(300));
    for (token, sees) in [
        (mint(vec![Permission::ConsoleRead]), false),
        (mint(vec![Permission::ConsoleRead, Permission::InstallRead]), true),
    ] {
        let mut socket = console(&c.base, id, Some(&token)).await;
        let events = until(&mut socket, T, |e| e["type"] == "state").await;
        let install_lines: Vec<&Value> = events.iter().filter(|e| e["type"] == "install").collect();
        assert_eq!(!install_lines.is_empty(), sees, "install output visible: {sees}; got {events:?}");
    }

    let (status, body) = c.post(&format!("/api/servers/{id}/power?wait=true"), json!({"action": "start"})).await;
    assert_eq!(status, 204, "{body}");
    let mut socket = console(&c.base, id, None).await;
    until(&mut socket, T, |e| is_line(e, &format!("uid={}", USER.0))).await;
}

/// A server whose own process writes past its disk limit is stopped by the periodic check,
/// cannot start again while over it, and API writes are refused; freeing space lets it start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_limit_holds_against_the_servers_own_writes() {
    let Some(docker) = docker().await else { return };
    let daemon = TestDaemon::start(docker, |c| c.disk_check_interval_secs = 1).await;
    let c = &daemon.client;
    let mut spec = busybox_spec();
    spec.limits.disk_mb = 2;
    spec.startup =
        r#"echo "server ready"; dd if=/dev/zero of=big bs=1048576 count=6; echo wrote; while read line; do :; done"#
            .into();
    let id = spec.id;
    let (status, body) = c.post("/api/servers", serde_json::to_value(&spec).unwrap()).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = c.post(&format!("/api/servers/{id}/power?wait=true"), json!({"action": "start"})).await;
    assert_eq!(status, 204, "{body}");
    let mut socket = console(&c.base, id, None).await;
    until(&mut socket, T, |e| is_line(e, "wrote")).await;
    // The watcher measures, reports, and stops the server.
    until(&mut socket, T, |e| {
        e["type"] == "notice" && e["data"].as_str().is_some_and(|t| t.contains("over its limit"))
    })
    .await;
    c.wait_state(id, "stopped", T).await;
    let (_, details) = c.get(&format!("/api/servers/{id}")).await;
    assert!(details["disk_bytes"].as_u64().unwrap() >= 6 << 20, "usage reported: {details}");

    let (status, body) = c.post(&format!("/api/servers/{id}/power?wait=true"), json!({"action": "start"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (507, Some("over_disk_quota")), "{body}");
    let put = c.http.put(c.url(&format!("/api/servers/{id}/files/more.txt"))).bearer_auth(TOKEN).body("x".repeat(4096));
    let (status, body) = read(put.send().await.unwrap()).await;
    assert_eq!(status, 507, "a write over the limit is refused: {body}");

    let (status, body) = c.call(reqwest::Method::DELETE, &format!("/api/servers/{id}/files/big"), None).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = c.post(&format!("/api/servers/{id}/power?wait=true"), json!({"action": "start"})).await;
    assert_eq!(status, 204, "under the limit again, it starts: {body}");
}

/// An install that never ends fails after the node's install timeout; a removal during a
/// running install cancels it at once and leaves no container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_installs_time_out_and_removal_cancels_them() {
    let Some(docker) = docker().await else { return };
    let daemon = TestDaemon::start(docker, |c| c.install_timeout_secs = 3).await;
    let c = &daemon.client;
    let mut spec = busybox_spec();
    spec.install.script = "echo started; sleep 600".into();
    let id = spec.id;
    let (status, body) = c.post("/api/servers?install=true", serde_json::to_value(&spec).unwrap()).await;
    assert_eq!(status, 201, "{body}");
    c.wait_state(id, "install_failed", T).await;
    let (_, log) = c.get(&format!("/api/servers/{id}/install-log")).await;
    let log = log.as_str().map(str::to_owned).unwrap_or_else(|| log.to_string());
    assert!(log.contains("longer than"), "the log says why: {log}");

    let daemon = TestDaemon::start(daemon_docker().await, |_| {}).await;
    let c = &daemon.client;
    let mut spec = busybox_spec();
    spec.install.script = "echo started; sleep 600".into();
    let id = spec.id;
    let (status, body) = c.post("/api/servers?install=true", serde_json::to_value(&spec).unwrap()).await;
    assert_eq!(status, 201, "{body}");
    c.wait_state(id, "installing", T).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = Instant::now();
    let (status, body) = c.call(reqwest::Method::DELETE, &format!("/api/servers/{id}"), None).await;
    assert_eq!(status, 204, "removal during an install: {body}");
    assert!(asked.elapsed() < Duration::from_secs(30), "removal waited for the script: {:?}", asked.elapsed());
    assert!(node_containers(daemon.node, false).is_empty(), "nothing left behind");
}

async fn daemon_docker() -> nexus_runtime_docker::DockerRuntime {
    docker().await.expect("docker was there a moment ago")
}

/// A tenant can edit the config files the egg patches (the game and the file API write them).
/// Hostile ones, in every format (deeply nested, oversized, one-line giants), are left alone
/// with a console notice naming the file and the server starts, as with Wings; the daemon
/// keeps answering meanwhile and survives (the XML case used to overflow the stack and abort
/// the daemon at every start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_config_files_are_left_alone_and_the_daemon_answers() {
    use nexus_core::model::{ConfigFile, ConfigParser, FindValue};
    let Some(docker) = docker().await else { return };
    let daemon = TestDaemon::start(docker, |_| {}).await;
    let c = &daemon.client;
    let deep = 50_000;
    let cases: Vec<(&str, ConfigParser, String)> = vec![
        ("deep.xml", ConfigParser::Xml, format!("{}{}", "<a>".repeat(deep), "</a>".repeat(deep))),
        ("deep.yml", ConfigParser::Yaml, format!("a: {}", "[".repeat(deep))),
        ("deep.json", ConfigParser::Json, format!("{}{}", "[".repeat(deep), "]".repeat(deep))),
        ("deep.toml", ConfigParser::Toml, format!("a = {}{}", "[".repeat(deep), "]".repeat(deep))),
        ("huge.ini", ConfigParser::Ini, "x".repeat(9 << 20)),
        ("huge.properties", ConfigParser::Properties, "k=v\n".repeat(3 << 20)),
    ];
    for (path, parser, text) in cases {
        let mut spec = busybox_spec();
        spec.limits.disk_mb = 0;
        spec.config_files =
            vec![ConfigFile { path: path.into(), parser, find: vec![("a.b".into(), FindValue::Text("1".into()))] }];
        let id = spec.id;
        assert_eq!(c.post("/api/servers", serde_json::to_value(&spec).unwrap()).await.0, 201);
        let text_len = text.len() as u64;
        std::fs::write(daemon.data_dir(id).join(path), text).unwrap();
        let start = tokio::spawn({
            let c = c.clone();
            async move { c.post(&format!("/api/servers/{id}/power?wait=true"), json!({"action": "start"})).await }
        });
        // The daemon answers while the start is being prepared.
        let (status, _) = c.get("/api/system").await;
        assert_eq!(status, 200, "{path}: the daemon stopped answering");
        let (status, body) = start.await.unwrap();
        assert_eq!(status, 204, "{path}: {body}");
        c.wait_state(id, "running", Duration::from_secs(60)).await;
        let mut socket = console(&c.base, id, None).await;
        until(&mut socket, Duration::from_secs(10), |e| {
            e["type"] == "notice" && e["data"].as_str().is_some_and(|t| t.contains(path) && t.contains("not updated"))
        })
        .await;
        assert_eq!(std::fs::metadata(daemon.data_dir(id).join(path)).unwrap().len(), text_len, "{path} changed");
        let (status, _) = c.post(&format!("/api/servers/{id}/power?wait=true"), json!({"action": "kill"})).await;
        assert_eq!(status, 204, "{path}: the daemon survived");
    }
}

/// The community's images run as `USER container` (uid 1000 in them). As with Wings, the node
/// runs the server as its configured user, owner of the server's directory: an egg on such an
/// image installs (as root, in the install container), starts and writes its own files; the
/// files the install left are the server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_egg_on_an_image_with_an_unprivileged_user_writes_its_files() {
    let Some(docker) = docker().await else { return };
    let daemon = TestDaemon::start(docker, |_| {}).await;
    let c = &daemon.client;
    let mut spec = busybox_spec();
    spec.image = "nexus-test/busybox-user:latest".into();
    spec.install.script = "mkdir -p /mnt/server/config && echo 'motd=hi' > /mnt/server/config/server.cfg".into();
    spec.startup = r#"echo "$(id -u) $(pwd)" > whoami.txt && echo more >> config/server.cfg && mkdir -p world && echo level > world/level.dat && echo 'server ready'; while read line; do echo "got: $line"; done"#.into();
    let id = spec.id;
    let (status, body) = c.post("/api/servers?install=true", serde_json::to_value(&spec).unwrap()).await;
    assert_eq!(status, 201, "{body}");
    c.wait_state(id, "installed", T).await;
    let (status, body) = c.post(&format!("/api/servers/{id}/power?wait=true"), json!({"action": "start"})).await;
    assert_eq!(status, 204, "{body}");
    c.wait_state(id, "running", T).await;
    let dir = daemon.data_dir(id);
    assert_eq!(std::fs::read_to_string(dir.join("whoami.txt")).unwrap().trim(), "988 /home/container");
    assert_eq!(std::fs::read_to_string(dir.join("config/server.cfg")).unwrap(), "motd=hi\nmore\n");
    for file in ["whoami.txt", "config/server.cfg", "world/level.dat"] {
        let meta = std::fs::metadata(dir.join(file)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (988, 988), "{file}");
    }
}
