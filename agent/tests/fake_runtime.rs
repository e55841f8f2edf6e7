//! The node agent's own logic on a scripted in-memory runtime ([`fake::FakeRuntime`]), no
//! container engine: the done line → `Running`, power actions serialized in arrival order,
//! crash → automatic restart → crash loop, re-adoption by a new agent, the ordered outbox
//! across a panel outage, installs. The same behaviours are tested against Docker in
//! `reference-daemon/tests/agent_docker.rs`; here they run in about a second each, and the
//! fake's call log shows what the agent asked the runtime for, in which order.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake;

use async_trait::async_trait;
use fake::{FakeRuntime, Program};
use nexus_agent::{
    AgentConfig, AgentError, ConsoleEvent, ConsoleSubscription, MemoryStateStore, NodeAgent, ShellPreparer,
};
use nexus_core::ids::{NodeId, ServerId};
use nexus_core::lifecycle::{LifecycleEvent, ServerState, TRANSITIONS, Trigger};
use nexus_core::model::{DoneMatcher, EggScript, ServerLimits, StopMethod};
use nexus_core::transport::{NodeMessage, PanelTransport, PowerAction, ServerSpec, TransportError};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use ServerState as S;
use Trigger as T;

/// Longest a whole test may take.
const TEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for one expected event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The done line of [`spec`].
const READY: &str = "Server ready!";

// ---------------------------------------------------------------------------------------
// Fixtures

async fn within_limit(body: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_TIMEOUT, body).await.expect("test took too long");
}

/// One node: a fake engine, a data root, a panel and a state store that agents built by
/// [`agent`](Self::agent) share (so a second agent finds what the first left).
struct Node {
    id: NodeId,
    dir: tempfile::TempDir,
    fake: Arc<FakeRuntime>,
    panel: Arc<TestPanel>,
    store: Arc<MemoryStateStore>,
}

impl Node {
    fn new() -> Self {
        Self {
            id: NodeId::new(),
            dir: tempfile::tempdir().unwrap(),
            fake: FakeRuntime::new(),
            panel: Arc::new(TestPanel::default()),
            store: Arc::new(MemoryStateStore::new()),
        }
    }

    fn config(&self) -> AgentConfig {
        let mut config = AgentConfig::new(self.id, self.dir.path().join("volumes"));
        config.stop_timeout = Duration::from_millis(300);
        config.heartbeat_interval = Duration::from_millis(100);
        config
    }

    async fn agent(&self) -> Arc<NodeAgent> {
        NodeAgent::builder(self.config(), self.fake.clone())
            .panel(self.panel.clone())
            .state_store(self.store.clone())
            .preparer(Arc::new(ShellPreparer))
            .start()
            .await
            .expect("agent starts")
    }
}

fn spec() -> ServerSpec {
    ServerSpec {
        id: ServerId::new(),
        image: "nexus-test/game:latest".into(),
        startup: "./game --port 27015".into(),
        environment: BTreeMap::from([("GREETING".into(), "hi".into())]),
        limits: ServerLimits { memory_mb: 64, swap_mb: 0, cpu_percent: 0, disk_mb: 0, io_weight: 0, pids: 64 },
        allocations: vec![],
        done: vec![DoneMatcher::Substring(READY.into())],
        stop: StopMethod::Command("stop".into()),
        config_files: vec![],
        install: EggScript {
            script: String::new(),
            container: "nexus-test/installer:latest".into(),
            entrypoint: "sh".into(),
        },
        file_denylist: vec![],
        suspended: false,
        location: None,
        allocation_limit: None,
        templates: Vec::new(),
    }
}

/// A panel recording what it receives; refuses everything (unreachable) while `down`.
#[derive(Default)]
struct TestPanel {
    down: AtomicBool,
    received: Mutex<Vec<NodeMessage>>,
}

impl TestPanel {
    fn events_of(&self, server: ServerId) -> Vec<LifecycleEvent> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter_map(|m| match m {
                NodeMessage::Lifecycle(e) if e.server == server => Some(e.clone()),
                _ => None,
            })
            .collect()
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

/// Reads a console subscription, keeping everything seen (the replay first). Each wait
/// matches events after the previous match, including ones read while waiting for another.
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

