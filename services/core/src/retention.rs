//! Retention (CONTRACT 1.2 §8, GDPR art. 5(1)(e)): what each table keeps, pruned in short
//! batches, and the log of every run.
//!
//! Each room owns the SQL of its own tables as [`Prune`]s; this module owns core's
//! (notifications, deliveries, the inbox, the timelines, the console's and the bounces'
//! records) and the loop that runs any of them: one transaction per batch of
//! `retention.batch_size` rows, taken with `FOR UPDATE SKIP LOCKED` so a row a worker holds
//! is left for the next run, and a `lock_timeout` so no batch waits long for anything else.
//! A run is idempotent: what it would delete is found anew from the data each time.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::settings::RetentionSettings;

/// The longest a batch waits for a lock before it gives up (and the run fails, to be
/// retried at the next check): a worker's transaction is never held up for longer.
const LOCK_TIMEOUT: &str = "2s";

/// What one kind of stored data keeps, and how it goes: counted (a dry run) or pruned in
/// batches.
#[async_trait]
pub trait Prune: Send + Sync {
    /// The kind as printed and logged, e.g. `inbox.keys`.
    fn kind(&self) -> &'static str;

    /// How many rows (or subjects) a run would prune now.
    async fn count(&self, conn: &mut PgConnection) -> Result<u64, sqlx::Error>;

    /// Prunes at most `limit` in `tx`; returns how many. Fewer than `limit` ends the run.
    async fn batch(&self, tx: &mut PgConnection, limit: i64) -> Result<u64, sqlx::Error>;
}

/// How many of a kind a run pruned (or, dry, would prune).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    pub kind: &'static str,
    pub count: u64,
}

/// Who started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The daily job of one replica.
    Daily,
    /// `raccordo retention run`.
    Command,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Daily => "daily",
            Trigger::Command => "command",
        }
    }
}

/// Whether a run changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Counts only.
    DryRun,
    /// Deletes.
    Prune,
}

/// Runs `prune` to the end: batches of `settings.batch_size`, each its own transaction,
/// `settings.batch_pause` apart; or, dry, counts.
pub async fn run_kind(
    pool: &PgPool,
    prune: &dyn Prune,
    settings: &RetentionSettings,
    mode: Mode,
) -> Result<Pruned, sqlx::Error> {
    let kind = prune.kind();
    if mode == Mode::DryRun {
        let mut conn = pool.acquire().await?;
        let count = prune.count(&mut conn).await?;
        return Ok(Pruned { kind, count });
    }
    let limit = i64::from(settings.batch_size);
    let mut count = 0;
    loop {
        let mut tx = pool.begin().await?;
        sqlx::query(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            .execute(&mut *tx)
            .await?;
        let n = prune.batch(&mut tx, limit).await?;
        tx.commit().await?;
        count += n;
        if n < u64::try_from(limit).unwrap_or(u64::MAX) {
            break;
        }
        if !settings.batch_pause().is_zero() {
            tokio::time::sleep(settings.batch_pause()).await;
        }
    }
    Ok(Pruned { kind, count })
}

/// Records a run's counts in `retention_log`, one row per kind, under one run id.
pub async fn record_log(
    conn: &mut PgConnection,
    pruned: &[Pruned],
    mode: Mode,
    trigger: Trigger,
) -> Result<Uuid, sqlx::Error> {
    let run = Uuid::new_v4();
    let kinds: Vec<&str> = pruned.iter().map(|p| p.kind).collect();
    let counts: Vec<i64> = pruned
        .iter()
        .map(|p| i64::try_from(p.count).unwrap_or(i64::MAX))
        .collect();
    sqlx::query(
        r#"
        INSERT INTO retention_log (run_id, kind, count, dry_run, trigger)
        SELECT $1, k, c, $4, $5
        FROM UNNEST($2::TEXT[], $3::BIGINT[]) AS u (k, c)
        "#,
    )
    .bind(run)
    .bind(&kinds)
    .bind(&counts)
    .bind(mode == Mode::DryRun)
    .bind(trigger.as_str())
    .execute(conn)
    .await?;
    Ok(run)
}

/// One line of the retention log.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct LogLine {
    pub run_id: Uuid,
    pub kind: String,
    pub count: i64,
    pub dry_run: bool,
    pub trigger: String,
    #[serde(with = "time::serde::rfc3339")]
    pub ran_at: OffsetDateTime,
}

