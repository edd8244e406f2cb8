//! CONTRACT C8: a revocation always wins. A consent revocation that fails validation (a
//! contact too long, a comune its publisher may not name, a date out of range, an envelope
//! fault) is still applied: what identifies the procedure — the docket number, the comune —
//! is read from it leniently, and nothing else of it is trusted or kept.

use serde_json::Value;
use time::OffsetDateTime;

use raccordo_core::amqp::Message;
use raccordo_core::binding;
use raccordo_core::domain::{ComuneIstat, parse_datetime};
use raccordo_core::envelope::EventType;

use crate::event::{ConsentDecision, ConsentEvent};
use crate::personal::ProcedureId;

/// What a refused revocation says that can be acted on.
pub(crate) struct Revocation {
    pub procedure_id: ProcedureId,
    pub comune_istat: Option<ComuneIstat>,
    pub court: Option<String>,
    recorded_by: String,
    recorded_at: Option<OffsetDateTime>,
}

/// The longest `recorded_by` kept from a refused revocation.
const RECORDED_BY_MAX: usize = 200;

/// The longest `court` read from a refused revocation (the schema's bound).
const COURT_MAX: usize = 200;

/// The revocation in `message`, if it is one whose docket number can be read.
pub(crate) fn revocation_in(message: &Message) -> Option<Revocation> {
    let value: Value = serde_json::from_slice(&message.body).ok()?;
    // In binary mode the body is `data` alone, and the type is the routing key's.
    let binary = binding::is_binary(&message.properties);
    let event_type = match binary {
        true => None,
        false => value.get("type").and_then(Value::as_str),
    }
    .unwrap_or(&message.routing_key);
    if event_type != EventType::EvictionConsent.as_str() {
        return None;
    }
    let data = if binary { &value } else { value.get("data")? };
    if data.get("decision").and_then(Value::as_str) != Some(ConsentDecision::Revoked.as_str()) {
        return None;
    }
    let procedure_id = ProcedureId::parse(data.get("procedure_id")?.as_str()?).ok()?;
    let text = |name: &str| data.get(name).and_then(Value::as_str);
    let recorded_by = text("recorded_by")
        .filter(|s| {
            (1..=RECORDED_BY_MAX).contains(&s.chars().count()) && !s.chars().any(char::is_control)
        })
        .unwrap_or("(non indicato o non valido)")
        .to_owned();
    Some(Revocation {
        procedure_id,
        comune_istat: text("comune_istat").and_then(|s| ComuneIstat::parse(s).ok()),
        court: text("court")
            .filter(|s| (1..=COURT_MAX).contains(&s.len()))
            .map(str::to_owned),
        recorded_by,
        recorded_at: text("recorded_at").and_then(|s| parse_datetime(s).ok()),
    })
}

impl Revocation {
    /// The revocation as the worker applies it, about `comune`; without a readable
    /// `recorded_at` it counts from `now`.
    pub(crate) fn into_event(self, comune: ComuneIstat, now: OffsetDateTime) -> ConsentEvent {
        ConsentEvent {
            procedure_id: self.procedure_id,
            comune_istat: comune,
            decision: ConsentDecision::Revoked,
            recorded_by: self.recorded_by,
            recorded_at: self.recorded_at.unwrap_or(now),
            contact: None,
            court: self.court,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(body: Value) -> Message {
        Message {
            body: serde_json::to_vec(&body).expect("json"),
            routing_key: "eviction.consent.v1".into(),
            properties: Default::default(),
            attempt: 1,
            publisher: None,
            span: tracing::Span::none(),
        }
    }

    #[test]
    fn c8_a_revocation_with_a_contact_too_long_is_still_read() {
        let m = message(json!({
            "specversion": "1.0", "id": "x", "source": "urn:desk", "type": "eviction.consent.v1",
            "data": {"procedure_id": "RG 1/2026", "comune_istat": "015182", "decision": "revoked",
                     "recorded_by": "Sportello", "recorded_at": "2026-03-02T10:00:00+01:00",
                     "contact": {"notes": "x".repeat(5000)}}
        }));
        let r = revocation_in(&m).expect("a revocation");
        assert_eq!(r.procedure_id.canonical(), "RG1/2026");
        assert_eq!(r.comune_istat.as_ref().map(AsRef::as_ref), Some("015182"));
        assert!(r.recorded_at.is_some());
    }

    #[test]
    fn c8_a_binary_mode_revocation_is_read_from_its_body_alone() {
        use lapin::types::{AMQPValue, FieldTable, LongString};
        let mut headers = FieldTable::default();
        headers.insert(
            "cloudEvents_specversion".into(),
            AMQPValue::LongString(LongString::from("1.0")),
        );
        let m = Message {
            properties: lapin::BasicProperties::default().with_headers(headers),
            ..message(
                json!({"procedure_id": "RG 3/2026", "comune_istat": "015182",
                             "decision": "revoked", "contact": {"notes": "x".repeat(5000)}}),
            )
        };
        let r = revocation_in(&m).expect("a revocation in binary mode");
        assert_eq!(r.procedure_id.canonical(), "RG3/2026");
    }

    #[test]
    fn c8_a_grant_or_garbage_is_never_salvaged() {
        let grant = message(json!({"type": "eviction.consent.v1",
            "data": {"procedure_id": "RG 1/2026", "decision": "granted"}}));
        assert!(revocation_in(&grant).is_none());
        let garbage = Message {
            body: b"\xff{".to_vec(),
            ..message(json!({}))
        };
        assert!(revocation_in(&garbage).is_none());
        let no_docket = message(json!({"type": "eviction.consent.v1",
            "data": {"procedure_id": "", "decision": "revoked"}}));
        assert!(revocation_in(&no_docket).is_none());
    }

    #[test]
    fn c8_a_recorded_by_with_control_characters_or_a_date_out_of_range_is_not_kept() {
        let m = message(json!({"type": "eviction.consent.v1",
            "data": {"procedure_id": "RG 2/2026", "decision": "revoked",
                     "recorded_by": "Sportello\r\nBcc: x", "recorded_at": "9999-01-01T00:00:00Z"}}));
        let r = revocation_in(&m).expect("a revocation");
        assert_eq!(r.recorded_by, "(non indicato o non valido)");
        assert!(r.recorded_at.is_none());
    }
}
