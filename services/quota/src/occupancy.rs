//! `reception.occupancy.v1` as the publisher sends it, parsed once at the edge.

use serde::{Deserialize, Serialize};
use time::Date;

pub use raccordo_core::domain::ReceptionKind;
use raccordo_core::domain::{ComuneIstat, iso_date};

fn default_active() -> bool {
    true
}

/// The `data` of `reception.occupancy.v1` (the schema has already checked it).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OccupancyReport {
    pub facility_id: String,
    pub comune_istat: ComuneIstat,
    pub reception_kind: ReceptionKind,
    pub capacity: u32,
    pub presences: u32,
    #[serde(with = "iso_date")]
    pub as_of: Date,
    /// Whether the SPRAR project is active (default true).
    #[serde(default = "default_active")]
    pub active: bool,
    /// Who published it (the validated publisher), set by the worker: the facility's owner
    /// (CONTRACT 1.2 §3). Not part of the wire format.
    #[serde(skip)]
    pub publisher: String,
}
