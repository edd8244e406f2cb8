//! The annual relazione-report of the Tavolo provinciale asilo (contract 1.2 §4 A6), read
//! from the facts the asylum worker records and from the Tavolo's own records: pronte
//! accoglienze, the SPRAR waiting list, stays, domiciles against their fair share, comuni
//! involved, meetings, protocols and objectives, each indicator against its target.
//!
//! The year is the calendar year in Europe/Rome: cases count by `reported_at`, domiciles by
//! `assigned_at`, placement facts by their `since` date. Raw figures ([`Figures`]) are
//! computed in SQL, then shown through [`Cell`]: counts of people under 3 and figures over
//! fewer than 3 people are `<3`. Nothing personal leaves: no pseudonym, no `person`.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::PgConnection;
use time::{Date, Month, OffsetDateTime};

use raccordo_core::clock::rome_start_of_day;

use super::indicator::{Cell, Direction, Indicator, Unit, Verdict};
use super::records::{self, Meeting, Objective, Protocol};

/// The categories of A1, in the contract's order.
pub const CATEGORIES: [&str; 8] = [
    "minore_non_accompagnato",
    "nucleo_con_minori",
    "donna_sola",
    "rischio_tratta",
    "vittima_violenza",
    "salute",
    "disabilita",
    "altro",
];

/// The first and last instants of `year` in Europe/Rome, as [start, end).
pub fn year_bounds(year: i32) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let start = Date::from_calendar_date(year, Month::January, 1).ok()?;
    let end = Date::from_calendar_date(year + 1, Month::January, 1).ok()?;
    Some((rome_start_of_day(start), rome_start_of_day(end)))
}

/// The raw figures of a year, before masking: what the report is computed from.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub cases: i64,
    pub cases_by_category: BTreeMap<String, i64>,
    pub cases_by_month: [i64; 12],
    pub cases_with_intervention: i64,
    pub cases_within: i64,
    pub median_hours: Option<f64>,
    pub waiting_entries: i64,
    pub placements: i64,
    pub placements_with_wait: i64,
    pub median_wait_days: Option<f64>,
    pub placements_zona_known: i64,
    pub placements_same_zona: i64,
    pub exits: i64,
    pub exits_with_stay: i64,
    pub median_stay_days: Option<f64>,
    /// Per comune of the rotation (or assigned in the year): (istat, nome, population,
    /// in the rotation, assigned).
    pub domiciles: Vec<(String, String, i64, bool, i64)>,
    pub comuni_involved: i64,
    pub reports: i64,
}

/// One comune's domiciles of the year against its fair share.
#[derive(Debug, Clone, Serialize)]
pub struct DomicileRow {
    pub istat: String,
    pub nome: String,
    pub in_rotation: bool,
    pub assigned: Cell,
    /// The year's assignments × the comune's share of the rotation's population.
    pub fair_share: f64,
    pub deviation: Cell,
}

/// One indicator against its target.
#[derive(Debug, Clone, Serialize)]
pub struct IndicatorRow {
    pub indicator: &'static str,
    pub label: &'static str,
    pub unit: Unit,
    pub direction: Direction,
    pub value: Cell,
    pub target: Option<f64>,
    /// `obiettivo` (set for the year) or `predefinito` (the sheet's figure).
    pub target_source: Option<&'static str>,
    pub verdict: Verdict,
}

impl IndicatorRow {
    pub fn value_text(&self) -> String {
        self.value.display(self.unit)
    }

    pub fn target_text(&self) -> String {
        match self.target {
            None => "—".to_owned(),
            Some(t) => {
                let sign = match self.direction {
                    Direction::AtLeast => "≥",
                    Direction::AtMost => "≤",
                };
                format!("{sign} {}", Cell::Value(t).display(self.unit))
            }
        }
    }
}

/// A category's count of pronte accoglienze.
#[derive(Debug, Clone, Serialize)]
pub struct CategoryRow {
    pub category: String,
    pub cases: Cell,
}

