//! The ordered outbox: every message to the panel goes through it.
//!
//! One sender task delivers the queue front to back and removes a message only once the panel
//! took it, so order is kept and nothing is dropped across an outage: a failed delivery is
//! retried, the same message again, after an exponential backoff ([`Backoff`]: 250 ms doubling
//! up to 30 s), until the panel is back. Delivery is at least once (a message whose
//! acknowledgement was lost is sent again); the panel deduplicates lifecycle events by
//! `(server, at, trigger)`.
//!
//! Bounded memory: only the newest heartbeat is kept (a queued heartbeat is replaced by a
//! newer one, which goes to the back, behind the events it describes). Lifecycle events (and
//! backup reports, counted as events here) are never dropped; instead, once [`OUTBOX_EVENT_LIMIT`] of them wait, the agent refuses new
//! power actions, installs and servers ([`AgentError::Backlog`](super::AgentError::Backlog))
//! and holds back automatic restarts, so what can still be added is bounded by a few events
//! per server (a crash, a stop). At roughly 200 bytes an event that is a few MB at most.
//! Lifecycle events are also persisted in the agent snapshot, so a daemon crash loses none.
//!
//! A message the panel refuses as invalid (a 4xx other than 408/429) would block the queue
//! forever; it is logged, counted (`messages_rejected`) and skipped.

use super::metrics::Counters;
use nexus_core::ids::NodeId;
use nexus_core::transport::{NodeMessage, PanelTransport, TransportError};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;

/// Lifecycle events waiting for the panel past which new actions are refused.
pub const OUTBOX_EVENT_LIMIT: usize = 10_000;
/// First retry delay after a failed delivery.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
/// Longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A delivery taking longer than this counts as failed (and is retried).
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// Exponential backoff: `initial`, doubling, capped at `max`.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff starting at `initial` and never exceeding `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max, next: initial.min(max) }
    }

    /// The delay before the next attempt; each call doubles the following one.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Back to `initial` (after a success).
    pub fn reset(&mut self) {
        self.next = self.initial.min(self.max);
    }
}

struct Entry {
    seq: u64,
    message: NodeMessage,
}

#[derive(Default)]
struct Queue {
    entries: VecDeque<Entry>,
    next_seq: u64,
    /// The entry being delivered right now; never replaced or removed by a push.
    in_flight: Option<u64>,
    /// Lifecycle events in `entries`.
    events: usize,
}

fn is_heartbeat(message: &NodeMessage) -> bool {
    matches!(message, NodeMessage::Heartbeat(_))
}

/// A refusal that will not change by retrying.
fn is_permanent(error: &TransportError) -> bool {
    matches!(error, TransportError::Rejected { status, .. } if (400..500).contains(status) && *status != 408 && *status != 429)
}

/// See the module docs.
pub(crate) struct Outbox {
    node: NodeId,
    panel: Arc<dyn PanelTransport>,
    queue: Mutex<Queue>,
    wake: Notify,
    backoff: Backoff,
    counters: Arc<Counters>,
}

