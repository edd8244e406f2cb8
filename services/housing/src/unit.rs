//! `housing.unit.v1` as the publisher sends it, parsed once at the edge.

use serde::{Deserialize, Serialize};
use time::Date;

pub use raccordo_core::domain::{BuildingType, IdentifiedBy, ReceptionKind};
use raccordo_core::domain::{ComuneIstat, iso_date};

/// What the publisher says of the unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Offered,
    Withdrawn,
}

/// The `data` of `housing.unit.v1` (the schema has already checked it).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct HousingUnit {
    pub unit_id: String,
    pub action: Action,
    pub comune_istat: ComuneIstat,
    #[serde(default)]
    pub identified_by: IdentifiedBy,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub places: Option<u16>,
    #[serde(default)]
    pub reception_kind: Option<ReceptionKind>,
    #[serde(default)]
    pub building_type: Option<BuildingType>,
    #[serde(default)]
    pub owner_declaration: Option<bool>,
    #[serde(default, with = "iso_date::option")]
    pub available_from: Option<Date>,
    #[serde(default)]
    pub notes: Option<String>,
}
