//! Path confinement: the resolver every operation goes through.
//!
//! # How it stays inside the root, race-free
//!
//! The root directory is opened once. From then on the kernel is never handed a path with a
//! `/` in it: every step is `openat(dir_fd, one_name, O_NOFOLLOW)` where `dir_fd` is the root
//! or a directory obtained the same way, so every fd held is known to lie inside the root.
//! The kernel never follows a symlink for us; when a step meets one, the resolver reads it
//! (`readlinkat` on the link's own `O_PATH` fd) and continues with the target's components:
//! an absolute target is refused, and a `..` pops the stack of directory fds, refused when
//! the stack is empty (the root has no parent). This is what `openat2(RESOLVE_BENEATH)` does
//! in the kernel, done in user space so that it works on every kernel and seccomp profile,
//! and so that the canonical in-root path is known (the denylist is checked on it).
//!
//! There is no check-then-use window: once a component is bound to an fd, renaming,
//! replacing or swapping it for a symlink changes nothing for this resolution, and the final
//! operation is again `*at(parent_fd, name)` with `O_NOFOLLOW` (or a call that never
//! follows, like `unlinkat`, `renameat`, `mkdirat`), so a last-moment swap makes the
//! operation fail (`ELOOP` → [`FilesError::Symlink`]) instead of escaping.

use std::collections::VecDeque;
use std::ffi::{CStr, OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, Dir, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use super::denylist::Denylist;
use super::error::{FilesError, Result};
use super::path::{MAX_DEPTH, RelPath};
use super::quota::{Quota, Temporary, dir_cost, freed_by_unlink};

/// Most symlinks followed while resolving one path (Linux's own limit).
const MAX_SYMLINKS: usize = 40;
/// Most components processed while resolving one path (bounds symlink expansion).
const MAX_STEPS: usize = 4096;

/// Prefix of the temporary files and directories the manager creates next to their final
/// place (writes, copies, archives, extraction staging). Copies and archives skip them, the
/// resolver refuses them (no user path and no symlink reaches one: a temporary file renamed
/// or deleted under a write in flight would skew the usage counter), listings hide them.
pub(crate) const TEMP_PREFIX: &str = ".nexus-tmp-";

/// A fresh temporary name.
pub(crate) fn temp_name() -> OsString {
    OsString::from(format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple()))
}

/// Whether `name` is one of the manager's own temporary names.
pub(crate) fn is_temp_name(name: &OsStr) -> bool {
    name.as_bytes().starts_with(TEMP_PREFIX.as_bytes())
}

fn reserved_name(path: &RelPath) -> FilesError {
    FilesError::invalid(path, format!("names starting with `{TEMP_PREFIX}` are reserved"))
}

/// What kind of inode an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    /// Device, fifo, socket.
    Special,
}

/// The `stat` fields the manager uses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meta {
    pub kind: Kind,
    /// Permission bits and setuid/setgid/sticky (`0o7777`).
    pub mode: u32,
    pub size: u64,
    /// Bytes the file system allocated (`st_blocks * 512`): more than `size` for preallocated
    /// files (`fallocate` with `KEEP_SIZE`), less for sparse ones.
    pub allocated: u64,
    pub nlink: u64,
    pub dev: u64,
    pub ino: u64,
    pub mtime: i64,
}

impl Meta {
    // `Stat` field widths differ between architectures; the casts widen or keep them.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    pub(crate) fn from_stat(st: &rfs::Stat) -> Self {
        let kind = match FileType::from_raw_mode(st.st_mode as _) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Special,
        };
        Self {
            kind,
            mode: (st.st_mode as u32) & 0o7777,
            size: u64::try_from(st.st_size).unwrap_or(0),
            allocated: u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512),
            nlink: st.st_nlink as u64,
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            mtime: st.st_mtime as i64,
        }
    }

    /// Whether `other` describes the same inode.
    pub(crate) fn same_inode(&self, other: &Meta) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

/// `fstat`.
pub(crate) fn fstat(fd: impl AsFd, path: &RelPath) -> Result<Meta> {
    rfs::fstat(fd).map(|st| Meta::from_stat(&st)).map_err(|e| FilesError::from_errno(path, e))
}

