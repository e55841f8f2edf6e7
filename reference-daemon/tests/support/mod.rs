//! Shared by the daemon's tests (Docker, and Podman where a test runs on both): a busybox server spec, the daemon's configuration,
//! HTTP and WebSocket helpers, container counting and cleanup by the node label.

#![allow(dead_code, reason = "each test binary uses a subset")]

use futures::{SinkExt as _, StreamExt as _};
use nexus_agent::NODE_LABEL;
use nexus_conformance::require_service;
use nexus_conformance::runtime::BUSYBOX_IMAGE;
use nexus_core::ids::{NodeId, ServerId};
use nexus_core::model::{DoneMatcher, EggScript, ServerLimits, StopMethod};
use nexus_core::runtime::Runtime;
use nexus_core::transport::ServerSpec;
use nexus_runtime_docker::DockerRuntime;
use nexus_wings::config::Config;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// The node token of every test daemon.
pub const TOKEN: &str = "test-node-token-0123456789";
/// The browser token secret of every test daemon.
pub const SECRET: &str = "test-token-secret-0123456789abcdef-xyz";

/// A container engine the daemon's tests run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// The local Docker Engine.
    Docker,
    /// `podman system service` (`NEXUS_TEST_PODMAN_SOCKET`, else Podman's default socket).
    Podman,
}

impl Engine {
    /// Its CLI, and the runtime name `/api/system` reports.
    pub fn cli(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Podman => "podman",
        }
    }

    /// The engine's socket for Podman.
    pub fn podman_socket() -> String {
        std::env::var("NEXUS_TEST_PODMAN_SOCKET")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| nexus_runtime_podman::DEFAULT_SOCKET.to_owned())
    }

    /// The runtime on this engine with the busybox image, staging install scripts under
    /// `install_dir`; `None` when it is unavailable (skip; a failure under `CI=true`).
    pub async fn runtime(self, install_dir: &Path) -> Option<std::sync::Arc<dyn Runtime>> {
        let probe: Result<std::sync::Arc<dyn Runtime>, String> = async {
            let runtime: std::sync::Arc<dyn Runtime> = match self {
                Self::Docker => std::sync::Arc::new(
                    DockerRuntime::connect_default().await.map_err(|e| e.to_string())?.with_install_dir(install_dir),
                ),
                Self::Podman => std::sync::Arc::new(
                    nexus_runtime_podman::PodmanRuntime::connect(Self::podman_socket())
                        .await
                        .map_err(|e| e.to_string())?
                        .with_install_dir(install_dir),
                ),
            };
            match runtime.image_exists(BUSYBOX_IMAGE).await {
                Ok(true) => Ok(runtime),
                Ok(false) => Err(format!("image {BUSYBOX_IMAGE} missing: run scripts/images/busybox.sh")),
                Err(e) => Err(e.to_string()),
            }
        }
        .await;
        match probe {
            Ok(runtime) => Some(runtime),
            Err(reason) => {
                require_service(if self == Self::Docker { "Docker" } else { "Podman" }, Err(reason));
                None
            }
        }
    }
}

/// Docker with the busybox image, or `None` (skip; a failure under `CI=true`).
pub async fn docker() -> Option<DockerRuntime> {
    let probe = async {
        let docker = DockerRuntime::connect_default().await.map_err(|e| e.to_string())?;
        match docker.image_exists(BUSYBOX_IMAGE).await {
            Ok(true) => Ok(docker),
            Ok(false) => Err(format!("image {BUSYBOX_IMAGE} missing: run scripts/images/busybox.sh")),
            Err(e) => Err(e.to_string()),
        }
    }
    .await;
    match probe {
        Ok(docker) => Some(docker),
        Err(reason) => {
            require_service("Docker", Err(reason));
            None
        }
    }
}

/// A configuration for a test daemon rooted in `dir`.
pub fn config(dir: &Path, node: NodeId, listen: std::net::SocketAddr) -> Config {
    Config {
        listen,
        node_id: Some(node),
        token: Some(TOKEN.into()),
        data_root: dir.join("volumes"),
        state_dir: dir.join("state"),
        stop_timeout_secs: 10,
        heartbeat_interval_secs: 5,
        token_secret: Some(SECRET.into()),
        log_level: "info,nexus_wings=debug".into(),
        ..Config::default()
    }
}

