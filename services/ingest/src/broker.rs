//! The HTTP door's connection to the broker: opened on first use, opened again when it
//! died, one confirm-mode channel shared by every request (lapin's channel takes
//! concurrent publishes; each waits for its own confirms).

use std::sync::Arc;

use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection};
use secrecy::SecretString;
use tokio::sync::Mutex;

use raccordo_core::amqp::{Outgoing, Publisher, Topology, connect};
use raccordo_core::http_binding::HttpEvent;
use raccordo_core::origin::{HTTP_PUBLISHER, HTTP_SIGNATURE, sign_http};
use raccordo_core::settings::AmqpSettings;

/// The longest the stop waits for the broker connection to close.
const CLOSE_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Why events were not confirmed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("the broker is unreachable")]
    Unreachable,
    #[error("the broker did not confirm: {0}")]
    NotConfirmed(#[from] raccordo_core::amqp::PublishError),
}

struct Live {
    connection: Arc<Connection>,
    publisher: Publisher,
}

/// The shared connection and channel.
pub struct Broker {
    settings: AmqpSettings,
    topology: Topology,
    keys: Vec<SecretString>,
    live: Mutex<Option<Live>>,
}

impl Broker {
    pub fn new(settings: AmqpSettings, topology: Topology, keys: Vec<SecretString>) -> Self {
        Self {
            settings,
            topology,
            keys,
            live: Mutex::new(None),
        }
    }

    async fn publisher(&self) -> Result<Publisher, BrokerError> {
        let mut slot = self.live.lock().await;
        if let Some(live) = slot.as_ref()
            && live.connection.status().connected()
            && live.publisher.channel().status().connected()
        {
            return Ok(live.publisher.clone());
        }
        let connection = connect(&self.settings, "ingest").await.map_err(|e| {
            tracing::warn!(error = %e, "HTTP ingestion could not reach the broker.");
            BrokerError::Unreachable
        })?;
        let publisher = Publisher::open(&connection).await.map_err(|e| {
            tracing::warn!(error = %e, "HTTP ingestion could not open a channel.");
            BrokerError::Unreachable
        })?;
        // The inbound exchange and the work queues exist before the first event.
        self.topology
            .declare(publisher.channel())
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "HTTP ingestion could not declare the topology.");
                BrokerError::Unreachable
            })?;
        *slot = Some(Live {
            connection: Arc::new(connection),
            publisher: publisher.clone(),
        });
        tracing::info!("HTTP ingestion connected to the broker.");
        Ok(publisher)
    }

    /// Whether a confirm channel is open, opening one when there is none: what `/readyz`
    /// says of the HTTP door.
    pub async fn ready(&self) -> bool {
        self.publisher().await.is_ok()
    }

    /// Publishes the events of `user` to `{prefix}.inbound`, each signed as that user's,
    /// and returns once the broker confirmed every one.
    pub async fn publish(&self, user: &str, events: &[HttpEvent]) -> Result<(), BrokerError> {
        let publisher = self.publisher().await?;
        let exchange = self.topology.inbound_exchange();
        let messages: Vec<Outgoing<'_>> = events
            .iter()
            .map(|event| {
                let routing_key = event.envelope.event_type.as_str();
                let mut headers = FieldTable::default();
                headers.insert(
                    HTTP_PUBLISHER.into(),
                    AMQPValue::LongString(LongString::from(user)),
                );
                headers.insert(
                    HTTP_SIGNATURE.into(),
                    AMQPValue::LongString(LongString::from(sign_http(
                        &self.keys,
                        user,
                        routing_key,
                        &event.body,
                    ))),
                );
                Outgoing {
                    exchange: &exchange,
                    routing_key,
                    body: &event.body,
                    properties: BasicProperties::default()
                        .with_content_type("application/cloudevents+json".into())
                        .with_message_id(event.envelope.id.clone().into())
                        .with_app_id("raccordo-ingest".into())
                        .with_headers(headers),
                    mandatory: true,
                }
            })
            .collect();
        let result = publisher.publish_all(&messages).await;
        if result.is_err() {
            // The next request opens a fresh connection rather than trust this one.
            if let Some(live) = self.live.lock().await.take() {
                let _ = live.connection.close(200, "not confirmed".into()).await;
            }
        }
        result.map_err(BrokerError::from)
    }

    /// Closes the connection, if open, within [`CLOSE_WITHIN`]: a connection being opened
    /// or a broker that does not answer its close never holds up the process's stop.
    pub async fn close(&self) {
        let closing = async {
            if let Some(live) = self.live.lock().await.take() {
                let _ = live.connection.close(200, "ingest stopped".into()).await;
            }
        };
        if tokio::time::timeout(CLOSE_WITHIN, closing).await.is_err() {
            tracing::warn!("HTTP ingestion's broker connection did not close in time; dropped.");
        }
    }
}
