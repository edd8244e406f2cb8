//! The outbox relay: publishes committed notifications to `{prefix}.events` with confirms,
//! then marks them published. Rows are claimed with `FOR UPDATE SKIP LOCKED`, so any number
//! of relays may run; a crash between publish and mark republishes, and the mailer's
//! per-recipient record makes that harmless.

use std::sync::Arc;

use lapin::BasicProperties;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::HeldIn;
use super::signal::OutboxSignal;
use crate::amqp::dead_letter::Holding;
use crate::amqp::{
    HoldingPolicy, Message, Outgoing, Publisher, Topology, WorkQueue, connect_until_ready, hold,
};
use crate::settings::Settings;
use crate::telemetry::ErrorChain;

/// The body published on `{prefix}.events`: identifies the notification and says what it
/// is about, never its content (which may be personal, and stays in the database).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotificationMessage {
    /// The notification id, shared by all its recipients.
    pub id: Uuid,
    /// Its kind; also the routing key.
    pub kind: String,
    /// The comune it is about, if one.
    pub comune_istat: Option<String>,
    /// When it was decided.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// True when no referent matched.
    pub undeliverable: bool,
}

/// Why the relay could not publish.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error("failed to connect to RabbitMQ")]
    Connect(#[from] crate::amqp::ConnectError),
    #[error("broker")]
    Broker(#[from] lapin::Error),
    #[error("publish not confirmed")]
    Publish(#[from] crate::amqp::PublishError),
    #[error("cannot encode the announcement")]
    Encode(#[from] serde_json::Error),
}

/// Publishes up to `batch` pending notifications; returns how many.
pub async fn flush_outbox(
    pool: &PgPool,
    publisher: &Publisher,
    topology: &Topology,
    batch: i64,
) -> Result<usize, RelayError> {
    let mut tx = pool.begin().await?;
    let rows: Vec<(Uuid, String, Option<String>, OffsetDateTime, bool)> = sqlx::query_as(
        r#"
        SELECT id, kind, comune_istat, created_at, undeliverable
        FROM notifications
        WHERE published_at IS NULL
        ORDER BY created_at
        LIMIT $1
        FOR UPDATE SKIP LOCKED
        "#,
    )
    .bind(batch)
    .fetch_all(&mut *tx)
    .await?;
    let exchange = topology.events_exchange();
    let mut bodies = Vec::with_capacity(rows.len());
    for (id, kind, comune_istat, created_at, undeliverable) in &rows {
        bodies.push(serde_json::to_vec(&NotificationMessage {
            id: *id,
            kind: kind.clone(),
            comune_istat: comune_istat.clone(),
            created_at: *created_at,
            undeliverable: *undeliverable,
        })?);
    }
    let messages: Vec<Outgoing<'_>> = rows
        .iter()
        .zip(&bodies)
        .map(|((id, kind, ..), body)| Outgoing {
            exchange: &exchange,
            routing_key: kind,
            body,
            properties: BasicProperties::default()
                .with_content_type("application/json".into())
                .with_message_id(id.to_string().into())
                .with_type(kind.clone().into()),
            // Any system may bind a queue to `{prefix}.events`; none has to.
            mandatory: false,
        })
        .collect();
    // One round trip for the batch: published together, confirmed together.
    publisher.publish_all(&messages).await?;
    for (id, kind, _, _, undeliverable) in &rows {
        metrics::counter!("raccordo_notifications_total", "kind" => kind.clone()).increment(1);
        if *undeliverable {
            tracing::warn!(notification = %id, kind = %kind, "No referent matches this notification; recorded as undeliverable.");
            metrics::counter!("raccordo_notifications_undeliverable_total", "kind" => kind.clone())
                .increment(1);
        }
    }
    if rows.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    // Numbered for GET /v1/stream one relay at a time, until commit: a reader that sees a
    // number sees every smaller one (CONTRACT 1.2 §10).
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('raccordo.notification_stream'))")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        r#"
        UPDATE notifications n
        SET published_at = now(), stream_seq = numbered.seq
        FROM (
            SELECT id, nextval('notification_stream_seq') AS seq
            FROM (SELECT id, created_at FROM notifications WHERE id = ANY($1) ORDER BY created_at, id) ordered
        ) numbered
        WHERE n.id = numbered.id
        "#,
    )
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows.len())
}

