//! Users, passwords and API keys.
//!
//! * **Passwords** are hashed with argon2id (RustCrypto `argon2`, its default cost: 19 MiB,
//!   2 passes, as OWASP recommends), 8..=[`MAX_PASSWORD_BYTES`] bytes; verification is
//!   constant-time, and a login for an unknown account still runs one verification so the
//!   answer time does not tell which accounts exist.
//! * **Login throttling**: at most [`MAX_FAILURES`] attempts per login and client address
//!   (so a stranger cannot lock an account for its owner) and per address within
//!   [`THROTTLE_WINDOW`], counted before the password is checked (parallel guesses count) and
//!   taken back on success; past it the login is refused with [`AuthError::Throttled`]. In
//!   memory, per panel process, bounded (a table full of live windows refuses new keys).
//!   Password checks run on the blocking pool, at most [`HASHING_AT_ONCE`] at once.
//! * **API keys** look like Pterodactyl's: `ptla_` (application: admin-wide) or `ptlc_`
//!   (client: one user's rights), then a 16-character identifier and a 32-character secret.
//!   The store keeps the identifier (to find the key) and a SHA-256 of the whole key (the
//!   secret has about 185 random bits, so a slow hash adds nothing); the key is shown once.

use crate::{ControlError, ControlPlane};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Utc};
use nexus_core::ids::{ApiKeyId, UserId};
use nexus_core::model::{ApiKey, ApiKeyScope, Role, User};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Longest password accepted (argon2 takes any length; this bounds the work per login).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest login (user name or e-mail) looked up.
pub const MAX_LOGIN_BYTES: usize = 256;
/// Failed logins allowed per login and address, and per address, within [`THROTTLE_WINDOW`].
pub const MAX_FAILURES: u32 = 5;
/// The window failed logins are counted in.
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Password verifications run at once (each takes 19 MiB).
pub const HASHING_AT_ONCE: usize = 4;
/// Longest a login waits for a hashing slot before it is answered `503`.
pub const HASHING_WAIT: Duration = Duration::from_secs(5);
/// A key's `last_used_at` is written at most this often (seconds).
const TOUCH_EVERY_SECS: i64 = 60;
/// Entries the throttle keeps at most (oldest windows dropped first), so a flood of logins
/// from many addresses cannot grow it without bound.
const THROTTLE_ENTRIES: usize = 100_000;

/// Why a login or key was refused. Deliberately vague towards the caller: which part was
/// wrong is logged, not answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Unknown login or wrong password; unknown, malformed or wrong API key.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The API key has expired.
    #[error("this API key has expired")]
    Expired,
    /// The API key is limited to addresses the request did not come from.
    #[error("this API key is not accepted from this address")]
    AddressNotAllowed,
    /// Too many failed logins; try again later.
    #[error("too many failed logins; try again in {} s", retry_after.as_secs().max(1))]
    Throttled {
        /// When another attempt will be considered.
        retry_after: Duration,
    },
}

/// What a new account needs.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewUser {
    /// Unique user name: 3..=64 of `[A-Za-z0-9._-]`.
    pub username: String,
    /// Unique e-mail address.
    pub email: String,
    /// The password.
    pub password: String,
    /// Admin or user.
    pub role: Role,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser").field("username", &self.username).field("email", &self.email).finish_non_exhaustive()
    }
}

/// Changes an admin makes to an account: each `Some` replaces that field.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct UserChanges {
    /// A new user name.
    pub username: Option<String>,
    /// A new e-mail address.
    pub email: Option<String>,
    /// A new password (hashed before it is stored).
    pub password: Option<String>,
    /// A new role.
    pub role: Option<Role>,
}

impl NewUser {
    /// A user account.
    pub fn new(username: impl Into<String>, email: impl Into<String>, password: impl Into<String>, role: Role) -> Self {
        Self { username: username.into(), email: email.into(), password: password.into(), role }
    }
}

/// Login attempts per (login, address) and per address. An attempt is counted before the
/// password is checked (so parallel guesses cannot all pass the check) and taken back when
/// it succeeds.
#[derive(Debug, Default)]
pub(crate) struct LoginThrottle {
    attempts: Mutex<HashMap<String, (Instant, u32)>>,
}

