//! The one consume loop every worker runs: take a delivery, let the handler decide,
//! then settle it. The order is fixed here and nowhere else:
//!
//! 1. the handler commits its database transaction (idempotency row, state, outbox);
//! 2. a dead letter, retry or parked copy is published and confirmed, if needed;
//! 3. only then the delivery is acknowledged.
//!
//! A crash between any two steps redelivers the message, and the handler's idempotency
//! makes the second pass a no-op (CONTRACT F2, F3).
//!
//! Nothing a message does can stop the loop: a handler that panics has its message
//! dead-lettered; every await on the broker and the handler is bounded; a watchdog notices
//! a connection that died without the consumer hearing of it; a panic anywhere else
//! restarts the consumer. While the database is unreachable the consumer keeps the message
//! in hand and takes no other (`/readyz` answers 503 naming it) until it answers again.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{FutureExt, StreamExt};
use lapin::Connection;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::connection::connect_until_ready;
use super::handler::{Disposition, HandleError, Handler, Message, Outcome};
use super::holding::{self, Holding};
use super::policy::HoldingPolicy;
use super::publisher::{PublishError, Publisher, hub_copy};
use super::topology::{WorkQueue, header_int, header_text, set_header_int, set_header_text};
use crate::health::{ConsumerState, Health};
use crate::settings::Settings;
use crate::telemetry::ErrorChain;

/// Bound on the broker's answer to an ack.
const ACK_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on declaring the topology and attaching the consumer.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the watchdog looks at the connection.
const WATCHDOG_EVERY: Duration = Duration::from_secs(2);

/// What the loop needs besides the handler.
#[derive(Clone)]
pub struct ConsumerContext {
    pub settings: Arc<Settings>,
    pub topology: super::Topology,
    pub health: Health,
    /// Pinged after a transient failure: an unreachable database pauses the consumer.
    pub pool: sqlx::PgPool,
}

