//! Power actions and the background tasks of a running process: console reader (done
//! matching, throttle), exit watcher (crash detection, automatic restart), stats.
//!
//! Every `*_locked` function expects the caller to hold the server's operation lock.

use super::console::ConsoleEvent;
use super::done::DoneWatcher;
use super::error::AgentError;
use super::metrics::Counters;
use super::node::NodeAgent;
use super::outbox::Backoff;
use super::server::{Operation, Server, ServerInner};
use super::throttle::Throttle;
use chrono::Utc;
use futures::StreamExt;
use futures::stream::BoxStream;
use nexus_core::console::ConsoleLine;
use nexus_core::lifecycle::{CRASH_LOOP_WINDOW, LifecycleError, ServerState, Trigger, next_state};
use nexus_core::model::StopSignal;
use nexus_core::runtime::{ContainerId, ContainerSpec, ExitStatus, RuntimeError};
use nexus_core::transport::ServerSpec;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Label carrying the node id on every server container this agent creates.
pub const NODE_LABEL: &str = "io.nexus.node";

/// How long a kill waits for the process to be gone before returning.
const KILL_WAIT: Duration = Duration::from_secs(10);

impl NodeAgent {
    /// Starts the server unless it already runs.
    pub(super) async fn start_locked(&self, srv: &Arc<Server>) -> Result<(), AgentError> {
        let (spec, done, old, state) = {
            let i = srv.inner();
            (i.spec.clone(), i.done.clone(), i.container.clone(), i.lifecycle.state())
        };
        match state {
            ServerState::Starting | ServerState::Running => return Ok(()),
            ServerState::Suspended => return Err(AgentError::Suspended(srv.id)),
            _ if spec.suspended => return Err(AgentError::Suspended(srv.id)),
            _ => {}
        }
        if next_state(state, Trigger::Start).is_none() {
            return Err(LifecycleError::new(srv.id, state, Trigger::Start).into());
        }
        let launched = self.launch(srv, &spec, done, old).await;
        if let Err(error) = &launched {
            tracing::warn!(%error, "start failed");
            srv.hub.notice(format!("start failed: {error}"));
        }
        launched
    }

    /// Prepare → (remove the previous container) → create → attach → `Start` → start.
    async fn launch(
        &self,
        srv: &Arc<Server>,
        spec: &ServerSpec,
        done: DoneWatcher,
        old: Option<ContainerId>,
    ) -> Result<(), AgentError> {
        let data_dir = self.data_dir(srv.id);
        super::data_dir::ensure_server_dir(&data_dir, self.config.isolation.user)?;
        let prepared = self.preparer.prepare(spec, &data_dir).await?;
        for notice in &prepared.notices {
            srv.hub.notice(notice.clone());
        }
        // A fresh container per start, so spec changes (image, limits, ports) apply.
        if let Some(old) = old {
            self.runtime.destroy(&old).await?;
            srv.inner().container = None;
        }
        let container_spec = ContainerSpec {
            server: srv.id,
            image: spec.image.clone(),
            command: (!prepared.command.is_empty()).then_some(prepared.command),
            env: prepared.env,
            data_dir,
            limits: self.effective_limits(spec),
            ports: spec.allocations.clone(),
            labels: BTreeMap::from([(NODE_LABEL.to_owned(), self.config.node.to_string())]),
            isolation: self.config.isolation.clone(),
            tty: self.config.tty,
        };
        let id = match self.runtime.create(&container_spec).await {
            Ok(id) => id,
            Err(RuntimeError::Conflict(reason)) => {
                // A container of this server the saved state does not name: the daemon died
                // between creating it and saving. It is ours; replace it.
                let leftovers: Vec<_> =
                    self.runtime.list_managed().await?.into_iter().filter(|c| c.server == srv.id).collect();
                if leftovers.is_empty() {
                    return Err(RuntimeError::Conflict(reason).into());
                }
                for leftover in leftovers {
                    tracing::warn!(container = %leftover.id, "removing an unrecorded container of this server");
                    self.runtime.destroy(&leftover.id).await?;
                }
                self.runtime.create(&container_spec).await?
            }
            Err(e) => return Err(e.into()),
        };
        // Saved before anything else happens, so a crash from here on leaves no orphan.
        srv.inner().container = Some(id.clone());
        self.persist().await;
        // Attached before the start, so the first line (maybe the done line) is not missed.
        let io = self.runtime.attach(&id).await?;
        let run = {
            let mut i = srv.inner();
            i.run += 1;
            i.run
        };
        *srv.input.lock().await = Some(io.input);
        let watch = !done.is_empty();
        self.spawn_reader(srv, run, io.output, done);
        {
            let mut i = srv.inner();
            self.transition(srv, &mut i, Trigger::Start)?;
        }
        self.persist().await;
        if let Err(error) = self.runtime.start(&id).await {
            {
                // No edge leads back; `Kill` lands on `Stopped`, which is what the server is.
                let mut i = srv.inner();
                if i.lifecycle.state() == ServerState::Starting {
                    let _ = self.transition(srv, &mut i, Trigger::Kill);
                }
            }
            self.persist().await;
            return Err(error.into());
        }
        self.spawn_wait(srv, run, id.clone());
        self.spawn_stats(srv, id);
        if !watch {
            // No done line to wait for: running as soon as the process is.
            self.mark_ready(srv, run).await;
        }
        Ok(())
    }

