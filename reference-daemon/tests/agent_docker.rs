//! The generic node agent (`nexus-agent`) on the real Docker runtime:
//! done line → `Running`, console round trip, crash → automatic restart → crash loop, stop by
//! command and by signal, serialized power actions, install success and failure, re-adoption
//! after the agent dies, panel outage.
//!
//! Needs Docker and `nexus-test/busybox:latest` (`scripts/images/busybox.sh`); without them
//! every test skips, or fails under `CI=true`. Every test uses its own node id, which every
//! container it creates carries as a label (`io.nexus.node`); a guard removes them all at the
//! end, passed or panicked.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code: a failed expectation fails the test")]

use async_trait::async_trait;
use nexus_agent::{
    AgentConfig, AgentError, ConsoleEvent, ConsoleSubscription, MemoryStateStore, NODE_LABEL, NodeAgent, ShellPreparer,
};
use nexus_conformance::runtime::BUSYBOX_IMAGE;
use nexus_core::ids::{NodeId, ServerId};
use nexus_core::lifecycle::{LifecycleEvent, ServerState, TRANSITIONS, Trigger};
use nexus_core::model::{DoneMatcher, EggScript, ServerLimits, StopMethod, StopSignal};
use nexus_core::runtime::SERVER_LABEL;
use nexus_core::transport::{NodeMessage, PanelTransport, PowerAction, ServerSpec, TransportError};
use nexus_runtime_docker::DockerRuntime;
use std::collections::BTreeMap;
use std::future::Future;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod support;
use tokio::time::Instant;

/// Longest a whole test may take.
const TEST_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest wait for one expected event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Prints `booting`, then the done line a second later, then echoes stdin lines as
/// `got: <line>`; exits 0 on `stop`.
const GAME: &str = r#"echo booting; sleep 1; echo 'Server ready!'; while read line; do echo "got: $line"; if [ "$line" = stop ]; then echo bye; exit 0; fi; done"#;

// ---------------------------------------------------------------------------------------
// Fixtures

/// Docker with the busybox image, or `None` (skip; a failure under `CI=true`).
async fn docker() -> Option<Arc<DockerRuntime>> {
    support::docker().await.map(Arc::new)
}

/// Runs `body` under the test time limit.
async fn within_limit(body: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_TIMEOUT, body).await.expect("test took too long");
}

/// A node of one test: its id, a data root, a panel, a state store; removes every container
/// labelled with the node on drop.
struct Node {
    id: NodeId,
    dir: tempfile::TempDir,
    docker: Arc<DockerRuntime>,
    panel: Arc<TestPanel>,
    store: Arc<MemoryStateStore>,
}

impl Node {
    fn new(docker: Arc<DockerRuntime>) -> Self {
        Self {
            id: NodeId::new(),
            dir: tempfile::tempdir().unwrap(),
            docker,
            panel: Arc::new(TestPanel::default()),
            store: Arc::new(MemoryStateStore::new()),
        }
    }

    fn config(&self) -> AgentConfig {
        let mut config = AgentConfig::new(self.id, self.dir.path().join("volumes"));
        config.stop_timeout = Duration::from_secs(5);
        config.heartbeat_interval = Duration::from_millis(300);
        config
    }

    async fn agent(&self) -> Arc<NodeAgent> {
        self.agent_with(self.config()).await
    }

    async fn agent_with(&self, config: AgentConfig) -> Arc<NodeAgent> {
        NodeAgent::builder(config, self.docker.clone())
            .panel(self.panel.clone())
            .state_store(self.store.clone())
            .preparer(Arc::new(ShellPreparer))
            .start()
            .await
            .expect("agent starts")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let ids = docker_cli(&["ps", "-aq", "--no-trunc", "--filter", &format!("label={NODE_LABEL}={}", self.id)]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            docker_cli(&args);
        }
    }
}

