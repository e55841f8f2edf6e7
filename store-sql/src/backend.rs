//! Everything that differs between PostgreSQL, MySQL/MariaDB and SQLite, in one place.
//!
//! The repositories are written once against [`AnyConnection`]; they call into this module
//! for the few things the dialects do differently:
//!
//! | what | PostgreSQL | MySQL / MariaDB | SQLite |
//! |---|---|---|---|
//! | session set-up ([`Backend::establish`]) | — | `READ COMMITTED`, UTC | WAL, `busy_timeout`, `foreign_keys` |
//! | write transaction (`begin`) | `BEGIN` (read committed) | `BEGIN` (read committed) | `BEGIN IMMEDIATE`: the single writer lock up front |
//! | read transaction (`begin`) | `REPEATABLE READ READ ONLY` | `REPEATABLE READ`, `READ ONLY` | `BEGIN` (a WAL snapshot) |
//! | claiming an allocation (`claim_candidate`) | `FOR UPDATE SKIP LOCKED` | `FOR UPDATE SKIP LOCKED` | plain (the writer lock is held) |
//! | summing `BIGINT`s (`server_totals`) | `CAST(SUM(..) AS BIGINT)` | `CAST(SUM(..) AS SIGNED)` | `SUM(..)` |
//! | insert or update (`upsert!`) | `ON CONFLICT (key) DO UPDATE` | `ON DUPLICATE KEY UPDATE` | `ON CONFLICT (key) DO UPDATE` |
//! | migration lock (`lock_migrations`) | advisory lock | `GET_LOCK` | none (one process owns the file) |
//! | migrations ([`Backend::migrations`]) | `migrations/postgres` | `migrations/mysql` | `migrations/sqlite` |
//! | column types | `VARCHAR COLLATE "C"`, `TIMESTAMP`, `BIGSERIAL` | `utf8mb4_bin`, `DATETIME(6)`, `AUTO_INCREMENT` | `TEXT`, `INTEGER PRIMARY KEY AUTOINCREMENT` |
//!
//! What the dialects would also differ in, the stores avoid needing: ids are UUIDs made by
//! the caller, so no statement needs `RETURNING` (MySQL has none); the few upserts (subusers,
//! second factors) need no `RETURNING` either; and UUIDs, timestamps and JSON use the SQL
//! types all three share (text, `Timestamp`, text).

use crate::connection::AnyConnection;
use crate::error::SqlResult;
use diesel::connection::{AnsiTransactionManager, SimpleConnection};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_migrations::EmbeddedMigrations;

/// A database backend the SQL store can run on: how to connect, and which migrations to run.
/// Implemented by [`Postgres`], [`Mysql`] and [`Sqlite`] (each behind its cargo feature).
pub trait Backend: Send + Sync + 'static {
    /// Name for logs and [`Store::backend`](nexus_core::store::Store::backend).
    const NAME: &'static str;
    /// Pooled connections when the options do not say.
    const DEFAULT_POOL_SIZE: u32;

    /// Opens a connection to `url` and prepares its session.
    fn establish(url: &str) -> ConnectionResult<AnyConnection>;

    /// This dialect's embedded migrations.
    fn migrations() -> EmbeddedMigrations;
}

/// PostgreSQL (`postgres://user:password@host:port/database`).
#[cfg(feature = "postgres")]
#[derive(Clone, Copy, Debug, Default)]
pub struct Postgres;

#[cfg(feature = "postgres")]
impl Backend for Postgres {
    const NAME: &'static str = "postgres";
    const DEFAULT_POOL_SIZE: u32 = 16;

    fn establish(url: &str) -> ConnectionResult<AnyConnection> {
        diesel::PgConnection::establish(url).map(AnyConnection::Postgres)
    }

    fn migrations() -> EmbeddedMigrations {
        const MIGRATIONS: EmbeddedMigrations = diesel_migrations::embed_migrations!("migrations/postgres");
        MIGRATIONS
    }
}

/// MySQL 8 or MariaDB 10.6+ (`mysql://user:password@host:port/database`).
#[cfg(feature = "mysql")]
#[derive(Clone, Copy, Debug, Default)]
pub struct Mysql;

