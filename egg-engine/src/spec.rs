//! Egg → [`ServerSpec`]: what a panel sends a node for one server.
//!
//! [`server_spec`] takes the egg, the server's settings (id, limits, image and startup
//! overrides, location), its allocations (primary first) and the variable values a user or
//! admin gave, and returns a spec that a node accepts, or the first reason it would not:
//!
//! 1. Every value names a variable of the egg ([`SpecBuildError::UnknownVariable`]).
//! 2. Every variable gets its value, or its default when none was given; an empty value is
//!    "no value" (Laravel turns empty strings into `null` before validating, so a
//!    `nullable` variable may be left empty and a `required` one may not). Each is checked
//!    against the variable's rules ([`SpecBuildError::Invalid`] names the variable, the rule
//!    and what the value must do).
//! 3. The startup command is rendered once as the node will render it
//!    ([`render_spec_startup`]), so a value the renderer refuses (a non-integer where bash
//!    evaluates arithmetic) fails here, not at the first start.
//! 4. The spec passes [`ServerSpec::validate`], the node's own check.
//!
//! Whether a caller may set a variable (`user_editable`) or pick an image is the control
//! plane's decision, not this function's: it takes the values it is given.
//!
//! # Environment
//!
//! The spec carries the variable values; the node adds what the platform sets, as Wings and
//! the Pterodactyl panel do between them: `SERVER_MEMORY`, `SERVER_IP`, `SERVER_PORT` (the
//! primary allocation), `P_SERVER_UUID`, `P_SERVER_LOCATION` (from
//! [`ServerSettings::location`]), `P_SERVER_ALLOCATION_LIMIT`, `TZ`, `HOME`, `USER` and
//! `STARTUP` (see [`crate::startup`]). [`render_spec_startup`] shows the complete
//! environment.
//!
//! ```
//! use nexus_core::ids::ServerId;
//! use nexus_core::model::ServerLimits;
//! use nexus_core::runtime::PortBinding;
//! use nexus_eggs::import::import_egg;
//! use nexus_eggs::spec::{ServerSettings, SpecBuildError, render_spec_startup, server_spec};
//! use std::collections::BTreeMap;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let egg = import_egg(include_bytes!("../tests/fixtures/egg-busybox-echo.json"))?;
//! let mut settings = ServerSettings::new(ServerId::new());
//! settings.limits = ServerLimits { memory_mb: 256, ..ServerLimits::default() };
//! settings.location = Some("fra".into());
//! let allocations = [PortBinding { ip: "0.0.0.0".parse()?, port: 27015 }];
//!
//! let values = BTreeMap::from([("GREETING".to_owned(), "hello".to_owned())]);
//! let spec = server_spec(&egg, &settings, &allocations, &values)?;
//! let env = render_spec_startup(&spec, None)?.env;
//! assert_eq!((env["SERVER_PORT"].as_str(), env["P_SERVER_LOCATION"].as_str()), ("27015", "fra"));
//! assert_eq!(env["GREETING"], "hello");
//!
//! // A value its rules refuse names the variable and the rule.
//! let values = BTreeMap::from([("GREETING".to_owned(), "x".repeat(100))]);
//! match server_spec(&egg, &settings, &allocations, &values) {
//!     Err(SpecBuildError::Invalid(e)) => assert_eq!((e.env_variable.as_str(), e.rule.name()), ("GREETING", "max")),
//!     other => panic!("{other:?}"),
//! }
//! # Ok(())
//! # }
//! ```

use crate::rules::{RuleError, ValidationError, parse_rules, validate};
use crate::startup::{RenderedStartup, ServerFacts, StartupError, render_startup};
use nexus_core::ids::ServerId;
use nexus_core::model::{Egg, ServerLimits};
use nexus_core::runtime::PortBinding;
use nexus_core::transport::{ServerSpec, SpecError};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// What the control plane decided about one server, besides its egg and variable values.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerSettings {
    /// The server.
    pub id: ServerId,
    /// Limits.
    pub limits: ServerLimits,
    /// The image; `None` for the egg's default (its first image).
    pub image: Option<String>,
    /// The startup template; `None` for the egg's default (its first startup command).
    pub startup: Option<String>,
    /// The location's short code (`P_SERVER_LOCATION`).
    pub location: Option<String>,
    /// Allocations the server may hold (`P_SERVER_ALLOCATION_LIMIT`).
    pub allocation_limit: Option<u32>,
    /// A suspended server cannot start.
    pub suspended: bool,
}

