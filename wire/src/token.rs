//! Credentials between panel, node and browser.
//!
//! # Node token
//! The panel sends `Authorization: Bearer <node token>` on every request to a node, and the
//! node on every event it posts to the panel. [`NodeToken::matches`] compares SHA-256 digests
//! of the presented and the configured token with [`subtle::ConstantTimeEq`], so neither the
//! content nor the length of the secret leaks through timing.
//!
//! # Browser tokens
//! The panel mints a token for one server and a set of [`Permission`]s with
//! [`TokenSigner::mint`] (it holds the same `token_secret` as the daemon). Format:
//!
//! ```text
//! base64url(payload) "." base64url(HMAC-SHA256(secret, "nexus-wings.v1." + base64url(payload)))
//! payload = {"s":"<server uuid>","p":["console_read",...],"e":<unix seconds>,"n":"<nonce>"}
//! ```
//!
//! (base64url without padding). [`TokenSigner::verify`] recomputes the MAC and compares it
//! in constant time (`hmac`'s `verify_slice`) before looking at the payload, then refuses a
//! token that has expired or that claims to live longer than the configured maximum (a
//! panel bug minting week-long tokens is caught here). The nonce makes every token distinct;
//! tokens are bearer credentials for their (short) lifetime and are not single-use. The
//! reference daemon accepts a browser token only on the console WebSocket (`?token=` or the
//! header) and the files endpoints, only for its server, and each action checks its
//! permission.
//!
//! ```
//! use nexus_core::ids::ServerId;
//! use nexus_core::model::Permission;
//! use nexus_wire::token::TokenSigner;
//! use std::time::Duration;
//!
//! let signer = TokenSigner::new(b"a node's token_secret, 32+ bytes..", Duration::from_secs(900))?;
//! let server = ServerId::new();
//! let token = signer.mint(server, &[Permission::ConsoleRead], Duration::from_secs(600));
//! let claims = signer.verify(&token)?;
//! assert!(claims.server == server && claims.allows(Permission::ConsoleRead));
//! # Ok::<(), nexus_wire::token::TokenError>(())
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use nexus_core::ids::ServerId;
use nexus_core::model::Permission;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Domain separation: a MAC made for something else with the same secret never verifies.
const MAC_CONTEXT: &[u8] = b"nexus-wings.v1.";

/// The node token, kept as its SHA-256 digest.
#[derive(Clone)]
pub struct NodeToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for NodeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeToken(..)")
    }
}

impl NodeToken {
    /// Keeps `token` (only its digest is stored).
    pub fn new(token: &str) -> Self {
        Self { digest: Sha256::digest(token.as_bytes()).into() }
    }

