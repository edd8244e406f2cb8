//! The one consume loop every worker runs: take a delivery, let the handler decide,
//! then settle it. The order is fixed here and nowhere else:
//!
//! 1. the handler commits its database transaction (idempotency row, state, outbox);
//! 2. a dead letter, retry or parked copy is published and confirmed, if needed;
//! 3. only then the delivery is acknowledged.
//!
//! A crash between any two steps redelivers the message, and the handler's idempotency
//! makes the second pass a no-op (CONTRACT F2, F3).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::connection::connect_until_ready;
use super::dead_letter::{self, Holding};
use super::publisher::{PublishError, Publisher};
use super::topology::{WorkQueue, header_int, header_text, set_header_int, set_header_text};
use crate::health::Health;
use crate::settings::Settings;

/// A delivery as a handler sees it.
pub struct Message {
    /// The body, exactly as published.
    pub body: Vec<u8>,
    /// The original routing key (kept across retries).
    pub routing_key: String,
    /// The AMQP properties, headers included.
    pub properties: BasicProperties,
    /// 1 on first delivery, then one more per retry.
    pub attempt: u32,
}

/// What a handler made of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its effects were committed.
    Processed,
    /// It had been processed before; nothing was done.
    Duplicate,
}

/// Why a handler could not process a message, and so what happens to it.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// It can never be processed: dead-lettered with this reason.
    #[error("{0}")]
    Permanent(String),
    /// It might succeed later (database, broker or SMTP down): retried, then parked.
    #[error("{0}")]
    Transient(String),
}

impl From<crate::envelope::Rejection> for HandleError {
    fn from(rejection: crate::envelope::Rejection) -> Self {
        HandleError::Permanent(rejection.to_string())
    }
}

impl HandleError {
    /// Classifies a database error: connection-level faults are worth a retry.
    pub fn from_db(error: sqlx::Error) -> Self {
        if crate::db::is_transient(&error) {
            HandleError::Transient(format!("database: {error}"))
        } else {
            HandleError::Permanent(format!("database: {error}"))
        }
    }
}

/// A worker's logic, called once per delivery.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Processes one message. Must be idempotent: a redelivery may follow any crash.
    async fn handle(&self, message: &Message) -> Result<Outcome, HandleError>;
}

/// What the loop needs besides the handler.
#[derive(Clone)]
pub struct ConsumerContext {
    pub settings: Arc<Settings>,
    pub topology: super::Topology,
    pub health: Health,
}

enum Disposition {
    Ack,
    Retry { delay: Duration, reason: String },
    Hold { holding: Holding, reason: String },
}

