//! Locations, nodes, allocations, eggs.

use super::{duplicate, in_use, invalid};
use crate::backend;
use crate::connection::AnyConnection;
use crate::convert::*;
use crate::error::{SqlError, SqlResult};
use crate::schema::{allocations, egg_variables, eggs, locations, nests, nodes, servers};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use nexus_core::ids::*;
use nexus_core::model::*;
use nexus_core::store::{HeartbeatRecorded, NodeUsage, StoreError};
use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = locations)]
struct LocationRow {
    id: String,
    short_code: String,
    long_name: String,
}

pub(crate) fn create_location(c: &mut AnyConnection, location: &Location) -> SqlResult<()> {
    let id = location.id.to_string();
    if location_exists(c, &id)? {
        return Err(duplicate("location", format!("id `{}`", location.id)).into());
    }
    let taken = locations::table.filter(locations::short_code.eq(&location.short)).count().get_result::<i64>(c)? > 0;
    if taken {
        return Err(duplicate("location", format!("short code `{}`", location.short)).into());
    }
    let row = LocationRow { id, short_code: location.short.clone(), long_name: location.long.clone() };
    diesel::insert_into(locations::table).values(&row).execute(c)?;
    Ok(())
}

fn location_exists(c: &mut AnyConnection, id: &str) -> SqlResult<bool> {
    Ok(locations::table.find(id).select(locations::id).first::<String>(c).optional()?.is_some())
}

pub(crate) fn list_locations(c: &mut AnyConnection) -> SqlResult<Vec<Location>> {
    let rows: Vec<LocationRow> =
        locations::table.order((locations::short_code, locations::id)).select(LocationRow::as_select()).load(c)?;
    rows.into_iter()
        .map(|row| Ok(Location { id: parse_id(&row.id, "location id")?, short: row.short_code, long: row.long_name }))
        .collect()
}

pub(crate) fn update_location(c: &mut AnyConnection, location: &Location) -> SqlResult<()> {
    let id = location.id.to_string();
    if !location_exists(c, &id)? {
        return Err(StoreError::not_found("location", location.id).into());
    }
    let taken = locations::table
        .filter(locations::short_code.eq(&location.short))
        .filter(locations::id.ne(&id))
        .count()
        .get_result::<i64>(c)?
        > 0;
    if taken {
        return Err(duplicate("location", format!("short code `{}`", location.short)).into());
    }
    let row = LocationRow { id: id.clone(), short_code: location.short.clone(), long_name: location.long.clone() };
    diesel::update(locations::table.find(&id)).set(&row).execute(c)?;
    Ok(())
}

pub(crate) fn delete_location(c: &mut AnyConnection, id: LocationId) -> SqlResult<()> {
    let key = id.to_string();
    if !location_exists(c, &key)? {
        return Err(StoreError::not_found("location", id).into());
    }
    let used = nodes::table.filter(nodes::location_id.eq(&key)).count().get_result::<i64>(c)?;
    if used > 0 {
        return Err(in_use("location", id, format!("used by {used} node(s)")).into());
    }
    diesel::delete(locations::table.find(&key)).execute(c)?;
    Ok(())
}

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = nodes, treat_none_as_null = true)]
struct NodeRow {
    id: String,
    name: String,
    fqdn: String,
    daemon_port: i32,
    token_hash: String,
    location_id: Option<String>,
    tags: String,
    memory_mb: i64,
    disk_mb: i64,
    cpu_percent: i64,
    over_memory_percent: Option<i64>,
    over_disk_percent: Option<i64>,
    over_cpu_percent: Option<i64>,
    maintenance: bool,
    status: String,
    last_heartbeat: Option<chrono::NaiveDateTime>,
}

impl NodeRow {
    fn new(node: &Node) -> SqlResult<Self> {
        Ok(Self {
            id: node.id.to_string(),
            name: node.name.clone(),
            fqdn: node.fqdn.clone(),
            daemon_port: i32::from(node.daemon_port),
            token_hash: node.token_hash.clone(),
            location_id: node.location.map(|l| l.to_string()),
            tags: to_json(&node.tags, "node tags")?,
            memory_mb: to_i64(node.capacity.memory_mb, "node memory")?,
            disk_mb: to_i64(node.capacity.disk_mb, "node disk")?,
            cpu_percent: to_i64(node.capacity.cpu_percent, "node cpu")?,
            over_memory_percent: node.overallocation.memory_percent.map(i64::from),
            over_disk_percent: node.overallocation.disk_percent.map(i64::from),
            over_cpu_percent: node.overallocation.cpu_percent.map(i64::from),
            maintenance: node.maintenance,
            status: enum_name(&node.status, "node status")?,
            last_heartbeat: to_db_time_opt(node.last_heartbeat),
        })
    }

