//! Pronta accoglienza (CONTRACT A1, A2): a desk's report of a suspected vulnerability, the
//! notice to the social services and the desk, and the 12-hour clock of the first
//! intervention.
//!
//! - [`vulnerability`]: the report → the case, its clock, `asylum.pronta_accoglienza`.
//! - [`intervention`]: what a service did; `presa_in_carico` or `primo_intervento` stops
//!   the clock.
//! - [`overdue`]: the clock, checked every few seconds by every replica, sending one
//!   `asylum.intervention_overdue` per case.
//! - [`facilities`]: the five nearest facilities with free places.
//! - [`recipients`]: who gets which notice.
//! - [`clock`]: the case's clock in the database.

pub mod clock;
pub mod facilities;
pub mod intervention;
pub mod overdue;
pub mod recipients;
pub mod vulnerability;

pub use intervention::intervention;
pub use vulnerability::vulnerability;

/// The first characters of a case pseudonym: enough for an operator to match log lines,
/// and still only a pseudonym.
pub(crate) fn short(case: &str) -> &str {
    case.get(..12).unwrap_or(case)
}
