//! [`SqlError`], this crate's failures, and how they become [`StoreError`]s.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use nexus_core::store::StoreError;

/// Failures inside the SQL stores. Every public call returns [`StoreError`]; this type keeps
/// the cause precise until then (see the `From<SqlError> for StoreError` mapping).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    /// A rule of the store was violated (found by a check, before any write).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A query failed.
    #[error("query failed: {0}")]
    Query(#[from] DieselError),
    /// A connection could not be opened.
    #[error("cannot connect: {0}")]
    Connect(#[from] diesel::ConnectionError),
    /// No pooled connection became free in time, or the pool could not open one.
    #[error("connection pool: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    /// Applying the embedded migrations failed.
    #[error("migrations failed: {0}")]
    Migration(String),
    /// A stored value does not decode (edited by hand, or written by an incompatible build).
    #[error("corrupt {what} in the database: {detail}")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// Why it does not decode.
        detail: String,
    },
    /// A value does not fit its column (a `u64` above `i64::MAX`, say).
    #[error("{what} {value} does not fit the database column")]
    OutOfRange {
        /// Which value.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// The blocking task running a query panicked or was cancelled.
    #[error("database task failed: {0}")]
    Task(String),
}

impl SqlError {
    /// A stored value that does not decode.
    pub(crate) fn corrupt(what: &'static str, detail: impl ToString) -> Self {
        Self::Corrupt { what, detail: detail.to_string() }
    }

    /// True for failures that a fresh attempt of the whole transaction may not hit: a
    /// serialization failure or a deadlock chosen as victim. Nothing was written.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Self::Query(DieselError::DatabaseError(kind, info)) => {
                matches!(kind, DatabaseErrorKind::SerializationFailure)
                    || info.message().contains("deadlock detected")
                    || info.message().contains("Deadlock found")
            }
            _ => false,
        }
    }
}

/// The most telling text diesel has about a database error: PostgreSQL's detail names the
/// colliding value (`Key (prefix)=(x) already exists.`), MySQL's message does
/// (`Duplicate entry 'x' for key ...`), SQLite's names the column.
fn describe(info: &(dyn diesel::result::DatabaseErrorInformation + Send + Sync)) -> String {
    match (info.details(), info.constraint_name()) {
        (Some(details), _) => format!("{} ({details})", info.message()),
        (None, Some(constraint)) => format!("{} (constraint {constraint})", info.message()),
        (None, None) => info.message().to_owned(),
    }
}

impl From<SqlError> for StoreError {
    fn from(err: SqlError) -> Self {
        match err {
            SqlError::Store(err) => err,
            // Checks run before writes, so these only surface when two writers race past the
            // same check: the database's constraint is the final word.
            SqlError::Query(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)) => {
                StoreError::Duplicate { entity: "record", detail: describe(info.as_ref()) }
            }
            SqlError::Query(DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info)) => {
                StoreError::InvalidReference(describe(info.as_ref()))
            }
            SqlError::Query(DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, info)) => {
                StoreError::Transaction(format!("serialization failure: {}", describe(info.as_ref())))
            }
            SqlError::Query(DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info)) => {
                StoreError::Backend(format!("connection closed: {}", describe(info.as_ref())))
            }
            SqlError::Query(DieselError::DatabaseError(_, info)) => StoreError::Backend(describe(info.as_ref())),
            SqlError::Query(DieselError::AlreadyInTransaction | DieselError::NotInTransaction) => {
                StoreError::Transaction(err.to_string())
            }
            SqlError::Query(DieselError::BrokenTransactionManager) => {
                StoreError::Transaction("the connection's transaction state is broken".into())
            }
            other => StoreError::Backend(other.to_string()),
        }
    }
}

/// Result of this crate's internal steps.
pub(crate) type SqlResult<T> = Result<T, SqlError>;
