//! A server's files and live resources, forwarded to its node ([`crate::node_proxy`]) after
//! the router has checked the caller's `file.*` permission. The node confines every path to
//! the server's root and enforces its disk quota; the panel only passes paths through,
//! percent-encoded, and never reads a whole upload or download into memory.

use crate::api::answer::{Answer, Download, NoContent, Text, no_content, ok};
use crate::api::{ApiError, Call, PanelState};
use crate::node_client::HttpNodeTransport;
use crate::node_proxy::{Deadline, IDLE_TIMEOUT, ProxyBody, file_path, idle_limited, read_json};
use futures::TryStreamExt as _;
use nexus_core::lifecycle::ServerState;
use nexus_core::runtime::ResourceStats;
use nexus_files::{ExtractSummary, FileEntry};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use warp::http::{HeaderName, HeaderValue, Method, StatusCode};

/// Largest file the editor opens (`GET …/files/contents`); larger ones are downloaded.
pub const MAX_EDIT_BYTES: u64 = 4 << 20;
/// Longest path accepted in a query or body.
const MAX_PATH_BYTES: usize = 4096;
/// Headers on tenant bytes served from the panel's own origin: never sniffed, never run,
/// never cached.
const SANDBOXED: [(&str, &str); 3] = [
    ("x-content-type-options", "nosniff"),
    ("content-security-policy", "sandbox; default-src 'none'"),
    ("cache-control", "no-store"),
];

/// The route's server unless it is being deleted, or suspended (its users lose its files and
/// figures, as on Pterodactyl; admins keep them).
pub(crate) fn usable(call: &Call) -> Result<&nexus_core::model::Server, ApiError> {
    let server = call.server()?;
    if server.deletion_requested_at.is_some() {
        return Err(nexus_control::ControlError::Deleting(server.id).into());
    }
    if server.suspended && !matches!(call.access()?, nexus_control::subusers::ServerAccess::Admin) {
        return Err(nexus_control::ControlError::Suspended(server.id).into());
    }
    Ok(server)
}

pub(crate) fn nodes(state: &PanelState) -> Result<&Arc<HttpNodeTransport>, ApiError> {
    state.node_client.as_ref().ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "node_unavailable", "this panel does not reach nodes over HTTP")
    })
}

/// The query parameter `name`, a path of at most [`MAX_PATH_BYTES`] (`default` when absent).
pub(crate) fn path_param(call: &Call, name: &str, default: Option<&str>) -> Result<String, ApiError> {
    let value = match (call.query.get(name), default) {
        (Some(value), _) => value.clone(),
        (None, Some(default)) => default.to_owned(),
        (None, None) => return Err(ApiError::invalid(name, format!("`{name}` is required"))),
    };
    valid_path(name, &value)?;
    Ok(value)
}

/// Refuses a path no file manager would take (too long, a NUL), before the node is called.
fn valid_path(field: &str, path: &str) -> Result<(), ApiError> {
    if path.len() > MAX_PATH_BYTES || path.contains('\0') {
        return Err(ApiError::invalid(field, "not a valid path"));
    }
    Ok(())
}

fn json_answer(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// `GET /servers/{id}/files?directory=/`: the directory's entries.
pub(crate) async fn list(state: Arc<PanelState>, call: Call) -> Result<Answer<Vec<FileEntry>>, ApiError> {
    let server = usable(&call)?;
    let directory = path_param(&call, "directory", Some("/"))?;
    let path = file_path(server.id, &directory);
    let mut response =
        nodes(&state)?.forward(server.node, Method::GET, &path, ProxyBody::Empty, Deadline::Quick).await?;
    if !json_answer(&response) {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "not_a_directory", "this is a file, not a folder"));
    }
    ok(read_json::<Vec<FileEntry>>(&mut response).await?)
}

