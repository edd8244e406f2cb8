//! `{prefix}.dead` and `{prefix}.parked`: what they hold, and the operator's tools to
//! list, show, replay and purge them (CONTRACT F1, F2, C7).
//!
//! Held messages keep their original body and headers; the hub adds the `x-raccordo-*`
//! headers below. Browsing uses `basic.get` and closes the channel without acking, so
//! every message returns to the queue in its order.

use std::time::Duration;

use lapin::options::{BasicAckOptions, BasicGetOptions, QueuePurgeOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use serde::Serialize;
use serde_json::Value;

use super::consumer::Message;
use super::publisher::{PublishError, Publisher};
use super::topology::{Topology, header_int, header_text, set_header_int, set_header_text};

/// The readable reason.
pub const ERROR: &str = "x-raccordo-error";
/// The queue the message was taken from; replay sends it back there.
pub const QUEUE: &str = "x-raccordo-queue";
/// The routing key it was published with.
pub const ROUTING_KEY: &str = "x-raccordo-routing-key";
/// The exchange it was published to.
pub const EXCHANGE: &str = "x-raccordo-exchange";
/// The id operators use with `dlq show` and `dlq replay`.
pub const DEAD_ID: &str = "x-raccordo-dead-id";
/// When it was held, RFC 3339.
pub const FAILED_AT: &str = "x-raccordo-failed-at";
/// Attempts made so far.
pub const ATTEMPT: &str = "x-raccordo-attempt";

/// Which holding queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Holding {
    /// Input that can never be processed.
    Dead,
    /// Work that kept failing.
    Parked,
}

impl Holding {
    /// The queue's name under `topology`.
    pub fn queue(self, topology: &Topology) -> String {
        match self {
            Holding::Dead => topology.dead_queue(),
            Holding::Parked => topology.parked_queue(),
        }
    }
}

/// Publishes a copy of `message` to a holding queue, with the reason, and waits for the
/// confirm. `ttl` sets a per-message expiry (eviction events: CONTRACT C7).
pub async fn hold(
    publisher: &Publisher,
    topology: &Topology,
    holding: Holding,
    origin_queue: &str,
    message: &Message,
    reason: &str,
    ttl: Option<Duration>,
) -> Result<(), PublishError> {
    let mut headers = message.properties.headers().clone().unwrap_or_default();
    set_header_text(&mut headers, ERROR, reason);
    set_header_text(&mut headers, QUEUE, origin_queue);
    set_header_text(&mut headers, ROUTING_KEY, &message.routing_key);
    set_header_text(&mut headers, EXCHANGE, &topology.inbound_exchange());
    set_header_text(&mut headers, DEAD_ID, &uuid::Uuid::new_v4().to_string());
    set_header_text(&mut headers, FAILED_AT, &crate::clock::now_rfc3339());
    set_header_int(&mut headers, ATTEMPT, i64::from(message.attempt));
    let mut properties = message.properties.clone().with_headers(headers);
    if let Some(ttl) = ttl {
        properties = properties.with_expiration(ttl.as_millis().to_string().into());
    }
    publisher
        .publish(
            "",
            &holding.queue(topology),
            &message.body,
            properties,
            true,
        )
        .await
}

/// Whether a message might carry personal data of a family: an eviction routing key or
/// type, or a `household`/`contact` member anywhere. Errs on the side of expiring.
pub fn may_hold_personal_data(message: &Message) -> bool {
    let contains = |needle: &[u8]| message.body.windows(needle.len()).any(|w| w == needle);
    message.routing_key.starts_with("eviction")
        || contains(b"eviction.")
        || contains(b"\"household\"")
        || contains(b"\"contact\"")
}

/// A held message as operators see it.
#[derive(Debug, Clone, Serialize)]
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
    /// The CloudEvent `type`, when the body is one.
    pub event_type: Option<String>,
    /// The CloudEvent `source`.
    pub source: Option<String>,
    /// The CloudEvent `id`.
    pub event_id: Option<String>,
    #[serde(skip)]
    body: Vec<u8>,
    #[serde(skip)]
    properties: BasicProperties,
}

impl HeldMessage {
    fn from_delivery(holding: Holding, body: Vec<u8>, properties: BasicProperties) -> Self {
        let headers = properties.headers().as_ref();
        let text = |k| header_text(headers, k).unwrap_or_default();
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        let field = |k: &str| {
            json.as_ref()
                .and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
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
            event_type: field("type"),
            source: field("source"),
            event_id: field("id"),
            body,
            properties,
        }
    }

    /// The body for display, with personal data masked: every `household` and `contact`
    /// member is replaced (CONTRACT C7). A body that is not JSON is shown as a size only
    /// when it is not valid UTF-8.
    pub fn masked_body(&self) -> String {
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(mut value) => {
                mask_personal(&mut value);
                serde_json::to_string_pretty(&value).unwrap_or_default()
            }
            Err(_) => match std::str::from_utf8(&self.body) {
                Ok(text) => text.to_owned(),
                Err(_) => format!("<{} bytes, not UTF-8>", self.body.len()),
            },
        }
    }

    /// The original headers, for display (x-raccordo-* included).
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(h) = self.properties.headers() {
            for (k, v) in h {
                let value = match v {
                    lapin::types::AMQPValue::LongString(s) => {
                        String::from_utf8_lossy(s.as_bytes()).into_owned()
                    }
                    other => format!("{other:?}"),
                };
                out.push((k.as_str().to_owned(), value));
            }
        }
        out
    }
}

