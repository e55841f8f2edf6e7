//! Backups kept by a node: the bodies of its backup routes.
//!
//! | method | path ([`paths`](crate::api::paths)) | body → answer |
//! |---|---|---|
//! | POST | `/api/servers/:id/backups` | [`CreateBackupRequest`] → `202` [`BackupAccepted`]; the outcome arrives later as a [`NodeMessage::Backup`] |
//! | GET | `/api/servers/:id/backups/:backup` | → the archive, [`ARCHIVE_CONTENT_TYPE`], streamed, named [`archive_file_name`] |
//! | POST | `/api/servers/:id/backups/:backup/restore` | [`RestoreBackupRequest`] → `202` [`BackupAccepted`] (`409 busy` while the server is not stopped); the outcome arrives later as a [`NodeMessage::Backup`] |
//! | DELETE | `/api/servers/:id/backups/:backup` | → `204` (also when there was nothing to delete) |
//!
//! Creating, restoring and deleting take the node token; a download also takes a browser
//! token granting `backup` on the server (in the header, or `?token=` where a browser cannot
//! set one). One backup or restore per server runs at a time (`409 busy` for another).
//!
//! ```
//! use nexus_wire::backups::{CreateBackupRequest, RestoreBackupRequest};
//!
//! let create: CreateBackupRequest =
//!     serde_json::from_str(r#"{"backup":"9a0e6c1e-4f0b-4e63-9d2e-1b6f0c3e5a71","ignored":["*.log"]}"#).unwrap();
//! assert_eq!(create.ignored, ["*.log"]);
//! let restore: RestoreBackupRequest = serde_json::from_str(
//!     r#"{"wipe":true,"checksum":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}"#,
//! )
//! .unwrap();
//! assert!(restore.wipe && restore.check().is_ok());
//! ```
//!
//! [`NodeMessage::Backup`]: nexus_core::transport::NodeMessage::Backup

use nexus_core::ids::{BackupId, ServerId};
use serde::{Deserialize, Serialize};

/// `content-type` of a downloaded archive (a tar stream compressed with zstd).
pub const ARCHIVE_CONTENT_TYPE: &str = "application/zstd";
/// Most ignore patterns a node accepts with one backup.
pub const MAX_IGNORED_PATTERNS: usize = 256;
/// Longest ignore pattern a node accepts, bytes.
pub const MAX_PATTERN_BYTES: usize = 1024;

/// The file name a downloaded archive is offered under.
pub fn archive_file_name(backup: BackupId) -> String {
    format!("{backup}.tar.zst")
}

/// `POST /api/servers/:id/backups` body: `{"backup":"<uuid>","ignored":["*.log"]}`.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBackupRequest {
    /// The backup's identifier (the panel's record); the archive is stored under it.
    pub backup: BackupId,
    /// Gitignore-syntax patterns left out, besides the server's `.pteroignore`; at most
    /// [`MAX_IGNORED_PATTERNS`] of at most [`MAX_PATTERN_BYTES`] each.
    #[serde(default)]
    pub ignored: Vec<String>,
}

impl CreateBackupRequest {
    /// Checks the bounds of `ignored` (whether each pattern parses is the node's to say).
    pub fn check(&self) -> Result<(), String> {
        if self.ignored.len() > MAX_IGNORED_PATTERNS {
            return Err(format!("at most {MAX_IGNORED_PATTERNS} ignore patterns"));
        }
        if let Some(long) = self.ignored.iter().find(|p| p.len() > MAX_PATTERN_BYTES) {
            return Err(format!("ignore pattern longer than {MAX_PATTERN_BYTES} bytes: `{}…`", truncated(long)));
        }
        if self.ignored.iter().any(|p| p.contains(['\n', '\r', '\0'])) {
            return Err("an ignore pattern is one line".into());
        }
        Ok(())
    }
}

/// `POST /api/servers/:id/backups/:backup/restore` body: `{"wipe":true,"checksum":"<sha256>"}`.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreBackupRequest {
    /// Remove every file first (files on the egg's denylist excepted); otherwise files the
    /// backup lacks are kept. Default false.
    #[serde(default)]
    pub wipe: bool,
    /// SHA-256 of the archive, 64 hex digits (what the node reported when it created it);
    /// the node compares it with what it read before replacing anything.
    pub checksum: String,
}

impl RestoreBackupRequest {
    /// Checks that `checksum` is 64 hex digits.
    pub fn check(&self) -> Result<(), String> {
        if self.checksum.len() == 64 && self.checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(())
        } else {
            Err(format!("`checksum` must be a SHA-256 in 64 hex digits, got `{}`", truncated(&self.checksum)))
        }
    }
}

/// `202` answer of creating or restoring: what was accepted.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupAccepted {
    /// The server.
    pub server: ServerId,
    /// The backup.
    pub backup: BackupId,
}

fn truncated(text: &str) -> String {
    text.chars().take(80).flat_map(char::escape_default).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_documented_shape() {
        let backup = BackupId::new();
        let create: CreateBackupRequest = serde_json::from_str(&format!(r#"{{"backup":"{backup}"}}"#)).unwrap();
        assert_eq!(create, CreateBackupRequest { backup, ignored: vec![] });
        assert!(serde_json::from_str::<CreateBackupRequest>(&format!(r#"{{"backup":"{backup}","x":1}}"#)).is_err());
        let restore: RestoreBackupRequest =
            serde_json::from_str(&format!(r#"{{"checksum":"{}"}}"#, "a".repeat(64))).unwrap();
        assert!(!restore.wipe && restore.check().is_ok());
        let bad = RestoreBackupRequest { wipe: true, checksum: "xyz".into() };
        assert!(bad.check().is_err());
        let many = CreateBackupRequest { backup, ignored: vec!["*.log".into(); MAX_IGNORED_PATTERNS + 1] };
        assert!(many.check().is_err());
        let line = CreateBackupRequest { backup, ignored: vec!["a\nb".into()] };
        assert!(line.check().is_err());
        let accepted = BackupAccepted { server: ServerId::new(), backup };
        assert_eq!(
            serde_json::to_string(&accepted).unwrap(),
            format!(r#"{{"server":"{}","backup":"{backup}"}}"#, accepted.server)
        );
        assert_eq!(archive_file_name(backup), format!("{backup}.tar.zst"));
    }
}
