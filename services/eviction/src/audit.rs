//! The audit trail (issue 4, item 5): every notification sent — kind, recipient, time,
//! SMTP outcome — and, for eviction notices, the consent decision that authorised it
//! (who recorded it, when). A procedure is looked up by its pseudonym: the docket number
//! an operator types is hashed, never stored.

use serde::Serialize;
use sqlx::PgConnection;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::personal::Pseudonym;

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// One notification kind.
    pub kind: Option<String>,
    /// Notifications made from this instant.
    pub since: Option<OffsetDateTime>,
    /// One procedure's notices.
    pub procedure: Option<Pseudonym>,
}

/// One recipient of one notification.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub notification_id: Uuid,
    pub kind: String,
    pub comune_istat: Option<String>,
    /// When the notification was made, RFC 3339.
    pub created_at: String,
    pub urgent: bool,
    /// The referent's address; `None` when no referent matched (undeliverable).
    pub recipient: Option<String>,
    pub institution: Option<String>,
    /// `delivered`, `failed`, `pending` or `undeliverable`.
    pub outcome: String,
    /// When it was delivered or failed for good, RFC 3339.
    pub outcome_at: Option<String>,
    /// The SMTP server's reply on acceptance.
    pub smtp_response: Option<String>,
    pub last_error: Option<String>,
    pub message_id: Option<String>,
    pub attempts: Option<i32>,
    /// For eviction notices: the consent decision that authorised it.
    pub consent_decision: Option<String>,
    pub consent_recorded_by: Option<String>,
    pub consent_recorded_at: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    kind: String,
    comune_istat: Option<String>,
    created_at: OffsetDateTime,
    urgent: bool,
    undeliverable: bool,
    email: Option<String>,
    institution: Option<String>,
    delivered_at: Option<OffsetDateTime>,
    failed_at: Option<OffsetDateTime>,
    smtp_response: Option<String>,
    last_error: Option<String>,
    message_id: Option<String>,
    attempts: Option<i32>,
    decision: Option<String>,
    recorded_by: Option<String>,
    recorded_at: Option<OffsetDateTime>,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The audit trail, oldest first.
pub async fn list(
    conn: &mut PgConnection,
    filter: &AuditFilter,
) -> Result<Vec<AuditEntry>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        r#"
        SELECT n.id, n.kind, n.comune_istat, n.created_at, n.urgent, n.undeliverable,
               d.email, d.institution, d.delivered_at, d.failed_at, d.smtp_response,
               d.last_error, d.message_id, d.attempts,
               c.decision, c.recorded_by, c.recorded_at
        FROM notifications n
        LEFT JOIN deliveries d ON d.notification_id = n.id
        LEFT JOIN eviction_notifications e ON e.notification_id = n.id
        LEFT JOIN eviction_consents c ON c.id = e.consent_id
        WHERE ($1::TEXT IS NULL OR n.kind = $1)
          AND ($2::TIMESTAMPTZ IS NULL OR n.created_at >= $2)
          AND ($3::TEXT IS NULL OR e.pseudonym = $3)
        ORDER BY n.created_at, n.id, d.email
        "#,
    )
    .bind(&filter.kind)
    .bind(filter.since)
    .bind(filter.procedure.as_ref().map(|p| p.as_ref().to_owned()))
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let (outcome, outcome_at) = match (r.undeliverable, r.delivered_at, r.failed_at) {
                (true, _, _) => ("undeliverable", None),
                (_, Some(at), _) => ("delivered", Some(rfc3339(at))),
                (_, None, Some(at)) => ("failed", Some(rfc3339(at))),
                _ => ("pending", None),
            };
            AuditEntry {
                notification_id: r.id,
                kind: r.kind,
                comune_istat: r.comune_istat,
                created_at: rfc3339(r.created_at),
                urgent: r.urgent,
                recipient: r.email,
                institution: r.institution,
                outcome: outcome.to_owned(),
                outcome_at,
                smtp_response: r.smtp_response,
                last_error: r.last_error,
                message_id: r.message_id,
                attempts: r.attempts,
                consent_decision: r.decision,
                consent_recorded_by: r.recorded_by,
                consent_recorded_at: r.recorded_at.map(rfc3339),
            }
        })
        .collect())
}

/// One consent decision of a procedure.
#[derive(Debug, Clone, Serialize)]
pub struct ConsentEntry {
    pub decision: String,
    pub recorded_by: String,
    pub recorded_at: String,
    pub received_at: String,
    /// False when it changed nothing (older than the decision in force, or a grant not
    /// recorded after the revocation in force, C8).
    pub applied: bool,
    /// The publisher the broker vouched for (C8); `-` for decisions recorded before 1.2.
    pub publisher: String,
    /// A revocation applied although it failed validation: why it failed (C8).
    pub unvalidated: Option<String>,
}

/// Every consent decision recorded for a procedure, in the order recorded.
pub async fn consent_history(
    conn: &mut PgConnection,
    procedure: &Pseudonym,
) -> Result<Vec<ConsentEntry>, sqlx::Error> {
    let rows = crate::store::consent_rows(conn, procedure).await?;
    Ok(rows
        .into_iter()
        .map(
            |(decision, recorded_by, recorded_at, received_at, applied, publisher, unvalidated)| {
                ConsentEntry {
                    decision,
                    recorded_by,
                    recorded_at: rfc3339(recorded_at),
                    received_at: rfc3339(received_at),
                    applied,
                    publisher: publisher.unwrap_or_else(|| "-".to_owned()),
                    unvalidated,
                }
            },
        )
        .collect())
}