    /// Graceful stop (egg stop method, killed after the timeout); nothing if not running.
    pub(super) async fn stop_locked(&self, srv: &Arc<Server>) -> Result<(), AgentError> {
        let (container, method) = {
            let mut i = srv.inner();
            match i.lifecycle.state() {
                ServerState::Starting | ServerState::Running => {
                    self.transition(srv, &mut i, Trigger::Stop)?;
                }
                // A stop interrupted by a daemon restart, or one whose engine call failed.
                ServerState::Stopping => {}
                _ => return Ok(()),
            }
            (i.container.clone(), i.spec.stop.clone())
        };
        self.persist().await;
        if let Some(id) = container {
            let timeout = self.config.stop_timeout;
            match self.runtime.stop(&id, &method, timeout).await {
                Ok(outcome) if !outcome.graceful => {
                    tracing::warn!(?timeout, "the server ignored the stop and was killed");
                    srv.hub.notice(format!("the server did not stop within {timeout:?} and was killed"));
                }
                Ok(_) | Err(RuntimeError::ContainerNotFound(_)) => {}
                Err(error) => {
                    // Stays `Stopping`; the exit watcher settles it when the process exits,
                    // and a kill is always possible.
                    srv.hub.notice(format!("stop failed: {error}"));
                    return Err(error.into());
                }
            }
        }
        // The exit watcher may have done this already; whoever comes second finds `Stopped`.
        let settled = {
            let mut i = srv.inner();
            i.lifecycle.state() == ServerState::Stopping && self.transition(srv, &mut i, Trigger::Exited).is_ok()
        };
        if settled {
            self.persist().await;
        }
        Ok(())
    }

    /// `SIGKILL` now; nothing if not running.
    pub(super) async fn kill_locked(&self, srv: &Arc<Server>) -> Result<(), AgentError> {
        let container = {
            let mut i = srv.inner();
            if !i.lifecycle.state().is_active() {
                return Ok(());
            }
            // Before the signal, so the exit watcher sees `Stopped` and reports no crash.
            self.transition(srv, &mut i, Trigger::Kill)?;
            i.container.clone()
        };
        self.persist().await;
        if let Some(id) = container {
            match self.runtime.kill(&id, StopSignal::Kill).await {
                Ok(()) | Err(RuntimeError::Conflict(_) | RuntimeError::ContainerNotFound(_)) => {}
                Err(error) => return Err(error.into()),
            }
            // Returns once the process is gone, so the next action finds it dead.
            let _ = tokio::time::timeout(KILL_WAIT, self.runtime.wait(&id)).await;
        }
        Ok(())
    }

    /// Kill, remove container, data directory and install log, forget the server.
    pub(super) async fn destroy_locked(&self, srv: &Arc<Server>) -> Result<(), AgentError> {
        if srv.inner().lifecycle.state().is_active() {
            self.kill_locked(srv).await?;
        }
        let container = {
            let mut i = srv.inner();
            // `Destroying` already: a removal interrupted earlier, resumed.
            if i.lifecycle.state() != ServerState::Destroying {
                self.transition(srv, &mut i, Trigger::Destroy)?;
            }
            i.container.clone()
        };
        self.persist().await;
        if let Some(id) = container {
            self.runtime.destroy(&id).await?;
            srv.inner().container = None;
        }
        remove_if_present(tokio::fs::remove_dir_all(self.data_dir(srv.id)).await)?;
        remove_if_present(tokio::fs::remove_file(self.install_log_path(srv.id)).await)?;
        {
            let mut i = srv.inner();
            self.transition(srv, &mut i, Trigger::DestroyCompleted)?;
        }
        srv.mark_removed();
        self.forget(srv.id);
        *srv.input.lock().await = None;
        self.persist().await;
        tracing::info!("server destroyed");
        // Last: this may be running inside one of those tasks (a resumed removal).
        srv.abort_tasks();
        Ok(())
    }

