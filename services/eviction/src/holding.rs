//! The dead-letter policy of the eviction queue (CONTRACT C7): dead letters are the one
//! place an unprocessable eviction event may still hold personal data, so held eviction
//! messages expire after `eviction.dead_letter_ttl_days`. The shared consume loop applies
//! it; this crate says what it is.

use raccordo_core::amqp::HoldingPolicy;
use raccordo_core::settings::EvictionSettings;

/// The policy the eviction worker gives the consume loop.
pub fn holding_policy(settings: &EvictionSettings) -> HoldingPolicy {
    HoldingPolicy::expire_personal(settings.dead_letter_ttl(), may_hold_personal_data)
}

/// Whether a message might carry personal data of a family or an asylum seeker: an
/// eviction or asylum routing key or type, or a `household`/`contact`/`person` member
/// anywhere. Errs on the side of expiring.
pub fn may_hold_personal_data(routing_key: &str, body: &[u8]) -> bool {
    let contains = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    routing_key.starts_with("eviction")
        || routing_key.starts_with("asylum")
        || contains(b"eviction.")
        || contains(b"asylum.")
        || contains(b"\"household\"")
        || contains(b"\"contact\"")
        || contains(b"\"person\"")
}

/// Pins what C7 relies on.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use lapin::BasicProperties;
    use serde_json::json;

    use raccordo_core::amqp::dead_letter::{HeldMessage, Holding};
    use raccordo_core::settings::Settings;

    use super::*;

    fn personal(routing_key: &str, body: serde_json::Value) -> bool {
        may_hold_personal_data(routing_key, &serde_json::to_vec(&body).expect("json"))
    }

    #[test]
    fn c7_an_unprocessable_eviction_event_is_marked_to_expire() {
        assert!(personal(
            "eviction.step.v1",
            json!({"type": "eviction.step.v1", "data": {"procedure_id": "x"}}),
        ));
    }

    #[test]
    fn c7_household_or_contact_under_any_routing_key_is_marked_to_expire() {
        assert!(personal(
            "pizza.v1",
            json!({"data": {"contact": {"name": "Zorro"}}})
        ));
        assert!(personal("x", json!({"data": {"household": {}}})));
    }

    #[test]
    fn c7_an_unprocessable_asylum_event_or_a_person_is_marked_to_expire() {
        assert!(personal(
            "asylum.vulnerability.v1",
            json!({"type": "asylum.vulnerability.v1", "data": {"case_id": "x"}}),
        ));
        assert!(personal(
            "x",
            json!({"data": {"person": {"name": "Zorro"}}})
        ));
    }

    #[test]
    fn c7_a_housing_event_is_kept_until_an_operator_acts() {
        assert!(!personal(
            "housing.unit.v1",
            json!({"type": "housing.unit.v1", "data": {"unit_id": "u"}}),
        ));
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

        let policy = holding_policy(&settings.eviction);

        assert_eq!(
            policy.expiry_of("eviction.step.v1", b"{}"),
            Some(Duration::from_secs(7 * 86_400))
        );
    }
}
