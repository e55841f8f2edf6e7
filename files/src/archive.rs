//! Archive formats, extraction limits, and compression.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Inner;
use super::confine::{
    Kind, Meta, Resolve, Visitor, WalkEntry, chmod_fd, create_temp, is_temp_name, lstat_at, open_dir_at,
    open_file_read, read_link_at, rename_noreplace, try_lstat_at, unlink_quietly, walk,
};
use super::entry::FileEntry;
use super::error::{FilesError, Result};
use super::path::{RelPath, symlink_target_is_confined};
use super::quota::{BLOCK, Reservation, file_cost};

/// A supported archive format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArchiveFormat {
    /// gzip-compressed tar (`.tar.gz`, `.tgz`).
    #[serde(rename = "tar.gz")]
    TarGz,
    /// zstd-compressed tar (`.tar.zst`, `.tzst`).
    #[serde(rename = "tar.zst")]
    TarZst,
    /// zip with deflate (`.zip`).
    #[serde(rename = "zip")]
    Zip,
    /// Uncompressed tar (`.tar`); extraction only accepts it, compression can write it.
    #[serde(rename = "tar")]
    Tar,
}

impl ArchiveFormat {
    /// The format a file name's extension says, if any (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        [
            (".tar.gz", Self::TarGz),
            (".tgz", Self::TarGz),
            (".tar.zst", Self::TarZst),
            (".tar.zstd", Self::TarZst),
            (".tzst", Self::TarZst),
            (".zip", Self::Zip),
            (".tar", Self::Tar),
        ]
        .into_iter()
        .find_map(|(ext, format)| lower.ends_with(ext).then_some(format))
    }

    /// The usual extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::TarGz => "tar.gz",
            Self::TarZst => "tar.zst",
            Self::Zip => "zip",
            Self::Tar => "tar",
        }
    }

    /// The format the first bytes of a file show (gzip and zstd are assumed to hold a tar).
    pub(crate) fn sniff(head: &[u8]) -> Option<Self> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Self::TarGz)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Self::TarZst)
        } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            Some(Self::Zip)
        } else if head.get(257..262) == Some(b"ustar") {
            Some(Self::Tar)
        } else {
            None
        }
    }

    /// Detects an opened archive's format: magic bytes first, then the name's extension.
    pub(crate) fn detect(file: &mut File, name: &RelPath) -> Result<Self> {
        let mut head = [0u8; 512];
        let mut filled = 0;
        while filled < head.len() {
            match file.read(&mut head[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(FilesError::from_io(name, e)),
            }
        }
        file.seek(SeekFrom::Start(0)).map_err(|e| FilesError::from_io(name, e))?;
        Self::sniff(&head[..filled])
            .or_else(|| Self::from_name(&name.to_string()))
            .ok_or_else(|| FilesError::UnsupportedArchive { path: name.to_string() })
    }
}

/// Limits every decompression is held to. A limit hit refuses the whole archive
/// ([`FilesError::ArchiveRejected`]) and nothing of it is left on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ArchiveLimits {
    /// Most bytes of file content an archive may extract to. Default 10 GiB.
    pub max_total_bytes: u64,
    /// Most entries (files, directories, symlinks). Default 100,000.
    pub max_entries: u64,
    /// Most uncompressed bytes per compressed byte, over the whole archive (and per entry,
    /// as declared, in a zip). Default 200; deflate and zstd top out near 1,000 on zeros.
    pub max_ratio: u64,
    /// Output below which the ratio is not enforced (small files compress very well).
    /// Default 8 MiB.
    pub ratio_grace_bytes: u64,
    /// Most path components in an entry name. Default 64.
    pub max_depth: usize,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        Self {
            max_total_bytes: 10 << 30,
            max_entries: 100_000,
            max_ratio: 200,
            ratio_grace_bytes: 8 << 20,
            max_depth: 64,
        }
    }
}

impl ArchiveLimits {
    /// Refuses when `out` uncompressed bytes from `compressed` input break the ratio.
    pub(crate) fn check_ratio(&self, out: u64, compressed: u64, what: &str) -> Result<()> {
        if out > self.ratio_grace_bytes && out / compressed.max(1) > self.max_ratio {
            return Err(FilesError::rejected(format!(
                "{what} expands more than {}:1 (a decompression bomb?)",
                self.max_ratio
            )));
        }
        Ok(())
    }
}

/// Counts bytes written against a reservation, refusing before writing past the quota.
/// Tracks the furthest offset written, so that zip's seek-back header rewrites count once.
struct QuotaWriter<'r> {
    file: File,
    reservation: &'r mut Reservation,
    pos: u64,
    /// The file may grow up to here (whole blocks) without reserving more.
    reserved_to: u64,
}

impl Write for QuotaWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let end = self.pos.saturating_add(buf.len() as u64);
        if end > self.reserved_to {
            self.reservation.ensure(file_cost(end)).map_err(FilesError::into_io)?;
            self.reserved_to = end.div_ceil(BLOCK).saturating_mul(BLOCK);
        }
        let n = self.file.write(buf)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for QuotaWriter<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.pos = self.file.seek(pos)?;
        Ok(self.pos)
    }
}

