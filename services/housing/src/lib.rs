//! The housing worker: dwellings that comuni (or the Prefettura) find for the reception of
//! asylum seekers, and what the contracting authority must know of them — rules H1–H5 of
//! the contract (Protocollo accoglienza art. 2.4, 2.9, 3.3).
//!
//! # Layout
//! - [`unit`]: the wire form of `housing.unit.v1`.
//! - [`decide`]: the pure decision core, unit-tested without I/O.
//! - [`store`]: the `housing_units` table.
//! - [`worker`]: load the unit, decide, store, write the outbox.

#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod decide;
mod store;

pub use store::move_unit;
pub mod unit;
pub mod worker;

pub use worker::HousingWorker;
