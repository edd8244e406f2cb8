//! `raccordo report coverage` and `raccordo report facilities`: the reception coverage per
//! comune and zona (Q2–Q4, salvaguardia, Q7 flags) and the facility census, as a terminal
//! table, CSV or JSON; `--send` writes the monthly verification (Q7) to the outbox and
//! publishes it, so the mailer of a running hub sends the emails.

use anyhow::Context;
use sqlx::PgPool;

use raccordo_core::clock::{YearMonth, now, rome_date};
use raccordo_core::domain::ComuneIstat;
use raccordo_core::registry::{find_comune_by_name, list_zone};
use raccordo_core::settings::Settings;
use raccordo_quota::census::{Census, CensusTotals, load_census};
use raccordo_quota::coverage::{CoverageReport, ZonaCoverage, load_coverage};
use raccordo_quota::monthly::{SentReport, insert_monthly_report};
use raccordo_quota::reports::{AnnouncementDetail, AnnouncementLine, Figures, announcement_lines};

use crate::database::{Publication, connect_db};
use crate::table::{Format, render, render_csv};

/// Fails with the list of known zone when `zona` names none.
async fn check_zona(pool: &PgPool, zona: Option<&str>) -> anyhow::Result<()> {
    let Some(zona) = zona else { return Ok(()) };
    let mut conn = pool.acquire().await?;
    let zone = list_zone(&mut conn)
        .await
        .context("Failed to read the zone of the registry")?;
    anyhow::ensure!(
        zone.iter().any(|z| z == zona),
        "No comune of the registry is in zona {zona:?}; known zone: {}",
        zone.join(", ")
    );
    Ok(())
}

/// The coverage report as of today (Europe/Rome).
pub async fn coverage(settings: &Settings, zona: Option<&str>) -> anyhow::Result<CoverageReport> {
    let pool = connect_db(settings).await?;
    check_zona(&pool, zona).await?;
    let mut conn = pool.acquire().await?;
    let report = load_coverage(&mut conn, &settings.quota, zona, rome_date(now()))
        .await
        .context("Failed to compute the coverage")?;
    drop(conn);
    pool.close().await;
    Ok(report)
}

/// Renders the coverage report: JSON is CONTRACT §8's array of comuni.
pub(crate) fn format_coverage(report: &CoverageReport, format: Format) -> anyhow::Result<String> {
    match format {
        Format::Json => {
            let comuni: Vec<_> = report.comuni().collect();
            Ok(format!("{}\n", serde_json::to_string_pretty(&comuni)?))
        }
        Format::Csv => render_csv(&CoverageReport::CSV_HEADER, &report.csv_rows()),
        Format::Table => Ok(coverage_table(report)),
    }
}

/// The terminal view: a row per comune, then a row per zona.
fn coverage_table(report: &CoverageReport) -> String {
    const HEADER: [&str; 12] = [
        "zona",
        "comune",
        "istat",
        "population",
        "quota",
        "coverage",
        "%",
        "state",
        "rule",
        "safeguard",
        "last report",
        "q7",
    ];
    const ZONA_HEADER: [&str; 11] = [
        "zona",
        "comuni",
        "population",
        "quota",
        "coverage",
        "%",
        "zona rule",
        "excluded",
        "salvaguardia",
        "below ratio",
        "last report",
    ];
    let rows: Vec<Vec<String>> = report
        .comuni()
        .map(|c| {
            let state = if !c.signatory {
                "non-signatory"
            } else if c.excluded {
                "excluded"
            } else {
                "included"
            };
            vec![
                c.zona.clone(),
                c.nome.clone(),
                c.istat.clone(),
                c.population.to_string(),
                c.quota.to_string(),
                c.coverage.to_string(),
                format!("{:.1}", c.percentage),
                state.to_owned(),
                c.rule.map(|r| r.as_str()).unwrap_or("-").to_owned(),
                if c.safeguard { "salvaguardia" } else { "" }.to_owned(),
                c.last_report.clone().unwrap_or_else(|| "-".into()),
                if c.flagged { "below ratio" } else { "" }.to_owned(),
            ]
        })
        .collect();
    let zone: Vec<Vec<String>> = report.zone.iter().map(zona_row).collect();
    let mut out = format!(
        "Reception coverage as of {} — excluded from tenders at {:.0}% of the comune's quota or {:.0}% of the zona's (art. 2.3, 3.2); q7 flags signatories below the ratio since {}\n\n",
        report.generated_on,
        report.exclusion_ratio * 100.0,
        report.zone_full_ratio * 100.0,
        report.deadline
    );
    out.push_str(&render(&HEADER, &rows));
    out.push('\n');
    out.push_str(&render(&ZONA_HEADER, &zone));
    out
}

