//! The broker topology (CONTRACT §2), declared in this one place, idempotently, at start.
//!
//! ```text
//! legacy ─▶ {p}.inbound (topic, alternate-exchange {p}.unrouted)
//!              ├─ eviction.step.v1, .consent.v1 ─▶ {p}.eviction  (quorum)
//!              ├─ housing.unit.v1 ───────────────▶ {p}.housing   (quorum)
//!              ├─ registry.referent.v1 ──────────▶ {p}.registry  (quorum)
//!              └─ anything else ─▶ {p}.unrouted (fanout) ─▶ {p}.unrouted (quorum) ─▶ {p}.dead
//! hub ─▶ {p}.events (topic): for other systems to bind; the mailer claims its work from
//!        the database, and {p}.mailer (quorum) receives only replayed held deliveries
//! {p}.<worker>.retry.<ms> (quorum, TTL) ─ dead-letters back ─▶ {p}.<worker>
//! {p}.dead, {p}.parked (classic: browsed with get/requeue, which must not count deliveries)
//! ```

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, ExchangeKind};

use crate::settings::{QueueType, RetrySettings, Settings};

/// A worker's queue and the routing keys bound to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkQueue {
    /// Eviction steps and consent decisions (`eviction.step.v1`, `eviction.consent.v1`).
    Eviction,
    /// Housing units (`housing.unit.v1`).
    Housing,
    /// Referents registry (`registry.referent.v1`).
    Registry,
    /// Reception occupancy (`reception.occupancy.v1`).
    Quota,
    /// Held deliveries sent back by `raccordo dlq replay`: the mailer takes its work from
    /// the `deliveries` table, not from the broker.
    Mailer,
    /// Inbound events no worker is bound to (via the alternate exchange).
    Unrouted,
    /// The Tavolo provinciale asilo's desks (`asylum.*.v1`).
    Asylum,
}

impl WorkQueue {
    /// Every work queue the hub declares.
    pub const ALL: [WorkQueue; 7] = [
        WorkQueue::Eviction,
        WorkQueue::Housing,
        WorkQueue::Registry,
        WorkQueue::Quota,
        WorkQueue::Mailer,
        WorkQueue::Unrouted,
        WorkQueue::Asylum,
    ];

    /// The short name: queue suffix, metric label, log field.
    pub fn name(self) -> &'static str {
        match self {
            WorkQueue::Eviction => "eviction",
            WorkQueue::Housing => "housing",
            WorkQueue::Registry => "registry",
            WorkQueue::Quota => "quota",
            WorkQueue::Mailer => "mailer",
            WorkQueue::Unrouted => "unrouted",
            WorkQueue::Asylum => "asylum",
        }
    }

    /// Routing keys bound from the inbound exchange.
    pub fn bindings(self) -> &'static [&'static str] {
        match self {
            WorkQueue::Eviction => &["eviction.step.v1", "eviction.consent.v1"],
            WorkQueue::Housing => &["housing.unit.v1"],
            WorkQueue::Registry => &["registry.referent.v1"],
            WorkQueue::Quota => &["reception.occupancy.v1"],
            WorkQueue::Asylum => &[
                "asylum.vulnerability.v1",
                "asylum.intervention.v1",
                "asylum.domicile.v1",
                "asylum.placement.v1",
            ],
            WorkQueue::Mailer | WorkQueue::Unrouted => &[],
        }
    }

    /// Whether the queue holds inbound events (as opposed to the hub's notifications).
    pub fn is_inbound(self) -> bool {
        !matches!(self, WorkQueue::Mailer)
    }
}

/// A durable exchange the hub declares.
#[derive(Debug, Clone)]
pub struct ExchangeSpec {
    /// Its name.
    pub name: String,
    /// direct, fanout, topic…
    pub kind: ExchangeKind,
    /// Text arguments.
    pub arguments: Vec<(String, String)>,
}

/// The names of everything under one prefix.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
    retry_delays: Vec<Duration>,
    queue_type: QueueType,
    /// The time to live of every message in the personal holding queues (C7).
    personal_ttl: Duration,
}

/// `eviction.dead_letter_ttl_days`'s default, for a topology made without settings.
const DEFAULT_PERSONAL_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

impl Topology {
    /// The topology for a prefix and a retry policy.
    pub fn new(prefix: &str, retry: &RetrySettings) -> Self {
        Self {
            prefix: prefix.to_owned(),
            retry_delays: retry.delays(),
            queue_type: QueueType::Quorum,
            personal_ttl: DEFAULT_PERSONAL_TTL,
        }
    }

