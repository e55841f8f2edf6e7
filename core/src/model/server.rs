use crate::ids::{AllocationId, EggId, NodeId, ServerId, UserId};
use crate::lifecycle::ServerState;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A game server: what the panel decided, the node carries out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    /// Identifier; containers are named `nexus-server-<id>`.
    pub id: ServerId,
    /// Display name.
    pub name: String,
    /// Owner.
    pub owner: UserId,
    /// Where it runs.
    pub node: NodeId,
    /// The egg it was created from.
    pub egg: EggId,
    /// Container image (one of the egg's images, or an admin override).
    pub image: String,
    /// Startup command template, `{{VAR}}` placeholders not yet rendered.
    pub startup: String,
    /// Values of the egg variables, by environment name.
    pub environment: BTreeMap<String, String>,
    /// Resource limits.
    pub limits: ServerLimits,
    /// The default (primary) allocation.
    pub primary_allocation: AllocationId,
    /// Further allocations.
    pub extra_allocations: Vec<AllocationId>,
    /// Lifecycle state.
    pub state: ServerState,
    /// Optimistic-concurrency version: bumped on every write, compared on update.
    pub version: u64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Suspended by an admin: it may not start, and its node stops it. The panel's intention;
    /// `state` is what the node reports.
    #[serde(default)]
    pub suspended: bool,
    /// When deletion was asked for while the node could not be reached; the node is told
    /// when it returns, and the row goes once it reports the server destroyed.
    #[serde(default)]
    pub deletion_requested_at: Option<DateTime<Utc>>,
    /// How many backups the server may keep (`None`: no limit; `0`: none), as Pterodactyl's
    /// `feature_limits.backups`. A scheduled backup past the limit replaces the oldest
    /// unlocked one; one asked for by hand is refused.
    #[serde(default)]
    pub backup_limit: Option<u32>,
    /// Template layers applied after the install script, after the egg's own layers (later
    /// layers win; see `nexus-templates`).
    #[serde(default)]
    pub templates: Vec<crate::template::LayerRef>,
}

impl Server {
    /// Primary allocation first, then the others.
    pub fn allocations(&self) -> impl Iterator<Item = AllocationId> + '_ {
        std::iter::once(self.primary_allocation).chain(self.extra_allocations.iter().copied())
    }
}

/// Resource limits of one server, applied by the runtime.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServerLimits {
    /// Memory, MiB.
    pub memory_mb: u64,
    /// Swap beyond memory, MiB; `-1` unlimited, `0` none.
    pub swap_mb: i64,
    /// CPU, percent of one core (`0` unlimited).
    pub cpu_percent: u64,
    /// Disk quota, MiB (`0` unlimited).
    pub disk_mb: u64,
    /// Block-IO weight, 10..=1000.
    pub io_weight: u16,
    /// Maximum processes/threads (`0` runtime default).
    pub pids: u64,
}
