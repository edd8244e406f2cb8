//! Coverage per comune and zona as of now (Q2–Q4, salvaguardia, Q7 flags), computed from the
//! registry and the facilities' newest reports with the same functions the worker decides
//! with — the figures of `raccordo report coverage` and of the monthly verification.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::PgConnection;
use time::Date;

use raccordo_core::domain::{ComuneIstat, format_date, parse_date};
use raccordo_core::registry::{Comune, list_comuni_by_istat};
use raccordo_core::settings::QuotaSettings;

use crate::decide::{
    ComuneFigures, Facility, Ratios, Rule, ZonaTotals, flagged, percentage, quota_of, ratio,
    reaches, standing, verification_deadline,
};
use crate::occupancy::ReceptionKind;

/// One comune in the coverage report. The first eight fields are CONTRACT §8.
#[derive(Debug, Clone, Serialize)]
pub struct ComuneCoverage {
    pub istat: String,
    pub nome: String,
    pub zona: String,
    pub quota: i64,
    /// Places of active SPRAR facilities + presences in CAS (Q2).
    pub coverage: i64,
    /// `coverage / quota` as a fraction.
    pub ratio: f64,
    /// Excluded from tenders (Q4).
    pub excluded: bool,
    /// `comune` or `zona` while excluded, else null.
    pub rule: Option<Rule>,
    /// Inhabitants (census).
    pub population: i32,
    /// `coverage / quota` in percent, one decimal.
    pub percentage: f64,
    /// `tabella` (the Prefettura's table) or `calcolata` (Q3).
    pub quota_source: &'static str,
    pub sprar_places: i64,
    pub cas_presences: i64,
    /// Signed the protocol.
    pub signatory: bool,
    /// Under the clausola di salvaguardia (at least one active SPRAR facility).
    pub safeguard: bool,
    /// Still below the exclusion ratio six months after signing (Q7).
    pub flagged: bool,
    /// Facilities with a report.
    pub facilities: usize,
    /// The date of its newest facility report, if any.
    pub last_report: Option<String>,
}

/// One zona omogenea (Milano is one of its own).
#[derive(Debug, Clone, Serialize)]
pub struct ZonaCoverage {
    pub zona: String,
    pub population: i64,
    pub quota: i64,
    pub coverage: i64,
    pub ratio: f64,
    pub percentage: f64,
    /// The zona reached `zone_full_ratio` of its quota: all its signatories are excluded.
    pub full: bool,
    /// Comuni excluded, by either rule.
    pub excluded: usize,
    /// Comuni flagged by Q7.
    pub flagged: usize,
    /// Comuni under the salvaguardia.
    pub safeguard: usize,
    pub last_report: Option<String>,
    pub comuni: Vec<ComuneCoverage>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct CoverageReport {
    /// The day (Europe/Rome) the figures are for.
    pub generated_on: String,
    pub exclusion_ratio: f64,
    pub zone_full_ratio: f64,
    pub protocol_signed_on: String,
    /// Six months after signing: from then on, comuni below the ratio are flagged (Q7).
    pub deadline: String,
    pub deadline_passed: bool,
    pub zone: Vec<ZonaCoverage>,
}

impl CoverageReport {
    /// The columns of the CSV form (`report coverage --format csv`, the console's download):
    /// CONTRACT §8's eight first.
    pub const CSV_HEADER: [&'static str; 18] = [
        "istat",
        "nome",
        "zona",
        "quota",
        "coverage",
        "ratio",
        "excluded",
        "rule",
        "population",
        "percentage",
        "quota_source",
        "sprar_places",
        "cas_presences",
        "signatory",
        "safeguard",
        "flagged",
        "facilities",
        "last_report",
    ];

    /// Every comune, zona by zona.
    pub fn comuni(&self) -> impl Iterator<Item = &ComuneCoverage> {
        self.zone.iter().flat_map(|z| z.comuni.iter())
    }

