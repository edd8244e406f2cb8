//! The eviction worker: steps of eviction procedures and the families' consent decisions,
//! turned into alerts for social services only when a family asked for help, and into
//! anonymous statistics always — rules C1–C7 of the contract (Protocollo d'intesa per la
//! tutela delle fragilità in fase di escomio, art. 2 comma 4, art. 3 lett. a e b).
//!
//! The one invariant above all (C1): without an active `granted` decision, nothing
//! personal — household, contact, the clear docket number — is stored, sent or logged.
//!
//! # Layout
//! - [`personal`]: docket number, household and contact in redacting types; pseudonyms.
//! - [`event`]: the wire form of `eviction.step.v1` and `eviction.consent.v1`.
//! - [`decide`]: the pure decision core (C1–C5), unit-tested without I/O.
//! - [`store`]: the eviction tables.
//! - [`worker`]: the database side: lock, decide, record, hold or forget, outbox.
//! - [`stats`]: monthly statistics per ambito (C6), and their monthly job.
//! - [`scrub`]: removes the docket number from delivered revocation notices.
//! - [`audit`]: who was told what, when, and on whose recorded consent.
//! - [`reports`]: one procedure's counts for operators (the demo's summary).
//! - [`keys`]: the pseudonym key checked against the database, and its rotation.

pub mod audit;
pub mod decide;
pub mod event;
pub mod keys;
pub mod personal;
pub mod reports;
pub mod scrub;
pub mod stats;
pub mod store;
pub mod worker;

pub use personal::Pseudonymizer;
pub use worker::EvictionWorker;

/// C7 lives in the shared consume loop (`raccordo_core::amqp::dead_letter`); these tests
/// pin what the eviction worker relies on.
#[cfg(test)]
mod c7_tests {
    use std::time::Duration;

    use lapin::BasicProperties;
    use serde_json::json;

    use raccordo_core::amqp::Message;
    use raccordo_core::amqp::dead_letter::{HeldMessage, Holding, may_hold_personal_data};
    use raccordo_core::settings::Settings;

    fn message(routing_key: &str, body: serde_json::Value) -> Message {
        Message {
            body: serde_json::to_vec(&body).expect("json"),
            routing_key: routing_key.into(),
            properties: BasicProperties::default(),
            attempt: 1,
            publisher: None,
            span: tracing::Span::none(),
        }
    }

    #[test]
    fn c7_an_unprocessable_eviction_event_is_marked_to_expire() {
        let m = message(
            "eviction.step.v1",
            json!({"type": "eviction.step.v1", "data": {"procedure_id": "x"}}),
        );
        assert!(may_hold_personal_data(&m));
    }

    #[test]
    fn c7_household_or_contact_under_any_routing_key_is_marked_to_expire() {
        let m = message("pizza.v1", json!({"data": {"contact": {"name": "Zorro"}}}));
        assert!(may_hold_personal_data(&m));
        let m = message("x", json!({"data": {"household": {}}}));
        assert!(may_hold_personal_data(&m));
    }

    #[test]
    fn c7_a_housing_event_is_kept_until_an_operator_acts() {
        let m = message(
            "housing.unit.v1",
            json!({"type": "housing.unit.v1", "data": {"unit_id": "u"}}),
        );
        assert!(!may_hold_personal_data(&m));
    }

    #[test]
    fn c7_dlq_show_masks_household_and_contact() {
        let body = json!({"type": "eviction.step.v1", "data": {
            "procedure_id": "RG-1/2026",
            "household": {"name": "Famiglia Yeti", "phone": "+39 333 9999999"},
            "contact": {"email": "yeti@example.org"}
        }});
        let held = HeldMessage::from_delivery(
            Holding::Dead,
            serde_json::to_vec(&body).expect("json"),
            BasicProperties::default(),
        );
        let text = held.masked_body();
        assert!(!text.contains("Yeti") && !text.contains("9999999") && !text.contains("yeti@"));
        assert!(
            !text.contains("RG-1/2026"),
            "the docket number is personal too"
        );
    }

    #[test]
    fn c7_dead_letters_expire_after_seven_days_by_default() {
        let settings = Settings::load().expect("defaults");
        assert_eq!(
            settings.eviction.dead_letter_ttl(),
            Duration::from_secs(7 * 86_400)
        );
    }
}
