//! Applying a server's layers: fetch through the cache, merge, render, write into the
//! server's directory through [`ServerFiles`] (confined, quota-checked).
//!
//! # Steps
//! 1. The manifests, in parallel, from the cache or the source.
//! 2. [`merge()`](crate::merge::merge) in list order.
//! 3. Every blob the result needs, pinned against eviction and fetched in parallel (one
//!    download per blob, see [`crate::cache`]); an apply whose distinct blobs add up to more
//!    than the cache may hold is refused first ([`Error::CacheTooSmall`]). Any failure
//!    stops here: nothing has been written yet.
//! 4. Directories, parents first, in path order (`mkdir`, then their mode).
//! 5. Files and symlinks, in parallel. A file is copied out of the cache in one pass that
//!    recomputes its digest ([`ServerFiles::write_with`]: a temporary file renamed over the
//!    target, so a failed copy leaves the old file); a mismatch evicts the blob, fetches it
//!    again and retries that file once. Files marked `render` go through
//!    [`render`](crate::render::render) first, at most two at once in the whole process
//!    (rendering is CPU-bound, templates hostile), and within the apply's budget: at most
//!    [`APPLY_RENDER_TIME`] of rendering and [`APPLY_RENDER_BYTES`] read and produced, all
//!    files together, on top of each file's [`RenderLimits`](crate::RenderLimits).
//!
//! # What is written, and what is not
//! - A file replaces a file or a symlink at its path (the symlink itself, never what it
//!   points at); a directory there is an error ([`Error::Files`]), as is a file where the
//!   template has a directory. A symlinked *parent* is resolved by the file manager and
//!   refused when it leads out of the server root.
//! - Whiteouts only remove entries of earlier layers: they never delete files already in
//!   the server's directory. Files the layers do not mention are left alone.
//! - A failure part-way through step 5 leaves the files written so far (each one whole).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use futures::{StreamExt, TryStreamExt};
use nexus_core::template::{EntryKind, LayerRef, TemplateError};
use nexus_files::{ServerFiles, WriteOptions};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::cache::LayerCache;
use crate::error::{Error, Result};
use crate::merge::{MergedEntry, merge};
use crate::render::{RenderContext, Rendered};

/// Files written at once.
const WRITES: usize = 8;
/// Blobs fetched (or found in the cache) at once.
const FETCHES: usize = 16;
/// Copy buffer.
const CHUNK: usize = 256 << 10;
/// Files rendered at once in this process, whatever the number of applies: rendering is
/// CPU-bound and templates are hostile, so they never take more than two cores of a node.
const RENDERS: usize = 2;
/// Most time one apply spends rendering, all files together.
pub const APPLY_RENDER_TIME: Duration = Duration::from_secs(30);
/// Most bytes one apply renders, templates read plus text produced, all files together.
pub const APPLY_RENDER_BYTES: u64 = 128 << 20;

/// The node-wide gate on rendering (see [`RENDERS`]).
static RENDER_SLOTS: Semaphore = Semaphore::const_new(RENDERS);

/// What an apply has spent on rendering so far (see [`APPLY_RENDER_TIME`] and
/// [`APPLY_RENDER_BYTES`]).
#[derive(Default)]
struct RenderSpend {
    nanos: AtomicU64,
    bytes: AtomicU64,
}

/// What an apply did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ApplySummary {
    /// Layers merged.
    pub layers: usize,
    /// Regular files written (rendered ones included).
    pub files: u64,
    /// Files rendered from templates (not those marked `render` but copied unchanged
    /// because they are binary).
    pub rendered: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Blobs this apply downloaded (the others were cached, or downloaded by a concurrent
    /// apply).
    pub downloaded: u64,
}

/// One step of an apply, run concurrently with others.
type Task<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send + 'a>>;

/// A file write that failed.
enum WriteFailure {
    /// The cached blob does not match its digest (or vanished).
    Corrupt,
    Other(Error),
}

