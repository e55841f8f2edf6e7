//! The HTTP/WebSocket API end to end, against the real Docker Engine (the whole walk also on
//! Podman) and busybox servers:
//! authentication, create → install → start → console → stop → destroy, the files
//! endpoints (traversal refused over HTTP), browser tokens (scope, permissions, expiry),
//! `/metrics` and `/api/system`; specs refused at create, status codes by the matching route
//! (a sweep over every route), console command rate limits.
//!
//! Needs Docker, Podman and `nexus-test/busybox:latest` (`scripts/images/busybox.sh`); skips
//! without them, fails under `CI=true`.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code: a failed expectation fails the test")]

mod support;

use nexus_agent::NoPanel;
use nexus_core::ids::{NodeId, ServerId};
use nexus_core::model::{ConfigFile, ConfigParser, FindValue, Permission};
use nexus_core::model::{DoneMatcher, StopMethod};
use nexus_core::runtime::PortBinding;
use nexus_core::transport::ServerSpec;
use nexus_wings::auth::{TokenClaims, TokenSigner};
use nexus_wings::config::Config;
use nexus_wings::daemon::Daemon;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use support::*;

const T: Duration = Duration::from_secs(30);

struct Running {
    client: Client,
    node: NodeId,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
    _cleanup: Cleanup,
}

/// A daemon on `engine`, or `None` without it (skip; a failure under `CI=true`).
async fn start_daemon(engine: Engine) -> Option<Running> {
    start_daemon_with(engine, |_| {}).await
}

