//! # nexus-wings
//!
//! The reference node daemon of Nexus ("wings"): the data plane that runs game servers on one
//! host. It wraps the node agent of `nexus-agent` (with its egg preparer and file-backed state)
//! with everything host-specific:
//!
//! - [`api`]: the HTTP/WebSocket API (warp): servers, power, console, files, system, metrics.
//! - [`auth`]: the node token (constant-time) and short-lived signed browser tokens.
//! - [`backup`]: backups of server directories in an object store (disk or S3), restores.
//! - [`config`]: the TOML configuration file and its defaults.
//! - [`daemon`]: assembling runtime, agent and API; signals; logging.
//! - [`metrics`]: Prometheus text format.
//! - [`panel`]: the HTTP link to the panel (heartbeats, lifecycle events).

pub mod api;
pub mod auth;
pub mod backup;
pub mod config;
pub mod daemon;
pub mod disk;
pub mod host;
pub mod listener;
pub mod metrics;
pub mod panel;
pub mod templates;

pub use auth::{Caller, NodeToken, TokenClaims, TokenSigner};
pub use config::{Config, ResolvedConfig};
pub use daemon::{Daemon, DaemonError};
