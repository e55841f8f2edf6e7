//! [`AgentMetrics`]: counters and gauges for the daemon's `/metrics`.

use nexus_core::lifecycle::ServerState;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// A point-in-time reading of the agent's counters (monotonic since the agent started) and
/// gauges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AgentMetrics {
    /// Gauge: servers per lifecycle state (states with no server are absent).
    pub servers: BTreeMap<ServerState, usize>,
    /// Gauge: console subscribers over all servers.
    pub console_subscribers: usize,
    /// Console lines passed on to subscribers.
    pub console_lines: u64,
    /// Console lines dropped by the throttle.
    pub console_lines_dropped: u64,
    /// Unexpected exits of server processes.
    pub crashes: u64,
    /// Automatic restarts after a crash.
    pub auto_restarts: u64,
    /// Heartbeats delivered to the panel.
    pub heartbeats_sent: u64,
    /// Failed attempts to deliver a heartbeat.
    pub heartbeat_failures: u64,
    /// Lifecycle events delivered to the panel.
    pub events_sent: u64,
    /// Failed attempts to deliver any message (each is retried).
    pub publish_failures: u64,
    /// Messages the panel refused as invalid (4xx); logged and not retried.
    pub messages_rejected: u64,
    /// Messages dropped because the node has no panel ([`TransportError::NoPanel`](nexus_core::transport::TransportError::NoPanel)).
    pub messages_dropped: u64,
    /// Gauge: messages waiting in the outbox.
    pub queued_messages: usize,
    /// Failed saves of the agent state.
    pub state_save_failures: u64,
}

/// The counters behind [`AgentMetrics`], shared with background tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub console_lines: AtomicU64,
    pub console_lines_dropped: AtomicU64,
    pub crashes: AtomicU64,
    pub auto_restarts: AtomicU64,
    pub heartbeats_sent: AtomicU64,
    pub heartbeat_failures: AtomicU64,
    pub events_sent: AtomicU64,
    pub publish_failures: AtomicU64,
    pub messages_rejected: AtomicU64,
    pub messages_dropped: AtomicU64,
    pub state_save_failures: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn fill(&self, m: &mut AgentMetrics) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        m.console_lines = get(&self.console_lines);
        m.console_lines_dropped = get(&self.console_lines_dropped);
        m.crashes = get(&self.crashes);
        m.auto_restarts = get(&self.auto_restarts);
        m.heartbeats_sent = get(&self.heartbeats_sent);
        m.heartbeat_failures = get(&self.heartbeat_failures);
        m.events_sent = get(&self.events_sent);
        m.publish_failures = get(&self.publish_failures);
        m.messages_rejected = get(&self.messages_rejected);
        m.messages_dropped = get(&self.messages_dropped);
        m.state_save_failures = get(&self.state_save_failures);
    }
}
