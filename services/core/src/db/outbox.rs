//! The transactional outbox: a notification and its recipients are written in the
//! transaction that decided them; the relay publishes them afterwards.

use serde_json::Value;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::signal::{HELD_PAYLOAD, OUTBOX_CHANNEL};
use crate::domain::ComuneIstat;
use crate::notification::NotificationKind;
use crate::payload::Payload;
use crate::registry::Recipient;

/// A notification decided by a worker.
#[derive(Clone)]
pub struct NewNotification {
    /// The comune it is about, if one.
    pub comune_istat: Option<ComuneIstat>,
    /// What it announces: the kind and the template's data. May hold personal data only
    /// for consented eviction alerts.
    pub payload: Payload,
    /// Sent with high importance and `[URGENTE]`.
    pub urgent: bool,
    /// Who receives it; empty makes it undeliverable (recorded, counted, never dropped).
    pub recipients: Vec<Recipient>,
}

impl NewNotification {
    /// What it announces.
    pub fn kind(&self) -> NotificationKind {
        self.payload.kind()
    }
}

/// One notification about `comune`, addressed to every referent the registry names for
/// the payload's kind (CONTRACT §1, §5): what a worker tells anyone, before it is written
/// with [`insert_notifications`].
pub fn about_comune(
    registry: &crate::registry::Snapshot,
    comune: &crate::registry::Comune,
    payload: Payload,
    urgent: bool,
) -> NewNotification {
    let recipients = registry.recipients_for(payload.kind(), comune);
    NewNotification {
        comune_istat: Some(comune.istat.clone()),
        payload,
        urgent,
        recipients,
    }
}

/// Writes one notification about `comune` to the outbox ([`about_comune`]). Returns its id.
pub async fn notify_comune(
    conn: &mut sqlx::PgConnection,
    registry: &crate::registry::Snapshot,
    comune: &crate::registry::Comune,
    payload: Payload,
    urgent: bool,
) -> Result<uuid::Uuid, sqlx::Error> {
    let notification = about_comune(registry, comune, payload, urgent);
    insert_notification(conn, &notification).await
}

impl std::fmt::Debug for NewNotification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewNotification")
            .field("kind", &self.kind())
            .field("comune_istat", &self.comune_istat)
            .field("urgent", &self.urgent)
            .field("recipients", &self.recipients.len())
            .finish_non_exhaustive()
    }
}

/// Inserts a notification and its deliveries, and wakes the relay at commit. Returns its id.
pub async fn insert_notification(
    conn: &mut PgConnection,
    notification: &NewNotification,
) -> Result<Uuid, sqlx::Error> {
    let ids = insert_notifications(conn, std::slice::from_ref(notification)).await?;
    ids.into_iter().next().ok_or(sqlx::Error::RowNotFound)
}

/// The statement of [`insert_notifications`].
const INSERT_NOTIFICATIONS: &str = r#"
        WITH notification AS (
            INSERT INTO notifications (id, kind, comune_istat, payload, urgent, undeliverable)
            SELECT * FROM UNNEST($1::UUID[], $2::TEXT[], $3::TEXT[], $4::JSONB[], $5::BOOL[], $6::BOOL[])
        ), recipients AS (
            -- A referent with a PEC address gets the kinds that go by PEC by PEC alone
            -- (D2): the session's raccordo.pec_kinds, set by db::connect_hub.
            INSERT INTO deliveries (notification_id, email, referent_id, name, institution, role, channel)
            SELECT u.id, COALESCE(p.pec, u.email), u.referent_id, u.name, u.institution, u.role,
                   CASE WHEN p.pec IS NULL THEN 'email' ELSE 'pec' END
            FROM UNNEST($7::UUID[], $8::TEXT[], $9::TEXT[], $10::TEXT[], $11::TEXT[], $12::TEXT[])
                AS u (id, email, referent_id, name, institution, role)
            JOIN UNNEST($1::UUID[], $2::TEXT[]) AS k (id, kind) ON k.id = u.id
            LEFT JOIN LATERAL (
                SELECT r.pec
                FROM referents r
                WHERE r.referent_id = u.referent_id
                  AND NULLIF(r.pec, '') IS NOT NULL
                  AND k.kind = ANY (string_to_array(current_setting('raccordo.pec_kinds', TRUE), ','))
            ) p ON TRUE
            ON CONFLICT (notification_id, email) DO NOTHING
            RETURNING notification_id, email, referent_id, channel
        ), queued AS (
            -- The first event of every timeline (D1).
            INSERT INTO delivery_events (notification_id, kind, recipient, referent_id, channel, event)
            SELECT r.notification_id, k.kind, r.email, r.referent_id, r.channel, 'queued'
            FROM recipients r
            JOIN UNNEST($1::UUID[], $2::TEXT[]) AS k (id, kind) ON k.id = r.notification_id
        )
        SELECT pg_notify($13, '')
        "#;

