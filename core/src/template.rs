//! Where egg templates come from (a folder, an object store, a URL list).

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A template file as stored, not yet parsed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRef {
    /// Key within the source (`minecraft/paper.json`).
    pub key: String,
    /// Content tag for cache validation, if the source has one.
    pub etag: Option<String>,
    /// Size in bytes.
    pub size: u64,
}

/// Failures of a template source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// No template under that key.
    #[error("template `{0}` not found")]
    NotFound(String),
    /// The key is not allowed (absolute, `..`).
    #[error("invalid template key `{0}`")]
    InvalidKey(String),
    /// The source failed.
    #[error("template source error: {0}")]
    Source(String),
}

/// A read-only collection of template files.
///
/// # Contract
///
/// `list` returns every template once, ordered by key; `fetch` of a listed key returns its
/// bytes, of any other key [`TemplateError::NotFound`]. Keys are relative paths without `..`
/// ([`TemplateError::InvalidKey`] otherwise). Layered templates from object storage, which
/// will implement this, are not built yet.
///
/// # Example
///
/// ```
/// use async_trait::async_trait;
/// use bytes::Bytes;
/// use nexus_core::template::{TemplateError, TemplateRef, TemplateSource};
/// use std::collections::BTreeMap;
///
/// /// Templates compiled into the program.
/// struct Builtin(BTreeMap<&'static str, &'static [u8]>);
///
/// #[async_trait]
/// impl TemplateSource for Builtin {
///     async fn list(&self) -> Result<Vec<TemplateRef>, TemplateError> {
///         Ok(self.0.iter().map(|(key, bytes)| TemplateRef { key: (*key).into(), etag: None, size: bytes.len() as u64 }).collect())
///     }
///     async fn fetch(&self, key: &str) -> Result<Bytes, TemplateError> {
///         self.0.get(key).map(|b| Bytes::from_static(b)).ok_or_else(|| TemplateError::NotFound(key.into()))
///     }
/// }
/// ```
#[async_trait]
pub trait TemplateSource: Send + Sync {
    /// Every template, ordered by key.
    async fn list(&self) -> Result<Vec<TemplateRef>, TemplateError>;
    /// The bytes of one template.
    async fn fetch(&self, key: &str) -> Result<Bytes, TemplateError>;
}
