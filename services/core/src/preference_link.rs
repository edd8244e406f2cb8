//! The signed links to a referent's preferences page (issue 22): in the footer of every
//! email, `console.public_url/preferenze/<token>`; and, for the kinds a referent may turn
//! off, the one-click unsubscribe of `List-Unsubscribe` (RFC 2369, RFC 8058),
//! `console.public_url/preferenze/<token>/disiscrivi`, whose token also names the kind.
//!
//! A token is hexadecimal: a version byte, the expiry in Unix seconds, the kind's byte
//! (0xff for none), the referent id's length and bytes, and the first 16 bytes of
//! HMAC-SHA256 over all of it under `ack.key`, separated from the acknowledgement tokens by
//! its own domain. The referent id is an office's code, not a person's data; without the
//! key no token can be made, and the MAC is compared in constant time.

use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;
use time::OffsetDateTime;

use crate::notification::NotificationKind;
use crate::settings::Settings;

const VERSION: u8 = 1;
const MAC_BYTES: usize = 16;
const NO_KIND: u8 = 0xff;
/// Separates this MAC from any other use of `ack.key`.
const DOMAIN: &[u8] = b"raccordo-preferences-v1";
/// The longest referent id (the registry's schema allows 64 characters of up to 4 bytes).
const MAX_ID_BYTES: usize = 255;

/// What a verified token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The referent whose preferences it opens.
    pub referent_id: String,
    /// The kind a one-click unsubscribe turns off; none for the page.
    pub kind: Option<NotificationKind>,
    /// When it stops working.
    pub expires_at: OffsetDateTime,
}

/// Why a token is refused. The console answers every one with the same 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the token is not one of ours")]
    Malformed,
    #[error("the token's signature does not match")]
    Forged,
    #[error("the token has expired")]
    Expired,
}

/// Issues and checks the links. None when `console.public_url` or `ack.key` is empty.
#[derive(Clone)]
pub struct PreferenceLinks {
    key: secrecy::SecretString,
    base: String,
    ttl: time::Duration,
}