/// Where entries of a new archive go.
trait ArchiveSink {
    fn dir(&mut self, name: &RelPath, meta: &Meta) -> io::Result<()>;
    fn file(&mut self, name: &RelPath, meta: &Meta, data: &mut File) -> io::Result<()>;
    fn symlink(&mut self, name: &RelPath, target: &[u8], meta: &Meta) -> io::Result<()>;
    fn finish(self: Box<Self>) -> io::Result<()>;
}

struct TarSink<W: Write> {
    builder: tar::Builder<W>,
    /// Ends the compression layer under the tar stream.
    close: fn(W) -> io::Result<()>,
}

pub(crate) fn tar_header(kind: tar::EntryType, meta: &Meta, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(meta.mode & 0o777);
    header.set_mtime(u64::try_from(meta.mtime).unwrap_or(0));
    header.set_size(size);
    header
}

pub(crate) fn os_path(name: &RelPath) -> std::path::PathBuf {
    Path::new(OsStr::from_bytes(&name.to_bytes())).to_path_buf()
}

impl<W: Write> ArchiveSink for TarSink<W> {
    fn dir(&mut self, name: &RelPath, meta: &Meta) -> io::Result<()> {
        let mut header = tar_header(tar::EntryType::Directory, meta, 0);
        self.builder.append_data(&mut header, os_path(name), io::empty())
    }

    fn file(&mut self, name: &RelPath, meta: &Meta, data: &mut File) -> io::Result<()> {
        let mut header = tar_header(tar::EntryType::Regular, meta, meta.size);
        // Exactly `size` bytes whatever the file does meanwhile: tar needs the header right.
        let exact = data.take(meta.size).chain(io::repeat(0)).take(meta.size);
        self.builder.append_data(&mut header, os_path(name), exact)
    }

    fn symlink(&mut self, name: &RelPath, target: &[u8], meta: &Meta) -> io::Result<()> {
        let mut header = tar_header(tar::EntryType::Symlink, meta, 0);
        self.builder.append_link(&mut header, os_path(name), OsStr::from_bytes(target))
    }

    fn finish(self: Box<Self>) -> io::Result<()> {
        let inner = self.builder.into_inner()?;
        (self.close)(inner)
    }
}

struct ZipSink<W: Write + Seek> {
    writer: zip::ZipWriter<W>,
}

fn zip_name(name: &RelPath) -> io::Result<String> {
    String::from_utf8(name.to_bytes())
        .map_err(|_| FilesError::invalid(name, "zip entry names must be UTF-8; use tar.gz or tar.zst").into_io())
}

fn zip_io(e: zip::result::ZipError) -> io::Error {
    match e {
        zip::result::ZipError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

fn zip_options(meta: &Meta) -> zip::write::SimpleFileOptions {
    zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(meta.mode & 0o777)
        .large_file(meta.size >= u64::from(u32::MAX))
}

impl<W: Write + Seek> ArchiveSink for ZipSink<W> {
    fn dir(&mut self, name: &RelPath, meta: &Meta) -> io::Result<()> {
        self.writer.add_directory(zip_name(name)?, zip_options(meta)).map_err(zip_io)
    }

    fn file(&mut self, name: &RelPath, meta: &Meta, data: &mut File) -> io::Result<()> {
        self.writer.start_file(zip_name(name)?, zip_options(meta)).map_err(zip_io)?;
        io::copy(&mut data.take(meta.size), &mut self.writer)?;
        Ok(())
    }

    fn symlink(&mut self, name: &RelPath, target: &[u8], meta: &Meta) -> io::Result<()> {
        let target = String::from_utf8(target.to_vec())
            .map_err(|_| FilesError::invalid(name, "zip symlink targets must be UTF-8").into_io())?;
        self.writer.add_symlink(zip_name(name)?, target, zip_options(meta)).map_err(zip_io)
    }

    fn finish(self: Box<Self>) -> io::Result<()> {
        self.writer.finish().map_err(zip_io)?.flush()
    }
}

/// Adds entries to a sink, walking directories.
struct Packer<'a> {
    inner: &'a Inner,
    sink: Box<dyn ArchiveSink + 'a>,
    /// Canonical path of the tree being added, and its name in the archive.
    src_base: RelPath,
    arch_base: RelPath,
    /// Apparent bytes of the files added so far: what reading them costs, holes included.
    total: u64,
}

impl Packer<'_> {
    /// Adds one entry; `true` when it is a directory to walk into.
    fn add(&mut self, dir: BorrowedFd<'_>, name: &OsStr, path: &RelPath, meta: &Meta) -> Result<bool> {
        let shown = |e: io::Error| FilesError::from_io(path, e);
        if is_temp_name(name) {
            return Ok(false);
        }
        if self.inner.denylist.is_denied(path, meta.kind == Kind::Dir) {
            tracing::debug!(path = %path, "denied entry left out of the archive");
            return Ok(false);
        }
        let arch_name = self.arch_base.concat(&path.strip_prefix(&self.src_base).unwrap_or_default());
        match meta.kind {
            Kind::Dir => {
                self.sink.dir(&arch_name, meta).map_err(shown)?;
                Ok(true)
            }
            Kind::File => {
                let (mut file, meta) = open_file_read(dir, name, path)?;
                // A sparse file is read (and its holes compressed) at its apparent size: a
                // terabyte of holes would keep a blocking thread busy for hours. The bound is
                // the most an extraction accepts, so every archive written can be read back.
                self.total = self.total.saturating_add(meta.size);
                let max = self.inner.limits.max_total_bytes;
                if self.total > max {
                    return Err(FilesError::TooLarge { path: path.to_string(), size: self.total, max });
                }
                self.sink.file(&arch_name, &meta, &mut file).map_err(shown)?;
                Ok(false)
            }
            Kind::Symlink => {
                let target = read_link_at(dir, name, path)?;
                if symlink_target_is_confined(path, &target) {
                    self.sink.symlink(&arch_name, &target, meta).map_err(shown)?;
                } else {
                    tracing::warn!(path = %path, "symlink leading outside the root left out of the archive");
                }
                Ok(false)
            }
            Kind::Special => Ok(false),
        }
    }
}

