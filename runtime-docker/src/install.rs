//! Egg installation in a throwaway container.

use crate::console::{self, Streams};
use crate::error::{About, engine_error, is_not_found};
use crate::spec;
use bollard::Docker;
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use futures::StreamExt;
use nexus_core::runtime::{InstallOutcome, InstallSpec, RuntimeError};
use std::path::{Path, PathBuf};

/// Most install output kept in [`InstallOutcome::log`]; beyond it the oldest lines are
/// dropped (an install that loops printing must not exhaust the daemon's memory).
pub const MAX_INSTALL_LOG_BYTES: usize = 4 * 1024 * 1024;

/// Name of the install container of a server; one at a time per server.
pub(crate) fn install_container_name(spec: &InstallSpec) -> String {
    format!("nexus-install-{}", spec.server)
}

/// Runs `spec` to completion and removes its container, whatever happened.
pub(crate) async fn run(
    docker: &Docker,
    scripts_root: &Path,
    spec: &InstallSpec,
) -> Result<InstallOutcome, RuntimeError> {
    let name = install_container_name(spec);
    // A container left by a daemon that died mid-install holds the name; it is ours and dead.
    remove(docker, &name).await?;
    let script_dir = ScriptDir::write(scripts_root, spec)?;
    let body = spec::install_container(spec, script_dir.path())?;
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    let created = docker
        .create_container(Some(options), body)
        .await
        .map_err(|e| engine_error(e, About::Create { image: &spec.image }))?;
    for warning in &created.warnings {
        tracing::warn!(server = %spec.server, %warning, "engine warning creating install container");
    }
    // Removes the container if this future is dropped half-way (a caller's timeout).
    let mut guard = RemoveOnDrop { docker: Some(docker.clone()), name: name.clone() };
    tracing::info!(server = %spec.server, image = %spec.image, "running install script");
    let outcome = execute(docker, &name).await;
    let removed = remove(docker, &name).await;
    guard.docker = None;
    drop(script_dir);
    let outcome = outcome?;
    if let Err(error) = removed {
        tracing::warn!(server = %spec.server, %error, "install container not removed; the next install removes it");
    }
    tracing::info!(server = %spec.server, exit_code = outcome.exit_code, "install script finished");
    Ok(outcome)
}

/// Attaches the output (before start, so the first line is kept), starts, reads the log to
/// the end and returns the exit code.
async fn execute(docker: &Docker, name: &str) -> Result<InstallOutcome, RuntimeError> {
    let attached = console::attach(docker, name, Streams { stdin: false, output: true }).await?;
    docker.start_container(name, None).await.map_err(|e| engine_error(e, About::Container(name)))?;
    let mut lines = console::lines(attached.output, name.to_owned());
    let mut log = Log::default();
    while let Some(line) = lines.next().await {
        log.push(&line?.text);
    }
    let exit = crate::wait(docker, name).await?;
    Ok(InstallOutcome { exit_code: exit.code, log: log.into_text() })
}

/// Force-removes container `name` (and its anonymous volumes); absent is fine.
async fn remove(docker: &Docker, name: &str) -> Result<(), RuntimeError> {
    let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
    match docker.remove_container(name, Some(options)).await {
        Err(e) if !is_not_found(&e) => Err(engine_error(e, About::Container(name))),
        _ => Ok(()),
    }
}

/// The combined log, trimmed from the front past [`MAX_INSTALL_LOG_BYTES`].
#[derive(Default)]
struct Log {
    text: String,
    dropped: bool,
}

impl Log {
    fn push(&mut self, line: &str) {
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

    fn into_text(self) -> String {
        if self.dropped { format!("[earlier install output dropped]\n{}", self.text) } else { self.text }
    }
}

/// The host directory holding `install.sh`, mounted read-only at `/mnt/install`; removed on
/// drop.
struct ScriptDir(PathBuf);

impl ScriptDir {
    fn write(root: &Path, spec: &InstallSpec) -> Result<Self, RuntimeError> {
        let dir = root.join(format!("{}-{}", spec.server, uuid_suffix()));
        std::fs::create_dir_all(&dir)?;
        let this = Self(dir);
        std::fs::write(this.0.join("install.sh"), spec.script.as_bytes())?;
        Ok(this)
    }

    fn path(&self) -> &Path {
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

/// A random suffix so two installs of one server (one stuck, one new) never share a directory.
fn uuid_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

/// Removes the install container in the background if the install future is dropped.
struct RemoveOnDrop {
    docker: Option<Docker>,
    name: String,
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let Some(docker) = self.docker.take() else { return };
        let name = std::mem::take(&mut self.name);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(error) = remove(&docker, &name).await {
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
        let mut log = Log::default();
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
}
