//! Helpers for the backend crates' tests and benchmarks (feature `testing`): throwaway
//! databases, the migration checks, and the store benchmark. Written once here so that the
//! backend crates' test files are one-liners.
//!
//! Connection settings come from `NEXUS_TEST_POSTGRES_URL` and `NEXUS_TEST_MYSQL_URL` (an
//! account that may create databases; `scripts/services/*.sh` set them up), falling back to
//! the same defaults those scripts use. An unreachable server goes through
//! [`require_service`]: under `CI=true` the test fails.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test support: a failed expectation fails the test")]

use crate::backend::Backend;
use crate::repo::{accounts, infra, servers};
use crate::store::{SqlStore, StoreOptions};
use diesel::RunQueryDsl;
use nexus_conformance::require_service;
use nexus_conformance::store::fixtures;
use nexus_core::ids::*;
use nexus_core::model::*;
use nexus_core::store::*;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

pub use criterion;

/// A backend the test helpers can make empty databases for.
pub trait TestBackend: Backend {
    /// Service name for [`require_service`] (`PostgreSQL`).
    const SERVICE: &'static str;

    /// A new, empty database and what removes it again.
    fn throwaway() -> Result<Throwaway, String>;
}

/// An empty database that is removed when this is dropped.
pub struct Throwaway {
    /// Connection URL (or SQLite path) of the database.
    pub url: String,
    cleanup: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl std::fmt::Debug for Throwaway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throwaway").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        if let Some(cleanup) = self.cleanup.take() {
            cleanup();
        }
    }
}

/// `url` with its database (last path segment) replaced by `name`.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{root}/{name}?{query}"),
        None => format!("{root}/{name}"),
    }
}

