//! What a caller asks for and what it gets back.

use crate::ids::{LocationId, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// How to rank the nodes that can take a server.
///
/// Memory is the ranked dimension: it is the resource game servers run out of first, and the
/// one Pterodactyl-style panels book most strictly. Disk, CPU and allocations are constraints
/// only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Best fit: the node with the least free memory that still fits. Fills nodes up so that
    /// fewer nodes are in use and large gaps stay free for large servers.
    #[default]
    BinPack,
    /// Worst fit: the node with the most free memory. Spreads load and blast radius.
    Spread,
}

/// Settings of a [`ScoringPlacement`](super::ScoringPlacement).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlacementConfig {
    /// Strategy used when a request does not name one.
    pub strategy: Strategy,
    /// Seed of the tie-break hash: equal inputs and seed give equal decisions.
    pub seed: u64,
}

/// A request to place one new server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementRequest {
    /// Memory to book, MiB.
    pub memory_mb: u64,
    /// Disk to book, MiB.
    pub disk_mb: u64,
    /// CPU to book, percent of one core.
    pub cpu_percent: u64,
    /// Tags the node must carry (a subset of [`Node::tags`](crate::model::Node::tags)).
    #[serde(default)]
    pub required_tags: BTreeSet<String>,
    /// Only nodes in this location; `None` accepts any location.
    #[serde(default)]
    pub location: Option<LocationId>,
    /// Free allocations the server needs on the node; at least one (its primary).
    #[serde(default = "one")]
    pub allocations: u64,
    /// Overrides the configured [`Strategy`] for this request.
    #[serde(default)]
    pub strategy: Option<Strategy>,
}

fn one() -> u64 {
    1
}

impl Default for PlacementRequest {
    fn default() -> Self {
        Self::new(0, 0, 0)
    }
}

impl PlacementRequest {
    /// A request for the given resources and one allocation, any node.
    pub fn new(memory_mb: u64, disk_mb: u64, cpu_percent: u64) -> Self {
        Self {
            memory_mb,
            disk_mb,
            cpu_percent,
            required_tags: BTreeSet::new(),
            location: None,
            allocations: 1,
            strategy: None,
        }
    }

    /// Adds a required tag.
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.required_tags.insert(tag.into());
        self
    }

    /// Restricts the request to one location.
    pub fn in_location(mut self, location: LocationId) -> Self {
        self.location = Some(location);
        self
    }

    /// Sets how many allocations the server needs.
    pub fn with_allocations(mut self, allocations: u64) -> Self {
        self.allocations = allocations;
        self
    }

    /// Overrides the strategy.
    pub fn with_strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = Some(strategy);
        self
    }

    /// What placing this request books on the chosen node.
    pub fn resources(&self) -> Resources {
        Resources {
            memory_mb: self.memory_mb,
            disk_mb: self.disk_mb,
            cpu_percent: self.cpu_percent,
            allocations: self.allocations,
        }
    }
}

/// Resources one server books on its node: what [`commit`](super::Placement::commit) adds and
/// [`release`](super::Placement::release) gives back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    /// Memory, MiB.
    pub memory_mb: u64,
    /// Disk, MiB.
    pub disk_mb: u64,
    /// CPU, percent of one core.
    pub cpu_percent: u64,
    /// Allocations taken from the node's free pool.
    pub allocations: u64,
}

/// The node chosen for a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementDecision {
    /// The chosen node.
    pub node: NodeId,
    /// Its location.
    pub location: Option<LocationId>,
    /// The strategy that ranked it.
    pub strategy: Strategy,
    /// Memory left under the node's limit once the server is booked, MiB; `None` when the
    /// node's memory is not checked.
    pub memory_left_mb: Option<u64>,
    /// Index entries and nodes looked at to reach the decision: a cost indicator, useful to
    /// spot requests that hit the slow paths described in the [module docs](super).
    pub examined: u64,
}
