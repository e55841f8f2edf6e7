//! Re-adoption after a daemon restart: the saved state meets what the runtime reports.
//!
//! For every known server, by what [`Runtime::list_managed`](nexus_core::runtime::Runtime::list_managed)
//! shows (one container per server, by name):
//!
//! | container | saved state | outcome |
//! |---|---|---|
//! | running | `Starting`, `Running` | kept: console re-attached, exit watcher and stats re-armed; no second start. What it printed while the agent was away (its log since it started) is replayed, and a `Starting` server whose done line is in it becomes `Running` |
//! | running | `Stopping` | kept, and the interrupted stop is carried out again |
//! | running | `Installed`, `Stopped`, `Crashed` | adopted as a start (`Start` → `Starting`, then `Running` on the done line) |
//! | running | any other | it must not run: killed |
//! | exited or gone | `Starting`, `Running` | the process ended while the agent was away: `Crashed`, crash-loop rule, automatic restart |
//! | exited or gone | `Stopping` | `Stopped` |
//! | any | `Installing` | the install was interrupted: its container removed, its files handed to the server's user, `InstallFailed` |
//! | any | `Destroying` | the removal is resumed |
//!
//! Managed containers of servers the state does not know are logged and left alone: they
//! may belong to another agent sharing the engine, or to state lost by an operator.

use super::console::ConsoleEvent;
use super::done::DoneWatcher;
use super::error::AgentError;
use super::node::NodeAgent;
use super::server::{Operation, Server};
use nexus_core::ids::ServerId;
use nexus_core::lifecycle::{ServerState, Trigger};
use nexus_core::model::StopSignal;
use nexus_core::runtime::{ContainerId, ManagedContainer};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tracing::Instrument;

/// Lines of a re-adopted server's log searched for the done line it may have printed while
/// the agent was away (the last ones; the console replay keeps fewer).
pub(crate) const MISSED_LINES: usize = 5000;

impl NodeAgent {
    pub(super) async fn adopt(&self) -> Result<(), AgentError> {
        let mut by_server: BTreeMap<ServerId, Vec<ManagedContainer>> = BTreeMap::new();
        for container in self.runtime.list_managed().await? {
            by_server.entry(container.server).or_default().push(container);
        }
        let servers = self.all_servers();
        let known: BTreeSet<ServerId> = servers.iter().map(|s| s.id).collect();
        for (server, containers) in &by_server {
            if !known.contains(server) {
                for c in containers {
                    tracing::warn!(
                        server = %server, container = %c.id, running = c.running,
                        "managed container of a server this node does not know; left alone"
                    );
                }
            }
        }
        for server in servers {
            let containers = by_server.remove(&server.id).unwrap_or_default();
            let span = tracing::info_span!("server", server = %server.id);
            self.adopt_one(&server, containers).instrument(span).await;
        }
        Ok(())
    }

    async fn adopt_one(&self, srv: &Arc<Server>, containers: Vec<ManagedContainer>) {
        let (state, recorded) = {
            let i = srv.inner();
            (i.lifecycle.state(), i.container.clone())
        };
        // The recorded container first; another one of this server (saved state older than
        // its creation) only if it runs.
        let chosen = containers
            .iter()
            .find(|c| Some(&c.id) == recorded.as_ref())
            .or_else(|| containers.iter().find(|c| c.running))
            .cloned();
        for c in &containers {
            if chosen.as_ref().is_none_or(|chosen| chosen.id != c.id) {
                tracing::warn!(container = %c.id, "another managed container of this server; left alone");
            }
        }
        match state {
            ServerState::Installing => {
                if chosen.as_ref().is_some_and(|c| c.running) {
                    self.kill_stray(chosen.map(|c| c.id)).await;
                }
                // The install container may still run the script as root in the server's
                // directory: removed, and its files handed over, before the server is usable.
                let cleaned = super::install::clean_up_install(
                    self.runtime.as_ref(),
                    srv.id,
                    &self.data_dir(srv.id),
                    self.config.isolation.user,
                )
                .await;
                {
                    let mut i = srv.inner();
                    let _ = self.transition(srv, &mut i, Trigger::InstallFailed);
                }
                srv.hub.notice("the install was interrupted by a restart of the node agent; run it again");
                if let Err(error) = cleaned {
                    srv.hub.notice(format!("cleaning up after the interrupted install: {error}"));
                }
                return;
            }
            ServerState::Destroying => {
                srv.inner().container = chosen.map(|c| c.id).or(recorded);
                self.resume_destroy(srv);
                return;
            }
            _ => {}
        }
        match chosen {
            Some(c) if c.running => self.adopt_running(srv, c.id, state).await,
            other => {
                srv.inner().container = other.map(|c| c.id);
                let restart = {
                    let mut i = srv.inner();
                    match state {
                        ServerState::Stopping => {
                            let _ = self.transition(srv, &mut i, Trigger::Exited);
                            None
                        }
                        ServerState::Starting | ServerState::Running => {
                            let _ = self.transition(srv, &mut i, Trigger::Exited);
                            self.crashed(srv, &mut i, "the process ended while the node agent was not running".into())
                        }
                        _ => None,
                    }
                };
                if let Some(intent) = restart {
                    self.spawn_auto_restart(srv, intent);
                }
            }
        }
    }

