//! The CloudEvents HTTP protocol binding (contract 1.2 §10): structured
//! (`application/cloudevents+json`, or plain `application/json` without `ce-specversion`),
//! batch (`application/cloudevents-batch+json`: an array of events) and binary (`ce-*`
//! headers, the body is `data` alone). Every event ends as the structured JSON the hub
//! publishes over AMQP, validated as a worker would validate it.
//!
//! Errors name where (a JSON pointer into the request body, or the header) and what, never a
//! value: they go back to the publisher, and may be logged.

use serde_json::{Map, Value};

use crate::envelope::{Envelope, Rejection};

/// The `ce-` header of each attribute binary mode reads (`data` aside).
pub const HEADERS: [(&str, &str); 6] = [
    ("specversion", "ce-specversion"),
    ("id", "ce-id"),
    ("source", "ce-source"),
    ("type", "ce-type"),
    ("time", "ce-time"),
    ("subject", "ce-subject"),
];

/// How a request carried its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Structured,
    Batch,
    Binary,
}

/// One event of a request, validated, with the structured JSON to publish.
#[derive(Debug, Clone)]
pub struct HttpEvent {
    /// Where it sits in the request: `""` for a single event, `/3` in a batch.
    pub pointer: String,
    pub envelope: Envelope,
    /// The whole event, structured mode.
    pub body: Vec<u8>,
}

/// One invalid event: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// A JSON pointer into the request body (`/3/data/places`), or `""` for the whole body;
    /// in binary mode an attribute's error names its header in `detail`.
    pub pointer: String,
    pub detail: String,
}

/// Why a request's events cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpBindingError {
    #[error(
        "unsupported content type {0:?}: use application/cloudevents+json, application/cloudevents-batch+json, or application/json with ce-* headers"
    )]
    UnsupportedMediaType(String),
    #[error("a batch holds {count} events, more than ingest.max_batch ({max})")]
    TooMany { count: usize, max: usize },
    #[error("{} invalid event(s); nothing was published", .0.len())]
    Invalid(Vec<Invalid>),
}

/// The events of one request. `header` returns a request header's value by its lower-case
/// name (`None` when absent or not text).
pub fn decode(
    content_type: Option<&str>,
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    max_batch: usize,
) -> Result<(Mode, Vec<HttpEvent>), HttpBindingError> {
    let media = media_type(content_type.unwrap_or_default());
    let binary = header("ce-specversion").is_some();
    match media.as_str() {
        "application/cloudevents+json" => Ok((Mode::Structured, vec![structured(body, "")?])),
        "application/cloudevents-batch+json" => Ok((Mode::Batch, batch(body, max_batch)?)),
        "application/json" if binary => Ok((Mode::Binary, vec![binary_event(header, body)?])),
        "application/json" => Ok((Mode::Structured, vec![structured(body, "")?])),
        m if m.ends_with("+json") && binary => {
            Ok((Mode::Binary, vec![binary_event(header, body)?]))
        }
        _ => Err(HttpBindingError::UnsupportedMediaType(
            media.chars().take(80).collect(),
        )),
    }
}

fn structured(body: &[u8], pointer: &str) -> Result<HttpEvent, HttpBindingError> {
    let value = parse_json(body)?;
    checked(value, pointer, pointer).map_err(|e| HttpBindingError::Invalid(vec![e]))
}

