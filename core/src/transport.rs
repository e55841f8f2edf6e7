//! How the two planes talk.
//!
//! Panel → node: [`NodeTransport::send`] carries a [`NodeCommand`] to one node, whose
//! [`NodeHandler`] answers. Node → panel: [`PanelTransport::publish`] carries heartbeats and
//! lifecycle events. The reference implementations are JSON over HTTPS (in the daemon and
//! panel crates) and `InProcessTransport` (feature `memory`) for a single
//! binary holding both planes.

use crate::ids::{NodeId, ServerId};
use crate::lifecycle::{LifecycleEvent, ServerState};
use crate::model::{ConfigFile, DoneMatcher, ServerLimits, StopMethod};
use crate::runtime::PortBinding;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub mod validate;

pub use validate::SpecError;

/// Longest console command a node accepts, in bytes (also the longest `stop` command of a
/// [`ServerSpec`]).
pub const MAX_COMMAND_BYTES: usize = 4096;

/// What a node needs to run one server. Built by the panel from the server and its egg;
/// [`ServerSpec::validate`] says whether a node will accept it (rules in [`validate`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerSpec {
    /// The server.
    pub id: ServerId,
    /// Container image.
    pub image: String,
    /// Startup command template (`{{VAR}}` placeholders).
    pub startup: String,
    /// Variable values and panel-provided environment.
    pub environment: BTreeMap<String, String>,
    /// Limits.
    pub limits: ServerLimits,
    /// Primary allocation first.
    pub allocations: Vec<PortBinding>,
    /// Console lines meaning "up".
    pub done: Vec<DoneMatcher>,
    /// How to stop it.
    pub stop: StopMethod,
    /// Files patched before each start.
    pub config_files: Vec<ConfigFile>,
    /// Install script, image and interpreter.
    pub install: crate::model::EggScript,
    /// Paths users may not touch.
    pub file_denylist: Vec<String>,
    /// Suspended servers cannot start.
    pub suspended: bool,
    /// Short code of the server's location, as the panel names it (`P_SERVER_LOCATION` in
    /// the server's environment, as Pterodactyl sets it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// How many allocations the server may hold (`P_SERVER_ALLOCATION_LIMIT`; `0` when
    /// none is set, as Pterodactyl sends it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_limit: Option<u32>,
    /// Template layers the node applies over the server's files after the install script,
    /// in order (later layers win): the egg's, then the server's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<crate::template::LayerRef>,
}

/// A power action.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerAction {
    /// Start.
    Start,
    /// Stop gracefully (egg stop method, then kill after the timeout).
    Stop,
    /// Stop, then start.
    Restart,
    /// Kill now.
    Kill,
}

/// Panel → node request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum NodeCommand {
    /// Create (or update) a server from a spec; installs it unless told not to.
    CreateServer {
        /// What to run.
        spec: Box<ServerSpec>,
        /// Run the install script right away.
        install: bool,
    },
    /// Remove a server's container and files.
    DestroyServer {
        /// Which.
        server: ServerId,
    },
    /// A power action.
    Power {
        /// Which server.
        server: ServerId,
        /// What to do.
        action: PowerAction,
    },
    /// Run (or re-run) the install script.
    Install {
        /// Which server.
        server: ServerId,
    },
    /// Write a line to the console.
    SendCommand {
        /// Which server.
        server: ServerId,
        /// The line, without newline.
        line: String,
    },
    /// States of every server on the node.
    ListServers,
    /// Archive the server's files into the node's backup store. Answered once accepted; the
    /// outcome arrives later as a backup report.
    CreateBackup {
        /// Which server.
        server: ServerId,
        /// The backup's identifier (the panel's record).
        backup: crate::ids::BackupId,
        /// Gitignore-syntax patterns left out, besides the server's `.pteroignore`.
        ignored: Vec<String>,
    },
    /// Replace the server's files with a backup's (the server must be stopped). Answered
    /// once accepted; the outcome arrives later as a backup report.
    RestoreBackup {
        /// Which server.
        server: ServerId,
        /// Which backup.
        backup: crate::ids::BackupId,
        /// Remove every file first; otherwise files the backup lacks are kept.
        wipe: bool,
        /// SHA-256 of the archive (hex), checked before anything is replaced.
        checksum: String,
    },
    /// Remove a backup's archive (absent is fine).
    DeleteBackup {
        /// Which server.
        server: ServerId,
        /// Which backup.
        backup: crate::ids::BackupId,
    },
}

/// The state of one server on a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// Which server.
    pub server: ServerId,
    /// Its lifecycle state.
    pub state: ServerState,
}

/// Node → panel answer to a [`NodeCommand`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum NodeResponse {
    /// Done, nothing to return.
    Ok,
    /// Answer to [`NodeCommand::ListServers`].
    Servers(Vec<ServerStatus>),
}

