//! `/api/application`: users, locations, nodes and their allocations, nests and eggs, and
//! servers, for admins.

use super::body::{Body, required};
use super::shapes::{Paging, answer, date, filter, includes, item, no_content};
use super::{key_of, record_named, refs, store_error};
use crate::api::router::Call;
use crate::api::{ApiError, PanelState};
use nexus_control::accounts::{NewUser, UserChanges, random_alphanumeric};
use nexus_control::nodes::NewNode;
use nexus_control::servers::NewServer;
use nexus_core::ids::{AllocationId, EggId, LocationId, NestId, NodeId, ServerId, UserId};
use nexus_core::lifecycle::ServerState;
use nexus_core::model::{
    Allocation, Egg, Location, Nest, Node, NodeCapacity, RecordKind, RefLookup, Role, Server, ServerLimits, User,
};
use nexus_core::store::{Page, ServerFilter, StoreError};
use nexus_eggs::spec::Editor;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::Response;

type Answered = Result<Response, ApiError>;

// ---- users ------------------------------------------------------------------------------

async fn user_attributes(state: &PanelState, users: Vec<User>) -> Result<Vec<Value>, ApiError> {
    let numbers = refs(state, RecordKind::User, users.iter().map(|u| u.id.to_string()).collect()).await?;
    let mut out = Vec::with_capacity(users.len());
    for user in users {
        let record = numbers.get(&user.id.to_string());
        let totp = state.control.store().get_totp(user.id).await.map_err(store_error)?;
        let names = user_names(&user, record);
        out.push(json!({
            "id": record.map_or(0, |r| r.number),
            "external_id": record.and_then(|r| r.external_id.clone()),
            "uuid": user.id,
            "username": user.username,
            "email": user.email,
            "first_name": names.0,
            "last_name": names.1,
            "language": names.2,
            "root_admin": user.role == Role::Admin,
            "2fa": totp.is_some_and(|t| t.enabled_at.is_some()),
            "created_at": date(user.created_at),
            "updated_at": date(user.created_at),
        }));
    }
    Ok(out)
}

async fn one_user(state: &PanelState, user: User, status: StatusCode) -> Answered {
    let attributes = user_attributes(state, vec![user]).await?.into_iter().next().ok_or_else(not_found)?;
    answer(status, &created_meta(state, status, item("user", attributes), "users"))
}

/// A created record's answer carries `meta.resource`, its URL (as Pterodactyl's).
fn created_meta(state: &PanelState, status: StatusCode, mut value: Value, collection: &str) -> Value {
    if status == StatusCode::CREATED {
        let id = value["attributes"]["id"].clone();
        value["meta"] = json!({ "resource": format!("{}/api/application/{collection}/{id}", state.public_url) });
    }
    value
}

pub(super) async fn list_users(state: Arc<PanelState>, call: Call) -> Answered {
    let paging = Paging::of(&call, &state)?;
    let store = state.control.store();
    let users = if let Some(email) = filter(&call, "email") {
        state.control.user_by_email(email).await?.into_iter().collect()
    } else if let Some(external) = filter(&call, "external_id") {
        match by_external::<UserId>(&state, RecordKind::User, external).await? {
            Some(id) => present(store.get_user(id).await)?.into_iter().collect(),
            None => Vec::new(),
        }
    } else {
        let mut users = store.list_users(Page::all()).await.map_err(store_error)?;
        if let Some(name) = filter(&call, "username") {
            users.retain(|u| u.username.eq_ignore_ascii_case(name));
        }
        if let Some(uuid) = filter(&call, "uuid") {
            users.retain(|u| u.id.to_string() == uuid);
        }
        users
    };
    let list =
        Paging::list(paging, users, "user", "/api/application/users", |rows| user_attributes(&state, rows)).await?;
    answer(StatusCode::OK, &list)
}

pub(super) async fn show_user(state: Arc<PanelState>, call: Call) -> Answered {
    let id: UserId = key_of(&state, &call, 0, RecordKind::User).await?;
    let user = found(state.control.store().get_user(id).await)?;
    one_user(&state, user, StatusCode::OK).await
}

pub(super) async fn user_by_external_id(state: Arc<PanelState>, call: Call) -> Answered {
    let external = call.params.first().map(String::as_str).unwrap_or_default();
    let id: UserId = by_external(&state, RecordKind::User, external).await?.ok_or_else(not_found)?;
    let user = found(state.control.store().get_user(id).await)?;
    one_user(&state, user, StatusCode::OK).await
}

pub(super) async fn create_user(state: Arc<PanelState>, call: Call) -> Answered {
    let body = Body::of(&call)?;
    let email = body.required_string("email")?;
    let username = body.required_string("username")?;
    body.required_string("first_name")?;
    body.required_string("last_name")?;
    let external = body.string("external_id")?;
    let role = if body.boolean("root_admin")?.unwrap_or(false) { Role::Admin } else { Role::User };
    let extra = extra_fields(&body, USER_EXTRA)?;
    // Pterodactyl mails a set-up link when no password is given; Nexus sends no mail, so the
    // account gets a random password an admin can replace.
    let password = body.string("password")?.unwrap_or_else(|| random_alphanumeric(32));
    if let Some(external) = &external {
        external_free(&state, RecordKind::User, external, None).await?;
    }
    let user =
        state.control.create_user(NewUser::new(username, email, password, role)).await.map_err(duplicate_account)?;
    if let Some(external) = &external
        && let Err(e) = set_external(&state, RecordKind::User, &user.id.to_string(), Some(external)).await
    {
        // Another create took the id meanwhile: this one leaves nothing behind.
        if let Err(undo) = state.control.delete_user(user.id).await {
            tracing::warn!(user = %user.id, error = %undo, "removing a user whose external id was taken");
        }
        return Err(e);
    }
    keep_extra(&state, RecordKind::User, &user.id.to_string(), extra).await?;
    one_user(&state, user, StatusCode::CREATED).await
}

