//! Backups of a whole server root, and restores that replace it all at once.
//!
//! # Writing a backup
//! [`ServerFiles::write_backup`] streams a zstd-compressed tar of everything below the root
//! into any [`AsyncWrite`]: one blocking job walks the tree by descriptor (the walk every
//! other operation uses: `O_NOFOLLOW` at each step) and compresses (level 3, with zstd's
//! compression on a worker thread of its own, as the `zstd` tool does by default), handing
//! 256 KiB chunks through a queue of 4 to the async side, which writes them to the sink. So
//! a backup holds a few MiB whatever the size of the tree, and a slow sink slows the walk
//! down instead of filling memory.
//!
//! What goes in, and what does not:
//! - regular files with one link, directories, and symlinks *as symlinks* (never followed)
//!   whose target stays inside the root when read lexically;
//! - not: symlinks leading out (absolute, or `..` above the root), devices, fifos and
//!   sockets (never opened: opening a fifo would wait for a writer forever), **files with
//!   more than one hard link** (the crate never reads their content: the other link may be
//!   anything; they are skipped and counted, the backup goes on), entries on the egg's
//!   denylist (their content is not the users' to read, and a backup can be downloaded), the
//!   manager's own temporary files (`.nexus-tmp-…`), entries that vanish while the walk runs
//!   (the server may be running), and what [`PTEROIGNORE`] or the caller's `ignored`
//!   patterns leave out;
//! - file contents as they are when read, exactly as many bytes as the file had when opened
//!   (a file growing meanwhile is cut there, one shrinking is padded with zeros), so the tar
//!   stream is always well-formed; sparse files count at their apparent size;
//! - modes are the permission bits only (`0o777`); owners are not kept (a restore gives
//!   everything to the manager's [`FileOwner`](crate::FileOwner)).
//!
//! The apparent sizes of the files archived may add up to at most
//! [`ArchiveLimits::max_total_bytes`](crate::ArchiveLimits::max_total_bytes)
//! ([`FilesError::TooLarge`] otherwise), and the entries may be at most as many and as deep
//! as the limits allow ([`FilesError::ArchiveRejected`]): a backup the manager could not
//! restore is not worth writing.
//!
//! `.pteroignore` (as with Pterodactyl's Wings): a file at the root, gitignore syntax
//! (`*.log`, `cache/`, `!keep.log`), case-sensitive, at most [`MAX_PTEROIGNORE_BYTES`]
//! ([`FilesError::TooLarge`] past it); an in-root symlink to it is followed, one leading out
//! refuses the backup; lines that do not parse are skipped. The caller's `ignored` patterns
//! are added after it (so they win), and must parse ([`FilesError::InvalidConfig`]).
//!
//! # Restoring
//! [`ServerFiles::stage_restore`] builds the restored tree in a **staging directory next to
//! the root** (a sibling: same file system, outside the root, so nothing a tenant can reach),
//! [`StagedRestore::commit`] swaps it in with one `renameat2(RENAME_EXCHANGE)` and removes
//! the old tree; dropping (or [`StagedRestore::discard`]ing) an uncommitted restore removes
//! the staging directory. The root therefore holds either the whole old tree or the whole
//! restored one, never a mix, and the caller can check what it read (a checksum) between
//! staging and commit. On file systems without `RENAME_EXCHANGE` the commit is two renames
//! (the root aside as `.nexus-replaced-<root name>-…`, then the staging tree in): a process
//! dying between them leaves **no root** and the old tree aside, which
//! [`sweep_restore_leftovers`] (the daemon runs it at start) renames back.
//!
//! Staging extracts the archive by every rule of [`ServerFiles::decompress`]: strict entry
//! names (no absolute name, no `..`), regular files, directories and symlinks only (hard
//! links, devices and fifos refuse the archive), symlinks created last and never leading
//! out, no entry on or below a symlink entry, no entry on the denylist, the manager's
//! [`ArchiveLimits`](crate::ArchiveLimits), and the quota: the archive's content must fit
//! under the server's quota on its own (at the costs the usage counter uses). The archive
//! must be tar.zst, read to its very end (at most 1 MiB may follow the tar stream's end):
//! so when staging succeeded, whoever hashed the stream hashed all of it.
//!
//! Then, from the live tree, without ever following anything:
//! - `wipe = false`: every entry the archive does not have is kept: a directory is
//!   recreated (its mode kept), a regular file is **hard-linked** into the staging tree (no
//!   byte copied; its content is never opened), a symlink is recreated when it stays inside.
//!   The archive always wins where both have an entry (its file, its symlink, or a
//!   directory merged with the live one). This is "clone the tree, then extract the
//!   archive over it", done in the other order: every archive entry is created fresh
//!   (`O_EXCL`) before any shared inode exists in the staging tree, so no archive byte can
//!   be written through a link to a live file;
//! - `wipe = true`: only the archive, plus the entries of the live tree on the egg's
//!   denylist (they are not in any backup and are not the users' to remove: an installed
//!   server jar denied to users survives a wiping restore).
//!
//! Devices, fifos and sockets of the live tree are not kept, nor are symlinks leading out.
//!
//! # After a commit
//! The root directory is a new inode. Every [`ServerFiles`] opened on the root before the
//! commit, this one included, holds a descriptor of the *old* tree, which is then deleted:
//! it is stale and must be dropped and opened again (the daemon forgets its cached manager).
//! The root must not be a mount point (directories cannot be swapped across file systems);
//! staging refuses one with [`FilesError::InvalidConfig`]. One restore per root is staged at
//! a time in a process ([`FilesError::Busy`] otherwise); staging directories left by a
//! process that died (`.nexus-restore-<root name>-…` next to the root) are removed when the
//! next restore of that root is staged, or by [`sweep_restore_leftovers`].

