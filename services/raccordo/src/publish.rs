//! `raccordo publish [FILE|-]`: newline-delimited CloudEvents to `{prefix}.inbound`, each
//! persistent, with publisher confirms, exactly as a legacy system should publish them.

use std::io::BufRead;

use anyhow::Context;
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use raccordo_core::binding;
use serde_json::Value;

use raccordo_core::amqp::{Publisher, Topology, connect};
use raccordo_core::envelope::Envelope;
use raccordo_core::settings::Settings;

/// Lines published and lines refused.
#[derive(Debug, Default)]
pub(crate) struct PublishReport {
    /// Events the broker confirmed.
    pub published: usize,
    /// Lines not sent, with the reason (only when validating).
    pub refused: Vec<(usize, String)>,
}

/// Confirms awaited together: enough to keep the broker busy, bounded in memory.
const WINDOW: usize = 256;

/// Publishes every non-empty line. With `validate`, lines that are not valid events are
/// reported and skipped (the hub would dead-letter them); without, they are sent as they
/// are, with the routing key taken from `type` when there is one.
///
/// With `as_publisher`, every message carries the AMQP `user_id` of `amqp.url`'s user, as
/// a publishing system's must when `publishers.allow_anonymous` is false (RabbitMQ checks
/// that it is the connection's own user).
pub(crate) async fn run(
    settings: &Settings,
    input: impl BufRead,
    how: How,
    mut progress: impl FnMut(usize),
) -> anyhow::Result<PublishReport> {
    let How {
        validate,
        as_publisher,
        binary,
    } = how;
    let topology = Topology::from_settings(settings);
    let user_id = as_publisher.then(|| publisher_user(settings)).transpose()?;
    let connection = connect(&settings.amqp, "publish")
        .await
        .context("Failed to connect to RabbitMQ (scripts/services.sh starts it)")?;
    let publisher = Publisher::open(&connection).await?;
    let exchange = topology.inbound_exchange();
    check_exchange(&publisher, &exchange).await?;
    let mut report = PublishReport::default();
    let mut pending = Vec::with_capacity(WINDOW);
    for (index, line) in input.lines().enumerate() {
        let number = index + 1;
        let line = line.with_context(|| format!("Failed to read line {number}"))?;
        if line.trim().is_empty() {
            continue;
        }
        if validate && let Err(rejection) = Envelope::decode(line.as_bytes()) {
            report.refused.push((number, rejection.to_string()));
            continue;
        }
        let (routing_key, mut properties) = properties_for(&line, user_id.as_deref());
        let body = match binary {
            true => match binary_mode(&line, properties) {
                Ok((body, binary_properties)) => {
                    properties = binary_properties;
                    body
                }
                Err(reason) => {
                    report.refused.push((number, reason));
                    continue;
                }
            },
            false => line.clone().into_bytes(),
        };
        let confirm = publisher
            .channel()
            .basic_publish(
                exchange.clone().into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await
            .with_context(|| format!("Failed to publish line {number}"))?;
        pending.push((number, confirm));
        if pending.len() >= WINDOW {
            report.published += settle(&mut pending).await?;
            progress(report.published);
        }
    }
    report.published += settle(&mut pending).await?;
    progress(report.published);
    let _ = connection.close(200, "published".into()).await;
    Ok(report)
}

/// How lines are published.
#[derive(Debug, Clone, Copy)]
pub(crate) struct How {
    /// Check each line against the schemas first.
    pub validate: bool,
    /// Set `user_id` to `amqp.url`'s user.
    pub as_publisher: bool,
    /// CloudEvents binary mode: the attributes as `cloudEvents_*` properties, the body the
    /// `data` alone (contract 1.2 §3).
    pub binary: bool,
}

impl How {
    /// As written, unchecked, anonymous, structured (the demo's sample files).
    pub(crate) const RAW: How = How {
        validate: false,
        as_publisher: false,
        binary: false,
    };
    /// Checked against the schemas first, anonymous, structured.
    pub(crate) const CHECKED: How = How {
        validate: true,
        ..How::RAW
    };
}

/// A line in binary mode: its `data` as the body, its attributes as application
/// properties, the content type the data's.
fn binary_mode(
    line: &str,
    properties: BasicProperties,
) -> Result<(Vec<u8>, BasicProperties), String> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| format!("not JSON, so no binary mode: {e}"))?;
    let data = value
        .get("data")
        .ok_or_else(|| "no data member to send as the body".to_owned())?;
    let body = serde_json::to_vec(data).map_err(|e| e.to_string())?;
    let mut headers = FieldTable::default();
    for name in binding::ATTRIBUTES {
        if let Some(text) = value.get(name).and_then(Value::as_str) {
            headers.insert(
                format!("{}{name}", binding::PREFIXES[0]).into(),
                AMQPValue::LongString(LongString::from(text)),
            );
        }
    }
    let properties = properties
        .with_content_type("application/json".into())
        .with_headers(headers);
    Ok((body, properties))
}

