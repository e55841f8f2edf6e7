//! Servers: list (from the store), create, show, lifecycle history, power, command, console
//! credentials, delete.

use super::account::ctl;
use super::views::ServerView;
use crate::api::answer::{Answer, Listing, NoContent, accepted, created, listing, no_content, ok};
use crate::api::{ApiError, Call, PanelState};
use nexus_control::console::ConsoleAccess;
use nexus_control::servers::{Delivery, NewServer};
use nexus_core::ids::{EggId, LocationId, NodeId, ServerId, UserId};
use nexus_core::lifecycle::LifecycleEvent;
use nexus_core::model::ServerLimits;
use nexus_core::store::{ServerFilter, ServerOrder};
use nexus_core::transport::PowerAction;
use nexus_eggs::spec::Editor;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

/// Longest console command accepted.
const MAX_COMMAND_BYTES: usize = 4096;
/// Lifecycle events shown at most.
const MAX_EVENTS: u64 = 100;

pub(crate) async fn list(state: Arc<PanelState>, call: Call) -> Result<Answer<Listing<ServerView>>, ApiError> {
    let principal = call.principal()?;
    let (page, number, per_page) = call.page()?;
    // Admins see every server (Pterodactyl's `?type=admin`); everyone else their own and
    // those shared with them.
    let order = match call.query.get("sort").map(String::as_str) {
        None | Some("created_at") => ServerOrder::CreatedAt,
        Some("-created_at") => ServerOrder::CreatedAtDesc,
        Some("name") => ServerOrder::Name,
        Some("-name") => ServerOrder::NameDesc,
        Some(_) => return Err(ApiError::invalid("sort", "one of created_at, -created_at, name, -name")),
    };
    let filter = ServerFilter {
        member: if principal.user.role == nexus_core::model::Role::Admin { None } else { Some(principal.user.id) },
        owner: query_id(&call, "owner")?,
        node: query_id(&call, "node")?,
        egg: query_id(&call, "egg")?,
        order,
    };
    let rows = state.control.store().list_servers(&filter, page).await.map_err(ctl)?;
    listing(rows.iter().map(ServerView::from).collect(), number, per_page)
}

/// The id in query parameter `name`, if given.
fn query_id<T: std::str::FromStr>(call: &Call, name: &str) -> Result<Option<T>, ApiError> {
    call.query
        .get(name)
        .map(|v| v.parse().map_err(|_| ApiError::invalid(name, format!("`{name}` must be an id (UUID)"))))
        .transpose()
}

/// A server's limits (0 = unlimited where that makes sense).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Limits {
    /// Memory, MiB.
    memory_mb: u64,
    /// Disk, MiB.
    #[serde(default)]
    disk_mb: u64,
    /// CPU, percent of one core.
    #[serde(default)]
    cpu_percent: u64,
    /// Swap, MiB (`-1` unlimited).
    #[serde(default)]
    swap_mb: i64,
    /// Block I/O weight, 10–1000.
    #[serde(default = "default_io_weight")]
    io_weight: u16,
    /// Processes at most.
    #[serde(default)]
    pids: u64,
}

fn default_io_weight() -> u16 {
    500
}

/// A new server.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateServer {
    name: String,
    owner: UserId,
    egg: EggId,
    limits: Limits,
    /// Egg variables by `env_variable`; each checked against its rules.
    #[serde(default)]
    variables: BTreeMap<String, String>,
    /// One of the egg's images (its first when absent).
    #[serde(default)]
    image: Option<String>,
    /// The startup command (the egg's when absent).
    #[serde(default)]
    startup: Option<String>,
    /// Place it in this location.
    #[serde(default)]
    location: Option<LocationId>,
    /// Place it on a node carrying all these tags.
    #[serde(default)]
    tags: BTreeSet<String>,
    /// Place it on this node.
    #[serde(default)]
    node: Option<NodeId>,
    /// How many backups it may keep: a number (`0`: no backups), or `null` for no limit;
    /// 3 when absent.
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<u32>")]
    backup_limit: Option<Option<u32>>,
    /// Its own template layers (`name@version`), applied after the egg's once its install
    /// script succeeded.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    templates: Vec<nexus_core::template::LayerRef>,
}

/// A created server, and whether its node has it yet.
#[derive(Serialize, JsonSchema)]
pub(crate) struct CreatedServer {
    server: ServerView,
    #[serde(flatten)]
    delivery: DeliveryView,
}

