//! Node → panel messages, applied idempotently and only from the node a server lives on.
//!
//! Nodes deliver at least once and in order per server (their outbox retries until the panel
//! answers), so the same event can arrive twice, also after a panel or node restart. An event
//! is applied when the stored state is the event's `from`; if the server already went through
//! it (the same transition at the same instant is in its history) it changes nothing; any
//! other mismatch is reported, never forced. A server that
//! reaches `Destroyed` is removed from the store with its allocations; a late duplicate of
//! that event then names an unknown server and changes nothing.
//!
//! Heartbeats and lifecycle events are written by group commit (`group_commit.rs`):
//! concurrent messages share one store transaction (a batch of heartbeats is one
//! [`record_heartbeats`](nexus_core::store::NodeRepo::record_heartbeats), a batch of events
//! one [`apply_node_events`](nexus_core::store::ServerRepo::apply_node_events)), and each is
//! answered once its batch is written.

use crate::group_commit::{GroupCommit, Refused};
use crate::{ControlError, ControlPlane};
use chrono::Utc;
use nexus_core::ids::NodeId;
use nexus_core::lifecycle::LifecycleEvent;
use nexus_core::lifecycle::ServerState;
use nexus_core::model::{NodeStatus, Server};
use nexus_core::placement::{Placement, PlacementRequest};
use nexus_core::store::{EventOutcome, HeartbeatRecorded, Store, StoreError};
use nexus_core::transport::NodeMessage;
use std::collections::HashMap;
use std::sync::Arc;

/// Events of a server's history searched for a duplicate.
const HISTORY: u64 = 50;

/// What ingesting one message did.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Ingested {
    /// A backup's or a restore's outcome, recorded.
    Backup,
    /// A heartbeat: the node is online, seen now.
    Heartbeat,
    /// The first heartbeat after the node was offline (or had never reported): it is online
    /// again and was reconciled.
    Returned(crate::reconcile::Reconciled),
    /// The event moved the server; it is now this.
    Transitioned(Box<Server>),
    /// The server reached `Destroyed` on its node: its row and allocations are gone.
    Removed(nexus_core::ids::ServerId),
    /// The event was applied before; nothing changed.
    AlreadyApplied,
    /// Not applied, and why (another node's server, an unknown server, a state that does not
    /// match): left for reconciliation with the node's list.
    Ignored(String),
}

/// Heartbeats written together: node → what it was before (`None`: no such node).
pub(crate) type HeartbeatBatches = GroupCommit<NodeId, Result<Option<HeartbeatRecorded>, StoreError>>;
/// Lifecycle events applied together: (sender, event) → outcome.
pub(crate) type EventBatches = GroupCommit<(NodeId, LifecycleEvent), Result<EventOutcome, StoreError>>;

/// Heartbeats per transaction at most (1,000 nodes at one a second fit in two).
const HEARTBEAT_BATCH: usize = 512;
/// Lifecycle events per transaction at most.
const EVENT_BATCH: usize = 256;
/// Event batches written at once: one fills while the other commits.
const EVENT_WORKERS: usize = 2;

/// Heartbeats stamped with the panel's clock when their batch is written, not the node's: a
/// node with a clock running ahead must not stay online after it falls silent.
pub(crate) fn heartbeat_batches(store: Arc<dyn Store>) -> Arc<HeartbeatBatches> {
    GroupCommit::new(
        HEARTBEAT_BATCH,
        1,
        Arc::new(move |nodes: Vec<NodeId>| {
            let store = Arc::clone(&store);
            Box::pin(async move {
                match store.record_heartbeats(&nodes, Utc::now()).await {
                    Ok(recorded) => {
                        let mut by_node: HashMap<NodeId, HeartbeatRecorded> =
                            recorded.into_iter().map(|r| (r.node, r)).collect();
                        // A node's second heartbeat in one batch (a retry) finds it online and
                        // known: only the first may start a reconciliation.
                        nodes
                            .iter()
                            .map(|node| {
                                let recorded = by_node.get(node).copied();
                                if let Some(seen) = by_node.get_mut(node) {
                                    *seen = HeartbeatRecorded::new(*node, NodeStatus::Online, false);
                                }
                                Ok(recorded)
                            })
                            .collect()
                    }
                    Err(e) => nodes.iter().map(|_| Err(e.clone())).collect(),
                }
            })
        }),
    )
}

