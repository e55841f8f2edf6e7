//! Decompression: all or nothing, inside the root, within limits.
//!
//! Entries are written into a fresh staging directory (a temporary name inside the
//! destination) through fds, never following a symlink there. Every entry name is checked
//! strictly ([`RelPath::parse_entry`]), every entry type is checked (regular files,
//! directories and in-root symlinks only), and the limits are enforced while reading:
//! declared sizes before any byte is written, the real output of the decompressor against
//! the compressed input (ratio) as it is produced, and the bytes read between two entries
//! (tar extension headers are buffered in memory by the tar reader). Symlink entries are
//! created last, after every file, so no entry can be written through one, and an entry
//! below a symlink entry refuses the archive. Only when all of that passed are the staged
//! entries moved into the destination (a dry run first, so that a conflict is found before
//! anything moves). Any refusal removes the staging directory and gives back its quota.
//!
//! Every entry is reserved at its cost (see `quota`) before it is created: files, directories
//! (named ones and the parents an entry name implies), symlinks, and the staging directory.
//! Afterwards the usage counter keeps what was staged minus what the cleanup removed (staged
//! directories merged into existing ones), and frees the files that were replaced.

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;

use rustix::fs as rfs;

use super::Inner;
use super::archive::{ArchiveFormat, ArchiveLimits};
use super::confine::{
    DirFd, Kind, Resolve, TEMP_PREFIX, chmod_fd, create_new, is_temp_name, lstat_at, make_dir, open_dir_at,
    open_parents, read_dir_names, remove_tree, rename_noreplace, replace_entry, symlink_at, temp_name, try_lstat_at,
};
use super::entry::ExtractSummary;
use super::error::{FilesError, Result};
use super::path::{RelPath, symlink_target_is_confined};
use super::quota::{Reservation, cost, dir_cost, file_cost, freed_by_unlink};

/// Bytes a tar stream may spend on headers between two entries (long names, PAX records).
const HEADER_BUDGET: u64 = 1 << 20;
/// Longest symlink target read from a zip entry.
const MAX_LINK_TARGET: u64 = 4096;
/// Longest symlink target accepted from any archive entry (`PATH_MAX` less its NUL: the
/// kernel refuses longer ones anyway).
const MAX_SYMLINK_TARGET: usize = 4095;
/// Bytes of symlink entries (names and targets) held until the symlinks are created at the
/// end of an extraction.
pub(crate) const MAX_SYMLINK_BYTES: u64 = 16 << 20;

/// Byte counts shared by the reader under the decompressor and the one above it.
#[derive(Default)]
struct Meter {
    compressed: Cell<u64>,
    out: Cell<u64>,
    /// Bytes the tar reader may still pull before the next checkpoint.
    allowance: Cell<u64>,
}

/// Counts compressed bytes read from the archive file.
struct Compressed<R> {
    inner: R,
    meter: Rc<Meter>,
}

impl<R: Read> Read for Compressed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.compressed.set(self.meter.compressed.get() + n as u64);
        Ok(n)
    }
}

/// Sits on the decompressor's output: enforces the ratio and the per-step allowance.
struct Guard<R> {
    inner: R,
    meter: Rc<Meter>,
    limits: ArchiveLimits,
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let allowance = self.meter.allowance.get();
        if allowance == 0 && !buf.is_empty() {
            return Err(FilesError::rejected("tar headers larger than allowed between entries").into_io());
        }
        let max = buf.len().min(usize::try_from(allowance).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.meter.allowance.set(allowance - n as u64);
        let out = self.meter.out.get() + n as u64;
        self.meter.out.set(out);
        self.limits.check_ratio(out, self.meter.compressed.get(), "the archive").map_err(FilesError::into_io)?;
        Ok(n)
    }
}

/// Maps an error from reading an archive: our own refusals pass through, OS errors stay
/// I/O errors, anything else means the archive is corrupt.
fn archive_error(path: &RelPath, e: io::Error) -> FilesError {
    if e.get_ref().is_some_and(|inner| inner.is::<FilesError>()) || e.raw_os_error().is_some() {
        return FilesError::from_io(path, e);
    }
    FilesError::rejected(format!("unreadable archive: {e}"))
}

fn zip_error(path: &RelPath, e: zip::result::ZipError) -> FilesError {
    match e {
        zip::result::ZipError::Io(e) => archive_error(path, e),
        other => FilesError::rejected(format!("unreadable zip: {other}")),
    }
}

