//! Publishers' bearer tokens (CONTRACT 1.2 §10, §11): 256 random bits, shown once, stored
//! as a SHA-256 (a token is never guessable, so a slow hash would add nothing).

use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use time::OffsetDateTime;

/// What every token starts with, so a leaked one is recognised (secret scanners, logs).
pub const PREFIX: &str = "rcd_";

/// A new token: the prefix and 64 hex digits.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{PREFIX}{}", hex(&bytes))
}

/// The stored form of a token.
pub fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Stores a new token of `publisher` and returns it with its id; the token itself is
/// never stored.
pub async fn add(pool: &PgPool, publisher: &str) -> Result<(i64, String), sqlx::Error> {
    let token = generate();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO publisher_tokens (publisher, hash) VALUES ($1, $2) RETURNING id",
    )
    .bind(publisher)
    .bind(hash(&token))
    .fetch_one(pool)
    .await?;
    Ok((id, token))
}

/// One stored token, as `publishers token list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenRow {
    pub id: i64,
    pub publisher: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// Every token, oldest first.
pub async fn list(pool: &PgPool) -> Result<Vec<TokenRow>, sqlx::Error> {
    let rows: Vec<(i64, String, OffsetDateTime, Option<OffsetDateTime>)> = sqlx::query_as(
        "SELECT id, publisher, created_at, revoked_at FROM publisher_tokens ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, publisher, created_at, revoked_at)| TokenRow {
            id,
            publisher,
            created_at,
            revoked_at,
        })
        .collect())
}

/// Revokes a token by id; false if there is none, or it was revoked already.
pub async fn revoke(pool: &PgPool, id: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE publisher_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The publisher a presented token belongs to, if it is a live token.
pub async fn publisher_of(pool: &PgPool, token: &str) -> Result<Option<String>, sqlx::Error> {
    if !is_well_formed(token) {
        // Never a database round trip for what cannot be a token.
        return Ok(None);
    }
    sqlx::query_scalar(
        "SELECT publisher FROM publisher_tokens WHERE hash = $1 AND revoked_at IS NULL",
    )
    .bind(hash(token))
    .fetch_optional(pool)
    .await
}

/// Whether `token` has the form [`generate`] gives: the prefix and 64 lower-case hex digits.
pub fn is_well_formed(token: &str) -> bool {
    token.strip_prefix(PREFIX).is_some_and(|rest| {
        rest.len() == 64
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_stored_only_as_their_hash() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 64, "{a}");
        assert_eq!(hash(&a).len(), 32);
        assert_ne!(hash(&a), a.as_bytes());
        assert!(is_well_formed(&a));
        for bad in [
            "",
            "rcd_",
            "rcd_abc",
            &a.to_uppercase(),
            &format!("{a}0"),
            &a[1..],
        ] {
            assert!(!is_well_formed(bad), "{bad}");
        }
    }
}
