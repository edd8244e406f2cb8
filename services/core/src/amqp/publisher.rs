//! Publishing with publisher confirms: a message counts as sent only when the broker has
//! acknowledged it and did not return it as unroutable.

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection};

/// Why a publish did not reach a queue.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("the broker returned the message as unroutable: {0}")]
    Returned(String),
    #[error("the channel failed")]
    Channel(#[source] lapin::Error),
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
        let confirm = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory,
                    ..BasicPublishOptions::default()
                },
                body,
                properties.with_delivery_mode(2),
            )
            .await
            .map_err(PublishError::Channel)?
            .await
            .map_err(PublishError::Channel)?;
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
}
