//! # nexus-store-postgres
//!
//! The PostgreSQL [`Store`](nexus_core::store::Store) of Nexus, over diesel and libpq: the
//! store for several stateless panel replicas sharing one database. The schema's migrations
//! are embedded and run when the store opens, under an advisory lock so that replicas
//! starting together migrate once; a database written by a newer Nexus is refused with
//! [`StoreError::SchemaTooNew`](nexus_core::store::StoreError::SchemaTooNew).
//!
//! The SQL itself lives in `nexus-store-sql`, shared with the MySQL and SQLite stores.
//! PostgreSQL specifics: writes run at `READ COMMITTED` with optimistic version checks,
//! allocation claims lock rows with `FOR UPDATE SKIP LOCKED`, reads see one
//! `REPEATABLE READ` snapshot. Building needs libpq (`libpq-dev` on Debian).
//!
//! ```no_run
//! use nexus_core::store::{Store, NodeRepo};
//! use nexus_store_postgres::{PostgresStore, StoreOptions};
//!
//! # async fn open() -> Result<(), nexus_core::store::StoreError> {
//! let options = StoreOptions { max_connections: Some(32), ..StoreOptions::default() };
//! let store = PostgresStore::connect_with("postgres://nexus:secret@db.internal/nexus", options).await?;
//! println!("{} store with {} nodes", store.backend(), store.list_nodes().await?.len());
//! # Ok(())
//! # }
//! ```

pub use nexus_store_sql::backend::Postgres;
pub use nexus_store_sql::{SqlError, StoreOptions};

/// The PostgreSQL store: a [`Store`](nexus_core::store::Store) over a connection pool.
pub type PostgresStore = nexus_store_sql::SqlStore<Postgres>;

/// A transaction of a [`PostgresStore`], holding one pooled connection.
pub type PostgresTransaction = nexus_store_sql::SqlTransaction<Postgres>;
