//! What the agent remembers across a daemon crash: [`AgentSnapshot`], saved through an
//! [`AgentStateStore`] after every change. [`MemoryStateStore`] keeps it in memory (tests,
//! embedding); the daemon keeps it in a file.

use super::error::AgentError;
use async_trait::async_trait;
use nexus_core::lifecycle::Lifecycle;
use nexus_core::runtime::ContainerId;
use nexus_core::transport::{NodeMessage, ServerSpec};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Format version written into every snapshot.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// Node-local persistence of what the agent must remember across a daemon crash.
///
/// `save` is called after every change (lifecycle transition, new container, delivered panel
/// event), one call at a time, each with a snapshot at least as new as the previous one. An
/// implementation should replace the stored snapshot atomically (write + rename for files).
///
/// # Contract
///
/// `load` after `save(s)` returns `s` (also after the process died at any point: a
/// half-written snapshot is never loaded), and `load` on a fresh store returns an empty
/// snapshot. Failing is allowed, losing a saved snapshot is not: the agent would re-create
/// servers that exist or orphan their containers. [`FileStateStore`](crate::FileStateStore)
/// is the node's; [`MemoryStateStore`] keeps it in memory.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use nexus_agent::{AgentSnapshot, AgentStateStore, MemoryStateStore};
///
/// let store = MemoryStateStore::new();
/// assert!(store.load().await?.servers.is_empty());
/// store.save(&AgentSnapshot::default()).await?;
/// # Ok::<(), nexus_agent::AgentError>(()) }).unwrap();
/// ```
#[async_trait]
pub trait AgentStateStore: Send + Sync {
    /// The last saved snapshot, or an empty one ([`AgentSnapshot::default`]) when none was
    /// ever saved.
    async fn load(&self) -> Result<AgentSnapshot, AgentError>;

    /// Replaces the stored snapshot.
    async fn save(&self, snapshot: &AgentSnapshot) -> Result<(), AgentError>;
}

/// Everything the agent persists.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentSnapshot {
    /// [`SNAPSHOT_FORMAT`] of the writer.
    #[serde(default = "current_format")]
    pub format: u32,
    /// Every server on the node.
    #[serde(default)]
    pub servers: Vec<ServerRecord>,
    /// Lifecycle events not yet delivered to the panel, oldest first (heartbeats are never
    /// persisted: a stale one is worthless).
    #[serde(default)]
    pub outbox: Vec<NodeMessage>,
}

fn current_format() -> u32 {
    SNAPSHOT_FORMAT
}

impl Default for AgentSnapshot {
    fn default() -> Self {
        Self { format: SNAPSHOT_FORMAT, servers: Vec::new(), outbox: Vec::new() }
    }
}

/// One server as persisted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerRecord {
    /// What it runs.
    pub spec: ServerSpec,
    /// Its state and last crash.
    pub lifecycle: Lifecycle,
    /// Its container, once created.
    pub container: Option<ContainerId>,
}

/// An [`AgentStateStore`] in memory. The snapshot is kept serialized as JSON, so everything
/// the file-based store must round-trip is round-tripped here too.
#[derive(Debug, Default)]
pub struct MemoryStateStore {
    json: Mutex<Option<Vec<u8>>>,
    saves: AtomicU64,
}

impl MemoryStateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stored snapshot (empty if never saved).
    pub fn snapshot(&self) -> Result<AgentSnapshot, AgentError> {
        let json = self.json.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        match json {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| AgentError::State(e.to_string())),
            None => Ok(AgentSnapshot::default()),
        }
    }

    /// How many times [`save`](AgentStateStore::save) was called.
    pub fn saves(&self) -> u64 {
        self.saves.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl AgentStateStore for MemoryStateStore {
    async fn load(&self) -> Result<AgentSnapshot, AgentError> {
        self.snapshot()
    }

    async fn save(&self, snapshot: &AgentSnapshot) -> Result<(), AgentError> {
        let bytes = serde_json::to_vec(snapshot).map_err(|e| AgentError::State(e.to_string()))?;
        *self.json.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(bytes);
        self.saves.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
