//! # nexus-files
//!
//! The confined file manager: every file operation a panel user can ask for, on one server's
//! data directory, and never outside it.
//!
//! ```no_run
//! use nexus_files::{ArchiveFormat, FilesConfig, ServerFiles};
//!
//! # async fn demo() -> Result<(), nexus_files::FilesError> {
//! let config = FilesConfig { quota_bytes: 10 << 30, denylist: vec!["*.jar".into()], ..Default::default() };
//! let files = ServerFiles::open("/var/lib/nexus/volumes/3f2a…", config).await?;
//! files.write("config/server.properties", "motd=hello\n").await?;
//! for entry in files.list("/config").await? {
//!     println!("{} {:?} {}", entry.name, entry.kind, entry.size);
//! }
//! files.compress("/", &["config".into(), "world".into()], "backup.tar.zst", ArchiveFormat::TarZst).await?;
//! files.decompress("modpack.zip", "/").await?;
//! println!("{} bytes used", files.disk_usage().await?);
//! # Ok(()) }
//! ```
//!
//! # Paths
//! Every path is relative to the server root. A leading `/` means the root (as in
//! Pterodactyl), `\` is a separator, `.` and empty components are dropped, `..` may only go
//! back down what the path went up and is refused ([`FilesError::OutsideRoot`]) when it would
//! climb above the root; NUL bytes are refused. Nothing is percent-decoded.
//!
//! # Confinement
//! See *Confinement details* below: the root is opened once, every component is
//! opened relative to its parent's fd with `O_NOFOLLOW`, and symlinks are followed by the
//! manager itself, only while they stay inside the root (absolute targets and `..` above the
//! root are refused). There is no string check followed by a path-based call, so swapping a
//! directory for a symlink at any moment cannot make an operation land outside.
//!
//! - **Symlinks** inside the root are followed for reading, writing, listing and `chmod`;
//!   `delete` and `rename` act on the link itself. The manager never creates a symlink whose
//!   target leaves the root *lexically*, read from the link's own place (archive entries,
//!   copies, [`ServerFiles::symlink`]). That check alone does not make every chain of links
//!   stay inside (a link may resolve through another link, planted or renamed later, that
//!   points elsewhere): what keeps operations inside is the resolver, which follows every
//!   link by descriptor and refuses any step out of the root.
//!   [`ServerFiles::write_with`] can replace a symlink at the final path instead of following
//!   it ([`WriteOptions::replace_symlink`]).
//! - **Hard links**: the manager never creates one. A regular file with more than one link
//!   may share its inode with a file outside the root, so its content is never read, written,
//!   copied or archived and its mode never changed ([`FilesError::HardLinked`]); deleting or
//!   renaming the link itself is allowed (it touches only the directory entry).
//! - **Devices, fifos, sockets** are never opened ([`FilesError::SpecialFile`]).
//! - **Writes** go to a temporary file next to the target, renamed over it at the end, so a
//!   failed or refused write leaves the old content and no partial file.
//! - **Temporary names** (`.nexus-tmp-…`, the manager's own files and staging directories
//!   in flight) are refused in every path and symlink target and in archive entries, and
//!   hidden from listings.
//!
//! # Confinement details
//! Resolution walks a stack of directory fds (see the `confine` module): an absolute symlink
//! target is refused, a `..` pops the stack and is refused on an empty stack, at most 40
//! symlinks and 4096 steps are followed. The final entry is then used through `*at` calls on
//! the parent fd that never follow a symlink.
//!
//! # Denylist
//! The egg's `file_denylist`, gitignore syntax, case-insensitive; see [`FilesConfig::denylist`].
//!
//! # Archives
//! `compress` writes tar.gz, tar.zst or zip; `decompress` reads those and plain tar, detected
//! by magic bytes, then by extension. Extraction is all-or-nothing: entries are written into a
//! staging directory inside the destination and moved into place only when the whole archive
//! passed; any refusal removes the staging directory. Refused: absolute names, `..`, entries
//! below a symlink entry, symlinks leaving the root, hard-link and device entries, names on
//! the denylist, and anything past [`ArchiveLimits`]. `compress` refuses
//! ([`FilesError::TooLarge`]) inputs whose apparent size adds up to more than
//! [`ArchiveLimits::max_total_bytes`]: a sparse file is read, holes and all, at its apparent
//! size, and an archive the manager could not extract back is not worth writing.
//!
//! # Backups and restores
//! [`ServerFiles::write_backup`] streams a tar.zst of the whole root (honouring
//! `.pteroignore`) into any async writer with bounded memory; [`ServerFiles::stage_restore`]
//! builds a restored tree in a staging directory next to the root, by the extraction rules
//! above, and [`StagedRestore::commit`] swaps it in with one rename, so a restore never
//! leaves a half-restored root. After a commit every manager opened on the root is stale.
//! See the `backup` module's docs: what is archived (no file with several hard links, no
//! device, no symlink leading out), what `wipe` keeps.
//!
//! # Disk usage and quota
//! Every entry counts what it takes on disk: its content in whole [`BLOCK`]s, at least one
//! (a directory is one block), plus [`ENTRY_COST`] for its inode and name ([`file_cost`],
//! [`dir_cost`]); sparse files count their apparent size. The scan and every operation use
//! the same costs: write, copy, mkdir (and the parents any operation creates), compress and
//! extraction reserve them before creating anything, delete frees them. A replacement
//! reserves the whole new file and frees the old one only once the rename has replaced it,
//! so parallel uploads of one file never hold more than the quota between them, temporary
//! files included; a replacement needs room for both copies while in flight. The counter is
//! scanned once, lazily, then adjusted by every operation; see [`ServerFiles::disk_usage`]
//! and [`ServerFiles::rescan`].
//!
//! # Concurrency
//! Blocking work runs on tokio's blocking pool, which every server shares. So that one server
//! cannot fill it, each manager runs at most [`JobLimits::heavy`] heavy jobs (compress,
//! decompress, copy, delete, rescan; default 2) and [`JobLimits::light`] light ones (the
//! rest; default 4) at once, the others waiting their turn without holding a thread; the two
//! allowances are separate, so listings are not stuck behind the server's own archives.
//! Heavy jobs of all servers together are bounded too ([`NODE_HEAVY_JOBS`]). A job keeps its
//! permits until it has finished, even if its caller went away.

