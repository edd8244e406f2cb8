//! RabbitMQ: topology, connections, confirmed publishing, the consume loop, dead letters,
//! queue depths.
//!
//! The modules depend one way: `handler` (what workers implement) ← `holding` (moving a
//! message to dead or parked) ← `consumer` (the loop); `dead_letter` (the operators' side)
//! reads what `holding` wrote. `policy` says how long each queue's held messages stay.

mod connection;
mod consumer;
pub mod dead_letter;
mod handler;
mod holding;
mod policy;
mod publisher;
mod queues;
mod reason_it;
mod topology;

pub use connection::{ConnectError, connect, connect_until_ready};
pub use consumer::{ConsumerContext, run_consumer};
pub use handler::{BoxError, Disposition, HandleError, Handler, Message, Outcome, WithPolicy};
pub(crate) use holding::hold;
pub use policy::{HoldingPolicy, MayHoldPersonal};
pub use publisher::{Outgoing, PublishError, Publisher};
pub use queues::{QueueStatus, depth_of, queue_status};
pub use reason_it::reason_it;
pub use topology::{
    PersonalQueueError, Topology, WorkQueue, header_int, header_text, set_header_int,
    set_header_text,
};
