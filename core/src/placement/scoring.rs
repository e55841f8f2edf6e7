//! [`ScoringPlacement`]: the index-backed [`Placement`].

use super::Placement;
use super::error::PlacementError;
use super::index::NodeIndex;
use super::request::{PlacementConfig, PlacementDecision, PlacementRequest, Resources};
use crate::ids::NodeId;
use crate::model::{Node, NodeStatus};
use crate::store::NodeUsage;

/// Ranks nodes by free memory under a [`Strategy`](super::Strategy), over an index kept up to date
/// incrementally. See the [module docs](super) for the design and its costs.
#[derive(Clone, Debug)]
pub struct ScoringPlacement {
    config: PlacementConfig,
    pub(super) index: NodeIndex,
}

impl ScoringPlacement {
    /// Builds the index from the nodes and their booked usage. O(n log n).
    ///
    /// Usage rows are matched to nodes by id; rows naming no node or an unknown node are
    /// ignored, and a later row for the same node replaces an earlier one. A node without a
    /// row starts empty, including zero free allocations, so it takes no server until
    /// [`set_usage`](Placement::set_usage) reports its allocations.
    pub fn new(nodes: &[Node], usage: &[NodeUsage], config: PlacementConfig) -> Self {
        let mut index = NodeIndex::new(config.seed);
        for node in nodes {
            index.upsert(node);
        }
        for row in usage {
            if let Some(node) = row.node {
                index.set_usage(&node, row);
            }
        }
        Self { config, index }
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &PlacementConfig {
        &self.config
    }

    /// Number of nodes known, placeable or not.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True if no node is known.
    pub fn is_empty(&self) -> bool {
        self.index.len() == 0
    }

    /// The usage currently booked on a node, as maintained by commits, releases and
    /// [`set_usage`](Placement::set_usage).
    pub fn usage(&self, node: NodeId) -> Option<NodeUsage> {
        self.index.slot(&node).map(|slot| slot.usage)
    }

    /// Records a heartbeat outcome. O(log n).
    pub fn set_status(&mut self, node: NodeId, status: NodeStatus) -> Result<(), PlacementError> {
        self.index.update(&node, |slot| slot.status = status).ok_or(PlacementError::UnknownNode(node))
    }

    /// Shorthand for [`set_status`](Self::set_status) with [`NodeStatus::Online`] or
    /// [`NodeStatus::Offline`].
    pub fn set_online(&mut self, node: NodeId, online: bool) -> Result<(), PlacementError> {
        self.set_status(node, if online { NodeStatus::Online } else { NodeStatus::Offline })
    }

    /// Puts a node into or out of maintenance. O(log n).
    pub fn set_maintenance(&mut self, node: NodeId, maintenance: bool) -> Result<(), PlacementError> {
        self.index.update(&node, |slot| slot.maintenance = maintenance).ok_or(PlacementError::UnknownNode(node))
    }
}

impl Placement for ScoringPlacement {
    fn decide(&self, request: &PlacementRequest) -> Result<PlacementDecision, PlacementError> {
        if request.allocations == 0 {
            return Err(PlacementError::NoAllocationRequested);
        }
        let strategy = request.strategy.unwrap_or(self.config.strategy);
        let query = self.index.query(request, strategy);
        match self.index.search(&query) {
            Some(hit) => Ok(PlacementDecision {
                node: hit.slot.id,
                location: hit.slot.location,
                strategy,
                memory_left_mb: (hit.slot.memory_limit != u64::MAX).then(|| {
                    hit.slot.memory_limit.saturating_sub(hit.slot.usage.memory_mb.saturating_add(request.memory_mb))
                }),
                examined: hit.examined,
            }),
            None => Err(PlacementError::NoCapacity(self.index.diagnose(&query))),
        }
    }

    fn commit(&mut self, node: NodeId, resources: &Resources) -> Result<(), PlacementError> {
        self.index.commit(&node, resources).then_some(()).ok_or(PlacementError::UnknownNode(node))
    }

    fn release(&mut self, node: NodeId, resources: &Resources) -> Result<(), PlacementError> {
        self.index.release(&node, resources).then_some(()).ok_or(PlacementError::UnknownNode(node))
    }

    fn upsert_node(&mut self, node: &Node) {
        self.index.upsert(node);
    }

    fn remove_node(&mut self, node: NodeId) -> bool {
        self.index.remove(&node)
    }

    fn set_usage(&mut self, usage: &NodeUsage) -> Result<(), PlacementError> {
        let node = usage.node.ok_or(PlacementError::UsageWithoutNode)?;
        self.index.set_usage(&node, usage).then_some(()).ok_or(PlacementError::UnknownNode(node))
    }
}

impl Default for ScoringPlacement {
    fn default() -> Self {
        Self::new(&[], &[], PlacementConfig::default())
    }
}
