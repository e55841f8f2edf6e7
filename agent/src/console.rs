//! The console hub of one server: a replay ring plus a broadcast fan-out.
//!
//! Every event is sent once into a [`tokio::sync::broadcast`] channel; each subscriber reads
//! at its own pace from its own cursor, so a slow subscriber never blocks the server or the
//! other subscribers. A subscriber that falls more than the channel's capacity behind loses
//! the oldest events it had not read: [`ConsoleSubscription::recv`] turns that into a
//! [`ConsoleEvent::Notice`] saying how many were skipped, which the WebSocket layer should
//! send to its client like any other event.

use super::ring::ReplayRing;
pub use nexus_core::console::ConsoleEvent;
use nexus_core::lifecycle::LifecycleEvent;
use nexus_core::runtime::ResourceStats;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use tokio::sync::broadcast;

/// Events a console subscriber receives per channel capacity before it starts lagging.
pub const CONSOLE_CHANNEL_CAPACITY: usize = 1024;

/// A published event as every subscriber receives it: shared, with its JSON text computed
/// once for all of them (a console with hundreds of clients must not serialize each line
/// hundreds of times).
#[derive(Debug)]
pub struct SharedEvent {
    event: ConsoleEvent,
    json: OnceLock<Arc<str>>,
}

impl SharedEvent {
    /// Wraps `event`.
    pub fn new(event: ConsoleEvent) -> Arc<Self> {
        Arc::new(Self { event, json: OnceLock::new() })
    }

    /// The event.
    pub fn event(&self) -> &ConsoleEvent {
        &self.event
    }

    /// The event as JSON (`{"type":...,"data":...}`), serialized by the first caller.
    pub fn json(&self) -> Arc<str> {
        self.json.get_or_init(|| event_json(&self.event)).clone()
    }
}

/// `event` as JSON text. Serializing these types cannot fail (string keys, no maps with
/// non-string keys); an impossible failure still yields valid JSON.
pub fn event_json(event: &ConsoleEvent) -> Arc<str> {
    serde_json::to_string(event)
        .unwrap_or_else(|e| {
            serde_json::json!({"type": "notice", "data": format!("unserializable event: {e}")}).to_string()
        })
        .into()
}

/// The notice a lagging subscriber gets for `skipped` events it missed.
pub fn lagged_notice(skipped: u64) -> ConsoleEvent {
    ConsoleEvent::Notice(format!("{skipped} console events skipped: this client could not keep up"))
}

/// A console subscription: what happened recently, then everything from now on.
///
/// `replay` holds, in order: the last console lines, notices and install lines (up to
/// [`AgentConfig::console_replay_lines`](super::AgentConfig::console_replay_lines)), then the
/// latest state event and the latest stats sample, if any. `live` continues exactly where
/// `replay` ends: no event is in both, none is missed.
#[derive(Debug)]
pub struct ConsoleSubscription {
    /// Recent events, oldest first.
    pub replay: Vec<ConsoleEvent>,
    /// Events from now on, shared between subscribers.
    pub live: broadcast::Receiver<Arc<SharedEvent>>,
}