/// What the loop does with one message.
enum Settlement {
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
        let started = Instant::now();
        // A panic outside the handler (a defect) must not end the consumer for good:
        // it is logged and the consumer starts again, like after a lost connection.
        let result = AssertUnwindSafe(consume_on(
            &ctx,
            &connection,
            queue,
            &name,
            handler.as_ref(),
            &token,
        ))
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| Err(LoopError::Panicked(panic_text(panic.as_ref()))));
        ctx.health.set_state(&name, ConsumerState::WaitingForBroker);
        let _ = tokio::time::timeout(ACK_TIMEOUT, connection.close(200, "shutdown".into())).await;
        match result {
            Ok(()) => break,
            Err(error) => {
                if matches!(error, LoopError::Panicked(_)) {
                    tracing::error!(consumer = %name, error = %ErrorChain(&error), "The consumer panicked; restarting it.");
                    metrics::counter!("raccordo_consumer_restarts_total", "worker" => queue.name())
                        .increment(1);
                } else {
                    tracing::warn!(consumer = %name, error = %ErrorChain(&error), "Lost the broker, reconnecting.");
                }
                if started.elapsed() > Duration::from_secs(30) {
                    backoff = Duration::from_millis(200);
                }
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

/// The message of a caught panic (a defect of the hub: its messages hold no event data).
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown cause".to_owned());
    text.chars().take(300).collect()
}

#[derive(Debug, thiserror::Error)]
enum LoopError {
    #[error(transparent)]
    Broker(#[from] lapin::Error),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("the broker cancelled the consumer")]
    Cancelled,
    #[error("the connection is gone (noticed by the watchdog)")]
    ConnectionLost,
    #[error("the broker did not answer within {0:?}")]
    Timeout(Duration),
    #[error("panicked: {0}")]
    Panicked(String),
}

async fn consume_on(
    ctx: &ConsumerContext,
    connection: &Connection,
    queue: WorkQueue,
    name: &str,
    handler: &dyn Handler,
    token: &CancellationToken,
) -> Result<(), LoopError> {
    let queue_name = ctx.topology.queue(queue);
    // A broker that accepts the connection but never answers must not hang the start.
    let started = tokio::time::timeout(SETUP_TIMEOUT, async {
        let publisher = Publisher::open(connection).await?;
        ctx.topology
            .declare_for_workers(connection, publisher.channel())
            .await?;
        let channel = connection.create_channel().await?;
        channel
            .basic_qos(ctx.settings.amqp.prefetch, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                queue_name.clone().into(),
                name.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok::<_, lapin::Error>((publisher, channel, consumer))
    })
    .await
    .map_err(|_| LoopError::Timeout(SETUP_TIMEOUT))?;
    let (publisher, channel, mut consumer) = started?;
    ctx.health.set_state(name, ConsumerState::Consuming);
    tracing::info!(queue = %queue_name, prefetch = ctx.settings.amqp.prefetch, "Started consuming.");
    let mut watchdog = tokio::time::interval(WATCHDOG_EVERY);
    loop {
        let next = tokio::select! {
            biased;
            _ = token.cancelled() => return Ok(()),
            _ = watchdog.tick() => {
                if !connection.status().connected() || !channel.status().connected() {
                    return Err(LoopError::ConnectionLost);
                }
                continue;
            }
            next = consumer.next() => next,
        };
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(error)) => return Err(error.into()),
            None => return Err(LoopError::Cancelled),
        };
        // Whatever else the broker already sent (up to the prefetch) is decided with it.
        let mut batch = vec![delivery];
        while batch.len() < usize::from(ctx.settings.amqp.prefetch) {
            match futures_lite::future::poll_once(consumer.next()).await {
                Some(Some(Ok(delivery))) => batch.push(delivery),
                Some(Some(Err(error))) => return Err(error.into()),
                Some(None) | None => break,
            }
        }
        if settle(ctx, &publisher, queue, name, handler, batch, token).await? == Settled::Abandoned
        {
            return Ok(());
        }
    }
}

/// What became of a delivery.
#[derive(Debug, PartialEq, Eq)]
enum Settled {
    /// Acknowledged, after its effects or its copy were confirmed.
    Done,
    /// Left unacknowledged because the process is stopping: the broker redelivers it.
    Abandoned,
}

/// The message as the handler sees it, and who published it. A delivery routed by the
/// inbound exchange comes from a publisher: any `x-raccordo-*` header it carries is
/// dropped, since those are the hub's own (attempt count, original routing key, publisher).
/// Anything else reached the queue through the default exchange — a retry or a replay by
/// the hub, which publishers may not write to — and its headers are the hub's.
fn message_of(ctx: &ConsumerContext, queue: WorkQueue, delivery: &mut Delivery) -> Message {
    let from_publisher = delivery.exchange.as_str() == ctx.topology.inbound_exchange();
    let mut properties = std::mem::take(&mut delivery.properties);
    let via_http = from_publisher
        .then(|| http_publisher(ctx, &properties, &delivery.routing_key, &delivery.data))
        .flatten();
    if from_publisher && let Some(headers) = properties.headers().as_ref() {
        let mut clean = FieldTable::default();
        for (k, v) in headers {
            if !k.as_str().starts_with("x-raccordo-") {
                clean.insert(k.clone(), v.clone());
            }
        }
        properties = properties.with_headers(clean);
    }
    let headers = properties.headers().as_ref();
    let attempt = header_int(headers, holding::ATTEMPT)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
        .saturating_add(1);
    let routing_key = header_text(headers, holding::ROUTING_KEY)
        .unwrap_or_else(|| delivery.routing_key.as_str().to_owned());
    let publisher = if let Some(user) = via_http {
        Some(user)
    } else if from_publisher {
        properties.user_id().as_ref().map(|u| u.as_str().to_owned())
    } else {
        header_text(headers, holding::USER)
    };
    let message_id = properties
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
        publisher = publisher.as_deref().unwrap_or("-"),
        r#type = tracing::field::Empty,
        source = tracing::field::Empty,
    );
    Message {
        body: std::mem::take(&mut delivery.data),
        routing_key,
        properties,
        attempt,
        publisher,
        span,
    }
}

/// The publisher HTTP ingestion names for a message, when the hub's signature vouches for
/// it (CONTRACT 1.2 §10); a forged or broken one is ignored, and the message is judged by
/// its `user_id` like any other.
fn http_publisher(
    ctx: &ConsumerContext,
    properties: &lapin::BasicProperties,
    routing_key: &lapin::types::ShortString,
    body: &[u8],
) -> Option<String> {
    let headers = properties.headers().as_ref();
    let user = header_text(headers, crate::origin::HTTP_PUBLISHER)?;
    let signature = header_text(headers, crate::origin::HTTP_SIGNATURE).unwrap_or_default();
    let keys = ctx.settings.eviction.pseudonym_keys();
    if crate::origin::verify_http(&keys, &user, routing_key.as_str(), body, &signature) {
        Some(user)
    } else {
        tracing::warn!(
            routing_key = %routing_key,
            "A message names an HTTP publisher without the hub's signature; judged by its user_id."
        );
        None
    }
}

