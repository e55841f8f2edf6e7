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
//! - [`spec`]: egg + settings + allocations + values → the [`ServerSpec`](nexus_core::transport::ServerSpec)
//!   a node runs ([`server_spec`]).
//!
//! ```
//! use nexus_eggs::export::{ExportFormat, export_egg};
//! use nexus_eggs::import::import_egg;
//! use nexus_eggs::rules::{parse_rules, validate};
//! use nexus_eggs::startup::{ServerFacts, render_startup};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let egg = import_egg(include_bytes!("../tests/fixtures/egg-busybox-echo.json"))?;
//!
//! // Check a user's value against the variable's rules before saving it.
//! let variable = &egg.variables[0];
//! let rules = parse_rules(&variable.rules)?;
//! validate(variable, &rules, Some(&variable.default_value))?;
//!
//! // Render the startup command: values travel in the environment, never inside the command.
//! let values = egg.variables.iter().map(|v| (v.env_variable.as_str(), v.default_value.as_str()));
//! let facts = ServerFacts { memory_mib: 1024, ip: "0.0.0.0".into(), port: 27015, uuid: "d3b0…".into(), timezone: None, location: None, allocation_limit: None };
//! let rendered = render_startup(egg.default_startup().unwrap_or_default(), values, &facts)?;
//! assert_eq!(rendered.env.get("SERVER_PORT").map(String::as_str), Some("27015"));
//!
//! // And back out as a Pelican egg.
//! let yaml = export_egg(&egg, ExportFormat::PlcnV3Yaml)?;
//! assert!(yaml.contains("PLCN_v3"));
//! # Ok(())
//! # }
//! ```

pub mod config_files;
mod depth;
pub mod export;
pub mod import;
pub mod rules;
pub mod spec;
pub mod startup;
pub use spec::server_spec;
pub mod stop;
#[cfg(test)]
mod test_support;
mod yaml_expansion;