impl LoginThrottle {
    /// Counts one attempt on every key, or refuses it when a key is over the limit. When the
    /// table is full of live windows (a flood from very many addresses), new keys are
    /// refused rather than old counters forgotten.
    pub(crate) fn begin(&self, keys: &[String], now: Instant) -> Result<(), AuthError> {
        let mut attempts = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        for key in keys {
            if let Some((since, count)) = attempts.get(key) {
                let elapsed = now.saturating_duration_since(*since);
                if elapsed < THROTTLE_WINDOW && *count >= MAX_FAILURES {
                    return Err(AuthError::Throttled { retry_after: THROTTLE_WINDOW - elapsed });
                }
            }
        }
        if attempts.len() + keys.len() > THROTTLE_ENTRIES {
            attempts.retain(|_, (since, _)| now.saturating_duration_since(*since) < THROTTLE_WINDOW);
            if attempts.len() + keys.len() > THROTTLE_ENTRIES && keys.iter().any(|k| !attempts.contains_key(k)) {
                return Err(AuthError::Throttled { retry_after: THROTTLE_WINDOW });
            }
        }
        for key in keys {
            let entry = attempts.entry(key.clone()).or_insert((now, 0));
            if now.saturating_duration_since(entry.0) >= THROTTLE_WINDOW {
                *entry = (now, 0);
            }
            entry.1 += 1;
        }
        Ok(())
    }

    /// A successful login: the attempt is not a failure.
    pub(crate) fn succeeded(&self, keys: &[String]) {
        let mut attempts = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        // The (login, address) pair starts afresh; the address keeps the attempt it made,
        // minus this one.
        attempts.remove(&keys[0]);
        for key in &keys[1..] {
            if let Some(entry) = attempts.get_mut(key) {
                entry.1 = entry.1.saturating_sub(1);
            }
        }
    }
}

/// Hashes `password` with argon2id and a fresh salt, in PHC string form.
pub fn hash_password(password: &str) -> Result<String, ControlError> {
    check_password(password)?;
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes())
        .map_err(|e| ControlError::Invalid { field: "password", reason: format!("salt: {e}") })?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| ControlError::Invalid { field: "password", reason: format!("hashing failed: {e}") })
}

/// Whether `password` matches the PHC `hash` (false for a malformed hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

fn check_password(password: &str) -> Result<(), ControlError> {
    let invalid = |reason: String| ControlError::Invalid { field: "password", reason };
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(invalid(format!("longer than {MAX_PASSWORD_BYTES} bytes")));
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(invalid(format!("shorter than {MIN_PASSWORD_CHARS} characters")));
    }
    Ok(())
}

fn check_username(username: &str) -> Result<(), ControlError> {
    let ok = (3..=64).contains(&username.len())
        && username.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ControlError::Invalid { field: "username", reason: "3 to 64 of letters, digits, `.`, `_`, `-`".into() })
    }
}

fn check_email(email: &str) -> Result<(), ControlError> {
    let ok = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        });
    if ok { Ok(()) } else { Err(ControlError::Invalid { field: "email", reason: "not an e-mail address".into() }) }
}

/// The prefix of API keys of `scope`, as Pterodactyl's.
pub fn key_prefix(scope: ApiKeyScope) -> &'static str {
    match scope {
        ApiKeyScope::Application => "ptla_",
        ApiKeyScope::Client => "ptlc_",
    }
}

/// `len` characters drawn uniformly from `[A-Za-z0-9]` (about 5.95 bits each) from the
/// operating system's random source: API keys, session ids, CSRF tokens, generated passwords.
pub fn random_alphanumeric(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for byte in uuid::Uuid::new_v4().as_bytes() {
            // Rejection sampling keeps each character uniform over the byte (248 = 4 × 62); the
            // version and variant bits of a v4 UUID make two of its 16 bytes less random.
            if *byte < 248 && out.len() < len {
                out.push(char::from(ALPHABET[usize::from(*byte) % ALPHABET.len()]));
            }
        }
    }
    out
}