/// Decides a batch of deliveries, publishes the copies some need (retry, dead, parked) and
/// waits for their confirms, then acknowledges the whole batch at once.
async fn settle(
    ctx: &ConsumerContext,
    publisher: &Publisher,
    queue: WorkQueue,
    name: &str,
    handler: &dyn Handler,
    mut deliveries: Vec<Delivery>,
    token: &CancellationToken,
) -> Result<Settled, LoopError> {
    let messages: Vec<Message> = deliveries
        .iter_mut()
        .map(|d| message_of(ctx, queue, d))
        .collect();
    let started = Instant::now();
    let settlements = loop {
        let settlements = decide(ctx, queue, handler, &messages).await;
        if !settlements
            .iter()
            .any(|d| matches!(d, Settlement::Retry { .. }))
            || crate::pg::ping(&ctx.pool, Duration::from_secs(2)).await
        {
            break settlements;
        }
        // The database is gone: retrying would only burn attempts. Keep the messages,
        // take no other, and try them again once the database answers.
        if !wait_for_database(ctx, name, token).await {
            return Ok(Settled::Abandoned);
        }
    };
    let per_message = started.elapsed().as_secs_f64() / messages.len().max(1) as f64;
    let policy = handler.holding_policy();
    for (message, settlement) in messages.iter().zip(settlements) {
        metrics::histogram!("raccordo_message_handling_seconds", "worker" => queue.name())
            .record(per_message);
        dispose(ctx, publisher, queue, message, settlement, &policy)
            .instrument(message.span.clone())
            .await?;
    }
    // Every delivery of the batch came on this channel after the last acknowledged one:
    // acknowledging the last with `multiple` acknowledges exactly the batch.
    if let Some(last) = deliveries.last() {
        let ack = last.acker.ack(BasicAckOptions { multiple: true });
        tokio::time::timeout(ACK_TIMEOUT, ack)
            .await
            .map_err(|_| LoopError::Timeout(ACK_TIMEOUT))??;
    }
    Ok(Settled::Done)
}

/// Publishes and confirms the copy a settlement asks for.
async fn dispose(
    ctx: &ConsumerContext,
    publisher: &Publisher,
    queue: WorkQueue,
    message: &Message,
    settlement: Settlement,
    policy: &HoldingPolicy,
) -> Result<(), LoopError> {
    match settlement {
        Settlement::Ack => {}
        Settlement::Retry { delay, reason } => {
            tracing::warn!(error = %reason, retry_in_ms = delay.as_millis() as u64, "Transient failure, retrying later.");
            let mut headers = message.properties.headers().clone().unwrap_or_default();
            set_header_int(&mut headers, holding::ATTEMPT, i64::from(message.attempt));
            set_header_text(&mut headers, holding::ROUTING_KEY, &message.routing_key);
            set_header_text(&mut headers, holding::ERROR, &reason);
            if let Some(user) = &message.publisher {
                set_header_text(&mut headers, holding::USER, user);
            }
            publisher
                .publish(
                    "",
                    &ctx.topology.retry_queue(queue, delay),
                    &message.body,
                    // The hub republishes as itself: RabbitMQ would refuse the publisher's user_id.
                    hub_copy(&message.properties).with_headers(headers),
                    true,
                )
                .await?;
            metrics::counter!("raccordo_messages_retried_total", "worker" => queue.name())
                .increment(1);
        }
        Settlement::Hold { holding, reason } => {
            if holding == Holding::Parked {
                tracing::error!(error = %reason, "Giving up after all retries; parked for an operator.");
            } else {
                tracing::warn!(error = %reason, "Dead-lettered input that can never be processed.");
            }
            holding::hold(
                publisher,
                &ctx.topology,
                holding,
                &ctx.topology.queue(queue),
                message,
                &reason,
                policy,
                ctx.settings.amqp.max_message_bytes,
            )
            .await?;
            let metric = match holding {
                Holding::Dead => "raccordo_messages_dead_lettered_total",
                Holding::Parked => "raccordo_messages_parked_total",
            };
            metrics::counter!(metric, "worker" => queue.name()).increment(1);
        }
    }
    Ok(())
}

