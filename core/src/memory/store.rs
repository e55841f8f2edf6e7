//! [`MemoryStore`]: every repository kept in process memory.
//!
//! # Design
//!
//! The committed data is one [`State`] behind a [`RwLock`]. Every repository rule is written
//! exactly once, as a method on `State`; the store and its transactions only differ in *which*
//! `State` they hand to those methods (see the private `Backing` trait and the blanket
//! repository impls at the bottom of this file).
//!
//! Writers are serialised by one async mutex:
//!
//! * a standalone write takes it for the duration of the call;
//! * a transaction takes it in [`Store::begin`] and keeps it until commit, rollback or drop,
//!   working on a private copy of the state that commit swaps in.
//!
//! Reads never wait for that mutex, so a transaction's writes are invisible to everyone else
//! until commit (readers see the last committed state). The price of this simplicity:
//! transactions are fully serialised, a standalone write waits for an open transaction to
//! finish, and `begin` copies the whole state. That is fine for tests and small embedded
//! panels, and it means **a task holding a transaction must not write through the store
//! itself** (it would wait for its own transaction forever) — write through the transaction.
//!
//! Every rule method validates before it mutates, so a failing call changes nothing, inside a
//! transaction too.

use crate::ids::*;
use crate::lifecycle::{LifecycleEvent, next_state};
use crate::model::*;
use crate::store::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::OwnedMutexGuard;

/// A [`Store`] in process memory, for unit tests and single-binary embedding.
///
/// Cloning is cheap and yields another handle to the *same* data. See the module docs for the
/// concurrency model; in short, transactions are serialised and a task holding a transaction
/// must write through it, not through the store.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[derive(Debug, Default)]
struct Shared {
    committed: RwLock<State>,
    /// Held by every writer; `Arc` so that a transaction can own its guard.
    writer: Arc<tokio::sync::Mutex<()>>,
}

/// A transaction: the writer lock plus a private working copy of the state.
struct MemoryTransaction {
    shared: Arc<Shared>,
    work: Mutex<State>,
    _writer: OwnedMutexGuard<()>,
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Backend("memory store poisoned: an earlier call panicked while writing".into())
}

#[async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn begin(&self) -> StoreResult<Box<dyn StoreTransaction>> {
        let writer = Arc::clone(&self.shared.writer).lock_owned().await;
        let work = self.shared.committed.read().map_err(poisoned)?.clone();
        Ok(Box::new(MemoryTransaction { shared: Arc::clone(&self.shared), work: Mutex::new(work), _writer: writer }))
    }
}

#[async_trait]
impl StoreTransaction for MemoryTransaction {
    async fn commit(self: Box<Self>) -> StoreResult<()> {
        let MemoryTransaction { shared, work, _writer } = *self;
        let work = work.into_inner().map_err(poisoned)?;
        *shared.committed.write().map_err(poisoned)? = work;
        // `_writer` is released here, after the new state is in place.
        Ok(())
    }

    async fn rollback(self: Box<Self>) -> StoreResult<()> {
        Ok(())
    }
}

/// Gives the shared repository impls access to a [`State`]. Closures run synchronously under
/// a lock and must not block.
trait Backing: Send + Sync {
    fn read<R: Send>(
        &self,
        f: impl FnOnce(&State) -> StoreResult<R> + Send,
    ) -> impl Future<Output = StoreResult<R>> + Send;

    fn write<R: Send>(
        &self,
        f: impl FnOnce(&mut State) -> StoreResult<R> + Send,
    ) -> impl Future<Output = StoreResult<R>> + Send;
}

impl Backing for MemoryStore {
    async fn read<R: Send>(&self, f: impl FnOnce(&State) -> StoreResult<R> + Send) -> StoreResult<R> {
        let state = self.shared.committed.read().map_err(poisoned)?;
        f(&state)
    }

    async fn write<R: Send>(&self, f: impl FnOnce(&mut State) -> StoreResult<R> + Send) -> StoreResult<R> {
        // Without the writer lock, a transaction committing later would overwrite this write
        // with its older copy of the state.
        let _writer = self.shared.writer.lock().await;
        let mut state = self.shared.committed.write().map_err(poisoned)?;
        f(&mut state)
    }
}

impl Backing for MemoryTransaction {
    async fn read<R: Send>(&self, f: impl FnOnce(&State) -> StoreResult<R> + Send) -> StoreResult<R> {
        let state = self.work.lock().map_err(poisoned)?;
        f(&state)
    }

    async fn write<R: Send>(&self, f: impl FnOnce(&mut State) -> StoreResult<R> + Send) -> StoreResult<R> {
        let mut state = self.work.lock().map_err(poisoned)?;
        f(&mut state)
    }
}

/// All data of a store. Relations are kept by id, as in the SQL backends.
#[derive(Clone, Debug, Default)]
struct State {
    users: HashMap<UserId, User>,
    locations: HashMap<LocationId, Location>,
    nodes: HashMap<NodeId, Node>,
    allocations: HashMap<AllocationId, Allocation>,
    eggs: HashMap<EggId, Egg>,
    nests: HashMap<NestId, Nest>,
    servers: HashMap<ServerId, Server>,
    /// Per server, in append order (ties on `at` are broken by it).
    events: HashMap<ServerId, Vec<LifecycleEvent>>,
    schedules: HashMap<ScheduleId, Schedule>,
    api_keys: HashMap<ApiKeyId, ApiKey>,
    backups: HashMap<BackupId, Backup>,
    /// In append order (ties on `at` are broken by it).
    audit: Vec<AuditEvent>,
    subusers: HashMap<(ServerId, UserId), Subuser>,
    totp: HashMap<UserId, UserTotp>,
    /// Per kind, by key.
    refs: HashMap<(RecordKind, String), RecordRef>,
    /// Per kind, the last number handed out.
    ref_numbers: HashMap<RecordKind, u64>,
}

fn duplicate(entity: &'static str, detail: impl Into<String>) -> StoreError {
    StoreError::Duplicate { entity, detail: detail.into() }
}

fn in_use(entity: &'static str, id: impl ToString, reason: impl Into<String>) -> StoreError {
    StoreError::InUse { entity, id: id.to_string(), reason: reason.into() }
}

fn invalid(message: impl Into<String>) -> StoreError {
    StoreError::InvalidReference(message.into())
}

fn unavailable(allocation: AllocationId, reason: impl Into<String>) -> StoreError {
    StoreError::AllocationUnavailable { allocation, reason: reason.into() }
}

