//! # nexus-control
//!
//! The control plane of Nexus as a library: what a panel decides, written only against the
//! core traits (`Store`, `NodeTransport`, `Placement`) and `nexus-eggs`, with no HTTP framework,
//! so a hosting company can put its own API in front of it. The reference panel is a thin
//! layer over it.
//!
//! | module | what |
//! |---|---|
//! | [`accounts`] | users with argon2id passwords, login throttling, API keys shown once (`ptla_`/`ptlc_`) |
//! | [`console`] | browser console tokens for one server and a caller's permissions, signed with the node's derived console secret |
//! | [`eggs`] | import (Pterodactyl/Pelican files), export, update from a file, delete |
//! | [`manage`] | rename, startup variables (re-validated), build, reinstall, suspend/unsuspend |
//! | [`nodes`] | register a node (its token shown once, stored hashed), check a node's token, add allocations from port lists |
//! | [`servers`] | create a server: placement, the allocation claimed in the same transaction as the server row, the spec built from the egg, sent to the node |
//! | [`subusers`] | who may do what on a server: owner, admins, subusers with Pterodactyl's permission names |
//! | [`totp`] | TOTP second factor (RFC 6238) with single-use recovery codes |
//! | [`ingest`] | node → panel messages applied idempotently (an event delivered twice changes nothing) |
//! | [`heartbeat`] | nodes whose heartbeats stopped marked offline |
//! | [`reconcile`] | a node that returns: servers deleted meanwhile destroyed on it, creates it never got sent again, nothing started |
//! | [`schedules`] | schedules (cron + tasks) and their runner: each due run claimed in the store, so several panel processes run it exactly once |
//! | [`ports`] | port lists (`25565-25665`) as Pterodactyl takes them |
//!
//! Every call to a node has a deadline ([`ControlConfig::node_timeout`]), so a node that is
//! down costs its own requests that long and no one else's.

pub mod accounts;
pub mod address;
pub mod backups;
pub mod console;
pub mod eggs;
mod error;
mod group_commit;
pub mod heartbeat;
pub mod ingest;
pub mod manage;
pub mod nests;
pub mod node_tokens;
pub mod nodes;
pub mod ports;
pub mod reconcile;
pub mod schedules;
pub mod servers;
pub mod subusers;
pub mod templates;
pub mod totp;

pub use error::ControlError;

use nexus_core::placement::{PlacementConfig, ScoringPlacement};
use nexus_core::store::Store;
use nexus_core::transport::NodeTransport;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The panel's secret its nodes' tokens are derived from (at least 32 bytes); printed as
/// `NodeSecret(..)`.
#[derive(Clone)]
pub struct NodeSecret(Vec<u8>);

impl NodeSecret {
    /// Shortest secret accepted.
    pub const MIN_BYTES: usize = 32;

    /// `secret`, refused when shorter than [`MIN_BYTES`](Self::MIN_BYTES).
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Self, ControlError> {
        let secret = secret.into();
        if secret.len() < Self::MIN_BYTES {
            return Err(ControlError::Invalid {
                field: "node_secret",
                reason: format!("shorter than {} bytes", Self::MIN_BYTES),
            });
        }
        Ok(Self(secret))
    }
}

impl std::fmt::Debug for NodeSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeSecret(..)")
    }
}

/// Settings of a [`ControlPlane`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ControlConfig {
    /// Longest one call to a node may take.
    pub node_timeout: Duration,
    /// How often nodes send heartbeats; a node silent for three intervals is offline.
    pub heartbeat_interval: Duration,
    /// How placement ranks nodes.
    pub placement: PlacementConfig,
    /// Node tokens derived from this secret (the panel can call its nodes after a restart
    /// while storing only the tokens' hashes); `None`: random tokens, which the caller must
    /// keep to reach the node.
    pub node_secret: Option<NodeSecret>,
    /// `https` (default) or `http`: how nodes' APIs are reached.
    pub node_scheme: &'static str,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            node_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(10),
            placement: PlacementConfig::default(),
            node_secret: None,
            node_scheme: "https",
        }
    }
}

