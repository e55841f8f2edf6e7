//! [`LayerCache`]: a node's local cache of layers, content-addressed and shared by every
//! server and every layer.
//!
//! # On disk
//! - `<dir>/blobs/<sha256>`: file contents, named by their digest.
//! - `<dir>/layers/<name>@<version>.json`: manifests (versions are immutable, so a cached
//!   manifest never goes stale, and a cached layer is usable while the store is unreachable).
//! - `<dir>/tmp/`: downloads in flight. A download streams into a temporary file while
//!   hashing and is renamed into place only when the digest (and size) match, so a killed
//!   download leaves nothing under `blobs/`; leftovers in `tmp/` are removed when the cache
//!   is opened, and a download abandoned in flight removes its own.
//!
//! # Integrity
//! Blobs are verified when written (the download) and again when read: the digest is
//! recomputed as a blob is copied out ([`crate::apply`]); a mismatch evicts it and fetches it
//! again, once.
//!
//! # Size
//! At most [`CacheConfig::max_bytes`] of blobs, least recently used evicted first. The index
//! is built at open by scanning `blobs/`, ordered by modification time, and every use sets
//! the file's mtime, so the order survives restarts. A blob pinned by a running apply is
//! never evicted (the cache may then exceed its bound until the apply ends).
//!
//! # Downloads
//! One download per blob or manifest however many applies ask for it at once (single
//! flight per digest), at most [`CacheConfig::max_downloads`] at once, each tried
//! [`CacheConfig::attempts`] times with a doubling backoff when the failure is retryable
//! ([`TemplateError::is_retryable`]); then [`Error::Fetch`] names the layer and what failed.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use nexus_core::template::{LayerManifest, LayerRef, TemplateError, TemplateSource, is_sha256_hex};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use crate::error::{Error, Result};

/// How a [`LayerCache`] is set up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheConfig {
    /// The cache's directory (created if missing).
    pub dir: PathBuf,
    /// Most bytes of blobs kept (10 GiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Downloads at once (8).
    #[serde(default = "default_downloads")]
    pub max_downloads: usize,
    /// Tries per download when failures are retryable (3).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Wait before the second try, doubled before each further one (200 ms).
    #[serde(default = "default_backoff", with = "millis")]
    pub backoff: Duration,
    /// Longest wait for the next chunk of a download (60 s): a stalled transfer fails (and
    /// is retried), a slow one that keeps flowing is never cut.
    #[serde(default = "default_idle_timeout", with = "millis")]
    pub idle_timeout: Duration,
}

fn default_max_bytes() -> u64 {
    10 << 30
}
fn default_downloads() -> usize {
    8
}
fn default_attempts() -> u32 {
    3
}
fn default_backoff() -> Duration {
    Duration::from_millis(200)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
/// How long a failed download is handed to callers that were waiting for it, instead of
/// each of them downloading again.
const FAILURE_SHARED_FOR: Duration = Duration::from_secs(5);

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

impl CacheConfig {
    /// A cache in `dir` with the defaults.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_bytes: default_max_bytes(),
            max_downloads: default_downloads(),
            attempts: default_attempts(),
            backoff: default_backoff(),
            idle_timeout: default_idle_timeout(),
        }
    }
}

/// What the cache did since it was opened, and what it holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CacheStats {
    /// Blobs downloaded (successfully, each counted once).
    pub blob_downloads: u64,
    /// Manifests downloaded.
    pub manifest_downloads: u64,
    /// Blob requests served from the cache.
    pub blob_hits: u64,
    /// Manifest requests served from the cache.
    pub manifest_hits: u64,
    /// Blobs evicted to stay under the size bound.
    pub evictions: u64,
    /// Blobs found corrupt (in the cache when read, or from the source when downloaded).
    pub corrupt: u64,
    /// Bytes received by downloads in flight right now.
    pub in_flight_bytes: u64,
    /// Bytes of blobs held.
    pub bytes: u64,
    /// Blobs held.
    pub blobs: usize,
}

#[derive(Default)]
struct Counters {
    blob_downloads: AtomicU64,
    manifest_downloads: AtomicU64,
    blob_hits: AtomicU64,
    manifest_hits: AtomicU64,
    evictions: AtomicU64,
    corrupt: AtomicU64,
    in_flight_bytes: AtomicU64,
}

struct Blob {
    size: u64,
    /// LRU key: nanoseconds since the epoch of the last use.
    used: u64,
}

