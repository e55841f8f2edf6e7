//! # nexus-eggs
//!
//! Everything about Pterodactyl and Pelican eggs:
//!
//! - [`import`]: `PTDL_v1`, `PTDL_v2`, `PLCN_v1`..`PLCN_v3`, JSON or YAML, into one
//!   [`Egg`](nexus_core::model::Egg); [`export`] back to `PTDL_v2` or `PLCN_v3`.
//! - [`rules`]: the Laravel validation rules of egg variables.
//! - [`startup`]: rendering the startup command and the server environment, injection-free.
//! - [`config_files`]: patching a server's config files before start, byte-exact on
//!   everything not patched.
//! - [`stop`]: how egg stop strings map to console commands and signals.

pub mod config_files;
pub mod export;
pub mod import;
pub mod rules;
pub mod startup;
pub mod stop;
