//! # nexus-templates
//!
//! Layered server templates kept in object storage, and the object-store configuration the
//! panel and the daemon share (templates and backups).

pub mod storage;

pub use storage::{ObjectStoreConfig, StorageConfigError};