pub(super) async fn update_user(state: Arc<PanelState>, call: Call) -> Answered {
    let id: UserId = key_of(&state, &call, 0, RecordKind::User).await?;
    let body = Body::of(&call)?;
    let mut changes = UserChanges::default();
    changes.username = body.string("username")?;
    changes.email = body.string("email")?;
    changes.password = body.string("password")?.filter(|p| !p.is_empty());
    changes.role = body.boolean("root_admin")?.map(|admin| if admin { Role::Admin } else { Role::User });
    if let Some(external) = body.string("external_id")? {
        external_free(&state, RecordKind::User, &external, Some(&id.to_string())).await?;
        set_external(&state, RecordKind::User, &id.to_string(), Some(&external)).await?;
    }
    let extra = extra_fields(&body, USER_EXTRA)?;
    let password_changed = changes.password.is_some();
    let user = state.control.update_user(id, changes).await.map_err(duplicate_account)?;
    if password_changed {
        state.sessions.close_all_of(id, None);
    }
    keep_extra(&state, RecordKind::User, &id.to_string(), extra).await?;
    one_user(&state, user, StatusCode::OK).await
}

pub(super) async fn delete_user(state: Arc<PanelState>, call: Call) -> Answered {
    let id: UserId = key_of(&state, &call, 0, RecordKind::User).await?;
    match state.control.delete_user(id).await {
        Err(nexus_control::ControlError::Store(StoreError::InUse { .. })) => {
            return Err(ApiError::bad_request("Cannot delete a user with active servers attached to their account."));
        }
        other => other?,
    }
    state.sessions.close_all_of(id, None);
    no_content()
}

/// A user's `first_name`, `last_name` and `language` as Pterodactyl shows them: kept with the
/// user's ref, else the user name, nothing and English (Nexus' accounts have one name).
pub(super) fn user_names<'a>(
    user: &'a User,
    record: Option<&'a nexus_core::model::RecordRef>,
) -> (&'a str, &'a str, &'a str) {
    (
        extra(record, "first_name").unwrap_or(&user.username),
        extra(record, "last_name").unwrap_or_default(),
        extra(record, "language").unwrap_or("en"),
    )
}

/// An extra attribute kept with a record's ref.
fn extra<'a>(record: Option<&'a nexus_core::model::RecordRef>, name: &str) -> Option<&'a str> {
    record.and_then(|r| r.extra.get(name)).map(String::as_str)
}

/// The named fields of `body` that Nexus' model lacks, checked (each at most
/// [`MAX_EXTRA_FIELD`] bytes without control characters but line breaks) before anything is
/// written, so a refusal changes nothing.
fn extra_fields(body: &Body, names: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let mut sent = Vec::new();
    for name in names {
        if let Some(value) = body.string(name)? {
            let bad = value.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'));
            if value.len() > MAX_EXTRA_FIELD || bad {
                return Err(ApiError::invalid(
                    *name,
                    format!("The {name} must be at most {MAX_EXTRA_FIELD} characters."),
                ));
            }
            sent.push(((*name).to_owned(), value));
        }
    }
    Ok(sent)
}

/// Longest extra field kept (descriptions included; names are shorter in Pterodactyl).
const MAX_EXTRA_FIELD: usize = 2048;

/// Keeps checked extra fields with the record's ref, over what is kept already.
async fn keep_extra(
    state: &PanelState,
    kind: RecordKind,
    key: &str,
    sent: Vec<(String, String)>,
) -> Result<(), ApiError> {
    if sent.is_empty() {
        return Ok(());
    }
    let store = state.control.store();
    let current = store.record_refs(kind, &[key.to_owned()]).await.map_err(store_error)?;
    let mut extra = current.into_iter().next().map(|r| r.extra).unwrap_or_default();
    extra.extend(sent);
    store.set_record_extra(kind, key, &extra).await.map_err(store_error)?;
    Ok(())
}

/// What a user record keeps besides Nexus' account.
const USER_EXTRA: &[&str] = &["first_name", "last_name", "language"];

/// A user name or e-mail another account has: Pterodactyl's `422` on that field.
fn duplicate_account(e: nexus_control::ControlError) -> ApiError {
    match ApiError::from(e) {
        error if error.code == "duplicate" => {
            let field = if error.message.contains("exists: e-mail") { "email" } else { "username" };
            ApiError::invalid(field, format!("The {field} has already been taken."))
        }
        other => other,
    }
}

// ---- locations --------------------------------------------------------------------------

async fn location_attributes(state: &PanelState, locations: Vec<Location>) -> Result<Vec<Value>, ApiError> {
    let numbers = refs(state, RecordKind::Location, locations.iter().map(|l| l.id.to_string()).collect()).await?;
    Ok(locations
        .into_iter()
        .map(|l| {
            json!({
                "id": numbers.get(&l.id.to_string()).map_or(0, |r| r.number),
                "short": l.short,
                "long": l.long,
                "created_at": Value::Null,
                "updated_at": Value::Null,
            })
        })
        .collect())
}

pub(super) async fn list_locations(state: Arc<PanelState>, call: Call) -> Answered {
    let mut rows = state.control.store().list_locations().await.map_err(store_error)?;
    if let Some(short) = filter(&call, "short") {
        rows.retain(|l| l.short == short);
    }
    let list = Paging::list(Paging::of(&call, &state)?, rows, "location", "/api/application/locations", |rows| {
        location_attributes(&state, rows)
    })
    .await?;
    answer(StatusCode::OK, &list)
}

async fn location(state: &PanelState, call: &Call) -> Result<Location, ApiError> {
    let id: LocationId = key_of(state, call, 0, RecordKind::Location).await?;
    let rows = state.control.store().list_locations().await.map_err(store_error)?;
    rows.into_iter().find(|l| l.id == id).ok_or_else(not_found)
}

pub(super) async fn show_location(state: Arc<PanelState>, call: Call) -> Answered {
    let location = location(&state, &call).await?;
    let attributes = location_attributes(&state, vec![location]).await?.into_iter().next().ok_or_else(not_found)?;
    answer(StatusCode::OK, &item("location", attributes))
}

/// A location's short code and description from a body (py-dactyl names them `shortcode`
/// and `description`; both spellings are taken), over `current`'s.
fn location_fields(body: &Body, current: Option<&Location>) -> Result<(String, String), ApiError> {
    let short = match (body.string("short")?.or(body.string("shortcode")?), current) {
        (Some(short), _) => short,
        (None, Some(current)) => current.short.clone(),
        (None, None) => return Err(required("short")),
    };
    let long = match (body.string("long")?.or(body.string("description")?), current) {
        (Some(long), _) => long,
        (None, Some(current)) => current.long.clone(),
        (None, None) => String::new(),
    };
    let short = short.trim();
    if !crate::api::handlers::infra::valid_location_short(short) {
        return Err(ApiError::invalid("short", "The short must be 1 to 60 letters, digits, `-`, `_` or `.`."));
    }
    if long.len() > 191 || long.chars().any(char::is_control) {
        return Err(ApiError::invalid("long", "The long must be at most 191 characters on one line."));
    }
    Ok((short.to_owned(), long.trim().to_owned()))
}

