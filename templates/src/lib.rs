//! # nexus-templates
//!
//! Layered server templates kept in object storage, and the object-store configuration the
//! panel and the daemon share (templates and backups).
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use std::sync::Arc;
//! use nexus_templates::{CacheConfig, LayerCache, ObjectStoreConfig, ObjectStoreTemplates, RenderContext};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // The panel publishes…
//! let templates = ObjectStoreTemplates::open(&ObjectStoreConfig::from_url("s3://bucket/templates"))?;
//! templates.publish_dir(&"paper@1.21.4".parse()?, "/srv/layers/paper").await?;
//! // …a node applies, through its cache.
//! let cache = LayerCache::open(CacheConfig::new("/var/cache/nexus/templates"), Arc::new(templates)).await?;
//! let files = nexus_files::ServerFiles::open("/var/lib/nexus/volumes/3f2a", Default::default()).await?;
//! let env = BTreeMap::from([("SERVER_PORT".to_owned(), "25565".to_owned())]);
//! let ctx = RenderContext::new(serde_json::json!({ "memory": 2048 }), env);
//! let layers = ["java@21".parse()?, "paper@1.21.4".parse()?, "my-plugins@3".parse()?];
//! let summary = cache.apply(&layers, &files, &ctx).await?;
//! println!("{} files, {} downloaded", summary.files, summary.downloaded);
//! # Ok(()) }
//! ```
//!
//! # Layers
//! A layer is `name@version` ([`LayerRef`]: `[a-z0-9][a-z0-9._-]{0,63}` each, no `..`),
//! immutable once published. In the store (under the configured prefix):
//!
//! - `layers/<name>/<version>.json`: its [`LayerManifest`] (format 1), JSON:
//!   `{"format":1,"layer":"paper@1.21.4","created_at":"…","entries":[…]}` with entries
//!   `{"path":"config/server.properties","kind":"file","size":123,"sha256":"…","mode":420,"render":true}`,
//!   `{"path":"plugins","kind":"dir","mode":493}`,
//!   `{"path":"latest.jar","kind":"symlink","target":"paper-1.21.4.jar"}`,
//!   `{"path":"logs","kind":"whiteout"}`. Paths are relative and normalized; see
//!   [`LayerManifest::validate`].
//! - `blobs/sha256/<hex>`: file contents by SHA-256, shared by all layers.
//!
//! Publishing ([`ObjectStoreTemplates::publish_dir`], [`ObjectStoreTemplates::publish_archive`])
//! uploads the missing blobs and then writes the manifest, only if the version does not
//! exist ([`Error::AlreadyPublished`]). In the published directory or archive, `.wh.<name>`
//! is a whiteout of `<name>` and a root `.nexus-render` lists (gitignore syntax) the files to
//! render; see [`publish`].
//!
//! # Merge rules
//! Later layers win; a whiteout removes a path and everything below it from *earlier*
//! layers; a file replacing a directory removes the directory's descendants; the result is
//! written parents first, in path order. See [`merge()`](merge::merge).
//!
//! # Rendering
//! Files marked `render` are tera templates with `server` and `env` in their context; they
//! are hostile input, so tera is sandboxed and budgeted (no host access, no includes or
//! macros, bounded input, output, steps, values and time). See [`render`].
//!
//! # Security rules
//! - **Publishing** refuses absolute paths, `..`, symlinks whose target is absolute or
//!   leaves the layer, hard links, devices, fifos and sockets, more than 100,000 entries,
//!   more than 1,000 files to render, files or totals over [`PublishLimits`], and a manifest
//!   readers would refuse, naming the path ([`Error::Refused`]).
//! - **Reading** validates every manifest ([`LayerManifest::validate`]: paths, depth,
//!   digests, sizes, modes, symlink targets, no duplicates), whatever the source, and every
//!   blob by its digest, when downloaded and again when copied out of the cache ([`cache`]).
//!   Archives are read with their tar extension headers bounded and the decoded stream
//!   capped ([`publish`]).
//! - **Writing** goes through [`nexus_files::ServerFiles`]: every path resolved by
//!   descriptor inside the server root (symlinks planted by the server process are never
//!   followed out; a symlink at a file's own path is replaced, not followed), the quota and
//!   the denylist enforced, each file written to a temporary name and renamed into place.
//!   Whiteouts never delete files already in the server's directory. See [`apply`].
//!
//! # Modules
//! | module | what |
//! |---|---|
//! | [`storage`] | [`ObjectStoreConfig`]: S3-compatible, `file://`, `memory://` |
//! | [`source`] | [`ObjectStoreTemplates`]: the [`TemplateSource`] over an object store |
//! | [`publish`] | publishing a directory or a tar / tar.gz / tar.zst archive |
//! | [`cache`] | [`LayerCache`]: the node's content-addressed, bounded, verified cache |
//! | [`mod@merge`] | [`merge()`](merge::merge): layers → the entries to write |
//! | [`render`] | [`render()`](render::render): sandboxed tera |
//! | [`apply`] | [`LayerCache::apply`] |

pub mod apply;
pub mod cache;
pub mod error;
pub mod merge;
pub mod publish;
pub mod render;
pub mod source;
pub mod storage;

pub use apply::ApplySummary;
pub use cache::{CacheConfig, CacheStats, LayerCache};
pub use error::{Error, Result};
pub use merge::{MergedEntry, merge};
pub use nexus_core::template::{EntryKind, LayerEntry, LayerManifest, LayerRef, TemplateError, TemplateSource};
pub use publish::PublishLimits;
pub use render::{RenderContext, RenderLimits, Rendered};
pub use source::ObjectStoreTemplates;
pub use storage::{ObjectStoreConfig, StorageConfigError};
