//! The console's one AMQP connection, shared by every page and action: opened on first use,
//! opened again when the broker dropped it, closed with the console. Each use takes a
//! channel of its own, so concurrent pages never see each other's unacknowledged reads.

use std::sync::Arc;

use lapin::Connection;
use tokio::sync::Mutex;

use raccordo_core::amqp::{Publisher, Topology, connect};
use raccordo_core::settings::AmqpSettings;

use crate::render::ConsoleError;

/// The shared connection.
pub(crate) struct Broker {
    settings: AmqpSettings,
    topology: Topology,
    connection: Mutex<Option<Arc<Connection>>>,
}

impl Broker {
    pub(crate) fn new(settings: AmqpSettings, topology: Topology) -> Self {
        Self {
            settings,
            topology,
            connection: Mutex::new(None),
        }
    }

    /// The names of the hub's queues.
    pub(crate) fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The live connection, opened (and the topology declared: replay and purge need the
    /// holding queues) when there is none or the last one died.
    pub(crate) async fn connection(&self) -> Result<Arc<Connection>, ConsoleError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref()
            && connection.status().connected()
        {
            return Ok(connection.clone());
        }
        let connection = connect(&self.settings, "console").await.map_err(|e| {
            tracing::warn!(error = %e, "The console could not reach the broker.");
            ConsoleError::BrokerDown
        })?;
        let publisher = Publisher::open(&connection).await.map_err(|e| {
            tracing::warn!(error = %e, "The console could not open a channel.");
            ConsoleError::BrokerDown
        })?;
        self.topology.declare(publisher.channel()).await?;
        let _ = publisher.channel().close(200, "declared".into()).await;
        let connection = Arc::new(connection);
        *slot = Some(connection.clone());
        tracing::info!("The console connected to the broker.");
        Ok(connection)
    }

    /// Closes the connection, if open.
    pub(crate) async fn close(&self) {
        if let Some(connection) = self.connection.lock().await.take() {
            let _ = connection.close(200, "console stopped".into()).await;
        }
    }
}
