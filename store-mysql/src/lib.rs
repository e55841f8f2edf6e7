//! # nexus-store-mysql
//!
//! The MySQL 8 / MariaDB 10.6+ [`Store`](nexus_core::store::Store) of Nexus, over diesel and
//! the MySQL client library. The schema's migrations are embedded and run when the store
//! opens, under `GET_LOCK` so that panel replicas starting together migrate once; a database
//! written by a newer Nexus is refused with
//! [`StoreError::SchemaTooNew`](nexus_core::store::StoreError::SchemaTooNew).
//!
//! The SQL itself lives in `nexus-store-sql`, shared with the PostgreSQL and SQLite stores.
//! MySQL specifics: sessions run at `READ COMMITTED` (optimistic version checks must see the
//! winner's row, and claims should not take gap locks), allocation claims lock rows with
//! `FOR UPDATE SKIP LOCKED`, tables use `utf8mb4_bin` so that names compare and sort
//! byte-wise as on the other backends. Building needs `libmysqlclient` or MariaDB's
//! compatible library (`libmariadb-dev-compat` on Debian).
//!
//! ```no_run
//! use nexus_core::store::{Store, ServerRepo, ServerFilter, Page};
//! use nexus_store_mysql::MysqlStore;
//!
//! # async fn open() -> Result<(), nexus_core::store::StoreError> {
//! let store = MysqlStore::connect("mysql://nexus:secret@127.0.0.1:3306/nexus").await?;
//! let servers = store.list_servers(&ServerFilter::default(), Page::first(50)).await?;
//! println!("{} store, first page: {} servers", store.backend(), servers.len());
//! # Ok(())
//! # }
//! ```

pub use nexus_store_sql::backend::Mysql;
pub use nexus_store_sql::{SqlError, StoreOptions};

/// The MySQL/MariaDB store: a [`Store`](nexus_core::store::Store) over a connection pool.
pub type MysqlStore = nexus_store_sql::SqlStore<Mysql>;

/// A transaction of a [`MysqlStore`], holding one pooled connection.
pub type MysqlTransaction = nexus_store_sql::SqlTransaction<Mysql>;
