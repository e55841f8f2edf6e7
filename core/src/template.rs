//! Where server templates come from: versioned layers (`name@version`) of files, kept in a
//! content-addressed store (an object store in `nexus-templates`).
//!
//! A layer is a [`LayerManifest`] (the list of its entries: files by SHA-256 digest,
//! directories, symlinks and whiteouts) plus the blobs its files name. A [`TemplateSource`]
//! serves both; merging layers and writing them into a server's directory is the caller's
//! business (`nexus-templates`).

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The manifest format this crate writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;
/// Most entries one layer may hold.
pub const MAX_LAYER_ENTRIES: usize = 100_000;
/// Longest entry path, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest name or version of a layer, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Most components of an entry path (`a/b/c` has 3).
pub const MAX_PATH_DEPTH: usize = 256;
/// Largest file a layer may hold (16 GiB).
pub const MAX_FILE_BYTES: u64 = 16 << 30;
/// Names starting with this are the file manager's temporary files: refused in layers.
pub const RESERVED_PREFIX: &str = ".nexus-tmp-";

/// One layer: `name@version`. Both parts match `[a-z0-9][a-z0-9._-]{0,63}` and contain no
/// `..`, so a reference is safe to use as a file or object name. Serialized as the string
/// `name@version`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LayerRef {
    name: String,
    version: String,
}

impl LayerRef {
    /// A reference, validating both parts ([`TemplateError::InvalidLayer`] otherwise).
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Result<Self, TemplateError> {
        let (name, version) = (name.into(), version.into());
        for (what, part) in [("name", &name), ("version", &version)] {
            if let Err(reason) = check_part(part) {
                return Err(TemplateError::InvalidLayer {
                    layer: format!("{name}@{version}"),
                    reason: format!("{what}: {reason}"),
                });
            }
        }
        Ok(Self { name, version })
    }

    /// The layer's name (`paper`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The layer's version (`1.21.4-3`).
    pub fn version(&self) -> &str {
        &self.version
    }
}

fn check_part(part: &str) -> Result<(), &'static str> {
    let bytes = part.as_bytes();
    let Some(first) = bytes.first() else { return Err("empty") };
    if bytes.len() > MAX_NAME_BYTES {
        return Err("longer than 64 bytes");
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err("must start with a-z or 0-9");
    }
    if !bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')) {
        return Err("only a-z, 0-9, `.`, `_` and `-` are allowed");
    }
    if part.contains("..") {
        return Err("contains `..`");
    }
    Ok(())
}

impl fmt::Display for LayerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

impl FromStr for LayerRef {
    type Err = TemplateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, version) = s.split_once('@').ok_or_else(|| TemplateError::InvalidLayer {
            layer: s.to_owned(),
            reason: "expected `name@version`".into(),
        })?;
        Self::new(name, version)
    }
}

impl Serialize for LayerRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LayerRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The description of one layer: every entry it adds, replaces or removes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerManifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// Which layer this is.
    pub layer: LayerRef,
    /// When it was published.
    pub created_at: DateTime<Utc>,
    /// The entries, in any order (publishers write them sorted by path).
    pub entries: Vec<LayerEntry>,
}

/// One entry of a layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerEntry {
    /// Relative, `/`-separated, normalized: no leading `/`, no `.`, `..` or empty
    /// component, no NUL, at most [`MAX_PATH_BYTES`].
    pub path: String,
    /// What it is.
    #[serde(flatten)]
    pub kind: EntryKind,
}

/// What a [`LayerEntry`] is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EntryKind {
    /// A regular file whose content is the blob `sha256`.
    File {
        /// Size in bytes.
        size: u64,
        /// Lowercase hex SHA-256 of the content: the blob's name.
        sha256: String,
        /// Permission bits (at most `0o777`).
        mode: u32,
        /// Whether the file is a template whose variables are replaced when applied.
        #[serde(default)]
        render: bool,
    },
    /// A directory.
    Dir {
        /// Permission bits (at most `0o777`).
        mode: u32,
    },
    /// A symbolic link; the target is relative and stays inside the layer root lexically.
    Symlink {
        /// The link's target.
        target: String,
    },
    /// Removes the path, and everything below it, contributed by earlier layers.
    Whiteout,
}

