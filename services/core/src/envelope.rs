//! The CloudEvents 1.0 envelope (CONTRACT §3) and its validation against the JSON Schemas
//! in `schemas/` — the same files the project publishes, embedded at build time, so the
//! documented contract and the enforced one cannot drift apart.

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde_json::Value;

/// An event type of the contract, with its schema file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    EvictionStep,
    EvictionConsent,
    HousingUnit,
    ReceptionOccupancy,
    RegistryReferent,
    AsylumVulnerability,
    AsylumIntervention,
    AsylumDomicile,
    AsylumPlacement,
}

impl EventType {
    /// Every type the contract defines.
    pub const ALL: [EventType; 9] = [
        EventType::EvictionStep,
        EventType::EvictionConsent,
        EventType::HousingUnit,
        EventType::ReceptionOccupancy,
        EventType::RegistryReferent,
        EventType::AsylumVulnerability,
        EventType::AsylumIntervention,
        EventType::AsylumDomicile,
        EventType::AsylumPlacement,
    ];

    /// The CloudEvents `type` and routing key.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::EvictionStep => "eviction.step.v1",
            EventType::EvictionConsent => "eviction.consent.v1",
            EventType::HousingUnit => "housing.unit.v1",
            EventType::ReceptionOccupancy => "reception.occupancy.v1",
            EventType::RegistryReferent => "registry.referent.v1",
            EventType::AsylumVulnerability => "asylum.vulnerability.v1",
            EventType::AsylumIntervention => "asylum.intervention.v1",
            EventType::AsylumDomicile => "asylum.domicile.v1",
            EventType::AsylumPlacement => "asylum.placement.v1",
        }
    }

    /// Looks a type up by name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The JSON Schema of the `data` member.
    pub fn schema_source(self) -> &'static str {
        match self {
            EventType::EvictionStep => include_str!("../../../schemas/eviction.step.v1.json"),
            EventType::EvictionConsent => {
                include_str!("../../../schemas/eviction.consent.v1.json")
            }
            EventType::HousingUnit => include_str!("../../../schemas/housing.unit.v1.json"),
            EventType::ReceptionOccupancy => {
                include_str!("../../../schemas/reception.occupancy.v1.json")
            }
            EventType::RegistryReferent => {
                include_str!("../../../schemas/registry.referent.v1.json")
            }
            EventType::AsylumVulnerability => {
                include_str!("../../../schemas/asylum.vulnerability.v1.json")
            }
            EventType::AsylumIntervention => {
                include_str!("../../../schemas/asylum.intervention.v1.json")
            }
            EventType::AsylumDomicile => include_str!("../../../schemas/asylum.domicile.v1.json"),
            EventType::AsylumPlacement => include_str!("../../../schemas/asylum.placement.v1.json"),
        }
    }

    /// Whether events of this type may carry personal data of a family or an asylum seeker
    /// (a case number is one too).
    pub fn may_carry_personal_data(self) -> bool {
        matches!(
            self,
            EventType::EvictionStep
                | EventType::EvictionConsent
                | EventType::AsylumVulnerability
                | EventType::AsylumIntervention
                | EventType::AsylumDomicile
                | EventType::AsylumPlacement
        )
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The pattern the schemas give text that may reach an email header (a referent's name,
/// institution, id and scope): no C0, DEL or C1 control character (CONTRACT §4).
pub const NO_CONTROL_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";

const ENVELOPE_SCHEMA: &str = include_str!("../../../schemas/cloudevent.v1.json");

/// Why an inbound message can never be processed. The text is for operators; it names
/// fields and rules, never field values, so it is safe to keep next to a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("envelope violation: {0}")]
    Envelope(String),
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("schema violation in {event_type}: {detail}")]
    Schema { event_type: String, detail: String },
    #[error("{0}")]
    Business(String),
}

/// A validated CloudEvent whose `data` matches its type's schema.
#[derive(Clone)]
pub struct Envelope {
    /// The publisher's event id; with `source`, the idempotency key.
    pub id: String,
    /// The publishing system.
    pub source: String,
    /// The event type.
    pub event_type: EventType,
    /// The `data` member, valid against the type's schema.
    pub data: Value,
    /// Who published it: the broker-validated `user_id`, or [`ANONYMOUS`]. With `source`
    /// and `id`, the idempotency key (CONTRACT 1.2 §3).
    pub publisher: String,
}

/// The publisher of an event that carries no `user_id` (where anonymous publishing is
/// allowed).
pub const ANONYMOUS: &str = "anonymous";

// `data` may hold personal data: never print it.
impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("id", &self.id)
            .field("source", &self.source)
            .field("event_type", &self.event_type)
            .field("publisher", &self.publisher)
            .finish_non_exhaustive()
    }
}