/// A daemon on `engine` with the test configuration changed by `tweak`.
async fn start_daemon_with(engine: Engine, tweak: impl FnOnce(&mut Config)) -> Option<Running> {
    let dir = tempfile::tempdir().unwrap();
    let runtime = engine.runtime(&dir.path().join("install")).await?;
    let node = NodeId::new();
    let cleanup = Cleanup(node);
    let mut config = config(dir.path(), node, "127.0.0.1:0".parse().unwrap());
    if engine == Engine::Podman {
        config.runtime = nexus_wings::config::RuntimeKind::Podman;
        config.podman_socket = Engine::podman_socket().into();
    }
    tweak(&mut config);
    let config = config.resolve().unwrap();
    let daemon = Daemon::start(&config, runtime, Arc::new(NoPanel)).await.unwrap();
    let client = Client::new(daemon.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(daemon.serve(async move {
        let _ = stopped.await;
    }));
    Some(Running { client, node, stop: Some(stop), served, _dir: dir, _cleanup: cleanup })
}

fn signer() -> TokenSigner {
    TokenSigner::new(SECRET.as_bytes(), Duration::from_secs(900)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_end_to_end_on_docker() {
    http_api_end_to_end(Engine::Docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_end_to_end_on_podman() {
    http_api_end_to_end(Engine::Podman).await;
}

async fn http_api_end_to_end(engine: Engine) {
    let Some(mut daemon) = start_daemon(engine).await else { return };
    let c = daemon.client.clone();

    // --- authentication ---------------------------------------------------------------
    let (status, body) = read(c.http.get(c.url("/api/system")).send().await.unwrap()).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) =
        read(c.http.get(c.url("/api/servers")).bearer_auth("wrong-token-0123456789").send().await.unwrap()).await;
    assert_eq!(status, 401);
    let (status, _) =
        read(c.http.get(c.url("/api/servers")).header("authorization", TOKEN).send().await.unwrap()).await;
    assert_eq!(status, 401, "a token without the Bearer scheme is refused");
    let (status, system) = c.get("/api/system").await;
    assert_eq!(status, 200);
    assert!(system["cpu_count"].as_u64().unwrap() >= 1);
    assert!(system["memory_total_bytes"].as_u64().unwrap() > 0);
    assert_eq!(system["servers"], 0);
    assert_eq!(system["runtime"], engine.cli());
    let (status, body) = c.get("/api/nothing-here").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));

    // --- create + install ---------------------------------------------------------------
    // The install writes a config file; every start patches it (egg config files, through
    // the confined file manager).
    let mut spec = busybox_spec();
    let port = free_port();
    spec.allocations = vec![PortBinding { ip: "127.0.0.1".parse().unwrap(), port }];
    spec.install.script.push_str("; printf '# server\\nserver-port=1\\nmotd=old\\n' > /mnt/server/server.properties");
    spec.config_files = vec![ConfigFile {
        path: "server.properties".into(),
        parser: ConfigParser::Properties,
        find: vec![
            ("server-port".into(), FindValue::Text("{{server.build.default.port}}".into())),
            ("motd".into(), FindValue::Text("{{env.GREETING}}".into())),
        ],
    }];
    let id = spec.id;
    let (status, body) = c.post("/api/servers?install=true", serde_json::to_value(&spec).unwrap()).await;
    assert_eq!(status, 201, "{body}");
    c.wait_state(id, "installed", T).await;
    let (status, log) = c.get(&format!("/api/servers/{id}/install-log")).await;
    assert_eq!(status, 200);
    assert!(log.as_str().unwrap().contains("installing"), "{log}");
    let (status, list) = c.get("/api/servers").await;
    assert_eq!(status, 200);
    assert_eq!(list, json!([{ "server": id, "state": "installed" }]));
    let (status, body) = c.post("/api/servers", json!({ "id": "not a spec" })).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{body}");

    // --- power + console ----------------------------------------------------------------
    let mut socket = console(&c.base, id, None).await;
    let (status, body) = c.post(&format!("/api/servers/{id}/power?wait=true"), json!({ "action": "start" })).await;
    assert_eq!(status, 204, "{body}");
    let mut seen = until(&mut socket, T, |e| e["type"] == "state" && e["data"]["to"] == "running").await;
    if !seen.iter().any(|e| is_line(e, "server ready as")) {
        seen = until(&mut socket, T, |e| is_line(e, "server ready as")).await;
    }
    let ready = seen.iter().find(|e| is_line(e, "server ready as")).unwrap();
    assert_eq!(ready["data"]["text"], "server ready as hello $(id)", "values are never evaluated");
    send_command(&mut socket, "ping over ws").await;
    until(&mut socket, T, |e| is_line(e, "got: ping over ws")).await;
    // On a terminal, control characters would signal, freeze or detach the server's console
    // (^C, ^Z, ^S, ^P^Q): commands are text.
    for hostile in ["stop\u{3}", "\u{1a}", "\u{10}\u{11}", "\u{1b}[2J", "a\u{7f}"] {
        let (status, body) = c.post(&format!("/api/servers/{id}/commands"), json!({ "command": hostile })).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_command")), "{hostile:?}: {body}");
    }
    let (status, _) = c.post(&format!("/api/servers/{id}/commands"), json!({ "command": "ping over http" })).await;
    assert_eq!(status, 204);
    until(&mut socket, T, |e| is_line(e, "got: ping over http")).await;
    let (status, body) = c.post(&format!("/api/servers/{id}/power?wait=true"), json!({ "action": "jump" })).await;
    assert_eq!(status, 400, "{body}");

    let response = c.http.get(c.url(&format!("/api/servers/{id}/files/server.properties"))).bearer_auth(TOKEN);
    let properties = response.send().await.unwrap().text().await.unwrap();
    assert_eq!(properties, format!("# server\nserver-port={port}\nmotd=hello $(id)\n"));

    // A second client gets the replay.
    let mut second = console(&c.base, id, None).await;
    until(&mut second, T, |e| is_line(e, "got: ping over http")).await;
    drop(second);

    // --- files ------------------------------------------------------------------------
    files(&c, id).await;

    // --- browser tokens -----------------------------------------------------------------
    browser_tokens(&c, id).await;

    // --- stop, metrics, destroy ---------------------------------------------------------
    let (status, body) = c.post(&format!("/api/servers/{id}/power?wait=true"), json!({ "action": "stop" })).await;
    assert_eq!(status, 204, "{body}");
    until(&mut socket, T, |e| is_line(e, "bye")).await;
    c.wait_state(id, "stopped", T).await;

    let (status, metrics) = c.get("/metrics").await;
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(metrics.contains("process_resident_memory_bytes "), "{metrics}");
    assert!(metrics.contains("nexus_wings_servers{state=\"stopped\"} 1"), "{metrics}");
    assert!(metrics.contains("route=\"/api/servers/:id/power\",status=\"204\""), "{metrics}");
    // A node without a panel counts what it drops as dropped, never as sent.
    assert!(metrics.contains("nexus_wings_events_sent_total 0"), "{metrics}");
    assert!(!metrics.contains("nexus_wings_messages_dropped_total 0\n"), "{metrics}");
    nexus_conformance::promtool_accepts(&metrics);
    let (status, _) = read(c.http.get(c.url("/metrics")).send().await.unwrap()).await;
    assert_eq!(status, 401, "metrics need the token by default");

    let (status, body) = c.call(Method::DELETE, &format!("/api/servers/{id}"), None).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = c.get(&format!("/api/servers/{id}")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_server")));
    assert!(node_containers_on(engine, daemon.node, false).is_empty(), "nothing left on {engine:?}");
    let (status, body) = c.post(&format!("/api/servers/{}/power", ServerId::new()), json!({ "action": "start" })).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_server")));

    daemon.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(T, &mut daemon.served).await.unwrap().unwrap();
}

async fn files(c: &Client, id: ServerId) {
    let base = format!("/api/servers/{id}/files");
    let (status, listing) = c.get(&base).await;
    assert_eq!(status, 200, "{listing}");
    assert!(listing.as_array().unwrap().iter().any(|e| e["name"] == "installed.txt"), "{listing}");

    // Write, read back, list a directory.
    let put = |path: &str, body: &'static str| {
        c.http.put(c.url(&format!("{base}/{path}"))).bearer_auth(TOKEN).body(body).send()
    };
    let (status, entry) = read(put("config/a%20b.txt", "hello world\n").await.unwrap()).await;
    assert_eq!(status, 200, "{entry}");
    assert_eq!(entry["path"], "config/a b.txt");
    let response = c.http.get(c.url(&format!("{base}/config/a%20b.txt"))).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-length"], "12");
    assert_eq!(response.text().await.unwrap(), "hello world\n");
    let (status, listing) = c.get(&format!("{base}/config")).await;
    assert_eq!(status, 200);
    assert_eq!(listing[0]["name"], "a b.txt");

    // Traversal, over HTTP, in every spelling a client can send.
    for path in [
        "../../etc/passwd",
        "%2e%2e/%2e%2e/etc/passwd",
        "..%2f..%2fetc%2fpasswd",
        "config/../../../etc/passwd",
        "config/%2E%2E/%2e./.%2e/etc/passwd",
        "..%5c..%5cetc%5cpasswd",
    ] {
        let (status, body) = raw(&c.base, "GET", &format!("{base}/{path}"), "").await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("outside_root")), "{path}: {body}");
    }
    let (status, body) = raw(&c.base, "PUT", &format!("{base}/%2e%2e/escape.txt"), "x").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("outside_root")), "{body}");
    let (status, body) = raw(&c.base, "DELETE", &format!("{base}/../{id}"), "").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("outside_root")), "{body}");
    let (status, body) = raw(&c.base, "GET", &format!("{base}/%00etc"), "").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_path")), "{body}");
    let (status, body) =
        c.post(&format!("{base}/rename"), json!({ "from": "config/a b.txt", "to": "../../escaped.txt" })).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("outside_root")), "{body}");
    // The denylist from the spec applies.
    let (status, body) = read(put("secret.txt", "x").await.unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("denied")), "{body}");
    // The quota from the spec (64 MiB) refuses up front from the content-length.
    let (status, body) = raw_declared(&c.base, "PUT", &format!("{base}/big.bin"), 65 << 20, "").await;
    assert_eq!((status, body["error"]["code"].as_str()), (507, Some("quota_exceeded")), "{body}");

    // The POST operations.
    let ok = |(status, body): (u16, Value)| {
        assert!(status == 200 || status == 204, "{status} {body}");
        body
    };
    ok(c.post(&format!("{base}/mkdir"), json!({ "path": "world/region" })).await);
    ok(c.post(&format!("{base}/copy"), json!({ "from": "config/a b.txt", "to": "world/copy.txt" })).await);
    ok(c.post(&format!("{base}/rename"), json!({ "from": "world/copy.txt", "to": "world/region/moved.txt" })).await);
    ok(c.post(&format!("{base}/chmod"), json!({ "path": "world/region/moved.txt", "mode": "600" })).await);
    let (_, entry) = c.get(&format!("{base}/world/region")).await;
    assert_eq!(entry[0]["mode"], 0o600, "{entry}");
    let archive = ok(c
        .post(&format!("{base}/compress"), json!({ "files": ["world", "config"], "destination": "backup.tar.zst" }))
        .await);
    assert_eq!(archive["path"], "backup.tar.zst");
    let (status, _) = c.call(Method::DELETE, &format!("{base}/world"), None).await;
    assert_eq!(status, 204);
    let summary = ok(c.post(&format!("{base}/decompress"), json!({ "file": "backup.tar.zst" })).await);
    assert!(summary["entries"].as_u64().unwrap() >= 4, "{summary}");
    let (status, _) = c.get(&format!("{base}/world/region/moved.txt")).await;
    assert_eq!(status, 200);
    let (status, body) = c.post(&format!("{base}/explode"), json!({})).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = c.call(Method::DELETE, &format!("{base}/"), None).await;
    assert_eq!(status, 400, "the root cannot be deleted: {body}");
    let (status, body) = c.get(&format!("{base}/missing.txt")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
}

