use crate::ids::{ServerId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A user granted rights on someone else's server (Pterodactyl's subuser).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subuser {
    /// The server.
    pub server: ServerId,
    /// The user granted rights.
    pub user: UserId,
    /// Permission names as Pterodactyl spells them (`control.console`, `file.read`, ...);
    /// which names exist is the control plane's business, the store keeps them as given.
    pub permissions: BTreeSet<String>,
    /// When the user was first added.
    pub created_at: DateTime<Utc>,
}

/// A user's TOTP (RFC 6238) second factor.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserTotp {
    /// The user.
    pub user: UserId,
    /// The shared secret, base32 as authenticator apps take it.
    pub secret: String,
    /// Hashes of the unused recovery codes.
    pub recovery_hashes: Vec<String>,
    /// When the user confirmed it with a first code; `None` while being set up (not yet
    /// asked at login).
    pub enabled_at: Option<DateTime<Utc>>,
    /// The time step of the last code accepted, so a code is never accepted twice.
    pub last_step: Option<u64>,
}

impl std::fmt::Debug for UserTotp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserTotp")
            .field("user", &self.user)
            .field("recovery_codes_left", &self.recovery_hashes.len())
            .field("enabled_at", &self.enabled_at)
            .finish_non_exhaustive()
    }
}