/// Waits until the database answers again (true), or the process stops (false). The
/// consumer shows as paused meanwhile, so `/readyz` answers 503 naming it.
async fn wait_for_database(ctx: &ConsumerContext, name: &str, token: &CancellationToken) -> bool {
    ctx.health
        .set_state(name, ConsumerState::PausedDatabaseDown);
    tracing::warn!("The database is unreachable: pausing this consumer until it answers.");
    let mut delay = Duration::from_millis(250);
    loop {
        tokio::select! {
            _ = token.cancelled() => return false,
            _ = tokio::time::sleep(delay) => {}
        }
        if crate::pg::ping(&ctx.pool, Duration::from_secs(2)).await {
            ctx.health.set_state(name, ConsumerState::Consuming);
            tracing::info!("The database answers again: resuming.");
            return true;
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// What to do with each message of a batch.
async fn decide(
    ctx: &ConsumerContext,
    queue: WorkQueue,
    handler: &dyn Handler,
    messages: &[Message],
) -> Vec<Settlement> {
    let limit = ctx.settings.amqp.max_message_bytes;
    let mut settlements: Vec<Option<Settlement>> = messages
        .iter()
        .map(|m| {
            (queue.is_inbound() && m.body.len() > limit).then(|| Settlement::Hold {
                holding: Holding::Dead,
                reason: HandleError::TooLarge {
                    size: m.body.len(),
                    limit,
                }
                .to_string(),
            })
        })
        .collect();
    let todo: Vec<&Message> = messages
        .iter()
        .zip(&settlements)
        .filter(|(_, d)| d.is_none())
        .map(|(m, _)| m)
        .collect();
    if !todo.is_empty() {
        let results = match run_handler(ctx, queue, handler, &todo).await {
            Ok(results) => results,
            Err(panicked) if todo.len() == 1 => vec![Err(panicked)],
            Err(_) => {
                // The batch met a panic: one by one, so only the message that causes it is
                // dead-lettered and the others are decided as usual.
                let mut one_by_one = Vec::with_capacity(todo.len());
                for message in &todo {
                    one_by_one.push(match run_handler(ctx, queue, handler, &[*message]).await {
                        Ok(mut r) => r.pop().unwrap_or(Err(HandleError::NoResult)),
                        Err(panicked) => Err(panicked),
                    });
                }
                one_by_one
            }
        };
        let mut results = results.into_iter();
        for (slot, message) in settlements.iter_mut().zip(messages) {
            if slot.is_none() {
                let result = results.next().unwrap_or(Err(HandleError::NoResult));
                *slot = Some(
                    settlement_of(ctx, queue, message, result)
                        .instrument(message.span.clone())
                        .await,
                );
            }
        }
    }
    settlements
        .into_iter()
        .map(|d| d.unwrap_or(Settlement::Ack))
        .collect()
}

/// The handler's results for `messages`, bounded in time; [`HandleError::Panicked`] when
/// it panicked (the whole batch: which message caused it is not known yet).
async fn run_handler(
    ctx: &ConsumerContext,
    queue: WorkQueue,
    handler: &dyn Handler,
    messages: &[&Message],
) -> Result<Vec<Result<Outcome, HandleError>>, HandleError> {
    let timeout = ctx.settings.amqp.handler_timeout();
    let handled = tokio::time::timeout(
        timeout,
        AssertUnwindSafe(handler.handle_batch(messages)).catch_unwind(),
    )
    .await;
    match handled {
        Err(_) => Ok(messages
            .iter()
            .map(|_| Err(HandleError::Timeout(timeout)))
            .collect()),
        Ok(Err(panic)) => {
            let text = panic_text(panic.as_ref());
            metrics::counter!("raccordo_handler_panics_total", "worker" => queue.name())
                .increment(1);
            tracing::error!(worker = queue.name(), error = %text, "The handler panicked.");
            Err(HandleError::Panicked(text))
        }
        Ok(Ok(results)) => Ok(results),
    }
}

/// Turns one handler result into what happens to its message.
async fn settlement_of(
    ctx: &ConsumerContext,
    queue: WorkQueue,
    message: &Message,
    result: Result<Outcome, HandleError>,
) -> Settlement {
    match result {
        Ok(outcome) => {
            let label = match outcome {
                Outcome::Processed => "processed",
                Outcome::Duplicate => "duplicate",
            };
            metrics::counter!("raccordo_messages_consumed_total", "worker" => queue.name(), "outcome" => label)
                .increment(1);
            tracing::debug!(outcome = label, "Handled.");
            Settlement::Ack
        }
        Err(error) => {
            let reason = ErrorChain(&error).to_string();
            match error.disposition() {
                Disposition::Dead => Settlement::Hold {
                    holding: Holding::Dead,
                    reason,
                },
                Disposition::Retry if message.attempt < ctx.settings.retry.max_attempts => {
                    Settlement::Retry {
                        delay: ctx.settings.retry.delay(message.attempt),
                        reason,
                    }
                }
                Disposition::Retry => Settlement::Hold {
                    holding: Holding::Parked,
                    reason: format!("gave up after {} attempts: {reason}", message.attempt),
                },
            }
        }
    }
}
