//! Servers and their lifecycle events, schedules, backups.

use super::infra::{egg_exists, node_exists};
use super::{duplicate, invalid};
use crate::connection::AnyConnection;
use crate::convert::*;
use crate::error::{SqlError, SqlResult};
use crate::schema::{allocations, backups, schedule_tasks, schedules, server_events, servers, subusers, users};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use nexus_core::ids::*;
use nexus_core::lifecycle::{LifecycleEvent, next_state};
use nexus_core::model::*;
use nexus_core::store::{EventOutcome, Page, ServerFilter, ServerOrder, StoreError, event_applies};
use std::collections::{HashMap, HashSet};

#[derive(Queryable, Selectable, Insertable, Clone)]
#[diesel(table_name = servers)]
pub(crate) struct ServerRow {
    pub id: String,
    pub name: String,
    pub owner_id: String,
    pub node_id: String,
    pub egg_id: String,
    pub image: String,
    pub startup: String,
    pub environment: String,
    pub memory_mb: i64,
    pub swap_mb: i64,
    pub cpu_percent: i64,
    pub disk_mb: i64,
    pub io_weight: i32,
    pub pids: i64,
    pub primary_allocation_id: String,
    pub extra_allocation_ids: String,
    pub state: String,
    pub version: i64,
    pub created_at: chrono::NaiveDateTime,
    pub suspended: bool,
    pub deletion_requested_at: Option<chrono::NaiveDateTime>,
    pub backup_limit: Option<i32>,
    pub templates: String,
}

impl ServerRow {
    pub(crate) fn new(server: &Server) -> SqlResult<Self> {
        let limits = &server.limits;
        Ok(Self {
            id: server.id.to_string(),
            name: server.name.clone(),
            owner_id: server.owner.to_string(),
            node_id: server.node.to_string(),
            egg_id: server.egg.to_string(),
            image: server.image.clone(),
            startup: server.startup.clone(),
            environment: to_json(&server.environment, "server environment")?,
            memory_mb: to_i64(limits.memory_mb, "server memory")?,
            swap_mb: limits.swap_mb,
            cpu_percent: to_i64(limits.cpu_percent, "server cpu")?,
            disk_mb: to_i64(limits.disk_mb, "server disk")?,
            io_weight: i32::from(limits.io_weight),
            pids: to_i64(limits.pids, "server pids")?,
            primary_allocation_id: server.primary_allocation.to_string(),
            extra_allocation_ids: to_json(&server.extra_allocations, "server allocations")?,
            state: enum_name(&server.state, "server state")?,
            version: to_i64(server.version, "server version")?,
            created_at: to_db_time(server.created_at),
            suspended: server.suspended,
            deletion_requested_at: to_db_time_opt(server.deletion_requested_at),
            backup_limit: server.backup_limit.map(|n| narrow(i64::from(n), "server backup limit")).transpose()?,
            templates: to_json(&server.templates, "server templates")?,
        })
    }

    fn into_model(self) -> SqlResult<Server> {
        Ok(Server {
            id: parse_id(&self.id, "server id")?,
            name: self.name,
            owner: parse_id(&self.owner_id, "server owner")?,
            node: parse_id(&self.node_id, "server node")?,
            egg: parse_id(&self.egg_id, "server egg")?,
            image: self.image,
            startup: self.startup,
            environment: from_json(&self.environment, "server environment")?,
            limits: ServerLimits {
                memory_mb: to_u64(self.memory_mb, "server memory")?,
                swap_mb: self.swap_mb,
                cpu_percent: to_u64(self.cpu_percent, "server cpu")?,
                disk_mb: to_u64(self.disk_mb, "server disk")?,
                io_weight: narrow(i64::from(self.io_weight), "server io weight")?,
                pids: to_u64(self.pids, "server pids")?,
            },
            primary_allocation: parse_id(&self.primary_allocation_id, "server primary allocation")?,
            extra_allocations: from_json(&self.extra_allocation_ids, "server allocations")?,
            state: parse_enum(&self.state, "server state")?,
            version: to_u64(self.version, "server version")?,
            created_at: from_db_time(self.created_at),
            suspended: self.suspended,
            deletion_requested_at: from_db_time_opt(self.deletion_requested_at),
            backup_limit: self.backup_limit.map(|n| narrow(i64::from(n), "server backup limit")).transpose()?,
            templates: from_json(&self.templates, "server templates")?,
        })
    }
}

fn load_server(c: &mut AnyConnection, id: &str) -> SqlResult<Option<ServerRow>> {
    Ok(servers::table.find(id).select(ServerRow::as_select()).first(c).optional()?)
}

