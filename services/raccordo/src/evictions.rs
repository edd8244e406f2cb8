//! `raccordo report evictions` (C6) and `raccordo audit` (issue 4, item 5).
//!
//! The statistics show `<3` for counts of 1 or 2 wherever they are printed. The audit looks
//! a docket number up by its pseudonym: what the operator types is hashed, never stored.

use anyhow::Context;
use serde::Serialize;
use sqlx::PgPool;

use raccordo_core::clock::{YearMonth, rome_start_of_day};
use raccordo_core::domain::parse_date;
use raccordo_core::settings::Settings;
use raccordo_eviction::Pseudonymizer;
use raccordo_eviction::audit::{self, AuditEntry, AuditFilter, ConsentEntry};
use raccordo_eviction::event::{ConsentDecision, Step};
use raccordo_eviction::personal::ProcedureId;
use raccordo_eviction::reports::procedure_summary;
use raccordo_eviction::stats::{UnitStats, month_stats, send_stats};

use crate::database::{Publication, connect_db};
use crate::table::{Format, render, render_csv};

/// The month's statistics, per ambito.
pub(crate) async fn report(
    settings: &Settings,
    month: YearMonth,
) -> anyhow::Result<Vec<UnitStats>> {
    let pool = connect_db(settings).await?;
    let mut conn = pool.acquire().await?;
    let units = month_stats(&mut conn, month)
        .await
        .context("Failed to read the eviction steps")?;
    drop(conn);
    pool.close().await;
    Ok(units)
}

/// One line of the report, for CSV and JSON.
#[derive(Serialize)]
struct ReportLine<'a> {
    month: String,
    ambito: Option<&'a str>,
    istat: &'a str,
    nome: &'a str,
    counts: &'a std::collections::BTreeMap<&'static str, raccordo_eviction::stats::Count>,
}

/// The report as a table, CSV (one row per comune, one column per step) or JSON.
pub(crate) fn format_report(
    month: YearMonth,
    units: &[UnitStats],
    format: Format,
) -> anyhow::Result<String> {
    if format == Format::Json {
        let lines: Vec<ReportLine<'_>> = units
            .iter()
            .flat_map(|u| u.comuni.iter())
            .map(|c| ReportLine {
                month: month.to_string(),
                ambito: c.ambito.as_deref(),
                istat: &c.istat,
                nome: &c.nome,
                counts: &c.counts,
            })
            .collect();
        return Ok(format!("{}\n", serde_json::to_string_pretty(&lines)?));
    }
    let mut header = vec!["ambito", "istat", "comune"];
    header.extend(Step::ALL.iter().map(|s| s.as_str()));
    let rows: Vec<Vec<String>> = units
        .iter()
        .flat_map(|u| u.comuni.iter())
        .map(|c| {
            let mut row = vec![
                c.ambito.clone().unwrap_or_else(|| "(nessuno)".into()),
                c.istat.clone(),
                c.nome.clone(),
            ];
            row.extend(Step::ALL.iter().map(|s| {
                c.counts
                    .get(s.as_str())
                    .map(ToString::to_string)
                    .unwrap_or_default()
            }));
            row
        })
        .collect();
    if format == Format::Csv {
        return render_csv(&header, &rows);
    }
    if rows.is_empty() {
        return Ok(format!(
            "No eviction steps in {} ({}).\n",
            month,
            month.italian()
        ));
    }
    Ok(format!(
        "Eviction steps in {} ({}), by occurred_on; 1 or 2 shown as <3\n{}",
        month,
        month.italian(),
        render(&header, &rows)
    ))
}

/// Writes one `eviction.stats` per ambito with steps to the outbox and publishes it if the
/// broker answers: (notifications, published).
pub(crate) async fn send(
    settings: &Settings,
    month: YearMonth,
) -> anyhow::Result<(usize, Publication)> {
    let pool = connect_db(settings).await?;
    let mut tx = pool.begin().await?;
    let ids = send_stats(&mut tx, month)
        .await
        .context("Failed to write the eviction statistics")?;
    tx.commit().await?;
    let published = Publication::attempt(&pool, settings).await;
    pool.close().await;
    Ok((ids.len(), published))
}

/// What `report evictions --send` did, for the operator.
pub(crate) fn describe_sent(notifications: usize, published: &Publication) -> String {
    let mut out = format!(
        "Eviction statistics written: {notifications} notification(s), one per ambito with steps.\n"
    );
    out.push_str(&published.describe());
    out
}