/// The annual report.
#[derive(Debug, Clone, Serialize)]
pub struct TavoloReport {
    pub year: i32,
    pub generated_at: String,
    pub first_intervention_hours: f64,
    pub indicators: Vec<IndicatorRow>,
    pub categories: Vec<CategoryRow>,
    pub cases_by_month: Vec<Cell>,
    pub stay_against_12_months: Cell,
    pub domiciles: Vec<DomicileRow>,
    pub meetings: Vec<Meeting>,
    pub protocols: Vec<Protocol>,
    /// Every objective of the year, targets and goals in words.
    pub objectives: Vec<Objective>,
}

impl TavoloReport {
    /// One indicator's row.
    pub fn indicator(&self, indicator: Indicator) -> Option<&IndicatorRow> {
        self.indicators
            .iter()
            .find(|r| r.indicator == indicator.key())
    }

    /// CSV rows: `section,item,value,target,verdict` — the indicators, then the categories,
    /// the months and the domiciles per comune.
    pub fn csv_rows(&self) -> Vec<[String; 5]> {
        let mut rows: Vec<[String; 5]> = self
            .indicators
            .iter()
            .map(|r| {
                [
                    "indicatore".into(),
                    r.indicator.into(),
                    r.value_text(),
                    r.target_text(),
                    r.verdict.label().into(),
                ]
            })
            .collect();
        for c in &self.categories {
            rows.push([
                "categoria".into(),
                c.category.clone(),
                c.cases.display(Unit::Count),
                String::new(),
                String::new(),
            ]);
        }
        for (i, c) in self.cases_by_month.iter().enumerate() {
            rows.push([
                "mese".into(),
                format!("{}-{:02}", self.year, i + 1),
                c.display(Unit::Count),
                String::new(),
                String::new(),
            ]);
        }
        for d in &self.domiciles {
            rows.push([
                "domicili".into(),
                format!("{} {}", d.istat, d.nome),
                d.assigned.display(Unit::Count),
                format!("{:.1}", d.fair_share),
                d.deviation.display(Unit::Hours),
            ]);
        }
        rows
    }
}

/// The report's inputs besides the database.
#[derive(Debug, Clone, Copy)]
pub struct ReportParams {
    pub year: i32,
    /// `asylum.first_intervention_hours`.
    pub first_intervention_hours: f64,
    pub generated_at: OffsetDateTime,
}

/// Why the report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("year {0} is out of range")]
    Year(i32),
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

/// Reads the year's figures and records and builds the report.
pub async fn load_report(
    conn: &mut PgConnection,
    params: ReportParams,
) -> Result<TavoloReport, ReportError> {
    let figures = load_figures(conn, params.year, params.first_intervention_hours).await?;
    let meetings = records::meetings(conn, Some(params.year)).await?;
    let protocols = records::protocols(conn, Some(params.year)).await?;
    let objectives = records::objectives(conn, Some(params.year)).await?;
    Ok(build(params, &figures, meetings, protocols, objectives))
}

/// The raw figures of `year`.
pub async fn load_figures(
    conn: &mut PgConnection,
    year: i32,
    hours: f64,
) -> Result<Figures, ReportError> {
    let (start, end) = year_bounds(year).ok_or(ReportError::Year(year))?;
    let days = (
        Date::from_calendar_date(year, Month::January, 1).map_err(|_| ReportError::Year(year))?,
        Date::from_calendar_date(year + 1, Month::January, 1)
            .map_err(|_| ReportError::Year(year))?,
    );
    let mut f = Figures::default();
    pronta(conn, (start, end), hours, &mut f).await?;
    waiting(conn, days, &mut f).await?;
    stays(conn, days, &mut f).await?;
    f.domiciles = domiciles(conn, (start, end)).await?;
    f.comuni_involved = sqlx::query_scalar(
        r#"
        SELECT count(DISTINCT istat) FROM (
            SELECT comune_istat FROM asylum_cases WHERE reported_at >= $1 AND reported_at < $2
            UNION
            SELECT comune_istat FROM asylum_domiciles
            WHERE assigned_at >= $1 AND assigned_at < $2 AND comune_istat IS NOT NULL
            UNION
            SELECT comune_istat FROM asylum_placement_history
            WHERE since >= $3 AND since < $4 AND comune_istat IS NOT NULL
        ) AS s (istat)
        "#,
    )
    .bind(start)
    .bind(end)
    .bind(days.0)
    .bind(days.1)
    .fetch_one(&mut *conn)
    .await?;
    f.reports = sqlx::query_scalar(
        r#"
        SELECT count(*) FROM notifications
        WHERE kind = 'asylum.weekly_priorities' AND created_at >= $1 AND created_at < $2
        "#,
    )
    .bind(start)
    .bind(end)
    .fetch_one(&mut *conn)
    .await?;
    Ok(f)
}

