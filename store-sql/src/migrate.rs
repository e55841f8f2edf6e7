//! Embedded migrations: run at start, refuse a database newer than this build.

use crate::backend::{self, Backend};
use crate::connection::AnyConnection;
use crate::error::{SqlError, SqlResult};
use diesel::Connection;
use diesel::migration::MigrationSource;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use nexus_core::store::StoreError;
use std::collections::BTreeSet;

type AnyBackend = <AnyConnection as Connection>::Backend;

fn migration_error(err: impl std::fmt::Display) -> SqlError {
    SqlError::Migration(err.to_string())
}

/// Versions of `migrations`.
pub(crate) fn known_versions(migrations: &EmbeddedMigrations) -> SqlResult<BTreeSet<String>> {
    let list = MigrationSource::<AnyBackend>::migrations(migrations).map_err(migration_error)?;
    Ok(list.iter().map(|m| m.name().version().to_string()).collect())
}

/// Brings the schema up to date with `B`'s embedded migrations, holding the backend's
/// migration lock. A second start is a no-op; a database that has applied a migration this
/// build does not know (written by a newer Nexus) is refused with
/// [`StoreError::SchemaTooNew`] before anything is changed.
pub(crate) fn migrate<B: Backend>(conn: &mut AnyConnection) -> SqlResult<()> {
    backend::lock_migrations(conn)?;
    let outcome = refuse_newer::<B>(conn).and_then(|()| run_pending(conn, B::NAME, B::migrations()));
    let unlocked = backend::unlock_migrations(conn);
    outcome?;
    unlocked
}

/// [`StoreError::SchemaTooNew`] if the database has applied a migration `B` does not know.
pub(crate) fn refuse_newer<B: Backend>(conn: &mut AnyConnection) -> SqlResult<()> {
    let known = known_versions(&B::migrations())?;
    let applied: BTreeSet<String> =
        conn.applied_migrations().map_err(migration_error)?.iter().map(ToString::to_string).collect();
    let unknown: Vec<&String> = applied.difference(&known).collect();
    let Some(newest) = unknown.iter().max() else {
        return Ok(());
    };
    let supported = known.iter().next_back().cloned().unwrap_or_else(|| "none".into());
    tracing::error!(backend = B::NAME, unknown = ?unknown, "the database was migrated by a newer Nexus; refusing it");
    Err(StoreError::SchemaTooNew { found: (*newest).clone(), supported }.into())
}

fn run_pending(conn: &mut AnyConnection, name: &str, migrations: EmbeddedMigrations) -> SqlResult<()> {
    let ran = conn.run_pending_migrations(migrations).map_err(migration_error)?;
    if ran.is_empty() {
        tracing::debug!(backend = name, "schema up to date");
    } else {
        let versions: Vec<String> = ran.iter().map(ToString::to_string).collect();
        tracing::info!(backend = name, migrations = ?versions, "applied migrations");
    }
    Ok(())
}
