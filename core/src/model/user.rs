use crate::ids::UserId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A person who logs into the panel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Identifier.
    pub id: UserId,
    /// Unique login name.
    pub username: String,
    /// Unique e-mail address.
    pub email: String,
    /// A password hash (PHC string); never the password itself.
    pub password_hash: String,
    /// What the user may do panel-wide.
    pub role: Role,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
}

/// Panel-wide role of a user. Per-server rights are [`Permission`]s.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Full control over the panel, every node and every server.
    Admin,
    /// Controls the servers they own or were granted.
    User,
}

/// A right on one server, granted to its owner implicitly and to sub-users explicitly.
/// Also the scope of browser console tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Read console output and stats.
    ConsoleRead,
    /// Send console commands.
    ConsoleWrite,
    /// Start, stop, restart, kill.
    Power,
    /// List and read files.
    FileRead,
    /// Write, rename, delete, compress files.
    FileWrite,
    /// Create and restore backups.
    Backup,
    /// Manage schedules.
    Schedule,
    /// Change startup variables.
    Startup,
    /// Reinstall and change settings.
    Settings,
    /// See install output on the console. Install scripts echo secrets (database passwords,
    /// API keys), so this is separate from `ConsoleRead`, like Wings' `admin.websocket.install`,
    /// and not part of [`Permission::ALL`] (an owner's set): panels grant it to admins.
    InstallRead,
}

impl Permission {
    /// Every permission, as held by a server's owner.
    pub const ALL: [Permission; 9] = [
        Permission::ConsoleRead,
        Permission::ConsoleWrite,
        Permission::Power,
        Permission::FileRead,
        Permission::FileWrite,
        Permission::Backup,
        Permission::Schedule,
        Permission::Startup,
        Permission::Settings,
    ];
}