/// The body of a `delivery.<event>` message on `{prefix}.events` (CONTRACT D1): which
/// delivery, what happened, when. Never an address, a name or a diagnostic text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryEventMessage {
    pub notification: Uuid,
    pub kind: String,
    pub referent_id: String,
    /// `email` or `pec`.
    pub channel: String,
    /// The D1 name; the routing key is `delivery.<event>`.
    pub event: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// A DSN's or a refusal's status code (`5.1.1`), where the event has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

type EvidenceRow = (
    i64,
    Uuid,
    String,
    String,
    String,
    String,
    OffsetDateTime,
    Option<String>,
);

/// Publishes up to `batch` timeline events not yet published as `delivery.<event>`;
/// returns how many. Claimed as the notifications are, so relays never publish one twice
/// at once (a crash between publish and mark republishes: consumers key on `message_id`).
pub async fn flush_evidence(
    pool: &PgPool,
    publisher: &Publisher,
    topology: &Topology,
    batch: i64,
) -> Result<usize, RelayError> {
    let mut tx = pool.begin().await?;
    let rows: Vec<EvidenceRow> = sqlx::query_as(
        r#"
        SELECT id, notification_id, kind, referent_id, channel, event, at, details ->> 'status'
        FROM delivery_events
        WHERE published_at IS NULL
        ORDER BY id
        LIMIT $1
        FOR UPDATE SKIP LOCKED
        "#,
    )
    .bind(batch)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let exchange = topology.events_exchange();
    let mut bodies = Vec::with_capacity(rows.len());
    let mut keys = Vec::with_capacity(rows.len());
    for (_, notification, kind, referent_id, channel, event, at, status) in &rows {
        keys.push(format!("delivery.{event}"));
        bodies.push(serde_json::to_vec(&DeliveryEventMessage {
            notification: *notification,
            kind: kind.clone(),
            referent_id: referent_id.clone(),
            channel: channel.clone(),
            event: event.clone(),
            at: *at,
            status: status.clone(),
        })?);
    }
    let messages: Vec<Outgoing<'_>> = rows
        .iter()
        .zip(&bodies)
        .zip(&keys)
        .map(|((row, body), key)| Outgoing {
            exchange: &exchange,
            routing_key: key,
            body,
            properties: BasicProperties::default()
                .with_content_type("application/json".into())
                .with_message_id(format!("delivery-event-{}", row.0).into())
                .with_type(key.clone().into()),
            mandatory: false,
        })
        .collect();
    publisher.publish_all(&messages).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    sqlx::query("UPDATE delivery_events SET published_at = now() WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rows.len())
}

/// Announces deliveries the mailer gave up on in `{prefix}.dead` or `{prefix}.parked`, one
/// message per notification, so that `raccordo dlq` lists and replays them; returns how
/// many messages. The body is the notification's announcement, never its content; replay
/// sends it to `{prefix}.mailer`, whose handler makes the deliveries due again.
pub async fn announce_held(
    pool: &PgPool,
    publisher: &Publisher,
    topology: &Topology,
) -> Result<usize, RelayError> {
    let mut tx = pool.begin().await?;
    let held = super::take_unannounced_held(&mut tx).await?;
    let origin = topology.queue(WorkQueue::Mailer);
    for h in &held {
        let body = serde_json::to_vec(&NotificationMessage {
            id: h.id,
            kind: h.kind.clone(),
            comune_istat: h.comune_istat.clone(),
            created_at: h.created_at,
            undeliverable: false,
        })?;
        let (holding, reason) = match h.held_in {
            HeldIn::Dead => (Holding::Dead, h.reasons.join("; ")),
            HeldIn::Parked => (
                Holding::Parked,
                format!(
                    "gave up after {} attempts: {}",
                    h.attempts,
                    h.reasons.join("; ")
                ),
            ),
        };
        let message = Message {
            body,
            routing_key: h.kind.clone(),
            properties: BasicProperties::default()
                .with_content_type("application/json".into())
                .with_message_id(h.id.to_string().into())
                .with_type(h.kind.clone().into())
                .with_delivery_mode(2),
            attempt: u32::try_from(h.attempts).unwrap_or(0),
            publisher: None,
            span: tracing::Span::none(),
        };
        hold(
            publisher,
            topology,
            holding,
            &origin,
            &message,
            &reason,
            // The body names the notification, never its content: nothing personal to expire.
            &HoldingPolicy::keep(),
            usize::MAX,
        )
        .await?;
        tracing::warn!(notification = %h.id, kind = %h.kind, queue = ?holding, "Emails given up on; held for an operator.");
    }
    tx.commit().await?;
    Ok(held.len())
}

/// Publishes everything pending now, on a connection of its own, then closes it: for
/// commands (`report … --send`) that write notifications without a running hub.
pub async fn publish_pending(pool: &PgPool, settings: &Settings) -> Result<usize, RelayError> {
    let topology = Topology::from_settings(settings);
    let connection = crate::amqp::connect(&settings.amqp, "report").await?;
    let publisher = Publisher::open(&connection).await?;
    topology.declare(publisher.channel()).await?;
    let mut total = 0;
    loop {
        let n = flush_outbox(pool, &publisher, &topology, settings.relay.batch).await?;
        let e = flush_evidence(pool, &publisher, &topology, settings.relay.batch).await?;
        total += n;
        if n == 0 && e == 0 {
            break;
        }
    }
    let _ = connection.close(200, "published".into()).await;
    Ok(total)
}

/// Runs the relay until `token` is cancelled: woken by `signal` at each commit, and by a
/// poll in case a notification was missed (listener reconnecting).
pub async fn run_relay(
    pool: PgPool,
    settings: Arc<Settings>,
    topology: Topology,
    mut signal: OutboxSignal,
    token: CancellationToken,
) {
    let name = "relay";
    'connect: loop {
        let Some(connection) = connect_until_ready(&settings.amqp, name, &token).await else {
            break;
        };
        let publisher = match Publisher::open(&connection).await {
            Ok(p) => p,
            Err(error) => {
                tracing::warn!(error = %error, "Relay could not open a channel.");
                continue;
            }
        };
        if let Err(error) = topology
            .declare_for_workers(&connection, publisher.channel())
            .await
        {
            tracing::warn!(error = %error, "Relay could not declare the topology.");
            continue;
        }
        tracing::info!("Outbox relay started.");
        // Held deliveries are looked for at start, on a `held` NOTIFY and at each poll.
        let mut look_for_held = true;
        loop {
            signal.commits.borrow_and_update();
            if look_for_held {
                signal.held.borrow_and_update();
                if let Err(error) = announce_held(&pool, &publisher, &topology).await {
                    tracing::warn!(error = %ErrorChain(&error), "Relay could not announce held deliveries; retrying.");
                    let _ = connection.close(200, "relay error".into()).await;
                    tokio::select! {
                        _ = token.cancelled() => break 'connect,
                        _ = tokio::time::sleep(settings.relay.poll()) => {}
                    }
                    continue 'connect;
                }
            }
            // Drain everything pending before waiting again: notifications, then the
            // timeline events their commits and the mailers' wrote.
            loop {
                let flushed =
                    match flush_outbox(&pool, &publisher, &topology, settings.relay.batch).await {
                        Ok(n) => flush_evidence(&pool, &publisher, &topology, settings.relay.batch)
                            .await
                            .map(|e| n.max(e)),
                        Err(error) => Err(error),
                    };
                match flushed {
                    Ok(n) if n as i64 >= settings.relay.batch => continue,
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(error = %ErrorChain(&error), "Relay failed; retrying.");
                        let _ = connection.close(200, "relay error".into()).await;
                        tokio::select! {
                            _ = token.cancelled() => break 'connect,
                            _ = tokio::time::sleep(settings.relay.poll()) => {}
                        }
                        continue 'connect;
                    }
                }
            }
            tokio::select! {
                biased;
                _ = token.cancelled() => break 'connect,
                held = wait_for_work(&mut signal, settings.relay.poll()) => look_for_held = held,
            }
        }
    }
    tracing::info!("Outbox relay stopped.");
}

/// Waits for a commit's NOTIFY, or `poll`; true when held deliveries may wait to be
/// announced (a `held` NOTIFY, the poll, a listener reconnected).
async fn wait_for_work(signal: &mut OutboxSignal, poll: std::time::Duration) -> bool {
    tokio::select! {
        biased;
        changed = signal.held.changed() => changed.is_ok() || sleep_then(poll, true).await,
        changed = signal.commits.changed() => changed.is_err() && sleep_then(poll, true).await,
        () = tokio::time::sleep(poll) => true,
    }
}

/// The listener is gone (the process is stopping): poll instead of spinning.
async fn sleep_then(poll: std::time::Duration, value: bool) -> bool {
    tokio::time::sleep(poll).await;
    value
}
