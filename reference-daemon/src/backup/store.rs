//! [`BackupStore`]: backup archives in an object store, under
//! `<server uuid>/<backup uuid>.tar.zst`.

use super::download::ObjectReader;
use super::error::BackupError;
use super::retry::{DEFAULT_STORE_TIMEOUT, RetryPolicy, abort_upload, timed, timed_out};
use super::upload::{MultipartSink, PART_SIZE};
use futures::StreamExt as _;
use nexus_core::ids::{BackupId, ServerId};
use nexus_files::{BackupSummary, RestoreSummary, ServerFiles};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// A backup written to the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Created {
    /// Size of the archive, bytes.
    pub bytes: u64,
    /// SHA-256 of the archive.
    pub checksum: [u8; 32],
    /// What was archived.
    pub summary: BackupSummary,
}

impl Created {
    /// The checksum in lower-case hex.
    pub fn checksum_hex(&self) -> String {
        hex::encode(self.checksum)
    }
}

/// Backup archives of a node in an object store (S3-compatible, a local directory, memory).
///
/// - [`create`](Self::create) streams [`ServerFiles::write_backup`] into a multipart upload
///   in 8 MiB parts (two uploading at once), computing the archive's SHA-256 on the way;
///   any failure aborts the upload, so no partial object is kept (an abort the store cannot
///   take now is retried in the background); the stored size is checked with a `HEAD`.
/// - [`restore`](Self::restore) streams the object into [`ServerFiles::stage_restore`],
///   hashing it on the way, and commits only when the hash is the one expected.
/// - Both are retried as a whole, per [`RetryPolicy`], when the store failed in a way that
///   can pass (a store that died and came back); then the last error is reported.
/// - Every store request (starting an upload, each part, completing it, `HEAD`, `GET`,
///   each chunk of a streamed object, listing, deleting) fails after the store's timeout
///   ([`with_timeout`](Self::with_timeout)) without an answer or, for a stream, without a
///   byte: a stalled store fails the job (retried, then reported) instead of holding it.
#[derive(Clone)]
pub struct BackupStore {
    store: Arc<dyn ObjectStore>,
    retry: RetryPolicy,
    part_size: usize,
    timeout: Duration,
}