fn batch(body: &[u8], max_batch: usize) -> Result<Vec<HttpEvent>, HttpBindingError> {
    let Value::Array(values) = parse_json(body)? else {
        return Err(invalid("", "a batch is a JSON array of CloudEvents"));
    };
    if values.is_empty() {
        return Err(invalid("", "a batch holds at least one event"));
    }
    if values.len() > max_batch {
        return Err(HttpBindingError::TooMany {
            count: values.len(),
            max: max_batch,
        });
    }
    let mut events = Vec::with_capacity(values.len());
    let mut errors = Vec::new();
    for (i, value) in values.into_iter().enumerate() {
        let pointer = format!("/{i}");
        match checked(value, &pointer, &pointer) {
            Ok(event) => events.push(event),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(events)
    } else {
        Err(HttpBindingError::Invalid(errors))
    }
}

fn binary_event(
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
) -> Result<HttpEvent, HttpBindingError> {
    let data = parse_json(body)?;
    let mut event = Map::new();
    for (name, header_name) in HEADERS {
        if let Some(value) = header(header_name) {
            event.insert(name.to_owned(), Value::String(value));
        }
    }
    let missing: Vec<&str> = HEADERS[..4]
        .iter()
        .filter(|(name, _)| !event.contains_key(*name))
        .map(|(_, h)| *h)
        .collect();
    if !missing.is_empty() {
        return Err(invalid(
            "",
            &format!("binary mode: missing header(s) {}", missing.join(", ")),
        ));
    }
    event.insert("data".to_owned(), data);
    // The body is `data`: a data error's pointer starts at the body's root.
    checked(Value::Object(event), "", "/data").map_err(|e| HttpBindingError::Invalid(vec![e]))
}

/// Validates one event; `pointer` is where it sits in the request, and `data_at` where its
/// `data` member sits (`/3/data`, or the body's root in binary mode).
fn checked(value: Value, pointer: &str, at: &str) -> Result<HttpEvent, Invalid> {
    let binary = at == "/data" && pointer.is_empty();
    let envelope = Envelope::decode_value(value.clone())
        .and_then(|e| e.refuse_control_characters().map(|()| e))
        .map_err(|rejection| locate(&rejection, pointer, binary))?;
    let body = serde_json::to_vec(&value).map_err(|e| Invalid {
        pointer: pointer.to_owned(),
        detail: format!("cannot encode the event: {e}"),
    })?;
    Ok(HttpEvent {
        pointer: pointer.to_owned(),
        envelope,
        body,
    })
}

/// The pointer a rejection names: `at /places` of a data schema is under `data`; of the
/// envelope, at the event's root (in binary mode, the header of that attribute).
fn locate(rejection: &Rejection, pointer: &str, binary: bool) -> Invalid {
    let detail = rejection.to_string();
    let at = detail
        .split("at ")
        .nth(1)
        .and_then(|rest| rest.split([':', ';', ' ']).next())
        .filter(|p| p.starts_with('/'))
        .map(|p| p.trim_end_matches('/').to_owned());
    let located = match (rejection, at) {
        (Rejection::Schema { .. }, Some(at)) if binary => at,
        (Rejection::Schema { .. }, Some(at)) => format!("{pointer}/data{at}"),
        (Rejection::Envelope(_), Some(at)) if binary => {
            let name = at.trim_start_matches('/');
            return Invalid {
                pointer: String::new(),
                detail: format!("header ce-{name}: {detail}"),
            };
        }
        (Rejection::Envelope(_), Some(at)) => format!("{pointer}{at}"),
        _ => pointer.to_owned(),
    };
    Invalid {
        pointer: located,
        detail,
    }
}

fn parse_json(body: &[u8]) -> Result<Value, HttpBindingError> {
    // serde_json's message names a line and column, never the content.
    serde_json::from_slice(body).map_err(|e| invalid("", &format!("not JSON: {e}")))
}

fn invalid(pointer: &str, detail: &str) -> HttpBindingError {
    HttpBindingError::Invalid(vec![Invalid {
        pointer: pointer.to_owned(),
        detail: detail.to_owned(),
    }])
}

/// The media type of a content type, lower case, without its parameters.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn offer() -> Value {
        json!({
            "unit_id": "u1", "action": "offered", "comune_istat": "015146",
            "address": "Via Roma 1", "places": 4, "reception_kind": "CAS",
            "building_type": "appartamento", "owner_declaration": true
        })
    }

    fn event(id: &str, data: Value) -> Value {
        json!({"specversion": "1.0", "id": id, "source": "urn:comune:rho",
               "type": "housing.unit.v1", "data": data})
    }

    fn no_headers(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn structured_and_plain_json_give_the_same_event() {
        let body = serde_json::to_vec(&event("e1", offer())).expect("json");
        for ct in [
            "application/cloudevents+json",
            "application/json; charset=utf-8",
        ] {
            let (mode, events) = decode(Some(ct), &no_headers, &body, 500).expect("valid");
            assert_eq!(mode, Mode::Structured);
            assert_eq!(events[0].envelope.id, "e1");
        }
    }

    #[test]
    fn binary_mode_reads_the_ce_headers_and_the_body_as_data() {
        let headers = |name: &str| match name {
            "ce-specversion" => Some("1.0".to_owned()),
            "ce-id" => Some("b1".to_owned()),
            "ce-source" => Some("urn:comune:rho".to_owned()),
            "ce-type" => Some("housing.unit.v1".to_owned()),
            _ => None,
        };
        let body = serde_json::to_vec(&offer()).expect("json");
        let (mode, events) = decode(Some("application/json"), &headers, &body, 500).expect("valid");
        assert_eq!(mode, Mode::Binary);
        let published: Value = serde_json::from_slice(&events[0].body).expect("json");
        assert_eq!(published, event("b1", offer()));
        // A data error points into the body, which is `data`.
        let mut bad = offer();
        bad["places"] = json!(0);
        let body = serde_json::to_vec(&bad).expect("json");
        let Err(HttpBindingError::Invalid(errors)) =
            decode(Some("application/json"), &headers, &body, 500)
        else {
            panic!("must be refused");
        };
        assert_eq!(errors[0].pointer, "/places");
        // A missing attribute names its header.
        let partial = |name: &str| (name != "ce-source").then(|| headers(name)).flatten();
        let Err(HttpBindingError::Invalid(errors)) =
            decode(Some("application/json"), &partial, &body, 500)
        else {
            panic!("must be refused");
        };
        assert!(errors[0].detail.contains("ce-source"), "{errors:?}");
    }

    #[test]
    fn a_batch_names_each_invalid_event_by_its_index() {
        let mut bad = offer();
        bad["places"] = json!("four");
        let body = serde_json::to_vec(&json!([
            event("e1", offer()),
            event("e2", bad),
            event("e3", offer())
        ]))
        .expect("json");
        let Err(HttpBindingError::Invalid(errors)) = decode(
            Some("application/cloudevents-batch+json"),
            &no_headers,
            &body,
            500,
        ) else {
            panic!("must be refused");
        };
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].pointer, "/1/data/places");
        assert!(!errors[0].detail.contains("four"), "never the value");
    }

    #[test]
    fn a_batch_over_the_limit_an_empty_one_and_other_media_are_refused() {
        let body =
            serde_json::to_vec(&json!([event("e1", offer()), event("e2", offer())])).expect("json");
        assert_eq!(
            decode(
                Some("application/cloudevents-batch+json"),
                &no_headers,
                &body,
                1
            )
            .err(),
            Some(HttpBindingError::TooMany { count: 2, max: 1 })
        );
        assert!(matches!(
            decode(
                Some("application/cloudevents-batch+json"),
                &no_headers,
                b"[]",
                5
            ),
            Err(HttpBindingError::Invalid(_))
        ));
        assert!(matches!(
            decode(Some("text/plain"), &no_headers, &body, 5),
            Err(HttpBindingError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            decode(None, &no_headers, &body, 5),
            Err(HttpBindingError::UnsupportedMediaType(_))
        ));
    }

    #[test]
    fn a_missing_envelope_member_points_at_the_event() {
        let mut e = event("e1", offer());
        e.as_object_mut().expect("object").remove("source");
        let body = serde_json::to_vec(&json!([event("e0", offer()), e])).expect("json");
        let Err(HttpBindingError::Invalid(errors)) = decode(
            Some("application/cloudevents-batch+json"),
            &no_headers,
            &body,
            500,
        ) else {
            panic!("must be refused");
        };
        assert!(errors[0].pointer.starts_with("/1"), "{errors:?}");
        assert!(errors[0].detail.contains("source"), "{errors:?}");
    }
}