    /// One row per comune, in [`Self::CSV_HEADER`]'s order.
    pub fn csv_rows(&self) -> Vec<Vec<String>> {
        self.comuni()
            .map(|c| {
                vec![
                    c.istat.clone(),
                    c.nome.clone(),
                    c.zona.clone(),
                    c.quota.to_string(),
                    c.coverage.to_string(),
                    format!("{:.4}", c.ratio),
                    c.excluded.to_string(),
                    c.rule.map(|r| r.as_str()).unwrap_or("").to_owned(),
                    c.population.to_string(),
                    format!("{:.1}", c.percentage),
                    c.quota_source.to_owned(),
                    c.sprar_places.to_string(),
                    c.cas_presences.to_string(),
                    c.signatory.to_string(),
                    c.safeguard.to_string(),
                    c.flagged.to_string(),
                    c.facilities.to_string(),
                    c.last_report.clone().unwrap_or_default(),
                ]
            })
            .collect()
    }
}

/// A reception announcement made so far: a change of state (`quota.threshold`), of the
/// salvaguardia (`quota.safeguard`) or a facility over capacity (`reception.over_capacity`).
#[derive(Debug, Clone, Serialize)]
pub struct Announcement {
    pub kind: String,
    pub comune_istat: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    /// The notification's payload: figures of the comune and its zona, never personal data.
    pub payload: serde_json::Value,
}

/// The announcements about one comune, or all, oldest first.
pub async fn load_announcements(
    conn: &mut PgConnection,
    comune: Option<&ComuneIstat>,
) -> Result<Vec<Announcement>, sqlx::Error> {
    let rows: Vec<(
        String,
        Option<String>,
        time::OffsetDateTime,
        serde_json::Value,
    )> = sqlx::query_as(
        r#"
            SELECT kind, comune_istat, created_at, payload
            FROM notifications
            WHERE kind IN ('quota.threshold', 'quota.safeguard', 'reception.over_capacity')
              AND ($1::TEXT IS NULL OR comune_istat = $1)
            ORDER BY created_at, comune_istat
            "#,
    )
    .bind(comune.map(|c| c.as_ref()))
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(kind, comune_istat, created_at, payload)| Announcement {
            kind,
            comune_istat,
            created_at,
            payload,
        })
        .collect())
}

pub(crate) use crate::store::StoredFacility;

/// The figures of every comune of `comuni` (which must hold whole zone), by zona.
pub(crate) fn figures_by_zona<'a>(
    comuni: &'a [Comune],
    facilities: &[Facility],
    per_thousand: f64,
) -> BTreeMap<&'a str, Vec<(&'a Comune, ComuneFigures)>> {
    let mut by_zona: BTreeMap<&str, Vec<(&Comune, ComuneFigures)>> = BTreeMap::new();
    for c in comuni {
        let quota = quota_of(c.popolazione, c.quota, per_thousand);
        let figures = ComuneFigures::compute(&c.istat, c.protocollo, quota, facilities);
        by_zona
            .entry(c.zona.as_str())
            .or_default()
            .push((c, figures));
    }
    by_zona
}

/// Computes the report for one zona or all, as of `today`.
pub async fn load_coverage(
    conn: &mut PgConnection,
    settings: &QuotaSettings,
    zona: Option<&str>,
    today: Date,
) -> Result<CoverageReport, sqlx::Error> {
    let comuni = list_comuni_by_istat(&mut *conn, zona).await?;
    let stored = crate::store::load_facilities(&mut *conn, zona).await?;
    Ok(build_report(&comuni, &stored, settings, today))
}