    /// Whether `presented` is the node token, in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(self.digest.ct_eq(&digest))
    }

    /// A new random token (64 hex characters over 244 bits from the operating system's
    /// random source) and its [`NodeToken`]: what a panel shows once when it registers a node.
    pub fn generate() -> (String, Self) {
        let bytes = [*uuid::Uuid::new_v4().as_bytes(), *uuid::Uuid::new_v4().as_bytes()].concat();
        // v4 UUIDs fix 6 bits each; hashing keeps the full 32 bytes uniformly random-looking
        // while the 244 random bits underneath are what an attacker has to guess.
        let token = hex(&Sha256::digest(&bytes));
        let node_token = Self::new(&token);
        (token, node_token)
    }

    /// The token of `node` derived from a panel's `secret` (64 hex characters:
    /// HMAC-SHA256 over a fixed context and the node id) and its [`NodeToken`]. A panel that
    /// derives its nodes' tokens stores only their hashes and can still compute each token to
    /// call the node; whoever has the secret has every node's token, so it is kept like one.
    pub fn derive(secret: &[u8], node: nexus_core::ids::NodeId) -> (String, Self) {
        let mut mac = match HmacSha256::new_from_slice(secret) {
            Ok(mac) => mac,
            // HMAC takes keys of any length; this arm cannot be reached.
            Err(_) => return Self::generate(),
        };
        mac.update(b"nexus-node-token.v1:");
        mac.update(node.to_string().as_bytes());
        let token = hex(&mac.finalize().into_bytes());
        let node_token = Self::new(&token);
        (token, node_token)
    }

    /// The `token_secret` (browser tokens) of `node` derived from a panel's `secret`: 64 hex
    /// characters, HMAC-SHA256 over a context distinct from [`derive`](Self::derive)'s, so a
    /// node's console secret and its token never coincide and neither reveals the other.
    pub fn derive_console_secret(secret: &[u8], node: nexus_core::ids::NodeId) -> String {
        match HmacSha256::new_from_slice(secret) {
            Ok(mut mac) => {
                mac.update(b"nexus-console-secret.v1:");
                mac.update(node.to_string().as_bytes());
                hex(&mac.finalize().into_bytes())
            }
            // HMAC takes keys of any length; this arm cannot be reached.
            Err(_) => Self::generate().0,
        }
    }

    /// The form a panel stores: `sha256:<hex digest>` (never the token).
    pub fn stored(&self) -> String {
        format!("sha256:{}", hex(&self.digest))
    }

    /// Reads what [`stored`](Self::stored) wrote; `None` for anything else.
    pub fn from_stored(stored: &str) -> Option<Self> {
        let text = stored.strip_prefix("sha256:")?;
        if text.len() != 64 {
            return None;
        }
        let mut digest = [0u8; 32];
        for (i, byte) in digest.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(Self { digest })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a verified browser token grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TokenClaims {
    /// The one server it is for.
    #[serde(rename = "s")]
    pub server: ServerId,
    /// What it allows on that server.
    #[serde(rename = "p")]
    pub permissions: Vec<Permission>,
    /// Expiry, Unix seconds.
    #[serde(rename = "e")]
    pub expires: u64,
    /// Random, makes each token unique.
    #[serde(rename = "n")]
    pub nonce: String,
}

impl TokenClaims {
    /// Claims for `server` granting `permissions` until `expires` (Unix seconds), with a
    /// fresh nonce. [`TokenSigner::mint`] is the usual way; this is for custom lifetimes and
    /// tests.
    pub fn new(server: ServerId, permissions: Vec<Permission>, expires: u64) -> Self {
        Self { server, permissions, expires, nonce: uuid::Uuid::new_v4().simple().to_string() }
    }

    /// Whether the token grants `permission`.
    pub fn allows(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }
}

/// Why a browser token was refused. The API answers 401 for all of them and does not say which
/// (the reason is logged at debug).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not two base64url parts, or a payload that is not the expected JSON.
    #[error("malformed token")]
    Malformed,
    /// The MAC does not match.
    #[error("bad signature")]
    BadSignature,
    /// Past its expiry.
    #[error("token expired")]
    Expired,
    /// Expires further in the future than the daemon accepts.
    #[error("token lifetime exceeds the maximum")]
    TooLong,
    /// The daemon has no token secret configured.
    #[error("browser tokens are not enabled on this node")]
    Disabled,
}

/// Mints and verifies browser tokens with the shared secret.
#[derive(Clone)]
pub struct TokenSigner {
    /// HMAC keyed with the secret; cloned for each token.
    keyed: HmacSha256,
    max_lifetime: Duration,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner").field("max_lifetime", &self.max_lifetime).finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// A signer over `secret`; [`verify`](Self::verify) refuses tokens claiming to live longer
    /// than `max_lifetime` from now. An empty secret is refused ([`TokenError::Disabled`]).
    pub fn new(secret: &[u8], max_lifetime: Duration) -> Result<Self, TokenError> {
        if secret.is_empty() {
            return Err(TokenError::Disabled);
        }
        // HMAC takes keys of any length; the error only exists for other MACs of the trait.
        let keyed = HmacSha256::new_from_slice(secret).map_err(|_| TokenError::Disabled)?;
        Ok(Self { keyed, max_lifetime })
    }

    /// Mints a token for `server` granting `permissions`, valid for `lifetime` from now.
    /// This is what the panel calls (with the node's `token_secret`).
    pub fn mint(&self, server: ServerId, permissions: &[Permission], lifetime: Duration) -> String {
        self.sign(&TokenClaims::new(server, permissions.to_vec(), unix_now().saturating_add(lifetime.as_secs())))
    }

    /// Signs arbitrary claims (tests use it for expired tokens; see [`TokenClaims::new`]).
    pub fn sign(&self, claims: &TokenClaims) -> String {
        // Serializing this plain struct cannot fail; an empty payload would only fail to verify.
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(payload);
        let mac = URL_SAFE_NO_PAD.encode(self.mac(payload.as_bytes()).finalize().into_bytes());
        format!("{payload}.{mac}")
    }

    /// Checks the signature, then expiry and lifetime; returns the claims.
    pub fn verify(&self, token: &str) -> Result<TokenClaims, TokenError> {
        self.verify_at(token, unix_now())
    }

