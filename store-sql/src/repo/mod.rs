//! The repositories' rules and queries, written once for every backend as functions over an
//! [`AnyConnection`](crate::connection::AnyConnection) that is already inside a transaction
//! (the store opens it; see [`store`](crate::store)).
//!
//! Every write validates before it writes and reports a rule violation with the same
//! [`StoreError`] variant as `MemoryStore`, naming the offending value. The database's own
//! constraints (unique keys, foreign keys) stay as the last line against concurrent writers.

pub(crate) mod access;
pub(crate) mod accounts;
pub(crate) mod infra;
pub(crate) mod refs;
pub(crate) mod servers;

use nexus_core::store::StoreError;

/// [`StoreError::Duplicate`].
pub(crate) fn duplicate(entity: &'static str, detail: impl Into<String>) -> StoreError {
    StoreError::Duplicate { entity, detail: detail.into() }
}

/// [`StoreError::InUse`].
pub(crate) fn in_use(entity: &'static str, id: impl ToString, reason: impl Into<String>) -> StoreError {
    StoreError::InUse { entity, id: id.to_string(), reason: reason.into() }
}

/// [`StoreError::InvalidReference`].
pub(crate) fn invalid(message: impl Into<String>) -> StoreError {
    StoreError::InvalidReference(message.into())
}