    fn into_model(self) -> SqlResult<Node> {
        let percent = |value: Option<i64>| value.map(|v| narrow::<u32>(v, "node overallocation")).transpose();
        Ok(Node {
            id: parse_id(&self.id, "node id")?,
            name: self.name,
            fqdn: self.fqdn,
            daemon_port: narrow(i64::from(self.daemon_port), "node daemon port")?,
            token_hash: self.token_hash,
            location: self.location_id.as_deref().map(|l| parse_id(l, "node location")).transpose()?,
            tags: from_json(&self.tags, "node tags")?,
            capacity: NodeCapacity {
                memory_mb: to_u64(self.memory_mb, "node memory")?,
                disk_mb: to_u64(self.disk_mb, "node disk")?,
                cpu_percent: to_u64(self.cpu_percent, "node cpu")?,
            },
            overallocation: Overallocation {
                memory_percent: percent(self.over_memory_percent)?,
                disk_percent: percent(self.over_disk_percent)?,
                cpu_percent: percent(self.over_cpu_percent)?,
            },
            maintenance: self.maintenance,
            status: parse_enum(&self.status, "node status")?,
            last_heartbeat: from_db_time_opt(self.last_heartbeat),
        })
    }
}

pub(crate) fn node_exists(c: &mut AnyConnection, id: &str) -> SqlResult<bool> {
    Ok(nodes::table.find(id).select(nodes::id).first::<String>(c).optional()?.is_some())
}

fn check_node(c: &mut AnyConnection, row: &NodeRow, node: &Node) -> SqlResult<()> {
    let others = nodes::table.filter(nodes::id.ne(&row.id));
    if others.filter(nodes::name.eq(&row.name)).count().get_result::<i64>(c)? > 0 {
        return Err(duplicate("node", format!("name `{}`", node.name)).into());
    }
    if let (Some(location), Some(key)) = (node.location, row.location_id.as_deref()) {
        if !location_exists(c, key)? {
            return Err(invalid(format!("node `{}` refers to missing location `{location}`", node.id)).into());
        }
    }
    Ok(())
}

pub(crate) fn create_node(c: &mut AnyConnection, node: &Node) -> SqlResult<()> {
    let row = NodeRow::new(node)?;
    if node_exists(c, &row.id)? {
        return Err(duplicate("node", format!("id `{}`", node.id)).into());
    }
    check_node(c, &row, node)?;
    diesel::insert_into(nodes::table).values(&row).execute(c)?;
    Ok(())
}

pub(crate) fn get_node(c: &mut AnyConnection, id: NodeId) -> SqlResult<Node> {
    let row = nodes::table.find(id.to_string()).select(NodeRow::as_select()).first(c).optional()?;
    row.ok_or_else(|| StoreError::not_found("node", id))?.into_model()
}

pub(crate) fn list_nodes(c: &mut AnyConnection) -> SqlResult<Vec<Node>> {
    let rows: Vec<NodeRow> = nodes::table.order((nodes::name, nodes::id)).select(NodeRow::as_select()).load(c)?;
    rows.into_iter().map(NodeRow::into_model).collect()
}

pub(crate) fn update_node(c: &mut AnyConnection, node: &Node) -> SqlResult<()> {
    let row = NodeRow::new(node)?;
    if !node_exists(c, &row.id)? {
        return Err(StoreError::not_found("node", node.id).into());
    }
    check_node(c, &row, node)?;
    diesel::update(nodes::table.find(&row.id)).set(&row).execute(c)?;
    Ok(())
}

