//! Connecting to RabbitMQ, and reconnecting with growing delays after it goes away.
//! lapin does not reconnect by itself in the way the hub needs (redeclare, resume
//! consuming), so every long-running task goes through [`connect_until_ready`].

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::settings::AmqpSettings;

/// Bound on opening a connection: a broker that accepts TCP but never completes the AMQP
/// handshake (overloaded, wedged) must not hang a worker or a command.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The largest frame the hub proposes, unless `amqp.url` sets `?frame_max=`. lapin keeps two
/// buffers of 32 frames per connection: at RabbitMQ's default of 128 KiB that is 8 MiB a
/// connection, touched in full under load; at 16 KiB, 1 MiB. Events are a few KiB, and a
/// larger message simply travels in several frames.
const FRAME_MAX: u32 = 16 * 1024;

/// The heartbeat the hub proposes, in seconds, unless `amqp.url` sets `?heartbeat=`; the
/// lower of the broker's and this one wins. A partition keeps sockets open and sends no RST:
/// only a missed heartbeat tells, after twice the interval (AMQP 0-9-1 §4.2.7). RabbitMQ's
/// own 60 s would leave a consumer attached to nothing, and `/readyz` saying so, for two
/// minutes; 10 s is within RabbitMQ's advice (5–20 s) and notices it within 20 s.
const HEARTBEAT_S: u16 = 10;

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the broker did not complete the AMQP handshake within {0:?}")]
    Timeout(Duration),
    #[error("cannot connect to the broker: {0}")]
    Broker(lapin::Error),
    #[error("amqp.url is not a valid AMQP URL")]
    Url,
}

/// Opens one connection, named `{prefix}:{task}` so operators (and `rabbitmqctl
/// list_connections client_properties`) can tell installations and tasks apart.
pub async fn connect(settings: &AmqpSettings, name: &str) -> Result<Connection, ConnectError> {
    let properties = ConnectionProperties::default()
        .with_connection_name(format!("{}:{name}", settings.prefix).into());
    // The parser's message may quote the URL, password included: not shown.
    let mut uri: lapin::uri::AMQPUri = settings
        .url
        .expose_secret()
        .parse()
        .map_err(|_| ConnectError::Url)?;
    uri.query.frame_max.get_or_insert(FRAME_MAX);
    uri.query.heartbeat.get_or_insert(HEARTBEAT_S);
    tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect_uri(uri, properties))
        .await
        .map_err(|_| ConnectError::Timeout(CONNECT_TIMEOUT))?
        .map_err(ConnectError::Broker)
}

/// Connects, retrying with delays from 200 ms doubling to 10 s, until it succeeds or
/// `token` is cancelled (then `None`).
pub async fn connect_until_ready(
    settings: &AmqpSettings,
    name: &str,
    token: &CancellationToken,
) -> Option<Connection> {
    let mut delay = Duration::from_millis(200);
    loop {
        match connect(settings, name).await {
            Ok(conn) => return Some(conn),
            Err(error) => {
                tracing::warn!(task = name, error = %error, retry_in_ms = delay.as_millis() as u64, "Broker unreachable, retrying.");
            }
        }
        tokio::select! {
            _ = token.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}