/// Pronte accoglienze: counts, categories, months and the time to the first intervention:
/// the earliest `presa_in_carico` or `primo_intervento`, as `pronta::clock` keeps them on
/// the case (an intervention after the 12 hours counts here too, late).
async fn pronta(
    conn: &mut PgConnection,
    (start, end): (OffsetDateTime, OffsetDateTime),
    hours: f64,
    f: &mut Figures,
) -> Result<(), sqlx::Error> {
    let row: (i64, i64, i64, Option<f64>) = sqlx::query_as(
        r#"
        WITH c AS (
            SELECT reported_at, LEAST(first_intervention_at, taken_in_charge_at) AS first_at
            FROM asylum_cases
            WHERE reported_at >= $1 AND reported_at < $2
        )
        SELECT count(*),
               count(first_at),
               count(*) FILTER (WHERE first_at <= reported_at + make_interval(secs => $3)),
               percentile_cont(0.5) WITHIN GROUP (
                   ORDER BY (EXTRACT(EPOCH FROM first_at) - EXTRACT(EPOCH FROM reported_at))::FLOAT8
                            / 3600.0
               ) FILTER (WHERE first_at IS NOT NULL)
        FROM c
        "#,
    )
    .bind(start)
    .bind(end)
    .bind(hours * 3600.0)
    .fetch_one(&mut *conn)
    .await?;
    (
        f.cases,
        f.cases_with_intervention,
        f.cases_within,
        f.median_hours,
    ) = row;
    let categories: Vec<(String, i64)> = sqlx::query_as(
        r#"
        SELECT category, count(*)
        FROM asylum_cases, unnest(categories) AS category
        WHERE reported_at >= $1 AND reported_at < $2
        GROUP BY category
        "#,
    )
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;
    f.cases_by_category = categories.into_iter().collect();
    let months: Vec<(i32, i64)> = sqlx::query_as(
        r#"
        SELECT EXTRACT(MONTH FROM reported_at AT TIME ZONE 'Europe/Rome')::INT, count(*)
        FROM asylum_cases
        WHERE reported_at >= $1 AND reported_at < $2
        GROUP BY 1
        "#,
    )
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;
    for (month, n) in months {
        if let Some(slot) = usize::try_from(month - 1)
            .ok()
            .and_then(|i| f.cases_by_month.get_mut(i))
        {
            *slot = n;
        }
    }
    Ok(())
}

/// The SPRAR waiting list: entries, placements (each case's first of the year), the wait
/// since its latest `waiting` fact, and continuità — placed in the zona of the desk that
/// placed it (a desk scoped to a zona, a comune or an ambito within one zona; an unscoped
/// desk has no zona and its placements are left out of the share).
async fn waiting(
    conn: &mut PgConnection,
    (from, to): (Date, Date),
    f: &mut Figures,
) -> Result<(), sqlx::Error> {
    f.waiting_entries = sqlx::query_scalar(
        r#"
        SELECT count(DISTINCT case_key) FROM asylum_placement_history
        WHERE status = 'waiting' AND since >= $1 AND since < $2
        "#,
    )
    .bind(from)
    .bind(to)
    .fetch_one(&mut *conn)
    .await?;
    let row: (i64, i64, Option<f64>, i64, i64) = sqlx::query_as(
        r#"
        WITH desk_zona AS MATERIALIZED (
            SELECT r.referent_id,
                   CASE r.scope_kind
                       WHEN 'zona' THEN r.scope_value
                       WHEN 'comune' THEN (SELECT zona FROM comuni WHERE istat = r.scope_value)
                       WHEN 'ambito' THEN (
                           SELECT min(zona) FROM comuni WHERE ambito = r.scope_value
                           HAVING count(DISTINCT zona) = 1)
                   END AS zona
            FROM referents r
            WHERE r.role = 'sportello_asilo'
        ), p AS (
            SELECT DISTINCT ON (h.case_key) h.case_key, h.since, h.desk, h.comune_istat
            FROM asylum_placement_history h
            WHERE h.status = 'placed' AND h.since >= $1 AND h.since < $2
            ORDER BY h.case_key, h.since, h.id
        ), w AS (
            SELECT p.since,
                   (SELECT max(w.since) FROM asylum_placement_history w
                    WHERE w.case_key = p.case_key AND w.status = 'waiting'
                      AND w.since <= p.since) AS waiting_since,
                   c.zona AS placed_zona,
                   d.zona AS desk_zona
            FROM p
            LEFT JOIN comuni c ON c.istat = p.comune_istat
            LEFT JOIN desk_zona d ON d.referent_id = p.desk
        )
        SELECT count(*),
               count(waiting_since),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY (since - waiting_since)::FLOAT8)
                   FILTER (WHERE waiting_since IS NOT NULL),
               count(*) FILTER (WHERE placed_zona IS NOT NULL AND desk_zona IS NOT NULL),
               count(*) FILTER (WHERE placed_zona = desk_zona)
        FROM w
        "#,
    )
    .bind(from)
    .bind(to)
    .fetch_one(&mut *conn)
    .await?;
    (
        f.placements,
        f.placements_with_wait,
        f.median_wait_days,
        f.placements_zona_known,
        f.placements_same_zona,
    ) = row;
    Ok(())
}