mod archive;
pub mod backup;
mod confine;
mod denylist;
mod entry;
mod error;
mod extract;
mod ops;
mod path;
mod quota;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};

pub use archive::{ArchiveFormat, ArchiveLimits};
pub use backup::{
    BACKUP_ZSTD_LEVEL, BackupSummary, MAX_PTEROIGNORE_BYTES, PTEROIGNORE, RestoreSummary, StagedRestore, SweepSummary,
    sweep_restore_leftovers,
};
pub use entry::{ExtractSummary, FileEntry, FileKind};
pub use error::{FilesError, Result};
pub use quota::{BLOCK, ENTRY_COST, dir_cost, file_cost};

use confine::Confined;
use denylist::Denylist;
use path::RelPath;
use quota::Quota;

/// Heavy jobs (see [`JobLimits`]) of all servers of this process running at once: half of
/// the daemon's 32 blocking threads, so that however many servers keep heavy work queued,
/// the other half stays free for light operations.
pub const NODE_HEAVY_JOBS: usize = 16;

static NODE_HEAVY: Semaphore = Semaphore::const_new(NODE_HEAVY_JOBS);

/// The node's own disk measurements ([`ServerFiles::measure`]) running at once, outside the
/// job limits of tenants.
pub const NODE_MEASURES: usize = 4;

static NODE_MEASURE: Semaphore = Semaphore::const_new(NODE_MEASURES);

/// Bytes a streamed write reads and reserves at a time.
const STREAM_CHUNK: usize = 64 * 1024;

/// How one server's files are managed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FilesConfig {
    /// Disk quota in bytes; 0 means unlimited.
    pub quota_bytes: u64,
    /// The egg's `file_denylist`: gitignore-syntax patterns (`*.jar`, `config/secret.txt`,
    /// `logs/`, `!keep.jar`), matched case-insensitively against the normalized root-relative
    /// path and against the canonical path after symlinks; a match on a directory covers
    /// everything below it. Denied paths cannot be read, written, created, renamed, copied,
    /// deleted, chmod-ed or listed; operations on a directory holding a denied entry are
    /// refused; extraction refuses archives with denied entries; compression skips them.
    pub denylist: Vec<String>,
    /// Limits applied to every decompression.
    pub archive_limits: ArchiveLimits,
    /// Owner given to every file and directory the manager creates (the daemon usually runs
    /// as root, the game server as this user). `None` keeps the daemon's own.
    pub owner: Option<FileOwner>,
    /// How many blocking jobs of this server run at once.
    pub jobs: JobLimits,
}