fn docker_cli(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `(full id, running)` of every container of `server`, as the engine sees them.
fn containers_of(server: ServerId) -> Vec<(String, bool)> {
    let listed = docker_cli(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &format!("label={SERVER_LABEL}={server}"),
        "--format",
        "{{.ID}} {{.State}}",
    ]);
    listed.lines().filter_map(|l| l.split_once(' ')).map(|(id, state)| (id.to_owned(), state == "running")).collect()
}

fn spec(startup: &str) -> ServerSpec {
    ServerSpec {
        id: ServerId::new(),
        image: BUSYBOX_IMAGE.into(),
        startup: startup.into(),
        environment: BTreeMap::from([("GREETING".into(), "hi".into())]),
        limits: ServerLimits { memory_mb: 64, swap_mb: 0, cpu_percent: 0, disk_mb: 0, io_weight: 0, pids: 64 },
        allocations: vec![],
        done: vec![DoneMatcher::Regex(r"^Server ready!$".into())],
        stop: StopMethod::Command("stop".into()),
        config_files: vec![],
        install: EggScript { script: String::new(), container: BUSYBOX_IMAGE.into(), entrypoint: "sh".into() },
        file_denylist: vec![],
        suspended: false,
        location: None,
        allocation_limit: None,
        templates: Vec::new(),
    }
}

/// A panel that records what it receives, and refuses everything while `down`.
#[derive(Default)]
struct TestPanel {
    down: AtomicBool,
    received: Mutex<Vec<NodeMessage>>,
}

impl TestPanel {
    fn events(&self) -> Vec<LifecycleEvent> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter_map(|m| match m {
                NodeMessage::Lifecycle(e) => Some(e.clone()),
                NodeMessage::Heartbeat(_) | NodeMessage::Backup(_) => None,
            })
            .collect()
    }

    fn events_of(&self, server: ServerId) -> Vec<LifecycleEvent> {
        self.events().into_iter().filter(|e| e.server == server).collect()
    }

    fn heartbeats(&self) -> usize {
        self.received.lock().unwrap().iter().filter(|m| matches!(m, NodeMessage::Heartbeat(_))).count()
    }
}

#[async_trait]
impl PanelTransport for TestPanel {
    async fn publish(&self, _node: NodeId, message: NodeMessage) -> Result<(), TransportError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(TransportError::Unreachable("panel".into(), "down for the test".into()));
        }
        self.received.lock().unwrap().push(message);
        Ok(())
    }
}

/// Reads a subscription, keeping everything it saw (the replay first). Waits match events
/// after the previous match, including ones read while waiting for something else.
struct Watch {
    sub: ConsoleSubscription,
    seen: Vec<ConsoleEvent>,
    cursor: usize,
}

impl Watch {
    async fn new(agent: &NodeAgent, server: ServerId) -> Self {
        let sub = agent.console(server).await.unwrap();
        let seen = sub.replay.clone();
        Self { sub, seen, cursor: 0 }
    }

