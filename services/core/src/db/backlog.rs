//! What waits and what went through: the outbox and email backlog, undeliverable
//! notifications, recent notifications and throughput per minute — the figures of
//! `raccordo status` and of the console's overview. Never a payload: only kinds, comuni,
//! counts and times.

use serde::Serialize;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

/// Counts of the outbox and of deliveries.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Backlog {
    /// Notifications not yet published by the relay.
    pub outbox_pending: i64,
    /// Emails not yet sent (transient failures included).
    pub deliveries_pending: i64,
    /// Emails refused for good by the server.
    pub deliveries_failed: i64,
    pub deliveries_sent: i64,
    pub undeliverable_total: i64,
}

/// Reads the backlog.
pub async fn backlog(conn: &mut PgConnection) -> Result<Backlog, sqlx::Error> {
    let (outbox_pending, undeliverable_total): (i64, i64) = sqlx::query_as(
        r#"
        SELECT count(*) FILTER (WHERE published_at IS NULL),
               count(*) FILTER (WHERE undeliverable)
        FROM notifications
        "#,
    )
    .fetch_one(&mut *conn)
    .await?;
    let (deliveries_pending, deliveries_failed, deliveries_sent): (i64, i64, i64) = sqlx::query_as(
        r#"
        SELECT count(*) FILTER (WHERE delivered_at IS NULL AND failed_at IS NULL),
               count(*) FILTER (WHERE failed_at IS NOT NULL),
               count(*) FILTER (WHERE delivered_at IS NOT NULL)
        FROM deliveries
        "#,
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(Backlog {
        outbox_pending,
        deliveries_pending,
        deliveries_failed,
        deliveries_sent,
        undeliverable_total,
    })
}

/// A notification as operators see it in lists: no payload.
#[derive(Debug, Clone, Serialize)]
pub struct NotificationSummary {
    pub id: Uuid,
    pub kind: String,
    pub comune_istat: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub undeliverable: bool,
    /// Recipients recorded for it.
    pub recipients: i64,
    /// Of which delivered.
    pub delivered: i64,
}

/// The newest notifications, newest first; `undeliverable_only` keeps those no referent matched.
pub async fn recent_notifications(
    conn: &mut PgConnection,
    undeliverable_only: bool,
    limit: i64,
) -> Result<Vec<NotificationSummary>, sqlx::Error> {
    type Row = (Uuid, String, Option<String>, OffsetDateTime, bool, i64, i64);
    let rows: Vec<Row> = sqlx::query_as(
        r#"
        SELECT n.id, n.kind, n.comune_istat, n.created_at, n.undeliverable,
               count(d.email), count(d.delivered_at)
        FROM notifications n
        LEFT JOIN deliveries d ON d.notification_id = n.id
        WHERE NOT $1 OR n.undeliverable
        GROUP BY n.id
        ORDER BY n.created_at DESC, n.id
        LIMIT $2
        "#,
    )
    .bind(undeliverable_only)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, kind, comune_istat, created_at, undeliverable, recipients, delivered)| {
                NotificationSummary {
                    id,
                    kind,
                    comune_istat,
                    created_at,
                    undeliverable,
                    recipients,
                    delivered,
                }
            },
        )
        .collect())
}

/// Events processed and emails delivered in each of the last `minutes` minutes, oldest
/// first (index 0 is `minutes - 1` minutes ago; the last is the current minute).
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub events: Vec<i64>,
    pub emails: Vec<i64>,
}

/// Reads the throughput of the last `minutes` minutes from `inbox` and `deliveries`.
pub async fn throughput(conn: &mut PgConnection, minutes: i32) -> Result<Throughput, sqlx::Error> {
    let rows: Vec<(i32, i64, i64)> = sqlx::query_as(
        r#"
        WITH buckets AS (
            SELECT generate_series(0, $1 - 1) AS ago
        ),
        events AS (
            SELECT floor(extract(epoch FROM now() - received_at) / 60)::INT AS ago, count(*) AS n
            FROM inbox
            WHERE received_at > now() - make_interval(mins => $1)
            GROUP BY 1
        ),
        emails AS (
            SELECT floor(extract(epoch FROM now() - delivered_at) / 60)::INT AS ago, count(*) AS n
            FROM deliveries
            WHERE delivered_at > now() - make_interval(mins => $1)
            GROUP BY 1
        )
        SELECT b.ago, COALESCE(e.n, 0), COALESCE(m.n, 0)
        FROM buckets b
        LEFT JOIN events e ON e.ago = b.ago
        LEFT JOIN emails m ON m.ago = b.ago
        ORDER BY b.ago DESC
        "#,
    )
    .bind(minutes)
    .fetch_all(conn)
    .await?;
    Ok(Throughput {
        events: rows.iter().map(|r| r.1).collect(),
        emails: rows.iter().map(|r| r.2).collect(),
    })
}
