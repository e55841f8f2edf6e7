//! The heartbeat loop: a [`Heartbeat`] into the outbox every interval.

use super::node::NodeAgent;
use chrono::Utc;
use nexus_core::transport::{Heartbeat, NodeMessage};
use std::time::Duration;
use tokio::time::MissedTickBehavior;

/// Shortest heartbeat interval used, whatever the configuration says.
const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);

impl NodeAgent {
    /// The heartbeat this node would send now.
    pub fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            node: self.config.node,
            at: Utc::now(),
            version: self.config.version.clone(),
            servers: self.servers(),
        }
    }

    pub(super) fn spawn_heartbeat(&self) {
        let me = self.me.clone();
        let period = self.config.heartbeat_interval.max(MIN_HEARTBEAT_INTERVAL);
        self.spawn_loop(async move {
            let mut ticker = tokio::time::interval(period);
            // After a stall, one heartbeat, not a burst.
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(agent) = me.upgrade() else { break };
                // Only the newest heartbeat waits in the outbox; older ones are replaced.
                agent.outbox.push(NodeMessage::Heartbeat(agent.heartbeat()));
            }
        });
    }
}
