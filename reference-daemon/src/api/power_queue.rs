//! Power actions answered with `202 Accepted` run in the background, one server's in the order
//! they arrived (a kill then a start must not run as a start then a kill), and only a few may
//! wait per server: a burst of clicks relayed by the panel must not queue start/stop flapping
//! for minutes. Over the bound the request is refused with `429 too_many_power_actions`.

use super::ApiError;
use nexus_agent::NodeAgent;
use nexus_core::ids::ServerId;
use nexus_core::transport::PowerAction;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::mpsc;

/// Power actions one server may have waiting.
pub const PENDING_PER_SERVER: usize = 4;

/// The per-server queues of background power actions.
#[derive(Debug, Default)]
pub struct PowerQueues {
    queues: Mutex<HashMap<ServerId, mpsc::Sender<PowerAction>>>,
}

impl PowerQueues {
    /// Queues `action` for `server`, carried out after the ones before it; a failure is told
    /// on the server's console.
    pub fn submit(&self, agent: &Arc<NodeAgent>, server: ServerId, action: PowerAction) -> Result<(), ApiError> {
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        let sender = queues.entry(server).or_insert_with(|| spawn_worker(Arc::clone(agent), server));
        match sender.try_send(action) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(ApiError::new(
                429,
                "too_many_power_actions",
                format!("server {server} already has {PENDING_PER_SERVER} power actions waiting"),
            )),
            Err(mpsc::error::TrySendError::Closed(action)) => {
                let sender = spawn_worker(Arc::clone(agent), server);
                let sent = sender.try_send(action).is_ok();
                queues.insert(server, sender);
                if sent { Ok(()) } else { Err(ApiError::new(500, "internal", "power queue closed")) }
            }
        }
    }

    /// Forgets the queue of a removed server (its worker ends once the queue is drained).
    pub fn forget(&self, server: ServerId) {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner).remove(&server);
    }
}

fn spawn_worker(agent: Arc<NodeAgent>, server: ServerId) -> mpsc::Sender<PowerAction> {
    let (sender, mut actions) = mpsc::channel::<PowerAction>(PENDING_PER_SERVER);
    let agent = Arc::downgrade(&agent);
    tokio::spawn(async move {
        while let Some(action) = actions.recv().await {
            let Some(agent) = agent.upgrade() else { return };
            if let Err(error) = agent.power(server, action).await {
                tracing::info!(%server, ?action, %error, "power action failed");
                agent.notice(server, format!("{} failed: {error}", super::servers::action_name(action)));
            }
        }
    });
    sender
}