    async fn until(&mut self, what: &str, want: impl Fn(&ConsoleEvent) -> bool) -> usize {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            if let Some(offset) = self.seen[self.cursor..].iter().position(&want) {
                let found = self.cursor + offset;
                self.cursor = found + 1;
                return found;
            }
            match tokio::time::timeout_at(deadline, self.sub.recv()).await {
                Ok(Some(event)) => self.seen.push(event),
                Ok(None) => panic!("console closed while waiting for {what}; seen {:#?}", self.seen),
                Err(_) => panic!("no {what} within {EVENT_TIMEOUT:?}; seen {:#?}", self.seen),
            }
        }
    }

    /// Position of the next state event into `to`.
    async fn state(&mut self, to: ServerState) -> usize {
        self.until(&format!("state {to:?}"), |e| matches!(e, ConsoleEvent::State(s) if s.to == to)).await
    }

    /// Position of the next console line `text`.
    async fn line(&mut self, text: &str) -> usize {
        self.until(&format!("line {text:?}"), |e| matches!(e, ConsoleEvent::Line(l) if l.text == text)).await
    }

    async fn notice(&mut self, part: &str) -> usize {
        self.until(&format!("notice with {part:?}"), |e| matches!(e, ConsoleEvent::Notice(n) if n.contains(part))).await
    }

    async fn install_line(&mut self, text: &str) -> usize {
        self.until(&format!("install line {text:?}"), |e| matches!(e, ConsoleEvent::Install(l) if l == text)).await
    }

    /// Everything arriving within `period`.
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

    fn lines(&self) -> Vec<String> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                ConsoleEvent::Line(l) => Some(l.text.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Prints a marker and waits until the console shows it: the agent's console reader handles
/// lines one after the other (done matching included), so every line printed before has been
/// fully handled by then.
async fn settle(node: &Node, watch: &mut Watch, server: ServerId, marker: &str) {
    node.fake.print(server, marker);
    watch.line(marker).await;
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
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The method names of `ops` (`create c2` → `create`).
fn names(ops: &[String]) -> Vec<&str> {
    ops.iter().map(|o| o.split(' ').next().unwrap_or_default()).collect()
}

// ---------------------------------------------------------------------------------------
// Tests

/// `Starting` until a line containing the done substring (or matching the done regex) is
/// printed, `Running` right after it; lines before it, near misses and the done line of an
/// earlier run do not count; without matchers a start is `Running` at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_only_once_the_done_line_is_printed() {
    within_limit(async {
        let node = Node::new();
        let agent = node.agent().await;

        // Substring matcher.
        let game = spec();
        let id = game.id;
        agent.create_server(game, false).await.unwrap();
        assert_eq!(agent.state(id), Some(S::Installed));
        let mut watch = Watch::new(&agent, id).await;
        agent.power(id, PowerAction::Start).await.unwrap();
        assert_eq!(agent.state(id), Some(S::Starting));
        for line in ["booting", "Server ready", "server ready! (wrong case)", "Server read y!"] {
            node.fake.print(id, line);
        }
        settle(&node, &mut watch, id, "marker 1").await;
        assert_eq!(agent.state(id), Some(S::Starting), "running before the done line: {:#?}", watch.seen);
        node.fake.print(id, "[12:00:01 INFO] Server ready! For help, type help");
        let running = watch.state(S::Running).await;
        let done_line = watch.seen.iter().position(|e| matches!(e, ConsoleEvent::Line(l) if l.text.contains(READY)));
        assert!(done_line.is_some_and(|at| at < running), "the done line comes before `Running`: {:#?}", watch.seen);
        assert_eq!(agent.state(id), Some(S::Running));

        // A second run waits for its own done line (the first one's is still in the replay).
        agent.power(id, PowerAction::Stop).await.unwrap();
        assert_eq!(agent.state(id), Some(S::Stopped));
        agent.power(id, PowerAction::Start).await.unwrap();
        node.fake.print(id, "booting again");
        settle(&node, &mut watch, id, "marker 2").await;
        assert_eq!(agent.state(id), Some(S::Starting), "the previous run's done line counted");
        node.fake.print(id, READY);
        watch.state(S::Running).await;
        assert_eq!(
            path(&watch.states()),
            vec![
                (S::Installed, T::Start, S::Starting),
                (S::Starting, T::Ready, S::Running),
                (S::Running, T::Stop, S::Stopping),
                (S::Stopping, T::Exited, S::Stopped),
                (S::Stopped, T::Start, S::Starting),
                (S::Starting, T::Ready, S::Running),
            ]
        );

        // Regex matcher: the whole pattern, anchors included.
        let mut regex_game = spec();
        regex_game.done = vec![DoneMatcher::Regex(r"^Listening on port \d+$".into())];
        let regex_id = regex_game.id;
        agent.create_server(regex_game, false).await.unwrap();
        let mut regex_watch = Watch::new(&agent, regex_id).await;
        agent.power(regex_id, PowerAction::Start).await.unwrap();
        for line in ["Listening on port x", "  Listening on port 27015", "Listening on port 27015 (udp)", READY] {
            node.fake.print(regex_id, line);
        }
        settle(&node, &mut regex_watch, regex_id, "marker 3").await;
        assert_eq!(agent.state(regex_id), Some(S::Starting), "{:#?}", regex_watch.seen);
        node.fake.print(regex_id, "Listening on port 27015");
        regex_watch.state(S::Running).await;

        // No matchers: running as soon as the process is.
        let mut plain = spec();
        plain.done = vec![];
        let plain_id = plain.id;
        agent.create_server(plain, false).await.unwrap();
        agent.power(plain_id, PowerAction::Start).await.unwrap();
        assert_eq!(agent.state(plain_id), Some(S::Running));
    })
    .await;
}

/// Power actions issued together run one at a time, in the order they arrived: the runtime
/// sees each action's calls complete before the next action's first one, and the lifecycle
/// is the one the sequence implies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_power_actions_run_one_at_a_time_in_arrival_order() {
    within_limit(async {
        let node = Node::new();
        // Every container call takes a while: unserialized actions would overlap.
        node.fake.set_latency(Duration::from_millis(20));
        let agent = node.agent().await;
        let mut game = spec();
        game.done = vec![];
        let id = game.id;
        agent.create_server(game, false).await.unwrap();
        let mut watch = Watch::new(&agent, id).await;

        let actions = [
            PowerAction::Start,
            PowerAction::Stop,
            PowerAction::Restart,
            PowerAction::Kill,
            PowerAction::Start,
            PowerAction::Restart,
            PowerAction::Stop,
        ];
        let finished = Mutex::new(Vec::new());
        // `join_all` polls them in this order at once: the first takes the server's lock and
        // waits inside the runtime, the others queue behind it in this order.
        let results = futures::future::join_all(actions.iter().enumerate().map(|(n, &action)| {
            let (agent, finished) = (&agent, &finished);
            async move {
                let result = agent.power(id, action).await;
                finished.lock().unwrap().push(n);
                (action, result)
            }
        }))
        .await;
        for (action, result) in results {
            assert!(result.is_ok(), "{action:?}: {result:?}");
        }
        assert_eq!(*finished.lock().unwrap(), (0..actions.len()).collect::<Vec<_>>(), "completed out of order");

        // No two container calls of the server overlapped.
        let mut open: Option<String> = None;
        for call in node.fake.calls().iter().filter(|c| c.server == Some(id) && c.changes_containers()) {
            if call.end {
                assert_eq!(open.take().as_deref(), Some(call.short().as_str()), "{:#?}", node.fake.calls());
            } else {
                assert!(open.is_none(), "{} began during {open:?}: {:#?}", call.short(), node.fake.calls());
                open = Some(call.short());
            }
        }
        assert_eq!(
            node.fake.changes(id),
            [
                // start
                "create c1",
                "start c1",
                // stop
                "stop c1",
                // restart of a stopped server: a start, on a fresh container
                "destroy c1",
                "create c2",
                "start c2",
                // kill
                "kill c2",
                // start
                "destroy c2",
                "create c3",
                "start c3",
                // restart
                "stop c3",
                "destroy c3",
                "create c4",
                "start c4",
                // stop
                "stop c4",
            ]
        );
        // Each graceful stop wrote the egg's stop command; nothing else was written.
        assert_eq!(node.fake.stdin(id), ["stop", "stop", "stop"]);

        watch.drain(Duration::from_millis(200)).await;
        let states = watch.states();
        assert_valid_chain(&states);
        assert_eq!(
            path(&states),
            vec![
                (S::Installed, T::Start, S::Starting),
                (S::Starting, T::Ready, S::Running),
                (S::Running, T::Stop, S::Stopping),
                (S::Stopping, T::Exited, S::Stopped),
                (S::Stopped, T::Start, S::Starting),
                (S::Starting, T::Ready, S::Running),
                (S::Running, T::Kill, S::Stopped),
                (S::Stopped, T::Start, S::Starting),
                (S::Starting, T::Ready, S::Running),
                (S::Running, T::Stop, S::Stopping),
                (S::Stopping, T::Exited, S::Stopped),
                (S::Stopped, T::Start, S::Starting),
                (S::Starting, T::Ready, S::Running),
                (S::Running, T::Stop, S::Stopping),
                (S::Stopping, T::Exited, S::Stopped),
            ]
        );
        assert_eq!(agent.state(id), Some(S::Stopped));
        assert_eq!(node.fake.containers(id), [("c4".to_owned(), false)], "one container, not running");
        assert!(
            !watch.notices().iter().any(|n| n.contains("killed") || n.contains("crashed")),
            "{:?}",
            watch.notices()
        );
        eventually("the panel to get every event", || node.panel.events_of(id).len() == states.len()).await;
        assert_eq!(node.panel.events_of(id), states);
    })
    .await;
}

