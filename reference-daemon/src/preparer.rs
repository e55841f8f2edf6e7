//! [`EggPreparer`]: what runs before every start, done with `nexus-eggs`.
//!
//! 1. **Config files.** Every [`ConfigFile`](nexus_core::model::ConfigFile) of the spec is
//!    read through the confined file manager ([`ServerFiles`]), patched with
//!    [`nexus_eggs::config_files::apply`] and written back (only when the text changed). As in
//!    Wings, a file that does not exist yet is skipped with a notice in the log (the game
//!    creates it on first start and it gets patched on the next). A file that exists but
//!    cannot be patched (malformed, not UTF-8, a path leaving the root) fails the start with
//!    [`AgentError::Prepare`] naming it: starting with an unpatched port would be worse.
//!    The egg's file denylist does not apply here (it restricts users, not the egg), and
//!    neither does the quota (the patched file replaces one of about the same size).
//! 2. **Startup command.** [`render_startup`] with the spec's environment and the server's
//!    facts (memory, primary allocation, uuid, the node's time zone). Values travel in the
//!    environment, never in the command text.
//!
//! The container runs [`SHELL_WRAPPER`]: `/bin/sh -c` with a fixed script that `exec`s
//! `bash -c "$STARTUP"` when the image has bash (many egg templates use bash syntax: `[[ ]]`,
//! `$'...'`) and `sh -c "$STARTUP"` otherwise. `STARTUP` is the rendered command, which the
//! environment carries anyway (Pterodactyl images read it). The wrapper never interpolates
//! anything, so its own text is constant, and `exec` keeps the server's shell as the process
//! the stop signal reaches. Images whose entrypoint evaluates `STARTUP` themselves (the
//! Pterodactyl yolks) receive the wrapper as arguments and ignore it.

use crate::files::{FilesConfig, FilesError, ServerFiles};
use async_trait::async_trait;
use nexus_core::agent::{AgentError, PreparedStart, StartPreparer};
use nexus_core::transport::ServerSpec;
use nexus_eggs::config_files::{ConfigContext, apply};
use nexus_eggs::startup::{RenderedStartup, ServerFacts, StartupError, render_startup};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

/// The fixed script the container's `/bin/sh -c` runs; see the module docs.
pub const SHELL_WRAPPER: &str =
    r#"if command -v bash >/dev/null 2>&1; then exec bash -c "$STARTUP"; else exec sh -c "$STARTUP"; fi"#;

/// Longest one config file may take to patch. The patcher is linear and bounded in size and
/// depth, so this only trips on a file near the size limit on a very slow node; it keeps a
/// tenant's file from holding a start for long.
pub const PATCH_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

/// Patches `text` on the blocking pool (a tenant controls the file: its parsing must never
/// hold the daemon's runtime threads) within [`PATCH_BUDGET`]; `None` when nothing changes.
async fn patch_off_thread(
    file: &nexus_core::model::ConfigFile,
    text: String,
    ctx: &ConfigContext,
) -> Result<Option<String>, AgentError> {
    let (file, ctx, path) = (file.clone(), ctx.clone(), file.path.clone());
    let work = tokio::task::spawn_blocking(move || {
        apply(&file, &text, &ctx).map(|patched| (patched != text).then_some(patched))
    });
    match tokio::time::timeout(PATCH_BUDGET, work).await {
        Ok(Ok(result)) => result.map_err(|e| prepare_error(e.to_string())),
        Ok(Err(join)) => Err(prepare_error(format!("config file `{path}`: patching failed: {join}"))),
        Err(_) => Err(prepare_error(format!("config file `{path}`: patching took longer than {PATCH_BUDGET:?}"))),
    }
}

/// Largest config file patched (bigger ones fail the start rather than eat memory): the
/// patcher's own bound, so a file is never read only to be refused.
pub const MAX_CONFIG_FILE_BYTES: u64 = nexus_eggs::config_files::MAX_CONFIG_BYTES as u64;

/// Prepares starts from eggs: patches config files, renders the startup command.
#[derive(Clone, Debug, Default)]
pub struct EggPreparer {
    timezone: Option<String>,
    node_config: BTreeMap<String, String>,
    files: FilesConfig,
    managers: Option<std::sync::Arc<crate::api::files::FileManagers>>,
}

impl EggPreparer {
    /// A preparer giving servers `timezone` as `TZ` (unless their egg sets one).
    pub fn new(timezone: Option<String>) -> Self {
        Self { timezone, ..Self::default() }
    }

