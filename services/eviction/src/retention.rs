//! C9: a procedure's personal data is deleted `retention.personal_days` after its last
//! step `esecuzione`, or after `retention.idle_days` without any event. The deletion is
//! C4's ([`forget_personal`]), and then every other notification of the procedure (a
//! revocation notice's docket number) is scrubbed too, whatever `retention.notification_days`
//! says. The pseudonymous history (procedure, steps, consent decisions) and the audit stay.

use async_trait::async_trait;
use sqlx::PgConnection;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use raccordo_core::db;
use raccordo_core::retention::Prune;

use crate::personal::Pseudonym;
use crate::store::{forget_personal, scrub};

/// Why an undelivered notification of an ended procedure is cancelled.
const ENDED: &str = "not sent: the procedure's personal data reached its retention limit (C9)";

/// The procedures whose personal data is due (C9), among those that still hold some: a
/// row in `eviction_personal`, or a notification not scrubbed yet. `$1`: idle since;
/// `$2`: an `esecuzione` dated before this day ended the procedure long enough ago.
const DUE: &str = r#"
    FROM eviction_procedures p
    WHERE p.pseudonym IN (
            SELECT pseudonym FROM eviction_personal
            UNION
            SELECT pseudonym FROM eviction_notifications WHERE scrubbed_at IS NULL
          )
      AND (
            (p.updated_at < $1
             AND NOT EXISTS (
                 SELECT 1 FROM eviction_consents c
                 WHERE c.pseudonym = p.pseudonym
                   AND c.received_at >= $1
             ))
         OR (SELECT s.step = 'esecuzione' AND s.occurred_on < $2
             FROM eviction_steps s
             WHERE s.pseudonym = p.pseudonym
             ORDER BY s.occurred_on DESC, s.id DESC
             LIMIT 1)
      )
"#;

/// C9 for eviction procedures, as a [`Prune`] of kind `eviction.procedures`: each one
/// counted is a procedure whose personal data left every table.
pub struct EndedProcedures {
    /// No event since this instant: idle (`retention.idle_days`).
    pub idle_since: OffsetDateTime,
    /// A last step `esecuzione` before this day (Europe/Rome): ended (`retention.personal_days`).
    pub ended_before: Date,
}

#[async_trait]
impl Prune for EndedProcedures {
    fn kind(&self) -> &'static str {
        "eviction.procedures"
    }

    async fn count(&self, conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) {DUE}"))
            .bind(self.idle_since)
            .bind(self.ended_before)
            .fetch_one(conn)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn batch(&self, tx: &mut PgConnection, limit: i64) -> Result<u64, sqlx::Error> {
        // A procedure a worker holds is skipped, never waited for: the next run takes it.
        let due: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT p.pseudonym {DUE} LIMIT $3 FOR UPDATE OF p SKIP LOCKED"
        ))
        .bind(self.idle_since)
        .bind(self.ended_before)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        for pseudonym in &due {
            forget_ended(tx, &Pseudonym::from_stored(pseudonym.clone())).await?;
        }
        Ok(u64::try_from(due.len()).unwrap_or(u64::MAX))
    }
}

/// C4's deletion, then every notification of the procedure scrubbed and its undelivered
/// deliveries cancelled.
async fn forget_ended(tx: &mut PgConnection, pseudonym: &Pseudonym) -> Result<(), sqlx::Error> {
    forget_personal(tx, pseudonym, ENDED).await?;
    let rest: Vec<Uuid> = sqlx::query_scalar(
        r#"
        SELECT notification_id
        FROM eviction_notifications
        WHERE pseudonym = $1
          AND scrubbed_at IS NULL
        "#,
    )
    .bind(pseudonym.as_ref())
    .fetch_all(&mut *tx)
    .await?;
    if !rest.is_empty() {
        db::cancel_pending(tx, &rest, ENDED).await?;
        scrub(tx, &rest).await?;
    }
    Ok(())
}
