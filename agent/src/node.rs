//! [`NodeAgent`]: the data plane of one node, written against the core traits only.

use super::config::AgentConfig;
use super::console::{ConsoleEvent, ConsoleHub, ConsoleSubscription};
use super::done::DoneWatcher;
use super::error::AgentError;
use super::metrics::{AgentMetrics, Counters};
use super::no_panel::NoPanel;
use super::outbox::{Backoff, INITIAL_BACKOFF, MAX_BACKOFF, OUTBOX_EVENT_LIMIT, Outbox};
use super::prepare::StartPreparer;
use super::server::{OpGuard, Operation, Server, ServerInner, lock};
use super::state::{AgentSnapshot, AgentStateStore, MemoryStateStore, SNAPSHOT_FORMAT, ServerRecord};
use chrono::Utc;
use nexus_core::ids::ServerId;
use nexus_core::lifecycle::{Lifecycle, LifecycleError, LifecycleEvent, ServerState, Trigger};
use nexus_core::runtime::Runtime;
use nexus_core::transport::{BackupReport, NodeMessage, PanelTransport, PowerAction, ServerSpec, ServerStatus};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use tokio::io::AsyncWriteExt;
use tokio::task::AbortHandle;
use tracing::Instrument;

pub use nexus_core::transport::MAX_COMMAND_BYTES;

/// Longest a console command may wait for the server to take it from its input.
pub const COMMAND_WRITE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// The node agent: runs the servers of one node through a [`Runtime`], reports to the panel
/// through a [`PanelTransport`], remembers its state through an [`AgentStateStore`].
///
/// Created with [`NodeAgent::builder`]; background tasks hold only a weak reference, so
/// dropping the last `Arc` (or calling [`shutdown`](Self::shutdown)) stops every loop and
/// console attachment and leaves the containers running, as a daemon crash would; the next
/// agent started on the same state store re-adopts them.
pub struct NodeAgent {
    pub(super) me: Weak<NodeAgent>,
    pub(super) config: AgentConfig,
    pub(super) runtime: Arc<dyn Runtime>,
    pub(super) preparer: Arc<dyn StartPreparer>,
    state: Arc<dyn AgentStateStore>,
    pub(super) outbox: Arc<Outbox>,
    servers: RwLock<BTreeMap<ServerId, Arc<Server>>>,
    pub(super) counters: Arc<Counters>,
    save_lock: tokio::sync::Mutex<()>,
    loops: Mutex<Vec<AbortHandle>>,
    closed: AtomicBool,
    /// Held (shared) by every operation running [`to_completion`](Self::to_completion);
    /// [`shutdown`](Self::shutdown) takes it exclusively, so it waits for them.
    in_flight: Arc<tokio::sync::RwLock<()>>,
}

/// How long [`NodeAgent::shutdown`] waits for creates and deletes under way.
pub(crate) const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

impl fmt::Debug for NodeAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeAgent")
            .field("node", &self.config.node)
            .field("runtime", &self.runtime.name())
            .field("servers", &self.servers().len())
            .finish_non_exhaustive()
    }
}

/// Assembles a [`NodeAgent`]: the configuration and the runtime are required, the rest has
/// defaults. [`start`](Self::start) loads the saved state, re-adopts running containers and
/// starts the agent's loops.
///
/// ```no_run
/// # async fn demo(runtime: std::sync::Arc<dyn nexus_core::runtime::Runtime>) -> Result<(), nexus_agent::AgentError> {
/// use nexus_agent::{AgentConfig, EggPreparer, FileStateStore, NodeAgent};
/// use nexus_core::ids::NodeId;
/// use std::sync::Arc;
///
/// let agent = NodeAgent::builder(AgentConfig::new(NodeId::new(), "/var/lib/nexus/volumes"), runtime)
///     .state_store(Arc::new(FileStateStore::open("/var/lib/nexus/state")?))
///     .preparer(Arc::new(EggPreparer::new(Some("Europe/Berlin".into()))))
///     .start()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `start` is called"]
pub struct NodeAgentBuilder {
    config: AgentConfig,
    runtime: Arc<dyn Runtime>,
    panel: Arc<dyn PanelTransport>,
    state: Arc<dyn AgentStateStore>,
    preparer: Arc<dyn StartPreparer>,
}

