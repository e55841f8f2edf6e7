//! Egg → [`ServerSpec`]: what a panel sends a node for one server.
//!
//! [`server_spec`] takes the egg, the server's settings (id, limits, image and startup
//! overrides, location), its allocations (primary first) and the variable values a user or
//! admin gave, and returns a spec that a node accepts, or the first reason it would not:
//!
//! 1. Every value names a variable of the egg ([`SpecBuildError::UnknownVariable`]) that its
//!    [`Editor`] may set: a user only `user_editable` (and viewable) ones, as in Pterodactyl
//!    ([`SpecBuildError::NotEditable`]); an admin every one.
//! 2. Every variable gets its value, or its default when none was given, trimmed of
//!    surrounding white space as Laravel trims request strings; an empty value is "no value"
//!    (a `nullable` variable may be left empty, a `required` one may not). Each value is at
//!    most [`MAX_ENV_ENTRY_BYTES`] ([`SpecBuildError::TooLong`], before any rule runs) and is
//!    checked against the variable's rules ([`SpecBuildError::Invalid`] names the variable,
//!    the rule and what the value must do).
//! 3. The startup command is rendered once as the node will render it
//!    ([`render_spec_startup`]), so a value the renderer refuses (a non-integer where bash
//!    evaluates arithmetic) fails here, not at the first start.
//! 4. The spec passes [`ServerSpec::validate`], the node's own check of every field.
//!
//! Pass [`Editor::User`] (the default) for values a user just submitted, and
//! [`Editor::Admin`] for an admin's and for values already stored (which were checked when
//! they were set). Who may pick an image is the control plane's decision.
//!
//! What only a node can check (whether the image exists, the denylist as its file manager
//! compiles it, the size of a request its API takes) is still the node's to refuse.
//!
//! # Environment
//!
//! The spec carries the variable values; the node adds what the platform sets, as Wings and
//! the Pterodactyl panel do between them: `SERVER_MEMORY`, `SERVER_IP`, `SERVER_PORT` (the
//! primary allocation), `P_SERVER_UUID`, `P_SERVER_LOCATION` (from
//! [`ServerSettings::location`]), `P_SERVER_ALLOCATION_LIMIT`, `TZ`, `HOME`, `USER` and
//! `STARTUP` (see [`crate::startup`]). [`render_spec_startup`] shows the complete
//! environment. `P_SERVER_ALLOCATION_LIMIT` is `0` when no limit is set, as the panel sends it;
//! Wings itself formats that number as `0.000000`, a quirk Nexus does not copy.
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
use nexus_core::transport::validate::{MAX_ENV_ENTRY_BYTES, printable};
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
    /// Who gives the values, which decides the variables they may set.
    pub editor: Editor,
    /// The server's own template layers, applied after the egg's.
    pub templates: Vec<nexus_core::template::LayerRef>,
}

/// The egg's layers, then the server's; a layer listed twice keeps only its later place
/// (later layers win, so that is where it counts).
fn layers(
    egg: &[nexus_core::template::LayerRef],
    server: &[nexus_core::template::LayerRef],
) -> Vec<nexus_core::template::LayerRef> {
    let all: Vec<_> = egg.iter().chain(server).collect();
    all.iter()
        .enumerate()
        .filter(|(i, layer)| !all[i + 1..].contains(layer))
        .map(|(_, layer)| (*layer).clone())
        .collect()
}

/// Who gives a server's variable values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Editor {
    /// The server's owner or a subuser: only variables the egg marks `user_editable` and
    /// `user_viewable`, as Pterodactyl's client API allows.
    #[default]
    User,
    /// An admin, or values already stored: every variable.
    Admin,
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
            editor: Editor::User,
            templates: Vec::new(),
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
        /// The name given (control characters escaped, shortened).
        name: String,
    },
    /// A user gave a value for a variable only an admin may set.
    #[error("variable `{name}` cannot be changed by users")]
    NotEditable {
        /// The variable's environment name.
        name: String,
    },
    /// A value longer than any environment entry may be.
    #[error("variable `{name}`: the value is longer than {MAX_ENV_ENTRY_BYTES} bytes")]
    TooLong {
        /// The variable's environment name.
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

impl SpecBuildError {
    /// The environment name of the variable this error is about, when it is about one.
    pub fn variable(&self) -> Option<&str> {
        match self {
            Self::UnknownVariable { name }
            | Self::NotEditable { name }
            | Self::TooLong { name }
            | Self::Rules { name, .. } => Some(name),
            Self::Invalid(v) => Some(&v.env_variable),
            _ => None,
        }
    }
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
    for name in values.keys() {
        let Some(variable) = egg.variable(name) else {
            return Err(SpecBuildError::UnknownVariable { name: printable(name) });
        };
        if settings.editor == Editor::User && !(variable.user_editable && variable.user_viewable) {
            return Err(SpecBuildError::NotEditable { name: name.clone() });
        }
    }
    let mut environment = BTreeMap::new();
    for variable in &egg.variables {
        let value = values.get(&variable.env_variable).unwrap_or(&variable.default_value);
        if value.len() > MAX_ENV_ENTRY_BYTES {
            return Err(SpecBuildError::TooLong { name: variable.env_variable.clone() });
        }
        let value = value.trim();
        let rules = parse_rules(&variable.rules)
            .map_err(|source| SpecBuildError::Rules { name: variable.env_variable.clone(), source })?;
        validate(variable, &rules, Some(value)).map_err(SpecBuildError::Invalid)?;
        environment.insert(variable.env_variable.clone(), value.to_owned());
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
        templates: layers(&egg.templates, &settings.templates),
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