impl Visitor for Packer<'_> {
    fn visit(&mut self, e: &WalkEntry<'_>) -> Result<bool> {
        self.add(e.dir, e.name, e.rel, &e.meta)
    }
}

impl Inner {
    pub(crate) fn compress(
        &self,
        base: &RelPath,
        files: &[RelPath],
        destination: &RelPath,
        format: ArchiveFormat,
    ) -> Result<FileEntry> {
        if files.is_empty() {
            return Err(FilesError::invalid(base, "nothing to compress"));
        }
        self.usage()?;
        self.denylist.check(destination, false)?;
        let dst = self.fs.resolve(destination, self.creating())?;
        let dst_name = dst.entry_name()?;
        self.denylist.check(&dst.path, false)?;
        if try_lstat_at(&dst.parent, dst_name, &dst.path)?.is_some() {
            return Err(FilesError::AlreadyExists { path: dst.path.to_string() });
        }
        let (_, base_path) = self.fs.open_dir(base, Resolve::default())?;
        let mut reservation = self.quota.reserve(file_cost(0))?;
        let (temp, file) = create_temp(&dst.parent, &dst.path, self.owner, &self.quota)?;
        let written = chmod_fd(&file, 0o644, &dst.path).and_then(|()| {
            let writer = QuotaWriter { file, reservation: &mut reservation, pos: 0, reserved_to: 0 };
            self.pack(writer, &base_path, files, format)
        });
        // Measured under the temporary name, which nobody else touches: once renamed, the
        // archive may be replaced or deleted by a concurrent operation.
        let placed = written.and_then(|()| lstat_at(&dst.parent, temp.name(), &dst.path)).and_then(|meta| {
            rename_noreplace(&dst.parent, temp.name(), &dst.parent, dst_name, &dst.path)?;
            Ok(meta)
        });
        match placed {
            Ok(meta) => reservation.commit_as(file_cost(meta.size)),
            Err(e) => {
                unlink_quietly(&dst.parent, temp.name());
                return Err(e);
            }
        }
        self.describe_at(dst.parent.as_fd(), dst_name, &dst.path)
    }

    fn pack(&self, writer: QuotaWriter<'_>, base: &RelPath, files: &[RelPath], format: ArchiveFormat) -> Result<()> {
        let sink: Box<dyn ArchiveSink + '_> = match format {
            ArchiveFormat::TarGz => Box::new(TarSink {
                builder: tar::Builder::new(flate2::write::GzEncoder::new(writer, flate2::Compression::default())),
                close: |gz| gz.finish()?.flush(),
            }),
            ArchiveFormat::TarZst => {
                let encoder = zstd::stream::write::Encoder::new(writer, 3).map_err(|e| FilesError::from_io(base, e))?;
                Box::new(TarSink { builder: tar::Builder::new(encoder), close: |zst| zst.finish()?.flush() })
            }
            ArchiveFormat::Tar => Box::new(TarSink { builder: tar::Builder::new(writer), close: |mut w| w.flush() }),
            ArchiveFormat::Zip => Box::new(ZipSink { writer: zip::ZipWriter::new(writer) }),
        };
        let mut packer = Packer { inner: self, sink, src_base: RelPath::root(), arch_base: RelPath::root(), total: 0 };
        for file in files {
            if file.is_root() {
                return Err(FilesError::invalid(base, "cannot archive the base directory into itself"));
            }
            let full = base.concat(file);
            let resolved = self.fs.resolve(&full, Resolve::default())?;
            let name = resolved.entry_name()?;
            let meta = resolved.meta()?.ok_or_else(|| FilesError::NotFound { path: full.to_string() })?;
            packer.src_base = resolved.path.clone();
            packer.arch_base = file.clone();
            if packer.add(resolved.parent.as_fd(), name, &resolved.path, &meta)? {
                let dir = open_dir_at(&resolved.parent, name, &resolved.path)?;
                walk(dir.as_fd(), &resolved.path, &mut packer)?;
            }
        }
        packer.sink.finish().map_err(|e| FilesError::from_io(base, e))
    }
}
