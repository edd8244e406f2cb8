//! Reminders and escalation of urgent notifications nobody acknowledged (CONTRACT D5).
//!
//! Every replica runs the same passes; the database makes each step happen once. The
//! reminder is decided by inserting the notification's row of `escalations` (its primary
//! key: a second replica's insert waits for the first's commit and then does nothing),
//! together with one row of `reminders` per recipient it was sent to; the escalation by
//! setting `escalated_at` on that row, locked `FOR UPDATE SKIP LOCKED`, in the transaction
//! that writes the `delivery.unacknowledged` notification. A process killed anywhere rolls
//! its transaction back and the next pass, of any replica, does it again. Reminders are
//! then sent as deliveries are: claimed, sent, recorded in the claim's transaction.

use std::time::Duration;

use serde_json::Value;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::evidence::{self, DeliveryEvent, Evidence};
use super::outbox::{AfterFailure, DueDelivery, FailedEmail, NewNotification, SentEmail};
use super::signal::OUTBOX_CHANNEL;
use crate::domain::ComuneIstat;
use crate::payload::{Payload, UnacknowledgedPayload, UnacknowledgedRecipient};

/// The kinds that are reminded and escalated when urgent: the eviction alert of C5 and the
/// pronta accoglienza of A2 (always urgent).
pub const ESCALATING_KINDS: &[&str] = &["eviction.alert", "asylum.pronta_accoglienza"];

/// Decides the reminders due: urgent notifications of [`ESCALATING_KINDS`] older than
/// `after`, not acknowledged by anyone, not scrubbed (a revoked consent stops everything),
/// not reminded yet. Each gets one reminder per recipient it was sent to; the senders are
/// woken at commit. Returns the notifications.
pub async fn decide_reminders(
    conn: &mut PgConnection,
    after: Duration,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let reminded: Vec<Uuid> = sqlx::query_scalar(
        r#"
        WITH due AS (
            SELECT n.id
            FROM notifications n
            WHERE n.urgent
              AND n.kind = ANY($1)
              AND n.created_at <= now() - make_interval(secs => $2)
              AND NOT n.payload ? 'scrubbed'
              AND NOT EXISTS (SELECT 1 FROM escalations e WHERE e.notification_id = n.id)
              AND NOT EXISTS (
                    SELECT 1 FROM deliveries d
                    WHERE d.notification_id = n.id
                      AND d.acknowledged_at IS NOT NULL
              )
            ORDER BY n.created_at
            LIMIT 100
        ), marked AS (
            INSERT INTO escalations (notification_id)
            SELECT id FROM due
            ON CONFLICT (notification_id) DO NOTHING
            RETURNING notification_id
        ), reminded AS (
            INSERT INTO reminders (notification_id, email)
            SELECT d.notification_id, d.email
            FROM deliveries d
            JOIN marked m ON m.notification_id = d.notification_id
            WHERE d.delivered_at IS NOT NULL
            RETURNING notification_id
        )
        SELECT m.notification_id
        FROM marked m
        "#,
    )
    .bind(ESCALATING_KINDS)
    .bind(after.as_secs_f64())
    .fetch_all(&mut *conn)
    .await?;
    if !reminded.is_empty() {
        // Wakes the senders at commit, as a new notification does.
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(OUTBOX_CHANNEL)
            .execute(&mut *conn)
            .await?;
    }
    Ok(reminded)
}

