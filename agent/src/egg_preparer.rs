//! [`EggPreparer`]: what runs before every start, done with `nexus-eggs`.
//!
//! 1. **Config files.** Every [`ConfigFile`] of the spec is read through the confined file
//!    manager ([`ServerFiles`]), patched with [`nexus_eggs::config_files::apply`] off the
//!    runtime threads within [`PATCH_BUDGET`], and written back (only when the text changed).
//!    As in Wings, a file that does not exist yet is patched as an empty one and created when
//!    that gives something (a first start writes the allocated port into `server.properties`),
//!    and a file that cannot be patched (malformed, hostile, not UTF-8, a path leaving the
//!    root) is left alone: the start goes on, and a console notice names the file and the
//!    reason ([`ConfigOutcome::notices`]). The egg's file denylist does not apply here (it
//!    restricts users, not the egg), and neither does the quota.
//! 2. **Startup command.** [`render_spec_startup`] with the spec's environment and the server's
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

use crate::{AgentError, PreparedStart, StartPreparer};
use async_trait::async_trait;
use nexus_core::model::ConfigFile;
use nexus_core::transport::ServerSpec;
use nexus_eggs::config_files::{ConfigContext, apply};
use nexus_eggs::spec::{primary_address, render_spec_startup};
use nexus_eggs::startup::{RenderedStartup, StartupError};
use nexus_files::{FilesConfig, FilesError, ServerFiles};
use std::collections::BTreeMap;
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
) -> Result<Option<String>, String> {
    let (file, ctx) = (file.clone(), ctx.clone());
    let work = tokio::task::spawn_blocking(move || {
        apply(&file, &text, &ctx).map(|patched| (patched != text).then_some(patched))
    });
    match tokio::time::timeout(PATCH_BUDGET, work).await {
        Ok(Ok(result)) => result.map_err(|e| e.to_string()),
        Ok(Err(join)) => Err(format!("patching failed: {join}")),
        Err(_) => Err(format!("patching took longer than {PATCH_BUDGET:?}")),
    }
}

/// Largest config file patched (bigger ones fail the start rather than eat memory): the
/// patcher's own bound, so a file is never read only to be refused.
pub const MAX_CONFIG_FILE_BYTES: u64 = nexus_eggs::config_files::MAX_CONFIG_BYTES as u64;

/// What patching a server's config files did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigOutcome {
    /// Files written.
    pub changed: usize,
    /// Files left alone, and why, for the console.
    pub notices: Vec<String>,
}

/// Patches one config file; whether it was written, or why it could not be.
async fn patch_one(files: &ServerFiles, file: &ConfigFile, ctx: &ConfigContext) -> Result<bool, String> {
    let (original, missing) = match files.read(&file.path, MAX_CONFIG_FILE_BYTES).await {
        Ok(bytes) => (String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_owned())?, false),
        Err(FilesError::NotFound { .. }) => (String::new(), true),
        Err(e) => return Err(e.to_string()),
    };
    let patched = patch_off_thread(file, original, ctx).await.map_err(|reason| {
        if missing { format!("it does not exist, and creating it failed: {reason}") } else { reason }
    })?;
    let Some(patched) = patched else { return Ok(false) };
    files.write(&file.path, patched.into_bytes()).await.map_err(|e| e.to_string())?;
    Ok(true)
}

/// Prepares starts from eggs: patches config files, renders the startup command.
#[derive(Clone, Debug, Default)]
pub struct EggPreparer {
    timezone: Option<String>,
    node_config: BTreeMap<String, String>,
    files: FilesConfig,
    disk: Option<std::sync::Arc<dyn DiskCheck>>,
    templates: Option<std::sync::Arc<dyn crate::TemplateLayers>>,
}

/// What refuses the start of a server over its disk limit, called before every start (the
/// reference daemon measures through its file managers, with a per-node budget).
#[async_trait]
pub trait DiskCheck: Send + Sync + std::fmt::Debug {
    /// `Ok` when `spec`'s server, whose files are in `data_dir`, may start; otherwise the
    /// error the start fails with ([`AgentError::OverDiskQuota`], or
    /// [`AgentError::Prepare`] when the usage cannot be measured).
    async fn check(&self, spec: &ServerSpec, data_dir: &Path) -> Result<(), AgentError>;
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
    pub fn with_file_owner(mut self, owner: Option<nexus_files::FileOwner>) -> Self {
        self.files.owner = owner;
        self
    }

    /// Applies specs' template layers after their install scripts through `layers`.
    #[must_use]
    pub fn with_templates(mut self, layers: std::sync::Arc<dyn crate::TemplateLayers>) -> Self {
        self.templates = Some(layers);
        self
    }

    /// Checks disk usage with `check` before every start.
    #[must_use]
    pub fn with_disk_check(mut self, check: std::sync::Arc<dyn DiskCheck>) -> Self {
        self.disk = Some(check);
        self
    }