use std::ffi::{OsStr, OsString};
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::archive::{ArchiveFormat, os_path, tar_header};
use super::confine::{
    Kind, Meta, Visitor, WalkEntry, chmod_fd, is_temp_name, lstat_at, make_dir, open_dir_at, open_file_read,
    open_parents, read_dir_names, read_link_at, remove_tree, symlink_at, try_lstat_at, walk,
};
use super::error::{FilesError, Result};
use super::extract::extract_tar_into;
use super::path::{MAX_DEPTH, RelPath, symlink_target_is_confined};
use super::quota::{Quota, dir_cost};
use super::{Inner, ServerFiles, Weight, join_error};

/// The ignore file read at the root of a server by [`ServerFiles::write_backup`].
pub const PTEROIGNORE: &str = ".pteroignore";
/// Largest [`PTEROIGNORE`] file accepted.
pub const MAX_PTEROIGNORE_BYTES: u64 = 64 * 1024;
/// zstd level of backups: the `zstd` tool's default.
pub const BACKUP_ZSTD_LEVEL: i32 = 3;

/// Input of one job of the threaded compressor.
const BACKUP_JOB_BYTES: u32 = 2 << 20;
/// Bytes handed between the blocking job and the async side at a time.
const CHUNK: usize = 256 * 1024;
/// Chunks queued between them.
const QUEUE: usize = 4;
/// Bytes read from an archived file at a time (one buffer, reused for every file).
const FILE_BUFFER: usize = 256 * 1024;
/// Bytes of tar stream handed to the compressor at a time (the tar writer writes 8 KiB).
const TAR_BUFFER: usize = 256 * 1024;
/// Most bytes accepted after the end of a restored archive's tar stream.
const MAX_TRAILING_BYTES: u64 = 1 << 20;
/// Prefix of restore staging directories next to the root (`<prefix><root name>-<id>`).
const RESTORE_PREFIX: &str = ".nexus-restore-";
/// Prefix of the tree a commit replaced, on file systems without `RENAME_EXCHANGE`
/// (`<prefix><root name>-<id>`): distinct from [`RESTORE_PREFIX`], so a sweep can tell the
/// server's real data (put back when the root is missing) from a staging tree.
const REPLACED_PREFIX: &str = ".nexus-replaced-";
/// Bytes of the root's name kept in a staging directory's name.
const NAME_IN_STAGING: usize = 128;

/// What [`ServerFiles::write_backup`] archived.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BackupSummary {
    /// Regular files archived.
    pub files: u64,
    /// Directories archived.
    pub directories: u64,
    /// Symlinks archived (as symlinks).
    pub symlinks: u64,
    /// Bytes of file content archived.
    pub bytes: u64,
    /// Bytes of the compressed archive written to the sink.
    pub archive_bytes: u64,
    /// Entries left out by `.pteroignore` or the `ignored` patterns (a directory counts once).
    pub ignored: u64,
    /// Entries left out because the egg's denylist covers them (a directory counts once).
    pub denied: u64,
    /// Entries skipped by the confinement rules: files with several hard links, devices,
    /// fifos, sockets, symlinks leading out of the root, entries that vanished or changed
    /// kind while the walk ran.
    pub skipped: u64,
}

/// What a staged restore holds.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RestoreSummary {
    /// Entries extracted from the archive (files, directories, symlinks).
    pub entries: u64,
    /// Bytes of file content extracted.
    pub bytes: u64,
    /// Entries kept from the tree the restore replaces (all it did not have with
    /// `wipe = false`; denied ones with `wipe = true`).
    pub kept: u64,
}

impl ServerFiles {
    /// Writes a tar.zst of the whole root into `sink`, leaving out what `.pteroignore` and
    /// the gitignore-syntax `ignored` patterns match; see the [module docs](self) for what
    /// is archived and how. Streams with bounded memory; on success the sink is flushed and
    /// shut down. On failure the sink has received part of an archive (the caller discards
    /// it); an error of the sink itself is returned as [`FilesError::Io`] with the sink's
    /// `io::Error` as its source. A heavy job of this server while it runs.
    pub async fn write_backup<W>(&self, mut sink: W, ignored: &[String]) -> Result<BackupSummary>
    where
        W: AsyncWrite + Unpin + Send,
    {
        let result = self.write_backup_inner(&mut sink, ignored).await;
        self.log("write_backup", "/", &result);
        result
    }

    async fn write_backup_inner<W>(&self, sink: &mut W, ignored: &[String]) -> Result<BackupSummary>
    where
        W: AsyncWrite + Unpin + Send,
    {
        let permits = self.permits(Weight::Heavy).await?;
        let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
        let inner = Arc::clone(&self.inner);
        let ignored = ignored.to_vec();
        let job = tokio::task::spawn_blocking(move || {
            let _permits = permits;
            inner.backup(ChunkSender { tx, buf: Vec::with_capacity(CHUNK) }, &ignored)
        });
        let mut written = 0u64;
        let pumped: io::Result<()> = async {
            while let Some(chunk) = rx.recv().await {
                sink.write_all(&chunk).await?;
                written += chunk.len() as u64;
            }
            Ok(())
        }
        .await;
        // A failed sink stops the walk at its next chunk.
        drop(rx);
        let walked = job.await.map_err(join_error)?;
        if let Err(source) = pumped {
            return Err(FilesError::Io { path: "(backup sink)".into(), source });
        }
        let mut summary = walked?;
        summary.archive_bytes = written;
        sink.flush().await.map_err(|source| FilesError::Io { path: "(backup sink)".into(), source })?;
        sink.shutdown().await.map_err(|source| FilesError::Io { path: "(backup sink)".into(), source })?;
        tracing::info!(
            root = %self.inner.root_path.display(),
            files = summary.files,
            bytes = summary.bytes,
            archive_bytes = summary.archive_bytes,
            ignored = summary.ignored,
            skipped = summary.skipped,
            "backup written"
        );
        Ok(summary)
    }

