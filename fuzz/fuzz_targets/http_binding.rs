//! Any bytes as a `POST /v1/events` (CONTRACT 1.2 §10): the first byte picks the content type
//! (structured, plain JSON, batch, binary with `ce-*` headers, something else), the next
//! lines are `ce-` headers for binary mode, the rest the body. Beyond "no panic": the same
//! verdict twice; every accepted event re-validates from the bytes the hub would publish; a
//! batch is all or nothing and never over its limit; a refusal never repeats a value of an
//! event's `data` (the canary `QZXJ`, when it is nowhere else in the request).

#![no_main]

use libfuzzer_sys::fuzz_target;

use raccordo_core::envelope::Envelope;
use raccordo_core::http_binding::{HttpBindingError, decode};

const MAX_BATCH: usize = 8;
const CONTENT_TYPES: [&str; 6] = [
    "application/cloudevents+json",
    "application/json",
    "application/cloudevents-batch+json",
    "application/json; charset=utf-8",
    "text/plain",
    "application/vnd.x+json",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()];
    // Header lines `name: value` until an empty line, then the body.
    let text = String::from_utf8_lossy(rest);
    let (head, body) = match text.split_once("\n\n") {
        Some((head, body)) if selector >= 128 => (head.to_owned(), body.as_bytes().to_vec()),
        _ => (String::new(), rest.to_vec()),
    };
    let headers: Vec<(String, String)> = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let binary = header("ce-specversion").is_some()
        && !content_type.starts_with("application/cloudevents")
        && content_type != "text/plain";
    let first = decode(Some(content_type), &header, &body, MAX_BATCH);
    let second = decode(Some(content_type), &header, &body, MAX_BATCH);
    match (&first, &second) {
        (Ok((m1, e1)), Ok((m2, e2))) => {
            assert_eq!(m1, m2);
            assert_eq!(e1.len(), e2.len());
            assert!(!e1.is_empty() && e1.len() <= MAX_BATCH);
            for event in e1 {
                let again = Envelope::decode(&event.body).expect("a published event re-validates");
                assert_eq!(again.id, event.envelope.id);
                assert_eq!(again.event_type, event.envelope.event_type);
                again
                    .refuse_control_characters()
                    .expect("no control character is published");
            }
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "the verdict is not deterministic");
            let canary_in_data_only =
                !head.contains("QZXJ") && !outside_data(&body, binary).contains("QZXJ");
            if let HttpBindingError::Invalid(items) = a {
                for item in items {
                    assert!(
                        !canary_in_data_only || !item.detail.contains("QZXJ"),
                        "a refusal repeats a value of data: {item:?}"
                    );
                    assert!(
                        item.pointer.is_empty() || item.pointer.starts_with('/'),
                        "not a JSON pointer: {item:?}"
                    );
                }
            }
        }
        _ => panic!("the verdict is not deterministic"),
    }
});

/// The request body without the events' `data` (all of it in binary mode, where the body is
/// the data), as text.
fn outside_data(body: &[u8], maybe_binary: bool) -> String {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::from_utf8_lossy(body).into_owned();
    };
    if maybe_binary {
        return String::new();
    }
    match &mut value {
        serde_json::Value::Object(event) => {
            event.remove("data");
        }
        serde_json::Value::Array(events) => {
            for event in events.iter_mut() {
                if let Some(event) = event.as_object_mut() {
                    event.remove("data");
                }
            }
        }
        _ => {}
    }
    value.to_string()
}
