//! Console command rate limits: a token bucket per server and per kind of caller.
//!
//! Every console command, from the WebSocket or from `POST /api/servers/:id/commands`, takes
//! one token from its server's bucket; an empty bucket refuses the command with
//! `429 rate_limited` (on the WebSocket, an error message; the socket stays open). Buckets
//! refill continuously at the configured rate up to the burst size.
//!
//! Browser tokens and the node token draw from **separate** buckets, so users flooding a
//! console cannot starve the panel's own commands (scheduled announcements, stop warnings) and
//! every browser session of a server shares one bucket (opening more sockets gains nothing).
//! The node token's limit is higher by default: the panel relays commands for its users and
//! schedules, and its bucket only bounds a runaway panel.

use super::ApiError;
use crate::auth::Caller;
use nexus_agent::AgentError;
use nexus_core::ids::ServerId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets kept before refilled ones are dropped (a full bucket is the same as none).
const PRUNE_AT: usize = 4096;

/// A sustained rate with a burst allowance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    per_second: f64,
    burst: f64,
}

impl Rate {
    /// `per_second` sustained, `burst` at once; `None` (no limit) when `per_second` is 0.
    /// A burst below 1 is raised to 1.
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        (per_second > 0).then(|| Self { per_second: f64::from(per_second), burst: f64::from(burst.max(1)) })
    }
}

/// Who draws from a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Class {
    Node,
    Browser,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Refills for the time since the last call; whether the bucket is full.
    fn refill(&mut self, rate: Rate, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.at = now;
        self.tokens >= rate.burst
    }
}

/// The command buckets of every server.
#[derive(Debug)]
pub struct CommandLimits {
    browser: Option<Rate>,
    node: Option<Rate>,
    buckets: Mutex<HashMap<(ServerId, Class), Bucket>>,
}

impl CommandLimits {
    /// Limits for browser tokens and for the node token; `None` does not limit.
    pub fn new(browser: Option<Rate>, node: Option<Rate>) -> Self {
        Self { browser, node, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one command's token for `caller` on `server`, or refuses with `429 rate_limited`.
    pub fn check(&self, server: ServerId, caller: &Caller) -> Result<(), ApiError> {
        self.check_at(server, caller, Instant::now())
    }

    fn check_at(&self, server: ServerId, caller: &Caller, now: Instant) -> Result<(), ApiError> {
        let (class, rate) = match caller {
            Caller::Node => (Class::Node, self.node),
            Caller::Browser(_) => (Class::Browser, self.browser),
        };
        let Some(rate) = rate else { return Ok(()) };
        let mut buckets = self.buckets.lock().map_err(|_| ApiError::new(500, "internal", "rate limiter poisoned"))?;
        if buckets.len() >= PRUNE_AT && !buckets.contains_key(&(server, class)) {
            buckets.retain(|(_, class), bucket| {
                let rate = match class {
                    Class::Node => self.node,
                    Class::Browser => self.browser,
                };
                rate.is_some_and(|rate| !bucket.refill(rate, now))
            });
        }
        let bucket = buckets.entry((server, class)).or_insert(Bucket { tokens: rate.burst, at: now });
        bucket.refill(rate, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(AgentError::RateLimited { what: "console commands" }.into())
        }
    }

    /// Drops the buckets of `server` (it was destroyed).
    pub fn forget(&self, server: ServerId) {
        if let Ok(mut buckets) = self.buckets.lock() {
            buckets.retain(|(id, _), _| *id != server);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::TokenClaims;
    use std::time::Duration;

    fn browser(server: ServerId) -> Caller {
        Caller::Browser(TokenClaims::new(server, vec![], u64::MAX))
    }

    #[test]
    fn burst_then_rate_per_server_and_class() {
        let limits = CommandLimits::new(Rate::new(20, 40), Rate::new(200, 1000));
        let (a, b) = (ServerId::new(), ServerId::new());
        let t0 = Instant::now();
        let accepted = (0..100).filter(|_| limits.check_at(a, &browser(a), t0).is_ok()).count();
        assert_eq!(accepted, 40, "the burst");
        let refused = limits.check_at(a, &browser(a), t0).unwrap_err();
        assert_eq!((refused.status, refused.code), (429, "rate_limited"));
        // Another server, and the node token on the same server, have their own buckets.
        assert!(limits.check_at(b, &browser(b), t0).is_ok());
        assert!(limits.check_at(a, &Caller::Node, t0).is_ok());
        // 20 per second: after 0.5 s, 10 more.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..100).filter(|_| limits.check_at(a, &browser(a), t1).is_ok()).count(), 10);
        // Refills to the burst, never past it.
        let t2 = t1 + Duration::from_secs(3600);
        assert_eq!((0..100).filter(|_| limits.check_at(a, &browser(a), t2).is_ok()).count(), 40);
    }

    #[test]
    fn zero_rate_is_unlimited_and_forget_resets() {
        let limits = CommandLimits::new(Rate::new(1, 1), Rate::new(0, 0));
        let a = ServerId::new();
        let now = Instant::now();
        assert!((0..10_000).all(|_| limits.check_at(a, &Caller::Node, now).is_ok()));
        assert!(limits.check_at(a, &browser(a), now).is_ok());
        assert!(limits.check_at(a, &browser(a), now).is_err());
        limits.forget(a);
        assert!(limits.check_at(a, &browser(a), now).is_ok());
    }

    #[test]
    fn buckets_stay_bounded() {
        let limits = CommandLimits::new(Rate::new(10, 10), None);
        let t0 = Instant::now();
        for _ in 0..PRUNE_AT {
            let s = ServerId::new();
            limits.check_at(s, &browser(s), t0).unwrap();
        }
        let later = t0 + Duration::from_secs(1);
        let s = ServerId::new();
        limits.check_at(s, &browser(s), later).unwrap();
        assert_eq!(limits.buckets.lock().unwrap().len(), 1, "refilled buckets were dropped");
    }
}
