use crate::ids::{BackupId, ServerId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An archive of a server's files.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    /// Identifier.
    pub id: BackupId,
    /// The server backed up.
    pub server: ServerId,
    /// Display name.
    pub name: String,
    /// Glob patterns left out of the archive.
    pub ignored: Vec<String>,
    /// Progress.
    pub state: BackupState,
    /// Archive size once done.
    pub bytes: Option<u64>,
    /// SHA-256 of the archive once done.
    pub checksum: Option<String>,
    /// Locked backups cannot be deleted.
    pub locked: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Completion time.
    pub completed_at: Option<DateTime<Utc>>,
}

/// Progress of a backup.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupState {
    /// Being written.
    Pending,
    /// Complete and restorable.
    Succeeded,
    /// Failed; the archive is unusable.
    Failed,
}
