//! The CloudEvents AMQP protocol binding (contract 1.2 §3). Structured mode: the body is the
//! whole event (`application/cloudevents+json`, or plain JSON of that shape). Binary mode, for
//! systems that cannot wrap their body: the attributes travel as application properties
//! `cloudEvents_specversion`, `cloudEvents_id`, … (the prefix `cloudEvents:` is accepted
//! too), the content type is the data's (`application/json`) and the body is `data` alone.
//! Both end in the same [`Envelope`], validated the same way.

use lapin::BasicProperties;
use lapin::types::FieldTable;
use serde_json::{Map, Value};

use crate::amqp::header_text;
use crate::envelope::{Envelope, Rejection};
use crate::http_binding::media_type;

/// The application-property prefixes of binary mode.
pub const PREFIXES: [&str; 2] = ["cloudEvents_", "cloudEvents:"];

/// The attributes read from the properties (the contract's, `data` aside).
pub const ATTRIBUTES: [&str; 6] = ["specversion", "id", "source", "type", "time", "subject"];

/// Whether a message is in binary mode: not declared structured by its content type, and
/// carrying a `specversion` property.
pub fn is_binary(properties: &BasicProperties) -> bool {
    let structured = properties
        .content_type()
        .as_ref()
        .is_some_and(|ct| media_type(ct.as_str()).starts_with("application/cloudevents"));
    !structured && attribute(properties.headers().as_ref(), "specversion").is_some()
}

/// The event a message carries, in either mode.
pub fn decode(body: &[u8], properties: &BasicProperties) -> Result<Envelope, Rejection> {
    if !is_binary(properties) {
        return Envelope::decode(body);
    }
    if let Some(ct) = properties.content_type().as_ref() {
        let media = media_type(ct.as_str());
        if media != "application/json" && !media.ends_with("+json") {
            return Err(Rejection::Envelope(format!(
                "binary mode: the content type must be application/json, not {:?}",
                truncate(&media, 80)
            )));
        }
    }
    let data = data_of(body)?;
    let headers = properties.headers().as_ref();
    let mut event = Map::new();
    for name in ATTRIBUTES {
        if let Some(value) = attribute(headers, name) {
            event.insert(name.to_owned(), Value::String(value));
        }
    }
    event.insert("data".to_owned(), data);
    Envelope::decode_value(Value::Object(event))
}

/// The `data` of a binary-mode body.
pub fn data_of(body: &[u8]) -> Result<Value, Rejection> {
    // serde_json's message names a position, never the content.
    serde_json::from_slice(body).map_err(|e| Rejection::NotJson(e.to_string()))
}

/// An attribute's value under either prefix.
fn attribute(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    PREFIXES
        .iter()
        .find_map(|prefix| header_text(headers, &format!("{prefix}{name}")))
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{AMQPValue, LongString};
    use serde_json::json;

    fn properties(prefix: &str, content_type: Option<&str>) -> BasicProperties {
        let mut headers = FieldTable::default();
        for (k, v) in [
            ("specversion", "1.0"),
            ("id", "b-1"),
            ("source", "urn:comune:rho"),
            ("type", "housing.unit.v1"),
        ] {
            headers.insert(
                format!("{prefix}{k}").into(),
                AMQPValue::LongString(LongString::from(v)),
            );
        }
        let p = BasicProperties::default().with_headers(headers);
        match content_type {
            Some(ct) => p.with_content_type(ct.into()),
            None => p,
        }
    }

    fn offer() -> Vec<u8> {
        serde_json::to_vec(&json!({
            "unit_id": "u1", "action": "offered", "comune_istat": "015146",
            "address": "Via Roma 1", "places": 4, "reception_kind": "CAS",
            "building_type": "appartamento", "owner_declaration": true
        }))
        .expect("json")
    }

    #[test]
    fn both_prefixes_decode_to_the_event_of_structured_mode() {
        for prefix in PREFIXES {
            let p = properties(prefix, Some("application/json; charset=utf-8"));
            assert!(is_binary(&p));
            let e = decode(&offer(), &p).expect("valid");
            assert_eq!(
                (e.id.as_str(), e.source.as_str()),
                ("b-1", "urn:comune:rho")
            );
            assert_eq!(e.event_type.as_str(), "housing.unit.v1");
            assert_eq!(e.data["unit_id"], "u1");
        }
    }

    #[test]
    fn a_structured_content_type_wins_and_other_content_types_are_refused() {
        let structured = properties("cloudEvents_", Some("application/cloudevents+json"));
        assert!(!is_binary(&structured));
        let text = properties("cloudEvents_", Some("text/plain"));
        let refused = decode(&offer(), &text).expect_err("not JSON");
        assert!(
            refused.to_string().contains("application/json"),
            "{refused}"
        );
    }

    #[test]
    fn a_binary_event_is_validated_as_a_structured_one() {
        let p = properties("cloudEvents_", None);
        let mut data: Value = serde_json::from_slice(&offer()).expect("json");
        data["places"] = json!(0);
        let refused = decode(&serde_json::to_vec(&data).expect("json"), &p).expect_err("schema");
        assert!(refused.to_string().contains("/places"), "{refused}");
        assert!(matches!(decode(b"{nope", &p), Err(Rejection::NotJson(_))));
    }
}