/// The latest `limit` lines of the retention log, newest run first.
pub async fn recent_log(conn: &mut PgConnection, limit: i64) -> Result<Vec<LogLine>, sqlx::Error> {
    sqlx::query_as(
        r#"
        SELECT run_id, kind, count, dry_run, trigger, ran_at
        FROM retention_log
        ORDER BY ran_at DESC, id
        LIMIT $1
        "#,
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// `now` minus `days` days.
pub fn days_before(now: OffsetDateTime, days: u32) -> OffsetDateTime {
    now - time::Duration::days(i64::from(days))
}

/// `now` minus `years` years of 365.25 days (a leap day more or less is not a legal fact).
pub fn years_before(now: OffsetDateTime, years: u32) -> OffsetDateTime {
    now - Duration::from_secs(u64::from(years) * 31_557_600)
}

/// Rows of a table older than a cutoff, by a time column with an index: the timelines,
/// the inbox, the console's actions, the bounce reports, the retention log itself.
pub struct ByAge {
    kind: &'static str,
    table: &'static str,
    column: &'static str,
    before: OffsetDateTime,
}

impl ByAge {
    /// Delivery timelines (D1) older than `audit_years`.
    pub fn delivery_events(before: OffsetDateTime) -> Self {
        Self::new("delivery.events", "delivery_events", "at", before)
    }

    /// Idempotency keys older than `inbox_days`.
    pub fn inbox(before: OffsetDateTime) -> Self {
        Self::new("inbox.keys", "inbox", "received_at", before)
    }

    /// The console's audit of operators' actions, older than `audit_years`.
    pub fn console_actions(before: OffsetDateTime) -> Self {
        Self::new("audit.console_actions", "console_actions", "at", before)
    }

    /// Bounce reports read (D3), older than `audit_years`.
    pub fn bounce_reports(before: OffsetDateTime) -> Self {
        Self::new(
            "audit.bounce_reports",
            "bounce_reports",
            "received_at",
            before,
        )
    }

    /// Digests sent (issue 22), older than `audit_years`: the evidence of what each item
    /// went in. A digest not sent is never deleted here (its items would go again).
    pub fn digests(before: OffsetDateTime) -> Self {
        Self::new("audit.digests", "digests", "sent_at", before)
    }

    /// The retention log, older than `audit_years`.
    pub fn retention_log(before: OffsetDateTime) -> Self {
        Self::new("audit.retention_log", "retention_log", "ran_at", before)
    }

    fn new(
        kind: &'static str,
        table: &'static str,
        column: &'static str,
        before: OffsetDateTime,
    ) -> Self {
        Self {
            kind,
            table,
            column,
            before,
        }
    }
}

#[async_trait]
impl Prune for ByAge {
    fn kind(&self) -> &'static str {
        self.kind
    }

    async fn count(&self, conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE {} < $1",
            self.table, self.column
        );
        let n: i64 = sqlx::query_scalar(&sql)
            .bind(self.before)
            .fetch_one(conn)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn batch(&self, tx: &mut PgConnection, limit: i64) -> Result<u64, sqlx::Error> {
        // By ctid: one TID scan, whatever the table's key.
        let sql = format!(
            r#"
            DELETE FROM {t}
            WHERE ctid = ANY (ARRAY(
                SELECT ctid
                FROM {t}
                WHERE {c} < $1
                LIMIT $2
                FOR UPDATE SKIP LOCKED
            ))
            "#,
            t = self.table,
            c = self.column
        );
        Ok(sqlx::query(&sql)
            .bind(self.before)
            .bind(limit)
            .execute(tx)
            .await?
            .rows_affected())
    }
}

/// A notification is settled when the relay published it (or it had nobody to go to) and
/// none of its deliveries or reminders may still be sent, nor is held for an operator (a
/// replay needs its content).
const SETTLED: &str = r#"
    (n.published_at IS NOT NULL OR n.undeliverable)
    AND NOT EXISTS (
        SELECT 1 FROM deliveries d
        WHERE d.notification_id = n.id
          AND d.delivered_at IS NULL
          AND (d.failed_at IS NULL OR d.held_in IS NOT NULL)
    )
    AND NOT EXISTS (
        SELECT 1 FROM reminders r
        WHERE r.notification_id = n.id
          AND r.sent_at IS NULL
          AND r.failed_at IS NULL
    )
"#;

/// Kinds whose payload stays until `audit_years`: a comune's coverage history (the
/// console's comune page, `report coverage`) is read back from them, and they hold nothing
/// personal — counts and facilities of a comune.
pub const PAYLOAD_KEPT: [&str; 3] = [
    "quota.threshold",
    "quota.safeguard",
    "reception.over_capacity",
];

/// Settled notifications older than `notification_days`: the payload is reduced to
/// `{"scrubbed": true}`; the kind, the comune, the recipients (deliveries) and the
/// timeline stay. Not the kinds of [`PAYLOAD_KEPT`].
pub struct NotificationPayloads {
    pub before: OffsetDateTime,
}

#[async_trait]
impl Prune for NotificationPayloads {
    fn kind(&self) -> &'static str {
        "notification.payloads"
    }

    async fn count(&self, conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
        let sql = format!(
            "SELECT count(*) FROM notifications n WHERE NOT (n.payload ? 'scrubbed') AND n.created_at < $1 AND n.kind <> ALL ($2) AND {SETTLED}"
        );
        let n: i64 = sqlx::query_scalar(&sql)
            .bind(self.before)
            .bind(&PAYLOAD_KEPT[..])
            .fetch_one(conn)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn batch(&self, tx: &mut PgConnection, limit: i64) -> Result<u64, sqlx::Error> {
        let sql = format!(
            r#"
            UPDATE notifications
            SET payload = '{{"scrubbed": true}}'::JSONB
            WHERE id = ANY (ARRAY(
                SELECT n.id
                FROM notifications n
                WHERE NOT (n.payload ? 'scrubbed')
                  AND n.created_at < $1
                  AND n.kind <> ALL ($3)
                  AND {SETTLED}
                ORDER BY n.created_at
                LIMIT $2
                FOR UPDATE OF n SKIP LOCKED
            ))
            "#
        );
        Ok(sqlx::query(&sql)
            .bind(self.before)
            .bind(limit)
            .bind(&PAYLOAD_KEPT[..])
            .execute(tx)
            .await?
            .rows_affected())
    }
}

/// Settled notifications older than `audit_years`, with their deliveries, reminders,
/// escalations and eviction links (ON DELETE CASCADE): the delivery evidence's end.
pub struct Notifications {
    pub before: OffsetDateTime,
}

/// Every kind's name: the delete goes through `notifications_kind (kind, created_at)`.
fn kind_names() -> Vec<&'static str> {
    crate::notification::NotificationKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect()
}

