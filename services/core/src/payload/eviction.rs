//! `eviction.*`. An alert holds personal data (contact, household, docket number): it is
//! built only under active consent, and its `Debug` prints none of it (CONTRACT C1).

use std::fmt;

use serde::{Deserialize, Serialize};
use time::Date;

use crate::domain::{ComuneIstat, iso_date};

/// What made an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// The citizen asked for help (C2): contact data and the known history.
    Consent,
    /// A step while consent is active (C3): the step's data, household included.
    Step,
}

impl Trigger {
    /// The payload's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Consent => "consent",
            Trigger::Step => "step",
        }
    }
}

/// The `household` of `eviction.step.v1`: who lives in the dwelling. Personal data.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Household {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub members: Option<u16>,
    #[serde(default)]
    pub minors: Option<u16>,
    #[serde(default)]
    pub frail: Option<bool>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
}

impl fmt::Debug for Household {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Household(redacted)")
    }
}

impl fmt::Display for Household {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

/// The `contact` of `eviction.consent.v1`: what the citizen chose to share. Personal data.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
}

impl fmt::Debug for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Contact(redacted)")
    }
}

impl fmt::Display for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

/// A date and a time of day in Europe/Rome, as `YYYY-MM-DD` and `HH:MM`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTime {
    pub date: String,
    pub time: String,
}

/// The next access of the ufficiale giudiziario, and how many days away it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextAccess {
    pub date: String,
    pub time: String,
    /// Days from the alert's day to the access's (Europe/Rome); 0 is the same day.
    pub days: i64,
}

/// One step of a procedure, as the alert lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFacts {
    /// The step's code (`precetto`, …).
    pub step: String,
    pub short: String,
    pub label: String,
    #[serde(with = "iso_date")]
    pub occurred_on: Date,
    pub next_access: Option<AccessTime>,
    pub info_material_delivered: Option<bool>,
}

/// Who recorded the consent decision in force, and when (Europe/Rome).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentFacts {
    /// An office, not a person of the family.
    pub recorded_by: String,
    pub date: String,
    pub time: String,
}

/// `eviction.alert` (C2, C3, C5): a family facing eviction asked for help, or its
/// procedure moved on. Holds personal data.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertPayload {
    pub trigger: Trigger,
    /// The docket number: personal data.
    pub procedure_id: String,
    pub comune_istat: ComuneIstat,
    pub comune_nome: String,
    pub ambito: Option<String>,
    /// The step that made the alert (C3); `None` for a consent's alert.
    pub step: Option<StepFacts>,
    pub current_step: Option<StepFacts>,
    /// The procedure's known steps, oldest first.
    pub history: Vec<StepFacts>,
    pub contact: Option<Contact>,
    pub household: Option<Household>,
    pub urgent: bool,
    pub urgent_within_days: u32,
    pub next_access: Option<NextAccess>,
    pub consent: ConsentFacts,
}

impl fmt::Debug for AlertPayload {
    /// The non-personal facts only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertPayload")
            .field("trigger", &self.trigger)
            .field("comune_istat", &self.comune_istat)
            .field("urgent", &self.urgent)
            .field("history", &self.history.len())
            .finish_non_exhaustive()
    }
}

/// `eviction.consent_revoked` (C4): the docket number from the revocation, which the
/// referents already know, and nothing else personal.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRevokedPayload {
    /// The docket number: personal data.
    pub procedure_id: String,
    pub comune_istat: ComuneIstat,
    pub comune_nome: String,
    pub ambito: Option<String>,
    pub consent: ConsentFacts,
}

impl fmt::Debug for ConsentRevokedPayload {
    /// Without the docket number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsentRevokedPayload")
            .field("comune_istat", &self.comune_istat)
            .finish_non_exhaustive()
    }
}

/// A step's code and label, a column of the statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsStep {
    pub step: String,
    pub label: String,
}

/// One comune's row of the statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsRow {
    pub comune_istat: String,
    pub comune_nome: String,
    /// One masked count per step, in the order of `steps` (`<3` for 1 or 2, `""` when not counted).
    pub counts: Vec<String>,
}

/// `eviction.stats` (C6): one ambito's (or one comune's) masked monthly counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsPayload {
    /// `YYYY-MM`.
    pub month: String,
    pub month_label: String,
    pub ambito: Option<String>,
    /// The comune, when it has no ambito and is a unit of its own.
    pub comune_nome: Option<String>,
    pub steps: Vec<StatsStep>,
    pub rows: Vec<StatsRow>,
}
