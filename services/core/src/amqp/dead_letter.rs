//! The operators' side of `{prefix}.dead` and `{prefix}.parked`: list, show (masked),
//! replay and purge them (CONTRACT F1, F2, C7).
//!
//! Held messages keep their original body and headers; the hub adds the `x-raccordo-*`
//! headers of [`super::holding`]. Browsing uses `basic.get` and closes the channel without
//! acking, so every message returns to the queue in its order.
//!
//! A replay of every held message works on a snapshot: the ids held when it starts. A
//! message that fails again comes back with a new id and waits for the next action, so each
//! held message is replayed at most once per action and the count is what was replayed.

use std::collections::HashMap;

use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions, QueuePurgeOptions};
use lapin::types::AMQPValue;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use serde::Serialize;
use serde_json::{Map, Value};

pub use super::holding::Holding;
use super::holding::{ATTEMPT, DEAD_ID, ERROR, FAILED_AT, QUEUE, ROUTING_KEY, replay_headers};
use super::publisher::{PublishError, Publisher};
use super::topology::{Topology, header_int, header_text};

/// A held message as operators see it.
///
/// The body and the properties stay private: what an operator may see of them goes
/// through [`HeldMessage::masked_body`] and [`HeldMessage::headers`], which show only
/// what is known not to be personal (CONTRACT C7). `Debug` shows neither.
#[derive(Clone, Serialize)]
pub struct HeldMessage {
    /// `dead` or `parked`.
    pub holding: Holding,
    /// The id for `dlq show` / `dlq replay`.
    pub id: String,
    /// The readable reason.
    pub error: String,
    /// Where it was consumed from.
    pub queue: String,
    /// The routing key it was published with.
    pub routing_key: String,
    /// When it was held.
    pub failed_at: String,
    /// Attempts made.
    pub attempt: i64,
    /// Body size in bytes.
    pub size: usize,
    /// The CloudEvent `type`, when the body is one and it has the envelope's shape.
    pub event_type: Option<String>,
    /// The CloudEvent `source`, likewise.
    pub source: Option<String>,
    /// The CloudEvent `id`, likewise.
    pub event_id: Option<String>,
    #[serde(skip)]
    body: Vec<u8>,
    /// False once [`HeldMessage::summary`] dropped the body.
    #[serde(skip)]
    body_kept: bool,
    #[serde(skip)]
    properties: BasicProperties,
}

/// Bodies larger than this are not parsed for display: their envelope columns stay empty
/// and [`HeldMessage::masked_body`] says so, so a huge dead letter costs its bytes and no more.
pub const DISPLAY_PARSE_MAX: usize = 1024 * 1024;