/// Stays: each case's first exit of the year, from its latest placement before it.
async fn stays(
    conn: &mut PgConnection,
    (from, to): (Date, Date),
    f: &mut Figures,
) -> Result<(), sqlx::Error> {
    let row: (i64, i64, Option<f64>) = sqlx::query_as(
        r#"
        WITH x AS (
            SELECT DISTINCT ON (case_key) case_key, since
            FROM asylum_placement_history
            WHERE status = 'exited' AND since >= $1 AND since < $2
            ORDER BY case_key, since, id
        ), s AS (
            SELECT x.since - (SELECT max(p.since) FROM asylum_placement_history p
                              WHERE p.case_key = x.case_key AND p.status = 'placed'
                                AND p.since <= x.since) AS days
            FROM x
        )
        SELECT count(*), count(days),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY days::FLOAT8)
                   FILTER (WHERE days IS NOT NULL)
        FROM s
        "#,
    )
    .bind(from)
    .bind(to)
    .fetch_one(&mut *conn)
    .await?;
    (f.exits, f.exits_with_stay, f.median_stay_days) = row;
    Ok(())
}

/// Domiciles assigned in the year per comune of the rotation (and any other comune that
/// received one).
async fn domiciles(
    conn: &mut PgConnection,
    (start, end): (OffsetDateTime, OffsetDateTime),
) -> Result<Vec<(String, String, i64, bool, i64)>, sqlx::Error> {
    sqlx::query_as(
        r#"
        SELECT c.istat, c.nome, c.popolazione::INT8, c.domicilio, count(d.request_id)
        FROM comuni c
        LEFT JOIN asylum_domiciles d
               ON d.comune_istat = c.istat AND d.assigned_at >= $1 AND d.assigned_at < $2
        GROUP BY c.istat, c.nome, c.popolazione, c.domicilio
        HAVING c.domicilio OR count(d.request_id) > 0
        ORDER BY c.istat
        "#,
    )
    .bind(start)
    .bind(end)
    .fetch_all(conn)
    .await
}

/// The domiciles per comune against the fair share: the year's assignments split by
/// population over the comuni of the rotation.
pub fn domicile_rows(figures: &Figures) -> Vec<DomicileRow> {
    let mut rows = raw_domicile_rows(figures);
    // The fair shares tell the year's total: a lone `<3` would follow from it.
    let mut cells: Vec<Cell> = rows.iter().map(|r| r.assigned).collect();
    if let Some(i) = super::indicator::suppress(&mut cells) {
        rows[i].assigned = Cell::Hidden;
        rows[i].deviation = Cell::Hidden;
    }
    rows
}