/// The staging directory and what has been extracted into it.
struct Stage<'a> {
    inner: &'a Inner,
    staging: BorrowedFd<'a>,
    /// Canonical destination directory (denylist and symlink checks use final paths).
    dest: &'a RelPath,
    limits: &'a ArchiveLimits,
    reservation: &'a mut Reservation,
    /// Bytes reserved up front (zip) not yet used by entries.
    prereserved: u64,
    /// Symlink entries, created at the end.
    symlinks: Vec<(RelPath, Vec<u8>)>,
    symlink_paths: HashSet<RelPath>,
    /// Bytes held in `symlinks` and `symlink_paths` (bounded by [`MAX_SYMLINK_BYTES`]).
    symlink_bytes: u64,
    entries: u64,
    /// Bytes of file content on disk in the staging directory.
    bytes: u64,
    /// Bytes of content accepted so far (what `max_total_bytes` bounds).
    total: u64,
}

impl<'a> Stage<'a> {
    /// An empty stage in `staging`, entries going to `dest`.
    fn new(
        inner: &'a Inner,
        staging: BorrowedFd<'a>,
        dest: &'a RelPath,
        limits: &'a ArchiveLimits,
        reservation: &'a mut Reservation,
    ) -> Self {
        Self {
            inner,
            staging,
            dest,
            limits,
            reservation,
            prereserved: 0,
            symlinks: Vec::new(),
            symlink_paths: HashSet::new(),
            symlink_bytes: 0,
            entries: 0,
            bytes: 0,
            total: 0,
        }
    }

    fn begin(&mut self, path: &RelPath, is_dir: bool) -> Result<()> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(FilesError::rejected(format!("more than {} entries", self.limits.max_entries)));
        }
        if path.components().iter().any(|c| is_temp_name(c)) {
            return Err(FilesError::rejected(format!(
                "entry `{path}`: names starting with `{TEMP_PREFIX}` are reserved"
            )));
        }
        let mut prefix = RelPath::root();
        for part in path.components() {
            prefix = prefix.join(part);
            if self.symlink_paths.contains(&prefix) {
                return Err(FilesError::rejected(format!("entry `{path}` lies below or on symlink entry `{prefix}`")));
            }
        }
        self.inner.denylist.check(&self.dest.concat(path), is_dir)
    }

    /// Reserves `bytes` for the next entry, from what was reserved up front first.
    fn charge(&mut self, bytes: u64) -> Result<()> {
        let from_prereserved = bytes.min(self.prereserved);
        self.prereserved -= from_prereserved;
        self.reservation.grow(bytes - from_prereserved)
    }

    /// The staged parent directory of `path` (created as needed) and its last name.
    fn parent(&mut self, path: &RelPath) -> Result<(DirFd<'a>, OsString)> {
        let parents = path.parent();
        let name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        let (staging, owner) = (self.staging, self.inner.owner);
        let dir =
            open_parents(staging, parents.components(), path, owner, &mut || self.charge(dir_cost())).map_err(|e| {
                match e {
                    quota @ FilesError::QuotaExceeded { .. } => quota,
                    other => FilesError::rejected(format!("entry `{path}`: {other}")),
                }
            })?;
        Ok((dir, name))
    }

    fn dir(&mut self, path: &RelPath, mode: u32) -> Result<()> {
        self.begin(path, true)?;
        let (parent, name) = self.parent(path)?;
        let dir = match try_lstat_at(&parent, &name, path)? {
            Some(meta) if meta.kind == Kind::Dir => open_dir_at(&parent, &name, path)?,
            Some(_) => return Err(FilesError::rejected(format!("entry `{path}` is both a file and a directory"))),
            None => {
                self.charge(dir_cost())?;
                make_dir(&parent, &name, path, self.inner.owner)?.0
            }
        };
        chmod_fd(&dir, mode | 0o700, path)
    }

    fn file(&mut self, path: &RelPath, mode: u32, size: u64, data: &mut dyn Read) -> Result<()> {
        self.begin(path, false)?;
        self.total = self.total.saturating_add(size);
        if self.total > self.limits.max_total_bytes {
            return Err(FilesError::rejected(format!(
                "more than {} bytes of content (entry `{path}` declares {size})",
                self.limits.max_total_bytes
            )));
        }
        self.charge(file_cost(size))?;
        let (parent, name) = self.parent(path)?;
        if let Some(existing) = try_lstat_at(&parent, &name, path)? {
            // A later entry of the same name wins, as with tar itself.
            if existing.kind == Kind::Dir {
                return Err(FilesError::rejected(format!("entry `{path}` is both a directory and a file")));
            }
            rfs::unlinkat(&parent, &name, rfs::AtFlags::empty()).map_err(|e| FilesError::from_errno(path, e))?;
            self.bytes = self.bytes.saturating_sub(existing.size);
        }
        let mut out = create_new(&parent, &name, mode, path, self.inner.owner)?;
        let copied = io::copy(&mut data.take(size), &mut out).map_err(|e| FilesError::from_io(path, e))?;
        if copied < size {
            return Err(FilesError::rejected(format!("entry `{path}` is truncated")));
        }
        let mut extra = [0u8; 1];
        if data.read(&mut extra).map_err(|e| FilesError::from_io(path, e))? > 0 {
            return Err(FilesError::rejected(format!("entry `{path}` holds more data than it declares")));
        }
        self.bytes += size;
        Ok(())
    }

    fn symlink(&mut self, path: &RelPath, target: Vec<u8>) -> Result<()> {
        self.begin(path, false)?;
        if target.len() > MAX_SYMLINK_TARGET {
            return Err(FilesError::rejected(format!(
                "symlink entry `{path}` has a target of {} bytes, more than {MAX_SYMLINK_TARGET}",
                target.len()
            )));
        }
        // Held until the end (symlinks are created last): the name twice, and the target.
        let held = (path.to_string().len() as u64).saturating_mul(2).saturating_add(target.len() as u64);
        self.symlink_bytes = self.symlink_bytes.saturating_add(held);
        if self.symlink_bytes > MAX_SYMLINK_BYTES {
            return Err(FilesError::TooLarge {
                path: "(the archive's symlink entries, names and targets)".into(),
                size: self.symlink_bytes,
                max: MAX_SYMLINK_BYTES,
            });
        }
        if !symlink_target_is_confined(&self.dest.concat(path), &target) {
            return Err(FilesError::rejected(format!(
                "symlink entry `{path}` points outside the root (`{}`)",
                String::from_utf8_lossy(&target)
            )));
        }
        self.symlink_paths.insert(path.clone());
        self.symlinks.push((path.clone(), target));
        Ok(())
    }

    fn create_symlinks(&mut self) -> Result<()> {
        for (path, target) in std::mem::take(&mut self.symlinks) {
            let (parent, name) = self.parent(&path)?;
            if try_lstat_at(&parent, &name, &path)?.is_some() {
                return Err(FilesError::rejected(format!("symlink entry `{path}` conflicts with another entry")));
            }
            self.charge(cost(Kind::Symlink, target.len() as u64))?;
            symlink_at(&parent, &name, &target, &path, self.inner.owner)?;
        }
        Ok(())
    }
}

