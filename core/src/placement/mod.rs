//! Placement: choosing the node a new server goes to.
//!
//! [`Placement`] is the small interface the panel talks to; [`ScoringPlacement`] is the
//! implementation shipped with Nexus.
//!
//! # Rules
//!
//! A node can take a [`PlacementRequest`] when it is online and not in maintenance
//! ([`Node::accepts_placements`]), carries every required tag, is in the requested location
//! (if any), has at least `allocations` free allocations, and for memory, disk and CPU
//! `booked + requested <= limit`, where `limit` is [`Overallocation::limits`] of the node's
//! capacity (an unchecked resource never rejects).
//!
//! Among those, the [`Strategy`] ranks by free memory (limit minus booked): bin-pack takes the
//! fullest node that fits, spread the emptiest. Equal free memory is broken by a SplitMix64
//! hash of the node id and [`PlacementConfig::seed`], then by the id itself, so the same nodes,
//! usage, request and seed always give the same node. When nothing fits, [`PlacementError`]
//! counts the nodes each check rejected.
//!
//! # Index and costs
//!
//! [`ScoringPlacement`] keeps the nodes that can take any server (online, not in maintenance,
//! at least one free allocation) in search trees keyed by `(free memory, tie-break, id)`: one
//! for the whole cluster and one per location, so a location request only sees its location.
//! Each subtree also records the most free disk, free CPU and free allocations of any node in
//! it and the union of its tags (the first 64 distinct tags), so a search skips subtrees that
//! cannot hold the request at all. Bin-pack walks up from the requested memory, spread walks
//! down to it, and the first node passing every check wins. Costs, for `n` nodes in the tree:
//!
//! | operation | cost |
//! |---|---|
//! | build ([`ScoringPlacement::new`]) | O(n log n) |
//! | [`decide`](Placement::decide), success | O(log n) when the subtree summaries prune; see below |
//! | [`decide`](Placement::decide), failure | O(n): every node is checked to fill [`Rejections`] |
//! | [`commit`](Placement::commit), [`release`](Placement::release), [`set_usage`](Placement::set_usage), [`set_status`](ScoringPlacement::set_status), [`set_maintenance`](ScoringPlacement::set_maintenance) | O(log n) expected |
//! | [`upsert_node`](Placement::upsert_node), [`remove_node`](Placement::remove_node) | O((1 + t) log n) expected, `t` tags |
//!
//! Nodes short of memory are never visited. The summaries are per-resource maxima, so they
//! only prove that a subtree is hopeless; the worst cases are when many well-ranked nodes each
//! fail a different check:
//!
//! - *Mixed shortages.* A subtree whose most free disk and most free CPU belong to different
//!   nodes is entered even if no single node has both; in a cluster where every node is short
//!   of something a decision degrades towards O(n). On the benchmark cluster (10,000 nodes,
//!   100,000 servers, mixed shapes) a decision visits about 130 tree entries with bin-pack and
//!   400 with spread.
//! - *Rare tags.* Tags beyond the first 64 distinct ones are not summarised. If the rarest
//!   required tag is held by `k` nodes with `k² <= n`, its `k` holders are checked directly
//!   instead of walking the tree (O(k)).
//! - *A full cluster.* Every failed decision is O(n) for its diagnostics, about 20 µs at
//!   10,000 nodes.
//!
//! [`PlacementDecision::examined`] reports the entries visited, which makes these cases
//! visible.
//!
//! # Concurrency
//!
//! Decisions take `&self`, bookings `&mut self`. To avoid booking a node twice, hold the
//! placement behind a lock and use [`Placement::place`] (decide and commit in one step), then
//! [`release`](Placement::release) if creating the server fails afterwards.
//!
//! [`Node::accepts_placements`]: crate::model::Node::accepts_placements
//! [`Overallocation::limits`]: crate::model::Overallocation::limits

mod error;
mod hash;
mod index;
mod ordered;
mod request;
mod scoring;
mod tags;
#[cfg(test)]
mod tests;

pub use error::{PlacementError, Rejections};
pub use index::fits;
pub use request::{PlacementConfig, PlacementDecision, PlacementRequest, Resources, Strategy};
pub use scoring::ScoringPlacement;