/// A crash (non-zero exit while running) is `Crashed`, then restarted automatically on a new
/// container; a second crash within 60 s of the first stays `Crashed`, with a notice, and is
/// not restarted; a user can still start it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_restarts_once_and_a_second_crash_within_60s_stays_crashed() {
    within_limit(async {
        let node = Node::new();
        let agent = node.agent().await;
        let game = spec();
        let id = game.id;
        node.fake.program(id, Program::booting(&["booting", READY]));
        agent.create_server(game, false).await.unwrap();
        let mut watch = Watch::new(&agent, id).await;
        agent.power(id, PowerAction::Start).await.unwrap();
        watch.state(S::Running).await;

        node.fake.exit(id, 3);
        watch.state(S::Crashed).await;
        watch.notice("exited with code 3").await;
        watch.notice("restarting the server after its crash").await;
        watch.state(S::Starting).await;
        watch.state(S::Running).await;
        assert_eq!(node.fake.changes(id), ["create c1", "start c1", "destroy c1", "create c2", "start c2"]);

        node.fake.exit(id, 4);
        watch.state(S::Crashed).await;
        watch.notice("exited with code 4").await;
        watch.notice("will not be restarted automatically").await;
        watch.drain(Duration::from_millis(500)).await;
        assert_eq!(agent.state(id), Some(S::Crashed));
        assert_eq!(
            node.fake.changes(id),
            ["create c1", "start c1", "destroy c1", "create c2", "start c2"],
            "restarted after a crash loop"
        );
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

        // The crash loop only stops automatic restarts.
        agent.power(id, PowerAction::Start).await.unwrap();
        watch.state(S::Running).await;
        assert_eq!(node.fake.containers(id), [("c3".to_owned(), true)]);
    })
    .await;
}