/// How many blocking jobs of one server run at once; more wait their turn (in order,
/// without holding a thread). Tokio's blocking pool is shared by every server, so without a
/// bound one server's jobs could take all its threads and make every other server's
/// operations wait. Heavy jobs are also bounded node-wide ([`NODE_HEAVY_JOBS`]). The two
/// kinds have separate allowances, so a server's listings are not stuck behind its own
/// archives either. 0 counts as 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobLimits {
    /// Jobs whose work grows with the data or the tree: compress, decompress, copy, delete,
    /// rescan, `write_with`. Default 2.
    pub heavy: usize,
    /// Everything else: list, stat, bounded read, open for streaming, write (the blocking
    /// steps of a stream), rename, mkdir, chmod, disk usage. Default 4.
    pub light: usize,
}

impl Default for JobLimits {
    fn default() -> Self {
        Self { heavy: 2, light: 4 }
    }
}

/// Which allowance of [`JobLimits`] a job takes.
#[derive(Clone, Copy, Debug)]
enum Weight {
    Light,
    Heavy,
}

/// The permits a running job holds; they travel with it to the blocking pool, so that a job
/// whose caller went away (a closed connection) still counts until it has finished.
struct Permits {
    _server: OwnedSemaphorePermit,
    _node: Option<SemaphorePermit<'static>>,
}

/// How [`ServerFiles::write_with`] writes a file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteOptions {
    /// Permission bits of the written file (at most `0o777`); `None` keeps those of the file
    /// it replaces, or `0o644` for a new one.
    pub mode: Option<u32>,
    /// Expected size, reserved under the quota before anything is written (the write is
    /// still stopped at the quota if it writes more).
    pub size_hint: Option<u64>,
    /// Replace a symlink at the final path by the new file instead of following it (the
    /// components before it are resolved, confined, as always).
    pub replace_symlink: bool,
}

impl WriteOptions {
    /// No mode, no size hint, symlinks followed (as [`ServerFiles::write`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`WriteOptions::mode`].
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Sets [`WriteOptions::size_hint`].
    pub fn size_hint(mut self, bytes: u64) -> Self {
        self.size_hint = Some(bytes);
        self
    }

    /// Sets [`WriteOptions::replace_symlink`].
    pub fn replace_symlink(mut self, replace: bool) -> Self {
        self.replace_symlink = replace;
        self
    }
}

/// A numeric owner for created files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOwner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// The file manager of one server, rooted at its data directory. Cheap to clone; clones
/// share the usage counter.
#[derive(Clone)]
pub struct ServerFiles {
    inner: Arc<Inner>,
}

/// The shared state; the blocking implementations of the operations live on it (`ops`,
/// `archive`, `extract`) and run on tokio's blocking pool.
pub(crate) struct Inner {
    root_path: PathBuf,
    fs: Confined,
    denylist: Denylist,
    limits: ArchiveLimits,
    owner: Option<(u32, u32)>,
    quota: Quota,
    /// This server's allowances of blocking jobs ([`JobLimits`]).
    heavy: Arc<Semaphore>,
    light: Arc<Semaphore>,
    /// One node measurement of this server at a time, taken before a node-wide permit, so
    /// measurements queued for one server never hold permits other servers need.
    measuring: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ServerFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerFiles").field("root", &self.inner.root_path).finish_non_exhaustive()
    }
}

