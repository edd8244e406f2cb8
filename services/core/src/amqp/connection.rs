//! Connecting to RabbitMQ, and reconnecting with growing delays after it goes away.
//! lapin does not reconnect by itself in the way the hub needs (redeclare, resume
//! consuming), so every long-running task goes through [`connect_until_ready`].
//!
//! With several addresses (`amqp.urls`, the nodes of one cluster) each connection tries
//! them in their order and logs the node it reached: after a node is lost, the next
//! connection lands on a node still running (RabbitMQ clustering guide, "Clients").

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};
use secrecy::{ExposeSecret, SecretString};
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
    #[error("amqp.url (or an entry of amqp.urls) is not a valid AMQP URL")]
    Url,
    #[error("none of the {tried} broker nodes answered; the last: {last}")]
    NoNode {
        tried: usize,
        last: Box<ConnectError>,
    },
}

/// Opens one connection, named `{prefix}:{task}` so operators (and `rabbitmqctl
/// list_connections client_properties`) can tell installations and tasks apart, to the
/// first of the broker's addresses that answers.
pub async fn connect(settings: &AmqpSettings, name: &str) -> Result<Connection, ConnectError> {
    let addresses = settings.addresses();
    let tried = addresses.len();
    let mut last = ConnectError::Url;
    for url in addresses {
        let (node, connecting) = connect_to(settings, url, name);
        match connecting.await {
            Ok(connection) => {
                tracing::info!(task = name, node = %node, "Connected to the broker.");
                return Ok(connection);
            }
            Err(error) => {
                if tried > 1 {
                    tracing::debug!(task = name, node = %node, error = %error, "Broker node unreachable, trying the next.");
                }
                last = error;
            }
        }
    }
    if tried > 1 {
        return Err(ConnectError::NoNode {
            tried,
            last: Box::new(last),
        });
    }
    Err(last)
}

/// One address: the node as `host:port` (what logs may show: no user, no password), and
/// the connection attempt, bounded.
fn connect_to(
    settings: &AmqpSettings,
    url: &SecretString,
    name: &str,
) -> (
    String,
    impl Future<Output = Result<Connection, ConnectError>> + use<>,
) {
    let properties = ConnectionProperties::default()
        .with_connection_name(format!("{}:{name}", settings.prefix).into());
    // The parser's message may quote the URL, password included: not shown.
    let parsed: Result<lapin::uri::AMQPUri, _> = url.expose_secret().parse();
    let node = parsed.as_ref().map_or_else(
        |_| "?".to_owned(),
        |uri| format!("{}:{}", uri.authority.host, uri.authority.port),
    );
    let connecting = async move {
        let mut uri = parsed.map_err(|_| ConnectError::Url)?;
        uri.query.frame_max.get_or_insert(FRAME_MAX);
        uri.query.heartbeat.get_or_insert(HEARTBEAT_S);
        tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect_uri(uri, properties))
            .await
            .map_err(|_| ConnectError::Timeout(CONNECT_TIMEOUT))?
            .map_err(ConnectError::Broker)
    };
    (node, connecting)
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