pub(crate) fn server_exists(c: &mut AnyConnection, id: &str) -> SqlResult<bool> {
    Ok(servers::table.find(id).select(servers::id).first::<String>(c).optional()?.is_some())
}

/// The stored version of a server that an optimistic write found changed (or gone).
fn conflict(c: &mut AnyConnection, server: ServerId, expected: u64) -> SqlResult<SqlError> {
    let actual: Option<i64> = servers::table.find(server.to_string()).select(servers::version).first(c).optional()?;
    Ok(match actual {
        None => StoreError::not_found("server", server).into(),
        Some(actual) => {
            StoreError::VersionConflict { server, expected, actual: to_u64(actual, "server version")? }.into()
        }
    })
}

fn check_server_refs(c: &mut AnyConnection, server: &Server, row: &ServerRow) -> SqlResult<()> {
    if users::table.find(&row.owner_id).select(users::id).first::<String>(c).optional()?.is_none() {
        return Err(invalid(format!("server `{}` refers to missing owner `{}`", server.id, server.owner)).into());
    }
    if !node_exists(c, &row.node_id)? {
        return Err(invalid(format!("server `{}` refers to missing node `{}`", server.id, server.node)).into());
    }
    if !egg_exists(c, &row.egg_id)? {
        return Err(invalid(format!("server `{}` refers to missing egg `{}`", server.id, server.egg)).into());
    }
    Ok(())
}

fn unavailable(allocation: AllocationId, reason: impl Into<String>) -> SqlError {
    StoreError::AllocationUnavailable { allocation, reason: reason.into() }.into()
}

pub(crate) fn create_server(c: &mut AnyConnection, server: &Server) -> SqlResult<()> {
    let row = ServerRow::new(server)?;
    if server_exists(c, &row.id)? {
        return Err(duplicate("server", format!("id `{}`", server.id)).into());
    }
    check_server_refs(c, server, &row)?;
    let wanted: Vec<AllocationId> = server.allocations().collect();
    let mut seen = HashSet::new();
    if let Some(twice) = wanted.iter().find(|id| !seen.insert(**id)) {
        return Err(unavailable(*twice, "listed more than once"));
    }
    let keys: Vec<String> = wanted.iter().map(ToString::to_string).collect();
    let stored: HashMap<String, (String, Option<String>)> = allocations::table
        .filter(allocations::id.eq_any(&keys))
        .select((allocations::id, allocations::node_id, allocations::server_id))
        .load::<(String, String, Option<String>)>(c)?
        .into_iter()
        .map(|(id, node, server)| (id, (node, server)))
        .collect();
    for (id, key) in wanted.iter().zip(&keys) {
        let (node, holder) = stored.get(key).ok_or_else(|| unavailable(*id, "does not exist"))?;
        if *node != row.node_id {
            let reason = format!("belongs to node `{node}`, not the server's node `{}`", server.node);
            return Err(unavailable(*id, reason));
        }
        // Already claimed for this very server (claim_free_allocation before create) is fine.
        if let Some(other) = holder.as_ref().filter(|other| **other != row.id) {
            return Err(unavailable(*id, format!("assigned to server `{other}`")));
        }
    }
    let assigned = diesel::update(
        allocations::table
            .filter(allocations::id.eq_any(&keys))
            .filter(allocations::server_id.is_null().or(allocations::server_id.eq(&row.id))),
    )
    .set(allocations::server_id.eq(Some(&row.id)))
    .execute(c)?;
    if assigned != keys.len() {
        // Another writer took one between the check and the update; the caller's
        // transaction is rolled back, so the allocations assigned here are released again.
        let holders: Vec<(String, Option<String>)> = allocations::table
            .filter(allocations::id.eq_any(&keys))
            .select((allocations::id, allocations::server_id))
            .load(c)?;
        let lost = holders.into_iter().find(|(_, holder)| holder.as_deref() != Some(row.id.as_str()));
        let id = match lost {
            Some((id, _)) => parse_id(&id, "allocation id")?,
            None => server.primary_allocation,
        };
        return Err(unavailable(id, "claimed concurrently by another server"));
    }
    insert_server_rows(c, std::slice::from_ref(&row))
}

/// Multi-row inserts of servers (also used to seed benchmarks).
pub(crate) fn insert_server_rows(c: &mut AnyConnection, rows: &[ServerRow]) -> SqlResult<()> {
    for chunk in rows.chunks(super::infra::INSERT_CHUNK) {
        crate::backend::insert_rows!(c, servers::table, chunk)?;
    }
    Ok(())
}