impl std::fmt::Debug for NodeAgentBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAgentBuilder").field("node", &self.config.node).finish_non_exhaustive()
    }
}

impl NodeAgentBuilder {
    /// Where heartbeats and lifecycle events go. Default: [`NoPanel`] (a standalone node).
    pub fn panel(mut self, panel: Arc<dyn PanelTransport>) -> Self {
        self.panel = panel;
        self
    }

    /// Where the agent's snapshot is kept across restarts. Default: [`MemoryStateStore`]
    /// (nothing survives the process; use [`FileStateStore`](crate::FileStateStore) on a
    /// real node).
    pub fn state_store(mut self, state: Arc<dyn AgentStateStore>) -> Self {
        self.state = state;
        self
    }

    /// What runs before each start. Default: [`EggPreparer`](crate::EggPreparer) with no
    /// time zone (config files patched, startup rendered as Wings does).
    ///
    /// The default enforces no disk limit: a server's directory is a bind mount, so no
    /// engine limit applies to what its process writes. A node hosting strangers gives the
    /// preparer a [`DiskCheck`](crate::DiskCheck) (`EggPreparer::with_disk_check`) and
    /// measures running servers too, as the reference daemon does (`nexus-wings`' `disk`
    /// module).
    pub fn preparer(mut self, preparer: Arc<dyn StartPreparer>) -> Self {
        self.preparer = preparer;
        self
    }

    /// Loads the saved state, re-adopts the containers found through
    /// [`Runtime::list_managed`], and starts the heartbeat and outbox loops.
    ///
    /// Fails when the state cannot be loaded or the runtime cannot list its containers (the
    /// agent must not guess which servers are running).
    pub async fn start(self) -> Result<Arc<NodeAgent>, AgentError> {
        NodeAgent::start(self.config, self.runtime, self.panel, self.state, self.preparer).await
    }
}

impl NodeAgent {
    /// A builder for an agent running `config` on `runtime`.
    pub fn builder(config: AgentConfig, runtime: Arc<dyn Runtime>) -> NodeAgentBuilder {
        NodeAgentBuilder {
            config,
            runtime,
            panel: Arc::new(NoPanel),
            state: Arc::new(MemoryStateStore::new()),
            preparer: Arc::new(crate::EggPreparer::default()),
        }
    }

