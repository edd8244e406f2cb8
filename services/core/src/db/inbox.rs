//! Idempotent ingestion: the pair (`source`, `id`) of every processed event is recorded in
//! the same transaction as its effects, so publishing an event again changes nothing.

use sqlx::PgConnection;

use crate::envelope::Envelope;

/// Whether an event is new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingest {
    /// First time: process it.
    New,
    /// Seen before: do nothing.
    Duplicate,
}

/// Records the event's idempotency key; call first inside the handler's transaction.
pub async fn record_event(
    conn: &mut PgConnection,
    event: &Envelope,
) -> Result<Ingest, sqlx::Error> {
    let inserted = sqlx::query(
        r#"
        INSERT INTO inbox (source, event_id, event_type)
        VALUES ($1, $2, $3)
        ON CONFLICT (source, event_id) DO NOTHING
        "#,
    )
    .bind(&event.source)
    .bind(&event.id)
    .bind(event.event_type.as_str())
    .execute(conn)
    .await?
    .rows_affected();
    Ok(if inserted == 1 {
        Ingest::New
    } else {
        Ingest::Duplicate
    })
}

/// Records the idempotency keys of several events in one statement; says for each whether
/// it is new. An event repeated within `events` is new once, at its first place.
pub async fn record_events(
    conn: &mut PgConnection,
    events: &[&Envelope],
) -> Result<Vec<Ingest>, sqlx::Error> {
    let sources: Vec<&str> = events.iter().map(|e| e.source.as_str()).collect();
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let inserted: Vec<(String, String)> = sqlx::query_as(
        r#"
        INSERT INTO inbox (source, event_id, event_type)
        SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[])
        ON CONFLICT (source, event_id) DO NOTHING
        RETURNING source, event_id
        "#,
    )
    .bind(&sources)
    .bind(&ids)
    .bind(&types)
    .fetch_all(conn)
    .await?;
    let mut fresh: std::collections::HashSet<(&str, &str)> = inserted
        .iter()
        .map(|(s, i)| (s.as_str(), i.as_str()))
        .collect();
    Ok(events
        .iter()
        .map(|e| {
            if fresh.remove(&(e.source.as_str(), e.id.as_str())) {
                Ingest::New
            } else {
                Ingest::Duplicate
            }
        })
        .collect())
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