/// A busybox server: prints `booting`, then `server ready`, then echoes every stdin line as
/// `got: <line>`; exits on `stop`. The install script writes `installed.txt`.
pub fn busybox_spec() -> ServerSpec {
    ServerSpec {
        id: ServerId::new(),
        image: BUSYBOX_IMAGE.into(),
        startup: r#"echo booting; echo "server ready as {{GREETING}}"; while read line; do echo "got: $line"; if [ "$line" = stop ]; then echo bye; exit 0; fi; done"#.into(),
        environment: BTreeMap::from([("GREETING".into(), "hello $(id)".into())]),
        limits: ServerLimits { memory_mb: 64, swap_mb: 0, cpu_percent: 0, disk_mb: 64, io_weight: 0, pids: 64 },
        allocations: vec![],
        done: vec![DoneMatcher::Substring("server ready".into())],
        stop: StopMethod::Command("stop".into()),
        config_files: vec![],
        install: EggScript {
            script: "echo installing; echo hello > /mnt/server/installed.txt; echo installed".into(),
            container: BUSYBOX_IMAGE.into(),
            entrypoint: "sh".into(),
        },
        file_denylist: vec!["secret.txt".into()],
        suspended: false,
        location: None,
        allocation_limit: None,
        templates: Vec::new(),
    }
}

/// HTTP helper bound to one daemon.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
}

impl Client {
    pub fn new(addr: std::net::SocketAddr) -> Self {
        Self { base: format!("http://{addr}"), http: reqwest::Client::new() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `method path` with the node token and an optional JSON body: (status, body as JSON or
    /// as a string value).
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        read(response).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Polls `GET /api/servers/:id` until its state is `want`.
    pub async fn wait_state(&self, server: ServerId, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let (status, body) = self.get(&format!("/api/servers/{server}")).await;
            if status == 200 && body["state"] == want {
                return;
            }
            last = body;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("server {server} did not reach {want} within {timeout:?}; last answer {last}");
    }

    /// Polls `/api/system` until the daemon answers.
    pub async fn wait_up(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(r) = self.http.get(self.url("/api/system")).bearer_auth(TOKEN).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("daemon at {} did not come up within {timeout:?}", self.base);
    }
}

/// Sends `method target` with the node token over a raw connection, the request target
/// exactly as given (HTTP clients normalise `..` and `%2e%2e` away; an attacker's does not).
pub async fn raw(base: &str, method: &str, target: &str, body: &str) -> (u16, Value) {
    raw_declared(base, method, target, body.len(), body).await
}

/// Like [`raw`], declaring `content_length` whatever `body` holds (the server may answer
/// before reading a body it refuses).
pub async fn raw_declared(base: &str, method: &str, target: &str, content_length: usize, body: &str) -> (u16, Value) {
    let length = content_length.to_string();
    raw_with(base, method, target, &[("content-length", &length)], body.as_bytes()).await
}

/// Sends `method target` with the node token and `headers` over a raw connection, then `body`
/// exactly as given (so a test can send a chunked body, or a content-type a client would
/// fix); (status, body as JSON or as a string value).
pub async fn raw_with(base: &str, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {TOKEN}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    // The server may answer and close before reading a body it refuses: keep what it said.
    let _ = stream.write_all(&bytes).await;
    let mut response = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())))
}

/// `body` in HTTP/1.1 chunked encoding, in chunks of at most 1000 bytes.
pub fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 64);
    for chunk in body.chunks(1000) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Status and body (JSON if it parses, else a JSON string).
pub async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// A console WebSocket.
pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the console of `server`, authenticated by the node token header, or by `?token=`.
pub async fn console(base: &str, server: ServerId, browser_token: Option<&str>) -> Socket {
    let ws_base = base.replacen("http://", "ws://", 1);
    let url = match browser_token {
        Some(token) => format!("{ws_base}/api/servers/{server}/console?token={token}"),
        None => format!("{ws_base}/api/servers/{server}/console"),
    };
    let mut request = url.into_client_request().expect("ws request");
    if browser_token.is_none() {
        request.headers_mut().insert("authorization", format!("Bearer {TOKEN}").parse().expect("header"));
    }
    let (socket, _) = tokio_tungstenite::connect_async(request).await.expect("ws connect");
    socket
}