#[derive(Default)]
struct Index {
    blobs: HashMap<String, Blob>,
    lru: BTreeSet<(u64, String)>,
    total: u64,
    pins: HashMap<String, usize>,
}

struct Inner {
    config: CacheConfig,
    source: Arc<dyn TemplateSource>,
    index: Mutex<Index>,
    flights: Mutex<HashMap<String, Flight>>,
    downloads: Semaphore,
    counters: Counters,
    temp_seq: AtomicU64,
}

/// A node's cache of template layers (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct LayerCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LayerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerCache").field("dir", &self.inner.config.dir).finish_non_exhaustive()
    }
}

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// One download in flight: callers take the lock in turn; the first one downloads, and
/// leaves its failure for those that waited.
type Flight = Arc<tokio::sync::Mutex<Option<Failure>>>;

/// A failed download, as handed to the callers that waited for it.
struct Failure {
    at: std::time::Instant,
    error: Error,
}

/// A copy of an error of this cache (its sources are not `Clone`): same variant and message.
fn replay(error: &Error) -> Error {
    fn template(e: &TemplateError) -> TemplateError {
        match e {
            TemplateError::NotFound(what) => TemplateError::NotFound(what.clone()),
            TemplateError::InvalidLayer { layer, reason } => {
                TemplateError::InvalidLayer { layer: layer.clone(), reason: reason.clone() }
            }
            TemplateError::InvalidPath { path, reason } => {
                TemplateError::InvalidPath { path: path.clone(), reason: reason.clone() }
            }
            TemplateError::Corrupt { digest } => TemplateError::Corrupt { digest: digest.clone() },
            TemplateError::Unreachable { what, source } => {
                TemplateError::Unreachable { what: what.clone(), source: source.to_string().into() }
            }
            other => TemplateError::Source { what: "fetching".into(), source: other.to_string().into() },
        }
    }
    match error {
        Error::Fetch { layer, what, source } => {
            Error::Fetch { layer: layer.clone(), what: what.clone(), source: template(source) }
        }
        Error::Source(source) => Error::Source(template(source)),
        Error::Io { path, source } => Error::io(path, std::io::Error::new(source.kind(), source.to_string())),
        other => Error::Source(TemplateError::Source { what: "fetching".into(), source: other.to_string().into() }),
    }
}

/// Removes a temporary download unless it was renamed into place.
struct TempFile {
    path: PathBuf,
    placed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.placed {
            if let Err(e) = std::fs::remove_file(&self.path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.path.display(), error = %e, "could not remove a partial download");
                }
            }
        }
    }
}

/// Blobs held for a running apply: never evicted until dropped.
pub(crate) struct Pins {
    cache: LayerCache,
    digests: Vec<String>,
}

impl Drop for Pins {
    fn drop(&mut self) {
        let mut index = self.cache.index();
        for digest in &self.digests {
            if let Some(count) = index.pins.get_mut(digest) {
                *count -= 1;
                if *count == 0 {
                    index.pins.remove(digest);
                }
            }
        }
    }
}

impl LayerCache {
    /// Opens (creating it if needed) the cache in `config.dir`, reading layers from
    /// `source`: removes leftover downloads, indexes the blobs by modification time, and
    /// evicts down to the bound.
    pub async fn open(config: CacheConfig, source: Arc<dyn TemplateSource>) -> Result<Self> {
        let dir = config.dir.clone();
        let index = tokio::task::spawn_blocking(move || scan(&dir))
            .await
            .map_err(|e| Error::io(&config.dir, std::io::Error::other(e)))??;
        let downloads = Semaphore::new(config.max_downloads.max(1));
        let inner = Inner {
            config,
            source,
            index: Mutex::new(index),
            flights: Mutex::new(HashMap::new()),
            downloads,
            counters: Counters::default(),
            temp_seq: AtomicU64::new(0),
        };
        let cache = Self { inner: Arc::new(inner) };
        cache.evict_to_bound();
        Ok(cache)
    }

