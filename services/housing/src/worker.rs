//! The housing worker in the inbound transaction: load the unit (locked), decide, store
//! the next state, write the notifications.

use async_trait::async_trait;
use sqlx::PgConnection;

use raccordo_core::amqp::HandleError;
use raccordo_core::db::about_comune;
use raccordo_core::db::insert_notifications;
use raccordo_core::envelope::{Envelope, EventType};
use raccordo_core::inbound::EventWorker;
use raccordo_core::ownership::{self, IdKind};
use raccordo_core::payload::{HousingPayload, Payload};
use raccordo_core::registry::{Comune, Snapshot};

use crate::decide::{Notice, decide};
use crate::store::{LastOffer, lock_unit, save_unit};
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
        let (state, last, owner) = lock_unit(tx, &unit, &event.publisher).await?;
        ownership::check(
            IdKind::Unit,
            Some(&unit.unit_id),
            &owner,
            unit.comune_istat.as_ref(),
            &event.publisher,
        )?;
        let (next, decision) = decide(&state, &unit);
        let publisher = owner.publisher_after(&event.publisher);
        save_unit(tx, &unit, &next, publisher).await?;
        if unit.action == Action::Withdrawn {
            // A withdrawn unit leaves the digests still open (issue 22).
            raccordo_core::db::digests::cancel_digested_unit(
                tx,
                unit.comune_istat.as_ref(),
                &unit.unit_id,
                "the unit was withdrawn before the digest went",
            )
            .await?;
        }
        let notifications: Vec<_> = decision
            .notices
            .into_iter()
            .map(|notice| {
                let payload = notification(notice, &unit, comune, &last, state.forwarded);
                about_comune(registry, comune, payload, false)
            })
            .collect();
        insert_notifications(tx, &notifications).await?;
        tracing::debug!(unit_id = %unit.unit_id, "Housing unit handled.");
        Ok(())
    }
}

