//! Backups of server directories, kept in an object store (the node's disk through a
//! `file://` store by default, or any S3-compatible bucket; `[backups]` in the
//! configuration).
//!
//! | file | what |
//! |---|---|
//! | `store.rs` | [`BackupStore`]: keys `<server uuid>/<backup uuid>.tar.zst`; create (a streaming tar.zst into a multipart upload, SHA-256 on the way, aborted on failure, size checked), restore (the object streamed into a staged restore, hashed, committed only when the checksum matches), open for download, delete |
//! | `upload.rs` | the multipart sink: fixed-size parts, two uploading at once, hashing |
//! | `download.rs` | [`ObjectReader`]: an object as an `AsyncRead`, hashed as it is read |
//! | `retry.rs` | [`RetryPolicy`] (whole attempts after store failures that can pass), aborting uploads the store could not abort while it was down |
//! | `jobs.rs` | [`Backups`]: one job per server, `max_concurrent` on the node, restores under the agent's operation lock with the server stopped, outcomes reported to the panel |
//! | `error.rs` | [`BackupError`] |
//!
//! The routes are in [`crate::api`] (`api/backups.rs`); what is archived and how a restore
//! replaces a directory at once is `nexus_files`' (`ServerFiles::write_backup`,
//! `ServerFiles::stage_restore`).

mod download;
mod error;
mod jobs;
mod retry;
mod store;
mod upload;

pub use download::ObjectReader;
pub use error::BackupError;
pub use jobs::{Backups, RESTORE_MAX_RATIO, backup_limits};
pub use retry::{DEFAULT_STORE_TIMEOUT, RetryPolicy};
pub use store::{BackupStore, Created};
pub use upload::{PART_SIZE, PARTS_IN_FLIGHT};
