//! Domicile requests (CONTRACT A3): one row per `request_id`.

use sqlx::PgConnection;

use raccordo_core::amqp::HandleError;
use raccordo_core::envelope::Envelope;
use raccordo_core::registry::Snapshot;
use raccordo_core::settings::EvictionSettings;

use crate::desk::require_desk;
use crate::event::DomicileRequest;

/// Records a domicile request, once per `request_id`.
pub async fn request(
    tx: &mut PgConnection,
    registry: &Snapshot,
    keys: &EvictionSettings,
    event: &Envelope,
) -> Result<(), HandleError> {
    let request: DomicileRequest = event.data_as()?;
    require_desk(registry, &request.desk)?;
    sqlx::query(
        r#"
        INSERT INTO asylum_domiciles (request_id, case_key, desk, people, requested_at, publisher)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (request_id) DO NOTHING
        "#,
    )
    .bind(&request.request_id)
    .bind(request.case_id.pseudonym(keys))
    .bind(&request.desk)
    .bind(request.people)
    .bind(request.requested_at)
    .bind(&event.publisher)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