    /// Extracts the tar.zst `archive` into a staging directory next to the root, with
    /// `wipe` deciding what of the current tree is kept; nothing of the root changes until
    /// [`StagedRestore::commit`]. See the [module docs](self) for the rules. On success the
    /// archive was read to its end. A heavy job of this server while it runs.
    ///
    /// An error of `archive` itself is returned as [`FilesError::Io`] with that
    /// `io::Error` as its source.
    pub async fn stage_restore<R>(&self, archive: R, wipe: bool) -> Result<StagedRestore>
    where
        R: AsyncRead + Unpin + Send,
    {
        let result = self.stage_restore_inner(archive, wipe).await;
        self.log("stage_restore", "/", &result);
        result
    }

    async fn stage_restore_inner<R>(&self, mut archive: R, wipe: bool) -> Result<StagedRestore>
    where
        R: AsyncRead + Unpin + Send,
    {
        let claim = Claim::take(&self.inner.root_path)?;
        let permits = self.permits(Weight::Heavy).await?;
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(QUEUE);
        let inner = Arc::clone(&self.inner);
        let job = tokio::task::spawn_blocking(move || {
            let _permits = permits;
            inner.stage_restore(ChunkReceiver { rx, current: Bytes::new() }, wipe)
        });
        let pumped = pump(&mut archive, &tx).await;
        if let Err(e) = &pumped {
            // The extraction must fail, not take a cut stream for a short archive.
            let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string()))).await;
        }
        drop(tx);
        let staged = job.await.map_err(join_error)?;
        if let Err(source) = pumped {
            if let Ok(staged) = staged {
                discard_blocking(staged).await;
            }
            return Err(FilesError::Io { path: "(backup archive)".into(), source });
        }
        let staged = staged?;
        tracing::info!(
            root = %self.inner.root_path.display(),
            wipe,
            entries = staged.summary.entries,
            bytes = staged.summary.bytes,
            kept = staged.summary.kept,
            "restore staged"
        );
        Ok(StagedRestore { staged: Some(staged), root: self.inner.root_path.clone(), claim: Some(claim) })
    }
}

/// Reads `archive` to its end in chunks into `tx`; stops early (fine) when the receiver is
/// gone: the extraction stopped, and its error says why.
async fn pump<R: AsyncRead + Unpin>(archive: &mut R, tx: &mpsc::Sender<io::Result<Bytes>>) -> io::Result<()> {
    loop {
        let mut chunk = BytesMut::with_capacity(CHUNK);
        let mut eof = false;
        while chunk.len() < CHUNK {
            if archive.read_buf(&mut chunk).await? == 0 {
                eof = true;
                break;
            }
        }
        if !chunk.is_empty() && tx.send(Ok(chunk.freeze())).await.is_err() {
            return Ok(());
        }
        if eof {
            return Ok(());
        }
    }
}

/// A restore staged next to the root, not yet swapped in. Dropped without
/// [`commit`](Self::commit), it removes its staging directory (on the blocking pool when a
/// tokio runtime is at hand; [`discard`](Self::discard) waits for that).
#[derive(Debug)]
#[must_use = "a staged restore changes nothing until it is committed"]
pub struct StagedRestore {
    staged: Option<Staged>,
    root: PathBuf,
    claim: Option<Claim>,
}

impl StagedRestore {
    /// What the staging directory holds.
    pub fn summary(&self) -> RestoreSummary {
        self.staged.as_ref().map(|s| s.summary).unwrap_or_default()
    }

    /// Swaps the staging directory in for the root (one `renameat2(RENAME_EXCHANGE)`;
    /// two renames on file systems without it), then removes the old tree. Refused, with
    /// nothing changed and the staging directory removed, when the root is no longer the
    /// directory the restore was staged for. Every `ServerFiles` opened on this root before
    /// is stale afterwards (see the [module docs](self)).
    pub async fn commit(mut self) -> Result<RestoreSummary> {
        let Some(staged) = self.staged.take() else {
            return Err(FilesError::Busy { reason: "this restore was already committed or discarded".into() });
        };
        let claim = self.claim.take();
        let root = self.root.clone();
        let summary = staged.summary;
        let result = tokio::task::spawn_blocking(move || {
            let result = staged.commit(&root);
            drop(claim);
            result
        })
        .await
        .map_err(join_error)?;
        match &result {
            Ok(()) => tracing::info!(root = %self.root.display(), "restore committed"),
            Err(e) => tracing::warn!(root = %self.root.display(), error = %e, "restore not committed"),
        }
        result.map(|()| summary)
    }

    /// Removes the staging directory and waits until it is gone (what dropping does in the
    /// background).
    pub async fn discard(mut self) {
        let claim = self.claim.take();
        if let Some(staged) = self.staged.take() {
            discard_blocking(staged).await;
        }
        drop(claim);
    }
}

impl Drop for StagedRestore {
    fn drop(&mut self) {
        let Some(staged) = self.staged.take() else { return };
        let claim = self.claim.take();
        let cleanup = move || {
            staged.remove();
            drop(claim);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(cleanup)),
            Err(_) => cleanup(),
        }
    }
}

async fn discard_blocking(staged: Staged) {
    if let Err(e) = tokio::task::spawn_blocking(move || staged.remove()).await {
        tracing::warn!(error = %e, "removing a restore's staging directory failed");
    }
}

/// Roots of this process with a restore staged (one at a time each).
static RESTORING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// This process's claim on restoring one root; released when dropped.
#[derive(Debug)]
struct Claim(PathBuf);

impl Claim {
    fn take(root: &Path) -> Result<Self> {
        let mut restoring = RESTORING.lock().unwrap_or_else(PoisonError::into_inner);
        if restoring.iter().any(|r| r == root) {
            return Err(FilesError::Busy { reason: "a restore of this server is already under way".into() });
        }
        restoring.push(root.to_path_buf());
        Ok(Self(root.to_path_buf()))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        RESTORING.lock().unwrap_or_else(PoisonError::into_inner).retain(|r| *r != self.0);
    }
}

/// The staging directory of a restore, as the blocking side built it.
#[derive(Debug)]
struct Staged {
    /// The directory holding the root (trusted: the operator's configuration names it).
    parent: OwnedFd,
    staging: OsString,
    root_name: OsString,
    /// Device and inode of the root when staging began.
    root_id: (u64, u64),
    summary: RestoreSummary,
}

