//! Deliveries held by the referents' preferences (issue 22), and the digests that carry
//! them.
//!
//! The mailer decides each claimed delivery ([`crate::preferences::decide`]) and records
//! here what it did not send: put in a digest (`digested`, waiting with `next_attempt_at =
//! 'infinity'` until `digest_due_at`), held alone for quiet hours (`deferred`), or turned
//! off (`suppressed`). Once windows close, [`compose_due`] gathers a referent's items into
//! one digest under a lock on that referent, each item taken once (`digest_id` is set
//! once); a sender claims the digest with `FOR UPDATE SKIP LOCKED`, sends it, and records
//! it in the claim's transaction, so a crash resends it whole, with the same Message-ID.

use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use super::evidence::EVIDENCE_PAYLOAD;
use super::signal::OUTBOX_CHANNEL;

/// A delivery the mailer did not send now, and why.
#[derive(Debug, Clone)]
pub enum Held {
    /// In the digest closing at `until` (the decision's clock).
    Digested {
        notification_id: Uuid,
        email: String,
        until: OffsetDateTime,
    },
    /// Alone, until `until` (the decision's clock), when [`release_deferred`] makes it due.
    Deferred {
        notification_id: Uuid,
        email: String,
        until: OffsetDateTime,
    },
    /// Not sent: the referent turned the kind off.
    Suppressed {
        notification_id: Uuid,
        email: String,
    },
}

/// Records what the mailer held, with its timeline event, in the claim's transaction.
pub async fn record_held(conn: &mut PgConnection, held: &[Held]) -> Result<(), sqlx::Error> {
    if held.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(held.len());
    let mut emails = Vec::with_capacity(held.len());
    let mut events = Vec::with_capacity(held.len());
    let mut untils: Vec<Option<OffsetDateTime>> = Vec::with_capacity(held.len());
    for h in held {
        match h {
            Held::Digested {
                notification_id,
                email,
                until,
            } => {
                ids.push(*notification_id);
                emails.push(email.as_str());
                events.push("digested");
                untils.push(Some(*until));
            }
            Held::Deferred {
                notification_id,
                email,
                until,
            } => {
                ids.push(*notification_id);
                emails.push(email.as_str());
                events.push("deferred");
                untils.push(Some(*until));
            }
            Held::Suppressed {
                notification_id,
                email,
            } => {
                ids.push(*notification_id);
                emails.push(email.as_str());
                events.push("suppressed");
                untils.push(None);
            }
        }
    }
    sqlx::query(
        r#"
        WITH h AS (
            SELECT * FROM UNNEST($1::UUID[], $2::TEXT[], $3::TEXT[], $4::TIMESTAMPTZ[])
                AS h (notification_id, email, event, until)
        ), changed AS (
            UPDATE deliveries d
            SET state = h.event,
                state_at = now(),
                digest_due_at = CASE WHEN h.event = 'digested' THEN h.until ELSE d.digest_due_at END,
                deferred_until = CASE WHEN h.event = 'deferred' THEN h.until ELSE NULL END,
                next_attempt_at = CASE WHEN h.event IN ('digested', 'deferred')
                    THEN 'infinity'::TIMESTAMPTZ ELSE d.next_attempt_at END,
                failed_at = CASE WHEN h.event = 'suppressed' THEN now() ELSE d.failed_at END,
                last_error = CASE WHEN h.event = 'suppressed'
                    THEN 'turned off by the referent' ELSE d.last_error END
            FROM h
            WHERE d.notification_id = h.notification_id AND d.email = h.email
            RETURNING d.notification_id, d.email, d.referent_id, d.channel, h.event, h.until
        )
        INSERT INTO delivery_events (notification_id, kind, recipient, referent_id, channel, event, details)
        SELECT c.notification_id, n.kind, c.email, c.referent_id, c.channel, c.event,
               CASE WHEN c.until IS NULL THEN '{}'::JSONB
                    ELSE jsonb_build_object('until', to_char(c.until AT TIME ZONE 'UTC',
                        'YYYY-MM-DD"T"HH24:MI:SS"Z"')) END
        FROM changed c JOIN notifications n ON n.id = c.notification_id
        "#,
    )
    .bind(&ids)
    .bind(&emails)
    .bind(&events)
    .bind(&untils)
    .execute(&mut *conn)
    .await?;
    wake_relay(conn).await
}

async fn wake_relay(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(OUTBOX_CHANNEL)
        .bind(EVIDENCE_PAYLOAD)
        .execute(conn)
        .await?;
    Ok(())
}

