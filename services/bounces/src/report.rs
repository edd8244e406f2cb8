//! One report read from the bounce mailbox, judged and recorded: matched to the delivery it
//! is about (by the returned message's `Message-ID`, else its `X-Raccordo-Notification`, and
//! always by the failed recipient's address), a permanent failure recorded `bounced` with
//! its fallback (CONTRACT D3), and every report — matched or not — kept once in
//! `bounce_reports`, so an operator sees forged and stray ones too.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use raccordo_core::fallback::{Bounce, BounceOutcome, FallbackPolicy, StandIn, record_bounce};

use crate::dsn::{self, Report};

/// What a report did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A permanent failure of a delivery of ours: recorded, and these stand in for it.
    Bounced(Vec<StandIn>),
    /// About a delivery of ours, but no permanent failure (a delay, a success): recorded
    /// only.
    NotPermanent,
    /// It names no delivery the hub handed over to that address: forged or stray.
    Unmatched,
    /// Not a delivery status notification.
    Malformed,
    /// Read before (the same bytes): nothing done.
    Duplicate,
}

impl Outcome {
    fn as_str(&self) -> &'static str {
        match self {
            Outcome::Bounced(_) => "bounced",
            Outcome::NotPermanent => "not_permanent",
            Outcome::Unmatched => "unmatched",
            Outcome::Malformed => "malformed",
            Outcome::Duplicate => "duplicate",
        }
    }
}

/// The delivery a report's recipient names, if the hub handed it over.
async fn matching_delivery(
    conn: &mut PgConnection,
    report: &Report,
    recipient: &str,
) -> Result<Option<(Uuid, String, String)>, sqlx::Error> {
    // A returned Message-ID is the strongest reference; without one, the notification
    // header. Either way the address must be the delivery's, and the delivery sent: a
    // report about a message never handed over is not about ours.
    let (by_message_id, by_notification) =
        match (&report.original_message_id, report.original_notification) {
            (Some(id), _) => (Some(format!("<{id}>")), None),
            (None, Some(n)) => (None, Some(n)),
            (None, None) => return Ok(None),
        };
    sqlx::query_as(
        r#"
        SELECT notification_id, email, referent_id
        FROM deliveries
        WHERE ($1::TEXT IS NULL OR message_id = $1)
          AND ($2::UUID IS NULL OR notification_id = $2)
          AND lower(email) = $3
          AND delivered_at IS NOT NULL
        LIMIT 1
        "#,
    )
    .bind(by_message_id)
    .bind(by_notification)
    .bind(recipient)
    .fetch_optional(conn)
    .await
}

/// Judges and records the report `raw`, in one transaction: its bounces, their fallback,
/// its row in `bounce_reports`. A report read twice does nothing the second time.
pub async fn handle_report(
    pool: &PgPool,
    policy: &FallbackPolicy,
    raw: &[u8],
) -> Result<Outcome, sqlx::Error> {
    let key = format!("sha256:{:x}", Sha256::digest(raw));
    let parsed = dsn::parse(raw);
    let mut tx = pool.begin().await?;
    let fresh: Option<i64> = sqlx::query_scalar(
        r#"
        INSERT INTO bounce_reports (report_key, outcome)
        VALUES ($1, 'malformed')
        ON CONFLICT (report_key) DO NOTHING
        RETURNING id
        "#,
    )
    .bind(&key)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = fresh else {
        tx.rollback().await?;
        return Ok(Outcome::Duplicate);
    };
    let (outcome, notification, referent, status, reason) = match parsed {
        Err(error) => (
            Outcome::Malformed,
            None,
            None,
            None,
            Some(error.to_string()),
        ),
        Ok(report) => judge(&mut tx, policy, &report).await?,
    };
    sqlx::query(
        r#"
        UPDATE bounce_reports
        SET outcome = $2, notification_id = $3, referent_id = $4, status = $5, reason = $6
        WHERE id = $1
        "#,
    )
    .bind(row)
    .bind(outcome.as_str())
    .bind(notification)
    .bind(&referent)
    .bind(&status)
    .bind(&reason)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    metrics::counter!("raccordo_bounce_reports_total", "outcome" => outcome.as_str()).increment(1);
    tracing::info!(outcome = outcome.as_str(), notification = ?notification, referent = ?referent, status = ?status, "Bounce report read.");
    Ok(outcome)
}

type Judged = (
    Outcome,
    Option<Uuid>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// What each recipient of `report` says, the strongest outcome first: a bounce over a
/// delay over nothing matched.
async fn judge(
    conn: &mut PgConnection,
    policy: &FallbackPolicy,
    report: &Report,
) -> Result<Judged, sqlx::Error> {
    let mut judged: Judged = (
        Outcome::Unmatched,
        None,
        None,
        None,
        Some("it names no delivery handed over to that address".into()),
    );
    for recipient in &report.recipients {
        let mut found = matching_delivery(conn, report, &recipient.final_recipient).await?;
        if found.is_none()
            && let Some(original) = &recipient.original_recipient
        {
            found = matching_delivery(conn, report, original).await?;
        }
        let Some((notification_id, email, referent_id)) = found else {
            continue;
        };
        let status = Some(recipient.status.to_string());
        if !recipient.is_permanent_failure() {
            if judged.0 == Outcome::Unmatched {
                judged = (
                    Outcome::NotPermanent,
                    Some(notification_id),
                    Some(referent_id),
                    status,
                    Some(format!("action {}", recipient.action.as_str())),
                );
            }
            continue;
        }
        let bounce = Bounce {
            status: recipient.status.to_string(),
            diagnostic: recipient.diagnostic.clone(),
            source: "dsn",
        };
        match record_bounce(conn, policy, notification_id, &email, &bounce).await? {
            BounceOutcome::Bounced(stand_ins) => {
                let all = match judged.0 {
                    Outcome::Bounced(mut earlier) => {
                        earlier.extend(stand_ins);
                        earlier
                    }
                    _ => stand_ins,
                };
                judged = (
                    Outcome::Bounced(all),
                    Some(notification_id),
                    Some(referent_id),
                    status,
                    None,
                );
            }
            BounceOutcome::AlreadyBounced | BounceOutcome::NoDelivery => {
                if judged.0 == Outcome::Unmatched {
                    judged = (
                        Outcome::NotPermanent,
                        Some(notification_id),
                        Some(referent_id),
                        status,
                        Some("the delivery had bounced already".into()),
                    );
                }
            }
        }
    }
    Ok(judged)
}