impl LayerManifest {
    /// Checks everything a reader relies on: the format, every path and digest, sizes
    /// (at most [`MAX_FILE_BYTES`]), modes, symlink targets, no path twice (except a
    /// whiteout and a directory at one path: the layer removes the old tree and ships a new
    /// one), nothing below a file or a symlink of the same layer, at most
    /// [`MAX_LAYER_ENTRIES`] entries. Runs in O(n log n) of the entries, whatever their
    /// depth.
    pub fn validate(&self) -> Result<(), TemplateError> {
        let invalid = |reason: String| TemplateError::InvalidLayer { layer: self.layer.to_string(), reason };
        if self.format != MANIFEST_FORMAT {
            return Err(invalid(format!("unknown manifest format {}", self.format)));
        }
        if self.entries.len() > MAX_LAYER_ENTRIES {
            return Err(invalid(format!("more than {MAX_LAYER_ENTRIES} entries")));
        }
        for entry in &self.entries {
            validate_path(&entry.path)?;
            let bad_path =
                |reason: &str| TemplateError::InvalidPath { path: entry.path.clone(), reason: reason.into() };
            match &entry.kind {
                EntryKind::File { sha256, mode, size, .. } => {
                    if !is_sha256_hex(sha256) {
                        return Err(bad_path("the digest is not 64 lowercase hex digits"));
                    }
                    if *mode > 0o777 {
                        return Err(bad_path("mode has more than permission bits"));
                    }
                    if *size > MAX_FILE_BYTES {
                        return Err(bad_path("larger than the 16 GiB a layer's file may be"));
                    }
                }
                EntryKind::Dir { mode } => {
                    if *mode > 0o777 {
                        return Err(bad_path("mode has more than permission bits"));
                    }
                }
                EntryKind::Symlink { target } => {
                    if !symlink_target_is_confined(&entry.path, target) {
                        return Err(bad_path("the symlink target is absolute or leaves the layer"));
                    }
                }
                EntryKind::Whiteout => {}
            }
        }
        // In component order (`/` below every other byte; paths hold no NUL), a path's
        // descendants follow it directly, and equal paths are neighbours.
        let mut order: Vec<(Vec<u8>, &LayerEntry)> =
            self.entries.iter().map(|e| (e.path.bytes().map(|b| if b == b'/' { 0 } else { b }).collect(), e)).collect();
        order.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let is_leaf = |e: &LayerEntry| matches!(e.kind, EntryKind::File { .. } | EntryKind::Symlink { .. });
        let mut leaf: Option<&str> = None;
        for (i, (key, entry)) in order.iter().enumerate() {
            if i > 0 && order[i - 1].0 == *key {
                let pair = (&order[i - 1].1.kind, &entry.kind);
                let whiteout_and_dir = matches!(
                    pair,
                    (EntryKind::Whiteout, EntryKind::Dir { .. }) | (EntryKind::Dir { .. }, EntryKind::Whiteout)
                );
                let third = i > 1 && order[i - 2].0 == *key;
                if !whiteout_and_dir || third {
                    return Err(TemplateError::InvalidPath { path: entry.path.clone(), reason: "listed twice".into() });
                }
            }
            if let Some(up) = leaf {
                if entry.path.len() > up.len() && entry.path.starts_with(up) && entry.path.as_bytes()[up.len()] == b'/'
                {
                    return Err(TemplateError::InvalidPath {
                        path: entry.path.clone(),
                        reason: format!("below `{up}`, which is not a directory"),
                    });
                }
            }
            if is_leaf(entry) {
                leaf = Some(entry.path.as_str());
            }
        }
        Ok(())
    }
}