#[cfg(feature = "mysql")]
impl Backend for Mysql {
    const NAME: &'static str = "mysql";
    const DEFAULT_POOL_SIZE: u32 = 16;

    fn establish(url: &str) -> ConnectionResult<AnyConnection> {
        let mut conn = diesel::MysqlConnection::establish(url)?;
        // READ COMMITTED as on PostgreSQL: an optimistic version check that lost a race
        // re-reads the row and must see the winner's version, not its own snapshot; and it
        // keeps REPEATABLE READ's gap locks from serialising concurrent allocation claims.
        conn.batch_execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; SET time_zone = '+00:00'")
            .map_err(|err| ConnectionError::BadConnection(format!("preparing the MySQL session: {err}")))?;
        Ok(AnyConnection::Mysql(conn))
    }

    fn migrations() -> EmbeddedMigrations {
        const MIGRATIONS: EmbeddedMigrations = diesel_migrations::embed_migrations!("migrations/mysql");
        MIGRATIONS
    }
}

/// SQLite, bundled (a file path; `:memory:` only works with a pool of one connection).
#[cfg(feature = "sqlite")]
#[derive(Clone, Copy, Debug, Default)]
pub struct Sqlite;

#[cfg(feature = "sqlite")]
impl Backend for Sqlite {
    const NAME: &'static str = "sqlite";
    // One writer at a time anyway; a few connections let reads proceed beside it.
    const DEFAULT_POOL_SIZE: u32 = 8;

    fn establish(url: &str) -> ConnectionResult<AnyConnection> {
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        let mut conn = diesel::SqliteConnection::establish(path)?;
        // busy_timeout first: switching to WAL itself needs the lock another connection may
        // hold. WAL lets readers run beside the one writer; foreign keys are off by default.
        conn.batch_execute(
            "PRAGMA busy_timeout = 60000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA foreign_keys = ON;",
        )
        .map_err(|err| ConnectionError::BadConnection(format!("preparing the SQLite connection: {err}")))?;
        Ok(AnyConnection::Sqlite(conn))
    }

    fn migrations() -> EmbeddedMigrations {
        const MIGRATIONS: EmbeddedMigrations = diesel_migrations::embed_migrations!("migrations/sqlite");
        MIGRATIONS
    }
}

/// What a transaction will do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Only reads: one consistent snapshot.
    Read,
    /// Reads and writes.
    Write,
}

/// Begins a transaction on `conn`, tracked by diesel's transaction manager (so that nested
/// `Connection::transaction` calls become savepoints and a pooled connection left inside a
/// transaction counts as broken).
pub(crate) fn begin(conn: &mut AnyConnection, mode: Mode) -> QueryResult<()> {
    match conn {
        #[cfg(feature = "postgres")]
        AnyConnection::Postgres(c) => AnsiTransactionManager::begin_transaction_sql(
            c,
            match mode {
                Mode::Read => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                // Said, not assumed from the server's default: the writes that lock a row
                // and then read (a create checking its node's room, the rounds of a batch of
                // events) must see what the transactions they waited for committed.
                Mode::Write => "BEGIN ISOLATION LEVEL READ COMMITTED",
            },
        ),
        #[cfg(feature = "mysql")]
        AnyConnection::Mysql(c) => match mode {
            Mode::Read => {
                // Applies to the next transaction only; the session stays READ COMMITTED.
                c.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")?;
                AnsiTransactionManager::begin_transaction_sql(c, "START TRANSACTION READ ONLY")
            }
            Mode::Write => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN"),
        },
        #[cfg(feature = "sqlite")]
        AnyConnection::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(
            c,
            match mode {
                Mode::Read => "BEGIN DEFERRED",
                // Taking the write lock at BEGIN makes concurrent writers wait (busy_timeout)
                // instead of failing with SQLITE_BUSY when a read lock cannot be upgraded.
                Mode::Write => "BEGIN IMMEDIATE",
            },
        ),
    }
}

