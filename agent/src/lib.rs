//! The generic node agent: the data plane of one node, written only against the core traits
//! ([`Runtime`](nexus_core::runtime::Runtime), [`PanelTransport`](nexus_core::transport::PanelTransport),
//! [`AgentStateStore`], [`StartPreparer`]). The reference daemon (`nexus-wings`) puts HTTP and
//! WebSocket in front of it; [`NodeAgent`] also implements
//! [`NodeHandler`](nexus_core::transport::NodeHandler), so the in-process transport can drive it.
//!
//! # Per server
//!
//! * **Lifecycle.** One [`Lifecycle`](nexus_core::lifecycle::Lifecycle); every transition goes to
//!   console subscribers ([`ConsoleEvent::State`]) and to the panel
//!   ([`NodeMessage::Lifecycle`](nexus_core::transport::NodeMessage::Lifecycle)) in the order it
//!   happened. `Running` only when a console line matches the egg's `done` matchers
//!   (substring or regex), or at process start when there are none.
//! * **Power.** Start = [`StartPreparer::prepare`] → remove the previous container → create
//!   (image, command, env, `data_root/<id>`, limits, ports from the allocations, labels) →
//!   attach → `Start` → start. Stop = the egg's stop method (command or signal) through
//!   `Runtime::stop`, killed after [`AgentConfig::stop_timeout`]. Actions are serialized per
//!   server by an async FIFO mutex: concurrent requests queue and run in arrival order;
//!   installs and removals are long, so requests arriving during one are refused with
//!   [`AgentError::Busy`] instead of waiting.
//! * **Crashes.** A task waits on `Runtime::wait`; an exit while not `Stopping` is `Exited`
//!   → `Crashed`, restarted automatically unless the previous crash was less than 60 s
//!   earlier (then it stays `Crashed`, with a console notice). A user action after the crash
//!   cancels the pending restart.
//! * **Console.** See [`ConsoleSubscription`]: a replay ring, a broadcast fan-out (a slow
//!   subscriber lags alone and is told how much it missed), a per-server throttle
//!   (one notice per second that dropped lines), stats samples.
//! * **Install.** `Runtime::run_install` with the egg's script, image and interpreter and the
//!   preparer's environment; `Installing` → `Installed`/`InstallFailed`; log kept under
//!   `data_root/.install-logs/` ([`NodeAgent::install_log`]).
//!
//! # Per node
//!
//! * **Persistence.** An [`AgentSnapshot`] (specs, lifecycles with their last crash,
//!   container ids, undelivered events) is saved through the [`AgentStateStore`] after every
//!   change. [`NodeAgentBuilder::start`] loads it and re-adopts running containers (see the table in
//!   `adopt.rs`): no server is started twice, none is orphaned.
//! * **Panel.** Heartbeats every [`AgentConfig::heartbeat_interval`], lifecycle events and
//!   the embedder's backup reports ([`NodeAgent::publish_backup`]) leave through one ordered
//!   outbox: retried with exponential backoff (250 ms doubling to
//!   30 s), never dropped, replayed in order once the panel is back. Memory stays bounded:
//!   one heartbeat at most, and past [`OUTBOX_EVENT_LIMIT`] queued events new actions are
//!   refused ([`AgentError::Backlog`]) rather than events dropped.

mod adopt;
mod config;
mod console;
mod data_dir;
mod done;
mod egg_preparer;
mod error;
mod file_state;
mod handler;
mod heartbeat;
mod install;
mod metrics;
mod no_panel;
mod node;
mod outbox;
mod power;
mod prepare;
mod ring;
mod server;
mod state;
mod throttle;

pub use config::{
    AgentConfig, DEFAULT_CONSOLE_LINES_PER_SECOND, DEFAULT_CONSOLE_REPLAY_LINES, DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_INSTALL_TIMEOUT, DEFAULT_PIDS_LIMIT, DEFAULT_STOP_TIMEOUT,
};
pub use console::{ConsoleEvent, ConsoleSubscription, SharedEvent, lagged_notice};
pub use egg_preparer::{ConfigOutcome, DiskCheck, EggPreparer, MAX_CONFIG_FILE_BYTES, PATCH_BUDGET, SHELL_WRAPPER};
pub use error::AgentError;
pub use file_state::FileStateStore;
pub use install::INSTALL_LOG_DIR;
pub use metrics::AgentMetrics;
pub use no_panel::NoPanel;
pub use node::{MAX_COMMAND_BYTES, NodeAgent, NodeAgentBuilder, RestoreGuard};
pub use outbox::OUTBOX_EVENT_LIMIT;
pub use power::NODE_LABEL;
pub use prepare::{PreparedStart, ShellPreparer, StartPreparer, TemplateLayers};
pub use state::{AgentSnapshot, AgentStateStore, MemoryStateStore, SNAPSHOT_FORMAT, ServerRecord};