/// Whether the node was told: `sent`, or `pending` (sent again when the node answers) and why.
#[derive(Serialize, JsonSchema)]
pub(crate) struct DeliveryView {
    delivery: DeliveryState,
    /// Why it is pending.
    pending_reason: Option<String>,
}

pub(crate) async fn create(
    state: Arc<PanelState>,
    _: Call,
    body: CreateServer,
) -> Result<Answer<CreatedServer>, ApiError> {
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
    if let Some(limit) = body.backup_limit {
        new.backup_limit = limit;
    }
    new.templates = body.templates;
    // Only admins reach this route: they may set any variable and override image and startup.
    new.editor = Editor::Admin;
    let done = state.control.create_server(new).await?;
    created(CreatedServer { server: ServerView::from(&done.server), delivery: DeliveryView::of(&done.delivery) })
}

/// A server and the address players reach it at.
#[derive(Serialize, JsonSchema)]
pub(crate) struct ServerDetail {
    #[serde(flatten)]
    server: ServerView,
    allocation: Address,
    /// The permissions the caller holds on this server (owners and admins: all).
    permissions: Vec<&'static str>,
}

/// An IP and port.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Address {
    ip: IpAddr,
    port: u16,
}

pub(crate) async fn show(state: Arc<PanelState>, call: Call) -> Result<Answer<ServerDetail>, ApiError> {
    let server = call.server()?;
    let allocation = state.control.store().get_allocation(server.primary_allocation).await.map_err(ctl)?;
    let access = call.access()?;
    ok(ServerDetail {
        server: ServerView::from(server),
        allocation: Address { ip: allocation.ip, port: allocation.port },
        permissions: access.permissions(),
    })
}

pub(crate) async fn events(state: Arc<PanelState>, call: Call) -> Result<Answer<Vec<LifecycleEvent>>, ApiError> {
    ok(state.control.store().server_events(call.server()?.id, MAX_EVENTS).await.map_err(ctl)?)
}

/// A power action.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Power {
    pub(crate) action: PowerAction,
}

/// The action was sent to the node.
#[derive(Serialize, JsonSchema)]
pub(crate) struct PowerAccepted {
    action: PowerAction,
}

pub(crate) async fn power(state: Arc<PanelState>, call: Call, body: Power) -> Result<Answer<PowerAccepted>, ApiError> {
    // As Pterodactyl: each action its own permission.
    call.require(match body.action {
        PowerAction::Start => "control.start",
        PowerAction::Stop | PowerAction::Kill => "control.stop",
        PowerAction::Restart => "control.restart",
    })?;
    state.control.power(call.server()?.id, body.action).await?;
    accepted(PowerAccepted { action: body.action })
}

/// A console command.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Command {
    /// One line, at most 4096 bytes.
    pub(crate) command: String,
}

pub(crate) async fn command(state: Arc<PanelState>, call: Call, body: Command) -> Result<Answer<NoContent>, ApiError> {
    if body.command.len() > MAX_COMMAND_BYTES || body.command.contains(['\n', '\r', '\0']) {
        return Err(ApiError::invalid("command", format!("one line of at most {MAX_COMMAND_BYTES} bytes")));
    }
    state.control.send_command(call.server()?.id, &body.command).await?;
    no_content()
}

/// Credentials for the node's console WebSocket, with the caller's permissions on the server.
pub(crate) async fn websocket(state: Arc<PanelState>, call: Call) -> Result<Answer<ConsoleAccess>, ApiError> {
    let server = call.server()?;
    let permissions = call.access()?.node_permissions();
    if !permissions.contains(&nexus_core::model::Permission::ConsoleRead) {
        return Err(ApiError::forbidden("this needs the `websocket.connect` permission"));
    }
    ok(state.control.console_access(server.id, &permissions).await?)
}

/// A deletion under way.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Deleting {
    server: ServerId,
    /// Always `true`: the row goes when the node confirms.
    deleting: bool,
    #[serde(flatten)]
    delivery: DeliveryView,
}

pub(crate) async fn delete(state: Arc<PanelState>, call: Call) -> Result<Answer<Deleting>, ApiError> {
    let id: ServerId = call.param(0)?;
    match state.control.destroy_server(id).await {
        Ok(delivery) => accepted(Deleting { server: id, deleting: true, delivery: DeliveryView::of(&delivery) }),
        Err(nexus_control::ControlError::UnknownServer(_)) => Err(ApiError::not_found("server")),
        Err(e) => Err(e.into()),
    }
}

/// Whether the node has been told.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DeliveryState {
    /// The node accepted it.
    Sent,
    /// The node did not answer; it is sent again when it does.
    Pending,
}

