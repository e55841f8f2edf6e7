//! [`Backups`]: the node's backup and restore jobs: one per server at a time, a bounded
//! number on the node, run in the background and reported to the panel.

use super::store::BackupStore;
use crate::api::ApiError;
use crate::api::files::FileManagers;
use chrono::Utc;
use nexus_agent::{NodeAgent, RestoreGuard};
use nexus_core::ids::{BackupId, ServerId};
use nexus_core::transport::{BackupOutcome, BackupReport};
use nexus_files::{ArchiveLimits, ServerFiles};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Semaphore;

/// What a server's slot is held for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Create,
    Restore,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Create => "a backup",
            Self::Restore => "a restore",
        }
    }
}

type Running = Arc<Mutex<HashMap<ServerId, (Kind, BackupId)>>>;

/// A server's slot: at most one backup or restore per server; released when dropped.
struct Slot {
    running: Running,
    server: ServerId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.server);
    }
}

/// The limits backups and restores are held to: the file manager's, with room for a server
/// as large as its quota, as many entries as a big modded server has, and no compression
/// ratio limit (a restore reads the node's own archive, whose content stays bounded by
/// `max_total_bytes` and the quota, and whose checksum is checked before it is used).
pub fn backup_limits(quota_bytes: u64) -> ArchiveLimits {
    let default = ArchiveLimits::default();
    ArchiveLimits {
        max_total_bytes: default.max_total_bytes.max(quota_bytes),
        max_entries: 1_000_000,
        max_ratio: u64::MAX,
        max_depth: 256,
        ..default
    }
}

/// The backup jobs of a node.
///
/// - `create`: answered at once; the job waits for one of the node's `max_concurrent`
///   permits, archives the server's directory (running or not) into the [`BackupStore`] and
///   reports [`BackupOutcome::Created`] or [`BackupOutcome::CreateFailed`].
/// - `restore`: refused (`409 busy`) unless the server is stopped; the agent's operation
///   lock is taken before answering and held until the job ends, so the server cannot start,
///   install or be updated meanwhile, and the file routes answer `409 busy`. The job waits for
///   a permit, restores (checksum checked before anything changes), reopens the server's file
///   manager (the directory is a new one) and reports [`BackupOutcome::Restored`] or
///   [`BackupOutcome::RestoreFailed`].
///
/// Reports go through the agent's outbox (ordered, retried until the panel takes them,
/// saved across restarts). New jobs are refused while the outbox is backed up.
pub struct Backups {
    store: BackupStore,
    agent: Arc<NodeAgent>,
    files: Arc<FileManagers>,
    permits: Arc<Semaphore>,
    running: Running,
}

impl std::fmt::Debug for Backups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backups")
            .field("store", &self.store)
            .field("available", &self.permits.available_permits())
            .finish()
    }
}

impl Backups {
    /// Jobs over `store`, at most `max_concurrent` (at least 1) running on the node at once.
    pub fn new(store: BackupStore, agent: Arc<NodeAgent>, files: Arc<FileManagers>, max_concurrent: usize) -> Self {
        Self { store, agent, files, permits: Arc::new(Semaphore::new(max_concurrent.max(1))), running: Arc::default() }
    }

    /// The store.
    pub fn store(&self) -> &BackupStore {
        &self.store
    }