impl ConsoleSubscription {
    /// The next live event; a gap (this subscriber was too slow) becomes a
    /// [`lagged_notice`]. `None` once the server is removed.
    pub async fn recv(&mut self) -> Option<ConsoleEvent> {
        match self.live.recv().await {
            Ok(event) => Some(event.event().clone()),
            Err(broadcast::error::RecvError::Lagged(skipped)) => Some(lagged_notice(skipped)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

struct HubState {
    ring: ReplayRing<ConsoleEvent>,
    last_state: Option<LifecycleEvent>,
    last_stats: Option<ResourceStats>,
}

/// Fan-out of one server's console.
pub(crate) struct ConsoleHub {
    state: Mutex<HubState>,
    tx: broadcast::Sender<Arc<SharedEvent>>,
}

impl ConsoleHub {
    pub(crate) fn new(replay: usize, last_state: Option<LifecycleEvent>) -> Self {
        let (tx, _) = broadcast::channel(CONSOLE_CHANNEL_CAPACITY.max(replay));
        Self { state: Mutex::new(HubState { ring: ReplayRing::new(replay), last_state, last_stats: None }), tx }
    }

    /// Sends `event` to every subscriber and remembers it for replay.
    pub(crate) fn publish(&self, event: ConsoleEvent) {
        // Remembering and sending under one lock is what makes `subscribe` gap- and
        // duplicate-free.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match &event {
            ConsoleEvent::Line(_) | ConsoleEvent::Notice(_) | ConsoleEvent::Install(_) => {
                state.ring.push(event.clone())
            }
            ConsoleEvent::State(e) => state.last_state = Some(e.clone()),
            ConsoleEvent::Stats(s) => state.last_stats = Some(s.clone()),
        }
        // An error only means nobody listens right now.
        let _ = self.tx.send(SharedEvent::new(event));
    }

    /// A notice, for convenience.
    pub(crate) fn notice(&self, text: impl Into<String>) {
        self.publish(ConsoleEvent::Notice(text.into()));
    }

    pub(crate) fn subscribe(&self) -> ConsoleSubscription {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut replay = state.ring.to_vec();
        replay.extend(state.last_state.clone().map(ConsoleEvent::State));
        replay.extend(state.last_stats.clone().map(ConsoleEvent::Stats));
        ConsoleSubscription { replay, live: self.tx.subscribe() }
    }

    /// The latest stats sample, if any.
    pub(crate) fn last_stats(&self) -> Option<ResourceStats> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).last_stats.clone()
    }

    pub(crate) fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexus_core::console::{ConsoleLine, ConsoleStream};

    fn line(i: usize) -> ConsoleEvent {
        ConsoleEvent::Line(ConsoleLine { stream: ConsoleStream::Stdout, text: format!("line {i}") })
    }

    #[tokio::test]
    async fn replay_then_live_without_gap_or_duplicate() {
        let hub = ConsoleHub::new(3, None);
        for i in 0..5 {
            hub.publish(line(i));
        }
        hub.publish(ConsoleEvent::Stats(ResourceStats { pids: 3, ..Default::default() }));
        let mut sub = hub.subscribe();
        assert_eq!(
            sub.replay,
            vec![line(2), line(3), line(4), ConsoleEvent::Stats(ResourceStats { pids: 3, ..Default::default() })]
        );
        hub.publish(line(5));
        assert_eq!(sub.recv().await, Some(line(5)));
        assert_eq!(hub.subscribers(), 1);
    }

    #[tokio::test]
    async fn a_slow_subscriber_lags_alone() {
        let hub = ConsoleHub::new(0, None);
        let mut slow = hub.subscribe();
        let mut fast = hub.subscribe();
        let total = CONSOLE_CHANNEL_CAPACITY + 10;
        for i in 0..total {
            hub.publish(line(i));
            // The fast one keeps up; publishing never waits for the slow one.
            assert_eq!(fast.recv().await, Some(line(i)));
        }
        assert_eq!(slow.recv().await, Some(lagged_notice(10)));
        assert_eq!(slow.recv().await, Some(line(10)));
    }

    #[tokio::test]
    async fn closed_when_the_hub_is_gone() {
        let hub = ConsoleHub::new(10, None);
        let mut sub = hub.subscribe();
        drop(hub);
        assert_eq!(sub.recv().await, None);
    }

    #[test]
    fn events_are_tagged_json() {
        let json = serde_json::to_value(ConsoleEvent::Notice("hi".into())).unwrap();
        assert_eq!(json, serde_json::json!({"type": "notice", "data": "hi"}));
        let json = serde_json::to_value(line(1)).unwrap();
        assert_eq!(json, serde_json::json!({"type": "line", "data": {"stream": "stdout", "text": "line 1"}}));
    }
}