fn zona_row(z: &ZonaCoverage) -> Vec<String> {
    vec![
        z.zona.clone(),
        z.comuni.len().to_string(),
        z.population.to_string(),
        z.quota.to_string(),
        z.coverage.to_string(),
        format!("{:.1}", z.percentage),
        if z.full { "full" } else { "" }.to_owned(),
        z.excluded.to_string(),
        z.safeguard.to_string(),
        z.flagged.to_string(),
        z.last_report.clone().unwrap_or_else(|| "-".into()),
    ]
}

/// `--send`: writes the monthly verification (Q7) for the current month to the outbox and
/// publishes it on `{prefix}.events`. If the broker cannot be reached, the notifications
/// stay in the outbox and the relay of a running hub publishes them.
pub async fn send(
    settings: &Settings,
    zona: Option<&str>,
) -> anyhow::Result<(SentReport, Publication)> {
    let pool = connect_db(settings).await?;
    check_zona(&pool, zona).await?;
    let today = rome_date(now());
    let mut tx = pool.begin().await?;
    let sent = insert_monthly_report(&mut tx, &settings.quota, YearMonth::of(today), today, zona)
        .await
        .context("Failed to write the monthly verification")?;
    tx.commit().await?;
    let published = Publication::attempt(&pool, settings).await;
    pool.close().await;
    Ok((sent, published))
}

/// What `--send` did, for the operator.
pub(crate) fn describe_sent(sent: &SentReport, published: &Publication) -> String {
    let mut out = format!(
        "Monthly verification written: {} notification(s) ({} without recipients, recorded as undeliverable); {} comune(i) flagged below the ratio.\n",
        sent.notifications.len(),
        sent.undeliverable,
        sent.flagged
    );
    out.push_str(&published.describe());
    out
}

/// The facility census, optionally of one comune (ISTAT code or name) or one zona.
pub(crate) async fn facilities(
    settings: &Settings,
    comune: Option<&str>,
    zona: Option<&str>,
) -> anyhow::Result<Census> {
    let pool = connect_db(settings).await?;
    check_zona(&pool, zona).await?;
    let istat = match comune {
        None => None,
        Some(c) => Some(resolve_comune(&pool, c).await?),
    };
    let mut conn = pool.acquire().await?;
    let census = load_census(&mut conn, istat.as_ref(), zona)
        .await
        .context("Failed to load the facilities")?;
    drop(conn);
    pool.close().await;
    Ok(census)
}

async fn resolve_comune(pool: &PgPool, comune: &str) -> anyhow::Result<ComuneIstat> {
    if let Ok(istat) = ComuneIstat::parse(comune) {
        return Ok(istat);
    }
    let mut conn = pool.acquire().await?;
    find_comune_by_name(&mut conn, comune)
        .await
        .context("Failed to look the comune up")?
        .with_context(|| {
            format!("No comune is named {comune:?}: give its 6-digit ISTAT code or its exact name")
        })
}