pub(super) async fn create_location(state: Arc<PanelState>, call: Call) -> Answered {
    let (short, long) = location_fields(&Body::of(&call)?, None)?;
    let location = Location { id: LocationId::new(), short, long };
    state.control.store().create_location(&location).await.map_err(store_error)?;
    let attributes = location_attributes(&state, vec![location]).await?.into_iter().next().ok_or_else(not_found)?;
    answer(StatusCode::CREATED, &created_meta(&state, StatusCode::CREATED, item("location", attributes), "locations"))
}

pub(super) async fn update_location(state: Arc<PanelState>, call: Call) -> Answered {
    let current = location(&state, &call).await?;
    let (short, long) = location_fields(&Body::of(&call)?, Some(&current))?;
    let location = Location { short, long, ..current };
    state.control.store().update_location(&location).await.map_err(store_error)?;
    let attributes = location_attributes(&state, vec![location]).await?.into_iter().next().ok_or_else(not_found)?;
    answer(StatusCode::OK, &item("location", attributes))
}

pub(super) async fn delete_location(state: Arc<PanelState>, call: Call) -> Answered {
    let location = location(&state, &call).await?;
    match state.control.store().delete_location(location.id).await {
        Err(StoreError::InUse { .. }) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "in_use",
            "Cannot delete a location that has nodes assigned to it.",
        )),
        other => {
            other.map_err(store_error)?;
            no_content()
        }
    }
}

// ---- nodes ------------------------------------------------------------------------------

async fn node_attributes(state: &PanelState, nodes: Vec<Node>) -> Result<Vec<Value>, ApiError> {
    let store = state.control.store();
    let numbers = refs(state, RecordKind::Node, nodes.iter().map(|n| n.id.to_string()).collect()).await?;
    let locations =
        refs(state, RecordKind::Location, nodes.iter().filter_map(|n| n.location.map(|l| l.to_string())).collect())
            .await?;
    let usage = store.node_usage().await.map_err(store_error)?;
    let scheme = if state.public_url.starts_with("https://") { "https" } else { "http" };
    Ok(nodes
        .into_iter()
        .map(|n| {
            let used = usage.iter().find(|u| u.node == Some(n.id));
            json!({
                "id": numbers.get(&n.id.to_string()).map_or(0, |r| r.number),
                "uuid": n.id,
                "public": true,
                "name": n.name,
                "description": Value::Null,
                "location_id": n.location.and_then(|l| locations.get(&l.to_string())).map(|r| r.number),
                "fqdn": n.fqdn,
                "scheme": scheme,
                "behind_proxy": false,
                "maintenance_mode": n.maintenance,
                "memory": n.capacity.memory_mb,
                "memory_overallocate": n.overallocation.memory_percent.map_or(0, i64::from),
                "disk": n.capacity.disk_mb,
                "disk_overallocate": n.overallocation.disk_percent.map_or(0, i64::from),
                "upload_size": 100,
                "daemon_listen": n.daemon_port,
                "daemon_sftp": 2022,
                "daemon_base": "/var/lib/nexus/servers",
                "created_at": Value::Null,
                "updated_at": Value::Null,
                "allocated_resources": {
                    "memory": used.map_or(0, |u| u.memory_mb),
                    "disk": used.map_or(0, |u| u.disk_mb),
                },
            })
        })
        .collect())
}

async fn node(state: &PanelState, call: &Call) -> Result<Node, ApiError> {
    let id: NodeId = key_of(state, call, 0, RecordKind::Node).await?;
    found(state.control.store().get_node(id).await)
}

async fn one_node(state: &PanelState, node: Node, status: StatusCode) -> Answered {
    let attributes = node_attributes(state, vec![node]).await?.into_iter().next().ok_or_else(not_found)?;
    answer(status, &created_meta(state, status, item("node", attributes), "nodes"))
}

pub(super) async fn list_nodes(state: Arc<PanelState>, call: Call) -> Answered {
    let mut rows = state.control.store().list_nodes().await.map_err(store_error)?;
    if let Some(name) = filter(&call, "name") {
        rows.retain(|n| n.name == name);
    }
    if let Some(fqdn) = filter(&call, "fqdn") {
        rows.retain(|n| n.fqdn == fqdn);
    }
    let list = Paging::list(Paging::of(&call, &state)?, rows, "node", "/api/application/nodes", |rows| {
        node_attributes(&state, rows)
    })
    .await?;
    answer(StatusCode::OK, &list)
}

pub(super) async fn show_node(state: Arc<PanelState>, call: Call) -> Answered {
    let node = node(&state, &call).await?;
    one_node(&state, node, StatusCode::OK).await
}

/// The location a body's `location_id` names.
async fn body_location(state: &PanelState, body: &Body, path: &str) -> Result<Option<LocationId>, ApiError> {
    let Some(number) = body.int(path)? else { return Ok(None) };
    let id = record_by_number(state, RecordKind::Location, number)
        .await?
        .ok_or_else(|| ApiError::invalid(path, "The selected location id is invalid."))?;
    Ok(Some(id))
}

pub(super) async fn create_node(state: Arc<PanelState>, call: Call) -> Answered {
    let body = Body::of(&call)?;
    let name = body.required_string("name")?;
    let location = body_location(&state, &body, "location_id").await?.ok_or_else(|| required("location_id"))?;
    let fqdn = body.required_string("fqdn")?;
    let memory = body.bounded("memory", u64::MAX >> 1)?.ok_or_else(|| required("memory"))?;
    let disk = body.bounded("disk", u64::MAX >> 1)?.ok_or_else(|| required("disk"))?;
    let port = daemon_listen(&body)?.unwrap_or(8080);
    let capacity = NodeCapacity { memory_mb: memory, disk_mb: disk, cpu_percent: 0 };
    let mut new = NewNode::new(name, fqdn, port, capacity);
    new.location = Some(location);
    let registration = state.control.register_node(new).await?;
    route_nodes(&state).await;
    let mut node = registration.node;
    if body.boolean("maintenance_mode")? == Some(true) {
        node.maintenance = true;
        node = state.control.update_node(&node).await?;
    }
    one_node(&state, node, StatusCode::CREATED).await
}

