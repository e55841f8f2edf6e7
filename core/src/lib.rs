//! # nexus-core
//!
//! The heart of Nexus: the domain model, the server lifecycle, and the small traits every
//! other crate plugs into:
//!
//! | trait | implemented by |
//! |---|---|
//! | [`Runtime`](runtime::Runtime) | `nexus-runtime-docker`, `nexus-runtime-podman` |
//! | [`Store`](store::Store) | `nexus-store-{postgres,mysql,sqlite}`, `memory::MemoryStore` (feature `memory`) |
//! | [`NodeTransport`](transport::NodeTransport) / [`PanelTransport`](transport::PanelTransport) | HTTP in the daemon and panel, `memory::InProcessTransport` (feature `memory`) |
//! | [`TemplateSource`](template::TemplateSource) | `nexus-templates` (`ObjectStoreTemplates`: S3-compatible, a local directory, in memory) |
//! | [`Placement`](placement::Placement) | [`placement::ScoringPlacement`] |
//!
//! This crate depends on nothing else in the workspace.

pub mod console;
pub mod cron;
pub mod env;
pub mod ids;
pub mod lifecycle;
#[cfg(feature = "memory")]
pub mod memory;
pub mod model;
pub mod placement;
pub mod runtime;
pub mod store;
pub mod template;
pub mod transport;

pub use ids::*;
