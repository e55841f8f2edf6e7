//! Node → panel messages, applied idempotently and only from the node a server lives on.
//!
//! Nodes deliver at least once and in order per server (their outbox retries until the panel
//! answers), so the same event can arrive twice, also after a panel or node restart. An event
//! is applied when the stored state is the event's `from`; if the server already went through
//! it (the same transition at the same instant is in its history) it changes nothing; any
//! other mismatch is reported, never forced. A server that
//! reaches `Destroyed` is removed from the store with its allocations; a late duplicate of
//! that event then names an unknown server and changes nothing.

use crate::servers::server_of;
use crate::{ControlError, ControlPlane};
use chrono::Utc;
use nexus_core::ids::NodeId;
use nexus_core::lifecycle::LifecycleEvent;
use nexus_core::lifecycle::ServerState;
use nexus_core::model::{Node, NodeStatus, Server};
use nexus_core::placement::{Placement, PlacementRequest};
use nexus_core::store::StoreError;
use nexus_core::transport::NodeMessage;

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
        self.ingest_message(from, None, message).await
    }

    /// [`ingest`](Self::ingest) with the sender's record as
    /// [`authenticate_node`](Self::authenticate_node) just read it (not read again).
    pub async fn ingest_from(&self, node: &Node, message: NodeMessage) -> Result<Ingested, ControlError> {
        self.ingest_message(node.id, Some(node), message).await
    }

    async fn ingest_message(
        &self,
        from: NodeId,
        known: Option<&Node>,
        message: NodeMessage,
    ) -> Result<Ingested, ControlError> {
        match message {
            NodeMessage::Heartbeat(beat) => {
                if beat.node != from {
                    return Ok(Ingested::Ignored(format!("a heartbeat of node {} sent by {from}", beat.node)));
                }
                let facts = |node: &Node| (node.last_heartbeat.is_none(), node.status != NodeStatus::Online);
                let (first_contact, returning) = match known {
                    Some(known) => facts(known),
                    None => facts(&self.store.get_node(from).await?),
                };
                let due = self.reconcile_due(from);
                // The panel's clock, not the node's: a node with a clock running ahead must
                // not stay online after it falls silent.
                self.store.record_heartbeat(from, Utc::now()).await?;
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
            NodeMessage::Lifecycle(event) => self.apply_event(from, &event).await,
            NodeMessage::Backup(report) => {
                let (server, backup) = (report.server, report.backup);
                match self.ingest_backup_report(from, report).await? {
                    true => Ok(Ingested::Backup),
                    false => Ok(Ingested::Ignored(format!("backup {backup} of server {server}: not node {from}'s"))),
                }
            }
        }
    }

    async fn apply_event(&self, from: NodeId, event: &LifecycleEvent) -> Result<Ingested, ControlError> {
        // One retry: a concurrent writer (a rename, a second panel) may bump the version
        // between the read and the transition.
        for _ in 0..2 {
            let server = match server_of(self.store.as_ref(), event.server).await {
                Ok(server) => server,
                Err(ControlError::UnknownServer(id)) => return Ok(Ingested::Ignored(format!("unknown server {id}"))),
                Err(e) => return Err(e),
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
            if server.state != event.from {
                let history = self.store.server_events(server.id, HISTORY).await?;
                if history.contains(event) {
                    return Ok(Ingested::AlreadyApplied);
                }
                return Ok(Ingested::Ignored(format!(
                    "server {} is {:?}; the event goes from {:?} to {:?}",
                    server.id, server.state, event.from, event.to
                )));
            }
            match self.store.transition_server(server.version, event).await {
                Ok(server) if server.state == ServerState::Destroyed => {
                    self.remove_destroyed(&server).await?;
                    return Ok(Ingested::Removed(server.id));
                }
                Ok(server) => return Ok(Ingested::Transitioned(Box::new(server))),
                Err(StoreError::VersionConflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        // Answered as a failure, so the node delivers the event again.
        Err(ControlError::Busy(format!("server {} kept changing under the event", event.server)))
    }

    /// A server gone from its node: the row goes, its allocations are free again, and
    /// placement stops booking it.
    pub(crate) async fn remove_destroyed(&self, server: &Server) -> Result<(), ControlError> {
        self.forget_start_after_install(server.id);
        match self.store.delete_server(server.id).await {
            Ok(()) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        // Its number stays spent; its external id and kept attributes go with it.
        self.forget_server_ref(server.id).await;
        let request = PlacementRequest::new(server.limits.memory_mb, server.limits.disk_mb, server.limits.cpu_percent)
            .with_allocations(1 + server.extra_allocations.len() as u64);
        if let Err(e) = self.placement().release(server.node, &request.resources()) {
            tracing::debug!(node = %server.node, error = %e, "release on a node placement does not know");
        }
        Ok(())
    }
}
