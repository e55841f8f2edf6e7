//! [`ControlError`]: everything a control-plane operation can fail with.

use nexus_core::ids::{EggId, NodeId, ServerId};
use nexus_core::placement::PlacementError;
use nexus_core::store::StoreError;
use nexus_core::transport::TransportError;
use nexus_eggs::spec::SpecBuildError;

/// Why a control-plane operation failed. [`status_code`](Self::status_code) maps each to the
/// HTTP status an API in front of it should answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No node can take the server.
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// The egg and the values given do not make a server a node would run (names the
    /// variable and the rule, or the field).
    #[error(transparent)]
    Spec(#[from] SpecBuildError),
    /// A node could not be reached or refused.
    #[error("node {node}: {source}")]
    Node {
        /// The node.
        node: NodeId,
        /// What the transport said.
        #[source]
        source: TransportError,
    },
    /// A port list such as `25565-25665` that is not one.
    #[error("allocation ports `{input}`: {reason}")]
    InvalidPorts {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The chosen node has no free allocation left (placement's view was stale).
    #[error("node {0} has no free allocation")]
    NoFreeAllocation(NodeId),
    /// The node placement chose has no room left for the server's memory, disk or CPU by the
    /// store's count (another panel process booked it meanwhile).
    #[error("node {0} has no room left for the server")]
    NodeFull(NodeId),
    /// The egg does not exist.
    #[error("egg {0} does not exist")]
    UnknownEgg(EggId),
    /// The server does not exist.
    #[error("server {0} does not exist")]
    UnknownServer(ServerId),
    /// The server is suspended.
    #[error("server {0} is suspended")]
    Suspended(ServerId),
    /// The server is being deleted (its node was away when asked).
    #[error("server {0} is being deleted")]
    Deleting(ServerId),
    /// The server must be stopped first.
    #[error("server {0} is running; stop it first")]
    Running(ServerId),
    /// A value the caller gave is not acceptable.
    #[error("{field}: {reason}")]
    Invalid {
        /// Which.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A login or key was refused.
    #[error(transparent)]
    Auth(#[from] crate::accounts::AuthError),
    /// Allowed to be here, not to do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Something changed concurrently; try again.
    #[error("busy: {0}")]
    Busy(String),
    /// No backup by that id on that server.
    #[error("backup {0} does not exist")]
    UnknownBackup(nexus_core::ids::BackupId),
    /// A backup request the rules refuse (the limit, a lock, one in progress).
    #[error("{0}")]
    BackupRefused(String),
}

impl ControlError {
    /// The HTTP status for this error: 4xx for what the caller can fix, 409 for conflicts,
    /// 502/504 for nodes, 500 for the store failing.
    pub fn status_code(&self) -> u16 {
        match self {
            Self::Store(e) => match e {
                StoreError::NotFound { .. } => 404,
                StoreError::Duplicate { .. } | StoreError::InUse { .. } | StoreError::VersionConflict { .. } => 409,
                StoreError::StateMismatch { .. } | StoreError::AllocationUnavailable { .. } => 409,
                StoreError::InvalidReference(_) => 422,
                _ => 500,
            },
            Self::Placement(_) | Self::NoFreeAllocation(_) | Self::NodeFull(_) => 409,
            Self::Spec(_) | Self::InvalidPorts { .. } => 422,
            Self::Node { source: TransportError::Rejected { status, .. }, .. } if (400..500).contains(status) => 409,
            Self::Node { .. } => 502,
            Self::UnknownEgg(_) | Self::UnknownServer(_) => 404,
            Self::Suspended(_) | Self::Deleting(_) | Self::Running(_) => 409,
            Self::Invalid { .. } => 422,
            Self::Auth(crate::accounts::AuthError::Throttled { .. }) => 429,
            Self::Auth(crate::accounts::AuthError::AddressNotAllowed) => 403,
            Self::Auth(_) => 401,
            Self::Forbidden(_) => 403,
            Self::Busy(_) => 503,
            Self::UnknownBackup(_) => 404,
            Self::BackupRefused(_) => 400,
        }
    }
}