/// Claims up to `limit` reminders due, as deliveries to send (`attempts` are the
/// reminder's). A reminder of a notification acknowledged or scrubbed meanwhile is not
/// sent. They stay locked until `tx` ends.
pub async fn claim_due_reminders(
    tx: &mut PgConnection,
    limit: i64,
) -> Result<Vec<DueDelivery>, sqlx::Error> {
    sqlx::query_as(
        r#"
        SELECT d.notification_id, n.kind, n.payload, n.urgent,
               d.email, d.referent_id, d.name, d.institution, d.role, r.attempts, d.channel,
               n.created_at, '{}'::JSONB AS preferences, FALSE AS out_of_digest
        FROM reminders r
        JOIN deliveries d ON d.notification_id = r.notification_id AND d.email = r.email
        JOIN notifications n ON n.id = r.notification_id
        WHERE r.sent_at IS NULL
          AND r.failed_at IS NULL
          AND r.next_attempt_at <= now()
          AND NOT n.payload ? 'scrubbed'
          AND NOT EXISTS (
                SELECT 1 FROM deliveries a
                WHERE a.notification_id = r.notification_id
                  AND a.acknowledged_at IS NOT NULL
          )
        ORDER BY r.next_attempt_at
        LIMIT $1
        FOR UPDATE OF r SKIP LOCKED
        "#,
    )
    .bind(limit)
    .fetch_all(tx)
    .await
}

/// Records reminders the server accepted, and `reminded` on their timelines.
pub async fn record_reminders_sent(
    tx: &mut PgConnection,
    sent: &[SentEmail],
) -> Result<(), sqlx::Error> {
    if sent.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = sent.iter().map(|s| s.notification_id).collect();
    let emails: Vec<&str> = sent.iter().map(|s| s.email.as_str()).collect();
    let message_ids: Vec<&str> = sent.iter().map(|s| s.message_id.as_str()).collect();
    sqlx::query(
        r#"
        UPDATE reminders r
        SET sent_at = now(),
            message_id = s.message_id,
            attempts = r.attempts + 1,
            last_error = NULL
        FROM UNNEST($1::UUID[], $2::TEXT[], $3::TEXT[]) AS s (notification_id, email, message_id)
        WHERE r.notification_id = s.notification_id
          AND r.email = s.email
        "#,
    )
    .bind(&ids)
    .bind(&emails)
    .bind(&message_ids)
    .execute(&mut *tx)
    .await?;
    let events: Vec<Evidence> = sent
        .iter()
        .map(|s| {
            Evidence::new(s.notification_id, s.email.clone(), DeliveryEvent::Reminded)
                .with("reply", s.response.clone())
        })
        .collect();
    evidence::record(tx, &events).await?;
    Ok(())
}