    async fn start(
        config: AgentConfig,
        runtime: Arc<dyn Runtime>,
        panel: Arc<dyn PanelTransport>,
        state: Arc<dyn AgentStateStore>,
        preparer: Arc<dyn StartPreparer>,
    ) -> Result<Arc<Self>, AgentError> {
        // No other local user may reach what servers leave in their directories.
        super::data_dir::ensure_private_dir(&config.data_root)?;
        let snapshot = state.load().await?;
        if snapshot.format > SNAPSHOT_FORMAT {
            return Err(AgentError::State(format!(
                "the saved agent state has format {}, newer than this build understands ({SNAPSHOT_FORMAT})",
                snapshot.format
            )));
        }
        let counters = Arc::new(Counters::default());
        let outbox = Arc::new(Outbox::new(
            config.node,
            panel,
            snapshot.outbox,
            Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF),
            counters.clone(),
        ));
        let agent = Arc::new_cyclic(|me| Self {
            me: me.clone(),
            config,
            runtime,
            preparer,
            state,
            outbox,
            servers: RwLock::new(BTreeMap::new()),
            counters,
            save_lock: tokio::sync::Mutex::new(()),
            loops: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            in_flight: Arc::new(tokio::sync::RwLock::new(())),
        });
        for record in snapshot.servers {
            let id = record.spec.id;
            let inner = ServerInner {
                done: DoneWatcher::lenient(&record.spec.done),
                spec: record.spec,
                lifecycle: record.lifecycle,
                container: record.container,
                run: 0,
                intent: 0,
            };
            let hub = ConsoleHub::new(agent.config.console_replay_lines, None);
            agent.write_servers().insert(id, Arc::new(Server::new(inner, hub)));
        }
        agent.spawn_outbox();
        agent.adopt().await?;
        agent.persist().await;
        agent.spawn_heartbeat();
        tracing::info!(node = %agent.config.node, servers = agent.servers().len(), runtime = agent.runtime.name(), "node agent started");
        Ok(agent)
    }

    /// The configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Creates a server from `spec`, or updates it when it exists (the new spec applies from
    /// the next start). With `install`, runs the install script (see [`install`](Self::install));
    /// without, a new server is ready to start at once (`Installed`).
    ///
    /// `spec.suspended` is applied: a server that becomes suspended is stopped first; one
    /// that stops being suspended becomes `Stopped`. A spec failing
    /// [`ServerSpec::validate`] is [`AgentError::InvalidSpec`].
    pub async fn create_server(&self, spec: ServerSpec, install: bool) -> Result<(), AgentError> {
        self.to_completion(move |agent| async move { agent.create_server_now(spec, install).await }).await
    }

    async fn create_server_now(&self, spec: ServerSpec, install: bool) -> Result<(), AgentError> {
        self.check_open()?;
        let id = spec.id;
        let span = tracing::info_span!("server", server = %id);
        async move {
            // Every transport arrives here, not only the daemon's API (which checks first for
            // a typed answer): an impossible spec must not be stored and fail at each start.
            spec.validate().map_err(|e| AgentError::InvalidSpec(e.to_string()))?;
            let done = DoneWatcher::new(&spec.done)?;
            if install {
                self.check_backlog()?;
            }
            // Before the server exists, so a failure leaves nothing half-created.
            super::data_dir::ensure_server_dir(&self.data_dir(id), self.config.isolation.user)?;
            let created = {
                let mut servers = self.write_servers();
                match servers.get(&id) {
                    Some(existing) => Err(existing.clone()),
                    None => {
                        let state = if install { ServerState::Requested } else { ServerState::Installed };
                        let inner = ServerInner {
                            spec: spec.clone(),
                            done: done.clone(),
                            lifecycle: Lifecycle::new(id, state),
                            container: None,
                            run: 0,
                            intent: 0,
                        };
                        let server =
                            Arc::new(Server::new(inner, ConsoleHub::new(self.config.console_replay_lines, None)));
                        servers.insert(id, server.clone());
                        Ok(server)
                    }
                }
            };
            match created {
                Ok(server) => {
                    tracing::info!(install, "server created");
                    let op = server.acquire(if install { Operation::Install } else { Operation::Update }).await?;
                    self.persist().await;
                    if install { self.begin_install(&server, op).await } else { self.apply_suspension(&server).await }
                }
                Err(server) => {
                    Self::bump_intent(&server);
                    let op = server.acquire(Operation::Update).await?;
                    {
                        let mut inner = server.inner();
                        inner.spec = spec;
                        inner.done = done;
                    }
                    tracing::info!(install, "server spec updated");
                    self.persist().await;
                    self.apply_suspension(&server).await?;
                    // A create sent again (two panels delivering one pending create, a retry
                    // after a lost answer) must not reinstall over a server that was
                    // installed: only one never installed, or whose install failed (a fixed
                    // spec retried), is. Reinstalls of installed servers are `install`.
                    let state = server.inner().lifecycle.state();
                    let not_installed = matches!(state, ServerState::Requested | ServerState::InstallFailed);
                    if install && not_installed {
                        op.relabel(Operation::Install);
                        self.begin_install(&server, op).await?;
                    }
                    Ok(())
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Stops the process if it runs (kill), removes the container, the data directory and the
    /// install log, and forgets the server. Console subscriptions end after the final
    /// `Destroyed` state event.
    pub async fn destroy_server(&self, server: ServerId) -> Result<(), AgentError> {
        self.to_completion(move |agent| async move { agent.destroy_server_now(server).await }).await
    }

    async fn destroy_server_now(&self, server: ServerId) -> Result<(), AgentError> {
        self.check_open()?;
        let srv = self.server(server)?;
        Self::bump_intent(&srv);
        let span = tracing::info_span!("server", server = %server);
        async move {
            let _op = srv.acquire(Operation::Destroy).await?;
            self.destroy_locked(&srv).await
        }
        .instrument(span)
        .await
    }

    /// Runs a power action. Actions on one server are serialized: a request arriving while
    /// another action runs waits for it and then runs, in arrival order (no `Busy` between
    /// power actions); while an install or removal runs they are refused with
    /// [`AgentError::Busy`].
    ///
    /// `Start` returns once the process runs (state `Starting`; `Running` follows when the
    /// egg's `done` line appears); `Stop` once the process exited (killed after
    /// [`AgentConfig::stop_timeout`]); `Restart` is both under one hold of the lock; `Kill`
    /// once the process is gone. Starting a started server and stopping or killing a stopped
    /// one do nothing.
    pub async fn power(&self, server: ServerId, action: PowerAction) -> Result<(), AgentError> {
        self.check_open()?;
        let srv = self.server(server)?;
        if matches!(action, PowerAction::Start | PowerAction::Restart) {
            self.check_backlog()?;
        }
        Self::bump_intent(&srv);
        let span = tracing::info_span!("server", server = %server);
        async move {
            let op = match action {
                PowerAction::Start => Operation::Start,
                PowerAction::Stop => Operation::Stop,
                PowerAction::Restart => Operation::Restart,
                PowerAction::Kill => Operation::Kill,
            };
            let _op = srv.acquire(op).await?;
            tracing::info!(?action, "power action");
            match action {
                PowerAction::Start => self.start_locked(&srv).await,
                PowerAction::Stop => self.stop_locked(&srv).await,
                PowerAction::Kill => self.kill_locked(&srv).await,
                PowerAction::Restart => {
                    if srv.inner().lifecycle.state().is_active() {
                        self.stop_locked(&srv).await?;
                    }
                    self.start_locked(&srv).await
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Takes the server's operation lock for a restore of its files by the embedder (the
    /// agent does not touch data directories itself): waits for power actions queued before
    /// it, then refuses with [`AgentError::NotStopped`] unless the server is stopped (not
    /// starting, running, stopping or installing; an install in progress is
    /// [`AgentError::Busy`]). While the returned guard lives, power actions, installs,
    /// spec updates and removal of the server are refused with [`AgentError::Busy`]
    /// (`restore`), so it cannot start on half-replaced files; a pending automatic restart
    /// after a crash is cancelled.
    pub async fn begin_restore(&self, server: ServerId) -> Result<RestoreGuard, AgentError> {
        self.check_open()?;
        let srv = self.server(server)?;
        Self::bump_intent(&srv);
        let op = srv.acquire(Operation::Restore).await?;
        let state = srv.inner().lifecycle.state();
        if state.is_active() || state == ServerState::Installing {
            return Err(AgentError::NotStopped { server, state });
        }
        tracing::info!(%server, "files being restored; the server cannot start meanwhile");
        Ok(RestoreGuard { server, _op: op })
    }

    /// Queues a backup's or a restore's outcome for the panel
    /// ([`NodeMessage::Backup`]): delivered in order with the lifecycle events, retried with
    /// backoff until the panel takes it, kept in the saved snapshot until then (like
    /// lifecycle events, it counts towards [`OUTBOX_EVENT_LIMIT`]; check
    /// [`check_backlog`](Self::check_backlog) before accepting new work). Returns once the
    /// snapshot holding it is saved, so an agent crash right after does not lose it.
    pub async fn publish_backup(&self, report: BackupReport) {
        tracing::info!(server = %report.server, backup = %report.backup, outcome = ?report.outcome, "backup report queued");
        self.outbox.push(NodeMessage::Backup(report));
        self.persist().await;
    }

    /// Refuses with [`AgentError::Backlog`] while [`OUTBOX_EVENT_LIMIT`] messages wait for an
    /// unreachable panel: new work whose outcome must be reported is refused rather than
    /// letting the queue grow without bound.
    pub fn check_backlog(&self) -> Result<(), AgentError> {
        let queued = self.outbox.event_count();
        if queued >= OUTBOX_EVENT_LIMIT { Err(AgentError::Backlog { queued }) } else { Ok(()) }
    }

    /// Writes `line` and a newline to the server's stdin. Needs a started process
    /// (`Starting` or `Running`); a line must not contain line breaks.
    pub async fn send_command(&self, server: ServerId, line: &str) -> Result<(), AgentError> {
        self.check_open()?;
        if line.contains(['\n', '\r']) {
            return Err(AgentError::InvalidCommand("a command is one line; it contains a line break".into()));
        }
        // On a terminal, control characters are not text: ^C/^Z/^\ signal the server (a power
        // action without the power permission), ^S freezes its output, ^P^Q detaches the
        // engine's console (and the agent with it), ESC starts escape sequences.
        if let Some(c) = line.chars().find(|c| (c.is_control() && *c != '\t') || *c == '\u{7f}') {
            return Err(AgentError::InvalidCommand(format!(
                "control character U+{:04X} in a command; commands are text",
                u32::from(c)
            )));
        }
        if line.len() > MAX_COMMAND_BYTES {
            return Err(AgentError::InvalidCommand(format!("longer than {MAX_COMMAND_BYTES} bytes")));
        }
        let srv = self.server(server)?;
        if !matches!(srv.inner().lifecycle.state(), ServerState::Starting | ServerState::Running) {
            return Err(AgentError::NotRunning(server));
        }
        let mut input = srv.input.lock().await;
        let writer = input.as_mut().ok_or(AgentError::NotRunning(server))?;
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        // A server that stopped reading its input (frozen, or just busy) holds the write; bounded,
        // so the console lock is never held for good.
        let write = async {
            writer.write_all(&bytes).await?;
            writer.flush().await
        };
        match tokio::time::timeout(COMMAND_WRITE_DEADLINE, write).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(AgentError::InvalidCommand(format!(
                    "the server did not take the command within {COMMAND_WRITE_DEADLINE:?} (it is not reading its input)"
                )));
            }
        }
        Ok(())
    }

    /// Subscribes to the server's console: replay of recent events, then live events.
    pub async fn console(&self, server: ServerId) -> Result<ConsoleSubscription, AgentError> {
        Ok(self.server(server)?.hub.subscribe())
    }

    /// Every server with its state, in id order.
    pub fn servers(&self) -> Vec<ServerStatus> {
        self.read_servers()
            .values()
            .map(|s| ServerStatus { server: s.id, state: s.inner().lifecycle.state() })
            .collect()
    }

    /// The state of one server.
    pub fn state(&self, server: ServerId) -> Option<ServerState> {
        self.read_servers().get(&server).map(|s| s.inner().lifecycle.state())
    }

    /// The latest resource sample of one server while it is active (starting, running,
    /// stopping); `None` when it is not, or no sample was taken yet.
    pub fn resources(&self, server: ServerId) -> Option<nexus_core::runtime::ResourceStats> {
        let servers = self.read_servers();
        let srv = servers.get(&server)?;
        if !srv.inner().lifecycle.state().is_active() {
            return None;
        }
        let mut stats = srv.hub.last_stats()?;
        stats.disk_bytes = srv.disk_bytes();
        Some(stats)
    }

    /// The spec of one server.
    pub fn spec(&self, server: ServerId) -> Option<ServerSpec> {
        self.read_servers().get(&server).map(|s| s.inner().spec.clone())
    }

    /// `<data_root>/<server>`, the directory mounted at `/home/container` (whether or not the
    /// server exists).
    pub fn data_dir(&self, server: ServerId) -> PathBuf {
        self.config.data_root.join(server.to_string())
    }

    /// Publishes a notice on the server's console (an embedder's own messages: disk limits,
    /// maintenance). Unknown servers are ignored.
    pub fn notice(&self, server: ServerId, text: impl Into<String>) {
        if let Some(srv) = self.read_servers().get(&server) {
            srv.hub.notice(text);
        }
    }

    /// Records the disk usage of a server's files as measured by the embedder (the agent does
    /// not walk data directories itself); stats events carry it from then on
    /// ([`ResourceStats::disk_bytes`](nexus_core::runtime::ResourceStats::disk_bytes)).
    pub fn record_disk_usage(&self, server: ServerId, bytes: u64) {
        if let Some(srv) = self.read_servers().get(&server) {
            srv.set_disk_bytes(bytes);
        }
    }

    /// The disk usage last recorded with [`record_disk_usage`](Self::record_disk_usage).
    pub fn disk_usage(&self, server: ServerId) -> Option<u64> {
        self.read_servers().get(&server).map(|s| s.disk_bytes())
    }

    /// The limits a server's container gets: its spec's, with the node's default process
    /// limit where the spec sets none.
    pub fn effective_limits(&self, spec: &ServerSpec) -> nexus_core::model::ServerLimits {
        let mut limits = spec.limits;
        if limits.pids == 0 {
            limits.pids = self.config.default_pids_limit;
        }
        limits
    }

    /// Counters and gauges.
    pub fn metrics(&self) -> AgentMetrics {
        let mut metrics = AgentMetrics::default();
        for server in self.read_servers().values() {
            *metrics.servers.entry(server.inner().lifecycle.state()).or_default() += 1;
            metrics.console_subscribers += server.hub.subscribers();
        }
        self.counters.fill(&mut metrics);
        metrics.queued_messages = self.outbox.len();
        metrics
    }

    /// Stops every loop and console attachment, saves the state, and refuses further calls.
    /// Containers keep running; the next agent re-adopts them.
    pub async fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        // Creates and deletes under way finish their own steps first (they were promised to
        // the panel and stop halfway otherwise), for at most SHUTDOWN_GRACE; new ones are
        // refused now. An install a create began runs on a task of its own and is stopped
        // below with the others.
        if tokio::time::timeout(SHUTDOWN_GRACE, self.in_flight.write()).await.is_err() {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "creates or deletes still running at shutdown; stopped");
        }
        self.abort_all();
        self.persist().await;
        tracing::info!(node = %self.config.node, "node agent shut down; containers left running");
    }

    // ---- internals shared by the other files of the module ----

    fn read_servers(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<ServerId, Arc<Server>>> {
        // The map is changed by single inserts and removes only; poisoning cannot tear it.
        self.servers.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_servers(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<ServerId, Arc<Server>>> {
        self.servers.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn server(&self, id: ServerId) -> Result<Arc<Server>, AgentError> {
        self.read_servers().get(&id).cloned().ok_or(AgentError::UnknownServer(id))
    }

    pub(super) fn all_servers(&self) -> Vec<Arc<Server>> {
        self.read_servers().values().cloned().collect()
    }

    pub(super) fn forget(&self, id: ServerId) {
        self.write_servers().remove(&id);
    }

    /// Runs `work` on a task of its own and waits for it. A caller that gives up (an HTTP
    /// client that disconnects, the panel killed mid-request, a timeout around the call)
    /// then cannot cancel an operation between a state transition and the work it promises,
    /// which left a server `Installing` with nothing behind it. (Power actions are not run
    /// this way: they queue on the server's lock in the order they are called, which a task
    /// of their own would not keep; the daemon runs them on its power queue's task.)
    async fn to_completion<T, F>(&self, work: impl FnOnce(Arc<NodeAgent>) -> F) -> Result<T, AgentError>
    where
        F: std::future::Future<Output = Result<T, AgentError>> + Send + 'static,
        T: Send + 'static,
    {
        let agent = self.me.upgrade().ok_or(AgentError::ShuttingDown)?;
        // Before waiting for the lock too: a shutdown waiting for it goes first, and a caller
        // arriving then should hear at once, not after the shutdown's grace.
        self.check_open()?;
        let held = Arc::clone(&self.in_flight).read_owned().await;
        // Checked with the lock held: a shutdown that began meanwhile does not wait for this.
        self.check_open()?;
        let work = work(agent);
        let guarded = async move {
            let outcome = work.await;
            drop(held);
            outcome
        };
        match tokio::spawn(guarded.in_current_span()).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only a runtime shutting down cancels the task.
            Err(_) => Err(AgentError::ShuttingDown),
        }
    }

    pub(super) fn check_open(&self) -> Result<(), AgentError> {
        if self.closed.load(Ordering::SeqCst) { Err(AgentError::ShuttingDown) } else { Ok(()) }
    }

    pub(super) fn bump_intent(server: &Server) {
        server.inner().intent += 1;
    }

    /// Applies `trigger` and publishes the event: to console subscribers and, through the
    /// outbox, to the panel. Done under the caller's lock of `inner`, so events of a server
    /// are published in the order they happened.
    pub(super) fn transition(
        &self,
        server: &Server,
        inner: &mut ServerInner,
        trigger: Trigger,
    ) -> Result<LifecycleEvent, LifecycleError> {
        let event = inner.lifecycle.apply(trigger, Utc::now())?;
        // Always called inside the server's span, which names it.
        tracing::info!(from = ?event.from, to = ?event.to, ?trigger, "lifecycle");
        server.hub.publish(ConsoleEvent::State(event.clone()));
        self.outbox.push(NodeMessage::Lifecycle(event.clone()));
        Ok(event)
    }

    /// Saves the current snapshot. Saves are serialized and each builds its snapshot after
    /// taking the lock, so a later save never writes older state than an earlier one. A
    /// failure is logged and counted: the change already happened and the next save retries.
    pub(super) async fn persist(&self) {
        let _saving = self.save_lock.lock().await;
        let snapshot = self.snapshot();
        if let Err(error) = self.state.save(&snapshot).await {
            super::metrics::Counters::bump(&self.counters.state_save_failures);
            tracing::error!(%error, "saving the agent state failed");
        }
    }

    fn snapshot(&self) -> AgentSnapshot {
        let servers = self
            .read_servers()
            .values()
            .map(|s| {
                let inner = s.inner();
                ServerRecord {
                    spec: inner.spec.clone(),
                    lifecycle: inner.lifecycle.clone(),
                    container: inner.container.clone(),
                }
            })
            .collect();
        // Read after the servers: an event racing the snapshot is then at worst included with
        // its old state, never missing while its new state is saved.
        AgentSnapshot { format: SNAPSHOT_FORMAT, servers, outbox: self.outbox.pending_events() }
    }

    /// Spawns a background task of `server`, inside its tracing span, aborted on removal and
    /// shutdown.
    pub(super) fn spawn_for<F>(&self, server: &Server, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // A root span: the task outlives the request that spawned it.
        let span = tracing::info_span!(parent: None, "server", server = %server.id);
        let handle = tokio::spawn(task.instrument(span));
        server.track(handle.abort_handle());
    }

    /// Spawns an agent-wide loop, aborted on shutdown.
    pub(super) fn spawn_loop<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(task);
        lock(&self.loops).push(handle.abort_handle());
    }

    fn spawn_outbox(&self) {
        let outbox = self.outbox.clone();
        let me = self.me.clone();
        self.spawn_loop(async move {
            outbox
                .run(|message| {
                    let me = me.clone();
                    async move {
                        // Heartbeats are not persisted, so only events and reports change the
                        // snapshot.
                        if let (false, Some(agent)) = (matches!(message, NodeMessage::Heartbeat(_)), me.upgrade()) {
                            agent.persist().await;
                        }
                    }
                })
                .await;
        });
    }

    fn abort_all(&self) {
        for task in lock(&self.loops).drain(..) {
            task.abort();
        }
        for server in self.all_servers() {
            server.abort_tasks();
        }
    }
}

/// A server's operation lock held for a restore ([`NodeAgent::begin_restore`]); released
/// when dropped.
#[must_use = "the server can start again as soon as the guard is dropped"]
pub struct RestoreGuard {
    server: ServerId,
    _op: OpGuard,
}

impl RestoreGuard {
    /// The server.
    pub fn server(&self) -> ServerId {
        self.server
    }
}

impl fmt::Debug for RestoreGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestoreGuard").field("server", &self.server).finish_non_exhaustive()
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        // Background tasks hold weak references only; without this they would keep console
        // attachments open after the agent is gone.
        self.abort_all();
    }
}
