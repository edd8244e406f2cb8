//! `reception.occupancy.v1` as the publisher sends it, parsed once at the edge.

use serde::{Deserialize, Serialize};
use time::Date;

use raccordo_core::domain::{ComuneIstat, iso_date};

/// The reception system a facility belongs to (art. 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum ReceptionKind {
    /// Centro di accoglienza straordinaria: its presences count.
    #[serde(rename = "CAS")]
    Cas,
    /// The comuni's network (SPRAR): its places count while the project is active.
    #[serde(rename = "SPRAR")]
    Sprar,
}

impl ReceptionKind {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceptionKind::Cas => "CAS",
            ReceptionKind::Sprar => "SPRAR",
        }
    }

    /// Parses the wire and database name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "CAS" => Some(ReceptionKind::Cas),
            "SPRAR" => Some(ReceptionKind::Sprar),
            _ => None,
        }
    }
}

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
}
