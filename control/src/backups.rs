//! Backups: the panel's records of a server's archives, kept by its node.
//!
//! The record is stored first (`pending`), then the node is told to archive the files
//! ([`NodeCommand::CreateBackup`]); the node answers at once and reports the outcome later
//! ([`NodeMessage::Backup`](nexus_core::transport::NodeMessage::Backup)), which
//! [`ControlPlane::ingest_backup_report`] turns into `succeeded` (size and SHA-256 checksum)
//! or `failed`. A node the panel cannot reach when asked leaves no record behind.
//!
//! Rules, as Pterodactyl's:
//! - a server keeps at most [`Server::backup_limit`] backups that did not fail (`None`: no
//!   limit, `0`: none at all). Past it, a backup asked for by hand is refused; a scheduled one
//!   replaces the oldest unlocked backup, and is refused when every one is locked;
//! - a locked backup cannot be deleted; a pending one can be neither deleted nor restored,
//!   and a server runs one backup at a time;
//! - only a succeeded backup can be restored or downloaded; a restore needs the server
//!   stopped (its node refuses otherwise) and replaces its files only after the archive's
//!   checksum matched.

use crate::servers::refuse_if_deleting;
use crate::{ControlError, ControlPlane};
use chrono::Utc;
use nexus_core::ids::{AuditEventId, BackupId, NodeId, ServerId};
use nexus_core::model::{AuditEvent, AuditSubject, Backup, BackupState, Server};
use nexus_core::store::StoreError;
use nexus_core::transport::{BackupOutcome, BackupReport, NodeCommand};

/// Longest backup name, in bytes.
pub const MAX_NAME_BYTES: usize = 191;
/// The node's bounds on a backup's ignore patterns (the panel checks them first).
pub use nexus_wire::backups::{MAX_IGNORED_PATTERNS, MAX_PATTERN_BYTES};
/// Highest backup limit a server may be given.
pub const MAX_BACKUP_LIMIT: u32 = 1000;
/// The backup limit of a server created without one: archives live on the node's disk (or
/// the operator's bucket) outside the server's disk limit, so "no limit" must be asked for.
pub const DEFAULT_BACKUP_LIMIT: u32 = 3;

/// What a new backup is made of.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewBackup {
    /// Display name; `Backup at <time>` when `None` or blank.
    pub name: Option<String>,
    /// Gitignore-syntax patterns left out, besides the server's `.pteroignore`.
    pub ignored: Vec<String>,
    /// Lock it against deletion from the start.
    pub locked: bool,
}

impl NewBackup {
    /// A backup with `ignored` patterns, named by its time, unlocked.
    pub fn ignoring(ignored: Vec<String>) -> Self {
        Self { ignored, ..Self::default() }
    }
}

/// Why a backup request was refused (Pterodactyl reports these as display errors).
fn refused(reason: impl Into<String>) -> ControlError {
    ControlError::BackupRefused(reason.into())
}

/// Checks a backup limit given to a server.
pub fn check_backup_limit(limit: Option<u32>) -> Result<Option<u32>, ControlError> {
    match limit {
        Some(n) if n > MAX_BACKUP_LIMIT => {
            Err(ControlError::Invalid { field: "backup_limit", reason: format!("at most {MAX_BACKUP_LIMIT}") })
        }
        other => Ok(other),
    }
}

/// Why `patterns` are refused as a backup's ignore patterns (more than
/// [`MAX_IGNORED_PATTERNS`], or one longer than [`MAX_PATTERN_BYTES`] or not one line).
pub(crate) fn refused_patterns(patterns: &[String]) -> Option<String> {
    if patterns.len() > MAX_IGNORED_PATTERNS {
        return Some(format!("at most {MAX_IGNORED_PATTERNS} patterns"));
    }
    if patterns.iter().any(|p| p.len() > MAX_PATTERN_BYTES || p.chars().any(char::is_control)) {
        return Some(format!("each pattern one line of at most {MAX_PATTERN_BYTES} bytes"));
    }
    None
}

/// The name and patterns of a new backup, checked: one line of at most [`MAX_NAME_BYTES`],
/// at most [`MAX_IGNORED_PATTERNS`] patterns of one line each, blank lines dropped.
fn checked(input: NewBackup) -> Result<(String, Vec<String>), ControlError> {
    let name = match input.name.as_deref().map(str::trim) {
        None | Some("") => format!("Backup at {}", Utc::now().format("%Y-%m-%d %H:%M:%S")),
        Some(name) if name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) => {
            return Err(ControlError::Invalid {
                field: "name",
                reason: format!("one line of at most {MAX_NAME_BYTES} bytes"),
            });
        }
        Some(name) => name.to_owned(),
    };
    let ignored: Vec<String> =
        input.ignored.iter().map(|p| p.trim()).filter(|p| !p.is_empty()).map(str::to_owned).collect();
    if let Some(reason) = refused_patterns(&ignored) {
        return Err(ControlError::Invalid { field: "ignored", reason });
    }
    Ok((name, ignored))
}

