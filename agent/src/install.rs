//! Install and reinstall through [`Runtime::run_install`](nexus_core::runtime::Runtime::run_install).
//!
//! The log is written to `<data_root>/.install-logs/<server>.log` (outside every server's
//! data directory, so users cannot edit it; `0600` in a `0700` directory, because scripts echo
//! secrets) and kept across daemon restarts. A script runs at most
//! [`AgentConfig::install_timeout`](super::AgentConfig::install_timeout); a kill or removal
//! of the server cancels it. Either way its container is removed and the install fails. Console
//! subscribers get the output as the script prints it, as [`ConsoleEvent::Install`] lines
//! (through a channel of [`INSTALL_EVENT_LINES`], held to the console's line rate like the
//! server's own output: lines a slow console cannot take or past the rate are left out of the
//! live view, with a notice, never out of the file), all of them before the state changes.

use super::console::ConsoleEvent;
use super::error::AgentError;
use super::node::NodeAgent;
use super::server::{OpGuard, Operation, Server};
use nexus_core::ids::ServerId;
use nexus_core::lifecycle::Trigger;
use nexus_core::runtime::{InstallOutcome, InstallSpec, LiveOutput, Runtime};
use nexus_core::transport::ServerSpec;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::Instrument;

/// Directory under the data root holding install logs.
pub const INSTALL_LOG_DIR: &str = ".install-logs";
/// Install output lines waiting for the console at most (see the module docs).
pub const INSTALL_EVENT_LINES: usize = 1000;
/// Interpreter used when the egg names none.
const DEFAULT_ENTRYPOINT: &str = "sh";

impl NodeAgent {
    /// Runs (or re-runs) the install script. Returns once it started (state `Installing`);
    /// it ends in `Installed` or `InstallFailed`, with the log in
    /// [`install_log`](Self::install_log). The server must not be running. While it runs,
    /// power actions and other installs on the server are refused with
    /// [`AgentError::Busy`].
    pub async fn install(&self, server: ServerId) -> Result<(), AgentError> {
        self.check_open()?;
        self.check_backlog()?;
        let srv = self.server(server)?;
        Self::bump_intent(&srv);
        let span = tracing::info_span!("server", server = %server);
        async move {
            let op = srv.acquire(Operation::Install).await?;
            self.begin_install(&srv, op).await
        }
        .instrument(span)
        .await
    }