/// The user of `amqp.url` (or of `amqp.urls`: the same on each node), the AMQP `user_id` a
/// publishing system must set.
fn publisher_user(settings: &Settings) -> anyhow::Result<String> {
    use secrecy::ExposeSecret;
    let url = url::Url::parse(settings.amqp.primary_url().expose_secret())
        .context(settings.amqp.addresses_key())?;
    let user = percent_encoding::percent_decode_str(url.username())
        .decode_utf8_lossy()
        .into_owned();
    anyhow::ensure!(!user.is_empty(), "--as-publisher needs a user in amqp.url");
    Ok(user)
}

/// Fails when the inbound exchange is missing. A passive check needs no permission: a
/// publishing system may not configure the broker.
async fn check_exchange(publisher: &Publisher, exchange: &str) -> anyhow::Result<()> {
    publisher
        .channel()
        .exchange_declare(
            exchange.into(),
            lapin::ExchangeKind::Topic,
            lapin::options::ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .with_context(|| {
            format!("The exchange {exchange} does not exist: run `raccordo setup` first")
        })?;
    Ok(())
}

/// The routing key (the event `type`) and the AMQP properties of one line. A line that is
/// not JSON, sent only without validation, goes with an empty key and id: the hub
/// dead-letters it, which is what such a line is sent to see.
fn properties_for(line: &str, user_id: Option<&str>) -> (String, BasicProperties) {
    let value: Option<Value> = serde_json::from_str(line).ok();
    let text = |k: &str| {
        value
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let mut properties = BasicProperties::default()
        .with_content_type("application/cloudevents+json".into())
        .with_message_id(text("id").into())
        .with_app_id("raccordo-publish".into())
        .with_delivery_mode(2);
    if let Some(user) = user_id {
        properties = properties.with_user_id(user.into());
    }
    (text("type"), properties)
}

async fn settle(pending: &mut Vec<(usize, lapin::PublisherConfirm)>) -> anyhow::Result<usize> {
    let mut confirmed = 0;
    for (number, confirm) in pending.drain(..) {
        let confirmation = confirm
            .await
            .with_context(|| format!("Lost the broker before line {number} was confirmed"))?;
        if !confirmation.is_ack() {
            anyhow::bail!("The broker refused line {number} (nack)");
        }
        confirmed += 1;
    }
    Ok(confirmed)
}

/// Publishes the demo's events one at a time, each once the hub has processed the one
/// before: competing consumers may take events in any order, and a demo tells a story in
/// order. `what` names the events in errors. Returns how many were published.
pub(crate) async fn one_by_one<'a>(
    settings: &Settings,
    pool: &sqlx::PgPool,
    lines: impl Iterator<Item = &'a str>,
    what: &str,
) -> anyhow::Result<usize> {
    use raccordo_core::db::count_processed;
    use std::time::{Duration, Instant};
    let mut published = 0;
    for line in lines.filter(|l| !l.trim().is_empty()) {
        // Counted by its own type: events of other types still in flight do not count.
        let event: Value = serde_json::from_str(line)?;
        let event_type = event["type"].as_str().map(str::to_owned);
        let processed = async |pool: &sqlx::PgPool| -> anyhow::Result<i64> {
            Ok(count_processed(&mut *pool.acquire().await?, event_type.as_deref()).await?)
        };
        let before = processed(pool).await?;
        let report = run(settings, line.as_bytes(), How::CHECKED, |_| {}).await?;
        anyhow::ensure!(
            report.refused.is_empty(),
            "The demo's {what} events do not validate: {:?}",
            report.refused
        );
        published += report.published;
        let deadline = Instant::now() + Duration::from_secs(30);
        while processed(pool).await? <= before {
            anyhow::ensure!(
                Instant::now() < deadline,
                "The hub did not process a {what} event within 30 s; see `raccordo status` and `raccordo dlq list`"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(published)
}
