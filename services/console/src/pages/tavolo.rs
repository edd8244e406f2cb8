//! Tavolo asilo (A6): the indicators of the annual relazione-report against their targets,
//! through the year so far (or a past year), with the report's own charts, meetings,
//! protocols and objectives — for every role, `viewer` included. Only counts and shares,
//! `<3` under 3 people: never a case, a pseudonym or a person.

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use minijinja::{Value, context};
use serde::Deserialize;

use raccordo_asylum::tavolo::chart;
use raccordo_asylum::tavolo::indicator::{Cell, Direction, Unit};
use raccordo_asylum::tavolo::{ReportParams, TavoloReport, load_report};
use raccordo_core::clock::{now, rome_date};

use crate::auth::{Operator, page_context};
use crate::params::{Params, QueryParams};
use crate::render::{ConsoleError, italian_number, long_date};
use crate::state::AppState;

/// The first year the page shows.
const FIRST_YEAR: i32 = 2000;

const MONTHS: [&str; 12] = [
    "gen", "feb", "mar", "apr", "mag", "giu", "lug", "ago", "set", "ott", "nov", "dic",
];

/// The year to show; default the current one (Europe/Rome).
#[derive(Deserialize)]
pub(crate) struct YearQuery {
    #[serde(default)]
    year: Option<String>,
}

impl QueryParams for YearQuery {
    const NAMES: &'static [&'static str] = &["year"];
}

fn year_of(q: &YearQuery, current: i32) -> Result<i32, ConsoleError> {
    let Some(text) = q.year.as_deref().filter(|y| !y.is_empty()) else {
        return Ok(current);
    };
    text.parse::<i32>()
        .ok()
        .filter(|y| (FIRST_YEAR..=current).contains(y))
        .ok_or_else(|| {
            ConsoleError::BadRequest(format!(
                "Anno non valido (parametro «year»): scriverlo come AAAA, dal {FIRST_YEAR} al {current}."
            ))
        })
}

pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Params(q): Params<YearQuery>,
) -> Result<Response, ConsoleError> {
    let current = rome_date(now()).year();
    let year = year_of(&q, current)?;
    let mut conn = state.pool.acquire().await?;
    let report = load_report(
        &mut conn,
        ReportParams {
            year,
            first_intervention_hours: state.settings.asylum.first_intervention_hours,
            generated_at: now(),
        },
    )
    .await
    .map_err(|e| match e {
        raccordo_asylum::tavolo::report::ReportError::Database(e) => ConsoleError::Database(e),
        raccordo_asylum::tavolo::report::ReportError::Year(_) => {
            ConsoleError::BadRequest("Anno non valido (parametro «year»).".into())
        }
    })?;
    drop(conn);
    let indicators = indicator_rows(&report);
    let months: Vec<(String, Cell)> = MONTHS
        .iter()
        .zip(&report.cases_by_month)
        .map(|(m, c)| ((*m).to_owned(), *c))
        .collect();
    let categories: Vec<(String, Cell)> = report
        .categories
        .iter()
        .map(|c| (c.category.replace('_', " "), c.cases))
        .collect();
    let domiciles: Vec<Value> = report
        .domiciles
        .iter()
        .map(|d| {
            context! {
                nome => d.nome, istat => d.istat, in_rotation => d.in_rotation,
                assigned => cell_it(d.assigned, Unit::Count),
                fair_share => italian_number(d.fair_share, 1),
                deviation => cell_it(d.deviation, Unit::Hours),
            }
        })
        .collect();
    let ctx = context! {
        year => year,
        previous => (year > FIRST_YEAR).then_some(year - 1),
        next => (year < current).then_some(year + 1),
        to_date => year == current,
        hours => report.first_intervention_hours,
        indicators => indicators,
        months_chart => Value::from_safe_string(chart::count_bars("mesi", "Pronte accoglienze per mese", &months)),
        categories_chart => Value::from_safe_string(chart::count_bars("categorie", "Pronte accoglienze per categoria", &categories)),
        domiciles_chart => Value::from_safe_string(chart::domicile_bars(&report.domiciles)),
        domiciles => domiciles,
        records => records(&report),
        ..page_context(&operator, "tavolo")
    };
    state.templates.page("tavolo.html", ctx)
}

/// A cell as the report shows it, with Italian digits: `<3`, `—`, `42`, `93,1%`, `11,5`.
fn cell_it(cell: Cell, unit: Unit) -> String {
    match cell {
        Cell::Value(v) => match unit {
            Unit::Count => italian_number(v, 0),
            Unit::Share => format!("{}%", italian_number(v * 100.0, 1)),
            Unit::Hours | Unit::Days => italian_number(v, 1),
        },
        other => other.display(unit),
    }
}

/// Each indicator against its target, with its gauge.
fn indicator_rows(report: &TavoloReport) -> Vec<Value> {
    report
        .indicators
        .iter()
        .map(|r| {
            context! {
                label => r.label,
                key => r.indicator,
                value => cell_it(r.value, r.unit),
                target => r.target.map_or_else(|| "—".to_owned(), |t| {
                    let sign = match r.direction {
                        Direction::AtLeast => "≥",
                        Direction::AtMost => "≤",
                    };
                    format!("{sign} {}", cell_it(Cell::Value(t), r.unit))
                }),
                default_target => r.target_source == Some("predefinito"),
                verdict => r.verdict.label(),
                verdict_key => format!("{:?}", r.verdict).to_lowercase(),
                gauge => Value::from_safe_string(chart::indicator_gauge(r)),
            }
        })
        .collect()
}

/// The Tavolo's meetings, protocols and objectives of the year.
fn records(report: &TavoloReport) -> Value {
    context! {
        meetings => report.meetings.iter().map(|m| context! {
            date => long_date(m.held_on), title => m.title, level => m.level,
            present => m.present, invited => m.invited, participants => m.participants.join(", "),
        }).collect::<Vec<_>>(),
        protocols => report.protocols.iter().map(|p| context! {
            date => long_date(p.signed_on), title => p.title, kind => p.kind,
            signatories => p.signatories.join(", "),
        }).collect::<Vec<_>>(),
        objectives => report.objectives.iter().map(|o| context! {
            description => o.description, indicator => o.indicator,
        }).collect::<Vec<_>>(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_year_outside_the_reports_is_refused() {
        let q = |y: &str| YearQuery {
            year: Some(y.into()),
        };
        assert_eq!(year_of(&q("2025"), 2026).ok(), Some(2025));
        assert!(year_of(&q("2027"), 2026).is_err());
        assert!(year_of(&q("1999"), 2026).is_err());
        assert!(year_of(&q("x"), 2026).is_err());
        assert_eq!(year_of(&YearQuery { year: None }, 2026).ok(), Some(2026));
    }

    #[test]
    fn cells_take_italian_digits() {
        assert_eq!(cell_it(Cell::Value(0.931), Unit::Share), "93,1%");
        assert_eq!(cell_it(Cell::Value(1234.0), Unit::Count), "1.234");
        assert_eq!(cell_it(Cell::Value(11.5), Unit::Hours), "11,5");
        assert_eq!(cell_it(Cell::Few, Unit::Count), "<3");
    }
}
