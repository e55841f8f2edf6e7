//! How many console WebSockets may be open: per server, per browser token and per node.
//!
//! Every open console costs memory (socket buffers, its place in the fan-out) and a share of
//! the daemon's time on every line, so a tenant (or a script with a stolen token) must not be
//! able to open hundreds. A slot is taken before the upgrade and given back when the socket
//! ends ([`ConsoleSlot`] on drop); a connection over a cap is refused with
//! `429 too_many_consoles` before any WebSocket exists.

use super::ApiError;
use crate::auth::Caller;
use nexus_core::ids::ServerId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Caps on open consoles. A cap of 0 disables that cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsoleCaps {
    /// Per server.
    pub per_server: usize,
    /// Per browser token (tokens are told apart by their nonce; the node token has no own cap).
    pub per_token: usize,
    /// On the whole node.
    pub total: usize,
}

#[derive(Default)]
struct Counts {
    total: usize,
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

    /// Consoles open now.
    pub fn open(&self) -> usize {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).total
    }

    /// Takes a slot for `caller` on `server`, or says which cap is reached.
    pub fn take(&self, caller: &Caller, server: ServerId) -> Result<ConsoleSlot, ApiError> {
        let token = match caller {
            Caller::Node => None,
            Caller::Browser(claims) => Some(claims.nonce.clone()),
        };
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let refuse = |what: String| Err(ApiError::new(429, "too_many_consoles", what));
        if over(self.caps.total, counts.total) {
            return refuse(format!("this node has {} consoles open, its limit", counts.total));
        }
        let on_server = counts.servers.get(&server).copied().unwrap_or(0);
        if over(self.caps.per_server, on_server) {
            return refuse(format!("server {server} has {on_server} consoles open, its limit"));
        }
        if let Some(token) = &token {
            let on_token = counts.tokens.get(token).copied().unwrap_or(0);
            if over(self.caps.per_token, on_token) {
                return refuse(format!("this token has {on_token} consoles open, its limit"));
            }
            *counts.tokens.entry(token.clone()).or_default() += 1;
        }
        counts.total += 1;
        *counts.servers.entry(server).or_default() += 1;
        Ok(ConsoleSlot { counts: Arc::clone(&self.counts), server, token })
    }
}

impl Drop for ConsoleSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        release(&mut counts.servers, &self.server);
        if let Some(token) = &self.token {
            release(&mut counts.tokens, token);
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
        Caller::Browser(TokenClaims { server, permissions: vec![], expires: u64::MAX, nonce: nonce.into() })
    }

    #[test]
    fn caps_hold_and_slots_come_back() {
        let slots = ConsoleSlots::new(ConsoleCaps { per_server: 3, per_token: 2, total: 5 });
        let (a, b) = (ServerId::new(), ServerId::new());
        let t1 = slots.take(&browser("t1", a), a).unwrap();
        let _t1b = slots.take(&browser("t1", a), a).unwrap();
        assert_eq!(slots.take(&browser("t1", a), a).unwrap_err().code, "too_many_consoles", "per token");
        let _n = slots.take(&Caller::Node, a).unwrap();
        assert!(slots.take(&Caller::Node, a).is_err(), "per server");
        drop(t1);
        let _n2 = slots.take(&Caller::Node, a).unwrap();
        let _b1 = slots.take(&Caller::Node, b).unwrap();
        let _b2 = slots.take(&Caller::Node, b).unwrap();
        assert!(slots.take(&Caller::Node, b).is_err(), "per node");
        assert_eq!(slots.open(), 5);
    }
}