/// Records reminders that failed: due again after the delay, or given up (a reminder is
/// not held for an operator: the escalation follows anyway).
pub async fn record_reminders_failed(
    tx: &mut PgConnection,
    failed: &[FailedEmail],
) -> Result<(), sqlx::Error> {
    if failed.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = failed.iter().map(|f| f.notification_id).collect();
    let emails: Vec<&str> = failed.iter().map(|f| f.email.as_str()).collect();
    let errors: Vec<&str> = failed.iter().map(|f| f.error.as_str()).collect();
    let delays_ms: Vec<Option<i64>> = failed
        .iter()
        .map(|f| match f.then {
            AfterFailure::RetryAfter(d) => Some(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            AfterFailure::Hold(_) => None,
        })
        .collect();
    sqlx::query(
        r#"
        UPDATE reminders r
        SET attempts = r.attempts + 1,
            last_error = f.error,
            next_attempt_at = CASE
                WHEN f.delay_ms IS NULL THEN r.next_attempt_at
                ELSE now() + make_interval(secs => f.delay_ms / 1000.0)
            END,
            failed_at = CASE WHEN f.delay_ms IS NULL THEN now() ELSE NULL END
        FROM UNNEST($1::UUID[], $2::TEXT[], $3::TEXT[], $4::BIGINT[])
            AS f (notification_id, email, error, delay_ms)
        WHERE r.notification_id = f.notification_id
          AND r.email = f.email
        "#,
    )
    .bind(&ids)
    .bind(&emails)
    .bind(&errors)
    .bind(&delays_ms)
    .execute(tx)
    .await?;
    Ok(())
}

type DueEscalation = (Uuid, String, Option<String>, OffsetDateTime);

/// Escalates the notifications reminded and still unacknowledged twice `after` since they
/// were decided: one `delivery.unacknowledged` each (see [`crate::payload::delivery`]),
/// `escalated` on every timeline of theirs, in this transaction. Rows another replica is
/// escalating are skipped. Returns the new notifications' ids.
pub async fn escalate_due(
    tx: &mut PgConnection,
    after: Duration,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let due: Vec<DueEscalation> = sqlx::query_as(
        r#"
        SELECT e.notification_id, n.kind, n.comune_istat, n.created_at
        FROM escalations e
        JOIN notifications n ON n.id = e.notification_id
        WHERE e.escalated_at IS NULL
          AND n.created_at <= now() - make_interval(secs => $1 * 2)
          AND NOT n.payload ? 'scrubbed'
          AND NOT EXISTS (
                SELECT 1 FROM deliveries a
                WHERE a.notification_id = e.notification_id
                  AND a.acknowledged_at IS NOT NULL
          )
        ORDER BY n.created_at
        LIMIT 20
        FOR UPDATE OF e SKIP LOCKED
        "#,
    )
    .bind(after.as_secs_f64())
    .fetch_all(&mut *tx)
    .await?;
    let mut created = Vec::with_capacity(due.len());
    for (id, kind, comune, at) in due {
        let unacknowledged = escalate_one(tx, id, &kind, comune.as_deref(), at, after).await?;
        created.extend(unacknowledged);
    }
    Ok(created)
}

async fn escalate_one(
    tx: &mut PgConnection,
    id: Uuid,
    kind: &str,
    comune: Option<&str>,
    created_at: OffsetDateTime,
    after: Duration,
) -> Result<Option<Uuid>, sqlx::Error> {
    let deliveries: Vec<(String, String, String)> = sqlx::query_as(
        r#"
        SELECT email, referent_id, institution
        FROM deliveries
        WHERE notification_id = $1
        ORDER BY referent_id
        "#,
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    let comune = match comune.map(ComuneIstat::parse) {
        Some(Ok(istat)) => crate::registry::load_comune(tx, &istat).await?,
        _ => None,
    };
    let unacknowledged = match comune {
        Some(comune) => {
            let referents: Vec<String> = deliveries.iter().map(|d| d.1.clone()).collect();
            let recipients =
                crate::registry::escalation_recipients(tx, &referents, &comune).await?;
            let (date, time) = crate::clock::rome_local(created_at);
            let payload = Payload::DeliveryUnacknowledged(UnacknowledgedPayload {
                notification: id,
                kind: kind.to_owned(),
                comune_istat: comune.istat.clone(),
                comune_nome: comune.nome.clone(),
                ambito: comune.ambito.clone(),
                sent_at: format!("{date} {time}"),
                after_hours: after.as_secs_f64() / 3600.0,
                recipients: deliveries
                    .iter()
                    .map(|(_, referent_id, institution)| UnacknowledgedRecipient {
                        referent_id: referent_id.clone(),
                        institution: institution.clone(),
                    })
                    .collect(),
            });
            let notification = NewNotification {
                comune_istat: Some(comune.istat.clone()),
                payload,
                urgent: true,
                recipients,
            };
            Some(super::outbox::insert_notification(tx, &notification).await?)
        }
        // A notification about no comune has no ambito nor Prefettura to tell: marked, so
        // that it is not looked at again.
        None => None,
    };
    sqlx::query(
        r#"
        UPDATE escalations
        SET escalated_at = now(),
            unacknowledged_id = $2
        WHERE notification_id = $1
        "#,
    )
    .bind(id)
    .bind(unacknowledged)
    .execute(&mut *tx)
    .await?;
    let events: Vec<Evidence> = deliveries
        .iter()
        .map(|(email, _, _)| {
            let event = Evidence::new(id, email.clone(), DeliveryEvent::Escalated);
            match unacknowledged {
                Some(u) => event.with("notification", Value::String(u.to_string())),
                None => event,
            }
        })
        .collect();
    evidence::record(tx, &events).await?;
    Ok(unacknowledged)
}
