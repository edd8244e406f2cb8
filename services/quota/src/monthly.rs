//! The monthly joint verification (art. 2.8, rule Q7) as `quota.monthly_report`
//! notifications: the whole report to the unscoped `prefettura` (and any unscoped `tavolo`),
//! and each zona's part to the referents scoped to that zona — a Tavolo never receives the
//! figures of other zone.
//!
//! Sent by `raccordo report coverage --send` and, through [`MonthlyVerification`], once a
//! month by whichever replica takes the schedule's advisory lock.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use sqlx::PgConnection;
use time::Date;
use uuid::Uuid;

use raccordo_core::clock::{Clock, SystemClock, YearMonth, rome_date};
use raccordo_core::db::{NewNotification, insert_notification};
use raccordo_core::domain::Role;
use raccordo_core::notification::NotificationKind;
use raccordo_core::registry::recipients_with_roles;
use raccordo_core::schedule::MonthlyJob;
use raccordo_core::settings::QuotaSettings;

use crate::coverage::{CoverageReport, ZonaCoverage, load_coverage};

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
                kind: NotificationKind::QuotaMonthlyReport,
                comune_istat: None,
                payload,
                urgent: false,
                recipients,
            },
        )
        .await?;
        sent.notifications.push(id);
    }
    Ok(sent)
}

/// The template data: the report restricted to `zone`, with a bar width per comune.
fn payload(
    report: &CoverageReport,
    period: YearMonth,
    zone: &[ZonaCoverage],
    zona: Option<&str>,
) -> Value {
    let mut zone_json = serde_json::to_value(zone).unwrap_or(Value::Array(Vec::new()));
    if let Some(list) = zone_json.as_array_mut() {
        for z in list {
            bar(z);
            if let Some(comuni) = z.get_mut("comuni").and_then(Value::as_array_mut) {
                comuni.iter_mut().for_each(bar);
            }
        }
    }
    let count = |f: fn(&crate::coverage::ComuneCoverage) -> bool| {
        zone.iter()
            .flat_map(|z| z.comuni.iter())
            .filter(|c| f(c))
            .count()
    };
    json!({
        "period": period.to_string(),
        "period_label": period.italian(),
        "generated_on": report.generated_on,
        "scope": if zona.is_some() { "zona" } else { "all" },
        "zona": zona,
        "threshold_percentage": report.exclusion_ratio * 100.0,
        "zone_full_percentage": report.zone_full_ratio * 100.0,
        "protocol_signed_on": report.protocol_signed_on,
        "deadline": report.deadline,
        "deadline_passed": report.deadline_passed,
        "comuni_count": count(|_| true),
        "excluded_count": count(|c| c.excluded),
        "flagged_count": count(|c| c.flagged),
        "safeguard_count": count(|c| c.safeguard),
        "zone": zone_json,
    })
}

/// Adds `bar`: the percentage as a whole number from 0 to 100, for the HTML bar.
fn bar(v: &mut Value) {
    let pct = v.get("percentage").and_then(Value::as_f64).unwrap_or(0.0);
    v["bar"] = json!(pct.clamp(0.0, 100.0).round() as i64);
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