    /// [`verify`](Self::verify) at `now` (Unix seconds).
    pub fn verify_at(&self, token: &str, now: u64) -> Result<TokenClaims, TokenError> {
        let (payload, mac) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| TokenError::Malformed)?;
        // `verify_slice` compares in constant time.
        self.mac(payload.as_bytes()).verify_slice(&mac).map_err(|_| TokenError::BadSignature)?;
        let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Malformed)?;
        let claims: TokenClaims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if claims.expires <= now {
            return Err(TokenError::Expired);
        }
        if claims.expires - now > self.max_lifetime.as_secs() {
            return Err(TokenError::TooLong);
        }
        Ok(claims)
    }

    fn mac(&self, payload: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(MAC_CONTEXT);
        mac.update(payload);
        mac
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        TokenSigner::new(b"0123456789abcdef0123456789abcdef", Duration::from_secs(900)).unwrap()
    }

    #[test]
    fn node_token_matches_only_itself() {
        let token = NodeToken::new("secret-node-token");
        assert!(token.matches("secret-node-token"));
        assert!(!token.matches("secret-node-tokeN"));
        assert!(!token.matches(""));
        assert!(!token.matches("secret-node-token "));
    }

    #[test]
    fn a_derived_console_secret_differs_from_the_token_and_between_nodes() {
        let (secret, node) = (b"a panel secret of at least 32 bytes.", nexus_core::ids::NodeId::new());
        let console = NodeToken::derive_console_secret(secret, node);
        assert_eq!(console, NodeToken::derive_console_secret(secret, node));
        assert_eq!(console.len(), 64);
        assert_ne!(console, NodeToken::derive(secret, node).0);
        assert_ne!(console, NodeToken::derive_console_secret(secret, nexus_core::ids::NodeId::new()));
    }

    #[test]
    fn derived_node_tokens_depend_on_the_secret_and_the_node() {
        let (a, node) = (b"a panel secret of at least 32 bytes.", nexus_core::ids::NodeId::new());
        let (token, stored) = NodeToken::derive(a, node);
        assert_eq!(NodeToken::derive(a, node).0, token, "the same inputs give the same token");
        assert!(stored.matches(&token) && token.len() == 64);
        assert_ne!(NodeToken::derive(b"another panel secret, 32+ bytes long", node).0, token);
        assert_ne!(NodeToken::derive(a, nexus_core::ids::NodeId::new()).0, token);
    }

    #[test]
    fn generated_node_tokens_are_distinct_and_survive_storage() {
        let (token, node_token) = NodeToken::generate();
        let (other, _) = NodeToken::generate();
        assert_ne!(token, other);
        assert_eq!(token.len(), 64);
        let stored = node_token.stored();
        assert!(stored.starts_with("sha256:") && !stored.contains(&token));
        let back = NodeToken::from_stored(&stored).unwrap();
        assert!(back.matches(&token) && !back.matches(&other));
        for bad in ["", "sha256:", "sha256:zz", &stored[..stored.len() - 1], &stored.replace("sha256:", "md5:")] {
            assert!(NodeToken::from_stored(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn minted_token_verifies_with_its_claims() {
        let server = ServerId::new();
        let token = signer().mint(server, &[Permission::ConsoleRead], Duration::from_secs(60));
        let claims = signer().verify(&token).unwrap();
        assert_eq!(claims.server, server);
        assert!(claims.allows(Permission::ConsoleRead));
        assert!(!claims.allows(Permission::ConsoleWrite));
    }

    #[test]
    fn tampering_and_other_secrets_are_refused() {
        let server = ServerId::new();
        let token = signer().mint(server, &[Permission::ConsoleRead], Duration::from_secs(60));
        let other = TokenSigner::new(b"another-secret-another-secret-xx", Duration::from_secs(900)).unwrap();
        assert_eq!(other.verify(&token), Err(TokenError::BadSignature));
        // Swap in a payload granting more, keeping the old MAC.
        let (_, mac) = token.split_once('.').unwrap();
        let forged =
            TokenClaims { server, permissions: Permission::ALL.to_vec(), expires: unix_now() + 60, nonce: "x".into() };
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(signer().verify(&format!("{forged_payload}.{mac}")), Err(TokenError::BadSignature));
        assert_eq!(signer().verify("no-dot"), Err(TokenError::Malformed));
        assert_eq!(signer().verify("a.!!!"), Err(TokenError::Malformed));
    }

    #[test]
    fn expiry_and_lifetime_are_enforced() {
        let s = signer();
        let claims = |expires| TokenClaims {
            server: ServerId::new(),
            permissions: vec![Permission::FileRead],
            expires,
            nonce: "n".into(),
        };
        let now = 1_000_000;
        assert_eq!(s.verify_at(&s.sign(&claims(now)), now), Err(TokenError::Expired));
        assert_eq!(s.verify_at(&s.sign(&claims(now - 5)), now), Err(TokenError::Expired));
        assert_eq!(s.verify_at(&s.sign(&claims(now + 901)), now), Err(TokenError::TooLong));
        assert!(s.verify_at(&s.sign(&claims(now + 900)), now).is_ok());
    }
}