fn paged<T>(items: impl IntoIterator<Item = T>, page: Page) -> Vec<T> {
    let skip = usize::try_from(page.offset).unwrap_or(usize::MAX);
    let take = usize::try_from(page.limit).unwrap_or(usize::MAX);
    items.into_iter().skip(skip).take(take).collect()
}

fn limited<T>(items: impl IntoIterator<Item = T>, limit: u64) -> Vec<T> {
    paged(items, Page::first(limit))
}

fn fresh<K: std::hash::Hash + Eq, V>(
    map: &HashMap<K, V>,
    id: &K,
    entity: &'static str,
    shown: impl std::fmt::Display,
) -> StoreResult<()> {
    if map.contains_key(id) { Err(duplicate(entity, format!("id `{shown}`"))) } else { Ok(()) }
}

fn found<'a, K: std::hash::Hash + Eq, V>(
    map: &'a HashMap<K, V>,
    id: &K,
    entity: &'static str,
    shown: impl std::fmt::Display,
) -> StoreResult<&'a V> {
    map.get(id).ok_or_else(|| StoreError::not_found(entity, shown))
}

fn found_mut<'a, K: std::hash::Hash + Eq, V>(
    map: &'a mut HashMap<K, V>,
    id: &K,
    entity: &'static str,
    shown: impl std::fmt::Display,
) -> StoreResult<&'a mut V> {
    map.get_mut(id).ok_or_else(|| StoreError::not_found(entity, shown))
}

// Users, locations, nodes.
impl State {
    fn check_user_unique(&self, user: &User) -> StoreResult<()> {
        let username = user.username.to_lowercase();
        let email = user.email.to_lowercase();
        for other in self.users.values().filter(|other| other.id != user.id) {
            if other.username.to_lowercase() == username {
                return Err(duplicate("user", format!("username `{}`", user.username)));
            }
            if other.email.to_lowercase() == email {
                return Err(duplicate("user", format!("e-mail `{}`", user.email)));
            }
        }
        Ok(())
    }

    fn create_user(&mut self, user: &User) -> StoreResult<()> {
        fresh(&self.users, &user.id, "user", user.id)?;
        self.check_user_unique(user)?;
        self.users.insert(user.id, user.clone());
        Ok(())
    }

    fn get_user(&self, id: UserId) -> StoreResult<User> {
        found(&self.users, &id, "user", id).cloned()
    }

    fn find_user_by_login(&self, login: &str) -> StoreResult<Option<User>> {
        let login = login.to_lowercase();
        // A username match wins over an e-mail match, should one user's username equal
        // another's e-mail address.
        let by_name = self.users.values().find(|u| u.username.to_lowercase() == login);
        Ok(by_name.or_else(|| self.users.values().find(|u| u.email.to_lowercase() == login)).cloned())
    }

    fn list_users(&self, page: Page) -> StoreResult<Vec<User>> {
        let mut users: Vec<&User> = self.users.values().collect();
        users.sort_by_cached_key(|u| (u.username.to_lowercase(), u.id));
        Ok(paged(users.into_iter().cloned(), page))
    }

    fn update_user(&mut self, user: &User) -> StoreResult<()> {
        found(&self.users, &user.id, "user", user.id)?;
        self.check_user_unique(user)?;
        self.users.insert(user.id, user.clone());
        Ok(())
    }

    fn delete_user(&mut self, id: UserId) -> StoreResult<()> {
        found(&self.users, &id, "user", id)?;
        let owned = self.servers.values().filter(|s| s.owner == id).count();
        if owned > 0 {
            return Err(in_use("user", id, format!("owns {owned} server(s)")));
        }
        self.users.remove(&id);
        // Keys act with their owner's rights; they cannot outlive the owner.
        self.api_keys.retain(|_, key| key.user != id);
        self.subusers.retain(|(_, user), _| *user != id);
        self.totp.remove(&id);
        Ok(())
    }

    fn create_location(&mut self, location: &Location) -> StoreResult<()> {
        fresh(&self.locations, &location.id, "location", location.id)?;
        if self.locations.values().any(|l| l.short == location.short) {
            return Err(duplicate("location", format!("short code `{}`", location.short)));
        }
        self.locations.insert(location.id, location.clone());
        Ok(())
    }

    fn list_locations(&self) -> StoreResult<Vec<Location>> {
        let mut locations: Vec<Location> = self.locations.values().cloned().collect();
        locations.sort_by(|a, b| (&a.short, a.id).cmp(&(&b.short, b.id)));
        Ok(locations)
    }

    fn update_location(&mut self, location: &Location) -> StoreResult<()> {
        found(&self.locations, &location.id, "location", location.id)?;
        if self.locations.values().any(|l| l.short == location.short && l.id != location.id) {
            return Err(duplicate("location", format!("short code `{}`", location.short)));
        }
        self.locations.insert(location.id, location.clone());
        Ok(())
    }

    fn delete_location(&mut self, id: LocationId) -> StoreResult<()> {
        found(&self.locations, &id, "location", id)?;
        let used = self.nodes.values().filter(|n| n.location == Some(id)).count();
        if used > 0 {
            return Err(in_use("location", id, format!("used by {used} node(s)")));
        }
        self.locations.remove(&id);
        Ok(())
    }

    fn check_node(&self, node: &Node) -> StoreResult<()> {
        if self.nodes.values().any(|other| other.id != node.id && other.name == node.name) {
            return Err(duplicate("node", format!("name `{}`", node.name)));
        }
        if let Some(location) = node.location.filter(|l| !self.locations.contains_key(l)) {
            return Err(invalid(format!("node `{}` refers to missing location `{location}`", node.id)));
        }
        Ok(())
    }

    fn create_node(&mut self, node: &Node) -> StoreResult<()> {
        fresh(&self.nodes, &node.id, "node", node.id)?;
        self.check_node(node)?;
        self.nodes.insert(node.id, node.clone());
        Ok(())
    }

    fn get_node(&self, id: NodeId) -> StoreResult<Node> {
        found(&self.nodes, &id, "node", id).cloned()
    }

    fn sorted_nodes(&self) -> Vec<&Node> {
        let mut nodes: Vec<&Node> = self.nodes.values().collect();
        nodes.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
        nodes
    }

    fn list_nodes(&self) -> StoreResult<Vec<Node>> {
        Ok(self.sorted_nodes().into_iter().cloned().collect())
    }

