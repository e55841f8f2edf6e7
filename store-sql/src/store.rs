//! [`SqlStore`] and [`SqlTransaction`]: the async [`Store`] face over pooled, blocking diesel
//! connections.
//!
//! Every repository call runs on tokio's blocking pool (`spawn_blocking`) with one pooled
//! connection, inside one database transaction: a write transaction for writes (retried a few
//! times on a serialization failure or deadlock), a read-only snapshot for reads. Inside a
//! [`SqlTransaction`] each call is a savepoint of the held connection's transaction instead, so
//! a failed call leaves the transaction as it was (and usable, even on PostgreSQL).

use crate::backend::{self, Backend, Mode};
use crate::connection::AnyConnection;
use crate::error::{SqlError, SqlResult};
use crate::repo::{access, accounts, infra, refs, servers};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::Connection;
use diesel::connection::TransactionManager;
use diesel::r2d2::{ManageConnection, Pool, PooledConnection, R2D2Connection};
use nexus_core::ids::*;
use nexus_core::lifecycle::LifecycleEvent;
use nexus_core::model::*;
use nexus_core::store::*;
use std::any::Any;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a [`SqlStore`] connects.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Most pooled connections; `None`: the backend's default (16, SQLite 8).
    pub max_connections: Option<u32>,
    /// Longest wait for a free pooled connection (and for the first one at start).
    pub connect_timeout: Duration,
    /// Run the embedded migrations at start (the default). Without, the schema must already
    /// be current; it is still checked not to be newer than this build.
    pub migrate: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { max_connections: None, connect_timeout: Duration::from_secs(30), migrate: true }
    }
}

/// Opens connections of backend `B` for the pool.
struct Manager<B> {
    url: String,
    backend: PhantomData<fn() -> B>,
}

impl<B: Backend> ManageConnection for Manager<B> {
    type Connection = AnyConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, Self::Error> {
        B::establish(&self.url).map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), Self::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        // A connection still inside a transaction (a panic mid-call) must not be reused.
        std::thread::panicking() || conn.is_broken()
    }
}

type Pooled<B> = PooledConnection<Manager<B>>;

/// A [`Store`] on the SQL database of backend `B`: [`Postgres`](crate::backend::Postgres),
/// [`Mysql`](crate::backend::Mysql) or [`Sqlite`](crate::backend::Sqlite). The backend crates
/// name these `PostgresStore`, `MysqlStore` and `SqliteStore`.
///
/// Cloning is cheap and shares the connection pool.
pub struct SqlStore<B: Backend> {
    pool: Pool<Manager<B>>,
    /// Things that must live as long as the store (a temporary directory, a throwaway test
    /// database); dropped after the pool's handle.
    keep_alive: Vec<Arc<dyn Any + Send + Sync>>,
}

impl<B: Backend> Clone for SqlStore<B> {
    fn clone(&self) -> Self {
        Self { pool: self.pool.clone(), keep_alive: self.keep_alive.clone() }
    }
}

impl<B: Backend> std::fmt::Debug for SqlStore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore").field("backend", &B::NAME).field("pool", &self.pool.state()).finish()
    }
}

/// Runs blocking database work off the async threads.
async fn blocking<R: Send + 'static>(work: impl FnOnce() -> SqlResult<R> + Send + 'static) -> StoreResult<R> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(StoreError::from),
        Err(err) => Err(SqlError::Task(err.to_string()).into()),
    }
}

/// Attempts of a standalone write that hits a serialization failure or deadlock.
const WRITE_ATTEMPTS: u32 = 5;

