//! The daemon's configuration file (TOML).
//!
//! Every field has a default (see [`Config::default`] and [`DEFAULT_CONFIG`], the commented
//! file `nexus-wings --print-default-config` prints); unknown fields are errors, so a typo
//! never silently falls back to a default. Only the node id and the node token have no usable
//! default: [`Config::load`] refuses a file without them.

use crate::files::FileOwner;
use nexus_core::ids::NodeId;
use nexus_core::runtime::{ContainerUser, Isolation};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default configuration file, with every field documented. Parsing it gives
/// [`Config::default`] (checked by a test).
pub const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown field, wrong type, ...).
    #[error("invalid configuration {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the position.
        message: String,
    },
    /// A value is missing or out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The whole configuration file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP/WebSocket API listens on. Default `0.0.0.0:8080`.
    pub listen: SocketAddr,
    /// This node's id in the panel. Required.
    pub node_id: Option<NodeId>,
    /// The node token the panel authenticates with (`Authorization: Bearer <token>`), and
    /// the daemon presents to the panel. Required, here or in `token_file`.
    pub token: Option<String>,
    /// A file holding the node token (surrounding whitespace trimmed); wins over `token`.
    pub token_file: Option<PathBuf>,
    /// Base URL of the panel (`https://panel.example.com`); heartbeats and lifecycle events are
    /// POSTed to `<panel_url>/api/remote/events`. Without it the daemon runs standalone and
    /// drops them (logged at debug).
    pub panel_url: Option<String>,
    /// Directory holding one data directory per server (`<data_root>/<server uuid>`).
    /// Default `/var/lib/nexus/volumes`.
    pub data_root: PathBuf,
    /// Directory of the daemon's own state (`agent-state.json`). Default `/var/lib/nexus/state`.
    pub state_dir: PathBuf,
    /// Docker Engine socket. Default `/var/run/docker.sock`.
    pub docker_socket: PathBuf,
    /// Seconds a stop waits for the process to exit before killing it. Default 30.
    pub stop_timeout_secs: u64,
    /// Console lines replayed to a new console client. Default 150.
    pub console_replay_lines: usize,
    /// Console output throttle per server, lines per second; past it lines are dropped with a
    /// notice. Default 2000.
    pub console_lines_per_second: u32,
    /// Seconds between heartbeats to the panel. Default 30.
    pub heartbeat_interval_secs: u64,
    /// Shared secret (with the panel) that browser tokens are signed with; see
    /// [`crate::auth`]. Without it (and without `token_secret_file`) browser tokens are refused.
    pub token_secret: Option<String>,
    /// A file holding the token secret; wins over `token_secret`.
    pub token_secret_file: Option<PathBuf>,
    /// Longest lifetime a browser token may claim, in seconds; a token expiring later than
    /// this from now is refused even if its signature is valid. Default 900 (15 minutes).
    pub max_token_lifetime_secs: u64,
    /// Log format: `pretty` or `json`. Default `pretty`.
    pub log_format: LogFormat,
    /// Log filter: a default level and per-target levels (`info`, `warn,nexus_wings=debug`);
    /// the `RUST_LOG` variable wins when set. Default `info`.
    pub log_level: String,
    /// Whether `GET /metrics` needs the node token. Default true; set false for a scraper on a
    /// trusted network that cannot send a bearer token.
    pub metrics_require_token: bool,
    /// Tokio worker threads. 1 (the default) runs everything on one thread
    /// (`current_thread`, the leanest: a node daemon waits on I/O almost all the time); more
    /// starts a multi-threaded runtime with that many workers. File operations and archive
    /// work always run on tokio's blocking pool.
    pub worker_threads: usize,
    /// The unprivileged user and group every server process runs as (numeric; need not exist
    /// in the image). Each server directory is `0700` and owned by it. Root (uid or gid 0) is
    /// refused. Default 988:988.
    pub container_user: FileOwner,
    /// Run install scripts as root inside their container (as Wings does; scripts install
    /// packages) instead of as `container_user`. Either way the installed files are handed to
    /// `container_user` afterwards, set-id bits cleared. Default true.
    pub install_as_root: bool,
    /// Size of the `/tmp` tmpfs of server and install containers, MiB (server containers
    /// have a read-only root filesystem). Default 100.
    pub tmpfs_size_mb: u64,
    /// Process limit of servers whose spec sets none. Default 512; 0 leaves them unlimited.
    pub container_pids_limit: u64,
    /// Longest an install script may run, seconds; then it is stopped and the install fails.
    /// Default 3600.
    pub install_timeout_secs: u64,
    /// HTTP connections served at once (lowered at start to the process's file-descriptor
    /// limit minus a reserve). Default 4096.
    pub max_connections: usize,
    /// Seconds a client may take to send a request's headers. Default 10.
    pub header_read_timeout_secs: u64,
    /// Seconds a connection (WebSockets included) may go without a byte either way. Default 300.
    pub idle_timeout_secs: u64,
    /// Console WebSockets one server may have open at once. Default 32; 0 = no cap.
    pub console_max_per_server: usize,
    /// Console WebSockets one browser token may have open at once. Default 4; 0 = no cap.
    pub console_max_per_token: usize,
    /// Console WebSockets open on the whole node. Default 1024; 0 = no cap.
    pub console_max_total: usize,
    /// Seconds between two measurements of the disk usage of running servers (see
    /// [`crate::disk`]). Default 60.
    pub disk_check_interval_secs: u64,
    /// Owner given to files the file manager creates. Default: `container_user`.
    pub file_owner: Option<FileOwner>,
    /// Largest JSON request body, bytes. Default 4 MiB (a server spec with a long install
    /// script fits).
    pub max_json_body_bytes: u64,
    /// Time zone given to servers as `TZ` (IANA name), unless their egg sets one. Default none.
    pub timezone: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            node_id: None,
            token: None,
            token_file: None,
            panel_url: None,
            data_root: PathBuf::from("/var/lib/nexus/volumes"),
            state_dir: PathBuf::from("/var/lib/nexus/state"),
            docker_socket: PathBuf::from(nexus_runtime_docker::DEFAULT_SOCKET),
            stop_timeout_secs: 30,
            console_replay_lines: 150,
            console_lines_per_second: 2000,
            heartbeat_interval_secs: 30,
            token_secret: None,
            token_secret_file: None,
            max_token_lifetime_secs: 900,
            log_format: LogFormat::Pretty,
            log_level: "info".into(),
            metrics_require_token: true,
            worker_threads: 1,
            container_user: FileOwner { uid: 988, gid: 988 },
            install_as_root: true,
            tmpfs_size_mb: nexus_core::runtime::DEFAULT_TMP_SIZE_MB,
            container_pids_limit: nexus_core::agent::DEFAULT_PIDS_LIMIT,
            install_timeout_secs: nexus_core::agent::DEFAULT_INSTALL_TIMEOUT.as_secs(),
            max_connections: 4096,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 300,
            console_max_per_server: 32,
            console_max_per_token: 4,
            console_max_total: 1024,
            disk_check_interval_secs: 60,
            file_owner: None,
            max_json_body_bytes: 4 << 20,
            timezone: None,
        }
    }
}