    fn update_node(&mut self, node: &Node) -> StoreResult<()> {
        found(&self.nodes, &node.id, "node", node.id)?;
        self.check_node(node)?;
        self.nodes.insert(node.id, node.clone());
        Ok(())
    }

    fn delete_node(&mut self, id: NodeId) -> StoreResult<()> {
        found(&self.nodes, &id, "node", id)?;
        let placed = self.servers.values().filter(|s| s.node == id).count();
        if placed > 0 {
            return Err(in_use("node", id, format!("has {placed} server(s)")));
        }
        self.nodes.remove(&id);
        // With no servers, all of the node's allocations are free and go with it.
        self.allocations.retain(|_, a| a.node != id);
        Ok(())
    }

    fn record_heartbeat(&mut self, id: NodeId, at: DateTime<Utc>) -> StoreResult<()> {
        let node = found_mut(&mut self.nodes, &id, "node", id)?;
        node.last_heartbeat = Some(at);
        node.status = NodeStatus::Online;
        Ok(())
    }

    fn record_heartbeats(&mut self, ids: &[NodeId], at: DateTime<Utc>) -> Vec<HeartbeatRecorded> {
        let mut recorded = Vec::with_capacity(ids.len());
        let mut seen = HashSet::with_capacity(ids.len());
        for id in ids.iter().filter(|id| seen.insert(**id)) {
            if let Some(node) = self.nodes.get_mut(id) {
                recorded.push(HeartbeatRecorded::of(node));
                node.last_heartbeat = Some(at);
                node.status = NodeStatus::Online;
            }
        }
        recorded
    }

    fn mark_stale_nodes_offline(&mut self, cutoff: DateTime<Utc>) -> StoreResult<Vec<NodeId>> {
        // A node that is online but never sent a heartbeat counts as stale.
        let stale: Vec<NodeId> = self
            .sorted_nodes()
            .into_iter()
            .filter(|n| n.status == NodeStatus::Online && n.last_heartbeat.is_none_or(|at| at < cutoff))
            .map(|n| n.id)
            .collect();
        for id in &stale {
            if let Some(node) = self.nodes.get_mut(id) {
                node.status = NodeStatus::Offline;
            }
        }
        Ok(stale)
    }

    fn node_usage(&self) -> StoreResult<Vec<NodeUsage>> {
        let mut usage: HashMap<NodeId, NodeUsage> =
            self.nodes.keys().map(|&id| (id, NodeUsage { node: Some(id), ..NodeUsage::default() })).collect();
        for server in self.servers.values() {
            if let Some(u) = usage.get_mut(&server.node) {
                u.servers += 1;
                u.memory_mb = u.memory_mb.saturating_add(server.limits.memory_mb);
                u.disk_mb = u.disk_mb.saturating_add(server.limits.disk_mb);
                u.cpu_percent = u.cpu_percent.saturating_add(server.limits.cpu_percent);
            }
        }
        for allocation in self.allocations.values().filter(|a| a.server.is_none()) {
            if let Some(u) = usage.get_mut(&allocation.node) {
                u.free_allocations += 1;
            }
        }
        Ok(self.sorted_nodes().into_iter().filter_map(|n| usage.remove(&n.id)).collect())
    }
}

// Allocations, eggs.
impl State {
    fn create_allocations(&mut self, allocations: &[Allocation]) -> StoreResult<()> {
        let mut ids = HashSet::new();
        let mut addresses: HashSet<_> = self.allocations.values().map(|a| (a.node, a.ip, a.port)).collect();
        for a in allocations {
            if self.allocations.contains_key(&a.id) || !ids.insert(a.id) {
                return Err(duplicate("allocation", format!("id `{}`", a.id)));
            }
            if !self.nodes.contains_key(&a.node) {
                return Err(invalid(format!("allocation `{}` refers to missing node `{}`", a.id, a.node)));
            }
            if let Some(server) = a.server {
                return Err(invalid(format!(
                    "allocation `{}` must be created unassigned (it names server `{server}`)",
                    a.id
                )));
            }
            if !addresses.insert((a.node, a.ip, a.port)) {
                return Err(duplicate("allocation", format!("{}:{} on node `{}`", a.ip, a.port, a.node)));
            }
        }
        self.allocations.extend(allocations.iter().map(|a| (a.id, a.clone())));
        Ok(())
    }

    fn get_allocation(&self, id: AllocationId) -> StoreResult<Allocation> {
        found(&self.allocations, &id, "allocation", id).cloned()
    }

    fn node_allocations(&self, node: NodeId) -> Vec<&Allocation> {
        let mut allocations: Vec<&Allocation> = self.allocations.values().filter(|a| a.node == node).collect();
        allocations.sort_by_key(|a| (a.ip, a.port, a.id));
        allocations
    }

    fn list_allocations(&self, node: NodeId) -> StoreResult<Vec<Allocation>> {
        found(&self.nodes, &node, "node", node)?;
        Ok(self.node_allocations(node).into_iter().cloned().collect())
    }

    fn claim_free_allocation(&mut self, node: NodeId, server: ServerId) -> StoreResult<Option<Allocation>> {
        found(&self.nodes, &node, "node", node)?;
        // The server may not exist yet: claiming first and then creating the server with the
        // claimed allocation (ideally in one transaction) is the placement flow.
        if let Some(existing) = self.servers.get(&server).filter(|s| s.node != node) {
            return Err(invalid(format!("server `{server}` is on node `{}`, not `{node}`", existing.node)));
        }
        let Some(id) = self.node_allocations(node).into_iter().find(|a| a.server.is_none()).map(|a| a.id) else {
            return Ok(None);
        };
        let allocation = found_mut(&mut self.allocations, &id, "allocation", id)?;
        allocation.server = Some(server);
        let claimed = allocation.clone();
        if let Some(existing) = self.servers.get_mut(&server) {
            existing.extra_allocations.push(id);
            existing.version += 1;
        }
        Ok(Some(claimed))
    }

    fn delete_allocation(&mut self, id: AllocationId) -> StoreResult<()> {
        let allocation = found(&self.allocations, &id, "allocation", id)?;
        if let Some(server) = allocation.server {
            return Err(in_use("allocation", id, format!("assigned to server `{server}`")));
        }
        self.allocations.remove(&id);
        Ok(())
    }

