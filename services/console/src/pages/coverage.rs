//! Reception coverage (Q1–Q7, salvaguardia): the comuni by zona omogenea as tiles coloured
//! by coverage as a share of quota, the zone with the 50% and 100% lines, excluded comuni
//! and their rule, the Q7 flag; one comune's facilities and the history of its coverage;
//! the CSV of `raccordo report coverage --format csv`.

use axum::Extension;
use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use minijinja::{Value, context};

use raccordo_core::clock::{now, rome_date};
use raccordo_core::domain::ComuneIstat;
use raccordo_core::payload::Payload;
use raccordo_quota::census::load_census;
use raccordo_quota::coverage::{
    Announcement, ComuneCoverage, CoverageReport, load_announcements, load_coverage,
};

use crate::auth::{Operator, page_context};
use crate::chart;
use crate::params::Segment;
use crate::render::{ConsoleError, local_time};
use crate::state::AppState;

async fn report(state: &AppState) -> Result<CoverageReport, ConsoleError> {
    let mut conn = state.pool.acquire().await?;
    Ok(load_coverage(&mut conn, &state.settings.quota, None, rome_date(now())).await?)
}

/// The colour band of a comune: excluded, or its share of the quota in steps of 25%.
fn band(c: &ComuneCoverage) -> &'static str {
    if !c.signatory {
        "nonsig"
    } else if c.excluded {
        "excluded"
    } else if c.percentage >= 50.0 {
        "p50"
    } else if c.percentage >= 25.0 {
        "p25"
    } else if c.percentage > 0.0 {
        "p1"
    } else {
        "p0"
    }
}

fn state_label(c: &ComuneCoverage) -> &'static str {
    if !c.signatory {
        "non firmatario"
    } else if c.excluded {
        "escluso"
    } else {
        "incluso"
    }
}

fn rule_label(c: &ComuneCoverage) -> Option<&'static str> {
    c.rule.map(|r| match r.as_str() {
        "zona" => "zona piena (art. 3.2)",
        _ => "comune al 50% (art. 2.3)",
    })
}

fn comune_value(c: &ComuneCoverage) -> Value {
    context! {
        istat => c.istat,
        nome => c.nome,
        zona => c.zona,
        quota => c.quota,
        coverage => c.coverage,
        percentage => c.percentage,
        excluded => c.excluded,
        state => state_label(c),
        rule => rule_label(c),
        band => band(c),
        safeguard => c.safeguard,
        flagged => c.flagged,
        sprar => c.sprar_places,
        cas => c.cas_presences,
        population => c.population,
        quota_source => c.quota_source,
        last_report => c.last_report,
        gauge => Value::from_safe_string(chart::gauge(c.percentage, c.excluded)),
    }
}

pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
) -> Result<Response, ConsoleError> {
    let report = report(&state).await?;
    let zone: Vec<Value> = report
        .zone
        .iter()
        .map(|z| {
            context! {
                zona => z.zona,
                quota => z.quota,
                coverage => z.coverage,
                percentage => z.percentage,
                full => z.full,
                excluded => z.excluded,
                flagged => z.flagged,
                safeguard => z.safeguard,
                count => z.comuni.len(),
                gauge => Value::from_safe_string(chart::gauge(z.percentage, z.full)),
                comuni => z.comuni.iter().map(comune_value).collect::<Vec<_>>(),
            }
        })
        .collect();
    let ctx = context! {
        zone => zone,
        generated_on => report.generated_on,
        exclusion => format!("{:.0}", report.exclusion_ratio * 100.0),
        zone_full => format!("{:.0}", report.zone_full_ratio * 100.0),
        deadline => report.deadline,
        deadline_passed => report.deadline_passed,
        total => report.comuni().count(),
        excluded_total => report.comuni().filter(|c| c.excluded).count(),
        ..page_context(&operator, "coverage")
    };
    state.templates.page("coverage.html", ctx)
}

