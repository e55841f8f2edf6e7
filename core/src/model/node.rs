use crate::ids::{LocationId, NodeId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A data-plane host running the node daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Identifier.
    pub id: NodeId,
    /// Display name.
    pub name: String,
    /// Where the daemon's API is reached, e.g. `node1.example.com`.
    pub fqdn: String,
    /// Daemon API port.
    pub daemon_port: u16,
    /// Hash of the bearer token the panel uses towards this node (never the token).
    pub token_hash: String,
    /// Physical or logical location.
    pub location: Option<LocationId>,
    /// Free-form labels a placement request can require (`ssd`, `eu`, `ddos-protected`).
    pub tags: BTreeSet<String>,
    /// Resources the node offers, before overallocation.
    pub capacity: NodeCapacity,
    /// How far past its capacity the node may be booked.
    pub overallocation: Overallocation,
    /// Set by an operator to stop new placements while keeping running servers.
    pub maintenance: bool,
    /// Liveness as seen by the panel.
    pub status: NodeStatus,
    /// Last heartbeat received, if any.
    pub last_heartbeat: Option<DateTime<Utc>>,
}

impl Node {
    /// True if the node accepts new servers: online and not in maintenance.
    pub fn accepts_placements(&self) -> bool {
        self.status == NodeStatus::Online && !self.maintenance
    }
}

/// Resources of a node.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCapacity {
    /// Memory in MiB.
    pub memory_mb: u64,
    /// Disk in MiB.
    pub disk_mb: u64,
    /// CPU in percent of one core (400 = four cores).
    pub cpu_percent: u64,
}

/// Per-resource overallocation in percent of capacity. `None` disables the check for that
/// resource (Pterodactyl's `-1`).
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overallocation {
    /// Extra memory allowed, percent.
    pub memory_percent: Option<u32>,
    /// Extra disk allowed, percent.
    pub disk_percent: Option<u32>,
    /// Extra CPU allowed, percent.
    pub cpu_percent: Option<u32>,
}

impl Default for Overallocation {
    fn default() -> Self {
        Self { memory_percent: Some(0), disk_percent: Some(0), cpu_percent: None }
    }
}

impl Overallocation {
    /// Effective limits: capacity scaled by the overallocation; `u64::MAX` where unchecked.
    pub fn limits(&self, capacity: &NodeCapacity) -> NodeCapacity {
        fn scale(value: u64, percent: Option<u32>) -> u64 {
            match percent {
                None => u64::MAX,
                Some(p) => value.saturating_mul(100 + u64::from(p)) / 100,
            }
        }
        NodeCapacity {
            memory_mb: scale(capacity.memory_mb, self.memory_percent),
            disk_mb: scale(capacity.disk_mb, self.disk_percent),
            cpu_percent: scale(capacity.cpu_percent, self.cpu_percent),
        }
    }
}

/// Liveness of a node as seen by the panel.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// Heartbeats arrive.
    Online,
    /// Heartbeats stopped, or the node never reported.
    Offline,
}

/// A named group of nodes (a data centre, a region).
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// Identifier.
    pub id: LocationId,
    /// Short code, unique (`fra1`).
    pub short: String,
    /// Description.
    pub long: String,
}
