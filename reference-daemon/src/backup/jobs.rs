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
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{Semaphore, watch};

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

    /// The extension of its marker file.
    fn marker(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Restore => "restore",
        }
    }
}

/// A job holding a server's slot.
struct Job {
    kind: Kind,
    backup: BackupId,
    /// Set to ask the job to stop (its server was destroyed).
    cancel: watch::Sender<bool>,
    /// Closed when the job's slot is released.
    done: watch::Receiver<()>,
}

type Running = Arc<Mutex<HashMap<ServerId, Job>>>;

/// A server's slot: at most one backup or restore per server; released when dropped.
struct Slot {
    running: Running,
    server: ServerId,
    cancelled: watch::Receiver<bool>,
    /// Dropped with the slot, which closes [`Job::done`].
    _done: watch::Sender<()>,
}

impl Slot {
    /// Resolves once the job is asked to stop.
    async fn cancelled(&self) {
        let mut cancelled = self.cancelled.clone();
        if cancelled.wait_for(|c| *c).await.is_err() {
            // The sender lives in the map until this slot is dropped: not reached.
            std::future::pending::<()>().await;
        }
    }
}

/// A job of an earlier run of the daemon that never reported its outcome (a marker file
/// `<server>.<backup>.<create|restore>` left in the markers directory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Interrupted {
    server: ServerId,
    backup: BackupId,
    kind: Kind,
}

/// The marker file of a job.
fn marker_path(dir: &Path, server: ServerId, backup: BackupId, kind: Kind) -> PathBuf {
    dir.join(format!("{server}.{backup}.{}", kind.marker()))
}

/// The jobs whose markers are in `dir` (names that are not markers are ignored); none when
/// `dir` does not exist.
pub(crate) fn interrupted_jobs(dir: &Path) -> std::io::Result<Vec<(Interrupted, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let mut parts = name.split('.');
        let (Some(server), Some(backup), Some(kind), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let kind = match kind {
            "create" => Kind::Create,
            "restore" => Kind::Restore,
            _ => continue,
        };
        let (Ok(server), Ok(backup)) = (server.parse::<ServerId>(), backup.parse::<BackupId>()) else { continue };
        found.push((Interrupted { server, backup, kind }, entry.path()));
    }
    Ok(found)
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.server);
    }
}

/// The compression ratio a restored archive may reach (past the limits' free first bytes):
/// far above what real server files reach with zstd (a world of zeros compresses ~100:1
/// at level 3, sparse-looking files some more), low enough that a tampered archive — whose
/// checksum is only compared once it was read to its end — cannot make the node write
/// orders of magnitude more than it reads.
pub const RESTORE_MAX_RATIO: u64 = 1000;

