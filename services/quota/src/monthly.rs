//! The monthly joint verification (art. 2.8, rule Q7) as `quota.monthly_report`
//! notifications: the whole report to the unscoped `prefettura` (and any unscoped `tavolo`),
//! and each zona's part to the referents scoped to that zona — a Tavolo never receives the
//! figures of other zone.
//!
//! Sent by `raccordo report coverage --send` and, through [`MonthlyVerification`], once a
//! month by whichever replica takes the schedule's advisory lock.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::PgConnection;
use time::Date;
use uuid::Uuid;

use raccordo_core::clock::{Clock, SystemClock, YearMonth, rome_date};
use raccordo_core::db::{NewNotification, insert_notification};
use raccordo_core::domain::Role;
use raccordo_core::payload::quota::bar;
use raccordo_core::payload::{
    MonthlyComune, MonthlyReportPayload, MonthlyZona, Payload, ReportScope,
};
use raccordo_core::registry::recipients_with_roles;
use raccordo_core::schedule::MonthlyJob;
use raccordo_core::settings::QuotaSettings;

use crate::coverage::{ComuneCoverage, CoverageReport, ZonaCoverage, load_coverage};

/// The roles of a monthly report's audience (CONTRACT §5).
const AUDIENCE: [Role; 2] = [Role::Prefettura, Role::Tavolo];

/// What one sending produced.
#[derive(Debug, Clone)]
pub struct SentReport {
    /// The whole report's notification, then one per zona.
    pub notifications: Vec<Uuid>,
    /// Notifications no referent matched (recorded as undeliverable).
    pub undeliverable: usize,
    /// Comuni flagged by Q7.
    pub flagged: usize,
}

/// Who receives the whole verification: the unscoped `prefettura` and `tavolo` referents.
pub async fn whole_report_recipients(
    conn: &mut PgConnection,
) -> Result<Vec<raccordo_core::registry::Recipient>, sqlx::Error> {
    recipients_with_roles(conn, &AUDIENCE, "all", None).await
}

/// Who receives one zona's part of the verification: the referents scoped to that zona.
pub async fn zona_report_recipients(
    conn: &mut PgConnection,
    zona: &str,
) -> Result<Vec<raccordo_core::registry::Recipient>, sqlx::Error> {
    recipients_with_roles(conn, &AUDIENCE, "zona", Some(zona)).await
}

/// Writes the month's verification to the outbox in `conn`'s transaction, with the
/// figures as of `today`, labelled with `period`: the whole report and every zona's part,
/// or — with `only_zona` — that zona's part alone.
pub async fn insert_monthly_report(
    conn: &mut PgConnection,
    settings: &QuotaSettings,
    period: YearMonth,
    today: Date,
    only_zona: Option<&str>,
) -> Result<SentReport, sqlx::Error> {
    let report = load_coverage(&mut *conn, settings, only_zona, today).await?;
    let mut sent = SentReport {
        notifications: Vec::new(),
        undeliverable: 0,
        flagged: report.zone.iter().map(|z| z.flagged).sum(),
    };
    let mut parts = Vec::new();
    if only_zona.is_none() {
        let whole = whole_report_recipients(&mut *conn).await?;
        parts.push((payload(&report, period, &report.zone, None), whole));
    }
    for zona in &report.zone {
        let recipients = zona_report_recipients(&mut *conn, &zona.zona).await?;
        parts.push((
            payload(
                &report,
                period,
                std::slice::from_ref(zona),
                Some(&zona.zona),
            ),
            recipients,
        ));
    }
    for (payload, recipients) in parts {
        if recipients.is_empty() {
            sent.undeliverable += 1;
        }
        let id = insert_notification(
            conn,
            &NewNotification {
                comune_istat: None,
                payload: Payload::QuotaMonthlyReport(payload),
                urgent: false,
                recipients,
            },
        )
        .await?;
        sent.notifications.push(id);
    }
    Ok(sent)
}

/// The template data: the report restricted to `zone`, with a bar width per zona and comune.
fn payload(
    report: &CoverageReport,
    period: YearMonth,
    zone: &[ZonaCoverage],
    zona: Option<&str>,
) -> MonthlyReportPayload {
    let count = |f: fn(&ComuneCoverage) -> bool| {
        let n = zone
            .iter()
            .flat_map(|z| z.comuni.iter())
            .filter(|c| f(c))
            .count();
        as_u64(n)
    };
    MonthlyReportPayload {
        period: period.to_string(),
        period_label: period.italian(),
        generated_on: report.generated_on.clone(),
        scope: if zona.is_some() {
            ReportScope::Zona
        } else {
            ReportScope::All
        },
        zona: zona.map(str::to_owned),
        threshold_percentage: report.exclusion_ratio * 100.0,
        zone_full_percentage: report.zone_full_ratio * 100.0,
        protocol_signed_on: report.protocol_signed_on.clone(),
        deadline: report.deadline.clone(),
        deadline_passed: report.deadline_passed,
        comuni_count: count(|_| true),
        excluded_count: count(|c| c.excluded),
        flagged_count: count(|c| c.flagged),
        safeguard_count: count(|c| c.safeguard),
        zone: zone.iter().map(monthly_zona).collect(),
    }
}

fn monthly_zona(z: &ZonaCoverage) -> MonthlyZona {
    MonthlyZona {
        zona: z.zona.clone(),
        population: z.population,
        quota: z.quota,
        coverage: z.coverage,
        ratio: z.ratio,
        percentage: z.percentage,
        full: z.full,
        excluded: as_u64(z.excluded),
        flagged: as_u64(z.flagged),
        safeguard: as_u64(z.safeguard),
        last_report: z.last_report.clone(),
        comuni: z.comuni.iter().map(monthly_comune).collect(),
        bar: bar(z.percentage),
    }
}