/// Makes the deliveries held for quiet hours that ended by `now` due at once, and wakes
/// the senders; returns how many.
pub async fn release_deferred(pool: &PgPool, now: OffsetDateTime) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let released = sqlx::query(
        r#"
        UPDATE deliveries
        SET deferred_until = NULL, next_attempt_at = now(), state = 'queued', state_at = now()
        WHERE deferred_until <= $1 AND delivered_at IS NULL AND failed_at IS NULL
        "#,
    )
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if released > 0 {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(OUTBOX_CHANNEL)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(released)
}

/// The most items one digest carries: a referent with more (a week of a busy kind) gets
/// several digests in a row, each of a size a mail server and a reader accept.
pub const MAX_ITEMS: i64 = 100;

/// Gathers the items whose windows closed by `now` into digests, one per referent and
/// address; returns the digests made. Any number of mailers may run it at once: a
/// referent's items are gathered under a transaction-level advisory lock, and an item
/// already taken is never taken again. At most [`MAX_ITEMS`] per digest: the rest go in the
/// next pass's.
pub async fn compose_due(pool: &PgPool, now: OffsetDateTime) -> Result<Vec<Uuid>, sqlx::Error> {
    let due: Vec<(String, String)> = sqlx::query_as(
        r#"
        SELECT DISTINCT referent_id, email
        FROM deliveries
        WHERE digest_due_at <= $1 AND digest_id IS NULL
          AND delivered_at IS NULL AND failed_at IS NULL
        LIMIT 500
        "#,
    )
    .bind(now)
    .fetch_all(pool)
    .await?;
    let mut made = Vec::new();
    for (referent_id, email) in due {
        let mut tx = pool.begin().await?;
        let locked: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_xact_lock(hashtextextended('raccordo-digest:' || $1 || ':' || $2, 0))",
        )
        .bind(&referent_id)
        .bind(&email)
        .fetch_one(&mut *tx)
        .await?;
        if !locked {
            // Another mailer is gathering this referent's items.
            tx.rollback().await?;
            continue;
        }
        let id = Uuid::new_v4();
        let window_end: Option<OffsetDateTime> = sqlx::query_scalar(
            r#"
            WITH digest AS (
                INSERT INTO digests (id, referent_id, email, window_end)
                VALUES ($1, $2, $3, $4)
            ), taken AS (
                UPDATE deliveries
                SET digest_id = $1
                WHERE (notification_id, email) IN (
                    SELECT notification_id, email
                    FROM deliveries
                    WHERE referent_id = $2 AND email = $3
                      AND digest_due_at <= $4 AND digest_id IS NULL
                      AND delivered_at IS NULL AND failed_at IS NULL
                    ORDER BY digest_due_at, notification_id
                    LIMIT $5
                )
                RETURNING digest_due_at
            )
            SELECT max(digest_due_at) FROM taken
            "#,
        )
        .bind(id)
        .bind(&referent_id)
        .bind(&email)
        .bind(now)
        .bind(MAX_ITEMS)
        .fetch_one(&mut *tx)
        .await?;
        let Some(window_end) = window_end else {
            // Taken by a mailer that committed before this one looked.
            tx.rollback().await?;
            continue;
        };
        sqlx::query("UPDATE digests SET window_end = $2 WHERE id = $1")
            .bind(id)
            .bind(window_end)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        made.push(id);
    }
    Ok(made)
}

/// A digest claimed for sending.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueDigest {
    pub id: Uuid,
    pub referent_id: String,
    pub email: String,
    pub window_end: OffsetDateTime,
    pub attempts: i32,
}

/// Claims up to `limit` digests due, locked until `tx` ends.
pub async fn claim_due_digests(
    tx: &mut PgConnection,
    limit: i64,
) -> Result<Vec<DueDigest>, sqlx::Error> {
    sqlx::query_as(
        r#"
        SELECT id, referent_id, email, window_end, attempts
        FROM digests
        WHERE sent_at IS NULL AND closed_at IS NULL AND next_attempt_at <= now()
        ORDER BY next_attempt_at
        LIMIT $1
        FOR UPDATE SKIP LOCKED
        "#,
    )
    .bind(limit)
    .fetch_all(tx)
    .await
}

/// One item of a digest.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DigestItem {
    pub notification_id: Uuid,
    pub kind: String,
    /// Digested kinds carry no personal data (`preferences::may_carry_personal_data`).
    pub payload: Value,
    pub comune_istat: Option<String>,
    pub comune_name: Option<String>,
    pub created_at: OffsetDateTime,
    pub name: Option<String>,
    pub institution: String,
    pub role: String,
}

/// The items of digest `id` still to send (a cancelled one has left it), oldest first,
/// locked until `tx` ends: a cancellation waits for the digest's outcome.
pub async fn digest_items(tx: &mut PgConnection, id: Uuid) -> Result<Vec<DigestItem>, sqlx::Error> {
    sqlx::query_as(
        r#"
        SELECT d.notification_id, n.kind, n.payload, n.comune_istat, c.nome AS comune_name,
               n.created_at, d.name, d.institution, d.role
        FROM deliveries d
        JOIN notifications n ON n.id = d.notification_id
        LEFT JOIN comuni c ON c.istat = n.comune_istat
        WHERE d.digest_id = $1 AND d.delivered_at IS NULL AND d.failed_at IS NULL
        ORDER BY n.created_at, n.id
        FOR UPDATE OF d
        "#,
    )
    .bind(id)
    .fetch_all(tx)
    .await
}