impl ServerSettings {
    /// Settings for `id` with no limits and the egg's defaults.
    pub fn new(id: ServerId) -> Self {
        Self {
            id,
            limits: ServerLimits::default(),
            image: None,
            startup: None,
            location: None,
            allocation_limit: None,
            suspended: false,
        }
    }
}

/// Why an egg and its values do not make a server spec.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecBuildError {
    /// A value for a variable the egg does not define.
    #[error("the egg has no variable `{name}`")]
    UnknownVariable {
        /// The name given.
        name: String,
    },
    /// A value (or a default) fails one of its variable's rules.
    #[error("{0}")]
    Invalid(#[source] ValidationError),
    /// A variable's rules do not parse (the egg was imported by something more lenient).
    #[error("variable `{name}`: {source}")]
    Rules {
        /// The variable's environment name.
        name: String,
        /// Why its rules do not parse.
        #[source]
        source: RuleError,
    },
    /// The egg has no image and the settings name none.
    #[error("the egg has no image; choose one")]
    NoImage,
    /// The egg has no startup command and the settings give none.
    #[error("the egg has no startup command; give one")]
    NoStartup,
    /// The startup command cannot be rendered with these values.
    #[error("startup command: {0}")]
    Startup(#[source] StartupError),
    /// The spec breaks a rule every node checks ([`ServerSpec::validate`]).
    #[error("{0}")]
    Spec(#[source] SpecError),
}

/// Builds the spec of one server from `egg`; see the module docs for the steps and rules.
///
/// `allocations` are the server's ports, primary first; `values` maps variable environment
/// names to the values given (missing ones take their defaults).
pub fn server_spec(
    egg: &Egg,
    settings: &ServerSettings,
    allocations: &[PortBinding],
    values: &BTreeMap<String, String>,
) -> Result<ServerSpec, SpecBuildError> {
    if let Some(name) = values.keys().find(|name| egg.variable(name).is_none()) {
        return Err(SpecBuildError::UnknownVariable { name: name.clone() });
    }
    let mut environment = BTreeMap::new();
    for variable in &egg.variables {
        let value = values.get(&variable.env_variable).unwrap_or(&variable.default_value);
        let rules = parse_rules(&variable.rules)
            .map_err(|source| SpecBuildError::Rules { name: variable.env_variable.clone(), source })?;
        let given = (!value.is_empty()).then_some(value.as_str());
        validate(variable, &rules, given).map_err(SpecBuildError::Invalid)?;
        environment.insert(variable.env_variable.clone(), value.clone());
    }
    let image = settings.image.as_deref().or(egg.default_image()).ok_or(SpecBuildError::NoImage)?;
    let startup = settings.startup.as_deref().or(egg.default_startup()).ok_or(SpecBuildError::NoStartup)?;
    let spec = ServerSpec {
        id: settings.id,
        image: image.to_owned(),
        startup: startup.to_owned(),
        environment,
        limits: settings.limits,
        allocations: allocations.to_vec(),
        done: egg.done.clone(),
        stop: egg.stop.clone(),
        config_files: egg.config_files.clone(),
        install: egg.install.clone(),
        file_denylist: egg.file_denylist.clone(),
        suspended: settings.suspended,
        location: settings.location.clone(),
        allocation_limit: settings.allocation_limit,
    };
    render_spec_startup(&spec, None).map_err(SpecBuildError::Startup)?;
    spec.validate().map_err(SpecBuildError::Spec)?;
    Ok(spec)
}

/// The startup command and complete environment of `spec` as a node runs it, with the node's
/// time zone (`TZ`, unless the egg's own `TZ` variable is set). The primary allocation gives
/// `SERVER_IP`/`SERVER_PORT`; a server without allocations gets `0.0.0.0` and `0`.
pub fn render_spec_startup(spec: &ServerSpec, timezone: Option<&str>) -> Result<RenderedStartup, StartupError> {
    let primary = primary_address(spec);
    let facts = ServerFacts {
        memory_mib: spec.limits.memory_mb,
        ip: primary.ip().to_string(),
        port: primary.port(),
        uuid: spec.id.to_string(),
        timezone: timezone.map(str::to_owned),
        location: spec.location.clone(),
        allocation_limit: spec.allocation_limit,
    };
    render_startup(&spec.startup, &spec.environment, &facts)
}

/// The primary allocation of `spec` (its first); a server without one binds nothing
/// (`0.0.0.0:0`).
pub fn primary_address(spec: &ServerSpec) -> SocketAddr {
    spec.allocations.first().map_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0), |primary| {
        SocketAddr::new(primary.ip, primary.port)
    })
}
