//! Publishing with publisher confirms: a message counts as sent only when the broker has
//! acknowledged it and did not return it as unroutable.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection};

/// Bound on the broker's confirm: a broker that stops answering must not hang a worker.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a publish did not reach a queue.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("the broker returned the message as unroutable: {0}")]
    Returned(String),
    #[error("the channel failed")]
    Channel(#[source] lapin::Error),
    #[error("the broker did not confirm within {0:?}")]
    Timeout(Duration),
}

/// The properties of a message the hub republishes as itself (a retry, a dead letter, a
/// replay): everything but `user_id`, which RabbitMQ accepts only from the user named in
/// it, and `expiration`, which the hub sets itself where it wants one.
pub fn hub_copy(p: &BasicProperties) -> BasicProperties {
    let mut out = BasicProperties::default();
    if let Some(v) = p.content_type() {
        out = out.with_content_type(v.clone());
    }
    if let Some(v) = p.content_encoding() {
        out = out.with_content_encoding(v.clone());
    }
    if let Some(v) = p.headers() {
        out = out.with_headers(v.clone());
    }
    if let Some(v) = p.priority() {
        out = out.with_priority(*v);
    }
    if let Some(v) = p.correlation_id() {
        out = out.with_correlation_id(v.clone());
    }
    if let Some(v) = p.reply_to() {
        out = out.with_reply_to(v.clone());
    }
    if let Some(v) = p.message_id() {
        out = out.with_message_id(v.clone());
    }
    if let Some(v) = p.timestamp() {
        out = out.with_timestamp(*v);
    }
    if let Some(v) = p.kind() {
        out = out.with_type(v.clone());
    }
    if let Some(v) = p.app_id() {
        out = out.with_app_id(v.clone());
    }
    out
}

/// A channel in confirm mode.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
}

impl Publisher {
    /// Opens a confirm-mode channel on `connection`.
    pub async fn open(connection: &Connection) -> Result<Self, lapin::Error> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self { channel })
    }

    /// The underlying channel (for declarations and passive checks).
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes a persistent message and waits for its confirm. `mandatory` turns an
    /// unroutable message into [`PublishError::Returned`] instead of a silent drop.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        mandatory: bool,
    ) -> Result<(), PublishError> {
        self.publish_all(&[Outgoing {
            exchange,
            routing_key,
            body,
            properties,
            mandatory,
        }])
        .await
    }

    /// Publishes every message, then waits for all their confirms: one round trip to the
    /// broker for the lot instead of one each. Fails if any was not confirmed.
    pub async fn publish_all(&self, messages: &[Outgoing<'_>]) -> Result<(), PublishError> {
        let confirmed = async {
            let mut pending = Vec::with_capacity(messages.len());
            for m in messages {
                let confirm = self
                    .channel
                    .basic_publish(
                        m.exchange.into(),
                        m.routing_key.into(),
                        BasicPublishOptions {
                            mandatory: m.mandatory,
                            ..BasicPublishOptions::default()
                        },
                        m.body,
                        m.properties.clone().with_delivery_mode(2),
                    )
                    .await
                    .map_err(PublishError::Channel)?;
                pending.push(confirm);
            }
            for confirm in pending {
                check(confirm.await.map_err(PublishError::Channel)?)?;
            }
            Ok(())
        };
        tokio::time::timeout(CONFIRM_TIMEOUT, confirmed)
            .await
            .map_err(|_| PublishError::Timeout(CONFIRM_TIMEOUT))?
    }
}

/// One message for [`Publisher::publish_all`].
pub struct Outgoing<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub body: &'a [u8],
    pub properties: BasicProperties,
    /// Turns an unroutable message into [`PublishError::Returned`].
    pub mandatory: bool,
}

fn check(confirm: Confirmation) -> Result<(), PublishError> {
    match confirm {
        // An ack that carries a message is a return: routed nowhere (lapin docs).
        Confirmation::Ack(Some(returned)) => Err(PublishError::Returned(
            returned.reply_text.as_str().to_owned(),
        )),
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Nack(_) => Err(PublishError::Nacked),
        // Cannot happen on a confirm-mode channel; treat as unconfirmed.
        Confirmation::NotRequested => Err(PublishError::Nacked),
    }
}