/// The `n`-th (from 1) bind parameter of a raw statement: `$n` on PostgreSQL, `?` elsewhere.
#[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
fn placeholder(conn: &AnyConnection, n: usize) -> String {
    match conn {
        #[cfg(feature = "postgres")]
        AnyConnection::Postgres(_) => format!("${n}"),
        #[cfg(any(feature = "mysql", feature = "sqlite"))]
        _ => "?".to_owned(),
    }
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = Text)]
    id: String,
}

/// The id of the lowest free allocation (`ip`, then port, then id) of `node`, locked for this
/// transaction where the backend can lock rows; `None` if the node has none free.
pub(crate) fn claim_candidate(conn: &mut AnyConnection, node: &str) -> QueryResult<Option<String>> {
    const SELECT: &str = "SELECT id FROM allocations WHERE node_id = ";
    const ORDER: &str = " AND server_id IS NULL ORDER BY ip_key, port, id LIMIT 1";
    // SKIP LOCKED: concurrent claimers each take a different row instead of queueing on the
    // lowest one and retrying.
    let lock = match conn {
        #[cfg(feature = "postgres")]
        AnyConnection::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        #[cfg(feature = "mysql")]
        AnyConnection::Mysql(_) => " FOR UPDATE SKIP LOCKED",
        #[cfg(feature = "sqlite")]
        AnyConnection::Sqlite(_) => "",
    };
    let sql = format!("{SELECT}{}{ORDER}{lock}", placeholder(conn, 1));
    let rows: Vec<IdRow> = diesel::sql_query(sql).bind::<Text, _>(node).load(conn)?;
    Ok(rows.into_iter().next().map(|row| row.id))
}

/// A node as a heartbeat found it, before recording it.
#[derive(QueryableByName, Debug)]
pub(crate) struct NodeBeat {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamp>)]
    pub last_heartbeat: Option<chrono::NaiveDateTime>,
}

/// The [`NodeBeat`]s of the nodes of `ids` that exist, in id order, locked for this
/// transaction where the backend can lock rows (SQLite's write transactions are serial
/// already). A heartbeat locks so that a stale-node sweep committing between its read and its
/// write is not overwritten unseen (the node marked offline, then online again, without anyone
/// noticing it had been away); a create locks its node so that two panels cannot both book
/// the node's last room.
pub(crate) fn lock_nodes(conn: &mut AnyConnection, ids: &[String]) -> QueryResult<Vec<NodeBeat>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let lock = match conn {
        // NO KEY UPDATE: inserts of rows that reference the node (servers, allocations) take
        // KEY SHARE locks on it and must not wait for a heartbeat batch, nor it for them.
        #[cfg(feature = "postgres")]
        AnyConnection::Postgres(_) => " FOR NO KEY UPDATE",
        #[cfg(feature = "mysql")]
        AnyConnection::Mysql(_) => " FOR UPDATE",
        #[cfg(feature = "sqlite")]
        AnyConnection::Sqlite(_) => "",
    };
    let placeholders: Vec<String> = (1..=ids.len()).map(|n| placeholder(conn, n)).collect();
    let sql = format!(
        "SELECT id, status, last_heartbeat FROM nodes WHERE id IN ({}) ORDER BY id{lock}",
        placeholders.join(", ")
    );
    let mut query = diesel::sql_query(sql).into_boxed();
    for id in ids {
        query = query.bind::<Text, _>(id);
    }
    query.load(conn)
}

/// A server's state set and its version bumped, if its version is still `version`.
#[derive(Clone, Debug)]
pub(crate) struct StateChange {
    pub id: String,
    pub version: i64,
    pub state: String,
}

