//! What every fuzz target of the inbound path checks beyond "no panic": decoding is
//! deterministic, a rejection never quotes personal data, and whatever decodes holds only
//! dates and datetimes within the contract's years (CONTRACT §2, version 1.1).
//!
//! An input of an event target is one JSON document (the message body), optionally followed
//! by bytes from which [`arbitrary`] builds the prior state the decision core needs. Seeds
//! are plain bodies: the state is then the one of a first event.
//!
//! # Layout
//! - [`split_body`]: the body and the state bytes of an input.
//! - [`decode`]: `Envelope::decode` with canaries in the personal members, checked.
//! - [`data_as`]: `Envelope::data_as` checked the same way.
//! - [`assert_year`], [`assert_date`], [`assert_datetime`]: the contract's years.
//! - [`plausible`]: prior states as the hub could hold them.
//! - [`csv_lines`]: the CSV imports' line numbers, checked against the `csv` crate.

use raccordo_core::envelope::{Envelope, EventType, Rejection};
use serde::de::DeserializeOwned;
use serde_json::Value;
use time::{Date, OffsetDateTime};

pub mod csv_lines;
pub mod plausible;

/// The members of `data` that hold personal data (CONTRACT C1): their values must never
/// appear in a rejection's text.
const PERSONAL: [&str; 3] = ["procedure_id", "household", "contact"];

/// The member names the schemas define under `household` and `contact`: kept as they are,
/// so that a well-formed household stays well-formed.
const SCHEMA_MEMBERS: [&str; 8] = [
    "name", "address", "members", "minors", "frail", "phone", "email", "notes",
];

/// The canary cycle written over the letters and digits of personal values. It appears in
/// no schema, pattern or message of the hub, so finding four of it in a rejection means a
/// value leaked.
const CANARY: [char; 4] = ['Q', 'Z', 'X', 'J'];

/// Splits an input into the first JSON document and the bytes after it. `None` when the
/// input does not start with a JSON document.
pub fn split_body(data: &[u8]) -> Option<(Value, &[u8])> {
    let mut stream = serde_json::Deserializer::from_slice(data).into_iter::<Value>();
    let value = stream.next()?.ok()?;
    let rest = &data[stream.byte_offset()..];
    Some((value, rest))
}

/// Rewrites every letter and digit of the personal members of `data` with the canary
/// cycle, keeping lengths, punctuation and spaces (so the schema judges the same shape).
/// Returns whether any value was rewritten.
pub fn canarize(event: &mut Value) -> bool {
    let Some(data) = event.get_mut("data").and_then(Value::as_object_mut) else {
        return false;
    };
    let mut changed = false;
    for key in PERSONAL {
        if let Some(v) = data.get_mut(key) {
            changed |= canarize_value(v, &mut 0);
        }
    }
    changed
}

fn canarize_value(v: &mut Value, next: &mut usize) -> bool {
    match v {
        Value::String(s) => {
            let rewritten: String = s
                .chars()
                .map(|c| {
                    if c.is_alphanumeric() {
                        let k = CANARY[*next % CANARY.len()];
                        *next += 1;
                        k
                    } else {
                        c
                    }
                })
                .collect();
            let changed = rewritten != *s;
            *s = rewritten;
            changed
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |acc, item| canarize_value(item, next) | acc),
        // A member's name under `household` or `contact` is the publisher's text too (a
        // careless system may key by a name): it is canarized like the values.
        Value::Object(map) => {
            let members = std::mem::take(map);
            let mut changed = false;
            for (key, mut item) in members {
                let mut name = Value::String(key);
                if !SCHEMA_MEMBERS.contains(&name.as_str().unwrap_or_default()) {
                    changed |= canarize_value(&mut name, next);
                }
                changed |= canarize_value(&mut item, next);
                let Value::String(name) = name else {
                    unreachable!("a string stays a string")
                };
                map.insert(name, item);
            }
            changed
        }
        _ => false,
    }
}

/// Whether `text` holds four consecutive canary characters (any rotation of the cycle).
fn holds_canary(text: &str) -> bool {
    (0..CANARY.len()).any(|start| {
        let needle: String = (0..CANARY.len())
            .map(|i| CANARY[(start + i) % CANARY.len()])
            .collect();
        text.contains(&needle)
    })
}

/// Panics when a rejection quotes a personal value.
pub fn assert_no_leak(rejection: &Rejection, body: &[u8]) {
    let text = rejection.to_string();
    assert!(
        !holds_canary(&text),
        "a rejection quotes personal data: {text:?}\nbody: {}",
        String::from_utf8_lossy(body)
    );
}

