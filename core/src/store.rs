//! Persistence of the control plane.
//!
//! One small repository trait per aggregate; [`Repositories`] bundles them; a [`Store`] is
//! repositories (each call atomic on its own) plus [`Store::begin`] for a
//! [`StoreTransaction`] spanning several calls. Implemented by `nexus-store-postgres`,
//! `-mysql`, `-sqlite` and by `MemoryStore` (feature `memory`).

use crate::ids::*;
use crate::lifecycle::{LifecycleEvent, ServerState, Trigger};
use crate::model::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Failures of a store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No such record.
    #[error("{entity} `{id}` not found")]
    NotFound {
        /// Kind of record.
        entity: &'static str,
        /// Its key.
        id: String,
    },
    /// A uniqueness rule was violated (same username, same `ip:port` on a node, ...).
    #[error("{entity} already exists: {detail}")]
    Duplicate {
        /// Kind of record.
        entity: &'static str,
        /// Which value collided.
        detail: String,
    },
    /// Optimistic concurrency: the server changed since it was read.
    #[error("server `{server}` was modified concurrently (expected version {expected}, found {actual})")]
    VersionConflict {
        /// The server.
        server: ServerId,
        /// Version the writer read.
        expected: u64,
        /// Version in the store.
        actual: u64,
    },
    /// An allocation is used by another server or belongs to another node.
    #[error("allocation `{allocation}` is not available: {reason}")]
    AllocationUnavailable {
        /// The allocation.
        allocation: AllocationId,
        /// Why.
        reason: String,
    },
    /// The record is still referenced (a user owning servers, a node with servers, a locked
    /// backup, ...) and cannot be deleted.
    #[error("{entity} `{id}` is in use: {reason}")]
    InUse {
        /// Kind of record.
        entity: &'static str,
        /// Its key.
        id: String,
        /// What still refers to it.
        reason: String,
    },
    /// A lifecycle event does not apply: the server is not in the event's `from` state, or the
    /// lifecycle table does not allow `from --trigger--> to`.
    #[error("server `{server}` is {actual:?}; cannot apply {trigger:?} from {from:?} to {to:?}")]
    StateMismatch {
        /// The server.
        server: ServerId,
        /// Its stored state.
        actual: ServerState,
        /// The event's `from`.
        from: ServerState,
        /// The event's trigger.
        trigger: Trigger,
        /// The event's `to`.
        to: ServerState,
    },
    /// A reference to a missing or unsuitable record.
    #[error("invalid reference: {0}")]
    InvalidReference(String),
    /// The schema is newer than this binary understands.
    #[error("database schema version {found} is newer than this build supports ({supported}); upgrade Nexus")]
    SchemaTooNew {
        /// Version found in the database.
        found: String,
        /// Newest version this build knows.
        supported: String,
    },
    /// The transaction was already finished, or the backend aborted it.
    #[error("transaction aborted: {0}")]
    Transaction(String),
    /// The backend failed (connection, SQL, I/O).
    #[error("store backend error: {0}")]
    Backend(String),
}

impl StoreError {
    /// Shorthand for [`StoreError::NotFound`].
    pub fn not_found(entity: &'static str, id: impl ToString) -> Self {
        Self::NotFound { entity, id: id.to_string() }
    }
}

/// Result of store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// A page of a listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// Rows to skip.
    pub offset: u64,
    /// Rows to return at most.
    pub limit: u64,
}

impl Page {
    /// The first `limit` rows.
    pub fn first(limit: u64) -> Self {
        Self { offset: 0, limit }
    }

    /// Everything (for small tables and tests).
    pub fn all() -> Self {
        Self { offset: 0, limit: u64::MAX }
    }
}

/// Which servers to list. Empty fields do not filter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerFilter {
    /// Owned by this user.
    pub owner: Option<UserId>,
    /// Placed on this node.
    pub node: Option<NodeId>,
    /// Created from this egg.
    pub egg: Option<EggId>,
    /// Owned by this user or shared with them as a subuser.
    #[serde(default)]
    pub member: Option<UserId>,
    /// The order of the list.
    #[serde(default)]
    pub order: ServerOrder,
}

