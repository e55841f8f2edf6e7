//! [`HttpNodeTransport`]: [`NodeTransport`] over the daemon's HTTP API.
//!
//! Each [`NodeCommand`] becomes one request to the node's base URL with its token
//! (`Authorization: Bearer`), with a deadline and a bound on the answer's size; no retries
//! (the caller decides). A connection failure or timeout is [`TransportError::Unreachable`],
//! 401/403 [`TransportError::Unauthorized`], any other non-2xx [`TransportError::Rejected`]
//! with the node's typed error message. Destroying a server the node answers it does not know
//! (`404 unknown_server`) is done.

use async_trait::async_trait;
use nexus_control::{ControlError, ControlPlane};
use nexus_core::ids::NodeId;
use nexus_core::transport::{NodeCommand, NodeResponse, NodeTransport, ServerStatus, TransportError};
use nexus_wire::ErrorBody;
use nexus_wire::api::{CommandRequest, PowerRequest, paths};
use nexus_wire::backups::{CreateBackupRequest, RestoreBackupRequest};
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// Largest answer read from a node (a server list of ~100,000 servers).
pub const MAX_ANSWER_BYTES: usize = 8 << 20;

/// Where a node's API is and the token it takes.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeEndpoint {
    /// Base URL, e.g. `https://node1.example.com:8080`.
    pub base_url: String,
    /// The node token.
    pub token: String,
}

impl std::fmt::Debug for NodeEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeEndpoint").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

/// The panel → node link over HTTP(S).
#[derive(Debug)]
pub struct HttpNodeTransport {
    client: reqwest::Client,
    /// For requests forwarded on a user's behalf, which may stream ([`crate::node_proxy`]).
    pub(crate) streaming: reqwest::Client,
    endpoints: RwLock<HashMap<NodeId, NodeEndpoint>>,
}

impl HttpNodeTransport {
    /// A transport whose requests each take at most `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, TransportError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("nexus-panel/", env!("CARGO_PKG_VERSION")))
            // A node answers itself; a redirect would carry the token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| TransportError::Protocol(format!("HTTP client: {e}")))?;
        let streaming =
            crate::node_proxy::client().map_err(|e| TransportError::Protocol(format!("HTTP client: {e}")))?;
        Ok(Self { client, streaming, endpoints: RwLock::new(HashMap::new()) })
    }

    /// Routes commands for `node` to `endpoint`.
    pub fn set_endpoint(&self, node: NodeId, endpoint: NodeEndpoint) {
        self.endpoints.write().unwrap_or_else(PoisonError::into_inner).insert(node, endpoint);
    }

    /// Routes every node of `control`'s store to its API with its derived token
    /// ([`ControlPlane::node_endpoint`]); returns how many. Nodes whose token cannot be derived
    /// (registered without the panel's node secret) are left out and logged.
    pub async fn sync_endpoints(&self, control: &ControlPlane) -> Result<usize, ControlError> {
        let mut routed = 0;
        // One read of every node, not one per node: this runs every heartbeat interval.
        for node in control.store().list_nodes().await? {
            match control.endpoint_of(&node) {
                Ok((base_url, token)) => {
                    self.set_endpoint(node.id, NodeEndpoint { base_url, token });
                    routed += 1;
                }
                Err(e) => tracing::warn!(node = %node.id, error = %e, "node not reachable by the panel"),
            }
        }
        Ok(routed)
    }

    /// Re-reads every node's endpoint from the store each heartbeat interval until
    /// `shutdown`: nodes registered or changed by another panel process on the same database.
    pub async fn keep_synced(
        self: Arc<Self>,
        control: Arc<ControlPlane>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(control.config().heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {
                    if let Err(e) = self.sync_endpoints(&control).await {
                        tracing::warn!(error = %e, "syncing node endpoints");
                    }
                }
            }
        }
    }

    /// Forgets `node`.
    pub fn remove_endpoint(&self, node: NodeId) {
        self.endpoints.write().unwrap_or_else(PoisonError::into_inner).remove(&node);
    }

    pub(crate) fn endpoint(&self, node: NodeId) -> Result<NodeEndpoint, TransportError> {
        self.endpoints
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&node)
            .cloned()
            .ok_or_else(|| TransportError::Unreachable(format!("node {node}"), "no endpoint known".into()))
    }
}

#[async_trait]
impl NodeTransport for HttpNodeTransport {
    async fn send(&self, node: NodeId, command: NodeCommand) -> Result<NodeResponse, TransportError> {
        let endpoint = self.endpoint(node)?;
        let base = endpoint.base_url.trim_end_matches('/');
        let http = &self.client;
        let request = match &command {
            NodeCommand::CreateServer { spec, install } => {
                http.post(format!("{base}{}?install={install}", paths::SERVERS)).json(spec)
            }
            NodeCommand::DestroyServer { server } => http.delete(format!("{base}{}", paths::server(*server))),
            NodeCommand::Power { server, action } => {
                http.post(format!("{base}{}", paths::power(*server))).json(&PowerRequest { action: *action })
            }
            NodeCommand::Install { server } => http.post(format!("{base}{}", paths::install(*server))),
            NodeCommand::SendCommand { server, line } => {
                http.post(format!("{base}{}", paths::commands(*server))).json(&CommandRequest { command: line.clone() })
            }
            NodeCommand::ListServers => http.get(format!("{base}{}", paths::SERVERS)),
            NodeCommand::CreateBackup { server, backup, ignored } => http
                .post(format!("{base}{}", paths::backups(*server)))
                .json(&CreateBackupRequest { backup: *backup, ignored: ignored.clone() }),
            NodeCommand::RestoreBackup { server, backup, wipe, checksum } => http
                .post(format!("{base}{}", paths::backup_restore(*server, *backup)))
                .json(&RestoreBackupRequest { wipe: *wipe, checksum: checksum.clone() }),
            NodeCommand::DeleteBackup { server, backup } => {
                http.delete(format!("{base}{}", paths::backup(*server, *backup)))
            }
        };
        let target = format!("node {node}");
        let mut response = request
            .bearer_auth(&endpoint.token)
            .send()
            .await
            .map_err(|e| TransportError::Unreachable(target.clone(), e.to_string()))?;
        let status = response.status().as_u16();
        let body = read_limited(&mut response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| TransportError::Unreachable(target.clone(), e))?;
        match status {
            200..=299 => {}
            // Only the daemon's own "no such server" makes a removal done: a wrong URL or a
            // proxy answering 404 must not.
            404 if matches!(command, NodeCommand::DestroyServer { .. })
                && serde_json::from_slice::<ErrorBody>(&body).is_ok_and(|e| e.error.code == "unknown_server") =>
            {
                return Ok(NodeResponse::Ok);
            }
            401 | 403 => return Err(TransportError::Unauthorized),
            _ => {
                let message = serde_json::from_slice::<ErrorBody>(&body)
                    .map(|e| format!("{}: {}", e.error.code, e.error.message))
                    .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(512).collect());
                return Err(TransportError::Rejected { status, message });
            }
        }
        match command {
            NodeCommand::ListServers => serde_json::from_slice::<Vec<ServerStatus>>(&body)
                .map(NodeResponse::Servers)
                .map_err(|e| TransportError::Protocol(format!("server list: {e}"))),
            _ => Ok(NodeResponse::Ok),
        }
    }
}

/// The answer's body, refused past `max` bytes (declared or counted).
pub(crate) async fn read_limited(response: &mut reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|len| len > max as u64) {
        return Err(format!("answer larger than {max} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > max {
            return Err(format!("answer larger than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
