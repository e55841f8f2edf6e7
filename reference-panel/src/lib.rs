//! # nexus-panel
//!
//! The reference panel's pieces over [`nexus_control`] (first slice of the panel):
//!
//! - [`node_client`]: [`HttpNodeTransport`](node_client::HttpNodeTransport), the panel → node
//!   link over the daemon's HTTP API (`nexus-wire`'s paths and bodies), each call bounded in
//!   time and in the size of what it reads back.
//! - [`events`]: the node → panel endpoint, `POST /api/remote/events`: the node's token
//!   checked, the message handed to [`ControlPlane::ingest`](nexus_control::ControlPlane::ingest).
//!
//! Accounts, the `/api/v1` API, the web UI and `nexus-panel up` are not built yet.

pub mod api;
pub mod events;
pub mod node_client;
