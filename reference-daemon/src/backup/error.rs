//! [`BackupError`]: what creating, restoring, downloading or deleting a backup fails with.

use nexus_core::ids::{BackupId, ServerId};
use nexus_files::FilesError;

/// Why a backup operation failed. The message is meant for the server's users (the panel
/// shows it); [`status_code`](Self::status_code) and [`code`](Self::code) type it for the
/// API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The object store failed (unreachable, refused, ...). Retried when
    /// [`is_retryable`](Self::is_retryable).
    #[error("backup store: {0}")]
    Store(#[source] object_store::Error),
    /// The server's files could not be archived or restored (see [`FilesError`]).
    #[error(transparent)]
    Files(#[from] FilesError),
    /// The store holds no archive for this backup.
    #[error("backup {backup} of server {server} is not in the backup store")]
    NotFound {
        /// The server.
        server: ServerId,
        /// The backup.
        backup: BackupId,
    },
    /// The archive read is not the one the panel recorded; nothing was changed.
    #[error(
        "checksum mismatch: the stored archive has SHA-256 {actual}, {expected} was expected; the server's files were not changed"
    )]
    ChecksumMismatch {
        /// What the caller expected (lower-case hex).
        expected: String,
        /// What was read (lower-case hex).
        actual: String,
    },
    /// The store's size of the archive is not the size of the bytes moved: after a backup,
    /// the store reports another size than was uploaded (the object was removed); on a
    /// restore, the store sent another number of bytes than the object's size it announced
    /// (nothing was changed).
    #[error("the backup store holds {stored} bytes for the archive, {written} were transferred")]
    SizeMismatch {
        /// Bytes transferred: uploaded (backup) or received (restore).
        written: u64,
        /// Bytes the store reports the archive holds.
        stored: u64,
    },
    /// Every attempt failed on a store error worth retrying; the last one's.
    #[error("{attempts} attempts failed; the last: {last}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        last: Box<BackupError>,
    },
}

impl BackupError {
    /// Whether trying the whole operation again may succeed: the store failed in a way that
    /// can pass (connection refused or cut, timeouts, 5xx answers).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => super::retry::is_retryable(e),
            _ => false,
        }
    }

    /// The HTTP status an API answers with.
    pub fn status_code(&self) -> u16 {
        match self {
            Self::Store(object_store::Error::NotFound { .. }) | Self::NotFound { .. } => 404,
            Self::Store(_) | Self::SizeMismatch { .. } => 502,
            Self::Files(e) => e.status_code(),
            Self::ChecksumMismatch { .. } => 422,
            Self::GaveUp { last, .. } => last.status_code(),
        }
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Store(object_store::Error::NotFound { .. }) | Self::NotFound { .. } => "unknown_backup",
            Self::Store(_) => "backup_store",
            Self::Files(e) => e.code(),
            Self::ChecksumMismatch { .. } => "checksum_mismatch",
            Self::SizeMismatch { .. } => "size_mismatch",
            Self::GaveUp { last, .. } => last.code(),
        }
    }
}

impl From<BackupError> for crate::api::ApiError {
    fn from(e: BackupError) -> Self {
        Self::new(e.status_code(), e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_retries() {
        let down =
            BackupError::Store(object_store::Error::Generic { store: "S3", source: "connection refused".into() });
        assert!(down.is_retryable());
        assert_eq!((down.status_code(), down.code()), (502, "backup_store"));
        let gone = BackupError::Store(object_store::Error::NotFound { path: "x".into(), source: "404".into() });
        assert!(!gone.is_retryable());
        assert_eq!((gone.status_code(), gone.code()), (404, "unknown_backup"));
        let mismatch = BackupError::ChecksumMismatch { expected: "a".into(), actual: "b".into() };
        assert!(!mismatch.is_retryable());
        assert_eq!(mismatch.status_code(), 422);
        let gave_up = BackupError::GaveUp { attempts: 3, last: Box::new(down) };
        assert!(gave_up.to_string().starts_with("3 attempts failed; the last: backup store: "), "{gave_up}");
        assert_eq!(gave_up.code(), "backup_store");
    }
}