    /// The first event after the previous match satisfying `want`.
    async fn until(&mut self, what: &str, want: impl Fn(&ConsoleEvent) -> bool) -> ConsoleEvent {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            if let Some(offset) = self.seen[self.cursor..].iter().position(&want) {
                let found = self.cursor + offset;
                self.cursor = found + 1;
                return self.seen[found].clone();
            }
            match tokio::time::timeout_at(deadline, self.sub.recv()).await {
                Ok(Some(event)) => self.seen.push(event),
                Ok(None) => panic!("console closed while waiting for {what}; seen {:#?}", self.seen),
                Err(_) => panic!("no {what} within {EVENT_TIMEOUT:?}; seen {:#?}", self.seen),
            }
        }
    }

    async fn state(&mut self, to: ServerState) -> LifecycleEvent {
        match self.until(&format!("state {to:?}"), |e| matches!(e, ConsoleEvent::State(s) if s.to == to)).await {
            ConsoleEvent::State(event) => event,
            _ => unreachable!(),
        }
    }

    async fn line(&mut self, text: &str) {
        self.until(&format!("line {text:?}"), |e| matches!(e, ConsoleEvent::Line(l) if l.text == text)).await;
    }

    async fn notice(&mut self, part: &str) -> String {
        match self
            .until(&format!("notice with {part:?}"), |e| matches!(e, ConsoleEvent::Notice(n) if n.contains(part)))
            .await
        {
            ConsoleEvent::Notice(text) => text,
            _ => unreachable!(),
        }
    }

    /// Everything arriving within `period` (stats keep coming while a server runs, so this
    /// waits for a time, not for silence).
    async fn drain(&mut self, period: Duration) {
        let deadline = Instant::now() + period;
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.sub.recv()).await {
            self.seen.push(event);
        }
    }

    fn states(&self) -> Vec<LifecycleEvent> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                ConsoleEvent::State(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    fn notices(&self) -> Vec<String> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                ConsoleEvent::Notice(n) => Some(n.clone()),
                _ => None,
            })
            .collect()
    }
}

/// `(from, trigger, to)` of each event.
fn path(events: &[LifecycleEvent]) -> Vec<(ServerState, Trigger, ServerState)> {
    events.iter().map(|e| (e.from, e.trigger, e.to)).collect()
}