pub(crate) fn get_server(c: &mut AnyConnection, id: ServerId) -> SqlResult<Server> {
    load_server(c, &id.to_string())?.ok_or_else(|| StoreError::not_found("server", id))?.into_model()
}

pub(crate) fn list_servers(c: &mut AnyConnection, filter: &ServerFilter, page: Page) -> SqlResult<Vec<Server>> {
    let (offset, limit) = crate::convert::page(page);
    let mut query = servers::table.into_boxed();
    if let Some(owner) = filter.owner {
        query = query.filter(servers::owner_id.eq(owner.to_string()));
    }
    if let Some(node) = filter.node {
        query = query.filter(servers::node_id.eq(node.to_string()));
    }
    if let Some(egg) = filter.egg {
        query = query.filter(servers::egg_id.eq(egg.to_string()));
    }
    if let Some(member) = filter.member {
        let member = member.to_string();
        // The shared servers first (a user is subuser of few), then owner OR one of those as
        // plain index lookups: a correlated EXISTS in the OR made PostgreSQL walk every
        // server.
        let shared: Vec<String> =
            subusers::table.filter(subusers::user_id.eq(&member)).select(subusers::server_id).load(c)?;
        query = if shared.is_empty() {
            query.filter(servers::owner_id.eq(member))
        } else {
            query.filter(servers::owner_id.eq(member).or(servers::id.eq_any(shared)))
        };
    }
    query = match filter.order {
        ServerOrder::CreatedAtDesc => query.order((servers::created_at.desc(), servers::id.desc())),
        ServerOrder::Name => query.order((servers::name.asc(), servers::id.asc())),
        ServerOrder::NameDesc => query.order((servers::name.desc(), servers::id.desc())),
        _ => query.order((servers::created_at.asc(), servers::id.asc())),
    };
    let rows: Vec<ServerRow> = query.offset(offset).limit(limit).select(ServerRow::as_select()).load(c)?;
    rows.into_iter().map(ServerRow::into_model).collect()
}

pub(crate) fn update_server(c: &mut AnyConnection, server: &Server) -> SqlResult<Server> {
    let row = ServerRow::new(server)?;
    let stored = load_server(c, &row.id)?.ok_or_else(|| StoreError::not_found("server", server.id))?;
    if stored.version != row.version {
        let actual = to_u64(stored.version, "server version")?;
        return Err(StoreError::VersionConflict { server: server.id, expected: server.version, actual }.into());
    }
    if stored.node_id != row.node_id {
        // Its allocations live on the old node; moving is a separate operation.
        let message = format!(
            "server `{}` cannot be moved from node `{}` to `{}` by an update",
            server.id, stored.node_id, server.node
        );
        return Err(invalid(message).into());
    }
    check_server_refs(c, server, &row)?;
    let next = row.version + 1;
    // The version in the WHERE clause is the optimistic check: a writer that committed since
    // our read has bumped it, and this update then matches nothing.
    let changed = diesel::update(servers::table.find(&row.id).filter(servers::version.eq(row.version)))
        .set((
            servers::name.eq(&row.name),
            servers::owner_id.eq(&row.owner_id),
            servers::egg_id.eq(&row.egg_id),
            servers::image.eq(&row.image),
            servers::startup.eq(&row.startup),
            servers::environment.eq(&row.environment),
            servers::memory_mb.eq(row.memory_mb),
            servers::swap_mb.eq(row.swap_mb),
            servers::cpu_percent.eq(row.cpu_percent),
            servers::disk_mb.eq(row.disk_mb),
            servers::io_weight.eq(row.io_weight),
            servers::pids.eq(row.pids),
            servers::state.eq(&row.state),
            servers::created_at.eq(row.created_at),
            servers::suspended.eq(row.suspended),
            servers::deletion_requested_at.eq(row.deletion_requested_at),
            servers::backup_limit.eq(row.backup_limit),
            servers::templates.eq(&row.templates),
            servers::version.eq(next),
        ))
        .execute(c)?;
    if changed != 1 {
        return Err(conflict(c, server.id, server.version)?);
    }
    // Allocations are not changed by an update: keep the stored ones.
    ServerRow {
        primary_allocation_id: stored.primary_allocation_id,
        extra_allocation_ids: stored.extra_allocation_ids,
        version: next,
        ..row
    }
    .into_model()
}

