//! Idempotent ingestion: the key (publisher, `source`, `id`) of every processed event is
//! recorded in the same transaction as its effects, so publishing an event again changes
//! nothing (CONTRACT 1.2 §3). With the key goes a digest of the event's type and data: the
//! same key with another digest is a conflict, never a silent duplicate.

use std::collections::HashMap;

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use crate::envelope::Envelope;

/// What the inbox says of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingest {
    /// First time: process it.
    New,
    /// Seen before, with the same type and data: do nothing.
    Duplicate,
    /// Seen before from this publisher with the same source and id but another type or
    /// data: the first one stands, this one is dead-lettered.
    Conflict,
}

/// Records the event's idempotency key; call first inside the handler's transaction.
pub async fn record_event(
    conn: &mut PgConnection,
    event: &Envelope,
) -> Result<Ingest, sqlx::Error> {
    let ingests = record_events(conn, &[event]).await?;
    Ok(ingests.first().copied().unwrap_or(Ingest::Duplicate))
}

/// Records the idempotency keys of several events in one statement (a second one only when
/// some were seen before); says for each whether it is new. An event repeated within
/// `events` is new once, at its first place.
pub async fn record_events(
    conn: &mut PgConnection,
    events: &[&Envelope],
) -> Result<Vec<Ingest>, sqlx::Error> {
    let publishers: Vec<&str> = events.iter().map(|e| e.publisher.as_str()).collect();
    let sources: Vec<&str> = events.iter().map(|e| e.source.as_str()).collect();
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let digests: Vec<Vec<u8>> = events.iter().map(|e| digest(e).to_vec()).collect();
    // A key recorded before 1.2 (publisher '') stands for every publisher.
    let inserted: Vec<(String, String, String)> = sqlx::query_as(
        r#"
        INSERT INTO inbox (publisher, source, event_id, event_type, digest)
        SELECT i.publisher, i.source, i.event_id, i.event_type, i.digest
        FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BYTEA[])
            AS i (publisher, source, event_id, event_type, digest)
        WHERE NOT EXISTS (
            SELECT 1 FROM inbox l
            WHERE l.publisher = '' AND l.source = i.source AND l.event_id = i.event_id
        )
        ON CONFLICT (publisher, source, event_id) DO NOTHING
        RETURNING publisher, source, event_id
        "#,
    )
    .bind(&publishers)
    .bind(&sources)
    .bind(&ids)
    .bind(&types)
    .bind(&digests)
    .fetch_all(&mut *conn)
    .await?;
    let mut fresh: std::collections::HashSet<(&str, &str, &str)> = inserted
        .iter()
        .map(|(p, s, i)| (p.as_str(), s.as_str(), i.as_str()))
        .collect();
    let mut ingests: Vec<Option<Ingest>> = events
        .iter()
        .map(|e| {
            fresh
                .remove(&(e.publisher.as_str(), e.source.as_str(), e.id.as_str()))
                .then_some(Ingest::New)
        })
        .collect();
    if ingests.iter().all(Option::is_some) {
        return Ok(ingests.into_iter().flatten().collect());
    }
    let stored = stored_digests(conn, events, &ingests).await?;
    Ok(events
        .iter()
        .zip(&digests)
        .zip(ingests.iter_mut())
        .map(|((e, digest), ingest)| {
            ingest.unwrap_or_else(|| {
                let key = (e.publisher.as_str(), e.source.as_str(), e.id.as_str());
                match stored.get(&key) {
                    // Recorded before 1.2, or by a concurrent transaction we cannot see.
                    Some(None) | None => Ingest::Duplicate,
                    Some(Some(first)) if first == digest => Ingest::Duplicate,
                    Some(Some(_)) => Ingest::Conflict,
                }
            })
        })
        .collect())
}

type Key<'a> = (&'a str, &'a str, &'a str);

