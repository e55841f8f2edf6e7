//! The node → panel link: [`HttpPanelTransport`] POSTs each [`NodeMessage`] as an
//! [`EventEnvelope`] to `<panel_url>` + [`EVENTS_PATH`] with `Authorization: Bearer <node
//! token>` (the protocol is [`nexus_wire::events`]). Any 2xx is delivery. The answer maps to [`TransportError`] so the agent's outbox can decide: a
//! connection failure, a timeout, 408, 429 and 5xx are `Unreachable` (retry later), 401/403
//! `Unauthorized`, other statuses `Rejected`. Retry, backoff and ordering are the outbox's
//! job, not this type's: one call is one attempt.
//!
//! A daemon without a panel uses [`nexus_agent::NoPanel`].

use async_trait::async_trait;
use nexus_core::ids::NodeId;
use nexus_core::transport::{NodeMessage, PanelTransport, TransportError};
pub use nexus_wire::events::EVENTS_PATH;
use nexus_wire::events::{EventEnvelope, events_url};
use std::time::Duration;

/// Time one delivery attempt may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Delivers node messages to the panel over HTTP(S).
#[derive(Clone)]
pub struct HttpPanelTransport {
    client: reqwest::Client,
    url: String,
    token: String,
}

impl std::fmt::Debug for HttpPanelTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpPanelTransport").field("url", &self.url).finish_non_exhaustive()
    }
}

impl HttpPanelTransport {
    /// A transport to the panel at `panel_url` (its base URL) presenting `token`.
    pub fn new(panel_url: &str, token: &str) -> Result<Self, TransportError> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("nexus-wings/", env!("CARGO_PKG_VERSION")))
            // Idle connections are cheap to reopen every heartbeat; keep at most one.
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|e| TransportError::Protocol(format!("HTTP client: {e}")))?;
        let url = events_url(panel_url);
        Ok(Self { client, url, token: token.to_owned() })
    }

    /// The URL messages are posted to.
    pub fn url(&self) -> &str {
        &self.url
    }
}

#[async_trait]
impl PanelTransport for HttpPanelTransport {
    async fn publish(&self, node: NodeId, message: NodeMessage) -> Result<(), TransportError> {
        let body = serde_json::to_vec(&EventEnvelope::new(node, message))
            .map_err(|e| TransportError::Protocol(e.to_string()))?;
        let response = self
            .client
            .post(&self.url)
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| TransportError::Unreachable("panel".into(), e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let code = status.as_u16();
        let text = response.text().await.unwrap_or_default();
        let message: String = text.chars().take(512).collect();
        Err(match code {
            401 | 403 => TransportError::Unauthorized,
            408 | 429 | 500..=599 => TransportError::Unreachable("panel".into(), format!("HTTP {code}: {message}")),
            _ => TransportError::Rejected { status: code, message },
        })
    }
}
