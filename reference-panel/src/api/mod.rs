//! The panel's HTTP API, `/api/v1`: JSON in and out, typed errors ([`ApiError`]), lists
//! paginated (`?page=1&per_page=50`, at most [`MAX_PER_PAGE`]).
//!
//! Every route is a row of [`routes`]: method, path, who may call it ([`Access`]) and the
//! handler. The router checks the access before any handler runs, so a handler cannot forget
//! it, and the authorization test walks the same table, so a new route cannot be missed.
//! Lists are served from the store, never by asking nodes, so a node that is down slows
//! nothing but the requests sent to it.

pub mod answer;
pub mod auth;
mod error;
mod handlers;
pub mod openapi;
pub mod pterodactyl;
mod router;

pub use error::ApiError;
pub use router::{Access, Call, Route, filter, metrics, routes, session_principal};

use auth::Sessions;
use nexus_control::ControlPlane;
use serde::Serialize;
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::Response;

/// Largest request body read (an egg file is the largest thing sent; the corpus' biggest is
/// 78 KB).
pub const MAX_BODY_BYTES: u64 = 1 << 20;
/// Longest page of a list.
pub const MAX_PER_PAGE: u64 = 100;
/// Page length when none is asked for.
pub const DEFAULT_PER_PAGE: u64 = 50;

/// What the API's handlers share.
#[derive(Debug)]
pub struct PanelState {
    /// The control plane.
    pub control: Arc<ControlPlane>,
    /// Browser sessions.
    pub sessions: Sessions,
    /// Whether cookies get `Secure` (the panel is served over TLS).
    pub secure_cookies: bool,
    /// The URL nodes and browsers reach this panel at (`http://127.0.0.1:8080`); written into
    /// node configuration files.
    pub public_url: String,
    /// The node client, told about nodes registered through the API.
    pub node_client: Option<Arc<crate::node_client::HttpNodeTransport>>,
    /// Reverse proxies whose `X-Forwarded-For` names the client (login throttling and the
    /// audit log then see the real address, not the proxy's).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Request counters and latencies, per route of [`routes`].
    pub metrics: crate::metrics::HttpMetrics,
    /// Where template layers are published (the store the nodes read them from); `None`
    /// answers the template routes `503`.
    pub templates: Option<Arc<nexus_templates::ObjectStoreTemplates>>,
}

impl PanelState {
    /// State over `control`, reached at `public_url`.
    pub fn new(control: Arc<ControlPlane>, public_url: impl Into<String>) -> Self {
        let public_url = public_url.into();
        Self {
            control,
            sessions: Sessions::default(),
            secure_cookies: public_url.starts_with("https://"),
            public_url,
            node_client: None,
            trusted_proxies: Vec::new(),
            templates: None,
            metrics: crate::metrics::HttpMetrics::new(
                routes().into_iter().chain(pterodactyl::routes()).map(|r| (r.method.to_string(), r.path)),
            ),
        }
    }

    /// Routes nodes registered through the API with `client` at once (instead of at the
    /// next periodic sync).
    pub fn with_node_client(mut self, client: Arc<crate::node_client::HttpNodeTransport>) -> Self {
        self.node_client = Some(client);
        self
    }
}

/// `value` as JSON with `status`.
pub(crate) fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let body = match serde_json::to_vec(value) {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize an answer");
            return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error").into_response();
        }
    };
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", warp::http::HeaderValue::from_static("application/json"));
    response
}

/// The typed `404 not_found` for any path the panel does not serve (mount it last).
pub fn json_response_not_found() -> Response {
    ApiError::not_found("no such route").into_response()
}
