//! RabbitMQ: topology, connections, confirmed publishing, the consume loop, dead letters,
//! queue depths.

mod connection;
mod consumer;
pub mod dead_letter;
mod publisher;
mod queues;
mod topology;

pub use connection::{ConnectError, connect, connect_until_ready};
pub use consumer::{ConsumerContext, HandleError, Handler, Message, Outcome, run_consumer};
pub use publisher::{Outgoing, PublishError, Publisher};
pub use queues::{QueueStatus, depth_of, queue_status};
pub use topology::{Topology, WorkQueue, header_int, header_text, set_header_int, set_header_text};
