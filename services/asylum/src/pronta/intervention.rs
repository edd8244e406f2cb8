//! `asylum.intervention.v1` (CONTRACT A2): what a social service or a facility did for a
//! case. Every intervention is kept; the earliest `presa_in_carico` or `primo_intervento`
//! dated within the case's clock stops it.

use sqlx::PgConnection;

use raccordo_core::amqp::HandleError;
use raccordo_core::envelope::Envelope;
use raccordo_core::settings::EvictionSettings;

use crate::event::Intervention;

/// Records an intervention on a case and brings the case's clock up to date. A case the
/// hub has not heard of yet keeps the intervention for its report.
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
    super::clock::refresh(tx, &case).await?;
    tracing::debug!(
        case = super::short(&case),
        action = intervention.action.as_str(),
        "Asylum intervention recorded."
    );
    Ok(())
}