/// A node's periodic sign of life.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Sender.
    pub node: NodeId,
    /// When it was sent.
    pub at: DateTime<Utc>,
    /// Daemon version.
    pub version: String,
    /// Servers it runs, with their states.
    pub servers: Vec<ServerStatus>,
}

/// Node → panel message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum NodeMessage {
    /// Sign of life.
    Heartbeat(Heartbeat),
    /// A server changed state.
    Lifecycle(LifecycleEvent),
    /// A backup or a restore ended.
    Backup(BackupReport),
}

/// How a backup or a restore a panel asked for ended ([`NodeMessage::Backup`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupReport {
    /// Whose backup.
    pub server: ServerId,
    /// Which backup.
    pub backup: crate::ids::BackupId,
    /// When it ended.
    pub at: DateTime<Utc>,
    /// How.
    pub outcome: BackupOutcome,
}

/// The end of a backup or a restore.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum BackupOutcome {
    /// The archive is complete and stored.
    Created {
        /// Its size.
        bytes: u64,
        /// SHA-256 of the archive, lower-case hex.
        checksum: String,
    },
    /// No archive was kept.
    CreateFailed {
        /// Why, in words for the server's users.
        error: String,
    },
    /// The server's files are the backup's.
    Restored,
    /// The server's files are as they were before the restore.
    RestoreFailed {
        /// Why, in words for the server's users.
        error: String,
    },
}

/// Failures crossing the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The node (or panel) cannot be reached; retrying may help.
    #[error("{0} unreachable: {1}")]
    Unreachable(String, String),
    /// Credentials refused.
    #[error("unauthorized")]
    Unauthorized,
    /// The other side understood and refused the request.
    #[error("rejected ({status}): {message}")]
    Rejected {
        /// HTTP-like status code.
        status: u16,
        /// Why.
        message: String,
    },
    /// The reply could not be read.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// There is no panel to deliver to (a standalone node): the message was dropped on
    /// purpose, and is counted as dropped, not as sent.
    #[error("no panel configured; message dropped")]
    NoPanel,
}

/// Panel side: sends commands to nodes.
///
/// # Contract
///
/// One call is one delivery attempt: a node that cannot be reached is
/// [`TransportError::Unreachable`] (the caller decides whether to retry; commands are not
/// queued), a node that refuses is [`TransportError::Rejected`] with its status, and the
/// answer is the node's [`NodeHandler`]'s. Implementations: HTTP to `nexus-wings` (the panel),
/// `InProcessTransport` (feature `memory`: both planes in one process).
///
/// # Example
///
/// ```
/// use nexus_core::ids::NodeId;
/// use nexus_core::transport::{NodeCommand, NodeResponse, NodeTransport, TransportError};
///
/// async fn states(nodes: &dyn NodeTransport, node: NodeId) -> Result<usize, TransportError> {
///     match nodes.send(node, NodeCommand::ListServers).await? {
///         NodeResponse::Servers(servers) => Ok(servers.len()),
///         _ => Err(TransportError::Protocol("expected a server list".into())),
///     }
/// }
/// ```
#[async_trait]
pub trait NodeTransport: Send + Sync {
    /// Delivers `command` to `node` and returns its answer.
    async fn send(&self, node: NodeId, command: NodeCommand) -> Result<NodeResponse, TransportError>;
}

/// Node side: what answers [`NodeCommand`]s (the node agent).
#[async_trait]
pub trait NodeHandler: Send + Sync {
    /// Carries out one command.
    async fn handle(&self, command: NodeCommand) -> Result<NodeResponse, TransportError>;
}

/// Node side: sends heartbeats and events to the panel.
///
/// # Contract
///
/// One call is one attempt, and a success means the panel has the message. Retrying,
/// backoff and ordering are the caller's (the node agent's outbox): return
/// [`TransportError::Unreachable`] for anything worth retrying (connection failures,
/// timeouts, overload), [`TransportError::Unauthorized`] when the panel refuses the node's
/// credentials, and [`TransportError::NoPanel`] when there is no panel at all (the outbox
/// then drops instead of retrying). The panel must ingest idempotently: after a crash the
/// same lifecycle event may be published again.
///
/// # Example
///
/// A link that logs instead of delivering, for a node run without a panel:
///
/// ```
/// use async_trait::async_trait;
/// use nexus_core::ids::NodeId;
/// use nexus_core::transport::{NodeMessage, PanelTransport, TransportError};
///
/// struct LogOnly;
///
/// #[async_trait]
/// impl PanelTransport for LogOnly {
///     async fn publish(&self, node: NodeId, message: NodeMessage) -> Result<(), TransportError> {
///         if let NodeMessage::Lifecycle(event) = &message {
///             println!("{node}: {} {:?} -> {:?}", event.server, event.from, event.to);
///         }
///         // Accepted: the outbox removes it. `Err(TransportError::NoPanel)` would drop it too.
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait PanelTransport: Send + Sync {
    /// Delivers one message from `node`.
    async fn publish(&self, node: NodeId, message: NodeMessage) -> Result<(), TransportError>;
}
