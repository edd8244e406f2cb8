//! The domicile rotation (rule A3) for operators: `raccordo asylum rotation
//! pause|resume|list` and `raccordo report domiciles --year`.

use anyhow::Context;
use serde::Serialize;
use sqlx::PgPool;
use time::Date;

use raccordo_asylum::domicile_report::{DomicileLine, domicile_report};
use raccordo_asylum::rotation::{UNIT, peek};
use raccordo_asylum::rotation_store::{
    RotationRow, domicilio_comuni, load_rows, members, set_pause,
};
use raccordo_core::clock::{now, rome_date};
use raccordo_core::domain::{ComuneIstat, parse_date};
use raccordo_core::registry::Snapshot;
use raccordo_core::settings::Settings;

use crate::database::connect_db;
use crate::table::{Format, render, render_csv};

/// A report's year: from 2000 to the current one (Europe/Rome).
pub(crate) fn parse_year(s: &str) -> Result<i32, String> {
    let current = rome_date(now()).year();
    match s.parse::<i32>() {
        Ok(year) if (2000..=current).contains(&year) => Ok(year),
        _ => Err(format!("use a year from 2000 to {current}, e.g. {current}")),
    }
}

/// A pause's last day, YYYY-MM-DD.
pub(crate) fn parse_day(s: &str) -> Result<Date, String> {
    parse_date(s).map_err(|_| "use a date as YYYY-MM-DD, e.g. 2027-01-31".to_owned())
}

/// The comune `istat` names, which must be marked `domicilio`.
fn rotation_comune(registry: &Snapshot, istat: &str) -> anyhow::Result<ComuneIstat> {
    let istat = ComuneIstat::parse(istat)
        .map_err(|_| anyhow::anyhow!("{istat:?} is not an ISTAT code (6 digits)"))?;
    let comune = registry
        .comune(&istat)
        .with_context(|| format!("No comune {istat} in the registry (raccordo import comuni)"))?;
    anyhow::ensure!(
        comune.domicilio,
        "{} ({istat}) is not in the domicile rotation: mark it domicilio=si in the comuni table and import it again",
        comune.nome
    );
    Ok(istat)
}

/// Pauses `istat` up to and including `until`, or resumes it; says what it did.
pub(crate) async fn pause(
    settings: &Settings,
    istat: &str,
    until: Option<Date>,
) -> anyhow::Result<String> {
    let pool = connect_db(settings).await?;
    let mut conn = pool.acquire().await?;
    let registry = Snapshot::load(&mut conn)
        .await
        .context("Failed to read the registry")?;
    let istat = rotation_comune(&registry, istat)?;
    let nome = registry
        .comune(&istat)
        .map(|c| c.nome.clone())
        .unwrap_or_default();
    if let Some(until) = until {
        anyhow::ensure!(
            until >= rome_date(now()),
            "{until} is in the past: a pause lasts up to and including its --until day"
        );
    }
    set_pause(&mut conn, &istat, until)
        .await
        .context("Failed to record the pause")?;
    drop(conn);
    pool.close().await;
    Ok(match until {
        Some(until) => format!(
            "{nome} ({istat}) is paused up to and including {until}: it receives no domicile until then.\n"
        ),
        None => format!("{nome} ({istat}) is back in the domicile rotation.\n"),
    })
}

/// One comune of `raccordo asylum rotation list`.
#[derive(Debug, Serialize)]
pub(crate) struct RotationEntry {
    istat: String,
    nome: String,
    popolazione: i32,
    /// Its share of the domiciles while the rotation stays as it is (0 when paused).
    share: f64,
    /// Fair share so far minus domiciles received, in assignments.
    credit: f64,
    assigned: i64,
    /// The last day of its pause, YYYY-MM-DD, while paused.
    paused_until: Option<String>,
    /// Receives the next request.
    next: bool,
}

/// The rotation as it stands.
pub(crate) async fn list(settings: &Settings) -> anyhow::Result<Vec<RotationEntry>> {
    let pool = connect_db(settings).await?;
    let mut conn = pool.acquire().await?;
    let registry = Snapshot::load(&mut conn)
        .await
        .context("Failed to read the registry")?;
    let rows = load_rows(&mut conn)
        .await
        .context("Failed to read the rotation")?;
    drop(conn);
    pool.close().await;
    Ok(entries(&registry, &rows, rome_date(now())))
}