/// A second agent over the same engine and state store takes over what the first left
/// (adopt.rs' table): a running server is kept (no create, no start; console, input and exit
/// handling re-attached, what it printed meanwhile replayed); a starting one whose done line
/// came while no agent ran is `Running`; a stopped one stays stopped; one whose container
/// vanished or whose process exited meanwhile crashed and is restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_agent_readopts_what_the_previous_one_left() {
    within_limit(async {
        let node = Node::new();
        let agent = node.agent().await;
        let (running, starting, stopped, vanished, exited) = (spec(), spec(), spec(), spec(), spec());
        let (running_id, starting_id, stopped_id, vanished_id, exited_id) =
            (running.id, starting.id, stopped.id, vanished.id, exited.id);
        for s in [running, starting, stopped, vanished, exited] {
            if s.id != starting_id {
                node.fake.program(s.id, Program::booting(&["booting", READY]));
            }
            agent.create_server(s, false).await.unwrap();
        }
        for id in [running_id, stopped_id, vanished_id, exited_id] {
            let mut watch = Watch::new(&agent, id).await;
            agent.power(id, PowerAction::Start).await.unwrap();
            watch.state(S::Running).await;
        }
        agent.power(starting_id, PowerAction::Start).await.unwrap();
        agent.power(stopped_id, PowerAction::Stop).await.unwrap();
        node.fake.print(running_id, "before the restart");
        let running_containers = node.fake.containers(running_id);
        assert_eq!(running_containers.len(), 1);
        // Everything delivered and the delivery saved, so the next agent resends nothing.
        eventually("the panel to get the events", || node.panel.events_of(running_id).len() == 2).await;
        eventually("the saved outbox to empty", || node.store.snapshot().unwrap().outbox.is_empty()).await;
        let events_before: BTreeMap<ServerId, usize> = [running_id, starting_id, stopped_id, vanished_id, exited_id]
            .into_iter()
            .map(|id| (id, node.panel.events_of(id).len()))
            .collect();

        // The agent dies without stopping anything.
        let gone = Arc::downgrade(&agent);
        drop(agent);
        eventually("the first agent to be gone", || gone.upgrade().is_none()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Meanwhile: output, a done line, a container removed, a process exiting.
        node.fake.print(running_id, "while away");
        node.fake.print(starting_id, "[init] Server ready! (while away)");
        node.fake.vanish(vanished_id);
        node.fake.exit(exited_id, 1);
        let mark = node.fake.calls().len();

        let agent = node.agent().await;
        let since = |id| node.fake.ops_since(id, mark);

        // Running: kept as it is.
        assert_eq!(agent.state(running_id), Some(S::Running));
        assert_eq!(node.fake.containers(running_id), running_containers, "same container, still running");
        let ops = since(running_id);
        assert!(
            !names(&ops).iter().any(|op| ["create", "start", "stop", "kill", "destroy"].contains(op)),
            "a running server was touched: {ops:?}"
        );
        assert!(names(&ops).contains(&"attach"), "console not re-attached: {ops:?}");
        let mut watch = Watch::new(&agent, running_id).await;
        assert_eq!(watch.lines(), ["booting", READY, "before the restart", "while away"], "output replayed");
        assert!(watch.notices().iter().any(|n| n.contains("re-attached")), "{:?}", watch.notices());
        node.fake.print(running_id, "after the restart");
        watch.line("after the restart").await;
        agent.send_command(running_id, "say hello").await.unwrap();
        assert_eq!(node.fake.stdin(running_id), ["say hello"], "the input is re-attached");
        // The exit watcher is armed again and the stop works on the adopted container.
        agent.power(running_id, PowerAction::Stop).await.unwrap();
        assert_eq!(agent.state(running_id), Some(S::Stopped));
        assert!(!node.fake.containers(running_id)[0].1, "still running after the stop");
        watch.drain(Duration::from_millis(100)).await;
        assert!(!watch.notices().iter().any(|n| n.contains("killed")), "{:?}", watch.notices());

        // Starting, done line printed while away: running, not started again.
        assert_eq!(agent.state(starting_id), Some(S::Running));
        assert!(!names(&since(starting_id)).iter().any(|op| ["create", "start"].contains(op)));

        // Stopped: left alone.
        assert_eq!(agent.state(stopped_id), Some(S::Stopped));
        assert!(!names(&since(stopped_id)).iter().any(|op| ["create", "start"].contains(op)));

        // Vanished or exited while away: crashed, restarted on a new container.
        for (id, replaced) in [(vanished_id, vec!["create", "start"]), (exited_id, vec!["destroy", "create", "start"])]
        {
            let mut watch = Watch::new(&agent, id).await;
            if agent.state(id) != Some(S::Running) {
                watch.state(S::Running).await;
            }
            assert!(
                watch.notices().iter().any(|n| n.contains("ended while the node agent was not running")),
                "{:?}",
                watch.notices()
            );
            let changes: Vec<String> = since(id)
                .into_iter()
                .filter(|op| ["create", "start", "stop", "kill", "destroy"].iter().any(|n| op.starts_with(n)))
                .collect();
            assert_eq!(names(&changes), replaced, "{id}");
            let containers = node.fake.containers(id);
            assert_eq!(containers.len(), 1, "{containers:?}");
            assert!(containers[0].1);
        }

        // The panel heard the new agent's events only, and nothing at adoption of the kept
        // servers.
        eventually("the panel to hear of the adopted servers", || {
            node.panel.events_of(running_id).len() == events_before[&running_id] + 2
                && node.panel.events_of(starting_id).len() == events_before[&starting_id] + 1
                && node.panel.events_of(exited_id).len() == events_before[&exited_id] + 3
                && node.panel.events_of(vanished_id).len() == events_before[&vanished_id] + 3
        })
        .await;
        let after = |id: ServerId| path(&node.panel.events_of(id)[events_before[&id]..]);
        assert_eq!(after(running_id), [(S::Running, T::Stop, S::Stopping), (S::Stopping, T::Exited, S::Stopped)]);
        assert_eq!(after(starting_id), [(S::Starting, T::Ready, S::Running)]);
        assert_eq!(node.panel.events_of(stopped_id).len(), events_before[&stopped_id]);
        for id in [vanished_id, exited_id] {
            assert_eq!(
                after(id),
                [
                    (S::Running, T::Exited, S::Crashed),
                    (S::Crashed, T::Start, S::Starting),
                    (S::Starting, T::Ready, S::Running)
                ]
            );
        }
        for id in [running_id, starting_id, stopped_id, vanished_id, exited_id] {
            assert_valid_chain(&node.panel.events_of(id));
        }
    })
    .await;
}