impl DeliveryView {
    fn of(delivery: &Delivery) -> Self {
        let (delivery, pending_reason) = match delivery {
            Delivery::Sent => (DeliveryState::Sent, None),
            Delivery::Pending(reason) => (DeliveryState::Pending, Some(reason.clone())),
            _ => (DeliveryState::Pending, None),
        };
        Self { delivery, pending_reason }
    }
}

/// A new name.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rename {
    pub(crate) name: String,
}

pub(crate) async fn rename(state: Arc<PanelState>, call: Call, body: Rename) -> Result<Answer<ServerView>, ApiError> {
    let server = state.control.rename_server(call.server()?.id, &body.name).await?;
    ok(ServerView::from(&server))
}

/// A reinstall was started.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Reinstalling {
    /// Always `true`.
    reinstalling: bool,
}

pub(crate) async fn reinstall(state: Arc<PanelState>, call: Call) -> Result<Answer<Reinstalling>, ApiError> {
    state.control.reinstall_server(call.server()?.id).await?;
    accepted(Reinstalling { reinstalling: true })
}

/// A server's startup command and the variables the caller may see.
#[derive(Serialize, JsonSchema)]
pub(crate) struct StartupView {
    pub(crate) startup: String,
    pub(crate) image: String,
    pub(crate) variables: Vec<StartupVariable>,
}

/// One variable with its value.
#[derive(Serialize, JsonSchema)]
pub(crate) struct StartupVariable {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) env_variable: String,
    pub(crate) default_value: String,
    pub(crate) value: String,
    /// Whether the caller may change it.
    pub(crate) editable: bool,
    /// The egg's rules (`required|string|max:20`).
    pub(crate) rules: Vec<String>,
}

/// The startup command and the variables the caller may see, with values and rules.
pub(crate) async fn startup(state: Arc<PanelState>, call: Call) -> Result<Answer<StartupView>, ApiError> {
    let server = call.server()?;
    let admin = matches!(call.access()?, nexus_control::subusers::ServerAccess::Admin);
    let egg = state.control.egg(server.egg).await?;
    let variables = egg
        .variables
        .iter()
        .filter(|v| admin || v.user_viewable)
        .map(|v| StartupVariable {
            name: v.name.clone(),
            description: v.description.clone(),
            env_variable: v.env_variable.clone(),
            default_value: v.default_value.clone(),
            value: server.environment.get(&v.env_variable).unwrap_or(&v.default_value).clone(),
            editable: admin || v.user_editable,
            rules: v.rules.clone(),
        })
        .collect();
    ok(StartupView { startup: server.startup.clone(), image: server.image.clone(), variables })
}

/// New values of egg variables, by `env_variable`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateStartup {
    pub(crate) variables: BTreeMap<String, String>,
}

pub(crate) async fn update_startup(
    state: Arc<PanelState>,
    call: Call,
    body: UpdateStartup,
) -> Result<Answer<ServerView>, ApiError> {
    let editor = if matches!(call.access()?, nexus_control::subusers::ServerAccess::Admin) {
        Editor::Admin
    } else {
        Editor::User
    };
    let server = state.control.update_variables(call.server()?.id, &body.variables, editor).await?;
    ok(ServerView::from(&server))
}

/// New limits.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateBuild {
    limits: Limits,
    /// How many backups it may keep: a number, or `null` for no limit; unchanged when absent.
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<u32>")]
    backup_limit: Option<Option<u32>>,
}

/// A field that may be `null`: `Some(None)` when given as `null`, `None` when absent.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    <Option<u32> as serde::Deserialize>::deserialize(d).map(Some)
}

pub(crate) async fn update_build(
    state: Arc<PanelState>,
    call: Call,
    body: UpdateBuild,
) -> Result<Answer<ServerView>, ApiError> {
    let id: ServerId = call.param(0)?;
    let mut server = state.control.update_build(id, body.limits.into()).await?;
    if let Some(limit) = body.backup_limit {
        server = state.control.set_backup_limit(id, limit).await?;
    }
    ok(ServerView::from(&server))
}

pub(crate) async fn suspend(state: Arc<PanelState>, call: Call) -> Result<Answer<ServerView>, ApiError> {
    let server = state.control.set_suspended(call.param(0)?, true).await?;
    ok(ServerView::from(&server))
}

pub(crate) async fn unsuspend(state: Arc<PanelState>, call: Call) -> Result<Answer<ServerView>, ApiError> {
    let server = state.control.set_suspended(call.param(0)?, false).await?;
    ok(ServerView::from(&server))
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
