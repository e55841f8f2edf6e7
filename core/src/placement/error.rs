//! Why a placement failed.

use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Errors of [`Placement`](super::Placement).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlacementError {
    /// The request asked for zero allocations; every server needs a primary one.
    #[error("a server needs at least one allocation")]
    NoAllocationRequested,
    /// No node satisfies the request.
    #[error("no node can take the server: {0}")]
    NoCapacity(Rejections),
    /// The node is not known to the placement index.
    #[error("node {0} is not known to placement")]
    UnknownNode(NodeId),
    /// A [`NodeUsage`](crate::store::NodeUsage) row without a node cannot be applied.
    #[error("node usage row does not name a node")]
    UsageWithoutNode,
}

/// How many nodes each check rejected.
///
/// Each node is counted once, under the first check it fails, in this order: offline,
/// maintenance, location, tags, memory, disk, cpu, allocations. So `memory: 40` means 40 nodes
/// were online, in the right location and carried the tags, but lacked memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Rejections {
    /// Nodes known to the index.
    pub nodes: u64,
    /// Not online.
    pub offline: u64,
    /// Online but in maintenance.
    pub maintenance: u64,
    /// In another location (or none, when one was requested).
    pub location: u64,
    /// Missing at least one required tag.
    pub tags: u64,
    /// Booked memory plus the request exceeds the overallocated limit.
    pub memory: u64,
    /// Same for disk.
    pub disk: u64,
    /// Same for CPU.
    pub cpu: u64,
    /// Fewer free allocations than requested.
    pub allocations: u64,
}

/// The check a node failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    Offline,
    Maintenance,
    Location,
    Tags,
    Memory,
    Disk,
    Cpu,
    Allocations,
}

impl Rejections {
    pub(crate) fn count(&mut self, reason: Reason) {
        let counter = match reason {
            Reason::Offline => &mut self.offline,
            Reason::Maintenance => &mut self.maintenance,
            Reason::Location => &mut self.location,
            Reason::Tags => &mut self.tags,
            Reason::Memory => &mut self.memory,
            Reason::Disk => &mut self.disk,
            Reason::Cpu => &mut self.cpu,
            Reason::Allocations => &mut self.allocations,
        };
        *counter += 1;
    }
}

impl fmt::Display for Rejections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nodes == 0 {
            return f.write_str("no nodes are registered");
        }
        write!(f, "{} node(s) checked", self.nodes)?;
        let reasons = [
            (self.offline, "offline"),
            (self.maintenance, "in maintenance"),
            (self.location, "in another location"),
            (self.tags, "missing a required tag"),
            (self.memory, "short of memory"),
            (self.disk, "short of disk"),
            (self.cpu, "short of cpu"),
            (self.allocations, "short of free allocations"),
        ];
        let mut first = true;
        for (count, label) in reasons.into_iter().filter(|(count, _)| *count > 0) {
            f.write_str(if first { ": " } else { ", " })?;
            write!(f, "{count} {label}")?;
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_lists_nonzero_reasons() {
        let rejections = Rejections { nodes: 10, offline: 2, memory: 7, allocations: 1, ..Rejections::default() };
        assert_eq!(
            PlacementError::NoCapacity(rejections).to_string(),
            "no node can take the server: 10 node(s) checked: 2 offline, 7 short of memory, 1 short of free allocations"
        );
        assert_eq!(Rejections::default().to_string(), "no nodes are registered");
    }
}