pub(crate) fn transition_server(c: &mut AnyConnection, expected: u64, event: &LifecycleEvent) -> SqlResult<Server> {
    let key = event.server.to_string();
    let stored = load_server(c, &key)?.ok_or_else(|| StoreError::not_found("server", event.server))?;
    let expected_db = to_i64(expected, "server version")?;
    if stored.version != expected_db {
        let actual = to_u64(stored.version, "server version")?;
        return Err(StoreError::VersionConflict { server: event.server, expected, actual }.into());
    }
    let actual = parse_enum(&stored.state, "server state")?;
    if actual != event.from || next_state(event.from, event.trigger) != Some(event.to) {
        return Err(StoreError::StateMismatch {
            server: event.server,
            actual,
            from: event.from,
            trigger: event.trigger,
            to: event.to,
        }
        .into());
    }
    let to = enum_name(&event.to, "server state")?;
    let changed = diesel::update(servers::table.find(&key).filter(servers::version.eq(expected_db)))
        .set((servers::state.eq(&to), servers::version.eq(expected_db + 1)))
        .execute(c)?;
    if changed != 1 {
        return Err(conflict(c, event.server, expected)?);
    }
    diesel::insert_into(server_events::table)
        .values((
            server_events::server_id.eq(&key),
            server_events::from_state.eq(enum_name(&event.from, "server state")?),
            server_events::to_state.eq(&to),
            server_events::trigger_name.eq(enum_name(&event.trigger, "lifecycle trigger")?),
            server_events::at.eq(to_db_time(event.at)),
        ))
        .execute(c)?;
    ServerRow { state: to, version: expected_db + 1, ..stored }.into_model()
}

/// A lifecycle event as appended to a server's history.
#[derive(Insertable)]
#[diesel(table_name = server_events)]
struct EventRow {
    server_id: String,
    from_state: String,
    to_state: String,
    trigger_name: String,
    at: chrono::NaiveDateTime,
}

impl EventRow {
    fn new(event: &LifecycleEvent) -> SqlResult<Self> {
        Ok(Self {
            server_id: event.server.to_string(),
            from_state: enum_name(&event.from, "server state")?,
            to_state: enum_name(&event.to, "server state")?,
            trigger_name: enum_name(&event.trigger, "lifecycle trigger")?,
            at: to_db_time(event.at),
        })
    }
}

/// Writes of one server that another writer beat before [`apply_node_events`] gives up on an
/// event (`EventOutcome::Contended`: the node delivers it again).
const EVENT_ATTEMPTS: usize = 5;