impl std::fmt::Debug for HeldMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldMessage")
            .field("holding", &self.holding)
            .field("id", &self.id)
            .field("error", &self.error)
            .field("queue", &self.queue)
            .field("routing_key", &self.routing_key)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl HeldMessage {
    /// A held message from what the broker returned for it.
    pub fn from_delivery(holding: Holding, body: Vec<u8>, properties: BasicProperties) -> Self {
        let headers = properties.headers().as_ref();
        let text = |k| header_text(headers, k).unwrap_or_default();
        let json: Option<Value> = if body.len() <= DISPLAY_PARSE_MAX {
            serde_json::from_slice(&body).ok()
        } else {
            None
        };
        let member = |k: &str| {
            let value = json.as_ref()?.as_object()?.get(k)?;
            let (_, shape) = ENVELOPE.iter().find(|(name, _)| *name == k)?;
            shape
                .admits(value)
                .then(|| value.as_str().map(str::to_owned))
                .flatten()
        };
        Self {
            holding,
            id: text(DEAD_ID),
            error: text(ERROR),
            queue: text(QUEUE),
            routing_key: text(ROUTING_KEY),
            failed_at: text(FAILED_AT),
            attempt: header_int(headers, ATTEMPT).unwrap_or(0),
            size: body.len(),
            event_type: member("type"),
            source: member("source"),
            event_id: member("id"),
            body,
            body_kept: true,
            properties,
        }
    }

    /// The same message without its body: what a list needs, whatever the body's size.
    pub fn summary(mut self) -> Self {
        self.body = Vec::new();
        self.body_kept = false;
        self
    }

    /// The body for display, built from an allow-list (CONTRACT C7): the envelope members
    /// and, per event type, the `data` members known not to be personal, each shown only
    /// when its value has the shape the schema gives it. Every other member is shown by
    /// name with its value masked; free text such as `notes` by its length only. A body
    /// that is not a JSON object is never shown, only its size.
    pub fn masked_body(&self) -> String {
        if !self.body_kept {
            return format!("<{} bytes: not loaded>", self.size);
        }
        if self.body.len() > DISPLAY_PARSE_MAX {
            return format!(
                "<{} bytes, over the {DISPLAY_PARSE_MAX} bytes read for display: not shown>",
                self.body.len()
            );
        }
        let object = match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(object)) => object,
            Ok(_) => {
                return format!(
                    "<{} bytes of JSON that is not an object: not shown>",
                    self.body.len()
                );
            }
            Err(_) => return format!("<{} bytes, not JSON: not shown>", self.body.len()),
        };
        let event_type = object.get("type").and_then(Value::as_str).unwrap_or("");
        // The data allow-list follows the type only when the routing key agrees with it:
        // a body that says `housing.unit.v1` on an eviction routing key gets no allow-list.
        let rules = if self.routing_key.is_empty() || self.routing_key == event_type {
            data_rules(event_type)
        } else {
            None
        };
        let shown = show_object(&object, |key, value| match (key, value) {
            ("data", Value::Object(data)) => Value::Object(show_object(data, |k, v| {
                show_member(k, v, rules.unwrap_or(&[]))
            })),
            ("data", _) => masked(MASKED),
            _ => show_member(key, value, ENVELOPE),
        });
        serde_json::to_string_pretty(&Value::Object(shown))
            .unwrap_or_else(|_| format!("<{} bytes: not shown>", self.body.len()))
    }

    /// The headers and properties for display: the hub's own `x-raccordo-*` headers and
    /// the AMQP properties that hold no free text; any other header is only counted,
    /// because a publisher can put anything in a header.
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut others = 0usize;
        if let Some(headers) = self.properties.headers() {
            for (key, value) in headers {
                let key = key.as_str();
                if !key.starts_with("x-raccordo-") {
                    others += 1;
                    continue;
                }
                let value = match value {
                    AMQPValue::LongString(s) => printable(&String::from_utf8_lossy(s.as_bytes())),
                    AMQPValue::ShortString(s) => printable(s.as_str()),
                    AMQPValue::LongLongInt(n) => n.to_string(),
                    AMQPValue::LongInt(n) => n.to_string(),
                    AMQPValue::LongUInt(n) => n.to_string(),
                    AMQPValue::ShortInt(n) => n.to_string(),
                    AMQPValue::ShortUInt(n) => n.to_string(),
                    AMQPValue::ShortShortInt(n) => n.to_string(),
                    AMQPValue::ShortShortUInt(n) => n.to_string(),
                    AMQPValue::Boolean(b) => b.to_string(),
                    _ => MASKED.to_owned(),
                };
                out.push((key.to_owned(), value));
            }
        }
        let p = &self.properties;
        if let Some(v) = p.content_type() {
            out.push(("content-type".into(), printable(v.as_str())));
        }
        if let Some(v) = p.content_encoding() {
            out.push(("content-encoding".into(), printable(v.as_str())));
        }
        if let Some(v) = p.delivery_mode() {
            out.push(("delivery-mode".into(), v.to_string()));
        }
        if let Some(v) = p.priority() {
            out.push(("priority".into(), v.to_string()));
        }
        if let Some(v) = p.expiration() {
            out.push(("expiration".into(), printable(v.as_str())));
        }
        if let Some(v) = p.timestamp() {
            out.push(("timestamp".into(), v.to_string()));
        }
        // RabbitMQ checks `user_id` against the connection's user: the publisher's identity.
        if let Some(v) = p.user_id() {
            out.push(("user-id".into(), printable(v.as_str())));
        }
        // Free text a publisher chooses: present, not shown.
        for (name, present) in [
            ("message-id", p.message_id().is_some()),
            ("correlation-id", p.correlation_id().is_some()),
            ("reply-to", p.reply_to().is_some()),
            ("type", p.kind().is_some()),
            ("app-id", p.app_id().is_some()),
            ("cluster-id", p.cluster_id().is_some()),
        ] {
            if present {
                out.push((name.into(), MASKED.into()));
            }
        }
        if others > 0 {
            out.push((
                "other headers".into(),
                format!("{others}, names and values not shown"),
            ));
        }
        out
    }
}

/// What a masked value reads as.
const MASKED: &str = "***masked***";

fn masked(text: &str) -> Value {
    Value::String(text.to_owned())
}

/// How much of a member `dlq show` may print.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// A string of at most this many characters, without control characters.
    Text(usize),
    /// `YYYY-MM-DD`.
    Date,
    /// RFC 3339, at most 64 characters.
    DateTime,
    /// Six ASCII digits.
    Istat,
    /// `true` or `false`.
    Bool,
    /// A whole number.
    Integer,
    /// Free text: shown by its length only.
    LengthOnly,
    /// An object whose members follow these rules.
    Object(&'static [(&'static str, Shape)]),
}