fn raw_domicile_rows(figures: &Figures) -> Vec<DomicileRow> {
    let total: i64 = figures.domiciles.iter().map(|d| d.4).sum();
    let population: i64 = figures.domiciles.iter().filter(|d| d.3).map(|d| d.2).sum();
    figures
        .domiciles
        .iter()
        .map(|(istat, nome, pop, in_rotation, assigned)| {
            let fair_share = if *in_rotation && population > 0 {
                total as f64 * *pop as f64 / population as f64
            } else {
                0.0
            };
            let few = matches!(assigned, 1 | 2);
            DomicileRow {
                istat: istat.clone(),
                nome: nome.clone(),
                in_rotation: *in_rotation,
                assigned: Cell::people(*assigned),
                fair_share: round1(fair_share),
                // The deviation would tell a hidden count: hidden with it.
                deviation: if few {
                    Cell::Few
                } else {
                    Cell::Value(round1(*assigned as f64 - fair_share))
                },
            }
        })
        .collect()
}

/// The largest distance of a comune of the rotation from its fair share, in assignments.
fn max_deviation(f: &Figures) -> Option<f64> {
    let total: i64 = f.domiciles.iter().map(|d| d.4).sum();
    let population: i64 = f.domiciles.iter().filter(|d| d.3).map(|d| d.2).sum();
    if population == 0 {
        return None;
    }
    f.domiciles
        .iter()
        .filter(|d| d.3)
        .map(|d| (d.4 as f64 - total as f64 * d.2 as f64 / population as f64).abs())
        .reduce(f64::max)
}

