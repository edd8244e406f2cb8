//! Acknowledgement tokens (CONTRACT D4): the link `console.public_url/ack/<token>` in the
//! emails of the kinds a person must act on, and its check by the console.
//!
//! A token is 49 bytes in hexadecimal: a version byte, the notification id (the one the
//! email prints in its footer), the first 8 bytes of SHA-256 of the lowercased address (as
//! in the `Message-ID`: enough to find the delivery, not to read the address), the expiry
//! in Unix seconds, and the first 16 bytes of HMAC-SHA256 over notification, full address
//! and expiry under `ack.key`. It names no address, no person, no kind and nothing of the
//! content; without the key none can be made, and a changed byte fails the MAC, which is
//! compared in constant time (`Mac::verify_truncated_left`).

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::settings::{AckSettings, Settings};

const VERSION: u8 = 1;
const DIGEST_BYTES: usize = 8;
const MAC_BYTES: usize = 16;
const TOKEN_BYTES: usize = 1 + 16 + DIGEST_BYTES + 8 + MAC_BYTES;
/// Separates the MAC's inputs from any other use of the key.
const DOMAIN: &[u8] = b"raccordo-ack-v1";

/// The key of the acknowledgement tokens (`ack.key`).
#[derive(Clone)]
pub struct AckKey(SecretString);

impl std::fmt::Debug for AckKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AckKey(redacted)")
    }
}

/// What a token claims, read before its MAC is checked: trust none of it until
/// [`AckKey::verify`] says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims {
    /// The notification.
    pub notification: Uuid,
    digest: [u8; DIGEST_BYTES],
    /// When the link stops working.
    pub expires_at: OffsetDateTime,
    mac: [u8; MAC_BYTES],
}

/// Why a token is refused. The console answers every one with the same 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not one of ours")]
    Malformed,
    #[error("the token's signature does not match")]
    Forged,
    #[error("the token has expired")]
    Expired,
}

impl AckKey {
    /// The configured key; none when `ack.key` is empty (links off).
    pub fn from_settings(settings: &AckSettings) -> Option<Self> {
        let key = settings.key.expose_secret();
        (!key.is_empty()).then(|| Self(SecretString::from(key.to_owned())))
    }

    fn mac(&self, notification: Uuid, recipient: &str, expires: i64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.expose_secret().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(DOMAIN);
        mac.update(notification.as_bytes());
        mac.update(&expires.to_be_bytes());
        mac.update(recipient.trim().to_lowercase().as_bytes());
        mac
    }