/// The data of one notice: its kind follows from the variant.
fn notification(
    notice: Notice,
    unit: &HousingUnit,
    comune: &Comune,
    last: &LastOffer,
    was_forwarded: bool,
) -> Payload {
    let mut payload = HousingPayload {
        unit_id: unit.unit_id.clone(),
        comune_istat: comune.istat.clone(),
        comune_nome: comune.nome.clone(),
        zona: comune.zona.clone(),
        address: unit.address.clone(),
        places: unit.places,
        reception_kind: unit.reception_kind,
        building_type: unit.building_type,
        identified_by: unit.identified_by,
        available_from: unit.available_from,
        notes: unit.notes.clone(),
        // The stazione appaltante already had this unit: the offer and its ack are updates.
        update: was_forwarded && unit.action == Action::Offered,
        reason_code: None,
        reason: None,
    };
    match notice {
        Notice::Offered { .. } => Payload::HousingOffered(payload),
        Notice::Ack => Payload::HousingAck(payload),
        Notice::Rejected(reason) => {
            payload.reason_code = Some(reason);
            payload.reason = Some(reason.text().to_owned());
            Payload::HousingRejected(payload)
        }
        Notice::Consultation => Payload::HousingConsultation(payload),
        Notice::Withdrawn => {
            // The withdrawal names the unit as it was last offered.
            payload.address = payload.address.or_else(|| last.address.clone());
            payload.places = payload.places.or(last.places);
            payload.reception_kind = payload.reception_kind.or(last.reception_kind);
            payload.building_type = payload.building_type.or(last.building_type);
            Payload::HousingWithdrawn(payload)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use time::macros::date;

    use raccordo_core::domain::{ComuneIstat, ReceptionKind};
    use raccordo_core::notification::NotificationKind;

    use super::*;
    use crate::decide::RejectReason;
    use crate::unit::{BuildingType, IdentifiedBy};

    fn sesto() -> Comune {
        Comune {
            istat: ComuneIstat::parse("015209").expect("valid"),
            nome: "Sesto San Giovanni".into(),
            popolazione: 81_000,
            zona: "Nord Milano".into(),
            ambito: None,
            quota: None,
            protocollo: true,
            domicilio: false,
        }
    }

    fn offer() -> HousingUnit {
        HousingUnit {
            unit_id: "SSG-2025-014".into(),
            action: Action::Offered,
            comune_istat: ComuneIstat::parse("015209").expect("valid"),
            identified_by: IdentifiedBy::Comune,
            address: Some("Via Fratelli Bandiera 12".into()),
            places: Some(4),
            reception_kind: Some(ReceptionKind::Sprar),
            building_type: Some(BuildingType::Appartamento),
            owner_declaration: Some(true),
            available_from: Some(date!(2025 - 03 - 01)),
            notes: None,
        }
    }

    /// What `json!` wrote for an offer of [`offer`] before the payload was typed.
    fn offer_json(update: bool) -> Value {
        json!({
            "unit_id": "SSG-2025-014",
            "comune_istat": "015209",
            "comune_nome": "Sesto San Giovanni",
            "zona": "Nord Milano",
            "address": "Via Fratelli Bandiera 12",
            "places": 4,
            "reception_kind": "SPRAR",
            "building_type": "appartamento",
            "identified_by": "comune",
            "available_from": "2025-03-01",
            "notes": null,
            "update": update,
        })
    }

    fn wire(payload: &Payload) -> Value {
        let value = payload.to_value().expect("encodes");
        let back = Payload::from_parts(payload.kind(), &value).expect("decodes");
        assert_eq!(&back, payload, "{}", payload.kind());
        value
    }

    #[test]
    fn offered_ack_and_consultation_write_the_json_they_always_wrote() {
        for (notice, kind, forwarded, update) in [
            (
                Notice::Offered { update: true },
                NotificationKind::HousingOffered,
                true,
                true,
            ),
            (
                Notice::Offered { update: false },
                NotificationKind::HousingOffered,
                false,
                false,
            ),
            (Notice::Ack, NotificationKind::HousingAck, true, true),
            (
                Notice::Consultation,
                NotificationKind::HousingConsultation,
                false,
                false,
            ),
        ] {
            let payload =
                notification(notice, &offer(), &sesto(), &LastOffer::default(), forwarded);
            assert_eq!(payload.kind(), kind);
            assert_eq!(wire(&payload), offer_json(update), "{kind}");
        }
    }

    #[test]
    fn a_rejection_adds_its_code_and_text() {
        let payload = notification(
            Notice::Rejected(RejectReason::ExCaserma),
            &offer(),
            &sesto(),
            &LastOffer::default(),
            false,
        );
        let mut expected = offer_json(false);
        expected["reason_code"] = json!("ex_caserma");
        expected["reason"] = json!(
            "Il protocollo (art. 2.4) esclude l'uso di ex caserme o edifici di analoghe caratteristiche per l'accoglienza."
        );

        assert_eq!(payload.kind(), NotificationKind::HousingRejected);
        assert_eq!(wire(&payload), expected);
    }

    #[test]
    fn a_withdrawal_names_the_unit_as_last_offered() {
        let withdrawal = HousingUnit {
            action: Action::Withdrawn,
            address: None,
            places: None,
            reception_kind: None,
            building_type: None,
            owner_declaration: None,
            available_from: None,
            identified_by: IdentifiedBy::Prefettura,
            ..offer()
        };
        let last: LastOffer =
            serde_json::from_value(serde_json::to_value(offer()).expect("the stored details"))
                .expect("decodes");

        let payload = notification(Notice::Withdrawn, &withdrawal, &sesto(), &last, true);

        assert_eq!(payload.kind(), NotificationKind::HousingWithdrawn);
        assert_eq!(
            wire(&payload),
            json!({
                "unit_id": "SSG-2025-014",
                "comune_istat": "015209",
                "comune_nome": "Sesto San Giovanni",
                "zona": "Nord Milano",
                "address": "Via Fratelli Bandiera 12",
                "places": 4,
                "reception_kind": "SPRAR",
                "building_type": "appartamento",
                "identified_by": "prefettura",
                "available_from": null,
                "notes": null,
                "update": false,
            })
        );
    }

    #[test]
    fn a_withdrawal_of_a_unit_never_offered_has_nulls() {
        let withdrawal = HousingUnit {
            action: Action::Withdrawn,
            address: None,
            places: None,
            reception_kind: None,
            building_type: None,
            ..offer()
        };
        let last: LastOffer = serde_json::from_value(json!({})).expect("decodes");

        let value = wire(&notification(
            Notice::Withdrawn,
            &withdrawal,
            &sesto(),
            &last,
            false,
        ));

        for key in ["address", "places", "reception_kind", "building_type"] {
            assert_eq!(value[key], Value::Null, "{key}");
        }
    }
}