/// The limits backups and restores are held to: the file manager's, with room for a server
/// as large as its quota, as many entries as a big modded server has, and a generous
/// compression ratio limit ([`RESTORE_MAX_RATIO`]; a restore reads the node's own
/// archive, but its checksum is only checked after it was read and staged, so a tampered
/// one is held to the limits while it is read).
pub fn backup_limits(quota_bytes: u64) -> ArchiveLimits {
    let default = ArchiveLimits::default();
    ArchiveLimits {
        max_total_bytes: default.max_total_bytes.max(quota_bytes),
        max_entries: 1_000_000,
        max_ratio: RESTORE_MAX_RATIO,
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
///
/// With a markers directory ([`with_markers`](Self::with_markers)), each job leaves a file
/// `<server>.<backup>.<create|restore>` there from its start until its report is queued;
/// [`recover_interrupted`](Self::recover_interrupted), at the daemon's start, reports the
/// jobs of a daemon that died as failed, so the panel never waits for them forever.
pub struct Backups {
    store: BackupStore,
    agent: Arc<NodeAgent>,
    files: Arc<FileManagers>,
    permits: Arc<Semaphore>,
    running: Running,
    markers: Option<PathBuf>,
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
        Self {
            store,
            agent,
            files,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            running: Arc::default(),
            markers: None,
        }
    }

    /// Keeps a marker file per job in `dir` (created when needed), e.g.
    /// `<state_dir>/backup-jobs`.
    pub fn with_markers(mut self, dir: PathBuf) -> Self {
        self.markers = Some(dir);
        self
    }

    /// Writes the marker of a job (nothing without a markers directory).
    fn mark(&self, server: ServerId, backup: BackupId, kind: Kind) -> Result<(), ApiError> {
        let Some(dir) = &self.markers else { return Ok(()) };
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let file = std::fs::File::create(marker_path(dir, server, backup, kind))?;
            file.sync_all()?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| {
            tracing::error!(%server, %backup, error = %e, dir = %dir.display(), "cannot record a backup job");
            ApiError::new(500, "internal", format!("cannot record the job in {}: {e}", dir.display()))
        })
    }

    /// Removes the marker of a job whose report is queued.
    fn unmark(&self, server: ServerId, backup: BackupId, kind: Kind) {
        let Some(dir) = &self.markers else { return };
        let path = marker_path(dir, server, backup, kind);
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a backup job's marker");
            }
        }
    }

    /// Reports every job a previous run of the daemon left unfinished (its marker is still
    /// there) as failed — [`BackupOutcome::CreateFailed`] or
    /// [`BackupOutcome::RestoreFailed`], "the node restarted during the backup" — removes
    /// the possibly partial archive of an interrupted backup, and the markers. Call it at
    /// start, before any job runs. Returns the jobs reported.
    pub async fn recover_interrupted(&self) -> usize {
        let Some(dir) = &self.markers else { return 0 };
        let jobs = match interrupted_jobs(dir) {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "cannot read the markers of backup jobs");
                return 0;
            }
        };
        let count = jobs.len();
        for (job, path) in jobs {
            let Interrupted { server, backup, kind } = job;
            tracing::warn!(%server, %backup, kind = kind.marker(), "a backup job was interrupted by a restart; reporting it failed");
            let outcome = match kind {
                Kind::Create => {
                    if let Err(e) = self.store.delete(server, backup).await {
                        tracing::warn!(%server, %backup, error = %e, "cannot remove the archive of an interrupted backup");
                    }
                    BackupOutcome::CreateFailed { error: "the node restarted during the backup".into() }
                }
                Kind::Restore => BackupOutcome::RestoreFailed { error: "the node restarted during the restore".into() },
            };
            self.agent.publish_backup(BackupReport { server, backup, at: Utc::now(), outcome }).await;
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a backup job's marker");
            }
        }
        count
    }

    /// Cleans up after `server` was destroyed: stops its backup if one runs (reported
    /// failed) and waits for its job to end, removes every archive of the server from the
    /// store and the restore staging directories left next to its (gone) directory.
    /// Failures are logged: the server is gone either way.
    pub async fn server_destroyed(&self, server: ServerId) {
        let done = {
            let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            running.get(&server).map(|job| {
                if job.kind == Kind::Create {
                    let _ = job.cancel.send(true);
                }
                job.done.clone()
            })
        };
        if let Some(mut done) = done {
            // Err once the slot is released: the job ended.
            while done.changed().await.is_ok() {}
        }
        match self.store.delete_server(server).await {
            Ok(removed) => tracing::info!(%server, removed, "archives of a destroyed server removed"),
            Err(e) => tracing::warn!(%server, error = %e, "cannot remove the archives of a destroyed server"),
        }
        let root = self.agent.data_dir(server);
        let (Some(parent), Some(name)) = (root.parent().map(Path::to_path_buf), root.file_name()) else { return };
        let names = [name.to_os_string()];
        let swept = tokio::task::spawn_blocking(move || nexus_files::sweep_restore_leftovers(&parent, Some(&names)));
        match swept.await {
            Ok(Ok(summary)) if summary.removed > 0 => {
                tracing::info!(%server, removed = summary.removed, "restore leftovers of a destroyed server removed");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(%server, error = %e, "cannot remove the restore leftovers of a destroyed server")
            }
            Err(e) => tracing::warn!(%server, error = %e, "cannot remove the restore leftovers of a destroyed server"),
        }
    }

    /// The store.
    pub fn store(&self) -> &BackupStore {
        &self.store
    }

    /// Takes `server`'s slot, or refuses with `409 busy`.
    fn slot(&self, server: ServerId, kind: Kind, backup: BackupId) -> Result<Slot, ApiError> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(other) = running.get(&server) {
            return Err(ApiError::new(409, "busy", format!("{} of server {server} is under way", other.kind.name())));
        }
        let (cancel, cancelled) = watch::channel(false);
        let (done_tx, done) = watch::channel(());
        running.insert(server, Job { kind, backup, cancel, done });
        Ok(Slot { running: Arc::clone(&self.running), server, cancelled, _done: done_tx })
    }

    /// Whether `backup` of `server` is being created right now.
    pub fn is_creating(&self, server: ServerId, backup: BackupId) -> bool {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&server)
            .is_some_and(|job| job.kind == Kind::Create && job.backup == backup)
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
        self.mark(server, backup, Kind::Create)?;
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let outcome = tokio::select! {
                outcome = me.create(server, backup, &ignored) => outcome,
                () = slot.cancelled() => {
                    tracing::info!(%server, %backup, "backup stopped: the server was destroyed");
                    BackupOutcome::CreateFailed { error: "the server was destroyed".into() }
                }
            };
            me.report(server, backup, Kind::Create, outcome).await;
            drop(slot);
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
                if created.summary.skipped > 0 {
                    tracing::warn!(
                        %server, %backup, skipped = created.summary.skipped,
                        "backup stored without {} entries it cannot archive (files with several hard links, devices, fifos, sockets)",
                        created.summary.skipped
                    );
                }
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
        self.mark(server, backup, Kind::Restore)?;
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let _slot = slot;
            let outcome = me.restore(guard, backup, &checksum, wipe).await;
            me.report(server, backup, Kind::Restore, outcome).await;
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

    /// Queues the outcome (saved with the agent's state), then removes the job's marker.
    async fn report(&self, server: ServerId, backup: BackupId, kind: Kind, outcome: BackupOutcome) {
        self.agent.publish_backup(BackupReport { server, backup, at: Utc::now(), outcome }).await;
        self.unmark(server, backup, kind);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_name_their_jobs() {
        let dir = tempfile::tempdir().unwrap();
        assert!(interrupted_jobs(&dir.path().join("missing")).unwrap().is_empty());
        let (server, backup) = (ServerId::new(), BackupId::new());
        let other = BackupId::new();
        std::fs::write(marker_path(dir.path(), server, backup, Kind::Create), b"").unwrap();
        std::fs::write(marker_path(dir.path(), server, other, Kind::Restore), b"").unwrap();
        std::fs::write(dir.path().join("junk"), b"").unwrap();
        std::fs::write(dir.path().join(format!("{server}.{backup}.other")), b"").unwrap();
        let mut found: Vec<Interrupted> = interrupted_jobs(dir.path()).unwrap().into_iter().map(|(j, _)| j).collect();
        found.sort_by_key(|j| j.kind.marker());
        assert_eq!(
            found,
            [
                Interrupted { server, backup, kind: Kind::Create },
                Interrupted { server, backup: other, kind: Kind::Restore }
            ]
        );
    }

    #[test]
    fn restores_keep_a_ratio_limit() {
        let limits = backup_limits(1 << 30);
        assert_eq!(limits.max_ratio, RESTORE_MAX_RATIO);
        assert!(limits.max_total_bytes >= 1 << 30);
    }
}