    /// The token for `recipient` of `notification`, valid until `expires_at`.
    pub fn issue(&self, notification: Uuid, recipient: &str, expires_at: OffsetDateTime) -> String {
        let expires = expires_at.unix_timestamp();
        let tag = self
            .mac(notification, recipient, expires)
            .finalize()
            .into_bytes();
        let mut bytes = Vec::with_capacity(TOKEN_BYTES);
        bytes.push(VERSION);
        bytes.extend_from_slice(notification.as_bytes());
        bytes.extend_from_slice(&recipient_digest(recipient));
        bytes.extend_from_slice(&expires.to_be_bytes());
        bytes.extend_from_slice(&tag[..MAC_BYTES]);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `claims` were made with this key for `recipient` and are still valid at
    /// `now`. The MAC is checked first, in constant time: an expired forgery is forged.
    pub fn verify(
        &self,
        claims: &Claims,
        recipient: &str,
        now: OffsetDateTime,
    ) -> Result<(), TokenError> {
        self.mac(
            claims.notification,
            recipient,
            claims.expires_at.unix_timestamp(),
        )
        .verify_truncated_left(&claims.mac)
        .map_err(|_| TokenError::Forged)?;
        // The digest is a lookup aid outside the MAC: it must name the same address.
        if !claims.names(recipient) {
            return Err(TokenError::Forged);
        }
        if now >= claims.expires_at {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

impl Claims {
    /// Reads a token's fields; anything but 98 hexadecimal digits of version 1 is refused.
    pub fn parse(token: &str) -> Result<Self, TokenError> {
        let text = token.as_bytes();
        if text.len() != TOKEN_BYTES * 2 {
            return Err(TokenError::Malformed);
        }
        let mut bytes = [0u8; TOKEN_BYTES];
        for (i, pair) in text.chunks_exact(2).enumerate() {
            let high = hex_value(pair[0]).ok_or(TokenError::Malformed)?;
            let low = hex_value(pair[1]).ok_or(TokenError::Malformed)?;
            bytes[i] = (high << 4) | low;
        }
        if bytes[0] != VERSION {
            return Err(TokenError::Malformed);
        }
        let notification = Uuid::from_slice(&bytes[1..17]).map_err(|_| TokenError::Malformed)?;
        let mut digest = [0u8; DIGEST_BYTES];
        digest.copy_from_slice(&bytes[17..17 + DIGEST_BYTES]);
        let at = 17 + DIGEST_BYTES;
        let mut expires = [0u8; 8];
        expires.copy_from_slice(&bytes[at..at + 8]);
        let expires_at = OffsetDateTime::from_unix_timestamp(i64::from_be_bytes(expires))
            .map_err(|_| TokenError::Malformed)?;
        let mut mac = [0u8; MAC_BYTES];
        mac.copy_from_slice(&bytes[at + 8..]);
        Ok(Self {
            notification,
            digest,
            expires_at,
            mac,
        })
    }

    /// Whether the token was made for `recipient` (a lookup aid, not a proof).
    pub fn names(&self, recipient: &str) -> bool {
        recipient_digest(recipient) == self.digest
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn recipient_digest(recipient: &str) -> [u8; DIGEST_BYTES] {
    let digest = Sha256::digest(recipient.trim().to_lowercase().as_bytes());
    let mut out = [0u8; DIGEST_BYTES];
    out.copy_from_slice(&digest[..DIGEST_BYTES]);
    out
}

/// What the mailer needs to put a link in an email: the key, the console's public URL and
/// how long a link lives. None when `console.public_url` is empty (links off).
#[derive(Debug, Clone)]
pub struct AckLinks {
    key: AckKey,
    base: String,
    ttl: time::Duration,
}

impl AckLinks {
    /// From the settings; none when `console.public_url` or `ack.key` is empty (validation
    /// refuses the first without the second).
    pub fn from_settings(settings: &Settings) -> Option<Self> {
        let base = settings.console.public_url.trim().trim_end_matches('/');
        if base.is_empty() {
            return None;
        }
        Some(Self {
            key: AckKey::from_settings(&settings.ack)?,
            base: base.to_owned(),
            ttl: time::Duration::days(i64::from(settings.ack.ttl_days)),
        })
    }

    /// The link for `recipient` of `notification`, issued at `now`.
    pub fn link(&self, notification: Uuid, recipient: &str, now: OffsetDateTime) -> String {
        let token = self.key.issue(notification, recipient, now + self.ttl);
        format!("{}/ack/{token}", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> AckKey {
        AckKey(SecretString::from(k.to_owned()))
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef-test";
    const ADDRESS: &str = "Servizisociali@Comune.Rho.example";

    fn in_a_day() -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::days(1)
    }

    #[test]
    fn a_token_verifies_for_its_recipient_and_reveals_no_address() {
        let id = Uuid::new_v4();
        let token = key(KEY).issue(id, ADDRESS, in_a_day());

        let claims = Claims::parse(&token).expect("parses");

        assert_eq!(token.len(), 98);
        assert!(!token.to_lowercase().contains("rho"));
        assert_eq!(claims.notification, id);
        assert!(claims.names("servizisociali@comune.rho.example"));
        assert!(!claims.names("altro@comune.rho.example"));
        assert_eq!(
            key(KEY).verify(&claims, ADDRESS, OffsetDateTime::now_utc()),
            Ok(())
        );
    }

    #[test]
    fn another_key_recipient_or_changed_byte_is_forged() {
        let id = Uuid::new_v4();
        let token = key(KEY).issue(id, ADDRESS, in_a_day());
        let claims = Claims::parse(&token).expect("parses");
        let now = OffsetDateTime::now_utc();

        assert_eq!(
            key("another key of at least thirty-two bytes").verify(&claims, ADDRESS, now),
            Err(TokenError::Forged)
        );
        assert_eq!(
            key(KEY).verify(&claims, "altro@comune.rho.example", now),
            Err(TokenError::Forged)
        );
        for at in [2, 40, 60, 97] {
            let mut changed = token.clone().into_bytes();
            changed[at] = if changed[at] == b'0' { b'1' } else { b'0' };
            let changed = String::from_utf8(changed).expect("ascii");
            let verdict = Claims::parse(&changed).and_then(|c| key(KEY).verify(&c, ADDRESS, now));
            assert!(verdict.is_err(), "byte {at}");
        }
    }

    #[test]
    fn an_expired_token_is_refused_and_a_later_expiry_cannot_be_forged() {
        let id = Uuid::new_v4();
        let past = OffsetDateTime::now_utc() - time::Duration::seconds(1);
        let token = key(KEY).issue(id, ADDRESS, past);
        let claims = Claims::parse(&token).expect("parses");

        assert_eq!(
            key(KEY).verify(&claims, ADDRESS, OffsetDateTime::now_utc()),
            Err(TokenError::Expired)
        );
        // Moving the expiry forward breaks the MAC.
        let mut bytes = token.into_bytes();
        bytes[65] = if bytes[65] == b'f' { b'e' } else { b'f' };
        let moved = Claims::parse(&String::from_utf8(bytes).expect("ascii")).expect("parses");
        assert_eq!(
            key(KEY).verify(&moved, ADDRESS, OffsetDateTime::now_utc()),
            Err(TokenError::Forged)
        );
    }

    #[test]
    fn any_input_parses_or_is_refused_without_panicking() {
        for input in [
            "",
            "x",
            "ü",
            &"ü".repeat(49),
            &"0".repeat(98),
            &"g".repeat(98),
            &"f".repeat(98),
            &"0".repeat(97),
            &format!("02{}", "0".repeat(96)),
            &format!("01{}", "f".repeat(96)),
            "../../etc/passwd",
        ] {
            let _ = Claims::parse(input);
        }
        assert_eq!(Claims::parse("ü"), Err(TokenError::Malformed));
        assert_eq!(Claims::parse(&"0".repeat(98)), Err(TokenError::Malformed));
    }
}