impl Shape {
    /// Whether `value` may be printed as it is.
    fn admits(self, value: &Value) -> bool {
        match (self, value) {
            (Shape::OneOf(words), Value::String(s)) => words.contains(&s.as_str()),
            (Shape::Text(max), Value::String(s)) => {
                s.chars().count() <= max && !s.chars().any(char::is_control)
            }
            (Shape::Date, Value::String(s)) => crate::domain::parse_date(s).is_ok(),
            (Shape::DateTime, Value::String(s)) => {
                s.len() <= 64
                    && time::OffsetDateTime::parse(
                        s,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .is_ok()
            }
            (Shape::Istat, Value::String(s)) => {
                s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit())
            }
            (Shape::Bool, Value::Bool(_)) => true,
            (Shape::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
            _ => false,
        }
    }
}

/// The envelope members shown (CONTRACT §3), with the limits of `schemas/cloudevent.v1.json`.
const ENVELOPE: &[(&str, Shape)] = &[
    ("specversion", Shape::OneOf(&["1.0"])),
    ("id", Shape::Text(256)),
    ("source", Shape::Text(512)),
    ("type", Shape::Text(128)),
    ("time", Shape::DateTime),
    ("subject", Shape::Text(256)),
    ("datacontenttype", Shape::Text(128)),
];

const STEPS: &[&str] = &[
    "intimazione",
    "convalida",
    "precetto",
    "avviso_sloggio",
    "accesso",
    "esecuzione",
];
const RECEPTION_KINDS: &[&str] = &["CAS", "SPRAR"];

/// `eviction.step.v1`: the non-personal history C1 keeps. Never `procedure_id` or `household`.
const EVICTION_STEP: &[(&str, Shape)] = &[
    ("step", Shape::OneOf(STEPS)),
    ("occurred_on", Shape::Date),
    ("next_access_at", Shape::DateTime),
    ("comune_istat", Shape::Istat),
    ("info_material_delivered", Shape::Bool),
];

/// `eviction.consent.v1`: the decision and the office. Never `procedure_id` or `contact`.
const EVICTION_CONSENT: &[(&str, Shape)] = &[
    ("comune_istat", Shape::Istat),
    ("decision", Shape::OneOf(&["granted", "revoked"])),
    ("recorded_by", Shape::Text(200)),
    ("recorded_at", Shape::DateTime),
];

const HOUSING_UNIT: &[(&str, Shape)] = &[
    ("unit_id", Shape::Text(64)),
    ("action", Shape::OneOf(&["offered", "withdrawn"])),
    ("comune_istat", Shape::Istat),
    ("identified_by", Shape::OneOf(&["comune", "prefettura"])),
    ("address", Shape::Text(300)),
    ("places", Shape::Integer),
    ("reception_kind", Shape::OneOf(RECEPTION_KINDS)),
    (
        "building_type",
        Shape::OneOf(&[
            "appartamento",
            "casa",
            "struttura_collettiva",
            "ex_caserma",
            "altro",
        ]),
    ),
    ("owner_declaration", Shape::Bool),
    ("available_from", Shape::Date),
    ("notes", Shape::LengthOnly),
];

const RECEPTION_OCCUPANCY: &[(&str, Shape)] = &[
    ("facility_id", Shape::Text(64)),
    ("comune_istat", Shape::Istat),
    ("reception_kind", Shape::OneOf(RECEPTION_KINDS)),
    ("capacity", Shape::Integer),
    ("presences", Shape::Integer),
    ("as_of", Shape::Date),
    ("active", Shape::Bool),
];

/// Referents are institutions' offices, not families.
const REGISTRY_REFERENT: &[(&str, Shape)] = &[
    ("referent_id", Shape::Text(64)),
    ("action", Shape::OneOf(&["upsert", "remove"])),
    ("institution", Shape::Text(200)),
    (
        "role",
        Shape::OneOf(&[
            "stazione_appaltante",
            "prefettura",
            "comune",
            "servizi_sociali",
            "tavolo",
        ]),
    ),
    ("email", Shape::Text(254)),
    ("name", Shape::Text(200)),
    (
        "scope",
        Shape::Object(&[
            ("comune_istat", Shape::Istat),
            ("ambito", Shape::Text(200)),
            ("zona", Shape::Text(200)),
        ]),
    ),
];

/// The `data` members shown for an event type; `None` for a type the hub does not know.
fn data_rules(event_type: &str) -> Option<&'static [(&'static str, Shape)]> {
    Some(match event_type {
        "eviction.step.v1" => EVICTION_STEP,
        "eviction.consent.v1" => EVICTION_CONSENT,
        "housing.unit.v1" => HOUSING_UNIT,
        "reception.occupancy.v1" => RECEPTION_OCCUPANCY,
        "registry.referent.v1" => REGISTRY_REFERENT,
        _ => return None,
    })
}

/// One member as `dlq show` prints it: its value when allow-listed and well-formed,
/// its length for free text, masked otherwise.
fn show_member(key: &str, value: &Value, rules: &[(&str, Shape)]) -> Value {
    let Some((_, shape)) = rules.iter().find(|(name, _)| *name == key) else {
        return masked(MASKED);
    };
    match (shape, value) {
        (Shape::LengthOnly, Value::String(s)) => {
            masked(&format!("***masked: {} characters***", s.chars().count()))
        }
        (Shape::Object(members), Value::Object(object)) => {
            Value::Object(show_object(object, |k, v| show_member(k, v, members)))
        }
        (shape, value) if shape.admits(value) => value.clone(),
        _ => masked("***masked: not as the schema says***"),
    }
}