/// `GET /servers/{id}/files/contents?file=`: a text file's content, for the editor.
pub(crate) async fn contents(state: Arc<PanelState>, call: Call) -> Result<Answer<Text>, ApiError> {
    let server = usable(&call)?;
    let file = path_param(&call, "file", None)?;
    let path = file_path(server.id, &file);
    let mut response =
        nodes(&state)?.forward(server.node, Method::GET, &path, ProxyBody::Empty, Deadline::Quick).await?;
    if json_answer(&response) {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "not_a_file", "this is a folder, not a file"));
    }
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the file is larger than {} MiB; download it instead", MAX_EDIT_BYTES >> 20),
        )
    };
    if response.content_length().is_some_and(|length| length > MAX_EDIT_BYTES) {
        return Err(too_large());
    }
    let limit = usize::try_from(MAX_EDIT_BYTES).unwrap_or(usize::MAX);
    let body = crate::node_client::read_limited(&mut response, limit).await.map_err(|_| too_large())?;
    let text = String::from_utf8(body).map_err(|_| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "not_text", "this file is not text; download it instead")
    })?;
    Ok(SANDBOXED.iter().fold(Answer::text("text/plain", text), |answer, (name, value)| {
        answer.header(HeaderName::from_static(name), HeaderValue::from_static(value))
    }))
}

/// `GET /servers/{id}/files/download?file=`: the file's bytes, streamed from the node.
pub(crate) async fn download(state: Arc<PanelState>, call: Call) -> Result<Answer<Download>, ApiError> {
    let server = usable(&call)?;
    let file = path_param(&call, "file", None)?;
    let path = file_path(server.id, &file);
    let response =
        nodes(&state)?.forward(server.node, Method::GET, &path, ProxyBody::Empty, Deadline::Transfer).await?;
    if json_answer(&response) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_a_file",
            "a folder cannot be downloaded; compress it first",
        ));
    }
    let name = file.rsplit('/').next().unwrap_or("download");
    Ok(attachment(response, name, "application/octet-stream"))
}

/// A node's answer streamed to the client as a download named `name` (never read whole;
/// a transfer stalled for [`IDLE_TIMEOUT`] fails).
pub(crate) fn attachment(response: reqwest::Response, name: &str, content_type: &'static str) -> Answer<Download> {
    let length = response.content_length();
    let stream = idle_limited(response.bytes_stream().map_err(std::io::Error::other), IDLE_TIMEOUT);
    let mut reply = warp::reply::Reply::into_response(warp::reply::stream(stream));
    let headers = reply.headers_mut();
    headers.insert("content-type", HeaderValue::from_static(content_type));
    if let Some(length) = length.and_then(|l| HeaderValue::from_str(&l.to_string()).ok()) {
        headers.insert("content-length", length);
    }
    // Only a plain name goes into the header; anything else is spelled by RFC 5987.
    let encoded = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename*=UTF-8''{encoded}")) {
        headers.insert("content-disposition", value);
    }
    for (name, value) in SANDBOXED {
        headers.insert(name, HeaderValue::from_static(value));
    }
    Answer::download(reply)
}

/// `PUT /servers/{id}/files/contents?file=`: writes the body (streamed) as the file's content.
pub(crate) async fn write(state: Arc<PanelState>, mut call: Call) -> Result<Answer<FileEntry>, ApiError> {
    let file = path_param(&call, "file", None)?;
    let upload = call.upload.take().ok_or_else(|| ApiError::bad_request("no body"))?;
    let server = usable(&call)?;
    let length = upload.length;
    let body = ProxyBody::Stream(upload.into_stream(), length);
    let path = file_path(server.id, &file);
    let entry = nodes(&state)?.forward_json(server.node, Method::PUT, &path, body, Deadline::Transfer).await?;
    ok(entry)
}

/// `DELETE /servers/{id}/files?file=`.
pub(crate) async fn delete(state: Arc<PanelState>, call: Call) -> Result<Answer<NoContent>, ApiError> {
    let file = path_param(&call, "file", None)?;
    delete_path(&state, &call, &file).await?;
    no_content()
}

/// Deletes file or folder `file` on the call's server (never its root).
pub(crate) async fn delete_path(state: &PanelState, call: &Call, file: &str) -> Result<(), ApiError> {
    let server = usable(call)?;
    valid_path("file", file)?;
    if file.trim_matches('/').is_empty() {
        return Err(ApiError::invalid("file", "the server's root folder cannot be deleted"));
    }
    let path = file_path(server.id, file);
    nodes(state)?.forward(server.node, Method::DELETE, &path, ProxyBody::Empty, Deadline::Operation).await?;
    Ok(())
}

