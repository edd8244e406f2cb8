//! Evictions: the month's statistics per ambito and comune (counts of 1 or 2 shown as `<3`,
//! C6) as charts, for every role; and, for the role `privacy` alone, the audit of the
//! eviction notices aggregated as the statistics are — per comune, kind and recipient
//! office, how many notices and with which outcome, and the consent decisions per comune,
//! each count masked the same way. Never a row per family, never the content of an alert,
//! a name, a docket number or an address.
//!
//! The month is bounded (from 2000-01 to the current one): any other is a 400 page, so no
//! query runs over an unbounded period.

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use minijinja::{Value, context};
use serde::Deserialize;
use sqlx::PgConnection;
use time::OffsetDateTime;

use raccordo_core::clock::{FIRST_REPORT_MONTH, ReportMonthError, YearMonth};
use raccordo_eviction::event::Step;
use raccordo_eviction::stats::{ComuneCounts, Count, month_stats};

use crate::auth::{Operator, page_context};
use crate::chart;
use crate::params::{Params, QueryParams};
use crate::render::ConsoleError;
use crate::state::AppState;

/// The month to show, `YYYY-MM`; default the current one (Europe/Rome).
#[derive(Deserialize)]
pub(crate) struct MonthQuery {
    #[serde(default)]
    month: Option<String>,
}

impl QueryParams for MonthQuery {
    const NAMES: &'static [&'static str] = &["month"];
}

/// The month asked for, within the bounds of a report; an Italian 400 otherwise.
fn month_of(q: &MonthQuery, current: YearMonth) -> Result<YearMonth, ConsoleError> {
    let Some(text) = q.month.as_deref().filter(|m| !m.is_empty()) else {
        return Ok(current);
    };
    YearMonth::parse_report(text, current).map_err(|e| {
        ConsoleError::BadRequest(match e {
            ReportMonthError::Format(_) => {
                "Mese non valido (parametro «month»): scriverlo come AAAA-MM, ad esempio 2026-03.".to_owned()
            }
            ReportMonthError::TooEarly { .. } => format!(
                "Mese non valido (parametro «month»): i rapporti cominciano da {} ({FIRST_REPORT_MONTH}).",
                FIRST_REPORT_MONTH.italian()
            ),
            ReportMonthError::Future { current, .. } => format!(
                "Mese non valido (parametro «month»): non è ancora cominciato (il mese corrente è {}).",
                current.italian()
            ),
        })
    })
}

/// The links to the months around `month`.
fn month_nav(month: YearMonth, current: YearMonth) -> Value {
    context! {
        month => month.to_string(),
        month_label => month.italian(),
        previous => (month > FIRST_REPORT_MONTH).then(|| month.previous().to_string()),
        next => (month < current).then(|| month.next().to_string()),
    }
}

/// A step's label short enough for a chart's axis: `intimazione` → `inti.`.
fn abbreviation(step: Step) -> String {
    let word = step.as_str();
    let head: String = word.chars().take(4).collect();
    if head.len() < word.len() {
        format!("{head}.")
    } else {
        head
    }
}

pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Params(q): Params<MonthQuery>,
) -> Result<Response, ConsoleError> {
    let current = YearMonth::current();
    let month = month_of(&q, current)?;
    let mut conn = state.pool.acquire().await?;
    let units = month_stats(&mut conn, month).await?;
    drop(conn);
    let units: Vec<Value> = units
        .iter()
        .map(|u| {
            let comuni: Vec<Value> = u.comuni.iter().map(comune_row).collect();
            context! { ambito => u.ambito, comuni => comuni }
        })
        .collect();
    let ctx = context! {
        nav => month_nav(month, current),
        steps => Step::ALL.iter().map(|s| context! { label => s.label(), abbr => abbreviation(*s) }).collect::<Vec<_>>(),
        units => units,
        ..page_context(&operator, "evictions")
    };
    state.templates.page("evictions.html", ctx)
}

/// One row of the aggregated audit: a comune, a kind and a recipient office.
#[derive(sqlx::FromRow)]
struct AuditRow {
    comune_istat: Option<String>,
    comune_nome: Option<String>,
    kind: String,
    institution: Option<String>,
    email: Option<String>,
    notices: i64,
    delivered: i64,
    failed: i64,
    pending: i64,
    undeliverable: i64,
}

async fn audit_rows(
    conn: &mut PgConnection,
    (start, end): (OffsetDateTime, OffsetDateTime),
) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as(
        r#"
        SELECT n.comune_istat, c.nome AS comune_nome, n.kind, d.institution, d.email,
               count(DISTINCT n.id) AS notices,
               count(d.email) FILTER (WHERE d.delivered_at IS NOT NULL) AS delivered,
               count(d.email) FILTER (WHERE d.delivered_at IS NULL AND d.failed_at IS NOT NULL) AS failed,
               count(d.email) FILTER (WHERE d.delivered_at IS NULL AND d.failed_at IS NULL) AS pending,
               count(DISTINCT n.id) FILTER (WHERE n.undeliverable) AS undeliverable
        FROM notifications n
        LEFT JOIN deliveries d ON d.notification_id = n.id
        LEFT JOIN comuni c ON c.istat = n.comune_istat
        WHERE n.kind LIKE 'eviction.%'
          AND n.created_at >= $1 AND n.created_at < $2
        GROUP BY n.comune_istat, c.nome, n.kind, d.institution, d.email
        ORDER BY c.nome NULLS LAST, n.kind, d.institution, d.email
        "#,
    )
    .bind(start)
    .bind(end)
    .fetch_all(conn)
    .await
}