pub(crate) fn delete_node(c: &mut AnyConnection, id: NodeId) -> SqlResult<()> {
    let key = id.to_string();
    if !node_exists(c, &key)? {
        return Err(StoreError::not_found("node", id).into());
    }
    let placed = servers::table.filter(servers::node_id.eq(&key)).count().get_result::<i64>(c)?;
    if placed > 0 {
        return Err(in_use("node", id, format!("has {placed} server(s)")).into());
    }
    // With no servers, all of the node's allocations are free and go with it.
    diesel::delete(allocations::table.filter(allocations::node_id.eq(&key))).execute(c)?;
    diesel::delete(nodes::table.find(&key)).execute(c)?;
    Ok(())
}

pub(crate) fn record_heartbeat(c: &mut AnyConnection, id: NodeId, at: DateTime<Utc>) -> SqlResult<()> {
    let key = id.to_string();
    if !node_exists(c, &key)? {
        return Err(StoreError::not_found("node", id).into());
    }
    let online = enum_name(&NodeStatus::Online, "node status")?;
    diesel::update(nodes::table.find(&key))
        .set((nodes::last_heartbeat.eq(Some(to_db_time(at))), nodes::status.eq(online)))
        .execute(c)?;
    Ok(())
}

/// Heartbeats of many nodes in one transaction: their rows locked and read (what each was),
/// then one `UPDATE` per [`INSERT_CHUNK`] nodes.
pub(crate) fn record_heartbeats(
    c: &mut AnyConnection,
    ids: &[NodeId],
    at: DateTime<Utc>,
) -> SqlResult<Vec<HeartbeatRecorded>> {
    let mut keys: Vec<String> = ids.iter().map(NodeId::to_string).collect();
    keys.sort_unstable();
    keys.dedup();
    let online = enum_name(&NodeStatus::Online, "node status")?;
    let mut recorded = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(INSERT_CHUNK) {
        let found = backend::lock_nodes(c, chunk)?;
        if found.is_empty() {
            continue;
        }
        let mut present = Vec::with_capacity(found.len());
        for node in found {
            // A status this version cannot read (written by another version) counts as
            // offline: the heartbeat then reconciles the node, and one odd row cannot fail
            // the heartbeats of every node in the batch.
            let was = parse_enum(&node.status, "node status").unwrap_or(NodeStatus::Offline);
            recorded.push(HeartbeatRecorded::new(parse_id(&node.id, "node id")?, was, node.last_heartbeat.is_none()));
            present.push(node.id);
        }
        diesel::update(nodes::table.filter(nodes::id.eq_any(&present)))
            .set((nodes::last_heartbeat.eq(Some(to_db_time(at))), nodes::status.eq(&online)))
            .execute(c)?;
    }
    Ok(recorded)
}

pub(crate) fn mark_stale_nodes_offline(c: &mut AnyConnection, cutoff: DateTime<Utc>) -> SqlResult<Vec<NodeId>> {
    let cutoff = to_db_time(cutoff);
    let online = enum_name(&NodeStatus::Online, "node status")?;
    let offline = enum_name(&NodeStatus::Offline, "node status")?;
    // A node that is online but never sent a heartbeat counts as stale.
    let stale =
        nodes::status.eq(online.clone()).and(nodes::last_heartbeat.is_null().or(nodes::last_heartbeat.lt(cutoff)));
    let candidates: Vec<String> =
        // Id order, as heartbeat batches lock nodes: the two cannot deadlock.
        nodes::table.filter(stale.clone()).order(nodes::id).select(nodes::id).load(c)?;
    let mut marked = Vec::with_capacity(candidates.len());
    for id in candidates {
        // Re-checked per row: of two panels sweeping at once, only one reports each node.
        let changed = diesel::update(nodes::table.find(&id).filter(stale.clone()))
            .set(nodes::status.eq(offline.clone()))
            .execute(c)?;
        if changed == 1 {
            marked.push(parse_id(&id, "node id")?);
        }
    }
    Ok(marked)
}