/// The audit trail and, for one procedure, its consent decisions.
pub(crate) struct Audit {
    pub entries: Vec<AuditEntry>,
    pub consents: Option<Vec<ConsentEntry>>,
}

/// Reads the audit trail. `since` is a `YYYY-MM-DD` day (from its start in Europe/Rome);
/// `procedure` a docket number, looked up by its pseudonym.
pub(crate) async fn audit(
    settings: &Settings,
    kind: Option<String>,
    since: Option<&str>,
    procedure: Option<&str>,
) -> anyhow::Result<Audit> {
    let since = since
        .map(|s| parse_date(s).map(rome_start_of_day))
        .transpose()
        .context("--since")?;
    let pseudonym = procedure
        .map(|p| {
            ProcedureId::parse(p)
                .map(|id| Pseudonymizer::from_settings(&settings.eviction).pseudonym(&id))
        })
        .transpose()
        .context("--procedure")?;
    let pool = connect_db(settings).await?;
    let mut conn = pool.acquire().await?;
    let entries = audit::list(
        &mut conn,
        &AuditFilter {
            kind,
            since,
            procedure: pseudonym.clone(),
        },
    )
    .await
    .context("Failed to read the audit trail")?;
    let consents = match &pseudonym {
        Some(p) => Some(audit::consent_history(&mut conn, p).await?),
        None => None,
    };
    drop(conn);
    pool.close().await;
    Ok(Audit { entries, consents })
}

/// The audit as a table, CSV or JSON.
pub(crate) fn format_audit(audit: &Audit, format: Format) -> anyhow::Result<String> {
    if format == Format::Json {
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&serde_json::json!({
                "notifications": audit.entries,
                "consent_decisions": audit.consents,
            }))?
        ));
    }
    let header = [
        "created_at",
        "notification",
        "kind",
        "comune",
        "recipient",
        "outcome",
        "at",
        "smtp / error",
        "consent",
    ];
    let rows: Vec<Vec<String>> = audit
        .entries
        .iter()
        .map(|e| {
            vec![
                e.created_at.clone(),
                e.notification_id.to_string(),
                format!("{}{}", e.kind, if e.urgent { " [URGENTE]" } else { "" }),
                e.comune_istat.clone().unwrap_or_default(),
                e.recipient.clone().unwrap_or_else(|| "-".into()),
                e.outcome.clone(),
                e.outcome_at.clone().unwrap_or_default(),
                e.last_error
                    .clone()
                    .or_else(|| e.smtp_response.clone())
                    .unwrap_or_default(),
                match (
                    &e.consent_decision,
                    &e.consent_recorded_by,
                    &e.consent_recorded_at,
                ) {
                    (Some(d), Some(by), Some(at)) => format!("{d} by {by} at {at}"),
                    _ => String::new(),
                },
            ]
        })
        .collect();
    let mut out = if format == Format::Csv {
        render_csv(&header, &rows)?
    } else if rows.is_empty() {
        "No notification matches.\n".to_owned()
    } else {
        render(&header, &rows)
            + "(raccordo timeline NOTIFICATION: what happened to each delivery, receipts and acknowledgements)\n"
    };
    if let Some(consents) = &audit.consents
        && format == Format::Table
    {
        out.push_str("\nConsent decisions of this procedure\n");
        out.push_str(&consents_table(consents));
    }
    Ok(out)
}

/// The consent decisions of one procedure, oldest first.
fn consents_table(consents: &[ConsentEntry]) -> String {
    let rows: Vec<Vec<String>> = consents
        .iter()
        .map(|c| {
            vec![
                c.decision.clone(),
                c.publisher.clone(),
                c.recorded_by.clone(),
                c.recorded_at.clone(),
                c.received_at.clone(),
                match (c.applied, &c.unvalidated) {
                    (true, None) => "yes".to_owned(),
                    (true, Some(why)) => format!("yes, though invalid ({why})"),
                    (false, _) => "no (not after the decision in force)".to_owned(),
                },
            ]
        })
        .collect();
    render(
        &[
            "decision",
            "publisher",
            "recorded_by",
            "recorded_at",
            "received_at",
            "in force",
        ],
        &rows,
    )
}