impl ServerFiles {
    /// Opens the manager on `root` (an existing directory). Disk usage is scanned lazily, the
    /// first time it is needed.
    pub async fn open(root: impl Into<PathBuf>, config: FilesConfig) -> Result<Self> {
        let root_path = root.into();
        let denylist = Denylist::new(&config.denylist)?;
        let opened = root_path.clone();
        let fs = tokio::task::spawn_blocking(move || Confined::open(&opened)).await.map_err(join_error)??;
        let inner = Inner {
            root_path,
            fs,
            denylist,
            limits: config.archive_limits,
            owner: config.owner.map(|o| (o.uid, o.gid)),
            quota: Quota::new(config.quota_bytes),
            heavy: Arc::new(Semaphore::new(config.jobs.heavy.max(1))),
            light: Arc::new(Semaphore::new(config.jobs.light.max(1))),
            measuring: tokio::sync::Mutex::new(()),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The host path of the root (for logs; never used to reach files).
    pub fn root(&self) -> &Path {
        &self.inner.root_path
    }

    /// The quota in bytes, 0 for unlimited.
    pub fn quota(&self) -> u64 {
        self.inner.quota.limit()
    }

    /// Changes the quota (the panel changed the server's disk limit). Existing files are kept
    /// even when over the new quota; further writes are refused.
    pub fn set_quota(&self, bytes: u64) {
        self.inner.quota.set_limit(bytes);
    }

    /// Bytes used below the root as tracked by the manager (scans once if never scanned).
    pub async fn disk_usage(&self) -> Result<u64> {
        self.run(Weight::Light, "disk_usage", String::new(), |inner, _| inner.usage()).await
    }

    /// Rescans the whole tree and resets the counter to what is on disk. Files written by the
    /// game server itself are invisible to the counter until then: call this periodically
    /// and when a server stops.
    pub async fn rescan(&self) -> Result<u64> {
        self.run(Weight::Heavy, "rescan", String::new(), |inner, _| inner.quota.rescan(|| inner.scan())).await
    }

    /// The node's own measurement (disk checks before a start and while running): a rescan
    /// like [`rescan`](Self::rescan), but outside this server's job queue, so a tenant's
    /// queued jobs cannot delay it. One at a time per server, then node-wide at most
    /// [`NODE_MEASURES`] at once; the walk itself stops with [`FilesError::ScanTimedOut`] once
    /// it has run for `budget`, giving its permit back, so a tree built to be slow to walk
    /// costs its own server's measurement, never another server's.
    pub async fn measure(&self, budget: std::time::Duration) -> Result<u64> {
        let _mine = self.inner.measuring.lock().await;
        let closed = |_| FilesError::Io { path: String::new(), source: io::Error::other("measure limiter closed") };
        let permit = NODE_MEASURE.acquire().await.map_err(closed)?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let deadline = (std::time::Instant::now() + budget, budget);
            inner.quota.rescan(|| inner.scan_until(Some(deadline)))
        })
        .await
        .map_err(join_error)?
    }

    /// Lists a directory: directories first, then by name.
    pub async fn list(&self, dir: &str) -> Result<Vec<FileEntry>> {
        self.run(Weight::Light, "list", dir.to_owned(), |inner, p| inner.list(&RelPath::parse(p)?)).await
    }

    /// Describes one entry, without following a symlink at the end (a symlink is described
    /// as in a listing).
    pub async fn stat(&self, path: &str) -> Result<FileEntry> {
        self.run(Weight::Light, "stat", path.to_owned(), |inner, p| inner.stat(&RelPath::parse(p)?)).await
    }