fn monthly_comune(c: &ComuneCoverage) -> MonthlyComune {
    MonthlyComune {
        istat: c.istat.clone(),
        nome: c.nome.clone(),
        zona: c.zona.clone(),
        quota: c.quota,
        coverage: c.coverage,
        ratio: c.ratio,
        excluded: c.excluded,
        rule: c.rule,
        population: i64::from(c.population),
        percentage: c.percentage,
        quota_source: c.quota_source.to_owned(),
        sprar_places: c.sprar_places,
        cas_presences: c.cas_presences,
        signatory: c.signatory,
        safeguard: c.safeguard,
        flagged: c.flagged,
        facilities: as_u64(c.facilities),
        last_report: c.last_report.clone(),
        bar: bar(c.percentage),
    }
}

/// A count of comuni: far below `u64::MAX`.
fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The monthly job: the verification of the month that just ended, once across replicas.
pub struct MonthlyVerification {
    settings: QuotaSettings,
    clock: Arc<dyn Clock>,
}

impl MonthlyVerification {
    /// A job with the configured quota rules.
    pub fn new(settings: &QuotaSettings) -> Self {
        Self {
            settings: settings.clone(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The same job reading "today" (the Q7 flag's reference day) from `clock`.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Self { clock, ..self }
    }
}

#[async_trait]
impl MonthlyJob for MonthlyVerification {
    fn name(&self) -> &'static str {
        "quota.monthly_report"
    }

    async fn run(&self, tx: &mut PgConnection, month: YearMonth) -> Result<(), sqlx::Error> {
        let sent =
            insert_monthly_report(tx, &self.settings, month, rome_date(self.clock.now()), None)
                .await?;
        tracing::info!(
            month = %month,
            notifications = sent.notifications.len(),
            flagged = sent.flagged,
            "Monthly coverage verification written."
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::decide::Rule;

    fn report() -> CoverageReport {
        let melegnano = ComuneCoverage {
            istat: "015140".into(),
            nome: "Melegnano".into(),
            zona: "Sud Est".into(),
            quota: 47,
            coverage: 24,
            ratio: 0.5106,
            excluded: true,
            rule: Some(Rule::Comune),
            population: 18_000,
            percentage: 51.1,
            quota_source: "tabella",
            sprar_places: 4,
            cas_presences: 20,
            signatory: true,
            safeguard: true,
            flagged: false,
            facilities: 2,
            last_report: Some("2026-10-30".into()),
        };
        CoverageReport {
            generated_on: "2026-11-01".into(),
            exclusion_ratio: 0.5,
            zone_full_ratio: 1.0,
            protocol_signed_on: "2017-05-18".into(),
            deadline: "2017-11-18".into(),
            deadline_passed: true,
            zone: vec![ZonaCoverage {
                zona: "Sud Est".into(),
                population: 18_726,
                quota: 53,
                coverage: 26,
                ratio: 0.49,
                percentage: 49.1,
                full: false,
                excluded: 1,
                flagged: 0,
                safeguard: 1,
                last_report: None,
                comuni: vec![melegnano],
            }],
        }
    }

    #[test]
    fn a_zona_part_writes_the_json_it_always_wrote() {
        let report = report();
        let period = YearMonth::parse("2026-10").expect("valid");

        let payload =
            Payload::QuotaMonthlyReport(payload(&report, period, &report.zone, Some("Sud Est")));
        let value = payload.to_value().expect("encodes");

        let comune = json!({
            "istat": "015140", "nome": "Melegnano", "zona": "Sud Est",
            "quota": 47, "coverage": 24, "ratio": 0.5106, "excluded": true,
            "rule": "comune", "population": 18000, "percentage": 51.1,
            "quota_source": "tabella", "sprar_places": 4, "cas_presences": 20,
            "signatory": true, "safeguard": true, "flagged": false,
            "facilities": 2, "last_report": "2026-10-30", "bar": 51,
        });
        let zona = json!({
            "zona": "Sud Est", "population": 18726, "quota": 53, "coverage": 26,
            "ratio": 0.49, "percentage": 49.1, "full": false, "excluded": 1,
            "flagged": 0, "safeguard": 1, "last_report": null, "bar": 49,
            "comuni": [comune],
        });
        assert_eq!(
            value,
            json!({
                "period": "2026-10",
                "period_label": "ottobre 2026",
                "generated_on": "2026-11-01",
                "scope": "zona",
                "zona": "Sud Est",
                "threshold_percentage": 50.0,
                "zone_full_percentage": 100.0,
                "protocol_signed_on": "2017-05-18",
                "deadline": "2017-11-18",
                "deadline_passed": true,
                "comuni_count": 1,
                "excluded_count": 1,
                "flagged_count": 0,
                "safeguard_count": 1,
                "zone": [zona],
            })
        );
        assert_eq!(
            Payload::from_parts("quota.monthly_report", &value).expect("decodes"),
            payload
        );
    }

    #[test]
    fn the_whole_report_has_no_zona_and_bars_stay_within_0_and_100() {
        let mut report = report();
        report.zone[0].percentage = 130.0;
        report.zone[0].comuni[0].percentage = -2.0;
        let period = YearMonth::parse("2026-10").expect("valid");

        let value = Payload::QuotaMonthlyReport(payload(&report, period, &report.zone, None))
            .to_value()
            .expect("encodes");

        assert_eq!(value["scope"], "all");
        assert_eq!(value["zona"], serde_json::Value::Null);
        assert_eq!(value["zone"][0]["bar"], 100);
        assert_eq!(value["zone"][0]["comuni"][0]["bar"], 0);
    }
}
