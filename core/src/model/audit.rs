use crate::ids::{AuditEventId, NodeId, ServerId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One entry of the append-only audit log.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Identifier.
    pub id: AuditEventId,
    /// Who acted; `None` for the system itself (schedules, crash restarts).
    pub actor: Option<UserId>,
    /// Dotted action name, e.g. `server.power.start`.
    pub action: String,
    /// What was acted on.
    pub subject: AuditSubject,
    /// Free structured detail.
    pub metadata: serde_json::Value,
    /// Source address of the request, if any.
    pub ip: Option<String>,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// The object an audit event is about.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum AuditSubject {
    /// The panel as a whole.
    Panel,
    /// A user.
    User(UserId),
    /// A node.
    Node(NodeId),
    /// A server.
    Server(ServerId),
}