/// Runs `f` in a fresh transaction of `mode` on `conn`: commit on success, roll back on error.
fn in_transaction<R>(
    conn: &mut AnyConnection,
    mode: Mode,
    f: &impl Fn(&mut AnyConnection) -> SqlResult<R>,
) -> SqlResult<R> {
    backend::begin(conn, mode)?;
    match f(conn) {
        Ok(value) => {
            <AnyConnection as Connection>::TransactionManager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(err) => {
            if let Err(rollback) = <AnyConnection as Connection>::TransactionManager::rollback_transaction(conn) {
                // The connection reports itself broken and the pool drops it.
                tracing::warn!(error = %rollback, "rollback failed after {err}");
            }
            Err(err)
        }
    }
}

impl<B: Backend> SqlStore<B> {
    /// Connects to `url` with [`StoreOptions::default`]: runs the embedded migrations (a no-op
    /// when the schema is current) and refuses a schema newer than this build with
    /// [`StoreError::SchemaTooNew`].
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(url, StoreOptions::default()).await
    }

    /// Connects to `url` with `options`.
    pub async fn connect_with(url: &str, options: StoreOptions) -> StoreResult<Self> {
        let manager = Manager::<B> { url: url.to_owned(), backend: PhantomData };
        blocking(move || {
            let pool = Pool::builder()
                .max_size(options.max_connections.unwrap_or(B::DEFAULT_POOL_SIZE).max(1))
                // Open connections on demand: a store for a small panel should not hold many.
                .min_idle(Some(1))
                .connection_timeout(options.connect_timeout)
                .test_on_check_out(false)
                .build(manager)?;
            let mut conn = pool.get()?;
            if options.migrate {
                crate::migrate::migrate::<B>(&mut conn)?;
            } else {
                crate::migrate::refuse_newer::<B>(&mut conn)?;
            }
            tracing::info!(backend = B::NAME, "store ready");
            Ok(Self { pool, keep_alive: Vec::new() })
        })
        .await
    }

    /// Keeps `value` alive as long as this store or a clone of it (a temporary directory
    /// holding an SQLite file, a guard dropping a throwaway database).
    pub fn keep_alive(mut self, value: impl Any + Send + Sync) -> Self {
        self.keep_alive.push(Arc::new(value));
        self
    }

    /// Runs `f` on a pooled connection inside one transaction of `mode`.
    async fn run<R: Send + 'static>(
        &self,
        mode: Mode,
        f: impl Fn(&mut AnyConnection) -> SqlResult<R> + Send + 'static,
    ) -> StoreResult<R> {
        let pool = self.pool.clone();
        blocking(move || {
            let mut conn = pool.get()?;
            let mut attempt = 1;
            loop {
                match in_transaction(&mut conn, mode, &f) {
                    Err(err) if mode == Mode::Write && attempt < WRITE_ATTEMPTS && err.is_retryable() => {
                        tracing::debug!(attempt, error = %err, "retrying a write transaction");
                        attempt += 1;
                    }
                    outcome => return outcome,
                }
            }
        })
        .await
    }

    /// Runs `f` in one write transaction (bulk loading in tests and benchmarks).
    #[cfg(feature = "testing")]
    pub(crate) async fn run_write<R: Send + 'static>(
        &self,
        f: impl Fn(&mut AnyConnection) -> SqlResult<R> + Send + 'static,
    ) -> StoreResult<R> {
        self.run(Mode::Write, f).await
    }

    /// Runs `f` with a pooled connection outside any transaction (bulk loading, tests).
    #[cfg(feature = "testing")]
    pub(crate) async fn with_connection<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut AnyConnection) -> SqlResult<R> + Send + 'static,
    ) -> StoreResult<R> {
        let pool = self.pool.clone();
        blocking(move || f(&mut *pool.get()?)).await
    }
}

/// A [`StoreTransaction`] holding one pooled connection for its whole life. Dropping it
/// without [`commit`](StoreTransaction::commit) rolls back (on the blocking pool, so drop is
/// cheap).
pub struct SqlTransaction<B: Backend> {
    /// `None` once committed or rolled back.
    conn: Arc<Mutex<Option<Pooled<B>>>>,
}

impl<B: Backend> std::fmt::Debug for SqlTransaction<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlTransaction").field("backend", &B::NAME).finish_non_exhaustive()
    }
}

fn finished() -> SqlError {
    StoreError::Transaction("the transaction was already committed or rolled back".into()).into()
}

fn poisoned<T>(_: T) -> SqlError {
    StoreError::Transaction("an earlier call of this transaction panicked".into()).into()
}

