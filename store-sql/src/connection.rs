//! [`AnyConnection`]: one connection type for every enabled backend, so that every query is
//! written once (diesel's `MultiConnection`).

/// A connection to whichever backend the store was opened for. Only the backends enabled by
/// cargo features (`postgres`, `mysql`, `sqlite`) exist as variants.
///
/// Queries built with diesel's DSL against this type run on each backend with that backend's
/// SQL; the few statements that must differ live in [`backend`](crate::backend).
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    /// PostgreSQL (libpq).
    #[cfg(feature = "postgres")]
    Postgres(diesel::PgConnection),
    /// MySQL or MariaDB (libmysqlclient / libmariadb).
    #[cfg(feature = "mysql")]
    Mysql(diesel::MysqlConnection),
    /// SQLite (bundled).
    #[cfg(feature = "sqlite")]
    Sqlite(diesel::SqliteConnection),
}
