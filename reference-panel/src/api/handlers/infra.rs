//! Locations, nodes and their allocations, eggs.

use super::account::ctl;
use super::page_of;
use super::views::{EggView, NodeView};
use crate::api::answer::{Answer, Listing, NoContent, Text, created, listing, no_content, ok};
use crate::api::router::media_type;
use crate::api::{ApiError, Call, PanelState};
use nexus_control::nodes::NewNode;
use nexus_core::ids::{EggId, LocationId, NestId, NodeId};
use nexus_core::model::{Allocation, Location, Nest, NodeCapacity};
use nexus_eggs::export::ExportFormat;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use warp::http::StatusCode;

pub(crate) async fn list_locations(state: Arc<PanelState>, call: Call) -> Result<Answer<Listing<Location>>, ApiError> {
    let (page, number, per_page) = call.page()?;
    let rows = state.control.store().list_locations().await.map_err(ctl)?;
    listing(page_of(rows, page), number, per_page)
}

/// A new location.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewLocation {
    /// Short code (`fra1`): letters, digits, `-`, `_`, `.`.
    short: String,
    /// Description.
    #[serde(default)]
    long: String,
}

/// Whether `short` (trimmed) is a location code: 1 to 60 letters, digits, `-`, `_`, `.`.
pub(crate) fn valid_location_short(short: &str) -> bool {
    !short.is_empty()
        && short.len() <= 60
        && short.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

pub(crate) async fn create_location(
    state: Arc<PanelState>,
    _: Call,
    body: NewLocation,
) -> Result<Answer<Location>, ApiError> {
    let short = body.short.trim();
    if !valid_location_short(short) {
        return Err(ApiError::invalid("short", "1 to 60 of letters, digits, `-`, `_`, `.`"));
    }
    if body.long.len() > 255 || body.long.chars().any(char::is_control) {
        return Err(ApiError::invalid("long", "at most 255 bytes, one line"));
    }
    let location = Location { id: LocationId::new(), short: short.to_owned(), long: body.long.trim().to_owned() };
    state.control.store().create_location(&location).await.map_err(ctl)?;
    created(location)
}

pub(crate) async fn list_nodes(state: Arc<PanelState>, call: Call) -> Result<Answer<Listing<NodeView>>, ApiError> {
    let (page, number, per_page) = call.page()?;
    let rows = state.control.store().list_nodes().await.map_err(ctl)?;
    listing(page_of(rows, page).iter().map(NodeView::from).collect(), number, per_page)
}

/// A node to register.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateNode {
    name: String,
    /// Where the panel and browsers reach its daemon.
    fqdn: String,
    daemon_port: u16,
    #[serde(default)]
    location: Option<LocationId>,
    /// Placement constraints can require these.
    #[serde(default)]
    tags: BTreeSet<String>,
    /// What servers on it may book in total.
    capacity: NodeCapacity,
}

/// A registered node and its token (shown once; only its hash is stored).
#[derive(Serialize, JsonSchema)]
pub(crate) struct RegisteredNode {
    node: NodeView,
    token: String,
}

pub(crate) async fn create_node(
    state: Arc<PanelState>,
    _: Call,
    body: CreateNode,
) -> Result<Answer<RegisteredNode>, ApiError> {
    let mut new = NewNode::new(body.name, body.fqdn, body.daemon_port, body.capacity);
    new.location = body.location;
    new.tags = body.tags;
    let registration = state.control.register_node(new).await?;
    if let Some(client) = &state.node_client
        && let Err(e) = client.sync_endpoints(&state.control).await
    {
        tracing::warn!(error = %e, "routing the new node");
    }
    created(RegisteredNode { node: NodeView::from(&registration.node), token: registration.token })
}

pub(crate) async fn show_node(state: Arc<PanelState>, call: Call) -> Result<Answer<NodeView>, ApiError> {
    let node = state.control.store().get_node(call.param(0)?).await.map_err(ctl)?;
    ok(NodeView::from(&node))
}