async fn browser_tokens(c: &Client, id: ServerId) {
    let s = signer();
    let read_only = s.mint(id, &[Permission::FileRead, Permission::ConsoleRead], Duration::from_secs(60));
    let files = format!("/api/servers/{id}/files");
    let get = |path: String, token: String| c.http.get(c.url(&path)).bearer_auth(token).send();

    let (status, _) = read(get(format!("{files}/config"), read_only.clone()).await.unwrap()).await;
    assert_eq!(status, 200, "file_read allows listing");
    let query = c.http.get(c.url(&format!("{files}/config?token={read_only}"))).send().await.unwrap();
    assert_eq!(query.status().as_u16(), 200, "?token= works too");
    let (status, body) =
        read(c.http.put(c.url(&format!("{files}/x.txt"))).bearer_auth(&read_only).body("x").send().await.unwrap())
            .await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "no file_write: {body}");

    // Scoped to another server.
    let other = s.mint(ServerId::new(), &Permission::ALL, Duration::from_secs(60));
    let (status, body) = read(get(format!("{files}/config"), other.clone()).await.unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
    let ws = c.url(&format!("/api/servers/{id}/console?token={other}"));
    let refused = c
        .http
        .get(ws)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);

    // Expired, forged, and on node-only routes.
    let expired = s.sign(&TokenClaims::new(id, Permission::ALL.to_vec(), chrono::Utc::now().timestamp() as u64 - 1));
    let (status, _) = read(get(format!("{files}/config"), expired).await.unwrap()).await;
    assert_eq!(status, 401, "expired");
    let forged = TokenSigner::new(b"not-the-secret-not-the-secret-xx", Duration::from_secs(900)).unwrap().mint(
        id,
        &Permission::ALL,
        Duration::from_secs(60),
    );
    let (status, _) = read(get(format!("{files}/config"), forged).await.unwrap()).await;
    assert_eq!(status, 401, "wrong secret");
    let all = s.mint(id, &Permission::ALL, Duration::from_secs(60));
    let (status, _) = read(c.http.get(c.url(&format!("{files}/config?token={TOKEN}"))).send().await.unwrap()).await;
    assert_eq!(status, 401, "the node token is not taken from the query string");
    let (status, _) = read(get("/api/servers".into(), all.clone()).await.unwrap()).await;
    assert_eq!(status, 401, "browser tokens are not accepted on node routes");
    let (status, _) = read(
        c.http
            .post(c.url(&format!("/api/servers/{id}/power")))
            .bearer_auth(&all)
            .json(&json!({"action":"kill"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);

    // Console with a read-only token: output yes, commands no.
    let mut socket = console(&c.base, id, Some(&read_only)).await;
    until(&mut socket, T, |e| is_line(e, "got: ping over http")).await;
    send_command(&mut socket, "should not arrive").await;
    until(&mut socket, T, |e| e["type"] == "error" && e["error"]["code"] == "forbidden").await;
    // With console_write it works.
    let writer = s.mint(id, &[Permission::ConsoleRead, Permission::ConsoleWrite], Duration::from_secs(60));
    let mut socket = console(&c.base, id, Some(&writer)).await;
    send_command(&mut socket, "from the browser").await;
    until(&mut socket, T, |e| is_line(e, "got: from the browser")).await;

    wings_protocol(c, id).await;

    // A console opened with a short-lived token is closed when the token expires, not kept
    // open for as long as the browser likes.
    let brief = s.mint(id, &[Permission::ConsoleRead, Permission::ConsoleWrite], Duration::from_secs(2));
    let mut socket = console(&c.base, id, Some(&brief)).await;
    until(&mut socket, T, |e| e["type"] == "error" && e["error"]["code"] == "token_expired").await;
    let after =
        tokio::time::timeout(T, futures::StreamExt::next(&mut socket)).await.expect("socket closes after expiry");
    assert!(
        matches!(after, None | Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) | Some(Err(_))),
        "{after:?}"
    );
}

/// The same console in Wings' protocol: `auth` first, permissions from the token, expiry
/// announced, re-auth on the same socket, and a socket left without a valid token closed.
async fn wings_protocol(c: &Client, id: ServerId) {
    let s = signer();
    let read_only = s.mint(id, &[Permission::ConsoleRead], Duration::from_secs(60));
    let writer = s.mint(id, &[Permission::ConsoleRead, Permission::ConsoleWrite], Duration::from_secs(60));
    let other = s.mint(ServerId::new(), &Permission::ALL, Duration::from_secs(60));

    let mut socket = wings_console(&c.base, id).await;
    wings_send(&mut socket, "auth", &[&other]).await;
    until(&mut socket, T, |e| is_wings(e, "jwt error", "connect permission")).await;

    // Everything the socket says is kept, so a command that should have been ignored cannot
    // hide in events read while waiting for something else.
    let mut all = Vec::new();
    let mut socket = wings_console(&c.base, id).await;
    wings_send(&mut socket, "send command", &["before auth"]).await;
    wings_send(&mut socket, "auth", &[&read_only]).await;
    all.extend(until(&mut socket, T, |e| e["event"] == "auth success").await);
    all.extend(until(&mut socket, T, |e| is_wings(e, "status", "running")).await);
    // Without console_write a command is ignored, as Wings does; then the same socket takes a
    // token that allows it.
    wings_send(&mut socket, "send command", &["not allowed"]).await;
    wings_send(&mut socket, "auth", &[&writer]).await;
    all.extend(until(&mut socket, T, |e| e["event"] == "auth success").await);
    wings_send(&mut socket, "send command", &["from wings"]).await;
    all.extend(until(&mut socket, T, |e| is_wings(e, "console output", "got: from wings")).await);
    let ignored =
        |e: &Value| is_wings(e, "console output", "not allowed") || is_wings(e, "console output", "before auth");
    assert!(!all.iter().any(ignored), "{all:?}");
    wings_send(&mut socket, "send stats", &[]).await;
    let seen = until(&mut socket, T, |e| e["event"] == "stats").await;
    let stats: Value = serde_json::from_str(seen.last().unwrap()["args"][0].as_str().unwrap()).unwrap();
    assert_eq!(stats["state"], "running", "{stats}");
    wings_send(&mut socket, "send logs", &[]).await;
    let logs = until(&mut socket, T, |e| is_wings(e, "console output", "got: from wings")).await;
    assert!(logs.iter().any(|e| is_wings(e, "console output", "got: ping over http")), "the replay: {logs:?}");
    assert!(!logs.iter().any(ignored), "never ran, so never replayed: {logs:?}");
    wings_send(&mut socket, "no such event", &[]).await;

    // A token about to end is announced, then its end; events stop and commands are refused
    // until a fresh token arrives.
    let brief = || s.mint(id, &[Permission::ConsoleRead, Permission::ConsoleWrite], Duration::from_secs(2));
    let mut socket = wings_console(&c.base, id).await;
    wings_send(&mut socket, "auth", &[&brief()]).await;
    until(&mut socket, T, |e| e["event"] == "token expiring").await;
    until(&mut socket, T, |e| e["event"] == "token expired").await;
    wings_send(&mut socket, "send command", &["after expiry"]).await;
    until(&mut socket, T, |e| is_wings(e, "jwt error", "exp")).await;
    wings_send(&mut socket, "auth", &[&writer]).await;
    until(&mut socket, T, |e| e["event"] == "auth success").await;
    wings_send(&mut socket, "send command", &["renewed"]).await;
    let seen = until(&mut socket, T, |e| is_wings(e, "console output", "got: renewed")).await;
    assert!(!seen.iter().any(|e| is_wings(e, "console output", "after expiry")), "{seen:?}");

    // Left without a valid token, the socket closes (and gives its console slot back).
    let mut socket = wings_console(&c.base, id).await;
    wings_send(&mut socket, "auth", &[&brief()]).await;
    until(&mut socket, T, |e| e["event"] == "token expired").await;
    let closed = tokio::time::timeout(T, async {
        loop {
            match futures::StreamExt::next(&mut socket).await {
                None | Some(Err(_)) | Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the socket stayed open after its token expired");
}

impl Running {
    async fn shutdown(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(T, &mut self.served).await.unwrap().unwrap();
    }
}

/// One change to a valid spec.
type Change = Box<dyn Fn(&mut ServerSpec)>;

/// One impossible value per case, and the field the 422 must name.
fn impossible_specs() -> Vec<(&'static str, Change)> {
    vec![
        ("limits.memory_mb", Box::new(|s| s.limits.memory_mb = 1)),
        ("limits.memory_mb", Box::new(|s| s.limits.memory_mb = 1 << 63)),
        ("limits.swap_mb", Box::new(|s| s.limits.swap_mb = -7)),
        ("limits.io_weight", Box::new(|s| s.limits.io_weight = 5000)),
        ("limits.cpu_percent", Box::new(|s| s.limits.cpu_percent = u64::MAX)),
        ("limits.pids", Box::new(|s| s.limits.pids = 1)),
        ("environment.STARTUP", Box::new(|s| drop(s.environment.insert("STARTUP".into(), "x".into())))),
        ("environment.SERVER_MEMORY", Box::new(|s| drop(s.environment.insert("SERVER_MEMORY".into(), "1".into())))),
        ("environment.P_SERVER_UUID", Box::new(|s| drop(s.environment.insert("P_SERVER_UUID".into(), "1".into())))),
        ("environment.A=B", Box::new(|s| drop(s.environment.insert("A=B".into(), "1".into())))),
        ("environment.", Box::new(|s| drop(s.environment.insert(String::new(), "1".into())))),
        ("environment.GREETING", Box::new(|s| drop(s.environment.insert("GREETING".into(), "a\0b".into())))),
        ("image", Box::new(|s| s.image.clear())),
        ("install.container", Box::new(|s| s.install.container = "two words".into())),
        ("file_denylist[1]", Box::new(|s| s.file_denylist.push("logs/[z-a].log".into()))),
        ("done[0]", Box::new(|s| s.done = vec![DoneMatcher::Regex("ready (".into())])),
        (
            "allocations[0]",
            Box::new(|s| s.allocations = vec![PortBinding { ip: "127.0.0.1".parse().unwrap(), port: 0 }]),
        ),
        (
            "allocations[1]",
            Box::new(|s| s.allocations = vec![PortBinding { ip: "127.0.0.1".parse().unwrap(), port: 4000 }; 2]),
        ),
        ("stop", Box::new(|s| s.stop = StopMethod::Command("stop\nrm -rf /".into()))),
        ("startup", Box::new(|s| s.startup.clear())),
        // Only the daemon's startup renderer sees these two.
        ("startup", Box::new(|s| s.startup = "echo 'unterminated".into())),
        // A value bash would evaluate as arithmetic (the spec's GREETING is `hello $(id)`).
        ("environment.GREETING", Box::new(|s| s.startup = "[[ {{GREETING}} -eq 1 ]] && echo one".into())),
        ("id", Box::new(|s| s.id = ServerId(uuid::Uuid::nil()))),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_specs_are_refused_at_create() {
    let Some(daemon) = start_daemon(Engine::Docker).await else { return };
    let c = daemon.client.clone();
    for (field, change) in impossible_specs() {
        let mut spec = busybox_spec();
        change(&mut spec);
        let (status, body) = c.post("/api/servers", serde_json::to_value(&spec).unwrap()).await;
        assert_eq!(status, 422, "{field}: {body}");
        assert_eq!(body["error"]["code"], "invalid_spec", "{field}: {body}");
        assert_eq!(body["error"]["field"], field, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().starts_with(field), "{body}");
    }
    let (_, list) = c.get("/api/servers").await;
    assert_eq!(list, json!([]), "nothing refused was stored");
    let (status, body) = c.post("/api/servers", serde_json::to_value(busybox_spec()).unwrap()).await;
    assert_eq!(status, 201, "{body}");
    daemon.shutdown().await;
}

/// Every route: method, path (`{id}` for the server id), whether it takes a JSON body, and a
/// body that route accepts.
const ROUTES: &[(&str, &str, Option<&str>)] = &[
    ("GET", "/api/system", None),
    ("GET", "/api/servers", None),
    ("POST", "/api/servers", Some("SPEC")),
    ("GET", "/api/servers/{id}", None),
    ("DELETE", "/api/servers/{id}", None),
    ("POST", "/api/servers/{id}/power", Some(r#"{"action":"kill"}"#)),
    ("POST", "/api/servers/{id}/install", None),
    ("POST", "/api/servers/{id}/commands", Some(r#"{"command":"hi"}"#)),
    ("GET", "/api/servers/{id}/install-log", None),
    ("GET", "/api/servers/{id}/console", None),
    ("GET", "/api/servers/{id}/files/a.txt", None),
    ("PUT", "/api/servers/{id}/files/a.txt", None),
    ("DELETE", "/api/servers/{id}/files/a.txt", None),
    ("POST", "/api/servers/{id}/files/mkdir", Some(r#"{"path":"d"}"#)),
    ("GET", "/metrics", None),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_codes_come_from_the_matching_route() {
    let Some(daemon) = start_daemon_with(Engine::Docker, |c| c.max_json_body_bytes = 64 * 1024).await else { return };
    let c = daemon.client.clone();
    let spec = || serde_json::to_string(&busybox_spec()).unwrap();
    let json_type = ("content-type", "application/json");

    // The reported cases.
    let (status, body) = raw_with(
        &c.base,
        "POST",
        "/api/servers",
        &[("content-type", "text/plain"), ("content-length", &spec().len().to_string())],
        spec().as_bytes(),
    )
    .await;
    assert_eq!((status, body["error"]["code"].as_str()), (415, Some("unsupported_media_type")), "{body}");
    let (status, body) = c.post("/api/servers?install=maybe", serde_json::to_value(busybox_spec()).unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("true"), "{body}");
    let (status, body) = c.post("/api/servers?instal=true", serde_json::to_value(busybox_spec()).unwrap()).await;
    assert_eq!(status, 400, "an unknown parameter is refused, not ignored: {body}");
    let chunked_spec = chunked(spec().as_bytes());
    let (status, body) =
        raw_with(&c.base, "POST", "/api/servers", &[json_type, ("transfer-encoding", "chunked")], &chunked_spec).await;
    assert_eq!(status, 201, "a chunked body under the limit is accepted: {body}");
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(256 * 1024));
    let (status, body) = raw_with(
        &c.base,
        "POST",
        "/api/servers",
        &[json_type, ("transfer-encoding", "chunked")],
        &chunked(big.as_bytes()),
    )
    .await;
    assert_eq!((status, body["error"]["code"].as_str()), (413, Some("payload_too_large")), "{body}");
    let (status, body) = c.get("/api/servers/not-a-uuid").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_id")), "{body}");
    assert_eq!(body["error"]["field"], "id");
    assert!(body["error"]["message"].as_str().unwrap().contains("not-a-uuid"), "{body}");

    // The sweep: every route, every way of getting it wrong.
    let unknown = ServerId::new().to_string();
    for &(method, template, json_body) in ROUTES {
        let path = template.replace("{id}", &unknown);
        // A method no route serves on this path.
        let (status, body) = raw(&c.base, "PATCH", &path, "").await;
        assert_eq!((status, body["error"]["code"].as_str()), (405, Some("method_not_allowed")), "PATCH {path}: {body}");
        if template.contains("{id}") {
            let bad = template.replace("{id}", "12345");
            let (status, body) = raw(&c.base, method, &bad, "").await;
            assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_id")), "{method} {bad}: {body}");
        }
        if template.contains("{id}") && !template.contains("/files/") {
            // (Below `files/` any path is a file path.)
            let (status, body) = raw(&c.base, method, &format!("{path}/nothing/here"), "").await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (404, Some("not_found")),
                "{method} {path}/nothing/here: {body}"
            );
        }
        let Some(json_body) = json_body else { continue };
        let json_body = if json_body == "SPEC" { spec() } else { json_body.to_owned() };
        let length = json_body.len().to_string();
        for content_type in ["text/plain", "application/x-www-form-urlencoded", "application/xml"] {
            let headers = [("content-type", content_type), ("content-length", length.as_str())];
            let (status, body) = raw_with(&c.base, method, &path, &headers, json_body.as_bytes()).await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (415, Some("unsupported_media_type")),
                "{method} {path} as {content_type}: {body}"
            );
        }
        let headers = [json_type, ("transfer-encoding", "chunked")];
        let (status, body) = raw_with(&c.base, method, &path, &headers, &chunked(json_body.as_bytes())).await;
        assert!(matches!(status, 201 | 204 | 404), "{method} {path} chunked: {status} {body}");
        if status == 404 {
            assert_eq!(body["error"]["code"], "unknown_server", "{method} {path} chunked: {body}");
        }
        let (status, body) = raw_with(&c.base, method, &path, &[json_type, ("content-length", "3")], b"{]}").await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{method} {path}: {body}");
    }
    let (status, body) = raw(&c.base, "GET", "/api/nothing", "").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_commands_are_rate_limited() {
    let Some(daemon) = start_daemon_with(Engine::Docker, |c| {
        c.node_commands_per_second = 5;
        c.node_command_burst = 10;
    })
    .await
    else {
        return;
    };
    let c = daemon.client.clone();
    let spec = busybox_spec();
    let id = spec.id;
    let (status, body) = c.post("/api/servers", serde_json::to_value(&spec).unwrap()).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = c.post(&format!("/api/servers/{id}/power?wait=true"), json!({ "action": "start" })).await;
    assert_eq!(status, 204, "{body}");
    c.wait_state(id, "running", T).await;

    // A browser floods the console: the burst (40) and 20 per second get through, the rest
    // is refused on the socket, which stays open.
    let writer = signer().mint(id, &[Permission::ConsoleRead, Permission::ConsoleWrite], Duration::from_secs(120));
    let mut socket = console(&c.base, id, Some(&writer)).await;
    const N: usize = 500;
    let started = std::time::Instant::now();
    for i in 0..N {
        send_command(&mut socket, &format!("flood {i}")).await;
    }
    let mut refused = 0usize;
    let mut accepted = std::collections::BTreeSet::new();
    let mut other_errors = Vec::new();
    // Every command is answered: refused ones by an error, accepted ones by their echo.
    while refused + accepted.len() < N {
        let seen = until(&mut socket, T, |e| e["type"] == "error" || is_line(e, "got: flood ")).await;
        let last = seen.last().unwrap();
        if last["type"] == "error" {
            if last["error"]["code"] == "rate_limited" {
                refused += 1;
            } else {
                other_errors.push(last.clone());
            }
        } else {
            let text = last["data"]["text"].as_str().unwrap();
            accepted.insert(text.trim_start_matches("got: flood ").parse::<usize>().unwrap());
        }
        assert!(other_errors.is_empty(), "{other_errors:?}");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ceiling = 40.0 + 20.0 * elapsed + 1.0;
    assert!(accepted.len() >= 40, "the burst is accepted: {} of {N}", accepted.len());
    assert!(
        (accepted.len() as f64) <= ceiling,
        "{} of {N} accepted in {elapsed:.2} s; at most {ceiling:.0} allowed",
        accepted.len()
    );
    assert_eq!(accepted.len() + refused, N);
    // The daemon still answers, and the same socket works again once the bucket refills.
    let (status, _) = c.get("/api/system").await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    send_command(&mut socket, "after the flood").await;
    until(&mut socket, T, |e| is_line(e, "got: after the flood")).await;

    // The node token has its own bucket (here 10 at once, 5 per second), on HTTP too.
    let mut statuses = Vec::new();
    let started = std::time::Instant::now();
    for i in 0..30 {
        let (status, body) =
            c.post(&format!("/api/servers/{id}/commands"), json!({ "command": format!("node {i}") })).await;
        if status == 429 {
            assert_eq!(body["error"]["code"], "rate_limited", "{body}");
        }
        statuses.push(status);
    }
    let ceiling = 10.0 + 5.0 * started.elapsed().as_secs_f64() + 1.0;
    let ok = statuses.iter().filter(|s| **s == 204).count();
    assert!(ok >= 10 && ok as f64 <= ceiling, "node token: {ok} of 30 accepted, at most {ceiling:.0}: {statuses:?}");
    assert_eq!(ok + statuses.iter().filter(|s| **s == 429).count(), 30, "{statuses:?}");

    let (status, _) = c.post(&format!("/api/servers/{id}/power?wait=true"), json!({ "action": "kill" })).await;
    assert_eq!(status, 204);
    daemon.shutdown().await;
}

/// As Wings: a power action answers `202 Accepted` at once, even a stop that takes the whole
/// stop timeout; the outcome arrives as state changes, a failure as a console notice.
/// `?wait=true` keeps the old way (answer when done, typed errors).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_actions_answer_at_once() {
    let Some(daemon) = start_daemon_with(Engine::Docker, |c| c.stop_timeout_secs = 8).await else { return };
    let c = daemon.client.clone();
    let mut spec = busybox_spec();
    // Ignores its stop command: the stop waits for the timeout, then kills.
    spec.startup = "echo 'server ready'; while true; do sleep 1; done".into();
    let id = spec.id;
    assert_eq!(c.post("/api/servers", serde_json::to_value(&spec).unwrap()).await.0, 201);
    let (status, body) = c.post(&format!("/api/servers/{id}/power"), json!({ "action": "start" })).await;
    assert_eq!(status, 202, "{body}");
    c.wait_state(id, "running", Duration::from_secs(60)).await;

    let asked = std::time::Instant::now();
    let (status, body) = c.post(&format!("/api/servers/{id}/power"), json!({ "action": "stop" })).await;
    assert_eq!(status, 202, "{body}");
    assert!(asked.elapsed() < Duration::from_secs(4), "the stop call waited {:?}", asked.elapsed());
    c.wait_state(id, "stopping", Duration::from_secs(5)).await;
    // Behind the stop, in order, at most 4 actions wait; a burst past that is refused.
    for expected in [202, 202, 202, 202, 429] {
        let (status, body) = c.post(&format!("/api/servers/{id}/power"), json!({ "action": "start" })).await;
        assert_eq!(status, expected, "{body}");
    }
    // The first start after the stop brings the server back; the others find it running.
    c.wait_state(id, "running", Duration::from_secs(60)).await;
    let (status, _) = c.post(&format!("/api/servers/{id}/power?wait=true"), json!({ "action": "kill" })).await;
    assert_eq!(status, 204);
    c.wait_state(id, "stopped", Duration::from_secs(60)).await;

    // A failure in the background is told on the console.
    let mut broken = busybox_spec();
    broken.image = "nexus-test/absent:latest".into();
    let broken_id = broken.id;
    assert_eq!(c.post("/api/servers", serde_json::to_value(&broken).unwrap()).await.0, 201);
    let mut socket = console(&c.base, broken_id, None).await;
    let (status, _) = c.post(&format!("/api/servers/{broken_id}/power"), json!({ "action": "start" })).await;
    assert_eq!(status, 202);
    until(&mut socket, Duration::from_secs(10), |e| {
        e["type"] == "notice"
            && e["data"].as_str().is_some_and(|t| t.starts_with("start failed") && t.contains("nexus-test/absent"))
    })
    .await;
    // Waiting callers get the typed error.
    let (status, body) =
        c.post(&format!("/api/servers/{broken_id}/power?wait=true"), json!({ "action": "start" })).await;
    assert!(status >= 400, "{status} {body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("nexus-test/absent"), "{body}");
    let (status, _) = c.post(&format!("/api/servers/{}/power", ServerId::new()), json!({ "action": "kill" })).await;
    assert_eq!(status, 404);
}