/// Extracts the tar stream `reader` (compressed as `format`) into the empty directory
/// `staging`, by every rule of [`Inner::decompress`] (entry names, types, symlinks last and
/// never below one, the denylist at `dest`, `limits`, each entry reserved in `reservation`
/// before it is created), without moving anything out of `staging`. For restores
/// (`backup.rs`), whose staging directory is not below the root.
#[allow(clippy::too_many_arguments, reason = "the parts of a `Stage`, built here")]
pub(crate) fn extract_tar_into(
    inner: &Inner,
    staging: BorrowedFd<'_>,
    dest: &RelPath,
    limits: &ArchiveLimits,
    reservation: &mut Reservation,
    reader: impl Read,
    format: ArchiveFormat,
    archive: &RelPath,
) -> Result<ExtractSummary> {
    let mut stage = Stage::new(inner, staging, dest, limits, reservation);
    let read = extract_tar(reader, format, &mut stage, archive)?;
    // Even an empty tar stream has its end-of-archive block: nothing at all is no archive
    // (an empty object must not restore to an empty tree).
    if read < 512 {
        return Err(FilesError::rejected("the archive is empty: not even a tar end-of-archive block"));
    }
    stage.create_symlinks()?;
    Ok(ExtractSummary { entries: stage.entries, bytes: stage.bytes })
}