/// The consent decisions received in the month, per comune: (istat, nome, granted, revoked).
async fn consent_rows(
    conn: &mut PgConnection,
    (start, end): (OffsetDateTime, OffsetDateTime),
) -> Result<Vec<(String, Option<String>, i64, i64)>, sqlx::Error> {
    sqlx::query_as(
        r#"
        SELECT e.comune_istat, c.nome,
               count(*) FILTER (WHERE e.decision = 'granted'),
               count(*) FILTER (WHERE e.decision = 'revoked')
        FROM eviction_consents e
        LEFT JOIN comuni c ON c.istat = e.comune_istat
        WHERE e.received_at >= $1 AND e.received_at < $2
        GROUP BY e.comune_istat, c.nome
        ORDER BY c.nome NULLS LAST, e.comune_istat
        "#,
    )
    .bind(start)
    .bind(end)
    .fetch_all(conn)
    .await
}

/// A count as the statistics show it: `<3` for 1 or 2.
fn masked(n: i64) -> String {
    Count::of(n).to_string()
}

/// Lines of the retention log the audit page shows: the latest runs.
const RETENTION_LINES: i64 = 200;

/// The eviction audit of a month, aggregated (role `privacy`), and the retention log.
pub(crate) async fn audit(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Params(q): Params<MonthQuery>,
) -> Result<Response, ConsoleError> {
    let current = YearMonth::current();
    let month = month_of(&q, current)?;
    let bounds = month.rome_bounds();
    let mut conn = state.pool.acquire().await?;
    let rows = audit_rows(&mut conn, bounds).await?;
    let consents = consent_rows(&mut conn, bounds).await?;
    let retention = raccordo_core::retention::recent_log(&mut conn, RETENTION_LINES).await?;
    drop(conn);
    let retention: Vec<Value> = retention
        .iter()
        .map(|r| {
            context! {
                at => crate::render::local_time(r.ran_at),
                trigger => if r.trigger == "daily" { "giornaliera" } else { "comando" },
                dry_run => r.dry_run,
                kind => r.kind,
                count => r.count,
            }
        })
        .collect();
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            context! {
                comune => match (&r.comune_nome, &r.comune_istat) {
                    (Some(nome), Some(istat)) => Some(format!("{nome} ({istat})")),
                    (nome, istat) => nome.clone().or_else(|| istat.clone()),
                },
                kind_label => super::kind_label(&r.kind),
                kind => r.kind,
                institution => r.institution,
                recipient => r.email,
                notices => masked(r.notices),
                delivered => masked(r.delivered),
                failed => masked(r.failed),
                pending => masked(r.pending),
                undeliverable => masked(r.undeliverable),
            }
        })
        .collect();
    let consents: Vec<Value> = consents
        .iter()
        .map(|(istat, nome, granted, revoked)| {
            context! {
                comune => nome.as_ref().map_or_else(|| istat.clone(), |nome| format!("{nome} ({istat})")),
                granted => masked(*granted),
                revoked => masked(*revoked),
            }
        })
        .collect();
    tracing::info!(
        user = %operator.name,
        month = %month,
        "A privacy officer read the eviction audit."
    );
    let ctx = context! {
        nav => month_nav(month, current),
        rows => rows,
        consents => consents,
        retention => retention,
        ..page_context(&operator, "audit")
    };
    state.templates.page("evictions_audit.html", ctx)
}

/// One comune's counts per step, and its chart ("few" where the count is hidden).
fn comune_row(c: &ComuneCounts) -> Value {
    let labels: Vec<String> = Step::ALL.iter().map(|s| abbreviation(*s)).collect();
    let steps: Vec<(&str, Option<i64>, bool)> = Step::ALL
        .iter()
        .zip(&labels)
        .map(|(s, label)| match c.counts.get(s.as_str()) {
            Some(Count::Exact(n)) => (label.as_str(), Some(*n), false),
            Some(Count::Few) => (label.as_str(), None, true),
            _ => (label.as_str(), None, false),
        })
        .collect();
    context! {
        istat => c.istat,
        nome => c.nome,
        counts => Step::ALL.iter().map(|s| c.counts.get(s.as_str()).map(ToString::to_string).unwrap_or_else(|| "0".into())).collect::<Vec<_>>(),
        chart => Value::from_safe_string(chart::step_bars(&format!("Passi a {}", c.nome), &steps)),
    }
}