/// While the panel is unreachable, lifecycle events queue (and are saved); once it is back
/// they all arrive, in the order they happened, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_a_panel_outage_in_order() {
    within_limit(async {
        let node = Node::new();
        node.panel.down.store(true, Ordering::SeqCst);
        let agent = node.agent().await;
        let game = spec();
        let id = game.id;
        node.fake.program(id, Program::booting(&[READY]));
        agent.create_server(game, false).await.unwrap();
        let mut watch = Watch::new(&agent, id).await;
        agent.power(id, PowerAction::Start).await.unwrap();
        watch.state(S::Running).await;
        agent.power(id, PowerAction::Restart).await.unwrap();
        watch.state(S::Running).await;
        agent.power(id, PowerAction::Stop).await.unwrap();
        watch.drain(Duration::from_millis(100)).await;
        let states = watch.states();
        assert_eq!(states.len(), 8, "{states:#?}");

        eventually("a failed delivery", || agent.metrics().publish_failures > 0).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(node.panel.events_of(id).is_empty());
        let saved = node.store.snapshot().unwrap().outbox;
        assert_eq!(saved, states.iter().cloned().map(NodeMessage::Lifecycle).collect::<Vec<_>>(), "queue saved");

        node.panel.down.store(false, Ordering::SeqCst);
        eventually("the panel to get every event", || node.panel.events_of(id).len() >= states.len()).await;
        eventually("a heartbeat", || node.panel.heartbeats() > 0).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(node.panel.events_of(id), states, "all delivered, in order, once");
        eventually("the saved outbox to empty", || node.store.snapshot().unwrap().outbox.is_empty()).await;
        assert_eq!(agent.metrics().events_sent, 8);
    })
    .await;
}

