//! Read-only views of one procedure for operators (the demo's summary): counts only,
//! under its pseudonym; nothing personal leaves this module.

use sqlx::PgConnection;

use crate::event::ConsentDecision;
use crate::personal::Pseudonym;

/// What the hub knows and did about one procedure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcedureSummary {
    /// Steps recorded.
    pub steps: i64,
    /// The decision in force; `None` when the family never decided (or the procedure is unknown).
    pub consent: Option<ConsentDecision>,
    /// Personal data is held for it (only while consent is active, C1).
    pub personal_held: bool,
    /// `eviction.alert` notifications made.
    pub alerts: i64,
    /// Of which urgent (C5).
    pub urgent_alerts: i64,
    /// Emails of those alerts, sent or not.
    pub emails: i64,
    /// The pseudonym it is stored under (of court and docket), if it is known.
    pub stored_as: Option<String>,
}

/// A procedure summary could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    /// The query failed.
    #[error("failed to read the procedure")]
    Database(#[from] sqlx::Error),
    /// The consent column holds a value the migrations do not allow.
    #[error("the procedure's consent is {0:?}, neither none, granted nor revoked")]
    UnknownConsent(String),
}

/// Reads the summary of the procedures of a docket number (`pseudonym`: its docket
/// pseudonym, every court's procedure of it).
pub async fn procedure_summary(
    conn: &mut PgConnection,
    pseudonym: &Pseudonym,
) -> Result<ProcedureSummary, SummaryError> {
    let (steps, consent, personal_held, stored_as): (i64, Option<String>, bool, Option<String>) =
        sqlx::query_as(
            r#"
        WITH p AS (SELECT pseudonym, consent, updated_at
                   FROM eviction_procedures WHERE docket_pseudonym = $1)
        SELECT (SELECT count(*) FROM eviction_steps WHERE pseudonym IN (SELECT pseudonym FROM p)),
               (SELECT consent FROM p ORDER BY updated_at DESC LIMIT 1),
               EXISTS (SELECT 1 FROM eviction_personal WHERE pseudonym IN (SELECT pseudonym FROM p)),
               (SELECT pseudonym FROM p ORDER BY updated_at DESC LIMIT 1)
        "#,
    )
    .bind(pseudonym.as_ref())
    .fetch_one(&mut *conn)
    .await?;
    let consent = match consent.as_deref() {
        None | Some("none") => None,
        Some(other) => Some(
            ConsentDecision::parse(other)
                .ok_or_else(|| SummaryError::UnknownConsent(other.to_owned()))?,
        ),
    };
    let (alerts, urgent_alerts, emails): (i64, i64, i64) = sqlx::query_as(
        r#"
        SELECT count(DISTINCT n.id),
               count(DISTINCT n.id) FILTER (WHERE n.urgent),
               count(d.email)
        FROM eviction_notifications e
        JOIN notifications n ON n.id = e.notification_id
        LEFT JOIN deliveries d ON d.notification_id = n.id
        WHERE e.pseudonym IN (SELECT pseudonym FROM eviction_procedures WHERE docket_pseudonym = $1)
          AND n.kind = 'eviction.alert'
        "#,
    )
    .bind(pseudonym.as_ref())
    .fetch_one(&mut *conn)
    .await?;
    Ok(ProcedureSummary {
        steps,
        consent,
        personal_held,
        alerts,
        urgent_alerts,
        emails,
        stored_as,
    })
}
