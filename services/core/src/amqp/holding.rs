//! Moving a message to `{prefix}.dead` or `{prefix}.parked` with the reason, and the
//! hub's own `x-raccordo-*` headers that copies carry across retries and holdings
//! (CONTRACT F1, F2). How long a held message may stay is its queue's [`HoldingPolicy`].

use lapin::types::FieldTable;
use serde::Serialize;

use super::handler::Message;
use super::policy::HoldingPolicy;
use super::publisher::{PublishError, Publisher, hub_copy};
use super::topology::{Topology, set_header_int, set_header_text};

/// The readable reason.
pub(crate) const ERROR: &str = "x-raccordo-error";
/// The queue the message was taken from; replay sends it back there.
pub(crate) const QUEUE: &str = "x-raccordo-queue";
/// The routing key it was published with.
pub(crate) const ROUTING_KEY: &str = "x-raccordo-routing-key";
/// The exchange it was published to.
pub(crate) const EXCHANGE: &str = "x-raccordo-exchange";
/// The id operators use with `dlq show` and `dlq replay`.
pub(crate) const DEAD_ID: &str = "x-raccordo-dead-id";
/// When it was held, RFC 3339.
pub(crate) const FAILED_AT: &str = "x-raccordo-failed-at";
/// Attempts made so far.
pub(crate) const ATTEMPT: &str = "x-raccordo-attempt";
/// The broker user that published the original (its validated `user_id`): the hub
/// republishes copies as itself, and RabbitMQ would refuse another user's `user_id`.
pub(crate) const USER: &str = "x-raccordo-user";

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

    /// Every queue holding such messages: parked work that may hold personal data waits
    /// in a queue of its own, where every message has the same time to live.
    pub fn queues(self, topology: &Topology) -> Vec<String> {
        match self {
            Holding::Dead => vec![topology.dead_queue(), topology.dead_personal_queue()],
            Holding::Parked => vec![topology.parked_queue(), topology.parked_personal_queue()],
        }
    }
}

/// Publishes a copy of `message` to a holding queue, with the reason, and waits for the
/// confirm. A message its queue's `policy` says may hold personal data expires (CONTRACT
/// C7): a dead one in `{prefix}.dead.personal`, a parked one in `{prefix}.parked.personal`,
/// where all messages have the same time to live and so expire in their order — none waits
/// behind a message that never expires.
pub(crate) async fn hold(
    publisher: &Publisher,
    topology: &Topology,
    holding: Holding,
    origin_queue: &str,
    message: &Message,
    reason: &str,
    policy: &HoldingPolicy,
) -> Result<(), PublishError> {
    let expiry = policy.expiry_of(&message.routing_key, &message.body);
    let queue = match (holding, expiry) {
        (Holding::Dead, Some(_)) => topology.dead_personal_queue(),
        (Holding::Parked, Some(_)) => topology.parked_personal_queue(),
        (_, None) => holding.queue(topology),
    };
    let mut headers = message.properties.headers().clone().unwrap_or_default();
    if let Some(user) = &message.publisher {
        set_header_text(&mut headers, USER, user);
    }
    set_header_text(&mut headers, ERROR, reason);
    set_header_text(&mut headers, QUEUE, origin_queue);
    set_header_text(&mut headers, ROUTING_KEY, &message.routing_key);
    set_header_text(&mut headers, EXCHANGE, &topology.inbound_exchange());
    set_header_text(&mut headers, DEAD_ID, &uuid::Uuid::new_v4().to_string());
    set_header_text(&mut headers, FAILED_AT, &crate::clock::now_rfc3339());
    set_header_int(&mut headers, ATTEMPT, i64::from(message.attempt));
    let mut properties = hub_copy(&message.properties).with_headers(headers);
    if let Some(ttl) = expiry {
        properties = properties.with_expiration(ttl.as_millis().to_string().into());
    }
    publisher
        .publish("", &queue, &message.body, properties, true)
        .await
}

/// The headers a replayed copy keeps: the publisher's own, the original routing key (the
/// queue may be reached only via the default exchange) and the publisher the broker
/// vouched for; the attempt count starts again.
pub(crate) fn replay_headers(headers: Option<&FieldTable>) -> FieldTable {
    let mut clean = FieldTable::default();
    if let Some(h) = headers {
        for (k, v) in h {
            let key = k.as_str();
            if key == ROUTING_KEY || key == USER || !key.starts_with("x-raccordo-") {
                clean.insert(k.clone(), v.clone());
            }
        }
    }
    set_header_int(&mut clean, ATTEMPT, 0);
    clean
}
