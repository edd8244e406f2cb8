//! The transactional outbox: a notification and its recipients are written in the
//! transaction that decided them; the relay publishes them afterwards.

use serde_json::Value;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::relay::OUTBOX_CHANNEL;
use crate::domain::ComuneIstat;
use crate::notification::NotificationKind;
use crate::registry::Recipient;

/// A notification decided by a worker.
#[derive(Clone)]
pub struct NewNotification {
    /// What it announces.
    pub kind: NotificationKind,
    /// The comune it is about, if one.
    pub comune_istat: Option<ComuneIstat>,
    /// The template's data. May hold personal data only for consented eviction alerts.
    pub payload: Value,
    /// Sent with high importance and `[URGENTE]`.
    pub urgent: bool,
    /// Who receives it; empty makes it undeliverable (recorded, counted, never dropped).
    pub recipients: Vec<Recipient>,
}

impl std::fmt::Debug for NewNotification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewNotification")
            .field("kind", &self.kind)
            .field("comune_istat", &self.comune_istat)
            .field("urgent", &self.urgent)
            .field("recipients", &self.recipients.len())
            .finish_non_exhaustive()
    }
}

/// Inserts a notification and its deliveries, and wakes the relay at commit — in one
/// statement, one round trip to the database whatever the number of recipients.
pub async fn insert_notification(
    conn: &mut PgConnection,
    notification: &NewNotification,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::new_v4();
    let r = &notification.recipients;
    let emails: Vec<&str> = r.iter().map(|r| r.email.as_ref()).collect();
    let referents: Vec<&str> = r.iter().map(|r| r.referent_id.as_str()).collect();
    let names: Vec<Option<&str>> = r.iter().map(|r| r.name.as_deref()).collect();
    let institutions: Vec<&str> = r.iter().map(|r| r.institution.as_str()).collect();
    let roles: Vec<&str> = r.iter().map(|r| r.role.as_str()).collect();
    // The deliveries' foreign key is checked at the end of the statement, when the
    // notification row exists. The NOTIFY is delivered only if the transaction commits.
    sqlx::query(
        r#"
        WITH notification AS (
            INSERT INTO notifications (id, kind, comune_istat, payload, urgent, undeliverable)
            VALUES ($1, $2, $3, $4, $5, $6)
        ), recipients AS (
            INSERT INTO deliveries (notification_id, email, referent_id, name, institution, role)
            SELECT $1, r.email, r.referent_id, r.name, r.institution, r.role
            FROM UNNEST($7::TEXT[], $8::TEXT[], $9::TEXT[], $10::TEXT[], $11::TEXT[])
                AS r (email, referent_id, name, institution, role)
            ON CONFLICT (notification_id, email) DO NOTHING
        )
        SELECT pg_notify($12, '')
        "#,
    )
    .bind(id)
    .bind(notification.kind.as_str())
    .bind(
        notification
            .comune_istat
            .as_ref()
            .map(|c| c.as_ref().to_owned()),
    )
    .bind(&notification.payload)
    .bind(notification.urgent)
    .bind(r.is_empty())
    .bind(&emails)
    .bind(&referents)
    .bind(&names)
    .bind(&institutions)
    .bind(&roles)
    .bind(OUTBOX_CHANNEL)
    .execute(&mut *conn)
    .await?;
    Ok(id)
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