pub(crate) fn node_usage(c: &mut AnyConnection) -> SqlResult<Vec<NodeUsage>> {
    let ids: Vec<String> = nodes::table.order((nodes::name, nodes::id)).select(nodes::id).load(c)?;
    let totals: HashMap<String, backend::ServerTotals> =
        backend::server_totals(c, None)?.into_iter().map(|t| (t.node_id.clone(), t)).collect();
    let free: HashMap<String, i64> = allocations::table
        .filter(allocations::server_id.is_null())
        .group_by(allocations::node_id)
        .select((allocations::node_id, diesel::dsl::count_star()))
        .load::<(String, i64)>(c)?
        .into_iter()
        .collect();
    ids.into_iter()
        .map(|id| {
            let mut usage = NodeUsage { node: Some(parse_id(&id, "node id")?), ..NodeUsage::default() };
            if let Some(t) = totals.get(&id) {
                add_totals(&mut usage, t)?;
            }
            usage.free_allocations = to_u64(free.get(&id).copied().unwrap_or(0), "free allocations")?;
            Ok(usage)
        })
        .collect()
}

/// A node's server count and limit sums, as [`backend::server_totals`] read them.
fn add_totals(usage: &mut NodeUsage, t: &backend::ServerTotals) -> SqlResult<()> {
    usage.servers = to_u64(t.servers, "server count")?;
    usage.memory_mb = to_u64(t.memory_mb, "memory sum")?;
    usage.disk_mb = to_u64(t.disk_mb, "disk sum")?;
    usage.cpu_percent = to_u64(t.cpu_percent, "cpu sum")?;
    Ok(())
}

/// One node's usage, its row locked for the transaction (see `NodeRepo::lock_node_usage`).
pub(crate) fn lock_node_usage(c: &mut AnyConnection, node: NodeId) -> SqlResult<NodeUsage> {
    let key = node.to_string();
    if backend::lock_nodes(c, std::slice::from_ref(&key))?.is_empty() {
        return Err(StoreError::not_found("node", node).into());
    }
    let mut usage = NodeUsage { node: Some(node), ..NodeUsage::default() };
    if let Some(t) = backend::server_totals(c, Some(&key))?.into_iter().next() {
        add_totals(&mut usage, &t)?;
    }
    let free: i64 = allocations::table
        .filter(allocations::node_id.eq(&key).and(allocations::server_id.is_null()))
        .count()
        .get_result(c)?;
    usage.free_allocations = to_u64(free, "free allocations")?;
    Ok(usage)
}

#[derive(Queryable, Selectable, Insertable, Clone)]
#[diesel(table_name = allocations)]
pub(crate) struct AllocationRow {
    pub id: String,
    pub node_id: String,
    pub ip: String,
    pub ip_key: String,
    pub port: i32,
    pub alias: Option<String>,
    pub server_id: Option<String>,
}

impl AllocationRow {
    pub(crate) fn new(allocation: &Allocation) -> Self {
        Self {
            id: allocation.id.to_string(),
            node_id: allocation.node.to_string(),
            ip: allocation.ip.to_string(),
            ip_key: ip_key(allocation.ip),
            port: i32::from(allocation.port),
            alias: allocation.alias.clone(),
            server_id: allocation.server.map(|s| s.to_string()),
        }
    }

    pub(crate) fn into_model(self) -> SqlResult<Allocation> {
        Ok(Allocation {
            id: parse_id(&self.id, "allocation id")?,
            node: parse_id(&self.node_id, "allocation node")?,
            ip: parse_ip(&self.ip)?,
            alias: self.alias,
            port: narrow(i64::from(self.port), "allocation port")?,
            server: self.server_id.as_deref().map(|s| parse_id(s, "allocation server")).transpose()?,
        })
    }
}

/// Rows per multi-row `INSERT`: well below every backend's limit on bound parameters.
pub(crate) const INSERT_CHUNK: usize = 500;