/// Extracts a tar stream into `stage`; returns the bytes of tar stream read.
fn extract_tar<R: Read>(file: R, format: ArchiveFormat, stage: &mut Stage<'_>, archive: &RelPath) -> Result<u64> {
    let meter = Rc::new(Meter::default());
    let compressed = Compressed { inner: BufReader::new(file), meter: Rc::clone(&meter) };
    let decoder: Box<dyn Read + '_> = match format {
        // Multi-member: pigz and friends write concatenated gzip members.
        ArchiveFormat::TarGz => Box::new(flate2::read::MultiGzDecoder::new(compressed)),
        ArchiveFormat::TarZst => {
            Box::new(zstd::stream::read::Decoder::new(compressed).map_err(|e| archive_error(archive, e))?)
        }
        _ => Box::new(compressed),
    };
    let guard = Guard { inner: decoder, meter: Rc::clone(&meter), limits: stage.limits.clone() };
    let mut tar = tar::Archive::new(guard);
    let mut entries = tar.entries().map_err(|e| archive_error(archive, e))?;
    loop {
        meter.allowance.set(HEADER_BUDGET);
        let Some(entry) = entries.next() else { break };
        let mut entry = entry.map_err(|e| archive_error(archive, e))?;
        let size = entry.size();
        meter.allowance.set(size);
        let Some(path) = RelPath::parse_entry(&entry.path_bytes(), stage.limits.max_depth)? else { continue };
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        use tar::EntryType as T;
        match entry.header().entry_type() {
            T::Regular | T::Continuous => stage.file(&path, mode, size, &mut entry)?,
            T::Directory => stage.dir(&path, mode)?,
            T::Symlink => {
                let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                stage.symlink(&path, target)?;
            }
            T::Link => return Err(FilesError::rejected(format!("hard link entry `{path}`"))),
            T::Char | T::Block | T::Fifo => {
                return Err(FilesError::rejected(format!("device or fifo entry `{path}`")));
            }
            // PAX global headers carry defaults we do not use.
            T::XGlobalHeader => {}
            other => return Err(FilesError::rejected(format!("entry `{path}` has unsupported type {other:?}"))),
        }
    }
    Ok(meter.out.get())
}

const S_IFMT: u32 = 0o170_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;

fn extract_zip(file: File, archive_len: u64, stage: &mut Stage<'_>, archive: &RelPath) -> Result<()> {
    let limits = stage.limits.clone();
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| zip_error(archive, e))?;
    if zip.len() as u64 > limits.max_entries {
        return Err(FilesError::rejected(format!("more than {} entries", limits.max_entries)));
    }
    // The central directory declares every size: refuse bombs before writing anything.
    let mut declared = 0u64;
    let mut costs = 0u64;
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i).map_err(|e| zip_error(archive, e))?;
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        if entry.encrypted() {
            return Err(FilesError::rejected(format!("entry `{name}` is encrypted")));
        }
        declared = declared.saturating_add(entry.size());
        costs = costs.saturating_add(file_cost(entry.size()));
        if declared > limits.max_total_bytes {
            return Err(FilesError::rejected(format!(
                "more than {} bytes of content (entry `{name}` declares {})",
                limits.max_total_bytes,
                entry.size()
            )));
        }
        limits.check_ratio(entry.size(), entry.compressed_size(), &format!("entry `{name}`"))?;
    }
    limits.check_ratio(declared, archive_len, "the archive")?;
    stage.reservation.grow(costs)?;
    stage.prereserved = costs;

    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| zip_error(archive, e))?;
        let raw = entry.name_raw().to_vec();
        let Some(path) = RelPath::parse_entry(&raw, limits.max_depth)? else { continue };
        let unix = entry.unix_mode();
        let kind = unix.map(|m| m & S_IFMT).filter(|t| *t != 0);
        let mode = unix.map(|m| m & 0o777).filter(|m| *m != 0);
        let is_dir = raw.last().is_some_and(|b| *b == b'/' || *b == b'\\');
        match kind {
            Some(S_IFLNK) => {
                let mut target = Vec::new();
                entry.by_ref().take(MAX_LINK_TARGET).read_to_end(&mut target).map_err(|e| archive_error(archive, e))?;
                stage.symlink(&path, target)?;
            }
            Some(S_IFDIR) | None if is_dir => stage.dir(&path, mode.unwrap_or(0o755))?,
            Some(S_IFREG) | None => {
                let size = entry.size();
                stage.file(&path, mode.unwrap_or(0o644), size, &mut entry)?;
            }
            Some(S_IFDIR) => stage.dir(&path, mode.unwrap_or(0o755))?,
            Some(_) => return Err(FilesError::rejected(format!("device, fifo or socket entry `{path}`"))),
        }
    }
    Ok(())
}