    /// Brings the lifecycle in line with `spec.suspended`.
    pub(super) async fn apply_suspension(&self, srv: &Arc<Server>) -> Result<(), AgentError> {
        let (suspended, state) = {
            let i = srv.inner();
            (i.spec.suspended, i.lifecycle.state())
        };
        if suspended && state != ServerState::Suspended {
            if state.is_active() {
                self.stop_locked(srv).await?;
            }
            let mut i = srv.inner();
            // From `Requested`/`Installing` there is no edge: applied by a later update.
            if next_state(i.lifecycle.state(), Trigger::Suspend).is_some() {
                self.transition(srv, &mut i, Trigger::Suspend)?;
            }
        } else if !suspended && state == ServerState::Suspended {
            let mut i = srv.inner();
            self.transition(srv, &mut i, Trigger::Unsuspend)?;
        } else {
            return Ok(());
        }
        self.persist().await;
        Ok(())
    }

    /// The done line of run `run` was seen (or there is none to wait for).
    pub(super) async fn mark_ready(&self, srv: &Arc<Server>, run: u64) {
        let changed = {
            let mut i = srv.inner();
            i.run == run
                && i.lifecycle.state() == ServerState::Starting
                && self.transition(srv, &mut i, Trigger::Ready).is_ok()
        };
        if changed {
            self.persist().await;
        }
    }

    /// Reads the console of run `run`: each line is matched against the done matchers
    /// (before the throttle, so a dropped line still counts), then throttled and published.
    pub(super) fn spawn_reader(
        &self,
        srv: &Arc<Server>,
        run: u64,
        mut output: BoxStream<'static, Result<ConsoleLine, RuntimeError>>,
        done: DoneWatcher,
    ) {
        let me = self.me.clone();
        let server = srv.clone();
        let counters = self.counters.clone();
        let limit = self.config.console_lines_per_second;
        self.spawn_for(srv, async move {
            let mut throttle = Throttle::per_second(limit);
            let mut watching = !done.is_empty();
            loop {
                let next = match throttle.deadline() {
                    // Lines were dropped in this window: report them when it ends even if the
                    // server goes quiet.
                    Some(deadline) => tokio::select! {
                        next = output.next() => next,
                        () = tokio::time::sleep_until(deadline) => {
                            if let Some(dropped) = throttle.flush(Instant::now()) {
                                server.hub.notice(throttle.notice(dropped));
                            }
                            continue;
                        }
                    },
                    None => output.next().await,
                };
                let line = match next {
                    Some(Ok(line)) => line,
                    None => break,
                    Some(Err(error)) => {
                        // The exit watcher, not the console, decides what the state becomes.
                        tracing::debug!(%error, "console stream failed");
                        break;
                    }
                };
                let ready = watching && done.matches(&line.text);
                if throttle.admit_reporting(Instant::now(), |n| server.hub.notice(n)) {
                    Counters::bump(&counters.console_lines);
                    server.hub.publish(ConsoleEvent::Line(line));
                } else {
                    Counters::bump(&counters.console_lines_dropped);
                }
                // After the line, so a console shows the done line, then `Running`.
                if ready {
                    watching = false;
                    if let Some(agent) = me.upgrade() {
                        agent.mark_ready(&server, run).await;
                    }
                }
            }
            throttle.finish_reporting(|n| server.hub.notice(n));
        });
    }

    /// Waits for the process of run `run` to exit, then settles the state.
    pub(super) fn spawn_wait(&self, srv: &Arc<Server>, run: u64, id: ContainerId) {
        let runtime = self.runtime.clone();
        let me = self.me.clone();
        let server = srv.clone();
        self.spawn_for(srv, async move {
            let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
            let exit = loop {
                match runtime.wait(&id).await {
                    Ok(exit) => break Some(exit),
                    Err(RuntimeError::ContainerNotFound(_)) => break None,
                    Err(error) => {
                        if server.inner().run != run {
                            return;
                        }
                        let delay = backoff.next_delay();
                        tracing::warn!(%error, ?delay, "waiting on the server process failed; retrying");
                        tokio::time::sleep(delay).await;
                    }
                }
            };
            if let Some(agent) = me.upgrade() {
                agent.on_exit(&server, run, exit).await;
            }
        });
    }

