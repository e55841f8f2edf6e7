//! [`ObjectStoreTemplates`]: the [`TemplateSource`] over any object store (S3-compatible, a
//! local directory, in memory: one implementation).
//!
//! # Layout (under the store's prefix)
//! - `blobs/sha256/<hex>`: file contents, content-addressed, shared by every layer.
//! - `layers/<name>/<version>.json`: one [`LayerManifest`] per version, written last when
//!   publishing and never replaced.

use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use nexus_core::template::{BlobStream, LayerManifest, LayerRef, TemplateError, TemplateSource, is_sha256_hex};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::publish::PublishLimits;
use crate::storage::{ObjectStoreConfig, StorageConfigError};

/// Largest manifest read (100,000 entries take about 20 MB of JSON).
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// Template layers in an object store: reads them ([`TemplateSource`]) and publishes them
/// ([`publish_dir`](Self::publish_dir), [`publish_archive`](Self::publish_archive)).
#[derive(Clone, Debug)]
pub struct ObjectStoreTemplates {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) limits: PublishLimits,
}

impl ObjectStoreTemplates {
    /// Layers in `store` (already under its prefix), with the default [`PublishLimits`].
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store, limits: PublishLimits::default() }
    }

    /// Opens the store `config` names.
    pub fn open(config: &ObjectStoreConfig) -> Result<Self, StorageConfigError> {
        Ok(Self::new(config.open()?))
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

#[async_trait]
impl TemplateSource for ObjectStoreTemplates {
    async fn list_layers(&self) -> Result<Vec<LayerRef>, TemplateError> {
        let prefix = ObjectPath::from("layers");
        let metas: Vec<_> =
            self.store.list(Some(&prefix)).try_collect().await.map_err(|e| store_error("listing layers", e))?;
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
        let got = self.store.get(&manifest_key(layer)).await.map_err(|e| store_error(&what, e))?;
        if got.meta.size > MAX_MANIFEST_BYTES {
            return Err(TemplateError::InvalidLayer {
                layer: layer.to_string(),
                reason: format!("manifest of {} bytes, more than {MAX_MANIFEST_BYTES}", got.meta.size),
            });
        }
        let bytes = got.bytes().await.map_err(|e| store_error(&what, e))?;
        let manifest: LayerManifest = serde_json::from_slice(&bytes).map_err(|e| TemplateError::InvalidLayer {
            layer: layer.to_string(),
            reason: format!("manifest does not parse: {e}"),
        })?;
        if &manifest.layer != layer {
            return Err(TemplateError::InvalidLayer {
                layer: layer.to_string(),
                reason: format!("the manifest names {}", manifest.layer),
            });
        }
        manifest.validate()?;
        Ok(manifest)
    }

    async fn blob(&self, sha256: &str) -> Result<BlobStream, TemplateError> {
        if !is_sha256_hex(sha256) {
            return Err(TemplateError::InvalidPath { path: sha256.into(), reason: "not a SHA-256 digest".into() });
        }
        let what = format!("reading blob {sha256}");
        let got = self.store.get(&blob_key(sha256)).await.map_err(|e| store_error(&what, e))?;
        Ok(got.into_stream().map_err(move |e| store_error(&what, e)).boxed())
    }
}
