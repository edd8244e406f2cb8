//! `quota.*` and `reception.over_capacity`: figures of comuni and zone, never personal data.

use serde::{Deserialize, Serialize};
use time::Date;

use crate::domain::{ComuneIstat, ReceptionKind, iso_date};

/// Which rule excluded a comune (Q4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rule {
    /// Its own coverage reached `exclusion_ratio` of its quota (art. 2.3, 3.2 second part).
    Comune,
    /// Its zona's coverage reached `zone_full_ratio` of the zona's quota (art. 3.2).
    Zona,
}

impl Rule {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Comune => "comune",
            Rule::Zona => "zona",
        }
    }

    /// Parses the wire and database name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "comune" => Some(Rule::Comune),
            "zona" => Some(Rule::Zona),
            _ => None,
        }
    }

    /// How the announcements name it.
    pub fn label(self) -> &'static str {
        match self {
            Rule::Comune => "copertura del Comune",
            Rule::Zona => "copertura della Zona omogenea",
        }
    }
}

/// The `state` of a `quota.threshold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThresholdState {
    Excluded,
    Included,
}

/// `quota.threshold` (Q5): a comune left the tenders, or came back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdPayload {
    pub comune_istat: ComuneIstat,
    pub comune_nome: String,
    pub zona: String,
    pub coverage: i64,
    pub quota: i64,
    /// `coverage / quota` in percent, one decimal.
    pub percentage: f64,
    pub zona_coverage: i64,
    pub zona_quota: i64,
    pub zona_percentage: f64,
    pub threshold_percentage: f64,
    pub zone_full_percentage: f64,
    #[serde(with = "iso_date")]
    pub as_of: Date,
    pub excluded: bool,
    pub state: ThresholdState,
    /// The rule that applies now; `None` on leaving the exclusion.
    pub rule: Option<Rule>,
    /// On leaving the exclusion, the rule that had applied; else `None`.
    pub previous_rule: Option<Rule>,
    /// The rule concerned, in words ([`Rule::label`]).
    pub rule_label: String,
}

/// `quota.safeguard`: the clausola di salvaguardia began or ended for a comune.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SafeguardPayload {
    pub comune_istat: ComuneIstat,
    pub comune_nome: String,
    pub zona: String,
    pub coverage: i64,
    pub quota: i64,
    pub percentage: f64,
    pub zona_coverage: i64,
    pub zona_quota: i64,
    pub zona_percentage: f64,
    pub threshold_percentage: f64,
    pub zone_full_percentage: f64,
    #[serde(with = "iso_date")]
    pub as_of: Date,
    pub entered: bool,
    /// The same as `entered`, under the name templates test.
    pub safeguard: bool,
}

/// `reception.over_capacity` (Q6): a facility hosts more people than it has places.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverCapacityPayload {
    pub facility_id: String,
    pub comune_istat: ComuneIstat,
    pub comune_nome: String,
    pub zona: String,
    pub reception_kind: ReceptionKind,
    pub capacity: u32,
    pub presences: u32,
    /// `presences - capacity`.
    pub excess: u32,
    #[serde(with = "iso_date")]
    pub as_of: Date,
}

/// Whether a monthly report is the whole verification or one zona's part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportScope {
    All,
    Zona,
}

/// `quota.monthly_report` (Q7): the monthly joint verification, whole or of one zona.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonthlyReportPayload {
    /// `YYYY-MM`.
    pub period: String,
    pub period_label: String,
    pub generated_on: String,
    pub scope: ReportScope,
    /// The zona of a zona's part; `None` for the whole report.
    pub zona: Option<String>,
    pub threshold_percentage: f64,
    pub zone_full_percentage: f64,
    pub protocol_signed_on: String,
    pub deadline: String,
    pub deadline_passed: bool,
    pub comuni_count: u64,
    pub excluded_count: u64,
    pub flagged_count: u64,
    pub safeguard_count: u64,
    pub zone: Vec<MonthlyZona>,
}

/// One zona of a monthly report: the coverage report's zona, with a bar width.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonthlyZona {
    pub zona: String,
    pub population: i64,
    pub quota: i64,
    pub coverage: i64,
    pub ratio: f64,
    pub percentage: f64,
    pub full: bool,
    pub excluded: u64,
    pub flagged: u64,
    pub safeguard: u64,
    pub last_report: Option<String>,
    pub comuni: Vec<MonthlyComune>,
    /// The percentage as a whole number from 0 to 100, for the HTML bar ([`bar`]).
    pub bar: i64,
}

/// One comune of a monthly report: the coverage report's comune, with a bar width.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonthlyComune {
    pub istat: String,
    pub nome: String,
    pub zona: String,
    pub quota: i64,
    pub coverage: i64,
    pub ratio: f64,
    pub excluded: bool,
    pub rule: Option<Rule>,
    pub population: i64,
    pub percentage: f64,
    pub quota_source: String,
    pub sprar_places: i64,
    pub cas_presences: i64,
    pub signatory: bool,
    pub safeguard: bool,
    pub flagged: bool,
    pub facilities: u64,
    pub last_report: Option<String>,
    pub bar: i64,
}

/// The width of a percentage's bar: a whole number from 0 to 100.
pub fn bar(percentage: f64) -> i64 {
    // Clamped to 0..=100 first, so the cast cannot truncate.
    percentage.clamp(0.0, 100.0).round() as i64
}