pub(super) async fn update_node(state: Arc<PanelState>, call: Call) -> Answered {
    let mut node = node(&state, &call).await?;
    let body = Body::of(&call)?;
    if let Some(name) = body.string("name")? {
        node.name = name;
    }
    if let Some(location) = body_location(&state, &body, "location_id").await? {
        node.location = Some(location);
    }
    if let Some(fqdn) = body.string("fqdn")? {
        node.fqdn = fqdn;
    }
    if let Some(memory) = body.bounded("memory", u64::MAX >> 1)? {
        node.capacity.memory_mb = memory;
    }
    if let Some(disk) = body.bounded("disk", u64::MAX >> 1)? {
        node.capacity.disk_mb = disk;
    }
    if let Some(port) = daemon_listen(&body)? {
        node.daemon_port = port;
    }
    if let Some(maintenance) = body.boolean("maintenance_mode")? {
        node.maintenance = maintenance;
    }
    let node = state.control.update_node(&node).await?;
    route_nodes(&state).await;
    one_node(&state, node, StatusCode::OK).await
}

/// A body's `daemon_listen`: a port from 1 to 65535.
fn daemon_listen(body: &Body) -> Result<Option<u16>, ApiError> {
    match body.int("daemon_listen")? {
        None => Ok(None),
        Some(port) => u16::try_from(port)
            .ok()
            .filter(|port| *port > 0)
            .map(Some)
            .ok_or_else(|| ApiError::invalid("daemon_listen", "The daemon listen must be between 1 and 65535.")),
    }
}

pub(super) async fn delete_node(state: Arc<PanelState>, call: Call) -> Answered {
    let node = node(&state, &call).await?;
    match state.control.delete_node(node.id, false).await {
        Err(nexus_control::ControlError::Store(StoreError::InUse { .. })) => {
            return Err(ApiError::bad_request("Cannot delete a node that has active servers attached to it."));
        }
        other => other?,
    };
    route_nodes(&state).await;
    no_content()
}

/// Tells the node client about added, changed or removed nodes at once.
async fn route_nodes(state: &PanelState) {
    if let Some(client) = &state.node_client
        && let Err(e) = client.sync_endpoints(&state.control).await
    {
        tracing::warn!(error = %e, "routing nodes");
    }
}

pub(super) async fn node_configuration(state: Arc<PanelState>, call: Call) -> Answered {
    let node = node(&state, &call).await?;
    let (_, token) = state.control.node_endpoint(node.id).await?;
    let console_secret = state
        .control
        .node_console_secret(node.id)
        .ok_or_else(|| ApiError::bad_request("the panel has no node secret"))?;
    // Wings' configuration keys where they mean the same, plus what nexus-wings reads.
    let config = json!({
        "debug": false,
        "uuid": node.id,
        "token_id": node.id,
        "token": token,
        "api": {
            "host": "0.0.0.0",
            "port": node.daemon_port,
            "ssl": { "enabled": false, "cert": "", "key": "" },
            "upload_limit": 100,
        },
        "system": { "data": "/var/lib/nexus/servers", "sftp": { "bind_port": 2022 } },
        "allowed_mounts": [],
        "remote": state.public_url,
        "nexus": {
            "node_id": node.id,
            "listen": format!("0.0.0.0:{}", node.daemon_port),
            "panel_url": state.public_url,
            "token": token,
            "token_secret": console_secret,
        },
    });
    answer(StatusCode::OK, &config)
}

// ---- allocations ------------------------------------------------------------------------

async fn allocation_attributes(state: &PanelState, allocations: Vec<Allocation>) -> Result<Vec<Value>, ApiError> {
    let numbers = refs(state, RecordKind::Allocation, allocations.iter().map(|a| a.id.to_string()).collect()).await?;
    Ok(allocations
        .into_iter()
        .map(|a| {
            json!({
                "id": numbers.get(&a.id.to_string()).map_or(0, |r| r.number),
                "ip": a.ip.to_string(),
                "alias": a.alias,
                "port": a.port,
                "notes": Value::Null,
                "assigned": a.server.is_some(),
            })
        })
        .collect())
}

pub(super) async fn list_allocations(state: Arc<PanelState>, call: Call) -> Answered {
    let node = node(&state, &call).await?;
    let rows = state.control.store().list_allocations(node.id).await.map_err(store_error)?;
    let path = format!("/api/application/nodes/{}/allocations", call.params[0]);
    let list =
        Paging::list(Paging::of(&call, &state)?, rows, "allocation", &path, |rows| allocation_attributes(&state, rows))
            .await?;
    answer(StatusCode::OK, &list)
}

pub(super) async fn create_allocations(state: Arc<PanelState>, call: Call) -> Answered {
    let node = node(&state, &call).await?;
    let body = Body::of(&call)?;
    let ip: std::net::IpAddr = body
        .required_string("ip")?
        .trim()
        .parse()
        .map_err(|_| ApiError::invalid("ip", "The ip must be a valid IP address."))?;
    let ports = body.strings("ports")?;
    if ports.is_empty() {
        return Err(required("ports"));
    }
    state.control.add_allocations(node.id, ip, &ports.join(",")).await?;
    no_content()
}

pub(super) async fn delete_allocation(state: Arc<PanelState>, call: Call) -> Answered {
    let node = node(&state, &call).await?;
    let id: AllocationId = key_of(&state, &call, 1, RecordKind::Allocation).await?;
    let allocation = found(state.control.store().get_allocation(id).await)?;
    if allocation.node != node.id {
        return Err(not_found());
    }
    if allocation.server.is_some() {
        return Err(ApiError::bad_request("Cannot delete an allocation that is currently assigned to a server."));
    }
    state.control.store().delete_allocation(id).await.map_err(store_error)?;
    no_content()
}

// ---- nests and eggs ---------------------------------------------------------------------

async fn nest_attributes(state: &PanelState, nests: Vec<Nest>) -> Result<Vec<Value>, ApiError> {
    let numbers = refs(state, RecordKind::Nest, nests.iter().map(|n| n.id.to_string()).collect()).await?;
    Ok(nests
        .into_iter()
        .map(|n| {
            json!({
                "id": numbers.get(&n.id.to_string()).map_or(0, |r| r.number),
                "uuid": n.id,
                "author": "",
                "name": n.name,
                "description": n.description,
                "created_at": Value::Null,
                "updated_at": Value::Null,
            })
        })
        .collect())
}

pub(super) async fn list_nests(state: Arc<PanelState>, call: Call) -> Answered {
    let rows = state.control.store().list_nests().await.map_err(store_error)?;
    let list = Paging::list(Paging::of(&call, &state)?, rows, "nest", "/api/application/nests", |rows| {
        nest_attributes(&state, rows)
    })
    .await?;
    answer(StatusCode::OK, &list)
}