/// The control plane: a store, a way to reach nodes, and placement over the store's nodes.
pub struct ControlPlane {
    store: Arc<dyn Store>,
    nodes: Arc<dyn NodeTransport>,
    placement: Mutex<ScoringPlacement>,
    config: ControlConfig,
    throttle: accounts::LoginThrottle,
    key_cache: accounts::KeyCache,
    hashing: tokio::sync::Semaphore,
    /// Verified against when a login names no account, so both cost the same.
    dummy_hash: String,
    /// When each node was last reconciled by this process: a node is reconciled at its first
    /// heartbeat after this panel started (events may have been lost while it was down) and
    /// again every [`RECONCILE_EVERY`](ingest::RECONCILE_EVERY) heartbeat intervals.
    reconciled: Mutex<std::collections::HashMap<nexus_core::ids::NodeId, std::time::Instant>>,
    /// Schedules with a run under way in this process (a run never overlaps itself).
    running_schedules: Mutex<std::collections::HashSet<nexus_core::ids::ScheduleId>>,
    /// Servers created with `start_on_completion`, started when their install finishes
    /// (kept in this process: a panel restarted during an install does not start them).
    start_after_install: Mutex<std::collections::HashSet<nexus_core::ids::ServerId>>,
    /// One second-factor check at a time in this process, so a code or recovery code is
    /// spent once even when sent twice at once.
    totp_check: tokio::sync::Mutex<()>,
    /// Node token hashes read from the store, checked from memory.
    node_tokens: node_tokens::NodeTokens,
    /// Heartbeats written a batch per transaction ([`group_commit`]).
    heartbeat_batches: Arc<ingest::HeartbeatBatches>,
    /// Lifecycle events applied a batch per transaction ([`group_commit`]).
    event_batches: Arc<ingest::EventBatches>,
    /// Messages being ingested per node, bounded.
    ingesting: ingest::PerNode,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane").field("config", &self.config).finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// A control plane over `store`, reaching nodes through `nodes`; placement starts from the
    /// nodes and usage the store holds.
    pub async fn new(
        store: Arc<dyn Store>,
        nodes: Arc<dyn NodeTransport>,
        config: ControlConfig,
    ) -> Result<Self, ControlError> {
        if !matches!(config.node_scheme, "http" | "https") {
            return Err(ControlError::Invalid { field: "node_scheme", reason: "http or https".into() });
        }
        if config.heartbeat_interval.is_zero() || config.node_timeout.is_zero() {
            return Err(ControlError::Invalid {
                field: "config",
                reason: "intervals and timeouts must be positive".into(),
            });
        }
        let placement = ScoringPlacement::new(&store.list_nodes().await?, &store.node_usage().await?, config.placement);
        let dummy_hash = accounts::hash_password("no account has this password")?;
        let (heartbeat_batches, event_batches) =
            (ingest::heartbeat_batches(Arc::clone(&store)), ingest::event_batches(Arc::clone(&store)));
        Ok(Self {
            store,
            nodes,
            placement: Mutex::new(placement),
            config,
            throttle: accounts::LoginThrottle::default(),
            key_cache: accounts::KeyCache::default(),
            hashing: tokio::sync::Semaphore::new(accounts::HASHING_AT_ONCE),
            dummy_hash,
            reconciled: Mutex::default(),
            running_schedules: Mutex::default(),
            start_after_install: Mutex::default(),
            totp_check: tokio::sync::Mutex::new(()),
            node_tokens: node_tokens::NodeTokens::default(),
            heartbeat_batches,
            event_batches,
            ingesting: ingest::PerNode::default(),
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The settings.
    pub fn config(&self) -> &ControlConfig {
        &self.config
    }

    /// Re-reads every node and its usage from the store into placement (after changes made
    /// behind this control plane's back, e.g. by another panel process).
    pub async fn refresh_placement(&self) -> Result<(), ControlError> {
        let fresh = ScoringPlacement::new(
            &self.store.list_nodes().await?,
            &self.store.node_usage().await?,
            self.config.placement,
        );
        *self.placement.lock().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    fn placement(&self) -> std::sync::MutexGuard<'_, ScoringPlacement> {
        // Placement is only ever replaced or updated in one call, so a panic elsewhere cannot
        // leave it half-changed.
        self.placement.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
