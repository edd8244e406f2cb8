//! Pronta accoglienza (CONTRACT A1, A2): a desk's report of a suspected vulnerability, and
//! the interventions that answer it.

use sqlx::PgConnection;

use raccordo_core::amqp::HandleError;
use raccordo_core::envelope::Envelope;
use raccordo_core::registry::Snapshot;
use raccordo_core::settings::EvictionSettings;

use crate::desk::require_desk;
use crate::event::{Intervention, Vulnerability};

/// Records a vulnerability report: the case (by pseudonym) and, only with consent, the
/// person.
pub async fn vulnerability(
    tx: &mut PgConnection,
    registry: &Snapshot,
    keys: &EvictionSettings,
    event: &Envelope,
) -> Result<(), HandleError> {
    let report: Vulnerability = event.data_as()?;
    registry.require_comune(&report.comune_istat)?;
    require_desk(registry, &report.desk)?;
    let case = report.case_id.pseudonym(keys);
    sqlx::query(
        r#"
        INSERT INTO asylum_cases (case_key, desk, comune_istat, categories, consent, reported_at, publisher)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (case_key) DO UPDATE
        SET desk = EXCLUDED.desk, comune_istat = EXCLUDED.comune_istat,
            categories = EXCLUDED.categories, consent = EXCLUDED.consent,
            reported_at = EXCLUDED.reported_at, received_at = now()
        "#,
    )
    .bind(&case)
    .bind(&report.desk)
    .bind(report.comune_istat.as_ref())
    .bind(&report.categories)
    .bind(report.consent)
    .bind(report.reported_at)
    .bind(&event.publisher)
    .execute(&mut *tx)
    .await?;
    match (report.consent, &report.person) {
        (true, Some(person)) => {
            let person = serde_json::to_value(person)
                .map_err(|e| HandleError::Unprocessable(Box::new(e)))?;
            sqlx::query(
                r#"
                INSERT INTO asylum_personal (case_key, person) VALUES ($1, $2)
                ON CONFLICT (case_key) DO UPDATE SET person = EXCLUDED.person, stored_at = now()
                "#,
            )
            .bind(&case)
            .bind(person)
            .execute(&mut *tx)
            .await?;
        }
        // Without consent nothing personal stays, not even an earlier report's.
        _ => {
            sqlx::query("DELETE FROM asylum_personal WHERE case_key = $1")
                .bind(&case)
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(())
}

/// Records an intervention on a case.
pub async fn intervention(
    tx: &mut PgConnection,
    keys: &EvictionSettings,
    event: &Envelope,
) -> Result<(), HandleError> {
    let intervention: Intervention = event.data_as()?;
    let case = intervention.case_id.pseudonym(keys);
    sqlx::query(
        r#"
        INSERT INTO asylum_interventions (case_key, action, at, by_service)
        VALUES ($1, $2, $3, $4)
        "#,
    )
    .bind(&case)
    .bind(intervention.action.as_str())
    .bind(intervention.at)
    .bind(&intervention.by)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