    /// Reads a whole file, refusing ([`FilesError::TooLarge`]) one over `max_bytes`.
    pub async fn read(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>> {
        self.run(Weight::Light, "read", path.to_owned(), move |inner, p| inner.read(&RelPath::parse(p)?, max_bytes))
            .await
    }

    /// Opens a file for streaming: its description and an async reader. The file stays
    /// confined however it is renamed meanwhile: the reader holds the opened inode.
    pub async fn open_read(&self, path: &str) -> Result<(FileEntry, tokio::fs::File)> {
        let (entry, file) = self
            .run(Weight::Light, "open_read", path.to_owned(), |inner, p| inner.open_read(&RelPath::parse(p)?))
            .await?;
        Ok((entry, tokio::fs::File::from_std(file)))
    }

    /// Creates or replaces a file with `data`, creating missing parent directories. The quota
    /// is checked before anything is written.
    pub async fn write(&self, path: &str, data: impl Into<Bytes>) -> Result<FileEntry> {
        let data: Bytes = data.into();
        self.run(Weight::Light, "write", path.to_owned(), move |inner, p| inner.write(&RelPath::parse(p)?, &data)).await
    }

    /// Creates or replaces a file with what `reader` yields. With `size_hint` (a
    /// `Content-Length`) the quota is checked before writing; in any case the write is aborted
    /// and the partial file removed as soon as the quota is hit. The old content stays until
    /// the new one is complete.
    pub async fn write_stream<R>(&self, path: &str, mut reader: R, size_hint: Option<u64>) -> Result<FileEntry>
    where
        R: AsyncRead + Unpin + Send,
    {
        let result = self.write_stream_inner(path, &mut reader, size_hint).await;
        self.log("write_stream", path, &result);
        result
    }

    async fn write_stream_inner<R>(&self, path: &str, reader: &mut R, size_hint: Option<u64>) -> Result<FileEntry>
    where
        R: AsyncRead + Unpin + Send,
    {
        let target = RelPath::parse(path)?;
        let hint = size_hint.unwrap_or(0);
        let (mut pending, mut reservation) =
            self.blocking(Weight::Light, move |inner| inner.prepare_write(&target, hint)).await?;
        let shown = pending.path.to_string();
        let mut file = tokio::fs::File::from_std(pending.take_file()?);
        let streamed: Result<u64> = async {
            let mut buf = vec![0u8; STREAM_CHUNK];
            let mut written = 0u64;
            loop {
                let n = reader.read(&mut buf).await.map_err(|e| FilesError::from_io(&shown, e))?;
                if n == 0 {
                    break;
                }
                written += n as u64;
                reservation.ensure(file_cost(written))?;
                file.write_all(&buf[..n]).await.map_err(|e| FilesError::from_io(&shown, e))?;
            }
            file.flush().await.map_err(|e| FilesError::from_io(&shown, e))?;
            Ok(written)
        }
        .await;
        let file = file.into_std().await;
        match streamed {
            // The reservation travels with the rename: settled there even if this future is
            // dropped meanwhile.
            Ok(written) => {
                self.blocking(Weight::Light, move |inner| pending.finish(inner, file, reservation, written)).await
            }
            Err(e) => {
                // Removing a large partial file can take a while: not on this thread. The
                // reservation is given back after that (when this function returns): until
                // then the bytes are still on disk.
                self.blocking(Weight::Light, move |_| {
                    drop((pending, file));
                    Ok(())
                })
                .await?;
                Err(e)
            }
        }
    }

    /// Creates or replaces a file with what `fill` writes, in one job on the blocking pool
    /// (no round trip per chunk: for copies from a local source, such as a template cache).
    /// `fill` writes into the temporary file through a writer that grows the quota
    /// reservation before every chunk and fails past the quota; if `fill` fails, nothing
    /// changes and the temporary file is removed. Otherwise as
    /// [`write_stream`](Self::write_stream), with the mode and symlink handling of
    /// `options`. A heavy job ([`JobLimits`]).
    pub async fn write_with<F>(&self, path: &str, options: WriteOptions, fill: F) -> Result<FileEntry>
    where
        F: FnOnce(&mut dyn io::Write) -> io::Result<()> + Send + 'static,
    {
        if let Some(mode) = options.mode.filter(|m| m & !0o777 != 0) {
            return Err(FilesError::InvalidMode { mode });
        }
        self.run(Weight::Heavy, "write_with", path.to_owned(), move |inner, p| {
            inner.write_with(&RelPath::parse(p)?, options, fill)
        })
        .await
    }

    /// Creates the symlink `path` → `target`, replacing a file or a symlink already there
    /// (not following it; a directory there is refused with [`FilesError::NotAFile`]).
    /// `target` must be relative and stay inside the root when read lexically from where the
    /// link really is ([`FilesError::OutsideRoot`] otherwise); missing parents are created.
    pub async fn symlink(&self, path: &str, target: &str) -> Result<FileEntry> {
        let target = target.to_owned();
        self.run(Weight::Light, "symlink", path.to_owned(), move |inner, p| inner.symlink(&RelPath::parse(p)?, &target))
            .await
    }

    /// Renames or moves an entry (a symlink is moved itself). Refuses to replace an existing
    /// entry; creates missing parent directories of the destination.
    pub async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let to = to.to_owned();
        self.run(Weight::Light, "rename", from.to_owned(), move |inner, p| {
            inner.rename(&RelPath::parse(p)?, &RelPath::parse(&to)?)
        })
        .await
    }

    /// Copies a file or a directory tree to a new path (refusing to replace one). A directory
    /// copy is built under a temporary name and appears whole or not at all.
    pub async fn copy(&self, from: &str, to: &str) -> Result<FileEntry> {
        let to = to.to_owned();
        self.run(Weight::Heavy, "copy", from.to_owned(), move |inner, p| {
            inner.copy(&RelPath::parse(p)?, &RelPath::parse(&to)?)
        })
        .await
    }

