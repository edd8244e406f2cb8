//! The eviction worker: steps of eviction procedures and the families' consent decisions,
//! turned into alerts for social services only when a family asked for help, and into
//! anonymous statistics always — rules C1–C7 of the contract (Protocollo d'intesa per la
//! tutela delle fragilità in fase di escomio, art. 2 comma 4, art. 3 lett. a e b).
//!
//! The one invariant above all (C1): without an active `granted` decision, nothing
//! personal — household, contact, the clear docket number — is stored, sent or logged.
//!
//! # Layout
//! - [`personal`]: docket number, household and contact in redacting types; pseudonyms.
//! - [`event`]: the wire form of `eviction.step.v1` and `eviction.consent.v1`.
//! - [`decide`]: the pure decision core (C1–C5): the next state and the verdict, unit-tested
//!   without I/O; the only place a procedure's state changes.
//! - [`store`]: the eviction tables.
//! - [`worker`]: load (lock the procedure) → decide → store → notify, one path for steps
//!   and consent decisions, reading an injected clock.
//! - [`stats`]: monthly statistics per ambito (C6), and their monthly job.
//! - [`scrub`]: removes the docket number from delivered revocation notices.
//! - [`retention`]: C9, the personal data of ended or idle procedures deleted as C4 does.
//! - [`audit`]: who was told what, when, and on whose recorded consent.
//! - [`reports`]: one procedure's counts for operators (the demo's summary).
//! - [`keys`]: the pseudonym key checked against the database, and its rotation.
//! - [`holding`]: the dead-letter policy of the eviction queue (C7).

#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod audit;
pub mod decide;
pub mod event;
pub mod holding;
pub mod keys;
pub mod personal;
mod procedures;
pub mod reports;
pub mod retention;
mod salvage;
pub mod scrub;
pub mod stats;
pub mod store;
pub mod worker;

pub use personal::Pseudonymizer;
pub use worker::EvictionWorker;