/// `fstatat(AT_SYMLINK_NOFOLLOW)`: the entry itself, never what a symlink points at.
pub(crate) fn lstat_at(dir: impl AsFd, name: &OsStr, path: &RelPath) -> Result<Meta> {
    rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .map(|st| Meta::from_stat(&st))
        .map_err(|e| FilesError::from_errno(path, e))
}

/// Like [`lstat_at`] but `Ok(None)` when nothing is there.
pub(crate) fn try_lstat_at(dir: impl AsFd, name: &OsStr, path: &RelPath) -> Result<Option<Meta>> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(Meta::from_stat(&st))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(FilesError::from_errno(path, e)),
    }
}

/// A directory fd inside the root: borrowed (the root itself, a staging directory) or one
/// opened below it.
pub(crate) enum DirFd<'r> {
    Borrowed(BorrowedFd<'r>),
    Owned(OwnedFd),
}

impl AsFd for DirFd<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            DirFd::Borrowed(fd) => *fd,
            DirFd::Owned(fd) => fd.as_fd(),
        }
    }
}

impl DirFd<'_> {
    /// An owned fd (a `dup` of the root when needed), for work that outlives the borrow.
    pub(crate) fn into_owned(self, path: &RelPath) -> Result<OwnedFd> {
        match self {
            DirFd::Borrowed(fd) => fd.try_clone_to_owned().map_err(|e| FilesError::from_io(path, e)),
            DirFd::Owned(fd) => Ok(fd),
        }
    }
}

/// The outcome of resolving a path: the directory holding the final entry, bound to an fd,
/// and the entry's name in it. The entry itself may or may not exist.
pub(crate) struct Resolved<'r> {
    pub parent: DirFd<'r>,
    /// `None` when the path resolved to the root itself.
    pub name: Option<OsString>,
    /// Canonical in-root path of the final entry (symlinks replaced by their targets).
    pub path: RelPath,
}

impl Resolved<'_> {
    /// The final name, refusing the root itself (it cannot be created, deleted or renamed).
    pub(crate) fn entry_name(&self) -> Result<&OsStr> {
        self.name.as_deref().ok_or_else(|| FilesError::invalid("/", "the server root itself"))
    }

    /// The final entry, not following it; `None` when it does not exist.
    pub(crate) fn meta(&self) -> Result<Option<Meta>> {
        match &self.name {
            Some(name) => try_lstat_at(&self.parent, name, &self.path),
            None => fstat(&self.parent, &self.path).map(Some),
        }
    }
}

/// How [`Confined::resolve`] treats the last component and missing directories.
#[derive(Clone, Copy, Default)]
pub(crate) struct Resolve<'a> {
    /// Follow a symlink in the last component (to its in-root target).
    pub follow_final: bool,
    /// Create missing intermediate directories (`mkdir -p` of the parent).
    pub create_parents: bool,
    /// Refuse every symlink, even one that stays inside (extraction staging).
    pub no_symlinks: bool,
    /// Ownership for directories created on the way.
    pub owner: Option<(u32, u32)>,
    /// Checked before creating a directory on the way, so that a refused path leaves no
    /// directory behind.
    pub guard: Option<&'a Denylist>,
    /// Charged for every directory created on the way.
    pub quota: Option<&'a Quota>,
}

/// The root of one server's files, opened once.
pub(crate) struct Confined {
    root: OwnedFd,
}