impl Staged {
    fn shown(&self) -> RelPath {
        RelPath::root().join(&self.staging)
    }

    /// Removes the staging directory (logged on failure: the next restore of the root
    /// removes what is left).
    fn remove(&self) {
        if let Err(e) = remove_tree(self.parent.as_fd(), &self.staging, &self.shown(), None) {
            tracing::warn!(staging = %self.staging.to_string_lossy(), error = %e, "could not remove a restore's staging directory");
        }
    }

    fn commit(self, root: &Path) -> Result<()> {
        let invalid = |reason: &str| FilesError::InvalidConfig { reason: format!("{}: {reason}", root.display()) };
        let errno = |e| FilesError::from_errno(root.display(), e);
        match root_id_at(self.parent.as_fd(), &self.root_name) {
            Ok(id) if id == self.root_id => {}
            _ => {
                self.remove();
                return Err(invalid("the server directory was moved or replaced while the restore was staged"));
            }
        }
        let (parent, staging, root_name) = (self.parent.as_fd(), self.staging.as_os_str(), self.root_name.as_os_str());
        // Where the old tree is once the new one is in place.
        let old = match rfs::renameat_with(parent, staging, parent, root_name, RenameFlags::EXCHANGE) {
            Ok(()) => self.staging.clone(),
            Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                let old = leftover_name(REPLACED_PREFIX, root_name);
                if let Err(e) = rfs::renameat(parent, root_name, parent, &old) {
                    self.remove();
                    return Err(errno(e));
                }
                if let Err(e) = rfs::renameat(parent, staging, parent, root_name) {
                    if let Err(back) = rfs::renameat(parent, &old, parent, root_name) {
                        tracing::error!(root = %root.display(), error = %back, "could not put the server directory back after a failed restore");
                    }
                    self.remove();
                    return Err(errno(e));
                }
                old
            }
            Err(e) => {
                self.remove();
                return Err(errno(e));
            }
        };
        if let Err(e) = remove_tree(parent, &old, &RelPath::root().join(&old), None) {
            tracing::warn!(root = %root.display(), error = %e, "could not remove the tree a restore replaced; the next restore removes it");
        }
        Ok(())
    }
}

/// Device and inode of the directory `name` in `dir`, never following a symlink.
fn root_id_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<(u64, u64)> {
    let meta = lstat_at(dir, name, &RelPath::root().join(name))?;
    if meta.kind != Kind::Dir {
        return Err(FilesError::NotADirectory { path: name.to_string_lossy().into_owned() });
    }
    Ok((meta.dev, meta.ino))
}

/// A fresh staging directory name for the root `root_name`.
fn staging_name(root_name: &OsStr) -> OsString {
    leftover_name(RESTORE_PREFIX, root_name)
}

/// A fresh name `<prefix><root name>-<id>` next to the root `root_name`.
fn leftover_name(prefix: &str, root_name: &OsStr) -> OsString {
    let mut name = OsString::from(prefix);
    name.push(OsStr::from_bytes(staging_key(root_name)));
    name.push(format!("-{}", uuid::Uuid::new_v4().simple()));
    name
}

/// What of the root's name goes into its staging directories' names.
fn staging_key(root_name: &OsStr) -> &[u8] {
    let bytes = root_name.as_bytes();
    &bytes[..bytes.len().min(NAME_IN_STAGING)]
}

/// Whether `name` (next to the root) is a staging directory of the root `root_name`.
fn is_staging_of(name: &OsStr, root_name: &OsStr) -> bool {
    leftover_key(name, RESTORE_PREFIX) == Some(staging_key(root_name))
}

/// Whether `name` (next to the root) is a tree a commit of the root `root_name` replaced.
fn is_replaced_of(name: &OsStr, root_name: &OsStr) -> bool {
    leftover_key(name, REPLACED_PREFIX) == Some(staging_key(root_name))
}

/// The root key of `name` if it is `<prefix><key>-<32 hex digits>`.
fn leftover_key<'a>(name: &'a OsStr, prefix: &str) -> Option<&'a [u8]> {
    let rest = name.as_bytes().strip_prefix(prefix.as_bytes())?;
    let (key, id) = rest.split_at_checked(rest.len().checked_sub(33)?)?;
    (!key.is_empty() && id[0] == b'-' && id[1..].iter().all(u8::is_ascii_hexdigit)).then_some(key)
}

/// What [`sweep_restore_leftovers`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepSummary {
    /// Staging trees and replaced trees removed.
    pub removed: u64,
    /// Server directories put back from the tree a commit had moved aside (the process died
    /// between the two renames of a commit without `RENAME_EXCHANGE`).
    pub recovered: u64,
}

/// Cleans what restores left in `parent` (the directory holding server roots, e.g. the
/// daemon's data root) when the process died: staging trees (`.nexus-restore-…`) are
/// removed; a replaced tree (`.nexus-replaced-<root>-…`) is **renamed back** to `<root>`
/// when `<root>` is missing (the server's real data, moved aside by a commit that did not
/// finish), and removed otherwise. With `roots` given, only leftovers of those root names
/// are touched and none is put back (a destroyed server's, whose directory is gone for
/// good). Blocking; call it before anything uses the roots (no restore may run meanwhile).
pub fn sweep_restore_leftovers(parent: &Path, roots: Option<&[OsString]>) -> Result<SweepSummary> {
    let dir = rfs::open(parent, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| FilesError::from_errno(parent.display(), e))?;
    let mut summary = SweepSummary::default();
    let names = read_dir_names(&dir, &RelPath::root())?;
    let mine = |key: &[u8]| roots.is_none_or(|roots| roots.iter().any(|r| staging_key(r) == key));
    // Put back first, so the same root's staging trees are removed below either way.
    for name in &names {
        let Some(key) = leftover_key(name, REPLACED_PREFIX).filter(|k| mine(k)) else { continue };
        let root = OsStr::from_bytes(key);
        let whole_name = key.len() < NAME_IN_STAGING;
        if roots.is_none() && whole_name && try_lstat_at(&dir, root, &RelPath::root().join(root))?.is_none() {
            match rfs::renameat_with(&dir, name.as_os_str(), &dir, root, RenameFlags::NOREPLACE) {
                Ok(()) => {
                    tracing::warn!(parent = %parent.display(), root = %root.to_string_lossy(), "put a server directory back: a restore's commit did not finish");
                    summary.recovered += 1;
                    continue;
                }
                Err(e) => {
                    tracing::error!(parent = %parent.display(), replaced = %name.to_string_lossy(), error = %e, "could not put a server directory back; left as is");
                    continue;
                }
            }
        }
        if !whole_name && roots.is_none() && try_lstat_at(&dir, root, &RelPath::root().join(root))?.is_none() {
            // A truncated name cannot be mapped back to its root: keep it for the operator.
            tracing::error!(parent = %parent.display(), replaced = %name.to_string_lossy(), "a replaced server directory of an unknown root is left as is");
            continue;
        }
        remove_leftover(&dir, name, &mut summary);
    }
    for name in &names {
        if leftover_key(name, RESTORE_PREFIX).is_some_and(mine) {
            remove_leftover(&dir, name, &mut summary);
        }
    }
    Ok(summary)
}