    /// Patches the spec's config files in `data_dir`. As with Wings, a file that cannot be
    /// patched (unreadable, not text, malformed, hostile, not writable) does not stop the start:
    /// it is left as it is and the returned notices say why (shown on the server's console);
    /// the other files are still patched. A missing file is patched as an empty one and
    /// created when that gives something (Wings creates it too): a first start writes the
    /// allocated port into a `server.properties` the game has not written yet.
    pub async fn patch_config_files(&self, spec: &ServerSpec, data_dir: &Path) -> Result<ConfigOutcome, AgentError> {
        let mut outcome = ConfigOutcome::default();
        if spec.config_files.is_empty() {
            return Ok(outcome);
        }
        let files = ServerFiles::open(data_dir, self.files.clone())
            .await
            .map_err(|e| prepare_error(format!("open data directory: {e}")))?;
        let ctx = ConfigContext::new(primary_address(spec), spec.limits.memory_mb)
            .with_environment(spec.environment.clone())
            .with_node_config(self.node_config.clone());
        for file in &spec.config_files {
            match patch_one(&files, file, &ctx).await {
                Ok(true) => {
                    outcome.changed += 1;
                    tracing::debug!(server = %spec.id, file = %file.path, parser = file.parser.as_str(), "config file patched");
                }
                Ok(false) => {}
                Err(reason) => {
                    tracing::warn!(server = %spec.id, file = %file.path, %reason, "config file not patched");
                    outcome.notices.push(format!("config file {} was not updated: {reason}", file.path));
                }
            }
        }
        Ok(outcome)
    }

    /// Renders the startup command and environment of `spec`.
    pub fn render(&self, spec: &ServerSpec) -> Result<PreparedStart, AgentError> {
        let rendered = self.render_startup(spec).map_err(|e| prepare_error(format!("startup command: {e}")))?;
        if !rendered.unresolved.is_empty() {
            tracing::warn!(server = %spec.id, unresolved = ?rendered.unresolved, "startup placeholders name no variable; left as references for the image to expand");
        }
        Ok(PreparedStart {
            command: vec!["/bin/sh".into(), "-c".into(), SHELL_WRAPPER.into()],
            env: rendered.env.into_iter().collect(),
            notices: Vec::new(),
        })
    }
}

impl EggPreparer {
    /// The startup of `spec` as [`render`](Self::render) renders it, or why it cannot be
    /// (the API checks a new spec with it, before accepting it).
    pub fn render_startup(&self, spec: &ServerSpec) -> Result<RenderedStartup, StartupError> {
        render_spec_startup(spec, self.timezone.as_deref())
    }
}

#[async_trait]
impl StartPreparer for EggPreparer {
    async fn prepare(&self, spec: &ServerSpec, data_dir: &Path) -> Result<PreparedStart, AgentError> {
        if let Some(disk) = &self.disk {
            disk.check(spec, data_dir).await?;
        }
        let config = self.patch_config_files(spec, data_dir).await?;
        let mut prepared = self.render(spec)?;
        prepared.notices = config.notices;
        Ok(prepared)
    }

    /// Install scripts get the rendered environment; config files are left alone (the install
    /// usually creates them, and patching belongs to the start).
    async fn install_env(&self, spec: &ServerSpec, _data_dir: &Path) -> Result<BTreeMap<String, String>, AgentError> {
        Ok(self.render(spec)?.env)
    }

    async fn apply_templates(
        &self,
        spec: &ServerSpec,
        data_dir: &Path,
        env: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, AgentError> {
        match &self.templates {
            Some(layers) if !spec.templates.is_empty() => {
                layers.apply(spec, data_dir, env).await.map_err(AgentError::Prepare)
            }
            _ => crate::prepare::no_template_store(spec),
        }
    }
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
            location: None,
            allocation_limit: None,
            templates: Vec::new(),
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
    async fn patches_existing_files_and_creates_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("server.properties"), "# comment\nserver-port=1\nmotd=old\n").unwrap();
        let spec = spec(vec![properties("server.properties"), properties("other.properties")]);
        let outcome = EggPreparer::default().patch_config_files(&spec, dir.path()).await.unwrap();
        assert_eq!(outcome, ConfigOutcome { changed: 2, notices: vec![] });
        let text = std::fs::read_to_string(dir.path().join("server.properties")).unwrap();
        assert_eq!(text, "# comment\nserver-port=25565\nmotd=it's $(rm -rf /)\n");
        // As Wings: a file the game has not written yet is created with the egg's values.
        let created = std::fs::read_to_string(dir.path().join("other.properties")).unwrap();
        assert_eq!(created, "server-port=25565\nmotd=it's $(rm -rf /)\n");
        // Second run: nothing left to change.
        assert_eq!(EggPreparer::default().patch_config_files(&spec, dir.path()).await.unwrap().changed, 0);
    }

    /// As Wings: a file that cannot be patched is left alone with a notice, the others are
    /// patched and the start goes on.
    #[tokio::test]
    async fn files_that_cannot_be_patched_are_notices_not_failures() {
        let dir = tempfile::tempdir().unwrap();
        let json = |path: &str| ConfigFile { parser: ConfigParser::Json, ..properties(path) };
        std::fs::write(dir.path().join("conf.json"), "{ not json").unwrap();
        std::fs::write(dir.path().join("empty.json"), "").unwrap();
        let files = vec![
            json("conf.json"),
            json("empty.json"),
            properties("../outside.properties"),
            properties("server.properties"),
        ];
        let outcome = EggPreparer::default().patch_config_files(&spec(files), dir.path()).await.unwrap();
        assert_eq!(outcome.changed, 1, "{outcome:?}");
        assert_eq!(outcome.notices.len(), 3, "{outcome:?}");
        for (notice, path) in outcome.notices.iter().zip(["conf.json", "empty.json", "../outside.properties"]) {
            assert!(notice.contains(path), "{notice}");
        }
        assert_eq!(std::fs::read_to_string(dir.path().join("conf.json")).unwrap(), "{ not json");
        assert!(dir.path().join("server.properties").exists());
    }
}
