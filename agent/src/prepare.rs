//! [`StartPreparer`]: what turns a [`ServerSpec`] into the process a container runs.
//!
//! [`EggPreparer`](crate::EggPreparer) renders the startup and patches config files with
//! `nexus-eggs`, as Wings does; [`ShellPreparer`] is the trivial version.

use super::error::AgentError;
use async_trait::async_trait;
use nexus_core::transport::ServerSpec;
use std::collections::BTreeMap;
use std::path::Path;

/// The command and environment of one start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreparedStart {
    /// Command run in the container; empty keeps the image's default.
    pub command: Vec<String>,
    /// Environment of the process (and of install scripts).
    pub env: BTreeMap<String, String>,
    /// What went wrong without stopping the start (a config file that could not be patched,
    /// as Wings logs and goes on), shown on the server's console before it starts.
    pub notices: Vec<String>,
}

/// Turns a [`ServerSpec`] into what the container runs.
///
/// # Contract
///
/// `prepare` runs before every start, while nothing runs in `data_dir`; it may change files
/// there (config patching) and must be bounded in time, since the start waits for it. An
/// error fails the start with that error; what should not stop a start goes into
/// [`PreparedStart::notices`]. Values must reach the process through the environment, never
/// spliced into the command text.
///
/// # Example
///
/// ```
/// use async_trait::async_trait;
/// use nexus_agent::{AgentError, PreparedStart, StartPreparer};
/// use nexus_core::transport::ServerSpec;
/// use std::path::Path;
///
/// /// Runs every server's startup under `nice`.
/// struct Nice;
///
/// #[async_trait]
/// impl StartPreparer for Nice {
///     async fn prepare(&self, spec: &ServerSpec, _data_dir: &Path) -> Result<PreparedStart, AgentError> {
///         let mut env = spec.environment.clone();
///         env.insert("STARTUP".into(), spec.startup.clone());
///         let command = vec!["nice".into(), "-n".into(), "10".into(), "sh".into(), "-c".into(), r#"exec sh -c "$STARTUP""#.into()];
///         Ok(PreparedStart { command, env, notices: Vec::new() })
///     }
/// }
/// ```
#[async_trait]
pub trait StartPreparer: Send + Sync {
    /// Called before every start, after the data directory `data_dir` exists: renders the
    /// startup command and environment, patches config files.
    async fn prepare(&self, spec: &ServerSpec, data_dir: &Path) -> Result<PreparedStart, AgentError>;

    /// The environment of an install script. Defaults to [`prepare`](Self::prepare)'s; an
    /// implementation whose `prepare` has side effects (config patching) should override it.
    async fn install_env(&self, spec: &ServerSpec, data_dir: &Path) -> Result<BTreeMap<String, String>, AgentError> {
        Ok(self.prepare(spec, data_dir).await?.env)
    }

    /// Writes the spec's template layers ([`ServerSpec::templates`]) into `data_dir`, after
    /// the install script succeeded, with the install environment `env` for variable
    /// replacement; returns lines for the install log. The default refuses a spec that
    /// lists layers (this preparer has nowhere to fetch them from) and does nothing
    /// otherwise; [`EggPreparer`](crate::EggPreparer) applies them through its
    /// [`TemplateLayers`].
    async fn apply_templates(
        &self,
        spec: &ServerSpec,
        data_dir: &Path,
        env: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, AgentError> {
        let _ = (data_dir, env);
        no_template_store(spec)
    }
}

/// What a preparer without a template store does with a spec's layers: nothing when it lists
/// none, else it refuses the spec.
pub(crate) fn no_template_store(spec: &ServerSpec) -> Result<Vec<String>, AgentError> {
    match spec.templates.is_empty() {
        true => Ok(Vec::new()),
        false => Err(AgentError::Prepare("this node has no template store configured".into())),
    }
}

/// What fetches and merges template layers into a server's directory (the daemon's
/// `nexus-templates` cache); see [`StartPreparer::apply_templates`].
///
/// # Contract
///
/// `apply` writes the merged layers of `spec.templates` into `data_dir` and never outside
/// it (the directory is the tenant's: it may hold symlinks), within the server's disk
/// quota; it fails with a message for the install log (which layer, which file and line)
/// rather than write a partial or unverified file, and it returns in bounded time.
#[async_trait]
pub trait TemplateLayers: Send + Sync + std::fmt::Debug {
    /// Applies `spec.templates` to `data_dir`, replacing variables from `env`; returns
    /// lines for the install log.
    async fn apply(
        &self,
        spec: &ServerSpec,
        data_dir: &Path,
        env: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, String>;
}

/// Runs the spec's `startup` unchanged under `sh -c`, with the spec's environment. No
/// `{{VAR}}` rendering and no config files: for tests and for embedders whose startup already
/// is a shell command.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShellPreparer;

#[async_trait]
impl StartPreparer for ShellPreparer {
    async fn prepare(&self, spec: &ServerSpec, _data_dir: &Path) -> Result<PreparedStart, AgentError> {
        Ok(PreparedStart {
            command: vec!["sh".into(), "-c".into(), spec.startup.clone()],
            env: spec.environment.clone(),
            notices: Vec::new(),
        })
    }
}