    /// Node values for `{{config.X}}` placeholders in config files (`docker.interface` →
    /// `172.18.0.1`).
    #[must_use]
    pub fn with_node_config(mut self, values: BTreeMap<String, String>) -> Self {
        self.node_config = values;
        self
    }

    /// Owner of config files created or replaced while patching.
    #[must_use]
    pub fn with_file_owner(mut self, owner: Option<crate::files::FileOwner>) -> Self {
        self.files.owner = owner;
        self
    }

    /// Measures disk usage before every start through `managers` (the API's file managers,
    /// whose counters it refreshes) and refuses to start a server over its `disk_mb`.
    #[must_use]
    pub fn with_disk_limits(mut self, managers: std::sync::Arc<crate::api::files::FileManagers>) -> Self {
        self.managers = Some(managers);
        self
    }

    /// Refuses the start of a server over its disk limit (see [`crate::disk`]).
    async fn check_disk(&self, spec: &ServerSpec, data_dir: &Path) -> Result<(), AgentError> {
        let Some(managers) = &self.managers else { return Ok(()) };
        if crate::disk::limit_bytes(spec).is_none() {
            return Ok(());
        }
        let files = managers
            .open_for(spec, data_dir, false)
            .await
            .map_err(|e| prepare_error(format!("measuring disk usage: {}", e.message)))?;
        let used =
            crate::disk::measure(&files).await.map_err(|e| prepare_error(format!("measuring disk usage: {e}")))?;
        match crate::disk::over_limit(spec, used) {
            Some(over) => Err(over),
            None => Ok(()),
        }
    }

    /// Patches the spec's config files in `data_dir`; returns how many were changed.
    pub async fn patch_config_files(&self, spec: &ServerSpec, data_dir: &Path) -> Result<usize, AgentError> {
        if spec.config_files.is_empty() {
            return Ok(0);
        }
        let files = ServerFiles::open(data_dir, self.files.clone())
            .await
            .map_err(|e| prepare_error(format!("open data directory: {e}")))?;
        let ctx = ConfigContext::new(primary(spec), spec.limits.memory_mb)
            .with_environment(spec.environment.clone())
            .with_node_config(self.node_config.clone());
        let mut changed = 0;
        for file in &spec.config_files {
            let original = match files.read(&file.path, MAX_CONFIG_FILE_BYTES).await {
                Ok(bytes) => bytes,
                Err(FilesError::NotFound { .. }) => {
                    tracing::info!(server = %spec.id, file = %file.path, "config file does not exist yet; not patched");
                    continue;
                }
                Err(e) => return Err(prepare_error(format!("config file `{}`: {e}", file.path))),
            };
            let text = String::from_utf8(original)
                .map_err(|_| prepare_error(format!("config file `{}` is not UTF-8 text", file.path)))?;
            let Some(patched) = patch_off_thread(file, text, &ctx).await? else { continue };
            files
                .write(&file.path, patched.into_bytes())
                .await
                .map_err(|e| prepare_error(format!("config file `{}`: {e}", file.path)))?;
            changed += 1;
            tracing::debug!(server = %spec.id, file = %file.path, parser = file.parser.as_str(), "config file patched");
        }
        Ok(changed)
    }

    /// Renders the startup command and environment of `spec`.
    pub fn render(&self, spec: &ServerSpec) -> Result<PreparedStart, AgentError> {
        let rendered = self.render_startup(spec).map_err(|e| prepare_error(format!("startup command: {e}")))?;
        if !rendered.unresolved.is_empty() {
            tracing::warn!(server = %spec.id, unresolved = ?rendered.unresolved, "startup placeholders name no variable; rendered empty");
        }
        Ok(PreparedStart {
            command: vec!["/bin/sh".into(), "-c".into(), SHELL_WRAPPER.into()],
            env: rendered.env.into_iter().collect(),
        })
    }
}

impl EggPreparer {
    /// The startup of `spec` as [`render`](Self::render) renders it, or why it cannot be
    /// (the API checks a new spec with it, before accepting it).
    pub fn render_startup(&self, spec: &ServerSpec) -> Result<RenderedStartup, StartupError> {
        let primary = primary(spec);
        let facts = ServerFacts {
            memory_mib: spec.limits.memory_mb,
            ip: primary.ip().to_string(),
            port: primary.port(),
            uuid: spec.id.to_string(),
            timezone: self.timezone.clone(),
        };
        render_startup(&spec.startup, &spec.environment, &facts)
    }
}

