//! `raccordo report coverage` and `raccordo report facilities`: the reception coverage per
//! comune and zona (Q2–Q4, salvaguardia, Q7 flags) and the facility census, as a terminal
//! table, CSV or JSON; `--send` writes the monthly verification (Q7) to the outbox and
//! publishes it, so the mailer of a running hub sends the emails.

use anyhow::Context;
use sqlx::PgPool;

use raccordo_core::clock::{YearMonth, now, rome_date};
use raccordo_core::db;
use raccordo_core::domain::ComuneIstat;
use raccordo_core::settings::Settings;
use raccordo_quota::census::{Census, CensusTotals, load_census};
use raccordo_quota::coverage::{CoverageReport, load_announcements, load_coverage};
use raccordo_quota::monthly::{SentReport, insert_monthly_report};

use crate::table::{Format, render, render_csv};

async fn pool(settings: &Settings) -> anyhow::Result<PgPool> {
    db::connect(&settings.database).await.with_context(|| {
        format!(
            "Failed to connect to the database {} (run `raccordo setup` first, and scripts/services.sh if PostgreSQL is down)",
            settings.database.database_name().unwrap_or_default()
        )
    })
}

/// Fails with the list of known zone when `zona` names none.
async fn check_zona(pool: &PgPool, zona: Option<&str>) -> anyhow::Result<()> {
    let Some(zona) = zona else { return Ok(()) };
    let zone: Vec<String> = sqlx::query_scalar("SELECT DISTINCT zona FROM comuni ORDER BY zona")
        .fetch_all(pool)
        .await?;
    anyhow::ensure!(
        zone.iter().any(|z| z == zona),
        "No comune of the registry is in zona {zona:?}; known zone: {}",
        zone.join(", ")
    );
    Ok(())
}

/// The coverage report as of today (Europe/Rome).
pub async fn coverage(settings: &Settings, zona: Option<&str>) -> anyhow::Result<CoverageReport> {
    let pool = pool(settings).await?;
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
pub fn format_coverage(report: &CoverageReport, format: Format) -> anyhow::Result<String> {
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
    let rows: Vec<Vec<String>> = report
        .comuni()
        .map(|c| {
            vec![
                c.zona.clone(),
                c.nome.clone(),
                c.istat.clone(),
                c.population.to_string(),
                c.quota.to_string(),
                c.coverage.to_string(),
                format!("{:.1}", c.percentage),
                if !c.signatory {
                    "non-signatory"
                } else if c.excluded {
                    "excluded"
                } else {
                    "included"
                }
                .to_owned(),
                c.rule.map(|r| r.as_str()).unwrap_or("-").to_owned(),
                if c.safeguard { "salvaguardia" } else { "" }.to_owned(),
                c.last_report.clone().unwrap_or_else(|| "-".into()),
                if c.flagged { "below ratio" } else { "" }.to_owned(),
            ]
        })
        .collect();
    match format {
        Format::Json => {
            let comuni: Vec<_> = report.comuni().collect();
            Ok(format!("{}\n", serde_json::to_string_pretty(&comuni)?))
        }
        Format::Csv => render_csv(&CoverageReport::CSV_HEADER, &report.csv_rows()),
        Format::Table => {
            let mut out = format!(
                "Reception coverage as of {} — excluded from tenders at {:.0}% of the comune's quota or {:.0}% of the zona's (art. 2.3, 3.2); q7 flags signatories below the ratio since {}\n\n",
                report.generated_on,
                report.exclusion_ratio * 100.0,
                report.zone_full_ratio * 100.0,
                report.deadline
            );
            out.push_str(&render(&HEADER, &rows));
            let zone: Vec<Vec<String>> = report
                .zone
                .iter()
                .map(|z| {
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
                })
                .collect();
            out.push('\n');
            out.push_str(&render(
                &[
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
                ],
                &zone,
            ));
            Ok(out)
        }
    }
}

/// `--send`: writes the monthly verification (Q7) for the current month to the outbox and
/// publishes it on `{prefix}.events`. If the broker cannot be reached, the notifications
/// stay in the outbox and the relay of a running hub publishes them.
pub async fn send(settings: &Settings, zona: Option<&str>) -> anyhow::Result<(SentReport, bool)> {
    let pool = pool(settings).await?;
    check_zona(&pool, zona).await?;
    let today = rome_date(now());
    let mut tx = pool.begin().await?;
    let sent = insert_monthly_report(&mut tx, &settings.quota, YearMonth::of(today), today, zona)
        .await
        .context("Failed to write the monthly verification")?;
    tx.commit().await?;
    let published = db::publish_pending(&pool, settings).await.is_ok();
    pool.close().await;
    Ok((sent, published))
}

/// What `--send` did, for the operator.
pub fn describe_sent(sent: &SentReport, published: bool) -> String {
    let mut out = format!(
        "Monthly verification written: {} notification(s) ({} without recipients, recorded as undeliverable); {} comune(i) flagged below the ratio.\n",
        sent.notifications.len(),
        sent.undeliverable,
        sent.flagged
    );
    out.push_str(if published {
        "Published on the events exchange: the mailer of a running hub sends the emails.\n"
    } else {
        "The broker is unreachable: the notifications wait in the outbox; a running hub publishes and sends them.\n"
    });
    out
}

/// The facility census, optionally of one comune (ISTAT code or name) or one zona.
pub async fn facilities(
    settings: &Settings,
    comune: Option<&str>,
    zona: Option<&str>,
) -> anyhow::Result<Census> {
    let pool = pool(settings).await?;
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
    let found: Option<String> =
        sqlx::query_scalar("SELECT istat FROM comuni WHERE lower(nome) = lower($1)")
            .bind(comune.trim())
            .fetch_optional(pool)
            .await?;
    let istat = found.with_context(|| {
        format!("No comune is named {comune:?}: give its 6-digit ISTAT code or its exact name")
    })?;
    Ok(ComuneIstat::parse(&istat)?)
}

/// Renders the census: facilities, then totals per comune and per zona.
pub fn format_facilities(census: &Census, format: Format) -> anyhow::Result<String> {
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
pub async fn announcements(pool: &PgPool) -> anyhow::Result<String> {
    let mut conn = pool.acquire().await?;
    let rows: Vec<(String, serde_json::Value)> = load_announcements(&mut conn, None)
        .await?
        .into_iter()
        .map(|a| (a.kind, a.payload))
        .collect();
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|(kind, p)| {
            let (state, rule, figures) = match kind.as_str() {
                "quota.threshold" => (
                    if p["excluded"] == true {
                        "excluded"
                    } else {
                        "included"
                    },
                    text(&p["rule"]),
                    format!("{}/{} ({}%)", p["coverage"], p["quota"], p["percentage"]),
                ),
                "quota.safeguard" => (
                    if p["entered"] == true {
                        "salvaguardia on"
                    } else {
                        "salvaguardia off"
                    },
                    "-".into(),
                    format!("{}/{} ({}%)", p["coverage"], p["quota"], p["percentage"]),
                ),
                _ => (
                    "over capacity",
                    "-".into(),
                    format!(
                        "{}: {} presences, {} places",
                        text(&p["facility_id"]),
                        p["presences"],
                        p["capacity"]
                    ),
                ),
            };
            vec![
                kind.clone(),
                text(&p["comune_nome"]),
                text(&p["zona"]),
                state.to_owned(),
                rule,
                figures,
            ]
        })
        .collect();
    Ok(format!(
        "Reception coverage announcements ({})\n{}",
        rows.len(),
        render(
            &["kind", "comune", "zona", "state", "rule", "coverage/quota"],
            &table
        )
    ))
}