/// Events queued for an unreachable panel survive the agent: the next agent (same state
/// store) delivers them first, then its own, in order, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_queued_during_an_outage_survive_an_agent_restart() {
    within_limit(async {
        let node = Node::new();
        node.panel.down.store(true, Ordering::SeqCst);
        let agent = node.agent().await;
        let game = spec();
        let id = game.id;
        node.fake.program(id, Program::booting(&[READY]));
        agent.create_server(game, false).await.unwrap();
        let mut watch = Watch::new(&agent, id).await;
        agent.power(id, PowerAction::Start).await.unwrap();
        watch.state(S::Running).await;
        let first = watch.states();
        assert_eq!(first.len(), 2);
        // Dropped once `Running` is saved (a crash between the transition and its save loses the
        // event; the next agent then derives `Running` again and reports its own).
        eventually("`Running` to be saved", || {
            node.store.snapshot().unwrap().servers.iter().all(|s| s.lifecycle.state() == S::Running)
        })
        .await;
        // Gone for good: a background task holding the agent a moment longer could otherwise
        // still save its view after the next agent loaded the store.
        let gone = Arc::downgrade(&agent);
        drop(agent);
        eventually("the first agent to be gone", || gone.upgrade().is_none()).await;

        let agent = node.agent().await;
        assert_eq!(agent.state(id), Some(S::Running));
        let mut watch = Watch::new(&agent, id).await;
        agent.power(id, PowerAction::Stop).await.unwrap();
        watch.state(S::Stopped).await;
        // Adoption itself reported nothing: only the stop's two events.
        let second = watch.states();
        assert_eq!(path(&second), [(S::Running, T::Stop, S::Stopping), (S::Stopping, T::Exited, S::Stopped)]);

        tokio::time::sleep(Duration::from_millis(300)).await;
        node.panel.down.store(false, Ordering::SeqCst);
        let expected: Vec<LifecycleEvent> = first.into_iter().chain(second).collect();
        eventually("the panel to get every event", || node.panel.events_of(id).len() >= expected.len()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(node.panel.events_of(id), expected);
    })
    .await;
}

/// `create_server(spec, install = true)` runs the egg's script through the runtime
/// (`Installing`, power actions refused meanwhile, output on the console, `Installed`, log
/// kept); a script exiting non-zero ends in `InstallFailed`, which cannot start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_success_and_failure() {
    within_limit(async {
        let node = Node::new();
        let agent = node.agent().await;

        let mut good = spec();
        good.install.script = "echo installing; ./download".into();
        let good_id = good.id;
        node.fake.program(good_id, Program::booting(&[READY]));
        node.fake.script_install(good_id, 0, &["installing", "downloaded 3 files"]);
        node.fake.hold_installs();
        agent.create_server(good, true).await.unwrap();
        assert_eq!(agent.state(good_id), Some(S::Installing));
        match agent.power(good_id, PowerAction::Start).await {
            Err(AgentError::Busy { operation, .. }) => assert_eq!(operation, "install"),
            other => panic!("expected Busy during the install, got {other:?}"),
        }
        let mut watch = Watch::new(&agent, good_id).await;
        node.fake.release_installs();
        watch.install_line("installing").await;
        watch.install_line("downloaded 3 files").await;
        watch.state(S::Installed).await;
        assert_eq!(
            path(&watch.states()),
            vec![(S::Requested, T::InstallStarted, S::Installing), (S::Installing, T::InstallSucceeded, S::Installed)]
        );
        assert_eq!(names(&node.fake.ops(good_id)), ["run_install", "remove_install"]);
        let installs = node.fake.installs();
        assert_eq!(installs.len(), 1);
        let install = &installs[0];
        assert_eq!(install.script, "echo installing; ./download");
        assert_eq!((install.image.as_str(), install.entrypoint.as_str()), ("nexus-test/installer:latest", "sh"));
        assert_eq!(install.env.get("GREETING").map(String::as_str), Some("hi"));
        assert_eq!(install.data_dir, agent.data_dir(good_id));
        let log = agent.install_log(good_id).await.unwrap();
        assert!(log.contains("installing") && log.contains("downloaded 3 files"), "{log}");
        // The same create again (two panels delivering one pending create) installs nothing
        // over the installed server: it only updates the spec.
        let again = agent.spec(good_id).unwrap();
        agent.create_server(again, true).await.unwrap();
        assert_eq!(node.fake.installs().len(), 1, "no second install");
        assert_eq!(agent.state(good_id), Some(S::Installed));
        agent.power(good_id, PowerAction::Start).await.unwrap();
        watch.state(S::Running).await;

        let mut bad = spec();
        bad.install.script = "echo oops; exit 7".into();
        let bad_id = bad.id;
        node.fake.script_install(bad_id, 7, &["oops"]);
        agent.create_server(bad, true).await.unwrap();
        let mut bad_watch = Watch::new(&agent, bad_id).await;
        bad_watch.state(S::InstallFailed).await;
        assert_eq!(path(&bad_watch.states()).last(), Some(&(S::Installing, T::InstallFailed, S::InstallFailed)));
        let log = agent.install_log(bad_id).await.unwrap();
        assert!(log.contains("oops") && log.contains("code 7"), "{log}");
        match agent.power(bad_id, PowerAction::Start).await {
            Err(e @ AgentError::InvalidState(_)) => assert_eq!(e.status_code(), 409),
            other => panic!("a failed install cannot start: {other:?}"),
        }
        assert!(node.fake.containers(bad_id).is_empty());
    })
    .await;
}

