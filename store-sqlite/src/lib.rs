//! # nexus-store-sqlite
//!
//! The embedded default [`Store`](nexus_core::store::Store) of Nexus: SQLite, bundled into the
//! binary (no system library), over diesel. The schema's migrations are embedded and run when
//! the store opens; a database written by a newer Nexus is refused with
//! [`StoreError::SchemaTooNew`](nexus_core::store::StoreError::SchemaTooNew).
//!
//! The SQL itself lives in `nexus-store-sql`, shared with the PostgreSQL and MySQL stores.
//! SQLite specifics: the database runs in WAL mode (reads proceed beside the one writer),
//! every write transaction takes the write lock up front (`BEGIN IMMEDIATE`) and concurrent
//! writers wait for it (`busy_timeout`), and foreign keys are enforced. Use a file path;
//! `:memory:` gives every pooled connection its own database.
//!
//! ```no_run
//! use nexus_core::store::{Store, UserRepo, Page};
//! use nexus_store_sqlite::SqliteStore;
//!
//! # async fn open() -> Result<(), nexus_core::store::StoreError> {
//! let store = SqliteStore::connect("/var/lib/nexus/panel.db").await?;
//! let users = store.list_users(Page::first(10)).await?;
//! println!("{} store with {} users", store.backend(), users.len());
//! # Ok(())
//! # }
//! ```

pub use nexus_store_sql::backend::Sqlite;
pub use nexus_store_sql::{SqlError, StoreOptions};

/// The SQLite store: a [`Store`](nexus_core::store::Store) on one database file.
pub type SqliteStore = nexus_store_sql::SqlStore<Sqlite>;

/// A transaction of a [`SqliteStore`]; it holds SQLite's write lock until it ends.
pub type SqliteTransaction = nexus_store_sql::SqlTransaction<Sqlite>;