impl Confined {
    /// Opens the root directory. The root path comes from the operator's configuration and is
    /// trusted, so symlinks in it are followed; everything below it is not.
    pub(crate) fn open(root: &Path) -> Result<Self> {
        let shown = root.display().to_string();
        let fd = rfs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| FilesError::from_errno(&shown, e))?;
        Ok(Self { root: fd })
    }

    /// The root directory fd.
    pub(crate) fn root_fd(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Resolves `path` to (parent fd, final name) without ever leaving the root.
    pub(crate) fn resolve(&self, path: &RelPath, how: Resolve<'_>) -> Result<Resolved<'_>> {
        // Checked up front as well as on every step (symlink targets), so that a refused path
        // creates no parent directory.
        if path.components().iter().any(|c| is_temp_name(c)) {
            return Err(reserved_name(path));
        }
        // Directories entered so far below the root, with their names (the canonical path).
        let mut stack: Vec<(OwnedFd, OsString)> = Vec::new();
        let mut pending: VecDeque<OsString> = path.components().iter().cloned().collect();
        let mut links = 0usize;
        let mut steps = 0usize;
        fn current<'s>(root: BorrowedFd<'s>, stack: &'s [(OwnedFd, OsString)]) -> BorrowedFd<'s> {
            stack.last().map(|(fd, _)| fd.as_fd()).unwrap_or(root)
        }
        let canonical = |stack: &[(OwnedFd, OsString)], last: Option<&OsStr>| -> RelPath {
            let mut p = RelPath::root();
            for (_, name) in stack {
                p = p.join(name);
            }
            if let Some(last) = last {
                p = p.join(last);
            }
            p
        };

        while let Some(name) = pending.pop_front() {
            steps += 1;
            if steps > MAX_STEPS || stack.len() > MAX_DEPTH {
                return Err(FilesError::invalid(path, "path too long after following symlinks"));
            }
            // Only symlink targets carry these; user paths are normalized by `RelPath`.
            if name.is_empty() || name == "." {
                continue;
            }
            if name == ".." {
                if stack.pop().is_none() {
                    return Err(FilesError::outside(path));
                }
                continue;
            }
            if is_temp_name(&name) {
                return Err(reserved_name(path));
            }
            let is_last = pending.is_empty();
            if is_last && !how.follow_final {
                let here = canonical(&stack, Some(&name));
                return Ok(self.finish(stack, Some(name), here));
            }
            let dir = current(self.root.as_fd(), &stack);
            let fd = match rfs::openat(dir, &name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if is_last => {
                    let here = canonical(&stack, Some(&name));
                    return Ok(self.finish(stack, Some(name), here));
                }
                Err(Errno::NOENT) if how.create_parents => {
                    let here = canonical(&stack, Some(&name));
                    if let Some(denylist) = how.guard {
                        denylist.check(&here, true)?;
                    }
                    let fd = match how.quota {
                        Some(quota) => quota.charged(dir_cost(), || make_dir(dir, &name, &here, how.owner))?,
                        None => make_dir(dir, &name, &here, how.owner)?.0,
                    };
                    stack.push((fd, name));
                    continue;
                }
                Err(e) => return Err(FilesError::from_errno(canonical(&stack, Some(&name)), e)),
            };
            let meta = fstat(&fd, path)?;
            match meta.kind {
                Kind::Dir if is_last => {
                    let here = canonical(&stack, Some(&name));
                    return Ok(self.finish(stack, Some(name), here));
                }
                Kind::Dir => stack.push((fd, name)),
                Kind::Symlink => {
                    if how.no_symlinks {
                        return Err(FilesError::Symlink { path: canonical(&stack, Some(&name)).to_string() });
                    }
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(FilesError::invalid(path, "too many levels of symbolic links"));
                    }
                    // Read the link through its own O_PATH fd: the very inode just checked.
                    let target = rfs::readlinkat(&fd, c"", Vec::new()).map_err(|e| FilesError::from_errno(path, e))?;
                    let target = target.as_bytes();
                    if target.first() == Some(&b'/') {
                        return Err(FilesError::outside(path));
                    }
                    for part in target.rsplit(|b| *b == b'/') {
                        pending.push_front(OsString::from_vec(part.to_vec()));
                    }
                }
                _ if is_last => {
                    let here = canonical(&stack, Some(&name));
                    return Ok(self.finish(stack, Some(name), here));
                }
                _ => return Err(FilesError::NotADirectory { path: canonical(&stack, Some(&name)).to_string() }),
            }
        }
        // The path ended on a directory already entered (or the root).
        let here = canonical(&stack, None);
        match stack.pop() {
            Some((_, name)) => Ok(self.finish(stack, Some(name), here)),
            None => Ok(Resolved { parent: DirFd::Borrowed(self.root.as_fd()), name: None, path: here }),
        }
    }

    fn finish(&self, mut stack: Vec<(OwnedFd, OsString)>, name: Option<OsString>, path: RelPath) -> Resolved<'_> {
        let parent = match stack.pop() {
            Some((fd, _)) => DirFd::Owned(fd),
            None => DirFd::Borrowed(self.root.as_fd()),
        };
        Resolved { parent, name, path }
    }

    /// Opens `path` as a readable directory (following an in-root symlink at the end).
    pub(crate) fn open_dir(&self, path: &RelPath, how: Resolve<'_>) -> Result<(OwnedFd, RelPath)> {
        let resolved = self.resolve(path, Resolve { follow_final: true, ..how })?;
        let fd = match &resolved.name {
            Some(name) => open_dir_at(&resolved.parent, name, &resolved.path)?,
            None => open_dir_at(&resolved.parent, OsStr::new("."), &resolved.path)?,
        };
        Ok((fd, resolved.path))
    }
}

