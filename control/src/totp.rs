//! TOTP second factor (RFC 6238: HMAC-SHA1, 30-second steps, 6 digits, as every
//! authenticator app reads an `otpauth://` URI) with single-use recovery codes.
//!
//! * Set up in two steps: [`ControlPlane::totp_setup`] stores a new secret (not yet asked at
//!   login) and returns it with its URI; [`ControlPlane::totp_enable`] turns it on once the
//!   user proves their app has it (a valid code) and returns ten recovery codes, shown once,
//!   stored as SHA-256 hashes.
//! * [`ControlPlane::verify_second_factor`] accepts the code of the current step or the one
//!   before or after (clock skew), never a step at or before the last one accepted (a code
//!   is good once), or an unused recovery code (then spent). Attempts are throttled per user
//!   like logins.
//! * Disabling needs the password.

use crate::accounts::{AuthError, constant_time_eq as equal, random_alphanumeric, sha256_hex as hash};
use crate::{ControlError, ControlPlane};
use chrono::Utc;
use hmac::{Hmac, Mac};
use nexus_core::ids::UserId;
use nexus_core::model::UserTotp;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Seconds per step.
pub const STEP_SECS: u64 = 30;
/// Recovery codes made when TOTP is turned on.
pub const RECOVERY_CODES: usize = 10;
const DIGITS: u32 = 6;
/// Bytes of a new secret (160 bits, RFC 4226's recommendation).
const SECRET_BYTES: usize = 20;

/// A new TOTP secret, to show to the user once (as text and as a QR code of `uri`).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TotpSetup {
    /// The secret, base32.
    pub secret: String,
    /// `otpauth://totp/...` for authenticator apps.
    pub uri: String,
}

impl std::fmt::Debug for TotpSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSetup(..)")
    }
}

/// RFC 4648 base32 without padding.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in bytes {
        buffer = (buffer << 8) | u32::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let (mut buffer, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in text.bytes().filter(|c| *c != b'=') {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | u32::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

/// The code of `secret` at time step `step` (RFC 4226 dynamic truncation).
pub fn code_at(secret: &[u8], step: u64) -> String {
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(secret) else { return String::new() };
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let binary = (u32::from(digest[offset] & 0x7f) << 24)
        | (u32::from(digest[offset + 1]) << 16)
        | (u32::from(digest[offset + 2]) << 8)
        | u32::from(digest[offset + 3]);
    format!("{:0width$}", binary % 10u32.pow(DIGITS), width = DIGITS as usize)
}

/// The current time step.
pub fn current_step() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) / STEP_SECS
}

/// The step within one of `now` whose code `code` is, later than `last`.
fn matching_step(secret: &[u8], code: &str, now: u64, last: Option<u64>) -> Option<u64> {
    [now.saturating_sub(1), now, now + 1]
        .into_iter()
        .filter(|step| last.is_none_or(|last| *step > last))
        .find(|step| equal(&code_at(secret, *step), code))
}

impl ControlPlane {
    /// Starts TOTP setup for `user`: a new secret, stored but not yet enabled. Refused while
    /// TOTP is enabled (disable it first).
    pub async fn totp_setup(&self, user: UserId) -> Result<TotpSetup, ControlError> {
        let account = self.store.get_user(user).await?;
        if self.store.get_totp(user).await?.is_some_and(|t| t.enabled_at.is_some()) {
            return Err(ControlError::Invalid { field: "totp", reason: "already enabled; disable it first".into() });
        }
        // Two v4 UUIDs (244 random bits from the operating system), hashed so the fixed
        // version bits do not show in the secret.
        let random = [*uuid::Uuid::new_v4().as_bytes(), *uuid::Uuid::new_v4().as_bytes()].concat();
        let bytes: Vec<u8> = Sha256::digest(random).iter().take(SECRET_BYTES).copied().collect();
        let secret = base32(&bytes);
        self.store
            .put_totp(&UserTotp {
                user,
                secret: secret.clone(),
                recovery_hashes: Vec::new(),
                enabled_at: None,
                last_step: None,
            })
            .await?;
        let label: String =
            account.email.chars().filter(|c| c.is_ascii_alphanumeric() || "@.-_".contains(*c)).collect();
        let uri = format!(
            "otpauth://totp/Nexus:{label}?secret={secret}&issuer=Nexus&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}"
        );
        Ok(TotpSetup { secret, uri })
    }