pub(crate) fn create_allocations(c: &mut AnyConnection, batch: &[Allocation]) -> SqlResult<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let rows: Vec<AllocationRow> = batch.iter().map(AllocationRow::new).collect();
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let existing: HashSet<String> =
        allocations::table.filter(allocations::id.eq_any(&ids)).select(allocations::id).load(c)?.into_iter().collect();
    // Per node: the addresses already taken among this batch's ports.
    let mut taken: HashSet<(String, String, i32)> = HashSet::new();
    let mut checked_nodes: HashSet<&str> = HashSet::new();
    let mut known_nodes: HashSet<&str> = HashSet::new();
    for row in &rows {
        if checked_nodes.insert(&row.node_id) {
            if !node_exists(c, &row.node_id)? {
                continue; // reported below, in batch order
            }
            known_nodes.insert(&row.node_id);
            let ports: Vec<i32> = rows.iter().filter(|r| r.node_id == row.node_id).map(|r| r.port).collect();
            let found: Vec<(String, i32)> = allocations::table
                .filter(allocations::node_id.eq(&row.node_id))
                .filter(allocations::port.eq_any(&ports))
                .select((allocations::ip_key, allocations::port))
                .load(c)?;
            taken.extend(found.into_iter().map(|(ip, port)| (row.node_id.clone(), ip, port)));
        }
    }
    let mut seen_ids = HashSet::new();
    for (allocation, row) in batch.iter().zip(&rows) {
        if existing.contains(&row.id) || !seen_ids.insert(&row.id) {
            return Err(duplicate("allocation", format!("id `{}`", allocation.id)).into());
        }
        if !known_nodes.contains(row.node_id.as_str()) {
            let message = format!("allocation `{}` refers to missing node `{}`", allocation.id, allocation.node);
            return Err(invalid(message).into());
        }
        if let Some(server) = allocation.server {
            let message =
                format!("allocation `{}` must be created unassigned (it names server `{server}`)", allocation.id);
            return Err(invalid(message).into());
        }
        if !taken.insert((row.node_id.clone(), row.ip_key.clone(), row.port)) {
            let detail = format!("{}:{} on node `{}`", allocation.ip, allocation.port, allocation.node);
            return Err(duplicate("allocation", detail).into());
        }
    }
    insert_allocation_rows(c, &rows)
}

/// Multi-row inserts, [`INSERT_CHUNK`] rows at a time.
pub(crate) fn insert_allocation_rows(c: &mut AnyConnection, rows: &[AllocationRow]) -> SqlResult<()> {
    for chunk in rows.chunks(INSERT_CHUNK) {
        backend::insert_rows!(c, allocations::table, chunk)?;
    }
    Ok(())
}

pub(crate) fn get_allocation(c: &mut AnyConnection, id: AllocationId) -> SqlResult<Allocation> {
    let row = allocations::table.find(id.to_string()).select(AllocationRow::as_select()).first(c).optional()?;
    row.ok_or_else(|| StoreError::not_found("allocation", id))?.into_model()
}

pub(crate) fn list_allocations(c: &mut AnyConnection, node: NodeId) -> SqlResult<Vec<Allocation>> {
    let key = node.to_string();
    if !node_exists(c, &key)? {
        return Err(StoreError::not_found("node", node).into());
    }
    let rows: Vec<AllocationRow> = allocations::table
        .filter(allocations::node_id.eq(&key))
        .order((allocations::ip_key, allocations::port, allocations::id))
        .select(AllocationRow::as_select())
        .load(c)?;
    rows.into_iter().map(AllocationRow::into_model).collect()
}

pub(crate) fn claim_free_allocation(
    c: &mut AnyConnection,
    node: NodeId,
    server: ServerId,
) -> SqlResult<Option<Allocation>> {
    let node_key = node.to_string();
    let server_key = server.to_string();
    if !node_exists(c, &node_key)? {
        return Err(StoreError::not_found("node", node).into());
    }
    // The server may not exist yet: claiming first and then creating the server with the
    // claimed allocation (ideally in one transaction) is the placement flow.
    let placed_on: Option<String> = servers::table.find(&server_key).select(servers::node_id).first(c).optional()?;
    if let Some(other) = placed_on.as_ref().filter(|other| **other != node_key) {
        return Err(invalid(format!("server `{server}` is on node `{other}`, not `{node}`")).into());
    }
    // Without row locks (SQLite holds the writer lock instead) another claimer can never win
    // the candidate in between; with them, SKIP LOCKED hands each claimer its own row. The
    // guarded UPDATE makes a lost race a retry rather than a double claim either way.
    let claimed = loop {
        let Some(candidate) = backend::claim_candidate(c, &node_key)? else {
            return Ok(None);
        };
        let changed = diesel::update(allocations::table.find(&candidate).filter(allocations::server_id.is_null()))
            .set(allocations::server_id.eq(Some(&server_key)))
            .execute(c)?;
        if changed == 1 {
            break candidate;
        }
    };
    if placed_on.is_some() {
        super::servers::append_extra_allocation(c, &server_key, &claimed)?;
    }
    let row = allocations::table.find(&claimed).select(AllocationRow::as_select()).first(c)?;
    row.into_model().map(Some)
}

