//! [`NoPanel`]: the panel link of a standalone node.

use async_trait::async_trait;
use nexus_core::ids::NodeId;
use nexus_core::transport::{NodeMessage, PanelTransport, TransportError};

/// A panel link for a node without a panel: every message is refused with
/// [`TransportError::NoPanel`], which the outbox counts as dropped instead of retrying.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPanel;

#[async_trait]
impl PanelTransport for NoPanel {
    async fn publish(&self, node: NodeId, message: NodeMessage) -> Result<(), TransportError> {
        tracing::trace!(%node, ?message, "no panel configured; message dropped");
        Err(TransportError::NoPanel)
    }
}