/// Applies node events in one transaction (see `ServerRepo::apply_node_events`): the servers
/// are read with one query per [`INSERT_CHUNK`](super::infra::INSERT_CHUNK) ids, the applied
/// events are written in rounds (round `k` holds the `k`-th event of each server, so one
/// server's events follow each other) of one [`set_server_states`](crate::backend::set_server_states)
/// each, and the history rows go in with multi-row inserts. A server another writer changed
/// since it was read is read again and its event decided again in the next round.
pub(crate) fn apply_node_events(
    c: &mut AnyConnection,
    events: &[(NodeId, LifecycleEvent)],
) -> SqlResult<Vec<EventOutcome>> {
    use crate::backend::StateChange;
    use std::collections::{BTreeMap, VecDeque};
    // Per server (in id order, the order rows are written in), its events in the given order.
    let mut queues: BTreeMap<String, VecDeque<usize>> = BTreeMap::new();
    for (i, (_, event)) in events.iter().enumerate() {
        queues.entry(event.server.to_string()).or_default().push_back(i);
    }
    let keys: Vec<String> = queues.keys().cloned().collect();
    let mut current: HashMap<String, ServerRow> = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(super::infra::INSERT_CHUNK) {
        let rows: Vec<ServerRow> =
            servers::table.filter(servers::id.eq_any(chunk)).select(ServerRow::as_select()).load(c)?;
        current.extend(rows.into_iter().map(|row| (row.id.clone(), row)));
    }
    let mut outcomes: Vec<Option<EventOutcome>> = vec![None; events.len()];
    let mut history = Vec::new();
    let mut attempts: HashMap<String, usize> = HashMap::new();
    loop {
        // The round: each server's next event that would change it; the events before it
        // that would not are decided on the way.
        let mut round: Vec<(usize, StateChange)> = Vec::new();
        for (key, queue) in &mut queues {
            while let Some(&i) = queue.front() {
                let (sender, event) = &events[i];
                let Some(row) = current.get(key) else {
                    outcomes[i] = Some(EventOutcome::UnknownServer);
                    queue.pop_front();
                    continue;
                };
                let server = match row.clone().into_model() {
                    Ok(server) => server,
                    Err(e) => {
                        outcomes[i] = Some(EventOutcome::Unreadable(e.to_string()));
                        queue.pop_front();
                        continue;
                    }
                };
                if !event_applies(&server, *sender, event) {
                    outcomes[i] = Some(EventOutcome::Refused(Box::new(server)));
                    queue.pop_front();
                    continue;
                }
                let state = enum_name(&event.to, "server state")?;
                round.push((i, StateChange { id: key.clone(), version: row.version, state }));
                break;
            }
        }
        if round.is_empty() {
            break;
        }
        let changes: Vec<StateChange> = round.iter().map(|(_, change)| change.clone()).collect();
        let changed = crate::backend::set_server_states(c, &changes)?;
        for (i, change) in round {
            let event = &events[i].1;
            if changed.contains(&change.id) {
                // The round was built from `current`: the row is there.
                outcomes[i] = Some(match current.remove(&change.id) {
                    Some(row) => {
                        let applied = ServerRow { state: change.state, version: change.version + 1, ..row };
                        let server = applied.clone().into_model()?;
                        current.insert(change.id.clone(), applied);
                        history.push(EventRow::new(event)?);
                        EventOutcome::Applied(Box::new(server))
                    }
                    None => EventOutcome::UnknownServer,
                });
                if let Some(queue) = queues.get_mut(&change.id) {
                    queue.pop_front();
                }
                attempts.remove(&change.id);
                continue;
            }
            // Another writer got there first (it has committed: the UPDATE waited for it):
            // read the server again; the next round decides on what is stored now.
            let tries = attempts.entry(change.id.clone()).or_default();
            *tries += 1;
            if *tries >= EVENT_ATTEMPTS {
                outcomes[i] = Some(EventOutcome::Contended);
                if let Some(queue) = queues.get_mut(&change.id) {
                    queue.pop_front();
                }
                // The server's next event gets its own attempts.
                attempts.remove(&change.id);
            }
            match load_server(c, &change.id)? {
                Some(row) => current.insert(change.id.clone(), row),
                None => current.remove(&change.id),
            };
        }
    }
    for chunk in history.chunks(super::infra::INSERT_CHUNK) {
        crate::backend::insert_rows!(c, server_events::table, chunk)?;
    }
    Ok(outcomes.into_iter().flatten().collect())
}

/// Appends a freshly claimed allocation to an existing server's extras and bumps its version,
/// retrying if a concurrent writer bumps it first.
pub(crate) fn append_extra_allocation(c: &mut AnyConnection, server: &str, allocation: &str) -> SqlResult<()> {
    loop {
        let (version, extras): (i64, String) =
            servers::table.find(server).select((servers::version, servers::extra_allocation_ids)).first(c)?;
        let mut list: Vec<String> = from_json(&extras, "server allocations")?;
        list.push(allocation.to_owned());
        let changed = diesel::update(servers::table.find(server).filter(servers::version.eq(version)))
            .set((
                servers::extra_allocation_ids.eq(to_json(&list, "server allocations")?),
                servers::version.eq(version + 1),
            ))
            .execute(c)?;
        if changed == 1 {
            return Ok(());
        }
    }
}

pub(crate) fn server_events(c: &mut AnyConnection, id: ServerId, limit: u64) -> SqlResult<Vec<LifecycleEvent>> {
    let key = id.to_string();
    if !server_exists(c, &key)? {
        return Err(StoreError::not_found("server", id).into());
    }
    let (_, limit) = crate::convert::page(Page::first(limit));
    // Newest first; equal timestamps: last appended first.
    let rows: Vec<(String, String, String, chrono::NaiveDateTime)> = server_events::table
        .filter(server_events::server_id.eq(&key))
        .order((server_events::at.desc(), server_events::seq.desc()))
        .limit(limit)
        .select((server_events::from_state, server_events::to_state, server_events::trigger_name, server_events::at))
        .load(c)?;
    rows.into_iter()
        .map(|(from, to, trigger, at)| {
            Ok(LifecycleEvent {
                server: id,
                from: parse_enum(&from, "event state")?,
                to: parse_enum(&to, "event state")?,
                trigger: parse_enum(&trigger, "event trigger")?,
                at: from_db_time(at),
            })
        })
        .collect()
}