/// A configuration with its secrets read and checked: what the daemon runs with.
#[derive(Clone, Debug)]
pub struct ResolvedConfig {
    /// The file as written.
    pub config: Config,
    /// The node id.
    pub node_id: NodeId,
    /// The node token.
    pub token: String,
    /// The browser token secret, if any.
    pub token_secret: Option<Vec<u8>>,
}

impl Config {
    /// Parses a configuration from TOML text (`origin` names it in errors).
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse { path: origin.to_owned(), message: e.to_string() })
    }

    /// Reads, parses and resolves the file at `path`.
    pub fn load(path: &Path) -> Result<ResolvedConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)?.resolve()
    }

    /// Reads the secret files and checks that the required values are there.
    pub fn resolve(self) -> Result<ResolvedConfig, ConfigError> {
        let node_id = self.node_id.ok_or_else(|| ConfigError::Invalid("`node_id` is required".into()))?;
        let token = secret(self.token.as_deref(), self.token_file.as_deref())?
            .ok_or_else(|| ConfigError::Invalid("`token` or `token_file` is required".into()))?;
        if token.len() < 16 {
            return Err(ConfigError::Invalid("the node token must be at least 16 characters".into()));
        }
        let token_secret = secret(self.token_secret.as_deref(), self.token_secret_file.as_deref())?;
        if token_secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err(ConfigError::Invalid("`token_secret` must be at least 32 characters".into()));
        }
        if let Some(url) = &self.panel_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!("`panel_url` must be an http(s) URL, got `{url}`")));
            }
        }
        if self.stop_timeout_secs == 0 || self.heartbeat_interval_secs == 0 {
            return Err(ConfigError::Invalid(
                "`stop_timeout_secs` and `heartbeat_interval_secs` must be positive".into(),
            ));
        }
        if self.worker_threads == 0 {
            return Err(ConfigError::Invalid("`worker_threads` must be at least 1".into()));
        }
        if self.container_user.uid == 0 || self.container_user.gid == 0 {
            return Err(ConfigError::Invalid(
                "`container_user` must not be root: a server running as root can leave set-uid-root files on the host"
                    .into(),
            ));
        }
        if self.install_timeout_secs == 0
            || self.disk_check_interval_secs == 0
            || self.header_read_timeout_secs == 0
            || self.idle_timeout_secs == 0
            || self.max_connections == 0
        {
            return Err(ConfigError::Invalid(
                "`install_timeout_secs`, `disk_check_interval_secs`, `header_read_timeout_secs`, `idle_timeout_secs` \
                 and `max_connections` must be positive"
                    .into(),
            ));
        }
        Ok(ResolvedConfig { node_id, token, token_secret: token_secret.map(String::into_bytes), config: self })
    }

    /// The stop timeout.
    pub fn stop_timeout(&self) -> Duration {
        Duration::from_secs(self.stop_timeout_secs)
    }

    /// The heartbeat interval.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_secs(self.heartbeat_interval_secs)
    }

    /// The listener's limits, as configured (see [`crate::listener`]).
    pub fn connection_limits(&self) -> crate::listener::ConnectionLimits {
        crate::listener::ConnectionLimits {
            max_connections: self.max_connections,
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
        }
    }

    /// The owner of files the file manager creates: `file_owner`, else `container_user`.
    pub fn file_owner(&self) -> FileOwner {
        self.file_owner.unwrap_or(self.container_user)
    }

    /// The confinement of server containers.
    pub fn server_isolation(&self) -> Isolation {
        Isolation { tmp_size_mb: self.tmpfs_size_mb, ..Isolation::server() }.with_user(Some(self.user()))
    }

    /// The confinement of install containers.
    pub fn install_isolation(&self) -> Isolation {
        let user = (!self.install_as_root).then(|| self.user());
        Isolation { tmp_size_mb: self.tmpfs_size_mb, ..Isolation::install() }.with_user(user)
    }

    fn user(&self) -> ContainerUser {
        ContainerUser { uid: self.container_user.uid, gid: self.container_user.gid }
    }

    /// The longest browser-token lifetime accepted.
    pub fn max_token_lifetime(&self) -> Duration {
        Duration::from_secs(self.max_token_lifetime_secs)
    }
}