/// Reads events until one satisfies `want`; returns every event read (last one matching).
pub async fn until(socket: &mut Socket, timeout: Duration, want: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, socket.next()).await;
        match next {
            Ok(Some(Ok(Message::Text(text)))) => {
                let value: Value = serde_json::from_str(&text).expect("JSON event");
                let done = want(&value);
                seen.push(value);
                if done {
                    return seen;
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => panic!("websocket error: {e}; seen {seen:?}"),
            Ok(None) => panic!("websocket closed; seen {seen:?}"),
            Err(_) => panic!("no matching event within {timeout:?}; seen {seen:?}"),
        }
    }
}

/// Whether `event` is a console line containing `text`.
pub fn is_line(event: &Value, text: &str) -> bool {
    event["type"] == "line" && event["data"]["text"].as_str().is_some_and(|t| t.contains(text))
}

/// Sends a console command over the socket.
pub async fn send_command(socket: &mut Socket, line: &str) {
    let message = serde_json::json!({ "type": "command", "line": line }).to_string();
    socket.send(Message::text(message)).await.expect("ws send");
}

/// Opens `server`'s console in Wings' protocol (`/ws`, no credentials until `auth`).
pub async fn wings_console(base: &str, server: ServerId) -> Socket {
    let url = format!("{}/api/servers/{server}/ws", base.replacen("http://", "ws://", 1));
    let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("ws connect");
    socket
}

/// Sends a Wings-protocol event.
pub async fn wings_send(socket: &mut Socket, event: &str, args: &[&str]) {
    let message = serde_json::json!({ "event": event, "args": args }).to_string();
    socket.send(Message::text(message)).await.expect("ws send");
}

/// Whether `event` is the Wings event `name` whose first argument contains `text`.
pub fn is_wings(event: &Value, name: &str, text: &str) -> bool {
    event["event"] == name && event["args"][0].as_str().unwrap_or_default().contains(text)
}

/// Ids of the containers carrying `io.nexus.node=<node>` (running or not).
pub fn node_containers(node: NodeId, only_running: bool) -> Vec<String> {
    node_containers_on(Engine::Docker, node, only_running)
}

/// Containers of `node` on `engine` (its CLI; `ps -q --no-trunc` by the node label).
pub fn node_containers_on(engine: Engine, node: NodeId, only_running: bool) -> Vec<String> {
    let filter = format!("label={NODE_LABEL}={node}");
    let mut args = vec!["ps".to_owned(), "-q".into(), "--no-trunc".into(), "--filter".into(), filter];
    if engine == Engine::Podman {
        args.splice(0..0, ["--url".to_owned(), format!("unix://{}", Engine::podman_socket())]);
    }
    if !only_running {
        args.push("-a".into());
    }
    let Ok(out) = Command::new(engine.cli()).args(&args).output() else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).filter(|l| !l.is_empty()).collect()
}

/// `docker inspect -f <format> <id>`.
pub fn inspect(id: &str, format: &str) -> String {
    inspect_on(Engine::Docker, id, format)
}