/// Inserts notifications and their deliveries, and wakes the relay at commit — in one
/// statement, one round trip to the database whatever their number and recipients'.
/// Returns their ids, in order.
pub async fn insert_notifications(
    conn: &mut PgConnection,
    notifications: &[NewNotification],
) -> Result<Vec<Uuid>, sqlx::Error> {
    if notifications.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = notifications.iter().map(|_| Uuid::new_v4()).collect();
    let kinds: Vec<&str> = notifications.iter().map(|n| n.kind().as_str()).collect();
    let comuni: Vec<Option<&str>> = notifications
        .iter()
        .map(|n| n.comune_istat.as_ref().map(AsRef::as_ref))
        .collect();
    let payloads = notifications
        .iter()
        .map(|n| n.payload.to_value())
        .collect::<Result<Vec<Value>, _>>()
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let urgent: Vec<bool> = notifications.iter().map(|n| n.urgent).collect();
    let undeliverable: Vec<bool> = notifications
        .iter()
        .map(|n| n.recipients.is_empty())
        .collect();
    let to: Vec<(Uuid, &Recipient)> = ids
        .iter()
        .zip(notifications)
        .flat_map(|(id, n)| n.recipients.iter().map(move |r| (*id, r)))
        .collect();
    let of: Vec<Uuid> = to.iter().map(|(id, _)| *id).collect();
    let emails: Vec<&str> = to.iter().map(|(_, r)| r.email.as_ref()).collect();
    let referents: Vec<&str> = to.iter().map(|(_, r)| r.referent_id.as_str()).collect();
    let names: Vec<Option<&str>> = to.iter().map(|(_, r)| r.name.as_deref()).collect();
    let institutions: Vec<&str> = to.iter().map(|(_, r)| r.institution.as_str()).collect();
    let roles: Vec<&str> = to.iter().map(|(_, r)| r.role.as_str()).collect();
    // The deliveries' foreign key is checked at the end of the statement, when the
    // notification rows exist. The NOTIFY is delivered only if the transaction commits.
    sqlx::query(INSERT_NOTIFICATIONS)
        .bind(&ids)
        .bind(&kinds)
        .bind(&comuni)
        .bind(&payloads)
        .bind(&urgent)
        .bind(&undeliverable)
        .bind(&of)
        .bind(&emails)
        .bind(&referents)
        .bind(&names)
        .bind(&institutions)
        .bind(&roles)
        .bind(OUTBOX_CHANNEL)
        .execute(&mut *conn)
        .await?;
    Ok(ids)
}

/// A stored notification.
#[derive(Clone, sqlx::FromRow)]
pub struct Notification {
    pub id: Uuid,
    pub kind: String,
    pub comune_istat: Option<String>,
    pub payload: Value,
    pub urgent: bool,
    pub undeliverable: bool,
    pub created_at: OffsetDateTime,
}