#[async_trait]
impl StartPreparer for EggPreparer {
    async fn prepare(&self, spec: &ServerSpec, data_dir: &Path) -> Result<PreparedStart, AgentError> {
        self.check_disk(spec, data_dir).await?;
        self.patch_config_files(spec, data_dir).await?;
        self.render(spec)
    }

    /// Install scripts get the rendered environment; config files are left alone (the install
    /// usually creates them, and patching belongs to the start).
    async fn install_env(&self, spec: &ServerSpec, _data_dir: &Path) -> Result<BTreeMap<String, String>, AgentError> {
        Ok(self.render(spec)?.env)
    }
}

/// The primary allocation; a server without one binds nothing (`0.0.0.0:0`).
fn primary(spec: &ServerSpec) -> SocketAddr {
    spec.allocations
        .first()
        .map(|a| SocketAddr::new(a.ip, a.port))
        .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))
}

fn prepare_error(message: String) -> AgentError {
    AgentError::Prepare(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexus_core::ids::ServerId;
    use nexus_core::model::{ConfigFile, ConfigParser, EggScript, FindValue, ServerLimits, StopMethod};
    use nexus_core::runtime::PortBinding;

    fn spec(config_files: Vec<ConfigFile>) -> ServerSpec {
        ServerSpec {
            id: ServerId::new(),
            image: "nexus-test/busybox:latest".into(),
            startup: "./run --port {{SERVER_PORT}} --name '{{NAME}}'".into(),
            environment: BTreeMap::from([("NAME".into(), "it's $(rm -rf /)".into())]),
            limits: ServerLimits { memory_mb: 512, ..ServerLimits::default() },
            allocations: vec![PortBinding { ip: "127.0.0.1".parse().unwrap(), port: 25565 }],
            done: vec![],
            stop: StopMethod::Command("stop".into()),
            config_files,
            install: EggScript { script: String::new(), container: String::new(), entrypoint: "ash".into() },
            file_denylist: vec![],
            suspended: false,
        }
    }

    fn properties(path: &str) -> ConfigFile {
        ConfigFile {
            path: path.into(),
            parser: ConfigParser::Properties,
            find: vec![
                ("server-port".into(), FindValue::Text("{{server.build.default.port}}".into())),
                ("motd".into(), FindValue::Text("{{env.NAME}}".into())),
            ],
        }
    }

    #[test]
    fn renders_into_env_behind_the_wrapper() {
        let prepared = EggPreparer::new(Some("Europe/Berlin".into())).render(&spec(vec![])).unwrap();
        assert_eq!(prepared.command, vec!["/bin/sh", "-c", SHELL_WRAPPER]);
        assert_eq!(prepared.env["SERVER_PORT"], "25565");
        assert_eq!(prepared.env["SERVER_MEMORY"], "512");
        assert_eq!(prepared.env["TZ"], "Europe/Berlin");
        assert_eq!(prepared.env["NAME"], "it's $(rm -rf /)");
        // The value never appears in the command, only a reference to it.
        assert!(!prepared.env["STARTUP"].contains("rm -rf"));
        assert!(prepared.env["STARTUP"].contains("${SERVER_PORT}"));
    }

    #[tokio::test]
    async fn patches_existing_files_and_skips_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("server.properties"), "# comment\nserver-port=1\nmotd=old\n").unwrap();
        let spec = spec(vec![properties("server.properties"), properties("missing/other.properties")]);
        let changed = EggPreparer::default().patch_config_files(&spec, dir.path()).await.unwrap();
        assert_eq!(changed, 1);
        let text = std::fs::read_to_string(dir.path().join("server.properties")).unwrap();
        assert_eq!(text, "# comment\nserver-port=25565\nmotd=it's $(rm -rf /)\n");
        assert!(!dir.path().join("missing").exists());
        // Second run: nothing left to change.
        assert_eq!(EggPreparer::default().patch_config_files(&spec, dir.path()).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn malformed_or_escaping_files_fail_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut json = properties("conf.json");
        json.parser = ConfigParser::Json;
        std::fs::write(dir.path().join("conf.json"), "{ not json").unwrap();
        let err = EggPreparer::default().patch_config_files(&spec(vec![json]), dir.path()).await.unwrap_err();
        assert!(matches!(err, AgentError::Prepare(ref m) if m.contains("conf.json")), "{err}");
        let err = EggPreparer::default()
            .patch_config_files(&spec(vec![properties("../outside.properties")]), dir.path())
            .await
            .unwrap_err();
        assert!(matches!(err, AgentError::Prepare(_)), "{err}");
    }
}