fn remove_leftover(dir: &OwnedFd, name: &OsStr, summary: &mut SweepSummary) {
    match remove_tree(dir.as_fd(), name, &RelPath::root().join(name), None) {
        Ok(_) => {
            tracing::info!(leftover = %name.to_string_lossy(), "removed a restore's leftover tree");
            summary.removed += 1;
        }
        Err(e) => {
            tracing::warn!(leftover = %name.to_string_lossy(), error = %e, "could not remove a restore's leftover tree")
        }
    }
}

/// Writes the compressed archive in chunks to the async side.
struct ChunkSender {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl ChunkSender {
    fn send(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Bytes::from(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the backup's sink went away"))
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() { Ok(()) } else { self.send() }
    }
}

/// Reads the archive's chunks from the async side; `Ok(0)` once it is done.
struct ChunkReceiver {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChunkReceiver {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// The walk of a backup: each entry checked, then added to the tar stream.
struct BackupWalk<'a, W: Write> {
    inner: &'a Inner,
    builder: tar::Builder<W>,
    ignore: Option<Gitignore>,
    summary: BackupSummary,
    /// Apparent bytes of the files added so far.
    total: u64,
    /// Where files are read into, [`FILE_BUFFER`] bytes.
    buffer: Vec<u8>,
}

/// Exactly `left` bytes of a file, read in large reads through a reused buffer, padded with
/// zeros if the file shrank meanwhile (tar needs the size its header declares).
struct ExactRead<'a> {
    file: std::fs::File,
    buffer: &'a mut [u8],
    at: usize,
    filled: usize,
    left: u64,
}

impl Read for ExactRead<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || out.is_empty() {
            return Ok(0);
        }
        if self.at == self.filled {
            let want = self.buffer.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
            let n = match self.file.read(&mut self.buffer[..want]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return self.read(out),
                Err(e) => return Err(e),
            };
            if n == 0 {
                // Shrunk since it was opened: zeros for the rest.
                self.buffer[..want].fill(0);
                self.filled = want;
            } else {
                self.filled = n;
            }
            self.at = 0;
        }
        let n = out.len().min(self.filled - self.at).min(usize::try_from(self.left).unwrap_or(usize::MAX));
        out[..n].copy_from_slice(&self.buffer[self.at..self.at + n]);
        self.at += n;
        self.left -= n as u64;
        Ok(n)
    }
}

impl<W: Write> BackupWalk<'_, W> {
    fn file(&mut self, e: &WalkEntry<'_>) -> Result<()> {
        if e.meta.nlink > 1 {
            tracing::debug!(path = %e.rel, "file with several hard links left out of the backup");
            self.summary.skipped += 1;
            return Ok(());
        }
        let (file, meta) = match open_file_read(e.dir, e.name, e.rel) {
            Ok(opened) => opened,
            // Gone, or no longer a plain file, since the walk saw it.
            Err(
                FilesError::NotFound { .. }
                | FilesError::HardLinked { .. }
                | FilesError::SpecialFile { .. }
                | FilesError::Symlink { .. }
                | FilesError::NotAFile { .. },
            ) => {
                self.summary.skipped += 1;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.total = self.total.saturating_add(meta.size);
        let max = self.inner.limits.max_total_bytes;
        if self.total > max {
            return Err(FilesError::TooLarge { path: e.rel.to_string(), size: self.total, max });
        }
        let mut header = tar_header(tar::EntryType::Regular, &meta, meta.size);
        // Exactly `size` bytes whatever the file does meanwhile: tar needs the header right.
        let exact = ExactRead { file, buffer: &mut self.buffer, at: 0, filled: 0, left: meta.size };
        self.builder.append_data(&mut header, os_path(e.rel), exact).map_err(|err| FilesError::from_io(e.rel, err))?;
        self.summary.files += 1;
        self.summary.bytes += meta.size;
        Ok(())
    }

    fn symlink(&mut self, e: &WalkEntry<'_>) -> Result<()> {
        let Some(target) = read_link_if_any(e.dir, e.name, e.rel)? else {
            self.summary.skipped += 1;
            return Ok(());
        };
        if !symlink_target_is_confined(e.rel, &target) {
            tracing::debug!(path = %e.rel, "symlink leading outside the root left out of the backup");
            self.summary.skipped += 1;
            return Ok(());
        }
        let mut header = tar_header(tar::EntryType::Symlink, &e.meta, 0);
        self.builder
            .append_link(&mut header, os_path(e.rel), OsStr::from_bytes(&target))
            .map_err(|err| FilesError::from_io(e.rel, err))?;
        self.summary.symlinks += 1;
        Ok(())
    }
}

impl<W: Write> Visitor for BackupWalk<'_, W> {
    fn visit(&mut self, e: &WalkEntry<'_>) -> Result<bool> {
        if is_temp_name(e.name) {
            return Ok(false);
        }
        // What a restore would refuse is not worth archiving.
        let limits = &self.inner.limits;
        if e.rel.components().len() > limits.max_depth {
            return Err(FilesError::rejected(format!(
                "`{}` is deeper than {} levels: an archive of it could not be restored",
                e.rel, limits.max_depth
            )));
        }
        if self.summary.files + self.summary.directories + self.summary.symlinks >= limits.max_entries {
            return Err(FilesError::rejected(format!(
                "more than {} entries: an archive of them could not be restored",
                limits.max_entries
            )));
        }
        let is_dir = e.meta.kind == Kind::Dir;
        if self.ignore.as_ref().is_some_and(|ignore| ignore.matched(e.rel.to_path_buf(), is_dir).is_ignore()) {
            self.summary.ignored += 1;
            return Ok(false);
        }
        if self.inner.denylist.is_denied(e.rel, is_dir) {
            self.summary.denied += 1;
            return Ok(false);
        }
        match e.meta.kind {
            Kind::Dir => {
                let mut header = tar_header(tar::EntryType::Directory, &e.meta, 0);
                self.builder
                    .append_data(&mut header, os_path(e.rel), io::empty())
                    .map_err(|err| FilesError::from_io(e.rel, err))?;
                self.summary.directories += 1;
                Ok(true)
            }
            Kind::File => self.file(e).map(|()| false),
            Kind::Symlink => self.symlink(e).map(|()| false),
            // Never opened.
            Kind::Special => {
                self.summary.skipped += 1;
                Ok(false)
            }
        }
    }
}