pub(crate) async fn csv(State(state): State<AppState>) -> Result<Response, ConsoleError> {
    let report = report(&state).await?;
    let mut writer = csv::Writer::from_writer(Vec::new());
    let failed = |e: csv::Error| ConsoleError::BadRequest(format!("CSV: {e}"));
    writer
        .write_record(CoverageReport::CSV_HEADER)
        .map_err(failed)?;
    for row in report.csv_rows() {
        writer.write_record(&row).map_err(failed)?;
    }
    let body = writer
        .into_inner()
        .map_err(|e| ConsoleError::BadRequest(format!("CSV: {e}")))?;
    Ok((
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"copertura-{}.csv\"",
                    report.generated_on
                ),
            ),
        ],
        body,
    )
        .into_response())
}

pub(crate) async fn comune(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Segment(istat): Segment,
) -> Result<Response, ConsoleError> {
    let istat = ComuneIstat::parse(&istat)
        .map_err(|_| ConsoleError::NotFound("Codice ISTAT non valido."))?;
    let report = report(&state).await?;
    let c = report
        .comuni()
        .find(|c| c.istat == istat.as_ref())
        .ok_or(ConsoleError::NotFound(
            "Nessun comune del registro ha questo codice.",
        ))?;
    let mut conn = state.pool.acquire().await?;
    let census = load_census(&mut conn, Some(&istat), None).await?;
    let announcements = load_announcements(&mut conn, Some(&istat)).await?;
    drop(conn);
    let shown: Vec<(&Announcement, Shown)> = announcements
        .iter()
        .filter_map(|a| shown(a).map(|s| (a, s)))
        .collect();
    let mut points: Vec<(String, f64)> = shown
        .iter()
        .filter_map(|(a, s)| Some((local_time(a.created_at), s.percentage?)))
        .collect();
    points.push(("oggi".to_owned(), c.percentage));
    let history: Vec<Value> = shown
        .iter()
        .map(|(a, s)| {
            context! {
                at => local_time(a.created_at),
                kind_label => super::kind_label(a.kind.as_str()),
                kind => a.kind,
                what => s.what,
                rule => s.rule,
                coverage => s.coverage,
                quota => s.quota,
                percentage => s.percentage,
                facility => s.facility,
            }
        })
        .collect();
    let ctx = context! {
        c => comune_value(c),
        facilities => census.facilities,
        history => history,
        chart => Value::from_safe_string(chart::history(&points)),
        ..page_context(&operator, "coverage")
    };
    state.templates.page("comune.html", ctx)
}

/// What the history of a comune shows of one announcement, read through its typed payload.
struct Shown {
    what: &'static str,
    rule: Option<&'static str>,
    coverage: Option<i64>,
    quota: Option<i64>,
    /// The comune's coverage as a share of its quota; none for an over-capacity report.
    percentage: Option<f64>,
    facility: Option<String>,
}

/// `None` for a payload that does not decode (edited by hand, or of another kind): left
/// out of the history, and logged.
fn shown(a: &Announcement) -> Option<Shown> {
    let payload = match Payload::from_parts(a.kind.as_str(), &a.payload) {
        Ok(payload) => payload,
        Err(error) => {
            tracing::warn!(kind = %a.kind, error = %error, "An announcement that does not decode was left out of the history.");
            return None;
        }
    };
    Some(match payload {
        Payload::QuotaThreshold(t) => Shown {
            what: if t.excluded {
                "escluso dai bandi"
            } else {
                "di nuovo incluso"
            },
            rule: t.rule.map(|r| r.as_str()),
            coverage: Some(t.coverage),
            quota: Some(t.quota),
            percentage: Some(t.percentage),
            facility: None,
        },
        Payload::QuotaSafeguard(p) => Shown {
            what: if p.entered {
                "entra in salvaguardia"
            } else {
                "esce dalla salvaguardia"
            },
            rule: None,
            coverage: Some(p.coverage),
            quota: Some(p.quota),
            percentage: Some(p.percentage),
            facility: None,
        },
        Payload::ReceptionOverCapacity(o) => Shown {
            what: "struttura oltre la capienza",
            rule: None,
            coverage: None,
            quota: None,
            percentage: None,
            facility: Some(o.facility_id),
        },
        _ => return None,
    })
}