/// Loads a notification by id.
pub async fn load_notification(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Notification>, sqlx::Error> {
    sqlx::query_as::<_, Notification>(
        r#"
        SELECT id, kind, comune_istat, payload, urgent, undeliverable, created_at
        FROM notifications
        WHERE id = $1
        "#,
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Where a delivery the mailer gave up on is held, for `raccordo dlq` (CONTRACT F1, F2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldIn {
    /// The server refused it for good, or it cannot be rendered: `{prefix}.dead`.
    Dead,
    /// It kept failing after `retry.max_attempts`: `{prefix}.parked`.
    Parked,
}

impl HeldIn {
    fn as_str(self) -> &'static str {
        match self {
            HeldIn::Dead => "dead",
            HeldIn::Parked => "parked",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "dead" => Some(HeldIn::Dead),
            "parked" => Some(HeldIn::Parked),
            _ => None,
        }
    }
}

/// A delivery claimed by the mailer: one recipient and what the email says.
#[derive(sqlx::FromRow)]
pub struct DueDelivery {
    pub notification_id: Uuid,
    pub kind: String,
    /// May hold personal data (a consented eviction alert): never logged.
    pub payload: Value,
    pub urgent: bool,
    pub email: String,
    pub referent_id: String,
    pub name: Option<String>,
    pub institution: String,
    pub role: String,
    /// Attempts already made.
    pub attempts: i32,
    /// `email`, or `pec`: sent over `mail.pec_smtp_url` (D2).
    pub channel: String,
    /// When the notification was decided: the start of its time to delivery (D6).
    pub created_at: OffsetDateTime,
    /// The referent's stored preferences (`{}` when none, or the referent is gone).
    pub preferences: Value,
    /// It was in a digest the server refused: it goes alone now.
    pub out_of_digest: bool,
}

/// Claims up to `limit` deliveries that are due, oldest first. They stay locked until
/// `tx` ends (`FOR UPDATE SKIP LOCKED`): no other mailer sends them meanwhile, and what
/// `tx` records about them commits with it.
pub async fn claim_due(tx: &mut PgConnection, limit: i64) -> Result<Vec<DueDelivery>, sqlx::Error> {
    sqlx::query_as(
        r#"
        SELECT d.notification_id, n.kind, n.payload, n.urgent,
               d.email, d.referent_id, d.name, d.institution, d.role, d.attempts, d.channel,
               n.created_at, COALESCE(r.preferences, '{}'::JSONB) AS preferences,
               d.digest_id IS NOT NULL AS out_of_digest
        FROM deliveries d
        JOIN notifications n ON n.id = d.notification_id
        LEFT JOIN referents r ON r.referent_id = d.referent_id
        WHERE d.delivered_at IS NULL
          AND d.failed_at IS NULL
          AND d.next_attempt_at <= now()
        ORDER BY d.next_attempt_at
        LIMIT $1
        FOR UPDATE OF d SKIP LOCKED
        "#,
    )
    .bind(limit)
    .fetch_all(tx)
    .await
}

/// An email the server accepted.
pub struct SentEmail {
    pub notification_id: Uuid,
    pub email: String,
    pub response: String,
    pub message_id: String,
}

/// Records accepted emails, in one statement.
pub async fn record_sent(tx: &mut PgConnection, sent: &[SentEmail]) -> Result<(), sqlx::Error> {
    if sent.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = sent.iter().map(|s| s.notification_id).collect();
    let emails: Vec<&str> = sent.iter().map(|s| s.email.as_str()).collect();
    let responses: Vec<&str> = sent.iter().map(|s| s.response.as_str()).collect();
    let message_ids: Vec<&str> = sent.iter().map(|s| s.message_id.as_str()).collect();
    sqlx::query(
        r#"
        WITH sent AS (
            UPDATE deliveries d
            SET delivered_at = now(),
                smtp_response = s.response,
                message_id = s.message_id,
                attempts = d.attempts + 1,
                last_error = NULL,
                state = 'sent',
                state_at = now()
            FROM UNNEST($1::UUID[], $2::TEXT[], $3::TEXT[], $4::TEXT[])
                AS s (notification_id, email, response, message_id)
            WHERE d.notification_id = s.notification_id
              AND d.email = s.email
            RETURNING d.notification_id, d.email, d.referent_id, d.channel, s.response
        )
        -- The server's reply, on the timeline (D1); published by the relay.
        INSERT INTO delivery_events (notification_id, kind, recipient, referent_id, channel, event, details)
        SELECT s.notification_id, n.kind, s.email, s.referent_id, s.channel, 'sent',
               jsonb_build_object('reply', s.response)
        FROM sent s JOIN notifications n ON n.id = s.notification_id
        "#,
    )
    .bind(&ids)
    .bind(&emails)
    .bind(&responses)
    .bind(&message_ids)
    .execute(&mut *tx)
    .await?;
    // The relay publishes the `delivery.sent` events at commit.
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(OUTBOX_CHANNEL)
        .bind(super::evidence::EVIDENCE_PAYLOAD)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// What follows a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Tried again once this much time has passed.
    RetryAfter(std::time::Duration),
    /// Given up: held for an operator.
    Hold(HeldIn),
}

/// An attempt that did not deliver.
pub struct FailedEmail {
    pub notification_id: Uuid,
    pub email: String,
    /// Recorded on the delivery; names no personal data.
    pub error: String,
    pub message_id: Option<String>,
    pub then: AfterFailure,
}

/// Records failed attempts; a held one wakes the relay, which announces it in its
/// holding queue at commit.
pub async fn record_failed(
    tx: &mut PgConnection,
    failed: &[FailedEmail],
) -> Result<(), sqlx::Error> {
    if failed.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = failed.iter().map(|f| f.notification_id).collect();
    let emails: Vec<&str> = failed.iter().map(|f| f.email.as_str()).collect();
    let errors: Vec<&str> = failed.iter().map(|f| f.error.as_str()).collect();
    let message_ids: Vec<Option<&str>> = failed.iter().map(|f| f.message_id.as_deref()).collect();
    let delays_ms: Vec<Option<i64>> = failed
        .iter()
        .map(|f| match f.then {
            AfterFailure::RetryAfter(d) => Some(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            AfterFailure::Hold(_) => None,
        })
        .collect();
    let held: Vec<Option<&str>> = failed
        .iter()
        .map(|f| match f.then {
            AfterFailure::RetryAfter(_) => None,
            AfterFailure::Hold(h) => Some(h.as_str()),
        })
        .collect();
    let any_held = held.iter().any(Option::is_some);
    sqlx::query(
        r#"
        UPDATE deliveries d
        SET attempts = d.attempts + 1,
            last_error = f.error,
            message_id = COALESCE(f.message_id, d.message_id),
            next_attempt_at = CASE
                WHEN f.delay_ms IS NULL THEN d.next_attempt_at
                ELSE now() + make_interval(secs => f.delay_ms / 1000.0)
            END,
            failed_at = CASE WHEN f.held_in IS NULL THEN NULL ELSE now() END,
            held_in = f.held_in
        FROM UNNEST($1::UUID[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[], $6::TEXT[])
            AS f (notification_id, email, error, message_id, delay_ms, held_in)
        WHERE d.notification_id = f.notification_id
          AND d.email = f.email
        "#,
    )
    .bind(&ids)
    .bind(&emails)
    .bind(&errors)
    .bind(&message_ids)
    .bind(&delays_ms)
    .bind(&held)
    .execute(&mut *tx)
    .await?;
    if any_held {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(OUTBOX_CHANNEL)
            .bind(HELD_PAYLOAD)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// A notification with deliveries held and not yet announced in a holding queue.
#[derive(Debug, Clone)]
pub struct HeldNotification {
    pub id: Uuid,
    pub kind: String,
    pub comune_istat: Option<String>,
    pub created_at: OffsetDateTime,
    pub held_in: HeldIn,
    /// Attempts made for its most tried recipient.
    pub attempts: i32,
    /// Each held recipient's last error, by referent id (never an address).
    pub reasons: Vec<String>,
}

/// Marks held deliveries as announced and returns them, by notification and holding
/// queue; the caller publishes them before `tx` commits (a failed publish rolls back, and
/// they are announced later). Concurrent relays wait on the rows, then skip them.
pub async fn take_unannounced_held(
    tx: &mut PgConnection,
) -> Result<Vec<HeldNotification>, sqlx::Error> {
    let rows: Vec<(Uuid, String, String, i32, Option<String>)> = sqlx::query_as(
        r#"
        UPDATE deliveries
        SET held_reported_at = now()
        WHERE held_in IS NOT NULL
          AND held_reported_at IS NULL
        RETURNING notification_id, held_in, referent_id, attempts, last_error
        "#,
    )
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let about: Vec<(Uuid, String, Option<String>, OffsetDateTime)> = sqlx::query_as(
        "SELECT id, kind, comune_istat, created_at FROM notifications WHERE id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut held: Vec<HeldNotification> = Vec::new();
    for (id, held_in, referent, attempts, error) in rows {
        let Some(held_in) = HeldIn::parse(&held_in) else {
            continue;
        };
        let Some((_, kind, comune_istat, created_at)) = about.iter().find(|a| a.0 == id) else {
            continue;
        };
        let reason = format!(
            "referent {referent}: {}",
            error.as_deref().unwrap_or("no error recorded")
        );
        match held.iter_mut().find(|h| h.id == id && h.held_in == held_in) {
            Some(h) => {
                h.attempts = h.attempts.max(attempts);
                h.reasons.push(reason);
            }
            None => held.push(HeldNotification {
                id,
                kind: kind.clone(),
                comune_istat: comune_istat.clone(),
                created_at: *created_at,
                held_in,
                attempts,
                reasons: vec![reason],
            }),
        }
    }
    Ok(held)
}

/// `raccordo dlq replay` of a held notification: its held deliveries are due again, with
/// a fresh count of attempts, and the mailers are woken at commit. Returns how many.
pub async fn release_held(
    conn: &mut PgConnection,
    notification_id: Uuid,
) -> Result<u64, sqlx::Error> {
    let released = sqlx::query(
        r#"
        WITH released AS (
            UPDATE deliveries
            SET failed_at = NULL,
                held_in = NULL,
                held_reported_at = NULL,
                attempts = 0,
                next_attempt_at = now()
            WHERE notification_id = $1
              AND held_in IS NOT NULL
              AND delivered_at IS NULL
            RETURNING 1
        )
        SELECT count(*), pg_notify($2, '') FROM released
        "#,
    )
    .bind(notification_id)
    .bind(OUTBOX_CHANNEL)
    .fetch_one(conn)
    .await?;
    let count: i64 = sqlx::Row::try_get(&released, 0)?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Among `ids`, the notifications of `kind`.
pub async fn of_kind(
    conn: &mut PgConnection,
    ids: &[Uuid],
    kind: NotificationKind,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM notifications WHERE id = ANY($1) AND kind = $2")
        .bind(ids)
        .bind(kind.as_str())
        .fetch_all(conn)
        .await
}

/// Among the notifications of `kind` not scrubbed yet, those settled: published (or
/// undeliverable) with no delivery still pending, nor held for an operator for less than
/// `held_for` (a replay must find its content meanwhile). What a worker may scrub once its
/// recipients have it.
pub async fn settled_of_kind(
    conn: &mut PgConnection,
    kind: NotificationKind,
    held_for: std::time::Duration,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        r#"
        SELECT n.id
        FROM notifications n
        WHERE n.kind = $1
          AND NOT n.payload ? 'scrubbed'
          AND (n.published_at IS NOT NULL OR n.undeliverable)
          AND NOT EXISTS (
                SELECT 1 FROM deliveries d
                WHERE d.notification_id = n.id
                  AND d.delivered_at IS NULL
                  AND (d.failed_at IS NULL
                       OR (d.held_in IS NOT NULL
                           AND d.failed_at > now() - make_interval(secs => $2)))
          )
        "#,
    )
    .bind(kind.as_str())
    .bind(held_for.as_secs_f64())
    .fetch_all(conn)
    .await
}

/// Cancels the deliveries of `ids` not yet sent, pending or held for an operator: they
/// are never sent, a replay of their dead letter releases nothing, and they say `reason`
/// (no personal data). A sender holding one finishes it; the others skip it. Returns how
/// many were cancelled.
pub async fn cancel_pending(
    conn: &mut PgConnection,
    ids: &[Uuid],
    reason: &str,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        r#"
        WITH cancelled AS (
            UPDATE deliveries
            SET failed_at = now(),
                held_in = NULL,
                last_error = $2,
                state = 'cancelled',
                state_at = now()
            WHERE delivered_at IS NULL
              AND (failed_at IS NULL OR held_in IS NOT NULL)
              AND notification_id = ANY($1)
            RETURNING notification_id, email, referent_id, channel
        )
        INSERT INTO delivery_events (notification_id, kind, recipient, referent_id, channel, event, details)
        SELECT c.notification_id, n.kind, c.email, c.referent_id, c.channel, 'cancelled',
               jsonb_build_object('reason', $2::TEXT)
        FROM cancelled c JOIN notifications n ON n.id = c.notification_id
        "#,
    )
    .bind(ids)
    .bind(reason)
    .execute(conn)
    .await?
    .rows_affected())
}

/// Replaces the payloads of `ids` with `{"scrubbed": true}` and the members named in
/// `keep` (null when absent): what stays once personal data must go. Returns their ids.
pub async fn scrub_payloads(
    conn: &mut PgConnection,
    ids: &[Uuid],
    keep: &[&str],
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        r#"
        UPDATE notifications n
        SET payload = jsonb_build_object('scrubbed', TRUE) || COALESCE((
                SELECT jsonb_object_agg(k, COALESCE(n.payload -> k, 'null'::JSONB))
                FROM UNNEST($2::TEXT[]) AS k
            ), '{}'::JSONB)
        WHERE n.id = ANY($1)
        RETURNING n.id
        "#,
    )
    .bind(ids)
    .bind(keep)
    .fetch_all(conn)
    .await
}