/// `<engine> inspect -f <format> <id>`.
pub fn inspect_on(engine: Engine, id: &str, format: &str) -> String {
    let mut args = Vec::new();
    if engine == Engine::Podman {
        args.extend(["--url".to_owned(), format!("unix://{}", Engine::podman_socket())]);
    }
    args.extend(["inspect".to_owned(), "-f".into(), format.into(), id.into()]);
    let out = Command::new(engine.cli()).args(&args).output().expect("inspect");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A loopback port free for TCP and UDP (the runtime conformance suite's helper).
#[allow(unused_imports, reason = "each test binary uses a subset")]
pub use nexus_conformance::runtime::context::free_port;

/// The `nexus-wings` binary running as a child process; killed (SIGKILL) when dropped.
pub struct Wings(pub std::process::Child);

impl Drop for Wings {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Wings {
    /// Runs `nexus-wings --config <config>`, its logs going to `stderr`.
    pub fn spawn(config: &Path, stderr: std::process::Stdio) -> Self {
        Self::spawn_with(Command::new(env!("CARGO_BIN_EXE_nexus-wings")), config, stderr)
    }

    /// Like [`spawn`](Self::spawn), with at most `files` open file descriptors (`prlimit`).
    pub fn spawn_with_nofile(config: &Path, stderr: std::process::Stdio, files: u64) -> Self {
        let mut command = Command::new("prlimit");
        command.arg(format!("--nofile={files}:{files}")).arg("--").arg(env!("CARGO_BIN_EXE_nexus-wings"));
        Self::spawn_with(command, config, stderr)
    }

    fn spawn_with(mut command: Command, config: &Path, stderr: std::process::Stdio) -> Self {
        let child = command
            .arg("--config")
            .arg(config)
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn nexus-wings");
        Self(child)
    }

    /// `kill -9`, and reap it.
    pub fn kill9(&mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("wait");
    }

    /// `kill -TERM`; returns once it exited (or panics after `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let pid = self.0.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "nexus-wings did not exit within {timeout:?} of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident memory, bytes (`VmRSS`).
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).expect("proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        kib * 1024
    }
}

/// Removes every container of `node` when dropped (also when the test panics).
pub struct Cleanup(pub NodeId);

impl Drop for Cleanup {
    /// Removes the node's containers from every engine the tests use.
    fn drop(&mut self) {
        for engine in [Engine::Docker, Engine::Podman] {
            let ids = node_containers_on(engine, self.0, false);
            if ids.is_empty() {
                continue;
            }
            let mut args = Vec::new();
            if engine == Engine::Podman {
                args.extend(["--url".to_owned(), format!("unix://{}", Engine::podman_socket())]);
            }
            args.extend(["rm".to_owned(), "-f".into()]);
            let _ = Command::new(engine.cli()).args(&args).args(&ids).output();
        }
    }
}

/// A daemon served in this process on Docker, stopped and cleaned up on drop.
pub struct TestDaemon {
    pub client: Client,
    pub node: NodeId,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _cleanup: Cleanup,
}

impl TestDaemon {
    /// Starts a daemon with [`config`], changed by `adjust`.
    pub async fn start(docker: DockerRuntime, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_with_panel(docker, std::sync::Arc::new(nexus_agent::NoPanel), adjust).await
    }

    /// Starts a daemon publishing to `panel`, with [`config`] changed by `adjust`.
    pub async fn start_with_panel(
        docker: DockerRuntime,
        panel: std::sync::Arc<dyn nexus_core::transport::PanelTransport>,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let node = NodeId::new();
        let cleanup = Cleanup(node);
        let mut config = config(dir.path(), node, "127.0.0.1:0".parse().unwrap());
        adjust(&mut config);
        let config = config.resolve().unwrap();
        let docker = docker.with_install_dir(dir.path().join("install"));
        let daemon = nexus_wings::daemon::Daemon::start(&config, std::sync::Arc::new(docker), panel).await.unwrap();
        let client = Client::new(daemon.local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(daemon.serve(async move {
            let _ = stopped.await;
        }));
        Self { client, node, dir, stop: Some(stop), _cleanup: cleanup }
    }

    /// `<data_root>/<server>` on the host.
    pub fn data_dir(&self, server: ServerId) -> std::path::PathBuf {
        self.dir.path().join("volumes").join(server.to_string())
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A panel keeping every message a daemon publishes.
#[derive(Default)]
pub struct RecordingPanel {
    pub received: std::sync::Mutex<Vec<nexus_core::transport::NodeMessage>>,
}

#[async_trait::async_trait]
impl nexus_core::transport::PanelTransport for RecordingPanel {
    async fn publish(
        &self,
        _node: NodeId,
        message: nexus_core::transport::NodeMessage,
    ) -> Result<(), nexus_core::transport::TransportError> {
        self.received.lock().unwrap().push(message);
        Ok(())
    }
}
