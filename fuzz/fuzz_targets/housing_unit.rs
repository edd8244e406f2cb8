//! `housing.unit.v1` from bytes to the decision: decode, `data_as::<HousingUnit>`, then
//! rules H1–H5 whether or not the stazione appaltante already holds the unit. Beyond "no
//! panic": `available_from` within 1900–2200, an ex caserma or an offer without the owner's
//! declaration never newly forwarded, a withdrawal always takes the unit back.

#![no_main]

use libfuzzer_sys::fuzz_target;

use raccordo_core::envelope::EventType;
use raccordo_fuzz::{assert_date, wire_event};
use raccordo_housing::decide::{Notice, UnitState, decide};
use raccordo_housing::unit::{Action, BuildingType, HousingUnit, IdentifiedBy};

fuzz_target!(|data: &[u8]| {
    let Some((unit, body, rest)) = wire_event::<HousingUnit>(data, EventType::HousingUnit) else {
        return;
    };
    if let Some(from) = unit.available_from {
        assert_date("available_from", from, &body);
    }
    let forwarded = rest.first().is_some_and(|b| b & 1 == 1);
    let state = UnitState { forwarded };
    let (next, d) = decide(&state, &unit);
    assert_eq!((next, d.clone()), decide(&state, &unit));
    assert_eq!(
        next.forwarded, d.forwarded,
        "the next state is what the decision says"
    );
    match unit.action {
        Action::Withdrawn => {
            assert!(!d.forwarded, "H5: a withdrawn unit stays with the stazione");
            assert_eq!(d.notices.contains(&Notice::Withdrawn), forwarded);
        }
        Action::Offered => {
            let newly = d.forwarded && !forwarded;
            if unit.building_type == Some(BuildingType::ExCaserma)
                || unit.identified_by == IdentifiedBy::Prefettura
                || unit.owner_declaration != Some(true)
            {
                assert!(!newly, "H2-H4: forwarded an offer the protocol holds back");
                assert!(
                    !d.notices
                        .iter()
                        .any(|n| matches!(n, Notice::Offered { .. })),
                    "H2-H4: offered to the stazione appaltante"
                );
            }
            assert!(d.forwarded || !forwarded, "an offer took the unit back");
        }
    }
});
