//! Evictions: the month's statistics per ambito and comune (counts of 1 or 2 shown as `<3`,
//! C6) as charts, and the audit trail of eviction notices — kind, recipient, time, SMTP
//! outcome and the consent record that authorised each. Never the content of an alert,
//! never a name, a docket number or an address.

use axum::Extension;
use axum::extract::{Query, State};
use axum::response::Response;
use minijinja::{Value, context};
use serde::Deserialize;

use raccordo_core::clock::{YearMonth, now, rome_date};
use raccordo_eviction::audit::{self, AuditFilter};
use raccordo_eviction::event::Step;
use raccordo_eviction::stats::{ComuneCounts, Count, month_stats};

use crate::auth::{Operator, page_context};
use crate::chart;
use crate::render::ConsoleError;
use crate::server::AppState;

/// The month to show, `YYYY-MM`; default the current one (Europe/Rome).
#[derive(Deserialize)]
pub(crate) struct MonthQuery {
    #[serde(default)]
    month: Option<String>,
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
    Query(q): Query<MonthQuery>,
) -> Result<Response, ConsoleError> {
    let current = YearMonth::of(rome_date(now()));
    let month = match q.month.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => YearMonth::parse(m)
            .map_err(|_| ConsoleError::BadRequest("Mese non valido: AAAA-MM.".into()))?,
        None => current,
    };
    let mut conn = state.pool.acquire().await?;
    let units = month_stats(&mut conn, month).await?;
    let since = month.rome_bounds().0;
    let entries = audit::list(
        &mut conn,
        &AuditFilter {
            kind: None,
            since: Some(since),
            procedure: None,
        },
    )
    .await?;
    drop(conn);
    let units: Vec<Value> = units
        .iter()
        .map(|u| {
            let comuni: Vec<Value> = u.comuni.iter().map(comune_row).collect();
            context! { ambito => u.ambito, comuni => comuni }
        })
        .collect();
    let audit: Vec<Value> = entries
        .iter()
        .filter(|e| e.kind.starts_with("eviction."))
        .rev()
        .take(200)
        .map(|e| {
            context! {
                created_at => e.created_at,
                kind => e.kind,
                urgent => e.urgent,
                comune => e.comune_istat,
                recipient => e.recipient,
                institution => e.institution,
                outcome => e.outcome,
                outcome_at => e.outcome_at,
                smtp => e.last_error.clone().or_else(|| e.smtp_response.clone()),
                consent => e.consent_decision,
                consent_by => e.consent_recorded_by,
                consent_at => e.consent_recorded_at,
            }
        })
        .collect();
    let ctx = context! {
        month => month.to_string(),
        month_label => month.italian(),
        previous => month.previous().to_string(),
        next => (month < current).then(|| month.next().to_string()),
        steps => Step::ALL.iter().map(|s| context! { label => s.label(), abbr => abbreviation(*s) }).collect::<Vec<_>>(),
        units => units,
        audit => audit,
        ..page_context(&operator, "evictions")
    };
    state.templates.page("evictions.html", ctx)
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
