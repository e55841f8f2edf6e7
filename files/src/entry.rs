//! Serde types the API layer returns: directory entries and extraction summaries.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What an entry is.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symlink that does not resolve inside the root (dangling, absolute, or escaping).
    /// A symlink that does resolve inside has the kind of its target and `symlink: true`.
    Symlink,
    /// A device, fifo or socket.
    Special,
}

/// One entry of a listing, or the result of `stat`.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FileEntry {
    /// The entry's name (lossy UTF-8).
    pub name: String,
    /// Its root-relative path, `/`-separated, without a leading `/`.
    pub path: String,
    /// What it is (for an in-root symlink: what it points at).
    pub kind: FileKind,
    /// Whether the entry itself is a symlink.
    pub symlink: bool,
    /// Size in bytes (of the target for an in-root symlink to a file).
    pub size: u64,
    /// Permission bits, e.g. `0o644`.
    pub mode: u32,
    /// Last modification time.
    pub modified: Option<DateTime<Utc>>,
    /// Whether the egg's denylist covers it (its content cannot be accessed).
    pub denied: bool,
}

/// What a decompression extracted.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExtractSummary {
    /// Entries extracted (files, directories, symlinks).
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}
