//! The housing worker in the inbound transaction: load the unit (locked), decide, store
//! the next state, write the notifications.

use async_trait::async_trait;
use serde_json::{Value, json};
use sqlx::PgConnection;

use raccordo_core::amqp::HandleError;
use raccordo_core::db::insert_notifications;
use raccordo_core::domain::format_date;
use raccordo_core::envelope::{Envelope, EventType};
use raccordo_core::inbound::EventWorker;
use raccordo_core::notification::{NotificationKind, about_comune};
use raccordo_core::registry::{Comune, Snapshot};

use crate::decide::{Notice, decide};
use crate::store::{lock_unit, save_unit};
use crate::unit::{Action, HousingUnit};

/// The worker of `housing.unit.v1`.
pub struct HousingWorker;

#[async_trait]
impl EventWorker for HousingWorker {
    fn accepts(&self) -> &'static [EventType] {
        &[EventType::HousingUnit]
    }

    /// The unit's row is the only row it locks.
    fn batch_key(&self, event: &Envelope) -> Option<String> {
        event
            .data
            .get("unit_id")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        registry: &Snapshot,
        event: &Envelope,
    ) -> Result<(), HandleError> {
        let unit: HousingUnit = event.data_as()?;
        let comune = registry.require_comune(&unit.comune_istat)?;
        let (state, stored) = lock_unit(tx, &unit).await?;
        let (next, decision) = decide(&state, &unit);
        save_unit(tx, &unit, &next).await?;
        let notifications: Vec<_> = decision
            .notices
            .into_iter()
            .map(|notice| {
                let (kind, payload) = notification(notice, &unit, comune, &stored, state.forwarded);
                about_comune(registry, kind, comune, payload, false)
            })
            .collect();
        insert_notifications(tx, &notifications).await?;
        tracing::debug!(unit_id = %unit.unit_id, "Housing unit handled.");
        Ok(())
    }
}

/// The kind and template data of one notice.
fn notification(
    notice: Notice,
    unit: &HousingUnit,
    comune: &Comune,
    stored: &Value,
    was_forwarded: bool,
) -> (NotificationKind, Value) {
    let mut payload = json!({
        "unit_id": unit.unit_id,
        "comune_istat": comune.istat,
        "comune_nome": comune.nome,
        "zona": comune.zona,
        "address": unit.address,
        "places": unit.places,
        "reception_kind": unit.reception_kind,
        "building_type": unit.building_type,
        "identified_by": unit.identified_by,
        "available_from": unit.available_from.map(format_date),
        "notes": unit.notes,
        // The stazione appaltante already had this unit: the offer and its ack are updates.
        "update": was_forwarded && unit.action == Action::Offered,
    });
    let kind = match notice {
        Notice::Offered { .. } => NotificationKind::HousingOffered,
        Notice::Ack => NotificationKind::HousingAck,
        Notice::Rejected(reason) => {
            payload["reason_code"] = json!(reason.code());
            payload["reason"] = json!(reason.text());
            NotificationKind::HousingRejected
        }
        Notice::Consultation => NotificationKind::HousingConsultation,
        Notice::Withdrawn => {
            // The withdrawal names the unit as it was last offered.
            for key in ["address", "places", "reception_kind", "building_type"] {
                if payload[key].is_null() {
                    payload[key] = stored.get(key).cloned().unwrap_or(Value::Null);
                }
            }
            NotificationKind::HousingWithdrawn
        }
    };
    (kind, payload)
}