/// A node was removed.
#[derive(Serialize, JsonSchema)]
pub(crate) struct NodeDeleted {
    /// Servers whose rows went with it (only with `?forget_servers=true`).
    forgotten_servers: usize,
}

pub(crate) async fn delete_node(state: Arc<PanelState>, call: Call) -> Result<Answer<NodeDeleted>, ApiError> {
    let forget = match call.query.get("forget_servers").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::invalid("forget_servers", "true or false")),
    };
    let forgotten_servers = state.control.delete_node(call.param(0)?, forget).await?;
    if let Some(client) = &state.node_client
        && let Err(e) = client.sync_endpoints(&state.control).await
    {
        tracing::warn!(error = %e, "routing after a node's removal");
    }
    ok(NodeDeleted { forgotten_servers })
}

/// The daemon's configuration for this node (TOML for `nexus-wings --config`): its id, token,
/// console secret and this panel's URL. Needs the panel's node secret (tokens are derived
/// from it, so they can be shown again).
pub(crate) async fn node_configuration(state: Arc<PanelState>, call: Call) -> Result<Answer<Text>, ApiError> {
    let id: NodeId = call.param(0)?;
    let (_, token) = state.control.node_endpoint(id).await?;
    let node = state.control.store().get_node(id).await.map_err(ctl)?;
    let console_secret = state
        .control
        .node_console_secret(id)
        .ok_or_else(|| ApiError::invalid("node_secret", "the panel has no node secret"))?;
    let text = format!(
        "# nexus-wings configuration for node `{name}`, from the panel at {panel}.\n\
         # Keep this file readable by the daemon's user only (chmod 600): it holds the node's secrets.\n\
         node_id = \"{id}\"\n\
         listen = \"0.0.0.0:{port}\"\n\
         panel_url = \"{panel}\"\n\
         token = \"{token}\"\n\
         token_secret = \"{console_secret}\"\n",
        name = node.name.replace(['\n', '\r'], " "),
        panel = state.public_url,
        port = node.daemon_port,
    );
    Ok(Answer::text("application/toml", text))
}

pub(crate) async fn list_allocations(
    state: Arc<PanelState>,
    call: Call,
) -> Result<Answer<Listing<Allocation>>, ApiError> {
    let id: NodeId = call.param(0)?;
    let (page, number, per_page) = call.page()?;
    state.control.store().get_node(id).await.map_err(ctl)?;
    let rows = state.control.store().list_allocations(id).await.map_err(ctl)?;
    listing(page_of(rows, page), number, per_page)
}

/// Allocations to add.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewAllocations {
    ip: IpAddr,
    /// Ports and ranges: `25565`, `25565-25665`, `25565,27015-27020`.
    ports: String,
}

pub(crate) async fn create_allocations(
    state: Arc<PanelState>,
    call: Call,
    body: NewAllocations,
) -> Result<Answer<Vec<Allocation>>, ApiError> {
    let id: NodeId = call.param(0)?;
    created(state.control.add_allocations(id, body.ip, &body.ports).await?)
}

pub(crate) async fn list_eggs(state: Arc<PanelState>, call: Call) -> Result<Answer<Listing<EggView>>, ApiError> {
    let admin = call.principal()?.is_admin();
    let (page, number, per_page) = call.page()?;
    let nest: Option<NestId> = match call.query.get("nest") {
        None => None,
        Some(v) => Some(v.parse().map_err(|_| ApiError::invalid("nest", "`nest` must be an id (UUID)"))?),
    };
    let mut rows = state.control.store().list_eggs().await.map_err(ctl)?;
    if nest.is_some() {
        rows.retain(|egg| egg.nest == nest);
    }
    listing(page_of(rows, page).iter().map(|e| EggView::of(e, admin)).collect(), number, per_page)
}

pub(crate) async fn show_egg(state: Arc<PanelState>, call: Call) -> Result<Answer<EggView>, ApiError> {
    let egg = state.control.egg(call.param(0)?).await?;
    ok(EggView::of(&egg, call.principal()?.is_admin()))
}