/// Replaces `household` and `contact` members anywhere in `value`.
pub fn mask_personal(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == "household" || k == "contact" {
                    *v = Value::String("***masked: personal data***".into());
                } else {
                    mask_personal(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_personal),
        _ => {}
    }
}

/// Reads every message of a holding queue without removing any.
pub async fn browse(
    connection: &Connection,
    topology: &Topology,
    holding: Holding,
) -> Result<Vec<HeldMessage>, lapin::Error> {
    let channel = connection.create_channel().await?;
    let queue = holding.queue(topology);
    let mut held = Vec::new();
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
    // Closing without acks returns every message to the queue, in order.
    channel.close(200, "browsed".into()).await?;
    Ok(held)
}

/// What a replay did.
#[derive(Debug, Default, Serialize)]
pub struct ReplayReport {
    /// Messages sent back to their queue.
    pub replayed: usize,
    /// Messages left where they were.
    pub kept: usize,
}

/// Sends held messages back to the queue they came from, with their attempt count reset;
/// `only` selects one id. Each is removed from the holding queue only after the broker
/// confirmed its copy.
pub async fn replay(
    connection: &Connection,
    topology: &Topology,
    holding: Holding,
    only: Option<&str>,
) -> Result<ReplayReport, ReplayError> {
    let publisher = Publisher::open(connection).await?;
    let channel = connection.create_channel().await?;
    let queue = holding.queue(topology);
    let mut report = ReplayReport::default();
    while let Some(msg) = channel
        .basic_get(queue.clone().into(), BasicGetOptions { no_ack: false })
        .await?
    {
        let delivery = msg.delivery;
        let headers = delivery.properties.headers().as_ref();
        let id = header_text(headers, DEAD_ID).unwrap_or_default();
        if only.is_some_and(|o| o != id) {
            report.kept += 1;
            continue;
        }
        let origin = header_text(headers, QUEUE).unwrap_or_default();
        if origin.is_empty() {
            report.kept += 1;
            continue;
        }
        let mut clean = FieldTable::default();
        if let Some(h) = headers {
            for (k, v) in h {
                let key = k.as_str();
                // Keep the original routing key: the queue may be reached only via default exchange.
                if key == ROUTING_KEY || !key.starts_with("x-raccordo-") {
                    clean.insert(k.clone(), v.clone());
                }
            }
        }
        set_header_int(&mut clean, ATTEMPT, 0);
        // Replayed work must not inherit the dead letter's expiry.
        let properties = without_expiration(&delivery.properties).with_headers(clean);
        publisher
            .publish("", &origin, &delivery.data, properties, true)
            .await?;
        delivery.acker.ack(BasicAckOptions::default()).await?;
        report.replayed += 1;
    }
    channel.close(200, "replayed".into()).await?;
    Ok(report)
}

/// The same properties, headers and expiration left out.
fn without_expiration(p: &BasicProperties) -> BasicProperties {
    let mut out = BasicProperties::default();
    if let Some(v) = p.content_type() {
        out = out.with_content_type(v.clone());
    }
    if let Some(v) = p.content_encoding() {
        out = out.with_content_encoding(v.clone());
    }
    if let Some(v) = p.message_id() {
        out = out.with_message_id(v.clone());
    }
    if let Some(v) = p.timestamp() {
        out = out.with_timestamp(*v);
    }
    if let Some(v) = p.app_id() {
        out = out.with_app_id(v.clone());
    }
    if let Some(v) = p.correlation_id() {
        out = out.with_correlation_id(v.clone());
    }
    if let Some(v) = p.kind() {
        out = out.with_type(v.clone());
    }
    out
}

/// Removes every message of a holding queue; returns how many.
pub async fn purge(
    connection: &Connection,
    topology: &Topology,
    holding: Holding,
) -> Result<u32, lapin::Error> {
    let channel = connection.create_channel().await?;
    let n = channel
        .queue_purge(holding.queue(topology).into(), QueuePurgeOptions::default())
        .await?;
    channel.close(200, "purged".into()).await?;
    Ok(n)
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
    use super::*;
    use serde_json::json;

    #[test]
    fn masking_replaces_household_and_contact_at_any_depth() {
        let mut v = json!({"data": {"household": {"name": "Rossi"}, "contact": {"phone": "1"},
                             "list": [{"household": "x"}], "comune_istat": "015146"}});
        mask_personal(&mut v);
        let text = v.to_string();
        assert!(!text.contains("Rossi"));
        assert!(!text.contains("\"phone\""));
        assert!(text.contains("015146"));
        assert_eq!(text.matches("masked").count(), 3);
    }
}
