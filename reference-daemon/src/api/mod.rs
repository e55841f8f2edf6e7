//! The HTTP/WebSocket API (warp).
//!
//! | method | path | who | what |
//! |---|---|---|---|
//! | GET | `/api/system` | node | version, CPU count, memory, server count |
//! | GET | `/api/servers` | node | every server with its state |
//! | POST | `/api/servers[?install=true]` | node | create (or update) a server from a `ServerSpec` |
//! | GET | `/api/servers/:id` | node | one server: state and spec |
//! | DELETE | `/api/servers/:id` | node | destroy the container and files |
//! | POST | `/api/servers/:id/power` | node | `{"action":"start\|stop\|restart\|kill"}`: `202` at once, the action in the background (failures as console notices); `?wait=true`: `204` when done, or its typed error |
//! | POST | `/api/servers/:id/install` | node | run (or re-run) the install script |
//! | POST | `/api/servers/:id/commands` | node | `{"command":"say hi"}` (or `"line"`) to the console |
//! | GET | `/api/servers/:id/install-log` | node | the last install's output, `text/plain` |
//! | GET | `/api/servers/:id/console` | node, or browser with `console_read` | WebSocket, see [`console`] |
//! | GET | `/api/servers/:id/files/*path` | node, or browser with `file_read` | a directory: JSON listing; a file: its bytes |
//! | PUT | `/api/servers/:id/files/*path` | node, or browser with `file_write` | write the body to the file (streamed, quota) |
//! | DELETE | `/api/servers/:id/files/*path` | node, or browser with `file_write` | delete a file or tree |
//! | POST | `/api/servers/:id/files/{compress,decompress,rename,copy,mkdir,chmod}` | node, or browser with `file_write` | JSON bodies, see [`files`] |
//! | POST | `/api/servers/:id/backups` | node | `{"backup":"<uuid>","ignored":["*.log"]}`: `202`, the backup in the background, its outcome reported to the panel; see [`backups`] |
//! | GET | `/api/servers/:id/backups/:backup` | node, or browser with `backup` | the archive, `application/zstd`, streamed |
//! | POST | `/api/servers/:id/backups/:backup/restore` | node | `{"wipe":true,"checksum":"<sha256>"}`: `202` (`409 busy` unless the server is stopped), the restore in the background, reported |
//! | DELETE | `/api/servers/:id/backups/:backup` | node | `204` (also when absent) |
//! | GET | `/metrics` | node (unless `metrics_require_token = false`) | Prometheus text |
//!
//! "node" is `Authorization: Bearer <node token>`; "browser" is a signed token
//! ([`crate::auth`]) in the same header or, where a browser cannot set headers, `?token=`
//! (the node token is never taken from the query string).
//!
//! Every failure is a typed JSON error ([`ApiError`]). A request is answered by the route
//! matching its path and method; what it then fails on decides the status, never the routes
//! it did not match (see `error.rs`):
//!
//! | status | code | when |
//! |---|---|---|
//! | 400 | `invalid_id` | the `:id` segment is not a UUID (`"field":"id"`) |
//! | 400 | `bad_request` | a body that is not the expected JSON; a query parameter that does not parse or is unknown (`?install=maybe`) |
//! | 401 | `unauthorized` | no or a wrong token |
//! | 403 | `forbidden` | a browser token without the permission or for another server |
//! | 404 | `not_found` | no route has this path |
//! | 404 | `unknown_server` | no server with this id |
//! | 404 | `unknown_backup` | no archive of this backup in the backup store |
//! | 409 | `busy` | the server installs, a backup or restore of it runs, or a restore needs it stopped |
//! | 405 | `method_not_allowed` | a route has this path, none this method |
//! | 413 | `payload_too_large` | a JSON body over `max_json_body_bytes`, declared or (chunked) counted |
//! | 415 | `unsupported_media_type` | a JSON route's body sent with another `content-type` (none is fine) |
//! | 422 | `invalid_spec` | `POST /api/servers` with a spec that can never run (`"field"` names the value, see [`ServerSpec::validate`](nexus_core::transport::ServerSpec::validate)) |
//! | 429 | `rate_limited` | console commands past the server's rate (see [`limit`]) |
//!
//! Chunked bodies (no `content-length`) are accepted on every route, up to the same limits.

pub mod backups;
pub mod console;
pub mod console_slots;
mod error;
pub mod files;
pub mod limit;
pub mod power_queue;
mod request;
mod servers;
pub mod wings_socket;

pub use error::{ApiError, recover};
pub use limit::{CommandLimits, Rate};

use crate::auth::{Caller, NodeToken, TokenSigner};
use crate::metrics::HttpMetrics;
use files::FileManagers;
use nexus_agent::EggPreparer;
use nexus_agent::NodeAgent;
use nexus_core::ids::ServerId;
use nexus_core::model::Permission;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