    fn create_egg(&mut self, egg: &Egg) -> StoreResult<()> {
        fresh(&self.eggs, &egg.id, "egg", egg.id)?;
        self.check_nest(egg)?;
        self.eggs.insert(egg.id, egg.clone());
        Ok(())
    }

    fn get_egg(&self, id: EggId) -> StoreResult<Egg> {
        found(&self.eggs, &id, "egg", id).cloned()
    }

    fn list_eggs(&self) -> StoreResult<Vec<Egg>> {
        let mut eggs: Vec<&Egg> = self.eggs.values().collect();
        eggs.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
        Ok(eggs.into_iter().cloned().collect())
    }

    fn update_egg(&mut self, egg: &Egg) -> StoreResult<()> {
        self.check_nest(egg)?;
        *found_mut(&mut self.eggs, &egg.id, "egg", egg.id)? = egg.clone();
        Ok(())
    }

    fn check_nest(&self, egg: &Egg) -> StoreResult<()> {
        match egg.nest {
            Some(nest) if !self.nests.contains_key(&nest) => {
                Err(invalid(format!("egg `{}`: nest `{nest}` does not exist", egg.id)))
            }
            _ => Ok(()),
        }
    }

    fn create_nest(&mut self, nest: &Nest) -> StoreResult<()> {
        fresh(&self.nests, &nest.id, "nest", nest.id)?;
        if self.nests.values().any(|n| n.name == nest.name) {
            return Err(duplicate("nest", format!("name `{}`", nest.name)));
        }
        self.nests.insert(nest.id, nest.clone());
        Ok(())
    }

    fn list_nests(&self) -> StoreResult<Vec<Nest>> {
        let mut nests: Vec<Nest> = self.nests.values().cloned().collect();
        nests.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
        Ok(nests)
    }

    fn update_nest(&mut self, nest: &Nest) -> StoreResult<()> {
        found(&self.nests, &nest.id, "nest", nest.id)?;
        if self.nests.values().any(|n| n.name == nest.name && n.id != nest.id) {
            return Err(duplicate("nest", format!("name `{}`", nest.name)));
        }
        self.nests.insert(nest.id, nest.clone());
        Ok(())
    }

    fn delete_nest(&mut self, id: NestId) -> StoreResult<()> {
        found(&self.nests, &id, "nest", id)?;
        let eggs = self.eggs.values().filter(|e| e.nest == Some(id)).count();
        if eggs > 0 {
            return Err(in_use("nest", id, format!("holds {eggs} egg(s)")));
        }
        self.nests.remove(&id);
        Ok(())
    }

    fn delete_egg(&mut self, id: EggId) -> StoreResult<()> {
        found(&self.eggs, &id, "egg", id)?;
        let used = self.servers.values().filter(|s| s.egg == id).count();
        if used > 0 {
            return Err(in_use("egg", id, format!("used by {used} server(s)")));
        }
        self.eggs.remove(&id);
        Ok(())
    }
}

// Servers.
impl State {
    fn check_server_refs(&self, server: &Server) -> StoreResult<()> {
        if !self.users.contains_key(&server.owner) {
            return Err(invalid(format!("server `{}` refers to missing owner `{}`", server.id, server.owner)));
        }
        if !self.nodes.contains_key(&server.node) {
            return Err(invalid(format!("server `{}` refers to missing node `{}`", server.id, server.node)));
        }
        if !self.eggs.contains_key(&server.egg) {
            return Err(invalid(format!("server `{}` refers to missing egg `{}`", server.id, server.egg)));
        }
        Ok(())
    }

    fn create_server(&mut self, server: &Server) -> StoreResult<()> {
        fresh(&self.servers, &server.id, "server", server.id)?;
        self.check_server_refs(server)?;
        let mut seen = HashSet::new();
        for id in server.allocations() {
            if !seen.insert(id) {
                return Err(unavailable(id, "listed more than once"));
            }
            let allocation = self.allocations.get(&id).ok_or_else(|| unavailable(id, "does not exist"))?;
            if allocation.node != server.node {
                return Err(unavailable(
                    id,
                    format!("belongs to node `{}`, not the server's node `{}`", allocation.node, server.node),
                ));
            }
            // Already claimed for this very server (claim_free_allocation before create) is fine.
            if let Some(other) = allocation.server.filter(|other| *other != server.id) {
                return Err(unavailable(id, format!("assigned to server `{other}`")));
            }
        }
        for id in server.allocations() {
            if let Some(allocation) = self.allocations.get_mut(&id) {
                allocation.server = Some(server.id);
            }
        }
        self.servers.insert(server.id, server.clone());
        Ok(())
    }

    fn get_server(&self, id: ServerId) -> StoreResult<Server> {
        found(&self.servers, &id, "server", id).cloned()
    }

