//! The plain operations (list, stat, read, write, rename, copy, delete, mkdir, chmod) and
//! usage scanning, as blocking code on [`Inner`]; `ServerFiles` runs them on the blocking
//! pool.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use chrono::DateTime;

use super::confine::{
    Kind, Meta, Resolve, Resolved, Visitor, WalkEntry, check_content_access, chmod_fd, create_new, create_temp, fstat,
    is_temp_name, lstat_at, make_dir, open_dir_at, open_file_read, read_dir_names, read_link_at, remove_tree,
    rename_noreplace, replace_entry, symlink_at, temp_name, try_lstat_at, unlink_quietly, walk,
};
use super::entry::{FileEntry, FileKind};
use super::error::{FilesError, Result};
use super::path::{RelPath, symlink_target_is_confined};
use super::quota::{ENTRY_COST, Quota, Reservation, Temporary, cost, dir_cost, file_cost, freed_by_unlink, meta_cost};
use super::{Inner, WriteOptions};

/// A write in progress: a temporary file next to its target, renamed over it at the end.
/// Dropped before [`PendingWrite::finish`] placed it (a refusal, an error, an abandoned
/// upload), it removes the temporary file.
pub(crate) struct PendingWrite {
    dir: OwnedFd,
    name: OsString,
    temp: Temporary,
    file: Option<File>,
    /// Canonical path of the target.
    pub path: RelPath,
    mode: u32,
    placed: bool,
}

impl PendingWrite {
    /// The temporary file to write into.
    pub(crate) fn take_file(&mut self) -> Result<File> {
        self.file
            .take()
            .ok_or_else(|| FilesError::Io { path: self.path.to_string(), source: io::Error::other("file taken twice") })
    }

    /// Gives the file its mode and renames it over the target (a symlink there is replaced,
    /// not followed), then settles the reservation: `written` bytes kept, the replaced entry
    /// freed.
    pub(crate) fn finish(
        mut self,
        inner: &Inner,
        file: File,
        reservation: Reservation,
        written: u64,
    ) -> Result<FileEntry> {
        chmod_fd(&file, self.mode, &self.path)?;
        drop(file);
        let replaced = replace_entry(&self.dir, self.temp.name(), &self.dir, &self.name, &self.path)?;
        self.placed = true;
        reservation.settle(file_cost(written), replaced.as_ref().map_or(0, freed_by_unlink));
        inner.describe_at(self.dir.as_fd(), &self.name, &self.path)
    }
}

impl Drop for PendingWrite {
    fn drop(&mut self) {
        if !self.placed {
            unlink_quietly(&self.dir, self.temp.name());
        }
    }
}

