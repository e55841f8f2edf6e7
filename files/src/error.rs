//! The one error type of the file manager and its HTTP mapping.

use std::io;

use rustix::io::Errno;

/// Why a file operation was refused or failed.
///
/// Paths in the variants are the user's path, normalized and root-relative (`config/a.txt`),
/// never a host path, so the message can be shown to the panel user as is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FilesError {
    /// The path is malformed (NUL byte, over-long name, too deep, symlink loop, the root
    /// itself where an entry is needed, ...).
    #[error("invalid path `{path}`: {reason}")]
    InvalidPath {
        /// The offending path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The path, or a symlink met while resolving it, leads outside the server root.
    #[error("path `{path}` leads outside the server root")]
    OutsideRoot {
        /// The offending path.
        path: String,
    },
    /// The path is matched by the egg's file denylist.
    #[error("access to `{path}` is denied")]
    Denied {
        /// The denied path.
        path: String,
    },
    /// Nothing exists at the path.
    #[error("`{path}` does not exist")]
    NotFound {
        /// The missing path.
        path: String,
    },
    /// Something already exists at the path.
    #[error("`{path}` already exists")]
    AlreadyExists {
        /// The occupied path.
        path: String,
    },
    /// A regular file was expected.
    #[error("`{path}` is not a regular file")]
    NotAFile {
        /// The offending path.
        path: String,
    },
    /// A directory was expected.
    #[error("`{path}` is not a directory")]
    NotADirectory {
        /// The offending path.
        path: String,
    },
    /// The path is a device, fifo or socket; they are never opened.
    #[error("`{path}` is a device, fifo or socket")]
    SpecialFile {
        /// The offending path.
        path: String,
    },
    /// The file has several hard links, one of which may live outside the root; its content
    /// is never read or written and its mode never changed.
    #[error("`{path}` has more than one hard link")]
    HardLinked {
        /// The offending path.
        path: String,
    },
    /// A symlink appeared where the operation does not follow one (usually a concurrent swap).
    #[error("`{path}` is a symbolic link here")]
    Symlink {
        /// The offending path.
        path: String,
    },
    /// `chmod` was asked for more than the permission bits (setuid, setgid, sticky, type).
    #[error("mode {mode:#o} is not allowed: only permission bits (0o777) can be set")]
    InvalidMode {
        /// The refused mode.
        mode: u32,
    },
    /// The server's disk quota would be exceeded.
    #[error("disk quota exceeded: {needed} bytes needed, {available} available")]
    QuotaExceeded {
        /// Bytes the operation needed.
        needed: u64,
        /// Bytes left under the quota when it was refused.
        available: u64,
    },
    /// A bounded read met a bigger file, or the files to compress add up (at their apparent
    /// size) to more than the archive limits allow.
    #[error("`{path}` is {size} bytes, more than the {max} allowed")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size (compress: the apparent size of the inputs up to and including it).
        size: u64,
        /// The bound.
        max: u64,
    },
    /// An archive was refused as a whole (unsafe entry, bomb, corrupt); nothing was extracted.
    #[error("archive rejected: {reason}")]
    ArchiveRejected {
        /// Why.
        reason: String,
    },
    /// The file is not an archive of a supported format.
    #[error("`{path}` is not a supported archive (tar.gz, tar.zst, zip, tar)")]
    UnsupportedArchive {
        /// The file.
        path: String,
    },
    /// The manager's configuration is invalid (e.g. a denylist pattern that does not parse).
    #[error("invalid file manager configuration: {reason}")]
    InvalidConfig {
        /// Why.
        reason: String,
    },
    /// A measurement of the whole tree ran past its time budget (see
    /// [`ServerFiles::measure`](super::ServerFiles::measure)).
    #[error("walking the server's files took longer than {budget:?}")]
    ScanTimedOut {
        /// The budget.
        budget: std::time::Duration,
    },
    /// Another operation that needs the whole tree to itself is under way (a restore of the
    /// same root staged and not yet committed or dropped).
    #[error("busy: {reason}")]
    Busy {
        /// What is under way.
        reason: String,
    },
    /// Any other I/O failure.
    #[error("I/O error on `{path}`: {source}")]
    Io {
        /// The path being worked on.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Result alias of the file manager.
pub type Result<T, E = FilesError> = std::result::Result<T, E>;

impl FilesError {
    /// The HTTP status the daemon's API answers with for this error.
    pub fn status_code(&self) -> u16 {
        match self {
            Self::InvalidPath { .. }
            | Self::OutsideRoot { .. }
            | Self::NotAFile { .. }
            | Self::NotADirectory { .. }
            | Self::InvalidMode { .. } => 400,
            Self::Denied { .. } | Self::SpecialFile { .. } | Self::HardLinked { .. } => 403,
            Self::NotFound { .. } => 404,
            Self::AlreadyExists { .. } | Self::Symlink { .. } | Self::Busy { .. } => 409,
            Self::TooLarge { .. } => 413,
            Self::UnsupportedArchive { .. } => 415,
            Self::ArchiveRejected { .. } => 422,
            Self::QuotaExceeded { .. } => 507,
            Self::ScanTimedOut { .. } => 503,
            Self::InvalidConfig { .. } | Self::Io { .. } => 500,
        }
    }

    /// A stable machine-readable code for typed JSON errors (`"outside_root"`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidPath { .. } => "invalid_path",
            Self::OutsideRoot { .. } => "outside_root",
            Self::Denied { .. } => "denied",
            Self::NotFound { .. } => "not_found",
            Self::AlreadyExists { .. } => "already_exists",
            Self::NotAFile { .. } => "not_a_file",
            Self::NotADirectory { .. } => "not_a_directory",
            Self::SpecialFile { .. } => "special_file",
            Self::HardLinked { .. } => "hard_linked",
            Self::Symlink { .. } => "symlink",
            Self::InvalidMode { .. } => "invalid_mode",
            Self::QuotaExceeded { .. } => "quota_exceeded",
            Self::TooLarge { .. } => "too_large",
            Self::ArchiveRejected { .. } => "archive_rejected",
            Self::UnsupportedArchive { .. } => "unsupported_archive",
            Self::InvalidConfig { .. } => "invalid_config",
            Self::ScanTimedOut { .. } => "scan_timed_out",
            Self::Busy { .. } => "busy",
            Self::Io { .. } => "io",
        }
    }

    /// Whether this refusal is what an escape or bypass attempt produces; such refusals are
    /// logged at `warn` so that operators see probing.
    pub fn is_security_refusal(&self) -> bool {
        matches!(
            self,
            Self::OutsideRoot { .. }
                | Self::Denied { .. }
                | Self::SpecialFile { .. }
                | Self::HardLinked { .. }
                | Self::ArchiveRejected { .. }
        )
    }

    pub(crate) fn invalid(path: impl ToString, reason: impl Into<String>) -> Self {
        Self::InvalidPath { path: path.to_string(), reason: reason.into() }
    }

    pub(crate) fn outside(path: impl ToString) -> Self {
        Self::OutsideRoot { path: path.to_string() }
    }

    pub(crate) fn rejected(reason: impl Into<String>) -> Self {
        Self::ArchiveRejected { reason: reason.into() }
    }

    /// Maps a raw errno met while working on `path` to the closest variant.
    pub(crate) fn from_errno(path: impl ToString, errno: Errno) -> Self {
        let path = path.to_string();
        match errno {
            Errno::NOENT => Self::NotFound { path },
            Errno::EXIST | Errno::NOTEMPTY => Self::AlreadyExists { path },
            Errno::NOTDIR => Self::NotADirectory { path },
            Errno::ISDIR => Self::NotAFile { path },
            // Only O_NOFOLLOW opens give ELOOP here: the final entry became a symlink.
            Errno::LOOP => Self::Symlink { path },
            Errno::NAMETOOLONG => Self::InvalidPath { path, reason: "name too long".into() },
            // Hard links and renames across mounts.
            Errno::XDEV => Self::OutsideRoot { path },
            other => Self::Io { path, source: io::Error::from(other) },
        }
    }

    /// Maps an `io::Error` met while working on `path`. Readers and writers of this crate
    /// smuggle a `FilesError` through `io::Error::other` (a quota or bomb limit hit deep
    /// inside a decoder); it is unwrapped here.
    pub(crate) fn from_io(path: impl ToString, err: io::Error) -> Self {
        if err.get_ref().is_some_and(|inner| inner.is::<FilesError>()) {
            if let Some(inner) = err.into_inner() {
                if let Ok(files) = inner.downcast::<FilesError>() {
                    return *files;
                }
            }
            return Self::Io { path: path.to_string(), source: io::Error::other("lost inner error") };
        }
        match err.raw_os_error() {
            Some(code) => Self::from_errno(path, Errno::from_raw_os_error(code)),
            None => Self::Io { path: path.to_string(), source: err },
        }
    }

    /// Wraps this error into an `io::Error` so it can cross `Read`/`Write` boundaries.
    pub(crate) fn into_io(self) -> io::Error {
        io::Error::other(self)
    }
}
