//! The panel at fleet scale on one small machine, by simulation: the real `nexus-panel serve`
//! binary (a child process, so its memory is its own) on PostgreSQL, against 1,000 simulated
//! nodes holding 100,000 servers. The nodes are fakes in this one process that speak the real
//! node protocol over HTTP: each posts `nexus-wire` [`EventEnvelope`]s (heartbeats listing its
//! ~100 servers, lifecycle events along valid transitions) to `/api/remote/events` with its
//! own node token, as `nexus-wings` does, one message at a time and in order; one small HTTP
//! server answers the panel's calls to every node (`GET /api/servers`, creates, power,
//! install), telling the nodes apart by the token the panel presents.
//!
//! Measured, and printed next to the goals (met / not met; a missed goal does not fail):
//!
//! 1. Ingest: events/s the panel acknowledges (2xx) while every node posts as fast as it can,
//!    64 posts in flight, heartbeats and lifecycle events apart and together. Goal ≥ 10,000
//!    events/s on PostgreSQL. What was acknowledged is checked against the store: every
//!    server's state, and for a sample the number of events in its stored history, must be
//!    what the nodes reported (an ingest that answers 204 but ignores the event does not
//!    count).
//! 2. API latency under background load (every node heartbeating each interval, plus a steady
//!    lifecycle stream): p50/p99 of `GET /api/v1/servers` (first page) and `POST
//!    /api/v1/servers` (placed on the fake nodes, which accept), from a few concurrent
//!    clients. Goal p99 ≤ 50 ms.
//! 3. Time until the panel shows 100 nodes offline after their heartbeats stop, from each
//!    one's last acknowledged heartbeat. Goal ≤ 3 heartbeat intervals.
//! 4. The panel's RSS, idle after seeding and at the end of the load.
//! 5. A second `serve` replica on the same database (same node secret): the nodes' posts and
//!    the API clients split between the two; ingest and API latency again.
//!
//! ```sh
//! cargo bench -p nexus-system-tests --bench simulation
//! ```
//!
//! Full mode (`--bench`): 1,000 nodes, 100,000 servers, 10 s per phase, heartbeat interval
//! 1 s. Under `cargo test --all-targets` one short pass with the same code (20 nodes, 1,000
//! servers, 2 s phases) so the harness cannot rot; it asserts what is not performance (events
//! applied, silent nodes marked offline and back online), never speed.
//!
//! Needs PostgreSQL (`NEXUS_TEST_POSTGRES_URL`, from `scripts/services/postgres.sh`); fails
//! under `CI=true` without it, skips otherwise. Builds `nexus-panel` if it is missing. The
//! seeding (straight into the store, not through the API) is not measured. Set
//! `NEXUS_SIM_PANEL_LOG=<file>` to keep the panels' logs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::Utc;
use futures::StreamExt;
use nexus_conformance::store::fixtures;
use nexus_control::{ControlConfig, ControlPlane};
use nexus_core::ids::{NodeId, ServerId};
use nexus_core::lifecycle::{LifecycleEvent, ServerState, Trigger, next_state};
use nexus_core::memory::InProcessTransport;
use nexus_core::model::{Allocation, ApiKeyScope, Node, NodeCapacity, NodeStatus, Overallocation, Role, Server, User};
use nexus_core::store::{NodeRepo, Page, ServerFilter, ServerRepo, Store, UserRepo};
use nexus_core::transport::{Heartbeat, NodeMessage, ServerStatus};
use nexus_store_sql::SqlStore;
use nexus_store_sql::backend::Postgres;
use nexus_store_sql::testing::throwaway;
use nexus_system_tests::{percentile, rss_mib};
use nexus_wire::NodeToken;
use nexus_wire::events::{EventEnvelope, events_url};
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// The node secret every panel process of the run shares (≥ 32 bytes).
const NODE_SECRET: &[u8] = b"the simulation's node secret, 32 bytes or more";
/// Events goal, acknowledged per second.
const GOAL_EVENTS_PER_SEC: f64 = 10_000.0;
/// API latency goal, p99.
const GOAL_P99_MS: f64 = 50.0;
/// Offline goal, heartbeat intervals.
const GOAL_OFFLINE_INTERVALS: f64 = 3.0;

/// The sizes of one run.
#[derive(Clone, Copy, Debug)]
struct Params {
    nodes: usize,
    servers_per_node: usize,
    /// Free allocations per node, for the creates.
    free_per_node: usize,
    /// Length of each measured phase.
    phase: Duration,
    /// Heartbeat interval of the panel and the nodes.
    interval: Duration,
    /// Posts in flight at most, all nodes together.
    in_flight: usize,
    /// Lifecycle events per node per interval under the steady background load.
    steady_events_per_interval: f64,
    /// Nodes silenced in the offline phase.
    silent: usize,
    list_clients: usize,
    create_clients: usize,
}

impl Params {
    fn full() -> Self {
        Self {
            nodes: 1_000,
            servers_per_node: 100,
            free_per_node: 20,
            phase: Duration::from_secs(10),
            interval: Duration::from_secs(1),
            in_flight: 64,
            steady_events_per_interval: 0.1,
            silent: 100,
            list_clients: 2,
            create_clients: 2,
        }
    }

    fn short() -> Self {
        Self {
            nodes: 20,
            servers_per_node: 50,
            free_per_node: 20,
            phase: Duration::from_secs(2),
            interval: Duration::from_secs(1),
            in_flight: 16,
            steady_events_per_interval: 2.0,
            silent: 2,
            list_clients: 2,
            create_clients: 1,
        }
    }