impl Outbox {
    /// An outbox holding `restored` (undelivered messages of a previous run) first.
    pub(crate) fn new(
        node: NodeId,
        panel: Arc<dyn PanelTransport>,
        restored: Vec<NodeMessage>,
        backoff: Backoff,
        counters: Arc<Counters>,
    ) -> Self {
        let outbox = Self { node, panel, queue: Mutex::new(Queue::default()), wake: Notify::new(), backoff, counters };
        for message in restored {
            outbox.push(message);
        }
        outbox
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Every update of the queue is a single push or pop; a panic cannot leave it torn.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `message`. A heartbeat replaces any queued (not in-flight) heartbeat.
    pub(crate) fn push(&self, message: NodeMessage) {
        let mut q = self.queue();
        if is_heartbeat(&message) {
            let in_flight = q.in_flight;
            q.entries.retain(|e| !is_heartbeat(&e.message) || Some(e.seq) == in_flight);
        } else {
            q.events += 1;
        }
        let seq = q.next_seq;
        q.next_seq += 1;
        q.entries.push_back(Entry { seq, message });
        drop(q);
        // A stored permit if the sender is busy: the push is never missed.
        self.wake.notify_one();
    }

    /// Lifecycle events not yet delivered, oldest first (for the snapshot).
    pub(crate) fn pending_events(&self) -> Vec<NodeMessage> {
        self.queue().entries.iter().filter(|e| !is_heartbeat(&e.message)).map(|e| e.message.clone()).collect()
    }

    /// Lifecycle events waiting.
    pub(crate) fn event_count(&self) -> usize {
        self.queue().events
    }

    /// Messages waiting, heartbeat included.
    pub(crate) fn len(&self) -> usize {
        self.queue().entries.len()
    }

    fn complete(&self, seq: u64) {
        let mut q = self.queue();
        q.in_flight = None;
        if q.entries.front().is_some_and(|e| e.seq == seq)
            && let Some(done) = q.entries.pop_front()
            && !is_heartbeat(&done.message)
        {
            q.events -= 1;
        }
    }

    /// Delivers forever; `after` runs after each message leaves the queue (delivered or
    /// rejected), e.g. to persist the shorter queue.
    pub(crate) async fn run<F, Fut>(&self, mut after: F)
    where
        F: FnMut(NodeMessage) -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut backoff = self.backoff.clone();
        let mut failures: u64 = 0;
        loop {
            let next = {
                let mut q = self.queue();
                let front = q.entries.front().map(|e| (e.seq, e.message.clone()));
                q.in_flight = front.as_ref().map(|(seq, _)| *seq);
                front
            };
            let Some((seq, message)) = next else {
                self.wake.notified().await;
                continue;
            };
            let heartbeat = is_heartbeat(&message);
            let result = match tokio::time::timeout(PUBLISH_TIMEOUT, self.panel.publish(self.node, message.clone()))
                .await
            {
                Ok(result) => result,
                Err(_) => {
                    Err(TransportError::Unreachable("panel".into(), format!("no answer within {PUBLISH_TIMEOUT:?}")))
                }
            };
            match result {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(failures, "panel reachable again; delivering queued messages");
                    }
                    failures = 0;
                    backoff.reset();
                    Counters::bump(if heartbeat { &self.counters.heartbeats_sent } else { &self.counters.events_sent });
                    self.complete(seq);
                    after(message).await;
                }
                Err(TransportError::NoPanel) => {
                    tracing::trace!(?message, "no panel; message dropped");
                    Counters::bump(&self.counters.messages_dropped);
                    self.complete(seq);
                    after(message).await;
                }
                Err(error) if is_permanent(&error) => {
                    tracing::error!(%error, ?message, "the panel refused a message as invalid; skipping it");
                    Counters::bump(&self.counters.messages_rejected);
                    self.complete(seq);
                    after(message).await;
                }
                Err(error) => {
                    // Not in flight while waiting, so a newer heartbeat may replace this one.
                    self.queue().in_flight = None;
                    Counters::bump(&self.counters.publish_failures);
                    if heartbeat {
                        Counters::bump(&self.counters.heartbeat_failures);
                    }
                    let delay = backoff.next_delay();
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(%error, queued = self.len(), "panel unreachable; queueing messages and retrying");
                    } else {
                        tracing::debug!(%error, failures, ?delay, "panel still unreachable");
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use chrono::Utc;
    use nexus_core::ids::ServerId;
    use nexus_core::lifecycle::{LifecycleEvent, ServerState, Trigger};
    use nexus_core::transport::Heartbeat;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::mpsc;
    use tokio::time::Instant;

    /// Fails the first `fail` attempts (or those of one rejected server), then records.
    struct TestPanel {
        fail: AtomicUsize,
        reject: Option<ServerId>,
        attempts: Mutex<Vec<Instant>>,
        delivered: mpsc::UnboundedSender<NodeMessage>,
    }

    #[async_trait]
    impl PanelTransport for TestPanel {
        async fn publish(&self, _node: NodeId, message: NodeMessage) -> Result<(), TransportError> {
            self.attempts.lock().unwrap().push(Instant::now());
            if let (Some(reject), NodeMessage::Lifecycle(e)) = (self.reject, &message)
                && e.server == reject
            {
                return Err(TransportError::Rejected { status: 422, message: "bad".into() });
            }
            if self.fail.load(Ordering::SeqCst) > 0 {
                self.fail.fetch_sub(1, Ordering::SeqCst);
                return Err(TransportError::Unreachable("panel".into(), "down".into()));
            }
            self.delivered.send(message).unwrap();
            Ok(())
        }
    }

    fn event(server: ServerId, n: i64) -> NodeMessage {
        NodeMessage::Lifecycle(LifecycleEvent {
            server,
            from: ServerState::Stopped,
            to: ServerState::Starting,
            trigger: Trigger::Start,
            at: chrono::DateTime::from_timestamp(n, 0).unwrap(),
        })
    }

    fn heartbeat(n: i64) -> NodeMessage {
        NodeMessage::Heartbeat(Heartbeat {
            node: NodeId(uuid::Uuid::nil()),
            at: chrono::DateTime::from_timestamp(n, 0).unwrap_or_else(Utc::now),
            version: "t".into(),
            servers: vec![],
        })
    }

    fn setup(
        fail: usize,
        reject: Option<ServerId>,
    ) -> (Arc<Outbox>, Arc<TestPanel>, mpsc::UnboundedReceiver<NodeMessage>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let panel =
            Arc::new(TestPanel { fail: AtomicUsize::new(fail), reject, attempts: Mutex::new(vec![]), delivered: tx });
        let outbox = Arc::new(Outbox::new(
            NodeId::new(),
            panel.clone(),
            vec![],
            Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF),
            Arc::new(Counters::default()),
        ));
        (outbox, panel, rx)
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
        let delays: Vec<u64> = (0..10).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(250));
    }