/// Copies a cached blob into `out`, hashing it on the way; a mismatch (or a missing blob)
/// sets `corrupt` and fails, so the write is abandoned.
fn copy_verified(
    src: &Path,
    digest: &str,
    size: u64,
    out: &mut dyn Write,
    corrupt: &AtomicBool,
) -> std::io::Result<()> {
    let mut file = match File::open(src) {
        Ok(file) => file,
        Err(e) => {
            if e.kind() == std::io::ErrorKind::NotFound {
                corrupt.store(true, Ordering::Relaxed);
            }
            return Err(e);
        }
    };
    // The LRU order outlives the process through the mtime (see `cache`).
    let _ = file.set_modified(SystemTime::now());
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK.min(usize::try_from(size).unwrap_or(CHUNK).max(1))];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > size {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
    }
    if total != size || hex::encode(hasher.finalize()) != digest {
        corrupt.store(true, Ordering::Relaxed);
        return Err(std::io::Error::other("cached blob does not match its digest"));
    }
    Ok(())
}

/// Reads a whole cached blob, verified; `None` when it is corrupt or missing. Marks it used
/// (its mtime), as a copy does.
fn read_verified(src: &Path, digest: &str, size: u64) -> Option<Vec<u8>> {
    let mut file = File::open(src).ok()?;
    let _ = file.set_modified(SystemTime::now());
    let mut bytes = Vec::with_capacity(usize::try_from(size).ok()?);
    file.read_to_end(&mut bytes).ok()?;
    (bytes.len() as u64 == size && hex::encode(Sha256::digest(&bytes)) == digest).then_some(bytes)
}

/// Whether the start of a file says it is not text (a NUL byte, or invalid UTF-8 before the
/// last few bytes, which may be a cut character).
fn looks_binary(src: &Path) -> bool {
    let mut head = vec![0u8; 8192];
    let Ok(n) = File::open(src).and_then(|mut f| f.read(&mut head)) else { return false };
    let head = &head[..n];
    if head.contains(&0) {
        return true;
    }
    match std::str::from_utf8(head) {
        Ok(_) => false,
        Err(e) => e.error_len().is_some() || e.valid_up_to() + 4 < head.len(),
    }
}

struct Job<'a> {
    cache: &'a LayerCache,
    layers: &'a [LayerRef],
    target: &'a ServerFiles,
    ctx: &'a Arc<RenderContext>,
    spend: &'a RenderSpend,
}