    /// Takes over a running container: console, exit watcher, stats; the state decides the rest.
    async fn adopt_running(&self, srv: &Arc<Server>, id: ContainerId, state: ServerState) {
        let (run, done) = {
            let mut i = srv.inner();
            i.container = Some(id.clone());
            i.run += 1;
            (i.run, i.done.clone())
        };
        match state {
            ServerState::Starting | ServerState::Running | ServerState::Stopping => {}
            ServerState::Installed | ServerState::Stopped | ServerState::Crashed => {
                // Running although the state says otherwise (a lost save, a hand-started
                // container): adopted as a start, so the panel hears about it.
                let mut i = srv.inner();
                let _ = self.transition(srv, &mut i, Trigger::Start);
            }
            _ => {
                tracing::warn!(?state, "a container runs for a server that must not run; killing it");
                self.kill_stray(Some(id)).await;
                return;
            }
        }
        let state = srv.inner().lifecycle.state();
        // Only a server still waiting for its done line watches for it.
        let watch = if state == ServerState::Starting { done.clone() } else { DoneWatcher::default() };
        let mut ready_while_away = false;
        match self.runtime.attach(&id).await {
            Ok(io) => {
                *srv.input.lock().await = Some(io.input);
                // Attached first, so nothing printed from now on is missed; then what was
                // printed while the agent was away (a line of the moment in between may come
                // twice): replayed, and searched for the done line a starting server may have
                // printed meanwhile.
                match self.runtime.output_since_start(&id, MISSED_LINES).await {
                    Ok(missed) => {
                        ready_while_away = !watch.is_empty() && missed.iter().any(|line| watch.matches(&line.text));
                        let keep = missed.len().saturating_sub(self.config.console_replay_lines);
                        for line in missed.into_iter().skip(keep) {
                            srv.hub.publish(ConsoleEvent::Line(line));
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "the output printed while the agent was away could not be read")
                    }
                }
                let watch = if ready_while_away { DoneWatcher::default() } else { watch };
                self.spawn_reader(srv, run, io.output, watch);
                srv.hub.publish(ConsoleEvent::Notice("console re-attached after a restart of the node agent".into()));
            }
            Err(error) => {
                tracing::warn!(%error, "console not re-attached");
                srv.hub.notice(format!("the console could not be re-attached: {error}"));
            }
        }
        self.spawn_wait(srv, run, id.clone());
        self.spawn_stats(srv, id);
        tracing::info!(?state, "re-adopted running server");
        if state == ServerState::Starting && (done.is_empty() || ready_while_away) {
            self.mark_ready(srv, run).await;
        }
        if state == ServerState::Stopping {
            self.resume_stop(srv);
        }
    }

    async fn kill_stray(&self, id: Option<ContainerId>) {
        if let Some(id) = id
            && let Err(error) = self.runtime.kill(&id, StopSignal::Kill).await
        {
            tracing::warn!(%error, container = %id, "killing a container that must not run failed");
        }
    }

    fn resume_stop(&self, srv: &Arc<Server>) {
        let me = self.me.clone();
        let server = srv.clone();
        self.spawn_for(srv, async move {
            let Ok(_op) = server.acquire(Operation::Stop).await else { return };
            let Some(agent) = me.upgrade() else { return };
            if let Err(error) = agent.stop_locked(&server).await {
                tracing::warn!(%error, "resuming an interrupted stop failed");
            }
        });
    }

    fn resume_destroy(&self, srv: &Arc<Server>) {
        let me = self.me.clone();
        let server = srv.clone();
        self.spawn_for(srv, async move {
            let Ok(_op) = server.acquire(Operation::Destroy).await else { return };
            let Some(agent) = me.upgrade() else { return };
            if let Err(error) = agent.destroy_locked(&server).await {
                tracing::warn!(%error, "resuming an interrupted removal failed");
            }
        });
    }
}