impl Inner {
    pub(crate) fn decompress(&self, archive: &RelPath, destination: &RelPath) -> Result<ExtractSummary> {
        self.usage()?;
        let (entry, mut file) = self.open_read(archive)?;
        let format = ArchiveFormat::detect(&mut file, archive)?;
        let existed = self.fs.resolve(destination, self.following())?.meta()?.is_some();
        self.mkdir(destination)?;
        let result = self.extract_into(archive, destination, file, entry.size, format);
        if result.is_err() && !existed {
            // A refused archive leaves no trace: drop the destination this call created (only
            // if still empty; parents it created on the way stay, empty).
            if let Ok(created) = self.fs.resolve(destination, Resolve::default()) {
                if let Some(name) = &created.name {
                    if rfs::unlinkat(&created.parent, name, rfs::AtFlags::REMOVEDIR).is_ok() {
                        self.quota.release(dir_cost());
                    }
                }
            }
        }
        result
    }

    fn extract_into(
        &self,
        archive: &RelPath,
        destination: &RelPath,
        file: File,
        archive_len: u64,
        format: ArchiveFormat,
    ) -> Result<ExtractSummary> {
        let (dest_fd, dest_path) = self.fs.open_dir(destination, Resolve::default())?;
        self.denylist.check(&dest_path, true)?;

        let staging_name = self.quota.temporary(temp_name());
        let mut reservation = self.quota.reserve(dir_cost())?;
        let (staging, _) = make_dir(&dest_fd, staging_name.name(), &dest_path, self.owner)?;
        let mut stage = Stage::new(self, staging.as_fd(), &dest_path, &self.limits, &mut reservation);
        let staged = match format {
            ArchiveFormat::Zip => extract_zip(file, archive_len, &mut stage, archive),
            _ => extract_tar(file, format, &mut stage, archive).map(|_| ()),
        }
        .and_then(|()| stage.create_symlinks());
        let (entries, bytes) = (stage.entries, stage.bytes);
        let outcome = staged.and_then(|()| {
            // What was staged, measured as a scan would (the staging directory included),
            // before anything moves: a merge failing half-way leaves part of it in place.
            let staged_cost = dir_cost() + self.tree_cost(staging.as_fd(), &dest_path)?;
            let mut replaced = 0;
            let merged = merge(staging.as_fd(), dest_fd.as_fd(), &dest_path, true, &mut replaced)
                .and_then(|()| merge(staging.as_fd(), dest_fd.as_fd(), &dest_path, false, &mut replaced));
            Ok((staged_cost, replaced, merged))
        });
        drop(staging);
        let left = remove_tree(dest_fd.as_fd(), staging_name.name(), &dest_path, None).unwrap_or_else(|e| {
            tracing::warn!(path = %dest_path, error = %e, "could not remove an extraction staging directory");
            0
        });
        let (staged_cost, replaced, merged) = outcome?;
        // Kept: whatever is no longer in the staging directory (moved into the destination);
        // a staging directory that could not be removed stays counted, it is still on disk.
        reservation.settle(staged_cost.saturating_sub(left), replaced);
        merged?;
        Ok(ExtractSummary { entries, bytes })
    }
}

/// Moves everything in `from` into `to`, merging directories and replacing files and
/// symlinks; a directory against a non-directory is a conflict. With `dry_run` nothing moves:
/// it only finds conflicts, so that the real run does not stop half-way.
fn merge(from: BorrowedFd<'_>, to: BorrowedFd<'_>, to_path: &RelPath, dry_run: bool, replaced: &mut u64) -> Result<()> {
    for name in read_dir_names(from, to_path)? {
        let target = to_path.join(&name);
        let staged = lstat_at(from, &name, &target)?;
        match try_lstat_at(to, &name, &target)? {
            None if dry_run => {}
            None => rename_noreplace(from, &name, to, &name, &target)?,
            Some(existing) if staged.kind == Kind::Dir && existing.kind == Kind::Dir => {
                let sub_from: OwnedFd = open_dir_at(from, &name, &target)?;
                let sub_to: OwnedFd = open_dir_at(to, &name, &target)?;
                merge(sub_from.as_fd(), sub_to.as_fd(), &target, dry_run, replaced)?;
            }
            Some(existing) if staged.kind != Kind::Dir && matches!(existing.kind, Kind::File | Kind::Symlink) => {
                if !dry_run {
                    // Replaces the entry itself; a symlink there is replaced, not followed.
                    let old = replace_entry(from, &name, to, &name, &target)?;
                    *replaced += old.as_ref().map_or(0, freed_by_unlink);
                }
            }
            Some(_) => {
                return Err(FilesError::rejected(format!(
                    "entry `{target}` conflicts with an existing entry of another type"
                )));
            }
        }
    }
    Ok(())
}
