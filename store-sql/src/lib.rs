//! # nexus-store-sql
//!
//! The SQL behind Nexus' stores, written once for PostgreSQL, MySQL/MariaDB and SQLite: the
//! schema and its migrations, the diesel models, and every repository rule of
//! [`nexus_core::store`]. The backend crates `nexus-store-postgres`, `nexus-store-mysql` and
//! `nexus-store-sqlite` enable one backend feature each and name the store type; use them
//! rather than this crate directly.
//!
//! ## How the SQL is written once
//!
//! * [`AnyConnection`] is a diesel `MultiConnection` over the enabled backends, so every query
//!   in the private `repo` module is built once with diesel's DSL and rendered per backend.
//! * [`backend`] holds everything that differs: session set-up, how transactions begin
//!   (SQLite's `BEGIN IMMEDIATE`), row locking for allocation claims (`FOR UPDATE SKIP
//!   LOCKED`), casts, the migration lock and which migrations to embed.
//! * [`SqlStore`] runs each call on tokio's blocking pool with a pooled connection (r2d2), in
//!   one transaction; [`SqlTransaction`] holds one connection and makes each call a savepoint.
//!
//! ## Features
//!
//! `postgres`, `mysql`, `sqlite` (bundled) enable the backends; `testing` adds
//! [`testing`]: throwaway databases, migration checks and the benchmark, for
//! the backend crates' tests.

pub mod backend;
mod connection;
mod convert;
pub mod error;
mod migrate;
mod repo;
mod schema;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

#[cfg(not(any(feature = "postgres", feature = "mysql", feature = "sqlite")))]
compile_error!("nexus-store-sql needs at least one backend feature: postgres, mysql or sqlite");

pub use backend::Backend;
pub use connection::AnyConnection;
pub use error::SqlError;
pub use store::{SqlStore, SqlTransaction, StoreOptions};