impl Envelope {
    /// Decodes and validates a message body: JSON, envelope, known type, data schema.
    pub fn decode(body: &[u8]) -> Result<Self, Rejection> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            // serde_json's message names a position, never the content.
            Rejection::NotJson(e.to_string())
        })?;
        Self::decode_value(value)
    }

    /// Validates a whole event already parsed: envelope, known type, data schema.
    pub fn decode_value(value: Value) -> Result<Self, Rejection> {
        let validators = validators();
        if let Some(detail) = first_error(&validators.envelope, &value) {
            return Err(Rejection::Envelope(detail));
        }
        let type_name = value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let event_type = EventType::parse(type_name)
            .ok_or_else(|| Rejection::UnknownType(truncate(type_name, 80)))?;
        let data = value.get("data").cloned().unwrap_or(Value::Null);
        if let Some(detail) = validators
            .data
            .get(&event_type)
            .and_then(|v| first_error(v, &data))
        {
            return Err(Rejection::Schema {
                event_type: event_type.as_str().to_owned(),
                detail,
            });
        }
        let text = |k: &str| {
            value
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Ok(Self {
            id: text("id"),
            source: text("source"),
            event_type,
            data,
            publisher: ANONYMOUS.to_owned(),
        })
    }

    /// The same event as published by `publisher` (the validated `user_id`; None:
    /// [`ANONYMOUS`]).
    pub fn published_by(mut self, publisher: Option<&str>) -> Self {
        self.publisher = publisher.unwrap_or(ANONYMOUS).to_owned();
        self
    }

    /// Deserializes `data` into the type's wire struct. The error names the field and
    /// what is wrong with it, never its value.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, Rejection> {
        serde_path_to_error::deserialize(&self.data).map_err(|e| {
            let path = match e.path().to_string() {
                root if root == "." => String::new(),
                path => path
                    .split('.')
                    .map(|segment| {
                        let name = segment.split('[').next().unwrap_or_default();
                        if is_field_name(name) { segment } else { "?" }
                    })
                    .collect::<Vec<_>>()
                    .join("/"),
            };
            let inner = e.into_inner().to_string();
            // serde's messages may quote the offending value, which may be personal data;
            // only the hub's own range message is known to hold none.
            let what = if inner.contains(crate::domain::OUT_OF_RANGE) {
                crate::domain::OUT_OF_RANGE
            } else if inner.contains(crate::domain::CONTROL_CHARACTER) {
                crate::domain::CONTROL_CHARACTER
            } else {
                "does not fit the type"
            };
            Rejection::Schema {
                event_type: self.event_type.as_str().to_owned(),
                detail: format!("at /{path}: {what}"),
            }
        })
    }
}

impl Envelope {
    /// Refuses `data` with a control character (CR, LF, NUL, other C0/C1) in any string,
    /// naming where (`at /name`), never the value: the code's own check of CONTRACT §4,
    /// whatever the schema says.
    pub fn refuse_control_characters(&self) -> Result<(), Rejection> {
        match control_character_at(&self.data, "") {
            Some(at) => Err(Rejection::Schema {
                event_type: self.event_type.as_str().to_owned(),
                detail: format!("at {at}: {}", crate::domain::CONTROL_CHARACTER),
            }),
            None => Ok(()),
        }
    }
}

/// The JSON pointer of the first string under `value` that holds a control character;
/// member names that do not look like field names are shown as `?`.
fn control_character_at(value: &Value, at: &str) -> Option<String> {
    match value {
        Value::String(s) if crate::domain::has_control(s) => Some(if at.is_empty() {
            "/".to_owned()
        } else {
            at.to_owned()
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| control_character_at(item, &format!("{at}/{i}"))),
        Value::Object(members) => members.iter().find_map(|(name, item)| {
            let shown = if is_field_name(name) {
                name.as_str()
            } else {
                "?"
            };
            let here = format!("{at}/{shown}");
            if crate::domain::has_control(name) {
                return Some(here);
            }
            control_character_at(item, &here)
        }),
        _ => None,
    }
}

struct Validators {
    envelope: jsonschema::Validator,
    data: HashMap<EventType, jsonschema::Validator>,
}

fn compile(source: &str, name: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(source)
        .unwrap_or_else(|e| panic!("schema {name} embedded at build time is not JSON: {e}"));
    jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| panic!("schema {name} embedded at build time is invalid: {e}"))
}

fn validators() -> &'static Validators {
    static VALIDATORS: OnceLock<Validators> = OnceLock::new();
    VALIDATORS.get_or_init(|| Validators {
        envelope: compile(ENVELOPE_SCHEMA, "cloudevent.v1"),
        data: EventType::ALL
            .into_iter()
            .map(|t| (t, compile(t.schema_source(), t.as_str())))
            .collect(),
    })
}

