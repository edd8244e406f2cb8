//! The reception announcements made so far, read back for operators: each stored payload
//! decoded into typed figures, a payload that does not decode reported, never skipped.

use serde::{Deserialize, Deserializer};
use sqlx::PgConnection;
use time::OffsetDateTime;

use raccordo_core::domain::ComuneIstat;

use crate::coverage::{Announcement, load_announcements};
use crate::decide::Rule;

/// A comune's coverage against its quota when an announcement was made.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Figures {
    pub coverage: i64,
    pub quota: i64,
    /// Coverage as a percentage of the quota, one decimal.
    pub percentage: f64,
}

/// What one announcement said.
#[derive(Debug, Clone, PartialEq)]
pub enum AnnouncementDetail {
    /// `quota.threshold`: the comune left or re-entered the tenders (Q5).
    Threshold {
        excluded: bool,
        /// The rule that applies now; `None` when it re-entered.
        rule: Option<Rule>,
        figures: Figures,
    },
    /// `quota.safeguard`: the salvaguardia began or ended.
    Safeguard { entered: bool, figures: Figures },
    /// `reception.over_capacity`: a facility hosts more than its places (Q6).
    OverCapacity {
        facility_id: String,
        presences: i64,
        capacity: i64,
    },
}

/// One announcement, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnouncementLine {
    pub created_at: OffsetDateTime,
    pub comune_nome: String,
    pub zona: String,
    pub detail: AnnouncementDetail,
}

/// The announcements could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The query failed.
    #[error("failed to read the announcements")]
    Database(#[from] sqlx::Error),
    /// A stored payload is not the one the quota worker writes for its kind.
    #[error("the {kind} announcement made at {created_at} does not decode")]
    Payload {
        kind: String,
        created_at: OffsetDateTime,
        #[source]
        source: serde_json::Error,
    },
    /// A kind the quota worker does not announce.
    #[error("{0} is not a reception announcement")]
    UnknownKind(String),
}

#[derive(Deserialize)]
struct Place {
    comune_nome: String,
    zona: String,
}

#[derive(Deserialize)]
struct ThresholdPayload {
    excluded: bool,
    #[serde(deserialize_with = "rule")]
    rule: Option<Rule>,
    #[serde(flatten)]
    figures: Figures,
}

#[derive(Deserialize)]
struct SafeguardPayload {
    entered: bool,
    #[serde(flatten)]
    figures: Figures,
}

#[derive(Deserialize)]
struct OverCapacityPayload {
    facility_id: String,
    presences: i64,
    capacity: i64,
}

fn rule<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Rule>, D::Error> {
    Option::<String>::deserialize(deserializer)?
        .map(|r| {
            Rule::parse(&r).ok_or_else(|| serde::de::Error::custom(format!("unknown rule {r:?}")))
        })
        .transpose()
}

impl TryFrom<&Announcement> for AnnouncementLine {
    type Error = ReportError;

    fn try_from(a: &Announcement) -> Result<Self, ReportError> {
        let bad = |source| ReportError::Payload {
            kind: a.kind.clone(),
            created_at: a.created_at,
            source,
        };
        let decode = |value: &serde_json::Value| -> Result<AnnouncementDetail, serde_json::Error> {
            Ok(match a.kind.as_str() {
                "quota.threshold" => {
                    let p = ThresholdPayload::deserialize(value)?;
                    AnnouncementDetail::Threshold {
                        excluded: p.excluded,
                        rule: p.rule,
                        figures: p.figures,
                    }
                }
                "quota.safeguard" => {
                    let p = SafeguardPayload::deserialize(value)?;
                    AnnouncementDetail::Safeguard {
                        entered: p.entered,
                        figures: p.figures,
                    }
                }
                _ => {
                    let p = OverCapacityPayload::deserialize(value)?;
                    AnnouncementDetail::OverCapacity {
                        facility_id: p.facility_id,
                        presences: p.presences,
                        capacity: p.capacity,
                    }
                }
            })
        };
        if !matches!(
            a.kind.as_str(),
            "quota.threshold" | "quota.safeguard" | "reception.over_capacity"
        ) {
            return Err(ReportError::UnknownKind(a.kind.clone()));
        }
        let place = Place::deserialize(&a.payload).map_err(bad)?;
        Ok(AnnouncementLine {
            created_at: a.created_at,
            comune_nome: place.comune_nome,
            zona: place.zona,
            detail: decode(&a.payload).map_err(bad)?,
        })
    }
}

/// The announcements about one comune, or all, oldest first, decoded.
pub async fn announcement_lines(
    conn: &mut PgConnection,
    comune: Option<&ComuneIstat>,
) -> Result<Vec<AnnouncementLine>, ReportError> {
    load_announcements(conn, comune)
        .await?
        .iter()
        .map(AnnouncementLine::try_from)
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn announcement(kind: &str, payload: serde_json::Value) -> Announcement {
        Announcement {
            kind: kind.into(),
            comune_istat: Some("015146".into()),
            created_at: OffsetDateTime::UNIX_EPOCH,
            payload,
        }
    }

    #[test]
    fn a_threshold_payload_decodes_into_its_figures_and_rule() {
        let a = announcement(
            "quota.threshold",
            json!({"comune_nome": "Rho", "zona": "Rhodense", "excluded": true, "rule": "zona",
                   "coverage": 30, "quota": 50, "percentage": 60.0, "as_of": "2026-01-15"}),
        );

        let line = AnnouncementLine::try_from(&a).expect("the worker's payload");

        assert_eq!(line.comune_nome, "Rho");
        assert_eq!(
            line.detail,
            AnnouncementDetail::Threshold {
                excluded: true,
                rule: Some(Rule::Zona),
                figures: Figures {
                    coverage: 30,
                    quota: 50,
                    percentage: 60.0
                },
            }
        );
    }

    #[test]
    fn a_payload_missing_a_figure_is_an_error_not_a_blank() {
        let a = announcement(
            "quota.safeguard",
            json!({"comune_nome": "Rho", "zona": "Rhodense", "entered": true}),
        );

        let error = AnnouncementLine::try_from(&a).expect_err("no coverage");

        assert!(matches!(error, ReportError::Payload { .. }), "{error}");
    }

    #[test]
    fn another_kind_is_refused() {
        let a = announcement(
            "housing.ack",
            json!({"comune_nome": "Rho", "zona": "Rhodense"}),
        );

        assert!(matches!(
            AnnouncementLine::try_from(&a),
            Err(ReportError::UnknownKind(_))
        ));
    }
}