    /// The process of run `run` exited (`None`: its container vanished).
    pub(super) async fn on_exit(&self, srv: &Arc<Server>, run: u64, exit: Option<ExitStatus>) {
        let restart = {
            let mut i = srv.inner();
            if i.run != run {
                return;
            }
            match i.lifecycle.state() {
                ServerState::Stopping => {
                    let _ = self.transition(srv, &mut i, Trigger::Exited);
                    None
                }
                ServerState::Starting | ServerState::Running => {
                    let _ = self.transition(srv, &mut i, Trigger::Exited);
                    self.crashed(srv, &mut i, describe_exit(exit))
                }
                // Killed, or already settled by the stop.
                _ => return,
            }
        };
        self.persist().await;
        if let Some(intent) = restart {
            self.spawn_auto_restart(srv, intent);
        }
    }

    /// Records a crash (the state is `Crashed` already); returns the intent to restart
    /// under, or `None` when the crash-loop rule forbids it.
    pub(super) fn crashed(&self, srv: &Server, inner: &mut ServerInner, how: String) -> Option<u64> {
        Counters::bump(&self.counters.crashes);
        tracing::warn!(how = %how, "server crashed");
        srv.hub.notice(format!("the server crashed: {how}"));
        if inner.lifecycle.record_crash(Utc::now()) {
            Some(inner.intent)
        } else {
            let window = CRASH_LOOP_WINDOW.num_seconds();
            tracing::warn!("crashed again within {window} s of the previous crash; not restarting");
            srv.hub.notice(format!(
                "the server crashed again less than {window} s after its previous crash; it will not be restarted automatically"
            ));
            None
        }
    }

    /// Restarts a crashed server unless a user acted since the crash.
    pub(super) fn spawn_auto_restart(&self, srv: &Arc<Server>, intent: u64) {
        let me = self.me.clone();
        let server = srv.clone();
        self.spawn_for(srv, async move {
            // The lock first, the agent after: waiting must not keep a dropped agent alive.
            let _op = match server.acquire(Operation::AutoRestart).await {
                Ok(op) => op,
                Err(error) => {
                    tracing::info!(%error, "automatic restart skipped");
                    return;
                }
            };
            let Some(agent) = me.upgrade() else { return };
            {
                let i = server.inner();
                if i.intent != intent || i.lifecycle.state() != ServerState::Crashed {
                    tracing::info!("automatic restart superseded by a user action");
                    return;
                }
            }
            if let Err(error) = agent.check_backlog() {
                server.hub.notice(format!("not restarting automatically: {error}"));
                return;
            }
            Counters::bump(&agent.counters.auto_restarts);
            server.hub.notice("restarting the server after its crash");
            // `start_locked` reports its own failure on the console.
            let _ = agent.start_locked(&server).await;
        });
    }

    /// Pushes resource samples to the console until the process stops.
    pub(super) fn spawn_stats(&self, srv: &Arc<Server>, id: ContainerId) {
        let runtime = self.runtime.clone();
        let server = srv.clone();
        self.spawn_for(srv, async move {
            let mut samples = match runtime.stats(&id).await {
                Ok(samples) => samples,
                Err(error) => {
                    tracing::debug!(%error, "no stats for this run");
                    return;
                }
            };
            while let Some(sample) = samples.next().await {
                match sample {
                    Ok(mut sample) => {
                        sample.disk_bytes = server.disk_bytes();
                        server.hub.publish(ConsoleEvent::Stats(sample));
                    }
                    Err(error) => {
                        tracing::debug!(%error, "stats stream failed");
                        break;
                    }
                }
            }
        });
    }
}

fn describe_exit(exit: Option<ExitStatus>) -> String {
    match exit {
        Some(e) if e.oom_killed => format!("killed for running out of memory (exit code {})", e.code),
        Some(e) => format!("the process exited with code {}", e.code),
        None => "its container disappeared".to_owned(),
    }
}

fn remove_if_present(result: std::io::Result<()>) -> std::io::Result<()> {
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
