//! Egg installation in a throwaway container, written once over the five engine calls it
//! needs ([`InstallEngine`]).
//!
//! The install container is named `nexus-install-<uuid>` ([`install_container_name`]), sees
//! the script directory read-only at [`INSTALL_SCRIPT_DIR`] and the data directory at
//! [`INSTALL_SERVER_DIR`], runs `<entrypoint> /mnt/install/install.sh`, carries
//! [`SERVER_LABEL`](nexus_core::runtime::SERVER_LABEL) and [`INSTALL_LABEL`] (never
//! [`MANAGED_LABEL`](nexus_core::runtime::MANAGED_LABEL)), and is removed whatever happens, also
//! when the install future is dropped half-way.

use super::spec::check_data_dir;
use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use nexus_core::console::ConsoleLine;
use nexus_core::ids::ServerId;
use nexus_core::runtime::{ExitStatus, InstallOutcome, InstallSpec, LiveOutput, RuntimeError};
use std::path::{Path, PathBuf};

/// Label on install containers (which carry `SERVER_LABEL` too, but not `MANAGED_LABEL`).
pub const INSTALL_LABEL: &str = "io.nexus.install";
/// Where an install container sees the server's data directory (also its working directory).
pub const INSTALL_SERVER_DIR: &str = "/mnt/server";
/// Where an install container sees its script directory (read-only).
pub const INSTALL_SCRIPT_DIR: &str = "/mnt/install";
/// The script's path inside an install container.
pub const INSTALL_SCRIPT: &str = "/mnt/install/install.sh";

/// Most install output kept in [`InstallOutcome::log`]; beyond it the oldest lines are
/// dropped (an install that loops printing must not exhaust the daemon's memory).
pub const MAX_INSTALL_LOG_BYTES: usize = 4 * 1024 * 1024;

/// Name of the install container of a server; one at a time per server.
pub fn install_container_name(server: ServerId) -> String {
    format!("nexus-install-{server}")
}

/// What [`run_install`] needs from an engine, with errors already mapped. Cheap to clone
/// (a client handle): a clone removes the container in the background when an install is
/// abandoned.
#[async_trait]
pub trait InstallEngine: Clone + Send + Sync + 'static {
    /// Force-removes container `name`; a missing one is fine.
    async fn remove(&self, name: &str) -> Result<(), RuntimeError>;

    /// Creates (not starts) the install container `name` for `spec`, with `script_dir` as its
    /// script directory. A missing image is [`RuntimeError::ImageNotFound`].
    async fn create(&self, name: &str, spec: &InstallSpec, script_dir: &Path) -> Result<(), RuntimeError>;

    /// Attaches to the output of the created container, so that nothing it prints once
    /// started is missed; the lines end when the process exits.
    async fn output(&self, name: &str) -> Result<BoxStream<'static, Result<ConsoleLine, RuntimeError>>, RuntimeError>;

    /// Starts the container.
    async fn start(&self, name: &str) -> Result<(), RuntimeError>;

    /// Waits until the process is not running and returns how it ended.
    async fn wait(&self, name: &str) -> Result<ExitStatus, RuntimeError>;
}

