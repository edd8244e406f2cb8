//! The soak's publisher, as a careful legacy system is: each event confirmed by the broker
//! before the next; on a lost connection or a missing confirm it connects again (to any
//! node `amqp` names) and publishes the same event again — same CloudEvent id, so the hub
//! takes it once whatever the broker had kept.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection};
use tokio_util::sync::CancellationToken;

use raccordo_core::amqp::connect_until_ready;
use raccordo_core::settings::AmqpSettings;

use crate::bench::load::Event;

/// Bound on the broker's confirm of one event.
const CONFIRM_WITHIN: Duration = Duration::from_secs(10);

/// A publisher that outlives broker faults.
pub struct SoakPublisher {
    settings: AmqpSettings,
    exchange: String,
    open: Option<(Connection, Channel)>,
    /// Publishes that had to be repeated (lost connection, nack, no confirm in time).
    pub republished: u64,
}

impl SoakPublisher {
    pub fn new(settings: AmqpSettings, exchange: String) -> Self {
        Self {
            settings,
            exchange,
            open: None,
            republished: 0,
        }
    }

    /// Publishes `event` until the broker confirms it; `false` when cancelled first.
    pub async fn publish(&mut self, event: &Event, token: &CancellationToken) -> bool {
        loop {
            if self.open.is_none() {
                let Some(connection) =
                    connect_until_ready(&self.settings, "soak-publisher", token).await
                else {
                    return false;
                };
                match open_channel(&connection).await {
                    Ok(channel) => self.open = Some((connection, channel)),
                    Err(error) => {
                        tracing::warn!(%error, "The soak's publisher could not open a channel.");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                }
            }
            if self.try_once(event).await {
                return true;
            }
            self.republished += 1;
            self.open = None;
            if token.is_cancelled() {
                return false;
            }
        }
    }

    async fn try_once(&self, event: &Event) -> bool {
        let Some((_, channel)) = &self.open else {
            return false;
        };
        let properties = BasicProperties::default()
            .with_content_type("application/cloudevents+json".into())
            .with_app_id("raccordo-soak".into())
            .with_delivery_mode(2);
        let Ok(confirm) = channel
            .basic_publish(
                self.exchange.as_str().into(),
                event.routing_key.into(),
                BasicPublishOptions::default(),
                &event.body,
                properties,
            )
            .await
        else {
            return false;
        };
        matches!(
            tokio::time::timeout(CONFIRM_WITHIN, confirm).await,
            Ok(Ok(confirmation)) if confirmation.is_ack()
        )
    }
}

async fn open_channel(connection: &Connection) -> Result<Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}
