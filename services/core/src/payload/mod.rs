//! The data of each notification kind, typed: what a worker writes to
//! `notifications.payload` and what the mailer's templates read back as `p`.
//!
//! The JSON is the one the workers wrote with `json!` before these types existed (field
//! names, value types, `null` for an absent optional value), so rows stored by older
//! versions still decode. A field that older versions left out is `#[serde(default)]`.
//! Unknown fields are ignored, never refused: a stored row stays readable.
//!
//! [`PayloadError`] names the kind and the field, never a value: eviction payloads hold
//! personal data (CONTRACT C1).

pub mod asylum;
pub mod delivery;
pub mod eviction;
pub mod housing;
pub mod quota;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::notification::NotificationKind;

pub use asylum::{
    ComunePlaces, DomicileAssignedPayload, FreeFacility, InterventionOverduePayload, Person,
    PlaceAvailablePayload, ProntaAccoglienzaPayload, WaitingCase, WeeklyPrioritiesPayload,
};
pub use delivery::{UnacknowledgedPayload, UnacknowledgedRecipient};
pub use eviction::{
    AccessTime, AlertPayload, ConsentFacts, ConsentRevokedPayload, Contact, Household, NextAccess,
    StatsPayload, StatsRow, StatsStep, StepFacts, Trigger,
};
pub use housing::{HousingPayload, RejectReason};
pub use quota::{
    MonthlyComune, MonthlyReportPayload, MonthlyZona, OverCapacityPayload, ReportScope, Rule,
    SafeguardPayload, ThresholdPayload, ThresholdState,
};

/// A notification's data, one variant per [`NotificationKind`]: the kind follows from
/// the variant, so the two never disagree.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// Boxed: by far the largest.
    EvictionAlert(Box<AlertPayload>),
    EvictionConsentRevoked(ConsentRevokedPayload),
    EvictionStats(StatsPayload),
    HousingOffered(HousingPayload),
    HousingAck(HousingPayload),
    /// Carries `reason_code` and `reason`: [`Payload::from_parts`] requires them.
    HousingRejected(HousingPayload),
    HousingConsultation(HousingPayload),
    HousingWithdrawn(HousingPayload),
    QuotaThreshold(ThresholdPayload),
    QuotaMonthlyReport(MonthlyReportPayload),
    QuotaSafeguard(SafeguardPayload),
    ReceptionOverCapacity(OverCapacityPayload),
    DeliveryUnacknowledged(UnacknowledgedPayload),
    /// Boxed: it may carry a person.
    AsylumProntaAccoglienza(Box<ProntaAccoglienzaPayload>),
    AsylumInterventionOverdue(InterventionOverduePayload),
    AsylumDomicileAssigned(DomicileAssignedPayload),
    AsylumWeeklyPriorities(WeeklyPrioritiesPayload),
    AsylumPlaceAvailable(PlaceAvailablePayload),
}

/// A stored payload that is not the one its kind's worker writes. Names the kind and the
/// field (a path such as `history[0].occurred_on`), never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Not one of the hub's kinds.
    #[error("{0:?} is not a notification kind")]
    UnknownKind(String),
    /// A required field is absent.
    #[error("the {kind} payload has no {field}")]
    Missing {
        kind: NotificationKind,
        field: String,
    },
    /// A field holds a value of the wrong type (`null` where one is required, too), or
    /// one outside its set of values.
    #[error("the {kind} payload's {field} has the wrong type or value")]
    Invalid {
        kind: NotificationKind,
        field: String,
    },
}

/// The kinds of the wire, by name or already parsed.
pub trait KindName {
    /// The kind, if it is one of the hub's.
    fn to_kind(&self) -> Result<NotificationKind, PayloadError>;
}

impl KindName for NotificationKind {
    fn to_kind(&self) -> Result<NotificationKind, PayloadError> {
        Ok(*self)
    }
}

impl KindName for &str {
    fn to_kind(&self) -> Result<NotificationKind, PayloadError> {
        NotificationKind::parse(self).ok_or_else(|| PayloadError::UnknownKind((*self).to_owned()))
    }
}

impl KindName for String {
    fn to_kind(&self) -> Result<NotificationKind, PayloadError> {
        self.as_str().to_kind()
    }
}

impl Payload {
    /// The kind this payload is the data of.
    pub fn kind(&self) -> NotificationKind {
        match self {
            Payload::EvictionAlert(_) => NotificationKind::EvictionAlert,
            Payload::EvictionConsentRevoked(_) => NotificationKind::EvictionConsentRevoked,
            Payload::EvictionStats(_) => NotificationKind::EvictionStats,
            Payload::HousingOffered(_) => NotificationKind::HousingOffered,
            Payload::HousingAck(_) => NotificationKind::HousingAck,
            Payload::HousingRejected(_) => NotificationKind::HousingRejected,
            Payload::HousingConsultation(_) => NotificationKind::HousingConsultation,
            Payload::HousingWithdrawn(_) => NotificationKind::HousingWithdrawn,
            Payload::QuotaThreshold(_) => NotificationKind::QuotaThreshold,
            Payload::QuotaMonthlyReport(_) => NotificationKind::QuotaMonthlyReport,
            Payload::QuotaSafeguard(_) => NotificationKind::QuotaSafeguard,
            Payload::ReceptionOverCapacity(_) => NotificationKind::ReceptionOverCapacity,
            Payload::DeliveryUnacknowledged(_) => NotificationKind::DeliveryUnacknowledged,
            Payload::AsylumProntaAccoglienza(_) => NotificationKind::AsylumProntaAccoglienza,
            Payload::AsylumInterventionOverdue(_) => NotificationKind::AsylumInterventionOverdue,
            Payload::AsylumDomicileAssigned(_) => NotificationKind::AsylumDomicileAssigned,
            Payload::AsylumWeeklyPriorities(_) => NotificationKind::AsylumWeeklyPriorities,
            Payload::AsylumPlaceAvailable(_) => NotificationKind::AsylumPlaceAvailable,
        }
    }