    fn servers(&self) -> usize {
        self.nodes * self.servers_per_node
    }
}

// ---------------------------------------------------------------------------------------
// The panel as a child process.

/// A running `nexus-panel serve`, killed when dropped.
struct Panel {
    child: Child,
    url: String,
}

impl Panel {
    /// Starts `serve` on the database `url`, listening on a free loopback port.
    fn start(dir: &Path, name: &str, database_url: &str, secret: &Path, interval: Duration) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = dir.join(format!("{name}.toml"));
        write_private(
            &config,
            &format!(
                "listen = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\ndatabase_url = \"{database_url}\"\n\
                 node_secret_file = \"{}\"\nnode_scheme = \"http\"\nheartbeat_interval_secs = {}\nnode_timeout_secs = 5\n\
                 log_level = \"warn\"\nplacement = \"bin_pack\"\n",
                secret.display(),
                interval.as_secs()
            ),
        );
        let binary = nexus_system_tests::images::binary("nexus-panel");
        let stderr = match std::env::var_os("NEXUS_SIM_PANEL_LOG") {
            Some(path) => Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap()),
            None => Stdio::null(),
        };
        let mut child = Command::new(&binary)
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut url = None;
        // What `serve` prints before it serves (`read_banner` of the panel's tests): its URL,
        // then "Stop with Ctrl-C.".
        for line in lines.by_ref() {
            let line = line.expect("read the panel's output");
            if let Some(rest) = line.strip_prefix("Nexus panel: ") {
                url = rest.split_whitespace().next().map(str::to_owned);
            }
            if line.starts_with("Stop with Ctrl-C") {
                break;
            }
        }
        // Whatever it prints later must not hit a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let url = url.unwrap_or_else(|| panic!("panel {name} did not print its URL (exit: {:?})", child.try_wait()));
        Self { child, url }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn rss(&self) -> f64 {
        rss_mib(self.pid())
    }

    /// SIGTERM, then a kill if it takes too long.
    fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Panel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

// ---------------------------------------------------------------------------------------
// CPU accounting, to say where the time went.

/// User + system CPU time of process `pid`, in clock ticks (USER_HZ, 100/s on Linux).
fn cpu_ticks(pid: &str) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    // The command name may hold spaces; the fields after it are fixed.
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are the 14th and 15th fields; `rest` starts at the 3rd.
    field(11) + field(12)
}

/// CPU ticks of every PostgreSQL process of the machine.
fn postgres_ticks() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres"))
        .map(|pid| cpu_ticks(&pid))
        .sum()
}

/// CPU use of the panels, PostgreSQL and this process over a phase.
struct CpuMeter {
    panels: Vec<String>,
    at: Instant,
    start: (u64, u64, u64),
}

impl CpuMeter {
    fn start(panels: &[&Panel]) -> Self {
        let panels: Vec<String> = panels.iter().map(|p| p.pid().to_string()).collect();
        let start = Self::sample(&panels);
        Self { panels, at: Instant::now(), start }
    }

    fn sample(panels: &[String]) -> (u64, u64, u64) {
        (panels.iter().map(|p| cpu_ticks(p)).sum(), postgres_ticks(), cpu_ticks("self"))
    }

    /// `panel x %, postgres y %, simulator z %` (of 100 % per core).
    fn report(&self) -> String {
        let end = Self::sample(&self.panels);
        let seconds = self.at.elapsed().as_secs_f64();
        let pct = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / seconds;
        format!(
            "CPU (of {} %): panel{} {:.0} %, PostgreSQL {:.0} %, simulated nodes + clients {:.0} %",
            100 * std::thread::available_parallelism().map_or(1, usize::from),
            if self.panels.len() > 1 { "s" } else { "" },
            pct(self.start.0, end.0),
            pct(self.start.1, end.1),
            pct(self.start.2, end.2)
        )
    }
}

// ---------------------------------------------------------------------------------------
// The simulated nodes.

/// What the nodes do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// Nothing at all.
    Idle = 0,
    /// Heartbeats every interval, no lifecycle events.
    Beats = 1,
    /// Heartbeats plus `steady_events_per_interval` lifecycle events per node and interval.
    Steady = 2,
    /// Heartbeats plus lifecycle events as fast as the panel takes them.
    Flood = 3,
    /// The node tasks end.
    Stop = 4,
}

/// One server as its node sees it.
struct SimServer {
    id: ServerId,
    state: ServerState,
    /// Lifecycle events of it the panel acknowledged.
    acked: u32,
}

#[derive(Default)]
struct NodeServers {
    list: Vec<SimServer>,
    index: HashMap<ServerId, usize>,
    /// Round-robin position of the next lifecycle event.
    cursor: usize,
}

/// One simulated node.
struct FakeNode {
    index: usize,
    id: NodeId,
    token: String,
    servers: Mutex<NodeServers>,
    /// Heartbeats and events stop.
    silent: AtomicBool,
    /// A lifecycle event of it is being posted.
    posting: AtomicBool,
    last_beat_acked: Mutex<Option<Instant>>,
}

/// The step a node takes a server through from `state`: install, then
/// stopped → starting → running → stopping → stopped cycles.
fn trigger_from(state: ServerState) -> Option<Trigger> {
    Some(match state {
        ServerState::Requested | ServerState::InstallFailed => Trigger::InstallStarted,
        ServerState::Installing => Trigger::InstallSucceeded,
        ServerState::Installed | ServerState::Stopped | ServerState::Crashed => Trigger::Start,
        ServerState::Starting => Trigger::Ready,
        ServerState::Running => Trigger::Stop,
        ServerState::Stopping => Trigger::Exited,
        ServerState::Suspended | ServerState::Destroying | ServerState::Destroyed => return None,
    })
}

