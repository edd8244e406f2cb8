//! The asylum worker: the Tavolo provinciale asilo and its sportelli (CONTRACT 1.2 §4
//! "Asylum", rules A1–A6, seed 001).
//!
//! # Layout
//! - [`event`]: the wire forms of the four `asylum.*.v1` types; the case number only as
//!   [`event::CaseId`], whose `Debug` prints nothing.
//! - [`desk`]: a desk is a `sportello_asilo` referent of the registry.
//! - [`pronta`]: vulnerability reports and interventions (A1, A2).
//! - [`domicile`]: domicile requests and the rotation (A3).
//! - [`rotation`]: A3's decision core, the smooth weighted round robin (pure).
//! - [`rotation_store`]: the rotation's tables: credits, pauses, the lock, the periods.
//! - [`domicile_report`]: a year's domiciles per comune against its fair share.
//! - [`placement`]: the SPRAR waiting list (A4, A5).
//! - [`waiting`]: the waiting list as stored, in the list's order (A4, A5).
//! - [`priorities`]: the weekly priority list as a notification (A4).
//! - [`weekly`]: its Monday 08:00 schedule, once across replicas (A4).
//! - [`places`]: places freed in a SPRAR project while cases wait (A5), called by the
//!   quota worker.
//! - [`tavolo`]: the Tavolo's records and its annual relazione-report (A6).
//! - [`retention`]: C9, a case's `person` deleted once the case ended or fell idle.
//! - [`worker`]: the `EventWorker` that dispatches to them, in the inbound transaction.

#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod desk;
pub mod domicile;
pub mod domicile_report;
pub mod event;
pub mod placement;
pub mod places;
pub mod priorities;
pub mod pronta;
pub mod retention;
pub mod rotation;
pub mod rotation_store;
pub mod tavolo;
pub mod waiting;
pub mod weekly;
pub mod worker;

pub use worker::AsylumWorker;
