//! C9 for asylum cases: a case's `person` is deleted `retention.personal_days` after the
//! case ended, or after `retention.idle_days` without any event; with it goes the `person`
//! of every `asylum.pronta_accoglienza` made for the case, whatever
//! `retention.notification_days` says. The pseudonymous history (the case, its
//! interventions, placements and domiciles) stays for the annual report (A6).
//!
//! A case *ended* when an intervention `chiuso` closed it (`closed_at`), or when its SPRAR
//! placement ended (`exited` or `withdrawn`); the later of the two counts. A case still
//! waiting, placed or in charge has not ended: only the idle rule reaches it. Its last
//! event is the latest arrival of its report, an intervention, a placement change or a
//! domicile request.

use async_trait::async_trait;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use raccordo_core::db;
use raccordo_core::retention::Prune;

/// Why an undelivered notice of an ended case is cancelled.
const ENDED: &str = "not sent: the case's personal data reached its retention limit (C9)";

/// What a pronta accoglienza keeps once its `person` is gone: nothing that names them.
const SCRUB_KEEPS: [&str; 9] = [
    "case",
    "desk",
    "desk_name",
    "comune_istat",
    "comune_nome",
    "ambito",
    "zona",
    "reported_at",
    "due_at",
];

/// The cases holding a `person` whose time is up. `$1`: ended before; `$2`: idle since.
const DUE: &str = r#"
    FROM asylum_cases c
    JOIN asylum_personal ap ON ap.case_key = c.case_key
    LEFT JOIN asylum_placements pl ON pl.case_key = c.case_key
    WHERE GREATEST(
              c.closed_at,
              CASE WHEN pl.status IN ('exited', 'withdrawn') THEN pl.updated_at END
          ) < $1
       OR GREATEST(
              c.received_at,
              ap.stored_at,
              pl.updated_at,
              (SELECT max(i.received_at) FROM asylum_interventions i WHERE i.case_key = c.case_key),
              (SELECT max(d.requested_at) FROM asylum_domiciles d WHERE d.case_key = c.case_key)
          ) < $2
"#;

/// C9 for asylum cases, as a [`Prune`] of kind `asylum.cases`: each one counted is a case
/// whose `person` left every table.
pub struct EndedCases {
    /// Ended before this instant (`retention.personal_days`).
    pub ended_before: OffsetDateTime,
    /// No event since this instant (`retention.idle_days`).
    pub idle_since: OffsetDateTime,
}

#[async_trait]
impl Prune for EndedCases {
    fn kind(&self) -> &'static str {
        "asylum.cases"
    }

    async fn count(&self, conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) {DUE}"))
            .bind(self.ended_before)
            .bind(self.idle_since)
            .fetch_one(conn)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn batch(&self, tx: &mut PgConnection, limit: i64) -> Result<u64, sqlx::Error> {
        // A case a worker holds is skipped, never waited for: the next run takes it.
        let due: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT c.case_key {DUE} LIMIT $3 FOR UPDATE OF c SKIP LOCKED"
        ))
        .bind(self.ended_before)
        .bind(self.idle_since)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        for case in &due {
            forget_case(tx, case).await?;
        }
        Ok(u64::try_from(due.len()).unwrap_or(u64::MAX))
    }
}

/// Deletes the case's `person` and scrubs it from its notices (as a revoked consent does
/// for a procedure, C4), cancelling what was not delivered yet.
async fn forget_case(tx: &mut PgConnection, case: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM asylum_personal WHERE case_key = $1")
        .bind(case)
        .execute(&mut *tx)
        .await?;
    let notices: Vec<Uuid> = sqlx::query_scalar(
        r#"
        SELECT p.notification_id
        FROM asylum_pronta_notices p
        JOIN notifications n ON n.id = p.notification_id
        WHERE p.case_key = $1
          AND NOT (n.payload ? 'scrubbed')
        "#,
    )
    .bind(case)
    .fetch_all(&mut *tx)
    .await?;
    if !notices.is_empty() {
        db::cancel_pending(tx, &notices, ENDED).await?;
        db::scrub_payloads(tx, &notices, &SCRUB_KEEPS).await?;
    }
    Ok(())
}