/// Validates a `data` object against a type's schema; `Err` lists what is wrong.
pub fn validate_data(event_type: EventType, data: &Value) -> Result<(), String> {
    match validators()
        .data
        .get(&event_type)
        .and_then(|v| first_error(v, data))
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Validates a whole envelope; `Err` says what is wrong.
pub fn validate_envelope(value: &Value) -> Result<(), String> {
    match first_error(&validators().envelope, value) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The first few schema errors, by location and keyword, without echoing values
/// (an echoed value could be personal data).
fn first_error(validator: &jsonschema::Validator, value: &Value) -> Option<String> {
    let errors: Vec<String> = validator
        .iter_errors(value)
        .take(3)
        .map(|e| {
            let path = e.instance_path().to_string();
            let at = if path.is_empty() {
                "/".to_owned()
            } else {
                path
            };
            format!("at {at}: {}", describe(&e))
        })
        .collect();
    (!errors.is_empty()).then(|| errors.join("; "))
}

fn describe(error: &jsonschema::ValidationError<'_>) -> String {
    use jsonschema::error::ValidationErrorKind as K;
    match error.kind() {
        K::Required { property } => format!("missing required property {property}"),
        K::AdditionalProperties { unexpected } => {
            // A publisher chooses member names too: under `household` or `contact` a name
            // may be a family's name. Only names that look like field names are repeated.
            let named: Vec<&str> = unexpected
                .iter()
                .map(String::as_str)
                .filter(|n| is_field_name(n))
                .collect();
            match unexpected.len() - named.len() {
                0 => format!("unexpected properties {}", named.join(", ")),
                others if named.is_empty() => format!("{others} unexpected properties"),
                others => format!(
                    "unexpected properties {} and {others} more",
                    named.join(", ")
                ),
            }
        }
        K::Enum { options } => format!("must be one of {options}"),
        K::Constant { expected_value } => format!("must be {expected_value}"),
        K::Type { kind } => format!("wrong type, expected {kind:?}"),
        K::MaxLength { limit } => format!("longer than {limit} characters"),
        K::MinLength { limit } => format!("shorter than {limit} characters"),
        K::Minimum { limit } => format!("below the minimum {limit}"),
        K::Maximum { limit } => format!("above the maximum {limit}"),
        // The schemas' pattern for names and institutions (CONTRACT §4): said in words.
        K::Pattern { pattern } if pattern == NO_CONTROL_PATTERN => {
            crate::domain::CONTROL_CHARACTER.to_owned()
        }
        K::Pattern { pattern } => format!("does not match the pattern {pattern}"),
        K::Format { format } => format!("is not a valid {format}"),
        _ => format!(
            "violates the schema rule at {}",
            error.schema_path().as_str()
        ),
    }
}

/// Whether `name` looks like a field name (lower-case letters, digits and `_`, at most 32),
/// and so may be repeated in a reason without risk of repeating personal data.
pub fn is_field_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(data: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "specversion": "1.0", "id": "e1", "source": "urn:test", "type": "housing.unit.v1",
            "data": data
        }))
        .expect("serializable")
    }

    #[test]
    fn a_valid_housing_offer_decodes() {
        let body = event(json!({
            "unit_id": "u1", "action": "offered", "comune_istat": "015146",
            "address": "Via Roma 1", "places": 4, "reception_kind": "CAS",
            "building_type": "appartamento", "owner_declaration": true
        }));
        let env = Envelope::decode(&body).expect("valid");
        assert_eq!(env.event_type, EventType::HousingUnit);
        assert_eq!(env.id, "e1");
    }

    #[test]
    fn garbage_is_not_json() {
        assert!(matches!(
            Envelope::decode(b"{nope"),
            Err(Rejection::NotJson(_))
        ));
    }

    #[test]
    fn a_missing_specversion_is_an_envelope_violation() {
        let body = br#"{"id":"1","source":"s","type":"housing.unit.v1","data":{}}"#;
        assert!(matches!(
            Envelope::decode(body),
            Err(Rejection::Envelope(_))
        ));
    }

    #[test]
    fn an_unknown_type_is_rejected_by_name() {
        let body = br#"{"specversion":"1.0","id":"1","source":"s","type":"pizza.v1","data":{}}"#;
        assert_eq!(
            Envelope::decode(body).err(),
            Some(Rejection::UnknownType("pizza.v1".into()))
        );
    }

    #[test]
    fn unexpected_member_names_that_could_be_personal_data_are_counted_not_repeated() {
        let body = serde_json::to_vec(&json!({
            "specversion": "1.0", "id": "e1", "source": "urn:test", "type": "eviction.step.v1",
            "data": {"procedure_id": "RG 1/2026", "step": "precetto", "occurred_on": "2026-03-02",
                     "comune_istat": "015146",
                     "household": {"Mario Rossi 333 1234567": "x", "pets": 2}}
        }))
        .expect("serializable");
        let text = Envelope::decode(&body).expect_err("unexpected").to_string();
        assert!(
            !text.contains("Rossi") && !text.contains("1234567"),
            "{text}"
        );
        assert!(text.contains("pets") && text.contains("1 more"), "{text}");
    }

    #[test]
    fn schema_errors_name_the_field_but_never_echo_values() {
        let body = event(json!({
            "unit_id": "u1", "action": "offered", "comune_istat": "015146",
            "address": "Via Segreta 99", "places": 9999, "reception_kind": "CAS",
            "building_type": "appartamento"
        }));
        let err = Envelope::decode(&body).expect_err("places out of range");
        let text = err.to_string();
        assert!(text.contains("/places"), "{text}");
        assert!(!text.contains("9999"), "{text}");
        assert!(!text.contains("Segreta"), "{text}");
    }
}
