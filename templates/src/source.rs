//! [`ObjectStoreTemplates`]: the [`TemplateSource`] over any object store (S3-compatible, a
//! local directory, in memory: one implementation).
//!
//! # Layout (under the store's prefix)
//! - `blobs/sha256/<hex>`: file contents, content-addressed, shared by every layer.
//! - `layers/<name>/<version>.json`: one [`LayerManifest`] per version, written last when
//!   publishing and never replaced.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use nexus_core::template::{BlobStream, LayerManifest, LayerRef, TemplateError, TemplateSource, is_sha256_hex};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::publish::PublishLimits;
use crate::storage::{ObjectStoreConfig, StorageConfigError};

/// Largest manifest read (100,000 entries take about 20 MB of JSON).
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;
/// Wait without progress when none is configured.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The error of a request that made no progress for `after`: `Generic`, so retryable.
fn timed_out(after: Duration) -> object_store::Error {
    object_store::Error::Generic { store: "templates", source: format!("no progress for {after:?}").into() }
}

/// Template layers in an object store: reads them ([`TemplateSource`]) and publishes them
/// ([`publish_dir`](Self::publish_dir), [`publish_archive`](Self::publish_archive)).
#[derive(Clone, Debug)]
pub struct ObjectStoreTemplates {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) limits: PublishLimits,
    /// Longest wait without progress (see [`ObjectStoreConfig::request_timeout_secs`]).
    pub(crate) timeout: Duration,
}

impl ObjectStoreTemplates {
    /// Layers in `store` (already under its prefix), with the default [`PublishLimits`].
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store, limits: PublishLimits::default(), timeout: DEFAULT_TIMEOUT }
    }

    /// Opens the store `config` names, with its
    /// [`request_timeout_secs`](ObjectStoreConfig::request_timeout_secs).
    pub fn open(config: &ObjectStoreConfig) -> Result<Self, StorageConfigError> {
        Ok(Self::new(config.open()?).with_timeout(config.request_timeout()))
    }

    /// The same store with another wait without progress: how long a small request, or a
    /// blob download between two chunks, may go without an answer.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Runs one store request, failing it (retryably) after [`Self::with_timeout`]'s wait.
    pub(crate) async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> object_store::Result<T> {
        tokio::time::timeout(self.timeout, fut).await.unwrap_or_else(|_| Err(timed_out(self.timeout)))
    }

    /// The same store with other publishing limits.
    pub fn with_limits(mut self, limits: PublishLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }
}

/// Where the blob of a digest is kept: `blobs/sha256/<hex>`.
pub fn blob_key(sha256: &str) -> ObjectPath {
    ObjectPath::from_iter(["blobs", "sha256", sha256])
}

/// Where a layer's manifest is kept: `layers/<name>/<version>.json`.
pub fn manifest_key(layer: &LayerRef) -> ObjectPath {
    ObjectPath::from_iter(["layers", layer.name(), &format!("{}.json", layer.version())])
}

/// Maps a store error met while doing `what` to the source's error: network-level failures
/// are [`TemplateError::Unreachable`] (retryable).
pub(crate) fn store_error(what: &str, e: object_store::Error) -> TemplateError {
    match e {
        object_store::Error::NotFound { .. } => TemplateError::NotFound(what.to_owned()),
        object_store::Error::Generic { .. } | object_store::Error::JoinError { .. } => {
            TemplateError::Unreachable { what: what.to_owned(), source: Box::new(e) }
        }
        other => TemplateError::Source { what: what.to_owned(), source: Box::new(other) },
    }
}

/// Parses and validates a manifest read for `layer` (which it must name).
pub(crate) fn parse_manifest(layer: &LayerRef, bytes: &[u8]) -> Result<LayerManifest, TemplateError> {
    let manifest: LayerManifest = serde_json::from_slice(bytes).map_err(|e| TemplateError::InvalidLayer {
        layer: layer.to_string(),
        reason: format!("manifest does not parse: {e}"),
    })?;
    check_manifest(layer, &manifest)?;
    Ok(manifest)
}

/// Checks that a manifest names `layer` and is valid.
pub(crate) fn check_manifest(layer: &LayerRef, manifest: &LayerManifest) -> Result<(), TemplateError> {
    if &manifest.layer != layer {
        return Err(TemplateError::InvalidLayer {
            layer: layer.to_string(),
            reason: format!("the manifest names {}", manifest.layer),
        });
    }
    manifest.validate()
}

#[async_trait]
impl TemplateSource for ObjectStoreTemplates {
    async fn list_layers(&self) -> Result<Vec<LayerRef>, TemplateError> {
        let prefix = ObjectPath::from("layers");
        let metas: Vec<_> = self
            .bounded(self.store.list(Some(&prefix)).try_collect())
            .await
            .map_err(|e| store_error("listing layers", e))?;
        let mut layers = Vec::with_capacity(metas.len());
        for meta in metas {
            let parts: Vec<_> = meta.location.parts().collect();
            let parsed = match parts.as_slice() {
                [_, name, file] => {
                    file.as_ref().strip_suffix(".json").and_then(|version| LayerRef::new(name.as_ref(), version).ok())
                }
                _ => None,
            };
            match parsed {
                Some(layer) => layers.push(layer),
                None => tracing::debug!(key = %meta.location, "not a layer manifest; skipped"),
            }
        }
        layers.sort();
        layers.dedup();
        Ok(layers)
    }

    async fn manifest(&self, layer: &LayerRef) -> Result<LayerManifest, TemplateError> {
        let what = format!("reading the manifest of {layer}");
        let got = self.bounded(self.store.get(&manifest_key(layer))).await.map_err(|e| store_error(&what, e))?;
        if got.meta.size > MAX_MANIFEST_BYTES {
            return Err(TemplateError::InvalidLayer {
                layer: layer.to_string(),
                reason: format!("manifest of {} bytes, more than {MAX_MANIFEST_BYTES}", got.meta.size),
            });
        }
        let bytes = self.bounded(got.bytes()).await.map_err(|e| store_error(&what, e))?;
        // Parsing and validating up to 64 MiB of JSON is CPU work: not on an async thread.
        let owned = layer.clone();
        tokio::task::spawn_blocking(move || parse_manifest(&owned, &bytes))
            .await
            .map_err(|e| TemplateError::Source { what, source: Box::new(e) })?
    }

    async fn blob(&self, sha256: &str) -> Result<BlobStream, TemplateError> {
        if !is_sha256_hex(sha256) {
            return Err(TemplateError::InvalidPath { path: sha256.into(), reason: "not a SHA-256 digest".into() });
        }
        let what = format!("reading blob {sha256}");
        let got = self.bounded(self.store.get(&blob_key(sha256))).await.map_err(|e| store_error(&what, e))?;
        // Each chunk within the wait: a stalled transfer fails, a slow steady one does not.
        let (timeout, stream) = (self.timeout, got.into_stream());
        let stream = futures::stream::unfold(Some(stream), move |state| async move {
            let mut stream = state?;
            match tokio::time::timeout(timeout, stream.next()).await {
                Ok(Some(item)) => Some((item, Some(stream))),
                Ok(None) => None,
                Err(_) => Some((Err(timed_out(timeout)), None)),
            }
        });
        Ok(stream.map_err(move |e| store_error(&what, e)).boxed())
    }
}
