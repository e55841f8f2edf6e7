use crate::ids::{ApiKeyId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An API key. The secret is shown once at creation; the store keeps a lookup prefix and a hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Identifier.
    pub id: ApiKeyId,
    /// Owner; the key acts with the owner's rights, narrowed by `scope`.
    pub user: UserId,
    /// Public, unique prefix of the key used to find it (`nxk_ab12cd34`).
    pub prefix: String,
    /// Hash of the full key.
    pub secret_hash: String,
    /// Operator's note.
    pub memo: String,
    /// What the key may do.
    pub scope: ApiKeyScope,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last use, if ever.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
    /// Addresses it is accepted from: IPs and CIDR ranges (`203.0.113.7`, `10.0.0.0/8`,
    /// `2001:db8::/32`); empty for any address.
    #[serde(default)]
    pub allowed_ips: Vec<String>,
}

/// What an API key may do.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyScope {
    /// Act on the owner's servers (client API).
    Client,
    /// Administer the panel (application API); only for admins.
    Application,
}
