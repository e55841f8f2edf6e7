//! Console access for browsers: the panel mints a short-lived token for one server and the
//! caller's permissions, signed with that server's node's console secret (derived from the
//! panel's node secret), and names the node's WebSocket. Console traffic then flows between
//! browser and node; it never passes through the panel.

use crate::{ControlError, ControlPlane};
use chrono::{DateTime, Utc};
use nexus_core::ids::ServerId;
use nexus_core::model::Permission;
use nexus_wire::NodeToken;
use nexus_wire::api::paths;
use nexus_wire::token::TokenSigner;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a console token lives. The reference daemon refuses tokens claiming more than
/// its `max_token_lifetime_secs` (900 by default).
pub const CONSOLE_TOKEN_LIFETIME: Duration = Duration::from_secs(600);

/// Where a browser connects for a server's console, and with what.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConsoleAccess {
    /// The node's console WebSocket (`ws://` or `wss://`); append `?token=`.
    pub socket: String,
    /// The browser token: this server, these permissions, until `expires_at`.
    pub token: String,
    /// When the token stops working.
    pub expires_at: DateTime<Utc>,
}

impl ControlPlane {
    /// A console token for `server` granting `permissions`, and its node's socket. The caller
    /// decides the permissions (the rights of whoever asks); this only signs them.
    pub async fn console_access(
        &self,
        server: ServerId,
        permissions: &[Permission],
    ) -> Result<ConsoleAccess, ControlError> {
        let Some(secret) = &self.config.node_secret else {
            return Err(ControlError::Invalid { field: "node_secret", reason: "no node secret configured".into() });
        };
        let record = self.server(server).await?;
        crate::servers::refuse_if_deleting(&record)?;
        if record.suspended {
            return Err(ControlError::Suspended(server));
        }
        let node = self.store.get_node(record.node).await?;
        let console_secret = NodeToken::derive_console_secret(&secret.0, node.id);
        let signer = TokenSigner::new(console_secret.as_bytes(), CONSOLE_TOKEN_LIFETIME)
            .map_err(|e| ControlError::Invalid { field: "node_secret", reason: e.to_string() })?;
        let token = signer.mint(server, permissions, CONSOLE_TOKEN_LIFETIME);
        let lifetime = chrono::Duration::from_std(CONSOLE_TOKEN_LIFETIME).unwrap_or_default();
        Ok(ConsoleAccess {
            socket: format!("{}{}", self.console_origin(&node), paths::console(server)),
            token,
            expires_at: Utc::now() + lifetime,
        })
    }

    /// Where browsers open `node`'s console sockets: `ws://fqdn:port` (`wss` when nodes are
    /// reached over HTTPS). Pages allow their scripts to connect there and nowhere else.
    pub fn console_origin(&self, node: &nexus_core::model::Node) -> String {
        let scheme = if self.config.node_scheme == "https" { "wss" } else { "ws" };
        format!("{scheme}://{}:{}", crate::nodes::url_host(&node.fqdn), node.daemon_port)
    }

    /// Where browsers reach `node`'s HTTP API (`http://fqdn:port`, `https` when nodes are
    /// reached over HTTPS): the origin of links that carry a browser token.
    pub fn node_origin(&self, node: &nexus_core::model::Node) -> String {
        let scheme = if self.config.node_scheme == "https" { "https" } else { "http" };
        format!("{scheme}://{}:{}", crate::nodes::url_host(&node.fqdn), node.daemon_port)
    }

    /// The console secret (`token_secret`) `node`'s daemon must be configured with so it
    /// accepts this panel's console tokens; `None` without a node secret.
    pub fn node_console_secret(&self, node: nexus_core::ids::NodeId) -> Option<String> {
        self.config.node_secret.as_ref().map(|secret| NodeToken::derive_console_secret(&secret.0, node))
    }

    /// The token of `node` derived from the node secret; `None` without one.
    pub fn node_token(&self, node: nexus_core::ids::NodeId) -> Option<String> {
        self.config.node_secret.as_ref().map(|secret| NodeToken::derive(&secret.0, node).0)
    }
}
