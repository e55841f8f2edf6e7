//! Node → panel: heartbeats and lifecycle events.
//!
//! A node POSTs each [`NodeMessage`] as JSON to `<panel_url>` + [`EVENTS_PATH`] with
//! `Authorization: Bearer <node token>`; the body is an [`EventEnvelope`]:
//!
//! ```json
//! {"node":"6f1c…","message":{"type":"heartbeat","data":{"node":"6f1c…","at":"2026-12-03T18:00:00Z","version":"0.1.0","servers":[{"server":"3f2a…","state":"running"}]}}}
//! {"node":"6f1c…","message":{"type":"lifecycle","data":{"server":"3f2a…","from":"starting","to":"running","trigger":"ready","at":"2026-12-03T18:00:01Z"}}}
//! ```
//!
//! Any 2xx answer is delivery. A node retries on a connection failure, a timeout, 401/403
//! (until its token is fixed), 408, 429 and 5xx, with backoff, in order, never dropping a
//! lifecycle event; another 4xx drops that one message as one the panel will never take. Delivery is therefore at least once: a panel
//! ingests idempotently (an event applied twice changes nothing) and in order per server.

use nexus_core::ids::NodeId;
use nexus_core::transport::NodeMessage;
use serde::{Deserialize, Serialize};

/// Path of the panel's event endpoint, appended to the panel's base URL.
pub const EVENTS_PATH: &str = "/api/remote/events";

/// The body of one POST to [`EVENTS_PATH`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EventEnvelope {
    /// The node sending it (must match the node its token belongs to).
    pub node: NodeId,
    /// What happened.
    pub message: NodeMessage,
}

impl EventEnvelope {
    /// `message` from `node`.
    pub fn new(node: NodeId, message: NodeMessage) -> Self {
        Self { node, message }
    }
}

/// The panel's events URL for a panel at `panel_url` (its base URL, with or without a
/// trailing `/`).
pub fn events_url(panel_url: &str) -> String {
    format!("{}{EVENTS_PATH}", panel_url.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use nexus_core::ids::ServerId;
    use nexus_core::lifecycle::{LifecycleEvent, ServerState, Trigger};
    use nexus_core::transport::{Heartbeat, ServerStatus};

    #[test]
    fn envelopes_have_the_documented_shape_and_round_trip() {
        let node = NodeId::new();
        let server = ServerId::new();
        let at: DateTime<Utc> = "2026-12-03T18:00:00Z".parse().unwrap();
        let heartbeat = Heartbeat {
            node,
            at,
            version: "0.1.0".into(),
            servers: vec![ServerStatus { server, state: ServerState::Running }],
        };
        let event = LifecycleEvent {
            server,
            from: ServerState::Starting,
            to: ServerState::Running,
            trigger: Trigger::Ready,
            at,
        };
        for (message, expected) in [
            (
                NodeMessage::Heartbeat(heartbeat),
                format!(
                    r#"{{"node":"{node}","message":{{"type":"heartbeat","data":{{"node":"{node}","at":"2026-12-03T18:00:00Z","version":"0.1.0","servers":[{{"server":"{server}","state":"running"}}]}}}}}}"#
                ),
            ),
            (
                NodeMessage::Lifecycle(event),
                format!(
                    r#"{{"node":"{node}","message":{{"type":"lifecycle","data":{{"server":"{server}","from":"starting","to":"running","trigger":"ready","at":"2026-12-03T18:00:00Z"}}}}}}"#
                ),
            ),
        ] {
            let envelope = EventEnvelope::new(node, message);
            assert_eq!(serde_json::to_string(&envelope).unwrap(), expected);
            let back: EventEnvelope = serde_json::from_str(&expected).unwrap();
            assert_eq!(back, envelope);
        }
        assert_eq!(events_url("https://panel.example/"), "https://panel.example/api/remote/events");
    }
}
