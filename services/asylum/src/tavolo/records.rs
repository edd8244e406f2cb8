//! The Tavolo's own records (A6): meetings with their participation, protocols signed and
//! criteria shared, and the year's objectives — what `raccordo tavolo … add|list` keeps and
//! the annual report counts. Institutions, never people: nothing here is personal data.

use serde::Serialize;
use sqlx::PgConnection;
use time::Date;

use super::indicator::Indicator;

/// Why a record was refused.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{0}")]
    Invalid(String),
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

fn invalid(message: impl Into<String>) -> RecordError {
    RecordError::Invalid(message.into())
}

/// A title or description: trimmed, 1 to `max` characters, no control characters.
fn text(what: &str, value: &str, max: usize) -> Result<String, RecordError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max {
        return Err(invalid(format!("{what}: from 1 to {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(format!("{what}: no control characters")));
    }
    Ok(value.to_owned())
}

/// A comma-separated list of institutions, trimmed, empty items dropped.
pub fn institutions(list: &str) -> Result<Vec<String>, RecordError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| text("institution", s, 200))
        .collect()
}

/// The level of a meeting (seed 001: "agisce su tre livelli").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Politico,
    Organizzativo,
    Tecnico,
}

impl Level {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "politico" => Some(Level::Politico),
            "organizzativo" => Some(Level::Organizzativo),
            "tecnico" => Some(Level::Tecnico),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Politico => "politico",
            Level::Organizzativo => "organizzativo",
            Level::Tecnico => "tecnico",
        }
    }
}

/// A meeting of the Tavolo.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Meeting {
    pub id: i64,
    #[serde(with = "iso_date")]
    pub held_on: Date,
    pub title: String,
    pub level: String,
    pub invited: i32,
    pub present: i32,
    pub participants: Vec<String>,
}

/// A meeting to record.
#[derive(Debug, Clone)]
pub struct NewMeeting {
    pub held_on: Date,
    pub title: String,
    pub level: Level,
    pub invited: i32,
    pub present: i32,
    pub participants: Vec<String>,
}

impl NewMeeting {
    /// Checks a meeting as typed by an operator.
    pub fn parse(
        held_on: Date,
        title: &str,
        level: &str,
        invited: i32,
        present: i32,
        participants: &str,
    ) -> Result<Self, RecordError> {
        let level = Level::parse(level)
            .ok_or_else(|| invalid("level: politico, organizzativo or tecnico"))?;
        if invited < 1 {
            return Err(invalid("invited: at least 1"));
        }
        if !(0..=invited).contains(&present) {
            return Err(invalid("present: from 0 to the number invited"));
        }
        Ok(Self {
            held_on,
            title: text("title", title, 300)?,
            level,
            invited,
            present,
            participants: institutions(participants)?,
        })
    }
}

/// Kind of a formal act: a protocol signed, or a criterion shared (residenze, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActKind {
    Protocollo,
    Criterio,
}

impl ActKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "protocollo" => Some(ActKind::Protocollo),
            "criterio" => Some(ActKind::Criterio),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ActKind::Protocollo => "protocollo",
            ActKind::Criterio => "criterio",
        }
    }
}

/// A protocol or criterion.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Protocol {
    pub id: i64,
    #[serde(with = "iso_date")]
    pub signed_on: Date,
    pub title: String,
    pub kind: String,
    pub signatories: Vec<String>,
}

/// A protocol or criterion to record.
#[derive(Debug, Clone)]
pub struct NewProtocol {
    pub signed_on: Date,
    pub title: String,
    pub kind: ActKind,
    pub signatories: Vec<String>,
}

impl NewProtocol {
    pub fn parse(
        signed_on: Date,
        title: &str,
        kind: &str,
        signatories: &str,
    ) -> Result<Self, RecordError> {
        Ok(Self {
            signed_on,
            title: text("title", title, 300)?,
            kind: ActKind::parse(kind).ok_or_else(|| invalid("kind: protocollo or criterio"))?,
            signatories: institutions(signatories)?,
        })
    }
}

/// An objective of a year.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Objective {
    pub id: i64,
    pub year: i32,
    pub indicator: Option<String>,
    pub target: Option<f64>,
    pub description: String,
}

/// An objective to record: a target for an indicator, or a goal in words.
#[derive(Debug, Clone)]
pub struct NewObjective {
    pub year: i32,
    pub target: Option<(Indicator, f64)>,
    pub description: String,
}

impl NewObjective {
    /// A target is in the indicator's unit: shares as fractions (0.9) or percentages (90%).
    pub fn parse(
        year: i32,
        indicator: Option<&str>,
        target: Option<&str>,
        description: &str,
    ) -> Result<Self, RecordError> {
        if !(2000..=2100).contains(&year) {
            return Err(invalid("year: from 2000 to 2100"));
        }
        let target = match (indicator, target) {
            (None, None) => None,
            (Some(key), Some(value)) => {
                let indicator = Indicator::parse(key).ok_or_else(|| {
                    let keys: Vec<&str> = Indicator::ALL.iter().map(|i| i.key()).collect();
                    invalid(format!("indicator: one of {}", keys.join(", ")))
                })?;
                Some((indicator, target_value(indicator, value)?))
            }
            _ => return Err(invalid("--indicator and --target go together")),
        };
        Ok(Self {
            year,
            target,
            description: text("description", description, 500)?,
        })
    }
}