/// Checks an entry path: relative, normalized (`a/b`, never `./a`, `a//b`, `a/`), no `..`,
/// no NUL or backslash, at most [`MAX_PATH_BYTES`] and [`MAX_PATH_DEPTH`] components, no
/// name starting with [`RESERVED_PREFIX`] (the file manager's temporary files).
pub fn validate_path(path: &str) -> Result<(), TemplateError> {
    let bad =
        |reason: &str| TemplateError::InvalidPath { path: path.escape_default().to_string(), reason: reason.into() };
    if path.is_empty() {
        return Err(bad("empty"));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(bad("too long"));
    }
    if path.starts_with('/') {
        return Err(bad("absolute"));
    }
    if path.contains('\0') || path.contains('\\') {
        return Err(bad("contains NUL or `\\`"));
    }
    for (depth, part) in path.split('/').enumerate() {
        if depth >= MAX_PATH_DEPTH {
            return Err(bad("more than 256 components"));
        }
        match part {
            _ if part.starts_with(RESERVED_PREFIX) => return Err(bad("a name starting with `.nexus-tmp-` (reserved)")),
            "" => return Err(bad("empty component")),
            "." => return Err(bad("`.` component")),
            ".." => return Err(bad("`..` component")),
            _ if part.len() > 255 => return Err(bad("a name is longer than 255 bytes")),
            _ => {}
        }
    }
    Ok(())
}

/// Whether `s` is a SHA-256 digest as blobs are named: 64 lowercase hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether the symlink `target`, stored at `link` (a valid entry path), stays inside the
/// layer root when read lexically: relative, not empty, no NUL, never climbing above the root.
pub fn symlink_target_is_confined(link: &str, target: &str) -> bool {
    if target.is_empty() || target.contains('\0') || target.starts_with('/') || target.len() > MAX_PATH_BYTES {
        return false;
    }
    let mut depth = link.split('/').count().saturating_sub(1);
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            _ => depth += 1,
        }
    }
    true
}