    /// Takes `server`'s slot, or refuses with `409 busy`.
    fn slot(&self, server: ServerId, kind: Kind, backup: BackupId) -> Result<Slot, ApiError> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((other, _)) = running.get(&server) {
            return Err(ApiError::new(409, "busy", format!("{} of server {server} is under way", other.name())));
        }
        running.insert(server, (kind, backup));
        Ok(Slot { running: Arc::clone(&self.running), server })
    }

    /// Whether `backup` of `server` is being created right now.
    pub fn is_creating(&self, server: ServerId, backup: BackupId) -> bool {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).get(&server) == Some(&(Kind::Create, backup))
    }

    /// A file manager for a backup or a restore of `server`: the server's quota and
    /// denylist, [`backup_limits`]; opened for this job only.
    async fn files_of(&self, server: ServerId) -> Result<ServerFiles, ApiError> {
        let spec = self
            .agent
            .spec(server)
            .ok_or_else(|| ApiError::new(404, "unknown_server", format!("unknown server {server}")))?;
        let limits = backup_limits(spec.limits.disk_mb.saturating_mul(1 << 20));
        self.files.open_dedicated(&spec, &self.agent.data_dir(server), limits).await
    }

    /// Accepts a backup of `server` as `backup`, run in the background.
    pub fn start_create(
        self: &Arc<Self>,
        server: ServerId,
        backup: BackupId,
        ignored: Vec<String>,
    ) -> Result<(), ApiError> {
        let state = self
            .agent
            .state(server)
            .ok_or_else(|| ApiError::new(404, "unknown_server", format!("unknown server {server}")))?;
        if state == nexus_core::lifecycle::ServerState::Installing {
            return Err(ApiError::new(409, "busy", format!("server {server} is installing")));
        }
        self.agent.check_backlog()?;
        let slot = self.slot(server, Kind::Create, backup)?;
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let _slot = slot;
            let outcome = me.create(server, backup, &ignored).await;
            me.report(server, backup, outcome).await;
        });
        Ok(())
    }

    async fn create(&self, server: ServerId, backup: BackupId, ignored: &[String]) -> BackupOutcome {
        let Ok(_permit) = self.permits.acquire().await else {
            return BackupOutcome::CreateFailed { error: "the node is shutting down".into() };
        };
        let files = match self.files_of(server).await {
            Ok(files) => files,
            Err(e) => return BackupOutcome::CreateFailed { error: e.message },
        };
        tracing::info!(%server, %backup, "backup started");
        match self.store.create(&files, server, backup, ignored).await {
            Ok(created) => {
                tracing::info!(
                    %server, %backup, bytes = created.bytes, files = created.summary.files,
                    skipped = created.summary.skipped, "backup stored"
                );
                BackupOutcome::Created { bytes: created.bytes, checksum: created.checksum_hex() }
            }
            Err(e) => {
                tracing::warn!(%server, %backup, error = %e, "backup failed");
                BackupOutcome::CreateFailed { error: e.to_string() }
            }
        }
    }

    /// Accepts a restore of `backup` into `server`: refused unless the server is stopped;
    /// the server stays stopped until the job, run in the background, ends.
    pub async fn start_restore(
        self: &Arc<Self>,
        server: ServerId,
        backup: BackupId,
        checksum: String,
        wipe: bool,
    ) -> Result<(), ApiError> {
        if self.agent.state(server).is_none() {
            return Err(ApiError::new(404, "unknown_server", format!("unknown server {server}")));
        }
        self.agent.check_backlog()?;
        let slot = self.slot(server, Kind::Restore, backup)?;
        let guard = self.agent.begin_restore(server).await?;
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let _slot = slot;
            let outcome = me.restore(guard, backup, &checksum, wipe).await;
            me.report(server, backup, outcome).await;
        });
        Ok(())
    }

    async fn restore(&self, guard: RestoreGuard, backup: BackupId, checksum: &str, wipe: bool) -> BackupOutcome {
        let server = guard.server();
        let Ok(_permit) = self.permits.acquire().await else {
            return BackupOutcome::RestoreFailed { error: "the node is shutting down".into() };
        };
        // File requests are refused from now on, and the manager is reopened at the end.
        let restoring = self.files.restoring(server);
        let files = match self.files_of(server).await {
            Ok(files) => files,
            Err(e) => return BackupOutcome::RestoreFailed { error: e.message },
        };
        tracing::info!(%server, %backup, wipe, "restore started");
        let outcome = match self.store.restore(&files, server, backup, checksum, wipe).await {
            Ok(summary) => {
                tracing::info!(%server, %backup, entries = summary.entries, kept = summary.kept, "backup restored");
                self.agent.notice(server, format!("Backup {backup} restored."));
                BackupOutcome::Restored
            }
            Err(e) => {
                tracing::warn!(%server, %backup, error = %e, "restore failed; the files are as they were");
                BackupOutcome::RestoreFailed { error: e.to_string() }
            }
        };
        // The file routes open again before the server may start (a start measures the
        // disk through them).
        drop(files);
        drop(restoring);
        drop(guard);
        outcome
    }

    async fn report(&self, server: ServerId, backup: BackupId, outcome: BackupOutcome) {
        self.agent.publish_backup(BackupReport { server, backup, at: Utc::now(), outcome }).await;
    }

    /// Removes the archive of `backup` of `server` (absent is fine); refused while that very
    /// backup is being created (it would reappear).
    pub async fn delete(&self, server: ServerId, backup: BackupId) -> Result<(), ApiError> {
        if self.is_creating(server, backup) {
            return Err(ApiError::new(409, "busy", format!("backup {backup} of server {server} is being created")));
        }
        self.store.delete(server, backup).await.map_err(ApiError::from)
    }
}