/// Applies `changes` (distinct servers); the ids of the servers changed (the others were
/// changed by another writer since they were read). PostgreSQL takes them in one `UPDATE ..
/// FROM UNNEST(..)`: a batch of lifecycle events costs one statement instead of one per event,
/// which is most of the database's work at thousands of events a second. MySQL and SQLite
/// take one `UPDATE` each (SQLite has no round trips to save).
// With PostgreSQL alone, the `if let` below always matches.
#[allow(irrefutable_let_patterns)]
pub(crate) fn set_server_states(
    conn: &mut AnyConnection,
    changes: &[StateChange],
) -> QueryResult<std::collections::HashSet<String>> {
    use crate::schema::servers;
    #[cfg(feature = "postgres")]
    if let AnyConnection::Postgres(c) = conn {
        use diesel::sql_types::Array;
        let ids: Vec<&str> = changes.iter().map(|ch| ch.id.as_str()).collect();
        let versions: Vec<i64> = changes.iter().map(|ch| ch.version).collect();
        let states: Vec<&str> = changes.iter().map(|ch| ch.state.as_str()).collect();
        let changed: Vec<IdRow> = diesel::sql_query(
            "UPDATE servers AS s SET state = v.state, version = v.version + 1 \
             FROM UNNEST($1::text[], $2::bigint[], $3::text[]) AS v(id, version, state) \
             WHERE s.id = v.id AND s.version = v.version RETURNING s.id",
        )
        .bind::<Array<Text>, _>(ids)
        .bind::<Array<BigInt>, _>(versions)
        .bind::<Array<Text>, _>(states)
        .load(c)?;
        return Ok(changed.into_iter().map(|row| row.id).collect());
    }
    let mut changed = std::collections::HashSet::with_capacity(changes.len());
    for change in changes {
        let rows = diesel::update(servers::table.find(&change.id).filter(servers::version.eq(change.version)))
            .set((servers::state.eq(&change.state), servers::version.eq(change.version + 1)))
            .execute(conn)?;
        if rows == 1 {
            changed.insert(change.id.clone());
        }
    }
    Ok(changed)
}

/// Per node: servers placed and the sums of their limits.
#[derive(QueryableByName, Debug)]
pub(crate) struct ServerTotals {
    #[diesel(sql_type = Text)]
    pub node_id: String,
    #[diesel(sql_type = BigInt)]
    pub servers: i64,
    #[diesel(sql_type = BigInt)]
    pub memory_mb: i64,
    #[diesel(sql_type = BigInt)]
    pub disk_mb: i64,
    #[diesel(sql_type = BigInt)]
    pub cpu_percent: i64,
}

/// [`ServerTotals`] of every node with servers. `SUM` of a `BIGINT` is a `NUMERIC` on
/// PostgreSQL and a `DECIMAL` on MySQL, which diesel's multi-backend types lack: cast back.
pub(crate) fn server_totals(conn: &mut AnyConnection, node: Option<&str>) -> QueryResult<Vec<ServerTotals>> {
    let cast: Option<&str> = match conn {
        #[cfg(feature = "postgres")]
        AnyConnection::Postgres(_) => Some("BIGINT"),
        #[cfg(feature = "mysql")]
        AnyConnection::Mysql(_) => Some("SIGNED"),
        #[cfg(feature = "sqlite")]
        AnyConnection::Sqlite(_) => None,
    };
    let sum = |column: &str| match cast {
        Some(cast) => format!("CAST(SUM({column}) AS {cast}) AS {column}"),
        None => format!("SUM({column}) AS {column}"),
    };
    let filter = match node {
        None => String::new(),
        Some(_) => format!(" WHERE node_id = {}", placeholder(conn, 1)),
    };
    let sql = format!(
        "SELECT node_id, COUNT(*) AS servers, {}, {}, {} FROM servers{filter} GROUP BY node_id",
        sum("memory_mb"),
        sum("disk_mb"),
        sum("cpu_percent"),
    );
    match node {
        Some(node) => diesel::sql_query(sql).bind::<Text, _>(node).load(conn),
        None => diesel::sql_query(sql).load(conn),
    }
}

/// Arbitrary key of the PostgreSQL advisory lock guarding migrations ("nexus" in ASCII).
#[cfg(feature = "postgres")]
const PG_MIGRATION_LOCK: i64 = 0x6e_6578_7573;

#[cfg(feature = "mysql")]
#[derive(QueryableByName)]
struct LockRow {
    #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
    locked: Option<i64>,
}