/// The report from loaded data (pure; unit-tested).
pub(crate) fn build_report(
    comuni: &[Comune],
    stored: &[StoredFacility],
    settings: &QuotaSettings,
    today: Date,
) -> CoverageReport {
    let ratios = Ratios::from(settings);
    // Validated at start-up; a bad value only loses the Q7 flags.
    let signed_on = parse_date(&settings.protocol_signed_on).unwrap_or(Date::MIN);
    let facilities: Vec<Facility> = stored.iter().map(|s| s.facility.clone()).collect();
    let mut zone = Vec::new();
    for (zona, members) in figures_by_zona(comuni, &facilities, settings.per_thousand) {
        let figures: Vec<ComuneFigures> = members.iter().map(|(_, f)| f.clone()).collect();
        let totals = ZonaTotals::of(&figures);
        let mut rows: Vec<ComuneCoverage> = members
            .iter()
            .map(|(c, f)| {
                let own = || stored.iter().filter(|s| s.facility.comune_istat == c.istat);
                let sprar_places = own()
                    .filter(|s| s.facility.kind == ReceptionKind::Sprar)
                    .map(|s| s.facility.coverage())
                    .sum();
                let cas_presences = own()
                    .filter(|s| s.facility.kind == ReceptionKind::Cas)
                    .map(|s| s.facility.coverage())
                    .sum();
                let st = standing(f, totals, ratios);
                ComuneCoverage {
                    istat: c.istat.to_string(),
                    nome: c.nome.clone(),
                    zona: c.zona.clone(),
                    quota: f.quota,
                    coverage: f.coverage,
                    ratio: ratio(f.coverage, f.quota),
                    excluded: st.excluded(),
                    rule: st.rule,
                    population: c.popolazione,
                    percentage: percentage(f.coverage, f.quota),
                    quota_source: if c.quota.is_some() {
                        "tabella"
                    } else {
                        "calcolata"
                    },
                    sprar_places,
                    cas_presences,
                    signatory: c.protocollo,
                    safeguard: f.safeguard,
                    flagged: flagged(f, ratios, today, signed_on),
                    facilities: own().count(),
                    last_report: own().map(|s| s.as_of).max().map(format_date),
                }
            })
            .collect();
        rows.sort_by(|a, b| a.nome.cmp(&b.nome));
        zone.push(ZonaCoverage {
            zona: zona.to_owned(),
            population: rows.iter().map(|r| i64::from(r.population)).sum(),
            quota: totals.quota,
            coverage: totals.coverage,
            ratio: ratio(totals.coverage, totals.quota),
            percentage: percentage(totals.coverage, totals.quota),
            full: reaches(totals.coverage, totals.quota, ratios.zone_full_ratio),
            excluded: rows.iter().filter(|r| r.excluded).count(),
            flagged: rows.iter().filter(|r| r.flagged).count(),
            safeguard: rows.iter().filter(|r| r.safeguard).count(),
            last_report: rows.iter().filter_map(|r| r.last_report.clone()).max(),
            comuni: rows,
        });
    }
    let deadline = verification_deadline(signed_on);
    CoverageReport {
        generated_on: format_date(today),
        exclusion_ratio: ratios.exclusion_ratio,
        zone_full_ratio: ratios.zone_full_ratio,
        protocol_signed_on: settings.protocol_signed_on.clone(),
        deadline: format_date(deadline),
        deadline_passed: today >= deadline,
        zone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn settings() -> QuotaSettings {
        QuotaSettings {
            per_thousand: 2.8,
            exclusion_ratio: 0.5,
            zone_full_ratio: 1.0,
            protocol_signed_on: "2017-05-18".into(),
        }
    }

    fn comune(istat: &str, nome: &str, pop: i32, zona: &str, quota: Option<i32>) -> Comune {
        Comune {
            istat: ComuneIstat::parse(istat).expect("valid"),
            nome: nome.into(),
            popolazione: pop,
            zona: zona.into(),
            ambito: None,
            quota,
            protocollo: true,
            domicilio: false,
        }
    }

    fn facility(
        _id: &str,
        comune: &str,
        kind: ReceptionKind,
        cap: i64,
        pres: i64,
    ) -> StoredFacility {
        StoredFacility {
            facility: Facility {
                comune_istat: ComuneIstat::parse(comune).expect("valid"),
                kind,
                capacity: cap,
                presences: pres,
                active: true,
            },
            as_of: date!(2026 - 03 - 01),
        }
    }

    #[test]
    fn q7_the_report_gives_state_rule_and_flags_per_comune_and_zona() {
        let comuni = vec![
            comune("015140", "Melegnano", 16774, "Sud Est", None),
            comune("015082", "Colturano", 1952, "Sud Est", None),
            comune("015146", "Milano", 1_242_123, "Milano", Some(2692)),
        ];
        let stored = vec![
            facility("a", "015140", ReceptionKind::Cas, 30, 24),
            facility("b", "015082", ReceptionKind::Sprar, 2, 0),
        ];
        let report = build_report(&comuni, &stored, &settings(), date!(2026 - 04 - 01));

        assert_eq!(report.zone.len(), 2);
        let sud_est = report
            .zone
            .iter()
            .find(|z| z.zona == "Sud Est")
            .expect("zona");
        assert_eq!((sud_est.quota, sud_est.coverage), (47 + 6, 26));
        let melegnano = &sud_est.comuni[1];
        assert_eq!(melegnano.nome, "Melegnano");
        assert!(melegnano.excluded);
        assert_eq!(melegnano.rule, Some(Rule::Comune));
        assert!(!melegnano.flagged);
        assert_eq!(melegnano.last_report.as_deref(), Some("2026-03-01"));
        let colturano = &sud_est.comuni[0];
        assert_eq!((colturano.quota, colturano.coverage), (6, 2));
        assert!(colturano.safeguard && colturano.flagged && !colturano.excluded);
        let milano = &report.zone[0];
        assert_eq!(milano.zona, "Milano");
        assert!(milano.comuni[0].flagged);
        assert_eq!(milano.comuni[0].last_report, None);
        assert!(report.deadline_passed);
    }
}