impl std::fmt::Debug for PreferenceLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreferenceLinks")
            .field("base", &self.base)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl PreferenceLinks {
    /// From the settings (`console.public_url`, `ack.key`, `preferences.link_days`).
    pub fn from_settings(settings: &Settings) -> Option<Self> {
        let base = settings.console.public_url.trim().trim_end_matches('/');
        let key = settings.ack.key.expose_secret();
        if base.is_empty() || key.is_empty() {
            return None;
        }
        Some(Self::new(
            key,
            base,
            time::Duration::days(i64::from(settings.preferences.link_days)),
        ))
    }

    /// Links under `base` signed with `key`, living `ttl` (tests, the console's checker).
    pub fn new(key: &str, base: &str, ttl: time::Duration) -> Self {
        Self {
            key: secrecy::SecretString::from(key.to_owned()),
            base: base.trim_end_matches('/').to_owned(),
            ttl,
        }
    }

    fn mac(&self, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.expose_secret().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(DOMAIN);
        mac.update(body);
        mac
    }

    /// The token for `referent_id` (and `kind`, for an unsubscribe), valid until `expires_at`.
    pub fn token(
        &self,
        referent_id: &str,
        kind: Option<NotificationKind>,
        expires_at: OffsetDateTime,
    ) -> String {
        let id = referent_id.as_bytes();
        let id = &id[..id.len().min(MAX_ID_BYTES)];
        let mut body = Vec::with_capacity(11 + id.len() + MAC_BYTES);
        body.push(VERSION);
        body.extend_from_slice(&expires_at.unix_timestamp().to_be_bytes());
        body.push(kind.map_or(NO_KIND, kind_byte));
        body.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
        body.extend_from_slice(id);
        let tag = self.mac(&body).finalize().into_bytes();
        body.extend_from_slice(&tag[..MAC_BYTES]);
        body.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The preferences page of `referent_id`, issued at `now`.
    pub fn page_url(&self, referent_id: &str, now: OffsetDateTime) -> String {
        format!(
            "{}/preferenze/{}",
            self.base,
            self.token(referent_id, None, now + self.ttl)
        )
    }

    /// The one-click unsubscribe of `kind` for `referent_id`, issued at `now`.
    pub fn unsubscribe_url(
        &self,
        referent_id: &str,
        kind: NotificationKind,
        now: OffsetDateTime,
    ) -> String {
        format!(
            "{}/preferenze/{}/disiscrivi",
            self.base,
            self.token(referent_id, Some(kind), now + self.ttl)
        )
    }

    /// What `token` grants at `now`: the MAC first, in constant time; an expired forgery is
    /// forged.
    pub fn verify(&self, token: &str, now: OffsetDateTime) -> Result<Grant, LinkError> {
        let bytes = from_hex(token).ok_or(LinkError::Malformed)?;
        if bytes.len() < 11 + MAC_BYTES || bytes[0] != VERSION {
            return Err(LinkError::Malformed);
        }
        let (body, tag) = bytes.split_at(bytes.len() - MAC_BYTES);
        let id_len = usize::from(body[10]);
        if body.len() != 11 + id_len {
            return Err(LinkError::Malformed);
        }
        self.mac(body)
            .verify_truncated_left(tag)
            .map_err(|_| LinkError::Forged)?;
        let mut expires = [0u8; 8];
        expires.copy_from_slice(&body[1..9]);
        let expires_at = OffsetDateTime::from_unix_timestamp(i64::from_be_bytes(expires))
            .map_err(|_| LinkError::Malformed)?;
        let kind = match body[9] {
            NO_KIND => None,
            b => Some(
                NotificationKind::ALL
                    .get(usize::from(b))
                    .copied()
                    .ok_or(LinkError::Malformed)?,
            ),
        };
        let referent_id =
            String::from_utf8(body[11..].to_vec()).map_err(|_| LinkError::Malformed)?;
        if now >= expires_at {
            return Err(LinkError::Expired);
        }
        Ok(Grant {
            referent_id,
            kind,
            expires_at,
        })
    }
}

fn kind_byte(kind: NotificationKind) -> u8 {
    NotificationKind::ALL
        .iter()
        .position(|k| *k == kind)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(NO_KIND)
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) || text.len() > 2 * 600 {
        return None;
    }
    let value = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    text.chunks_exact(2)
        .map(|p| Some((value(p[0])? << 4) | value(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef-test";

    fn links() -> PreferenceLinks {
        PreferenceLinks::new(KEY, "https://raccordo.example/", time::Duration::days(90))
    }

    #[test]
    fn a_page_link_and_an_unsubscribe_link_grant_what_they_name() {
        let now = OffsetDateTime::now_utc();
        let url = links().page_url("ss-rho", now);
        let token = url.rsplit('/').next().expect("a token");
        assert!(url.starts_with("https://raccordo.example/preferenze/"));
        let grant = links().verify(token, now).expect("valid");
        assert_eq!(grant.referent_id, "ss-rho");
        assert_eq!(grant.kind, None);
        let url = links().unsubscribe_url("ss-rho", NotificationKind::EvictionStats, now);
        let token = url.split('/').rev().nth(1).expect("a token");
        let grant = links().verify(token, now).expect("valid");
        assert_eq!(grant.kind, Some(NotificationKind::EvictionStats));
    }

    #[test]
    fn another_key_a_changed_byte_or_an_expired_link_is_refused() {
        let now = OffsetDateTime::now_utc();
        let token = links().token("ss-rho", None, now + time::Duration::days(1));
        let other = PreferenceLinks::new(
            "another key of thirty-two bytes!!",
            "https://x",
            time::Duration::days(1),
        );
        assert_eq!(other.verify(&token, now), Err(LinkError::Forged));
        for at in 0..token.len() {
            let mut changed = token.clone().into_bytes();
            changed[at] = if changed[at] == b'0' { b'1' } else { b'0' };
            let changed = String::from_utf8(changed).expect("ascii");
            assert!(links().verify(&changed, now).is_err(), "byte {at}");
        }
        let old = links().token("ss-rho", None, now - time::Duration::seconds(1));
        assert_eq!(links().verify(&old, now), Err(LinkError::Expired));
    }

    #[test]
    fn any_input_is_refused_without_panicking() {
        let now = OffsetDateTime::now_utc();
        for input in [
            "",
            "x",
            "ü",
            "../../etc",
            &"0".repeat(54),
            &"f".repeat(54),
            &"0".repeat(5000),
        ] {
            assert!(links().verify(input, now).is_err(), "{input:?}");
        }
    }
}
