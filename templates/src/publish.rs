//! Publishing a layer from a directory or a tar archive (plain, gzip or zstd).
//!
//! Both end in the same steps: every file is hashed, the blobs the store lacks are uploaded
//! (content-addressed, so a blob already there, from any layer, is skipped), and the
//! manifest is written **last**, only if that version does not exist yet. A publish that
//! fails half-way leaves at most unreferenced blobs, never a manifest naming a missing blob.
//!
//! # Markers
//! - A file `.wh.<name>` is a whiteout of `<name>` in the same directory (OCI convention):
//!   applying the layer removes `<name>` and everything below it contributed by earlier
//!   layers.
//! - A file `.nexus-render` at the layer root lists gitignore-syntax patterns of the files
//!   whose variables are replaced when applied ([`crate::render`]).
//!
//! Neither marker is itself part of the layer.
//!
//! # Refused (naming the path)
//! Absolute paths and `..` (archives), names that are not UTF-8, symlinks whose target is
//! absolute or leaves the layer root lexically, hard links, devices, fifos and sockets, more
//! than [`PublishLimits::max_entries`] entries, a file over
//! [`PublishLimits::max_file_bytes`] or a total over [`PublishLimits::max_total_bytes`]
//! (charged what each file actually holds), more than [`MAX_RENDER_FILES`] files to render,
//! a manifest that readers would refuse (too deep, too big, a reserved name). In archives:
//! GNU long-name / long-link and PAX headers over 64 KiB, a PAX size other than the
//! header's, an archive that decodes to more than the limits allow.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::Utc;
use futures::StreamExt;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use nexus_core::template::{
    EntryKind, LayerEntry, LayerManifest, LayerRef, MANIFEST_FORMAT, TemplateError, symlink_target_is_confined,
};
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::error::{Error, Result};
use crate::source::{MAX_MANIFEST_BYTES, ObjectStoreTemplates, blob_key, manifest_key};

/// The whiteout marker prefix: `.wh.<name>` removes `<name>`.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The file at a layer's root listing the files to render.
pub const RENDER_LIST: &str = ".nexus-render";
/// Largest `.nexus-render` file.
const MAX_RENDER_LIST_BYTES: u64 = 64 << 10;
/// Files up to this size are uploaded in one request; bigger ones in parts.
const SINGLE_PUT_BYTES: u64 = 16 << 20;
/// Part size of multipart uploads.
const PART_BYTES: usize = 8 << 20;
/// Blobs uploaded at once.
const UPLOADS: usize = 4;
/// Most files one layer may mark `render`: each is parsed and rendered on every apply.
pub const MAX_RENDER_FILES: usize = 1000;

/// Bounds on what one layer may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishLimits {
    /// Most entries (files, directories, symlinks, whiteouts). Default 100,000.
    pub max_entries: usize,
    /// Largest single file. Default 4 GiB.
    pub max_file_bytes: u64,
    /// Largest total of file sizes. Default 16 GiB.
    pub max_total_bytes: u64,
}

impl Default for PublishLimits {
    fn default() -> Self {
        Self { max_entries: 100_000, max_file_bytes: 4 << 30, max_total_bytes: 16 << 30 }
    }
}

/// An entry found in the layer's source, before markers are interpreted.
enum Raw {
    File { source: PathBuf, size: u64, sha256: String, mode: u32 },
    Dir { mode: u32 },
    Symlink { target: String },
}

/// What a source directory or archive holds: path → entry, plus the temporary directory the
/// archive's files were spooled to (removed when dropped).
struct Scanned {
    entries: BTreeMap<String, Raw>,
    _spool: Option<tempfile::TempDir>,
}

/// Counts entries and bytes against the limits while scanning.
struct Budget<'a> {
    layer: &'a LayerRef,
    limits: PublishLimits,
    entries: usize,
    total: u64,
}

impl Budget<'_> {
    fn entry(&mut self, path: &str) -> Result<()> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(Error::refused(self.layer, path, format!("more than {} entries", self.limits.max_entries)));
        }
        Ok(())
    }

    fn file(&mut self, path: &str, size: u64) -> Result<()> {
        if size > self.limits.max_file_bytes {
            return Err(Error::refused(
                self.layer,
                path,
                format!("{size} bytes, more than the {} allowed for one file", self.limits.max_file_bytes),
            ));
        }
        self.total = self.total.saturating_add(size);
        if self.total > self.limits.max_total_bytes {
            return Err(Error::refused(
                self.layer,
                path,
                format!("the layer's files add up to more than {} bytes", self.limits.max_total_bytes),
            ));
        }
        Ok(())
    }
}

