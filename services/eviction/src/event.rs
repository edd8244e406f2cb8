//! `eviction.step.v1` and `eviction.consent.v1` as publishers send them, parsed once at
//! the edge into types whose personal parts redact themselves.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use raccordo_core::domain::{ComuneIstat, datetime, iso_date};

use crate::personal::{Contact, Household, ProcedureId};

/// A step of the eviction procedure (Protocollo escomio, art. 3 lett. a).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Intimazione,
    Convalida,
    Precetto,
    AvvisoSloggio,
    Accesso,
    Esecuzione,
}

impl Step {
    /// Every step, in the order a procedure goes through them.
    pub const ALL: [Step; 6] = [
        Step::Intimazione,
        Step::Convalida,
        Step::Precetto,
        Step::AvvisoSloggio,
        Step::Accesso,
        Step::Esecuzione,
    ];

    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Intimazione => "intimazione",
            Step::Convalida => "convalida",
            Step::Precetto => "precetto",
            Step::AvvisoSloggio => "avviso_sloggio",
            Step::Accesso => "accesso",
            Step::Esecuzione => "esecuzione",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|step| step.as_str() == s)
    }

    /// The step's short name, for subjects and tables.
    pub fn short(self) -> &'static str {
        match self {
            Step::AvvisoSloggio => "avviso di sloggio",
            other => other.as_str(),
        }
    }

    /// The step in words, for emails and reports.
    pub fn label(self) -> &'static str {
        match self {
            Step::Intimazione => "intimazione di sfratto",
            Step::Convalida => "convalida dello sfratto",
            Step::Precetto => "precetto",
            Step::AvvisoSloggio => "avviso di sloggio",
            Step::Accesso => "accesso dell'ufficiale giudiziario",
            Step::Esecuzione => "esecuzione dello sfratto",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `data` of `eviction.step.v1` (the schema has already checked it).
#[derive(Debug, Clone, Deserialize)]
pub struct StepEvent {
    pub procedure_id: ProcedureId,
    pub step: Step,
    #[serde(with = "iso_date")]
    pub occurred_on: Date,
    #[serde(default, with = "datetime::option")]
    pub next_access_at: Option<OffsetDateTime>,
    pub comune_istat: ComuneIstat,
    #[serde(default)]
    pub info_material_delivered: Option<bool>,
    #[serde(default)]
    pub household: Option<Household>,
}

/// The citizen's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsentDecision {
    Granted,
    Revoked,
}

impl ConsentDecision {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentDecision::Granted => "granted",
            ConsentDecision::Revoked => "revoked",
        }
    }

    /// Parses the database name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "granted" => Some(ConsentDecision::Granted),
            "revoked" => Some(ConsentDecision::Revoked),
            _ => None,
        }
    }
}

/// The `data` of `eviction.consent.v1`.
#[derive(Debug, Clone, Deserialize)]
pub struct ConsentEvent {
    pub procedure_id: ProcedureId,
    pub comune_istat: ComuneIstat,
    pub decision: ConsentDecision,
    /// The office that collected the decision (not personal data).
    pub recorded_by: String,
    #[serde(with = "datetime")]
    pub recorded_at: OffsetDateTime,
    #[serde(default)]
    pub contact: Option<Contact>,
    /// The court: the `source` of its court's events (added in 1.2). Needed only when two
    /// courts have procedures with this docket number in this comune.
    #[serde(default)]
    pub court: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn c1_a_decoded_step_prints_no_personal_data() {
        let event: StepEvent = serde_json::from_value(json!({
            "procedure_id": "RG-777/2026", "step": "precetto", "occurred_on": "2026-03-02",
            "comune_istat": "015182", "next_access_at": "2026-03-10T09:00:00+01:00",
            "household": {"name": "Famiglia Ornitorinco", "phone": "+39 333 1234567", "members": 3}
        }))
        .expect("valid");
        let printed = format!("{event:?}");
        assert!(!printed.contains("777"), "{printed}");
        assert!(!printed.contains("Ornitorinco"), "{printed}");
        assert!(!printed.contains("1234567"), "{printed}");
        assert!(printed.contains("Precetto"));
    }

    #[test]
    fn c1_a_decoded_consent_prints_no_personal_data() {
        let event: ConsentEvent = serde_json::from_value(json!({
            "procedure_id": "RG-777/2026", "comune_istat": "015182", "decision": "granted",
            "recorded_by": "UNEP Milano", "recorded_at": "2026-03-02T10:00:00Z",
            "contact": {"name": "Ornitorinco", "email": "orni@example.org"}
        }))
        .expect("valid");
        let printed = format!("{event:?}");
        assert!(!printed.contains("777") && !printed.contains("Ornitorinco"));
        assert!(!printed.contains("orni@"));
    }

    #[test]
    fn steps_round_trip_their_names() {
        for step in Step::ALL {
            assert_eq!(Step::parse(step.as_str()), Some(step));
        }
    }
}