pub(crate) fn delete_server(c: &mut AnyConnection, id: ServerId) -> SqlResult<()> {
    let key = id.to_string();
    if !server_exists(c, &key)? {
        return Err(StoreError::not_found("server", id).into());
    }
    diesel::update(allocations::table.filter(allocations::server_id.eq(&key)))
        .set(allocations::server_id.eq(None::<String>))
        .execute(c)?;
    // Events, schedules with their tasks, subuser grants and backups (locked ones too: the
    // lock guards against deleting one backup, not the server) go by ON DELETE CASCADE.
    // Counted: a concurrent delete that got there first (after the check above) makes this
    // one `NotFound`, so exactly one caller learns it removed the server.
    if diesel::delete(servers::table.find(&key)).execute(c)? == 0 {
        return Err(StoreError::not_found("server", id).into());
    }
    Ok(())
}

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = schedules, treat_none_as_null = true)]
struct ScheduleRow {
    id: String,
    server_id: String,
    name: String,
    cron: String,
    timezone: String,
    enabled: bool,
    only_when_online: bool,
    last_run_at: Option<chrono::NaiveDateTime>,
    next_run_at: Option<chrono::NaiveDateTime>,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = schedule_tasks)]
struct TaskRow {
    schedule_id: String,
    ordinal: i32,
    id: String,
    action_kind: String,
    payload: String,
    offset_seconds: i64,
    continue_on_failure: bool,
}

impl ScheduleRow {
    fn new(schedule: &Schedule) -> Self {
        Self {
            id: schedule.id.to_string(),
            server_id: schedule.server.to_string(),
            name: schedule.name.clone(),
            cron: schedule.cron.clone(),
            timezone: schedule.timezone.clone(),
            enabled: schedule.enabled,
            only_when_online: schedule.only_when_online,
            last_run_at: to_db_time_opt(schedule.last_run_at),
            next_run_at: to_db_time_opt(schedule.next_run_at),
        }
    }

    fn into_model(self, tasks: Vec<TaskRow>) -> SqlResult<Schedule> {
        Ok(Schedule {
            id: parse_id(&self.id, "schedule id")?,
            server: parse_id(&self.server_id, "schedule server")?,
            name: self.name,
            cron: self.cron,
            timezone: self.timezone,
            enabled: self.enabled,
            only_when_online: self.only_when_online,
            tasks: tasks.into_iter().map(TaskRow::into_model).collect::<SqlResult<_>>()?,
            last_run_at: from_db_time_opt(self.last_run_at),
            next_run_at: from_db_time_opt(self.next_run_at),
        })
    }
}

impl TaskRow {
    fn new(schedule: &str, ordinal: usize, task: &Task) -> SqlResult<Self> {
        let kind = match &task.action {
            TaskAction::Command(_) => "command",
            TaskAction::Power(_) => "power",
            TaskAction::Backup(_) => "backup",
        };
        Ok(Self {
            schedule_id: schedule.to_owned(),
            ordinal: i32::try_from(ordinal)
                .map_err(|_| SqlError::OutOfRange { what: "schedule task count", value: ordinal.to_string() })?,
            id: task.id.to_string(),
            action_kind: kind.to_owned(),
            // The whole tagged action, so that new action kinds need no new columns.
            payload: to_json(&task.action, "task action")?,
            offset_seconds: i64::from(task.offset_seconds),
            continue_on_failure: task.continue_on_failure,
        })
    }

    fn into_model(self) -> SqlResult<Task> {
        Ok(Task {
            id: parse_id(&self.id, "task id")?,
            action: from_json(&self.payload, "task action")?,
            offset_seconds: narrow(self.offset_seconds, "task offset")?,
            continue_on_failure: self.continue_on_failure,
        })
    }
}

fn schedule_exists(c: &mut AnyConnection, id: &str) -> SqlResult<bool> {
    Ok(schedules::table.find(id).select(schedules::id).first::<String>(c).optional()?.is_some())
}

fn check_server_exists(c: &mut AnyConnection, server: ServerId, what: &str) -> SqlResult<()> {
    if server_exists(c, &server.to_string())? {
        Ok(())
    } else {
        Err(invalid(format!("{what} refers to missing server `{server}`")).into())
    }
}

fn insert_tasks(c: &mut AnyConnection, schedule: &Schedule, key: &str) -> SqlResult<()> {
    let rows: Vec<TaskRow> =
        schedule.tasks.iter().enumerate().map(|(i, t)| TaskRow::new(key, i, t)).collect::<SqlResult<_>>()?;
    if !rows.is_empty() {
        crate::backend::insert_rows!(c, schedule_tasks::table, rows.as_slice())?;
    }
    Ok(())
}

