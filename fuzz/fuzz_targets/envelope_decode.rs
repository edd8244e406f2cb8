//! Any bytes as a message body: `Envelope::decode` (JSON, envelope schema, known type, data
//! schema) never panics, decides the same twice, agrees with the public validators, and
//! never quotes a personal value in a rejection.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = raccordo_fuzz::decode_bytes(data);
    if let Some((event, _)) = raccordo_fuzz::split_body(data) {
        let _ = raccordo_fuzz::decode(&event);
    }
});
