//! How many console WebSockets may be open: per server, per browser token and per node.
//!
//! Every open console costs memory (socket buffers, its place in the fan-out) and a share of
//! the daemon's time on every line, so a tenant (or a script with a stolen token) must not be
//! able to open hundreds. A slot is taken before the upgrade and given back when the socket
//! ends ([`ConsoleSlot`] on drop); a connection over a cap is refused with
//! `429 too_many_consoles` before any WebSocket exists.
//!
//! The node token (the panel) has a cap of its own and does not count against the others:
//! browser tokens filling a server's or the node's consoles must not lock the panel out.

use super::ApiError;
use crate::auth::Caller;
use nexus_core::ids::ServerId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Caps on open consoles. A cap of 0 disables that cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsoleCaps {
    /// Browser-token consoles per server.
    pub per_server: usize,
    /// Per browser token (tokens are told apart by their nonce).
    pub per_token: usize,
    /// Browser-token consoles on the whole node.
    pub total: usize,
    /// Consoles of the node token (the panel), on the whole node.
    pub node_token: usize,
}

#[derive(Default)]
struct Counts {
    /// Browser-token consoles.
    total: usize,
    /// Node-token consoles.
    node: usize,
    servers: HashMap<ServerId, usize>,
    tokens: HashMap<String, usize>,
}

/// The open consoles of a node.
pub struct ConsoleSlots {
    caps: ConsoleCaps,
    counts: Arc<Mutex<Counts>>,
}

impl std::fmt::Debug for ConsoleSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSlots").field("caps", &self.caps).finish_non_exhaustive()
    }
}

/// One open console; its slot is given back on drop.
pub struct ConsoleSlot {
    counts: Arc<Mutex<Counts>>,
    server: ServerId,
    /// The browser token's nonce; `None` for the node token.
    token: Option<String>,
}

impl std::fmt::Debug for ConsoleSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSlot").field("server", &self.server).finish_non_exhaustive()
    }
}

fn over(cap: usize, count: usize) -> bool {
    cap > 0 && count >= cap
}

impl ConsoleSlots {
    /// Slots under `caps`.
    pub fn new(caps: ConsoleCaps) -> Self {
        Self { caps, counts: Arc::default() }
    }

    /// Consoles open now, browser and node token alike.
    pub fn open(&self) -> usize {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.total + counts.node
    }

    /// Takes a slot for `caller` on `server`, or says which cap is reached.
    pub fn take(&self, caller: &Caller, server: ServerId) -> Result<ConsoleSlot, ApiError> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let refuse = |what: String| Err(ApiError::new(429, "too_many_consoles", what));
        let token = match caller {
            Caller::Node => {
                if over(self.caps.node_token, counts.node) {
                    return refuse(format!("the node token has {} consoles open, its limit", counts.node));
                }
                counts.node += 1;
                return Ok(ConsoleSlot { counts: Arc::clone(&self.counts), server, token: None });
            }
            Caller::Browser(claims) => claims.nonce.clone(),
        };
        if over(self.caps.total, counts.total) {
            return refuse(format!("this node has {} consoles open, its limit", counts.total));
        }
        let on_server = counts.servers.get(&server).copied().unwrap_or(0);
        if over(self.caps.per_server, on_server) {
            return refuse(format!("server {server} has {on_server} consoles open, its limit"));
        }
        let on_token = counts.tokens.get(&token).copied().unwrap_or(0);
        if over(self.caps.per_token, on_token) {
            return refuse(format!("this token has {on_token} consoles open, its limit"));
        }
        *counts.tokens.entry(token.clone()).or_default() += 1;
        counts.total += 1;
        *counts.servers.entry(server).or_default() += 1;
        Ok(ConsoleSlot { counts: Arc::clone(&self.counts), server, token: Some(token) })
    }
}

impl Drop for ConsoleSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        match &self.token {
            None => counts.node = counts.node.saturating_sub(1),
            Some(token) => {
                counts.total = counts.total.saturating_sub(1);
                release(&mut counts.servers, &self.server);
                release(&mut counts.tokens, token);
            }
        }
    }
}

/// Decrements `key`, forgetting it at zero so the maps hold only open consoles.
fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = map.get_mut(key) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::TokenClaims;

    fn browser(nonce: &str, server: ServerId) -> Caller {
        let mut claims = TokenClaims::new(server, vec![], u64::MAX);
        claims.nonce = nonce.into();
        Caller::Browser(claims)
    }

    #[test]
    fn caps_hold_and_slots_come_back() {
        let slots = ConsoleSlots::new(ConsoleCaps { per_server: 3, per_token: 2, total: 5, node_token: 2 });
        let (a, b) = (ServerId::new(), ServerId::new());
        let t1 = slots.take(&browser("t1", a), a).unwrap();
        let _t1b = slots.take(&browser("t1", a), a).unwrap();
        assert_eq!(slots.take(&browser("t1", a), a).unwrap_err().code, "too_many_consoles", "per token");
        let _t2 = slots.take(&browser("t2", a), a).unwrap();
        assert!(slots.take(&browser("t3", a), a).is_err(), "per server");
        drop(t1);
        let _t3 = slots.take(&browser("t3", a), a).unwrap();
        let _b1 = slots.take(&browser("t4", b), b).unwrap();
        let _b2 = slots.take(&browser("t5", b), b).unwrap();
        assert!(slots.take(&browser("t6", b), b).is_err(), "per node");
        assert_eq!(slots.open(), 5);
    }

    /// Browser tokens filling a server's and the node's consoles leave the panel's node token
    /// its own slots, which are capped too.
    #[test]
    fn browsers_cannot_lock_the_node_token_out() {
        let slots = ConsoleSlots::new(ConsoleCaps { per_server: 2, per_token: 1, total: 2, node_token: 2 });
        let a = ServerId::new();
        let _t1 = slots.take(&browser("t1", a), a).unwrap();
        let _t2 = slots.take(&browser("t2", a), a).unwrap();
        assert!(slots.take(&browser("t3", a), a).is_err());
        let n1 = slots.take(&Caller::Node, a).unwrap();
        let _n2 = slots.take(&Caller::Node, a).unwrap();
        assert!(slots.take(&Caller::Node, a).is_err(), "the node token's own cap");
        drop(n1);
        let _n3 = slots.take(&Caller::Node, a).unwrap();
        assert!(slots.take(&browser("t3", a), a).is_err(), "node consoles free no browser slot");
        assert_eq!(slots.open(), 4);
    }
}
