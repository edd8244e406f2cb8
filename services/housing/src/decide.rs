//! Rules H1–H5 as a pure function of the unit's previous state and the new event.

use crate::unit::{Action, BuildingType, HousingUnit, IdentifiedBy};

pub use raccordo_core::payload::RejectReason;

/// A notification the decision asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// `housing.offered` to the stazione appaltante; `update` when it already had the unit.
    Offered { update: bool },
    /// `housing.ack` to the comune.
    Ack,
    /// `housing.rejected` to the comune.
    Rejected(RejectReason),
    /// `housing.consultation` to the comune (H4).
    Consultation,
    /// `housing.withdrawn` to the stazione appaltante (H5).
    Withdrawn,
}

/// What the hub knows of a unit before the new event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnitState {
    /// The stazione appaltante holds the unit: it was offered to it and not withdrawn since.
    pub forwarded: bool,
}

/// What to send, and whether the stazione appaltante holds the unit afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub notices: Vec<Notice>,
    pub forwarded: bool,
}

/// Decides on one event: the unit's next state and what to send. H1–H5 depend on
/// neither the time nor the settings, so neither is an argument.
pub fn decide(state: &UnitState, unit: &HousingUnit) -> (UnitState, Decision) {
    let decision = verdict(state.forwarded, unit);
    let next = UnitState {
        forwarded: decision.forwarded,
    };
    (next, decision)
}

fn verdict(forwarded: bool, unit: &HousingUnit) -> Decision {
    let keep = |notices| Decision { notices, forwarded };
    match unit.action {
        // H5: only a unit the stazione appaltante holds is withdrawn from it.
        Action::Withdrawn if forwarded => Decision {
            notices: vec![Notice::Withdrawn],
            forwarded: false,
        },
        Action::Withdrawn => keep(vec![]),
        Action::Offered => {
            // H2 first: the Prefettura bound itself not to use ex caserme (art. 2.4),
            // whoever found the building.
            if unit.building_type == Some(BuildingType::ExCaserma) {
                return keep(vec![Notice::Rejected(RejectReason::ExCaserma)]);
            }
            // H4: a unit the Prefettura found is first put to the comune (art. 2.9).
            if unit.identified_by == IdentifiedBy::Prefettura {
                return keep(vec![Notice::Consultation]);
            }
            // H3
            if unit.owner_declaration != Some(true) {
                return keep(vec![Notice::Rejected(
                    RejectReason::OwnerDeclarationMissing,
                )]);
            }
            // H1
            Decision {
                notices: vec![Notice::Offered { update: forwarded }, Notice::Ack],
                forwarded: true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decides from a state that says only whether the unit is forwarded.
    fn run(forwarded: bool, unit: &HousingUnit) -> Decision {
        let (next, decision) = decide(&UnitState { forwarded }, unit);
        assert_eq!(next.forwarded, decision.forwarded);
        decision
    }
    use crate::unit::ReceptionKind;
    use raccordo_core::domain::ComuneIstat;

    fn offer() -> HousingUnit {
        HousingUnit {
            unit_id: "u-1".into(),
            action: Action::Offered,
            comune_istat: ComuneIstat::parse("015146").expect("valid"),
            identified_by: IdentifiedBy::Comune,
            address: Some("Via Roma 1".into()),
            places: Some(4),
            reception_kind: Some(ReceptionKind::Cas),
            building_type: Some(BuildingType::Appartamento),
            owner_declaration: Some(true),
            available_from: None,
            notes: None,
        }
    }

    fn withdrawal() -> HousingUnit {
        HousingUnit {
            action: Action::Withdrawn,
            ..offer()
        }
    }

    #[test]
    fn h1_a_valid_offer_goes_to_the_stazione_appaltante_and_is_acknowledged() {
        let d = run(false, &offer());
        assert_eq!(
            d.notices,
            vec![Notice::Offered { update: false }, Notice::Ack]
        );
        assert!(d.forwarded);
    }

    #[test]
    fn h1_a_later_offer_of_the_same_unit_is_an_update() {
        let d = run(true, &offer());
        assert_eq!(
            d.notices,
            vec![Notice::Offered { update: true }, Notice::Ack]
        );
        assert!(d.forwarded);
    }

    #[test]
    fn h2_an_ex_caserma_is_rejected_and_not_forwarded() {
        let unit = HousingUnit {
            building_type: Some(BuildingType::ExCaserma),
            ..offer()
        };
        let d = run(false, &unit);
        assert_eq!(d.notices, vec![Notice::Rejected(RejectReason::ExCaserma)]);
        assert!(!d.forwarded);
    }

    #[test]
    fn h2_an_ex_caserma_found_by_the_prefettura_is_rejected_too() {
        let unit = HousingUnit {
            building_type: Some(BuildingType::ExCaserma),
            identified_by: IdentifiedBy::Prefettura,
            ..offer()
        };
        assert_eq!(
            run(false, &unit).notices,
            vec![Notice::Rejected(RejectReason::ExCaserma)]
        );
    }

    #[test]
    fn h3_a_missing_or_false_owner_declaration_is_rejected() {
        for declaration in [None, Some(false)] {
            let unit = HousingUnit {
                owner_declaration: declaration,
                ..offer()
            };
            let d = run(false, &unit);
            assert_eq!(
                d.notices,
                vec![Notice::Rejected(RejectReason::OwnerDeclarationMissing)]
            );
            assert!(!d.forwarded);
        }
    }

    #[test]
    fn h4_a_unit_found_by_the_prefettura_is_put_to_the_comune_only() {
        let unit = HousingUnit {
            identified_by: IdentifiedBy::Prefettura,
            owner_declaration: None,
            ..offer()
        };
        let d = run(false, &unit);
        assert_eq!(d.notices, vec![Notice::Consultation]);
        assert!(!d.forwarded);
    }

    #[test]
    fn h5_withdrawing_a_forwarded_unit_tells_the_stazione_appaltante() {
        let d = run(true, &withdrawal());
        assert_eq!(d.notices, vec![Notice::Withdrawn]);
        assert!(!d.forwarded);
    }

    #[test]
    fn h5_withdrawing_a_unit_never_forwarded_sends_nothing() {
        let d = run(false, &withdrawal());
        assert!(d.notices.is_empty());
        assert!(!d.forwarded);
    }

    #[test]
    fn h5_a_second_withdrawal_sends_nothing() {
        let first = run(true, &withdrawal());
        let second = run(first.forwarded, &withdrawal());
        assert!(second.notices.is_empty());
    }

    #[test]
    fn a_rejected_update_leaves_a_forwarded_unit_with_the_stazione_appaltante() {
        let unit = HousingUnit {
            owner_declaration: Some(false),
            ..offer()
        };
        let d = run(true, &unit);
        assert!(d.forwarded);
    }
}