#[async_trait]
impl Prune for Notifications {
    fn kind(&self) -> &'static str {
        "notifications"
    }

    async fn count(&self, conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
        let sql =
            format!("SELECT count(*) FROM notifications n WHERE n.created_at < $1 AND {SETTLED}");
        let n: i64 = sqlx::query_scalar(&sql)
            .bind(self.before)
            .fetch_one(conn)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn batch(&self, tx: &mut PgConnection, limit: i64) -> Result<u64, sqlx::Error> {
        let sql = format!(
            r#"
            DELETE FROM notifications
            WHERE id = ANY (ARRAY(
                SELECT n.id
                FROM notifications n
                WHERE n.kind = ANY ($3)
                  AND n.created_at < $1
                  AND {SETTLED}
                LIMIT $2
                FOR UPDATE OF n SKIP LOCKED
            ))
            "#
        );
        Ok(sqlx::query(&sql)
            .bind(self.before)
            .bind(limit)
            .bind(kind_names())
            .execute(tx)
            .await?
            .rows_affected())
    }
}

/// Among `ids`, the notifications whose payload is scrubbed or reduced, or that are gone:
/// their `.eml` files have no reason to stay.
pub async fn without_payload(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        r#"
        SELECT i
        FROM UNNEST($1::UUID[]) AS i
        WHERE NOT EXISTS (
            SELECT 1 FROM notifications n
            WHERE n.id = i
              AND NOT (n.payload ? 'scrubbed')
        )
        "#,
    )
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// Core's kinds, their cutoffs computed from `now`.
pub fn core_prunes(settings: &RetentionSettings, now: OffsetDateTime) -> Vec<Box<dyn Prune>> {
    let audit = years_before(now, settings.audit_years);
    // What is past audit_years goes before payloads are reduced: never reduced to be deleted.
    vec![
        Box::new(Notifications { before: audit }),
        Box::new(NotificationPayloads {
            before: days_before(now, settings.notification_days),
        }),
        Box::new(ByAge::inbox(days_before(now, settings.inbox_days))),
        Box::new(ByAge::delivery_events(audit)),
        Box::new(ByAge::console_actions(audit)),
        Box::new(ByAge::bounce_reports(audit)),
        Box::new(ByAge::digests(audit)),
        Box::new(ByAge::retention_log(audit)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn ten_audit_years_end_ten_calendar_years_back_within_a_day() {
        let now = datetime!(2036-06-15 12:00 UTC);
        let cutoff = years_before(now, 10);
        assert!((cutoff - datetime!(2026-06-15 12:00 UTC)).abs() < time::Duration::days(1));
    }

    #[test]
    fn every_kind_name_is_listed_for_the_aged_delete() {
        assert_eq!(
            kind_names().len(),
            crate::notification::NotificationKind::ALL.len()
        );
    }
}
