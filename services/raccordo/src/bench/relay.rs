//! The broker's own ceiling, measured in the same run: a raw two-hop relay on queues of
//! the hub's type. Messages are published with confirms to queue A; a mover consumes A,
//! publishes each message to queue B with confirms and acks it on A once B has it; a
//! drainer consumes and acks B. The hub's events/s is shown as a fraction of this.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection};
use serde::Serialize;

use raccordo_core::amqp::connect;
use raccordo_core::settings::Settings;

/// Unacknowledged deliveries and unconfirmed publishes each stage keeps in flight.
const WINDOW: u16 = 256;
/// Bound on the whole relay.
const RELAY_WITHIN: Duration = Duration::from_secs(300);

/// What the relay did.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RelayResult {
    pub messages: u64,
    pub queue_type: String,
    pub seconds: f64,
    /// Messages per second from the first publish to the last one drained from B.
    pub messages_per_s: f64,
}

/// Runs the relay with `messages` bodies like `body` on `{prefix}.relay.a` and `.b`.
pub(crate) async fn run(
    settings: &Settings,
    messages: u64,
    body: &[u8],
) -> anyhow::Result<RelayResult> {
    let queues = [
        format!("{}.relay.a", settings.amqp.prefix),
        format!("{}.relay.b", settings.amqp.prefix),
    ];
    // Three connections, as three processes would have.
    let publisher = connect(&settings.amqp, "bench-relay-publisher").await?;
    let mover = connect(&settings.amqp, "bench-relay-mover").await?;
    let drainer = connect(&settings.amqp, "bench-relay-drainer").await?;
    let setup = publisher.create_channel().await?;
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from(
            settings.amqp.queue_type.as_str().to_owned(),
        )),
    );
    for queue in &queues {
        setup
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::durable(),
                arguments.clone(),
            )
            .await
            .with_context(|| format!("Failed to declare {queue}"))?;
    }
    let result = tokio::time::timeout(
        RELAY_WITHIN,
        relay(&publisher, &mover, &drainer, &queues, messages, body),
    )
    .await;
    for queue in &queues {
        let _ = setup
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for connection in [&publisher, &mover, &drainer] {
        let _ = connection.close(200, "relay done".into()).await;
    }
    let seconds = result.context("The raw relay did not finish within 300 s")??;
    Ok(RelayResult {
        messages,
        queue_type: settings.amqp.queue_type.as_str().to_owned(),
        seconds,
        messages_per_s: messages as f64 / seconds.max(f64::EPSILON),
    })
}

async fn relay(
    publisher: &Connection,
    mover: &Connection,
    drainer: &Connection,
    queues: &[String; 2],
    messages: u64,
    body: &[u8],
) -> anyhow::Result<f64> {
    let [a, b] = queues;
    let drain = tokio::spawn(drain(drainer.create_channel().await?, b.clone(), messages));
    let mover = tokio::spawn(move_messages(
        mover.create_channel().await?,
        mover.create_channel().await?,
        a.clone(),
        b.clone(),
        messages,
    ));
    let channel = confirm_channel(publisher).await?;
    let started = Instant::now();
    let mut pending = VecDeque::with_capacity(usize::from(WINDOW));
    for _ in 0..messages {
        let confirm = channel
            .basic_publish(
                "".into(),
                a.as_str().into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?;
        pending.push_back(confirm);
        if pending.len() >= usize::from(WINDOW)
            && let Some(confirm) = pending.pop_front()
        {
            anyhow::ensure!(
                confirm.await?.is_ack(),
                "the broker refused a relay message"
            );
        }
    }
    for confirm in pending {
        anyhow::ensure!(
            confirm.await?.is_ack(),
            "the broker refused a relay message"
        );
    }
    mover.await.context("The relay mover failed")??;
    drain.await.context("The relay drainer failed")??;
    Ok(started.elapsed().as_secs_f64())
}

async fn confirm_channel(connection: &Connection) -> anyhow::Result<Channel> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// Moves `messages` from `a` to `b`: each acked on `a` once `b` confirmed it.
async fn move_messages(
    consume: Channel,
    publish: Channel,
    a: String,
    b: String,
    messages: u64,
) -> anyhow::Result<()> {
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    consume
        .basic_qos(WINDOW, BasicQosOptions::default())
        .await?;
    let mut consumer = consume
        .basic_consume(
            a.as_str().into(),
            "bench-relay-mover".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut in_flight = VecDeque::with_capacity(usize::from(WINDOW));
    let mut moved = 0;
    while moved < messages {
        let delivery = consumer
            .next()
            .await
            .context("The relay's consumer of A was cancelled")??;
        let confirm = publish
            .basic_publish(
                "".into(),
                b.as_str().into(),
                BasicPublishOptions::default(),
                &delivery.data,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?;
        in_flight.push_back((delivery.acker, confirm));
        moved += 1;
        // Keep at most half the prefetch unconfirmed, so deliveries keep flowing.
        if in_flight.len() >= usize::from(WINDOW / 2) || moved == messages {
            while let Some((acker, confirm)) = in_flight.pop_front() {
                anyhow::ensure!(
                    confirm.await?.is_ack(),
                    "the broker refused a moved message"
                );
                acker.ack(BasicAckOptions::default()).await?;
                if in_flight.len() < usize::from(WINDOW / 4) && moved < messages {
                    break;
                }
            }
        }
    }
    while let Some((acker, confirm)) = in_flight.pop_front() {
        anyhow::ensure!(
            confirm.await?.is_ack(),
            "the broker refused a moved message"
        );
        acker.ack(BasicAckOptions::default()).await?;
    }
    Ok(())
}

/// Consumes and acks `messages` from `b`.
async fn drain(channel: Channel, b: String, messages: u64) -> anyhow::Result<()> {
    channel
        .basic_qos(WINDOW, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            b.as_str().into(),
            "bench-relay-drainer".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    for _ in 0..messages {
        let delivery = consumer
            .next()
            .await
            .context("The relay's consumer of B was cancelled")??;
        delivery.acker.ack(BasicAckOptions::default()).await?;
    }
    Ok(())
}