pub(crate) fn delete_allocation(c: &mut AnyConnection, id: AllocationId) -> SqlResult<()> {
    let key = id.to_string();
    let assigned: Option<Option<String>> =
        allocations::table.find(&key).select(allocations::server_id).first(c).optional()?;
    match assigned {
        None => Err(StoreError::not_found("allocation", id).into()),
        Some(Some(server)) => Err(in_use("allocation", id, format!("assigned to server `{server}`")).into()),
        Some(None) => {
            diesel::delete(allocations::table.find(&key)).execute(c)?;
            Ok(())
        }
    }
}

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = eggs, treat_none_as_null = true)]
struct EggRow {
    id: String,
    name: String,
    source_uuid: Option<String>,
    source_format: String,
    author: String,
    description: String,
    update_url: Option<String>,
    icon: Option<String>,
    exported_at: Option<String>,
    tags: String,
    features: String,
    images: String,
    file_denylist: String,
    startup_commands: String,
    config_files: String,
    done_matchers: String,
    stop_method: String,
    logs: String,
    install_script: String,
    install_container: String,
    install_entrypoint: String,
    nest_id: Option<String>,
    templates: String,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = egg_variables)]
struct EggVariableRow {
    egg_id: String,
    ordinal: i32,
    name: String,
    description: String,
    env_variable: String,
    default_value: String,
    user_viewable: bool,
    user_editable: bool,
    rules: String,
    field_type: Option<String>,
    sort_order: Option<i64>,
}

impl EggRow {
    fn new(egg: &Egg) -> SqlResult<Self> {
        Ok(Self {
            id: egg.id.to_string(),
            name: egg.name.clone(),
            source_uuid: egg.source_uuid.clone(),
            source_format: enum_name(&egg.source_format, "egg source format")?,
            author: egg.author.clone(),
            description: egg.description.clone(),
            update_url: egg.update_url.clone(),
            icon: egg.icon.clone(),
            exported_at: egg.exported_at.clone(),
            tags: to_json(&egg.tags, "egg tags")?,
            features: to_json(&egg.features, "egg features")?,
            images: to_json(&egg.images, "egg images")?,
            file_denylist: to_json(&egg.file_denylist, "egg file denylist")?,
            startup_commands: to_json(&egg.startup_commands, "egg startup commands")?,
            config_files: to_json(&egg.config_files, "egg config files")?,
            done_matchers: to_json(&egg.done, "egg done matchers")?,
            stop_method: to_json(&egg.stop, "egg stop method")?,
            logs: to_json(&egg.logs, "egg logs")?,
            install_script: egg.install.script.clone(),
            install_container: egg.install.container.clone(),
            install_entrypoint: egg.install.entrypoint.clone(),
            nest_id: egg.nest.map(|n| n.to_string()),
            templates: to_json(&egg.templates, "egg templates")?,
        })
    }

    fn into_model(self, variables: Vec<EggVariableRow>) -> SqlResult<Egg> {
        Ok(Egg {
            id: parse_id(&self.id, "egg id")?,
            nest: self.nest_id.as_deref().map(|n| parse_id(n, "egg nest")).transpose()?,
            source_uuid: self.source_uuid,
            source_format: parse_enum(&self.source_format, "egg source format")?,
            name: self.name,
            author: self.author,
            description: self.description,
            update_url: self.update_url,
            icon: self.icon,
            exported_at: self.exported_at,
            tags: from_json(&self.tags, "egg tags")?,
            features: from_json(&self.features, "egg features")?,
            images: from_json(&self.images, "egg images")?,
            file_denylist: from_json(&self.file_denylist, "egg file denylist")?,
            startup_commands: from_json(&self.startup_commands, "egg startup commands")?,
            config_files: from_json(&self.config_files, "egg config files")?,
            done: from_json(&self.done_matchers, "egg done matchers")?,
            stop: from_json(&self.stop_method, "egg stop method")?,
            logs: from_json(&self.logs, "egg logs")?,
            install: EggScript {
                script: self.install_script,
                container: self.install_container,
                entrypoint: self.install_entrypoint,
            },
            variables: variables.into_iter().map(EggVariableRow::into_model).collect::<SqlResult<_>>()?,
            templates: from_json(&self.templates, "egg templates")?,
        })
    }
}