impl std::fmt::Debug for BackupStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupStore")
            .field("store", &self.store.to_string())
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl BackupStore {
    /// Archives in `store`, tried as `retry` says, each request bounded by
    /// [`DEFAULT_STORE_TIMEOUT`](super::DEFAULT_STORE_TIMEOUT).
    pub fn new(store: Arc<dyn ObjectStore>, retry: RetryPolicy) -> Self {
        Self { store, retry, part_size: PART_SIZE, timeout: DEFAULT_STORE_TIMEOUT }
    }

    /// The same, each store request failing after `timeout` (at least 1 ms) without an
    /// answer, and a streamed read after `timeout` without a byte (the store
    /// configuration's `request_timeout_secs`). One part (8 MiB) must be uploaded within it.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Where the archive of `backup` of `server` is kept.
    pub fn key(server: ServerId, backup: BackupId) -> Path {
        Path::from(format!("{server}/{backup}.tar.zst"))
    }

    /// Archives `files` (the whole root, less `.pteroignore`'s and `ignored`'s matches) as
    /// the backup `backup` of `server`, replacing an archive already under that key.
    pub async fn create(
        &self,
        files: &ServerFiles,
        server: ServerId,
        backup: BackupId,
        ignored: &[String],
    ) -> Result<Created, BackupError> {
        let key = Self::key(server, backup);
        self.retried("backup", server, backup, || self.create_once(files, &key, ignored)).await
    }

    async fn create_once(&self, files: &ServerFiles, key: &Path, ignored: &[String]) -> Result<Created, BackupError> {
        let upload = timed(self.timeout, "starting the upload", self.store.put_multipart(key))
            .await
            .map_err(BackupError::Store)?;
        let mut sink = MultipartSink::new(upload, self.part_size, self.timeout);
        let written = match files.write_backup(&mut sink, ignored).await {
            Ok(summary) => sink.finish().await.map(|()| summary).map_err(BackupError::Store),
            // The sink's own error says more than the broken pipe the walk saw.
            Err(e) => Err(sink.take_error().map_or(BackupError::Files(e), BackupError::Store)),
        };
        let summary = match written {
            Ok(summary) => summary,
            Err(e) => {
                if let Some(upload) = sink.into_upload().await {
                    abort_upload(upload, key.to_string()).await;
                }
                return Err(e);
            }
        };
        let (bytes, checksum) = (sink.bytes(), sink.checksum());
        let stored = timed(self.timeout, "checking the archive", self.store.head(key)).await;
        let stored = stored.map_err(BackupError::Store)?.size;
        if stored != bytes {
            if let Err(error) = timed(self.timeout, "removing the archive", self.store.delete(key)).await {
                tracing::warn!(%key, %error, "could not remove an archive of the wrong size");
            }
            return Err(BackupError::SizeMismatch { written: bytes, stored });
        }
        let mut digest = [0u8; 32];
        hex::decode_to_slice(&checksum, &mut digest)
            .map_err(|e| BackupError::Store(object_store::Error::Generic { store: "backup", source: e.into() }))?;
        Ok(Created { bytes, checksum: digest, summary })
    }

    /// Replaces the files of `files`'s root with the archive of `backup` of `server`
    /// (`wipe`: see [`ServerFiles::stage_restore`]) if its SHA-256 is `checksum` (hex, any
    /// case); otherwise [`BackupError::ChecksumMismatch`] and nothing changed. The caller
    /// keeps the server stopped meanwhile, and reopens its file managers afterwards (the
    /// root is a new directory).
    pub async fn restore(
        &self,
        files: &ServerFiles,
        server: ServerId,
        backup: BackupId,
        checksum: &str,
        wipe: bool,
    ) -> Result<RestoreSummary, BackupError> {
        let key = Self::key(server, backup);
        let expected = checksum.to_ascii_lowercase();
        self.retried("restore", server, backup, || self.restore_once(files, server, backup, &key, &expected, wipe))
            .await
    }

    async fn restore_once(
        &self,
        files: &ServerFiles,
        server: ServerId,
        backup: BackupId,
        key: &Path,
        expected: &str,
        wipe: bool,
    ) -> Result<RestoreSummary, BackupError> {
        let mut reader = self.open_key(server, backup, key).await?;
        let staged = match files.stage_restore(&mut reader, wipe).await {
            Ok(staged) => staged,
            Err(e) => return Err(reader.take_error().map_or(BackupError::Files(e), BackupError::Store)),
        };
        let actual = reader.checksum();
        if actual != expected {
            staged.discard().await;
            return Err(BackupError::ChecksumMismatch { expected: expected.to_owned(), actual });
        }
        if reader.bytes() != reader.size() {
            staged.discard().await;
            // What the store announced against what it sent.
            return Err(BackupError::SizeMismatch { written: reader.bytes(), stored: reader.size() });
        }
        Ok(staged.commit().await?)
    }

    /// The archive of `backup` of `server`, to stream (its size is [`ObjectReader::size`]).
    pub async fn open(&self, server: ServerId, backup: BackupId) -> Result<ObjectReader, BackupError> {
        self.open_key(server, backup, &Self::key(server, backup)).await
    }

    async fn open_key(&self, server: ServerId, backup: BackupId, key: &Path) -> Result<ObjectReader, BackupError> {
        match timed(self.timeout, "opening the archive", self.store.get(key)).await {
            Ok(result) => Ok(ObjectReader::new(result, self.timeout)),
            Err(object_store::Error::NotFound { .. }) => Err(BackupError::NotFound { server, backup }),
            Err(e) => Err(BackupError::Store(e)),
        }
    }

    /// Removes the archive of `backup` of `server`; one that is not there is fine.
    pub async fn delete(&self, server: ServerId, backup: BackupId) -> Result<(), BackupError> {
        match timed(self.timeout, "removing the archive", self.store.delete(&Self::key(server, backup))).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(BackupError::Store(e)),
        }
    }

    /// Removes every object under `<server uuid>/` (the archives of a destroyed server);
    /// the number removed. Objects already gone are fine.
    pub async fn delete_server(&self, server: ServerId) -> Result<u64, BackupError> {
        let prefix = Path::from(server.to_string());
        let mut listing = self.store.list(Some(&prefix));
        let mut keys = Vec::new();
        loop {
            let next = tokio::time::timeout(self.timeout, listing.next()).await;
            match next {
                Err(_) => return Err(BackupError::Store(timed_out("listing the archives", self.timeout))),
                Ok(None) => break,
                Ok(Some(Ok(meta))) => keys.push(meta.location),
                Ok(Some(Err(object_store::Error::NotFound { .. }))) => {}
                Ok(Some(Err(e))) => return Err(BackupError::Store(e)),
            }
        }
        drop(listing);
        let mut removed = 0;
        for key in keys {
            match timed(self.timeout, "removing an archive", self.store.delete(&key)).await {
                Ok(()) => removed += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(BackupError::Store(e)),
            }
        }
        Ok(removed)
    }

    /// Runs `attempt` until it succeeds, fails for good, or the policy's attempts are spent.
    async fn retried<T, F, Fut>(
        &self,
        what: &str,
        server: ServerId,
        backup: BackupId,
        mut attempt: F,
    ) -> Result<T, BackupError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, BackupError>>,
    {
        let attempts = self.retry.attempts.max(1);
        let mut delays = self.retry.delays();
        let mut made = 0;
        loop {
            made += 1;
            match attempt().await {
                Ok(done) => return Ok(done),
                Err(error) if error.is_retryable() && made < attempts => {
                    let delay = delays.next().unwrap_or(self.retry.max_backoff);
                    tracing::warn!(%server, %backup, attempt = made, %error, ?delay, "{what} failed; trying again");
                    tokio::time::sleep(delay).await;
                }
                Err(error) if error.is_retryable() && made > 1 => {
                    return Err(BackupError::GaveUp { attempts: made, last: Box::new(error) });
                }
                Err(error) => return Err(error),
            }
        }
    }
}
