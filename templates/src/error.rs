//! The one error type of this crate.

use std::path::PathBuf;

use nexus_core::template::{LayerRef, TemplateError};
use nexus_files::FilesError;

/// Why publishing, fetching or applying a template failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The template source failed (reading a manifest or a blob, listing).
    #[error(transparent)]
    Source(#[from] TemplateError),
    /// A layer could not be fetched into the cache, after the retries: which layer, what
    /// was being fetched, and the last failure.
    #[error("layer {layer}: {what} failed: {source}")]
    Fetch {
        /// The layer (`name@version`).
        layer: String,
        /// What was being fetched (`manifest`, `blob 3fa2… for config/server.properties`).
        what: String,
        /// The last failure.
        #[source]
        source: TemplateError,
    },
    /// Publishing refused the layer's content; `path` is the offending entry.
    #[error("layer {layer}: `{path}` refused: {reason}")]
    Refused {
        /// The layer being published.
        layer: String,
        /// The entry (relative to the layer root), or the archive/directory itself.
        path: String,
        /// Why.
        reason: String,
    },
    /// That version is already published: versions are immutable.
    #[error("layer {0} is already published (versions are immutable)")]
    AlreadyPublished(LayerRef),
    /// The object store failed while publishing.
    #[error("object store: {what}: {source}")]
    Store {
        /// What was being done.
        what: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// A template file did not render: the file (root-relative), the line in it when known
    /// (1-based), and tera's message or the limit that was hit.
    #[error("rendering `{file}`{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Render {
        /// The file being rendered.
        file: String,
        /// The line of the template where it failed, when known.
        line: Option<u32>,
        /// What went wrong.
        message: String,
    },
    /// Writing into the server's directory was refused or failed (confinement, quota,
    /// denylist, a directory where the template has a file, ...).
    #[error("writing `{path}` into the server directory: {source}")]
    Files {
        /// The entry being written.
        path: String,
        /// The file manager's error.
        #[source]
        source: FilesError,
    },
    /// The files an apply needs add up to more than the node's cache may hold.
    #[error("the layers' files add up to {bytes} bytes, more than the {max_bytes} the template cache may hold")]
    CacheTooSmall {
        /// Bytes of distinct file contents the layers need.
        bytes: u64,
        /// The cache's bound ([`crate::CacheConfig::max_bytes`]).
        max_bytes: u64,
    },
    /// Local I/O (the cache directory, a directory or archive being published).
    #[error("{}: {source}", path.display())]
    Io {
        /// The local path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    pub(crate) fn refused(layer: &LayerRef, path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Refused { layer: layer.to_string(), path: path.into(), reason: reason.into() }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