fn target_value(indicator: Indicator, value: &str) -> Result<f64, RecordError> {
    let value = value.trim();
    let (number, percent) = match value.strip_suffix('%') {
        Some(n) => (n.trim(), true),
        None => (value, false),
    };
    let n: f64 = number
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| invalid("target: a number from 0 (90% or 0.9 for a share)"))?;
    let n = if percent { n / 100.0 } else { n };
    if indicator.unit() == super::indicator::Unit::Share && n > 1.0 {
        return Err(invalid("target: a share is at most 100% (1.0)"));
    }
    Ok(n)
}

pub async fn add_meeting(conn: &mut PgConnection, m: &NewMeeting) -> Result<i64, RecordError> {
    Ok(sqlx::query_scalar(
        r#"
        INSERT INTO tavolo_meetings (held_on, title, level, invited, present, participants)
        VALUES ($1, $2, $3, $4, $5, $6)
        RETURNING id
        "#,
    )
    .bind(m.held_on)
    .bind(&m.title)
    .bind(m.level.as_str())
    .bind(m.invited)
    .bind(m.present)
    .bind(&m.participants)
    .fetch_one(conn)
    .await?)
}

pub async fn add_protocol(conn: &mut PgConnection, p: &NewProtocol) -> Result<i64, RecordError> {
    Ok(sqlx::query_scalar(
        r#"
        INSERT INTO tavolo_protocols (signed_on, title, kind, signatories)
        VALUES ($1, $2, $3, $4)
        RETURNING id
        "#,
    )
    .bind(p.signed_on)
    .bind(&p.title)
    .bind(p.kind.as_str())
    .bind(&p.signatories)
    .fetch_one(conn)
    .await?)
}

/// Records an objective; a target for an indicator already set that year replaces it.
pub async fn add_objective(conn: &mut PgConnection, o: &NewObjective) -> Result<i64, RecordError> {
    let (indicator, target) = match o.target {
        Some((i, t)) => (Some(i.key()), Some(t)),
        None => (None, None),
    };
    Ok(sqlx::query_scalar(
        r#"
        INSERT INTO tavolo_objectives (year, indicator, target, description)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (year, indicator) WHERE indicator IS NOT NULL
        DO UPDATE SET target = EXCLUDED.target, description = EXCLUDED.description,
                      recorded_at = now()
        RETURNING id
        "#,
    )
    .bind(o.year)
    .bind(indicator)
    .bind(target)
    .bind(&o.description)
    .fetch_one(conn)
    .await?)
}

/// The meetings of `year` (all when `None`), by date.
pub async fn meetings(
    conn: &mut PgConnection,
    year: Option<i32>,
) -> Result<Vec<Meeting>, sqlx::Error> {
    sqlx::query_as(
        r#"
        SELECT id, held_on, title, level, invited, present, participants
        FROM tavolo_meetings
        WHERE $1::INT IS NULL OR EXTRACT(YEAR FROM held_on)::INT = $1
        ORDER BY held_on, id
        "#,
    )
    .bind(year)
    .fetch_all(conn)
    .await
}

/// The protocols and criteria of `year` (all when `None`), by date.
pub async fn protocols(
    conn: &mut PgConnection,
    year: Option<i32>,
) -> Result<Vec<Protocol>, sqlx::Error> {
    sqlx::query_as(
        r#"
        SELECT id, signed_on, title, kind, signatories
        FROM tavolo_protocols
        WHERE $1::INT IS NULL OR EXTRACT(YEAR FROM signed_on)::INT = $1
        ORDER BY signed_on, id
        "#,
    )
    .bind(year)
    .fetch_all(conn)
    .await
}

/// The objectives of `year` (all when `None`).
pub async fn objectives(
    conn: &mut PgConnection,
    year: Option<i32>,
) -> Result<Vec<Objective>, sqlx::Error> {
    sqlx::query_as(
        r#"
        SELECT id, year, indicator, target, description
        FROM tavolo_objectives
        WHERE $1::INT IS NULL OR year = $1
        ORDER BY year, indicator NULLS LAST, id
        "#,
    )
    .bind(year)
    .fetch_all(conn)
    .await
}

/// Dates as `YYYY-MM-DD` in JSON.
pub(crate) mod iso_date {
    use serde::Serializer;
    use time::Date;

    pub(crate) fn serialize<S: Serializer>(date: &Date, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(date)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day() -> Date {
        time::macros::date!(2026 - 03 - 10)
    }

    #[test]
    fn a_meeting_with_more_present_than_invited_is_refused() {
        assert!(NewMeeting::parse(day(), "Plenaria", "politico", 10, 11, "").is_err());
        assert!(NewMeeting::parse(day(), "Plenaria", "altro", 10, 5, "").is_err());
        let m = NewMeeting::parse(day(), " Plenaria ", "tecnico", 10, 7, "Comune A, , AUSL")
            .expect("valid");
        assert_eq!(m.title, "Plenaria");
        assert_eq!(m.participants, vec!["Comune A", "AUSL"]);
    }

    #[test]
    fn a_target_is_read_as_a_fraction_or_a_percentage() {
        let o = NewObjective::parse(2026, Some("continuita_sprar"), Some("85%"), "Continuità")
            .expect("valid");
        assert_eq!(o.target, Some((Indicator::Continuita, 0.85)));
        assert!(NewObjective::parse(2026, Some("continuita_sprar"), Some("120%"), "x").is_err());
        assert!(NewObjective::parse(2026, Some("incontri"), None, "x").is_err());
        assert!(NewObjective::parse(2026, Some("ignoto"), Some("3"), "x").is_err());
        let words = NewObjective::parse(2026, None, None, "Tavoli distrettuali").expect("valid");
        assert!(words.target.is_none());
    }
}