/// Keeps (links, recreates) denied entries of the live tree in a wiping restore's staging
/// directory.
struct KeepDenied<'a> {
    inner: &'a Inner,
    staging: BorrowedFd<'a>,
    kept: u64,
}

impl Visitor for KeepDenied<'_> {
    fn visit(&mut self, e: &WalkEntry<'_>) -> Result<bool> {
        if is_temp_name(e.name) {
            return Ok(false);
        }
        let is_dir = e.meta.kind == Kind::Dir;
        if !self.inner.denylist.is_denied(e.rel, is_dir) {
            // Denied entries may lie below.
            return Ok(is_dir);
        }
        let parents = e.rel.parent();
        let owner = self.inner.owner;
        let parent = match open_parents(self.staging, parents.components(), e.rel, owner, &mut || Ok(())) {
            Ok(parent) => parent,
            // The archive has a file or a symlink on the way: the archive wins.
            Err(FilesError::Symlink { .. } | FilesError::NotADirectory { .. }) => return Ok(false),
            Err(err) => return Err(err),
        };
        if try_lstat_at(&parent, e.name, e.rel)?.is_none() {
            let depth = e.rel.components().len();
            self.inner.keep_entry(e.dir, parent.as_fd(), e.name, e.rel, &e.meta, depth, &mut self.kept)?;
        }
        Ok(false)
    }
}

impl Inner {
    /// The blocking half of [`ServerFiles::write_backup`].
    fn backup(&self, out: ChunkSender, ignored: &[String]) -> Result<BackupSummary> {
        let root = RelPath::root();
        let ignore = self.backup_ignore(ignored)?;
        let io_err = |e| FilesError::from_io("(backup)", e);
        let mut encoder = zstd::stream::write::Encoder::new(out, BACKUP_ZSTD_LEVEL).map_err(io_err)?;
        encoder.include_checksum(true).map_err(io_err)?;
        // Compression on a worker thread of its own, as the `zstd` tool does by default
        // (`-T1`): reading files and compressing overlap.
        encoder.multithread(1).map_err(io_err)?;
        // 2 MiB jobs instead of the default 8 MiB at this level: a quarter of the buffers the
        // threaded compressor holds, for the same output size.
        encoder.set_parameter(zstd::stream::raw::CParameter::JobSize(BACKUP_JOB_BYTES)).map_err(io_err)?;
        let mut packer = BackupWalk {
            inner: self,
            builder: tar::Builder::new(BufWriter::with_capacity(TAR_BUFFER, encoder)),
            ignore,
            summary: BackupSummary::default(),
            total: 0,
            buffer: vec![0; FILE_BUFFER],
        };
        walk(self.fs.root_fd(), &root, &mut packer)?;
        let BackupWalk { builder, summary, .. } = packer;
        let encoder = builder.into_inner().map_err(io_err)?.into_inner().map_err(|e| io_err(e.into_error()))?;
        let mut out = encoder.finish().map_err(io_err)?;
        out.flush().map_err(io_err)?;
        Ok(summary)
    }

    /// `.pteroignore` and the caller's patterns, compiled; `None` when there are none.
    fn backup_ignore(&self, ignored: &[String]) -> Result<Option<Gitignore>> {
        let mut builder = GitignoreBuilder::new(".");
        let mut any = false;
        if let Some(text) = self.read_pteroignore()? {
            for line in text.lines() {
                match builder.add_line(None, line) {
                    Ok(_) => any |= !line.trim().is_empty() && !line.starts_with('#'),
                    Err(e) => tracing::debug!(line, error = %e, "unparsable .pteroignore line skipped"),
                }
            }
        }
        for pattern in ignored {
            builder
                .add_line(None, pattern)
                .map_err(|e| FilesError::InvalidConfig { reason: format!("ignore pattern `{pattern}`: {e}") })?;
            any |= !pattern.trim().is_empty();
        }
        if !any {
            return Ok(None);
        }
        let ignore =
            builder.build().map_err(|e| FilesError::InvalidConfig { reason: format!("ignore patterns: {e}") })?;
        Ok(Some(ignore))
    }

