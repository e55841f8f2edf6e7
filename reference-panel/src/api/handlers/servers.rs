//! Servers: list (from the store), create, show, lifecycle history, power, command, console
//! credentials, delete.

use super::account::ctl;
use super::views::ServerView;
use super::{created, listing, no_content, ok};
use crate::api::{ApiError, Call, PanelState, json_response};
use nexus_control::servers::{Delivery, NewServer};
use nexus_core::ids::{EggId, LocationId, NodeId, ServerId, UserId};
use nexus_core::model::ServerLimits;
use nexus_core::store::ServerFilter;
use nexus_core::transport::PowerAction;
use nexus_eggs::spec::Editor;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::Response;

/// Longest console command accepted.
const MAX_COMMAND_BYTES: usize = 4096;
/// Lifecycle events shown at most.
const MAX_EVENTS: u64 = 100;

pub(crate) async fn list(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let principal = call.principal()?;
    let (page, number, per_page) = call.page()?;
    // Admins see every server (Pterodactyl's `?type=admin`); everyone else their own.
    let filter = ServerFilter {
        owner: if principal.user.role == nexus_core::model::Role::Admin { None } else { Some(principal.user.id) },
        ..ServerFilter::default()
    };
    let rows = state.control.store().list_servers(&filter, page).await.map_err(ctl)?;
    listing(rows.iter().map(ServerView::from).collect(), number, per_page)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Limits {
    memory_mb: u64,
    #[serde(default)]
    disk_mb: u64,
    #[serde(default)]
    cpu_percent: u64,
    #[serde(default)]
    swap_mb: i64,
    #[serde(default = "default_io_weight")]
    io_weight: u16,
    #[serde(default)]
    pids: u64,
}

fn default_io_weight() -> u16 {
    500
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateServer {
    name: String,
    owner: UserId,
    egg: EggId,
    limits: Limits,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    startup: Option<String>,
    #[serde(default)]
    location: Option<LocationId>,
    #[serde(default)]
    tags: BTreeSet<String>,
    #[serde(default)]
    node: Option<NodeId>,
}

pub(crate) async fn create(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let body: CreateServer = call.json()?;
    let name = body.name.trim();
    if name.is_empty() || name.len() > 191 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid("name", "1 to 191 bytes, one line"));
    }
    // The owner must exist: a server for nobody could never be seen.
    match state.control.store().get_user(body.owner).await {
        Ok(_) => {}
        Err(nexus_core::store::StoreError::NotFound { .. }) => {
            return Err(ApiError::invalid("owner", "no such user"));
        }
        Err(e) => return Err(ctl(e)),
    }
    let l = body.limits;
    let limits = ServerLimits {
        memory_mb: l.memory_mb,
        swap_mb: l.swap_mb,
        cpu_percent: l.cpu_percent,
        disk_mb: l.disk_mb,
        io_weight: l.io_weight,
        pids: l.pids,
    };
    let mut new = NewServer::new(name, body.owner, body.egg, limits);
    new.values = body.variables;
    new.image = body.image;
    new.startup = body.startup;
    new.location = body.location;
    new.required_tags = body.tags;
    new.node = body.node;
    // Only admins reach this route: they may set any variable and override image and startup.
    new.editor = Editor::Admin;
    let done = state.control.create_server(new).await?;
    let (delivery, reason) = match &done.delivery {
        Delivery::Sent => ("sent", None),
        Delivery::Pending(reason) => ("pending", Some(reason.clone())),
        _ => ("pending", None),
    };
    created(&serde_json::json!({
        "server": ServerView::from(&done.server),
        "delivery": delivery,
        "pending_reason": reason,
    }))
}

pub(crate) async fn show(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let server = call.server()?;
    let allocation = state.control.store().get_allocation(server.primary_allocation).await.map_err(ctl)?;
    let mut view = serde_json::to_value(ServerView::from(server)).unwrap_or_default();
    view["allocation"] = serde_json::json!({ "ip": allocation.ip, "port": allocation.port });
    ok(&view)
}

pub(crate) async fn events(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let events = state.control.store().server_events(call.server()?.id, MAX_EVENTS).await.map_err(ctl)?;
    ok(&events)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Power {
    action: PowerAction,
}

pub(crate) async fn power(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let body: Power = call.json()?;
    state.control.power(call.server()?.id, body.action).await?;
    Ok(json_response(StatusCode::ACCEPTED, &serde_json::json!({ "action": body.action })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Command {
    command: String,
}

pub(crate) async fn command(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let body: Command = call.json()?;
    if body.command.len() > MAX_COMMAND_BYTES || body.command.contains(['\n', '\r', '\0']) {
        return Err(ApiError::invalid("command", format!("one line of at most {MAX_COMMAND_BYTES} bytes")));
    }
    state.control.send_command(call.server()?.id, &body.command).await?;
    no_content()
}

/// Credentials for the node's console WebSocket, with the caller's permissions on the server.
pub(crate) async fn websocket(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let server = call.server()?;
    let permissions = call.principal()?.server_permissions(server).unwrap_or_default();
    let access = state.control.console_access(server.id, &permissions).await?;
    ok(&access)
}

pub(crate) async fn delete(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let id: ServerId = call.param(0)?;
    match state.control.destroy_server(id).await {
        Ok(()) => Ok(json_response(StatusCode::ACCEPTED, &serde_json::json!({ "server": id, "deleting": true }))),
        Err(nexus_control::ControlError::UnknownServer(_)) => Err(ApiError::not_found("server")),
        Err(e) => Err(e.into()),
    }
}