/// How a server list is ordered; ties are broken by id, so pages never overlap. Names sort as
/// the database collates them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerOrder {
    /// Oldest first.
    #[default]
    CreatedAt,
    /// Newest first.
    CreatedAtDesc,
    /// By name, A to Z.
    Name,
    /// By name, Z to A.
    NameDesc,
}

/// Resources booked on a node by its servers, for placement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeUsage {
    /// The node.
    pub node: Option<NodeId>,
    /// Servers placed on it.
    pub servers: u64,
    /// Sum of memory limits, MiB.
    pub memory_mb: u64,
    /// Sum of disk limits, MiB.
    pub disk_mb: u64,
    /// Sum of CPU limits, percent.
    pub cpu_percent: u64,
    /// Allocations not used by any server.
    pub free_allocations: u64,
}

/// Users.
#[async_trait]
pub trait UserRepo: Send + Sync {
    /// Inserts; username and e-mail are unique.
    async fn create_user(&self, user: &User) -> StoreResult<()>;
    /// By id.
    async fn get_user(&self, id: UserId) -> StoreResult<User>;
    /// By username or e-mail, case-insensitively.
    async fn find_user_by_login(&self, login: &str) -> StoreResult<Option<User>>;
    /// Ordered by username.
    async fn list_users(&self, page: Page) -> StoreResult<Vec<User>>;
    /// Replaces every field but the id.
    async fn update_user(&self, user: &User) -> StoreResult<()>;
    /// Removes; fails while the user owns servers.
    async fn delete_user(&self, id: UserId) -> StoreResult<()>;
}

/// Locations.
#[async_trait]
pub trait LocationRepo: Send + Sync {
    /// Inserts; the short code is unique.
    async fn create_location(&self, location: &Location) -> StoreResult<()>;
    /// Ordered by short code.
    async fn list_locations(&self) -> StoreResult<Vec<Location>>;
    /// Replaces the short code and description; `NotFound` for an unknown location, the
    /// short code still unique.
    async fn update_location(&self, location: &Location) -> StoreResult<()>;
    /// Removes; fails while nodes use it.
    async fn delete_location(&self, id: LocationId) -> StoreResult<()>;
}

/// What [`NodeRepo::record_heartbeats`] found of a node before it recorded the heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HeartbeatRecorded {
    /// The node.
    pub node: NodeId,
    /// Its status before this heartbeat.
    pub was: NodeStatus,
    /// It had never sent a heartbeat before.
    pub first: bool,
}

impl HeartbeatRecorded {
    /// `node` was `was`; `first`: it had never sent a heartbeat.
    pub fn new(node: NodeId, was: NodeStatus, first: bool) -> Self {
        Self { node, was, first }
    }

    /// What `node` (as stored before the heartbeat) was.
    pub fn of(node: &Node) -> Self {
        Self::new(node.id, node.status, node.last_heartbeat.is_none())
    }
}

/// How one event of [`ServerRepo::apply_node_events`] went.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum EventOutcome {
    /// Applied; the server after it.
    Applied(Box<Server>),
    /// No such server: nothing changed.
    UnknownServer,
    /// Not applied, the server as stored: it is on another node, or not in the event's
    /// `from` state, or the event is not a valid transition ([`event_applies`]).
    Refused(Box<Server>),
    /// Not applied: the server kept changing under the event (other writers won every
    /// attempt). Delivering the event again decides it on what is stored then.
    Contended,
    /// Not applied: the stored server could not be read (a row another version of the
    /// software wrote, say); why. The other events of the batch are not affected.
    Unreadable(String),
}

/// Whether `sender` may move `server` (as stored) by `event`: the server is placed on
/// `sender`, is in the event's `from` state, and `from` goes to `to` by the event's trigger.
/// What [`ServerRepo::apply_node_events`] checks, in every backend.
pub fn event_applies(server: &Server, sender: NodeId, event: &LifecycleEvent) -> bool {
    server.id == event.server
        && server.node == sender
        && server.state == event.from
        && crate::lifecycle::next_state(event.from, event.trigger) == Some(event.to)
}

/// Reads of one server before [`ServerRepo::apply_node_events`]'s default gives up on a
/// server that keeps changing between its read and its write.
const EVENT_ATTEMPTS: usize = 5;