/// Hashes what `reader` yields, copying it to `out` when given; at most `max` bytes (more is
/// an error naming `path`).
fn hash_copy(
    layer: &LayerRef,
    path: &str,
    reader: &mut dyn Read,
    mut out: Option<&mut File>,
    max: u64,
) -> Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| Error::refused(layer, path, format!("reading: {e}")))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > max {
            return Err(Error::refused(layer, path, format!("more than the {max} bytes allowed")));
        }
        hasher.update(&buf[..n]);
        if let Some(out) = out.as_deref_mut() {
            out.write_all(&buf[..n]).map_err(|e| Error::io(path, e))?;
        }
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// Walks a directory (never following symlinks).
fn scan_dir(layer: &LayerRef, root: &Path, limits: PublishLimits) -> Result<Scanned> {
    let mut budget = Budget { layer, limits, entries: 0, total: 0 };
    let mut entries = BTreeMap::new();
    let meta = std::fs::metadata(root).map_err(|e| Error::io(root, e))?;
    if !meta.is_dir() {
        return Err(Error::refused(layer, root.display().to_string(), "not a directory"));
    }
    let mut pending = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = pending.pop() {
        let listing = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        for item in listing {
            let item = item.map_err(|e| Error::io(&dir, e))?;
            let name = item.file_name();
            let Some(name) = name.to_str() else {
                return Err(Error::refused(layer, format!("{rel}/{}", name.to_string_lossy()), "name is not UTF-8"));
            };
            let path = if rel.is_empty() { name.to_owned() } else { format!("{rel}/{name}") };
            budget.entry(&path)?;
            let full = item.path();
            let meta = std::fs::symlink_metadata(&full).map_err(|e| Error::io(&full, e))?;
            let kind = meta.file_type();
            let mode = meta.permissions().mode() & 0o777;
            let raw = if kind.is_dir() {
                pending.push((full, path.clone()));
                Raw::Dir { mode }
            } else if kind.is_symlink() {
                let target = std::fs::read_link(&full).map_err(|e| Error::io(&full, e))?;
                let target = target
                    .to_str()
                    .ok_or_else(|| Error::refused(layer, &path, "symlink target is not UTF-8"))?
                    .to_owned();
                Raw::Symlink { target }
            } else if kind.is_file() {
                if meta.nlink() > 1 {
                    return Err(Error::refused(layer, &path, "a hard link (several names for one file)"));
                }
                budget.file(&path, meta.len())?;
                let mut file = File::open(&full).map_err(|e| Error::io(&full, e))?;
                let (sha256, size) = hash_copy(layer, &path, &mut file, None, limits.max_file_bytes)?;
                Raw::File { source: full, size, sha256, mode }
            } else if kind.is_fifo() || kind.is_socket() || kind.is_block_device() || kind.is_char_device() {
                return Err(Error::refused(layer, &path, "a device, fifo or socket"));
            } else {
                return Err(Error::refused(layer, &path, "not a file, directory or symlink"));
            };
            entries.insert(path, raw);
        }
    }
    Ok(Scanned { entries, _spool: None })
}

/// Normalizes an archive entry name strictly: `./` prefixes and trailing `/` dropped,
/// absolute names and `..` refused. `None` for the root itself.
fn archive_path(layer: &LayerRef, raw: &[u8]) -> Result<Option<String>> {
    let shown = String::from_utf8_lossy(raw).into_owned();
    let name = std::str::from_utf8(raw).map_err(|_| Error::refused(layer, &shown, "name is not UTF-8"))?;
    if name.starts_with('/') {
        return Err(Error::refused(layer, name, "absolute path"));
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(Error::refused(layer, name, "`..` in the path")),
            part => parts.push(part),
        }
    }
    Ok(if parts.is_empty() { None } else { Some(parts.join("/")) })
}

/// Largest GNU long-name / long-link or PAX extension entry.
const MAX_EXTENSION_BYTES: u64 = 64 << 10;
/// Decoded archive bytes allowed per tar header beyond the files' content: the 512-byte
/// header and up to 511 bytes of padding.
const HEADER_ALLOWANCE: u64 = 1024;
/// Tar headers allowed per layer entry: its own, a long name, a long link, a PAX header.
const HEADERS_PER_ENTRY: usize = 4;

/// Fails reads past `limit` bytes in all: a decompressed archive never yields more than the
/// limits allow, whatever its headers declare.
struct CappedReader<R> {
    inner: R,
    read: u64,
    limit: u64,
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(std::io::Error::other(format!(
                "the archive decodes to more than the {} bytes its limits allow",
                self.limit
            )));
        }
        Ok(n)
    }
}

