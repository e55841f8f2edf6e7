//! What `up` and `serve` share once the store and control plane are open: the HTTP server
//! (node events, `/api/v1`, a typed 404 for the rest), the heartbeat watch, the schedule
//! runner, node endpoints kept in sync with the store, pending creates delivered, and a
//! clean stop.

use nexus_control::ControlPlane;
use nexus_panel::api::{PanelState, json_response_not_found};
use nexus_panel::node_client::HttpNodeTransport;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use warp::Filter;

/// The running panel's background work.
pub(crate) struct Running {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Resolves once `stopped` turns true.
pub(crate) async fn stopping(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

impl Running {
    /// A receiver that turns true when the panel stops (for work the caller adds).
    pub(crate) fn subscribe(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Stops taking requests, ends the background loops, and waits for them.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Serves the panel on `listener` and starts its loops.
pub(crate) fn start(
    control: &Arc<ControlPlane>,
    transport: &Arc<HttpNodeTransport>,
    listener: tokio::net::TcpListener,
    public_url: &str,
    trusted_proxies: Vec<std::net::IpAddr>,
    templates: Option<Arc<nexus_templates::ObjectStoreTemplates>>,
) -> Running {
    let (stop, stopped) = watch::channel(false);
    let mut state = PanelState::new(Arc::clone(control), public_url).with_node_client(Arc::clone(transport));
    state.trusted_proxies = trusted_proxies;
    state.templates = templates;
    let state = Arc::new(state);
    let routes = nexus_panel::events::route(Arc::clone(control))
        .or(nexus_panel::api::metrics(Arc::clone(&state)))
        .unify()
        .or(nexus_panel::api::filter(Arc::clone(&state)))
        .unify()
        .or(nexus_panel::api::pterodactyl::filter(Arc::clone(&state)))
        .unify()
        .or(nexus_panel::ui::filter(state))
        .unify()
        .or(warp::any().map(json_response_not_found))
        .unify();
    let mut tasks =
        vec![tokio::spawn(warp::serve(routes).incoming(listener).graceful(stopping(stopped.clone())).run())];
    {
        let control = Arc::clone(control);
        let stopped = stopped.clone();
        tasks.push(tokio::spawn(async move { control.watch_heartbeats(stopping(stopped)).await }));
    }
    tasks.push(tokio::spawn(Arc::clone(control).watch_schedules(stopping(stopped.clone()))));
    // Nodes another panel process registered or changed get routed here too.
    tasks.push(tokio::spawn(Arc::clone(transport).keep_synced(Arc::clone(control), stopping(stopped.clone()))));
    {
        let control = Arc::clone(control);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = control.resume_requested().await {
                tracing::warn!(error = %e, "delivering pending creates");
            }
        }));
    }
    Running { stop, tasks }
}