/// The digests already recorded under the keys of the events not new (a key of before 1.2
/// answers for every publisher, with no digest).
async fn stored_digests<'a>(
    conn: &mut PgConnection,
    events: &[&'a Envelope],
    ingests: &[Option<Ingest>],
) -> Result<HashMap<Key<'a>, Option<Vec<u8>>>, sqlx::Error> {
    let seen: Vec<&&Envelope> = events
        .iter()
        .zip(ingests)
        .filter(|(_, i)| i.is_none())
        .map(|(e, _)| e)
        .collect();
    let publishers: Vec<&str> = seen.iter().map(|e| e.publisher.as_str()).collect();
    let sources: Vec<&str> = seen.iter().map(|e| e.source.as_str()).collect();
    let ids: Vec<&str> = seen.iter().map(|e| e.id.as_str()).collect();
    let rows: Vec<(String, String, String, Option<Vec<u8>>)> = sqlx::query_as(
        r#"
        SELECT i.publisher, i.source, i.event_id, x.digest
        FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[]) AS i (publisher, source, event_id)
        JOIN inbox x
          ON x.source = i.source AND x.event_id = i.event_id
         AND x.publisher IN (i.publisher, '')
        "#,
    )
    .bind(&publishers)
    .bind(&sources)
    .bind(&ids)
    .fetch_all(conn)
    .await?;
    let mut stored = HashMap::new();
    for (publisher, source, id, digest) in rows {
        let Some(event) = seen
            .iter()
            .find(|e| e.publisher == publisher && e.source == source && e.id == id)
        else {
            continue;
        };
        let key = (
            event.publisher.as_str(),
            event.source.as_str(),
            event.id.as_str(),
        );
        // A key of before 1.2 (no digest) wins: it makes a resend a duplicate.
        let entry = stored.entry(key).or_insert(digest.clone());
        if digest.is_none() {
            *entry = None;
        }
    }
    Ok(stored)
}

/// SHA-256 of the event's type and data in a canonical form (object members sorted), so a
/// publisher that serialises the same event again in another order is not in conflict.
pub fn digest(event: &Envelope) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(event.event_type.as_str().as_bytes());
    hasher.update([0]);
    canonical(&event.data, &mut hasher);
    hasher.finalize().into()
}

fn canonical(value: &Value, hasher: &mut Sha256) {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            hasher.update(b"{");
            for (name, member) in members {
                hash_string(name, hasher);
                hasher.update(b":");
                canonical(member, hasher);
                hasher.update(b",");
            }
            hasher.update(b"}");
        }
        Value::Array(items) => {
            hasher.update(b"[");
            for item in items {
                canonical(item, hasher);
                hasher.update(b",");
            }
            hasher.update(b"]");
        }
        Value::String(s) => hash_string(s, hasher),
        other => hasher.update(other.to_string().as_bytes()),
    }
}

fn hash_string(s: &str, hasher: &mut Sha256) {
    // Length-prefixed, so no string can imitate the punctuation around it.
    hasher.update(b"s");
    hasher.update((s.len() as u64).to_be_bytes());
    hasher.update(s.as_bytes());
}

/// How many events were processed, of every type or of the types starting with `prefix`
/// (`eviction.`): the demo waits on it.
pub async fn count_processed(
    conn: &mut PgConnection,
    prefix: Option<&str>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        r#"
        SELECT count(*)
        FROM inbox
        WHERE $1::TEXT IS NULL OR starts_with(event_type, $1)
        "#,
    )
    .bind(prefix)
    .fetch_one(conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::EventType;
    use serde_json::json;

    fn event(data: Value) -> Envelope {
        Envelope {
            id: "e1".into(),
            source: "urn:test".into(),
            event_type: EventType::HousingUnit,
            data,
            publisher: "comune_rho".into(),
        }
    }

    #[test]
    fn the_digest_ignores_member_order_but_not_values() {
        let a = event(json!({"unit_id": "u1", "places": 3, "notes": "x"}));
        let b = event(json!({"notes": "x", "places": 3, "unit_id": "u1"}));
        let c = event(json!({"unit_id": "u1", "places": 4, "notes": "x"}));
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&c));
    }

    #[test]
    fn a_string_cannot_imitate_the_structure_around_it() {
        let a = event(json!({"a": "b\",\"c\":\"d"}));
        let b = event(json!({"a": "b", "c": "d"}));
        assert_ne!(digest(&a), digest(&b));
    }
}