impl EggVariableRow {
    fn new(egg: &str, ordinal: usize, variable: &EggVariable) -> SqlResult<Self> {
        Ok(Self {
            egg_id: egg.to_owned(),
            ordinal: i32::try_from(ordinal)
                .map_err(|_| SqlError::OutOfRange { what: "egg variable count", value: ordinal.to_string() })?,
            name: variable.name.clone(),
            description: variable.description.clone(),
            env_variable: variable.env_variable.clone(),
            default_value: variable.default_value.clone(),
            user_viewable: variable.user_viewable,
            user_editable: variable.user_editable,
            rules: to_json(&variable.rules, "egg variable rules")?,
            field_type: variable.field_type.clone(),
            sort_order: variable.sort,
        })
    }

    fn into_model(self) -> SqlResult<EggVariable> {
        Ok(EggVariable {
            name: self.name,
            description: self.description,
            env_variable: self.env_variable,
            default_value: self.default_value,
            user_viewable: self.user_viewable,
            user_editable: self.user_editable,
            rules: from_json(&self.rules, "egg variable rules")?,
            field_type: self.field_type,
            sort: self.sort_order,
        })
    }
}

pub(crate) fn egg_exists(c: &mut AnyConnection, id: &str) -> SqlResult<bool> {
    Ok(eggs::table.find(id).select(eggs::id).first::<String>(c).optional()?.is_some())
}

fn insert_variables(c: &mut AnyConnection, egg: &Egg, key: &str) -> SqlResult<()> {
    let rows: Vec<EggVariableRow> =
        egg.variables.iter().enumerate().map(|(i, v)| EggVariableRow::new(key, i, v)).collect::<SqlResult<_>>()?;
    for chunk in rows.chunks(INSERT_CHUNK) {
        backend::insert_rows!(c, egg_variables::table, chunk)?;
    }
    Ok(())
}

/// Refuses an egg whose nest does not exist.
fn check_nest(c: &mut AnyConnection, egg: &Egg, row: &EggRow) -> SqlResult<()> {
    if let Some(nest) = &row.nest_id
        && !nest_exists(c, nest)?
    {
        return Err(invalid(format!("egg `{}`: nest `{nest}` does not exist", egg.id)).into());
    }
    Ok(())
}

pub(crate) fn create_egg(c: &mut AnyConnection, egg: &Egg) -> SqlResult<()> {
    let row = EggRow::new(egg)?;
    if egg_exists(c, &row.id)? {
        return Err(duplicate("egg", format!("id `{}`", egg.id)).into());
    }
    check_nest(c, egg, &row)?;
    diesel::insert_into(eggs::table).values(&row).execute(c)?;
    insert_variables(c, egg, &row.id)
}

pub(crate) fn get_egg(c: &mut AnyConnection, id: EggId) -> SqlResult<Egg> {
    let key = id.to_string();
    let row = eggs::table.find(&key).select(EggRow::as_select()).first(c).optional()?;
    let row = row.ok_or_else(|| StoreError::not_found("egg", id))?;
    let variables = egg_variables::table
        .filter(egg_variables::egg_id.eq(&key))
        .order(egg_variables::ordinal)
        .select(EggVariableRow::as_select())
        .load(c)?;
    row.into_model(variables)
}

pub(crate) fn list_eggs(c: &mut AnyConnection) -> SqlResult<Vec<Egg>> {
    let rows: Vec<EggRow> = eggs::table.order((eggs::name, eggs::id)).select(EggRow::as_select()).load(c)?;
    let mut variables: BTreeMap<String, Vec<EggVariableRow>> = BTreeMap::new();
    let all: Vec<EggVariableRow> = egg_variables::table
        .order((egg_variables::egg_id, egg_variables::ordinal))
        .select(EggVariableRow::as_select())
        .load(c)?;
    for variable in all {
        variables.entry(variable.egg_id.clone()).or_default().push(variable);
    }
    rows.into_iter()
        .map(|row| {
            let own = variables.remove(&row.id).unwrap_or_default();
            row.into_model(own)
        })
        .collect()
}