    /// The text of `.pteroignore` (following an in-root symlink), `None` when there is none.
    fn read_pteroignore(&self) -> Result<Option<String>> {
        let path = RelPath::parse(PTEROIGNORE)?;
        let resolved = self.fs.resolve(&path, self.following())?;
        let Some(name) = resolved.name.as_deref() else { return Ok(None) };
        let (file, meta) = match open_file_read(&resolved.parent, name, &resolved.path) {
            Err(FilesError::NotFound { .. }) => return Ok(None),
            other => other?,
        };
        let too_large = |size| FilesError::TooLarge { path: PTEROIGNORE.into(), size, max: MAX_PTEROIGNORE_BYTES };
        if meta.size > MAX_PTEROIGNORE_BYTES {
            return Err(too_large(meta.size));
        }
        let mut text = Vec::new();
        file.take(MAX_PTEROIGNORE_BYTES + 1).read_to_end(&mut text).map_err(|e| FilesError::from_io(&path, e))?;
        if text.len() as u64 > MAX_PTEROIGNORE_BYTES {
            return Err(too_large(text.len() as u64));
        }
        Ok(Some(String::from_utf8_lossy(&text).into_owned()))
    }

    /// The directory holding the root (by path: the operator's configuration is trusted)
    /// and the root's name in it.
    fn root_parts(&self) -> Result<(OwnedFd, OsString)> {
        let invalid =
            |reason: &str| FilesError::InvalidConfig { reason: format!("{}: {reason}", self.root_path.display()) };
        let name = self.root_path.file_name().ok_or_else(|| invalid("the server directory has no name"))?;
        let parent = match self.root_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let fd = rfs::open(parent, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| FilesError::from_errno(parent.display(), e))?;
        Ok((fd, name.to_os_string()))
    }

    /// The blocking half of [`ServerFiles::stage_restore`].
    fn stage_restore(&self, mut reader: ChunkReceiver, wipe: bool) -> Result<Staged> {
        let invalid =
            |reason: &str| FilesError::InvalidConfig { reason: format!("{}: {reason}", self.root_path.display()) };
        let (parent, root_name) = self.root_parts()?;
        let root_stat = rfs::fstat(self.fs.root_fd()).map_err(|e| FilesError::from_errno("/", e))?;
        let root = Meta::from_stat(&root_stat);
        if root_id_at(parent.as_fd(), &root_name)? != (root.dev, root.ino) {
            return Err(invalid("the server directory was moved or replaced since its file manager was opened"));
        }
        if Meta::from_stat(&rfs::fstat(&parent).map_err(|e| FilesError::from_errno("..", e))?).dev != root.dev {
            return Err(invalid(
                "the server directory is a mount point; a restore swaps directories and cannot replace one",
            ));
        }
        // The root exists (checked above): a replaced tree of it is an old one, removed too.
        for stale in read_dir_names(&parent, &RelPath::root())?
            .into_iter()
            .filter(|n| is_staging_of(n, &root_name) || is_replaced_of(n, &root_name))
        {
            tracing::info!(staging = %stale.to_string_lossy(), "removing a restore left over by an earlier run");
            if let Err(e) = remove_tree(parent.as_fd(), &stale, &RelPath::root().join(&stale), None) {
                tracing::warn!(staging = %stale.to_string_lossy(), error = %e, "could not remove a leftover restore");
            }
        }
        let staging = staging_name(&root_name);
        let shown = RelPath::root().join(&staging);
        rfs::mkdirat(&parent, &staging, Mode::from_raw_mode(0o700)).map_err(|e| FilesError::from_errno(&shown, e))?;
        let staged =
            Staged { parent, staging, root_name, root_id: (root.dev, root.ino), summary: RestoreSummary::default() };
        match self.fill_staging(&staged, &root_stat, &mut reader, wipe) {
            Ok(summary) => Ok(Staged { summary, ..staged }),
            Err(e) => {
                staged.remove();
                Err(e)
            }
        }
    }

    fn fill_staging(
        &self,
        staged: &Staged,
        root_stat: &rfs::Stat,
        reader: &mut ChunkReceiver,
        wipe: bool,
    ) -> Result<RestoreSummary> {
        let shown = staged.shown();
        let dir = open_dir_at(&staged.parent, &staged.staging, &shown)?;
        // The staging directory becomes the root: same owner and mode.
        rfs::fchown(&dir, Some(rfs::Uid::from_raw(root_stat.st_uid)), Some(rfs::Gid::from_raw(root_stat.st_gid)))
            .map_err(|e| FilesError::from_errno(&shown, e))?;
        #[allow(clippy::unnecessary_cast, reason = "`st_mode`'s width differs between architectures")]
        let mode = (root_stat.st_mode as u32) & 0o7777;
        rfs::fchmod(&dir, Mode::from_raw_mode(mode)).map_err(|e| FilesError::from_errno(&shown, e))?;
        // The archive's content alone must fit under the quota.
        let quota = Quota::new(self.quota.limit());
        quota.used(|| Ok(0))?;
        let mut reservation = quota.reserve(dir_cost())?;
        let archive = RelPath::parse("backup.tar.zst")?;
        let extracted = extract_tar_into(
            self,
            dir.as_fd(),
            &RelPath::root(),
            &self.limits,
            &mut reservation,
            &mut *reader,
            ArchiveFormat::TarZst,
            &archive,
        )?;
        drain(reader)?;
        let mut kept = 0;
        if !wipe {
            self.keep_all(self.fs.root_fd(), dir.as_fd(), &RelPath::root(), 0, &mut kept)?;
        } else if !self.denylist.is_empty() {
            let mut keep = KeepDenied { inner: self, staging: dir.as_fd(), kept: 0 };
            walk(self.fs.root_fd(), &RelPath::root(), &mut keep)?;
            kept = keep.kept;
        }
        Ok(RestoreSummary { entries: extracted.entries, bytes: extracted.bytes, kept })
    }

