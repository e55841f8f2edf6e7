//! Locations, nodes and their allocations, eggs.

use super::account::ctl;
use super::views::{EggView, NodeView};
use super::{created, listing, no_content, ok, page_of};
use crate::api::router::media_type;
use crate::api::{ApiError, Call, PanelState};
use nexus_control::nodes::NewNode;
use nexus_core::ids::{EggId, LocationId, NodeId};
use nexus_core::model::{Location, NodeCapacity};
use nexus_eggs::export::ExportFormat;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

pub(crate) async fn list_locations(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let (page, number, per_page) = call.page()?;
    let rows = state.control.store().list_locations().await.map_err(ctl)?;
    listing(page_of(rows, page), number, per_page)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewLocation {
    short: String,
    #[serde(default)]
    long: String,
}

pub(crate) async fn create_location(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let body: NewLocation = call.json()?;
    let short = body.short.trim();
    if short.is_empty()
        || short.len() > 60
        || !short.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(ApiError::invalid("short", "1 to 60 of letters, digits, `-`, `_`, `.`"));
    }
    if body.long.len() > 255 || body.long.chars().any(char::is_control) {
        return Err(ApiError::invalid("long", "at most 255 bytes, one line"));
    }
    let location = Location { id: LocationId::new(), short: short.to_owned(), long: body.long.trim().to_owned() };
    state.control.store().create_location(&location).await.map_err(ctl)?;
    created(&location)
}

pub(crate) async fn list_nodes(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let (page, number, per_page) = call.page()?;
    let rows = state.control.store().list_nodes().await.map_err(ctl)?;
    listing(page_of(rows, page).iter().map(NodeView::from).collect(), number, per_page)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateNode {
    name: String,
    fqdn: String,
    daemon_port: u16,
    #[serde(default)]
    location: Option<LocationId>,
    #[serde(default)]
    tags: BTreeSet<String>,
    capacity: NodeCapacity,
}

pub(crate) async fn create_node(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let body: CreateNode = call.json()?;
    let mut new = NewNode::new(body.name, body.fqdn, body.daemon_port, body.capacity);
    new.location = body.location;
    new.tags = body.tags;
    let registration = state.control.register_node(new).await?;
    if let Some(client) = &state.node_client
        && let Err(e) = client.sync_endpoints(&state.control).await
    {
        tracing::warn!(error = %e, "routing the new node");
    }
    created(&serde_json::json!({ "node": NodeView::from(&registration.node), "token": registration.token }))
}

pub(crate) async fn show_node(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let node = state.control.store().get_node(call.param(0)?).await.map_err(ctl)?;
    ok(&NodeView::from(&node))
}

/// The daemon's configuration for this node (TOML for `nexus-wings --config`): its id, token,
/// console secret and this panel's URL. Needs the panel's node secret (tokens are derived
/// from it, so they can be shown again).
pub(crate) async fn node_configuration(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
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
    let mut response = Response::new(text.into());
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/toml"));
    Ok(response)
}

pub(crate) async fn list_allocations(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let id: NodeId = call.param(0)?;
    let (page, number, per_page) = call.page()?;
    state.control.store().get_node(id).await.map_err(ctl)?;
    let rows = state.control.store().list_allocations(id).await.map_err(ctl)?;
    listing(page_of(rows, page), number, per_page)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAllocations {
    ip: IpAddr,
    ports: String,
}

pub(crate) async fn create_allocations(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let id: NodeId = call.param(0)?;
    let body: NewAllocations = call.json()?;
    let added = state.control.add_allocations(id, body.ip, &body.ports).await?;
    created(&added)
}

pub(crate) async fn list_eggs(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let admin = call.principal()?.is_admin();
    let (page, number, per_page) = call.page()?;
    let rows = state.control.store().list_eggs().await.map_err(ctl)?;
    listing(page_of(rows, page).iter().map(|e| EggView::of(e, admin)).collect(), number, per_page)
}

pub(crate) async fn show_egg(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let egg = state.control.egg(call.param(0)?).await?;
    ok(&EggView::of(&egg, call.principal()?.is_admin()))
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

pub(crate) async fn import_egg(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let egg = state.control.import_egg(egg_file(&call)?).await?;
    created(&EggView::of(&egg, true))
}

pub(crate) async fn update_egg(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let id: EggId = call.param(0)?;
    let egg = state.control.update_egg_from_file(id, egg_file(&call)?).await?;
    ok(&EggView::of(&egg, true))
}

pub(crate) async fn export_egg(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    let id: EggId = call.param(0)?;
    let (format, content_type) = match call.query.get("format").map(String::as_str) {
        None | Some("ptdl_v2") => (ExportFormat::PtdlV2, "application/json"),
        Some("plcn_v3") => (ExportFormat::PlcnV3Json, "application/json"),
        Some("plcn_v3_yaml") => (ExportFormat::PlcnV3Yaml, "application/yaml"),
        Some(_) => return Err(ApiError::invalid("format", "one of ptdl_v2, plcn_v3, plcn_v3_yaml")),
    };
    let text = state.control.export_egg(id, format).await?;
    let mut response = Response::new(text.into());
    response.headers_mut().insert("content-type", HeaderValue::from_static(content_type));
    Ok(response)
}

pub(crate) async fn delete_egg(state: Arc<PanelState>, call: Call) -> Result<Response, ApiError> {
    state.control.delete_egg(call.param(0)?).await?;
    no_content()
}
