//! Node tokens checked from memory.
//!
//! Every message a node sends (a heartbeat each interval, every lifecycle event) carries its
//! token; reading the node's record for each one made the store's busiest query a lookup of
//! something that never changes: a node's token is fixed when it is registered and the store
//! keeps only its hash. So the hashes read are kept for [`TOKEN_TTL`]. A node deleted through
//! this process is forgotten at once; one deleted through another panel process is forgotten
//! when its entry expires, and until then what it sends names servers it no longer has (they
//! were deleted or forgotten with it) and changes nothing. Wrong tokens and unknown nodes are
//! never cached: each costs a store read, as before.

use nexus_core::ids::NodeId;
use nexus_wire::NodeToken;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a token hash read from the store is trusted.
pub const TOKEN_TTL: Duration = Duration::from_secs(60);

/// Token hashes of nodes, as last read from the store.
#[derive(Default)]
pub(crate) struct NodeTokens {
    known: Mutex<HashMap<NodeId, (NodeToken, Instant)>>,
}

impl NodeTokens {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, (NodeToken, Instant)>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `presented` is `node`'s token by the hash in memory (constant time); `None`
    /// when no fresh hash is known.
    pub(crate) fn check(&self, node: NodeId, presented: &str) -> Option<bool> {
        let known = self.lock();
        let (token, read_at) = known.get(&node)?;
        (read_at.elapsed() < TOKEN_TTL).then(|| token.matches(presented))
    }

    /// Remembers `node`'s token hash as just read from the store. Expired entries go when the
    /// map has grown past the nodes it held at the last clean-up.
    pub(crate) fn remember(&self, node: NodeId, token: NodeToken) {
        let mut known = self.lock();
        known.insert(node, (token, Instant::now()));
        if known.len().is_power_of_two() && known.len() >= 64 {
            known.retain(|_, (_, read_at)| read_at.elapsed() < TOKEN_TTL);
        }
    }

    /// Forgets `node` (deleted).
    pub(crate) fn forget(&self, node: NodeId) {
        self.lock().remove(&node);
    }
}
