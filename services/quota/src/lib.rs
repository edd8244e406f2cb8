//! The quota worker: how much reception each comune and each zona omogenea provides against
//! its quota, when a signatory comune is excluded from the Prefettura's tenders, and the
//! monthly joint verification — rules Q1–Q7 of the contract (Protocollo accoglienza
//! art. 1.1, 2.3, 2.8, 3.1, 3.2), plus the *clausola di salvaguardia* extension (Ministry
//! directive of 11/10/2016, quoted in the protocol's premises).
//!
//! # Layout
//! - [`occupancy`]: the wire form of `reception.occupancy.v1`.
//! - [`decide`]: the pure decision core (quota, coverage, state, announcements), unit-tested.
//! - [`store`]: the `reception_facilities` and `quota_state` tables.
//! - [`worker`]: lock the zona, record the report, decide, write the outbox.
//! - [`coverage`]: coverage per comune and zona as of now, for reports and the monthly verification.
//! - [`census`]: the facility census (capacity, presences, free places).
//! - [`reports`]: the announcements made so far, decoded for operators.
//! - [`monthly`]: the monthly verification (Q7) as notifications, and its scheduled job.

#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod census;
pub mod coverage;
pub mod decide;
pub mod monthly;
pub mod occupancy;
pub mod reports;
mod store;

pub use store::move_facility;
pub mod worker;

pub use monthly::MonthlyVerification;
pub use worker::QuotaWorker;
