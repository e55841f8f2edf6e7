//! [`TracingStore`]: a [`Store`] of your own, made by wrapping another one.
//!
//! Every repository call goes to the inner store unchanged; around it the wrapper opens a
//! `tracing` span named `store_call` (fields `method` and `transaction`), emits one `DEBUG`
//! event with the elapsed time and whether the call succeeded, and counts the call. Calls made
//! through a transaction from [`Store::begin`] are traced and counted the same way, under the
//! same method names, plus `begin`, `commit` and `rollback`.
//!
//! ```
//! use nexus_core::memory::MemoryStore;
//! use nexus_core::store::{Page, UserRepo};
//! use nexus_examples::tracing_store::TracingStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), nexus_core::store::StoreError> {
//! let store = TracingStore::new(MemoryStore::new());
//! store.list_users(Page::all()).await?;
//! assert_eq!(store.calls().get("list_users"), Some(&1));
//! # Ok(())
//! # }
//! ```
//!
//! The wrapper adds no rules of its own, so it passes the store conformance suite exactly when
//! the inner store does (`tests/custom_store.rs` runs it around `MemoryStore`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use nexus_core::ids::*;
use nexus_core::lifecycle::LifecycleEvent;
use nexus_core::model::*;
use nexus_core::store::*;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use tracing::Instrument;

/// A [`Store`] that traces and counts every call before handing it to the inner store `S`.
///
/// Each repository trait is implemented whenever `S` implements it; [`Store`] whenever `S` is
/// a store. Clones share the inner store's clone and the same call counts.
#[derive(Clone, Debug)]
pub struct TracingStore<S> {
    inner: S,
    calls: Arc<CallCounter>,
}

impl<S> TracingStore<S> {
    /// Wraps `inner`, with every count at zero.
    pub fn new(inner: S) -> Self {
        Self { inner, calls: Arc::default() }
    }

    /// The wrapped store. Calls made on it directly are neither traced nor counted.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner store.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// A snapshot of how often each method was called so far, by method name (`create_user`,
    /// `begin`, `commit`, ...), counting calls made through transactions too. Methods never
    /// called are absent.
    pub fn calls(&self) -> BTreeMap<&'static str, u64> {
        self.calls.snapshot()
    }

    /// Sets every count back to zero.
    pub fn reset_calls(&self) {
        self.calls.reset();
    }
}

/// Calls per method, shared by a store, its clones and its transactions.
#[derive(Debug, Default)]
struct CallCounter {
    counts: Mutex<BTreeMap<&'static str, u64>>,
}

impl CallCounter {
    fn record(&self, method: &'static str) {
        // A panic elsewhere while counting leaves a usable map: counts are only ever added.
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(method).or_insert(0);
        *count = count.saturating_add(1);
    }

    fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn reset(&self) {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// Counts `method`, then runs `call` inside a `store_call` span and logs how long it took.
    async fn traced<T>(
        &self,
        method: &'static str,
        transaction: bool,
        call: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        self.record(method);
        let span = tracing::debug_span!("store_call", method, transaction);
        async move {
            let started = Instant::now();
            let result = call.await;
            let elapsed = started.elapsed();
            match &result {
                Ok(_) => tracing::debug!(method, ?elapsed, "store call succeeded"),
                Err(error) => tracing::debug!(method, ?elapsed, %error, "store call failed"),
            }
            result
        }
        .instrument(span)
        .await
    }
}

/// A transaction of a [`TracingStore`]: the inner store's transaction, traced and counted
/// like the store itself.
struct TracingTransaction {
    inner: Box<dyn StoreTransaction>,
    calls: Arc<CallCounter>,
}

/// Implements a repository trait for [`TracingStore`] (when the inner store implements it) and
/// for [`TracingTransaction`], each method forwarding its arguments to the inner value's method
/// of the same name through [`CallCounter::traced`].
macro_rules! traced_repo {
    ($repo:ident {
        $( fn $method:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty; )*
    }) => {
        #[async_trait]
        impl<S: $repo> $repo for TracingStore<S> {
            $(
                async fn $method(&self $(, $arg: $ty)*) -> $ret {
                    self.calls.traced(stringify!($method), false, self.inner.$method($($arg),*)).await
                }
            )*
        }

        #[async_trait]
        impl $repo for TracingTransaction {
            $(
                async fn $method(&self $(, $arg: $ty)*) -> $ret {
                    self.calls.traced(stringify!($method), true, self.inner.$method($($arg),*)).await
                }
            )*
        }
    };
}

traced_repo!(UserRepo {
    fn create_user(&self, user: &User) -> StoreResult<()>;
    fn get_user(&self, id: UserId) -> StoreResult<User>;
    fn find_user_by_login(&self, login: &str) -> StoreResult<Option<User>>;
    fn list_users(&self, page: Page) -> StoreResult<Vec<User>>;
    fn update_user(&self, user: &User) -> StoreResult<()>;
    fn delete_user(&self, id: UserId) -> StoreResult<()>;
});

traced_repo!(LocationRepo {
    fn create_location(&self, location: &Location) -> StoreResult<()>;
    fn list_locations(&self) -> StoreResult<Vec<Location>>;
    fn update_location(&self, location: &Location) -> StoreResult<()>;
    fn delete_location(&self, id: LocationId) -> StoreResult<()>;
});

traced_repo!(NodeRepo {
    fn create_node(&self, node: &Node) -> StoreResult<()>;
    fn get_node(&self, id: NodeId) -> StoreResult<Node>;
    fn list_nodes(&self) -> StoreResult<Vec<Node>>;
    fn update_node(&self, node: &Node) -> StoreResult<()>;
    fn delete_node(&self, id: NodeId) -> StoreResult<()>;
    fn record_heartbeat(&self, id: NodeId, at: DateTime<Utc>) -> StoreResult<()>;
    fn record_heartbeats(&self, nodes: &[NodeId], at: DateTime<Utc>) -> StoreResult<Vec<HeartbeatRecorded>>;
    fn mark_stale_nodes_offline(&self, cutoff: DateTime<Utc>) -> StoreResult<Vec<NodeId>>;
    fn node_usage(&self) -> StoreResult<Vec<NodeUsage>>;
    fn lock_node_usage(&self, node: NodeId) -> StoreResult<NodeUsage>;
});

traced_repo!(AllocationRepo {
    fn create_allocations(&self, allocations: &[Allocation]) -> StoreResult<()>;
    fn get_allocation(&self, id: AllocationId) -> StoreResult<Allocation>;
    fn list_allocations(&self, node: NodeId) -> StoreResult<Vec<Allocation>>;
    fn claim_free_allocation(&self, node: NodeId, server: ServerId) -> StoreResult<Option<Allocation>>;
    fn delete_allocation(&self, id: AllocationId) -> StoreResult<()>;
});

traced_repo!(EggRepo {
    fn create_egg(&self, egg: &Egg) -> StoreResult<()>;
    fn get_egg(&self, id: EggId) -> StoreResult<Egg>;
    fn list_eggs(&self) -> StoreResult<Vec<Egg>>;
    fn update_egg(&self, egg: &Egg) -> StoreResult<()>;
    fn delete_egg(&self, id: EggId) -> StoreResult<()>;
});

traced_repo!(NestRepo {
    fn create_nest(&self, nest: &Nest) -> StoreResult<()>;
    fn get_nest(&self, id: NestId) -> StoreResult<Nest>;
    fn list_nests(&self) -> StoreResult<Vec<Nest>>;
    fn update_nest(&self, nest: &Nest) -> StoreResult<()>;
    fn delete_nest(&self, id: NestId) -> StoreResult<()>;
});

traced_repo!(ServerRepo {
    fn create_server(&self, server: &Server) -> StoreResult<()>;
    fn get_server(&self, id: ServerId) -> StoreResult<Server>;
    fn list_servers(&self, filter: &ServerFilter, page: Page) -> StoreResult<Vec<Server>>;
    fn update_server(&self, server: &Server) -> StoreResult<Server>;
    fn transition_server(&self, expected_version: u64, event: &LifecycleEvent) -> StoreResult<Server>;
    fn server_events(&self, id: ServerId, limit: u64) -> StoreResult<Vec<LifecycleEvent>>;
    fn apply_node_events(&self, events: &[(NodeId, LifecycleEvent)]) -> StoreResult<Vec<EventOutcome>>;
    fn delete_server(&self, id: ServerId) -> StoreResult<()>;
});

traced_repo!(ScheduleRepo {
    fn create_schedule(&self, schedule: &Schedule) -> StoreResult<()>;
    fn get_schedule(&self, id: ScheduleId) -> StoreResult<Schedule>;
    fn list_schedules(&self, server: ServerId) -> StoreResult<Vec<Schedule>>;
    fn update_schedule(&self, schedule: &Schedule) -> StoreResult<()>;
    fn delete_schedule(&self, id: ScheduleId) -> StoreResult<()>;
    fn due_schedules(&self, now: DateTime<Utc>) -> StoreResult<Vec<Schedule>>;
    fn claim_schedule_run(
        &self,
        id: ScheduleId,
        due: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
        ran_at: DateTime<Utc>,
    ) -> StoreResult<bool>;
});

traced_repo!(ApiKeyRepo {
    fn create_api_key(&self, key: &ApiKey) -> StoreResult<()>;
    fn find_api_key(&self, prefix: &str) -> StoreResult<Option<ApiKey>>;
    fn list_api_keys(&self, user: UserId) -> StoreResult<Vec<ApiKey>>;
    fn touch_api_key(&self, id: ApiKeyId, at: DateTime<Utc>) -> StoreResult<()>;
    fn delete_api_key(&self, id: ApiKeyId) -> StoreResult<()>;
});

traced_repo!(BackupRepo {
    fn create_backup(&self, backup: &Backup) -> StoreResult<()>;
    fn get_backup(&self, id: BackupId) -> StoreResult<Backup>;
    fn list_backups(&self, server: ServerId) -> StoreResult<Vec<Backup>>;
    fn update_backup(&self, backup: &Backup) -> StoreResult<()>;
    fn delete_backup(&self, id: BackupId) -> StoreResult<()>;
});

traced_repo!(SubuserRepo {
    fn put_subuser(&self, subuser: &Subuser) -> StoreResult<()>;
    fn get_subuser(&self, server: ServerId, user: UserId) -> StoreResult<Option<Subuser>>;
    fn list_subusers(&self, server: ServerId) -> StoreResult<Vec<Subuser>>;
    fn delete_subuser(&self, server: ServerId, user: UserId) -> StoreResult<()>;
});

traced_repo!(TotpRepo {
    fn put_totp(&self, totp: &UserTotp) -> StoreResult<()>;
    fn get_totp(&self, user: UserId) -> StoreResult<Option<UserTotp>>;
    fn delete_totp(&self, user: UserId) -> StoreResult<()>;
});

traced_repo!(RecordRefRepo {
    fn record_refs(&self, kind: RecordKind, keys: &[String]) -> StoreResult<Vec<RecordRef>>;
    fn find_record_refs(&self, kind: RecordKind, lookup: RefLookup<'_>) -> StoreResult<Vec<RecordRef>>;
    fn set_external_id(&self, kind: RecordKind, key: &str, external_id: Option<&str>) -> StoreResult<RecordRef>;
    fn set_record_extra(&self, kind: RecordKind, key: &str, extra: &std::collections::BTreeMap<String, String>) -> StoreResult<RecordRef>;
    fn forget_record_refs(&self, kind: RecordKind, keys: &[String]) -> StoreResult<()>;
});

traced_repo!(AuditRepo {
    fn append_audit(&self, event: &AuditEvent) -> StoreResult<()>;
    fn list_audit(&self, subject: Option<&AuditSubject>, page: Page) -> StoreResult<Vec<AuditEvent>>;
});

#[async_trait]
impl<S: Store> Store for TracingStore<S> {
    /// The inner store's backend name: tracing does not change where the data lives.
    fn backend(&self) -> &'static str {
        self.calls.record("backend");
        self.inner.backend()
    }

    async fn begin(&self) -> StoreResult<Box<dyn StoreTransaction>> {
        let inner = self.calls.traced("begin", false, self.inner.begin()).await?;
        Ok(Box::new(TracingTransaction { inner, calls: Arc::clone(&self.calls) }))
    }
}

#[async_trait]
impl StoreTransaction for TracingTransaction {
    async fn commit(self: Box<Self>) -> StoreResult<()> {
        let Self { inner, calls } = *self;
        calls.traced("commit", true, inner.commit()).await
    }

    async fn rollback(self: Box<Self>) -> StoreResult<()> {
        let Self { inner, calls } = *self;
        calls.traced("rollback", true, inner.rollback()).await
    }
}
