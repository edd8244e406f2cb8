//! The 12-hour clock of a pronta accoglienza (CONTRACT A2): a case whose `due_at` passed
//! with no `presa_in_carico` or `primo_intervento` dated within it and no acknowledgement
//! of its notice before it gets one `asylum.intervention_overdue`, to the `prefettura`, the
//! unscoped `tavolo` and the social services of A1 — no personal data.
//!
//! Every replica runs the same pass every [`CHECK_EVERY`]; the database makes it happen once:
//! the case's row is locked `FOR UPDATE SKIP LOCKED` and marked (`overdue_at`) in the
//! transaction that writes the notification, so a second replica skips it while it is
//! locked and no longer selects it once committed. A process killed anywhere rolls back,
//! and the next pass of any replica does it again. The pass reads the time from an injected
//! clock: tests pass any instant.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use raccordo_core::clock::Clock;
use raccordo_core::db::{NewNotification, insert_notification};
use raccordo_core::domain::ComuneIstat;
use raccordo_core::payload::{InterventionOverduePayload, Payload};
use raccordo_core::registry::Snapshot;
use raccordo_core::settings::AsylumSettings;

use super::vulnerability::rfc3339;
use super::{recipients, short};

/// How often every replica checks the clocks (the contract asks for at least every 5 s).
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Cases looked at in one transaction.
const BATCH: i64 = 50;

/// A case whose clock ran out, as the pass reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueCase {
    pub case_key: String,
    pub desk: String,
    pub comune_istat: String,
    pub reported_at: OffsetDateTime,
    pub due_at: OffsetDateTime,
    pub notification_id: Option<Uuid>,
    /// The first acknowledgement of any of the case's notices, if any.
    pub acknowledged_at: Option<OffsetDateTime>,
}

/// What the clock says of a case whose `due_at` passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A recipient acknowledged in time: the clock stopped then.
    Stopped(OffsetDateTime),
    /// Nobody acted in time.
    Overdue,
}

/// The decision, without I/O. Interventions in time stopped the clock when they arrived
/// ([`super::clock::refresh`]); what is left is the acknowledgement (CONTRACT D4).
pub fn verdict(case: &DueCase) -> Verdict {
    match case.acknowledged_at {
        Some(at) if at <= case.due_at => Verdict::Stopped(at),
        _ => Verdict::Overdue,
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// `asylum.intervention_overdue` notifications written.
    pub overdue: usize,
    /// Clocks found stopped by an acknowledgement.
    pub stopped: usize,
}

/// One pass at `now`: every case due by then is decided, in batches, each batch in one
/// transaction.
pub async fn run_pass(
    pool: &PgPool,
    settings: &AsylumSettings,
    now: OffsetDateTime,
) -> Result<Pass, sqlx::Error> {
    let mut pass = Pass::default();
    loop {
        let mut tx = pool.begin().await?;
        let due = lock_due(&mut tx, now).await?;
        if due.is_empty() {
            return Ok(pass);
        }
        let registry = Snapshot::load(&mut tx).await?;
        for case in &due {
            match verdict(case) {
                Verdict::Stopped(at) => {
                    stop(&mut tx, &case.case_key, at).await?;
                    pass.stopped += 1;
                }
                Verdict::Overdue => {
                    notify(&mut tx, &registry, settings, case, now).await?;
                    pass.overdue += 1;
                }
            }
        }
        tx.commit().await?;
        if due.len() < usize::try_from(BATCH).unwrap_or(usize::MAX) {
            return Ok(pass);
        }
    }
}

/// The cases due by `now`, locked; rows another replica holds are skipped.
async fn lock_due(tx: &mut PgConnection, now: OffsetDateTime) -> Result<Vec<DueCase>, sqlx::Error> {
    sqlx::query_as(
        r#"
        SELECT c.case_key, c.desk, c.comune_istat, c.reported_at, c.due_at, c.notification_id,
               (
                   SELECT min(d.acknowledged_at)
                   FROM asylum_pronta_notices p
                   JOIN deliveries d ON d.notification_id = p.notification_id
                   WHERE p.case_key = c.case_key
               ) AS acknowledged_at
        FROM asylum_cases c
        WHERE c.overdue_at IS NULL
          AND c.clock_stopped_at IS NULL
          AND c.due_at <= $1
        ORDER BY c.due_at
        LIMIT $2
        FOR UPDATE OF c SKIP LOCKED
        "#,
    )
    .bind(now)
    .bind(BATCH)
    .fetch_all(tx)
    .await
}

async fn stop(tx: &mut PgConnection, case: &str, at: OffsetDateTime) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE asylum_cases SET clock_stopped_at = $2 WHERE case_key = $1")
        .bind(case)
        .bind(at)
        .execute(tx)
        .await?;
    Ok(())
}