/// Renders each member of `object` with `render`, under its name when the name is a plain
/// identifier; members with any other name (a name could itself be personal data) are
/// only counted.
fn show_object(
    object: &Map<String, Value>,
    render: impl Fn(&str, &Value) -> Value,
) -> Map<String, Value> {
    let mut shown = Map::new();
    let mut other_names = 0usize;
    for (key, value) in object {
        let plain = !key.is_empty()
            && key.len() <= 64
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if plain {
            shown.insert(key.clone(), render(key, value));
        } else {
            other_names += 1;
        }
    }
    if other_names > 0 {
        shown.insert(
            "***".into(),
            masked(&format!(
                "***masked: {other_names} members with other names***"
            )),
        );
    }
    shown
}

/// Control characters (a terminal's escape sequences among them) replaced, so a held
/// message cannot drive the operator's terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// Reads every message of a holding queue without removing any.
pub async fn browse(
    connection: &Connection,
    topology: &Topology,
    holding: Holding,
) -> Result<Vec<HeldMessage>, lapin::Error> {
    let mut held = Vec::new();
    for queue in holding.queues(topology) {
        // One channel per queue: closing it without acks returns every message to its
        // queue, in order, before the next queue is read.
        let channel = connection.create_channel().await?;
        while let Some(msg) = channel
            .basic_get(queue.clone().into(), BasicGetOptions { no_ack: false })
            .await?
        {
            let delivery = msg.delivery;
            held.push(HeldMessage::from_delivery(
                holding,
                delivery.data,
                delivery.properties,
            ));
        }
        channel.close(200, "browsed".into()).await?;
    }
    Ok(held)
}

/// Messages ready in the queues of `holdings` (a missing queue counts 0).
pub async fn held_count(
    connection: &Connection,
    topology: &Topology,
    holdings: &[Holding],
) -> Result<u64, lapin::Error> {
    let mut total = 0u64;
    for queue in holdings.iter().flat_map(|h| h.queues(topology)) {
        // A passive declare of a missing queue closes its channel: one channel each.
        let channel = connection.create_channel().await?;
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        if let Ok(q) = declared {
            total += u64::from(q.message_count());
            let _ = channel.close(200, "counted".into()).await;
        }
    }
    Ok(total)
}

/// One page of held messages, as summaries (no body).
#[derive(Debug, Default)]
pub struct Window {
    /// The page's messages, in queue order.
    pub messages: Vec<HeldMessage>,
    /// Whether more messages follow the page.
    pub more: bool,
}

/// The held messages of `holdings` after the first `skip`, at most `take` of them, and no
/// more once their bodies add up to `byte_budget` (the first is always taken). Every
/// message read is dropped at once but for its summary; all return to their queues.
pub async fn browse_window(
    connection: &Connection,
    topology: &Topology,
    holdings: &[Holding],
    skip: usize,
    take: usize,
    byte_budget: usize,
) -> Result<Window, lapin::Error> {
    let mut window = Window::default();
    let (mut skipped, mut bytes) = (0usize, 0usize);
    'queues: for (holding, queue) in holdings
        .iter()
        .flat_map(|h| h.queues(topology).into_iter().map(move |q| (*h, q)))
    {
        let channel = connection.create_channel().await?;
        while let Some(msg) = channel
            .basic_get(queue.clone().into(), BasicGetOptions { no_ack: false })
            .await?
        {
            if skipped < skip {
                skipped += 1;
                continue;
            }
            let full = window.messages.len() >= take || (bytes >= byte_budget && bytes > 0);
            if full {
                window.more = true;
                channel.close(200, "browsed".into()).await?;
                break 'queues;
            }
            let delivery = msg.delivery;
            bytes = bytes.saturating_add(delivery.data.len());
            window.messages.push(
                HeldMessage::from_delivery(holding, delivery.data, delivery.properties).summary(),
            );
        }
        channel.close(200, "browsed".into()).await?;
    }
    Ok(window)
}

/// The held message with this id, read from `holdings` without removing any; others read
/// on the way are dropped at once. At most `max_scan` messages are read.
pub async fn find(
    connection: &Connection,
    topology: &Topology,
    holdings: &[Holding],
    id: &str,
    max_scan: usize,
) -> Result<Option<HeldMessage>, lapin::Error> {
    let mut scanned = 0usize;
    for holding in holdings {
        for queue in holding.queues(topology) {
            let channel = connection.create_channel().await?;
            let mut found = None;
            while scanned < max_scan {
                let Some(msg) = channel
                    .basic_get(queue.clone().into(), BasicGetOptions { no_ack: false })
                    .await?
                else {
                    break;
                };
                scanned += 1;
                let delivery = msg.delivery;
                let headers = delivery.properties.headers().as_ref();
                if header_text(headers, DEAD_ID).as_deref() == Some(id) {
                    found = Some(HeldMessage::from_delivery(
                        *holding,
                        delivery.data,
                        delivery.properties,
                    ));
                    break;
                }
            }
            channel.close(200, "browsed".into()).await?;
            if found.is_some() {
                return Ok(found);
            }
        }
    }
    Ok(None)
}