    /// The JSON stored in `notifications.payload`.
    ///
    /// # Errors
    /// Only if serde_json refuses a value, which these types never hold.
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(self)
    }

    /// Decodes a stored payload of `kind` (a [`NotificationKind`] or its wire name).
    ///
    /// # Errors
    /// An unknown kind, or a payload that is not the one its kind's worker writes.
    pub fn from_parts(kind: impl KindName, value: &Value) -> Result<Payload, PayloadError> {
        let kind = kind.to_kind()?;
        Ok(match kind {
            NotificationKind::EvictionAlert => Payload::EvictionAlert(decode(kind, value)?),
            NotificationKind::EvictionConsentRevoked => {
                Payload::EvictionConsentRevoked(decode(kind, value)?)
            }
            NotificationKind::EvictionStats => Payload::EvictionStats(decode(kind, value)?),
            NotificationKind::HousingOffered => Payload::HousingOffered(decode(kind, value)?),
            NotificationKind::HousingAck => Payload::HousingAck(decode(kind, value)?),
            NotificationKind::HousingRejected => {
                let p: HousingPayload = decode(kind, value)?;
                p.check_rejection(kind)?;
                Payload::HousingRejected(p)
            }
            NotificationKind::HousingConsultation => {
                Payload::HousingConsultation(decode(kind, value)?)
            }
            NotificationKind::HousingWithdrawn => Payload::HousingWithdrawn(decode(kind, value)?),
            NotificationKind::QuotaThreshold => Payload::QuotaThreshold(decode(kind, value)?),
            NotificationKind::QuotaMonthlyReport => {
                Payload::QuotaMonthlyReport(decode(kind, value)?)
            }
            NotificationKind::QuotaSafeguard => Payload::QuotaSafeguard(decode(kind, value)?),
            NotificationKind::ReceptionOverCapacity => {
                Payload::ReceptionOverCapacity(decode(kind, value)?)
            }
            NotificationKind::DeliveryUnacknowledged => {
                Payload::DeliveryUnacknowledged(decode(kind, value)?)
            }
            NotificationKind::AsylumProntaAccoglienza => {
                Payload::AsylumProntaAccoglienza(decode(kind, value)?)
            }
            NotificationKind::AsylumInterventionOverdue => {
                Payload::AsylumInterventionOverdue(decode(kind, value)?)
            }
            NotificationKind::AsylumDomicileAssigned => {
                Payload::AsylumDomicileAssigned(decode(kind, value)?)
            }
            NotificationKind::AsylumWeeklyPriorities => {
                Payload::AsylumWeeklyPriorities(decode(kind, value)?)
            }
            NotificationKind::AsylumPlaceAvailable => {
                Payload::AsylumPlaceAvailable(decode(kind, value)?)
            }
        })
    }
}

impl Serialize for Payload {
    /// The variant's data alone: the kind is stored in its own column.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Payload::EvictionAlert(p) => p.serialize(s),
            Payload::EvictionConsentRevoked(p) => p.serialize(s),
            Payload::EvictionStats(p) => p.serialize(s),
            Payload::HousingOffered(p)
            | Payload::HousingAck(p)
            | Payload::HousingRejected(p)
            | Payload::HousingConsultation(p)
            | Payload::HousingWithdrawn(p) => p.serialize(s),
            Payload::QuotaThreshold(p) => p.serialize(s),
            Payload::QuotaMonthlyReport(p) => p.serialize(s),
            Payload::QuotaSafeguard(p) => p.serialize(s),
            Payload::ReceptionOverCapacity(p) => p.serialize(s),
            Payload::DeliveryUnacknowledged(p) => p.serialize(s),
            Payload::AsylumProntaAccoglienza(p) => p.serialize(s),
            Payload::AsylumInterventionOverdue(p) => p.serialize(s),
            Payload::AsylumDomicileAssigned(p) => p.serialize(s),
            Payload::AsylumWeeklyPriorities(p) => p.serialize(s),
            Payload::AsylumPlaceAvailable(p) => p.serialize(s),
        }
    }
}

/// Decodes `value` as `T`, keeping only where it failed: serde's own message may quote
/// the value (`invalid type: string "…"`), so it is dropped.
fn decode<T: for<'de> Deserialize<'de>>(
    kind: NotificationKind,
    value: &Value,
) -> Result<T, PayloadError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let at = |name: &str| match path.as_str() {
            "." => name.to_owned(),
            _ => format!("{path}.{name}"),
        };
        // "missing field `name`": the name is one of ours, never a value.
        let missing = e
            .inner()
            .to_string()
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(name, _)| at(name));
        match missing {
            Some(field) => PayloadError::Missing { kind, field },
            None if path == "." => PayloadError::Invalid {
                kind,
                field: "(the payload itself)".to_owned(),
            },
            None => PayloadError::Invalid { kind, field: path },
        }
    })
}

#[cfg(test)]
mod tests;