    fn list_servers(&self, filter: &ServerFilter, page: Page) -> StoreResult<Vec<Server>> {
        let mut servers: Vec<&Server> = self
            .servers
            .values()
            .filter(|s| filter.owner.is_none_or(|owner| s.owner == owner))
            .filter(|s| filter.node.is_none_or(|node| s.node == node))
            .filter(|s| filter.egg.is_none_or(|egg| s.egg == egg))
            .filter(|s| filter.member.is_none_or(|user| s.owner == user || self.subusers.contains_key(&(s.id, user))))
            .collect();
        match filter.order {
            ServerOrder::CreatedAtDesc => servers.sort_by_key(|s| Reverse((s.created_at, s.id))),
            ServerOrder::Name => servers.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id))),
            ServerOrder::NameDesc => servers.sort_by(|a, b| (&b.name, b.id).cmp(&(&a.name, a.id))),
            _ => servers.sort_by_key(|s| (s.created_at, s.id)),
        }
        Ok(paged(servers.into_iter().cloned(), page))
    }

    fn check_version(stored: &Server, expected: u64) -> StoreResult<()> {
        if stored.version == expected {
            Ok(())
        } else {
            Err(StoreError::VersionConflict { server: stored.id, expected, actual: stored.version })
        }
    }

    fn update_server(&mut self, server: &Server) -> StoreResult<Server> {
        let stored = found(&self.servers, &server.id, "server", server.id)?;
        Self::check_version(stored, server.version)?;
        if stored.node != server.node {
            // Its allocations live on the old node; moving is a separate operation.
            return Err(invalid(format!(
                "server `{}` cannot be moved from node `{}` to `{}` by an update",
                server.id, stored.node, server.node
            )));
        }
        self.check_server_refs(server)?;
        let updated = Server {
            primary_allocation: stored.primary_allocation,
            extra_allocations: stored.extra_allocations.clone(),
            version: stored.version + 1,
            ..server.clone()
        };
        self.servers.insert(updated.id, updated.clone());
        Ok(updated)
    }

    fn transition_server(&mut self, expected_version: u64, event: &LifecycleEvent) -> StoreResult<Server> {
        let id = event.server;
        let stored = found_mut(&mut self.servers, &id, "server", id)?;
        Self::check_version(stored, expected_version)?;
        if stored.state != event.from || next_state(event.from, event.trigger) != Some(event.to) {
            return Err(StoreError::StateMismatch {
                server: id,
                actual: stored.state,
                from: event.from,
                trigger: event.trigger,
                to: event.to,
            });
        }
        stored.state = event.to;
        stored.version += 1;
        let updated = stored.clone();
        self.events.entry(id).or_default().push(event.clone());
        Ok(updated)
    }

    fn apply_node_events(&mut self, events: &[(NodeId, LifecycleEvent)]) -> StoreResult<Vec<EventOutcome>> {
        let mut outcomes = Vec::with_capacity(events.len());
        for (sender, event) in events {
            let Some(stored) = self.servers.get(&event.server) else {
                outcomes.push(EventOutcome::UnknownServer);
                continue;
            };
            if !event_applies(stored, *sender, event) {
                outcomes.push(EventOutcome::Refused(Box::new(stored.clone())));
                continue;
            }
            let version = stored.version;
            outcomes.push(EventOutcome::Applied(Box::new(self.transition_server(version, event)?)));
        }
        Ok(outcomes)
    }

    fn server_events(&self, id: ServerId, limit: u64) -> StoreResult<Vec<LifecycleEvent>> {
        found(&self.servers, &id, "server", id)?;
        // Newest appended first, then a stable sort: equal timestamps keep that order.
        let mut events: Vec<&LifecycleEvent> = self.events.get(&id).into_iter().flatten().rev().collect();
        events.sort_by_key(|e| Reverse(e.at));
        Ok(limited(events.into_iter().cloned(), limit))
    }

    fn delete_server(&mut self, id: ServerId) -> StoreResult<()> {
        found(&self.servers, &id, "server", id)?;
        self.servers.remove(&id);
        for allocation in self.allocations.values_mut().filter(|a| a.server == Some(id)) {
            allocation.server = None;
        }
        self.events.remove(&id);
        self.schedules.retain(|_, s| s.server != id);
        // Locked backups go too: the lock guards against deleting one backup, not the server.
        self.backups.retain(|_, b| b.server != id);
        self.subusers.retain(|(server, _), _| *server != id);
        Ok(())
    }
}

// Subusers, second factors.
impl State {
    fn put_subuser(&mut self, subuser: &Subuser) -> StoreResult<()> {
        let server = self
            .servers
            .get(&subuser.server)
            .ok_or_else(|| invalid(format!("subuser refers to missing server `{}`", subuser.server)))?;
        if !self.users.contains_key(&subuser.user) {
            return Err(invalid(format!("subuser refers to missing user `{}`", subuser.user)));
        }
        if server.owner == subuser.user {
            return Err(invalid(format!("user `{}` owns server `{}`", subuser.user, subuser.server)));
        }
        let key = (subuser.server, subuser.user);
        let created_at = self.subusers.get(&key).map_or(subuser.created_at, |s| s.created_at);
        self.subusers.insert(key, Subuser { created_at, ..subuser.clone() });
        Ok(())
    }

    fn get_subuser(&self, server: ServerId, user: UserId) -> StoreResult<Option<Subuser>> {
        Ok(self.subusers.get(&(server, user)).cloned())
    }

    fn list_subusers(&self, server: ServerId) -> StoreResult<Vec<Subuser>> {
        found(&self.servers, &server, "server", server)?;
        let mut list: Vec<&Subuser> = self.subusers.values().filter(|s| s.server == server).collect();
        list.sort_by_key(|s| (s.created_at, s.user));
        Ok(list.into_iter().cloned().collect())
    }

    fn delete_subuser(&mut self, server: ServerId, user: UserId) -> StoreResult<()> {
        self.subusers.remove(&(server, user)).map(drop).ok_or_else(|| StoreError::not_found("subuser", user))
    }

    fn put_totp(&mut self, totp: &UserTotp) -> StoreResult<()> {
        if !self.users.contains_key(&totp.user) {
            return Err(invalid(format!("second factor refers to missing user `{}`", totp.user)));
        }
        self.totp.insert(totp.user, totp.clone());
        Ok(())
    }

    fn get_totp(&self, user: UserId) -> StoreResult<Option<UserTotp>> {
        Ok(self.totp.get(&user).cloned())
    }

    fn delete_totp(&mut self, user: UserId) -> StoreResult<()> {
        self.totp.remove(&user).map(drop).ok_or_else(|| StoreError::not_found("second factor", user))
    }
}

// Schedules, API keys, backups, audit.
impl State {
    fn check_server_exists(&self, server: ServerId, what: &str) -> StoreResult<()> {
        if self.servers.contains_key(&server) {
            Ok(())
        } else {
            Err(invalid(format!("{what} refers to missing server `{server}`")))
        }
    }

    fn create_schedule(&mut self, schedule: &Schedule) -> StoreResult<()> {
        fresh(&self.schedules, &schedule.id, "schedule", schedule.id)?;
        self.check_server_exists(schedule.server, &format!("schedule `{}`", schedule.id))?;
        self.schedules.insert(schedule.id, schedule.clone());
        Ok(())
    }

    fn get_schedule(&self, id: ScheduleId) -> StoreResult<Schedule> {
        found(&self.schedules, &id, "schedule", id).cloned()
    }

    fn list_schedules(&self, server: ServerId) -> StoreResult<Vec<Schedule>> {
        found(&self.servers, &server, "server", server)?;
        let mut schedules: Vec<&Schedule> = self.schedules.values().filter(|s| s.server == server).collect();
        schedules.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
        Ok(schedules.into_iter().cloned().collect())
    }

    fn update_schedule(&mut self, schedule: &Schedule) -> StoreResult<()> {
        found(&self.schedules, &schedule.id, "schedule", schedule.id)?;
        self.check_server_exists(schedule.server, &format!("schedule `{}`", schedule.id))?;
        self.schedules.insert(schedule.id, schedule.clone());
        Ok(())
    }