/// Body of `rename` and `copy`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FromTo {
    /// The existing path.
    from: String,
    /// The new path.
    to: String,
}

/// Body of `create-folder`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewFolder {
    /// The folder's path (parents are created).
    path: String,
}

/// Body of `chmod`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Chmod {
    /// The file or folder.
    path: String,
    /// Octal permission bits, e.g. `"644"`.
    mode: String,
}

/// Body of `compress`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Compress {
    /// The folder the files are named in (`/` when absent).
    #[serde(default = "root")]
    root: String,
    /// The files and folders to put in the archive, relative to `root`.
    files: Vec<String>,
    /// The archive's path (`archive-<time>.tar.gz` in `root` when absent); the format comes
    /// from its extension (`.tar.gz`, `.tar.zst`, `.zip`, ...).
    #[serde(default)]
    destination: Option<String>,
}

/// Body of `decompress`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Decompress {
    /// The archive.
    file: String,
    /// Where to extract it (`/` when absent).
    #[serde(default = "root")]
    destination: String,
}

fn root() -> String {
    "/".into()
}

/// [`valid_path`], and not the server's root (which no operation takes).
fn checked(field: &'static str, path: &str) -> Result<(), ApiError> {
    valid_path(field, path)?;
    if path.trim_matches('/').is_empty() {
        return Err(ApiError::invalid(field, "not a valid path"));
    }
    Ok(())
}

async fn operation<T: serde::de::DeserializeOwned>(
    state: &PanelState,
    call: &Call,
    op: &str,
    body: serde_json::Value,
) -> Result<Option<T>, ApiError> {
    let server = usable(call)?;
    let path = nexus_wire::api::paths::file(server.id, op);
    let mut response =
        nodes(state)?.forward(server.node, Method::POST, &path, ProxyBody::Json(body), Deadline::Operation).await?;
    if response.status() == StatusCode::NO_CONTENT {
        return Ok(None);
    }
    Ok(Some(read_json(&mut response).await?))
}

/// `POST /servers/{id}/files/rename`.
pub(crate) async fn rename(state: Arc<PanelState>, call: Call, body: FromTo) -> Result<Answer<NoContent>, ApiError> {
    rename_path(&state, &call, &body.from, &body.to).await?;
    no_content()
}

/// Renames or moves `from` to `to` on the call's server.
pub(crate) async fn rename_path(state: &PanelState, call: &Call, from: &str, to: &str) -> Result<(), ApiError> {
    checked("from", from)?;
    checked("to", to)?;
    operation::<serde_json::Value>(state, call, "rename", serde_json::json!({"from": from, "to": to})).await?;
    Ok(())
}

/// `POST /servers/{id}/files/copy`.
pub(crate) async fn copy(state: Arc<PanelState>, call: Call, body: FromTo) -> Result<Answer<FileEntry>, ApiError> {
    ok(copy_path(&state, &call, &body.from, &body.to).await?)
}

/// Copies file `from` to `to` on the call's server.
pub(crate) async fn copy_path(state: &PanelState, call: &Call, from: &str, to: &str) -> Result<FileEntry, ApiError> {
    checked("from", from)?;
    checked("to", to)?;
    let entry = operation(state, call, "copy", serde_json::json!({"from": from, "to": to})).await?;
    entry.ok_or_else(node_said_nothing)
}

/// `POST /servers/{id}/files/create-folder`.
pub(crate) async fn create_folder(
    state: Arc<PanelState>,
    call: Call,
    body: NewFolder,
) -> Result<Answer<FileEntry>, ApiError> {
    ok(make_folder(&state, &call, &body.path).await?)
}

/// Creates folder `path` (and its parents) on the call's server.
pub(crate) async fn make_folder(state: &PanelState, call: &Call, path: &str) -> Result<FileEntry, ApiError> {
    checked("path", path)?;
    let entry = operation(state, call, "mkdir", serde_json::json!({"path": path})).await?;
    entry.ok_or_else(node_said_nothing)
}