/// SHA-256 of `text` as lower-case hex: how API keys and recovery codes are stored.
pub(crate) fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths (for secrets
/// and their hashes).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl ControlPlane {
    /// Creates an account (the password hashed with argon2id).
    pub async fn create_user(&self, new: NewUser) -> Result<User, ControlError> {
        check_username(&new.username)?;
        check_email(&new.email)?;
        let password_hash = self.hash_on_pool(&new.password).await?;
        let user = User {
            id: UserId::new(),
            username: new.username,
            email: new.email,
            password_hash,
            role: new.role,
            created_at: Utc::now(),
        };
        self.store.create_user(&user).await?;
        Ok(user)
    }

    /// Applies `changes` to account `id`, checked as at creation. A changed password or role
    /// takes effect for the account's API keys at once.
    pub async fn update_user(&self, id: UserId, changes: UserChanges) -> Result<User, ControlError> {
        // Hashed before the account is read, so the read-modify-write is short and a password
        // changed meanwhile is not written back over.
        let password_hash = match &changes.password {
            Some(password) => Some(self.hash_on_pool(password).await?),
            None => None,
        };
        let mut user = self.store.get_user(id).await?;
        if let Some(username) = changes.username {
            check_username(&username)?;
            user.username = username;
        }
        if let Some(email) = changes.email {
            check_email(&email)?;
            user.email = email;
        }
        if let Some(hash) = password_hash {
            user.password_hash = hash;
        }
        if let Some(role) = changes.role {
            user.role = role;
        }
        self.store.update_user(&user).await?;
        self.forget_cached_keys_of(id);
        Ok(user)
    }

    /// Deletes account `id` (refused while it owns servers); its keys stop working at once.
    pub async fn delete_user(&self, id: UserId) -> Result<(), ControlError> {
        self.store.delete_user(id).await?;
        self.forget_cached_keys_of(id);
        // Its number stays spent; its external id and kept attributes go with it.
        let key = [id.to_string()];
        if let Err(e) = self.store.forget_record_refs(nexus_core::model::RecordKind::User, &key).await {
            tracing::warn!(user = %id, error = %e, "forgetting a user's record ref");
        }
        Ok(())
    }

    /// Checks a login (user name or e-mail) and password from `client`, throttled per account
    /// and per address.
    pub async fn authenticate(&self, login: &str, password: &str, client: IpAddr) -> Result<User, ControlError> {
        let login = login.trim();
        if login.len() > MAX_LOGIN_BYTES {
            return Err(ControlError::Auth(AuthError::InvalidCredentials));
        }
        // Per login and address, as Pterodactyl: a stranger cannot lock an account for its
        // owner; and per address, so one address cannot try many accounts.
        let keys = [format!("login:{}|{client}", login.to_lowercase()), format!("ip:{client}")];
        self.throttle.begin(&keys, Instant::now()).map_err(ControlError::Auth)?;
        let user = self.store.find_user_by_login(login).await?;
        // The same work whether or not the account exists, off the async threads (argon2
        // takes 19 MiB and tens of milliseconds), at most a few at once.
        let hash = user.as_ref().map_or_else(|| self.dummy_hash.clone(), |u| u.password_hash.clone());
        // A flood of logins waits a bounded time for the hashing slots, then is told to come
        // back, instead of queueing minutes of work ahead of everyone.
        let permit = match tokio::time::timeout(HASHING_WAIT, self.hashing.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(ControlError::Busy("shutting down".into())),
            Err(_) => return Err(ControlError::Busy("too many logins at once; try again".into())),
        };
        let password = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash)).await.unwrap_or(false);
        drop(permit);
        match user {
            Some(user) if matches => {
                self.throttle.succeeded(&keys);
                Ok(user)
            }
            _ => {
                tracing::info!(%client, "failed login");
                Err(ControlError::Auth(AuthError::InvalidCredentials))
            }
        }
    }

    /// [`hash_password`] on the blocking pool, at most [`HASHING_AT_ONCE`] at once.
    async fn hash_on_pool(&self, password: &str) -> Result<String, ControlError> {
        check_password(password)?;
        let _permit = tokio::time::timeout(HASHING_WAIT, self.hashing.acquire())
            .await
            .map_err(|_| ControlError::Busy("too many password changes at once; try again".into()))?
            .map_err(|_| ControlError::Busy("shutting down".into()))?;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| ControlError::Busy(format!("password hashing stopped: {e}")))?
    }

    /// The account whose e-mail is `email` (any case, surrounding space ignored); never a
    /// match by user name, so an e-mail field cannot be used to look accounts up by name.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>, ControlError> {
        let email = email.trim();
        let found = self.store.find_user_by_login(email).await?;
        Ok(found.filter(|u| u.email.to_lowercase() == email.to_lowercase()))
    }

    /// `user`'s account if `password` is theirs (the login throttle applies). A wrong password
    /// is `Invalid` about `field` (the form field), not an authentication failure: the caller
    /// is logged in, and only this confirmation failed.
    pub async fn confirm_password(
        &self,
        user: UserId,
        password: &str,
        client: IpAddr,
        field: &'static str,
    ) -> Result<User, ControlError> {
        let account = self.store.get_user(user).await?;
        match self.authenticate(&account.username, password, client).await {
            Err(ControlError::Auth(AuthError::InvalidCredentials)) => {
                Err(ControlError::Invalid { field, reason: "the password is wrong".into() })
            }
            other => other,
        }
    }

    /// Changes `user`'s password after checking the current one (throttled like a login).
    /// Ending the account's other sessions is the caller's part (sessions are an HTTP
    /// matter).
    pub async fn change_password(
        &self,
        user: UserId,
        current: &str,
        new: &str,
        client: IpAddr,
    ) -> Result<(), ControlError> {
        let mut account = self.confirm_password(user, current, client, "current_password").await?;
        account.password_hash = self.hash_on_pool(new).await?;
        self.store.update_user(&account).await?;
        Ok(())
    }

    /// Creates an API key for `user`; returns the stored key and the full key, shown once.
    /// Application keys are for admins only.
    pub async fn create_api_key(
        &self,
        user: UserId,
        scope: ApiKeyScope,
        memo: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(ApiKey, String), ControlError> {
        self.create_limited_api_key(user, scope, memo, expires_at, &[]).await
    }

    /// [`create_api_key`](Self::create_api_key) accepted only from `allowed_ips` (IPs and
    /// CIDR ranges, at most [`MAX_RANGES`](crate::address::MAX_RANGES); empty: anywhere).
    pub async fn create_limited_api_key(
        &self,
        user: UserId,
        scope: ApiKeyScope,
        memo: &str,
        expires_at: Option<DateTime<Utc>>,
        allowed_ips: &[String],
    ) -> Result<(ApiKey, String), ControlError> {
        let allowed_ips = crate::address::normalize(allowed_ips)
            .map_err(|reason| ControlError::Invalid { field: "allowed_ips", reason })?;
        let owner = self.store.get_user(user).await?;
        if scope == ApiKeyScope::Application && owner.role != Role::Admin {
            return Err(ControlError::Forbidden("application keys are for admins".into()));
        }
        if memo.len() > 500 || memo.chars().any(char::is_control) {
            return Err(ControlError::Invalid { field: "memo", reason: "at most 500 bytes, one line".into() });
        }
        let identifier = random_alphanumeric(16);
        let key = format!("{}{identifier}{}", key_prefix(scope), random_alphanumeric(32));
        let record = ApiKey {
            id: ApiKeyId::new(),
            user,
            prefix: identifier,
            secret_hash: sha256_hex(&key),
            memo: memo.to_owned(),
            scope,
            created_at: Utc::now(),
            last_used_at: None,
            expires_at,
            allowed_ips,
        };
        self.store.create_api_key(&record).await?;
        Ok((record, key))
    }

    /// The key and its owner for a presented API key sent from `client`; records its use. A
    /// key limited to addresses is refused from others
    /// ([`AuthError::AddressNotAllowed`]).
    pub async fn authenticate_key(&self, presented: &str, client: IpAddr) -> Result<(ApiKey, User), ControlError> {
        let (key, user) = self.verify_key(presented).await?;
        if !crate::address::allowed(&key.allowed_ips, client) {
            return Err(ControlError::Auth(AuthError::AddressNotAllowed));
        }
        Ok((key, user))
    }

    async fn verify_key(&self, presented: &str) -> Result<(ApiKey, User), ControlError> {
        let invalid = || ControlError::Auth(AuthError::InvalidCredentials);
        let (scope, rest) = if let Some(rest) = presented.strip_prefix("ptla_") {
            (ApiKeyScope::Application, rest)
        } else if let Some(rest) = presented.strip_prefix("ptlc_") {
            (ApiKeyScope::Client, rest)
        } else {
            return Err(invalid());
        };
        if rest.len() != 48 || !rest.is_ascii() {
            return Err(invalid());
        }
        let presented_hash = sha256_hex(presented);
        let now = Utc::now();
        if let Some(cached) = self.key_cache.get(&presented_hash, Instant::now())
            && cached.0.expires_at.is_none_or(|at| at > now)
        {
            return Ok(cached);
        }
        let Some(key) = self.store.find_api_key(&rest[..16]).await? else { return Err(invalid()) };
        let same = constant_time_eq(&presented_hash, &key.secret_hash);
        if !same || key.scope != scope {
            return Err(invalid());
        }
        if key.expires_at.is_some_and(|at| at <= now) {
            return Err(ControlError::Auth(AuthError::Expired));
        }
        let user = self.store.get_user(key.user).await?;
        if key.scope == ApiKeyScope::Application && user.role != Role::Admin {
            return Err(invalid());
        }
        // One write per minute per key at most: a busy billing system must not turn every read
        // into a write.
        if key.last_used_at.is_none_or(|at| now - at > chrono::Duration::seconds(TOUCH_EVERY_SECS)) {
            self.store.touch_api_key(key.id, now).await?;
        }
        self.key_cache.put(presented_hash, (key.clone(), user.clone()), Instant::now());
        Ok((key, user))
    }

    /// Deletes API key `id` of `user` (`NotFound` if it is not theirs); this process stops
    /// accepting it at once, other panel processes within [`KEY_CACHE_TTL`].
    pub async fn delete_api_key(&self, user: UserId, id: ApiKeyId) -> Result<(), ControlError> {
        if !self.store.list_api_keys(user).await?.iter().any(|k| k.id == id) {
            return Err(nexus_core::store::StoreError::not_found("api key", id).into());
        }
        self.store.delete_api_key(id).await?;
        self.key_cache.forget_key(id);
        Ok(())
    }

    /// Forgets every cached key of `user` (after a role change, a deletion).
    pub fn forget_cached_keys_of(&self, user: UserId) {
        self.key_cache.forget_user(user);
    }
}