impl Job<'_> {
    fn files_error(entry: &MergedEntry, source: nexus_files::FilesError) -> Error {
        Error::Files { path: entry.path.clone(), source }
    }

    fn what(entry: &MergedEntry, digest: &str) -> String {
        format!("blob {digest} of `{}`", entry.path)
    }

    /// Writes one file (rendered or copied), refetching its blob once if it is corrupt.
    /// Returns (bytes written, rendered).
    async fn file(&self, entry: &MergedEntry, digest: &str, size: u64, mode: u32, render: bool) -> Result<(u64, bool)> {
        let layer = &self.layers[entry.layer];
        for attempt in 0..2 {
            match self.write_once(entry, digest, size, mode, render).await {
                Ok(done) => return Ok(done),
                Err(WriteFailure::Corrupt) if attempt == 0 => {
                    self.cache.discard_corrupt(digest);
                    self.cache.ensure_blob(layer, &Self::what(entry, digest), digest, size).await?;
                }
                Err(WriteFailure::Corrupt) => break,
                Err(WriteFailure::Other(e)) => return Err(e),
            }
        }
        Err(Error::Fetch {
            layer: layer.to_string(),
            what: Self::what(entry, digest),
            source: TemplateError::Corrupt { digest: digest.to_owned() },
        })
    }

    async fn write_once(
        &self,
        entry: &MergedEntry,
        digest: &str,
        size: u64,
        mode: u32,
        render: bool,
    ) -> Result<(u64, bool), WriteFailure> {
        let src = self.cache.blob_path(digest);
        let options = WriteOptions::new().mode(mode).replace_symlink(true);
        if render {
            if let Some((out, rendered)) = self.render(entry, &src, digest, size).await? {
                let len = out.len() as u64;
                self.target
                    .write_with(&entry.path, options.size_hint(len), move |w| w.write_all(&out))
                    .await
                    .map_err(|e| WriteFailure::Other(Self::files_error(entry, e)))?;
                return Ok((len, rendered));
            }
        }
        self.copy(entry, src, digest, size, options).await.map(|n| (n, false))
    }

    /// Renders one file within the node's and the apply's budgets: `None` when it is to be
    /// copied as it is (too big to be a template, and binary), else the bytes to write and
    /// whether they were rendered (a file that is not UTF-8 is written unchanged).
    async fn render(
        &self,
        entry: &MergedEntry,
        src: &Path,
        digest: &str,
        size: u64,
    ) -> Result<Option<(Vec<u8>, bool)>, WriteFailure> {
        let refuse =
            |message: String| WriteFailure::Other(Error::Render { file: entry.path.clone(), line: None, message });
        let _slot = RENDER_SLOTS.acquire().await.map_err(|e| refuse(format!("waiting for a render slot: {e}")))?;
        let spent = Duration::from_nanos(self.spend.nanos.load(Ordering::Relaxed));
        let Some(left) = APPLY_RENDER_TIME.checked_sub(spent).filter(|left| !left.is_zero()) else {
            return Err(refuse(format!("this apply has spent its {APPLY_RENDER_TIME:?} of rendering")));
        };
        let bytes_before = self.spend.bytes.fetch_add(size, Ordering::Relaxed).saturating_add(size);
        if bytes_before > APPLY_RENDER_BYTES {
            return Err(refuse(format!("this apply has rendered its {APPLY_RENDER_BYTES} bytes")));
        }
        let mut ctx = RenderContext::clone(self.ctx);
        ctx.limits.timeout = ctx.limits.timeout.min(left);
        let limit = ctx.limits.max_input_bytes;
        let (path, digest_owned, src) = (entry.path.clone(), digest.to_owned(), src.to_path_buf());
        let started = Instant::now();
        let rendered = tokio::task::spawn_blocking(move || -> Result<Option<(Vec<u8>, bool)>, WriteFailure> {
            if size > limit as u64 {
                if looks_binary(&src) {
                    return Ok(None);
                }
                return Err(WriteFailure::Other(Error::Render {
                    file: path,
                    line: None,
                    message: format!("template of {size} bytes, more than {limit} allowed"),
                }));
            }
            let bytes = read_verified(&src, &digest_owned, size).ok_or(WriteFailure::Corrupt)?;
            match crate::render::render(&path, &bytes, &ctx).map_err(WriteFailure::Other)? {
                Rendered::Text(out) => Ok(Some((out, true))),
                Rendered::Binary => Ok(Some((bytes, false))),
            }
        })
        .await;
        let elapsed = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.spend.nanos.fetch_add(elapsed, Ordering::Relaxed);
        let rendered = rendered.map_err(|e| refuse(format!("rendering failed: {e}")))??;
        if let Some((out, true)) = &rendered {
            let total =
                self.spend.bytes.fetch_add(out.len() as u64, Ordering::Relaxed).saturating_add(out.len() as u64);
            if total > APPLY_RENDER_BYTES {
                return Err(refuse(format!("this apply has rendered its {APPLY_RENDER_BYTES} bytes")));
            }
        }
        Ok(rendered)
    }

    async fn copy(
        &self,
        entry: &MergedEntry,
        src: PathBuf,
        digest: &str,
        size: u64,
        options: WriteOptions,
    ) -> Result<u64, WriteFailure> {
        let corrupt = Arc::new(AtomicBool::new(false));
        let (flag, digest_owned) = (Arc::clone(&corrupt), digest.to_owned());
        let written = self
            .target
            .write_with(&entry.path, options.size_hint(size), move |out| {
                copy_verified(&src, &digest_owned, size, out, &flag)
            })
            .await;
        match written {
            Ok(_) => Ok(size),
            Err(_) if corrupt.load(Ordering::Relaxed) => Err(WriteFailure::Corrupt),
            Err(e) => Err(WriteFailure::Other(Self::files_error(entry, e))),
        }
    }
}