use crate::ids::NodeId;
use crate::model::Node;
use crate::store::NodeUsage;

/// Chooses the node for a new server and keeps track of what is booked where.
///
/// Implementations hold their own view of nodes and usage; the caller feeds it changes
/// (node edits, heartbeats, servers created or deleted) and asks for decisions.
///
/// # Contract
///
/// * `decide` never books; it returns a node that accepts placements (online, not in
///   maintenance), carries every required tag, is in the requested location, has the free
///   allocations and fits memory, disk and CPU within its overallocation; otherwise
///   [`PlacementError::NoCapacity`] counts, per reason, why none did.
/// * The same nodes, usage, request and configuration give the same decision (ties broken by
///   a seeded hash, never by iteration order or time).
/// * `commit`/`release` of an unknown node are errors; `release` never drives usage below
///   zero.
///
/// `core/src/placement/tests.rs` checks [`ScoringPlacement`] against a brute-force oracle.
///
/// # Example
///
/// ```
/// use nexus_core::ids::NodeId;
/// use nexus_core::model::{Node, NodeCapacity, NodeStatus, Overallocation};
/// use nexus_core::placement::{Placement, PlacementConfig, PlacementRequest, ScoringPlacement};
/// use nexus_core::store::NodeUsage;
/// use std::collections::BTreeSet;
///
/// let node = |name: &str, memory_mb| Node {
///     id: NodeId::new(),
///     name: name.into(),
///     fqdn: format!("{name}.example.com"),
///     daemon_port: 8080,
///     token_hash: String::new(),
///     location: None,
///     tags: BTreeSet::new(),
///     capacity: NodeCapacity { memory_mb, disk_mb: 100_000, cpu_percent: 800 },
///     overallocation: Overallocation::default(),
///     maintenance: false,
///     status: NodeStatus::Online,
///     last_heartbeat: None,
/// };
/// let (small, big) = (node("small", 4096), node("big", 65_536));
/// // What the store reports as booked: nothing yet, ten free ports each.
/// let usage = |node: &Node| NodeUsage { node: Some(node.id), free_allocations: 10, ..NodeUsage::default() };
/// let mut placement =
///     ScoringPlacement::new(&[small.clone(), big.clone()], &[usage(&small), usage(&big)], PlacementConfig::default());
/// // Bin packing: the fullest node that still fits.
/// assert_eq!(placement.place(&PlacementRequest::new(2048, 10_000, 100))?.node, small.id);
/// // Too big for `small` now: only `big` fits.
/// assert_eq!(placement.place(&PlacementRequest::new(4096, 10_000, 100))?.node, big.id);
/// # Ok::<(), nexus_core::placement::PlacementError>(())
/// ```
pub trait Placement: Send + Sync {
    /// The node that should take `request`, without booking anything.
    fn decide(&self, request: &PlacementRequest) -> Result<PlacementDecision, PlacementError>;

    /// Books `resources` on `node`: a server was created there. It records a fact and does
    /// not check the node still fits, so that admin overrides can be booked too.
    fn commit(&mut self, node: NodeId, resources: &Resources) -> Result<(), PlacementError>;

    /// Gives back what [`commit`](Self::commit) booked: a server was deleted or moved away.
    fn release(&mut self, node: NodeId, resources: &Resources) -> Result<(), PlacementError>;

    /// Adds a node or replaces its description (capacity, tags, location, status...),
    /// keeping its booked usage if it was already known.
    fn upsert_node(&mut self, node: &Node);

    /// Forgets a node; false if it was not known.
    fn remove_node(&mut self, node: NodeId) -> bool;

    /// Replaces the booked usage of `usage.node`, e.g. after re-reading it from the store or
    /// creating allocations on the node.
    fn set_usage(&mut self, usage: &NodeUsage) -> Result<(), PlacementError>;

    /// [`decide`](Self::decide) then [`commit`](Self::commit) the request's resources.
    fn place(&mut self, request: &PlacementRequest) -> Result<PlacementDecision, PlacementError> {
        let decision = self.decide(request)?;
        self.commit(decision.node, &request.resources())?;
        Ok(decision)
    }
}
