//! `nexus-panel serve --config FILE`: the panel for production, on PostgreSQL, MySQL/MariaDB
//! or SQLite, with nodes elsewhere (each a `nexus-wings` with the configuration file the
//! panel hands out). Several `serve` processes may share one PostgreSQL or MySQL database.

use super::{CliError, fail, first_admin, open_store};
use clap::Args;
use nexus_control::{ControlConfig, ControlPlane};
use nexus_panel::node_client::HttpNodeTransport;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The default configuration, every key documented.
pub(crate) const DEFAULT_CONFIG: &str = r#"# nexus-panel serve configuration.

# Address the panel listens on. Put a TLS-terminating proxy in front of it.
listen = "127.0.0.1:8080"

# The URL browsers and nodes reach this panel at; written into node configuration files.
# `https://` also marks session cookies `Secure`.
public_url = "https://panel.example.com"

# The database: `postgres://user:password@host/db`, `mysql://user:password@host/db`
# (MySQL 8 or MariaDB 10.6+), or a SQLite file path. Migrations run at start.
database_url = "postgres://nexus:secret@127.0.0.1/nexus"

# A file holding the secret node tokens are derived from (32 bytes or more; readable by the
# panel's user only). Every panel process of one database must have the same secret.
# Create one with: head -c 48 /dev/urandom | base64 > node-secret; chmod 600 node-secret
node_secret_file = "/etc/nexus/node-secret"

# `https` (default) or `http`: how the panel calls its nodes' APIs.
node_scheme = "https"

# Seconds between node heartbeats; a node silent for three intervals is offline.
heartbeat_interval_secs = 10

# Longest a single call to a node may take, seconds.
node_timeout_secs = 10

# Log level: error, warn, info, debug, trace.
log_level = "info"

# Where a new server goes when its request names no node: `bin_pack` (the fullest node that
# still fits, so fewer nodes are in use and large gaps stay free) or `spread` (the emptiest
# node, spreading load and blast radius). Every panel process of one database should agree.
placement = "bin_pack"

# Addresses of reverse proxies in front of the panel. Requests from them are attributed to
# the client their `X-Forwarded-For` names (login throttling, audit log); from anyone else
# that header is ignored.
trusted_proxies = ["127.0.0.1"]

# Where template layers are published: the same object store every node's `[templates]`
# reads from. Leave the section out to run without templates.
# [templates]
# url = "s3://nexus/templates"          # or file:///var/lib/nexus/templates
# endpoint = "https://s3.example.net"   # S3-compatible servers; AWS when unset
# region = "us-east-1"
# access_key_id = "..."
# secret_access_key = "..."
# allow_http = false
"#;

/// The configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServeConfig {
    listen: SocketAddr,
    public_url: String,
    database_url: String,
    node_secret_file: PathBuf,
    #[serde(default = "https")]
    node_scheme: String,
    #[serde(default = "ten")]
    heartbeat_interval_secs: u64,
    #[serde(default = "ten")]
    node_timeout_secs: u64,
    #[serde(default = "info")]
    log_level: String,
    #[serde(default)]
    placement: nexus_core::placement::Strategy,
    #[serde(default)]
    trusted_proxies: Vec<std::net::IpAddr>,
    #[serde(default)]
    templates: Option<nexus_templates::ObjectStoreConfig>,
}

fn https() -> String {
    "https".into()
}

fn ten() -> u64 {
    10
}

fn info() -> String {
    "info".into()
}

impl ServeConfig {
    /// The `[templates]` store, when configured.
    pub(crate) fn templates(&self) -> Option<nexus_templates::ObjectStoreConfig> {
        self.templates.clone()
    }

    /// Reads and checks `path`.
    pub(crate) fn load(path: &Path) -> Result<Self, CliError> {
        let text = std::fs::read_to_string(path).map_err(fail(format!("read {}", path.display())))?;
        let config: Self = toml::from_str(&text).map_err(fail(format!("{}", path.display())))?;
        if !(config.public_url.starts_with("http://") || config.public_url.starts_with("https://")) {
            return Err(CliError(format!("{}: public_url must start with http:// or https://", path.display())));
        }
        if config.heartbeat_interval_secs == 0 || config.node_timeout_secs == 0 {
            return Err(CliError(format!("{}: intervals and timeouts must be positive", path.display())));
        }
        Ok(config)
    }

    /// The store and control plane this configuration names.
    pub(crate) async fn open(&self) -> Result<(Arc<ControlPlane>, Arc<HttpNodeTransport>), CliError> {
        let store = open_store(&self.database_url).await?;
        let mut config = ControlConfig::default();
        config.node_secret = Some(super::read_node_secret(&self.node_secret_file)?);
        config.node_scheme = match self.node_scheme.as_str() {
            "http" => "http",
            "https" => "https",
            other => return Err(CliError(format!("node_scheme `{other}`: http or https"))),
        };
        config.heartbeat_interval = Duration::from_secs(self.heartbeat_interval_secs);
        config.node_timeout = Duration::from_secs(self.node_timeout_secs);
        config.placement.strategy = self.placement;
        let nodes = Arc::new(HttpNodeTransport::new(config.node_timeout).map_err(fail("the node client"))?);
        let control = ControlPlane::new(store, nodes.clone(), config).await.map_err(fail("start the control plane"))?;
        Ok((Arc::new(control), nodes))
    }
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Configuration file (TOML).
    #[arg(long, short, value_name = "PATH", default_value = "/etc/nexus/panel.toml")]
    config: PathBuf,
    /// Print the default configuration, with every key documented, and exit.
    #[arg(long)]
    print_default_config: bool,
}

pub(crate) fn run(args: ServeArgs) -> Result<(), CliError> {
    if args.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return Ok(());
    }
    let config = ServeConfig::load(&args.config)?;
    let level: tracing::Level = config.log_level.parse().map_err(fail(format!("log_level `{}`", config.log_level)))?;
    tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr).init();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(fail("start the async runtime"))?;
    runtime.block_on(async move {
        let (control, transport) = config.open().await?;
        let listener =
            tokio::net::TcpListener::bind(config.listen).await.map_err(fail(format!("listen on {}", config.listen)))?;
        let address = listener.local_addr().map_err(fail("the panel's address"))?;
        let first = first_admin(&control).await?;
        transport.sync_endpoints(&control).await.map_err(fail("reach the nodes"))?;
        let templates = match &config.templates {
            Some(store) => Some(Arc::new(
                nexus_templates::ObjectStoreTemplates::open(store).map_err(fail("open the template store"))?,
            )),
            None => None,
        };
        let running = super::run::start(
            &control,
            &transport,
            listener,
            &config.public_url,
            config.trusted_proxies.clone(),
            templates,
        );
        println!("Nexus panel: http://{address}  (public URL {})", config.public_url);
        super::print_first_admin(first.as_deref());
        println!("Stop with Ctrl-C.");
        nexus_wings::daemon::shutdown_signal().await;
        tracing::info!("stopping");
        running.stop().await;
        Ok(())
    })
}