    /// The log of the last install (empty if none ran yet).
    pub async fn install_log(&self, server: ServerId) -> Result<String, AgentError> {
        self.server(server)?;
        match tokio::fs::read_to_string(self.install_log_path(server)).await {
            Ok(log) => Ok(log),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn install_log_path(&self, server: ServerId) -> PathBuf {
        self.config.data_root.join(INSTALL_LOG_DIR).join(format!("{server}.log"))
    }

    /// `InstallStarted`, then the script in a background task that keeps `op` until it ends.
    pub(super) async fn begin_install(&self, srv: &Arc<Server>, op: OpGuard) -> Result<(), AgentError> {
        let spec = {
            let mut i = srv.inner();
            self.transition(srv, &mut i, Trigger::InstallStarted)?;
            i.spec.clone()
        };
        self.persist().await;
        srv.hub.notice("installing the server");
        let runtime = self.runtime.clone();
        let preparer = self.preparer.clone();
        let data_dir = self.data_dir(srv.id);
        let log_path = self.install_log_path(srv.id);
        let me = self.me.clone();
        let server = srv.clone();
        let cancelled = srv.install_cancelled();
        let timeout = self.config.install_timeout;
        let isolation = self.config.install_isolation.clone();
        let owner = self.config.isolation.user;
        let limits = self.effective_limits(&spec);
        let lines_per_second = self.config.console_lines_per_second;
        self.spawn_for(srv, async move {
            let op = op;
            // Run without a strong reference to the agent: a dropped agent aborts this task,
            // and the runtime removes the install container when the future is dropped (so
            // does the timeout and a cancellation, which drop it too).
            // The script's lines reach the console as it prints them (as with Wings), through
            // a bounded channel the install never waits on.
            // Held to the console's line rate, like the server's own output: a script printing
            // without end must not flood every console for the whole install timeout.
            let (live, mut printed) = LiveOutput::channel(INSTALL_EVENT_LINES);
            let forwarder = {
                let server = server.clone();
                tokio::spawn(async move {
                    let mut throttle = super::throttle::Throttle::per_second(lines_per_second);
                    while let Some(line) = printed.recv().await {
                        if throttle.admit_reporting(tokio::time::Instant::now(), |n| server.hub.notice(n)) {
                            server.hub.publish(ConsoleEvent::Install(line.text));
                        }
                    }
                    throttle.finish_reporting(|n| server.hub.notice(n));
                })
            };
            let run = async {
                // Moved in: the forwarder ends when the last sender is gone.
                let live = live;
                super::data_dir::ensure_server_dir(&data_dir, owner)?;
                let env = preparer.install_env(&spec, &data_dir).await?;
                let install = install_spec(&spec, env.clone(), &data_dir, limits, isolation);
                let mut outcome = run_script(runtime.as_ref(), install, live.clone()).await?;
                // Template layers go over what the script made, once it succeeded.
                if outcome.exit_code == 0 && !spec.templates.is_empty() {
                    let said = preparer.apply_templates(&spec, &data_dir, &env).await?;
                    for line in said {
                        live.offer(&nexus_core::console::ConsoleLine {
                            stream: nexus_core::console::ConsoleStream::Stdout,
                            text: line.clone(),
                        });
                        outcome.log.push_str(&line);
                        outcome.log.push('\n');
                    }
                }
                Ok::<_, AgentError>(outcome)
            };
            let outcome = tokio::select! {
                outcome = tokio::time::timeout(timeout, run) => outcome.unwrap_or(Err(AgentError::InstallTimeout(timeout))),
                _ = cancelled => Err(AgentError::InstallCancelled),
            };
            // Every line the script printed is published before the state changes.
            let _ = forwarder.await;
            let (mut succeeded, mut log, mut said) = match outcome {
                Ok(o) if o.exit_code == 0 => (true, o.log, Vec::new()),
                Ok(o) => (false, o.log, vec![format!("install script exited with code {}", o.exit_code)]),
                Err(error) => (false, String::new(), vec![format!("the install did not complete: {error}")]),
            };
            if let Err(error) = clean_up_install(runtime.as_ref(), spec.id, &data_dir, owner).await {
                said.push(error);
                succeeded = false;
            }
            for line in said {
                if !log.is_empty() && !log.ends_with('\n') {
                    log.push('\n');
                }
                log.push_str(&line);
                log.push('\n');
                server.hub.publish(ConsoleEvent::Install(line));
            }
            if let Err(error) = write_log(&log_path, &log).await {
                tracing::error!(%error, path = %log_path.display(), "writing the install log failed");
            }
            let Some(agent) = me.upgrade() else { return };
            // From here on the install is over: a request reacting to the event below waits
            // for the lock (a moment) instead of being refused as busy.
            op.relabel(Operation::Update);
            {
                let mut i = server.inner();
                let trigger = if succeeded { Trigger::InstallSucceeded } else { Trigger::InstallFailed };
                let _ = agent.transition(&server, &mut i, trigger);
            }
            tracing::info!(succeeded, "install finished");
            server.hub.notice(if succeeded { "install finished" } else { "install failed; see the install log" });
            agent.persist().await;
            drop(op);
        });
        Ok(())
    }
}

fn install_spec(
    spec: &ServerSpec,
    env: std::collections::BTreeMap<String, String>,
    data_dir: &Path,
    limits: nexus_core::model::ServerLimits,
    isolation: nexus_core::runtime::Isolation,
) -> InstallSpec {
    let image = if spec.install.container.is_empty() { spec.image.clone() } else { spec.install.container.clone() };
    let entrypoint = if spec.install.entrypoint.is_empty() {
        DEFAULT_ENTRYPOINT.to_owned()
    } else {
        spec.install.entrypoint.clone()
    };
    InstallSpec {
        server: spec.id,
        image,
        entrypoint,
        script: spec.install.script.clone(),
        env,
        data_dir: data_dir.to_path_buf(),
        limits,
        isolation,
    }
}

async fn run_script(
    runtime: &dyn Runtime,
    install: InstallSpec,
    live: LiveOutput,
) -> Result<InstallOutcome, AgentError> {
    if install.script.trim().is_empty() {
        let said = "no install script; nothing to run";
        live.offer(&nexus_core::console::ConsoleLine {
            stream: nexus_core::console::ConsoleStream::Stdout,
            text: said.into(),
        });
        return Ok(InstallOutcome { exit_code: 0, log: format!("{said}\n") });
    }
    Ok(runtime.run_install(&install, Some(live)).await?)
}

/// Mode of install logs: they echo secrets (database passwords, API keys).
pub const INSTALL_LOG_MODE: u32 = 0o600;

async fn write_log(path: &Path, log: &str) -> std::io::Result<()> {
    let path = path.to_path_buf();
    let log = log.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        if let Some(dir) = path.parent() {
            super::data_dir::ensure_private_dir(dir)?;
        }
        // Written beside and renamed over, so a reader never sees half a log; created private
        // so no moment exists where others could read it.
        let tmp = path.with_extension("log.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(INSTALL_LOG_MODE).open(&tmp)?;
        file.write_all(log.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// What follows every install, finished or not (and an install a restart of the agent
/// interrupted): its container is removed, so nothing of it still runs, then whatever the
/// script left (it may have run as root) is handed to the server's user, without set-id bits
/// or device nodes, before anything else can use the files. An error says which step failed;
/// the files must then not be used as they are.
pub(super) async fn clean_up_install(
    runtime: &dyn Runtime,
    server: ServerId,
    data_dir: &Path,
    owner: Option<nexus_core::runtime::ContainerUser>,
) -> Result<(), String> {
    if let Err(error) = runtime.remove_install(server).await {
        tracing::error!(%error, "removing the install container failed");
        return Err(format!("removing the install container failed: {error}"));
    }
    let dir = data_dir.to_owned();
    let handed = tokio::task::spawn_blocking(move || super::data_dir::hand_over(&dir, owner))
        .await
        .unwrap_or_else(|join| Err(std::io::Error::other(join.to_string())));
    match handed {
        Ok(done) => {
            tracing::debug!(?done, "installed files handed to the server user");
            Ok(())
        }
        Err(error) => {
            tracing::error!(%error, "handing the installed files to the server user failed");
            Err(format!("handing the installed files to the server user failed: {error}"))
        }
    }
}