/// Creates database `name` through the admin URL in `var` (or `default`); the cleanup drops it.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn server_database<B: Backend>(
    var: &str,
    default: &str,
    create: fn(&str) -> String,
    drop: fn(&str) -> String,
) -> Result<Throwaway, String> {
    use diesel::connection::SimpleConnection;
    let admin = std::env::var(var).unwrap_or_else(|_| default.to_owned());
    let name = format!("nexus_t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = B::establish(&admin).map_err(|err| format!("cannot connect to {admin} ({var}): {err}"))?;
    conn.batch_execute(&create(&name)).map_err(|err| format!("cannot create database {name}: {err}"))?;
    let url = with_database(&admin, &name);
    let cleanup = move || {
        let dropped =
            B::establish(&admin).map_err(|e| e.to_string()).and_then(|mut conn: crate::connection::AnyConnection| {
                conn.batch_execute(&drop(&name)).map_err(|e| e.to_string())
            });
        if let Err(err) = dropped {
            let _ = writeln!(std::io::stderr(), "warning: could not drop test database {name}: {err}");
        }
    };
    Ok(Throwaway { url, cleanup: Some(Box::new(cleanup)) })
}

#[cfg(feature = "postgres")]
impl TestBackend for crate::backend::Postgres {
    const SERVICE: &'static str = "PostgreSQL";

    fn throwaway() -> Result<Throwaway, String> {
        server_database::<Self>(
            "NEXUS_TEST_POSTGRES_URL",
            "postgres://nexus:nexus@127.0.0.1:5432/postgres",
            |name| format!("CREATE DATABASE \"{name}\""),
            |name| format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        )
    }
}

#[cfg(feature = "mysql")]
impl TestBackend for crate::backend::Mysql {
    const SERVICE: &'static str = "MySQL/MariaDB";

    fn throwaway() -> Result<Throwaway, String> {
        server_database::<Self>(
            "NEXUS_TEST_MYSQL_URL",
            "mysql://nexus:nexus@127.0.0.1:3306/mysql",
            |name| format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"),
            |name| format!("DROP DATABASE IF EXISTS `{name}`"),
        )
    }
}

#[cfg(feature = "sqlite")]
impl TestBackend for crate::backend::Sqlite {
    const SERVICE: &'static str = "SQLite";

    fn throwaway() -> Result<Throwaway, String> {
        let dir = tempfile::tempdir().map_err(|err| format!("cannot create a temporary directory: {err}"))?;
        let url = dir.path().join("nexus.db").to_string_lossy().into_owned();
        Ok(Throwaway { url, cleanup: Some(Box::new(move || drop(dir))) })
    }
}

/// A throwaway database, or `None` (after [`require_service`] said to skip) when the server
/// is unreachable. Under `CI=true` an unreachable server panics instead.
pub fn throwaway<B: TestBackend>() -> Option<Throwaway> {
    match B::throwaway() {
        Ok(db) => Some(db),
        Err(reason) => {
            require_service(B::SERVICE, Err(reason));
            None
        }
    }
}

/// Small pools: conformance cases run in parallel, each on its own database.
fn test_options() -> StoreOptions {
    StoreOptions { max_connections: Some(8), ..StoreOptions::default() }
}

/// A migrated store on a fresh throwaway database that is removed with the store: the
/// `make` of `nexus_conformance::store_conformance_tests!`. `None` when the server is unreachable
/// and [`require_service`] allows a skip (it panics under `CI=true`).
pub async fn fresh_store<B: TestBackend>() -> Option<SqlStore<B>> {
    let db = throwaway::<B>()?;
    let url = db.url.clone();
    match SqlStore::<B>::connect_with(&url, test_options()).await {
        Ok(store) => Some(store.keep_alive(db)),
        Err(err) => panic!("connecting a {} store to {url}: {err}", B::NAME),
    }
}

/// Connecting twice runs the migrations once: the second start changes nothing and keeps the
/// data.
pub async fn second_start_is_a_no_op<B: TestBackend>() {
    let Some(db) = throwaway::<B>() else { return };
    let first = SqlStore::<B>::connect_with(&db.url, test_options()).await.expect("first start");
    let user = fixtures::user("survivor");
    first.create_user(&user).await.expect("create user");
    let applied = applied_versions(&first).await;
    assert_eq!(applied.len(), crate::migrate::known_versions(&B::migrations()).expect("versions").len());
    drop(first);

    let second = SqlStore::<B>::connect_with(&db.url, test_options()).await.expect("second start");
    assert_eq!(applied_versions(&second).await, applied, "no migration ran again");
    assert_eq!(second.get_user(user.id).await.expect("data kept"), user);
}

/// A database that has applied a migration this build does not know is refused with
/// `SchemaTooNew`, with and without `migrate`.
pub async fn newer_schema_is_refused<B: TestBackend>() {
    let Some(db) = throwaway::<B>() else { return };
    let store = SqlStore::<B>::connect_with(&db.url, test_options()).await.expect("first start");
    store
        .with_connection(|c| {
            diesel::sql_query("INSERT INTO __diesel_schema_migrations (version) VALUES ('99991231000000')")
                .execute(c)
                .map_err(crate::SqlError::from)
        })
        .await
        .expect("record a migration from the future");
    drop(store);
    for migrate in [true, false] {
        let options = StoreOptions { migrate, ..test_options() };
        match SqlStore::<B>::connect_with(&db.url, options).await {
            Err(StoreError::SchemaTooNew { found, supported }) => {
                assert_eq!(found, "99991231000000");
                assert!(supported < found, "supported {supported} must be older than {found}");
                let message = StoreError::SchemaTooNew { found, supported }.to_string();
                assert!(message.contains("newer than this build"), "clear message: {message}");
            }
            Err(other) => panic!("expected SchemaTooNew (migrate: {migrate}), got {other}"),
            Ok(_) => panic!("a database newer than the build was accepted (migrate: {migrate})"),
        }
    }
}

/// A row this build cannot read (a state or status another version wrote) fails only the
/// messages about it: in a batch of lifecycle events, its event is `Unreadable` and the others
/// are applied; in a batch of heartbeats, its node counts as offline before and every node is
/// recorded.
pub async fn an_unreadable_row_fails_only_its_own_message<B: TestBackend>() {
    use nexus_core::lifecycle::{ServerState, Trigger};
    let Some(store) = fresh_store::<B>().await else { return };
    let world = fixtures::World::seed(&store, 2).await;
    let odd = world.create_server(&store, &[0]).await;
    let fine = world.create_server(&store, &[1]).await;
    let other = fixtures::node("other");
    store.create_node(&other).await.expect("create node");
    let (odd_key, node_key) = (odd.id.to_string(), world.node.id.to_string());
    store
        .with_connection(move |c| {
            diesel::sql_query(format!("UPDATE servers SET state = 'warping' WHERE id = '{odd_key}'"))
                .execute(c)
                .and_then(|_| {
                    diesel::sql_query(format!("UPDATE nodes SET status = 'degraded' WHERE id = '{node_key}'"))
                        .execute(c)
                })
                .map_err(crate::SqlError::from)
        })
        .await
        .expect("write rows from another version");
    let node = world.node.id;
    let install =
        |server: ServerId| fixtures::event(server, ServerState::Requested, Trigger::InstallStarted, fixtures::ts(1));
    let outcomes = store.apply_node_events(&[(node, install(odd.id)), (node, install(fine.id))]).await.expect("batch");
    assert!(matches!(&outcomes[0], EventOutcome::Unreadable(why) if why.contains("warping")), "{:?}", outcomes[0]);
    assert!(
        matches!(&outcomes[1], EventOutcome::Applied(s) if s.state == ServerState::Installing),
        "{:?}",
        outcomes[1]
    );

    let mut recorded = store.record_heartbeats(&[node, other.id], fixtures::ts(5)).await.expect("heartbeats");
    recorded.sort_by_key(|r| r.node == other.id);
    assert_eq!(recorded.len(), 2, "every node recorded: {recorded:?}");
    assert_eq!(recorded[0].was, NodeStatus::Offline, "an unreadable status counts as offline");
    assert_eq!(store.get_node(node).await.expect("readable again").status, NodeStatus::Online);
}

/// The schema has a migration to undo: applying, reverting and re-applying works (the
/// `down.sql` files are kept honest).
pub async fn migrations_revert_cleanly<B: TestBackend>() {
    use diesel_migrations::MigrationHarness;
    let Some(db) = throwaway::<B>() else { return };
    let store = SqlStore::<B>::connect_with(&db.url, test_options()).await.expect("start");
    store
        .with_connection(|c| {
            c.revert_all_migrations(B::migrations()).map_err(|e| crate::SqlError::Migration(e.to_string()))?;
            c.run_pending_migrations(B::migrations()).map_err(|e| crate::SqlError::Migration(e.to_string()))?;
            Ok(())
        })
        .await
        .expect("revert and re-apply");
    store.create_user(&fixtures::user("again")).await.expect("usable after re-applying");
}

async fn applied_versions<B: Backend>(store: &SqlStore<B>) -> Vec<String> {
    use diesel_migrations::MigrationHarness;
    store
        .with_connection(|c| {
            let versions = c.applied_migrations().map_err(|e| crate::SqlError::Migration(e.to_string()))?;
            Ok(versions.iter().map(ToString::to_string).collect())
        })
        .await
        .expect("applied migrations")
}

/// Users the benchmark's servers are spread over: 50 servers each.
const SERVERS_PER_USER: usize = 50;
/// Rows per seeding transaction.
const SEED_CHUNK: usize = 5_000;

/// Seeds `count` servers (on 10 nodes, one allocation each, 50 per user) with multi-row
/// inserts; returns one of the users (who owns 50 of them). For benchmarks of what sits on
/// a store (the panel's API benchmark uses it too).
pub async fn seed_servers<B: Backend>(store: &SqlStore<B>, count: usize) -> User {
    let world = fixtures::World::seed(store, 0).await;
    let nodes: Vec<Node> = (0..10).map(|i| fixtures::node(&format!("bench-node-{i}"))).collect();
    for node in &nodes {
        store.create_node(node).await.expect("create node");
    }
    let users: Vec<User> =
        (0..count.div_ceil(SERVERS_PER_USER)).map(|i| fixtures::user(&format!("bench-{i}"))).collect();
    let batch = users.clone();
    store.with_connection(move |c| accounts::insert_users(c, &batch)).await.expect("seed users");
    let base = fixtures::ts(0);
    for start in (0..count).step_by(SEED_CHUNK) {
        let end = (start + SEED_CHUNK).min(count);
        let mut allocation_rows = Vec::with_capacity(end - start);
        let mut server_rows = Vec::with_capacity(end - start);
        for i in start..end {
            let node = &nodes[i % nodes.len()];
            let octets = u32::try_from(i).expect("index").to_be_bytes();
            let ip = IpAddr::V4(Ipv4Addr::new(10, octets[1], octets[2], octets[3]));
            let allocation =
                Allocation { id: AllocationId::new(), node: node.id, ip, alias: None, port: 25565, server: None };
            let owner = &users[i / SERVERS_PER_USER];
            let created_at = base + chrono::Duration::seconds(i64::try_from(i).expect("index"));
            let server = Server {
                created_at,
                name: format!("bench-{i}"),
                ..fixtures::server(owner, node, &world.egg, &[allocation.id])
            };
            let mut row = infra::AllocationRow::new(&allocation);
            row.server_id = Some(server.id.to_string());
            allocation_rows.push(row);
            server_rows.push(servers::ServerRow::new(&server).expect("server row"));
        }
        store
            .run_write(move |c| {
                infra::insert_allocation_rows(c, &allocation_rows)?;
                servers::insert_server_rows(c, &server_rows)
            })
            .await
            .expect("seed servers");
    }
    users[users.len() / 2].clone()
}

/// The store benchmark of backend `B` (under `cargo bench`; one quick pass of each under
/// `cargo test --all-targets`, on 1,000 instead of 100,000 servers):
///
/// * `list_50_of_one_user`: `list_servers` filtered by owner, first page of 50, among
///   100,000 servers;
/// * `insert_server`: `create_server` of a new server on a seeded node (allocation
///   prepared outside the timing), one call at a time.
pub fn bench<B: TestBackend>(c: &mut criterion::Criterion) {
    let full = std::env::args().any(|arg| arg == "--bench");
    let count = if full { 100_000 } else { 1_000 };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let Some(db) = throwaway::<B>() else { return };
    let store = runtime.block_on(SqlStore::<B>::connect_with(&db.url, test_options())).expect("connect");
    let started = Instant::now();
    let user = runtime.block_on(seed_servers(&store, count));
    let _ = writeln!(std::io::stderr(), "{}: seeded {count} servers in {:.1?}", B::NAME, started.elapsed());

    let mut group = c.benchmark_group(format!("store/{}", B::NAME));
    group.sample_size(20).measurement_time(Duration::from_secs(5));
    let filter = ServerFilter { owner: Some(user.id), ..ServerFilter::default() };
    group.bench_function(format!("list_50_of_one_user_among_{count}"), |b| {
        b.iter(|| {
            let page = runtime.block_on(store.list_servers(&filter, Page::first(50))).expect("list");
            assert_eq!(page.len(), SERVERS_PER_USER);
        });
    });

    let world = runtime.block_on(fixtures::World::seed(&store, 0));
    let mut next: u32 = 0;
    group.bench_function("insert_server", |b| {
        b.iter_custom(|iters| {
            let prepared: Vec<Allocation> = (0..iters)
                .map(|_| {
                    next += 1;
                    let [_, high, mid, low] = next.to_be_bytes();
                    fixtures::allocation(world.node.id, [10, 200 + (high & 31), mid, low], 30_000)
                })
                .collect();
            runtime.block_on(store.create_allocations(&prepared)).expect("allocations");
            let servers: Vec<Server> =
                prepared.iter().map(|a| fixtures::server(&world.user, &world.node, &world.egg, &[a.id])).collect();
            let started = Instant::now();
            for server in &servers {
                runtime.block_on(store.create_server(server)).expect("insert");
            }
            started.elapsed()
        });
    });
    group.finish();
}

/// Runs `future` to completion on a fresh multi-threaded runtime (for plain `#[test]`s).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// Generates the migration tests of a backend crate: second start is a no-op, a newer schema
/// is refused, the migrations revert and re-apply.
///
/// ```ignore
/// nexus_store_sql::migration_tests!(nexus_store_sqlite::Sqlite);
/// ```
#[macro_export]
macro_rules! migration_tests {
    ($backend:ty) => {
        #[test]
        fn second_start_is_a_no_op() {
            $crate::testing::block_on($crate::testing::second_start_is_a_no_op::<$backend>());
        }

        #[test]
        fn newer_schema_is_refused() {
            $crate::testing::block_on($crate::testing::newer_schema_is_refused::<$backend>());
        }

        #[test]
        fn migrations_revert_cleanly() {
            $crate::testing::block_on($crate::testing::migrations_revert_cleanly::<$backend>());
        }

        #[test]
        fn an_unreadable_row_fails_only_its_own_message() {
            $crate::testing::block_on($crate::testing::an_unreadable_row_fails_only_its_own_message::<$backend>());
        }
    };
}

/// The `main` of a backend crate's `benches/store.rs`: what `criterion_main!` expands to,
/// minus the undocumented `pub fn` that `criterion_group!` generates.
pub fn bench_main<B: TestBackend>() {
    let mut criterion = criterion::Criterion::default().configure_from_args();
    bench::<B>(&mut criterion);
    criterion.final_summary();
}
