//! The daemon's configuration file (TOML).
//!
//! Every field has a default (see [`Config::default`] and [`DEFAULT_CONFIG`], the commented
//! file `nexus-wings --print-default-config` prints); unknown fields are errors, so a typo
//! never silently falls back to a default. Only the node id and the node token have no usable
//! default: [`Config::load`] refuses a file without them.
//!
//! # Secrets
//! [`Config::resolve`] **refuses** what is certainly wrong:
//! - a node token shorter than 16 characters, a token secret shorter than 32;
//! - a token or secret using fewer than 8 distinct characters (`aaaa…`, `abab…`): not random;
//! - a token secret equal to the node token (whoever holds the one would hold the other);
//! - an inline token or secret with leading or trailing whitespace (request headers and secret
//!   files are trimmed, so it could never match), a node token with control or non-ASCII
//!   characters (it travels in an HTTP header);
//! - a `token_file` or `token_secret_file` accessible by group or others (mode & 077): as ssh
//!   does with private keys, since a secret file has no reason to be shared (`chmod 600`);
//! - a `panel_url` that is not an `http(s)://host` URL.
//!
//! and **warns** (in [`ResolvedConfig::warnings`], logged at start) about what is risky but
//! can be intended:
//! - a plain `http://` `panel_url` to a host other than loopback: the node token travels in
//!   clear text (fine behind a trusted network or a local TLS proxy);
//! - a token or secret written inline in a configuration file readable by group or others
//!   (configuration files are often world-readable by convention; move it to `token_file`).

use nexus_core::ids::NodeId;
use nexus_core::runtime::{ContainerUser, Isolation};
use nexus_files::FileOwner;
use nexus_templates::ObjectStoreConfig;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default configuration file, with every field documented. Parsing it gives
/// [`Config::default`] (checked by a test).
pub const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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

/// The container engine a daemon runs servers on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// The Docker Engine, through `docker_socket`.
    #[default]
    Docker,
    /// A Podman service (`podman system service`), through `podman_socket`.
    Podman,
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
    /// Directory of the daemon's own state (`agent-state.json`), locked by the running daemon
    /// (a second one on it exits at start). Default `/var/lib/nexus/state`.
    pub state_dir: PathBuf,
    /// The container engine servers run on: `docker` (default) or `podman`.
    pub runtime: RuntimeKind,
    /// Docker Engine socket (with `runtime = "docker"`). Default `/var/run/docker.sock`.
    pub docker_socket: PathBuf,
    /// Podman service socket (with `runtime = "podman"`). Default `/run/podman/podman.sock`.
    pub podman_socket: PathBuf,
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
    /// Run server processes on a terminal, as Wings does (eggs started with `--terminal` need
    /// one; stdout and stderr then arrive merged, and commands are echoed). Default true.
    pub container_tty: bool,
    /// HTTP connections served at once (lowered at start to the process's file-descriptor
    /// limit minus a reserve). Default 4096.
    pub max_connections: usize,
    /// Seconds a client may take to send a request's headers. Default 10.
    pub header_read_timeout_secs: u64,
    /// Seconds a connection (WebSockets included) may go without a byte either way. Default 300.
    pub idle_timeout_secs: u64,
    /// Console WebSockets of browser tokens one server may have open at once. Default 32;
    /// 0 = no cap.
    pub console_max_per_server: usize,
    /// Console WebSockets one browser token may have open at once. Default 4; 0 = no cap.
    pub console_max_per_token: usize,
    /// Console WebSockets of browser tokens open on the whole node. Default 1024; 0 = no cap.
    pub console_max_total: usize,
    /// Console WebSockets of the node token (the panel) open on the whole node, counted apart
    /// so browsers filling the other caps cannot lock the panel out. Default 256; 0 = no cap.
    pub console_max_node_token: usize,
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
    /// Console commands per second one server accepts from browser tokens (the console
    /// WebSocket), all sessions together; past it a command is refused with `rate_limited`.
    /// 0 disables the limit. Default 20.
    pub commands_per_second: u32,
    /// Commands one server accepts at once from browser tokens before `commands_per_second`
    /// applies. Default 40.
    pub command_burst: u32,
    /// Console commands per second one server accepts with the node token (the panel, on
    /// `POST /api/servers/:id/commands` or a console socket), from a bucket of its own so
    /// browsers cannot starve it. 0 disables the limit. Default 200.
    pub node_commands_per_second: u32,
    /// Commands one server accepts at once with the node token. Default 1000.
    pub node_command_burst: u32,
    /// Backups of server directories (the `[backups]` table; see [`BackupsConfig`]).
    pub backups: BackupsConfig,
    /// Template layers (the `[templates]` table; see [`TemplatesConfig`]).
    pub templates: TemplatesConfig,
}