    /// The topology the settings describe (prefix, retry delays, queue type).
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            queue_type: settings.amqp.queue_type,
            personal_ttl: settings.eviction.dead_letter_ttl(),
            ..Self::new(&settings.amqp.prefix, &settings.retry)
        }
    }

    /// The configured prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Where legacy systems publish.
    pub fn inbound_exchange(&self) -> String {
        format!("{}.inbound", self.prefix)
    }

    /// Where the hub publishes notifications.
    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// The alternate exchange of inbound: catches events no worker is bound to.
    pub fn unrouted_exchange(&self) -> String {
        format!("{}.unrouted", self.prefix)
    }

    /// Input that can never be processed.
    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// Work that kept failing after all retries.
    pub fn parked_queue(&self) -> String {
        format!("{}.parked", self.prefix)
    }

    /// Parked work that may hold personal data of a family: every message in it expires
    /// after `eviction.dead_letter_ttl_days`, by the queue's own TTL (CONTRACT C7), also
    /// what the broker itself dead-letters there (a quorum queue's delivery limit).
    pub fn parked_personal_queue(&self) -> String {
        format!("{}.parked.personal", self.prefix)
    }

    /// Input that can never be processed and may hold personal data: expires as
    /// [`Topology::parked_personal_queue`] does, never behind a message that does not.
    pub fn dead_personal_queue(&self) -> String {
        format!("{}.dead.personal", self.prefix)
    }

    /// The holding queues whose every message expires (C7).
    pub fn personal_queues(&self) -> [String; 2] {
        [self.dead_personal_queue(), self.parked_personal_queue()]
    }

    /// How long a message stays in a personal holding queue.
    pub fn personal_ttl(&self) -> Duration {
        self.personal_ttl
    }

    /// A worker's queue.
    pub fn queue(&self, q: WorkQueue) -> String {
        format!("{}.{}", self.prefix, q.name())
    }

    /// The retry queue that holds a worker's messages for `delay`.
    pub fn retry_queue(&self, q: WorkQueue, delay: Duration) -> String {
        format!("{}.{}.retry.{}", self.prefix, q.name(), delay.as_millis())
    }

    /// The distinct retry delays, one queue each.
    pub fn retry_delays(&self) -> &[Duration] {
        &self.retry_delays
    }

    /// Every queue name, for status and tests.
    pub fn all_queues(&self) -> Vec<String> {
        let mut names: Vec<String> = WorkQueue::ALL.iter().map(|q| self.queue(*q)).collect();
        for q in WorkQueue::ALL {
            for d in &self.retry_delays {
                names.push(self.retry_queue(q, *d));
            }
        }
        names.push(self.dead_queue());
        names.push(self.parked_queue());
        names.push(self.parked_personal_queue());
        names.push(self.dead_personal_queue());
        names
    }

    /// Declares exchanges, queues and bindings. Safe to call from every process at start:
    /// RabbitMQ accepts a redeclaration with identical arguments.
    pub async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        self.declare_exchanges(channel).await?;
        self.declare_holding(channel).await?;
        self.declare_work(channel).await
    }

    /// [`Topology::declare`] for the workers and the relay, which must keep running while a
    /// node of a cluster is down. The holding queues are classic (operators browse them), so
    /// each lives on one node; while that node is down RabbitMQ refuses to redeclare it
    /// (404, "home node … is down or inaccessible"). That one is skipped with a warning:
    /// the work queues are quorum queues, served by the nodes left, and a message to be
    /// held there meanwhile is not confirmed, so it stays in its work queue and comes again.
    /// Each holding queue is declared on a channel of its own (a refusal closes it).
    pub async fn declare_for_workers(
        &self,
        connection: &Connection,
        channel: &Channel,
    ) -> Result<(), lapin::Error> {
        self.declare_exchanges(channel).await?;
        self.declare_work(channel).await?;
        for (name, ttl) in self.holding_specs() {
            let own = connection.create_channel().await?;
            let declared = own
                .queue_declare(
                    name.as_str().into(),
                    QueueDeclareOptions::durable(),
                    self.holding_arguments(ttl),
                )
                .await;
            match declared {
                Ok(_) => {
                    let _ = own.close(200, "declared".into()).await;
                }
                Err(error) if is_node_down(&error) => {
                    tracing::warn!(queue = %name, error = %error, "A holding queue's node is down; working without it until it is back.");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    async fn declare_exchanges(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        for exchange in self.exchanges() {
            let mut args = FieldTable::default();
            for (k, v) in &exchange.arguments {
                args.insert(k.as_str().into(), text(v));
            }
            channel
                .exchange_declare(exchange.name.into(), exchange.kind, durable, args)
                .await?;
        }
        Ok(())
    }

    /// The work and retry queues and their bindings.
    async fn declare_work(&self, channel: &Channel) -> Result<(), lapin::Error> {
        for q in WorkQueue::ALL {
            let name = self.queue(q);
            channel
                .queue_declare(
                    name.clone().into(),
                    QueueDeclareOptions::durable(),
                    self.work_arguments(q),
                )
                .await?;
            let exchange = self.inbound_exchange();
            for key in q.bindings() {
                channel
                    .queue_bind(
                        name.clone().into(),
                        exchange.clone().into(),
                        (*key).into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
            }
            for delay in &self.retry_delays {
                channel
                    .queue_declare(
                        self.retry_queue(q, *delay).into(),
                        QueueDeclareOptions::durable(),
                        self.retry_arguments(q, *delay),
                    )
                    .await?;
            }
        }
        // Before version 1.2 every notification reached the mailer through this binding.
        channel
            .queue_unbind(
                self.queue(WorkQueue::Mailer).into(),
                self.events_exchange().into(),
                "#".into(),
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                self.queue(WorkQueue::Unrouted).into(),
                self.unrouted_exchange().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(())
    }

    /// The holding queues: classic, the personal ones with their TTL (C7).
    async fn declare_holding(&self, channel: &Channel) -> Result<(), lapin::Error> {
        for (name, ttl) in self.holding_specs() {
            channel
                .queue_declare(
                    name.into(),
                    QueueDeclareOptions::durable(),
                    self.holding_arguments(ttl),
                )
                .await?;
        }
        Ok(())
    }

    /// Each holding queue and its message TTL: none for the plain ones, the personal TTL
    /// for the personal ones (C7).
    fn holding_specs(&self) -> Vec<(String, Option<Duration>)> {
        let plain = [self.dead_queue(), self.parked_queue()];
        let ttl = Some(self.personal_ttl);
        plain
            .into_iter()
            .map(|n| (n, None))
            .chain(self.personal_queues().into_iter().map(|n| (n, ttl)))
            .collect()
    }

    /// The exchanges, in declaration order (all durable). Also what
    /// `docker/rabbitmq/definitions.json` must pre-declare, identically.
    pub fn exchanges(&self) -> Vec<ExchangeSpec> {
        vec![
            // First: inbound names it as its alternate exchange.
            ExchangeSpec {
                name: self.unrouted_exchange(),
                kind: ExchangeKind::Fanout,
                arguments: vec![],
            },
            ExchangeSpec {
                name: self.inbound_exchange(),
                kind: ExchangeKind::Topic,
                // Events no queue is bound to must reach the dead queue, not vanish (F1).
                arguments: vec![("alternate-exchange".into(), self.unrouted_exchange())],
            },
            ExchangeSpec {
                name: self.events_exchange(),
                kind: ExchangeKind::Topic,
                arguments: vec![],
            },
        ]
    }

    fn work_arguments(&self, q: WorkQueue) -> FieldTable {
        let mut args = FieldTable::default();
        // Quorum queues are replicated and survive a node's loss (CONTRACT §2).
        args.insert("x-queue-type".into(), text(self.queue_type.as_str()));
        if self.queue_type == QueueType::Quorum {
            // A message that crashes its consumer again and again is parked, not looped forever.
            args.insert("x-delivery-limit".into(), AMQPValue::LongInt(50));
        }
        args.insert("x-dead-letter-exchange".into(), text(""));
        // Eviction and asylum events may hold personal data: parked apart, where they
        // expire (C7).
        let parked = if matches!(q, WorkQueue::Eviction | WorkQueue::Asylum) {
            self.parked_personal_queue()
        } else {
            self.parked_queue()
        };
        args.insert("x-dead-letter-routing-key".into(), text(&parked));
        args
    }

    fn retry_arguments(&self, q: WorkQueue, delay: Duration) -> FieldTable {
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), text(self.queue_type.as_str()));
        // One delay per queue: per-message TTLs in one queue would wait behind each other.
        let ttl = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
        // Expired messages go back to the work queue through the default exchange.
        args.insert("x-dead-letter-exchange".into(), text(""));
        args.insert("x-dead-letter-routing-key".into(), text(&self.queue(q)));
        args
    }

    fn holding_arguments(&self, ttl: Option<Duration>) -> FieldTable {
        let mut args = FieldTable::default();
        // Classic: operators browse these with get + requeue, which on quorum queues
        // would count as delivery attempts and eventually drop the message.
        args.insert("x-queue-type".into(), text("classic"));
        if let Some(ttl) = ttl {
            let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
            args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ms));
        }
        args
    }

    /// Gives the personal holding queues the TTL of this topology where a queue of that
    /// name exists with another (one declared before 1.2 had none, or the setting changed):
    /// RabbitMQ refuses to redeclare a queue with other arguments, so an empty one is
    /// deleted and declared anew; one that holds messages is left alone, with an error
    /// that says how to drain it. Each try on a channel of its own (a refusal closes it).
    pub async fn migrate_personal_queues(
        &self,
        connection: &lapin::Connection,
    ) -> Result<Vec<String>, PersonalQueueError> {
        let mut redeclared = Vec::new();
        for name in self.personal_queues() {
            let channel = connection.create_channel().await?;
            let args = self.holding_arguments(Some(self.personal_ttl));
            let declared = channel
                .queue_declare(
                    name.as_str().into(),
                    QueueDeclareOptions::durable(),
                    args.clone(),
                )
                .await;
            if declared.is_ok() {
                let _ = channel.close(200, "declared".into()).await;
                continue;
            }
            let channel = connection.create_channel().await?;
            let passive = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            };
            let existing = channel
                .queue_declare(name.as_str().into(), passive, FieldTable::default())
                .await?;
            if existing.message_count() > 0 {
                return Err(PersonalQueueError::NotEmpty {
                    queue: name,
                    messages: existing.message_count(),
                });
            }
            channel
                .queue_delete(
                    name.as_str().into(),
                    lapin::options::QueueDeleteOptions {
                        if_empty: true,
                        ..Default::default()
                    },
                )
                .await?;
            channel
                .queue_declare(name.as_str().into(), QueueDeclareOptions::durable(), args)
                .await?;
            let _ = channel.close(200, "redeclared".into()).await;
            redeclared.push(name);
        }
        Ok(redeclared)
    }
}