/// What a replay did.
#[derive(Debug, Default, Serialize)]
pub struct ReplayReport {
    /// Messages sent back to their queue.
    pub replayed: usize,
    /// Messages read and left where they were: not asked for, held after the action began
    /// (a replayed message that failed again among them), or without a queue to go back to.
    pub kept: usize,
}

/// The ids held in a holding now, each with how many messages carry it.
async fn snapshot(
    connection: &Connection,
    topology: &Topology,
    holding: Holding,
) -> Result<HashMap<String, usize>, lapin::Error> {
    let mut ids: HashMap<String, usize> = HashMap::new();
    for queue in holding.queues(topology) {
        let channel = connection.create_channel().await?;
        while let Some(msg) = channel
            .basic_get(queue.clone().into(), BasicGetOptions { no_ack: false })
            .await?
        {
            let headers = msg.delivery.properties.headers().as_ref();
            let id = header_text(headers, DEAD_ID).unwrap_or_default();
            *ids.entry(id).or_default() += 1;
        }
        // Closing without acks returns every message, in order.
        channel.close(200, "counted".into()).await?;
    }
    Ok(ids)
}

/// Sends held messages back to the queue they came from, with their attempt count reset;
/// `only` selects one id, `None` every message held when the replay starts (a snapshot:
/// one that fails again while the replay runs is held anew, with a new id, and left for
/// the next action). Each is removed from the holding queue only after the broker
/// confirmed its copy.
pub async fn replay(
    connection: &Connection,
    topology: &Topology,
    holding: Holding,
    only: Option<&str>,
) -> Result<ReplayReport, ReplayError> {
    let mut wanted = match only {
        Some(id) => HashMap::from([(id.to_owned(), 1usize)]),
        None => snapshot(connection, topology, holding).await?,
    };
    let mut remaining: usize = wanted.values().sum();
    let publisher = Publisher::open(connection).await?;
    // Messages read and not replayed stay unacknowledged on this channel until it closes,
    // so no message is read twice by one replay.
    let channel = connection.create_channel().await?;
    let mut report = ReplayReport::default();
    for queue in holding.queues(topology) {
        while remaining > 0 {
            let Some(msg) = channel
                .basic_get(queue.clone().into(), BasicGetOptions { no_ack: false })
                .await?
            else {
                break;
            };
            let delivery = msg.delivery;
            let headers = delivery.properties.headers().as_ref();
            let id = header_text(headers, DEAD_ID).unwrap_or_default();
            let Some(count) = wanted.get_mut(&id).filter(|c| **c > 0) else {
                report.kept += 1;
                continue;
            };
            *count -= 1;
            remaining -= 1;
            let origin = header_text(headers, QUEUE).unwrap_or_default();
            if origin.is_empty() {
                report.kept += 1;
                continue;
            }
            let clean = replay_headers(headers);
            // Replayed work must not inherit the dead letter's expiry.
            let properties = super::publisher::hub_copy(&delivery.properties).with_headers(clean);
            publisher
                .publish("", &origin, &delivery.data, properties, true)
                .await?;
            delivery.acker.ack(BasicAckOptions::default()).await?;
            report.replayed += 1;
        }
    }
    channel.close(200, "replayed".into()).await?;
    Ok(report)
}

/// Removes every message of a holding queue; returns how many.
pub async fn purge(
    connection: &Connection,
    topology: &Topology,
    holding: Holding,
) -> Result<u32, lapin::Error> {
    let channel = connection.create_channel().await?;
    let mut n = 0;
    for queue in holding.queues(topology) {
        n += channel
            .queue_purge(queue.into(), QueuePurgeOptions::default())
            .await?;
    }
    channel.close(200, "purged".into()).await?;
    Ok(n)
}