/// Decodes `event` with its personal members rewritten to canaries: the same result twice,
/// no canary in a rejection, and a decoded envelope agrees with the public validators.
pub fn decode(event: &Value) -> (Vec<u8>, Result<Envelope, Rejection>) {
    let mut event = event.clone();
    let canaries = canarize(&mut event);
    let body = serde_json::to_vec(&event).expect("a Value always serializes");
    // A canary the publisher wrote elsewhere (say in `type`, which a rejection names) would
    // be a false alarm: check leaks only when the canaries are ours.
    let check_leaks = canaries && !holds_canary(&strip_personal(&event));
    let result = decode_bytes(&body);
    if let (Err(rejection), true) = (&result, check_leaks) {
        assert_no_leak(rejection, &body);
    }
    (body, result)
}

fn strip_personal(event: &Value) -> String {
    let mut event = event.clone();
    if let Some(data) = event.get_mut("data").and_then(Value::as_object_mut) {
        for key in PERSONAL {
            data.remove(key);
        }
    }
    event.to_string()
}

/// `Envelope::decode` twice on the same bytes: the results must agree.
pub fn decode_bytes(body: &[u8]) -> Result<Envelope, Rejection> {
    let first = Envelope::decode(body);
    let second = Envelope::decode(body);
    match (&first, &second) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.id, b.id);
            assert_eq!(a.source, b.source);
            assert_eq!(a.event_type, b.event_type);
            assert_eq!(a.data, b.data);
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "decoding is not deterministic"),
        _ => panic!("decoding is not deterministic: {first:?} then {second:?}"),
    }
    if let Ok(envelope) = &first {
        let value: Value = serde_json::from_slice(body).expect("decoded, so JSON");
        assert_eq!(
            raccordo_core::envelope::validate_envelope(&value),
            Ok(()),
            "decode accepted an envelope validate_envelope refuses"
        );
        assert_eq!(
            raccordo_core::envelope::validate_data(envelope.event_type, &envelope.data),
            Ok(()),
            "decode accepted data validate_data refuses"
        );
    }
    first
}

/// `Envelope::data_as` twice: the same verdict, and no personal value in a rejection.
pub fn data_as<T: DeserializeOwned>(envelope: &Envelope, body: &[u8]) -> Result<T, Rejection> {
    let first = envelope.data_as::<T>();
    let second = envelope.data_as::<T>();
    match (&first, &second) {
        (Ok(_), Ok(_)) => {}
        (Err(a), Err(b)) => assert_eq!(a, b, "data_as is not deterministic"),
        _ => panic!("data_as is not deterministic"),
    }
    if let Err(rejection) = &first {
        assert_no_leak(rejection, body);
    }
    first
}

/// CONTRACT §2 (version 1.1): no date or datetime outside 1900–2200 gets past decoding.
pub fn assert_year(field: &str, year: i32, body: &[u8]) {
    assert!(
        (1900..=2200).contains(&year),
        "{field} decoded with year {year}, outside 1900-2200\nbody: {}",
        String::from_utf8_lossy(body)
    );
}

/// [`assert_year`] for a date.
pub fn assert_date(field: &str, date: Date, body: &[u8]) {
    assert_year(field, date.year(), body);
}

/// [`assert_year`] for a datetime, both as written and in UTC — the form sqlx encodes.
pub fn assert_datetime(field: &str, at: OffsetDateTime, body: &[u8]) {
    assert_year(field, at.year(), body);
    let utc = OffsetDateTime::from_unix_timestamp(at.unix_timestamp())
        .unwrap_or_else(|_| panic!("{field} decoded, but its instant has no UTC form"));
    assert_year(field, utc.year(), body);
}

/// A target's input as one event of `event_type`: the body after [`decode`] (canaries in
/// place of personal values), its data as `T` through [`data_as`], and the bytes left for
/// the prior state. None when the input is not such an event; every check of [`decode`]
/// and [`data_as`] has run by then.
pub fn wire_event<T: DeserializeOwned>(
    data: &[u8],
    event_type: EventType,
) -> Option<(T, Vec<u8>, &[u8])> {
    let (event, rest) = split_body(data)?;
    let (body, decoded) = decode(&event);
    let envelope = decoded.ok()?;
    if envelope.event_type != event_type {
        return None;
    }
    let wire = data_as::<T>(&envelope, &body).ok()?;
    Some((wire, body, rest))
}