/// Opens (creating them as needed) the directories `parents` below `dir`, never following a
/// symlink: one met is refused ([`FilesError::Symlink`] or [`FilesError::NotADirectory`]).
/// `before_create` runs before each directory is created (to reserve its cost).
pub(crate) fn open_parents<'d>(
    dir: BorrowedFd<'d>,
    parents: &[OsString],
    path: &RelPath,
    owner: Option<(u32, u32)>,
    before_create: &mut dyn FnMut() -> Result<()>,
) -> Result<DirFd<'d>> {
    let mut current = DirFd::Borrowed(dir);
    for name in parents {
        let next = match open_dir_at(&current, name, path) {
            Err(FilesError::NotFound { .. }) => {
                before_create()?;
                make_dir(&current, name, path, owner)?.0
            }
            other => other?,
        };
        current = DirFd::Owned(next);
    }
    Ok(current)
}

/// Opens `name` in `dir` as a readable directory, never following a symlink (a symlink
/// gives `ELOOP` → [`FilesError::Symlink`], or `ENOTDIR` → [`FilesError::NotADirectory`]).
pub(crate) fn open_dir_at(dir: impl AsFd, name: &OsStr, path: &RelPath) -> Result<OwnedFd> {
    rfs::openat(dir, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| FilesError::from_errno(path, e))
}

/// `mkdirat` + open, chowned to `owner`; also whether this call created the directory (it
/// may exist already: a concurrent operation made it). The directory is opened with
/// `O_NOFOLLOW`, so if it is swapped for a symlink between the two calls the open fails
/// instead of following it.
pub(crate) fn make_dir(
    dir: impl AsFd,
    name: &OsStr,
    path: &RelPath,
    owner: Option<(u32, u32)>,
) -> Result<(OwnedFd, bool)> {
    let dir = dir.as_fd();
    let created = match rfs::mkdirat(dir, name, Mode::from_raw_mode(0o755)) {
        Ok(()) => true,
        Err(Errno::EXIST) => false,
        Err(e) => return Err(FilesError::from_errno(path, e)),
    };
    let fd = open_dir_at(dir, name, path)?;
    if created {
        chown_fd(&fd, owner, path)?;
    }
    Ok((fd, created))
}

/// `fchown` when an owner is configured (the daemon runs as root; the game server does not).
pub(crate) fn chown_fd(fd: impl AsFd, owner: Option<(u32, u32)>, path: &RelPath) -> Result<()> {
    if let Some((uid, gid)) = owner {
        rfs::fchown(fd, Some(rfs::Uid::from_raw(uid)), Some(rfs::Gid::from_raw(gid)))
            .map_err(|e| FilesError::from_errno(path, e))?;
    }
    Ok(())
}

/// Opens an existing regular file for reading, refusing symlinks, directories, devices,
/// fifos, sockets and files with several hard links.
///
/// A pre-check on the entry avoids ever calling `open` on a device or fifo (opening can have
/// side effects, or block); the authoritative check is `fstat` on the opened fd, compared with
/// the pre-check so that a swap in between is caught.
pub(crate) fn open_file_read(dir: impl AsFd, name: &OsStr, path: &RelPath) -> Result<(File, Meta)> {
    let dir = dir.as_fd();
    let before = lstat_at(dir, name, path)?;
    check_content_access(&before, path)?;
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = rfs::openat(dir, name, flags, Mode::empty()).map_err(|e| FilesError::from_errno(path, e))?;
    let meta = fstat(&fd, path)?;
    check_content_access(&meta, path)?;
    if !meta.same_inode(&before) {
        return Err(FilesError::Symlink { path: path.to_string() });
    }
    Ok((File::from(fd), meta))
}