impl<B: Backend> SqlTransaction<B> {
    async fn run<R: Send + 'static>(
        &self,
        _mode: Mode,
        f: impl Fn(&mut AnyConnection) -> SqlResult<R> + Send + 'static,
    ) -> StoreResult<R> {
        let conn = Arc::clone(&self.conn);
        blocking(move || {
            let mut guard = conn.lock().map_err(poisoned)?;
            let conn = guard.as_mut().ok_or_else(finished)?;
            // A savepoint: a failed call is undone alone and the transaction stays usable.
            conn.transaction(|c| f(c))
        })
        .await
    }

    /// Takes the connection out and ends its transaction with `end`.
    async fn finish(&self, end: fn(&mut AnyConnection) -> diesel::QueryResult<()>) -> StoreResult<()> {
        let conn = Arc::clone(&self.conn);
        blocking(move || {
            let mut taken = conn.lock().map_err(poisoned)?.take().ok_or_else(finished)?;
            Ok(end(&mut taken)?)
        })
        .await
    }
}

impl<B: Backend> Drop for SqlTransaction<B> {
    fn drop(&mut self) {
        let conn = Arc::clone(&self.conn);
        let roll_back = move || {
            let taken = conn.lock().ok().and_then(|mut guard| guard.take());
            if let Some(mut taken) = taken {
                if let Err(err) = <AnyConnection as Connection>::TransactionManager::rollback_transaction(&mut taken) {
                    // The pool sees the connection still in a transaction and discards it.
                    tracing::warn!(error = %err, "rolling back a dropped transaction failed");
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(roll_back)),
            Err(_) => roll_back(),
        }
    }
}

#[async_trait]
impl<B: Backend> Store for SqlStore<B> {
    fn backend(&self) -> &'static str {
        B::NAME
    }

    async fn begin(&self) -> StoreResult<Box<dyn StoreTransaction>> {
        let pool = self.pool.clone();
        let conn = blocking(move || {
            let mut conn = pool.get()?;
            backend::begin(&mut conn, Mode::Write)?;
            Ok(conn)
        })
        .await?;
        Ok(Box::new(SqlTransaction::<B> { conn: Arc::new(Mutex::new(Some(conn))) }))
    }
}

#[async_trait]
impl<B: Backend> StoreTransaction for SqlTransaction<B> {
    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.finish(<AnyConnection as Connection>::TransactionManager::commit_transaction).await
    }

    async fn rollback(self: Box<Self>) -> StoreResult<()> {
        self.finish(<AnyConnection as Connection>::TransactionManager::rollback_transaction).await
    }
}

/// The repository traits for the store and its transactions alike: each method clones its
/// arguments into a closure and hands it to the type's `run` (so every rule lives in
/// [`repo`](crate::repo), once).
/// A [`RefLookup`] that owns its text, to move into a blocking closure.
enum OwnedLookup {
    Number(u64),
    External(String),
    Short(String),
}

impl From<RefLookup<'_>> for OwnedLookup {
    fn from(lookup: RefLookup<'_>) -> Self {
        match lookup {
            RefLookup::Number(n) => Self::Number(n),
            RefLookup::External(e) => Self::External(e.to_owned()),
            RefLookup::Short(s) => Self::Short(s.to_owned()),
        }
    }
}

impl OwnedLookup {
    fn borrow(&self) -> RefLookup<'_> {
        match self {
            Self::Number(n) => RefLookup::Number(*n),
            Self::External(e) => RefLookup::External(e),
            Self::Short(s) => RefLookup::Short(s),
        }
    }
}