/// The demo's eviction events: two families, one in Rho that asks for help, one in Milano
/// that never does. Dates in the file are written as if today were [`DEMO_DAY`]; they are
/// moved to today so the Rho family's next access falls within the urgency window.
const DEMO_EVENTS: &str = include_str!("../../../data/demo/evictions.ndjson");

/// The day `data/demo/evictions.ndjson` is written for.
pub(crate) const DEMO_DAY: time::Date = time::macros::date!(2026 - 01 - 15);

/// Docket numbers of the demo families (sample data, not real people).
const DEMO_FAMILIES: [(&str, &str); 2] = [("RG-DEMO-RHO/118", "Rho"), ("RG-DEMO-MI/342", "Milano")];

/// The demo events with their dates moved from [`DEMO_DAY`] to `today`, as NDJSON.
pub(crate) fn demo_events(today: time::Date) -> anyhow::Result<String> {
    use time::format_description::well_known::Rfc3339;
    let shift = today - DEMO_DAY;
    let mut out = String::new();
    for line in DEMO_EVENTS.lines().filter(|l| !l.trim().is_empty()) {
        let mut event: serde_json::Value = serde_json::from_str(line)?;
        let data = &mut event["data"];
        if let Some(on) = data["occurred_on"].as_str() {
            data["occurred_on"] =
                raccordo_core::domain::format_date(parse_date(on)? + shift).into();
        }
        for key in ["next_access_at", "recorded_at"] {
            if let Some(at) = data[key].as_str() {
                let moved = time::OffsetDateTime::parse(at, &Rfc3339)? + shift;
                data[key] = moved.format(&Rfc3339)?.into();
            }
        }
        out.push_str(&serde_json::to_string(&event)?);
        out.push('\n');
    }
    Ok(out)
}

/// Publishes the demo events, one at a time, each once the hub has processed the one
/// before: competing consumers may take events in any order, and the demo tells a story
/// in order (consent first, then the step that makes an urgent alert). Returns how many.
pub(crate) async fn publish_demo(settings: &Settings, pool: &PgPool) -> anyhow::Result<usize> {
    let today = raccordo_core::clock::rome_date(raccordo_core::clock::now());
    let events = demo_events(today)?;
    crate::publish::one_by_one(settings, pool, events.lines(), "eviction").await
}

/// The demo's summary of the two families, and this month's statistics.
pub(crate) async fn demo_summary(pool: &PgPool, settings: &Settings) -> anyhow::Result<String> {
    let pseudonyms = Pseudonymizer::from_settings(&settings.eviction);
    let mut out = String::from("Eviction procedures (Protocollo escomio): consent decides\n");
    let mut conn = pool.acquire().await?;
    for (docket, comune) in DEMO_FAMILIES {
        let pseudonym = pseudonyms.pseudonym(&ProcedureId::parse(docket)?);
        let s = procedure_summary(&mut conn, &pseudonym)
            .await
            .with_context(|| {
                format!("Failed to summarize the procedure of the family in {comune}")
            })?;
        let (steps, alerts, urgent, emails) = (s.steps, s.alerts, s.urgent_alerts, s.emails);
        if s.consent == Some(ConsentDecision::Granted) {
            out.push_str(&format!(
                "  Family in {comune}: asked for help. {steps} steps known; {alerts} alerts ({urgent} urgent: [URGENTE], Importance: high) \
                 → {emails} emails to the servizi sociali of {comune} and its ambito, with the contact data the family chose to share.\n"
            ));
        } else {
            out.push_str(&format!(
                "  Family in {comune}: never consented. {steps} steps counted in the anonymous statistics only; {alerts} alerts, {} personal data stored \
                 (known only as pseudonym {}…).\n",
                if s.personal_held { "SOME" } else { "no" },
                s.stored_as
                    .as_deref()
                    .map_or(pseudonym.short(), |p| &p[..p.len().min(12)])
            ));
        }
    }
    let month = YearMonth::of(raccordo_core::clock::rome_date(raccordo_core::clock::now()));
    let units = month_stats(&mut conn, month).await?;
    out.push_str(&format!(
        "\n{}",
        format_report(month, &units, Format::Table)?
    ));
    out.push_str(&format!(
        "(raccordo report evictions --month {month} --send sends it to each ambito and the prefettura; it goes out by itself when the month ends)\n"
    ));
    Ok(out)
}