/// Everything the handlers share.
pub struct ApiState {
    /// The node agent.
    pub agent: Arc<NodeAgent>,
    /// The node token.
    pub node_token: NodeToken,
    /// Browser token verifier; `None` refuses browser tokens.
    pub signer: Option<TokenSigner>,
    /// HTTP request counters.
    pub http: HttpMetrics,
    /// Per-server file managers.
    pub files: Arc<FileManagers>,
    /// Backup and restore jobs, and the backup store.
    pub backups: Arc<crate::backup::Backups>,
    /// Counters of the HTTP listener.
    pub listener: Arc<crate::listener::ListenerStats>,
    /// Open console WebSockets and their caps.
    pub consoles: console_slots::ConsoleSlots,
    /// Per-server console command rate limits.
    pub commands: CommandLimits,
    /// Per-server queues of power actions answered with `202`.
    pub power: power_queue::PowerQueues,
    /// The agent's start preparer, to render a new spec's startup before accepting it.
    pub preparer: EggPreparer,
    /// Whether `/metrics` needs the node token.
    pub metrics_require_token: bool,
    /// Largest JSON body.
    pub max_json_body: u64,
    /// Name of the container runtime (`docker`).
    pub runtime_name: &'static str,
    /// When the daemon started.
    pub started: Instant,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").field("runtime", &self.runtime_name).finish_non_exhaustive()
    }
}

/// Every route, with typed errors and request counting.
pub fn routes(state: Arc<ApiState>) -> BoxedFilter<(Response,)> {
    let counted = Arc::clone(&state);
    servers::routes(Arc::clone(&state))
        .or(console::route(Arc::clone(&state)))
        .unify()
        .or(wings_socket::route(Arc::clone(&state)))
        .unify()
        .or(files::routes(Arc::clone(&state)))
        .unify()
        .or(backups::routes(Arc::clone(&state)))
        .unify()
        .or(servers::metrics_route(state))
        .unify()
        .recover(recover)
        .unify()
        .with(warp::log::custom(move |info| {
            counted.http.record(info.method().as_str(), info.path(), info.status().as_u16());
            tracing::debug!(
                method = %info.method(),
                path = info.path(),
                status = info.status().as_u16(),
                elapsed_ms = info.elapsed().as_secs_f64() * 1000.0,
                "request"
            );
        }))
        .map(warp::Reply::into_response)
        .boxed()
}

/// Shares the state with a handler.
fn with_state(
    state: Arc<ApiState>,
) -> impl Filter<Extract = (Arc<ApiState>,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || Arc::clone(&state))
}

/// The caller, from `Authorization: Bearer` or (browser tokens only, where a browser cannot set
/// headers) `?token=`. Only the node token is accepted unless `browser` is true; the node token
/// is never accepted from the query string (URLs end up in logs).
fn caller(state: Arc<ApiState>, browser: bool) -> BoxedFilter<(Caller,)> {
    warp::header::optional::<String>("authorization")
        .and(warp::query::<HashMap<String, String>>().or(warp::any().map(HashMap::new)).unify())
        .and_then(move |header: Option<String>, query: HashMap<String, String>| {
            let state = Arc::clone(&state);
            async move {
                let bearer = header
                    .as_deref()
                    .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
                    .map(str::trim);
                let result = match (bearer, query.get("token")) {
                    (Some(token), _) => authenticate(&state, token, browser),
                    (None, Some(token)) if browser => verify_browser(&state, token),
                    _ => Err(ApiError::unauthorized()),
                };
                result.map_err(warp::reject::custom)
            }
        })
        .boxed()
}

fn authenticate(state: &ApiState, token: &str, browser: bool) -> Result<Caller, ApiError> {
    if !token.is_empty() && state.node_token.matches(token) {
        Ok(Caller::Node)
    } else if browser {
        verify_browser(state, token)
    } else {
        Err(ApiError::unauthorized())
    }
}

fn verify_browser(state: &ApiState, token: &str) -> Result<Caller, ApiError> {
    let signer = state.signer.as_ref().ok_or_else(ApiError::unauthorized)?;
    signer.verify(token).map(Caller::Browser).map_err(|reason| {
        tracing::debug!(%reason, "browser token refused");
        ApiError::unauthorized()
    })
}

/// Checks that `caller` may do `permission` on `server`.
fn require(caller: &Caller, server: ServerId, permission: Permission) -> Result<(), ApiError> {
    if caller.may(server, permission) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("this token does not grant {permission:?} on server {server}")))
    }
}

/// A JSON reply with `status`.
fn json<T: serde::Serialize>(value: &T, status: u16) -> Response {
    use warp::Reply as _;
    let status = warp::http::StatusCode::from_u16(status).unwrap_or(warp::http::StatusCode::OK);
    warp::reply::with_status(warp::reply::json(value), status).into_response()
}

/// 204 No Content.
fn no_content() -> Response {
    use warp::Reply as _;
    warp::reply::with_status(warp::reply(), warp::http::StatusCode::NO_CONTENT).into_response()
}

/// Turns a handler result into a response.
fn respond(result: Result<Response, ApiError>) -> Result<Response, std::convert::Infallible> {
    use warp::Reply as _;
    Ok(result.unwrap_or_else(|e| e.into_response()))
}
