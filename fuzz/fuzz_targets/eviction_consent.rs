//! `eviction.consent.v1` from bytes to the decision: decode, `data_as::<ConsentEvent>`,
//! then rules C2 and C4 against a plausible prior state. Beyond "no panic": `recorded_at`
//! within 1900–2200 (CONTRACT §2), no personal value in a rejection, personal data held only
//! on a grant that is now in force, and a revocation always applies and forgets (C8).

#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

use raccordo_core::envelope::EventType;
use raccordo_eviction::decide::{Input, Notice, Personal, Rules, Trigger, decide};
use raccordo_eviction::event::{ConsentDecision, ConsentEvent};
use raccordo_fuzz::{assert_datetime, plausible, wire_event};

fuzz_target!(|data: &[u8]| {
    let Some((consent, body, rest)) = wire_event::<ConsentEvent>(data, EventType::EvictionConsent)
    else {
        return;
    };
    assert_datetime("recorded_at", consent.recorded_at, &body);

    let mut u = Unstructured::new(rest);
    let (Ok(state), Ok(now), Ok(days)) = (
        plausible::procedure_state(&mut u),
        plausible::now(&mut u),
        plausible::urgent_within_days(&mut u),
    ) else {
        return;
    };
    let input = Input::Consent {
        decision: consent.decision,
        recorded_at: consent.recorded_at,
    };
    let rules = Rules {
        urgent_within_days: days,
    };
    let (next, decision) = decide(&state, input, now, &rules);
    assert_eq!(
        (next.clone(), decision.clone()),
        decide(&state, input, now, &rules)
    );
    let applies = match (consent.decision, state.consent) {
        // C8: a revocation always wins.
        (ConsentDecision::Revoked, _) | (ConsentDecision::Granted, None) => true,
        (ConsentDecision::Granted, Some(c)) if c.decision == ConsentDecision::Revoked => {
            consent.recorded_at > c.recorded_at && consent.recorded_at <= now
        }
        (ConsentDecision::Granted, Some(c)) => consent.recorded_at >= c.recorded_at,
    };
    assert_eq!(decision.consent_applied, applies, "C8's order");
    assert_eq!(decision.consent_effective_at.is_some(), applies);
    if let (Some(at), Some(before)) = (decision.consent_effective_at, state.consent) {
        assert!(at >= before.recorded_at, "never before the decision in force");
    }
    if let Some(at) = decision.consent_effective_at {
        let bound = state.consent.map_or(now, |c| c.recorded_at.max(now));
        assert!(at <= bound, "never after its arrival (or the decision in force)");
    }
    match (applies, consent.decision) {
        (false, _) => {
            assert!(decision.notices.is_empty());
            assert_eq!(decision.personal, Personal::Drop);
            assert_eq!(next, state, "a grant that does not apply changes nothing");
        }
        (true, ConsentDecision::Granted) => {
            assert_eq!(decision.personal, Personal::Hold);
            assert!(next.consent_active(), "a grant in force is the next state");
            assert!(matches!(
                decision.notices.as_slice(),
                [Notice::Alert {
                    trigger: Trigger::Consent,
                    ..
                }]
            ));
        }
        (true, ConsentDecision::Revoked) => {
            // C4: forget always; tell only referents who were told.
            assert_eq!(decision.personal, Personal::Forget);
            assert!(
                !next.consent_active(),
                "a revocation in force is the next state"
            );
            let told = state.consent_active();
            assert_eq!(decision.notices == vec![Notice::ConsentRevoked], told);
            assert!(told || decision.notices.is_empty());
        }
    }
});