/// Loads the tasks of `rows` and assembles the schedules, in the order of `rows`.
fn with_tasks(c: &mut AnyConnection, rows: Vec<ScheduleRow>) -> SqlResult<Vec<Schedule>> {
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let mut tasks: HashMap<String, Vec<TaskRow>> = HashMap::new();
    if !ids.is_empty() {
        let all: Vec<TaskRow> = schedule_tasks::table
            .filter(schedule_tasks::schedule_id.eq_any(&ids))
            .order((schedule_tasks::schedule_id, schedule_tasks::ordinal))
            .select(TaskRow::as_select())
            .load(c)?;
        for task in all {
            tasks.entry(task.schedule_id.clone()).or_default().push(task);
        }
    }
    rows.into_iter()
        .map(|row| {
            let own = tasks.remove(&row.id).unwrap_or_default();
            row.into_model(own)
        })
        .collect()
}

pub(crate) fn create_schedule(c: &mut AnyConnection, schedule: &Schedule) -> SqlResult<()> {
    let row = ScheduleRow::new(schedule);
    if schedule_exists(c, &row.id)? {
        return Err(duplicate("schedule", format!("id `{}`", schedule.id)).into());
    }
    check_server_exists(c, schedule.server, &format!("schedule `{}`", schedule.id))?;
    diesel::insert_into(schedules::table).values(&row).execute(c)?;
    insert_tasks(c, schedule, &row.id)
}

pub(crate) fn get_schedule(c: &mut AnyConnection, id: ScheduleId) -> SqlResult<Schedule> {
    let row = schedules::table.find(id.to_string()).select(ScheduleRow::as_select()).first(c).optional()?;
    let row = row.ok_or_else(|| StoreError::not_found("schedule", id))?;
    with_tasks(c, vec![row])?.pop().ok_or_else(|| StoreError::not_found("schedule", id).into())
}

pub(crate) fn list_schedules(c: &mut AnyConnection, server: ServerId) -> SqlResult<Vec<Schedule>> {
    let key = server.to_string();
    if !server_exists(c, &key)? {
        return Err(StoreError::not_found("server", server).into());
    }
    let rows = schedules::table
        .filter(schedules::server_id.eq(&key))
        .order((schedules::name, schedules::id))
        .select(ScheduleRow::as_select())
        .load(c)?;
    with_tasks(c, rows)
}

pub(crate) fn update_schedule(c: &mut AnyConnection, schedule: &Schedule) -> SqlResult<()> {
    let row = ScheduleRow::new(schedule);
    if !schedule_exists(c, &row.id)? {
        return Err(StoreError::not_found("schedule", schedule.id).into());
    }
    check_server_exists(c, schedule.server, &format!("schedule `{}`", schedule.id))?;
    diesel::update(schedules::table.find(&row.id)).set(&row).execute(c)?;
    diesel::delete(schedule_tasks::table.filter(schedule_tasks::schedule_id.eq(&row.id))).execute(c)?;
    insert_tasks(c, schedule, &row.id)
}

pub(crate) fn delete_schedule(c: &mut AnyConnection, id: ScheduleId) -> SqlResult<()> {
    // Tasks go with it (ON DELETE CASCADE).
    if diesel::delete(schedules::table.find(id.to_string())).execute(c)? == 0 {
        return Err(StoreError::not_found("schedule", id).into());
    }
    Ok(())
}

pub(crate) fn due_schedules(c: &mut AnyConnection, now: DateTime<Utc>) -> SqlResult<Vec<Schedule>> {
    let rows = schedules::table
        .filter(schedules::enabled.eq(true))
        .filter(schedules::next_run_at.le(to_db_time(now)))
        .order((schedules::next_run_at, schedules::id))
        .select(ScheduleRow::as_select())
        .load(c)?;
    with_tasks(c, rows)
}