impl FakeNode {
    fn lock(&self) -> std::sync::MutexGuard<'_, NodeServers> {
        self.servers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn statuses(&self) -> Vec<ServerStatus> {
        self.lock().list.iter().map(|s| ServerStatus { server: s.id, state: s.state }).collect()
    }

    /// The next lifecycle event, round robin over the node's servers.
    fn next_event(&self) -> Option<LifecycleEvent> {
        let mut servers = self.lock();
        let n = servers.list.len();
        for step in 0..n {
            let i = (servers.cursor + step) % n;
            let server = &servers.list[i];
            let Some(trigger) = trigger_from(server.state) else { continue };
            let to = next_state(server.state, trigger).expect("a transition of the lifecycle table");
            let event = LifecycleEvent { server: server.id, from: server.state, to, trigger, at: Utc::now() };
            servers.cursor = (i + 1) % n;
            return Some(event);
        }
        None
    }

    /// The panel acknowledged `event`.
    fn acked(&self, event: &LifecycleEvent) {
        let mut servers = self.lock();
        if let Some(&i) = servers.index.get(&event.server) {
            let server = &mut servers.list[i];
            if server.state == event.from {
                server.state = event.to;
                server.acked += 1;
            }
        }
    }

    /// A server the panel created on this node (again: kept as it is).
    fn add(&self, id: ServerId) {
        let mut servers = self.lock();
        if !servers.index.contains_key(&id) {
            let at = servers.list.len();
            servers.list.push(SimServer { id, state: ServerState::Requested, acked: 0 });
            servers.index.insert(id, at);
        }
    }
}

/// Messages the panels acknowledged and refused, by kind.
#[derive(Default)]
struct Counters {
    beats_ok: AtomicU64,
    beats_failed: AtomicU64,
    events_ok: AtomicU64,
    events_failed: AtomicU64,
    /// Calls the panels made to the nodes.
    creates_received: AtomicU64,
    lists_received: AtomicU64,
    other_received: AtomicU64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Snapshot {
    beats_ok: u64,
    beats_failed: u64,
    events_ok: u64,
    events_failed: u64,
}

impl Counters {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            beats_ok: self.beats_ok.load(Ordering::Relaxed),
            beats_failed: self.beats_failed.load(Ordering::Relaxed),
            events_ok: self.events_ok.load(Ordering::Relaxed),
            events_failed: self.events_failed.load(Ordering::Relaxed),
        }
    }
}

/// The whole fleet.
struct Fleet {
    params: Params,
    nodes: Vec<Arc<FakeNode>>,
    by_token: HashMap<String, usize>,
    mode: AtomicU8,
    /// The panels' event URLs; node `i` posts to `i % len`.
    panels: RwLock<Vec<String>>,
    http: reqwest::Client,
    in_flight: tokio::sync::Semaphore,
    counters: Counters,
}

impl Fleet {
    fn mode(&self) -> Mode {
        match self.mode.load(Ordering::Relaxed) {
            0 => Mode::Idle,
            1 => Mode::Beats,
            2 => Mode::Steady,
            3 => Mode::Flood,
            _ => Mode::Stop,
        }
    }

    fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::Relaxed);
    }

    fn panel_of(&self, node: &FakeNode) -> String {
        let panels = self.panels.read().unwrap_or_else(PoisonError::into_inner);
        panels[node.index % panels.len()].clone()
    }

    /// Posts `message` as `node`, like `nexus-wings`' panel link; whether the panel
    /// acknowledged it (2xx).
    async fn post(&self, node: &FakeNode, message: NodeMessage) -> bool {
        let body = serde_json::to_vec(&EventEnvelope::new(node.id, message)).unwrap();
        let url = self.panel_of(node);
        let _permit = self.in_flight.acquire().await.unwrap();
        let sent = self
            .http
            .post(url)
            .bearer_auth(&node.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) => {
                let ok = response.status().is_success();
                let _ = response.bytes().await;
                ok
            }
            Err(_) => false,
        }
    }

    async fn heartbeat(&self, node: &FakeNode) {
        let beat = Heartbeat { node: node.id, at: Utc::now(), version: "simulated".into(), servers: node.statuses() };
        if self.post(node, NodeMessage::Heartbeat(beat)).await {
            self.counters.beats_ok.fetch_add(1, Ordering::Relaxed);
            *node.last_beat_acked.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        } else {
            self.counters.beats_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One lifecycle event; false when it was refused (the node retries it later).
    async fn lifecycle(&self, node: &FakeNode) -> bool {
        let Some(event) = node.next_event() else { return true };
        node.posting.store(true, Ordering::Release);
        let ok = self.post(node, NodeMessage::Lifecycle(event.clone())).await;
        if ok {
            node.acked(&event);
            self.counters.events_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.counters.events_failed.fetch_add(1, Ordering::Relaxed);
        }
        node.posting.store(false, Ordering::Release);
        ok
    }

    /// Waits until no lifecycle event is in flight (after leaving `Steady`/`Flood`).
    async fn drain(&self) {
        while self.nodes.iter().any(|n| n.posting.load(Ordering::Acquire)) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// One node's loop: a heartbeat every interval, lifecycle events as the mode says, one
/// message at a time and in order (as a daemon's outbox delivers them).
async fn drive(fleet: Arc<Fleet>, node: Arc<FakeNode>) {
    let interval = fleet.params.interval;
    // Spread the nodes over the interval.
    let stagger = (node.index as f64 * 0.618_033_988_75).fract();
    let offset = interval.mul_f64(stagger);
    let mut next_beat = Instant::now() + offset;
    let mut next_event = Instant::now() + offset / 2;
    let event_gap = interval.div_f64(fleet.params.steady_events_per_interval.max(0.01));
    let tick = Duration::from_millis(20);
    loop {
        let mode = fleet.mode();
        let now = Instant::now();
        if mode == Mode::Stop {
            return;
        }
        if mode == Mode::Idle || node.silent.load(Ordering::Relaxed) {
            tokio::time::sleep(tick).await;
            continue;
        }
        if now >= next_beat {
            fleet.heartbeat(&node).await;
            next_beat += interval;
            if next_beat < now {
                next_beat = now + interval;
            }
            continue;
        }
        match mode {
            Mode::Flood => {
                if !fleet.lifecycle(&node).await {
                    tokio::time::sleep(tick).await;
                }
            }
            Mode::Steady if now >= next_event => {
                fleet.lifecycle(&node).await;
                next_event += event_gap;
                if next_event < now {
                    next_event = now;
                }
            }
            _ => {
                if mode != Mode::Steady {
                    // Staggered, so the steady stream starts as a stream, not a burst.
                    next_event = now + event_gap.mul_f64(stagger);
                }
                let wake = next_beat.min(if mode == Mode::Steady { next_event } else { next_beat }).min(now + tick);
                tokio::time::sleep_until(wake.into()).await;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The nodes' API, as the panel calls it.

fn json_reply(status: u16, body: &serde_json::Value) -> warp::reply::Response {
    use warp::Reply;
    let mut response = warp::reply::json(body).into_response();
    *response.status_mut() = warp::http::StatusCode::from_u16(status).unwrap();
    response
}

fn error_reply(status: u16, code: &str, message: &str) -> warp::reply::Response {
    json_reply(status, &serde_json::json!({ "error": { "code": code, "message": message } }))
}

/// What a node answers the panel (`nexus_wire::api`), for every node at once: the token
/// names the node.
fn answer(
    fleet: &Fleet,
    method: &warp::http::Method,
    path: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> warp::reply::Response {
    let node = authorization.and_then(|h| h.strip_prefix("Bearer ")).and_then(|token| fleet.by_token.get(token));
    let Some(&node) = node else { return error_reply(401, "unauthorized", "unknown node token") };
    let node = &fleet.nodes[node];
    let servers = nexus_wire::api::paths::SERVERS;
    match (method.as_str(), path) {
        ("GET", p) if p == servers => {
            fleet.counters.lists_received.fetch_add(1, Ordering::Relaxed);
            json_reply(200, &serde_json::to_value(node.statuses()).unwrap())
        }
        ("POST", p) if p == servers => {
            fleet.counters.creates_received.fetch_add(1, Ordering::Relaxed);
            let id = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|spec| serde_json::from_value::<ServerId>(spec["id"].clone()).ok());
            let Some(id) = id else { return error_reply(422, "invalid_spec", "not a server spec") };
            node.add(id);
            json_reply(201, &serde_json::json!({ "server": id }))
        }
        (method, p) if p.starts_with("/api/servers/") => {
            fleet.counters.other_received.fetch_add(1, Ordering::Relaxed);
            match method {
                "POST" if p.ends_with("/power") => json_reply(202, &serde_json::json!({})),
                "POST" | "DELETE" => {
                    use warp::Reply;
                    warp::reply::with_status(warp::reply(), warp::http::StatusCode::NO_CONTENT).into_response()
                }
                _ => error_reply(404, "not_found", "not simulated"),
            }
        }
        _ => error_reply(404, "not_found", "not simulated"),
    }
}

/// Serves the nodes' API on `listener`.
fn serve_nodes(fleet: Arc<Fleet>, listener: tokio::net::TcpListener) {
    use warp::Filter;
    let routes = warp::method()
        .and(warp::path::full())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::body::bytes())
        .map(
            move |method: warp::http::Method, path: warp::path::FullPath, auth: Option<String>, body: bytes::Bytes| {
                answer(&fleet, &method, path.as_str(), auth.as_deref(), &body)
            },
        );
    tokio::spawn(warp::serve(routes).incoming(listener).run());
}

// ---------------------------------------------------------------------------------------
// Seeding (not measured).

/// A seeded node: its id, token and servers (with their stored states).
type SeededNode = (NodeId, String, Vec<(ServerId, ServerState)>);

/// What the seeding made.
struct Seeded {
    admin_key: String,
    owner: User,
    egg: nexus_core::ids::EggId,
    nodes: Vec<SeededNode>,
}

/// An admin with an application key, the busybox egg, owners, the nodes (tokens derived
/// from [`NODE_SECRET`], as the panel derives them), their allocations and servers, straight
/// into the store.
async fn seed(store: &Arc<SqlStore<Postgres>>, p: Params, node_port: u16) -> Seeded {
    let shared: Arc<dyn Store> = store.clone();
    let (transport, _inbox) = InProcessTransport::new(8);
    let control = ControlPlane::new(shared, Arc::new(transport), ControlConfig::default()).await.unwrap();
    let admin = control
        .create_user(nexus_control::accounts::NewUser::new(
            "simadmin",
            "simadmin@example.com",
            "the simulation's password",
            Role::Admin,
        ))
        .await
        .unwrap();
    let (_, admin_key) = control.create_api_key(admin.id, ApiKeyScope::Application, "simulation", None).await.unwrap();
    let egg = control.import_egg(nexus_system_tests::busybox_egg()).await.unwrap();
    let owners: Vec<User> =
        (0..p.servers().div_ceil(1_000)).map(|i| fixtures::user(&format!("sim-owner-{i}"))).collect();
    for owner in &owners {
        store.create_user(owner).await.unwrap();
    }
    let nodes: Vec<(Node, String)> = (0..p.nodes)
        .map(|i| {
            let id = NodeId::new();
            let (token, hash) = NodeToken::derive(NODE_SECRET, id);
            let node = Node {
                id,
                name: format!("sim-node-{i:04}"),
                fqdn: "127.0.0.1".into(),
                daemon_port: node_port,
                token_hash: hash.stored(),
                location: None,
                tags: BTreeSet::new(),
                capacity: NodeCapacity { memory_mb: 10_000_000, disk_mb: 100_000_000, cpu_percent: 1_000_000 },
                overallocation: Overallocation::default(),
                maintenance: false,
                status: NodeStatus::Offline,
                last_heartbeat: None,
            };
            (node, token)
        })
        .collect();
    for (node, _) in &nodes {
        store.create_node(node).await.unwrap();
    }
    let (owners, egg_record) = (Arc::new(owners), Arc::new(egg.clone()));
    let seeded: Vec<SeededNode> = futures::stream::iter(nodes.into_iter().enumerate())
        .map(|(i, (node, token))| {
            let (store, owners, egg) = (Arc::clone(store), Arc::clone(&owners), Arc::clone(&egg_record));
            async move {
                let [_, _, hi, lo] = u32::try_from(i).unwrap().to_be_bytes();
                let allocations: Vec<Allocation> = (0..p.servers_per_node + p.free_per_node)
                    .map(|k| fixtures::allocation(node.id, [10, hi, lo, 1], 30_000 + u16::try_from(k).unwrap()))
                    .collect();
                let tx = store.begin().await.unwrap();
                tx.create_allocations(&allocations).await.unwrap();
                let mut servers = Vec::with_capacity(p.servers_per_node);
                for (k, allocation) in allocations.iter().take(p.servers_per_node).enumerate() {
                    let n = i * p.servers_per_node + k;
                    let state = if k % 2 == 0 { ServerState::Stopped } else { ServerState::Running };
                    let server = Server {
                        name: format!("sim-{i}-{k}"),
                        state,
                        created_at: fixtures::ts(i64::try_from(n).unwrap()),
                        ..fixtures::server(&owners[n / 1_000], &node, &egg, &[allocation.id])
                    };
                    tx.create_server(&server).await.unwrap();
                    servers.push((server.id, state));
                }
                tx.commit().await.unwrap();
                (node.id, token, servers)
            }
        })
        .buffered(8)
        .collect()
        .await;
    Seeded { admin_key, owner: owners[0].clone(), egg: egg.id, nodes: seeded }
}

// ---------------------------------------------------------------------------------------
// Checks against the store.

/// How many nodes the store has online.
async fn online(store: &SqlStore<Postgres>) -> usize {
    store.list_nodes().await.unwrap().iter().filter(|n| n.status == NodeStatus::Online).count()
}

/// Waits until `want` nodes are online; how long it took.
async fn wait_online(store: &SqlStore<Postgres>, want: usize, timeout: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let now = online(store).await;
        if now >= want {
            return started.elapsed();
        }
        assert!(started.elapsed() < timeout, "only {now} of {want} nodes came online within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether what the panels acknowledged is what the store holds.
#[derive(Debug, Default)]
struct Applied {
    servers: usize,
    /// Servers whose stored state is not the one their node reported.
    differ: usize,
    sample: usize,
    /// Lifecycle events of the sample the panels acknowledged.
    sample_acked: u64,
    /// Events in the sample's stored histories.
    sample_stored: u64,
}

/// Compares every server's state with its node's, and for the first `sample_per_node`
/// servers of each node the length of the stored history with the events acknowledged.
/// The nodes must not be posting lifecycle events meanwhile.
async fn check_applied(store: &Arc<SqlStore<Postgres>>, fleet: &Fleet, sample_per_node: usize) -> Applied {
    let results: Vec<Applied> = futures::stream::iter(fleet.nodes.iter().cloned())
        .map(|node| {
            let store = Arc::clone(store);
            async move {
                let filter = ServerFilter { node: Some(node.id), ..ServerFilter::default() };
                let stored: HashMap<ServerId, ServerState> = store
                    .list_servers(&filter, Page { offset: 0, limit: 1_000_000 })
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|s| (s.id, s.state))
                    .collect();
                let mine: Vec<(ServerId, ServerState, u32)> =
                    node.lock().list.iter().map(|s| (s.id, s.state, s.acked)).collect();
                let mut applied = Applied { servers: mine.len(), ..Applied::default() };
                for (i, (id, state, acked)) in mine.into_iter().enumerate() {
                    if stored.get(&id) != Some(&state) {
                        applied.differ += 1;
                    }
                    if i < sample_per_node {
                        applied.sample += 1;
                        applied.sample_acked += u64::from(acked);
                        applied.sample_stored += store.server_events(id, 100_000).await.unwrap().len() as u64;
                    }
                }
                applied
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    results.into_iter().fold(Applied::default(), |a, b| Applied {
        servers: a.servers + b.servers,
        differ: a.differ + b.differ,
        sample: a.sample + b.sample,
        sample_acked: a.sample_acked + b.sample_acked,
        sample_stored: a.sample_stored + b.sample_stored,
    })
}

// ---------------------------------------------------------------------------------------
// The phases.

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// Nodes post as fast as the panels take it; acknowledged events/s (heartbeats and
/// lifecycle events together). Checks that what was acknowledged was applied.
async fn ingest_phase(fleet: &Fleet, store: &Arc<SqlStore<Postgres>>, panels: &[&Panel], full: bool) -> f64 {
    let p = fleet.params;
    fleet.set_mode(Mode::Flood);
    let cpu = CpuMeter::start(panels);
    let (before, started) = (fleet.counters.snapshot(), Instant::now());
    tokio::time::sleep(p.phase).await;
    let (after, seconds) = (fleet.counters.snapshot(), started.elapsed().as_secs_f64());
    let cpu = cpu.report();
    fleet.set_mode(Mode::Beats);
    fleet.drain().await;
    let beats = (after.beats_ok - before.beats_ok) as f64 / seconds;
    let events = (after.events_ok - before.events_ok) as f64 / seconds;
    let total = beats + events;
    println!(
        "  ingest, nodes posting as fast as acknowledged ({} in flight, {:.0} s): {total:.0} events/s \
         = {beats:.0} heartbeats/s + {events:.0} lifecycle events/s",
        p.in_flight, seconds
    );
    if full {
        println!("    goal ≥ {GOAL_EVENTS_PER_SEC:.0} events/s: {}", met(total >= GOAL_EVENTS_PER_SEC));
    }
    println!(
        "    refused or failed: {} heartbeats, {} lifecycle events (retried by their node)",
        after.beats_failed - before.beats_failed,
        after.events_failed - before.events_failed
    );
    println!("    {cpu}");
    let checked = Instant::now();
    let applied = check_applied(store, fleet, 3).await;
    println!(
        "    applied: {} of {} servers in the store in the state their node reported ({} differ); \
         sample of {} servers: {} lifecycle events acknowledged, {} in their stored history ({} ignored) [checked in {:.1?}]",
        applied.servers - applied.differ,
        applied.servers,
        applied.differ,
        applied.sample,
        applied.sample_acked,
        applied.sample_stored,
        applied.sample_acked.saturating_sub(applied.sample_stored),
        checked.elapsed()
    );
    if full {
        // An overloaded panel may take nothing but heartbeats: a figure, not a failure.
        if after.events_ok == before.events_ok {
            println!("    (no lifecycle event got through: the heartbeats alone saturate the panel)");
        }
    } else {
        assert!(after.events_ok > before.events_ok, "no lifecycle event was acknowledged");
        assert!(applied.sample_acked > 0, "the sample got no events");
    }
    assert_eq!(applied.differ, 0, "acknowledged events not applied: {applied:?}");
    assert_eq!(applied.sample_stored, applied.sample_acked, "acknowledged events not in the history: {applied:?}");
    total
}

/// Latencies of one kind of API call, milliseconds.
#[derive(Default)]
struct Latencies {
    list: Vec<f64>,
    create: Vec<f64>,
    pending: usize,
    /// Creates refused with `409 no_capacity` although the fleet has room.
    no_capacity: usize,
}

/// API clients against the panels under the steady background load; the list and create
/// p99 (ms).
async fn api_phase(fleet: &Fleet, seeded: &Seeded, panels: &[&Panel], full: bool, tag: &str) -> (f64, f64) {
    let p = fleet.params;
    fleet.set_mode(Mode::Steady);
    tokio::time::sleep(p.interval).await;
    let cpu = CpuMeter::start(panels);
    let (before, started) = (fleet.counters.snapshot(), Instant::now());
    let deadline = started + p.phase;
    let http = reqwest::Client::builder().pool_max_idle_per_host(16).build().unwrap();
    let urls: Vec<String> = panels.iter().map(|panel| panel.url.clone()).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..p.list_clients + p.create_clients {
        let (http, key) = (http.clone(), seeded.admin_key.clone());
        let base = urls[c % urls.len()].clone();
        let creates = c >= p.list_clients;
        let body = serde_json::json!({ "owner": seeded.owner.id, "egg": seeded.egg, "limits": { "memory_mb": 64 } });
        let tag = tag.to_owned();
        tasks.spawn(async move {
            let mut out = Latencies::default();
            let mut i = 0;
            while Instant::now() < deadline {
                let at = Instant::now();
                if creates {
                    let mut body = body.clone();
                    body["name"] = serde_json::json!(format!("sim-created-{tag}-{c}-{i}"));
                    let response =
                        http.post(format!("{base}/api/v1/servers")).bearer_auth(&key).json(&body).send().await.unwrap();
                    let status = response.status();
                    let answer: serde_json::Value = response.json().await.unwrap();
                    if status == 409 && answer["error"]["code"] == "no_capacity" {
                        // Placement chose a node whose last free allocation a concurrent
                        // create took (decide and book are not atomic); counted, not fatal.
                        out.no_capacity += 1;
                        i += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    assert_eq!(status, 201, "create: {answer}");
                    out.create.push(at.elapsed().as_secs_f64() * 1000.0);
                    if answer["delivery"] != "sent" {
                        out.pending += 1;
                    }
                } else {
                    let response = http.get(format!("{base}/api/v1/servers")).bearer_auth(&key).send().await.unwrap();
                    let status = response.status();
                    let page: serde_json::Value = response.json().await.unwrap();
                    assert_eq!(status, 200, "list: {page}");
                    assert!(!page["data"].as_array().unwrap().is_empty(), "an empty first page");
                    out.list.push(at.elapsed().as_secs_f64() * 1000.0);
                }
                i += 1;
                // A user, not a load generator: a short pause between calls.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            out
        });
    }
    let mut all = Latencies::default();
    while let Some(done) = tasks.join_next().await {
        let done = done.unwrap();
        all.list.extend(done.list);
        all.create.extend(done.create);
        all.pending += done.pending;
        all.no_capacity += done.no_capacity;
    }
    let (after, seconds) = (fleet.counters.snapshot(), started.elapsed().as_secs_f64());
    let cpu = cpu.report();
    let (list_n, create_n) = (all.list.len(), all.create.len());
    let (list50, list99) = (percentile(&mut all.list, 50.0), percentile(&mut all.list, 99.0));
    let (create50, create99) = (percentile(&mut all.create, 50.0), percentile(&mut all.create, 99.0));
    println!(
        "  API under background load ({:.0} heartbeats/s + {:.0} lifecycle events/s acknowledged, {} refused):",
        (after.beats_ok - before.beats_ok) as f64 / seconds,
        (after.events_ok - before.events_ok) as f64 / seconds,
        (after.beats_failed - before.beats_failed) + (after.events_failed - before.events_failed),
    );
    println!(
        "    GET  /api/v1/servers (first page, {} clients, {list_n} calls): p50 {list50:.1} ms, p99 {list99:.1} ms{}",
        p.list_clients,
        if full {
            format!("  (goal p99 ≤ {GOAL_P99_MS:.0} ms: {})", met(list99 <= GOAL_P99_MS))
        } else {
            String::new()
        }
    );
    println!(
        "    POST /api/v1/servers (placed on the fake nodes, {} clients, {create_n} created, {} pending delivery, \
         {} refused 409 no_capacity): p50 {create50:.1} ms, p99 {create99:.1} ms{}",
        p.create_clients,
        all.pending,
        all.no_capacity,
        if full {
            format!("  (goal p99 ≤ {GOAL_P99_MS:.0} ms: {})", met(create99 <= GOAL_P99_MS))
        } else {
            String::new()
        }
    );
    println!("    {cpu}");
    assert!(list_n > 0 && create_n > 0, "no API call finished");
    (list99, create99)
}

/// The `status` of every node, by id, from the panel's list (pages of 100).
async fn node_statuses(http: &reqwest::Client, base: &str, key: &str) -> HashMap<String, String> {
    let mut statuses = HashMap::new();
    for page in 1.. {
        let url = format!("{base}/api/v1/nodes?page={page}&per_page=100");
        let listing: serde_json::Value = http.get(url).bearer_auth(key).send().await.unwrap().json().await.unwrap();
        for node in listing["data"].as_array().expect("a node list") {
            statuses.insert(node["id"].as_str().unwrap().to_owned(), node["status"].as_str().unwrap().to_owned());
        }
        if listing["pagination"]["has_more"] != true {
            break;
        }
    }
    statuses
}

/// Silences `silent` nodes under the steady load; how long until the panel lists them all
/// offline, from each one's last acknowledged heartbeat (the worst, in intervals). Then they
/// speak again and must come back online.
async fn offline_phase(fleet: &Fleet, store: &SqlStore<Postgres>, panel: &Panel, key: &str, full: bool) -> f64 {
    let p = fleet.params;
    fleet.set_mode(Mode::Steady);
    let step = p.nodes / p.silent;
    let silenced: Vec<Arc<FakeNode>> = (0..p.silent).map(|i| Arc::clone(&fleet.nodes[i * step])).collect();
    for node in &silenced {
        node.silent.store(true, Ordering::Relaxed);
    }
    let http = reqwest::Client::new();
    let started = Instant::now();
    let timeout = p.interval * 10 + Duration::from_secs(30);
    let mut pending: Vec<Arc<FakeNode>> = silenced.clone();
    let mut delays = Vec::new();
    while !pending.is_empty() {
        assert!(started.elapsed() < timeout, "{} silent nodes still online after {timeout:?}", pending.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let statuses = node_statuses(&http, &panel.url, key).await;
        let seen = Instant::now();
        pending.retain(|node| {
            if statuses.get(&node.id.to_string()).map(String::as_str) != Some("offline") {
                return true;
            }
            let last = node.last_beat_acked.lock().unwrap_or_else(PoisonError::into_inner).expect("a heartbeat before");
            delays.push(seen.duration_since(last).as_secs_f64());
            false
        });
    }
    let worst = delays.iter().copied().fold(0.0, f64::max);
    let median = percentile(&mut delays, 50.0);
    let interval = p.interval.as_secs_f64();
    let intervals = worst / interval;
    println!(
        "  {} silent nodes listed offline by the panel: all after {worst:.2} s = {intervals:.2} intervals \
         (median {median:.2} s) from their last acknowledged heartbeat, polled every 0.1 s{}",
        p.silent,
        if full {
            format!("  (goal ≤ {GOAL_OFFLINE_INTERVALS:.0} intervals: {})", met(intervals <= GOAL_OFFLINE_INTERVALS))
        } else {
            String::new()
        }
    );
    for node in &silenced {
        node.silent.store(false, Ordering::Relaxed);
    }
    let back = wait_online(store, p.nodes, timeout).await;
    println!("    speaking again, all back online after {:.2} s", back.as_secs_f64());
    intervals
}

// ---------------------------------------------------------------------------------------

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let p = if full { Params::full() } else { Params::short() };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let Some(db) = throwaway::<Postgres>() else { return };
    runtime.block_on(run(p, &db.url, full));
}

async fn run(p: Params, database_url: &str, full: bool) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("node-secret");
    write_private(&secret, std::str::from_utf8(NODE_SECRET).unwrap());
    let options = nexus_store_sql::StoreOptions { max_connections: Some(8), ..Default::default() };
    let store = Arc::new(SqlStore::<Postgres>::connect_with(database_url, options).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node_port = listener.local_addr().unwrap().port();

    println!(
        "Panel simulation: {} nodes, {} servers, PostgreSQL, heartbeat interval {} s, {} s phases{}",
        p.nodes,
        p.servers(),
        p.interval.as_secs(),
        p.phase.as_secs(),
        if full { "" } else { " (short pass: goals not judged)" }
    );
    let started = Instant::now();
    let seeded = seed(&store, p, node_port).await;
    println!(
        "  seeded {} nodes and {} servers straight into the store in {:.1?}",
        p.nodes,
        p.servers(),
        started.elapsed()
    );

    let nodes: Vec<Arc<FakeNode>> = seeded
        .nodes
        .iter()
        .enumerate()
        .map(|(index, (id, token, servers))| {
            let list: Vec<SimServer> = servers.iter().map(|&(id, state)| SimServer { id, state, acked: 0 }).collect();
            let index_of = list.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
            Arc::new(FakeNode {
                index,
                id: *id,
                token: token.clone(),
                servers: Mutex::new(NodeServers { list, index: index_of, cursor: 0 }),
                silent: AtomicBool::new(false),
                posting: AtomicBool::new(false),
                last_beat_acked: Mutex::new(None),
            })
        })
        .collect();
    let by_token = nodes.iter().map(|n| (n.token.clone(), n.index)).collect();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(p.in_flight)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let fleet = Arc::new(Fleet {
        params: p,
        nodes,
        by_token,
        mode: AtomicU8::new(Mode::Idle as u8),
        panels: RwLock::new(Vec::new()),
        http,
        in_flight: tokio::sync::Semaphore::new(p.in_flight),
        counters: Counters::default(),
    });
    serve_nodes(Arc::clone(&fleet), listener);

    // One panel.
    let first = Panel::start(dir.path(), "panel-1", database_url, &secret, p.interval);
    *fleet.panels.write().unwrap() = vec![events_url(&first.url)];
    let mut drivers = tokio::task::JoinSet::new();
    for node in &fleet.nodes {
        drivers.spawn(drive(Arc::clone(&fleet), Arc::clone(node)));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = first.rss();
    println!("  panel RSS idle after seeding: {idle:.1} MiB");

    println!("One panel:");
    fleet.set_mode(Mode::Beats);
    let up = wait_online(&store, p.nodes, Duration::from_secs(120)).await;
    println!(
        "  all {} nodes online {:.2} s after their first heartbeats (each reconciled at first contact)",
        p.nodes,
        up.as_secs_f64()
    );
    let ingest_one = ingest_phase(&fleet, &store, &[&first], full).await;
    let (list_one, create_one) = api_phase(&fleet, &seeded, &[&first], full, "one").await;
    let offline = offline_phase(&fleet, &store, &first, &seeded.admin_key, full).await;
    let loaded = first.rss();
    println!("  panel RSS after the load: {loaded:.1} MiB (idle {idle:.1} MiB)");

    // Two replicas on the one database.
    println!("Two panel replicas on the same database (node posts and API clients split between them):");
    let second = Panel::start(dir.path(), "panel-2", database_url, &secret, p.interval);
    *fleet.panels.write().unwrap() = vec![events_url(&first.url), events_url(&second.url)];
    // Each process reconciles a node at its first heartbeat to it.
    fleet.set_mode(Mode::Beats);
    tokio::time::sleep(p.interval * 3).await;
    wait_online(&store, p.nodes, Duration::from_secs(120)).await;
    let ingest_two = ingest_phase(&fleet, &store, &[&first, &second], full).await;
    let (list_two, create_two) = api_phase(&fleet, &seeded, &[&first, &second], full, "two").await;
    println!("  panel RSS after the load: {:.1} MiB and {:.1} MiB", first.rss(), second.rss());
    let calls = &fleet.counters;
    println!(
        "  calls the panels made to the nodes: {} creates, {} server lists, {} other",
        calls.creates_received.load(Ordering::Relaxed),
        calls.lists_received.load(Ordering::Relaxed),
        calls.other_received.load(Ordering::Relaxed)
    );

    fleet.set_mode(Mode::Stop);
    while drivers.join_next().await.is_some() {}
    second.stop();
    first.stop();

    println!("Summary ({} nodes, {} servers):", p.nodes, p.servers());
    let judged = |ok: bool| if full { format!(" [{}]", met(ok)) } else { String::new() };
    println!(
        "  ingest: {ingest_one:.0} events/s one panel, {ingest_two:.0} events/s two replicas (goal ≥ {GOAL_EVENTS_PER_SEC:.0}){}{}",
        judged(ingest_one >= GOAL_EVENTS_PER_SEC),
        judged(ingest_two >= GOAL_EVENTS_PER_SEC)
    );
    println!(
        "  API p99 under load: list {list_one:.1} / {list_two:.1} ms, create {create_one:.1} / {create_two:.1} ms \
         (one panel / two replicas; goal ≤ {GOAL_P99_MS:.0} ms){}",
        judged(list_one.max(list_two).max(create_one).max(create_two) <= GOAL_P99_MS)
    );
    println!(
        "  {} silent nodes offline within {offline:.2} intervals (goal ≤ {GOAL_OFFLINE_INTERVALS:.0}){}",
        p.silent,
        judged(offline <= GOAL_OFFLINE_INTERVALS)
    );
    println!("  panel RSS: {idle:.1} MiB idle, {loaded:.1} MiB loaded");
}