pub(crate) fn update_egg(c: &mut AnyConnection, egg: &Egg) -> SqlResult<()> {
    let row = EggRow::new(egg)?;
    if !egg_exists(c, &row.id)? {
        return Err(StoreError::not_found("egg", egg.id).into());
    }
    check_nest(c, egg, &row)?;
    diesel::update(eggs::table.find(&row.id)).set(&row).execute(c)?;
    diesel::delete(egg_variables::table.filter(egg_variables::egg_id.eq(&row.id))).execute(c)?;
    insert_variables(c, egg, &row.id)
}

pub(crate) fn delete_egg(c: &mut AnyConnection, id: EggId) -> SqlResult<()> {
    let key = id.to_string();
    if !egg_exists(c, &key)? {
        return Err(StoreError::not_found("egg", id).into());
    }
    let used = servers::table.filter(servers::egg_id.eq(&key)).count().get_result::<i64>(c)?;
    if used > 0 {
        return Err(in_use("egg", id, format!("used by {used} server(s)")).into());
    }
    // Variables go with the egg (ON DELETE CASCADE).
    diesel::delete(eggs::table.find(&key)).execute(c)?;
    Ok(())
}

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = nests)]
struct NestRow {
    id: String,
    name: String,
    description: String,
}

impl NestRow {
    fn into_model(self) -> SqlResult<Nest> {
        Ok(Nest { id: parse_id(&self.id, "nest id")?, name: self.name, description: self.description })
    }
}

fn nest_exists(c: &mut AnyConnection, id: &str) -> SqlResult<bool> {
    Ok(nests::table.find(id).select(nests::id).first::<String>(c).optional()?.is_some())
}

/// Whether another nest than `except` has `name`.
fn nest_name_taken(c: &mut AnyConnection, name: &str, except: &str) -> SqlResult<bool> {
    Ok(nests::table.filter(nests::name.eq(name)).filter(nests::id.ne(except)).count().get_result::<i64>(c)? > 0)
}

pub(crate) fn create_nest(c: &mut AnyConnection, nest: &Nest) -> SqlResult<()> {
    let id = nest.id.to_string();
    if nest_exists(c, &id)? {
        return Err(duplicate("nest", format!("id `{}`", nest.id)).into());
    }
    if nest_name_taken(c, &nest.name, &id)? {
        return Err(duplicate("nest", format!("name `{}`", nest.name)).into());
    }
    let row = NestRow { id, name: nest.name.clone(), description: nest.description.clone() };
    diesel::insert_into(nests::table).values(&row).execute(c)?;
    Ok(())
}

pub(crate) fn get_nest(c: &mut AnyConnection, id: NestId) -> SqlResult<Nest> {
    let row = nests::table.find(id.to_string()).select(NestRow::as_select()).first(c).optional()?;
    row.ok_or_else(|| StoreError::not_found("nest", id))?.into_model()
}

pub(crate) fn list_nests(c: &mut AnyConnection) -> SqlResult<Vec<Nest>> {
    let rows: Vec<NestRow> = nests::table.order((nests::name, nests::id)).select(NestRow::as_select()).load(c)?;
    rows.into_iter().map(NestRow::into_model).collect()
}

pub(crate) fn update_nest(c: &mut AnyConnection, nest: &Nest) -> SqlResult<()> {
    let id = nest.id.to_string();
    if !nest_exists(c, &id)? {
        return Err(StoreError::not_found("nest", nest.id).into());
    }
    if nest_name_taken(c, &nest.name, &id)? {
        return Err(duplicate("nest", format!("name `{}`", nest.name)).into());
    }
    let row = NestRow { id: id.clone(), name: nest.name.clone(), description: nest.description.clone() };
    diesel::update(nests::table.find(&id)).set(&row).execute(c)?;
    Ok(())
}

pub(crate) fn delete_nest(c: &mut AnyConnection, id: NestId) -> SqlResult<()> {
    let key = id.to_string();
    if !nest_exists(c, &key)? {
        return Err(StoreError::not_found("nest", id).into());
    }
    let eggs = eggs::table.filter(eggs::nest_id.eq(&key)).count().get_result::<i64>(c)?;
    if eggs > 0 {
        return Err(in_use("nest", id, format!("holds {eggs} egg(s)")).into());
    }
    diesel::delete(nests::table.find(&key)).execute(c)?;
    Ok(())
}
