//! `eviction.step.v1` from bytes to the decision: decode, `data_as::<StepEvent>`, then
//! rules C1–C5 against a plausible prior state of the procedure. Beyond "no panic": dates
//! within 1900–2200 (CONTRACT §2), no personal value in a rejection, and C1 — without an
//! active consent a step sends nothing and its personal data is dropped.

#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

use raccordo_core::envelope::EventType;
use raccordo_eviction::decide::{
    Input, Notice, Personal, Rules, StepRecord, Trigger, days_until, decide, is_urgent, next_access,
};
use raccordo_eviction::event::StepEvent;
use raccordo_fuzz::{assert_date, assert_datetime, plausible, wire_event};

fuzz_target!(|data: &[u8]| {
    let Some((step, body, rest)) = wire_event::<StepEvent>(data, EventType::EvictionStep) else {
        return;
    };
    assert_date("occurred_on", step.occurred_on, &body);
    if let Some(at) = step.next_access_at {
        assert_datetime("next_access_at", at, &body);
    }

    let mut u = Unstructured::new(rest);
    let (Ok(state), Ok(now), Ok(days)) = (
        plausible::procedure_state(&mut u),
        plausible::now(&mut u),
        plausible::urgent_within_days(&mut u),
    ) else {
        return;
    };
    let record = StepRecord {
        step: step.step,
        occurred_on: step.occurred_on,
        next_access_at: step.next_access_at,
        info_material_delivered: step.info_material_delivered,
    };
    let rules = Rules {
        urgent_within_days: days,
    };
    let (next, decision) = decide(&state, Input::Step(&record), now, &rules);
    assert_eq!(
        (next.clone(), decision.clone()),
        decide(&state, Input::Step(&record), now, &rules)
    );
    assert_eq!(
        next.history.len(),
        state.history.len() + 1,
        "the step joins the history"
    );
    assert_eq!(
        next.consent, state.consent,
        "a step never changes the consent"
    );
    assert!(
        !decision.consent_applied,
        "a step never changes the consent"
    );
    if state.consent_active() {
        // C3, C5
        let mut history = state.history.clone();
        history.push(record.clone());
        let urgent = is_urgent(next_access(&history), now, days);
        assert_eq!(
            decision.notices,
            vec![Notice::Alert {
                trigger: Trigger::Step,
                urgent
            }]
        );
        assert_eq!(decision.personal, Personal::Hold);
    } else {
        // C1
        assert!(decision.notices.is_empty(), "C1: an alert without consent");
        assert_eq!(
            decision.personal,
            Personal::Drop,
            "C1: held without consent"
        );
    }
    if let Some(at) = record.next_access_at {
        let _ = days_until(at, now);
    }
});