    /// Turns TOTP on with a first valid `code`; returns the recovery codes (shown once).
    pub async fn totp_enable(&self, user: UserId, code: &str) -> Result<Vec<String>, ControlError> {
        let Some(mut totp) = self.store.get_totp(user).await? else {
            return Err(ControlError::Invalid { field: "totp", reason: "set it up first".into() });
        };
        if totp.enabled_at.is_some() {
            return Err(ControlError::Invalid { field: "totp", reason: "already enabled".into() });
        }
        let secret = base32_decode(&totp.secret).unwrap_or_default();
        let Some(step) = matching_step(&secret, code.trim(), current_step(), None) else {
            return Err(ControlError::Invalid { field: "code", reason: "not the code your app shows now".into() });
        };
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| random_alphanumeric(10)).collect();
        totp.recovery_hashes = codes.iter().map(|c| hash(c)).collect();
        totp.enabled_at = Some(Utc::now());
        totp.last_step = Some(step);
        self.store.put_totp(&totp).await?;
        Ok(codes)
    }

    /// Whether `user` must give a second factor at login.
    pub async fn totp_enabled(&self, user: UserId) -> Result<bool, ControlError> {
        Ok(self.store.get_totp(user).await?.is_some_and(|t| t.enabled_at.is_some()))
    }

    /// Checks a TOTP `code` or a recovery code of `user` (throttled per user and address
    /// like logins); a recovery code is spent.
    pub async fn verify_second_factor(&self, user: UserId, code: &str, client: IpAddr) -> Result<(), ControlError> {
        let keys = [format!("totp:{user}|{client}"), format!("totp-user:{user}")];
        self.throttle.begin(&keys, Instant::now()).map_err(ControlError::Auth)?;
        let invalid = || ControlError::Auth(AuthError::InvalidCredentials);
        let _one_at_a_time = self.totp_check.lock().await;
        let Some(mut totp) = self.store.get_totp(user).await?.filter(|t| t.enabled_at.is_some()) else {
            return Err(invalid());
        };
        let code = code.trim();
        if code.len() > 64 {
            return Err(invalid());
        }
        let secret = base32_decode(&totp.secret).unwrap_or_default();
        if let Some(step) = matching_step(&secret, code, current_step(), totp.last_step) {
            totp.last_step = Some(step);
        } else {
            let presented = hash(code);
            let Some(index) = totp.recovery_hashes.iter().position(|h| equal(h, &presented)) else {
                tracing::info!(%user, %client, "wrong second factor");
                return Err(invalid());
            };
            totp.recovery_hashes.remove(index);
            tracing::info!(%user, left = totp.recovery_hashes.len(), "recovery code used");
        }
        self.store.put_totp(&totp).await?;
        self.throttle.succeeded(&keys);
        Ok(())
    }

    /// Turns TOTP off after checking the password.
    pub async fn totp_disable(&self, user: UserId, password: &str, client: IpAddr) -> Result<(), ControlError> {
        self.confirm_password(user, password, client, "password").await?;
        match self.store.delete_totp(user).await {
            Ok(()) | Err(nexus_core::store::StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_rfc_6238_test_vectors() {
        // RFC 6238 appendix B, SHA-1, secret "12345678901234567890", 8 digits there; the
        // last six digits are the 6-digit code.
        let secret = b"12345678901234567890";
        for (time, eight) in
            [(59u64, "94287082"), (1_111_111_109, "07081804"), (1_234_567_890, "89005924"), (2_000_000_000, "69279037")]
        {
            assert_eq!(code_at(secret, time / STEP_SECS), eight[2..], "at {time}");
        }
    }

    #[test]
    fn base32_round_trips_and_matches_rfc_4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_decode("MZXW6YTBOI").unwrap(), b"foobar");
        assert_eq!(base32_decode("mzxw6ytboi======").unwrap(), b"foobar");
        assert!(base32_decode("M1").is_none());
    }

    #[test]
    fn a_code_is_good_once_and_only_near_now() {
        let secret = b"a secret of twenty b";
        let now = 1000;
        assert_eq!(matching_step(secret, &code_at(secret, now), now, None), Some(now));
        assert_eq!(matching_step(secret, &code_at(secret, now + 1), now, None), Some(now + 1));
        assert_eq!(matching_step(secret, &code_at(secret, now + 2), now, None), None);
        assert_eq!(matching_step(secret, &code_at(secret, now), now, Some(now)), None, "replayed");
    }
}