/// Removes the one held message with this id; the others stay, in their order. Returns
/// whether it was there.
pub async fn purge_one(
    connection: &Connection,
    topology: &Topology,
    holding: Holding,
    id: &str,
) -> Result<bool, lapin::Error> {
    let channel = connection.create_channel().await?;
    let mut found = false;
    'queues: for queue in holding.queues(topology) {
        while let Some(msg) = channel
            .basic_get(queue.clone().into(), BasicGetOptions { no_ack: false })
            .await?
        {
            let headers = msg.delivery.properties.headers().as_ref();
            if header_text(headers, DEAD_ID).as_deref() == Some(id) {
                msg.delivery.acker.ack(BasicAckOptions::default()).await?;
                found = true;
                break 'queues;
            }
        }
    }
    // The others, read and not acknowledged, go back to their queues.
    channel.close(200, "purged".into()).await?;
    Ok(found)
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("broker error")]
    Broker(#[from] lapin::Error),
    #[error("could not republish")]
    Publish(#[from] PublishError),
}

#[cfg(test)]
mod tests {
    use lapin::types::{FieldTable, LongString, ShortString};
    use serde_json::json;

    use super::*;
    use crate::amqp::topology::{set_header_int, set_header_text};

    const FAMILY: [&str; 5] = [
        "RG 4411/2026",
        "Famiglia Xylofagorrea",
        "Via Quizzolvente 913",
        "+39 347 5550913",
        "xylofago@example.org",
    ];

    fn held_with(routing_key: &str, body: &[u8], properties: BasicProperties) -> HeldMessage {
        let mut headers = properties.headers().clone().unwrap_or_default();
        set_header_text(&mut headers, ROUTING_KEY, routing_key);
        set_header_text(&mut headers, DEAD_ID, "d-1");
        set_header_text(&mut headers, ERROR, "schema violation at /data/step: enum");
        set_header_int(&mut headers, ATTEMPT, 1);
        HeldMessage::from_delivery(
            Holding::Dead,
            body.to_vec(),
            properties.with_headers(headers),
        )
    }

    fn held(routing_key: &str, body: &Value) -> HeldMessage {
        let bytes = serde_json::to_vec(body).expect("json");
        held_with(routing_key, &bytes, BasicProperties::default())
    }

    fn shown(message: &HeldMessage) -> Value {
        serde_json::from_str(&message.masked_body()).expect("dlq show prints JSON for an object")
    }

    fn assert_no_family(text: &str) {
        for secret in FAMILY {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    fn step_event() -> Value {
        json!({
            "specversion": "1.0", "id": "ev-1", "source": "/tribunale-milano/unep",
            "type": "eviction.step.v1", "time": "2026-03-04T12:00:00+01:00",
            "data": {
                "procedure_id": FAMILY[0], "step": "accesso", "occurred_on": "2026-03-04",
                "next_access_at": "2026-03-10T09:30:00+01:00", "comune_istat": "015146",
                "info_material_delivered": true,
                "household": {"name": FAMILY[1], "address": FAMILY[2], "phone": FAMILY[3],
                              "email": FAMILY[4], "notes": "Al piano terra"}
            }
        })
    }

    #[test]
    fn an_eviction_step_shows_its_history_fields_and_masks_docket_number_and_household() {
        let message = held("eviction.step.v1", &step_event());

        let text = message.masked_body();
        let body = shown(&message);

        assert_no_family(&text);
        assert_eq!(body["id"], "ev-1");
        assert_eq!(body["source"], "/tribunale-milano/unep");
        assert_eq!(body["type"], "eviction.step.v1");
        assert_eq!(body["data"]["step"], "accesso");
        assert_eq!(body["data"]["occurred_on"], "2026-03-04");
        assert_eq!(body["data"]["next_access_at"], "2026-03-10T09:30:00+01:00");
        assert_eq!(body["data"]["comune_istat"], "015146");
        assert_eq!(body["data"]["info_material_delivered"], true);
        assert_eq!(body["data"]["procedure_id"], MASKED);
        assert_eq!(body["data"]["household"], MASKED);
    }

    #[test]
    fn a_consent_shows_the_decision_and_the_office_and_masks_contact_and_docket_number() {
        let event = json!({
            "specversion": "1.0", "id": "ev-2", "source": "/rho/sportello", "type": "eviction.consent.v1",
            "data": {"procedure_id": FAMILY[0], "comune_istat": "015182", "decision": "granted",
                     "recorded_by": "Sportello sociale di Rho", "recorded_at": "2026-03-04T10:00:00Z",
                     "contact": {"name": FAMILY[1], "phone": FAMILY[3]}}
        });
        let message = held("eviction.consent.v1", &event);

        let body = shown(&message);

        assert_no_family(&message.masked_body());
        assert_eq!(body["data"]["decision"], "granted");
        assert_eq!(body["data"]["recorded_by"], "Sportello sociale di Rho");
        assert_eq!(body["data"]["contact"], MASKED);
        assert_eq!(body["data"]["procedure_id"], MASKED);
    }

    #[test]
    fn an_allow_listed_member_whose_value_is_off_the_schema_is_masked() {
        let mut event = step_event();
        event["data"]["step"] = json!(FAMILY[1]);
        event["data"]["comune_istat"] = json!(FAMILY[3]);
        event["data"]["occurred_on"] = json!({"name": FAMILY[1]});
        event["data"]["info_material_delivered"] = json!(FAMILY[2]);
        event["time"] = json!(FAMILY[4]);
        let message = held("eviction.step.v1", &event);

        let body = shown(&message);

        assert_no_family(&message.masked_body());
        assert_eq!(body["data"]["step"], "***masked: not as the schema says***");
        assert_eq!(body["time"], "***masked: not as the schema says***");
    }

    #[test]
    fn a_body_that_is_not_json_is_never_printed() {
        let text = format!("procedure {} household {}", FAMILY[0], FAMILY[1]);
        let message = held_with(
            "eviction.step.v1",
            text.as_bytes(),
            BasicProperties::default(),
        );

        let body = message.masked_body();

        assert_no_family(&body);
        assert_eq!(body, format!("<{} bytes, not JSON: not shown>", text.len()));
    }

    #[test]
    fn a_body_over_the_display_limit_is_neither_parsed_nor_shown() {
        let mut event = step_event();
        event["data"]["notes"] = json!("x".repeat(DISPLAY_PARSE_MAX));
        let message = held("eviction.step.v1", &event);

        assert_eq!(
            message.event_type, None,
            "not parsed for the list's columns"
        );
        assert!(
            message.masked_body().contains("not shown"),
            "{}",
            message.masked_body()
        );
        let summary = held("eviction.step.v1", &step_event()).summary();
        assert_eq!(summary.event_type.as_deref(), Some("eviction.step.v1"));
        assert!(summary.masked_body().contains("not loaded"));
    }

    #[test]
    fn json_that_is_not_an_object_is_never_printed() {
        for value in [
            json!(FAMILY),
            json!(FAMILY[1]),
            json!([{"household": FAMILY[2]}]),
        ] {
            let message = held("housing.unit.v1", &value);

            let body = message.masked_body();

            assert_no_family(&body);
            assert!(body.contains("not shown"), "{body}");
        }
    }

    #[test]
    fn an_unknown_type_shows_the_envelope_and_masks_every_data_member() {
        let event = json!({"specversion": "1.0", "id": "ev-3", "source": "s", "type": "eviction.step.v9",
                           "data": {"procedure_id": FAMILY[0], "step": "accesso", "who": FAMILY[1]}});
        let message = held("eviction.step.v9", &event);

        let body = shown(&message);

        assert_no_family(&message.masked_body());
        assert_eq!(body["type"], "eviction.step.v9");
        assert_eq!(
            body["data"]["step"], MASKED,
            "no allow-list for an unknown type"
        );
        assert_eq!(body["data"]["who"], MASKED);
    }

    #[test]
    fn a_type_that_disagrees_with_the_routing_key_gets_no_data_allow_list() {
        let event = json!({"specversion": "1.0", "id": "ev-4", "source": "s", "type": "housing.unit.v1",
                           "data": {"unit_id": "U-1", "address": FAMILY[2]}});
        let message = held("eviction.step.v1", &event);

        let body = shown(&message);

        assert_no_family(&message.masked_body());
        assert_eq!(body["data"]["address"], MASKED);
        assert_eq!(body["data"]["unit_id"], MASKED);
    }

    #[test]
    fn housing_notes_show_as_their_length_and_the_other_fields_as_they_are() {
        let event = json!({"specversion": "1.0", "id": "ev-5", "source": "/abbiategrasso", "type": "housing.unit.v1",
                           "data": {"unit_id": "ABB-7", "action": "offered", "comune_istat": "015002",
                                    "address": "Via Novara 21", "places": 6, "reception_kind": "CAS",
                                    "building_type": "casa", "owner_declaration": true,
                                    "notes": format!("Chiavi da {}", FAMILY[1])}});
        let message = held("housing.unit.v1", &event);

        let body = shown(&message);

        assert_no_family(&message.masked_body());
        assert_eq!(body["data"]["notes"], "***masked: 31 characters***");
        assert_eq!(body["data"]["address"], "Via Novara 21");
        assert_eq!(body["data"]["places"], 6);
        assert_eq!(body["data"]["owner_declaration"], true);
    }

    #[test]
    fn a_referent_scope_shows_its_known_members_only() {
        let event = json!({"specversion": "1.0", "id": "ev-6", "source": "s", "type": "registry.referent.v1",
                           "data": {"referent_id": "ss-rho", "action": "upsert", "role": "servizi_sociali",
                                    "scope": {"ambito": "Rho", "extra": FAMILY[1]}}});
        let message = held("registry.referent.v1", &event);

        let body = shown(&message);

        assert_no_family(&message.masked_body());
        assert_eq!(body["data"]["scope"]["ambito"], "Rho");
        assert_eq!(body["data"]["scope"]["extra"], MASKED);
    }

    #[test]
    fn extension_members_are_masked_and_names_that_are_not_identifiers_only_counted() {
        let mut event = step_event();
        event["familyname"] = json!(FAMILY[1]);
        event["dataschema"] = json!(FAMILY[4]);
        event[FAMILY[1]] = json!(1);
        event["data"][FAMILY[2]] = json!(2);
        let message = held("eviction.step.v1", &event);

        let body = shown(&message);

        assert_no_family(&message.masked_body());
        assert_eq!(body["familyname"], MASKED);
        assert_eq!(body["dataschema"], MASKED);
        assert_eq!(body["***"], "***masked: 1 members with other names***");
        assert_eq!(
            body["data"]["***"],
            "***masked: 1 members with other names***"
        );
    }

    #[test]
    fn headers_show_the_hubs_own_and_the_properties_without_free_text() {
        let mut headers = FieldTable::default();
        headers.insert(
            ShortString::from("x-family"),
            AMQPValue::LongString(LongString::from(FAMILY[1])),
        );
        headers.insert(ShortString::from(FAMILY[2]), AMQPValue::Boolean(true));
        let properties = BasicProperties::default()
            .with_headers(headers)
            .with_content_type("application/cloudevents+json".into())
            .with_delivery_mode(2)
            .with_user_id("unep_milano".into())
            .with_message_id(FAMILY[0].into())
            .with_correlation_id(FAMILY[3].into())
            .with_app_id(FAMILY[4].into());
        let message = held_with("eviction.step.v1", b"{}", properties);

        let headers = message.headers();

        let text = format!("{headers:?}");
        assert_no_family(&text);
        let value = |k: &str| {
            headers
                .iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{k} missing from {headers:?}"))
        };
        assert_eq!(value(ERROR), "schema violation at /data/step: enum");
        assert_eq!(value(ROUTING_KEY), "eviction.step.v1");
        assert_eq!(value(ATTEMPT), "1");
        assert_eq!(value("content-type"), "application/cloudevents+json");
        assert_eq!(value("user-id"), "unep_milano");
        assert_eq!(value("message-id"), MASKED);
        assert_eq!(value("other headers"), "2, names and values not shown");
    }

    #[test]
    fn control_characters_in_header_values_do_not_reach_the_terminal() {
        let mut headers = FieldTable::default();
        set_header_text(&mut headers, ERROR, "bad \u{1b}[2J input");
        let message = HeldMessage::from_delivery(
            Holding::Dead,
            Vec::new(),
            BasicProperties::default().with_headers(headers),
        );

        let shown = message.headers();

        assert!(
            shown.iter().all(|(_, v)| !v.contains('\u{1b}')),
            "{shown:?}"
        );
    }

    #[test]
    fn the_debug_form_of_a_held_message_shows_neither_body_nor_headers() {
        let bytes = serde_json::to_vec(&step_event()).expect("json");
        let mut headers = FieldTable::default();
        set_header_text(&mut headers, "x-family", FAMILY[1]);
        let message = HeldMessage::from_delivery(
            Holding::Dead,
            bytes.clone(),
            BasicProperties::default().with_headers(headers),
        );

        let debug = format!("{message:?} {message:#?}");

        assert_no_family(&debug);
        assert!(debug.contains(&bytes.len().to_string()), "{debug}");
    }

    #[test]
    fn list_columns_come_from_the_envelope_only_when_they_have_its_shape() {
        let mut event = step_event();
        event["id"] = json!("x".repeat(257));
        event["source"] = json!(format!("/unep\u{1b}]0;{}", FAMILY[1]));
        let message = held("eviction.step.v1", &event);

        assert_eq!(message.event_id, None);
        assert_eq!(message.source, None);
        assert_eq!(message.event_type.as_deref(), Some("eviction.step.v1"));
    }

    /// The members of `schema`'s `properties`.
    fn properties_of(schema: &str) -> Vec<String> {
        let schema: Value = serde_json::from_str(schema).expect("schema JSON");
        schema["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn every_shown_member_is_a_member_of_its_schema_and_no_personal_one_is_shown() {
        let schemas = [
            (
                ENVELOPE,
                include_str!("../../../../schemas/cloudevent.v1.json"),
            ),
            (
                EVICTION_STEP,
                include_str!("../../../../schemas/eviction.step.v1.json"),
            ),
            (
                EVICTION_CONSENT,
                include_str!("../../../../schemas/eviction.consent.v1.json"),
            ),
            (
                HOUSING_UNIT,
                include_str!("../../../../schemas/housing.unit.v1.json"),
            ),
            (
                RECEPTION_OCCUPANCY,
                include_str!("../../../../schemas/reception.occupancy.v1.json"),
            ),
            (
                REGISTRY_REFERENT,
                include_str!("../../../../schemas/registry.referent.v1.json"),
            ),
        ];
        for (rules, schema) in schemas {
            let known = properties_of(schema);
            for (name, _) in rules {
                assert!(
                    known.iter().any(|k| k == name),
                    "{name} is not in its schema"
                );
            }
        }
        for rules in [EVICTION_STEP, EVICTION_CONSENT] {
            for personal in ["procedure_id", "household", "contact"] {
                assert!(
                    rules.iter().all(|(name, _)| *name != personal),
                    "{personal} shown"
                );
            }
        }
    }
}
