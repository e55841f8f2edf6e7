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
    // Admins see every server (Pterodactyl's `?type=admin`); everyone else their own and
    // those shared with them.
    let filter = ServerFilter {
        member: if principal.user.role == nexus_core::model::Role::Admin { None } else { Some(principal.user.id) },
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
    let name = nexus_control::manage::check_name(&body.name)?;
    // The owner must exist: a server for nobody could never be seen.
    match state.control.store().get_user(body.owner).await {
        Ok(_) => {}
        Err(nexus_core::store::StoreError::NotFound { .. }) => {
            return Err(ApiError::invalid("owner", "no such user"));
        }
        Err(e) => return Err(ctl(e)),
    }
    let limits: ServerLimits = body.limits.into();
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
    let (delivery, reason) = delivery_json(&done.delivery);
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
    // As Pterodactyl: each action its own permission.
    call.require(match body.action {
        PowerAction::Start => "control.start",
        PowerAction::Stop | PowerAction::Kill => "control.stop",
        PowerAction::Restart => "control.restart",
    })?;
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
    let permissions = call.access()?.node_permissions();
    if !permissions.contains(&nexus_core::model::Permission::ConsoleRead) {
        return Err(ApiError::forbidden("this needs the `websocket.connect` permission"));
    }
    let access = state.control.console_access(server.id, &permissions).await?;
    ok(&access)
}

pub(crate) async fn delete(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let id: ServerId = call.param(0)?;
    match state.control.destroy_server(id).await {
        Ok(delivery) => {
            let (delivery, reason) = delivery_json(&delivery);
            let body =
                serde_json::json!({ "server": id, "deleting": true, "delivery": delivery, "pending_reason": reason });
            Ok(json_response(StatusCode::ACCEPTED, &body))
        }
        Err(nexus_control::ControlError::UnknownServer(_)) => Err(ApiError::not_found("server")),
        Err(e) => Err(e.into()),
    }
}

fn delivery_json(delivery: &Delivery) -> (&'static str, Option<String>) {
    match delivery {
        Delivery::Sent => ("sent", None),
        Delivery::Pending(reason) => ("pending", Some(reason.clone())),
        _ => ("pending", None),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rename {
    name: String,
}

pub(crate) async fn rename(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let body: Rename = call.json()?;
    let server = state.control.rename_server(call.server()?.id, &body.name).await?;
    ok(&ServerView::from(&server))
}

pub(crate) async fn reinstall(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    state.control.reinstall_server(call.server()?.id).await?;
    Ok(json_response(StatusCode::ACCEPTED, &serde_json::json!({ "reinstalling": true })))
}

/// The startup command and the variables the caller may see, with values and rules.
pub(crate) async fn startup(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let server = call.server()?;
    let admin = matches!(call.access()?, nexus_control::subusers::ServerAccess::Admin);
    let egg = state.control.egg(server.egg).await?;
    let variables: Vec<serde_json::Value> = egg
        .variables
        .iter()
        .filter(|v| admin || v.user_viewable)
        .map(|v| {
            serde_json::json!({
                "name": v.name,
                "description": v.description,
                "env_variable": v.env_variable,
                "default_value": v.default_value,
                "value": server.environment.get(&v.env_variable).unwrap_or(&v.default_value),
                "editable": admin || v.user_editable,
                "rules": v.rules,
            })
        })
        .collect();
    ok(&serde_json::json!({ "startup": server.startup, "image": server.image, "variables": variables }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateStartup {
    variables: BTreeMap<String, String>,
}

pub(crate) async fn update_startup(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let body: UpdateStartup = call.json()?;
    let editor = if matches!(call.access()?, nexus_control::subusers::ServerAccess::Admin) {
        Editor::Admin
    } else {
        Editor::User
    };
    let server = state.control.update_variables(call.server()?.id, &body.variables, editor).await?;
    ok(&ServerView::from(&server))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBuild {
    limits: Limits,
}

pub(crate) async fn update_build(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let id: ServerId = call.param(0)?;
    let body: UpdateBuild = call.json()?;
    let server = state.control.update_build(id, body.limits.into()).await?;
    ok(&ServerView::from(&server))
}

pub(crate) async fn suspend(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let server = state.control.set_suspended(call.param(0)?, true).await?;
    ok(&ServerView::from(&server))
}

pub(crate) async fn unsuspend(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let server = state.control.set_suspended(call.param(0)?, false).await?;
    ok(&ServerView::from(&server))
}

impl From<Limits> for ServerLimits {
    fn from(l: Limits) -> Self {
        ServerLimits {
            memory_mb: l.memory_mb,
            swap_mb: l.swap_mb,
            cpu_percent: l.cpu_percent,
            disk_mb: l.disk_mb,
            io_weight: l.io_weight,
            pids: l.pids,
        }
    }
}