    /// The cache's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.config.dir
    }

    /// The most bytes of blobs kept ([`CacheConfig::max_bytes`]).
    pub fn max_bytes(&self) -> u64 {
        self.inner.config.max_bytes
    }

    /// The source layers come from.
    pub fn source(&self) -> &Arc<dyn TemplateSource> {
        &self.inner.source
    }

    /// Counters and contents.
    pub fn stats(&self) -> CacheStats {
        let c = &self.inner.counters;
        let index = self.index();
        CacheStats {
            blob_downloads: c.blob_downloads.load(Ordering::Relaxed),
            manifest_downloads: c.manifest_downloads.load(Ordering::Relaxed),
            blob_hits: c.blob_hits.load(Ordering::Relaxed),
            manifest_hits: c.manifest_hits.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
            corrupt: c.corrupt.load(Ordering::Relaxed),
            in_flight_bytes: c.in_flight_bytes.load(Ordering::Relaxed),
            bytes: index.total,
            blobs: index.blobs.len(),
        }
    }

    /// Whether the blob is cached.
    pub fn contains_blob(&self, sha256: &str) -> bool {
        self.index().blobs.contains_key(sha256)
    }

    /// Where the blob's file is (whether or not it is cached).
    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.inner.config.dir.join("blobs").join(sha256)
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        self.inner.index.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn flight(&self, key: &str) -> Flight {
        let mut flights = self.inner.flights.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(flights.entry(key.to_owned()).or_default())
    }

    /// Runs `fetch` as the one download of its flight: a caller that waited while another
    /// one failed gets that failure (for [`FAILURE_SHARED_FOR`]) instead of downloading
    /// again; `done` tells a waiter whether the leader's success left what it needs.
    async fn single_flight<T, D, F, Fut>(&self, key: &str, mut done: D, fetch: F) -> Result<T>
    where
        D: FnMut() -> Option<T>,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let flight = self.flight(key);
        let result = async {
            let mut slot = flight.lock().await;
            if let Some(value) = done() {
                return Ok(value);
            }
            if let Some(failure) = slot.as_ref().filter(|f| f.at.elapsed() < FAILURE_SHARED_FOR) {
                return Err(replay(&failure.error));
            }
            let result = fetch().await;
            *slot = match &result {
                Ok(_) => None,
                Err(e) => Some(Failure { at: std::time::Instant::now(), error: replay(e) }),
            };
            result
        }
        .await;
        self.land(key, flight);
        result
    }

    fn land(&self, key: &str, flight: Flight) {
        let mut flights = self.inner.flights.lock().unwrap_or_else(|p| p.into_inner());
        // Ours and the map's: nobody else waits for it.
        if Arc::strong_count(&flight) <= 2 {
            flights.remove(key);
        }
    }

    /// The manifest of `layer`, from the cache or the source (then cached).
    pub async fn manifest(&self, layer: &LayerRef) -> Result<LayerManifest> {
        let path = self.inner.config.dir.join("layers").join(format!("{layer}.json"));
        if let Some(manifest) = self.cached_manifest(layer, &path).await {
            self.inner.counters.manifest_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(manifest);
        }
        let key = format!("manifest:{layer}");
        // A caller that waited for another one's download finds the file it wrote.
        self.single_flight(
            &key,
            || None,
            || async {
                if let Some(manifest) = self.cached_manifest(layer, &path).await {
                    self.inner.counters.manifest_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(manifest);
                }
                let manifest = self
                    .retrying(layer, "manifest", || async {
                        let _permit = self.inner.downloads.acquire().await.map_err(|e| TemplateError::Source {
                            what: "waiting for a download slot".into(),
                            source: Box::new(e),
                        })?;
                        let manifest = self.inner.source.manifest(layer).await?;
                        // Whatever the source (a third party's): what is cached is valid.
                        let owned = layer.clone();
                        tokio::task::spawn_blocking(move || {
                            crate::source::check_manifest(&owned, &manifest).map(|()| manifest)
                        })
                        .await
                        .map_err(|e| TemplateError::Source {
                            what: "checking the manifest".into(),
                            source: Box::new(e),
                        })?
                    })
                    .await?;
                let json = serde_json::to_vec(&manifest).map_err(|e| Error::io(&path, std::io::Error::other(e)))?;
                let temp = self.temp_path("manifest");
                let mut guard = TempFile { path: temp.clone(), placed: false };
                tokio::fs::write(&temp, &json).await.map_err(|e| Error::io(&temp, e))?;
                tokio::fs::rename(&temp, &path).await.map_err(|e| Error::io(&path, e))?;
                guard.placed = true;
                self.inner.counters.manifest_downloads.fetch_add(1, Ordering::Relaxed);
                Ok(manifest)
            },
        )
        .await
    }

    async fn cached_manifest(&self, layer: &LayerRef, path: &Path) -> Option<LayerManifest> {
        let bytes = tokio::fs::read(path).await.ok()?;
        // Parsing and validating a big manifest is CPU work: not on an async thread.
        let owned = layer.clone();
        let parsed = tokio::task::spawn_blocking(move || crate::source::parse_manifest(&owned, &bytes)).await;
        match parsed {
            Ok(Ok(m)) => Some(m),
            _ => {
                tracing::warn!(%layer, "cached manifest unreadable; fetching it again");
                let _ = tokio::fs::remove_file(path).await;
                None
            }
        }
    }

    fn temp_path(&self, what: &str) -> PathBuf {
        let n = self.inner.temp_seq.fetch_add(1, Ordering::Relaxed);
        self.inner.config.dir.join("tmp").join(format!("{what}.{}.{n}", std::process::id()))
    }

    /// Runs `attempt` up to the configured number of times while it fails retryably.
    async fn retrying<T, F, Fut>(&self, layer: &LayerRef, what: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, TemplateError>>,
    {
        let attempts = self.inner.config.attempts.max(1);
        let mut backoff = self.inner.config.backoff;
        for n in 1..=attempts {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(e) if e.is_retryable() && n < attempts => {
                    tracing::warn!(%layer, what, attempt = n, error = %e, "fetch failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                }
                Err(source) => {
                    tracing::warn!(%layer, what, error = %source, "fetch failed");
                    return Err(Error::Fetch { layer: layer.to_string(), what: what.to_owned(), source });
                }
            }
        }
        Err(Error::Fetch {
            layer: layer.to_string(),
            what: what.to_owned(),
            source: TemplateError::Source { what: "no attempt made".into(), source: "attempts is 0".into() },
        })
    }

    /// Holds `digests` against eviction until the guard is dropped.
    pub(crate) fn pin(&self, digests: Vec<String>) -> Pins {
        let mut index = self.index();
        for digest in &digests {
            *index.pins.entry(digest.clone()).or_default() += 1;
        }
        drop(index);
        Pins { cache: self.clone(), digests }
    }

    /// Marks a blob used (LRU order); `false` when it is not cached.
    fn touch(&self, digest: &str) -> bool {
        let mut index = self.index();
        let Index { blobs, lru, .. } = &mut *index;
        let Some(blob) = blobs.get_mut(digest) else { return false };
        lru.remove(&(blob.used, digest.to_owned()));
        blob.used = now_nanos().max(blob.used + 1);
        lru.insert((blob.used, digest.to_owned()));
        true
    }

    /// Makes sure the blob is cached, downloading it once however many callers ask at once.
    /// `layer` and `what` name it in errors.
    /// Returns whether this call downloaded it.
    pub(crate) async fn ensure_blob(&self, layer: &LayerRef, what: &str, digest: &str, size: u64) -> Result<bool> {
        if self.touch(digest) {
            self.inner.counters.blob_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        self.single_flight(
            digest,
            || {
                self.touch(digest).then(|| {
                    self.inner.counters.blob_hits.fetch_add(1, Ordering::Relaxed);
                    false
                })
            },
            || async { self.retrying(layer, what, || self.download(digest, size)).await.map(|()| true) },
        )
        .await
    }

    /// One download: streamed into a temporary file while hashing, renamed into place when
    /// the digest and the size match.
    async fn download(&self, digest: &str, size: u64) -> Result<(), TemplateError> {
        let _permit =
            self.inner.downloads.acquire().await.map_err(|e| TemplateError::Source {
                what: "waiting for a download slot".into(),
                source: Box::new(e),
            })?;
        let local = |e: std::io::Error| TemplateError::Source { what: "writing the cache".into(), source: Box::new(e) };
        let temp = self.temp_path(digest);
        let mut guard = TempFile { path: temp.clone(), placed: false };
        let file = tokio::fs::File::create(&temp).await.map_err(local)?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let mut stream = self.inner.source.blob(digest).await?;
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        let counters = &self.inner.counters;
        let streamed: Result<(), TemplateError> = async {
            let idle = self.inner.config.idle_timeout;
            loop {
                let Ok(next) = tokio::time::timeout(idle, stream.next()).await else {
                    return Err(TemplateError::Unreachable {
                        what: format!("downloading blob {digest}"),
                        source: format!("no data for {idle:?}").into(),
                    });
                };
                let Some(chunk) = next else { break };
                let chunk = chunk?;
                received += chunk.len() as u64;
                counters.in_flight_bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                if received > size {
                    return Err(TemplateError::Corrupt { digest: digest.to_owned() });
                }
                hasher.update(&chunk);
                out.write_all(&chunk).await.map_err(local)?;
            }
            out.flush().await.map_err(local)?;
            Ok(())
        }
        .await;
        counters.in_flight_bytes.fetch_sub(received, Ordering::Relaxed);
        streamed?;
        if received != size || hex::encode(hasher.finalize()) != digest {
            counters.corrupt.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(digest, "downloaded blob does not match its digest; not kept");
            return Err(TemplateError::Corrupt { digest: digest.to_owned() });
        }
        drop(out);
        let path = self.blob_path(digest);
        tokio::fs::rename(&temp, &path).await.map_err(local)?;
        guard.placed = true;
        {
            let mut index = self.index();
            let used = now_nanos();
            if let Some(old) = index.blobs.insert(digest.to_owned(), Blob { size, used }) {
                index.lru.remove(&(old.used, digest.to_owned()));
                index.total -= old.size;
            }
            index.lru.insert((used, digest.to_owned()));
            index.total += size;
        }
        counters.blob_downloads.fetch_add(1, Ordering::Relaxed);
        self.evict_to_bound();
        Ok(())
    }

    /// Drops a blob found corrupt when read, so that it is fetched again.
    pub(crate) fn discard_corrupt(&self, digest: &str) {
        self.inner.counters.corrupt.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(digest, "cached blob does not match its digest; evicted");
        self.remove(digest);
    }

    fn remove(&self, digest: &str) {
        let mut index = self.index();
        if let Some(blob) = index.blobs.remove(digest) {
            index.lru.remove(&(blob.used, digest.to_owned()));
            index.total -= blob.size;
        }
        drop(index);
        if let Err(e) = std::fs::remove_file(self.blob_path(digest)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(digest, error = %e, "could not remove a cached blob");
            }
        }
    }

    /// Evicts least recently used, unpinned blobs until under the bound.
    pub(crate) fn evict_to_bound(&self) {
        let max = self.inner.config.max_bytes;
        let mut victims = Vec::new();
        {
            let mut index = self.index();
            if index.total <= max {
                return;
            }
            let mut total = index.total;
            for (_, digest) in &index.lru {
                if total <= max {
                    break;
                }
                if index.pins.contains_key(digest) {
                    continue;
                }
                if let Some(blob) = index.blobs.get(digest) {
                    total -= blob.size;
                    victims.push((blob.used, digest.clone()));
                }
            }
            for (used, digest) in &victims {
                if let Some(blob) = index.blobs.remove(digest) {
                    index.total -= blob.size;
                }
                index.lru.remove(&(*used, digest.clone()));
            }
        }
        for (_, digest) in &victims {
            if let Err(e) = std::fs::remove_file(self.blob_path(digest)) {
                tracing::warn!(digest, error = %e, "could not remove an evicted blob");
            }
        }
        if !victims.is_empty() {
            self.inner.counters.evictions.fetch_add(victims.len() as u64, Ordering::Relaxed);
            tracing::debug!(evicted = victims.len(), "template cache evicted blobs");
        }
    }
}

/// Builds the index from `<dir>/blobs`, creating the layout and emptying `tmp/`.
fn scan(dir: &Path) -> Result<Index> {
    for sub in ["blobs", "layers", "tmp"] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
    }
    let tmp = dir.join("tmp");
    for item in std::fs::read_dir(&tmp).map_err(|e| Error::io(&tmp, e))? {
        let item = item.map_err(|e| Error::io(&tmp, e))?;
        let _ = std::fs::remove_file(item.path());
    }
    let blobs = dir.join("blobs");
    let mut index = Index::default();
    for item in std::fs::read_dir(&blobs).map_err(|e| Error::io(&blobs, e))? {
        let item = item.map_err(|e| Error::io(&blobs, e))?;
        let name = item.file_name();
        let meta = item.metadata().map_err(|e| Error::io(item.path(), e))?;
        match name.to_str() {
            Some(digest) if is_sha256_hex(digest) && meta.is_file() => {
                let used = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
                index.lru.insert((used, digest.to_owned()));
                index.blobs.insert(digest.to_owned(), Blob { size: meta.len(), used });
                index.total += meta.len();
            }
            _ => {
                tracing::warn!(path = %item.path().display(), "not a blob; removed from the template cache");
                let _ = std::fs::remove_file(item.path());
            }
        }
    }
    Ok(index)
}
