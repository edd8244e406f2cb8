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