    fn delete_schedule(&mut self, id: ScheduleId) -> StoreResult<()> {
        self.schedules.remove(&id).map(drop).ok_or_else(|| StoreError::not_found("schedule", id))
    }

    fn due_schedules(&self, now: DateTime<Utc>) -> StoreResult<Vec<Schedule>> {
        let mut due: Vec<&Schedule> =
            self.schedules.values().filter(|s| s.enabled && s.next_run_at.is_some_and(|at| at <= now)).collect();
        due.sort_by_key(|s| (s.next_run_at, s.id));
        Ok(due.into_iter().cloned().collect())
    }

    fn claim_schedule_run(
        &mut self,
        id: ScheduleId,
        due: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
        ran_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let schedule = found_mut(&mut self.schedules, &id, "schedule", id)?;
        if !schedule.enabled || schedule.next_run_at != Some(due) {
            return Ok(false);
        }
        schedule.last_run_at = Some(ran_at);
        schedule.next_run_at = next;
        Ok(true)
    }

    fn create_api_key(&mut self, key: &ApiKey) -> StoreResult<()> {
        fresh(&self.api_keys, &key.id, "api key", key.id)?;
        if self.api_keys.values().any(|k| k.prefix == key.prefix) {
            return Err(duplicate("api key", format!("prefix `{}`", key.prefix)));
        }
        if !self.users.contains_key(&key.user) {
            return Err(invalid(format!("api key `{}` refers to missing user `{}`", key.id, key.user)));
        }
        self.api_keys.insert(key.id, key.clone());
        Ok(())
    }

    fn find_api_key(&self, prefix: &str) -> StoreResult<Option<ApiKey>> {
        Ok(self.api_keys.values().find(|k| k.prefix == prefix).cloned())
    }

    fn list_api_keys(&self, user: UserId) -> StoreResult<Vec<ApiKey>> {
        found(&self.users, &user, "user", user)?;
        let mut keys: Vec<&ApiKey> = self.api_keys.values().filter(|k| k.user == user).collect();
        keys.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(keys.into_iter().cloned().collect())
    }

    fn touch_api_key(&mut self, id: ApiKeyId, at: DateTime<Utc>) -> StoreResult<()> {
        found_mut(&mut self.api_keys, &id, "api key", id)?.last_used_at = Some(at);
        Ok(())
    }

    fn delete_api_key(&mut self, id: ApiKeyId) -> StoreResult<()> {
        self.api_keys.remove(&id).map(drop).ok_or_else(|| StoreError::not_found("api key", id))
    }

    fn create_backup(&mut self, backup: &Backup) -> StoreResult<()> {
        fresh(&self.backups, &backup.id, "backup", backup.id)?;
        self.check_server_exists(backup.server, &format!("backup `{}`", backup.id))?;
        self.backups.insert(backup.id, backup.clone());
        Ok(())
    }

    fn get_backup(&self, id: BackupId) -> StoreResult<Backup> {
        found(&self.backups, &id, "backup", id).cloned()
    }

    fn list_backups(&self, server: ServerId) -> StoreResult<Vec<Backup>> {
        found(&self.servers, &server, "server", server)?;
        let mut backups: Vec<&Backup> = self.backups.values().filter(|b| b.server == server).collect();
        backups.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(backups.into_iter().cloned().collect())
    }

    fn update_backup(&mut self, backup: &Backup) -> StoreResult<()> {
        found(&self.backups, &backup.id, "backup", backup.id)?;
        self.check_server_exists(backup.server, &format!("backup `{}`", backup.id))?;
        self.backups.insert(backup.id, backup.clone());
        Ok(())
    }

    fn delete_backup(&mut self, id: BackupId) -> StoreResult<()> {
        if found(&self.backups, &id, "backup", id)?.locked {
            return Err(in_use("backup", id, "locked; unlock it before deleting"));
        }
        self.backups.remove(&id);
        Ok(())
    }

    fn append_audit(&mut self, event: &AuditEvent) -> StoreResult<()> {
        if self.audit.iter().any(|e| e.id == event.id) {
            return Err(duplicate("audit event", format!("id `{}`", event.id)));
        }
        self.audit.push(event.clone());
        Ok(())
    }

    fn list_audit(&self, subject: Option<&AuditSubject>, page: Page) -> StoreResult<Vec<AuditEvent>> {
        // Newest appended first, then a stable sort: equal timestamps keep that order.
        let mut events: Vec<&AuditEvent> =
            self.audit.iter().rev().filter(|e| subject.is_none_or(|s| e.subject == *s)).collect();
        events.sort_by_key(|e| Reverse(e.at));
        Ok(paged(events.into_iter().cloned(), page))
    }
}

// The repository traits, once for every `Backing` (the store and its transactions).

#[async_trait]
impl<B: Backing> UserRepo for B {
    async fn create_user(&self, user: &User) -> StoreResult<()> {
        self.write(|s| s.create_user(user)).await
    }
    async fn get_user(&self, id: UserId) -> StoreResult<User> {
        self.read(|s| s.get_user(id)).await
    }
    async fn find_user_by_login(&self, login: &str) -> StoreResult<Option<User>> {
        self.read(|s| s.find_user_by_login(login)).await
    }
    async fn list_users(&self, page: Page) -> StoreResult<Vec<User>> {
        self.read(|s| s.list_users(page)).await
    }
    async fn update_user(&self, user: &User) -> StoreResult<()> {
        self.write(|s| s.update_user(user)).await
    }
    async fn delete_user(&self, id: UserId) -> StoreResult<()> {
        self.write(|s| s.delete_user(id)).await
    }
}

#[async_trait]
impl<B: Backing> LocationRepo for B {
    async fn create_location(&self, location: &Location) -> StoreResult<()> {
        self.write(|s| s.create_location(location)).await
    }
    async fn list_locations(&self) -> StoreResult<Vec<Location>> {
        self.read(|s| s.list_locations()).await
    }
    async fn update_location(&self, location: &Location) -> StoreResult<()> {
        self.write(|s| s.update_location(location)).await
    }
    async fn delete_location(&self, id: LocationId) -> StoreResult<()> {
        self.write(|s| s.delete_location(id)).await
    }
}