impl ControlPlane {
    /// Sets how many backups `server` may keep (`None`: no limit). Backups past a lowered
    /// limit are kept; new ones are refused until there are fewer.
    pub async fn set_backup_limit(&self, server: ServerId, limit: Option<u32>) -> Result<Server, ControlError> {
        let limit = check_backup_limit(limit)?;
        self.update_server_with(server, |s| {
            s.backup_limit = limit;
            Ok(())
        })
        .await
    }

    /// A server's backups, newest first.
    pub async fn backups(&self, server: ServerId) -> Result<Vec<Backup>, ControlError> {
        // The store answers `NotFound` for an unknown server (its contract): no read first.
        match self.store.list_backups(server).await {
            Ok(backups) => Ok(backups),
            Err(StoreError::NotFound { .. }) => Err(ControlError::UnknownServer(server)),
            Err(e) => Err(e.into()),
        }
    }

    /// One backup of `server`; [`ControlError::UnknownBackup`] when it has none by that id
    /// (another server's backup is unknown here too).
    pub async fn backup(&self, server: ServerId, id: BackupId) -> Result<Backup, ControlError> {
        match self.store.get_backup(id).await {
            Ok(backup) if backup.server == server => Ok(backup),
            Ok(_) | Err(StoreError::NotFound { .. }) => Err(ControlError::UnknownBackup(id)),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts a backup of `server` (see the module docs for the rules). `rotate` replaces the
    /// oldest unlocked backup when the limit is reached (scheduled backups); otherwise the
    /// limit refuses. Returns the `pending` record.
    pub async fn create_backup(
        &self,
        server: ServerId,
        input: NewBackup,
        rotate: bool,
    ) -> Result<Backup, ControlError> {
        let locked = input.locked;
        let (name, ignored) = checked(input)?;
        let srv = self.server(server).await?;
        refuse_if_deleting(&srv)?;
        if srv.suspended {
            return Err(ControlError::Suspended(server));
        }
        let existing = self.store.list_backups(server).await?;
        if existing.iter().any(|b| b.state == BackupState::Pending) {
            return Err(refused("a backup of this server is already in progress"));
        }
        let kept: Vec<&Backup> = existing.iter().filter(|b| b.state != BackupState::Failed).collect();
        if let Some(limit) = srv.backup_limit {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            if limit == 0 {
                return Err(refused("backups are not enabled for this server"));
            }
            if kept.len() >= limit {
                if !rotate {
                    return Err(refused(format!("this server may keep at most {limit} backups; delete one first")));
                }
                // Newest first: the last unlocked one is the oldest.
                let Some(oldest) = kept.iter().rev().find(|b| !b.locked) else {
                    return Err(refused("the backup limit is reached and every backup is locked"));
                };
                self.delete_backup(server, oldest.id).await?;
            }
        }
        let backup = Backup {
            id: BackupId::new(),
            server,
            name,
            ignored: ignored.clone(),
            state: BackupState::Pending,
            bytes: None,
            checksum: None,
            locked,
            created_at: Utc::now(),
            completed_at: None,
        };
        self.store.create_backup(&backup).await?;
        let sent = self.send(srv.node, NodeCommand::CreateBackup { server, backup: backup.id, ignored }).await;
        if let Err(error) = sent {
            // Nothing was started: no record of it either.
            if let Err(e) = self.store.delete_backup(backup.id).await {
                tracing::warn!(backup = %backup.id, error = %e, "removing the record of a backup the node refused");
            }
            return Err(error);
        }
        tracing::info!(%server, backup = %backup.id, "backup started");
        Ok(backup)
    }

    /// Deletes a backup: its archive on the node, then its record. Locked and pending
    /// backups are refused.
    pub async fn delete_backup(&self, server: ServerId, id: BackupId) -> Result<(), ControlError> {
        let backup = self.backup(server, id).await?;
        if backup.locked {
            return Err(refused("this backup is locked; unlock it before deleting it"));
        }
        if backup.state == BackupState::Pending {
            return Err(refused("this backup is still in progress"));
        }
        let srv = self.server(server).await?;
        self.send(srv.node, NodeCommand::DeleteBackup { server, backup: id }).await?;
        match self.store.delete_backup(id).await {
            Ok(()) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Locks or unlocks a backup (`None` toggles, as Pterodactyl's lock route does).
    pub async fn lock_backup(
        &self,
        server: ServerId,
        id: BackupId,
        locked: Option<bool>,
    ) -> Result<Backup, ControlError> {
        let mut backup = self.backup(server, id).await?;
        backup.locked = locked.unwrap_or(!backup.locked);
        self.store.update_backup(&backup).await?;
        Ok(backup)
    }

    /// Asks the node to restore a succeeded backup over the server's files (`wipe`: remove
    /// every file first). Returns once the node accepted; the outcome is reported later.
    pub async fn restore_backup(&self, server: ServerId, id: BackupId, wipe: bool) -> Result<Backup, ControlError> {
        let backup = self.backup(server, id).await?;
        let checksum = match (&backup.state, &backup.checksum) {
            (BackupState::Succeeded, Some(checksum)) => checksum.clone(),
            _ => return Err(refused("only a completed backup can be restored")),
        };
        let srv = self.server(server).await?;
        refuse_if_deleting(&srv)?;
        if srv.suspended {
            return Err(ControlError::Suspended(server));
        }
        self.send(srv.node, NodeCommand::RestoreBackup { server, backup: id, wipe, checksum }).await?;
        tracing::info!(%server, backup = %id, wipe, "restore started");
        Ok(backup)
    }

    /// A succeeded backup, for a download (the caller makes the node link); refused while
    /// pending or after a failure.
    pub async fn downloadable_backup(&self, server: ServerId, id: BackupId) -> Result<(Backup, Server), ControlError> {
        let backup = self.backup(server, id).await?;
        if backup.state != BackupState::Succeeded {
            return Err(refused("only a completed backup can be downloaded"));
        }
        Ok((backup, self.server(server).await?))
    }

    /// Takes a node's report about one of its servers' backups: records the outcome of a
    /// backup, and audits restores. A report about a server of another node changes nothing
    /// (`Ok(false)`: a node speaks only for its own servers; answered as handled so the node
    /// does not retry it forever), nor does one about a backup of another server. Reports are
    /// idempotent (a node may send one again). `Ok(true)` when the report was taken.
    pub async fn ingest_backup_report(&self, node: NodeId, report: BackupReport) -> Result<bool, ControlError> {
        let server = match self.server(report.server).await {
            Ok(server) => server,
            // A server removed meanwhile: nothing left to record.
            Err(ControlError::UnknownServer(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        if server.node != node {
            tracing::warn!(%node, server = %report.server, "a backup report about another node's server, ignored");
            return Ok(false);
        }
        let mut backup = match self.backup(report.server, report.backup).await {
            Ok(backup) => backup,
            // Deleted meanwhile (or never stored here): nothing to record.
            Err(ControlError::UnknownBackup(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let (action, detail) = match &report.outcome {
            BackupOutcome::Created { bytes, checksum } => {
                if backup.state == BackupState::Pending {
                    backup.state = BackupState::Succeeded;
                    backup.bytes = Some(*bytes);
                    backup.checksum = Some(checksum.clone());
                    backup.completed_at = Some(report.at);
                    self.store.update_backup(&backup).await?;
                }
                ("backup.completed", serde_json::json!({ "bytes": bytes }))
            }
            BackupOutcome::CreateFailed { error } => {
                if backup.state == BackupState::Pending {
                    backup.state = BackupState::Failed;
                    backup.completed_at = Some(report.at);
                    self.store.update_backup(&backup).await?;
                }
                ("backup.failed", serde_json::json!({ "error": error }))
            }
            BackupOutcome::Restored => ("backup.restore.completed", serde_json::json!({})),
            BackupOutcome::RestoreFailed { error } => ("backup.restore.failed", serde_json::json!({ "error": error })),
            _ => ("backup.report", serde_json::json!({})),
        };
        let mut metadata = detail;
        metadata["backup"] = serde_json::json!(backup.id);
        metadata["name"] = serde_json::json!(backup.name);
        let event = AuditEvent {
            id: AuditEventId::new(),
            actor: None,
            action: action.into(),
            subject: AuditSubject::Server(report.server),
            metadata,
            ip: None,
            at: report.at,
        };
        if let Err(e) = self.store.append_audit(&event).await {
            tracing::warn!(error = %e, "recording a backup report in the audit log");
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_patterns_are_checked() {
        let (name, ignored) =
            checked(NewBackup::ignoring(vec!["  *.log ".into(), "".into(), "cache/".into()])).unwrap();
        assert!(name.starts_with("Backup at "), "{name}");
        assert_eq!(ignored, ["*.log", "cache/"]);
        let long = NewBackup { name: Some("x".repeat(MAX_NAME_BYTES + 1)), ..NewBackup::default() };
        assert!(matches!(checked(long), Err(ControlError::Invalid { field: "name", .. })));
        let two_lines = NewBackup { name: Some("a\nb".into()), ..NewBackup::default() };
        assert!(matches!(checked(two_lines), Err(ControlError::Invalid { field: "name", .. })));
        let many = NewBackup::ignoring(vec!["a".into(); MAX_IGNORED_PATTERNS + 1]);
        assert!(matches!(checked(many), Err(ControlError::Invalid { field: "ignored", .. })));
        assert!(check_backup_limit(Some(MAX_BACKUP_LIMIT + 1)).is_err());
        assert_eq!(check_backup_limit(Some(0)).unwrap(), Some(0));
    }
}
