//! The `raccordo` binary's commands as a library, so end-to-end tests drive exactly what
//! operators run.
//!
//! # Layout
//! - [`cli`]: the command line (clap).
//! - [`serve`]: workers, relay and HTTP endpoint in one process; graceful shutdown.
//! - [`backup`]: `raccordo backup` and `raccordo restore` (pg_dump/pg_restore with a manifest).
//! - [`setup`], [`import`], [`publish`], [`dlq`], [`status`]: operator commands.
//! - [`registry`]: the history of a referent's changes.
//! - [`database`]: the commands' one database pool, and publishing what `--send` wrote.
//! - [`keys`]: rotation of the pseudonym key.
//! - [`report_coverage`]: coverage and facility reports, the monthly verification on demand.
//! - [`domiciles`]: the domicile rotation (pause, resume, list) and its yearly report (A3).
//! - [`report_priorities`]: the SPRAR waiting list and free places (A4), the weekly list on demand.
//! - [`evictions`]: eviction statistics (C6) and the audit trail.
//! - [`ids`]: an operator's audited move of an id to another comune or publisher.
//! - [`retention`]: `retention run` and the daily job: every room's pruning, in order, logged.
//! - [`demo`]: the whole flow on the sample data (`demo_asylum`: the asylum desks' part).
//! - [`bench`]: the hub measured end to end (throughput, latency, CPU, commits, memory).
//! - [`soak`]: the hub for an hour at a steady rate with faults on a schedule.
//! - [`tavolo`]: the Tavolo asilo's records and annual report (A6).
//! - [`table`]: terminal tables and CSV.
//! - [`run`]: dispatches a parsed command.

#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod backup;
pub mod bench;
pub mod cli;
pub mod database;
pub mod demo;
mod demo_asylum;
mod demo_ingest;
pub mod dlq;
pub mod domiciles;
pub mod evictions;
pub mod http_client;
pub mod ids;
pub mod import;
pub mod keys;
pub mod publish;
pub mod publishers;
pub mod registry;
pub mod report_coverage;
pub mod report_priorities;
pub mod retention;
pub mod run;
pub mod serve;
pub mod setup;
pub mod soak;
pub mod status;
pub mod table;
pub mod tavolo;
pub mod timeline;