    /// Deletes a file, a symlink (not its target), or a directory tree.
    pub async fn delete(&self, path: &str) -> Result<()> {
        self.run(Weight::Heavy, "delete", path.to_owned(), |inner, p| inner.delete(&RelPath::parse(p)?)).await
    }

    /// Creates a directory and its missing parents (succeeds when it already exists).
    pub async fn mkdir(&self, path: &str) -> Result<FileEntry> {
        self.run(Weight::Light, "mkdir", path.to_owned(), |inner, p| inner.mkdir(&RelPath::parse(p)?)).await
    }

    /// Sets permission bits (`0o755`, ...). setuid, setgid, sticky and type bits are refused.
    pub async fn chmod(&self, path: &str, mode: u32) -> Result<()> {
        self.run(Weight::Light, "chmod", path.to_owned(), move |inner, p| inner.chmod(&RelPath::parse(p)?, mode)).await
    }

    /// Archives `files` (paths relative to the directory `base`, which is also where archive
    /// names start) into the new file `destination`. Directories are archived recursively;
    /// in-root symlinks are stored as symlinks, symlinks leading out are skipped, denied
    /// files are skipped, hard-linked files refuse the whole operation. The archive counts
    /// against the quota as it is written.
    pub async fn compress(
        &self,
        base: &str,
        files: &[String],
        destination: &str,
        format: ArchiveFormat,
    ) -> Result<FileEntry> {
        let (files, destination) = (files.to_vec(), destination.to_owned());
        self.run(Weight::Heavy, "compress", base.to_owned(), move |inner, p| {
            let files = files.iter().map(|f| RelPath::parse(f)).collect::<Result<Vec<_>>>()?;
            inner.compress(&RelPath::parse(p)?, &files, &RelPath::parse(&destination)?, format)
        })
        .await
    }

    /// Extracts the archive at `archive` into the directory `destination` (created if
    /// missing), merging with what is there and replacing files of the same name. All or
    /// nothing: see the module docs.
    pub async fn decompress(&self, archive: &str, destination: &str) -> Result<ExtractSummary> {
        let destination = destination.to_owned();
        self.run(Weight::Heavy, "decompress", archive.to_owned(), move |inner, p| {
            inner.decompress(&RelPath::parse(p)?, &RelPath::parse(&destination)?)
        })
        .await
    }

    /// Runs a blocking operation on tokio's blocking pool, within this server's allowance of
    /// `weight` jobs, and logs its outcome.
    async fn run<T, F>(&self, weight: Weight, op: &'static str, path: String, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner, &str) -> Result<T> + Send + 'static,
    {
        let shown = path.clone();
        let result = self.blocking(weight, move |inner| f(inner, &path)).await;
        self.log(op, &shown, &result);
        result
    }

    /// Runs `f` on tokio's blocking pool once a permit of `weight` is free.
    async fn blocking<T, F>(&self, weight: Weight, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let permits = self.permits(weight).await?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let _permits = permits;
            f(&inner)
        })
        .await
        .map_err(join_error)?
    }

    /// Waits for this server's permit of `weight`, then (heavy jobs) for a node-wide one: a
    /// server waiting for its own turn holds nothing others need.
    async fn permits(&self, weight: Weight) -> Result<Permits> {
        let closed = |_| FilesError::Io { path: String::new(), source: io::Error::other("job limiter closed") };
        Ok(match weight {
            Weight::Light => {
                Permits { _server: Arc::clone(&self.inner.light).acquire_owned().await.map_err(closed)?, _node: None }
            }
            Weight::Heavy => {
                let server = Arc::clone(&self.inner.heavy).acquire_owned().await.map_err(closed)?;
                Permits { _server: server, _node: Some(NODE_HEAVY.acquire().await.map_err(closed)?) }
            }
        })
    }

    fn log<T>(&self, op: &'static str, path: &str, result: &Result<T>) {
        let root = self.inner.root_path.display();
        match result {
            Ok(_) => tracing::debug!(%root, op, path, "file operation done"),
            Err(e) if e.is_security_refusal() => tracing::warn!(%root, op, path, error = %e, "file operation refused"),
            Err(e) => tracing::debug!(%root, op, path, error = %e, "file operation failed"),
        }
    }
}

fn join_error(e: tokio::task::JoinError) -> FilesError {
    FilesError::Io { path: String::new(), source: io::Error::other(e) }
}