impl Inner {
    /// How directories are created on the way to a path.
    pub(crate) fn creating(&self) -> Resolve<'_> {
        Resolve {
            create_parents: true,
            owner: self.owner,
            guard: Some(&self.denylist),
            quota: Some(&self.quota),
            ..Resolve::default()
        }
    }

    pub(crate) fn following(&self) -> Resolve<'_> {
        Resolve { follow_final: true, ..Resolve::default() }
    }

    /// The usage counter, scanning once if needed.
    pub(crate) fn usage(&self) -> Result<u64> {
        self.quota.used(|| self.scan())
    }

    /// The cost of everything below the root (see `quota`).
    pub(crate) fn scan(&self) -> Result<u64> {
        self.scan_until(None)
    }

    /// [`scan`](Self::scan), given up with [`FilesError::ScanTimedOut`] past `deadline`
    /// (when, and the budget it came from).
    pub(crate) fn scan_until(&self, deadline: Option<(std::time::Instant, std::time::Duration)>) -> Result<u64> {
        let total = self.tree_cost_until(self.fs.root_fd(), &RelPath::root(), deadline)?;
        tracing::debug!(root = %self.root_path.display(), bytes = total, "disk usage scanned");
        Ok(total)
    }

    /// Sums the costs of the entries below `dir` (see `quota`), each inode once, skipping
    /// the temporary files of operations in flight (their reservations count them).
    pub(crate) fn tree_cost(&self, dir: BorrowedFd<'_>, rel: &RelPath) -> Result<u64> {
        self.tree_cost_until(dir, rel, None)
    }

    fn tree_cost_until(
        &self,
        dir: BorrowedFd<'_>,
        rel: &RelPath,
        deadline: Option<(std::time::Instant, std::time::Duration)>,
    ) -> Result<u64> {
        struct Scan<'a> {
            quota: &'a Quota,
            total: u64,
            seen: HashSet<(u64, u64)>,
            deadline: Option<(std::time::Instant, std::time::Duration)>,
            visited: u64,
        }
        impl Visitor for Scan<'_> {
            fn visit(&mut self, e: &WalkEntry<'_>) -> Result<bool> {
                self.visited += 1;
                if let Some((deadline, budget)) = self.deadline
                    && self.visited % 256 == 0
                    && std::time::Instant::now() >= deadline
                {
                    return Err(FilesError::ScanTimedOut { budget });
                }
                if self.quota.is_in_flight(e.name) {
                    return Ok(false);
                }
                let m = &e.meta;
                if m.kind != Kind::File || m.nlink <= 1 || self.seen.insert((m.dev, m.ino)) {
                    self.total = self.total.saturating_add(meta_cost(m));
                } else {
                    // Another name of an inode already counted: its content once, but every
                    // name takes its place in a directory (hard links are free to make).
                    self.total = self.total.saturating_add(ENTRY_COST);
                }
                Ok(m.kind == Kind::Dir)
            }
        }
        let mut scan = Scan { quota: &self.quota, total: 0, seen: HashSet::new(), deadline, visited: 0 };
        walk(dir, rel, &mut scan)?;
        Ok(scan.total)
    }

    /// Refuses when any entry below `dir` is denied under any of `bases` (the tree's path
    /// now, and where it would go).
    fn check_tree(&self, dir: BorrowedFd<'_>, bases: &[&RelPath]) -> Result<()> {
        if self.denylist.is_empty() {
            return Ok(());
        }
        struct Check<'a> {
            inner: &'a Inner,
            bases: &'a [&'a RelPath],
        }
        impl Visitor for Check<'_> {
            fn visit(&mut self, e: &WalkEntry<'_>) -> Result<bool> {
                for base in self.bases {
                    self.inner.denylist.check(&base.concat(e.rel), e.meta.kind == Kind::Dir)?;
                }
                Ok(e.meta.kind == Kind::Dir)
            }
        }
        walk(dir, &RelPath::root(), &mut Check { inner: self, bases })
    }

    /// Describes the entry `name` in `dir` (at canonical `path`).
    pub(crate) fn describe_at(&self, dir: BorrowedFd<'_>, name: &OsStr, path: &RelPath) -> Result<FileEntry> {
        let meta = lstat_at(dir, name, path)?;
        Ok(self.describe(name, path, &meta))
    }

    fn describe(&self, name: &OsStr, path: &RelPath, meta: &Meta) -> FileEntry {
        let kind_of = |kind: Kind| match kind {
            Kind::File => FileKind::File,
            Kind::Dir => FileKind::Directory,
            Kind::Symlink => FileKind::Symlink,
            Kind::Special => FileKind::Special,
        };
        let mut entry = FileEntry {
            name: name.to_string_lossy().into_owned(),
            path: path.to_string(),
            kind: kind_of(meta.kind),
            symlink: meta.kind == Kind::Symlink,
            size: meta.size,
            mode: meta.mode,
            modified: DateTime::from_timestamp(meta.mtime, 0),
            denied: self.denylist.is_denied(path, meta.kind == Kind::Dir),
        };
        if entry.symlink {
            // What the link leads to, if it stays inside; otherwise it stays a bare `Symlink`.
            if let Ok(resolved) = self.fs.resolve(path, self.following()) {
                if let Ok(Some(target)) = resolved.meta() {
                    entry.kind = kind_of(target.kind);
                    entry.size = target.size;
                    entry.denied |= self.denylist.is_denied(&resolved.path, target.kind == Kind::Dir);
                }
            }
        }
        entry
    }

    /// Resolves `path` after checking it against the denylist, then checks the canonical path.
    fn resolve_allowed(&self, path: &RelPath, how: Resolve<'_>) -> Result<Resolved<'_>> {
        self.denylist.check(path, false)?;
        let resolved = self.fs.resolve(path, how)?;
        let is_dir = matches!(resolved.meta(), Ok(Some(m)) if m.kind == Kind::Dir);
        self.denylist.check(&resolved.path, is_dir)?;
        Ok(resolved)
    }

    fn existing(resolved: &Resolved<'_>) -> Result<Meta> {
        resolved.meta()?.ok_or_else(|| FilesError::NotFound { path: resolved.path.to_string() })
    }

    pub(crate) fn list(&self, path: &RelPath) -> Result<Vec<FileEntry>> {
        self.denylist.check(path, true)?;
        let (dir, canonical) = self.fs.open_dir(path, Resolve::default())?;
        self.denylist.check(&canonical, true)?;
        let mut entries = Vec::new();
        for name in read_dir_names(&dir, &canonical)?.into_iter().filter(|n| !is_temp_name(n)) {
            let child = canonical.join(&name);
            if let Some(meta) = try_lstat_at(&dir, &name, &child)? {
                entries.push(self.describe(&name, &child, &meta));
            }
        }
        entries.sort_by(|a, b| {
            (b.kind == FileKind::Directory).cmp(&(a.kind == FileKind::Directory)).then(a.name.cmp(&b.name))
        });
        Ok(entries)
    }

    pub(crate) fn stat(&self, path: &RelPath) -> Result<FileEntry> {
        let resolved = self.fs.resolve(path, Resolve::default())?;
        let meta = Self::existing(&resolved)?;
        let name = resolved.name.clone().unwrap_or_default();
        Ok(self.describe(&name, &resolved.path, &meta))
    }

    pub(crate) fn open_read(&self, path: &RelPath) -> Result<(FileEntry, File)> {
        let resolved = self.resolve_allowed(path, self.following())?;
        let name = resolved.name.as_deref().ok_or_else(|| FilesError::NotAFile { path: path.to_string() })?;
        let (file, meta) = open_file_read(&resolved.parent, name, &resolved.path)?;
        Ok((self.describe(name, &resolved.path, &meta), file))
    }

    pub(crate) fn read(&self, path: &RelPath, max: u64) -> Result<Vec<u8>> {
        let (entry, file) = self.open_read(path)?;
        let too_large = |size| FilesError::TooLarge { path: entry.path.clone(), size, max };
        if entry.size > max {
            return Err(too_large(entry.size));
        }
        let mut data = Vec::new();
        file.take(max.saturating_add(1)).read_to_end(&mut data).map_err(|e| FilesError::from_io(&entry.path, e))?;
        if data.len() as u64 > max {
            return Err(too_large(data.len() as u64));
        }
        Ok(data)
    }

    /// Checks and prepares a write of `path` expected to hold `size` bytes: the whole new
    /// file reserved (the file it replaces is freed only once replaced), parents created,
    /// target checked, temporary file opened next to it.
    pub(crate) fn prepare_write(&self, path: &RelPath, size: u64) -> Result<(PendingWrite, Reservation)> {
        self.prepare_write_at(path, size, false)
    }

    /// [`prepare_write`](Self::prepare_write); with `replace_symlink`, a symlink at the final
    /// path is replaced by the new file instead of followed (the components before it are
    /// resolved as always).
    pub(crate) fn prepare_write_at(
        &self,
        path: &RelPath,
        size: u64,
        replace_symlink: bool,
    ) -> Result<(PendingWrite, Reservation)> {
        self.usage()?;
        let reservation = self.quota.reserve(file_cost(size))?;
        let resolved = self.resolve_allowed(path, Resolve { follow_final: !replace_symlink, ..self.creating() })?;
        let name = resolved.entry_name()?.to_os_string();
        let mode = match resolved.meta()? {
            None => 0o644,
            Some(meta) if replace_symlink && meta.kind == Kind::Symlink => 0o644,
            Some(meta) => {
                check_content_access(&meta, &resolved.path)?;
                meta.mode & 0o777
            }
        };
        let dir = resolved.parent.into_owned(&resolved.path)?;
        let (temp, file) = create_temp(&dir, &resolved.path, self.owner, &self.quota)?;
        let pending = PendingWrite { dir, name, temp, file: Some(file), path: resolved.path, mode, placed: false };
        Ok((pending, reservation))
    }

    /// Writes `path` with what `fill` writes into it (see [`ServerFiles::write_with`]).
    pub(crate) fn write_with(
        &self,
        path: &RelPath,
        options: WriteOptions,
        fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<FileEntry> {
        let (mut pending, reservation) =
            self.prepare_write_at(path, options.size_hint.unwrap_or(0), options.replace_symlink)?;
        if let Some(mode) = options.mode {
            pending.mode = mode & 0o777;
        }
        let file = pending.take_file()?;
        let mut writer = QuotaWriter { file, reservation, written: 0 };
        fill(&mut writer).map_err(|e| FilesError::from_io(&pending.path, e))?;
        writer.file.flush().map_err(|e| FilesError::from_io(&pending.path, e))?;
        let QuotaWriter { file, reservation, written } = writer;
        pending.finish(self, file, reservation, written)
    }

    /// Creates or replaces (a file or a symlink, never a directory) the symlink `path` →
    /// `target`. The link itself is replaced, never followed; the target must stay inside the
    /// root when read lexically from where the link really is.
    pub(crate) fn symlink(&self, path: &RelPath, target: &str) -> Result<FileEntry> {
        self.usage()?;
        if target.split('/').any(|c| is_temp_name(OsStr::new(c))) {
            return Err(FilesError::invalid(path, "the symlink target names a reserved temporary name"));
        }
        let resolved = self.resolve_allowed(path, self.creating())?;
        let name = resolved.entry_name()?.to_os_string();
        if !symlink_target_is_confined(&resolved.path, target.as_bytes()) {
            return Err(FilesError::outside(path));
        }
        if let Some(meta) = resolved.meta()? {
            if meta.kind == Kind::Dir {
                return Err(FilesError::NotAFile { path: resolved.path.to_string() });
            }
        }
        let dir = resolved.parent.into_owned(&resolved.path)?;
        let link_cost = cost(Kind::Symlink, target.len() as u64);
        let reservation = self.quota.reserve(link_cost)?;
        let temp = self.quota.temporary(temp_name());
        symlink_at(&dir, temp.name(), target.as_bytes(), &resolved.path, self.owner)?;
        let replaced = match replace_entry(&dir, temp.name(), &dir, &name, &resolved.path) {
            Ok(replaced) => replaced,
            Err(e) => {
                unlink_quietly(&dir, temp.name());
                return Err(e);
            }
        };
        reservation.settle(link_cost, replaced.as_ref().map_or(0, freed_by_unlink));
        self.describe_at(dir.as_fd(), &name, &resolved.path)
    }

    pub(crate) fn write(&self, path: &RelPath, data: &[u8]) -> Result<FileEntry> {
        let (mut pending, reservation) = self.prepare_write(path, data.len() as u64)?;
        let mut file = pending.take_file()?;
        file.write_all(data).map_err(|e| FilesError::from_io(&pending.path, e))?;
        pending.finish(self, file, reservation, data.len() as u64)
    }

    pub(crate) fn rename(&self, from: &RelPath, to: &RelPath) -> Result<()> {
        self.usage()?;
        self.denylist.check(to, false)?;
        let src = self.resolve_allowed(from, Resolve::default())?;
        let src_name = src.entry_name()?;
        let is_dir = Self::existing(&src)?.kind == Kind::Dir;
        let dst = self.resolve_allowed(to, self.creating())?;
        let dst_name = dst.entry_name()?;
        self.denylist.check(&dst.path, is_dir)?;
        if is_dir {
            if dst.path.starts_with(&src.path) {
                return Err(FilesError::invalid(to, "cannot move a directory into itself"));
            }
            let tree = open_dir_at(&src.parent, src_name, &src.path)?;
            self.check_tree(tree.as_fd(), &[&src.path, &dst.path])?;
        }
        rename_noreplace(&src.parent, src_name, &dst.parent, dst_name, &dst.path)
    }

    pub(crate) fn delete(&self, path: &RelPath) -> Result<()> {
        let resolved = self.resolve_allowed(path, Resolve::default())?;
        let name = resolved.entry_name()?;
        if Self::existing(&resolved)?.kind == Kind::Dir {
            let tree = open_dir_at(&resolved.parent, name, &resolved.path)?;
            self.check_tree(tree.as_fd(), &[&resolved.path])?;
        }
        let freed = remove_tree(resolved.parent.as_fd(), name, &resolved.path, Some(&self.quota))?;
        self.quota.release(freed);
        Ok(())
    }

    pub(crate) fn mkdir(&self, path: &RelPath) -> Result<FileEntry> {
        self.usage()?;
        self.denylist.check(path, true)?;
        let resolved = self.resolve_allowed(path, Resolve { follow_final: true, ..self.creating() })?;
        self.denylist.check(&resolved.path, true)?;
        let Some(name) = resolved.name.as_deref() else {
            return self.stat(&RelPath::root());
        };
        match resolved.meta()? {
            Some(meta) if meta.kind == Kind::Dir => {}
            Some(_) => return Err(FilesError::AlreadyExists { path: resolved.path.to_string() }),
            None => {
                drop(self.quota.charged(dir_cost(), || make_dir(&resolved.parent, name, &resolved.path, self.owner))?)
            }
        }
        self.describe_at(resolved.parent.as_fd(), name, &resolved.path)
    }

    pub(crate) fn chmod(&self, path: &RelPath, mode: u32) -> Result<()> {
        if mode & !0o777 != 0 {
            return Err(FilesError::InvalidMode { mode });
        }
        let resolved = self.resolve_allowed(path, self.following())?;
        let name = resolved.entry_name()?;
        let meta = Self::existing(&resolved)?;
        match meta.kind {
            Kind::Dir => {
                let dir = open_dir_at(&resolved.parent, name, &resolved.path)?;
                if !fstat(&dir, &resolved.path)?.same_inode(&meta) {
                    return Err(FilesError::Symlink { path: resolved.path.to_string() });
                }
                chmod_fd(&dir, mode, &resolved.path)
            }
            _ => {
                let (file, _) = open_file_read(&resolved.parent, name, &resolved.path)?;
                chmod_fd(&file, mode, &resolved.path)
            }
        }
    }

    pub(crate) fn copy(&self, from: &RelPath, to: &RelPath) -> Result<FileEntry> {
        self.usage()?;
        self.denylist.check(to, false)?;
        let src = self.resolve_allowed(from, self.following())?;
        let src_name = src.entry_name()?;
        let meta = Self::existing(&src)?;
        let dst = self.resolve_allowed(to, self.creating())?;
        let dst_name = dst.entry_name()?;
        self.denylist.check(&dst.path, meta.kind == Kind::Dir)?;
        if try_lstat_at(&dst.parent, dst_name, &dst.path)?.is_some() {
            return Err(FilesError::AlreadyExists { path: dst.path.to_string() });
        }
        let mut reservation = self.quota.reserve(0)?;
        match meta.kind {
            Kind::Dir => {
                if dst.path.starts_with(&src.path) {
                    return Err(FilesError::invalid(to, "cannot copy a directory into itself"));
                }
                let tree = open_dir_at(&src.parent, src_name, &src.path)?;
                self.check_tree(tree.as_fd(), &[&src.path, &dst.path])?;
                let staging = self.quota.temporary(temp_name());
                reservation.grow(dir_cost())?;
                let (top, _) = make_dir(&dst.parent, staging.name(), &dst.path, self.owner)?;
                chmod_fd(&top, meta.mode, &dst.path)?;
                let mut copier = TreeCopy {
                    inner: self,
                    src_base: &src.path,
                    dst_base: &dst.path,
                    stack: vec![top],
                    reservation: &mut reservation,
                };
                let copied = walk(tree.as_fd(), &src.path, &mut copier)
                    .and_then(|()| rename_noreplace(&dst.parent, staging.name(), &dst.parent, dst_name, &dst.path));
                if let Err(e) = copied {
                    if let Err(cleanup) = remove_tree(dst.parent.as_fd(), staging.name(), &dst.path, None) {
                        tracing::warn!(path = %dst.path, error = %cleanup, "could not remove a partial copy");
                    }
                    return Err(e);
                }
            }
            _ => {
                let (mut file, meta) = open_file_read(&src.parent, src_name, &src.path)?;
                reservation.grow(file_cost(meta.size))?;
                let (temp, mut out) = create_temp(&dst.parent, &dst.path, self.owner, &self.quota)?;
                let copied = copy_exact(&mut file, &mut out, meta.size, &dst.path)
                    .and_then(|()| chmod_fd(&out, meta.mode, &dst.path))
                    .and_then(|()| rename_noreplace(&dst.parent, temp.name(), &dst.parent, dst_name, &dst.path));
                if let Err(e) = copied {
                    unlink_quietly(&dst.parent, temp.name());
                    return Err(e);
                }
            }
        }
        reservation.commit();
        self.describe_at(dst.parent.as_fd(), dst_name, &dst.path)
    }
}

/// The temporary file of a [`Inner::write_with`], growing the quota reservation before
/// every chunk: a writer that writes more than its size hint is stopped at the quota.
struct QuotaWriter {
    file: File,
    reservation: Reservation,
    written: u64,
}

impl Write for QuotaWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let after = self.written.saturating_add(buf.len() as u64);
        self.reservation.ensure(file_cost(after)).map_err(FilesError::into_io)?;
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Copies `size` bytes (the size when the source was opened; a file growing meanwhile is
/// copied as it was, so the reservation holds).
pub(crate) fn copy_exact(from: &mut File, to: &mut File, size: u64, path: &RelPath) -> Result<()> {
    io::copy(&mut from.take(size), to).map_err(|e| FilesError::from_io(path, e))?;
    Ok(())
}

/// Copies a directory tree into a fresh directory, entry by entry, through fds on both sides.
struct TreeCopy<'a> {
    inner: &'a Inner,
    /// Canonical path of the source tree (walk paths start with it).
    src_base: &'a RelPath,
    /// Canonical path of the copy's final place (symlink targets are checked against it).
    dst_base: &'a RelPath,
    /// Destination directories; the top is where the current source directory is copied.
    stack: Vec<OwnedFd>,
    reservation: &'a mut Reservation,
}

impl Visitor for TreeCopy<'_> {
    fn visit(&mut self, e: &WalkEntry<'_>) -> Result<bool> {
        if is_temp_name(e.name) {
            return Ok(false);
        }
        let dst_path = self.dst_base.concat(&e.rel.strip_prefix(self.src_base).unwrap_or_default());
        let Some(dir) = self.stack.last() else { return Ok(false) };
        match e.meta.kind {
            Kind::Dir => {
                self.reservation.grow(dir_cost())?;
                let (sub, _) = make_dir(dir, e.name, &dst_path, self.inner.owner)?;
                chmod_fd(&sub, e.meta.mode, &dst_path)?;
                self.stack.push(sub);
                Ok(true)
            }
            Kind::File => {
                let (mut file, meta) = open_file_read(e.dir, e.name, e.rel)?;
                self.reservation.grow(file_cost(meta.size))?;
                let mut out = create_new(dir, e.name, meta.mode, &dst_path, self.inner.owner)?;
                copy_exact(&mut file, &mut out, meta.size, &dst_path)?;
                Ok(false)
            }
            Kind::Symlink => {
                let target = read_link_at(e.dir, e.name, e.rel)?;
                if !symlink_target_is_confined(&dst_path, &target) {
                    return Err(FilesError::outside(e.rel));
                }
                self.reservation.grow(cost(Kind::Symlink, target.len() as u64))?;
                symlink_at(dir, e.name, &target, &dst_path, self.inner.owner)?;
                Ok(false)
            }
            Kind::Special => Err(FilesError::SpecialFile { path: e.rel.to_string() }),
        }
    }

    fn leave(&mut self, _e: &WalkEntry<'_>) -> Result<()> {
        self.stack.pop();
        Ok(())
    }
}