/// What GNU long-name / long-link and PAX headers said about the next entry.
#[derive(Default)]
struct Pending {
    name: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

/// Reads an extension entry's data whole (at most [`MAX_EXTENSION_BYTES`]).
fn read_extension(layer: &LayerRef, entry: &mut dyn Read, size: u64, what: &str) -> Result<Vec<u8>> {
    if size > MAX_EXTENSION_BYTES {
        return Err(Error::refused(
            layer,
            "<archive>",
            format!("a {what} entry of {size} bytes, more than {MAX_EXTENSION_BYTES}"),
        ));
    }
    let mut data = Vec::with_capacity(size as usize);
    entry
        .take(MAX_EXTENSION_BYTES)
        .read_to_end(&mut data)
        .map_err(|e| Error::refused(layer, "<archive>", format!("reading a {what} entry: {e}")))?;
    Ok(data)
}

/// Reads a tar archive (plain, gzip or zstd, detected by magic bytes), spooling files into
/// a temporary directory while hashing them.
///
/// The tar reader runs in raw mode: GNU long names and links and PAX headers are read here,
/// each at most [`MAX_EXTENSION_BYTES`] (the tar crate would read them whole, whatever size
/// they declare); a PAX `size` must equal the header's; PAX global headers are skipped. The
/// decoded stream fails past the total the limits allow, and every file is charged what it
/// actually holds.
fn scan_archive(layer: &LayerRef, reader: Box<dyn Read + Send>, limits: PublishLimits) -> Result<Scanned> {
    let mut reader = BufReader::with_capacity(256 << 10, reader);
    let magic = reader.fill_buf().map_err(|e| Error::refused(layer, "<archive>", format!("reading: {e}")))?;
    let decoded: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(reader))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            zstd::stream::read::Decoder::with_buffer(reader)
                .map_err(|e| Error::refused(layer, "<archive>", format!("zstd: {e}")))?,
        )
    } else {
        Box::new(reader)
    };
    let max_headers = limits.max_entries.saturating_mul(HEADERS_PER_ENTRY).saturating_add(16);
    let limit = limits.max_total_bytes.saturating_add((max_headers as u64).saturating_mul(HEADER_ALLOWANCE));
    let decoded = CappedReader { inner: decoded, read: 0, limit };
    let spool = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let mut budget = Budget { layer, limits, entries: 0, total: 0 };
    let mut entries = BTreeMap::new();
    let mut archive = tar::Archive::new(decoded);
    let bad = |e: std::io::Error| Error::refused(layer, "<archive>", format!("not a readable tar archive: {e}"));
    let mut pending = Pending::default();
    let mut headers = 0usize;
    for (n, entry) in archive.entries().map_err(bad)?.raw(true).enumerate() {
        let mut entry = entry.map_err(bad)?;
        headers += 1;
        if headers > max_headers {
            return Err(Error::refused(layer, "<archive>", format!("more than {max_headers} tar headers")));
        }
        let kind = entry.header().entry_type();
        let size = entry.size();
        let extension = |slot: &mut Option<Vec<u8>>, entry: &mut dyn Read, what: &str| -> Result<()> {
            if slot.is_some() {
                return Err(Error::refused(layer, "<archive>", format!("two {what} entries for one member")));
            }
            *slot = Some(read_extension(layer, entry, size, what)?);
            Ok(())
        };
        match kind {
            tar::EntryType::GNULongName => {
                extension(&mut pending.name, &mut entry, "GNU long name")?;
                continue;
            }
            tar::EntryType::GNULongLink => {
                extension(&mut pending.link, &mut entry, "GNU long link")?;
                continue;
            }
            tar::EntryType::XHeader => {
                extension(&mut pending.pax, &mut entry, "PAX header")?;
                continue;
            }
            tar::EntryType::XGlobalHeader => {
                // Skipped (`git archive` writes one with the commit); its data still
                // counts against the decoded total.
                read_extension(layer, &mut entry, size, "PAX global header")?;
                continue;
            }
            _ => {}
        }
        let extensions = std::mem::take(&mut pending);
        let mut name = extensions.name.map(|mut name| {
            while name.last() == Some(&0) {
                name.pop();
            }
            name
        });
        let mut link = extensions.link.map(|mut link| {
            while link.last() == Some(&0) {
                link.pop();
            }
            link
        });
        if let Some(pax) = &extensions.pax {
            for item in tar::PaxExtensions::new(pax) {
                let item = item.map_err(|e| Error::refused(layer, "<archive>", format!("a PAX header: {e}")))?;
                match item.key_bytes() {
                    b"path" => name = Some(item.value_bytes().to_vec()),
                    b"linkpath" => link = Some(item.value_bytes().to_vec()),
                    b"size" => {
                        let declared = std::str::from_utf8(item.value_bytes()).ok().and_then(|s| s.parse::<u64>().ok());
                        if declared != Some(size) {
                            return Err(Error::refused(
                                layer,
                                "<archive>",
                                "a PAX size that differs from the tar header's is not supported",
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
        let raw_name = name.unwrap_or_else(|| entry.path_bytes().into_owned());
        let Some(path) = archive_path(layer, &raw_name)? else { continue };
        budget.entry(&path)?;
        let header = entry.header();
        let mode = header.mode().unwrap_or(0o644) & 0o777;
        let raw = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                budget.file(&path, size)?;
                let remaining = limits.max_total_bytes.saturating_sub(budget.total).saturating_add(size);
                let source = spool.path().join(n.to_string());
                let mut out = File::create(&source).map_err(|e| Error::io(&source, e))?;
                let max = limits.max_file_bytes.min(remaining);
                let (sha256, copied) = hash_copy(layer, &path, &mut entry, Some(&mut out), max)?;
                if copied != size {
                    return Err(Error::refused(layer, &path, format!("{copied} bytes where the header says {size}")));
                }
                Raw::File { source, size: copied, sha256, mode }
            }
            tar::EntryType::Directory => Raw::Dir { mode },
            tar::EntryType::Symlink => {
                let target = match link {
                    Some(link) => link,
                    None => entry
                        .link_name_bytes()
                        .ok_or_else(|| Error::refused(layer, &path, "symlink without a target"))?
                        .into_owned(),
                };
                let target = String::from_utf8(target)
                    .map_err(|_| Error::refused(layer, &path, "symlink target is not UTF-8"))?;
                Raw::Symlink { target }
            }
            tar::EntryType::Link => return Err(Error::refused(layer, &path, "a hard link")),
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                return Err(Error::refused(layer, &path, "a device or fifo"));
            }
            other => return Err(Error::refused(layer, &path, format!("unsupported tar entry type {other:?}"))),
        };
        if entries.insert(path.clone(), raw).is_some() {
            return Err(Error::refused(layer, &path, "listed twice in the archive"));
        }
    }
    if pending.name.is_some() || pending.link.is_some() || pending.pax.is_some() {
        return Err(Error::refused(layer, "<archive>", "extension headers describing no member"));
    }
    Ok(Scanned { entries, _spool: Some(spool) })
}

/// The blobs to upload: digest → (source file, size).
type Uploads = BTreeMap<String, (PathBuf, u64)>;

/// Interprets the markers and checks every entry: the manifest's entries, and the files to
/// upload (digest → source path and size).
fn build_manifest(layer: &LayerRef, scanned: &Scanned) -> Result<(LayerManifest, Uploads)> {
    let render = match scanned.entries.get(RENDER_LIST) {
        Some(Raw::File { source, .. }) => Some(render_matcher(layer, source)?),
        Some(_) => return Err(Error::refused(layer, RENDER_LIST, "must be a regular file")),
        None => None,
    };
    let mut entries = Vec::with_capacity(scanned.entries.len());
    let mut blobs = BTreeMap::new();
    let mut rendered = 0usize;
    for (path, raw) in &scanned.entries {
        if path == RENDER_LIST {
            continue;
        }
        let (parent, name) = match path.rsplit_once('/') {
            Some((parent, name)) => (Some(parent), name),
            None => (None, path.as_str()),
        };
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.starts_with(WHITEOUT_PREFIX) {
                return Err(Error::refused(layer, path, "not a valid whiteout (opaque whiteouts are not supported)"));
            }
            if !matches!(raw, Raw::File { .. }) {
                return Err(Error::refused(layer, path, "a whiteout marker must be a regular file"));
            }
            let removed = parent.map_or_else(|| hidden.to_owned(), |p| format!("{p}/{hidden}"));
            entries.push(LayerEntry { path: removed, kind: EntryKind::Whiteout });
            continue;
        }
        let kind = match raw {
            Raw::File { source, size, sha256, mode } => {
                let render =
                    render.as_ref().is_some_and(|m| m.matched_path_or_any_parents(Path::new(path), false).is_ignore());
                rendered += usize::from(render);
                if rendered > MAX_RENDER_FILES {
                    return Err(Error::refused(
                        layer,
                        path,
                        format!("more than {MAX_RENDER_FILES} files to render in one layer"),
                    ));
                }
                blobs.insert(sha256.clone(), (source.clone(), *size));
                EntryKind::File { size: *size, sha256: sha256.clone(), mode: *mode, render }
            }
            Raw::Dir { mode } => EntryKind::Dir { mode: *mode },
            Raw::Symlink { target } => {
                if !symlink_target_is_confined(path, target) {
                    return Err(Error::refused(
                        layer,
                        path,
                        format!("symlink target `{target}` is absolute or leaves the layer"),
                    ));
                }
                EntryKind::Symlink { target: target.clone() }
            }
        };
        entries.push(LayerEntry { path: path.clone(), kind });
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest = LayerManifest { format: MANIFEST_FORMAT, layer: layer.clone(), created_at: Utc::now(), entries };
    manifest.validate().map_err(|e| match e {
        TemplateError::InvalidPath { path, reason } => Error::refused(layer, path, reason),
        TemplateError::InvalidLayer { reason, .. } => Error::refused(layer, "<layer>", reason),
        other => Error::Source(other),
    })?;
    Ok((manifest, blobs))
}

/// The gitignore matcher of a `.nexus-render` file.
fn render_matcher(layer: &LayerRef, source: &Path) -> Result<Gitignore> {
    let file = File::open(source).map_err(|e| Error::io(source, e))?;
    let mut text = String::new();
    file.take(MAX_RENDER_LIST_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| Error::refused(layer, RENDER_LIST, format!("not UTF-8 text: {e}")))?;
    if text.len() as u64 > MAX_RENDER_LIST_BYTES {
        return Err(Error::refused(layer, RENDER_LIST, format!("more than {MAX_RENDER_LIST_BYTES} bytes")));
    }
    let mut builder = GitignoreBuilder::new(".");
    for line in text.lines() {
        builder
            .add_line(None, line)
            .map_err(|e| Error::refused(layer, RENDER_LIST, format!("pattern `{line}`: {e}")))?;
    }
    builder.build().map_err(|e| Error::refused(layer, RENDER_LIST, e.to_string()))
}

impl ObjectStoreTemplates {
    /// Publishes the directory `dir` as `layer` (see the module docs for the markers and
    /// what is refused). [`Error::AlreadyPublished`] when that version exists.
    pub async fn publish_dir(&self, layer: &LayerRef, dir: impl Into<PathBuf>) -> Result<LayerManifest> {
        self.refuse_existing(layer).await?;
        let (dir, limits, owned) = (dir.into(), self.limits, layer.clone());
        let scanned = tokio::task::spawn_blocking(move || scan_dir(&owned, &dir, limits))
            .await
            .map_err(|e| Error::io("publish", std::io::Error::other(e)))??;
        self.publish_scanned(layer, scanned).await
    }

    /// Publishes a tar archive (plain, gzip or zstd, detected by its magic bytes) as
    /// `layer`, read from `reader` on the blocking pool; files are spooled to a temporary
    /// directory while hashed. Same rules as [`publish_dir`](Self::publish_dir).
    pub async fn publish_archive<R>(&self, layer: &LayerRef, reader: R) -> Result<LayerManifest>
    where
        R: Read + Send + 'static,
    {
        self.refuse_existing(layer).await?;
        let (limits, owned) = (self.limits, layer.clone());
        let scanned = tokio::task::spawn_blocking(move || scan_archive(&owned, Box::new(reader), limits))
            .await
            .map_err(|e| Error::io("publish", std::io::Error::other(e)))??;
        self.publish_scanned(layer, scanned).await
    }

    /// Whether `layer` is published (its manifest exists). Lets a caller refuse a publish
    /// before receiving its archive; [`publish_archive`](Self::publish_archive) checks again.
    pub async fn exists(&self, layer: &LayerRef) -> Result<bool> {
        match self.bounded(self.store.head(&manifest_key(layer))).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(Error::Store { what: format!("checking whether {layer} exists"), source }),
        }
    }

    async fn refuse_existing(&self, layer: &LayerRef) -> Result<()> {
        if self.exists(layer).await? { Err(Error::AlreadyPublished(layer.clone())) } else { Ok(()) }
    }

    async fn publish_scanned(&self, layer: &LayerRef, scanned: Scanned) -> Result<LayerManifest> {
        // Sorting and validating 100,000 entries is CPU work: not on an async thread.
        let owned = layer.clone();
        let (built, scanned) = tokio::task::spawn_blocking(move || {
            let built = build_manifest(&owned, &scanned).and_then(|(manifest, blobs)| {
                let json = serde_json::to_vec_pretty(&manifest)
                    .map_err(|e| Error::io("manifest", std::io::Error::other(e)))?;
                // What readers refuse is never published.
                if json.len() as u64 > MAX_MANIFEST_BYTES {
                    return Err(Error::refused(
                        &owned,
                        "<layer>",
                        format!(
                            "a manifest of {} bytes, more than the {MAX_MANIFEST_BYTES} readers accept",
                            json.len()
                        ),
                    ));
                }
                Ok((manifest, blobs, json))
            });
            (built, scanned)
        })
        .await
        .map_err(|e| Error::io("publish", std::io::Error::other(e)))?;
        let (manifest, blobs, json) = built?;
        let uploads = futures::stream::iter(blobs)
            .map(|(digest, (source, size))| async move { self.upload_blob(layer, &digest, &source, size).await })
            .buffer_unordered(UPLOADS)
            .collect::<Vec<_>>()
            .await;
        let mut uploaded = 0usize;
        for result in uploads {
            uploaded += usize::from(result?);
        }
        drop(scanned);
        let key = manifest_key(layer);
        let create = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        match self.bounded(self.store.put_opts(&key, PutPayload::from(json.clone()), create)).await {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                return Err(Error::AlreadyPublished(layer.clone()));
            }
            // Stores without conditional writes: the version was checked absent before the
            // upload; only two publishers racing on one version can overwrite each other.
            Err(object_store::Error::NotImplemented { .. }) => {
                self.refuse_existing(layer).await?;
                self.bounded(self.store.put(&key, PutPayload::from(json)))
                    .await
                    .map_err(|source| Error::Store { what: format!("writing the manifest of {layer}"), source })?;
            }
            Err(source) => return Err(Error::Store { what: format!("writing the manifest of {layer}"), source }),
        }
        tracing::info!(%layer, entries = manifest.entries.len(), uploaded, "layer published");
        Ok(manifest)
    }

    /// Uploads one blob unless the store has it; the content is hashed again while
    /// uploading and the upload abandoned if it changed since it was scanned. Returns
    /// whether it uploaded.
    async fn upload_blob(&self, layer: &LayerRef, digest: &str, source: &Path, size: u64) -> Result<bool> {
        let key = blob_key(digest);
        let store_err = |what: &str, source| Error::Store { what: format!("{what} blob {digest} of {layer}"), source };
        match self.bounded(self.store.head(&key)).await {
            Ok(_) => return Ok(false),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_err("checking", e)),
        }
        let changed = || Error::refused(layer, source.display().to_string(), "changed while being published");
        if size <= SINGLE_PUT_BYTES {
            let bytes = tokio::fs::read(source).await.map_err(|e| Error::io(source, e))?;
            if hex::encode(Sha256::digest(&bytes)) != digest {
                return Err(changed());
            }
            self.bounded(self.store.put(&key, PutPayload::from(bytes))).await.map_err(|e| store_err("uploading", e))?;
            return Ok(true);
        }
        let upload = self.bounded(self.store.put_multipart(&key)).await.map_err(|e| store_err("uploading", e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut file = tokio::fs::File::open(source).await.map_err(|e| Error::io(source, e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let result: Result<()> = async {
            loop {
                let n = file.read(&mut buf).await.map_err(|e| Error::io(source, e))?;
                if n == 0 {
                    return Ok(());
                }
                hasher.update(&buf[..n]);
                self.bounded(writer.wait_for_capacity(2)).await.map_err(|e| store_err("uploading", e))?;
                writer.write(&buf[..n]);
            }
        }
        .await;
        if let Err(e) = result {
            let _ = writer.abort().await;
            return Err(e);
        }
        if hex::encode(hasher.finalize()) != digest {
            let _ = writer.abort().await;
            return Err(changed());
        }
        self.bounded(writer.finish()).await.map_err(|e| store_err("uploading", e))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer() -> LayerRef {
        "t@1".parse().unwrap()
    }

    #[test]
    fn archive_paths_are_strict() {
        let l = layer();
        assert_eq!(archive_path(&l, b"./a/b/").unwrap().as_deref(), Some("a/b"));
        assert_eq!(archive_path(&l, b"./").unwrap(), None);
        for bad in [&b"/etc/passwd"[..], b"a/../b", b"../x", b"\xff"] {
            assert!(matches!(archive_path(&l, bad), Err(Error::Refused { .. })), "{bad:?}");
        }
    }

    #[test]
    fn markers_become_whiteouts_and_render_flags() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("config/sub")).unwrap();
        std::fs::write(root.join("config/server.properties"), "port={{ env.SERVER_PORT }}").unwrap();
        std::fs::write(root.join("config/sub/.wh.old.txt"), "").unwrap();
        std::fs::write(root.join(".wh.logs"), "").unwrap();
        std::fs::write(root.join("run.sh"), "#!/bin/sh").unwrap();
        std::fs::write(root.join(RENDER_LIST), "*.properties\n").unwrap();
        std::os::unix::fs::symlink("config/server.properties", root.join("link")).unwrap();
        let scanned = scan_dir(&layer(), root, PublishLimits::default()).unwrap();
        let (manifest, blobs) = build_manifest(&layer(), &scanned).unwrap();
        let summary: Vec<_> = manifest
            .entries
            .iter()
            .map(|e| match &e.kind {
                EntryKind::File { render, .. } => format!("{} file render={render}", e.path),
                EntryKind::Dir { .. } => format!("{} dir", e.path),
                EntryKind::Symlink { target } => format!("{} -> {target}", e.path),
                EntryKind::Whiteout => format!("{} whiteout", e.path),
            })
            .collect();
        assert_eq!(
            summary,
            [
                "config dir",
                "config/server.properties file render=true",
                "config/sub dir",
                "config/sub/old.txt whiteout",
                "link -> config/server.properties",
                "logs whiteout",
                "run.sh file render=false",
            ]
        );
        assert_eq!(blobs.len(), 2);
    }

    #[test]
    fn hostile_directories_are_refused_naming_the_path() {
        let refused = |setup: &dyn Fn(&Path), limits: PublishLimits| {
            let dir = tempfile::tempdir().unwrap();
            setup(dir.path());
            let scanned = scan_dir(&layer(), dir.path(), limits);
            match scanned.and_then(|s| build_manifest(&layer(), &s)) {
                Err(Error::Refused { path, reason, .. }) => format!("{path}: {reason}"),
                other => panic!("not refused: {:?}", other.map(|(m, _)| m)),
            }
        };
        let d = PublishLimits::default();
        let msg = refused(&|r| std::os::unix::fs::symlink("/etc/passwd", r.join("abs")).unwrap(), d);
        assert!(msg.starts_with("abs:"), "{msg}");
        let msg = refused(
            &|r| {
                std::fs::create_dir(r.join("a")).unwrap();
                std::os::unix::fs::symlink("../../x", r.join("a/up")).unwrap();
            },
            d,
        );
        assert!(msg.starts_with("a/up:"), "{msg}");
        let msg = refused(
            &|r| {
                std::fs::write(r.join("f"), "x").unwrap();
                std::fs::hard_link(r.join("f"), r.join("g")).unwrap();
            },
            d,
        );
        assert!(msg.contains("hard link"), "{msg}");
        let msg = refused(
            &|r| {
                for i in 0..5 {
                    std::fs::write(r.join(i.to_string()), "x").unwrap();
                }
            },
            PublishLimits { max_entries: 4, ..d },
        );
        assert!(msg.contains("more than 4 entries"), "{msg}");
        let msg = refused(
            &|r| std::fs::write(r.join("big"), vec![0u8; 100]).unwrap(),
            PublishLimits { max_file_bytes: 99, ..d },
        );
        assert!(msg.starts_with("big:"), "{msg}");
        let msg = refused(
            &|r| {
                std::fs::write(r.join("a"), vec![0u8; 60]).unwrap();
                std::fs::write(r.join("b"), vec![0u8; 60]).unwrap();
            },
            PublishLimits { max_total_bytes: 100, ..d },
        );
        assert!(msg.contains("add up"), "{msg}");
        let msg = refused(
            &|r| {
                std::fs::write(r.join("x"), "x").unwrap();
                std::fs::write(r.join(".wh.x"), "").unwrap();
            },
            d,
        );
        assert!(msg.starts_with("x:"), "{msg}");
    }

    #[test]
    fn too_many_files_to_render_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..=MAX_RENDER_FILES {
            std::fs::write(dir.path().join(format!("{i}.cfg")), "x").unwrap();
        }
        std::fs::write(dir.path().join(RENDER_LIST), "*.cfg\n").unwrap();
        let scanned = scan_dir(&layer(), dir.path(), PublishLimits::default()).unwrap();
        match build_manifest(&layer(), &scanned) {
            Err(Error::Refused { reason, .. }) => assert!(reason.contains("files to render"), "{reason}"),
            other => panic!("not refused: {:?}", other.map(|(m, _)| m.entries.len())),
        }
        std::fs::write(dir.path().join(RENDER_LIST), "0.cfg\n").unwrap();
        let scanned = scan_dir(&layer(), dir.path(), PublishLimits::default()).unwrap();
        build_manifest(&layer(), &scanned).unwrap();
    }

    #[test]
    fn a_whiteout_and_a_directory_at_one_path_are_published() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("x")).unwrap();
        std::fs::write(dir.path().join("x/new"), "n").unwrap();
        std::fs::write(dir.path().join(".wh.x"), "").unwrap();
        let scanned = scan_dir(&layer(), dir.path(), PublishLimits::default()).unwrap();
        let (manifest, _) = build_manifest(&layer(), &scanned).unwrap();
        let kinds: Vec<_> = manifest.entries.iter().map(|e| (e.path.as_str(), &e.kind)).collect();
        assert!(kinds.contains(&("x", &EntryKind::Whiteout)), "{kinds:?}");
        assert!(kinds.iter().any(|(p, k)| *p == "x" && matches!(k, EntryKind::Dir { .. })), "{kinds:?}");
    }

    fn tar_with(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        build(&mut builder);
        builder.into_inner().unwrap()
    }

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h
    }

    /// A raw tar member: a header naming `name`, of type `kind`, declaring `size`, then
    /// `data` padded to 512 bytes.
    fn member(out: &mut Vec<u8>, name: &[u8], kind: tar::EntryType, size: u64, data: &[u8]) {
        let mut h = header(kind, size);
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(512), 0);
    }

    fn pax_record(key: &str, value: &str) -> Vec<u8> {
        // `<len> key=value\n`, where len counts itself.
        let body = format!(" {key}={value}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        format!("{len}{body}").into_bytes()
    }

    fn scan_bytes(bytes: Vec<u8>, limits: PublishLimits) -> Result<Scanned> {
        scan_archive(&layer(), Box::new(std::io::Cursor::new(bytes)), limits)
    }

    fn refusal(result: Result<Scanned>) -> String {
        match result {
            Err(Error::Refused { path, reason, .. }) => format!("{path}: {reason}"),
            Err(other) => panic!("not refused: {other}"),
            Ok(s) => panic!("not refused: {:?}", s.entries.keys().collect::<Vec<_>>()),
        }
    }

    #[test]
    fn oversized_extension_headers_are_refused_unread() {
        // A GNU long name declaring 4 GiB (zstd makes it a few KiB): refused from the
        // header, never read into memory.
        let mut raw = Vec::new();
        member(&mut raw, b"././@LongLink", tar::EntryType::GNULongName, 4 << 30, &[]);
        let bomb = zstd::encode_all(&raw[..], 3).unwrap();
        let msg = refusal(scan_bytes(bomb, PublishLimits::default()));
        assert!(msg.contains("GNU long name") && msg.contains("more than 65536"), "{msg}");
        // 1 MiB of long name, actually present.
        let mut raw = Vec::new();
        member(&mut raw, b"././@LongLink", tar::EntryType::GNULongName, 1 << 20, &vec![b'a'; 1 << 20]);
        member(&mut raw, b"x", tar::EntryType::Regular, 0, &[]);
        let msg = refusal(scan_bytes(raw, PublishLimits::default()));
        assert!(msg.contains("GNU long name"), "{msg}");
        // The same for PAX headers and long links.
        for kind in [tar::EntryType::XHeader, tar::EntryType::GNULongLink, tar::EntryType::XGlobalHeader] {
            let mut raw = Vec::new();
            member(&mut raw, b"pax", kind, 100 << 10, &vec![b'a'; 100 << 10]);
            member(&mut raw, b"x", tar::EntryType::Regular, 0, &[]);
            let msg = refusal(scan_bytes(raw, PublishLimits::default()));
            assert!(msg.contains("more than 65536"), "{kind:?}: {msg}");
        }
        // Small ones are honoured: a long name, a PAX path and link.
        let mut raw = Vec::new();
        let long = format!("{}/f", "d".repeat(200));
        member(
            &mut raw,
            b"././@LongLink",
            tar::EntryType::GNULongName,
            long.len() as u64 + 1,
            format!("{long}\0").as_bytes(),
        );
        member(&mut raw, b"short", tar::EntryType::Regular, 2, b"hi");
        let mut pax = pax_record("path", "p/link");
        pax.extend(pax_record("linkpath", "../short"));
        member(&mut raw, b"PaxHeader", tar::EntryType::XHeader, pax.len() as u64, &pax);
        member(&mut raw, b"l", tar::EntryType::Symlink, 0, &[]);
        member(&mut raw, b"pax_global_header", tar::EntryType::XGlobalHeader, 11, b"9 comment=\n");
        let scanned = scan_bytes(raw, PublishLimits::default()).unwrap();
        assert!(matches!(scanned.entries.get(&long), Some(Raw::File { size: 2, .. })));
        assert!(matches!(scanned.entries.get("p/link"), Some(Raw::Symlink { target }) if target == "../short"));
        // A long name with no member after it.
        let mut raw = Vec::new();
        member(&mut raw, b"././@LongLink", tar::EntryType::GNULongName, 2, b"a\0");
        assert!(refusal(scan_bytes(raw, PublishLimits::default())).contains("no member"));
    }

    #[test]
    fn the_size_charged_is_the_size_read() {
        // The header says 0, PAX says 1 MiB: the data would be read as 1 MiB.
        let limits = PublishLimits { max_total_bytes: 1000, ..PublishLimits::default() };
        let mut raw = Vec::new();
        let pax = pax_record("size", &(1u64 << 20).to_string());
        member(&mut raw, b"PaxHeader", tar::EntryType::XHeader, pax.len() as u64, &pax);
        member(&mut raw, b"big", tar::EntryType::Regular, 0, &vec![7u8; 1 << 20]);
        let msg = refusal(scan_bytes(raw, limits));
        assert!(msg.contains("PAX size"), "{msg}");
        // Sizes add up against the total.
        let mut raw = Vec::new();
        member(&mut raw, b"a", tar::EntryType::Regular, 600, &[1u8; 600]);
        member(&mut raw, b"b", tar::EntryType::Regular, 600, &[2u8; 600]);
        assert!(refusal(scan_bytes(raw, limits)).contains("add up"));
        // A truncated member.
        let mut raw = Vec::new();
        member(&mut raw, b"a", tar::EntryType::Regular, 600, &[1u8; 100]);
        raw.truncate(612);
        let _ = refusal(scan_bytes(raw, limits));
    }

    #[test]
    fn the_decoded_archive_is_capped() {
        // Headers that hold no file content still cannot make the archive decode without end.
        let limits = PublishLimits { max_entries: 1, max_total_bytes: 1000, ..PublishLimits::default() };
        let mut raw = Vec::new();
        for _ in 0..10 {
            member(&mut raw, b"pax_global_header", tar::EntryType::XGlobalHeader, 60 << 10, &vec![b'a'; 60 << 10]);
        }
        let msg = refusal(scan_bytes(zstd::encode_all(&raw[..], 3).unwrap(), limits));
        assert!(msg.contains("decodes to more than"), "{msg}");
    }

    #[test]
    fn hostile_archives_are_refused() {
        let scan = |bytes: Vec<u8>| {
            scan_archive(&layer(), Box::new(std::io::Cursor::new(bytes)), PublishLimits::default())
                .and_then(|s| build_manifest(&layer(), &s).map(|_| ()))
        };
        // The tar crate refuses to *write* `..` and absolute names; write the raw header.
        let raw_name = |name: &[u8]| {
            tar_with(|b| {
                let mut h = header(tar::EntryType::Regular, 1);
                h.as_old_mut().name[..name.len()].copy_from_slice(name);
                h.set_cksum();
                b.append(&h, &b"x"[..]).unwrap();
            })
        };
        for name in [&b"../evil"[..], b"/etc/evil", b"a/../../evil"] {
            assert!(matches!(scan(raw_name(name)), Err(Error::Refused { .. })), "{name:?}");
        }
        let link = tar_with(|b| {
            let mut h = header(tar::EntryType::Symlink, 0);
            b.append_link(&mut h, "l", "/etc/passwd").unwrap();
        });
        assert!(matches!(scan(link), Err(Error::Refused { path, .. }) if path == "l"));
        let hard = tar_with(|b| {
            let mut h = header(tar::EntryType::Link, 0);
            b.append_link(&mut h, "h", "x").unwrap();
        });
        assert!(matches!(scan(hard), Err(Error::Refused { path, .. }) if path == "h"));
        let fifo = tar_with(|b| {
            let mut h = header(tar::EntryType::Fifo, 0);
            b.append_data(&mut h, "p", std::io::empty()).unwrap();
        });
        assert!(matches!(scan(fifo), Err(Error::Refused { path, .. }) if path == "p"));
        let ok = tar_with(|b| {
            let mut h = header(tar::EntryType::Regular, 2);
            b.append_data(&mut h, "./dir/f", &b"hi"[..]).unwrap();
        });
        scan(ok).unwrap();
    }
}
