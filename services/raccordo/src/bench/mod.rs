//! `raccordo bench`: the hub measured end to end, as an operator would see it, and only
//! from outside — so the figures stay comparable while the hub's insides change.
//!
//! It creates its own prefix (`<prefix>-bench-<random>`) and database
//! (`<name>_bench_<random>`) with the sample registry, starts the project's SMTP sink in
//! this process, runs the real `raccordo serve all` (this binary) as a child process for
//! each run, publishes CloudEvents to `{prefix}.inbound` with confirms, and reads the
//! figures off the SMTP sink (what arrived, when), the hub's `/metrics`, `/proc` and
//! `pg_stat_database`. Queues, exchanges and database are removed at the end, also after
//! an error or Ctrl-C.
//!
//! # Layout
//! - [`options`]: the command's options.
//! - `run`: the course of a benchmark (relay, scenarios, runs, clean-up).
//! - `load`: the scenarios' events and the emails each must cause.
//! - `mailbox`: the SMTP sink and the tracker of arrivals (latency, missing, doubles).
//! - `hub`: the `serve all` child process.
//! - `relay`: the raw two-hop relay of the same broker.
//! - `procfs`: CPU time and peak RSS from `/proc`, the machine's details.
//! - `stats`: percentiles and rates.
//! - `report`: the table, the JSON and markdown files.
//! - `progress`: the progress line.
//! - `ingest`, `ingest_load`, `ingest_report`: `--scenario ingest`, the HTTP door alone
//!   (`serve ingest`) against the same events over AMQP: its course, its requests, its table.

pub(crate) mod hub;
mod ingest;
mod ingest_load;
mod ingest_report;
pub(crate) mod load;
pub(crate) mod mailbox;
pub mod options;
pub(crate) mod procfs;
pub(crate) mod progress;
mod relay;
mod report;
mod run;
pub(crate) mod stats;

pub use hub::http_get;
pub use load::Scenario;
pub use options::BenchArgs;
pub(crate) use report::build_profile;
pub use run::run;
pub(crate) use run::{clean_up, isolated_settings};
