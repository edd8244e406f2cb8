//! What operators see of bounces (CONTRACT D3): the deliveries that bounced, who stood in
//! for each, those nobody could stand in for, and the reports that matched no delivery
//! (forged or stray) or were not reports at all. For `raccordo status` and the console.
//! Referent ids only: no address leaves this module.

use serde::Serialize;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

/// One delivery that bounced.
#[derive(Debug, Clone, Serialize)]
pub struct BouncedDelivery {
    pub notification_id: Uuid,
    pub kind: String,
    pub referent_id: String,
    /// `email` or `pec`.
    pub channel: String,
    /// The DSN's status or the refusal's code (`5.1.1`).
    pub status: String,
    /// `dsn` (a report) or `smtp` (refused at send time).
    pub source: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The referents that stand in for it (empty: nobody was left).
    pub stand_ins: Vec<String>,
}

/// Bounces at a glance.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Bounces {
    /// Deliveries that bounced, ever (within `retention.audit_years`).
    pub bounced_total: i64,
    /// Of which nobody could stand in for: an operator must act.
    pub without_stand_in: i64,
    /// Reports that named no delivery handed over to that address.
    pub unmatched_reports: i64,
    /// Messages of the bounce mailbox that were not delivery reports.
    pub malformed_reports: i64,
    /// The most recent bounces, newest first.
    pub recent: Vec<BouncedDelivery>,
}

type BounceRow = (
    Uuid,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    OffsetDateTime,
    Vec<String>,
);

/// Bounce counts and the `limit` most recent bounces.
pub async fn bounces(conn: &mut PgConnection, limit: i64) -> Result<Bounces, sqlx::Error> {
    let (bounced_total, without_stand_in): (i64, i64) = sqlx::query_as(
        r#"
        SELECT count(*),
               count(*) FILTER (WHERE NOT EXISTS (
                   SELECT 1 FROM delivery_events f
                   WHERE f.notification_id = b.notification_id
                     AND f.recipient = b.recipient
                     AND f.event = 'fallback'
               ))
        FROM delivery_events b
        WHERE b.event = 'bounced'
        "#,
    )
    .fetch_one(&mut *conn)
    .await?;
    let (unmatched_reports, malformed_reports): (i64, i64) = sqlx::query_as(
        r#"
        SELECT count(*) FILTER (WHERE outcome = 'unmatched'),
               count(*) FILTER (WHERE outcome = 'malformed')
        FROM bounce_reports
        "#,
    )
    .fetch_one(&mut *conn)
    .await?;
    let rows: Vec<BounceRow> = sqlx::query_as(
        r#"
        SELECT b.notification_id, b.kind, b.referent_id, b.channel,
               b.details ->> 'status', b.details ->> 'source', b.at,
               ARRAY(
                   SELECT f.details ->> 'to'
                   FROM delivery_events f
                   WHERE f.notification_id = b.notification_id
                     AND f.recipient = b.recipient
                     AND f.event = 'fallback'
                     AND f.details ? 'to'
                   ORDER BY f.id
               )
        FROM delivery_events b
        WHERE b.event = 'bounced'
        ORDER BY b.id DESC
        LIMIT $1
        "#,
    )
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Bounces {
        bounced_total,
        without_stand_in,
        unmatched_reports,
        malformed_reports,
        recent: rows
            .into_iter()
            .map(
                |(notification_id, kind, referent_id, channel, status, source, at, stand_ins)| {
                    BouncedDelivery {
                        notification_id,
                        kind,
                        referent_id,
                        channel,
                        status: status.unwrap_or_default(),
                        source: source.unwrap_or_default(),
                        at,
                        stand_ins,
                    }
                },
            )
            .collect(),
    })
}
