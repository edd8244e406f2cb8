//! `housing.*`: one shape for the five kinds, a unit as the comune described it.

use serde::{Deserialize, Serialize};
use time::Date;

use super::PayloadError;
use crate::domain::{BuildingType, ComuneIstat, IdentifiedBy, ReceptionKind, iso_date};
use crate::notification::NotificationKind;

/// Why an offer is not forwarded (`reason_code` of `housing.rejected`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Art. 2.4: no ex caserme or similar buildings for reception (H2).
    ExCaserma,
    /// The owner's declaration of availability is not on file (H3).
    OwnerDeclarationMissing,
}

impl RejectReason {
    /// The code templates and programs read.
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::ExCaserma => "ex_caserma",
            RejectReason::OwnerDeclarationMissing => "owner_declaration_missing",
        }
    }

    /// The reason in Italian, for the comune.
    pub fn text(self) -> &'static str {
        match self {
            RejectReason::ExCaserma => {
                "Il protocollo (art. 2.4) esclude l'uso di ex caserme o edifici di analoghe caratteristiche per l'accoglienza."
            }
            RejectReason::OwnerDeclarationMissing => {
                "Manca la dichiarazione di disponibilità del proprietario: acquisitela e inviate di nuovo la segnalazione."
            }
        }
    }
}

/// The data of `housing.offered`, `housing.ack`, `housing.rejected`,
/// `housing.consultation` and `housing.withdrawn`: the unit and its comune. No personal
/// data: the address is a dwelling's, offered by the comune.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HousingPayload {
    pub unit_id: String,
    pub comune_istat: ComuneIstat,
    pub comune_nome: String,
    pub zona: String,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub places: Option<u16>,
    #[serde(default)]
    pub reception_kind: Option<ReceptionKind>,
    #[serde(default)]
    pub building_type: Option<BuildingType>,
    pub identified_by: IdentifiedBy,
    #[serde(default, with = "iso_date::option")]
    pub available_from: Option<Date>,
    #[serde(default)]
    pub notes: Option<String>,
    /// The stazione appaltante already had this unit: the offer and its ack are updates.
    /// Absent from the first version's notices other than offers.
    #[serde(default)]
    pub update: bool,
    /// `housing.rejected` only; absent from the other kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<RejectReason>,
    /// The reason's text as it was sent; `housing.rejected` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl HousingPayload {
    /// A rejection says why: both `reason_code` and `reason`.
    pub(super) fn check_rejection(&self, kind: NotificationKind) -> Result<(), PayloadError> {
        let missing = |field: &str| PayloadError::Missing {
            kind,
            field: field.to_owned(),
        };
        if self.reason_code.is_none() {
            return Err(missing("reason_code"));
        }
        if self.reason.is_none() {
            return Err(missing("reason"));
        }
        Ok(())
    }
}