/// Renders the census: facilities, then totals per comune and per zona.
pub(crate) fn format_facilities(census: &Census, format: Format) -> anyhow::Result<String> {
    const HEADER: [&str; 10] = [
        "zona",
        "comune",
        "facility",
        "kind",
        "active",
        "capacity",
        "presences",
        "free",
        "over capacity",
        "as of",
    ];
    let rows: Vec<Vec<String>> = census
        .facilities
        .iter()
        .map(|f| {
            vec![
                f.zona.clone(),
                f.comune_nome.clone(),
                f.facility_id.clone(),
                f.reception_kind.clone(),
                if f.active { "yes" } else { "no" }.to_owned(),
                f.capacity.to_string(),
                f.presences.to_string(),
                f.free_places.to_string(),
                if f.over_capacity { "yes" } else { "" }.to_owned(),
                f.as_of.clone(),
            ]
        })
        .collect();
    match format {
        Format::Json => Ok(format!("{}\n", serde_json::to_string_pretty(census)?)),
        Format::Csv => render_csv(&HEADER, &rows),
        Format::Table => {
            if census.facilities.is_empty() {
                return Ok("No facility has reported yet.\n".into());
            }
            let totals = |t: &[CensusTotals]| -> Vec<Vec<String>> {
                t.iter()
                    .map(|t| {
                        vec![
                            t.zona.clone(),
                            t.nome.clone(),
                            t.facilities.to_string(),
                            t.capacity.to_string(),
                            t.presences.to_string(),
                            t.free_places.to_string(),
                            t.as_of.clone(),
                        ]
                    })
                    .collect()
            };
            let header = [
                "zona",
                "name",
                "facilities",
                "capacity",
                "presences",
                "free",
                "newest",
            ];
            let mut out = render(&HEADER, &rows);
            out.push_str("\nPer comune\n");
            out.push_str(&render(&header, &totals(&census.comuni)));
            out.push_str("\nPer zona\n");
            out.push_str(&render(&header, &totals(&census.zone)));
            Ok(out)
        }
    }
}

/// The quota announcements made so far, oldest first, as a table (the demo prints it).
pub(crate) async fn announcements(pool: &PgPool) -> anyhow::Result<String> {
    let mut conn = pool.acquire().await?;
    let lines = announcement_lines(&mut conn, None)
        .await
        .context("Failed to read the quota announcements")?;
    let table: Vec<Vec<String>> = lines.iter().map(announcement_row).collect();
    Ok(format!(
        "Reception coverage announcements ({})\n{}",
        lines.len(),
        render(
            &["kind", "comune", "zona", "state", "rule", "coverage/quota"],
            &table
        )
    ))
}

fn announcement_row(line: &AnnouncementLine) -> Vec<String> {
    // `{:?}` prints 50.0 as `50.0`, as the payload's JSON always did.
    let figures = |f: &Figures| format!("{}/{} ({:?}%)", f.coverage, f.quota, f.percentage);
    let (kind, state, rule, figures) = match &line.detail {
        AnnouncementDetail::Threshold {
            excluded,
            rule,
            figures: f,
        } => (
            "quota.threshold",
            if *excluded { "excluded" } else { "included" },
            rule.map_or("-", |r| r.as_str()),
            figures(f),
        ),
        AnnouncementDetail::Safeguard {
            entered,
            figures: f,
        } => (
            "quota.safeguard",
            if *entered {
                "salvaguardia on"
            } else {
                "salvaguardia off"
            },
            "-",
            figures(f),
        ),
        AnnouncementDetail::OverCapacity {
            facility_id,
            presences,
            capacity,
        } => (
            "reception.over_capacity",
            "over capacity",
            "-",
            format!("{facility_id}: {presences} presences, {capacity} places"),
        ),
    };
    vec![
        kind.to_owned(),
        line.comune_nome.clone(),
        line.zona.clone(),
        state.to_owned(),
        rule.to_owned(),
        figures,
    ]
}
