//! A referent's mail preferences in the registry (issue 22): read by the mailer and the
//! self-service page, written by registry events, imports and the referent's own page —
//! each change in the referents' history like any other.

use sqlx::PgConnection;

use super::history::{Actor, set_actor};
use crate::preferences::Preferences;

/// What the self-service page shows of a referent: its office, never its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreferenceHolder {
    pub referent_id: String,
    pub institution: String,
    pub role: String,
    pub preferences: Preferences,
}

/// The referent `referent_id` and its preferences, if the registry holds it.
pub async fn load_preferences(
    conn: &mut PgConnection,
    referent_id: &str,
) -> Result<Option<PreferenceHolder>, sqlx::Error> {
    let row: Option<(String, String, String, serde_json::Value)> = sqlx::query_as(
        "SELECT referent_id, institution, role, preferences FROM referents WHERE referent_id = $1",
    )
    .bind(referent_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(
        |(referent_id, institution, role, stored)| PreferenceHolder {
            referent_id,
            institution,
            role,
            preferences: Preferences::from_stored(&stored),
        },
    ))
}

/// Replaces the preferences of `referent_id`, recorded as `actor`'s change, in `conn`'s
/// transaction. Returns false when the registry holds no such referent.
pub async fn set_preferences(
    conn: &mut PgConnection,
    referent_id: &str,
    preferences: &Preferences,
    actor: &Actor,
) -> Result<bool, sqlx::Error> {
    set_actor(conn, actor).await?;
    let value = serde_json::to_value(preferences).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let done = sqlx::query(
        "UPDATE referents SET preferences = $2, updated_at = now() WHERE referent_id = $1",
    )
    .bind(referent_id)
    .bind(value)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}