/// Layers that write one file per layer, naming the install environment's `GREETING`.
#[derive(Debug, Default)]
struct WritingLayers;

#[async_trait]
impl nexus_agent::TemplateLayers for WritingLayers {
    async fn apply(
        &self,
        spec: &ServerSpec,
        data_dir: &std::path::Path,
        env: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, String> {
        let mut said = Vec::new();
        for layer in &spec.templates {
            if layer.name() == "broken" {
                return Err(format!("layer {layer}: config.yml line 3: unknown variable"));
            }
            let greeting = env.get("GREETING").cloned().unwrap_or_default();
            std::fs::write(data_dir.join(format!("{}.txt", layer.name())), greeting).map_err(|e| e.to_string())?;
            said.push(format!("applied {layer}"));
        }
        Ok(said)
    }
}

/// Installs a server listing `layers` on `agent` (of `node`) with a script that succeeds;
/// answers its id and install log once the install ended in `outcome`.
async fn install_with_layers(node: &Node, agent: &NodeAgent, layers: &[&str], outcome: S) -> (ServerId, String) {
    let mut server = spec();
    server.install.script = "echo installing".into();
    server.templates = layers.iter().map(|l| l.parse().unwrap()).collect();
    let id = server.id;
    node.fake.script_install(id, 0, &["installing"]);
    agent.create_server(server, true).await.unwrap();
    Watch::new(agent, id).await.state(outcome).await;
    (id, agent.install_log(id).await.unwrap())
}

/// Template layers are applied after a successful install script, with the install's
/// environment, their lines in the install log; a failing layer fails the install with its
/// reason; a spec with layers on a node without a template store fails the install too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_layers_follow_the_install_script() {
    within_limit(async {
        let node = Node::new();
        let preparer = nexus_agent::EggPreparer::new(None).with_templates(Arc::new(WritingLayers));
        let agent = NodeAgent::builder(node.config(), node.fake.clone())
            .panel(node.panel.clone())
            .state_store(node.store.clone())
            .preparer(Arc::new(preparer))
            .start()
            .await
            .unwrap();
        let (id, log) = install_with_layers(&node, &agent, &["base@1", "mods@2"], S::Installed).await;
        let dir = agent.data_dir(id);
        assert_eq!(std::fs::read_to_string(dir.join("base.txt")).unwrap(), "hi");
        assert!(dir.join("mods.txt").exists());
        assert!(
            log.contains("installing") && log.contains("applied base@1") && log.contains("applied mods@2"),
            "{log}"
        );

        let (_, log) = install_with_layers(&node, &agent, &["broken@1"], S::InstallFailed).await;
        assert!(log.contains("config.yml line 3"), "{log}");

        // The shell preparer has no template store.
        let other = Node::new();
        let bare = other.agent().await;
        let (_, log) = install_with_layers(&other, &bare, &["base@1"], S::InstallFailed).await;
        assert!(log.contains("no template store"), "{log}");
    })
    .await;
}

/// A server that ignores its stop command is killed after `stop_timeout`, with a notice; the
/// stop still ends in `Stopped`, not in a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_ignoring_its_stop_command_is_killed_after_the_timeout() {
    within_limit(async {
        let node = Node::new();
        let agent = node.agent().await;
        let game = spec();
        let id = game.id;
        node.fake.program(id, Program { quits_on: None, ..Program::booting(&[READY]) });
        agent.create_server(game, false).await.unwrap();
        let mut watch = Watch::new(&agent, id).await;
        agent.power(id, PowerAction::Start).await.unwrap();
        watch.state(S::Running).await;

        let began = Instant::now();
        agent.power(id, PowerAction::Stop).await.unwrap();
        let took = began.elapsed();
        assert!(took >= node.config().stop_timeout, "returned after {took:?}, before the stop timeout");
        assert_eq!(agent.state(id), Some(S::Stopped));
        assert_eq!(node.fake.stdin(id), ["stop"], "the stop command reached the process");
        watch.notice("did not stop within").await;
        watch.drain(Duration::from_millis(100)).await;
        assert_eq!(path(&watch.states()).last(), Some(&(S::Stopping, T::Exited, S::Stopped)));
        assert!(!watch.states().iter().any(|e| e.to == S::Crashed), "a stop is not a crash");
        assert_eq!(agent.metrics().crashes, 0);
    })
    .await;
}