    /// Keeps every entry of the live directory `live` that the staging directory `staging`
    /// lacks; recurses into directories both have.
    fn keep_all(
        &self,
        live: BorrowedFd<'_>,
        staging: BorrowedFd<'_>,
        rel: &RelPath,
        depth: usize,
        kept: &mut u64,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(FilesError::invalid(rel, format!("directory tree deeper than {MAX_DEPTH} levels")));
        }
        for name in read_dir_names(live, rel)? {
            if is_temp_name(&name) {
                continue;
            }
            let child = rel.join(&name);
            let Some(meta) = try_lstat_at(live, &name, &child)? else { continue };
            match try_lstat_at(staging, &name, &child)? {
                None => self.keep_entry(live, staging, &name, &child, &meta, depth, kept)?,
                Some(staged) if staged.kind == Kind::Dir && meta.kind == Kind::Dir => {
                    let sub_live = match open_dir_at(live, &name, &child) {
                        Ok(fd) => fd,
                        Err(
                            FilesError::NotFound { .. } | FilesError::Symlink { .. } | FilesError::NotADirectory { .. },
                        ) => {
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    let sub_staging = open_dir_at(staging, &name, &child)?;
                    self.keep_all(sub_live.as_fd(), sub_staging.as_fd(), &child, depth + 1, kept)?;
                }
                // The archive's entry wins.
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Keeps the live entry `name` (seen as `meta`) in `staging`, which lacks it: a
    /// directory recreated with everything below it, a file hard-linked, an in-root symlink
    /// recreated; others are left out.
    #[allow(clippy::too_many_arguments, reason = "one recursion step of the keep walk")]
    fn keep_entry(
        &self,
        live: BorrowedFd<'_>,
        staging: BorrowedFd<'_>,
        name: &OsStr,
        child: &RelPath,
        meta: &Meta,
        depth: usize,
        kept: &mut u64,
    ) -> Result<()> {
        match meta.kind {
            Kind::Dir => {
                let sub_live = match open_dir_at(live, name, child) {
                    Ok(fd) => fd,
                    Err(
                        FilesError::NotFound { .. } | FilesError::Symlink { .. } | FilesError::NotADirectory { .. },
                    ) => {
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                };
                let (sub_staging, _) = make_dir(staging, name, child, self.owner)?;
                chmod_fd(&sub_staging, meta.mode, child)?;
                *kept += 1;
                self.keep_all(sub_live.as_fd(), sub_staging.as_fd(), child, depth + 1, kept)
            }
            Kind::File => {
                match rfs::linkat(live, name, staging, name, AtFlags::empty()) {
                    Ok(()) => {}
                    Err(Errno::NOENT) => return Ok(()),
                    Err(e) => return Err(FilesError::from_errno(child, e)),
                }
                // A swap between the walk's look and the link would have linked another
                // inode (a symlink, a fifo): only the file seen is kept.
                let linked = lstat_at(staging, name, child)?;
                if linked.kind != Kind::File || !linked.same_inode(meta) {
                    rfs::unlinkat(staging, name, AtFlags::empty()).map_err(|e| FilesError::from_errno(child, e))?;
                    return Ok(());
                }
                *kept += 1;
                Ok(())
            }
            Kind::Symlink => {
                let Some(target) = read_link_if_any(live, name, child)? else { return Ok(()) };
                if symlink_target_is_confined(child, &target) {
                    symlink_at(staging, name, &target, child, self.owner)?;
                    *kept += 1;
                } else {
                    tracing::debug!(path = %child, "symlink leading outside the root not kept by the restore");
                }
                Ok(())
            }
            Kind::Special => Ok(()),
        }
    }
}

/// The target of the symlink `name`; `None` when it is gone or no longer a symlink (the
/// server may be running while a backup walks its tree).
fn read_link_if_any(dir: BorrowedFd<'_>, name: &OsStr, path: &RelPath) -> Result<Option<Vec<u8>>> {
    match read_link_at(dir, name, path) {
        Ok(target) => Ok(Some(target)),
        Err(FilesError::NotFound { .. }) => Ok(None),
        Err(FilesError::Io { source, .. }) if source.raw_os_error() == Some(Errno::INVAL.raw_os_error()) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads what follows the tar stream's end, at most [`MAX_TRAILING_BYTES`].
fn drain(reader: &mut impl Read) -> Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = MAX_TRAILING_BYTES;
    loop {
        let n = reader.read(&mut buf).map_err(|e| FilesError::from_io("(backup archive)", e))?;
        if n == 0 {
            return Ok(());
        }
        left = left.checked_sub(n as u64).ok_or_else(|| {
            FilesError::rejected(format!("more than {MAX_TRAILING_BYTES} bytes after the archive's end"))
        })?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file read for a tar entry gives exactly the size its header declared: cut when it
    /// grew, padded with zeros when it shrank.
    #[test]
    fn exact_reads_cut_and_pad() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[7u8; 1000]).unwrap();
        let read = |left: u64, buffer: usize| {
            let mut file = file.try_clone().unwrap();
            io::Seek::seek(&mut file, io::SeekFrom::Start(0)).unwrap();
            let mut buffer = vec![0u8; buffer];
            let mut out = Vec::new();
            ExactRead { file, buffer: &mut buffer, at: 0, filled: 0, left }.read_to_end(&mut out).unwrap();
            out
        };
        assert_eq!(read(600, 256), vec![7u8; 600]);
        let padded = read(1500, 300);
        assert_eq!(padded.len(), 1500);
        assert!(padded[..1000].iter().all(|b| *b == 7) && padded[1000..].iter().all(|b| *b == 0));
        assert_eq!(read(0, 16), Vec::<u8>::new());
    }

    #[test]
    fn staging_names_belong_to_their_root() {
        let root = OsStr::new("3f2a1b4c-0000-4000-8000-000000000001");
        let name = staging_name(root);
        assert!(is_staging_of(&name, root));
        assert!(!is_staging_of(&name, OsStr::new("3f2a1b4c-0000-4000-8000-000000000002")));
        assert!(!is_staging_of(OsStr::new(".nexus-restore-3f2a1b4c-0000-4000-8000-000000000001"), root));
        assert!(!is_staging_of(OsStr::new("3f2a1b4c-0000-4000-8000-000000000001"), root));
        let long = OsString::from("x".repeat(255));
        assert!(staging_name(&long).len() < 255);
        assert!(is_staging_of(&staging_name(&long), &long));
    }
}