async fn nest(state: &PanelState, call: &Call) -> Result<Nest, ApiError> {
    let id: NestId = key_of(state, call, 0, RecordKind::Nest).await?;
    found(state.control.store().get_nest(id).await)
}

pub(super) async fn show_nest(state: Arc<PanelState>, call: Call) -> Answered {
    let nest = nest(&state, &call).await?;
    let attributes = nest_attributes(&state, vec![nest]).await?.into_iter().next().ok_or_else(not_found)?;
    answer(StatusCode::OK, &item("nest", attributes))
}

/// A JSON text decoded, or the text itself when it is not JSON.
fn decoded(value: &Value) -> Value {
    match value {
        Value::String(text) => serde_json::from_str(text).unwrap_or_else(|_| value.clone()),
        other => other.clone(),
    }
}

async fn egg_attributes(state: &PanelState, eggs: Vec<Egg>, variables: bool) -> Result<Vec<Value>, ApiError> {
    let numbers = refs(state, RecordKind::Egg, eggs.iter().map(|e| e.id.to_string()).collect()).await?;
    let nests =
        refs(state, RecordKind::Nest, eggs.iter().filter_map(|e| e.nest.map(|n| n.to_string())).collect()).await?;
    let mut out = Vec::with_capacity(eggs.len());
    for egg in eggs {
        let number = numbers.get(&egg.id.to_string()).map_or(0, |r| r.number);
        let document = nexus_eggs::export::ptdl_v2(&egg);
        let mut attributes = json!({
            "id": number,
            "uuid": egg.id,
            "name": egg.name,
            "nest": egg.nest.and_then(|n| nests.get(&n.to_string())).map(|r| r.number),
            "author": egg.author,
            "description": egg.description,
            "docker_image": egg.default_image(),
            "docker_images": document["docker_images"],
            "config": {
                "files": decoded(&document["config"]["files"]),
                "startup": decoded(&document["config"]["startup"]),
                "stop": document["config"]["stop"],
                "logs": decoded(&document["config"]["logs"]),
                "file_denylist": egg.file_denylist,
                "extends": Value::Null,
            },
            "startup": egg.default_startup(),
            "script": {
                "privileged": true,
                "install": egg.install.script,
                "entry": egg.install.entrypoint,
                "container": egg.install.container,
                "extends": Value::Null,
            },
            "created_at": Value::Null,
            "updated_at": Value::Null,
        });
        if variables {
            // A variable whose key would be too long to number (a very long name) shows id 0.
            let keys = egg
                .variables
                .iter()
                .map(|v| format!("{}/{}", egg.id, v.env_variable))
                .filter(|key| key.len() <= nexus_core::model::MAX_RECORD_KEY_BYTES)
                .collect();
            let variable_numbers = refs(state, RecordKind::EggVariable, keys).await?;
            let data: Vec<Value> = egg
                .variables
                .iter()
                .map(|v| {
                    let key = format!("{}/{}", egg.id, v.env_variable);
                    item(
                        "egg_variable",
                        json!({
                            "id": variable_numbers.get(&key).map_or(0, |r| r.number),
                            "egg_id": number,
                            "name": v.name,
                            "description": v.description,
                            "env_variable": v.env_variable,
                            "default_value": v.default_value,
                            "user_viewable": v.user_viewable,
                            "user_editable": v.user_editable,
                            "rules": v.rules.join("|"),
                            "created_at": Value::Null,
                            "updated_at": Value::Null,
                        }),
                    )
                })
                .collect();
            attributes["relationships"] = json!({ "variables": { "object": "list", "data": data } });
        }
        out.push(attributes);
    }
    Ok(out)
}

pub(super) async fn list_eggs(state: Arc<PanelState>, call: Call) -> Answered {
    let nest = nest(&state, &call).await?;
    let mut rows = state.control.store().list_eggs().await.map_err(store_error)?;
    rows.retain(|e| e.nest == Some(nest.id));
    // As Pterodactyl: a nest's eggs are one list, not paged.
    let data: Vec<Value> = egg_attributes(&state, rows, includes(&call, "variables"))
        .await?
        .into_iter()
        .map(|attributes| item("egg", attributes))
        .collect();
    answer(StatusCode::OK, &json!({ "object": "list", "data": data }))
}

pub(super) async fn show_egg(state: Arc<PanelState>, call: Call) -> Answered {
    let nest = nest(&state, &call).await?;
    let id: EggId = key_of(&state, &call, 1, RecordKind::Egg).await?;
    let egg = found(state.control.store().get_egg(id).await)?;
    if egg.nest != Some(nest.id) {
        return Err(not_found());
    }
    let attributes = egg_attributes(&state, vec![egg], includes(&call, "variables"))
        .await?
        .into_iter()
        .next()
        .ok_or_else(not_found)?;
    answer(StatusCode::OK, &item("egg", attributes))
}

// ---- servers ----------------------------------------------------------------------------

/// What Pterodactyl calls a server's `status`.
pub(super) fn status_of(server: &Server) -> Value {
    match server.state {
        _ if server.suspended => json!("suspended"),
        ServerState::Requested | ServerState::Installing => json!("installing"),
        ServerState::InstallFailed => json!("install_failed"),
        _ => Value::Null,
    }
}

/// A server's limits as Pterodactyl writes them.
pub(super) fn limits_of(limits: &ServerLimits) -> Value {
    json!({
        "memory": limits.memory_mb,
        "swap": limits.swap_mb,
        "disk": limits.disk_mb,
        "io": limits.io_weight,
        "cpu": limits.cpu_percent,
        "threads": Value::Null,
        "oom_disabled": true,
    })
}

