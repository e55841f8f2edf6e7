//! [`InProcessTransport`]: both planes in one process, no network.

use crate::ids::NodeId;
use crate::transport::{
    NodeCommand, NodeHandler, NodeMessage, NodeResponse, NodeTransport, PanelTransport, TransportError,
};
use async_trait::async_trait;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use tokio::sync::mpsc;

/// The panel's end of an [`InProcessTransport`]: every [`NodeMessage`] published by a node,
/// in publication order, tagged with the sender.
///
/// [`recv`](mpsc::Receiver::recv) returns `None` once every transport handle is dropped and
/// the queue is drained. Dropping the inbox makes later publishes fail with
/// [`TransportError::Unreachable`].
pub type PanelInbox = mpsc::Receiver<(NodeId, NodeMessage)>;

/// Transport for a single binary that holds the panel and one or more node agents.
///
/// * Panel → node ([`NodeTransport`]): [`send`](NodeTransport::send) calls the
///   [`NodeHandler`] registered for the node directly, in the caller's task; an unknown node
///   is [`TransportError::Unreachable`].
/// * Node → panel ([`PanelTransport`]): [`publish`](PanelTransport::publish) queues the
///   message on a bounded channel read through the [`PanelInbox`] returned by
///   [`new`](Self::new). A full queue makes publishers wait (back-pressure, as a slow HTTP
///   panel would); a dropped inbox makes them fail with [`TransportError::Unreachable`].
///
/// Cloning is cheap; clones share the handlers and the queue.
#[derive(Clone)]
pub struct InProcessTransport {
    inner: Arc<Inner>,
}

struct Inner {
    handlers: RwLock<HashMap<NodeId, Arc<dyn NodeHandler>>>,
    panel: mpsc::Sender<(NodeId, NodeMessage)>,
}

impl fmt::Debug for InProcessTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessTransport").field("nodes", &self.nodes()).finish_non_exhaustive()
    }
}

impl InProcessTransport {
    /// A transport with no nodes whose panel queue holds up to `capacity` messages (at least
    /// one), and the panel's end of that queue.
    pub fn new(capacity: usize) -> (Self, PanelInbox) {
        let (panel, inbox) = mpsc::channel(capacity.max(1));
        (Self { inner: Arc::new(Inner { handlers: RwLock::new(HashMap::new()), panel }) }, inbox)
    }

    /// Routes commands for `node` to `handler`; returns the handler it replaces, if any.
    pub fn register(&self, node: NodeId, handler: Arc<dyn NodeHandler>) -> Option<Arc<dyn NodeHandler>> {
        // The map is only ever replaced entry by entry, so a panic elsewhere cannot leave it
        // half-updated; recovering from poisoning is safe.
        self.inner.handlers.write().unwrap_or_else(PoisonError::into_inner).insert(node, handler)
    }

    /// Stops routing commands to `node`; returns its handler, if it had one.
    pub fn unregister(&self, node: NodeId) -> Option<Arc<dyn NodeHandler>> {
        self.inner.handlers.write().unwrap_or_else(PoisonError::into_inner).remove(&node)
    }

    /// The nodes that currently have a handler, in id order.
    pub fn nodes(&self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> =
            self.inner.handlers.read().unwrap_or_else(PoisonError::into_inner).keys().copied().collect();
        nodes.sort();
        nodes
    }

    fn handler(&self, node: NodeId) -> Option<Arc<dyn NodeHandler>> {
        self.inner.handlers.read().unwrap_or_else(PoisonError::into_inner).get(&node).cloned()
    }
}

#[async_trait]
impl NodeTransport for InProcessTransport {
    async fn send(&self, node: NodeId, command: NodeCommand) -> Result<NodeResponse, TransportError> {
        // Cloned out so the lock is not held while the handler runs (it may re-enter us).
        let handler = self
            .handler(node)
            .ok_or_else(|| TransportError::Unreachable(format!("node {node}"), "no handler registered".into()))?;
        handler.handle(command).await
    }
}

