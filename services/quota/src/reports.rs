//! The reception announcements made so far, read back for operators: each stored payload
//! decoded into typed figures, a payload that does not decode reported, never skipped.

use sqlx::PgConnection;
use time::OffsetDateTime;

use raccordo_core::domain::ComuneIstat;
use raccordo_core::payload::{Payload, PayloadError};

use crate::coverage::{Announcement, load_announcements};
use crate::decide::Rule;

/// A comune's coverage against its quota when an announcement was made.
#[derive(Debug, Clone, Copy, PartialEq)]
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
    #[error("the announcement made at {created_at} does not decode")]
    Payload {
        created_at: OffsetDateTime,
        #[source]
        source: PayloadError,
    },
    /// A kind the quota worker does not announce.
    #[error("{0} is not a reception announcement")]
    UnknownKind(String),
}

impl Figures {
    fn of(coverage: i64, quota: i64, percentage: f64) -> Self {
        Self {
            coverage,
            quota,
            percentage,
        }
    }
}

impl TryFrom<&Announcement> for AnnouncementLine {
    type Error = ReportError;

    fn try_from(a: &Announcement) -> Result<Self, ReportError> {
        if !matches!(
            a.kind.as_str(),
            "quota.threshold" | "quota.safeguard" | "reception.over_capacity"
        ) {
            return Err(ReportError::UnknownKind(a.kind.clone()));
        }
        let payload = Payload::from_parts(a.kind.as_str(), &a.payload).map_err(|source| {
            ReportError::Payload {
                created_at: a.created_at,
                source,
            }
        })?;
        let line = |comune_nome: &str, zona: &str, detail| AnnouncementLine {
            created_at: a.created_at,
            comune_nome: comune_nome.to_owned(),
            zona: zona.to_owned(),
            detail,
        };
        Ok(match payload {
            Payload::QuotaThreshold(p) => line(
                &p.comune_nome,
                &p.zona,
                AnnouncementDetail::Threshold {
                    excluded: p.excluded,
                    rule: p.rule,
                    figures: Figures::of(p.coverage, p.quota, p.percentage),
                },
            ),
            Payload::QuotaSafeguard(p) => line(
                &p.comune_nome,
                &p.zona,
                AnnouncementDetail::Safeguard {
                    entered: p.entered,
                    figures: Figures::of(p.coverage, p.quota, p.percentage),
                },
            ),
            Payload::ReceptionOverCapacity(p) => line(
                &p.comune_nome,
                &p.zona,
                AnnouncementDetail::OverCapacity {
                    facility_id: p.facility_id,
                    presences: i64::from(p.presences),
                    capacity: i64::from(p.capacity),
                },
            ),
            other => return Err(ReportError::UnknownKind(other.kind().to_string())),
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
            json!({"comune_istat": "015182", "comune_nome": "Rho", "zona": "Rhodense",
                   "coverage": 30, "quota": 50, "percentage": 60.0,
                   "zona_coverage": 300, "zona_quota": 300, "zona_percentage": 100.0,
                   "threshold_percentage": 50.0, "zone_full_percentage": 100.0,
                   "as_of": "2026-01-15", "excluded": true, "state": "excluded",
                   "rule": "zona", "previous_rule": null,
                   "rule_label": "copertura della Zona omogenea"}),
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
    fn an_over_capacity_payload_decodes_into_its_facility_and_counts() {
        let a = announcement(
            "reception.over_capacity",
            json!({"facility_id": "CAS-RHO-01", "comune_istat": "015182", "comune_nome": "Rho",
                   "zona": "Rhodense", "reception_kind": "CAS", "capacity": 20,
                   "presences": 23, "excess": 3, "as_of": "2026-01-15"}),
        );

        let line = AnnouncementLine::try_from(&a).expect("the worker's payload");

        assert_eq!(line.zona, "Rhodense");
        assert_eq!(
            line.detail,
            AnnouncementDetail::OverCapacity {
                facility_id: "CAS-RHO-01".into(),
                presences: 23,
                capacity: 20,
            }
        );
    }

    #[test]
    fn a_payload_missing_a_figure_is_an_error_not_a_blank() {
        let a = announcement(
            "quota.safeguard",
            json!({"comune_nome": "Rho", "zona": "Rhodense", "entered": true}),
        );

        let error = AnnouncementLine::try_from(&a).expect_err("no figures");

        assert!(
            matches!(
                &error,
                ReportError::Payload {
                    source: PayloadError::Missing { .. },
                    ..
                }
            ),
            "{error}"
        );
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