async fn server_attributes(state: &PanelState, servers: Vec<Server>) -> Result<Vec<Value>, ApiError> {
    let store = state.control.store();
    let keys = |f: &dyn Fn(&Server) -> String| servers.iter().map(f).collect::<Vec<String>>();
    let numbers = refs(state, RecordKind::Server, keys(&|s| s.id.to_string())).await?;
    let owners = refs(state, RecordKind::User, keys(&|s| s.owner.to_string())).await?;
    let nodes = refs(state, RecordKind::Node, keys(&|s| s.node.to_string())).await?;
    let allocations = refs(state, RecordKind::Allocation, keys(&|s| s.primary_allocation.to_string())).await?;
    let eggs_numbers = refs(state, RecordKind::Egg, keys(&|s| s.egg.to_string())).await?;
    let mut egg_nests: HashMap<EggId, Option<NestId>> = HashMap::new();
    for egg in servers.iter().map(|s| s.egg).collect::<BTreeSet<_>>() {
        let nest = match store.get_egg(egg).await {
            Ok(egg) => egg.nest,
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(store_error(e)),
        };
        egg_nests.insert(egg, nest);
    }
    let nests = refs(state, RecordKind::Nest, egg_nests.values().flatten().map(ToString::to_string).collect()).await?;
    let number =
        |map: &HashMap<String, nexus_core::model::RecordRef>, key: String| map.get(&key).map_or(0, |r| r.number);
    Ok(servers
        .into_iter()
        .map(|s| {
            let record = numbers.get(&s.id.to_string());
            json!({
                "id": record.map_or(0, |r| r.number),
                "external_id": record.and_then(|r| r.external_id.clone()),
                "uuid": s.id,
                "identifier": record.map_or_else(String::new, |r| r.short.clone()),
                "name": s.name,
                "description": extra(record, "description").unwrap_or_default(),
                "status": status_of(&s),
                "suspended": s.suspended,
                "limits": limits_of(&s.limits),
                "feature_limits": { "databases": 0, "allocations": 1 + s.extra_allocations.len(), "backups": s.backup_limit },
                "user": number(&owners, s.owner.to_string()),
                "node": number(&nodes, s.node.to_string()),
                "allocation": number(&allocations, s.primary_allocation.to_string()),
                "nest": egg_nests.get(&s.egg).copied().flatten().map(|n| number(&nests, n.to_string())),
                "egg": number(&eggs_numbers, s.egg.to_string()),
                "container": {
                    "startup_command": s.startup,
                    "image": s.image,
                    "installed": i32::from(!matches!(s.state, ServerState::Requested | ServerState::Installing | ServerState::InstallFailed)),
                    "environment": s.environment,
                },
                "updated_at": date(s.created_at),
                "created_at": date(s.created_at),
            })
        })
        .collect())
}

async fn one_server(state: &PanelState, server: Server, status: StatusCode) -> Answered {
    let attributes = server_attributes(state, vec![server]).await?.into_iter().next().ok_or_else(not_found)?;
    answer(status, &item("server", attributes))
}