/// The rule for touching a file's content or mode: a regular file with one link.
pub(crate) fn check_content_access(meta: &Meta, path: &RelPath) -> Result<()> {
    match meta.kind {
        Kind::File if meta.nlink > 1 => Err(FilesError::HardLinked { path: path.to_string() }),
        Kind::File => Ok(()),
        Kind::Dir => Err(FilesError::NotAFile { path: path.to_string() }),
        Kind::Symlink => Err(FilesError::Symlink { path: path.to_string() }),
        Kind::Special => Err(FilesError::SpecialFile { path: path.to_string() }),
    }
}

/// Creates the new file `name` in `dir` (`O_CREAT|O_EXCL`, which never follows a symlink),
/// chowned to `owner`.
pub(crate) fn create_new(
    dir: impl AsFd,
    name: &OsStr,
    mode: u32,
    path: &RelPath,
    owner: Option<(u32, u32)>,
) -> Result<File> {
    let dir = dir.as_fd();
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rfs::openat(dir, name, flags, Mode::from_raw_mode(mode & 0o777))
        .map_err(|e| FilesError::from_errno(path, e))?;
    if let Err(e) = chown_fd(&fd, owner, path) {
        let _ = rfs::unlinkat(dir, name, AtFlags::empty());
        return Err(e);
    }
    Ok(File::from(fd))
}

/// Creates a new temporary file in `dir`, its name registered with `quota` as in flight.
pub(crate) fn create_temp(
    dir: impl AsFd,
    path: &RelPath,
    owner: Option<(u32, u32)>,
    quota: &Quota,
) -> Result<(Temporary, File)> {
    let temp = quota.temporary(temp_name());
    let file = create_new(dir, temp.name(), 0o600, path, owner)?;
    Ok((temp, file))
}

/// `fchmod` with the permission bits of `mode`.
pub(crate) fn chmod_fd(fd: impl AsFd, mode: u32, path: &RelPath) -> Result<()> {
    rfs::fchmod(fd, Mode::from_raw_mode(mode & 0o777)).map_err(|e| FilesError::from_errno(path, e))
}

/// Removes a file entry (not a directory), ignoring one already gone; for cleanups.
pub(crate) fn unlink_quietly(dir: impl AsFd, name: &OsStr) {
    if let Err(e) = rfs::unlinkat(dir, name, AtFlags::empty()) {
        if e != Errno::NOENT {
            tracing::warn!(name = %name.to_string_lossy(), error = %e, "could not remove a temporary file");
        }
    }
}

/// Creates a symlink `name` → `target` in `dir`, chowned (the link itself) to `owner`; when
/// the chown fails, the link is removed again.
pub(crate) fn symlink_at(
    dir: impl AsFd,
    name: &OsStr,
    target: &[u8],
    path: &RelPath,
    owner: Option<(u32, u32)>,
) -> Result<()> {
    let dir = dir.as_fd();
    rfs::symlinkat(OsStr::from_bytes(target), dir, name).map_err(|e| FilesError::from_errno(path, e))?;
    if let Some((uid, gid)) = owner {
        rfs::chownat(
            dir,
            name,
            Some(rfs::Uid::from_raw(uid)),
            Some(rfs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| {
            // Not left behind (a `.nexus-tmp-…` name, or a link the caller reports failed).
            unlink_quietly(dir, name);
            FilesError::from_errno(path, e)
        })?;
    }
    Ok(())
}

/// Renames within the root without replacing anything. Falls back to check-then-rename on
/// filesystems without `RENAME_NOREPLACE`; the window there only lets a concurrent writer
/// *inside* the root be overwritten, never an escape (both ends are fd-relative).
pub(crate) fn rename_noreplace(
    from_dir: impl AsFd,
    from: &OsStr,
    to_dir: impl AsFd,
    to: &OsStr,
    path: &RelPath,
) -> Result<()> {
    let (from_dir, to_dir) = (from_dir.as_fd(), to_dir.as_fd());
    match rfs::renameat_with(from_dir, from, to_dir, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
            if try_lstat_at(to_dir, to, path)?.is_some() {
                return Err(FilesError::AlreadyExists { path: path.to_string() });
            }
            rfs::renameat(from_dir, from, to_dir, to).map_err(|e| FilesError::from_errno(path, e))
        }
        Err(e) => Err(FilesError::from_errno(path, e)),
    }
}

