//! Any bytes as a PEC receipt's `daticert.xml`, and as a whole receipt email (D2). Beyond
//! "no panic": the same verdict twice; an accepted certificate keeps every limit (fields,
//! recipients) and has a type and a message id; an accepted receipt agrees with its
//! certificate on both.

#![no_main]

use libfuzzer_sys::fuzz_target;

use raccordo_evidence::daticert::{self, MAX_FIELD, MAX_RECIPIENTS};
use raccordo_evidence::receipt::{self, normalise_message_id};

fuzz_target!(|data: &[u8]| {
    let first = daticert::parse(data);
    assert_eq!(first, daticert::parse(data), "parsing is not deterministic");
    if let Ok(cert) = first {
        assert!(!cert.tipo.is_empty() && !cert.msgid.is_empty());
        assert!(cert.destinatari.len() <= MAX_RECIPIENTS);
        for field in [
            &cert.mittente,
            &cert.oggetto,
            &cert.gestore,
            &cert.msgid,
            &cert.identificativo,
        ] {
            assert!(field.chars().count() <= MAX_FIELD);
        }
    }
    if let Ok(read) = receipt::read(data) {
        assert_eq!(read.cert.receipt_type(), Some(read.kind));
        assert_eq!(normalise_message_id(&read.cert.msgid), read.reference);
    }
});
