//! [`AgentConfig`]: what the embedding daemon tells the agent.

use nexus_core::ids::NodeId;
use nexus_core::runtime::Isolation;
use std::path::PathBuf;
use std::time::Duration;

/// Default for [`AgentConfig::stop_timeout`].
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`AgentConfig::console_replay_lines`].
pub const DEFAULT_CONSOLE_REPLAY_LINES: usize = 150;
/// Default for [`AgentConfig::console_lines_per_second`].
pub const DEFAULT_CONSOLE_LINES_PER_SECOND: u32 = 2_000;
/// Default for [`AgentConfig::heartbeat_interval`].
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);

/// Settings of a [`NodeAgent`](super::NodeAgent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentConfig {
    /// This node's id; sent with every message to the panel.
    pub node: NodeId,
    /// Parent of every server's data directory (`<data_root>/<server id>`) and of
    /// `<data_root>/.install-logs/`.
    pub data_root: PathBuf,
    /// How long a graceful stop may take before the process is killed.
    pub stop_timeout: Duration,
    /// Console events replayed to a new subscriber.
    pub console_replay_lines: usize,
    /// Console lines per second passed on per server; the rest is dropped with one notice per
    /// second. `0` turns the throttle off.
    pub console_lines_per_second: u32,
    /// Time between two heartbeats (at least 100 ms is used).
    pub heartbeat_interval: Duration,
    /// Daemon version, reported in heartbeats.
    pub version: String,
    /// Confinement of server containers; its `user` also owns each server directory.
    /// Default: [`Isolation::server`] (the image's user; a daemon should set an unprivileged
    /// one).
    pub isolation: Isolation,
    /// Confinement of install containers. Default: [`Isolation::install`] (root, as Wings).
    /// Whatever user runs it, the installed files are handed to `isolation.user` afterwards.
    pub install_isolation: Isolation,
    /// Process limit for servers whose spec sets none (`pids: 0`); 0 leaves them unlimited.
    /// Default [`DEFAULT_PIDS_LIMIT`].
    pub default_pids_limit: u64,
    /// Longest an install script may run before it is stopped and the install fails.
    /// Default [`DEFAULT_INSTALL_TIMEOUT`].
    pub install_timeout: Duration,
    /// Run server processes on a terminal ([`ContainerSpec::tty`](nexus_core::runtime::ContainerSpec::tty)),
    /// as Wings does. Default true.
    pub tty: bool,
}

/// Default for [`AgentConfig::default_pids_limit`] (Wings' `container_pid_limit`).
pub const DEFAULT_PIDS_LIMIT: u64 = 512;
/// Default for [`AgentConfig::install_timeout`].
pub const DEFAULT_INSTALL_TIMEOUT: Duration = Duration::from_secs(60 * 60);

impl AgentConfig {
    /// A configuration with the documented defaults for everything but the node and the data
    /// root; the version is this crate's.
    pub fn new(node: NodeId, data_root: impl Into<PathBuf>) -> Self {
        Self {
            node,
            data_root: data_root.into(),
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            console_replay_lines: DEFAULT_CONSOLE_REPLAY_LINES,
            console_lines_per_second: DEFAULT_CONSOLE_LINES_PER_SECOND,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            isolation: Isolation::server(),
            install_isolation: Isolation::install(),
            default_pids_limit: DEFAULT_PIDS_LIMIT,
            install_timeout: DEFAULT_INSTALL_TIMEOUT,
            tty: true,
        }
    }
}