/// Failures of a template source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// No such layer or blob.
    #[error("`{0}` not found")]
    NotFound(String),
    /// A layer reference or manifest is not valid.
    #[error("invalid layer `{layer}`: {reason}")]
    InvalidLayer {
        /// The layer (as given).
        layer: String,
        /// What is wrong.
        reason: String,
    },
    /// An entry path (or symlink target) is not allowed.
    #[error("invalid path `{path}`: {reason}")]
    InvalidPath {
        /// The path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The source could not be reached or failed mid-transfer; trying again may succeed.
    #[error("template source unreachable while {what}: {source}")]
    Unreachable {
        /// What was being done (`reading blob 3fa2…`).
        what: String,
        /// The transport's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Content does not match its digest.
    #[error("blob {digest} is corrupt: its content does not match its digest")]
    Corrupt {
        /// The expected digest.
        digest: String,
    },
    /// Any other failure of the source (refused credentials, a malformed answer).
    #[error("template source failed while {what}: {source}")]
    Source {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl TemplateError {
    /// Whether trying the same request again may succeed ([`TemplateError::Unreachable`]).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }
}

/// A stream of a blob's bytes.
pub type BlobStream = BoxStream<'static, Result<Bytes, TemplateError>>;

/// A read-only collection of template layers.
///
/// # Contract
///
/// - `list_layers` returns every published layer once, ordered by name then version (string
///   order).
/// - `manifest` returns the manifest of a listed layer, [valid](LayerManifest::validate) and
///   naming that very layer; an unknown layer is [`TemplateError::NotFound`]. Versions are
///   immutable: a manifest, once readable, never changes, so callers may cache it forever.
/// - `blob` streams the content named by a SHA-256 digest (64 lowercase hex digits;
///   [`TemplateError::InvalidPath`] otherwise, [`TemplateError::NotFound`] when absent). The
///   bytes are *not* verified by the source: readers hash them and treat a mismatch as
///   [`TemplateError::Corrupt`]. A transfer that breaks mid-stream yields
///   [`TemplateError::Unreachable`] as its last item.
///
/// # Example
///
/// ```
/// use async_trait::async_trait;
/// use bytes::Bytes;
/// use futures::StreamExt;
/// use nexus_core::template::{BlobStream, LayerManifest, LayerRef, TemplateError, TemplateSource};
/// use std::collections::BTreeMap;
///
/// /// Layers compiled into the program.
/// struct Builtin {
///     layers: BTreeMap<LayerRef, LayerManifest>,
///     blobs: BTreeMap<String, &'static [u8]>,
/// }
///
/// #[async_trait]
/// impl TemplateSource for Builtin {
///     async fn list_layers(&self) -> Result<Vec<LayerRef>, TemplateError> {
///         Ok(self.layers.keys().cloned().collect())
///     }
///     async fn manifest(&self, layer: &LayerRef) -> Result<LayerManifest, TemplateError> {
///         self.layers.get(layer).cloned().ok_or_else(|| TemplateError::NotFound(layer.to_string()))
///     }
///     async fn blob(&self, sha256: &str) -> Result<BlobStream, TemplateError> {
///         let bytes = self.blobs.get(sha256).ok_or_else(|| TemplateError::NotFound(sha256.into()))?;
///         Ok(futures::stream::iter([Ok(Bytes::from_static(bytes))]).boxed())
///     }
/// }
///
/// # futures::executor::block_on(async {
/// let source = Builtin { layers: BTreeMap::new(), blobs: BTreeMap::new() };
/// assert!(source.list_layers().await.unwrap().is_empty());
/// let layer: LayerRef = "paper@1.21.4".parse().unwrap();
/// assert!(matches!(source.manifest(&layer).await, Err(TemplateError::NotFound(_))));
/// # });
/// ```
#[async_trait]
pub trait TemplateSource: Send + Sync {
    /// Every layer, ordered by name then version.
    async fn list_layers(&self) -> Result<Vec<LayerRef>, TemplateError>;
    /// The manifest of one layer.
    async fn manifest(&self, layer: &LayerRef) -> Result<LayerManifest, TemplateError>;
    /// The content named by a SHA-256 digest, as a stream.
    async fn blob(&self, sha256: &str) -> Result<BlobStream, TemplateError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_refs_parse_and_display() {
        let layer: LayerRef = "paper@1.21.4-r2_x".parse().unwrap();
        assert_eq!((layer.name(), layer.version()), ("paper", "1.21.4-r2_x"));
        assert_eq!(layer.to_string(), "paper@1.21.4-r2_x");
        assert_eq!(serde_json::to_string(&layer).unwrap(), "\"paper@1.21.4-r2_x\"");
        assert_eq!(serde_json::from_str::<LayerRef>("\"a@1\"").unwrap(), LayerRef::new("a", "1").unwrap());
        for bad in ["paper", "@1", "a@", "A@1", "a@1..2", "-a@1", "a b@1", "a@1@2", "../x@1", "a/b@1"] {
            assert!(bad.parse::<LayerRef>().is_err(), "{bad}");
        }
        assert!(LayerRef::new("a".repeat(64), "1").is_ok());
        assert!(LayerRef::new("a".repeat(65), "1").is_err());
        assert!(serde_json::from_str::<LayerRef>("\"A@1\"").is_err());
    }

    fn manifest(entries: Vec<LayerEntry>) -> LayerManifest {
        LayerManifest { format: MANIFEST_FORMAT, layer: "t@1".parse().unwrap(), created_at: Utc::now(), entries }
    }

    fn file(path: &str) -> LayerEntry {
        LayerEntry {
            path: path.into(),
            kind: EntryKind::File { size: 1, sha256: "a".repeat(64), mode: 0o644, render: false },
        }
    }

    #[test]
    fn manifests_are_validated() {
        let dir = LayerEntry { path: "d".into(), kind: EntryKind::Dir { mode: 0o755 } };
        let link = LayerEntry { path: "d/l".into(), kind: EntryKind::Symlink { target: "../f".into() } };
        let ok = manifest(vec![dir.clone(), file("d/f"), file("f"), link]);
        ok.validate().unwrap();
        let json = serde_json::to_string(&ok).unwrap();
        assert!(json.contains(r#""kind":"symlink","target":"../f""#), "{json}");
        assert_eq!(serde_json::from_str::<LayerManifest>(&json).unwrap(), ok);

        for bad in ["/f", "a/../f", "./f", "a//f", "a/", "", "a\\b"] {
            assert!(manifest(vec![file(bad)]).validate().is_err(), "{bad}");
        }
        assert!(manifest(vec![file("f"), file("f")]).validate().is_err());
        assert!(manifest(vec![file("f"), file("f/g")]).validate().is_err());
        let escaping = LayerEntry { path: "d/l".into(), kind: EntryKind::Symlink { target: "../../x".into() } };
        assert!(manifest(vec![escaping]).validate().is_err());
        let absolute = LayerEntry { path: "l".into(), kind: EntryKind::Symlink { target: "/etc".into() } };
        assert!(manifest(vec![absolute]).validate().is_err());
        let setuid = LayerEntry { path: "d".into(), kind: EntryKind::Dir { mode: 0o4755 } };
        assert!(manifest(vec![setuid]).validate().is_err());
        let mut bad_digest = file("f");
        bad_digest.kind = EntryKind::File { size: 1, sha256: "A".repeat(64), mode: 0o644, render: false };
        assert!(manifest(vec![bad_digest]).validate().is_err());
        let mut future = manifest(vec![]);
        future.format = 2;
        assert!(future.validate().is_err());
        let mut huge = file("f");
        huge.kind = EntryKind::File { size: MAX_FILE_BYTES + 1, sha256: "a".repeat(64), mode: 0o644, render: false };
        assert!(manifest(vec![huge]).validate().is_err());
        assert!(manifest(vec![file("a/.nexus-tmp-x")]).validate().is_err());
        assert!(manifest(vec![file(".nexus-tmp-1")]).validate().is_err());
        manifest(vec![file("a/x.nexus-tmp-1")]).validate().unwrap();
    }

    #[test]
    fn a_whiteout_and_a_directory_may_share_a_path() {
        let whiteout = LayerEntry { path: "d".into(), kind: EntryKind::Whiteout };
        let dir = LayerEntry { path: "d".into(), kind: EntryKind::Dir { mode: 0o755 } };
        manifest(vec![whiteout.clone(), dir.clone(), file("d/new")]).validate().unwrap();
        manifest(vec![dir.clone(), whiteout.clone()]).validate().unwrap();
        assert!(manifest(vec![whiteout.clone(), file("d")]).validate().is_err());
        assert!(manifest(vec![whiteout.clone(), whiteout.clone()]).validate().is_err());
        assert!(manifest(vec![dir.clone(), dir.clone()]).validate().is_err());
        assert!(manifest(vec![whiteout.clone(), dir.clone(), dir]).validate().is_err());
    }

    #[test]
    fn descendants_of_leaves_are_found_past_siblings_that_sort_between() {
        // `a-x` and `a.b` sort between `a` and `a/b` byte-wise.
        assert!(manifest(vec![file("a"), file("a-x"), file("a.b"), file("a/b")]).validate().is_err());
        manifest(vec![file("a-x"), file("a.b"), file("a0")]).validate().unwrap();
        let dir = LayerEntry { path: "a".into(), kind: EntryKind::Dir { mode: 0o755 } };
        manifest(vec![dir, file("a-x"), file("a/b"), file("a/b0")]).validate().unwrap();
    }

    #[test]
    fn deep_paths_are_bounded_and_cheap() {
        let deep = vec!["d"; MAX_PATH_DEPTH + 1].join("/");
        assert!(validate_path(&deep).is_err());
        validate_path(&vec!["d"; MAX_PATH_DEPTH].join("/")).unwrap();
        // 20,000 entries 200 components deep: one sort, no walk up every ancestor.
        let entries: Vec<LayerEntry> = (0..20_000)
            .map(|i| LayerEntry {
                path: format!("{}/{i}", vec!["d"; 200].join("/")),
                kind: EntryKind::Dir { mode: 0o755 },
            })
            .collect();
        let started = std::time::Instant::now();
        manifest(entries).validate().unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    }
}