/// `POST /servers/{id}/files/chmod`.
pub(crate) async fn chmod(state: Arc<PanelState>, call: Call, body: Chmod) -> Result<Answer<NoContent>, ApiError> {
    chmod_path(&state, &call, &body.path, &body.mode).await?;
    no_content()
}

/// Sets the permission bits of `path` (octal text) on the call's server.
pub(crate) async fn chmod_path(state: &PanelState, call: &Call, path: &str, mode: &str) -> Result<(), ApiError> {
    checked("path", path)?;
    if mode.is_empty() || mode.len() > 4 || !mode.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(ApiError::invalid("mode", "octal permission bits, e.g. 644"));
    }
    operation::<serde_json::Value>(state, call, "chmod", serde_json::json!({"path": path, "mode": mode})).await?;
    Ok(())
}

/// `POST /servers/{id}/files/compress`.
pub(crate) async fn compress(
    state: Arc<PanelState>,
    call: Call,
    body: Compress,
) -> Result<Answer<FileEntry>, ApiError> {
    ok(compress_paths(&state, &call, &body.root, &body.files, body.destination).await?)
}

/// Puts `files` (relative to `root`) in an archive at `destination` (a dated `.tar.gz` in
/// `root` when absent) on the call's server.
pub(crate) async fn compress_paths(
    state: &PanelState,
    call: &Call,
    root: &str,
    files: &[String],
    destination: Option<String>,
) -> Result<FileEntry, ApiError> {
    if files.is_empty() || files.len() > 1000 {
        return Err(ApiError::invalid("files", "name between 1 and 1000 files or folders"));
    }
    valid_path("root", root)?;
    for file in files {
        checked("files", file)?;
    }
    let destination = match destination {
        Some(destination) => {
            checked("destination", &destination)?;
            destination
        }
        None => {
            format!("{}/archive-{}.tar.gz", root.trim_end_matches('/'), chrono::Utc::now().format("%Y-%m-%d_%H-%M-%S"))
        }
    };
    let request = serde_json::json!({"root": root, "files": files, "destination": destination});
    operation(state, call, "compress", request).await?.ok_or_else(node_said_nothing)
}

/// `POST /servers/{id}/files/decompress`.
pub(crate) async fn decompress(
    state: Arc<PanelState>,
    call: Call,
    body: Decompress,
) -> Result<Answer<ExtractSummary>, ApiError> {
    ok(decompress_file(&state, &call, &body.file, &body.destination).await?)
}

/// Extracts archive `file` into `destination` on the call's server.
pub(crate) async fn decompress_file(
    state: &PanelState,
    call: &Call,
    file: &str,
    destination: &str,
) -> Result<ExtractSummary, ApiError> {
    checked("file", file)?;
    valid_path("destination", destination)?;
    let request = serde_json::json!({"file": file, "destination": destination});
    operation(state, call, "decompress", request).await?.ok_or_else(node_said_nothing)
}

fn node_said_nothing() -> ApiError {
    ApiError::from(crate::node_proxy::ProxyError::Unreachable("the node answered no content".into()))
}

/// `GET /servers/{id}/resources` answer.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Resources {
    /// The server's state as its node reports it (none while the node is creating it).
    pub(crate) state: Option<ServerState>,
    /// The latest sample while the server runs.
    pub(crate) stats: Option<ResourceStats>,
    /// Disk space its files take, bytes, as last measured.
    pub(crate) disk_bytes: u64,
}

/// `GET /servers/{id}/resources`: the node's latest figures for the server.
pub(crate) async fn resources(state: Arc<PanelState>, call: Call) -> Result<Answer<Resources>, ApiError> {
    let server = usable(&call)?;
    let path = nexus_wire::api::paths::server(server.id);
    let details: nexus_wire::api::ServerDetails =
        nodes(&state)?.forward_json(server.node, Method::GET, &path, ProxyBody::Empty, Deadline::Quick).await?;
    ok(Resources { state: details.state, stats: details.stats, disk_bytes: details.disk_bytes })
}