/// Moves `from` (in `from_dir`) to `to` (in `to_dir`), replacing the entry there unless it
/// is a directory ([`FilesError::NotAFile`]); returns what it replaced, already unlinked.
///
/// The usage counter must free exactly what left the disk, even when concurrent operations
/// replace or delete `to` meanwhile: so the old entry is swapped under the name `from`
/// (`RENAME_EXCHANGE`), measured there and unlinked by this call, never measured at `to`
/// and then replaced. `from` must be a name nobody else uses (a registered temporary name, or
/// an entry of a staging directory).
pub(crate) fn replace_entry(
    from_dir: impl AsFd,
    from: &OsStr,
    to_dir: impl AsFd,
    to: &OsStr,
    path: &RelPath,
) -> Result<Option<Meta>> {
    let (from_dir, to_dir) = (from_dir.as_fd(), to_dir.as_fd());
    let errno = |e| FilesError::from_errno(path, e);
    // Each round either places the entry or meets one that another operation keeps
    // recreating and deleting at `to`; give up after a few.
    for _ in 0..8 {
        match rfs::renameat_with(from_dir, from, to_dir, to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(None),
            Err(Errno::EXIST) => {}
            Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                return replace_plain(from_dir, from, to_dir, to, path);
            }
            Err(e) => return Err(errno(e)),
        }
        match rfs::renameat_with(from_dir, from, to_dir, to, RenameFlags::EXCHANGE) {
            Ok(()) => {}
            Err(Errno::NOENT) => continue,
            Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                return replace_plain(from_dir, from, to_dir, to, path);
            }
            Err(e) => return Err(errno(e)),
        }
        let old = lstat_at(from_dir, from, path)?;
        if old.kind == Kind::Dir {
            rfs::renameat_with(from_dir, from, to_dir, to, RenameFlags::EXCHANGE).map_err(errno)?;
            return Err(FilesError::NotAFile { path: path.to_string() });
        }
        rfs::unlinkat(from_dir, from, AtFlags::empty()).map_err(errno)?;
        return Ok(Some(old));
    }
    Err(FilesError::Io { path: path.to_string(), source: std::io::Error::other("the target keeps changing") })
}

/// [`replace_entry`] on filesystems without `renameat2` flags: measure, then rename over,
/// both under one process-wide lock so that two replacements never both free the same inode.
fn replace_plain(
    from_dir: BorrowedFd<'_>,
    from: &OsStr,
    to_dir: BorrowedFd<'_>,
    to: &OsStr,
    path: &RelPath,
) -> Result<Option<Meta>> {
    static REPLACING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = REPLACING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let old = try_lstat_at(to_dir, to, path)?;
    rfs::renameat(from_dir, from, to_dir, to).map_err(|e| FilesError::from_errno(path, e))?;
    Ok(old)
}

/// Reads a symlink's target (the link itself, in `dir`).
pub(crate) fn read_link_at(dir: impl AsFd, name: &OsStr, path: &RelPath) -> Result<Vec<u8>> {
    rfs::readlinkat(dir, name, Vec::new()).map(|t| t.into_bytes()).map_err(|e| FilesError::from_errno(path, e))
}

/// The names in a directory, without `.` and `..`.
pub(crate) fn read_dir_names(dir: impl AsFd, path: &RelPath) -> Result<Vec<OsString>> {
    let fd = rfs::openat(dir, c".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| FilesError::from_errno(path, e))?;
    let mut names = Vec::new();
    let mut entries = Dir::new(fd).map_err(|e| FilesError::from_errno(path, e))?;
    while let Some(entry) = entries.read() {
        let entry = entry.map_err(|e| FilesError::from_errno(path, e))?;
        let name: &CStr = entry.file_name();
        if name != c"." && name != c".." {
            names.push(OsStr::from_bytes(name.to_bytes()).to_os_string());
        }
    }
    Ok(names)
}

/// One entry met by [`walk`].
pub(crate) struct WalkEntry<'a> {
    /// The directory holding the entry (confined).
    pub dir: BorrowedFd<'a>,
    pub name: &'a OsStr,
    /// The entry's path relative to where the walk started.
    pub rel: &'a RelPath,
    pub meta: Meta,
}