macro_rules! repositories {
    ($ty:ident) => {
        #[async_trait]
        impl<B: Backend> UserRepo for $ty<B> {
            async fn create_user(&self, user: &User) -> StoreResult<()> {
                let user = user.clone();
                self.run(Mode::Write, move |c| accounts::create_user(c, &user)).await
            }
            async fn get_user(&self, id: UserId) -> StoreResult<User> {
                self.run(Mode::Read, move |c| accounts::get_user(c, id)).await
            }
            async fn find_user_by_login(&self, login: &str) -> StoreResult<Option<User>> {
                let login = login.to_owned();
                self.run(Mode::Read, move |c| accounts::find_user_by_login(c, &login)).await
            }
            async fn list_users(&self, page: Page) -> StoreResult<Vec<User>> {
                self.run(Mode::Read, move |c| accounts::list_users(c, page)).await
            }
            async fn update_user(&self, user: &User) -> StoreResult<()> {
                let user = user.clone();
                self.run(Mode::Write, move |c| accounts::update_user(c, &user)).await
            }
            async fn delete_user(&self, id: UserId) -> StoreResult<()> {
                self.run(Mode::Write, move |c| accounts::delete_user(c, id)).await
            }
        }

        #[async_trait]
        impl<B: Backend> LocationRepo for $ty<B> {
            async fn create_location(&self, location: &Location) -> StoreResult<()> {
                let location = location.clone();
                self.run(Mode::Write, move |c| infra::create_location(c, &location)).await
            }
            async fn list_locations(&self) -> StoreResult<Vec<Location>> {
                self.run(Mode::Read, infra::list_locations).await
            }
            async fn update_location(&self, location: &Location) -> StoreResult<()> {
                let location = location.clone();
                self.run(Mode::Write, move |c| infra::update_location(c, &location)).await
            }
            async fn delete_location(&self, id: LocationId) -> StoreResult<()> {
                self.run(Mode::Write, move |c| infra::delete_location(c, id)).await
            }
        }

        #[async_trait]
        impl<B: Backend> NodeRepo for $ty<B> {
            async fn create_node(&self, node: &Node) -> StoreResult<()> {
                let node = node.clone();
                self.run(Mode::Write, move |c| infra::create_node(c, &node)).await
            }
            async fn get_node(&self, id: NodeId) -> StoreResult<Node> {
                self.run(Mode::Read, move |c| infra::get_node(c, id)).await
            }
            async fn list_nodes(&self) -> StoreResult<Vec<Node>> {
                self.run(Mode::Read, infra::list_nodes).await
            }
            async fn update_node(&self, node: &Node) -> StoreResult<()> {
                let node = node.clone();
                self.run(Mode::Write, move |c| infra::update_node(c, &node)).await
            }
            async fn delete_node(&self, id: NodeId) -> StoreResult<()> {
                self.run(Mode::Write, move |c| infra::delete_node(c, id)).await
            }
            async fn record_heartbeat(&self, id: NodeId, at: DateTime<Utc>) -> StoreResult<()> {
                self.run(Mode::Write, move |c| infra::record_heartbeat(c, id, at)).await
            }
            async fn record_heartbeats(
                &self,
                nodes: &[NodeId],
                at: DateTime<Utc>,
            ) -> StoreResult<Vec<HeartbeatRecorded>> {
                let nodes = nodes.to_vec();
                self.run(Mode::Write, move |c| infra::record_heartbeats(c, &nodes, at)).await
            }
            async fn mark_stale_nodes_offline(&self, cutoff: DateTime<Utc>) -> StoreResult<Vec<NodeId>> {
                self.run(Mode::Write, move |c| infra::mark_stale_nodes_offline(c, cutoff)).await
            }
            async fn node_usage(&self) -> StoreResult<Vec<NodeUsage>> {
                self.run(Mode::Read, infra::node_usage).await
            }
            async fn lock_node_usage(&self, node: NodeId) -> StoreResult<NodeUsage> {
                self.run(Mode::Write, move |c| infra::lock_node_usage(c, node)).await
            }
        }

        #[async_trait]
        impl<B: Backend> AllocationRepo for $ty<B> {
            async fn create_allocations(&self, allocations: &[Allocation]) -> StoreResult<()> {
                let allocations = allocations.to_vec();
                self.run(Mode::Write, move |c| infra::create_allocations(c, &allocations)).await
            }
            async fn get_allocation(&self, id: AllocationId) -> StoreResult<Allocation> {
                self.run(Mode::Read, move |c| infra::get_allocation(c, id)).await
            }
            async fn list_allocations(&self, node: NodeId) -> StoreResult<Vec<Allocation>> {
                self.run(Mode::Read, move |c| infra::list_allocations(c, node)).await
            }
            async fn claim_free_allocation(&self, node: NodeId, server: ServerId) -> StoreResult<Option<Allocation>> {
                self.run(Mode::Write, move |c| infra::claim_free_allocation(c, node, server)).await
            }
            async fn delete_allocation(&self, id: AllocationId) -> StoreResult<()> {
                self.run(Mode::Write, move |c| infra::delete_allocation(c, id)).await
            }
        }

        #[async_trait]
        impl<B: Backend> NestRepo for $ty<B> {
            async fn create_nest(&self, nest: &Nest) -> StoreResult<()> {
                let nest = nest.clone();
                self.run(Mode::Write, move |c| infra::create_nest(c, &nest)).await
            }
            async fn get_nest(&self, id: NestId) -> StoreResult<Nest> {
                self.run(Mode::Read, move |c| infra::get_nest(c, id)).await
            }
            async fn list_nests(&self) -> StoreResult<Vec<Nest>> {
                self.run(Mode::Read, infra::list_nests).await
            }
            async fn update_nest(&self, nest: &Nest) -> StoreResult<()> {
                let nest = nest.clone();
                self.run(Mode::Write, move |c| infra::update_nest(c, &nest)).await
            }
            async fn delete_nest(&self, id: NestId) -> StoreResult<()> {
                self.run(Mode::Write, move |c| infra::delete_nest(c, id)).await
            }
        }

        #[async_trait]
        impl<B: Backend> EggRepo for $ty<B> {
            async fn create_egg(&self, egg: &Egg) -> StoreResult<()> {
                let egg = egg.clone();
                self.run(Mode::Write, move |c| infra::create_egg(c, &egg)).await
            }
            async fn get_egg(&self, id: EggId) -> StoreResult<Egg> {
                self.run(Mode::Read, move |c| infra::get_egg(c, id)).await
            }
            async fn list_eggs(&self) -> StoreResult<Vec<Egg>> {
                self.run(Mode::Read, infra::list_eggs).await
            }
            async fn update_egg(&self, egg: &Egg) -> StoreResult<()> {
                let egg = egg.clone();
                self.run(Mode::Write, move |c| infra::update_egg(c, &egg)).await
            }
            async fn delete_egg(&self, id: EggId) -> StoreResult<()> {
                self.run(Mode::Write, move |c| infra::delete_egg(c, id)).await
            }
        }

        #[async_trait]
        impl<B: Backend> ServerRepo for $ty<B> {
            async fn create_server(&self, server: &Server) -> StoreResult<()> {
                let server = server.clone();
                self.run(Mode::Write, move |c| servers::create_server(c, &server)).await
            }
            async fn get_server(&self, id: ServerId) -> StoreResult<Server> {
                self.run(Mode::Read, move |c| servers::get_server(c, id)).await
            }
            async fn list_servers(&self, filter: &ServerFilter, page: Page) -> StoreResult<Vec<Server>> {
                let filter = filter.clone();
                self.run(Mode::Read, move |c| servers::list_servers(c, &filter, page)).await
            }
            async fn update_server(&self, server: &Server) -> StoreResult<Server> {
                let server = server.clone();
                self.run(Mode::Write, move |c| servers::update_server(c, &server)).await
            }
            async fn transition_server(&self, expected_version: u64, event: &LifecycleEvent) -> StoreResult<Server> {
                let event = event.clone();
                self.run(Mode::Write, move |c| servers::transition_server(c, expected_version, &event)).await
            }
            async fn server_events(&self, id: ServerId, limit: u64) -> StoreResult<Vec<LifecycleEvent>> {
                self.run(Mode::Read, move |c| servers::server_events(c, id, limit)).await
            }
            async fn apply_node_events(&self, events: &[(NodeId, LifecycleEvent)]) -> StoreResult<Vec<EventOutcome>> {
                let events = events.to_vec();
                self.run(Mode::Write, move |c| servers::apply_node_events(c, &events)).await
            }
            async fn delete_server(&self, id: ServerId) -> StoreResult<()> {
                self.run(Mode::Write, move |c| servers::delete_server(c, id)).await
            }
        }

        #[async_trait]
        impl<B: Backend> ScheduleRepo for $ty<B> {
            async fn create_schedule(&self, schedule: &Schedule) -> StoreResult<()> {
                let schedule = schedule.clone();
                self.run(Mode::Write, move |c| servers::create_schedule(c, &schedule)).await
            }
            async fn get_schedule(&self, id: ScheduleId) -> StoreResult<Schedule> {
                self.run(Mode::Read, move |c| servers::get_schedule(c, id)).await
            }
            async fn list_schedules(&self, server: ServerId) -> StoreResult<Vec<Schedule>> {
                self.run(Mode::Read, move |c| servers::list_schedules(c, server)).await
            }
            async fn update_schedule(&self, schedule: &Schedule) -> StoreResult<()> {
                let schedule = schedule.clone();
                self.run(Mode::Write, move |c| servers::update_schedule(c, &schedule)).await
            }
            async fn delete_schedule(&self, id: ScheduleId) -> StoreResult<()> {
                self.run(Mode::Write, move |c| servers::delete_schedule(c, id)).await
            }
            async fn due_schedules(&self, now: DateTime<Utc>) -> StoreResult<Vec<Schedule>> {
                self.run(Mode::Read, move |c| servers::due_schedules(c, now)).await
            }
            async fn claim_schedule_run(
                &self,
                id: ScheduleId,
                due: DateTime<Utc>,
                next: Option<DateTime<Utc>>,
                ran_at: DateTime<Utc>,
            ) -> StoreResult<bool> {
                self.run(Mode::Write, move |c| servers::claim_schedule_run(c, id, due, next, ran_at)).await
            }
        }

        #[async_trait]
        impl<B: Backend> SubuserRepo for $ty<B> {
            async fn put_subuser(&self, subuser: &Subuser) -> StoreResult<()> {
                let subuser = subuser.clone();
                self.run(Mode::Write, move |c| access::put_subuser(c, &subuser)).await
            }
            async fn get_subuser(&self, server: ServerId, user: UserId) -> StoreResult<Option<Subuser>> {
                self.run(Mode::Read, move |c| access::get_subuser(c, server, user)).await
            }
            async fn list_subusers(&self, server: ServerId) -> StoreResult<Vec<Subuser>> {
                self.run(Mode::Read, move |c| access::list_subusers(c, server)).await
            }
            async fn delete_subuser(&self, server: ServerId, user: UserId) -> StoreResult<()> {
                self.run(Mode::Write, move |c| access::delete_subuser(c, server, user)).await
            }
        }

        #[async_trait]
        impl<B: Backend> TotpRepo for $ty<B> {
            async fn put_totp(&self, totp: &UserTotp) -> StoreResult<()> {
                let totp = totp.clone();
                self.run(Mode::Write, move |c| access::put_totp(c, &totp)).await
            }
            async fn get_totp(&self, user: UserId) -> StoreResult<Option<UserTotp>> {
                self.run(Mode::Read, move |c| access::get_totp(c, user)).await
            }
            async fn delete_totp(&self, user: UserId) -> StoreResult<()> {
                self.run(Mode::Write, move |c| access::delete_totp(c, user)).await
            }
        }

        #[async_trait]
        impl<B: Backend> RecordRefRepo for $ty<B> {
            async fn record_refs(&self, kind: RecordKind, keys: &[String]) -> StoreResult<Vec<RecordRef>> {
                let wanted = keys.to_vec();
                // Most calls name records numbered before: a read answers them without the
                // counter's lock.
                if let Some(known) = self.run(Mode::Read, move |c| refs::numbered(c, kind, &wanted)).await? {
                    return Ok(known);
                }
                let keys = keys.to_vec();
                self.run(Mode::Write, move |c| refs::record_refs(c, kind, &keys)).await
            }
            async fn find_record_refs(&self, kind: RecordKind, lookup: RefLookup<'_>) -> StoreResult<Vec<RecordRef>> {
                let lookup = OwnedLookup::from(lookup);
                self.run(Mode::Read, move |c| refs::find_record_refs(c, kind, lookup.borrow())).await
            }
            async fn set_external_id(
                &self,
                kind: RecordKind,
                key: &str,
                external_id: Option<&str>,
            ) -> StoreResult<RecordRef> {
                let (key, external_id) = (key.to_owned(), external_id.map(str::to_owned));
                self.run(Mode::Write, move |c| refs::set_external_id(c, kind, &key, external_id.as_deref())).await
            }
            async fn set_record_extra(
                &self,
                kind: RecordKind,
                key: &str,
                extra: &std::collections::BTreeMap<String, String>,
            ) -> StoreResult<RecordRef> {
                let (key, extra) = (key.to_owned(), extra.clone());
                self.run(Mode::Write, move |c| refs::set_record_extra(c, kind, &key, &extra)).await
            }
            async fn forget_record_refs(&self, kind: RecordKind, keys: &[String]) -> StoreResult<()> {
                let keys = keys.to_vec();
                self.run(Mode::Write, move |c| refs::forget_record_refs(c, kind, &keys)).await
            }
        }

        #[async_trait]
        impl<B: Backend> ApiKeyRepo for $ty<B> {
            async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()> {
                let key = key.clone();
                self.run(Mode::Write, move |c| accounts::create_api_key(c, &key)).await
            }
            async fn find_api_key(&self, prefix: &str) -> StoreResult<Option<ApiKey>> {
                let prefix = prefix.to_owned();
                self.run(Mode::Read, move |c| accounts::find_api_key(c, &prefix)).await
            }
            async fn list_api_keys(&self, user: UserId) -> StoreResult<Vec<ApiKey>> {
                self.run(Mode::Read, move |c| accounts::list_api_keys(c, user)).await
            }
            async fn touch_api_key(&self, id: ApiKeyId, at: DateTime<Utc>) -> StoreResult<()> {
                self.run(Mode::Write, move |c| accounts::touch_api_key(c, id, at)).await
            }
            async fn delete_api_key(&self, id: ApiKeyId) -> StoreResult<()> {
                self.run(Mode::Write, move |c| accounts::delete_api_key(c, id)).await
            }
        }

        #[async_trait]
        impl<B: Backend> BackupRepo for $ty<B> {
            async fn create_backup(&self, backup: &Backup) -> StoreResult<()> {
                let backup = backup.clone();
                self.run(Mode::Write, move |c| servers::create_backup(c, &backup)).await
            }
            async fn get_backup(&self, id: BackupId) -> StoreResult<Backup> {
                self.run(Mode::Read, move |c| servers::get_backup(c, id)).await
            }
            async fn list_backups(&self, server: ServerId) -> StoreResult<Vec<Backup>> {
                self.run(Mode::Read, move |c| servers::list_backups(c, server)).await
            }
            async fn update_backup(&self, backup: &Backup) -> StoreResult<()> {
                let backup = backup.clone();
                self.run(Mode::Write, move |c| servers::update_backup(c, &backup)).await
            }
            async fn delete_backup(&self, id: BackupId) -> StoreResult<()> {
                self.run(Mode::Write, move |c| servers::delete_backup(c, id)).await
            }
        }

        #[async_trait]
        impl<B: Backend> AuditRepo for $ty<B> {
            async fn append_audit(&self, event: &AuditEvent) -> StoreResult<()> {
                let event = event.clone();
                self.run(Mode::Write, move |c| accounts::append_audit(c, &event)).await
            }
            async fn list_audit(&self, subject: Option<&AuditSubject>, page: Page) -> StoreResult<Vec<AuditEvent>> {
                let subject = subject.cloned();
                self.run(Mode::Read, move |c| accounts::list_audit(c, subject.as_ref(), page)).await
            }
        }
    };
}

repositories!(SqlStore);
repositories!(SqlTransaction);
