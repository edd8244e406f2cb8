//! The `data` of the four `asylum.*.v1` types, parsed once at the edge (the schema has
//! already checked them).

use std::fmt;

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use raccordo_core::domain::{ComuneIstat, datetime, iso_date};
use raccordo_core::payload::Person;
use raccordo_core::settings::EvictionSettings;

/// A desk's case number: personal data (it names a person's file). Kept only as its
/// keyed pseudonym; `Debug` and `Display` print nothing of it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct CaseId(String);

impl CaseId {
    /// The keyed pseudonym the hub stores and sends (its own purpose key).
    pub fn pseudonym(&self, keys: &EvictionSettings) -> String {
        raccordo_core::pseudonym::case_pseudonym(keys, &self.0)
    }
}

impl fmt::Debug for CaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CaseId(redacted)")
    }
}

impl fmt::Display for CaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

/// `asylum.vulnerability.v1`.
#[derive(Debug, Clone, Deserialize)]
pub struct Vulnerability {
    pub case_id: CaseId,
    pub desk: String,
    pub comune_istat: ComuneIstat,
    pub categories: Vec<String>,
    #[serde(with = "datetime")]
    pub reported_at: OffsetDateTime,
    pub consent: bool,
    #[serde(default)]
    pub person: Option<Person>,
}

/// What a service did (`action` of `asylum.intervention.v1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    PresaInCarico,
    PrimoIntervento,
    Chiuso,
}

impl Action {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::PresaInCarico => "presa_in_carico",
            Action::PrimoIntervento => "primo_intervento",
            Action::Chiuso => "chiuso",
        }
    }
}

/// `asylum.intervention.v1`.
#[derive(Debug, Clone, Deserialize)]
pub struct Intervention {
    pub case_id: CaseId,
    pub action: Action,
    #[serde(with = "datetime")]
    pub at: OffsetDateTime,
    pub by: String,
}

fn one() -> i32 {
    1
}

/// `asylum.domicile.v1`.
#[derive(Debug, Clone, Deserialize)]
pub struct DomicileRequest {
    pub request_id: String,
    pub case_id: CaseId,
    pub desk: String,
    #[serde(with = "datetime")]
    pub requested_at: OffsetDateTime,
    #[serde(default = "one")]
    pub people: i32,
}

/// A case's state on the SPRAR list (`status` of `asylum.placement.v1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Waiting,
    Placed,
    Exited,
    Withdrawn,
}

impl Status {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Waiting => "waiting",
            Status::Placed => "placed",
            Status::Exited => "exited",
            Status::Withdrawn => "withdrawn",
        }
    }
}

/// Priority on the waiting list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Alta,
    Media,
    Ordinaria,
}

impl Priority {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Alta => "alta",
            Priority::Media => "media",
            Priority::Ordinaria => "ordinaria",
        }
    }
}

/// `asylum.placement.v1`.
#[derive(Debug, Clone, Deserialize)]
pub struct Placement {
    pub case_id: CaseId,
    pub status: Status,
    #[serde(default)]
    pub priority: Option<Priority>,
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(with = "iso_date")]
    pub since: Date,
    #[serde(default)]
    pub desk: Option<String>,
    #[serde(default)]
    pub facility_id: Option<String>,
    #[serde(default)]
    pub comune_istat: Option<ComuneIstat>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_number_never_prints() {
        let v: Vulnerability = serde_json::from_value(serde_json::json!({
            "case_id": "SP-MI-2026-0142", "desk": "d", "comune_istat": "015146",
            "categories": ["salute"], "reported_at": "2026-03-02T09:15:00+01:00",
            "consent": true, "person": {"name": "Amina Diallo"}
        }))
        .expect("valid");
        let shown = format!("{v:?} {}", v.case_id);
        assert!(
            !shown.contains("0142") && !shown.contains("Amina"),
            "{shown}"
        );
    }
}