#[async_trait]
impl PanelTransport for InProcessTransport {
    async fn publish(&self, node: NodeId, message: NodeMessage) -> Result<(), TransportError> {
        self.inner
            .panel
            .send((node, message))
            .await
            .map_err(|_| TransportError::Unreachable("panel".into(), "the panel inbox was dropped".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ServerId;
    use crate::lifecycle::ServerState;
    use crate::transport::{Heartbeat, ServerStatus};
    use chrono::Utc;
    use std::sync::Mutex;
    use std::time::Duration;

    /// Answers `ListServers` with one server and records every command.
    #[derive(Default)]
    struct FakeNode {
        server: ServerId,
        seen: Mutex<Vec<NodeCommand>>,
    }

    #[async_trait]
    impl NodeHandler for FakeNode {
        async fn handle(&self, command: NodeCommand) -> Result<NodeResponse, TransportError> {
            self.seen.lock().unwrap().push(command.clone());
            match command {
                NodeCommand::ListServers => {
                    Ok(NodeResponse::Servers(vec![ServerStatus { server: self.server, state: ServerState::Running }]))
                }
                NodeCommand::Install { .. } => Err(TransportError::Rejected { status: 409, message: "busy".into() }),
                _ => Ok(NodeResponse::Ok),
            }
        }
    }

    fn heartbeat(node: NodeId) -> NodeMessage {
        NodeMessage::Heartbeat(Heartbeat { node, at: Utc::now(), version: "test".into(), servers: vec![] })
    }

    #[tokio::test]
    async fn send_dispatches_to_the_registered_handler() {
        let (transport, _inbox) = InProcessTransport::new(8);
        let (a, b) = (NodeId::new(), NodeId::new());
        let node_a = Arc::new(FakeNode::default());
        let node_b = Arc::new(FakeNode::default());
        assert!(transport.register(a, node_a.clone()).is_none());
        assert!(transport.register(b, node_b.clone()).is_none());

        let answer = transport.send(a, NodeCommand::ListServers).await.unwrap();
        assert_eq!(
            answer,
            NodeResponse::Servers(vec![ServerStatus { server: node_a.server, state: ServerState::Running }])
        );
        let kill = NodeCommand::Power { server: node_b.server, action: crate::transport::PowerAction::Kill };
        assert_eq!(transport.send(b, kill.clone()).await.unwrap(), NodeResponse::Ok);

        assert_eq!(*node_a.seen.lock().unwrap(), vec![NodeCommand::ListServers]);
        assert_eq!(*node_b.seen.lock().unwrap(), vec![kill]);
        let mut expected = vec![a, b];
        expected.sort();
        assert_eq!(transport.nodes(), expected);
    }

    #[tokio::test]
    async fn handler_errors_pass_through_unchanged() {
        let (transport, _inbox) = InProcessTransport::new(8);
        let node = NodeId::new();
        transport.register(node, Arc::new(FakeNode::default()));
        let err = transport.send(node, NodeCommand::Install { server: ServerId::new() }).await.unwrap_err();
        assert_eq!(err, TransportError::Rejected { status: 409, message: "busy".into() });
    }

    #[tokio::test]
    async fn unknown_or_unregistered_node_is_unreachable() {
        let (transport, _inbox) = InProcessTransport::new(8);
        let node = NodeId::new();
        let err = transport.send(node, NodeCommand::ListServers).await.unwrap_err();
        assert!(matches!(err, TransportError::Unreachable(ref who, _) if who.contains(&node.to_string())), "{err:?}");

        transport.register(node, Arc::new(FakeNode::default()));
        assert!(transport.send(node, NodeCommand::ListServers).await.is_ok());
        assert!(transport.unregister(node).is_some());
        assert!(matches!(transport.send(node, NodeCommand::ListServers).await, Err(TransportError::Unreachable(..))));
        assert!(transport.unregister(node).is_none());
    }

    #[tokio::test]
    async fn register_replaces_the_previous_handler() {
        let (transport, _inbox) = InProcessTransport::new(8);
        let node = NodeId::new();
        let first = Arc::new(FakeNode::default());
        let second = Arc::new(FakeNode::default());
        transport.register(node, first.clone());
        assert!(transport.register(node, second.clone()).is_some());
        transport.send(node, NodeCommand::ListServers).await.unwrap();
        assert!(first.seen.lock().unwrap().is_empty());
        assert_eq!(second.seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn publish_delivers_in_order_with_the_sender() {
        let (transport, mut inbox) = InProcessTransport::new(8);
        let (a, b) = (NodeId::new(), NodeId::new());
        let clone = transport.clone();
        transport.publish(a, heartbeat(a)).await.unwrap();
        clone.publish(b, heartbeat(b)).await.unwrap();
        transport.publish(a, heartbeat(a)).await.unwrap();
        let senders: Vec<NodeId> =
            [inbox.recv().await, inbox.recv().await, inbox.recv().await].into_iter().map(|m| m.unwrap().0).collect();
        assert_eq!(senders, vec![a, b, a]);

        drop((transport, clone));
        assert!(inbox.recv().await.is_none(), "inbox ends once every transport handle is gone");
    }

    #[tokio::test]
    async fn full_inbox_applies_back_pressure() {
        let (transport, mut inbox) = InProcessTransport::new(0); // clamped to one slot
        let node = NodeId::new();
        transport.publish(node, heartbeat(node)).await.unwrap();
        let blocked = tokio::time::timeout(Duration::from_millis(50), transport.publish(node, heartbeat(node))).await;
        assert!(blocked.is_err(), "second publish must wait while the queue is full");

        let waiting = tokio::spawn({
            let transport = transport.clone();
            async move { transport.publish(node, heartbeat(node)).await }
        });
        assert!(inbox.recv().await.is_some());
        waiting.await.unwrap().unwrap();
        assert!(inbox.recv().await.is_some());
    }

    #[tokio::test]
    async fn publish_fails_once_the_panel_is_gone() {
        let (transport, inbox) = InProcessTransport::new(8);
        drop(inbox);
        let node = NodeId::new();
        let err = transport.publish(node, heartbeat(node)).await.unwrap_err();
        assert!(matches!(err, TransportError::Unreachable(ref who, _) if who == "panel"), "{err:?}");
    }
}