/// How long a verified API key is trusted without asking the store again. A key deleted
/// through another panel process keeps working here at most this long.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// Keys cached at most.
const KEY_CACHE_ENTRIES: usize = 10_000;

/// Verified API keys by the hash of the presented key: a busy client costs no store reads
/// per request. Bounded; entries live [`KEY_CACHE_TTL`].
#[derive(Debug, Default)]
pub(crate) struct KeyCache {
    entries: Mutex<HashMap<String, (ApiKey, User, Instant)>>,
}

impl KeyCache {
    fn get(&self, hash: &str, now: Instant) -> Option<(ApiKey, User)> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (key, user, at) = entries.get(hash)?;
        (now.saturating_duration_since(*at) < KEY_CACHE_TTL).then(|| (key.clone(), user.clone()))
    }

    fn put(&self, hash: String, (key, user): (ApiKey, User), now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= KEY_CACHE_ENTRIES {
            entries.retain(|_, (_, _, at)| now.saturating_duration_since(*at) < KEY_CACHE_TTL);
            if entries.len() >= KEY_CACHE_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(hash, (key, user, now));
    }

    fn forget_key(&self, id: ApiKeyId) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).retain(|_, (key, _, _)| key.id != id);
    }

    fn forget_user(&self, user: UserId) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).retain(|_, (key, _, _)| key.user != user);
    }
}