/// Claims the run of a schedule due at `due`. One conditional UPDATE whose affected-row count
/// decides, so that of several panels claiming the same run exactly one wins: PostgreSQL and
/// MySQL make a later writer wait for the winner's row lock and then re-check the WHERE
/// clause against the winner's `next_run_at`; SQLite runs one writer at a time.
pub(crate) fn claim_schedule_run(
    c: &mut AnyConnection,
    id: ScheduleId,
    due: DateTime<Utc>,
    next: Option<DateTime<Utc>>,
    ran_at: DateTime<Utc>,
) -> SqlResult<bool> {
    let key = id.to_string();
    // `due` is cut to microseconds as the stored value was, so the very `next_run_at` the
    // caller wrote (or read back) matches on every backend.
    let claimed = diesel::update(
        schedules::table
            .find(&key)
            .filter(schedules::enabled.eq(true))
            .filter(schedules::next_run_at.eq(to_db_time(due))),
    )
    .set((schedules::last_run_at.eq(Some(to_db_time(ran_at))), schedules::next_run_at.eq(to_db_time_opt(next))))
    .execute(c)?;
    if claimed == 1 {
        return Ok(true);
    }
    if !schedule_exists(c, &key)? {
        return Err(StoreError::not_found("schedule", id).into());
    }
    Ok(false)
}

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = backups, treat_none_as_null = true)]
struct BackupRow {
    id: String,
    server_id: String,
    name: String,
    ignored_patterns: String,
    state: String,
    bytes: Option<i64>,
    checksum: Option<String>,
    is_locked: bool,
    created_at: chrono::NaiveDateTime,
    completed_at: Option<chrono::NaiveDateTime>,
}

impl BackupRow {
    fn new(backup: &Backup) -> SqlResult<Self> {
        Ok(Self {
            id: backup.id.to_string(),
            server_id: backup.server.to_string(),
            name: backup.name.clone(),
            ignored_patterns: to_json(&backup.ignored, "backup ignored patterns")?,
            state: enum_name(&backup.state, "backup state")?,
            bytes: backup.bytes.map(|b| to_i64(b, "backup size")).transpose()?,
            checksum: backup.checksum.clone(),
            is_locked: backup.locked,
            created_at: to_db_time(backup.created_at),
            completed_at: to_db_time_opt(backup.completed_at),
        })
    }

    fn into_model(self) -> SqlResult<Backup> {
        Ok(Backup {
            id: parse_id(&self.id, "backup id")?,
            server: parse_id(&self.server_id, "backup server")?,
            name: self.name,
            ignored: from_json(&self.ignored_patterns, "backup ignored patterns")?,
            state: parse_enum(&self.state, "backup state")?,
            bytes: self.bytes.map(|b| to_u64(b, "backup size")).transpose()?,
            checksum: self.checksum,
            locked: self.is_locked,
            created_at: from_db_time(self.created_at),
            completed_at: from_db_time_opt(self.completed_at),
        })
    }
}

fn load_backup(c: &mut AnyConnection, id: &str) -> SqlResult<Option<BackupRow>> {
    Ok(backups::table.find(id).select(BackupRow::as_select()).first(c).optional()?)
}

pub(crate) fn create_backup(c: &mut AnyConnection, backup: &Backup) -> SqlResult<()> {
    let row = BackupRow::new(backup)?;
    if load_backup(c, &row.id)?.is_some() {
        return Err(duplicate("backup", format!("id `{}`", backup.id)).into());
    }
    check_server_exists(c, backup.server, &format!("backup `{}`", backup.id))?;
    diesel::insert_into(backups::table).values(&row).execute(c)?;
    Ok(())
}

pub(crate) fn get_backup(c: &mut AnyConnection, id: BackupId) -> SqlResult<Backup> {
    load_backup(c, &id.to_string())?.ok_or_else(|| StoreError::not_found("backup", id))?.into_model()
}

pub(crate) fn list_backups(c: &mut AnyConnection, server: ServerId) -> SqlResult<Vec<Backup>> {
    let key = server.to_string();
    if !server_exists(c, &key)? {
        return Err(StoreError::not_found("server", server).into());
    }
    let rows: Vec<BackupRow> = backups::table
        .filter(backups::server_id.eq(&key))
        .order((backups::created_at.desc(), backups::id))
        .select(BackupRow::as_select())
        .load(c)?;
    rows.into_iter().map(BackupRow::into_model).collect()
}

pub(crate) fn update_backup(c: &mut AnyConnection, backup: &Backup) -> SqlResult<()> {
    let row = BackupRow::new(backup)?;
    if load_backup(c, &row.id)?.is_none() {
        return Err(StoreError::not_found("backup", backup.id).into());
    }
    check_server_exists(c, backup.server, &format!("backup `{}`", backup.id))?;
    diesel::update(backups::table.find(&row.id)).set(&row).execute(c)?;
    Ok(())
}

pub(crate) fn delete_backup(c: &mut AnyConnection, id: BackupId) -> SqlResult<()> {
    let key = id.to_string();
    let row = load_backup(c, &key)?.ok_or_else(|| StoreError::not_found("backup", id))?;
    if row.is_locked {
        return Err(super::in_use("backup", id, "locked; unlock it before deleting").into());
    }
    diesel::delete(backups::table.find(&key)).execute(c)?;
    Ok(())
}
