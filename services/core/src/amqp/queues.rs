//! Depth and consumers of every queue of the topology, read with passive declarations: what
//! `raccordo status` and the console's overview show.

use lapin::Connection;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde::Serialize;

use super::Topology;

/// One queue as the broker reports it.
#[derive(Debug, Clone, Serialize)]
pub struct QueueStatus {
    pub name: String,
    /// Messages ready; `None` when the queue does not exist.
    pub messages: Option<u32>,
    pub consumers: Option<u32>,
}

/// Every queue of `topology`, in [`Topology::all_queues`] order.
pub async fn queue_status(
    connection: &Connection,
    topology: &Topology,
) -> Result<Vec<QueueStatus>, lapin::Error> {
    let mut queues = Vec::new();
    for name in topology.all_queues() {
        // A passive declare fails on a missing queue and closes the channel: one channel each.
        let channel = connection.create_channel().await?;
        let declared = channel
            .queue_declare(
                name.clone().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        let (messages, consumers) = match declared {
            Ok(q) => (Some(q.message_count()), Some(q.consumer_count())),
            Err(_) => (None, None),
        };
        let _ = channel.close(200, "status".into()).await;
        queues.push(QueueStatus {
            name,
            messages,
            consumers,
        });
    }
    Ok(queues)
}

/// Messages ready in the queue named `name` of `queues` (0 when missing).
pub fn depth_of(queues: &[QueueStatus], name: &str) -> u32 {
    queues
        .iter()
        .find(|q| q.name == name)
        .and_then(|q| q.messages)
        .unwrap_or(0)
}