async fn server(state: &PanelState, call: &Call) -> Result<Server, ApiError> {
    let id: ServerId = key_of(state, call, 0, RecordKind::Server).await?;
    match state.control.server(id).await {
        Ok(server) => Ok(server),
        Err(nexus_control::ControlError::UnknownServer(_)) => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn list_servers(state: Arc<PanelState>, call: Call) -> Answered {
    let store = state.control.store();
    let rows = if let Some(external) = filter(&call, "external_id") {
        match by_external::<ServerId>(&state, RecordKind::Server, external).await? {
            Some(id) => present(store.get_server(id).await)?.into_iter().collect(),
            None => Vec::new(),
        }
    } else {
        let mut rows = store.list_servers(&ServerFilter::default(), Page::all()).await.map_err(store_error)?;
        if let Some(name) = filter(&call, "name") {
            rows.retain(|s| s.name == name);
        }
        if let Some(uuid) = filter(&call, "uuid") {
            rows.retain(|s| s.id.to_string() == uuid);
        }
        rows
    };
    let list = Paging::list(Paging::of(&call, &state)?, rows, "server", "/api/application/servers", |rows| {
        server_attributes(&state, rows)
    })
    .await?;
    answer(StatusCode::OK, &list)
}

pub(super) async fn show_server(state: Arc<PanelState>, call: Call) -> Answered {
    let server = server(&state, &call).await?;
    one_server(&state, server, StatusCode::OK).await
}

pub(super) async fn server_by_external_id(state: Arc<PanelState>, call: Call) -> Answered {
    let external = call.params.first().map(String::as_str).unwrap_or_default();
    let id: ServerId = by_external(&state, RecordKind::Server, external).await?.ok_or_else(not_found)?;
    let server = found(state.control.store().get_server(id).await)?;
    one_server(&state, server, StatusCode::OK).await
}

/// Limits from a body: Pterodactyl's `limits.*` (or the same names at the top level, as the
/// build route takes them), over `base`.
fn body_limits(body: &Body, base: ServerLimits) -> Result<ServerLimits, ApiError> {
    let field =
        |name: &str| if body.has(&format!("limits.{name}")) { format!("limits.{name}") } else { name.to_owned() };
    let mut limits = base;
    if let Some(memory) = body.bounded(&field("memory"), 1 << 44)? {
        limits.memory_mb = memory;
    }
    if let Some(swap) = body.int(&field("swap"))? {
        limits.swap_mb = swap;
    }
    if let Some(disk) = body.bounded(&field("disk"), 1 << 44)? {
        limits.disk_mb = disk;
    }
    if let Some(io) = body.bounded(&field("io"), 1000)? {
        limits.io_weight = u16::try_from(io).unwrap_or(500);
    }
    if let Some(cpu) = body.bounded(&field("cpu"), 1 << 20)? {
        limits.cpu_percent = cpu;
    }
    if body.string(&field("threads"))?.is_some_and(|t| !t.trim().is_empty()) {
        return Err(ApiError::invalid(field("threads"), "Pinning a server to CPU threads is not supported."));
    }
    Ok(limits)
}

/// The record of `kind` numbered `number`.
async fn record_by_number<T: std::str::FromStr>(
    state: &PanelState,
    kind: RecordKind,
    number: i64,
) -> Result<Option<T>, ApiError> {
    let Ok(number) = u64::try_from(number) else { return Ok(None) };
    record_named(state, kind, RefLookup::Number(number)).await
}

/// Port ranges from `deploy.port_range` (`25565` or `25565-25570`).
fn port_ranges(texts: &[String]) -> Result<Vec<std::ops::RangeInclusive<u16>>, ApiError> {
    let bad = || {
        ApiError::invalid("deploy.port_range", "Each port range must be a port or `first-last` between 1 and 65535.")
    };
    texts
        .iter()
        .map(|text| {
            let (first, last) = text.split_once('-').unwrap_or((text, text));
            let first: u16 = first.trim().parse().map_err(|_| bad())?;
            let last: u16 = last.trim().parse().map_err(|_| bad())?;
            if first == 0 || last < first {
                return Err(bad());
            }
            Ok(first..=last)
        })
        .collect()
}

pub(super) async fn create_server(state: Arc<PanelState>, call: Call) -> Answered {
    let body = Body::of(&call)?;
    let name = body.required_string("name")?;
    let owner: UserId = record_by_number(&state, RecordKind::User, body.required_int("user")?)
        .await?
        .ok_or_else(|| ApiError::invalid("user", "The selected user is invalid."))?;
    present(state.control.store().get_user(owner).await)?
        .ok_or_else(|| ApiError::invalid("user", "The selected user is invalid."))?;
    let egg: EggId = record_by_number(&state, RecordKind::Egg, body.required_int("egg")?)
        .await?
        .ok_or_else(|| ApiError::invalid("egg", "The selected egg is invalid."))?;
    if !body.has("limits") {
        return Err(required("limits"));
    }
    let defaults = ServerLimits { io_weight: 500, ..ServerLimits::default() };
    let limits = body_limits(&body, defaults)?;
    if !body.has("limits.memory") {
        return Err(required("limits.memory"));
    }
    let external = body.string("external_id")?;
    if let Some(external) = &external {
        external_free(&state, RecordKind::Server, external, None).await?;
    }
    let extra = extra_fields(&body, &["description"])?;
    if !body.ints("allocation.additional")?.is_empty() {
        return Err(ApiError::invalid(
            "allocation.additional",
            "Additional allocations at creation are not supported.",
        ));
    }
    let mut new = NewServer::new(nexus_control::manage::check_name(&name)?, owner, egg, limits);
    new.values = body.environment("environment")?;
    new.image = body.string("docker_image")?.filter(|i| !i.is_empty());
    new.startup = body.string("startup")?.filter(|s| !s.is_empty());
    new.editor = Editor::Admin;
    new.start_on_completion = body.boolean("start_on_completion")?.unwrap_or(false);
    // As Pterodactyl: no limit given (or `null`) is no backups.
    new.backup_limit = Some(backup_limit(&body)?.flatten().unwrap_or(0));
    let locations: Vec<Option<LocationId>> = if let Some(default) = body.int("allocation.default")? {
        new.allocation =
            Some(record_by_number(&state, RecordKind::Allocation, default).await?.ok_or_else(|| {
                ApiError::invalid("allocation.default", "The selected allocation.default is invalid.")
            })?);
        vec![None]
    } else if body.has("deploy") {
        new.port_ranges = port_ranges(&body.strings("deploy.port_range")?)?;
        let mut locations = Vec::new();
        for number in body.ints("deploy.locations")? {
            let id = record_by_number(&state, RecordKind::Location, number)
                .await?
                .ok_or_else(|| ApiError::invalid("deploy.locations", "The selected deploy.locations is invalid."))?;
            locations.push(Some(id));
        }
        locations.dedup();
        if locations.is_empty() { vec![None] } else { locations }
    } else {
        return Err(required("allocation.default"));
    };
    // Deploy tries the locations in order, as Pterodactyl's deployment service picks among
    // them: the first that has room wins.
    let mut outcome = None;
    'locations: for location in locations {
        let mut attempt = new.clone();
        attempt.location = location;
        // A port another create took between choosing and claiming it: choose again.
        for _ in 0..3 {
            match state.control.create_server(attempt.clone()).await {
                Ok(created) => {
                    outcome = Some(Ok(created));
                    break 'locations;
                }
                Err(e @ nexus_control::ControlError::Store(StoreError::AllocationUnavailable { .. }))
                    if attempt.allocation.is_none() =>
                {
                    outcome = Some(Err(e));
                    continue;
                }
                Err(
                    e @ (nexus_control::ControlError::Placement(_) | nexus_control::ControlError::NoFreeAllocation(_)),
                ) => {
                    outcome = Some(Err(e));
                    continue 'locations;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    let created = match outcome {
        Some(Ok(created)) => created,
        Some(Err(e)) => return Err(e.into()),
        None => return Err(ApiError::invalid("deploy.locations", "No location can take the server.")),
    };
    if let Some(external) = &external
        && let Err(e) = set_external(&state, RecordKind::Server, &created.server.id.to_string(), Some(external)).await
    {
        // Another create took the id meanwhile: this server goes again.
        if let Err(undo) = state.control.destroy_server(created.server.id).await {
            tracing::warn!(server = %created.server.id, error = %undo, "removing a server whose external id was taken");
        }
        return Err(e);
    }
    keep_extra(&state, RecordKind::Server, &created.server.id.to_string(), extra).await?;
    one_server(&state, created.server, StatusCode::CREATED).await
}

pub(super) async fn update_details(state: Arc<PanelState>, call: Call) -> Answered {
    let mut server = server(&state, &call).await?;
    let body = Body::of(&call)?;
    if let Some(user) = body.int("user")? {
        let owner: Option<UserId> = record_by_number(&state, RecordKind::User, user).await?;
        if owner != Some(server.owner) {
            return Err(ApiError::invalid("user", "Changing a server's owner is not supported."));
        }
    }
    if let Some(external) = body.string("external_id")? {
        external_free(&state, RecordKind::Server, &external, Some(&server.id.to_string())).await?;
        set_external(&state, RecordKind::Server, &server.id.to_string(), Some(&external)).await?;
    } else if body.is_null("external_id") {
        set_external(&state, RecordKind::Server, &server.id.to_string(), None).await?;
    }
    let extra = extra_fields(&body, &["description"])?;
    if let Some(name) = body.string("name")? {
        server = state.control.rename_server(server.id, &name).await?;
    }
    keep_extra(&state, RecordKind::Server, &server.id.to_string(), extra).await?;
    one_server(&state, server, StatusCode::OK).await
}

pub(super) async fn update_build(state: Arc<PanelState>, call: Call) -> Answered {
    let server = server(&state, &call).await?;
    let body = Body::of(&call)?;
    if let Some(allocation) = body.int("allocation")? {
        let wanted: Option<AllocationId> = record_by_number(&state, RecordKind::Allocation, allocation).await?;
        if wanted != Some(server.primary_allocation) {
            return Err(ApiError::invalid("allocation", "Changing the primary allocation is not supported."));
        }
    }
    let limits = body_limits(&body, server.limits)?;
    let mut server = state.control.update_build(server.id, limits).await?;
    if let Some(limit) = backup_limit(&body)? {
        server = state.control.set_backup_limit(server.id, Some(limit.unwrap_or(0))).await?;
    }
    one_server(&state, server, StatusCode::OK).await
}

/// `feature_limits.backups` when given (`Some(None)` for `null`, which Pterodactyl treats as
/// no backups).
fn backup_limit(body: &Body) -> Result<Option<Option<u32>>, ApiError> {
    if !body.has("feature_limits.backups") {
        return Ok(None);
    }
    if body.get("feature_limits.backups").is_some_and(Value::is_null) {
        return Ok(Some(None));
    }
    let max = u64::from(nexus_control::backups::MAX_BACKUP_LIMIT);
    Ok(body.bounded("feature_limits.backups", max)?.map(|n| u32::try_from(n).ok()))
}

pub(super) async fn update_startup(state: Arc<PanelState>, call: Call) -> Answered {
    let server = server(&state, &call).await?;
    let body = Body::of(&call)?;
    if body.string("startup")?.is_some_and(|s| s != server.startup) {
        return Err(ApiError::invalid("startup", "Changing the startup command is not supported."));
    }
    if body.string("image")?.is_some_and(|i| i != server.image) {
        return Err(ApiError::invalid("image", "Changing the image is not supported."));
    }
    if let Some(egg) = body.int("egg")? {
        let wanted: Option<EggId> = record_by_number(&state, RecordKind::Egg, egg).await?;
        if wanted != Some(server.egg) {
            return Err(ApiError::invalid("egg", "Changing the egg is not supported."));
        }
    }
    let values = body.environment("environment")?;
    let server = if values.is_empty() {
        server
    } else {
        state.control.update_variables(server.id, &values, Editor::Admin).await?
    };
    one_server(&state, server, StatusCode::OK).await
}

pub(super) async fn suspend(state: Arc<PanelState>, call: Call) -> Answered {
    suspension(&state, &call, true).await
}

pub(super) async fn unsuspend(state: Arc<PanelState>, call: Call) -> Answered {
    suspension(&state, &call, false).await
}

/// As Pterodactyl: asking for the state a server is already in changes nothing and succeeds.
async fn suspension(state: &PanelState, call: &Call, suspended: bool) -> Answered {
    let server = server(state, call).await?;
    if server.suspended != suspended {
        state.control.set_suspended(server.id, suspended).await?;
    }
    no_content()
}

pub(super) async fn reinstall(state: Arc<PanelState>, call: Call) -> Answered {
    let server = server(&state, &call).await?;
    state.control.reinstall_server(server.id).await?;
    no_content()
}

pub(super) async fn delete_server(state: Arc<PanelState>, call: Call) -> Answered {
    let server = server(&state, &call).await?;
    state.control.destroy_server(server.id).await?;
    set_external(&state, RecordKind::Server, &server.id.to_string(), None).await?;
    no_content()
}

pub(super) async fn force_delete_server(state: Arc<PanelState>, call: Call) -> Answered {
    delete_server(state, call).await
}

// ---- shared -----------------------------------------------------------------------------

fn not_found() -> ApiError {
    ApiError::not_found("The requested resource could not be found on the server.")
}

/// A record, or Pterodactyl's `404` when it is gone.
fn found<T>(result: Result<T, StoreError>) -> Result<T, ApiError> {
    match result {
        Ok(value) => Ok(value),
        Err(StoreError::NotFound { .. }) => Err(not_found()),
        Err(e) => Err(store_error(e)),
    }
}

/// A record, or `None` when it is gone.
fn present<T>(result: Result<T, StoreError>) -> Result<Option<T>, ApiError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(store_error(e)),
    }
}

/// The record of `kind` holding external id `external`.
async fn by_external<T: std::str::FromStr>(
    state: &PanelState,
    kind: RecordKind,
    external: &str,
) -> Result<Option<T>, ApiError> {
    record_named(state, kind, RefLookup::External(external)).await
}

/// Refuses `external` when a live record other than `mine` holds it; a deleted record's
/// hold is released.
async fn external_free(
    state: &PanelState,
    kind: RecordKind,
    external: &str,
    mine: Option<&str>,
) -> Result<(), ApiError> {
    nexus_core::store::check_external_id(external).map_err(|e| ApiError::invalid("external_id", e.to_string()))?;
    let store = state.control.store();
    let holders = store.find_record_refs(kind, RefLookup::External(external)).await.map_err(store_error)?;
    for holder in holders.into_iter().filter(|h| Some(h.key.as_str()) != mine) {
        let alive = match kind {
            RecordKind::User => match holder.key.parse() {
                Ok(id) => present(store.get_user(id).await)?.is_some(),
                Err(_) => false,
            },
            _ => match holder.key.parse() {
                Ok(id) => present(store.get_server(id).await)?.is_some(),
                Err(_) => false,
            },
        };
        if alive {
            return Err(ApiError::invalid("external_id", "The external id has already been taken."));
        }
        store.set_external_id(kind, &holder.key, None).await.map_err(store_error)?;
    }
    Ok(())
}

async fn set_external(state: &PanelState, kind: RecordKind, key: &str, external: Option<&str>) -> Result<(), ApiError> {
    match state.control.store().set_external_id(kind, key, external).await {
        Ok(_) => Ok(()),
        Err(StoreError::Duplicate { .. }) => {
            Err(ApiError::invalid("external_id", "The external id has already been taken."))
        }
        Err(StoreError::InvalidReference(reason)) => Err(ApiError::invalid("external_id", reason)),
        Err(e) => Err(store_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_are_single_ports_or_spans() {
        let ranges = port_ranges(&["25565".into(), " 27015 - 27020 ".into()]).unwrap();
        assert_eq!(ranges, [25565..=25565, 27015..=27020]);
        for bad in ["0", "27020-27015", "x", "1-70000", ""] {
            assert!(port_ranges(&[bad.into()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_follows_state_and_suspension() {
        let mut server = Server {
            id: ServerId::new(),
            name: "s".into(),
            owner: UserId::new(),
            node: NodeId::new(),
            egg: EggId::new(),
            image: String::new(),
            startup: String::new(),
            environment: Default::default(),
            limits: ServerLimits::default(),
            primary_allocation: AllocationId::new(),
            extra_allocations: Vec::new(),
            state: ServerState::Installing,
            version: 0,
            created_at: chrono::Utc::now(),
            suspended: false,
            deletion_requested_at: None,
            backup_limit: None,
            templates: Vec::new(),
        };
        assert_eq!(status_of(&server), json!("installing"));
        server.state = ServerState::Running;
        assert_eq!(status_of(&server), Value::Null);
        server.suspended = true;
        assert_eq!(status_of(&server), json!("suspended"));
    }
}
