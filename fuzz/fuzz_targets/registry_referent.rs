//! `registry.referent.v1` from bytes to the wire struct: decode, `data_as::<ReferentEvent>`.
//! (Applying it needs the database: the integration tests cover that.) Beyond "no panic": the
//! same verdict twice, an upsert's email address parses again to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;

use raccordo_core::domain::EmailAddress;
use raccordo_core::envelope::EventType;
use raccordo_core::registry::ReferentEvent;
use raccordo_fuzz::{data_as, decode, split_body};

fuzz_target!(|data: &[u8]| {
    let Some((event, _)) = split_body(data) else {
        return;
    };
    let (body, decoded) = decode(&event);
    let Ok(envelope) = decoded else {
        return;
    };
    if envelope.event_type != EventType::RegistryReferent {
        return;
    }
    if let Ok(ReferentEvent::Upsert { email, .. }) = data_as::<ReferentEvent>(&envelope, &body) {
        assert_eq!(EmailAddress::parse(email.as_ref()).as_ref(), Ok(&email));
        assert_eq!(
            EmailAddress::parse_mailbox(email.as_ref()).as_ref(),
            Ok(&email)
        );
    }
});
