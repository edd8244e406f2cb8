//! Delivery status notifications (RFC 3464) from bytes, as the bounce reader gets them from
//! `mail.bounce_imap_url` — anyone may mail that box. Beyond "no panic, bounded time": the
//! same verdict twice; what a report yields is bounded (recipients, diagnostic length), its
//! addresses are plausible and lower-cased, and its diagnostics hold no control character
//! and no address (they reach the timeline and `delivery.bounced` events).

#![no_main]

use libfuzzer_sys::fuzz_target;

use raccordo_bounces::dsn::{self, MAX_RECIPIENTS};

fuzz_target!(|data: &[u8]| {
    let first = dsn::parse(data);
    assert_eq!(first, dsn::parse(data), "two verdicts on one input");
    let Ok(report) = first else {
        return;
    };
    assert!(!report.recipients.is_empty());
    assert!(report.recipients.len() <= MAX_RECIPIENTS);
    for r in &report.recipients {
        for address in std::iter::once(&r.final_recipient).chain(&r.original_recipient) {
            assert_eq!(address, &address.to_lowercase());
            assert_eq!(address.matches('@').count(), 1, "{address:?}");
            assert!(!address.chars().any(char::is_control), "{address:?}");
        }
        if let Some(diagnostic) = &r.diagnostic {
            assert!(diagnostic.chars().count() <= 300);
            assert!(!diagnostic.chars().any(char::is_control), "{diagnostic:?}");
            assert!(!diagnostic.contains('@'), "{diagnostic:?}");
        }
        assert_eq!(
            dsn::Status::parse(&r.status.to_string()),
            Some(r.status),
            "a status does not print back to itself"
        );
    }
    if let Some(id) = &report.original_message_id {
        assert!(!id.chars().any(char::is_control), "{id:?}");
    }
});