/// Longest [`remove_until_gone`] waits for another removal of the same container.
pub const REMOVE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Force-removes the install container `name` and returns once the engine no longer knows
/// it. A removal already under way (the background removal of a dropped install) answers
/// "in progress" (Docker: a conflict; Podman: success before the container is gone), so the
/// container is asked for until it is gone, for at most [`REMOVE_WAIT`].
pub async fn remove_until_gone<E: InstallEngine>(engine: &E, name: &str) -> Result<(), RuntimeError> {
    let deadline = tokio::time::Instant::now() + REMOVE_WAIT;
    loop {
        match engine.remove(name).await {
            Ok(()) => match tokio::time::timeout_at(deadline, engine.wait(name)).await {
                Ok(Err(RuntimeError::ContainerNotFound(_))) => return Ok(()),
                Ok(_) => {}
                Err(_) => {
                    return Err(RuntimeError::Conflict(format!("install container {name} is still being removed")));
                }
            },
            Err(RuntimeError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(RuntimeError::Conflict(format!("install container {name} is still being removed")));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Runs `spec` to completion in a throwaway container and removes it, whatever happened. The
/// script is staged in a fresh directory under `scripts_root`, which the engine must see at
/// the same path. A non-zero exit is an `Ok` outcome with that code.
pub async fn run_install<E: InstallEngine>(
    engine: &E,
    scripts_root: &Path,
    spec: &InstallSpec,
    live: Option<LiveOutput>,
) -> Result<InstallOutcome, RuntimeError> {
    check_data_dir(&spec.data_dir)?;
    if spec.entrypoint.trim().is_empty() {
        return Err(RuntimeError::InvalidSpec("install entrypoint is empty".into()));
    }
    let name = install_container_name(spec.server);
    // A container left by a daemon that died mid-install holds the name; it is ours and dead.
    engine.remove(&name).await?;
    let script_dir = ScriptDir::write(scripts_root, spec)?;
    engine.create(&name, spec, script_dir.path()).await?;
    // Removes the container if this future is dropped half-way (a caller's timeout).
    let mut guard = RemoveOnDrop { engine: Some(engine.clone()), name: name.clone() };
    tracing::info!(server = %spec.server, image = %spec.image, "running install script");
    let outcome = execute(engine, &name, live).await;
    let removed = engine.remove(&name).await;
    guard.engine = None;
    drop(script_dir);
    let outcome = outcome?;
    if let Err(error) = removed {
        tracing::warn!(server = %spec.server, %error, "install container not removed; the next install removes it");
    }
    tracing::info!(server = %spec.server, exit_code = outcome.exit_code, "install script finished");
    Ok(outcome)
}

/// Attaches the output (before start, so the first line is kept), starts, reads the log to
/// the end (offering each line to `live`) and returns the exit code.
async fn execute<E: InstallEngine>(
    engine: &E,
    name: &str,
    live: Option<LiveOutput>,
) -> Result<InstallOutcome, RuntimeError> {
    let mut lines = engine.output(name).await?;
    engine.start(name).await?;
    let mut log = InstallLog::default();
    while let Some(line) = lines.next().await {
        let line = line?;
        if let Some(live) = &live {
            live.offer(&line);
        }
        log.push(&line.text);
    }
    let exit = engine.wait(name).await?;
    Ok(InstallOutcome { exit_code: exit.code, log: log.into_text() })
}

/// The combined log, trimmed from the front past [`MAX_INSTALL_LOG_BYTES`].
#[derive(Debug, Default)]
pub struct InstallLog {
    text: String,
    dropped: bool,
}

impl InstallLog {
    /// Appends one line.
    pub fn push(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
        if self.text.len() > MAX_INSTALL_LOG_BYTES {
            let mut cut = self.text.len() - MAX_INSTALL_LOG_BYTES;
            // Cut at the next line start so no line is kept half.
            cut = self.text[cut..].find('\n').map_or(self.text.len(), |i| cut + i + 1);
            self.text.drain(..cut);
            self.dropped = true;
        }
    }

    /// The log, with a note first if older lines were dropped.
    pub fn into_text(self) -> String {
        if self.dropped { format!("[earlier install output dropped]\n{}", self.text) } else { self.text }
    }
}

/// The host directory holding `install.sh`, mounted read-only at [`INSTALL_SCRIPT_DIR`];
/// removed on drop.
#[derive(Debug)]
pub struct ScriptDir(PathBuf);

impl ScriptDir {
    /// Writes the script of `spec` into a fresh directory under `root`. A random suffix keeps
    /// two installs of one server (one stuck, one new) apart.
    pub fn write(root: &Path, spec: &InstallSpec) -> Result<Self, RuntimeError> {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let dir = root.join(format!("{}-{}", spec.server, &suffix[..8]));
        std::fs::create_dir_all(&dir)?;
        let this = Self(dir);
        // As Wings: scripts pasted on Windows run, their CRLF line ends made LF.
        std::fs::write(this.0.join("install.sh"), spec.script.replace("\r\n", "\n").as_bytes())?;
        Ok(this)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScriptDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(dir = %self.0.display(), %error, "install script directory not removed");
        }
    }
}

/// Removes the install container in the background if the install future is dropped.
struct RemoveOnDrop<E: InstallEngine> {
    engine: Option<E>,
    name: String,
}

impl<E: InstallEngine> Drop for RemoveOnDrop<E> {
    fn drop(&mut self) {
        let Some(engine) = self.engine.take() else { return };
        let name = std::mem::take(&mut self.name);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(error) = engine.remove(&name).await {
                        tracing::warn!(container = %name, %error, "abandoned install container not removed");
                    }
                });
            }
            Err(_) => tracing::warn!(container = %name, "install abandoned outside a runtime; container left"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keeps_the_newest_whole_lines() {
        let mut log = InstallLog::default();
        let line = "x".repeat(1000);
        for _ in 0..(MAX_INSTALL_LOG_BYTES / 1000 + 10) {
            log.push(&line);
        }
        log.push("last");
        let text = log.into_text();
        assert!(text.starts_with("[earlier install output dropped]\n"));
        assert!(text.ends_with("last\n"));
        assert!(text.len() <= MAX_INSTALL_LOG_BYTES + 64);
        assert!(text.lines().skip(1).all(|l| l.len() == 1000 || l == "last"));
    }

    #[test]
    fn script_dir_is_written_and_removed() {
        let spec = InstallSpec {
            server: ServerId::new(),
            image: "img".into(),
            entrypoint: "ash".into(),
            script: "echo hi\n".into(),
            env: Default::default(),
            data_dir: std::env::temp_dir(),
            limits: Default::default(),
            isolation: nexus_core::runtime::Isolation::install(),
        };
        let root = std::env::temp_dir().join(format!("nexus-scripts-{}", uuid::Uuid::new_v4().simple()));
        let dir = ScriptDir::write(&root, &spec).expect("write");
        let path = dir.path().to_path_buf();
        assert_eq!(std::fs::read_to_string(path.join("install.sh")).expect("script"), "echo hi\n");
        drop(dir);
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(root);
    }
}