/// What a walk does at each entry.
pub(crate) trait Visitor {
    /// Called for every entry before its children; returning `true` for a directory walks
    /// into it.
    fn visit(&mut self, entry: &WalkEntry<'_>) -> Result<bool>;
    /// Called after a directory's children.
    fn leave(&mut self, _entry: &WalkEntry<'_>) -> Result<()> {
        Ok(())
    }
}

/// Walks the tree below `dir` (a confined directory fd) depth-first, never following symlinks
/// (each directory is opened with `O_NOFOLLOW` relative to its parent's fd).
pub(crate) fn walk(dir: BorrowedFd<'_>, rel: &RelPath, visitor: &mut dyn Visitor) -> Result<()> {
    walk_level(dir, rel, visitor, 0)
}

fn walk_level(dir: BorrowedFd<'_>, rel: &RelPath, visitor: &mut dyn Visitor, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(FilesError::invalid(rel, format!("directory tree deeper than {MAX_DEPTH} levels")));
    }
    for name in read_dir_names(dir, rel)? {
        let child = rel.join(&name);
        // Gone since readdir (the server process is live): nothing to do for it.
        let Some(meta) = try_lstat_at(dir, &name, &child)? else { continue };
        let entry = WalkEntry { dir, name: &name, rel: &child, meta };
        if visitor.visit(&entry)? && meta.kind == Kind::Dir {
            match open_dir_at(dir, &name, &child) {
                Ok(sub) => walk_level(sub.as_fd(), &child, visitor, depth + 1)?,
                // Gone or swapped since the lstat (the server process is live): nothing below
                // it to walk; a tenant racing `mkdir`/`rmdir` must not make every scan fail.
                Err(FilesError::NotFound { .. } | FilesError::Symlink { .. } | FilesError::NotADirectory { .. }) => {}
                Err(e) => return Err(e),
            }
            visitor.leave(&entry)?;
        }
    }
    Ok(())
}

/// Removes `name` in `dir` and everything below it; returns what it freed from the usage
/// counter (every entry's cost; files with other hard links free nothing). Never follows
/// symlinks: a symlink is unlinked. With `in_flight`, the temporary entries of operations in
/// flight below are removed but not counted: their operations' reservations count them, and
/// give them back when those operations fail for the loss.
pub(crate) fn remove_tree(dir: BorrowedFd<'_>, name: &OsStr, path: &RelPath, in_flight: Option<&Quota>) -> Result<u64> {
    let Some(meta) = try_lstat_at(dir, name, path)? else { return Ok(0) };
    if meta.kind != Kind::Dir {
        rfs::unlinkat(dir, name, AtFlags::empty()).map_err(|e| FilesError::from_errno(path, e))?;
        return Ok(freed_by_unlink(&meta));
    }
    struct Remover<'q> {
        freed: u64,
        in_flight: Option<&'q Quota>,
    }
    impl Visitor for Remover<'_> {
        fn visit(&mut self, e: &WalkEntry<'_>) -> Result<bool> {
            if self.in_flight.is_some_and(|quota| quota.is_in_flight(e.name)) {
                remove_tree(e.dir, e.name, e.rel, None)?;
                return Ok(false);
            }
            if e.meta.kind == Kind::Dir {
                return Ok(true);
            }
            rfs::unlinkat(e.dir, e.name, AtFlags::empty()).map_err(|err| FilesError::from_errno(e.rel, err))?;
            self.freed += freed_by_unlink(&e.meta);
            Ok(false)
        }
        fn leave(&mut self, e: &WalkEntry<'_>) -> Result<()> {
            rfs::unlinkat(e.dir, e.name, AtFlags::REMOVEDIR).map_err(|err| FilesError::from_errno(e.rel, err))?;
            self.freed += freed_by_unlink(&e.meta);
            Ok(())
        }
    }
    let sub = open_dir_at(dir, name, path)?;
    let mut remover = Remover { freed: 0, in_flight };
    walk(sub.as_fd(), path, &mut remover)?;
    drop(sub);
    rfs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(|e| FilesError::from_errno(path, e))?;
    Ok(remover.freed + freed_by_unlink(&meta))
}
