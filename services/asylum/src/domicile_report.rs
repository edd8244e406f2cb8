//! The domiciles of a year per comune against its fair share (rule A3, and the A6
//! relazione's "domicili per comune"): `raccordo report domiciles --year` and the Tavolo's
//! annual report read it from here.
//!
//! A comune's fair share of the year is the sum, over the rotation's periods, of the
//! period's assignments in the year × the comune's population / the period's total: a
//! paused comune's share goes to the others while it is paused, and nothing else.

use serde::Serialize;
use sqlx::PgConnection;

use raccordo_core::registry::Snapshot;

use crate::rotation_store::domicilio_comuni;

/// One comune's line of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DomicileLine {
    pub istat: String,
    pub nome: String,
    pub popolazione: i64,
    /// Marked `domicilio` in the registry now.
    pub in_rotation: bool,
    /// Domiciles assigned in the year.
    pub assigned: i64,
    /// People those domiciles were for.
    pub people: i64,
    /// Its fair share of the year's domiciles (a fraction of an assignment).
    pub fair_share: f64,
    /// assigned − fair_share.
    pub deviation: f64,
}

/// What the year's assignments and periods say of each comune: (istat, assigned, people,
/// fair share).
type Tally = (String, i64, i64, f64);

/// Counts and fair shares of the domiciles assigned in `year` (Europe/Rome).
async fn tally(conn: &mut PgConnection, year: i32) -> Result<Vec<Tally>, sqlx::Error> {
    sqlx::query_as(
        r#"
        WITH assigned AS (
            SELECT period_id, comune_istat, people
            FROM asylum_domiciles
            WHERE comune_istat IS NOT NULL
              AND assigned_at >= make_timestamptz($1, 1, 1, 0, 0, 0, 'Europe/Rome')
              AND assigned_at < make_timestamptz($1 + 1, 1, 1, 0, 0, 0, 'Europe/Rome')
        ), counts AS (
            SELECT comune_istat, count(*) AS n, sum(people)::BIGINT AS people
            FROM assigned
            GROUP BY comune_istat
        ), per_period AS (
            SELECT period_id, count(*) AS n
            FROM assigned
            WHERE period_id IS NOT NULL
            GROUP BY period_id
        ), totals AS (
            SELECT m.period_id, sum(m.population) AS total
            FROM asylum_rotation_period_members m
            JOIN per_period p ON p.period_id = m.period_id
            GROUP BY m.period_id
        ), fair AS (
            SELECT m.comune_istat, sum(p.n * m.population::FLOAT8 / t.total::FLOAT8) AS fair
            FROM per_period p
            JOIN totals t ON t.period_id = p.period_id
            JOIN asylum_rotation_period_members m ON m.period_id = p.period_id
            GROUP BY m.comune_istat
        )
        SELECT COALESCE(c.comune_istat, f.comune_istat),
               COALESCE(c.n, 0),
               COALESCE(c.people, 0),
               COALESCE(f.fair, 0)
        FROM counts c
        FULL JOIN fair f ON f.comune_istat = c.comune_istat
        "#,
    )
    .bind(year)
    .fetch_all(conn)
    .await
}

/// The report of `year`: every comune in the rotation now, and every comune that had
/// domiciles or a share in the year, by ISTAT code.
pub async fn domicile_report(
    conn: &mut PgConnection,
    registry: &Snapshot,
    year: i32,
) -> Result<Vec<DomicileLine>, sqlx::Error> {
    let tallies = tally(conn, year).await?;
    let mut lines: Vec<DomicileLine> = domicilio_comuni(registry)
        .into_iter()
        .map(|c| DomicileLine {
            istat: c.istat.as_ref().to_owned(),
            nome: c.nome.clone(),
            popolazione: i64::from(c.popolazione),
            in_rotation: true,
            assigned: 0,
            people: 0,
            fair_share: 0.0,
            deviation: 0.0,
        })
        .collect();
    for (istat, assigned, people, fair_share) in tallies {
        let index = match lines.iter().position(|l| l.istat == istat) {
            Some(i) => i,
            None => {
                // Left the rotation since: named from the registry if it is still there.
                let known = raccordo_core::domain::ComuneIstat::parse(&istat)
                    .ok()
                    .and_then(|i| registry.comune(&i).cloned());
                lines.push(DomicileLine {
                    istat: istat.clone(),
                    nome: known.as_ref().map(|c| c.nome.clone()).unwrap_or_default(),
                    popolazione: known.map_or(0, |c| i64::from(c.popolazione)),
                    in_rotation: false,
                    assigned: 0,
                    people: 0,
                    fair_share: 0.0,
                    deviation: 0.0,
                });
                lines.len() - 1
            }
        };
        let line = &mut lines[index];
        line.assigned = assigned;
        line.people = people;
        line.fair_share = fair_share;
    }
    for line in &mut lines {
        line.deviation = line.assigned as f64 - line.fair_share;
    }
    lines.sort_by(|a, b| a.istat.cmp(&b.istat));
    Ok(lines)
}