#[async_trait]
impl<B: Backing> NodeRepo for B {
    async fn create_node(&self, node: &Node) -> StoreResult<()> {
        self.write(|s| s.create_node(node)).await
    }
    async fn get_node(&self, id: NodeId) -> StoreResult<Node> {
        self.read(|s| s.get_node(id)).await
    }
    async fn list_nodes(&self) -> StoreResult<Vec<Node>> {
        self.read(|s| s.list_nodes()).await
    }
    async fn update_node(&self, node: &Node) -> StoreResult<()> {
        self.write(|s| s.update_node(node)).await
    }
    async fn delete_node(&self, id: NodeId) -> StoreResult<()> {
        self.write(|s| s.delete_node(id)).await
    }
    async fn record_heartbeat(&self, id: NodeId, at: DateTime<Utc>) -> StoreResult<()> {
        self.write(|s| s.record_heartbeat(id, at)).await
    }
    async fn record_heartbeats(&self, nodes: &[NodeId], at: DateTime<Utc>) -> StoreResult<Vec<HeartbeatRecorded>> {
        self.write(|s| Ok(s.record_heartbeats(nodes, at))).await
    }
    async fn mark_stale_nodes_offline(&self, cutoff: DateTime<Utc>) -> StoreResult<Vec<NodeId>> {
        self.write(|s| s.mark_stale_nodes_offline(cutoff)).await
    }
    async fn node_usage(&self) -> StoreResult<Vec<NodeUsage>> {
        self.read(|s| s.node_usage()).await
    }
}

#[async_trait]
impl<B: Backing> AllocationRepo for B {
    async fn create_allocations(&self, allocations: &[Allocation]) -> StoreResult<()> {
        self.write(|s| s.create_allocations(allocations)).await
    }
    async fn get_allocation(&self, id: AllocationId) -> StoreResult<Allocation> {
        self.read(|s| s.get_allocation(id)).await
    }
    async fn list_allocations(&self, node: NodeId) -> StoreResult<Vec<Allocation>> {
        self.read(|s| s.list_allocations(node)).await
    }
    async fn claim_free_allocation(&self, node: NodeId, server: ServerId) -> StoreResult<Option<Allocation>> {
        self.write(|s| s.claim_free_allocation(node, server)).await
    }
    async fn delete_allocation(&self, id: AllocationId) -> StoreResult<()> {
        self.write(|s| s.delete_allocation(id)).await
    }
}

#[async_trait]
impl<B: Backing> NestRepo for B {
    async fn create_nest(&self, nest: &Nest) -> StoreResult<()> {
        self.write(|s| s.create_nest(nest)).await
    }
    async fn get_nest(&self, id: NestId) -> StoreResult<Nest> {
        self.read(|s| found(&s.nests, &id, "nest", id).cloned()).await
    }
    async fn list_nests(&self) -> StoreResult<Vec<Nest>> {
        self.read(|s| s.list_nests()).await
    }
    async fn update_nest(&self, nest: &Nest) -> StoreResult<()> {
        self.write(|s| s.update_nest(nest)).await
    }
    async fn delete_nest(&self, id: NestId) -> StoreResult<()> {
        self.write(|s| s.delete_nest(id)).await
    }
}

#[async_trait]
impl<B: Backing> EggRepo for B {
    async fn create_egg(&self, egg: &Egg) -> StoreResult<()> {
        self.write(|s| s.create_egg(egg)).await
    }
    async fn get_egg(&self, id: EggId) -> StoreResult<Egg> {
        self.read(|s| s.get_egg(id)).await
    }
    async fn list_eggs(&self) -> StoreResult<Vec<Egg>> {
        self.read(|s| s.list_eggs()).await
    }
    async fn update_egg(&self, egg: &Egg) -> StoreResult<()> {
        self.write(|s| s.update_egg(egg)).await
    }
    async fn delete_egg(&self, id: EggId) -> StoreResult<()> {
        self.write(|s| s.delete_egg(id)).await
    }
}

#[async_trait]
impl<B: Backing> ServerRepo for B {
    async fn create_server(&self, server: &Server) -> StoreResult<()> {
        self.write(|s| s.create_server(server)).await
    }
    async fn get_server(&self, id: ServerId) -> StoreResult<Server> {
        self.read(|s| s.get_server(id)).await
    }
    async fn list_servers(&self, filter: &ServerFilter, page: Page) -> StoreResult<Vec<Server>> {
        self.read(|s| s.list_servers(filter, page)).await
    }
    async fn update_server(&self, server: &Server) -> StoreResult<Server> {
        self.write(|s| s.update_server(server)).await
    }
    async fn transition_server(&self, expected_version: u64, event: &LifecycleEvent) -> StoreResult<Server> {
        self.write(|s| s.transition_server(expected_version, event)).await
    }
    async fn server_events(&self, id: ServerId, limit: u64) -> StoreResult<Vec<LifecycleEvent>> {
        self.read(|s| s.server_events(id, limit)).await
    }
    async fn apply_node_events(&self, events: &[(NodeId, LifecycleEvent)]) -> StoreResult<Vec<EventOutcome>> {
        self.write(|s| s.apply_node_events(events)).await
    }
    async fn delete_server(&self, id: ServerId) -> StoreResult<()> {
        self.write(|s| s.delete_server(id)).await
    }
}

#[async_trait]
impl<B: Backing> ScheduleRepo for B {
    async fn create_schedule(&self, schedule: &Schedule) -> StoreResult<()> {
        self.write(|s| s.create_schedule(schedule)).await
    }
    async fn get_schedule(&self, id: ScheduleId) -> StoreResult<Schedule> {
        self.read(|s| s.get_schedule(id)).await
    }
    async fn list_schedules(&self, server: ServerId) -> StoreResult<Vec<Schedule>> {
        self.read(|s| s.list_schedules(server)).await
    }
    async fn update_schedule(&self, schedule: &Schedule) -> StoreResult<()> {
        self.write(|s| s.update_schedule(schedule)).await
    }
    async fn delete_schedule(&self, id: ScheduleId) -> StoreResult<()> {
        self.write(|s| s.delete_schedule(id)).await
    }
    async fn due_schedules(&self, now: DateTime<Utc>) -> StoreResult<Vec<Schedule>> {
        self.read(|s| s.due_schedules(now)).await
    }
    async fn claim_schedule_run(
        &self,
        id: ScheduleId,
        due: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
        ran_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.write(|s| s.claim_schedule_run(id, due, next, ran_at)).await
    }
}

