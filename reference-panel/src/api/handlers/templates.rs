//! Template layers: published into the panel's template store (the object store the nodes
//! read them from), listed, and attached to eggs and servers. Publishing takes a tar archive
//! (plain, gzip or zstd) as the body, spooled to a temporary file (at most
//! [`MAX_ARCHIVE_BYTES`]) and checked entry by entry before anything is stored; versions
//! are immutable.

use super::views::{EggView, ServerView};
use crate::api::answer::{Answer, created, ok};
use crate::api::{ApiError, Call, PanelState};
use futures::StreamExt as _;
use nexus_core::ids::{EggId, ServerId};
use nexus_core::template::{LayerManifest, LayerRef, TemplateSource as _};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::io::AsyncWriteExt as _;
use warp::http::StatusCode;

/// Largest archive a layer is published from.
pub const MAX_ARCHIVE_BYTES: u64 = 4 << 30;
/// Publishes spooling and checking at once, in this process: each may hold up to
/// [`MAX_ARCHIVE_BYTES`] of spool plus the layer's files in a temporary directory.
const PUBLISHES: usize = 2;
/// The gate on [`PUBLISHES`].
static PUBLISH_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(PUBLISHES);

/// `PUT /eggs/{id}/templates`, `PUT /servers/{id}/templates`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Layers {
    /// Layers as `name@version`, applied in this order (later ones win).
    #[schemars(with = "Vec<String>")]
    templates: Vec<LayerRef>,
}

/// A published layer.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct LayerView {
    /// `name@version`.
    layer: String,
    /// When it was published.
    created_at: chrono::DateTime<chrono::Utc>,
    /// Its entries (files, folders, links, whiteouts).
    entries: usize,
    /// Its files' total size.
    bytes: u64,
}

impl From<&LayerManifest> for LayerView {
    fn from(m: &LayerManifest) -> Self {
        Self {
            layer: m.layer.to_string(),
            created_at: m.created_at,
            entries: m.entries.len(),
            bytes: m
                .entries
                .iter()
                .map(|e| match e.kind {
                    nexus_core::template::EntryKind::File { size, .. } => size,
                    _ => 0,
                })
                .fold(0u64, u64::saturating_add),
        }
    }
}

fn store(state: &PanelState) -> Result<&Arc<nexus_templates::ObjectStoreTemplates>, ApiError> {
    state.templates.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_template_store",
            "this panel has no template store configured",
        )
    })
}

fn layer_param(call: &Call) -> Result<LayerRef, ApiError> {
    let raw = call.params.first().map(String::as_str).unwrap_or_default();
    raw.parse::<LayerRef>().map_err(|e| ApiError::invalid("layer", e.to_string()))
}

/// A template store failure as an answer: what the caller can fix is theirs, the store's
/// own failures are the panel's.
pub(crate) fn template_error(e: nexus_templates::Error) -> ApiError {
    use nexus_templates::Error as E;
    match &e {
        E::AlreadyPublished(_) => ApiError::new(StatusCode::CONFLICT, "already_published", e.to_string()),
        E::Refused { .. } => ApiError::invalid("archive", e.to_string()),
        E::Source(nexus_core::template::TemplateError::NotFound(_)) => ApiError::not_found(e.to_string()),
        // The panel's own disk (the spool, the temporary directory), not the store.
        E::Io { .. } => {
            tracing::warn!(error = %e, "publishing a template layer");
            ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "publish_failed", e.to_string())
        }
        _ => {
            tracing::warn!(error = %e, "template store");
            ApiError::new(StatusCode::BAD_GATEWAY, "template_store_unavailable", e.to_string())
        }
    }
}

pub(crate) async fn list(state: Arc<PanelState>, _call: Call) -> Result<Answer<Vec<String>>, ApiError> {
    let layers = store(&state)?.list_layers().await.map_err(|e| template_error(e.into()))?;
    ok(layers.iter().map(ToString::to_string).collect())
}

pub(crate) async fn show(state: Arc<PanelState>, call: Call) -> Result<Answer<LayerView>, ApiError> {
    let layer = layer_param(&call)?;
    let manifest = store(&state)?.manifest(&layer).await.map_err(|e| template_error(e.into()))?;
    ok(LayerView::from(&manifest))
}

/// Publishes the body, a tar archive, as the path's `name@version`.
pub(crate) async fn publish(state: Arc<PanelState>, mut call: Call) -> Result<Answer<LayerView>, ApiError> {
    let layer = layer_param(&call)?;
    let templates = store(&state)?.clone();
    let upload = call.upload.take().ok_or_else(|| ApiError::bad_request("no body"))?;
    if upload.length.is_some_and(|l| l > MAX_ARCHIVE_BYTES) {
        return Err(too_large());
    }
    // Refused before the body is received: versions are immutable (checked again when the
    // manifest is written).
    if templates.exists(&layer).await.map_err(template_error)? {
        return Err(template_error(nexus_templates::Error::AlreadyPublished(layer)));
    }
    let _slot = PUBLISH_SLOTS.try_acquire().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "publish_busy",
            format!("{PUBLISHES} layers are being published; try again shortly"),
        )
    })?;
    let spool = tempfile::tempfile().map_err(|e| spool_error(&e))?;
    let mut file = tokio::fs::File::from_std(spool);
    let mut stream = upload.into_stream();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        total += chunk.len() as u64;
        if total > MAX_ARCHIVE_BYTES {
            return Err(too_large());
        }
        file.write_all(&chunk).await.map_err(|e| spool_error(&e))?;
    }
    file.flush().await.map_err(|e| spool_error(&e))?;
    let mut spool = file.into_std().await;
    std::io::Seek::rewind(&mut spool).map_err(|e| spool_error(&e))?;
    let manifest = templates.publish_archive(&layer, spool).await.map_err(template_error)?;
    tracing::info!(%layer, entries = manifest.entries.len(), "template layer published");
    created(LayerView::from(&manifest))
}

fn spool_error(e: &std::io::Error) -> ApiError {
    tracing::warn!(error = %e, "spooling a layer archive");
    ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "spool_failed", format!("the archive could not be spooled: {e}"))
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("a layer archive is at most {} GiB", MAX_ARCHIVE_BYTES >> 30),
    )
}

pub(crate) async fn set_egg(state: Arc<PanelState>, call: Call, body: Layers) -> Result<Answer<EggView>, ApiError> {
    let id: EggId = call.param(0)?;
    let egg = state.control.set_egg_templates(id, body.templates).await?;
    ok(EggView::of(&egg, true))
}

pub(crate) async fn set_server(
    state: Arc<PanelState>,
    call: Call,
    body: Layers,
) -> Result<Answer<ServerView>, ApiError> {
    let id: ServerId = call.param(0)?;
    let server = state.control.set_server_templates(id, body.templates).await?;
    ok(ServerView::from(&server))
}