/// Serialises migrations between processes starting at once (panel replicas on one database).
pub(crate) fn lock_migrations(conn: &mut AnyConnection) -> SqlResult<()> {
    match conn {
        #[cfg(feature = "postgres")]
        AnyConnection::Postgres(c) => {
            c.batch_execute(&format!("SELECT pg_advisory_lock({PG_MIGRATION_LOCK})"))?;
        }
        #[cfg(feature = "mysql")]
        AnyConnection::Mysql(c) => {
            let row: LockRow = diesel::sql_query("SELECT CAST(GET_LOCK('nexus_migrations', 300) AS SIGNED) AS locked")
                .get_result(c)?;
            if row.locked != Some(1) {
                return Err(crate::error::SqlError::Migration(
                    "timed out waiting for another process's migrations".into(),
                ));
            }
        }
        #[cfg(feature = "sqlite")]
        AnyConnection::Sqlite(_) => {}
    }
    Ok(())
}

/// Releases [`lock_migrations`].
pub(crate) fn unlock_migrations(conn: &mut AnyConnection) -> SqlResult<()> {
    match conn {
        #[cfg(feature = "postgres")]
        AnyConnection::Postgres(c) => {
            c.batch_execute(&format!("SELECT pg_advisory_unlock({PG_MIGRATION_LOCK})"))?;
        }
        #[cfg(feature = "mysql")]
        AnyConnection::Mysql(c) => {
            let _: LockRow =
                diesel::sql_query("SELECT CAST(RELEASE_LOCK('nexus_migrations') AS SIGNED) AS locked").get_result(c)?;
        }
        #[cfg(feature = "sqlite")]
        AnyConnection::Sqlite(_) => {}
    }
    Ok(())
}

/// Inserts a slice of `Insertable` rows into `$table` on `$conn`, returning the rows
/// inserted. PostgreSQL and MySQL take one multi-row `INSERT`; diesel renders no multi-row
/// `INSERT` for SQLite through the multi-backend, and there a loop of single-row inserts
/// inside the caller's transaction is as fast (no network round trips, cached statement).
/// A macro because each table's insert is its own type; call it with chunks of at most
/// [`INSERT_CHUNK`](crate::repo::infra::INSERT_CHUNK) rows.
macro_rules! insert_rows {
    ($conn:expr, $table:expr, $rows:expr) => {{
        let rows = $rows;
        match $conn {
            #[cfg(feature = "postgres")]
            $crate::connection::AnyConnection::Postgres(c) => diesel::insert_into($table).values(rows).execute(c),
            #[cfg(feature = "mysql")]
            $crate::connection::AnyConnection::Mysql(c) => diesel::insert_into($table).values(rows).execute(c),
            #[cfg(feature = "sqlite")]
            $crate::connection::AnyConnection::Sqlite(c) => {
                rows.iter().try_fold(0, |n, row| diesel::insert_into($table).values(row).execute(c).map(|m| n + m))
            }
        }
    }};
}
pub(crate) use insert_rows;

/// Inserts `$row` into `$table` or, if a row with the same key exists, applies `$changes` to
/// it: one statement, so two writers adding the same key at once both succeed (a read, then an
/// insert, would fail the later one with a unique violation). `$target` is the conflict key for
/// PostgreSQL and SQLite; MySQL's `ON DUPLICATE KEY` fires on any unique key, so tables
/// upserted here must have no unique key but the primary one. A macro for the same reason as
/// [`insert_rows!`].
macro_rules! upsert {
    ($conn:expr, $table:expr, $row:expr, $target:expr, $changes:expr) => {{
        match $conn {
            #[cfg(feature = "postgres")]
            $crate::connection::AnyConnection::Postgres(c) => {
                diesel::insert_into($table).values($row).on_conflict($target).do_update().set($changes).execute(c)
            }
            #[cfg(feature = "mysql")]
            $crate::connection::AnyConnection::Mysql(c) => diesel::insert_into($table)
                .values($row)
                .on_conflict(diesel::dsl::DuplicatedKeys)
                .do_update()
                .set($changes)
                .execute(c),
            #[cfg(feature = "sqlite")]
            $crate::connection::AnyConnection::Sqlite(c) => {
                diesel::insert_into($table).values($row).on_conflict($target).do_update().set($changes).execute(c)
            }
        }
    }};
}
pub(crate) use upsert;