pub(crate) fn event_batches(store: Arc<dyn Store>) -> Arc<EventBatches> {
    GroupCommit::new(
        EVENT_BATCH,
        EVENT_WORKERS,
        Arc::new(move |events: Vec<(NodeId, LifecycleEvent)>| {
            let store = Arc::clone(&store);
            Box::pin(async move {
                match store.apply_node_events(&events).await {
                    Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
                    Err(e) => events.iter().map(|_| Err(e.clone())).collect(),
                }
            })
        }),
    )
}

/// A message refused by a full queue or lost with its batch: the node delivers it again.
fn refused(what: &str, refused: Refused) -> ControlError {
    ControlError::Busy(match refused {
        Refused::Full => format!("too many {what} waiting to be written; deliver it again"),
        Refused::Lost => format!("the {what} batch failed; deliver it again"),
    })
}

/// Messages of one node being ingested at once, at most; past it a message is answered 503.
pub const MAX_IN_FLIGHT_PER_NODE: usize = 16;

/// Counts each node's messages being ingested, refusing past [`MAX_IN_FLIGHT_PER_NODE`].
#[derive(Default)]
pub(crate) struct PerNode {
    counts: std::sync::Mutex<HashMap<NodeId, usize>>,
}

/// One message of a node counted in [`PerNode`] until dropped.
pub(crate) struct Slot<'a> {
    of: &'a PerNode,
    node: NodeId,
}

impl PerNode {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, usize>> {
        self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn enter(&self, node: NodeId) -> Result<Slot<'_>, ControlError> {
        let mut counts = self.lock();
        let count = counts.entry(node).or_default();
        if *count >= MAX_IN_FLIGHT_PER_NODE {
            return Err(ControlError::Busy(format!(
                "node {node} has {MAX_IN_FLIGHT_PER_NODE} messages being ingested; deliver one at a time"
            )));
        }
        *count += 1;
        Ok(Slot { of: self, node })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut counts = self.of.lock();
        if let Some(count) = counts.get_mut(&self.node) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.node);
            }
        }
    }
}

/// Heartbeat intervals between two reconciliations of a node that stays online: suspensions,
/// deletions and creates that could not be delivered while it was briefly unreachable (but
/// not silent long enough to go offline) are retried at least this often.
pub const RECONCILE_EVERY: u32 = 30;

impl ControlPlane {
    /// Whether `node` is due for reconciliation (first heartbeat since this process started,
    /// or [`RECONCILE_EVERY`] intervals since the last); marks it done.
    fn reconcile_due(&self, node: NodeId) -> bool {
        let every = self.config.heartbeat_interval.saturating_mul(RECONCILE_EVERY);
        let now = std::time::Instant::now();
        let mut reconciled = self.reconciled_lock();
        let due = reconciled.get(&node).is_none_or(|at| now.saturating_duration_since(*at) >= every);
        if due {
            reconciled.insert(node, now);
        }
        due
    }