/// The `[templates]` table: where template layers are read from, and the node's cache.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemplatesConfig {
    /// The object store the panel publishes layers to (the same `url`, `endpoint`, keys as
    /// the panel's `[templates]`). Unset: this node has no templates, and a server listing
    /// layers fails its install saying so.
    pub store: Option<ObjectStoreConfig>,
    /// The cache of layer files. Default: `<state_dir>/template-cache`.
    pub cache_dir: Option<PathBuf>,
    /// Largest size of the cache in bytes; least recently used files go first. Default
    /// 10 GiB.
    pub cache_max_bytes: u64,
}

impl Default for TemplatesConfig {
    fn default() -> Self {
        Self { store: None, cache_dir: None, cache_max_bytes: 10 << 30 }
    }
}

/// The `[backups]` table: where backup archives are kept and how many jobs run at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupsConfig {
    /// The object store holding the archives (`<server uuid>/<backup uuid>.tar.zst` under
    /// its prefix): `url = "s3://bucket/prefix"` with `endpoint`, `region`,
    /// `access_key_id`, `secret_access_key`, `allow_http`, `request_timeout_secs` for an
    /// S3-compatible bucket; `"file:///absolute/dir"` for a local directory; `"memory://"`
    /// for tests. Default: `file://<data_root>/backups`.
    pub store: Option<ObjectStoreConfig>,
    /// Backups and restores running at once on the node (more wait their turn). Default 2.
    pub max_concurrent: usize,
    /// Attempts of one backup or restore when the store fails in a way that can pass (it
    /// was unreachable, timed out, answered 5xx); 2 s, then 4 s, ... between them. Default 3.
    pub attempts: u32,
}

impl Default for BackupsConfig {
    fn default() -> Self {
        Self { store: None, max_concurrent: 2, attempts: 3 }
    }
}

impl BackupsConfig {
    /// The store configured, or the default: a directory `backups` in `data_root`.
    pub fn store(&self, data_root: &Path) -> ObjectStoreConfig {
        self.store.clone().unwrap_or_else(|| ObjectStoreConfig::local(&data_root.join("backups")))
    }

    /// How often a backup or a restore is tried.
    pub fn retry(&self) -> crate::backup::RetryPolicy {
        crate::backup::RetryPolicy { attempts: self.attempts, ..crate::backup::RetryPolicy::default() }
    }
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
            runtime: RuntimeKind::Docker,
            docker_socket: PathBuf::from(nexus_runtime_docker::DEFAULT_SOCKET),
            podman_socket: PathBuf::from(nexus_runtime_podman::DEFAULT_SOCKET),
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
            container_pids_limit: nexus_agent::DEFAULT_PIDS_LIMIT,
            install_timeout_secs: nexus_agent::DEFAULT_INSTALL_TIMEOUT.as_secs(),
            container_tty: true,
            max_connections: 4096,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 300,
            console_max_per_server: 32,
            console_max_per_token: 4,
            console_max_total: 1024,
            console_max_node_token: 256,
            disk_check_interval_secs: 60,
            file_owner: None,
            max_json_body_bytes: 4 << 20,
            timezone: None,
            commands_per_second: 20,
            command_burst: 40,
            node_commands_per_second: 200,
            node_command_burst: 1000,
            backups: BackupsConfig::default(),
            templates: TemplatesConfig::default(),
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
    /// Risky but accepted settings, for the operator (see the module docs); logged at start.
    pub warnings: Vec<String>,
}