#[async_trait]
impl<B: Backing> ApiKeyRepo for B {
    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        self.write(|s| s.create_api_key(key)).await
    }
    async fn find_api_key(&self, prefix: &str) -> StoreResult<Option<ApiKey>> {
        self.read(|s| s.find_api_key(prefix)).await
    }
    async fn list_api_keys(&self, user: UserId) -> StoreResult<Vec<ApiKey>> {
        self.read(|s| s.list_api_keys(user)).await
    }
    async fn touch_api_key(&self, id: ApiKeyId, at: DateTime<Utc>) -> StoreResult<()> {
        self.write(|s| s.touch_api_key(id, at)).await
    }
    async fn delete_api_key(&self, id: ApiKeyId) -> StoreResult<()> {
        self.write(|s| s.delete_api_key(id)).await
    }
}

#[async_trait]
impl<B: Backing> BackupRepo for B {
    async fn create_backup(&self, backup: &Backup) -> StoreResult<()> {
        self.write(|s| s.create_backup(backup)).await
    }
    async fn get_backup(&self, id: BackupId) -> StoreResult<Backup> {
        self.read(|s| s.get_backup(id)).await
    }
    async fn list_backups(&self, server: ServerId) -> StoreResult<Vec<Backup>> {
        self.read(|s| s.list_backups(server)).await
    }
    async fn update_backup(&self, backup: &Backup) -> StoreResult<()> {
        self.write(|s| s.update_backup(backup)).await
    }
    async fn delete_backup(&self, id: BackupId) -> StoreResult<()> {
        self.write(|s| s.delete_backup(id)).await
    }
}

#[async_trait]
impl<B: Backing> AuditRepo for B {
    async fn append_audit(&self, event: &AuditEvent) -> StoreResult<()> {
        self.write(|s| s.append_audit(event)).await
    }
    async fn list_audit(&self, subject: Option<&AuditSubject>, page: Page) -> StoreResult<Vec<AuditEvent>> {
        self.read(|s| s.list_audit(subject, page)).await
    }
}

#[async_trait]
impl<B: Backing> SubuserRepo for B {
    async fn put_subuser(&self, subuser: &Subuser) -> StoreResult<()> {
        self.write(|s| s.put_subuser(subuser)).await
    }
    async fn get_subuser(&self, server: ServerId, user: UserId) -> StoreResult<Option<Subuser>> {
        self.read(|s| s.get_subuser(server, user)).await
    }
    async fn list_subusers(&self, server: ServerId) -> StoreResult<Vec<Subuser>> {
        self.read(|s| s.list_subusers(server)).await
    }
    async fn delete_subuser(&self, server: ServerId, user: UserId) -> StoreResult<()> {
        self.write(|s| s.delete_subuser(server, user)).await
    }
}

#[async_trait]
impl<B: Backing> TotpRepo for B {
    async fn put_totp(&self, totp: &UserTotp) -> StoreResult<()> {
        self.write(|s| s.put_totp(totp)).await
    }
    async fn get_totp(&self, user: UserId) -> StoreResult<Option<UserTotp>> {
        self.read(|s| s.get_totp(user)).await
    }
    async fn delete_totp(&self, user: UserId) -> StoreResult<()> {
        self.write(|s| s.delete_totp(user)).await
    }
}

impl State {
    fn record_refs(&mut self, kind: RecordKind, keys: &[String]) -> StoreResult<Vec<RecordRef>> {
        keys.iter().try_for_each(|key| check_record_key(key))?;
        Ok(keys.iter().map(|key| self.record_ref(kind, key).clone()).collect())
    }

    /// The ref of a checked key, numbered if new.
    fn record_ref(&mut self, kind: RecordKind, key: &str) -> &mut RecordRef {
        let next = self.ref_numbers.entry(kind).or_default();
        self.refs.entry((kind, key.to_owned())).or_insert_with(|| {
            *next += 1;
            RecordRef {
                kind,
                key: key.to_owned(),
                number: *next,
                short: RecordRef::short_of(key),
                external_id: None,
                extra: std::collections::BTreeMap::new(),
            }
        })
    }

    fn find_record_refs(&self, kind: RecordKind, lookup: RefLookup<'_>) -> Vec<RecordRef> {
        let matches = |r: &RecordRef| match lookup {
            RefLookup::Number(n) => r.number == n,
            RefLookup::External(e) => r.external_id.as_deref() == Some(e),
            RefLookup::Short(s) => r.short == s,
        };
        let mut found: Vec<RecordRef> = self.refs.values().filter(|r| r.kind == kind && matches(r)).cloned().collect();
        found.sort_by_key(|r| r.number);
        found.truncate(2);
        found
    }

    fn set_external_id(&mut self, kind: RecordKind, key: &str, external_id: Option<&str>) -> StoreResult<RecordRef> {
        check_record_key(key)?;
        if let Some(external) = external_id {
            check_external_id(external)?;
            if self.refs.values().any(|r| r.kind == kind && r.key != key && r.external_id.as_deref() == Some(external))
            {
                return Err(duplicate("record ref", format!("{} external id `{external}`", kind.as_str())));
            }
        }
        let record = self.record_ref(kind, key);
        record.external_id = external_id.map(str::to_owned);
        Ok(record.clone())
    }
}

#[async_trait]
impl<B: Backing> RecordRefRepo for B {
    async fn record_refs(&self, kind: RecordKind, keys: &[String]) -> StoreResult<Vec<RecordRef>> {
        self.write(|s| s.record_refs(kind, keys)).await
    }
    async fn find_record_refs(&self, kind: RecordKind, lookup: RefLookup<'_>) -> StoreResult<Vec<RecordRef>> {
        self.read(|s| Ok(s.find_record_refs(kind, lookup))).await
    }
    async fn set_external_id(&self, kind: RecordKind, key: &str, external_id: Option<&str>) -> StoreResult<RecordRef> {
        self.write(|s| s.set_external_id(kind, key, external_id)).await
    }
    async fn set_record_extra(
        &self,
        kind: RecordKind,
        key: &str,
        extra: &std::collections::BTreeMap<String, String>,
    ) -> StoreResult<RecordRef> {
        self.write(|s| {
            check_record_key(key)?;
            check_record_extra(extra)?;
            let record = s.record_ref(kind, key);
            record.extra = extra.clone();
            Ok(record.clone())
        })
        .await
    }
    async fn forget_record_refs(&self, kind: RecordKind, keys: &[String]) -> StoreResult<()> {
        self.write(|s| {
            for key in keys {
                s.refs.remove(&(kind, key.clone()));
            }
            Ok(())
        })
        .await
    }
}