impl LayerCache {
    /// Applies `layers` (in priority order: later layers overwrite earlier files) into the
    /// server directory of `target`, rendering the files marked `render` with `ctx` (see the
    /// module docs for the steps and what is and is not written).
    pub async fn apply(&self, layers: &[LayerRef], target: &ServerFiles, ctx: &RenderContext) -> Result<ApplySummary> {
        let started = std::time::Instant::now();
        let manifests = futures::future::try_join_all(layers.iter().map(|l| self.manifest(l))).await?;
        // CPU work on big layers: not on an async thread.
        let merged = tokio::task::spawn_blocking(move || merge(&manifests))
            .await
            .map_err(|e| Error::io(self.dir(), std::io::Error::other(e)))?;
        let mut summary = ApplySummary { layers: layers.len(), ..ApplySummary::default() };

        let mut blobs: Vec<(&MergedEntry, &str, u64)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for entry in &merged {
            if let EntryKind::File { sha256, size, .. } = &entry.kind {
                if seen.insert(sha256.as_str()) {
                    blobs.push((entry, sha256.as_str(), *size));
                }
            }
        }
        // Blobs that cannot all be in the cache at once would evict each other mid-apply.
        let needed = blobs.iter().fold(0u64, |sum, (_, _, size)| sum.saturating_add(*size));
        if needed > self.max_bytes() {
            return Err(Error::CacheTooSmall { bytes: needed, max_bytes: self.max_bytes() });
        }
        let _pins = self.pin(blobs.iter().map(|(_, d, _)| (*d).to_owned()).collect());
        // Boxed as `Send` futures: the compiler cannot prove it of closures over borrowed
        // entries, and callers spawn applies.
        let fetches: Vec<Task<'_, bool>> = blobs
            .iter()
            .map(|&(entry, digest, size)| -> Task<'_, bool> {
                let layer = &layers[entry.layer];
                Box::pin(async move { self.ensure_blob(layer, &Job::what(entry, digest), digest, size).await })
            })
            .collect();
        let downloaded: Vec<bool> = futures::stream::iter(fetches).buffer_unordered(FETCHES).try_collect().await?;
        summary.downloaded = downloaded.iter().filter(|d| **d).count() as u64;

        for entry in &merged {
            if let EntryKind::Dir { mode } = entry.kind {
                target.mkdir(&entry.path).await.map_err(|e| Job::files_error(entry, e))?;
                target.chmod(&entry.path, mode).await.map_err(|e| Job::files_error(entry, e))?;
                summary.dirs += 1;
            }
        }

        let ctx = Arc::new(ctx.clone());
        let spend = RenderSpend::default();
        let job = Job { cache: self, layers, target, ctx: &ctx, spend: &spend };
        let job = &job;
        let mut writes: Vec<Task<'_, (u64, bool, bool)>> = Vec::new();
        for entry in &merged {
            match &entry.kind {
                EntryKind::File { sha256, size, mode, render } => {
                    let (size, mode, render) = (*size, *mode, *render);
                    writes.push(Box::pin(async move {
                        job.file(entry, sha256, size, mode, render).await.map(|(n, r)| (n, r, false))
                    }));
                }
                EntryKind::Symlink { target: to } => writes.push(Box::pin(async move {
                    target.symlink(&entry.path, to).await.map_err(|e| Job::files_error(entry, e))?;
                    Ok((0, false, true))
                })),
                _ => {}
            }
        }
        let written: Vec<(u64, bool, bool)> =
            futures::stream::iter(writes).buffer_unordered(WRITES).try_collect().await?;
        for (bytes, rendered, symlink) in written {
            if symlink {
                summary.symlinks += 1;
            } else {
                summary.files += 1;
                summary.bytes += bytes;
                summary.rendered += u64::from(rendered);
            }
        }
        drop(_pins);
        self.evict_to_bound();
        tracing::info!(
            root = %target.root().display(),
            layers = %layers.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            files = summary.files,
            downloaded = summary.downloaded,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "template applied"
        );
        Ok(summary)
    }
}