/// Records a digest the server accepted: each of its items delivered, `sent_in_digest` on
/// its timeline with the digest's id and the server's reply.
pub async fn record_digest_sent(
    tx: &mut PgConnection,
    id: Uuid,
    message_id: &str,
    reply: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"
        WITH digest AS (
            UPDATE digests
            SET sent_at = now(), message_id = $2, smtp_response = $3,
                attempts = attempts + 1, last_error = NULL
            WHERE id = $1
        ), sent AS (
            UPDATE deliveries d
            SET delivered_at = now(), smtp_response = $3, message_id = $2,
                attempts = d.attempts + 1, last_error = NULL,
                state = 'sent_in_digest', state_at = now()
            WHERE d.digest_id = $1 AND d.delivered_at IS NULL AND d.failed_at IS NULL
            RETURNING d.notification_id, d.email, d.referent_id, d.channel
        )
        INSERT INTO delivery_events (notification_id, kind, recipient, referent_id, channel, event, details)
        SELECT s.notification_id, n.kind, s.email, s.referent_id, s.channel, 'sent_in_digest',
               jsonb_build_object('digest', $1::TEXT, 'reply', $3::TEXT)
        FROM sent s JOIN notifications n ON n.id = s.notification_id
        "#,
    )
    .bind(id)
    .bind(message_id)
    .bind(reply)
    .execute(&mut *tx)
    .await?;
    wake_relay(tx).await
}

/// Records a failed attempt to be tried again in `retry_in`.
pub async fn record_digest_retry(
    tx: &mut PgConnection,
    id: Uuid,
    error: &str,
    retry_in: std::time::Duration,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"
        UPDATE digests
        SET attempts = attempts + 1, last_error = $2,
            next_attempt_at = now() + make_interval(secs => $3 / 1000.0)
        WHERE id = $1
        "#,
    )
    .bind(id)
    .bind(error)
    .bind(i64::try_from(retry_in.as_millis()).unwrap_or(i64::MAX))
    .execute(tx)
    .await?;
    Ok(())
}

/// Closes a digest that will not be sent: emptied (every item cancelled), or given up
/// (refused for good, or failing past `retry.max_attempts`): then its items are due again
/// at once, each alone, where a refusal follows its fallback as any email's (D3).
pub async fn close_digest(
    tx: &mut PgConnection,
    id: Uuid,
    reason: &str,
) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "UPDATE digests SET closed_at = now(), closed_reason = $2, attempts = attempts + 1 WHERE id = $1",
    )
    .bind(id)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    Ok(sqlx::query(
        r#"
        UPDATE deliveries
        SET digest_due_at = NULL, next_attempt_at = now(), state = 'queued', state_at = now()
        WHERE digest_id = $1 AND delivered_at IS NULL AND failed_at IS NULL
        "#,
    )
    .bind(id)
    .execute(tx)
    .await?
    .rows_affected())
}

/// Takes out of the digests still open the items about unit `unit_id` of `comune_istat`
/// (its offer, acknowledgement, consultation): a unit withdrawn before the window closes
/// leaves the digest, `cancelled` on each timeline. Returns how many.
pub async fn cancel_digested_unit(
    conn: &mut PgConnection,
    comune_istat: &str,
    unit_id: &str,
    reason: &str,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        r#"
        WITH cancelled AS (
            UPDATE deliveries d
            SET failed_at = now(), last_error = $3, state = 'cancelled', state_at = now()
            FROM notifications n
            WHERE n.id = d.notification_id
              AND d.digest_due_at IS NOT NULL AND d.digest_id IS NULL
              AND d.delivered_at IS NULL AND d.failed_at IS NULL
              AND n.kind IN ('housing.offered', 'housing.ack', 'housing.consultation')
              AND n.comune_istat = $1
              AND n.payload ->> 'unit_id' = $2
            RETURNING d.notification_id, d.email, d.referent_id, d.channel, n.kind
        )
        INSERT INTO delivery_events (notification_id, kind, recipient, referent_id, channel, event, details)
        SELECT c.notification_id, c.kind, c.email, c.referent_id, c.channel, 'cancelled',
               jsonb_build_object('reason', $3::TEXT)
        FROM cancelled c
        "#,
    )
    .bind(comune_istat)
    .bind(unit_id)
    .bind(reason)
    .execute(conn)
    .await?
    .rows_affected())
}