    fn reconciled_lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<NodeId, std::time::Instant>> {
        self.reconciled.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies one message `from` a node (whose token the caller checked).
    pub async fn ingest(&self, from: NodeId, message: NodeMessage) -> Result<Ingested, ControlError> {
        // A node delivers one message at a time; one sending many at once (a bug, a replay)
        // must not fill the queues every other node shares.
        let _slot = self.ingesting.enter(from)?;
        match message {
            NodeMessage::Heartbeat(beat) => {
                if beat.node != from {
                    return Ok(Ingested::Ignored(format!("a heartbeat of node {} sent by {from}", beat.node)));
                }
                let recorded = self.heartbeat_batches.submit(from).await.map_err(|e| refused("heartbeats", e))??;
                let Some(recorded) = recorded else {
                    // Deleted (through another panel process, whose deletion this process's
                    // token cache has not seen): the node's next message is checked against
                    // the store again and refused.
                    self.node_tokens.forget(from);
                    return Err(StoreError::not_found("node", from).into());
                };
                let (first_contact, returning) = (recorded.first, recorded.was != NodeStatus::Online);
                let due = self.reconcile_due(from);
                if let Err(e) = self.placement().set_online(from, true) {
                    tracing::debug!(node = %from, error = %e, "heartbeat of a node placement does not know");
                }
                if returning || due {
                    // Back from silence, first contact, first heartbeat since this panel
                    // started, or simply time: bring its servers in line. A failure leaves it
                    // due, so the next heartbeat tries again.
                    let reconciled = match self.reconcile(from, &beat.servers, first_contact).await {
                        Ok(reconciled) => reconciled,
                        Err(e) => {
                            self.reconciled_lock().remove(&from);
                            return Err(e);
                        }
                    };
                    if returning {
                        return Ok(Ingested::Returned(reconciled));
                    }
                }
                Ok(Ingested::Heartbeat)
            }
            NodeMessage::Lifecycle(event) => self.apply_event(from, event).await,
            NodeMessage::Backup(report) => {
                let (server, backup) = (report.server, report.backup);
                match self.ingest_backup_report(from, report).await? {
                    true => Ok(Ingested::Backup),
                    false => Ok(Ingested::Ignored(format!("backup {backup} of server {server}: not node {from}'s"))),
                }
            }
        }
    }

    async fn apply_event(&self, from: NodeId, event: LifecycleEvent) -> Result<Ingested, ControlError> {
        let outcome = self.event_batches.submit((from, event.clone())).await.map_err(|e| refused("events", e))?;
        let server = match outcome {
            Ok(EventOutcome::Applied(server)) if server.state == ServerState::Destroyed => {
                self.remove_destroyed(&server).await?;
                return Ok(Ingested::Removed(server.id));
            }
            Ok(EventOutcome::Applied(server)) => return Ok(Ingested::Transitioned(server)),
            Ok(EventOutcome::UnknownServer) => {
                return Ok(Ingested::Ignored(format!("unknown server {}", event.server)));
            }
            Ok(EventOutcome::Refused(server)) => server,
            // Answered as a failure, so the node delivers the event again. (A store may also
            // report it as a version conflict of the whole batch.)
            Ok(EventOutcome::Contended) | Err(StoreError::VersionConflict { .. }) => {
                return Err(ControlError::Busy(format!("server {} kept changing under the event", event.server)));
            }
            // Acknowledged, not refused: the node's outbox is ordered, and an event it had to
            // deliver again and again would hold back every later message of the node.
            Ok(EventOutcome::Unreadable(reason)) => {
                tracing::warn!(server = %event.server, %reason, "an event of a server the store cannot read");
                return Ok(Ingested::Ignored(format!("server {} cannot be read: {reason}", event.server)));
            }
            // An outcome this version does not know: left for reconciliation.
            Ok(other) => return Ok(Ingested::Ignored(format!("server {}: {other:?}", event.server))),
            // The store failed: answered as a failure, so the node delivers the event again.
            Err(e) => return Err(e.into()),
        };
        if server.node != from {
            return Ok(Ingested::Ignored(format!("server {} is not on node {from}", server.id)));
        }
        if server.state == ServerState::Destroyed {
            // A cleanup that failed after the transition: finish it now (the node retries
            // the event until the panel answers).
            self.remove_destroyed(&server).await?;
            return Ok(Ingested::Removed(server.id));
        }
        let history = self.store.server_events(server.id, HISTORY).await?;
        if history.contains(&event) {
            return Ok(Ingested::AlreadyApplied);
        }
        Ok(Ingested::Ignored(format!(
            "server {} is {:?}; the event goes from {:?} to {:?}",
            server.id, server.state, event.from, event.to
        )))
    }

    /// A server gone from its node: the row goes, its allocations are free again, and
    /// placement stops booking it.
    pub(crate) async fn remove_destroyed(&self, server: &Server) -> Result<(), ControlError> {
        self.forget_start_after_install(server.id);
        // Released from placement only by the call that removed the row: a duplicate of the
        // `Destroyed` event (in the same batch, or from another panel) must not free the
        // server's room twice.
        let removed_now = match self.store.delete_server(server.id).await {
            Ok(()) => true,
            Err(StoreError::NotFound { .. }) => false,
            Err(e) => return Err(e.into()),
        };
        // Its number stays spent; its external id and kept attributes go with it.
        self.forget_server_ref(server.id).await;
        let request = PlacementRequest::new(server.limits.memory_mb, server.limits.disk_mb, server.limits.cpu_percent)
            .with_allocations(1 + server.extra_allocations.len() as u64);
        if removed_now && let Err(e) = self.placement().release(server.node, &request.resources()) {
            tracing::debug!(node = %server.node, error = %e, "release on a node placement does not know");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_node_has_at_most_its_share_of_messages_in_flight_and_others_are_not_affected() {
        let per_node = PerNode::default();
        let (busy, other) = (NodeId::new(), NodeId::new());
        let mut held: Vec<Slot<'_>> = (0..MAX_IN_FLIGHT_PER_NODE).map(|_| per_node.enter(busy).unwrap()).collect();
        let refused = per_node.enter(busy).err().expect("one past the bound is refused");
        assert_eq!(refused.status_code(), 503, "the node retries: {refused}");
        let _other = per_node.enter(other).expect("another node is not affected");
        held.pop();
        let _again = per_node.enter(busy).expect("a finished message frees its slot");
        drop(held);
        assert_eq!(per_node.lock().get(&busy), Some(&1), "counts follow the slots");
    }
}
