//! The SPRAR waiting list (CONTRACT A4, A5, A6): each case's latest state, and every change.
//!
//! The latest state is the one with the latest `since`, as a facility's newest report
//! stands (Q1): an update arriving late — a `waiting` sent again after the `placed` that
//! followed it — is kept in the history but does not put the case back on the list. Of
//! two updates with the same `since`, the later arrival stands. Redelivery and replay
//! never reach here twice (the inbox).

use sqlx::PgConnection;

use raccordo_core::amqp::HandleError;
use raccordo_core::envelope::Envelope;
use raccordo_core::registry::Snapshot;
use raccordo_core::settings::EvictionSettings;

use crate::desk::require_desk;
use crate::event::Placement;

/// Records a case's new state on the list.
pub async fn update(
    tx: &mut PgConnection,
    registry: &Snapshot,
    keys: &EvictionSettings,
    event: &Envelope,
) -> Result<(), HandleError> {
    let placement: Placement = event.data_as()?;
    if let Some(desk) = &placement.desk {
        require_desk(registry, desk)?;
    }
    if let Some(istat) = &placement.comune_istat {
        registry.require_comune(istat)?;
    }
    let case = placement.case_id.pseudonym(keys);
    let priority = placement.priority.map(|p| p.as_str());
    let istat = placement
        .comune_istat
        .as_ref()
        .map(|c| c.as_ref().to_owned());
    let current = sqlx::query(
        r#"
        INSERT INTO asylum_placements (case_key, status, priority, categories, since, desk, facility_id, comune_istat)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (case_key) DO UPDATE
        SET status = EXCLUDED.status,
            priority = COALESCE(EXCLUDED.priority, asylum_placements.priority),
            categories = CASE WHEN cardinality(EXCLUDED.categories) > 0
                              THEN EXCLUDED.categories ELSE asylum_placements.categories END,
            since = EXCLUDED.since,
            desk = COALESCE(EXCLUDED.desk, asylum_placements.desk),
            facility_id = EXCLUDED.facility_id,
            comune_istat = EXCLUDED.comune_istat,
            updated_at = now()
        WHERE asylum_placements.since <= EXCLUDED.since
        "#,
    )
    .bind(&case)
    .bind(placement.status.as_str())
    .bind(priority)
    .bind(&placement.categories)
    .bind(placement.since)
    .bind(&placement.desk)
    .bind(&placement.facility_id)
    .bind(&istat)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !current {
        tracing::debug!(
            status = placement.status.as_str(),
            "Placement update older than the case's state: history only."
        );
    }
    sqlx::query(
        r#"
        INSERT INTO asylum_placement_history (case_key, status, priority, since, desk, facility_id, comune_istat)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        "#,
    )
    .bind(&case)
    .bind(placement.status.as_str())
    .bind(priority)
    .bind(placement.since)
    .bind(&placement.desk)
    .bind(&placement.facility_id)
    .bind(&istat)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