/// The body of an egg upload: the file itself, JSON or YAML.
fn egg_file(call: &Call) -> Result<Vec<u8>, ApiError> {
    let media = call.content_type.as_deref().map(media_type).unwrap_or_default();
    if !matches!(media.as_str(), "application/json" | "application/yaml" | "application/x-yaml" | "text/yaml") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the egg file as application/json or application/yaml",
        ));
    }
    Ok(call.body.to_vec())
}

pub(crate) async fn import_egg(state: Arc<PanelState>, call: Call) -> Result<Answer<EggView>, ApiError> {
    let egg = state.control.import_egg(egg_file(&call)?).await?;
    created(EggView::of(&egg, true))
}

pub(crate) async fn update_egg(state: Arc<PanelState>, call: Call) -> Result<Answer<EggView>, ApiError> {
    let id: EggId = call.param(0)?;
    let egg = state.control.update_egg_from_file(id, egg_file(&call)?).await?;
    ok(EggView::of(&egg, true))
}

/// Which nest an egg goes in (`null`: none).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EggNest {
    nest: Option<NestId>,
}

pub(crate) async fn move_egg(state: Arc<PanelState>, call: Call, body: EggNest) -> Result<Answer<EggView>, ApiError> {
    let egg = state.control.move_egg(call.param(0)?, body.nest).await?;
    ok(EggView::of(&egg, true))
}

pub(crate) async fn list_nests(state: Arc<PanelState>, call: Call) -> Result<Answer<Listing<Nest>>, ApiError> {
    let (page, number, per_page) = call.page()?;
    let rows = state.control.store().list_nests().await.map_err(ctl)?;
    listing(page_of(rows, page), number, per_page)
}

/// A nest's name and description.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NestInput {
    /// Unique, one line.
    name: String,
    #[serde(default)]
    description: String,
}

pub(crate) async fn create_nest(state: Arc<PanelState>, _: Call, body: NestInput) -> Result<Answer<Nest>, ApiError> {
    created(state.control.create_nest(&body.name, &body.description).await?)
}

pub(crate) async fn show_nest(state: Arc<PanelState>, call: Call) -> Result<Answer<Nest>, ApiError> {
    ok(state.control.store().get_nest(call.param(0)?).await.map_err(ctl)?)
}

pub(crate) async fn update_nest(state: Arc<PanelState>, call: Call, body: NestInput) -> Result<Answer<Nest>, ApiError> {
    ok(state.control.update_nest(call.param(0)?, &body.name, &body.description).await?)
}

pub(crate) async fn delete_nest(state: Arc<PanelState>, call: Call) -> Result<Answer<NoContent>, ApiError> {
    state.control.delete_nest(call.param(0)?).await?;
    no_content()
}

/// Imports an egg file into the nest.
pub(crate) async fn import_egg_into_nest(state: Arc<PanelState>, call: Call) -> Result<Answer<EggView>, ApiError> {
    let egg = state.control.import_egg_into(egg_file(&call)?, Some(call.param(0)?)).await?;
    created(EggView::of(&egg, true))
}

pub(crate) async fn export_egg(state: Arc<PanelState>, call: Call) -> Result<Answer<Text>, ApiError> {
    let id: EggId = call.param(0)?;
    let (format, content_type) = match call.query.get("format").map(String::as_str) {
        None | Some("ptdl_v2") => (ExportFormat::PtdlV2, "application/json"),
        Some("plcn_v3") => (ExportFormat::PlcnV3Json, "application/json"),
        Some("plcn_v3_yaml") => (ExportFormat::PlcnV3Yaml, "application/yaml"),
        Some(_) => return Err(ApiError::invalid("format", "one of ptdl_v2, plcn_v3, plcn_v3_yaml")),
    };
    let text = state.control.export_egg(id, format).await?;
    Ok(Answer::text(content_type, text))
}

pub(crate) async fn delete_egg(state: Arc<PanelState>, call: Call) -> Result<Answer<NoContent>, ApiError> {
    state.control.delete_egg(call.param(0)?).await?;
    no_content()
}
