//! # nexus-panel
//!
//! The reference panel: a thin HTTP layer over [`nexus_control`], and the `nexus-panel`
//! binary (`up`, `serve`, `keys create`).
//!
//! - [`api`]: the REST API under `/api/v1` (sessions and API keys, the route table with each
//!   route's access rule, typed JSON errors, its OpenAPI 3.1 document at
//!   `/api/v1/openapi.json`).
//! - [`node_client`]: [`HttpNodeTransport`](node_client::HttpNodeTransport), the panel → node
//!   link over the daemon's HTTP API (`nexus-wire`'s paths and bodies), each call bounded in
//!   time and in the size of what it reads back.
//! - [`node_proxy`]: requests forwarded to a server's node on a user's behalf (files,
//!   resources), streamed, with the node's own token.
//! - [`events`]: the node → panel endpoint, `POST /api/remote/events`: the node's token
//!   checked, the message handed to [`ControlPlane::ingest`](nexus_control::ControlPlane::ingest).
//! - [`metrics`]: Prometheus text at `/metrics` (admins).
//! - [`ui`]: the web UI (tera pages, hand-written scripts, every asset served here).

pub mod api;
pub mod events;
pub mod metrics;
pub mod node_client;
pub mod node_proxy;
pub mod ui;
