//! What every Raccordo worker shares, written once: configuration, telemetry, the event
//! envelope and its schemas, the broker (topology, consume loop, confirmed publishing,
//! dead letters), the database (migrations, idempotent ingestion, outbox and relay), the
//! registry of comuni and referents, and the operators' HTTP endpoint.
//!
//! # Layout
//! - [`settings`]: the configuration tree (CONTRACT §8).
//! - [`telemetry`]: logging, text or JSON; `ErrorChain` prints an error with its causes.
//! - [`domain`]: parsed values — ISTAT codes, email addresses, roles, scopes, dates.
//! - [`envelope`]: CloudEvents and validation against `schemas/`.
//! - [`amqp`]: topology, consume loop, the `Handler` workers implement and its typed
//!   `HandleError`, publisher, dead and parked messages and each queue's holding policy.
//! - [`db`]: pool, migrations, inbox, outbox, relay, operators' views of the outbox.
//! - [`pg`]: which PostgreSQL faults are transient; whether the server answers.
//! - [`inbound`]: the shared path of every inbound event.
//! - [`origin`]: who published an event, and whether it may say it.
//! - [`registry`]: comuni, referents, recipients.
//! - [`registry_worker`]: the worker of `registry.referent.v1`.
//! - [`fallback`]: who stands in for a delivery that cannot arrive (D3).
//! - [`notification`]: notification kinds and their audiences.
//! - [`payload`]: each kind's data, typed: what workers write and the mailer renders.
//! - [`pseudonym`]: keyed pseudonyms of asylum case numbers, with their own purpose key.
//! - [`health`], [`http`]: readiness and `/healthz`, `/readyz`, `/metrics`.
//! - [`clock`]: the `Clock` workers are given, the current time at the edges; Europe/Rome
//!   days and months.
//! - [`schedule`]: monthly jobs, once per month across replicas.
//! - [`retention`]: what each of core's tables keeps, pruned in batches; the retention log.
//! - [`tls`]: the TLS rule for the broker, the database and the SMTP server.
//! - [`ack`]: acknowledgement tokens and links (CONTRACT D4).
//! - [`delivery_metrics`]: time to delivery and to acknowledgement, deliveries by state (D6).

#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod ack;
pub mod amqp;
pub mod binding;
pub mod clock;
pub mod csv_events;
pub mod db;
pub mod delivery_metrics;
pub mod domain;
pub mod envelope;
pub mod fallback;
pub mod health;
pub mod http;
pub mod http_binding;
pub mod inbound;
pub mod notification;
pub mod origin;
pub mod ownership;
pub mod payload;
pub mod pg;
pub mod preference_link;
pub mod preferences;
pub mod pseudonym;
pub mod registry;
pub mod registry_worker;
pub mod retention;
pub mod schedule;
pub mod settings;
pub mod telemetry;
pub mod tls;