/// A secret from its file (trimmed) or its inline value; empty counts as absent.
fn secret(inline: Option<&str>, file: Option<&Path>) -> Result<Option<String>, ConfigError> {
    let value = match file {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
            Some(text.trim().to_owned())
        }
        None => inline.map(str::to_owned),
    };
    Ok(value.filter(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_parses_to_the_defaults() {
        let parsed = Config::parse(DEFAULT_CONFIG, Path::new("default")).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = Config::parse("listen = \"127.0.0.1:1\"\nlisten_adress = \"x\"\n", Path::new("t")).unwrap_err();
        assert!(err.to_string().contains("listen_adress"), "{err}");
    }

    #[test]
    fn resolve_requires_node_and_token() {
        assert!(Config::default().resolve().is_err());
        let config =
            Config { node_id: Some(NodeId::new()), token: Some("0123456789abcdef".into()), ..Config::default() };
        let resolved = config.resolve().unwrap();
        assert_eq!(resolved.token, "0123456789abcdef");
        assert!(resolved.token_secret.is_none());
        let short = Config { node_id: Some(NodeId::new()), token: Some("short".into()), ..Config::default() };
        assert!(short.resolve().is_err());
    }

    #[test]
    fn token_file_wins_and_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  from-the-file-0123456789\n").unwrap();
        let config = Config {
            node_id: Some(NodeId::new()),
            token: Some("inline-0123456789abcdef".into()),
            token_file: Some(file),
            ..Config::default()
        };
        assert_eq!(config.resolve().unwrap().token, "from-the-file-0123456789");
    }
}