/// Nodes.
#[async_trait]
pub trait NodeRepo: Send + Sync {
    /// Inserts; the name is unique.
    async fn create_node(&self, node: &Node) -> StoreResult<()>;
    /// By id.
    async fn get_node(&self, id: NodeId) -> StoreResult<Node>;
    /// Ordered by name.
    async fn list_nodes(&self) -> StoreResult<Vec<Node>>;
    /// Replaces every field but the id.
    async fn update_node(&self, node: &Node) -> StoreResult<()>;
    /// Removes; fails while servers are placed on it.
    async fn delete_node(&self, id: NodeId) -> StoreResult<()>;
    /// Records a heartbeat and marks the node online.
    async fn record_heartbeat(&self, id: NodeId, at: DateTime<Utc>) -> StoreResult<()>;
    /// Records a heartbeat at `at` of every node of `nodes` and marks them online, in one
    /// transaction where the backend has them (a panel taking thousands of heartbeats a second
    /// writes them a batch at a time). Returns, for each node that exists, what it was before
    /// (unknown nodes are left out, in no particular order).
    ///
    /// The default calls [`get_node`](Self::get_node) and
    /// [`record_heartbeat`](Self::record_heartbeat) per node; on a failure, some of the
    /// heartbeats may have been recorded.
    async fn record_heartbeats(&self, nodes: &[NodeId], at: DateTime<Utc>) -> StoreResult<Vec<HeartbeatRecorded>> {
        let mut recorded = Vec::with_capacity(nodes.len());
        let mut seen = std::collections::HashSet::with_capacity(nodes.len());
        for &id in nodes.iter().filter(|id| seen.insert(**id)) {
            let before = match self.get_node(id).await {
                Ok(node) => node,
                Err(StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            match self.record_heartbeat(id, at).await {
                Ok(()) => recorded.push(HeartbeatRecorded::of(&before)),
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(recorded)
    }
    /// Marks online nodes whose last heartbeat is older than `cutoff` offline; returns them.
    async fn mark_stale_nodes_offline(&self, cutoff: DateTime<Utc>) -> StoreResult<Vec<NodeId>>;
    /// Booked resources per node, for placement.
    async fn node_usage(&self) -> StoreResult<Vec<NodeUsage>>;
    /// The booked resources of one node (`NotFound` for an unknown node). Inside a
    /// [`StoreTransaction`] the node stays locked until the transaction ends, where the
    /// backend locks rows: creates that check a node's room and then book it, each in a
    /// transaction, do so one at a time per node, also across panel processes.
    ///
    /// The default reads [`node_usage`](Self::node_usage) (all nodes) and locks nothing.
    async fn lock_node_usage(&self, node: NodeId) -> StoreResult<NodeUsage> {
        self.node_usage()
            .await?
            .into_iter()
            .find(|usage| usage.node == Some(node))
            .ok_or_else(|| StoreError::not_found("node", node))
    }
}

/// Allocations (`ip:port` on a node).
#[async_trait]
pub trait AllocationRepo: Send + Sync {
    /// Inserts all or none; `ip:port` is unique per node.
    async fn create_allocations(&self, allocations: &[Allocation]) -> StoreResult<()>;
    /// By id.
    async fn get_allocation(&self, id: AllocationId) -> StoreResult<Allocation>;
    /// A node's allocations ordered by ip, port.
    async fn list_allocations(&self, node: NodeId) -> StoreResult<Vec<Allocation>>;
    /// Atomically assigns a free allocation of `node` to `server` (lowest ip, port first);
    /// `None` if the node has none free. Safe under concurrent callers.
    async fn claim_free_allocation(&self, node: NodeId, server: ServerId) -> StoreResult<Option<Allocation>>;
    /// Removes an unassigned allocation.
    async fn delete_allocation(&self, id: AllocationId) -> StoreResult<()>;
}

/// Eggs.
#[async_trait]
pub trait EggRepo: Send + Sync {
    /// Inserts.
    async fn create_egg(&self, egg: &Egg) -> StoreResult<()>;
    /// By id.
    async fn get_egg(&self, id: EggId) -> StoreResult<Egg>;
    /// Ordered by name.
    async fn list_eggs(&self) -> StoreResult<Vec<Egg>>;
    /// Replaces every field but the id.
    async fn update_egg(&self, egg: &Egg) -> StoreResult<()>;
    /// Removes; fails while servers use it.
    async fn delete_egg(&self, id: EggId) -> StoreResult<()>;
}

/// Nests: named groups of eggs.
#[async_trait]
pub trait NestRepo: Send + Sync {
    /// Inserts; the name is unique.
    async fn create_nest(&self, nest: &Nest) -> StoreResult<()>;
    /// By id.
    async fn get_nest(&self, id: NestId) -> StoreResult<Nest>;
    /// Ordered by name.
    async fn list_nests(&self) -> StoreResult<Vec<Nest>>;
    /// Replaces name and description; the name stays unique.
    async fn update_nest(&self, nest: &Nest) -> StoreResult<()>;
    /// Removes; fails while eggs are in it.
    async fn delete_nest(&self, id: NestId) -> StoreResult<()>;
}

/// Servers and their lifecycle events.
#[async_trait]
pub trait ServerRepo: Send + Sync {
    /// Inserts and assigns the server's allocations in one step; fails with
    /// [`StoreError::AllocationUnavailable`] if any is taken or on another node.
    async fn create_server(&self, server: &Server) -> StoreResult<()>;
    /// By id.
    async fn get_server(&self, id: ServerId) -> StoreResult<Server>;
    /// Ordered by creation time, then id.
    async fn list_servers(&self, filter: &ServerFilter, page: Page) -> StoreResult<Vec<Server>>;
    /// Writes `server` if the stored version equals `server.version`; returns it with the
    /// version bumped. Allocations are not changed here.
    async fn update_server(&self, server: &Server) -> StoreResult<Server>;
    /// Applies a lifecycle event if the stored version is `expected_version`: sets the state,
    /// bumps the version and appends the event, atomically.
    async fn transition_server(&self, expected_version: u64, event: &LifecycleEvent) -> StoreResult<Server>;
    /// The newest `limit` events of a server, newest first.
    async fn server_events(&self, id: ServerId, limit: u64) -> StoreResult<Vec<LifecycleEvent>>;
    /// Applies lifecycle events reported by nodes, in the order given, in one transaction
    /// where the backend has them: each `(sender, event)` whose server is placed on `sender`,
    /// is in the event's `from` state and moves by a valid transition ([`event_applies`]) is
    /// applied as [`transition_server`](Self::transition_server) applies it (state set,
    /// version bumped, event appended); the others change nothing. An event sees the ones
    /// before it in the batch, so two events of one server may follow each other. One outcome
    /// per event, in order; a server that cannot be read or keeps changing fails its own
    /// events only ([`EventOutcome::Unreadable`], [`EventOutcome::Contended`]). If the store
    /// fails as a whole, the caller cannot tell which events were
    /// applied (a transactional backend applies none; delivering the batch again finds the
    /// applied ones in the servers' histories).
    ///
    /// The default reads and transitions one event at a time (re-reading a server that changed
    /// in between); it is not atomic.
    async fn apply_node_events(&self, events: &[(NodeId, LifecycleEvent)]) -> StoreResult<Vec<EventOutcome>> {
        let mut outcomes = Vec::with_capacity(events.len());
        'events: for (sender, event) in events {
            for attempt in 1..=EVENT_ATTEMPTS {
                let server = match self.get_server(event.server).await {
                    Ok(server) => server,
                    Err(StoreError::NotFound { .. }) => {
                        outcomes.push(EventOutcome::UnknownServer);
                        continue 'events;
                    }
                    Err(e) => return Err(e),
                };
                if !event_applies(&server, *sender, event) {
                    outcomes.push(EventOutcome::Refused(Box::new(server)));
                    continue 'events;
                }
                match self.transition_server(server.version, event).await {
                    Ok(server) => {
                        outcomes.push(EventOutcome::Applied(Box::new(server)));
                        continue 'events;
                    }
                    // Changed between the read and the write: read it again.
                    Err(StoreError::VersionConflict { .. } | StoreError::StateMismatch { .. }) => {
                        if attempt == EVENT_ATTEMPTS {
                            outcomes.push(EventOutcome::Contended);
                            continue 'events;
                        }
                    }
                    Err(StoreError::NotFound { .. }) => {
                        outcomes.push(EventOutcome::UnknownServer);
                        continue 'events;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(outcomes)
    }
    /// Removes the server, its events, schedules and backups, and frees its allocations.
    async fn delete_server(&self, id: ServerId) -> StoreResult<()>;
}

/// Schedules with their tasks.
#[async_trait]
pub trait ScheduleRepo: Send + Sync {
    /// Inserts.
    async fn create_schedule(&self, schedule: &Schedule) -> StoreResult<()>;
    /// By id.
    async fn get_schedule(&self, id: ScheduleId) -> StoreResult<Schedule>;
    /// A server's schedules by name.
    async fn list_schedules(&self, server: ServerId) -> StoreResult<Vec<Schedule>>;
    /// Replaces every field but the id.
    async fn update_schedule(&self, schedule: &Schedule) -> StoreResult<()>;
    /// Removes.
    async fn delete_schedule(&self, id: ScheduleId) -> StoreResult<()>;
    /// Enabled schedules with `next_run_at <= now`, soonest first.
    async fn due_schedules(&self, now: DateTime<Utc>) -> StoreResult<Vec<Schedule>>;
    /// Claims the run of schedule `id` that was due at `due`: only if the schedule is enabled
    /// and its `next_run_at` is still exactly `due`, sets `last_run_at = ran_at` and
    /// `next_run_at = next` and answers `true`; otherwise changes nothing and answers
    /// `false`. Atomic, so when several panel processes see the same due schedule exactly
    /// one of them runs it. `NotFound` for an unknown schedule.
    async fn claim_schedule_run(
        &self,
        id: ScheduleId,
        due: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
        ran_at: DateTime<Utc>,
    ) -> StoreResult<bool>;
}

/// Numbers, short keys and external ids of records ([`RecordRef`]), for APIs that name
/// records by integer (Pterodactyl's).
#[async_trait]
pub trait RecordRefRepo: Send + Sync {
    /// The refs of `keys` (records of `kind`), in the order given, numbering the keys that
    /// have none yet in that order. Keys longer than [`MAX_RECORD_KEY_BYTES`] or empty are
    /// `InvalidReference`. Whether the records exist is not checked: callers pass keys of
    /// records they have just read.
    async fn record_refs(&self, kind: RecordKind, keys: &[String]) -> StoreResult<Vec<RecordRef>>;
    /// The refs matching `lookup` (at most two for [`RefLookup::Short`], enough to tell an
    /// ambiguous short key; at most one otherwise).
    async fn find_record_refs(&self, kind: RecordKind, lookup: RefLookup<'_>) -> StoreResult<Vec<RecordRef>>;
    /// Sets or clears the external id of `key` (numbering it if needed). `Duplicate` if
    /// another record of `kind` holds it; longer than [`MAX_EXTERNAL_ID_BYTES`] or empty is
    /// `InvalidReference`.
    async fn set_external_id(&self, kind: RecordKind, key: &str, external_id: Option<&str>) -> StoreResult<RecordRef>;
    /// Replaces the extra attributes of `key` (numbering it if needed). Larger than
    /// [`MAX_RECORD_EXTRA_BYTES`] as JSON, or holding control characters other than line
    /// breaks and tabs, is `InvalidReference`.
    async fn set_record_extra(
        &self,
        kind: RecordKind,
        key: &str,
        extra: &std::collections::BTreeMap<String, String>,
    ) -> StoreResult<RecordRef>;
    /// Removes the refs of `keys` (records that are gone); their numbers stay spent, so a
    /// key asked for again gets a new one. Unknown keys are ignored.
    async fn forget_record_refs(&self, kind: RecordKind, keys: &[String]) -> StoreResult<()>;
}

/// Checks a [`RecordRef::key`]: not empty, at most [`MAX_RECORD_KEY_BYTES`], no control
/// characters (what every [`RecordRefRepo`] refuses with `InvalidReference`).
pub fn check_record_key(key: &str) -> StoreResult<()> {
    check_ref_text(key, MAX_RECORD_KEY_BYTES, "record key")
}

/// Checks a [`RecordRef::extra`] (what [`RecordRefRepo::set_record_extra`] refuses); its
/// JSON text when it passes.
pub fn check_record_extra(extra: &std::collections::BTreeMap<String, String>) -> StoreResult<String> {
    let json = serde_json::to_string(extra).map_err(|e| StoreError::InvalidReference(e.to_string()))?;
    let bad_text = |t: &String| t.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'));
    if json.len() > MAX_RECORD_EXTRA_BYTES || extra.keys().any(bad_text) || extra.values().any(bad_text) {
        return Err(StoreError::InvalidReference(format!(
            "extra attributes must be at most {MAX_RECORD_EXTRA_BYTES} bytes as JSON, without control characters"
        )));
    }
    Ok(json)
}

/// Checks an external id the way [`check_record_key`] checks a key, with
/// [`MAX_EXTERNAL_ID_BYTES`].
pub fn check_external_id(external_id: &str) -> StoreResult<()> {
    check_ref_text(external_id, MAX_EXTERNAL_ID_BYTES, "external id")
}

fn check_ref_text(text: &str, max: usize, what: &str) -> StoreResult<()> {
    if text.is_empty() || text.len() > max || text.chars().any(char::is_control) {
        return Err(StoreError::InvalidReference(format!(
            "{what} must be 1 to {max} bytes without control characters"
        )));
    }
    Ok(())
}

/// Subusers: users granted rights on a server they do not own.
#[async_trait]
pub trait SubuserRepo: Send + Sync {
    /// Adds `subuser`, or replaces the permissions of an existing one (keeping its
    /// `created_at`). The server and user must exist (`InvalidReference`); the owner cannot
    /// be a subuser of their own server (`InvalidReference`).
    async fn put_subuser(&self, subuser: &Subuser) -> StoreResult<()>;
    /// `user`'s grant on `server`, if any.
    async fn get_subuser(&self, server: ServerId, user: UserId) -> StoreResult<Option<Subuser>>;
    /// A server's subusers, oldest first (then by user id). `NotFound` for an unknown server.
    async fn list_subusers(&self, server: ServerId) -> StoreResult<Vec<Subuser>>;
    /// Removes `user`'s grant on `server`; `NotFound` if there is none. Deleting the server
    /// or the user removes their grants too.
    async fn delete_subuser(&self, server: ServerId, user: UserId) -> StoreResult<()>;
}

/// Second factors of users.
#[async_trait]
pub trait TotpRepo: Send + Sync {
    /// Sets `totp` as its user's second factor (replacing any). The user must exist
    /// (`InvalidReference`).
    async fn put_totp(&self, totp: &UserTotp) -> StoreResult<()>;
    /// `user`'s second factor, if any.
    async fn get_totp(&self, user: UserId) -> StoreResult<Option<UserTotp>>;
    /// Removes `user`'s second factor; `NotFound` if there is none. Deleting the user removes
    /// it too.
    async fn delete_totp(&self, user: UserId) -> StoreResult<()>;
}

/// API keys.
#[async_trait]
pub trait ApiKeyRepo: Send + Sync {
    /// Inserts; the prefix is unique.
    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()>;
    /// By lookup prefix.
    async fn find_api_key(&self, prefix: &str) -> StoreResult<Option<ApiKey>>;
    /// A user's keys, newest first.
    async fn list_api_keys(&self, user: UserId) -> StoreResult<Vec<ApiKey>>;
    /// Sets `last_used_at`.
    async fn touch_api_key(&self, id: ApiKeyId, at: DateTime<Utc>) -> StoreResult<()>;
    /// Removes.
    async fn delete_api_key(&self, id: ApiKeyId) -> StoreResult<()>;
}

/// Backups.
#[async_trait]
pub trait BackupRepo: Send + Sync {
    /// Inserts.
    async fn create_backup(&self, backup: &Backup) -> StoreResult<()>;
    /// By id.
    async fn get_backup(&self, id: BackupId) -> StoreResult<Backup>;
    /// A server's backups, newest first.
    async fn list_backups(&self, server: ServerId) -> StoreResult<Vec<Backup>>;
    /// Replaces every field but the id.
    async fn update_backup(&self, backup: &Backup) -> StoreResult<()>;
    /// Removes; fails if locked.
    async fn delete_backup(&self, id: BackupId) -> StoreResult<()>;
}

/// The append-only audit log.
#[async_trait]
pub trait AuditRepo: Send + Sync {
    /// Appends.
    async fn append_audit(&self, event: &AuditEvent) -> StoreResult<()>;
    /// Newest first, optionally about one subject only.
    async fn list_audit(&self, subject: Option<&AuditSubject>, page: Page) -> StoreResult<Vec<AuditEvent>>;
}

/// Every repository.
pub trait Repositories:
    UserRepo
    + LocationRepo
    + NodeRepo
    + AllocationRepo
    + EggRepo
    + NestRepo
    + ServerRepo
    + ScheduleRepo
    + ApiKeyRepo
    + BackupRepo
    + AuditRepo
    + SubuserRepo
    + TotpRepo
    + RecordRefRepo
{
}

impl<T> Repositories for T where
    T: UserRepo
        + LocationRepo
        + NodeRepo
        + AllocationRepo
        + EggRepo
        + NestRepo
        + ServerRepo
        + ScheduleRepo
        + ApiKeyRepo
        + BackupRepo
        + AuditRepo
        + SubuserRepo
        + TotpRepo
        + RecordRefRepo
{
}

/// Several repository calls that take effect together or not at all.
#[async_trait]
pub trait StoreTransaction: Repositories {
    /// Makes every write visible.
    async fn commit(self: Box<Self>) -> StoreResult<()>;
    /// Discards every write (also what dropping does).
    async fn rollback(self: Box<Self>) -> StoreResult<()>;
}

/// A control-plane store: every repository, plus transactions.
///
/// # Contract
///
/// Besides what each method's docs say, every implementation behaves like this (the store
/// conformance suite of `nexus-conformance` checks each rule; `MemoryStore` and the SQL stores
/// pass it):
///
/// * Delete guards (user owning servers, node with servers, egg or location in use, locked
///   backup, assigned allocation) fail with [`StoreError::InUse`];
///   references to missing records on create/update with
///   [`StoreError::InvalidReference`]; a
///   `transition_server` event whose `from` is not the stored state, or that the lifecycle
///   table forbids, with [`StoreError::StateMismatch`].
/// * Listings scoped to a parent (`list_allocations`, `server_events`, `list_schedules`,
///   `list_backups`, `list_api_keys`) fail with `NotFound` for an unknown parent.
/// * Ties: users by lower-cased username; nodes, eggs, schedules, locations by name/code then
///   id; servers by creation time then id; "newest first" listings of keys and backups by
///   creation time descending then id ascending; events and audit entries with equal
///   timestamps newest *appended* first.
/// * `claim_free_allocation` may reserve for a server that does not exist yet;
///   `create_server` accepts allocations reserved for that same server id. Claiming for an
///   existing server appends to its `extra_allocations` and bumps its version.
/// * `update_server` ignores the allocation fields and refuses to change the node.
/// * `delete_user` removes the user's API keys, subuser grants and second factor;
///   `delete_node` removes its (free) allocations; `delete_server` removes locked backups and
///   subuser grants too. Audit entries are never removed.
/// * `list_servers` with `member` lists the servers the user owns and those shared with them.
/// * `mark_stale_nodes_offline` treats an online node that never sent a heartbeat as stale;
///   a heartbeat exactly at the cutoff is not stale.
/// * Callers never continue a transaction after a failed call (PostgreSQL aborts the
///   transaction there), and a task holding a transaction never writes outside it (the
///   memory store serialises writers, so that would wait forever). Other tasks may write
///   meanwhile; their writes must survive the commit.
///
/// # Example
///
/// ```
/// # #[cfg(feature = "memory")]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// use nexus_core::ids::LocationId;
/// use nexus_core::memory::MemoryStore;
/// use nexus_core::model::Location;
/// use nexus_core::store::{LocationRepo, Store};
///
/// let store = MemoryStore::new();
/// let tx = store.begin().await?;
/// tx.create_location(&Location { id: LocationId::new(), short: "fra".into(), long: "Frankfurt".into() }).await?;
/// // The same code again would fail with `Duplicate`: short codes are unique.
/// tx.commit().await?;
/// assert_eq!(store.list_locations().await?[0].short, "fra");
/// # Ok(()) })
/// # }
/// # #[cfg(not(feature = "memory"))]
/// # fn main() {}
/// ```
#[async_trait]
pub trait Store: Repositories {
    /// Backend name for logs (`postgres`, `sqlite`, `memory`).
    fn backend(&self) -> &'static str;
    /// Begins a transaction.
    async fn begin(&self) -> StoreResult<Box<dyn StoreTransaction>>;
}
