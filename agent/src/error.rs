//! [`AgentError`]: everything an agent operation can fail with, and its HTTP status.

use nexus_core::ids::ServerId;
use nexus_core::lifecycle::LifecycleError;
use nexus_core::runtime::RuntimeError;
use nexus_core::transport::TransportError;

/// Failures of the node agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The server is not on this node.
    #[error("server {0} is not known on this node")]
    UnknownServer(ServerId),
    /// An install or a removal of the server is under way; power actions and other installs
    /// are refused until it ends (other power actions queue instead).
    #[error("server {server} is busy: {operation} in progress")]
    Busy {
        /// The server.
        server: ServerId,
        /// What it is busy with (`install`, `destroy`).
        operation: &'static str,
    },
    /// The action needs the server stopped (a restore replaces its files), and it is not.
    #[error("server {server} is {state:?}; stop it first")]
    NotStopped {
        /// The server.
        server: ServerId,
        /// Its state.
        state: nexus_core::lifecycle::ServerState,
    },
    /// The lifecycle does not allow the action in the server's current state.
    #[error(transparent)]
    InvalidState(#[from] LifecycleError),
    /// The action needs a running server process.
    #[error("server {0} is not running")]
    NotRunning(ServerId),
    /// The server is suspended and cannot start.
    #[error("server {0} is suspended")]
    Suspended(ServerId),
    /// A console command the agent refuses to write (line breaks, too long).
    #[error("invalid console command: {0}")]
    InvalidCommand(String),
    /// The spec cannot be used (a `done` pattern that does not compile, ...).
    #[error("invalid server spec: {0}")]
    InvalidSpec(String),
    /// The container runtime failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Talking to the panel failed.
    #[error("panel transport: {0}")]
    Transport(#[from] TransportError),
    /// Loading or saving the agent's local state failed.
    #[error("agent state: {0}")]
    State(String),
    /// The [`StartPreparer`](super::StartPreparer) failed (startup rendering, config files).
    #[error("preparing the server failed: {0}")]
    Prepare(String),
    /// Local file-system failure (data directories, install logs).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// So many lifecycle events wait for an unreachable panel that new actions are refused
    /// (the outbox never drops events; this is how it stays bounded).
    #[error(
        "{queued} lifecycle events are waiting for the unreachable panel; new actions are refused until it is back"
    )]
    Backlog {
        /// Events queued.
        queued: usize,
    },
    /// The agent was shut down.
    #[error("the node agent is shutting down")]
    ShuttingDown,
    /// The install script ran longer than the node allows; it was stopped.
    #[error("the install script ran longer than {0:?} and was stopped")]
    InstallTimeout(std::time::Duration),
    /// The install was cancelled by a kill or a removal of the server.
    #[error("the install was cancelled")]
    InstallCancelled,
    /// The server's files use more disk than its limit allows.
    #[error("server {server} uses {used_mb} MiB of disk, over its limit of {limit_mb} MiB; free space first")]
    OverDiskQuota {
        /// The server.
        server: ServerId,
        /// Space in use, MiB.
        used_mb: u64,
        /// The limit, MiB.
        limit_mb: u64,
    },
    /// Too many requests of one kind in a short time (console commands).
    #[error("too many {what}; slow down")]
    RateLimited {
        /// What was limited (`console commands`).
        what: &'static str,
    },
}

impl AgentError {
    /// The HTTP status an API should answer with.
    pub fn status_code(&self) -> u16 {
        match self {
            Self::UnknownServer(_) => 404,
            Self::Busy { .. }
            | Self::NotStopped { .. }
            | Self::InvalidState(_)
            | Self::NotRunning(_)
            | Self::Suspended(_) => 409,
            Self::InvalidCommand(_) => 400,
            Self::InvalidSpec(_) | Self::Prepare(_) => 422,
            Self::Runtime(e) => match e {
                RuntimeError::ImageNotFound { .. } | RuntimeError::InvalidSpec(_) => 422,
                RuntimeError::Conflict(_) => 409,
                RuntimeError::Unavailable(_) => 503,
                RuntimeError::Timeout(_) => 504,
                // ContainerNotFound, Engine, Io and failures a later core adds.
                _ => 500,
            },
            Self::Transport(_) => 502,
            Self::State(_) | Self::Io(_) => 500,
            Self::Backlog { .. } | Self::ShuttingDown => 503,
            Self::InstallTimeout(_) => 504,
            Self::InstallCancelled => 409,
            Self::OverDiskQuota { .. } => 507,
            Self::RateLimited { .. } => 429,
        }
    }

    /// A stable machine-readable code for JSON error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownServer(_) => "unknown_server",
            Self::Busy { .. } | Self::NotStopped { .. } => "busy",
            Self::InvalidState(_) => "invalid_state",
            Self::NotRunning(_) => "not_running",
            Self::Suspended(_) => "suspended",
            Self::InvalidCommand(_) => "invalid_command",
            Self::InvalidSpec(_) => "invalid_spec",
            Self::Runtime(_) => "runtime",
            Self::Transport(_) => "transport",
            Self::State(_) => "state",
            Self::Prepare(_) => "prepare",
            Self::Io(_) => "io",
            Self::Backlog { .. } => "panel_backlog",
            Self::ShuttingDown => "shutting_down",
            Self::InstallTimeout(_) => "install_timeout",
            Self::InstallCancelled => "install_cancelled",
            Self::OverDiskQuota { .. } => "over_disk_quota",
            Self::RateLimited { .. } => "rate_limited",
        }
    }

    /// The error as the panel sees it through a [`NodeHandler`](nexus_core::transport::NodeHandler).
    pub fn to_transport(&self) -> TransportError {
        TransportError::Rejected { status: self.status_code(), message: self.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexus_core::lifecycle::{ServerState, Trigger};

    #[test]
    fn statuses() {
        let id = ServerId::new();
        assert_eq!(AgentError::UnknownServer(id).status_code(), 404);
        assert_eq!(AgentError::Busy { server: id, operation: "install" }.status_code(), 409);
        let lc = LifecycleError::new(id, ServerState::Installing, Trigger::Start);
        assert_eq!(AgentError::from(lc).status_code(), 409);
        assert_eq!(AgentError::from(RuntimeError::ImageNotFound { image: "x".into() }).status_code(), 422);
        assert_eq!(AgentError::from(RuntimeError::Unavailable("down".into())).status_code(), 503);
        assert_eq!(
            AgentError::Backlog { queued: 1 }.to_transport(),
            TransportError::Rejected { status: 503, message: AgentError::Backlog { queued: 1 }.to_string() }
        );
    }
}