fn entries(registry: &Snapshot, rows: &[RotationRow], today: Date) -> Vec<RotationEntry> {
    let comuni = domicilio_comuni(registry);
    let active = members(&comuni, rows, today);
    let total: u64 = active.iter().map(|m| m.population).sum();
    let next = peek(&active).map(|i| active[i].istat.clone());
    comuni
        .iter()
        .map(|c| {
            let row = rows.iter().find(|r| r.comune_istat == c.istat.as_ref());
            let member = active.iter().find(|m| m.istat == c.istat);
            RotationEntry {
                istat: c.istat.as_ref().to_owned(),
                nome: c.nome.clone(),
                popolazione: c.popolazione,
                share: member.map_or(0.0, |m| m.population as f64 / total.max(1) as f64),
                credit: row.map_or(0.0, |r| r.current_weight as f64 / UNIT as f64),
                assigned: row.map_or(0, |r| r.assigned),
                paused_until: row
                    .filter(|r| r.paused_on(today))
                    .and_then(|r| r.paused_until)
                    .map(|d| d.to_string()),
                next: next.as_ref() == Some(&c.istat),
            }
        })
        .collect()
}

/// The rotation as a table, CSV or JSON.
pub(crate) fn format_list(entries: &[RotationEntry], format: Format) -> anyhow::Result<String> {
    if format == Format::Json {
        return Ok(format!("{}\n", serde_json::to_string_pretty(entries)?));
    }
    const HEADER: [&str; 8] = [
        "istat",
        "comune",
        "population",
        "share %",
        "credit",
        "assigned",
        "state",
        "next",
    ];
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.istat.clone(),
                e.nome.clone(),
                e.popolazione.to_string(),
                format!("{:.2}", e.share * 100.0),
                format!("{:+.3}", e.credit),
                e.assigned.to_string(),
                e.paused_until
                    .as_ref()
                    .map_or_else(|| "active".to_owned(), |d| format!("paused until {d}")),
                if e.next { "next".into() } else { String::new() },
            ]
        })
        .collect();
    if format == Format::Csv {
        return render_csv(&HEADER, &rows);
    }
    if rows.is_empty() {
        return Ok("No comune is marked domicilio: the rotation is empty.\n".into());
    }
    Ok(render(&HEADER, &rows))
}

/// The year's domiciles per comune against its fair share.
pub(crate) async fn report(settings: &Settings, year: i32) -> anyhow::Result<Vec<DomicileLine>> {
    let pool: PgPool = connect_db(settings).await?;
    let mut conn = pool.acquire().await?;
    let registry = Snapshot::load(&mut conn)
        .await
        .context("Failed to read the registry")?;
    let lines = domicile_report(&mut conn, &registry, year)
        .await
        .context("Failed to read the domiciles")?;
    drop(conn);
    pool.close().await;
    Ok(lines)
}

/// The report as a table (with a total), CSV or JSON (an array of comuni).
pub(crate) fn format_report(
    year: i32,
    lines: &[DomicileLine],
    format: Format,
) -> anyhow::Result<String> {
    if format == Format::Json {
        return Ok(format!("{}\n", serde_json::to_string_pretty(lines)?));
    }
    const HEADER: [&str; 8] = [
        "istat",
        "comune",
        "population",
        "in rotation",
        "domiciles",
        "people",
        "fair share",
        "deviation",
    ];
    let mut rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            vec![
                l.istat.clone(),
                l.nome.clone(),
                l.popolazione.to_string(),
                if l.in_rotation { "yes" } else { "no" }.into(),
                l.assigned.to_string(),
                l.people.to_string(),
                format!("{:.2}", l.fair_share),
                format!("{:+.2}", l.deviation),
            ]
        })
        .collect();
    if format == Format::Csv {
        return render_csv(&HEADER, &rows);
    }
    let assigned: i64 = lines.iter().map(|l| l.assigned).sum();
    let people: i64 = lines.iter().map(|l| l.people).sum();
    let fair: f64 = lines.iter().map(|l| l.fair_share).sum();
    let worst = lines.iter().map(|l| l.deviation.abs()).fold(0.0, f64::max);
    rows.push(vec![
        String::new(),
        format!("total {year}"),
        String::new(),
        String::new(),
        assigned.to_string(),
        people.to_string(),
        format!("{fair:.2}"),
        format!("max |{worst:.2}|"),
    ]);
    Ok(render(&HEADER, &rows))
}