/// Consumes `queue` until `token` is cancelled, reconnecting after broker failures.
/// A message in hand when the token fires is finished before returning (CONTRACT F4).
pub async fn run_consumer(
    ctx: ConsumerContext,
    queue: WorkQueue,
    index: u16,
    handler: Arc<dyn Handler>,
    token: CancellationToken,
) {
    let name = format!("{}-{}", queue.name(), index);
    let mut backoff = Duration::from_millis(200);
    loop {
        let Some(connection) = connect_until_ready(&ctx.settings.amqp, &name, &token).await else {
            break;
        };
        let result = consume_on(&ctx, &connection, queue, &name, handler.as_ref(), &token).await;
        ctx.health.set_consuming(&name, false);
        let _ = connection.close(200, "shutdown".into()).await;
        match result {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(consumer = %name, error = %error, "Lost the broker, reconnecting.");
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    tracing::info!(consumer = %name, "Stopped consuming.");
}

#[derive(Debug, thiserror::Error)]
enum LoopError {
    #[error(transparent)]
    Broker(#[from] lapin::Error),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("the broker cancelled the consumer")]
    Cancelled,
}

async fn consume_on(
    ctx: &ConsumerContext,
    connection: &Connection,
    queue: WorkQueue,
    name: &str,
    handler: &dyn Handler,
    token: &CancellationToken,
) -> Result<(), LoopError> {
    let publisher = Publisher::open(connection).await?;
    ctx.topology.declare(publisher.channel()).await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(ctx.settings.amqp.prefetch, BasicQosOptions::default())
        .await?;
    let queue_name = ctx.topology.queue(queue);
    let mut consumer = channel
        .basic_consume(
            queue_name.clone().into(),
            name.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    ctx.health.set_consuming(name, true);
    tracing::info!(queue = %queue_name, prefetch = ctx.settings.amqp.prefetch, "Started consuming.");
    loop {
        let next = tokio::select! {
            biased;
            _ = token.cancelled() => return Ok(()),
            next = consumer.next() => next,
        };
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(error)) => return Err(error.into()),
            None => return Err(LoopError::Cancelled),
        };
        settle(ctx, &publisher, queue, handler, delivery).await?;
    }
}

async fn settle(
    ctx: &ConsumerContext,
    publisher: &Publisher,
    queue: WorkQueue,
    handler: &dyn Handler,
    delivery: Delivery,
) -> Result<(), LoopError> {
    let headers = delivery.properties.headers().as_ref();
    let attempt = header_int(headers, dead_letter::ATTEMPT)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
        + 1;
    let routing_key = header_text(headers, dead_letter::ROUTING_KEY)
        .unwrap_or_else(|| delivery.routing_key.as_str().to_owned());
    let message_id = delivery
        .properties
        .message_id()
        .as_ref()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "delivery",
        worker = queue.name(),
        message_id = %message_id,
        routing_key = %routing_key,
        attempt,
        r#type = tracing::field::Empty,
        source = tracing::field::Empty,
    );
    let message = Message {
        body: delivery.data,
        routing_key,
        properties: delivery.properties,
        attempt,
    };
    let started = Instant::now();
    let disposition = decide(ctx, queue, handler, &message)
        .instrument(span.clone())
        .await;
    metrics::histogram!("raccordo_message_handling_seconds", "worker" => queue.name())
        .record(started.elapsed().as_secs_f64());

    let _entered = span.enter();
    match disposition {
        Disposition::Ack => {}
        Disposition::Retry { delay, reason } => {
            tracing::warn!(error = %reason, retry_in_ms = delay.as_millis() as u64, "Transient failure, retrying later.");
            let mut headers = message.properties.headers().clone().unwrap_or_default();
            set_header_int(
                &mut headers,
                dead_letter::ATTEMPT,
                i64::from(message.attempt),
            );
            set_header_text(&mut headers, dead_letter::ROUTING_KEY, &message.routing_key);
            set_header_text(&mut headers, dead_letter::ERROR, &reason);
            publisher
                .publish(
                    "",
                    &ctx.topology.retry_queue(queue, delay),
                    &message.body,
                    message.properties.clone().with_headers(headers),
                    true,
                )
                .await?;
            metrics::counter!("raccordo_messages_retried_total", "worker" => queue.name())
                .increment(1);
        }
        Disposition::Hold { holding, reason } => {
            // Dead input that may hold personal data expires (CONTRACT C7); parked work
            // is valid work waiting for a fault to pass, and is kept.
            let ttl = (holding == Holding::Dead && dead_letter::may_hold_personal_data(&message))
                .then(|| ctx.settings.eviction.dead_letter_ttl());
            if holding == Holding::Parked {
                tracing::error!(error = %reason, "Giving up after all retries; parked for an operator.");
            } else {
                tracing::warn!(error = %reason, "Dead-lettered input that can never be processed.");
            }
            dead_letter::hold(
                publisher,
                &ctx.topology,
                holding,
                &ctx.topology.queue(queue),
                &message,
                &reason,
                ttl,
            )
            .await?;
            let metric = match holding {
                Holding::Dead => "raccordo_messages_dead_lettered_total",
                Holding::Parked => "raccordo_messages_parked_total",
            };
            metrics::counter!(metric, "worker" => queue.name()).increment(1);
        }
    }
    delivery.acker.ack(BasicAckOptions::default()).await?;
    Ok(())
}

async fn decide(
    ctx: &ConsumerContext,
    queue: WorkQueue,
    handler: &dyn Handler,
    message: &Message,
) -> Disposition {
    let limit = ctx.settings.amqp.max_message_bytes;
    if queue.is_inbound() && message.body.len() > limit {
        return Disposition::Hold {
            holding: Holding::Dead,
            reason: format!(
                "message of {} bytes is over the {limit}-byte limit",
                message.body.len()
            ),
        };
    }
    match handler.handle(message).await {
        Ok(outcome) => {
            let label = match outcome {
                Outcome::Processed => "processed",
                Outcome::Duplicate => "duplicate",
            };
            metrics::counter!("raccordo_messages_consumed_total", "worker" => queue.name(), "outcome" => label)
                .increment(1);
            tracing::debug!(outcome = label, "Handled.");
            Disposition::Ack
        }
        Err(HandleError::Permanent(reason)) => Disposition::Hold {
            holding: Holding::Dead,
            reason,
        },
        Err(HandleError::Transient(reason)) => {
            if message.attempt < ctx.settings.retry.max_attempts {
                Disposition::Retry {
                    delay: ctx.settings.retry.delay(message.attempt),
                    reason,
                }
            } else {
                Disposition::Hold {
                    holding: Holding::Parked,
                    reason: format!("gave up after {} attempts: {reason}", message.attempt),
                }
            }
        }
    }
}
