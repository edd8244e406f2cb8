//! `registry.referent.v1` from bytes to the wire struct: decode, `data_as::<ReferentEvent>`.
//! (Applying it needs the database: the integration tests cover that.) Beyond "no panic": the
//! same verdict twice, an upsert's email address parses again to itself; and control
//! characters (CONTRACT §4) never get through: the schema and the code's own check agree on
//! a decoded event, and the code alone — the schema skipped — refuses any data that holds
//! one, so no name, institution, id or scope with one reaches the registry.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

use raccordo_core::domain::{EmailAddress, has_control};
use raccordo_core::envelope::{Envelope, EventType};
use raccordo_core::registry::ReferentEvent;
use raccordo_fuzz::{data_as, decode, split_body};

/// Whether any string of `value` — member names included — holds a control character.
fn holds_control(value: &Value) -> bool {
    match value {
        Value::String(s) => has_control(s),
        Value::Array(items) => items.iter().any(holds_control),
        Value::Object(members) => members
            .iter()
            .any(|(name, item)| has_control(name) || holds_control(item)),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((event, _)) = split_body(data) else {
        return;
    };
    // The code's check alone, as if the schema had let the data through.
    if let Some(raw) = event.get("data") {
        let unchecked = Envelope {
            id: "fuzz".into(),
            source: "urn:fuzz".into(),
            event_type: EventType::RegistryReferent,
            data: raw.clone(),
            publisher: "fuzz".into(),
        };
        let refused = unchecked.refuse_control_characters();
        assert_eq!(
            refused.is_err(),
            holds_control(raw),
            "the check misjudged {raw}"
        );
        if let Err(rejection) = &refused {
            let text = rejection.to_string();
            assert!(
                !has_control(&text),
                "a reason quotes a control character: {text:?}"
            );
        }
        if let Ok(ReferentEvent::Upsert {
            referent_id,
            institution,
            name,
            ..
        }) = unchecked.data_as::<ReferentEvent>()
        {
            assert!(!has_control(referent_id.as_ref()));
            assert!(!has_control(institution.as_ref()));
            assert!(name.is_none_or(|n| !has_control(n.as_ref())));
        }
    }
    let (body, decoded) = decode(&event);
    let Ok(envelope) = decoded else {
        return;
    };
    if envelope.event_type != EventType::RegistryReferent {
        return;
    }
    assert_eq!(
        envelope.refuse_control_characters(),
        Ok(()),
        "the schema let a control character through"
    );
    if let Ok(ReferentEvent::Upsert { email, .. }) = data_as::<ReferentEvent>(&envelope, &body) {
        assert_eq!(EmailAddress::parse(email.as_ref()).as_ref(), Ok(&email));
        assert_eq!(
            EmailAddress::parse_mailbox(email.as_ref()).as_ref(),
            Ok(&email)
        );
    }
});
