//! Who is calling: a browser session (cookie + CSRF token) or an API key (`Authorization:
//! Bearer ptla_…/ptlc_…`), and what that caller may do.
//!
//! * **Sessions** live in this panel process's memory, bounded ([`MAX_SESSIONS`]), for
//!   [`SESSION_LIFETIME`]. The cookie is `HttpOnly`, `SameSite=Strict`, and `Secure` when the
//!   panel is served over TLS. Every request with a session other than `GET`/`HEAD` must
//!   carry the session's CSRF token in `X-CSRF-Token` (compared in constant time); API-key
//!   requests carry no ambient credential and need none.
//! * **Rights**: an admin's session or application key may do everything; a client key acts on
//!   its user's servers (every server for an admin, as Pterodactyl's client API) but not on
//!   panel-wide routes; a user's session acts on the servers the user owns or was granted
//!   as a subuser ([`ServerAccess`](nexus_control::subusers::ServerAccess)).

use nexus_control::accounts::random_alphanumeric;
use nexus_core::ids::UserId;
use nexus_core::model::{ApiKeyScope, Role, User};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "nexus_session";
/// Header carrying the CSRF token of a session.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts after login.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Sessions kept at most per panel process; past it the oldest is dropped.
pub const MAX_SESSIONS: usize = 100_000;
/// Sessions one account keeps at most; a new login past it ends that account's oldest, so
/// no account can push other accounts' sessions out.
pub const MAX_SESSIONS_PER_USER: usize = 20;

/// How a caller proved who they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// A browser session.
    Session {
        /// The session id (the cookie's value).
        id: String,
        /// The token state-changing requests must echo.
        csrf: String,
    },
    /// An API key of this kind.
    Key(ApiKeyScope),
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The account.
    pub user: User,
    /// How they authenticated.
    pub via: Via,
}

impl Principal {
    /// Whether the caller may use panel-wide (admin) routes: an admin's session or an
    /// application key (only admins hold those).
    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin && !matches!(self.via, Via::Key(ApiKeyScope::Client))
    }
}

#[derive(Debug)]
struct Session {
    user: UserId,
    csrf: String,
    created: Instant,
}

/// How long a login waiting for its second factor stays valid.
pub const SECOND_FACTOR_WINDOW: Duration = Duration::from_secs(5 * 60);

/// The sessions of this panel process, and logins waiting for their second factor.
#[derive(Debug, Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<String, Session>>,
    pending: Mutex<HashMap<String, (UserId, Instant)>>,
}

impl Sessions {
    /// A new session for `user`: its id (the cookie) and CSRF token.
    pub fn open(&self, user: UserId) -> (String, String) {
        let (id, csrf) = (random_alphanumeric(43), random_alphanumeric(43));
        let now = Instant::now();
        let mut sessions = self.lock();
        let mine: Vec<(&String, &Session)> = sessions.iter().filter(|(_, s)| s.user == user).collect();
        if mine.len() >= MAX_SESSIONS_PER_USER
            && let Some(oldest) = mine.iter().min_by_key(|(_, s)| s.created).map(|(id, _)| (*id).clone())
        {
            sessions.remove(&oldest);
        }
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, s| now.saturating_duration_since(s.created) < SESSION_LIFETIME);
            if sessions.len() >= MAX_SESSIONS
                && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.created).map(|(id, _)| id.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id.clone(), Session { user, csrf: csrf.clone(), created: now });
        (id, csrf)
    }

    /// The user and CSRF token of a live session.
    pub fn get(&self, id: &str) -> Option<(UserId, String)> {
        let mut sessions = self.lock();
        let session = sessions.get(id)?;
        if session.created.elapsed() >= SESSION_LIFETIME {
            sessions.remove(id);
            return None;
        }
        Some((session.user, session.csrf.clone()))
    }

    /// Sessions held (expired ones included until they are next looked at).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ends a session.
    pub fn close(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Ends every session of `user` except `keep` (after a password change).
    pub fn close_all_of(&self, user: UserId, keep: Option<&str>) {
        self.lock().retain(|id, s| s.user != user || Some(id.as_str()) == keep);
    }

    /// A login whose password was right and whose second factor is still due: a token for
    /// the second step, valid [`SECOND_FACTOR_WINDOW`].
    pub fn await_second_factor(&self, user: UserId) -> String {
        let token = random_alphanumeric(43);
        let now = Instant::now();
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.len() >= MAX_SESSIONS {
            pending.retain(|_, (_, at)| now.saturating_duration_since(*at) < SECOND_FACTOR_WINDOW);
            if pending.len() >= MAX_SESSIONS
                && let Some(oldest) = pending.iter().min_by_key(|(_, (_, at))| *at).map(|(t, _)| t.clone())
            {
                pending.remove(&oldest);
            }
        }
        pending.insert(token.clone(), (user, now));
        token
    }

    /// The user of a pending login token still in its window (the token stays until used
    /// successfully, so a mistyped code can be retried; attempts are throttled by the
    /// control plane).
    pub fn pending_login(&self, token: &str) -> Option<UserId> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let (user, at) = *pending.get(token)?;
        if at.elapsed() >= SECOND_FACTOR_WINDOW {
            pending.remove(token);
            return None;
        }
        Some(user)
    }

    /// Spends a pending login token.
    pub fn finish_login(&self, token: &str) {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner).remove(token);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The session id in a `Cookie` header.
pub fn session_cookie(cookie_header: &str) -> Option<&str> {
    cookie_header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// Constant-time equality of two tokens.
pub fn same_token(a: &str, b: &str) -> bool {
    nexus_control::accounts::constant_time_eq(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        assert_eq!(session_cookie("a=1; nexus_session=abc; b=2"), Some("abc"));
        assert_eq!(session_cookie("nexus_session_x=abc"), None);
        assert_eq!(session_cookie(""), None);
    }

    #[test]
    fn sessions_open_close_and_close_all_of_a_user() {
        let sessions = Sessions::default();
        let (alice, bob) = (UserId::new(), UserId::new());
        let (a1, csrf) = sessions.open(alice);
        let (a2, _) = sessions.open(alice);
        let (b1, _) = sessions.open(bob);
        assert_eq!(sessions.get(&a1), Some((alice, csrf)));
        sessions.close_all_of(alice, Some(&a2));
        assert_eq!(sessions.get(&a1), None);
        assert!(sessions.get(&a2).is_some() && sessions.get(&b1).is_some());
        sessions.close(&a2);
        assert_eq!(sessions.get(&a2), None);
    }

    #[test]
    fn an_account_keeps_a_bounded_number_of_sessions_without_ending_others() {
        let sessions = Sessions::default();
        let (alice, bob) = (UserId::new(), UserId::new());
        let (bobs, _) = sessions.open(bob);
        let (first, _) = sessions.open(alice);
        for _ in 0..MAX_SESSIONS_PER_USER {
            sessions.open(alice);
        }
        assert_eq!(sessions.get(&first), None, "alice's oldest went");
        assert!(sessions.get(&bobs).is_some(), "bob's stays");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd") && !same_token("abc", "ab") && !same_token("", "a"));
    }
}