/// Writes the case's `asylum.intervention_overdue` and marks the case, in `tx`.
async fn notify(
    tx: &mut PgConnection,
    registry: &Snapshot,
    settings: &AsylumSettings,
    case: &DueCase,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let comune = ComuneIstat::parse(&case.comune_istat)
        .ok()
        .and_then(|istat| registry.comune(&istat));
    let id = match comune {
        Some(comune) => {
            let desk_name = registry
                .referent(&case.desk)
                .map_or_else(|| case.desk.clone(), |d| d.institution.clone());
            let payload = InterventionOverduePayload {
                case: case.case_key.clone(),
                desk: case.desk.clone(),
                desk_name,
                comune_istat: comune.istat.clone(),
                comune_nome: comune.nome.clone(),
                ambito: comune.ambito.clone(),
                reported_at: rfc3339(case.reported_at),
                due_at: rfc3339(case.due_at),
                hours: settings.first_intervention_hours,
                notification: case.notification_id,
            };
            let notification = NewNotification {
                comune_istat: Some(comune.istat.clone()),
                payload: Payload::AsylumInterventionOverdue(payload),
                urgent: true,
                recipients: recipients::overdue(registry, comune),
            };
            Some(insert_notification(tx, &notification).await?)
        }
        // A comune no longer in the registry has nobody to tell: marked all the same, so
        // that it is not looked at again.
        None => None,
    };
    sqlx::query(
        r#"
        UPDATE asylum_cases
        SET overdue_at = $2,
            overdue_notification_id = $3
        WHERE case_key = $1
        "#,
    )
    .bind(&case.case_key)
    .bind(now)
    .bind(id)
    .execute(tx)
    .await?;
    tracing::info!(
        case = short(&case.case_key),
        comune = %case.comune_istat,
        notification = ?id,
        "No first intervention within the hours of the protocol; the Prefettura and the Tavolo are told."
    );
    Ok(())
}

/// Runs [`run_pass`] every [`CHECK_EVERY`] with `clock`'s time, until `token` is cancelled.
pub async fn run_clock(
    pool: PgPool,
    settings: AsylumSettings,
    clock: Arc<dyn Clock>,
    token: CancellationToken,
) {
    loop {
        match run_pass(&pool, &settings, clock.now()).await {
            Ok(pass) if pass != Pass::default() => tracing::info!(
                overdue = pass.overdue,
                stopped = pass.stopped,
                "Checked the first-intervention clocks."
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(
                error = %error,
                "Could not check the first-intervention clocks; will retry."
            ),
        }
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn case(acknowledged_at: Option<OffsetDateTime>) -> DueCase {
        DueCase {
            case_key: "k".into(),
            desk: "sportello-rho".into(),
            comune_istat: "015182".into(),
            reported_at: datetime!(2026-03-02 08:00 UTC),
            due_at: datetime!(2026-03-02 20:00 UTC),
            notification_id: None,
            acknowledged_at,
        }
    }

    #[test]
    fn nobody_acknowledged_is_overdue() {
        assert_eq!(verdict(&case(None)), Verdict::Overdue);
    }

    #[test]
    fn an_acknowledgement_before_the_deadline_stops_the_clock_then() {
        let at = datetime!(2026-03-02 19:59 UTC);
        assert_eq!(verdict(&case(Some(at))), Verdict::Stopped(at));
    }

    #[test]
    fn an_acknowledgement_after_the_deadline_does_not_stop_it() {
        let at = datetime!(2026-03-02 20:01 UTC);
        assert_eq!(verdict(&case(Some(at))), Verdict::Overdue);
    }
}