impl Config {
    /// Parses a configuration from TOML text (`origin` names it in errors).
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse { path: origin.to_owned(), message: e.to_string() })
    }

    /// Reads, parses and resolves the file at `path`.
    pub fn load(path: &Path) -> Result<ResolvedConfig, ConfigError> {
        let (text, mode) = read_with_mode(path)?;
        let mut resolved = Self::parse(&text, path)?.resolve()?;
        let c = &resolved.config;
        let inline = [
            ("token", c.token.is_some() && c.token_file.is_none()),
            ("token_secret", c.token_secret.is_some() && c.token_secret_file.is_none()),
        ];
        if c.backups.store.as_ref().is_some_and(|store| store.secret_access_key.is_some()) && mode & 0o077 != 0 {
            resolved.warnings.push(format!(
                "`backups.store.secret_access_key` is written in {} which group or others may read (mode {:03o}): chmod 600 it",
                path.display(),
                mode & 0o777
            ));
        }
        for (name, used) in inline {
            if used && mode & 0o077 != 0 {
                resolved.warnings.push(format!(
                    "`{name}` is written inline in {} which group or others may read (mode {:03o}): \
                     chmod 600 it, or move the value to `{name}_file`",
                    path.display(),
                    mode & 0o777
                ));
            }
        }
        Ok(resolved)
    }

    /// Reads the secret files and checks the values (see the module docs for what is refused
    /// and what only warned about).
    pub fn resolve(self) -> Result<ResolvedConfig, ConfigError> {
        let mut warnings = Vec::new();
        let node_id = self.node_id.ok_or_else(|| ConfigError::Invalid("`node_id` is required".into()))?;
        let token = secret("token", self.token.as_deref(), self.token_file.as_deref())?
            .ok_or_else(|| ConfigError::Invalid("`token` or `token_file` is required".into()))?;
        if token.len() < 16 {
            return Err(ConfigError::Invalid("the node token must be at least 16 characters".into()));
        }
        if token.chars().any(|c| !(' '..='~').contains(&c)) {
            return Err(ConfigError::Invalid(
                "the node token may only hold printable ASCII characters: it travels in an HTTP header".into(),
            ));
        }
        check_random("the node token", &token)?;
        let token_secret = secret("token_secret", self.token_secret.as_deref(), self.token_secret_file.as_deref())?;
        if let Some(token_secret) = &token_secret {
            if token_secret.len() < 32 {
                return Err(ConfigError::Invalid("`token_secret` must be at least 32 characters".into()));
            }
            check_random("`token_secret`", token_secret)?;
            if *token_secret == token {
                return Err(ConfigError::Invalid(
                    "`token_secret` equals the node token: whoever holds the one could forge the other; use two random values"
                        .into(),
                ));
            }
        }
        if let Some(url) = &self.panel_url {
            if let Some(warning) = check_panel_url(url)? {
                warnings.push(warning);
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
        if self.backups.max_concurrent == 0 || self.backups.attempts == 0 {
            return Err(ConfigError::Invalid(
                "`backups.max_concurrent` and `backups.attempts` must be at least 1".into(),
            ));
        }
        for (rate, burst, name) in [
            (self.commands_per_second, self.command_burst, "command_burst"),
            (self.node_commands_per_second, self.node_command_burst, "node_command_burst"),
        ] {
            if rate > 0 && burst == 0 {
                return Err(ConfigError::Invalid(format!(
                    "`{name}` must be at least 1 while its rate is limited: 0 would refuse every command"
                )));
            }
        }
        Ok(ResolvedConfig {
            node_id,
            token,
            token_secret: token_secret.map(String::into_bytes),
            warnings,
            config: self,
        })
    }

    /// The console command limits of browser tokens and of the node token.
    pub fn command_limits(&self) -> crate::api::CommandLimits {
        use crate::api::Rate;
        crate::api::CommandLimits::new(
            Rate::new(self.commands_per_second, self.command_burst),
            Rate::new(self.node_commands_per_second, self.node_command_burst),
        )
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

/// A secret from its file (trimmed) or its inline value (`name` in the file); empty counts as
/// absent. A file group or others can access, or an inline value with surrounding whitespace,
/// is refused.
fn secret(name: &str, inline: Option<&str>, file: Option<&Path>) -> Result<Option<String>, ConfigError> {
    let value = match file {
        Some(path) => {
            let (text, mode) = read_with_mode(path)?;
            if mode & 0o077 != 0 {
                return Err(ConfigError::Invalid(format!(
                    "`{name}_file` {} is accessible by group or others (mode {:03o}); a secret file must be private: chmod 600 {}",
                    path.display(),
                    mode & 0o777,
                    path.display()
                )));
            }
            Some(text.trim().to_owned())
        }
        None => match inline {
            Some(value) if value.trim() != value => {
                return Err(ConfigError::Invalid(format!(
                    "`{name}` has leading or trailing whitespace: it could never match (headers and secret files are \
                     trimmed); remove it"
                )));
            }
            other => other.map(str::to_owned),
        },
    };
    Ok(value.filter(|v| !v.is_empty()))
}

/// The text of `path` and its permission bits, both from the same open file.
fn read_with_mode(path: &Path) -> Result<(String, u32), ConfigError> {
    use std::io::Read as _;
    use std::os::unix::fs::PermissionsExt as _;
    let read = |source| ConfigError::Read { path: path.to_owned(), source };
    let mut file = std::fs::File::open(path).map_err(read)?;
    let mode = file.metadata().map_err(read)?.permissions().mode();
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(read)?;
    Ok((text, mode))
}

/// Fewer distinct characters than this in a token or secret of at least 16 means it was not
/// drawn at random (a random 16-character hex string has about 10).
const MIN_DISTINCT_CHARS: usize = 8;

fn check_random(what: &str, value: &str) -> Result<(), ConfigError> {
    let distinct = value.chars().collect::<std::collections::BTreeSet<_>>().len();
    if distinct < MIN_DISTINCT_CHARS {
        return Err(ConfigError::Invalid(format!(
            "{what} uses only {distinct} distinct characters: it is not random; generate one, e.g. `openssl rand -hex 32`"
        )));
    }
    Ok(())
}

/// Refuses a `panel_url` that is not `http(s)://host...`; a warning for plain HTTP to a host
/// other than loopback.
fn check_panel_url(url: &str) -> Result<Option<String>, ConfigError> {
    let invalid = |why: &str| {
        ConfigError::Invalid(format!("`panel_url` must be an http(s) URL with a host ({why}), got `{url}`"))
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or_else(|| invalid("no host"))?;
    let ip = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>();
    let loopback = host.eq_ignore_ascii_case("localhost") || ip.is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(None),
        "http" if loopback => Ok(None),
        "http" => Ok(Some(format!(
            "`panel_url` {url} is plain HTTP to a host other than loopback: the node token travels in clear text; use https://"
        ))),
        other => Err(invalid(&format!("scheme `{other}`"))),
    }
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
        private_file(&file, "  from-the-file-0123456789\n");
        let config = Config {
            node_id: Some(NodeId::new()),
            token: Some("inline-0123456789abcdef".into()),
            token_file: Some(file),
            ..Config::default()
        };
        assert_eq!(config.resolve().unwrap().token, "from-the-file-0123456789");
    }

    fn private_file(path: &Path, text: &str) {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    fn with_token(token: &str) -> Config {
        Config { node_id: Some(NodeId::new()), token: Some(token.into()), ..Config::default() }
    }

    const SECRET: &str = "a-random-looking-secret-0123456789-xyz";

    fn refusal(config: Config) -> String {
        match config.resolve() {
            Err(ConfigError::Invalid(message)) => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn weak_tokens_are_refused() {
        assert!(refusal(with_token(&"a".repeat(64))).contains("1 distinct"));
        assert!(refusal(with_token(&"abcabcabcabcabcabcabc".repeat(2))).contains("3 distinct"));
        assert!(refusal(with_token("0101010101234560")).contains("7 distinct"));
        let weak_secret = Config { token_secret: Some("ab".repeat(20)), ..with_token("0123456789abcdef") };
        assert!(refusal(weak_secret).contains("token_secret"));
        assert!(with_token("0123456789abcdef").resolve().is_ok());
    }

    #[test]
    fn a_token_secret_equal_to_the_token_is_refused() {
        let config = Config { token_secret: Some(SECRET.into()), ..with_token(SECRET) };
        assert!(refusal(config).contains("equals the node token"));
        let config = Config { token_secret: Some(SECRET.into()), ..with_token("0123456789abcdef") };
        assert!(config.resolve().is_ok());
    }

    #[test]
    fn inline_whitespace_and_unsendable_tokens_are_refused() {
        assert!(refusal(with_token(" 0123456789abcdef")).contains("whitespace"));
        assert!(refusal(with_token("0123456789abcdef\n")).contains("whitespace"));
        let config = Config { token_secret: Some(format!("{SECRET} ")), ..with_token("0123456789abcdef") };
        assert!(refusal(config).contains("token_secret"));
        assert!(refusal(with_token("0123456789abcdéf")).contains("ASCII"));
        assert!(refusal(with_token("0123456789\u{7}abcdef")).contains("ASCII"));
    }

    #[test]
    fn secret_files_others_can_read_are_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        let secret = dir.path().join("secret");
        private_file(&token, "0123456789abcdef\n");
        private_file(&secret, SECRET);
        let config = || Config {
            node_id: Some(NodeId::new()),
            token_file: Some(token.clone()),
            token_secret_file: Some(secret.clone()),
            ..Config::default()
        };
        assert!(config().resolve().is_ok());
        for (file, mode) in [(&token, 0o640), (&token, 0o604), (&secret, 0o644), (&secret, 0o620)] {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode)).unwrap();
            let message = refusal(config());
            assert!(message.contains("chmod 600") && message.contains(&format!("{mode:03o}")), "{message}");
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(config().resolve().is_ok(), "read-only for the owner is fine");
    }

    #[test]
    fn plain_http_off_loopback_warns() {
        let warnings = |url: &str| {
            Config { panel_url: Some(url.into()), ..with_token("0123456789abcdef") }.resolve().map(|r| r.warnings)
        };
        for url in ["https://panel.example.com", "http://127.0.0.1:8000", "http://localhost", "http://[::1]:80/x"] {
            assert_eq!(warnings(url).unwrap(), Vec::<String>::new(), "{url}");
        }
        let warned = warnings("http://panel.example.com").unwrap();
        assert!(warned.len() == 1 && warned[0].contains("clear text"), "{warned:?}");
        assert_eq!(warnings("http://10.0.0.5:8080").unwrap().len(), 1);
        for url in ["ftp://panel", "panel.example.com", "http://", "file:///etc/passwd"] {
            assert!(matches!(warnings(url), Err(ConfigError::Invalid(_))), "{url}");
        }
    }

    #[test]
    fn inline_tokens_in_a_readable_file_warn() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wings.toml");
        let text =
            format!("node_id = \"{}\"\ntoken = \"0123456789abcdef\"\ntoken_secret = \"{SECRET}\"\n", NodeId::new());
        private_file(&path, &text);
        assert_eq!(Config::load(&path).unwrap().warnings, Vec::<String>::new());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let warnings = Config::load(&path).unwrap().warnings;
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("`token`") && warnings[0].contains("644"), "{warnings:?}");
        assert!(warnings[1].contains("`token_secret`"), "{warnings:?}");
    }

    #[test]
    fn backups_default_to_a_directory_in_the_data_root() {
        let config = Config::parse("[backups]\nmax_concurrent = 1\n", Path::new("t")).unwrap();
        assert_eq!(config.backups.max_concurrent, 1);
        assert_eq!(config.backups.store(Path::new("/srv/volumes")).url, "file:///srv/volumes/backups");
        let s3 = Config::parse(
            "[backups.store]\nurl = \"s3://bucket/node-1\"\nendpoint = \"http://127.0.0.1:9000\"\nallow_http = true\n",
            Path::new("t"),
        )
        .unwrap();
        assert_eq!(s3.backups.store(Path::new("/x")).url, "s3://bucket/node-1");
        assert!(Config::parse("[backups]\nstorage = 1\n", Path::new("t")).is_err());
        let none = Config {
            backups: BackupsConfig { max_concurrent: 0, ..BackupsConfig::default() },
            ..with_token("0123456789abcdef")
        };
        assert!(refusal(none).contains("backups.max_concurrent"));
    }

    #[test]
    fn a_zero_burst_is_refused_while_limited() {
        let config = Config { command_burst: 0, ..with_token("0123456789abcdef") };
        assert!(refusal(config).contains("command_burst"));
        let unlimited = Config { commands_per_second: 0, command_burst: 0, ..with_token("0123456789abcdef") };
        assert!(unlimited.resolve().is_ok());
    }
}