/// Why the personal holding queues could not be given their TTL.
#[derive(Debug, thiserror::Error)]
pub enum PersonalQueueError {
    #[error(
        "queue {queue} exists with another time to live and holds {messages} messages: \
         replay or purge them (raccordo dlq), then run raccordo setup again"
    )]
    NotEmpty { queue: String, messages: u32 },
    #[error(transparent)]
    Broker(#[from] lapin::Error),
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.to_owned()))
}

/// A header value as text, if it is one.
pub fn header_text(headers: Option<&FieldTable>, key: &str) -> Option<String> {
    let value = headers?.inner().get(&ShortString::from(key))?;
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// A header value as an integer, if it is one.
pub fn header_int(headers: Option<&FieldTable>, key: &str) -> Option<i64> {
    let value = headers?.inner().get(&ShortString::from(key))?;
    match value {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).parse().ok(),
        _ => None,
    }
}

/// Sets a text header.
pub fn set_header_text(headers: &mut FieldTable, key: &str, value: &str) {
    headers.insert(key.into(), text(value));
}

/// Sets an integer header.
pub fn set_header_int(headers: &mut FieldTable, key: &str, value: i64) {
    headers.insert(key.into(), AMQPValue::LongLongInt(value));
}

/// RabbitMQ's answer to redeclaring a durable classic queue whose node is down: 404.
fn is_node_down(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(e) if e.get_id() == 404)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry() -> RetrySettings {
        RetrySettings {
            max_attempts: 4,
            initial_delay_ms: 1000,
            max_delay_ms: 3000,
        }
    }

    #[test]
    fn names_follow_the_prefix() {
        let t = Topology::new("p1", &retry());
        assert_eq!(t.inbound_exchange(), "p1.inbound");
        assert_eq!(t.events_exchange(), "p1.events");
        assert_eq!(t.dead_queue(), "p1.dead");
        assert_eq!(t.parked_queue(), "p1.parked");
        assert_eq!(t.queue(WorkQueue::Housing), "p1.housing");
        assert_eq!(
            t.retry_queue(WorkQueue::Housing, Duration::from_secs(2)),
            "p1.housing.retry.2000"
        );
    }

    #[test]
    fn one_retry_queue_per_distinct_delay() {
        let t = Topology::new("p", &retry());
        assert_eq!(
            t.retry_delays(),
            &[
                Duration::from_millis(1000),
                Duration::from_millis(2000),
                Duration::from_millis(3000)
            ]
        );
    }

    #[test]
    fn headers_round_trip() {
        let mut h = FieldTable::default();
        set_header_text(&mut h, "x-a", "uno");
        set_header_int(&mut h, "x-b", 3);
        assert_eq!(header_text(Some(&h), "x-a").as_deref(), Some("uno"));
        assert_eq!(header_int(Some(&h), "x-b"), Some(3));
        assert_eq!(header_int(Some(&h), "x-c"), None);
    }
}