/// A restore (`begin_restore`) is refused while the server runs, waits behind queued power
/// actions, and while held refuses starts and installs (`busy`); backup reports leave through
/// the outbox in order with lifecycle events, survive a panel outage and an agent restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_hold_the_server_stopped_and_backup_reports_are_delivered() {
    use nexus_core::ids::BackupId;
    use nexus_core::transport::{BackupOutcome, BackupReport};
    within_limit(async {
        let node = Node::new();
        let agent = node.agent().await;
        let game = spec();
        let id = game.id;
        node.fake.program(id, Program::booting(&[READY]));
        agent.create_server(game, false).await.unwrap();
        let mut watch = Watch::new(&agent, id).await;
        agent.power(id, PowerAction::Start).await.unwrap();
        watch.state(S::Running).await;
        let refused = agent.begin_restore(id).await.unwrap_err();
        assert!(matches!(refused, AgentError::NotStopped { state: S::Running, .. }), "{refused:?}");
        assert_eq!((refused.status_code(), refused.code()), (409, "busy"));

        agent.power(id, PowerAction::Stop).await.unwrap();
        let guard = agent.begin_restore(id).await.unwrap();
        assert_eq!(guard.server(), id);
        let busy = agent.power(id, PowerAction::Start).await.unwrap_err();
        assert!(matches!(busy, AgentError::Busy { operation: "restore", .. }), "{busy:?}");
        assert!(matches!(agent.install(id).await, Err(AgentError::Busy { .. })));
        drop(guard);
        agent.power(id, PowerAction::Start).await.unwrap();
        watch.state(S::Running).await;

        // Reports queue behind events while the panel is down, and are saved.
        node.panel.down.store(true, Ordering::SeqCst);
        let report = |outcome| BackupReport { server: id, backup: BackupId::new(), at: chrono::Utc::now(), outcome };
        let created = report(BackupOutcome::Created { bytes: 42, checksum: "ab".repeat(32) });
        let failed = report(BackupOutcome::RestoreFailed { error: "checksum mismatch".into() });
        agent.publish_backup(created.clone()).await;
        agent.publish_backup(failed.clone()).await;
        let saved = node.store.snapshot().unwrap().outbox;
        assert!(
            saved.contains(&NodeMessage::Backup(created.clone()))
                && saved.contains(&NodeMessage::Backup(failed.clone()))
        );
        let gone = Arc::downgrade(&agent);
        drop(agent);
        eventually("the first agent to be gone", || gone.upgrade().is_none()).await;
        let _agent = node.agent().await;
        node.panel.down.store(false, Ordering::SeqCst);
        let reports = || -> Vec<BackupReport> {
            node.panel
                .received
                .lock()
                .unwrap()
                .iter()
                .filter_map(|m| match m {
                    NodeMessage::Backup(r) => Some(r.clone()),
                    _ => None,
                })
                .collect()
        };
        eventually("both reports to reach the panel", || reports().len() >= 2).await;
        assert_eq!(reports(), [created, failed]);
    })
    .await;
}

/// A caller that gives up on `create_server` (an HTTP client disconnecting, the panel killed
/// mid-request) does not cancel it halfway: the install it began still runs to its end.
/// Before, dropping the call between the `Installing` transition and the install's spawn left
/// the server `Installing` on the node for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_create_still_installs() {
    within_limit(async {
        let node = Node::new();
        let agent = node.agent().await;
        let mut servers = Vec::new();
        for _ in 0..8 {
            let spec = spec();
            node.fake.program(spec.id, Program::booting(&[READY]));
            node.fake.script_install(spec.id, 0, &["installed"]);
            servers.push(spec.id);
            // Polled once, then dropped, as a request future is when its client goes away.
            let _ = tokio::time::timeout(Duration::ZERO, agent.create_server(spec, true)).await;
        }
        for server in servers {
            eventually(&format!("{server} installed"), || agent.state(server) == Some(S::Installed)).await;
        }
    })
    .await;
}

/// `shutdown` waits for a delete under way instead of returning while it still runs (the
/// process would then exit in the middle of it, leaving a container or data behind), and
/// refuses creates that arrive after it began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_a_delete_under_way() {
    within_limit(async {
        let node = Node::new();
        let agent = node.agent().await;
        let spec = spec();
        let id = spec.id;
        node.fake.program(id, Program::booting(&[READY]));
        agent.create_server(spec, false).await.unwrap();
        agent.power(id, PowerAction::Start).await.unwrap();
        // Every runtime call of the delete (kill, remove) now takes 300 ms.
        node.fake.set_latency(Duration::from_millis(300));
        let before = node.fake.changes(id).len();
        let delete = tokio::spawn({
            let agent = agent.clone();
            async move { agent.destroy_server(id).await }
        });
        // Shut down once the delete is under way (its first container-changing call began),
        // however slowly the machine schedules its task.
        eventually("the delete began", || node.fake.changes(id).len() > before).await;
        agent.shutdown().await;
        // What the delete does was done before shutdown returned (its caller's task may not
        // have run yet to collect the answer).
        assert!(node.fake.containers(id).is_empty(), "shutdown returned mid-delete: {:?}", node.fake.ops(id));
        assert_eq!(agent.state(id), None, "the server is forgotten");
        let done = delete.await.unwrap();
        assert!(done.is_ok(), "the delete under way completed: {done:?}");
        let late = agent.create_server(self::spec(), false).await;
        assert!(matches!(late, Err(AgentError::ShuttingDown)), "a create after shutdown: {late:?}");
    })
    .await;
}