/// Every event is a legal transition and starts where the previous one ended.
fn assert_valid_chain(events: &[LifecycleEvent]) {
    for e in events {
        assert!(TRANSITIONS.contains(&(e.from, e.trigger, e.to)), "illegal transition {e:?}");
    }
    for pair in events.windows(2) {
        assert_eq!(pair[0].to, pair[1].from, "events do not chain: {:?} then {:?}", pair[0], pair[1]);
        assert!(pair[0].at <= pair[1].at);
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

use ServerState as S;
use Trigger as T;

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_waits_for_the_done_line_and_the_console_round_trips() {
    let Some(docker) = docker().await else { return };
    let node = Node::new(docker);
    within_limit(async {
        let agent = node.agent().await;
        let game = spec(GAME);
        let id = game.id;
        agent.create_server(game, false).await.unwrap();
        assert_eq!(agent.state(id), Some(S::Installed));
        let mut watch = Watch::new(&agent, id).await;

        agent.power(id, PowerAction::Start).await.unwrap();
        // The process runs, but the done line comes a second later.
        assert_eq!(agent.state(id), Some(S::Starting));
        watch.line("booting").await;
        assert_eq!(agent.state(id), Some(S::Starting), "running before the done line");
        watch.state(S::Running).await;
        let ready_at = watch.seen.iter().position(|e| matches!(e, ConsoleEvent::Line(l) if l.text == "Server ready!"));
        let running_at = watch.seen.iter().position(|e| matches!(e, ConsoleEvent::State(s) if s.to == S::Running));
        assert!(ready_at.is_some() && running_at.is_some(), "{:#?}", watch.seen);

        agent.send_command(id, "hello there").await.unwrap();
        watch.line("got: hello there").await;
        assert!(matches!(agent.send_command(id, "two\nlines").await, Err(AgentError::InvalidCommand(_))));

        // A new subscriber gets the recent lines and the current state first.
        let late = agent.console(id).await.unwrap();
        let replayed: Vec<String> = late
            .replay
            .iter()
            .filter_map(|e| match e {
                ConsoleEvent::Line(l) => Some(l.text.clone()),
                _ => None,
            })
            .collect();
        // The server runs on a terminal (as under Wings), which echoes the command.
        assert_eq!(replayed, ["booting", "Server ready!", "hello there", "got: hello there"]);
        assert!(late.replay.iter().any(|e| matches!(e, ConsoleEvent::State(s) if s.to == S::Running)));

        // Stats samples flow while it runs.
        watch.until("stats", |e| matches!(e, ConsoleEvent::Stats(s) if s.memory_bytes > 0)).await;

        // Graceful stop by the egg's command.
        agent.power(id, PowerAction::Stop).await.unwrap();
        assert_eq!(agent.state(id), Some(S::Stopped));
        watch.line("bye").await;
        watch.drain(Duration::from_millis(300)).await;
        assert!(!watch.notices().iter().any(|n| n.contains("killed")), "{:?}", watch.notices());

        // Only the one container, now exited.
        let containers = containers_of(id);
        assert_eq!(containers.len(), 1, "{containers:?}");
        assert!(!containers[0].1);

        let expected = vec![
            (S::Installed, T::Start, S::Starting),
            (S::Starting, T::Ready, S::Running),
            (S::Running, T::Stop, S::Stopping),
            (S::Stopping, T::Exited, S::Stopped),
        ];
        assert_eq!(path(&watch.states()), expected);
        eventually("the panel to get every event", || node.panel.events_of(id).len() == expected.len()).await;
        assert_eq!(node.panel.events_of(id), watch.states(), "the panel sees what the console saw, in order");
        assert!(node.panel.heartbeats() > 0);

        let saved = node.store.snapshot().unwrap();
        assert_eq!(saved.servers.len(), 1);
        assert_eq!(saved.servers[0].lifecycle.state(), S::Stopped);
        assert!(saved.servers[0].container.is_some());

        let metrics = agent.metrics();
        assert_eq!(metrics.servers.get(&S::Stopped), Some(&1));
        assert!(metrics.console_lines >= 4);

        agent.destroy_server(id).await.unwrap();
        assert_eq!(agent.state(id), None);
        assert!(containers_of(id).is_empty(), "destroy removes the container");
        assert!(!agent.data_dir(id).exists(), "destroy removes the data directory");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_restarts_once_and_a_second_crash_within_60s_stays_crashed() {
    let Some(docker) = docker().await else { return };
    let node = Node::new(docker);
    within_limit(async {
        let agent = node.agent().await;
        let crashy = spec("echo 'Server ready!'; sleep 1; echo dying; exit 3");
        let id = crashy.id;
        agent.create_server(crashy, false).await.unwrap();
        let mut watch = Watch::new(&agent, id).await;
        agent.power(id, PowerAction::Start).await.unwrap();

        watch.state(S::Running).await;
        watch.state(S::Crashed).await;
        watch.notice("exited with code 3").await;
        // Restarted automatically...
        watch.state(S::Running).await;
        // ...and crashed again within 60 s: no more restarts.
        watch.state(S::Crashed).await;
        watch.notice("will not be restarted automatically").await;
        watch.drain(Duration::from_secs(3)).await;
        assert_eq!(agent.state(id), Some(S::Crashed));

        assert_eq!(
            path(&watch.states()),
            vec![
                (S::Installed, T::Start, S::Starting),
                (S::Starting, T::Ready, S::Running),
                (S::Running, T::Exited, S::Crashed),
                (S::Crashed, T::Start, S::Starting),
                (S::Starting, T::Ready, S::Running),
                (S::Running, T::Exited, S::Crashed),
            ]
        );
        let metrics = agent.metrics();
        assert_eq!((metrics.crashes, metrics.auto_restarts), (2, 1));
        let saved = node.store.snapshot().unwrap();
        assert!(saved.servers[0].lifecycle.last_crash().is_some(), "the last crash is persisted");
        assert!(containers_of(id).len() <= 1, "each start replaces the container");

        // A user can still start it by hand.
        agent.power(id, PowerAction::Start).await.unwrap();
        watch.state(S::Running).await;
        agent.power(id, PowerAction::Kill).await.unwrap();
        assert_eq!(agent.state(id), Some(S::Stopped));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_by_signal_and_kill_after_the_timeout() {
    let Some(docker) = docker().await else { return };
    let node = Node::new(docker);
    within_limit(async {
        let mut config = node.config();
        config.stop_timeout = Duration::from_secs(2);
        let agent = node.agent_with(config).await;

        let mut polite = spec("trap 'echo got TERM; exit 0' TERM; echo 'Server ready!'; while true; do sleep 1; done");
        polite.stop = StopMethod::Signal(StopSignal::Terminate);
        let mut stubborn = spec("trap '' TERM; echo 'Server ready!'; while true; do sleep 1; done");
        stubborn.stop = StopMethod::Signal(StopSignal::Terminate);
        let (polite_id, stubborn_id) = (polite.id, stubborn.id);
        agent.create_server(polite, false).await.unwrap();
        agent.create_server(stubborn, false).await.unwrap();
        let mut polite_watch = Watch::new(&agent, polite_id).await;
        let mut stubborn_watch = Watch::new(&agent, stubborn_id).await;
        agent.power(polite_id, PowerAction::Start).await.unwrap();
        agent.power(stubborn_id, PowerAction::Start).await.unwrap();
        polite_watch.state(S::Running).await;
        stubborn_watch.state(S::Running).await;

        agent.power(polite_id, PowerAction::Stop).await.unwrap();
        assert_eq!(agent.state(polite_id), Some(S::Stopped));
        polite_watch.line("got TERM").await;
        assert!(!polite_watch.notices().iter().any(|n| n.contains("killed")));

        let began = Instant::now();
        agent.power(stubborn_id, PowerAction::Stop).await.unwrap();
        assert!(began.elapsed() >= Duration::from_secs(2), "waited for the stop timeout");
        assert_eq!(agent.state(stubborn_id), Some(S::Stopped));
        stubborn_watch.notice("did not stop within").await;
        for watch in [&mut polite_watch, &mut stubborn_watch] {
            watch.drain(Duration::from_millis(300)).await;
            assert_eq!(path(&watch.states()).last(), Some(&(S::Stopping, T::Exited, S::Stopped)));
            assert!(!watch.states().iter().any(|e| e.to == S::Crashed), "a stop is not a crash");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_power_actions_are_serialized() {
    let Some(docker) = docker().await else { return };
    let node = Node::new(docker);
    within_limit(async {
        let agent = node.agent().await;
        let mut game = spec(GAME);
        // No done line: every start reaches `Running` within the action, which makes
        // interleavings more varied.
        game.done = vec![];
        let id = game.id;
        agent.create_server(game, false).await.unwrap();
        let mut watch = Watch::new(&agent, id).await;

        let actions = [
            PowerAction::Start,
            PowerAction::Stop,
            PowerAction::Restart,
            PowerAction::Start,
            PowerAction::Kill,
            PowerAction::Restart,
            PowerAction::Restart,
            PowerAction::Stop,
            PowerAction::Start,
        ];
        let tasks: Vec<_> = actions
            .iter()
            .map(|&action| {
                let agent = agent.clone();
                tokio::spawn(async move { (action, agent.power(id, action).await) })
            })
            .collect();
        for task in tasks {
            let (action, result) = task.await.unwrap();
            assert!(result.is_ok(), "{action:?}: {result:?}");
        }
        watch.drain(Duration::from_millis(1500)).await;

        let states = watch.states();
        assert_valid_chain(&states);
        assert!(states.iter().any(|e| e.trigger == T::Start));
        // No two actions overlapped: a `Stop` is always followed by its `Exited` before
        // anything else touches the server (a kill of a stopping server would show
        // `Stopping → Stopped` by `Kill`).
        for pair in states.windows(2) {
            if pair[0].to == S::Stopping {
                assert_eq!(pair[1].trigger, T::Exited, "{states:#?}");
            }
        }
        assert!(!states.iter().any(|e| e.to == S::Crashed), "no action was mistaken for a crash: {states:#?}");
        let containers = containers_of(id);
        assert_eq!(containers.len(), 1, "one container per server: {containers:?}");
        let running = agent.state(id) == Some(S::Running);
        assert_eq!(containers[0].1, running, "the engine agrees with the state");

        eventually("the panel to get every event", || node.panel.events_of(id).len() == states.len()).await;
        assert_eq!(node.panel.events_of(id), states);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_success_and_failure_keep_their_log() {
    let Some(docker) = docker().await else { return };
    let node = Node::new(docker);
    within_limit(async {
        let agent = node.agent().await;
        let mut good = spec(GAME);
        good.install.script =
            "echo installing; sleep 2; echo hello > /mnt/server/installed.txt; echo GREETING=$GREETING".into();
        let good_id = good.id;
        agent.create_server(good.clone(), true).await.unwrap();
        let mut watch = Watch::new(&agent, good_id).await;
        // Power actions are refused while the install runs.
        match agent.power(good_id, PowerAction::Start).await {
            Err(AgentError::Busy { operation, .. }) => assert_eq!(operation, "install"),
            other => panic!("expected Busy during the install, got {other:?}"),
        }
        // The output arrives as the script prints it (as with Wings): while it still runs.
        watch.until("install output", |e| matches!(e, ConsoleEvent::Install(l) if l == "installing")).await;
        assert_eq!(agent.state(good_id), Some(S::Installing), "the first line came only at the end");
        watch.until("the last install line", |e| matches!(e, ConsoleEvent::Install(l) if l == "GREETING=hi")).await;
        watch.state(S::Installed).await;
        let log = agent.install_log(good_id).await.unwrap();
        assert!(log.contains("installing") && log.contains("GREETING=hi"), "{log}");
        let written = std::fs::read_to_string(agent.data_dir(good_id).join("installed.txt")).unwrap();
        assert_eq!(written.trim(), "hello");
        assert_eq!(
            path(&watch.states()),
            vec![(S::Requested, T::InstallStarted, S::Installing), (S::Installing, T::InstallSucceeded, S::Installed)]
        );
        // Installed servers start.
        agent.power(good_id, PowerAction::Start).await.unwrap();
        watch.state(S::Running).await;
        agent.power(good_id, PowerAction::Kill).await.unwrap();

        let mut bad = spec(GAME);
        bad.install.script = "echo oops >&2; exit 7".into();
        let bad_id = bad.id;
        agent.create_server(bad.clone(), true).await.unwrap();
        let mut bad_watch = Watch::new(&agent, bad_id).await;
        bad_watch.state(S::InstallFailed).await;
        let log = agent.install_log(bad_id).await.unwrap();
        assert!(log.contains("oops") && log.contains("code 7"), "{log}");
        match agent.power(bad_id, PowerAction::Start).await {
            Err(e @ AgentError::InvalidState(_)) => assert_eq!(e.status_code(), 409),
            other => panic!("a failed install cannot start: {other:?}"),
        }

        // Reinstall with a fixed script through an updated spec.
        bad.install.script = "echo fixed".into();
        agent.create_server(bad, true).await.unwrap();
        bad_watch.state(S::Installed).await;
        assert!(agent.install_log(bad_id).await.unwrap().contains("fixed"));

        // The log and the states survive the agent.
        agent.shutdown().await;
        assert!(matches!(agent.power(good_id, PowerAction::Start).await, Err(AgentError::ShuttingDown)));
        drop(agent);
        let agent = node.agent().await;
        assert!(agent.install_log(good_id).await.unwrap().contains("installing"));
        assert_eq!(agent.state(bad_id), Some(S::Installed));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_agent_readopts_running_servers_without_a_second_start() {
    let Some(docker) = docker().await else { return };
    let node = Node::new(docker);
    within_limit(async {
        let agent = node.agent().await;
        let (running, stopped, vanished) = (spec(GAME), spec(GAME), spec(GAME));
        let (running_id, stopped_id, vanished_id) = (running.id, stopped.id, vanished.id);
        for s in [running, stopped, vanished] {
            agent.create_server(s, false).await.unwrap();
        }
        for id in [running_id, stopped_id, vanished_id] {
            let mut watch = Watch::new(&agent, id).await;
            agent.power(id, PowerAction::Start).await.unwrap();
            watch.state(S::Running).await;
        }
        agent.power(stopped_id, PowerAction::Stop).await.unwrap();
        let before = containers_of(running_id);
        assert_eq!(before.len(), 1);
        // Everything delivered and the delivery persisted, so the next agent resends nothing.
        eventually("the panel to get the events", || node.panel.events_of(running_id).len() == 2).await;
        eventually("the outbox to empty", || node.store.snapshot().unwrap().outbox.is_empty()).await;
        let events_before = node.panel.events_of(running_id).len();

        // The daemon dies: no stop, containers keep running.
        drop(agent);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(containers_of(running_id), before, "dropping the agent leaves the container running");
        // While it is away, one server's container disappears.
        docker_cli(&["rm", "-f", &containers_of(vanished_id)[0].0]);

        // An agent with other state leaves containers it does not know alone.
        let stranger =
            NodeAgent::builder(AgentConfig::new(NodeId::new(), node.dir.path().join("other")), node.docker.clone())
                .panel(Arc::new(TestPanel::default()))
                .preparer(Arc::new(ShellPreparer))
                .start()
                .await
                .unwrap();
        assert!(stranger.servers().is_empty());
        drop(stranger);
        assert_eq!(containers_of(running_id), before, "unknown containers are not killed");

        let agent = node.agent().await;
        assert_eq!(agent.state(running_id), Some(S::Running));
        assert_eq!(agent.state(stopped_id), Some(S::Stopped));
        assert_eq!(containers_of(running_id), before, "same container, no second one, not restarted");

        // Console re-attached: commands round-trip.
        let mut watch = Watch::new(&agent, running_id).await;
        assert!(watch.sub.replay.iter().any(|e| matches!(e, ConsoleEvent::Notice(n) if n.contains("re-attached"))));
        agent.send_command(running_id, "ping").await.unwrap();
        watch.line("got: ping").await;

        // The exit watcher is armed again: an exit the agent did not ask for is a crash,
        // restarted automatically.
        agent.send_command(running_id, "stop").await.unwrap();
        watch.state(S::Crashed).await;
        watch.state(S::Running).await;
        eventually("the panel to hear of the crash", || node.panel.events_of(running_id).len() >= events_before + 3)
            .await;
        let after = node.panel.events_of(running_id)[events_before..].to_vec();
        assert_eq!(after[0].trigger, T::Exited, "no start was sent at adoption: {after:#?}");

        // The server whose container vanished crashed while the agent was away, and was
        // restarted.
        let mut vanished_watch = Watch::new(&agent, vanished_id).await;
        if agent.state(vanished_id) != Some(S::Running) {
            vanished_watch.state(S::Running).await;
        }
        let vanished_events = node.panel.events_of(vanished_id);
        assert!(path(&vanished_events).contains(&(S::Running, T::Exited, S::Crashed)), "{vanished_events:#?}");
        assert_eq!(containers_of(vanished_id).len(), 1);

        for id in [running_id, vanished_id] {
            agent.power(id, PowerAction::Stop).await.unwrap();
            assert_eq!(agent.state(id), Some(S::Stopped));
        }
        for id in [running_id, stopped_id, vanished_id] {
            assert_valid_chain(&node.panel.events_of(id));
            assert!(containers_of(id).len() <= 1, "no orphan");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_a_panel_outage_in_order() {
    let Some(docker) = docker().await else { return };
    let node = Node::new(docker);
    within_limit(async {
        node.panel.down.store(true, Ordering::SeqCst);
        let agent = node.agent().await;
        let game = spec(GAME);
        let id = game.id;
        agent.create_server(game, false).await.unwrap();
        let mut watch = Watch::new(&agent, id).await;
        agent.power(id, PowerAction::Start).await.unwrap();
        watch.state(S::Running).await;
        agent.power(id, PowerAction::Restart).await.unwrap();
        watch.state(S::Running).await;
        agent.power(id, PowerAction::Stop).await.unwrap();
        watch.drain(Duration::from_millis(300)).await;
        let states = watch.states();
        assert_eq!(states.len(), 8, "{states:#?}");

        assert!(node.panel.events().is_empty());
        // Queued, one heartbeat at most, and persisted.
        assert_eq!(agent.metrics().queued_messages, states.len() + 1);
        let saved: Vec<NodeMessage> = node.store.snapshot().unwrap().outbox;
        assert_eq!(saved, states.iter().cloned().map(NodeMessage::Lifecycle).collect::<Vec<_>>());
        assert!(agent.metrics().publish_failures > 0);

        node.panel.down.store(false, Ordering::SeqCst);
        eventually("the panel to get every event", || node.panel.events_of(id).len() >= states.len()).await;
        assert_eq!(node.panel.events_of(id), states, "all delivered, in order, once");
        eventually("a heartbeat", || node.panel.heartbeats() > 0).await;
        eventually("the persisted outbox to empty", || node.store.snapshot().unwrap().outbox.is_empty()).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_throttle_drops_with_one_notice() {
    let Some(docker) = docker().await else { return };
    let node = Node::new(docker);
    within_limit(async {
        let mut config = node.config();
        config.console_lines_per_second = 50;
        let agent = node.agent_with(config).await;
        // 1000 lines at once, the done line last: it must still count although throttled.
        let flood =
            spec("i=0; while [ $i -lt 1000 ]; do echo line $i; i=$((i+1)); done; echo 'Server ready!'; sleep 600");
        let id = flood.id;
        agent.create_server(flood, false).await.unwrap();
        let mut watch = Watch::new(&agent, id).await;
        agent.power(id, PowerAction::Start).await.unwrap();
        watch.state(S::Running).await;
        let notice = watch.notice("console output throttled").await;
        watch.drain(Duration::from_millis(1500)).await;
        let lines = watch.seen.iter().filter(|e| matches!(e, ConsoleEvent::Line(_))).count();
        assert!(lines <= 100, "at most the limit per window passes: {lines}");
        let throttled: Vec<String> =
            watch.notices().into_iter().filter(|n| n.contains("console output throttled")).collect();
        assert_eq!(throttled.len(), 1, "one notice per window: {throttled:?}");
        assert!(notice.contains(" lines dropped"), "{notice}");
        let metrics = agent.metrics();
        assert_eq!(metrics.console_lines + metrics.console_lines_dropped, 1001);
        agent.power(id, PowerAction::Kill).await.unwrap();
    })
    .await;
}

/// Live install output is held to the console's line rate like the server's own output (a
/// script printing without end must not flood every console); the install log keeps it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_install_output_is_throttled_but_logged_whole() {
    let Some(docker) = docker().await else { return };
    let node = Node::new(docker);
    within_limit(async {
        let mut config = node.config();
        config.console_lines_per_second = 50;
        let agent = node.agent_with(config).await;
        let mut spec = spec(GAME);
        spec.install.script = "seq 1 3000".into();
        let id = spec.id;
        agent.create_server(spec, true).await.unwrap();
        let mut watch = Watch::new(&agent, id).await;
        watch.state(S::Installed).await;
        watch.drain(Duration::from_millis(300)).await;
        let lines = watch.seen.iter().filter(|e| matches!(e, ConsoleEvent::Install(_))).count();
        assert!(lines < 3000, "{lines} install lines reached the console");
        assert!(watch.notices().iter().any(|n| n.contains("throttled")), "{:?}", watch.notices());
        let log = agent.install_log(id).await.unwrap();
        assert!(log.lines().any(|l| l == "3000") && log.lines().any(|l| l == "1"), "the log lost lines");
    })
    .await;
}
