//! HTTP ingestion (CONTRACT 1.2 §10): the door for publishers that cannot speak AMQP.
//! CloudEvents over HTTP (structured, batch, binary) and CSV files become the same
//! events a publisher would send to `{prefix}.inbound`, judged as that publisher's;
//! `GET /v1/stream` lets a system poll the hub's notifications with a cursor.

mod broker;
mod door;
mod problem;
mod rate;
mod server;
mod stream;
pub mod tokens;

pub use broker::BrokerError;
pub use door::{CsvJudged, CsvRefusal, Door, RowError};
pub use server::serve_ingest;