/// The months, suppressed against the year's total.
fn months(f: &Figures) -> Vec<Cell> {
    let mut cells: Vec<Cell> = f.cases_by_month.iter().map(|n| Cell::people(*n)).collect();
    super::indicator::suppress(&mut cells);
    cells
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn share(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The shown value of every indicator, from the figures and the Tavolo's records.
pub fn indicator_values(
    f: &Figures,
    meetings: &[Meeting],
    protocols: &[Protocol],
) -> BTreeMap<Indicator, Cell> {
    let max_deviation = max_deviation(f);
    let total_domiciles: i64 = f.domiciles.iter().map(|d| d.4).sum();
    let invited: i64 = meetings.iter().map(|m| i64::from(m.invited)).sum();
    let present: i64 = meetings.iter().map(|m| i64::from(m.present)).sum();
    let acts = |kind: &str| protocols.iter().filter(|p| p.kind == kind).count() as i64;
    BTreeMap::from([
        (Indicator::ProntaAccoglienza, Cell::people(f.cases)),
        (
            Indicator::Within12Hours,
            Cell::over(f.cases, share(f.cases_within, f.cases)),
        ),
        (
            Indicator::MedianHours,
            Cell::over(f.cases_with_intervention, f.median_hours.map(round1)),
        ),
        (Indicator::WaitingEntries, Cell::people(f.waiting_entries)),
        (Indicator::Placements, Cell::people(f.placements)),
        (
            Indicator::MedianWaitDays,
            Cell::over(f.placements_with_wait, f.median_wait_days),
        ),
        (
            Indicator::Continuita,
            Cell::over(
                f.placements_zona_known,
                share(f.placements_same_zona, f.placements_zona_known),
            ),
        ),
        (
            Indicator::MedianStayDays,
            Cell::over(f.exits_with_stay, f.median_stay_days),
        ),
        (
            Indicator::DomicileDeviation,
            Cell::over(total_domiciles, max_deviation.map(round1)),
        ),
        (Indicator::ComuniInvolved, Cell::count(f.comuni_involved)),
        (Indicator::Meetings, Cell::count(meetings.len() as i64)),
        (
            Indicator::Participation,
            match share(present, invited) {
                Some(s) => Cell::Value(s),
                None => Cell::None,
            },
        ),
        (Indicator::Protocols, Cell::count(acts("protocollo"))),
        (Indicator::Criteria, Cell::count(acts("criterio"))),
        (Indicator::Reports, Cell::count(f.reports)),
    ])
}

/// Builds the report from the figures and records.
pub fn build(
    params: ReportParams,
    f: &Figures,
    meetings: Vec<Meeting>,
    protocols: Vec<Protocol>,
    objectives: Vec<Objective>,
) -> TavoloReport {
    let values = indicator_values(f, &meetings, &protocols);
    let indicators = Indicator::ALL
        .iter()
        .map(|&i| {
            let set = objectives
                .iter()
                .find(|o| o.indicator.as_deref() == Some(i.key()))
                .and_then(|o| o.target);
            let (target, source) = match (set, i.default_target(params.first_intervention_hours)) {
                (Some(t), _) => (Some(t), Some("obiettivo")),
                (None, Some(t)) => (Some(t), Some("predefinito")),
                (None, None) => (None, None),
            };
            let value = values.get(&i).copied().unwrap_or(Cell::None);
            IndicatorRow {
                indicator: i.key(),
                label: i.label(),
                unit: i.unit(),
                direction: i.direction(),
                value,
                target,
                target_source: source,
                verdict: Verdict::of(value, target, i.direction()),
            }
        })
        .collect();
    let mut categories: Vec<CategoryRow> = CATEGORIES
        .iter()
        .map(|c| CategoryRow {
            category: (*c).to_owned(),
            cases: Cell::people(f.cases_by_category.get(*c).copied().unwrap_or(0)),
        })
        .collect();
    // A category the schema does not know yet still counts, after the known ones.
    for (c, n) in &f.cases_by_category {
        if !CATEGORIES.contains(&c.as_str()) {
            categories.push(CategoryRow {
                category: c.clone(),
                cases: Cell::people(*n),
            });
        }
    }
    TavoloReport {
        year: params.year,
        generated_at: raccordo_core::clock::rome_datetime(params.generated_at),
        first_intervention_hours: params.first_intervention_hours,
        indicators,
        categories,
        cases_by_month: months(f),
        stay_against_12_months: Cell::over(
            f.exits_with_stay,
            f.median_stay_days
                .map(|d| round1((d / 365.0 - 1.0) * 100.0)),
        ),
        domiciles: domicile_rows(f),
        meetings,
        protocols,
        objectives,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> ReportParams {
        ReportParams {
            year: 2026,
            first_intervention_hours: 12.0,
            generated_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn the_year_runs_from_midnight_in_rome() {
        let (start, end) = year_bounds(2026).expect("a year");
        assert_eq!(start.to_string(), "2025-12-31 23:00:00.0 +00:00:00");
        assert_eq!(end.to_string(), "2026-12-31 23:00:00.0 +00:00:00");
    }

    #[test]
    fn fair_shares_split_the_year_by_population() {
        let f = Figures {
            domiciles: vec![
                ("015001".into(), "A".into(), 300, true, 31),
                ("015002".into(), "B".into(), 100, true, 9),
                ("015003".into(), "C".into(), 50, false, 2),
            ],
            ..Figures::default()
        };
        let rows = domicile_rows(&f);
        assert_eq!(rows[0].fair_share, 31.5);
        assert_eq!(rows[0].deviation, Cell::Value(-0.5));
        assert_eq!(rows[1].fair_share, 10.5);
        assert_eq!(rows[2].assigned, Cell::Few);
        assert_eq!(rows[2].deviation, Cell::Few);
    }

    #[test]
    fn an_objective_replaces_the_default_target() {
        let f = Figures {
            cases: 10,
            cases_within: 8,
            cases_with_intervention: 9,
            median_hours: Some(6.0),
            ..Figures::default()
        };
        let objectives = vec![Objective {
            id: 1,
            year: 2026,
            indicator: Some("primo_intervento_entro_12_ore".into()),
            target: Some(0.75),
            description: "Tempestività".into(),
        }];
        let report = build(params(), &f, vec![], vec![], objectives);
        let row = report.indicator(Indicator::Within12Hours).expect("row");
        assert_eq!(row.value, Cell::Value(0.8));
        assert_eq!(row.target_source, Some("obiettivo"));
        assert_eq!(row.verdict, Verdict::Met);
        let hours = report.indicator(Indicator::MedianHours).expect("row");
        assert_eq!(hours.target_source, Some("predefinito"));
        assert_eq!(hours.verdict, Verdict::Met);
    }

    #[test]
    fn two_cases_in_a_year_show_no_figure_about_them() {
        let f = Figures {
            cases: 2,
            cases_within: 1,
            cases_with_intervention: 2,
            median_hours: Some(3.0),
            ..Figures::default()
        };
        let report = build(params(), &f, vec![], vec![], vec![]);
        for i in [
            Indicator::ProntaAccoglienza,
            Indicator::Within12Hours,
            Indicator::MedianHours,
        ] {
            assert_eq!(report.indicator(i).expect("row").value_text(), "<3");
        }
    }
}