    #[tokio::test(start_paused = true)]
    async fn outage_then_recovery_delivers_everything_in_order() {
        let (outbox, panel, mut rx) = setup(6, None);
        let server = ServerId::new();
        let runner = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.run(|_| async {}).await }
        });
        let sent: Vec<NodeMessage> = (0..5).map(|n| event(server, n)).collect();
        for m in &sent {
            outbox.push(m.clone());
        }
        // Events pushed during the outage line up behind.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let late = event(server, 99);
        outbox.push(late.clone());
        let mut got = Vec::new();
        for _ in 0..6 {
            got.push(rx.recv().await.unwrap());
        }
        let mut expected = sent.clone();
        expected.push(late);
        assert_eq!(got, expected);
        assert_eq!(outbox.len(), 0);
        assert_eq!(outbox.event_count(), 0);
        assert_eq!(outbox.counters.publish_failures.load(Ordering::Relaxed), 6);
        assert_eq!(outbox.counters.events_sent.load(Ordering::Relaxed), 6);

        // Retries of the first message were spaced by the doubling backoff.
        let attempts = panel.attempts.lock().unwrap().clone();
        let gaps: Vec<u128> = attempts.windows(2).take(6).map(|w| (w[1] - w[0]).as_millis()).collect();
        assert_eq!(gaps, [250, 500, 1000, 2000, 4000, 8000]);
        runner.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_newest_heartbeat_waits_behind_the_events() {
        let (outbox, _panel, _rx) = setup(usize::MAX, None);
        let server = ServerId::new();
        outbox.push(heartbeat(1));
        outbox.push(event(server, 1));
        outbox.push(heartbeat(2));
        outbox.push(event(server, 2));
        outbox.push(heartbeat(3));
        let queued: Vec<NodeMessage> = outbox.queue().entries.iter().map(|e| e.message.clone()).collect();
        assert_eq!(queued, vec![event(server, 1), event(server, 2), heartbeat(3)]);
        assert_eq!(outbox.pending_events(), vec![event(server, 1), event(server, 2)]);
        assert_eq!(outbox.event_count(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_invalid_message_is_skipped_not_retried_forever() {
        let bad = ServerId::new();
        let good = ServerId::new();
        let (outbox, _panel, mut rx) = setup(0, Some(bad));
        let runner = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.run(|_| async {}).await }
        });
        outbox.push(event(good, 1));
        outbox.push(event(bad, 2));
        outbox.push(event(good, 3));
        assert_eq!(rx.recv().await.unwrap(), event(good, 1));
        assert_eq!(rx.recv().await.unwrap(), event(good, 3));
        assert_eq!(outbox.counters.messages_rejected.load(Ordering::Relaxed), 1);
        runner.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn restored_messages_go_first() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let panel = Arc::new(TestPanel {
            fail: AtomicUsize::new(0),
            reject: None,
            attempts: Mutex::new(vec![]),
            delivered: tx,
        });
        let server = ServerId::new();
        let outbox = Arc::new(Outbox::new(
            NodeId::new(),
            panel,
            vec![event(server, 1), event(server, 2)],
            Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF),
            Arc::new(Counters::default()),
        ));
        outbox.push(event(server, 3));
        let runner = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.run(|_| async {}).await }
        });
        for n in 1..=3 {
            assert_eq!(rx.recv().await.unwrap(), event(server, n));
        }
        runner.abort();
    }
}
