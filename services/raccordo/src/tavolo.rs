//! `raccordo tavolo meeting|protocol|objective add|list`: the Tavolo provinciale asilo's own
//! records; `raccordo report tavolo --year`: its annual relazione-report (A6) as printable
//! HTML, CSV or JSON; `raccordo tavolo bench`: the report timed on a generated year, in a
//! database of its own that is dropped afterwards.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use secrecy::ExposeSecret;
use sqlx::PgConnection;
use time::Date;

use raccordo_asylum::tavolo::generate::{self, GenComune, GenDesk};
use raccordo_asylum::tavolo::records::{self, NewMeeting, NewObjective, NewProtocol};
use raccordo_asylum::tavolo::{ReportParams, TavoloReport, html, load_report};
use raccordo_core::clock::{now, rome_date};
use raccordo_core::db;
use raccordo_core::settings::Settings;

use crate::database::connect_db;
use crate::table::{Format, render, render_csv};

/// `raccordo tavolo …`
#[derive(Debug, Subcommand)]
pub enum TavoloCommand {
    /// Meetings of the Tavolo: date, level, invited and present, institutions present.
    Meeting {
        #[command(subcommand)]
        command: MeetingCommand,
    },
    /// Protocols signed and criteria shared.
    Protocol {
        #[command(subcommand)]
        command: ProtocolCommand,
    },
    /// The year's objectives: a target for an indicator of the report, or a goal in words.
    Objective {
        #[command(subcommand)]
        command: ObjectiveCommand,
    },
    /// Time the annual report on a generated year (own database, dropped at the end).
    Bench(BenchArgs),
}

/// `raccordo tavolo meeting …`
#[derive(Debug, Subcommand)]
pub enum MeetingCommand {
    /// Record a meeting.
    Add {
        /// The day, YYYY-MM-DD.
        #[arg(long, value_parser = parse_date)]
        date: Date,
        #[arg(long)]
        title: String,
        /// politico, organizzativo or tecnico.
        #[arg(long, default_value = "politico")]
        level: String,
        /// How many institutions were invited.
        #[arg(long)]
        invited: i32,
        /// How many came.
        #[arg(long)]
        present: i32,
        /// The institutions present, separated by commas.
        #[arg(long, default_value = "")]
        participants: String,
    },
    /// List meetings.
    List(ListArgs),
}

/// `raccordo tavolo protocol …`
#[derive(Debug, Subcommand)]
pub enum ProtocolCommand {
    /// Record a protocol signed or a criterion shared.
    Add {
        /// The day it was signed or adopted, YYYY-MM-DD.
        #[arg(long, value_parser = parse_date)]
        date: Date,
        #[arg(long)]
        title: String,
        /// protocollo or criterio.
        #[arg(long, default_value = "protocollo")]
        kind: String,
        /// The signatories, separated by commas.
        #[arg(long, default_value = "")]
        signatories: String,
    },
    /// List protocols and criteria.
    List(ListArgs),
}

/// `raccordo tavolo objective …`
#[derive(Debug, Subcommand)]
pub enum ObjectiveCommand {
    /// Record an objective; a target for an indicator already set that year replaces it.
    Add {
        #[arg(long)]
        year: i32,
        /// An indicator of the report (e.g. continuita_sprar, incontri).
        #[arg(long, requires = "target")]
        indicator: Option<String>,
        /// The target in the indicator's unit: 0.9 or 90% for a share, hours, days, a count.
        #[arg(long, requires = "indicator")]
        target: Option<String>,
        #[arg(long)]
        description: String,
    },
    /// List objectives.
    List(ListArgs),
}

/// Options of the listings.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this year.
    #[arg(long)]
    year: Option<i32>,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// `raccordo report tavolo`
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The calendar year (Europe/Rome), from 2000 to the current one.
    #[arg(long)]
    pub year: i32,
    #[arg(long, value_enum, default_value_t)]
    pub format: ReportFormat,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// The report's formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ReportFormat {
    /// One printable page with its charts.
    #[default]
    Html,
    Csv,
    Json,
}

/// `raccordo tavolo bench`
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The year to generate.
    #[arg(long, default_value_t = 2025)]
    year: i32,
    /// How many cases.
    #[arg(long, default_value_t = 100_000)]
    cases: usize,
    /// The generator's seed.
    #[arg(long, default_value_t = 19)]
    seed: u64,
    /// Keep the bench's database (its name is printed) to look at it.
    #[arg(long)]
    keep: bool,
}

fn parse_date(s: &str) -> Result<Date, String> {
    Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| "a date as YYYY-MM-DD".to_owned())
}

/// Runs `raccordo tavolo …`.
pub async fn run(command: TavoloCommand, settings: &Settings) -> anyhow::Result<()> {
    if let TavoloCommand::Bench(args) = command {
        return bench(settings, &args).await;
    }
    let pool = connect_db(settings).await?;
    let mut conn = pool.acquire().await?;
    let out = match command {
        TavoloCommand::Meeting { command } => meeting(&mut conn, command).await?,
        TavoloCommand::Protocol { command } => protocol(&mut conn, command).await?,
        TavoloCommand::Objective { command } => objective(&mut conn, command).await?,
        TavoloCommand::Bench(_) => String::new(),
    };
    drop(conn);
    pool.close().await;
    print!("{out}");
    Ok(())
}

async fn meeting(conn: &mut PgConnection, command: MeetingCommand) -> anyhow::Result<String> {
    match command {
        MeetingCommand::Add {
            date,
            title,
            level,
            invited,
            present,
            participants,
        } => {
            let m = NewMeeting::parse(date, &title, &level, invited, present, &participants)?;
            let id = records::add_meeting(conn, &m)
                .await
                .context("Failed to record the meeting")?;
            Ok(format!(
                "Meeting {id} recorded ({date}, {present}/{invited} present).\n"
            ))
        }
        MeetingCommand::List(args) => {
            let list = records::meetings(conn, args.year).await?;
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|m| {
                    vec![
                        m.id.to_string(),
                        m.held_on.to_string(),
                        m.level.clone(),
                        m.title.clone(),
                        format!("{}/{}", m.present, m.invited),
                        m.participants.join("; "),
                    ]
                })
                .collect();
            let header = ["id", "date", "level", "title", "present", "participants"];
            listing(args.format, &header, &rows, &list)
        }
    }
}

async fn protocol(conn: &mut PgConnection, command: ProtocolCommand) -> anyhow::Result<String> {
    match command {
        ProtocolCommand::Add {
            date,
            title,
            kind,
            signatories,
        } => {
            let p = NewProtocol::parse(date, &title, &kind, &signatories)?;
            let id = records::add_protocol(conn, &p)
                .await
                .context("Failed to record the protocol")?;
            Ok(format!("{} {id} recorded ({date}).\n", p.kind.as_str()))
        }
        ProtocolCommand::List(args) => {
            let list = records::protocols(conn, args.year).await?;
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|p| {
                    vec![
                        p.id.to_string(),
                        p.signed_on.to_string(),
                        p.kind.clone(),
                        p.title.clone(),
                        p.signatories.join("; "),
                    ]
                })
                .collect();
            let header = ["id", "date", "kind", "title", "signatories"];
            listing(args.format, &header, &rows, &list)
        }
    }
}

async fn objective(conn: &mut PgConnection, command: ObjectiveCommand) -> anyhow::Result<String> {
    match command {
        ObjectiveCommand::Add {
            year,
            indicator,
            target,
            description,
        } => {
            let o =
                NewObjective::parse(year, indicator.as_deref(), target.as_deref(), &description)?;
            let id = records::add_objective(conn, &o)
                .await
                .context("Failed to record the objective")?;
            Ok(format!("Objective {id} recorded for {year}.\n"))
        }
        ObjectiveCommand::List(args) => {
            let list = records::objectives(conn, args.year).await?;
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|o| {
                    vec![
                        o.id.to_string(),
                        o.year.to_string(),
                        o.indicator.clone().unwrap_or_else(|| "-".into()),
                        o.target
                            .map(|t| t.to_string())
                            .unwrap_or_else(|| "-".into()),
                        o.description.clone(),
                    ]
                })
                .collect();
            let header = ["id", "year", "indicator", "target", "description"];
            listing(args.format, &header, &rows, &list)
        }
    }
}

fn listing<T: serde::Serialize>(
    format: Format,
    header: &[&str],
    rows: &[Vec<String>],
    items: &[T],
) -> anyhow::Result<String> {
    match format {
        Format::Json => Ok(format!("{}\n", serde_json::to_string_pretty(items)?)),
        Format::Csv => render_csv(header, rows),
        Format::Table => Ok(render(header, rows)),
    }
}

/// The report of `year`, which must have begun (Europe/Rome).
pub async fn report(settings: &Settings, year: i32) -> anyhow::Result<TavoloReport> {
    let current = rome_date(now()).year();
    anyhow::ensure!(
        (2000..=current).contains(&year),
        "--year: from 2000 to {current}"
    );
    let pool = connect_db(settings).await?;
    let mut conn = pool.acquire().await?;
    let report = load_report(&mut conn, params(settings, year))
        .await
        .context("Failed to compute the Tavolo's report")?;
    drop(conn);
    pool.close().await;
    Ok(report)
}

fn params(settings: &Settings, year: i32) -> ReportParams {
    ReportParams {
        year,
        first_intervention_hours: settings.asylum.first_intervention_hours,
        generated_at: now(),
    }
}

/// Renders the report in `format`.
pub fn format_report(report: &TavoloReport, format: ReportFormat) -> anyhow::Result<String> {
    match format {
        ReportFormat::Html => Ok(html::render_html(report)),
        ReportFormat::Json => Ok(format!("{}\n", serde_json::to_string_pretty(report)?)),
        ReportFormat::Csv => {
            let rows: Vec<Vec<String>> = report.csv_rows().into_iter().map(Vec::from).collect();
            render_csv(&["section", "item", "value", "target", "verdict"], &rows)
        }
    }
}

/// `raccordo report tavolo`.
pub async fn print_report(settings: &Settings, args: &ReportArgs) -> anyhow::Result<()> {
    let report = report(settings, args.year).await?;
    let text = format_report(&report, args.format)?;
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("Failed to write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}

/// The sample comuni of the Città Metropolitana, as the demo's.
const SAMPLE_COMUNI: &str = include_str!("../../../data/comuni_mi.csv");

/// The bench's own database, `<name>_tavolo_<random>`.
fn bench_settings(settings: &Settings) -> anyhow::Result<Settings> {
    let mut settings = settings.clone();
    let name = settings.database.database_name()?;
    let random = uuid::Uuid::new_v4().simple().to_string();
    let mut url = url::Url::parse(settings.database.url.expose_secret())
        .context("database.url is not a URL")?;
    url.set_path(&format!("/{name}_tavolo_{}", &random[..12]));
    settings.database.url = url.to_string().into();
    Ok(settings)
}

/// Generates a year in a database of its own, times the report in each format, drops it.
async fn bench(settings: &Settings, args: &BenchArgs) -> anyhow::Result<()> {
    let settings = bench_settings(settings)?;
    db::create_database_if_missing(&settings.database)
        .await
        .context("Failed to create the bench's database (scripts/services.sh starts PostgreSQL)")?;
    let result = bench_in(&settings, args).await;
    if args.keep {
        eprintln!("Kept the database {}.", settings.database.database_name()?);
    } else if let Err(error) = db::drop_database(&settings.database).await {
        eprintln!("Could not drop the bench's database: {error}");
    }
    let lines = result?;
    print!("{lines}");
    Ok(())
}

async fn bench_in(settings: &Settings, args: &BenchArgs) -> anyhow::Result<String> {
    let pool = connect_db(settings).await?;
    db::migrate(&pool).await.context("Failed to migrate")?;
    let comuni = std::io::Cursor::new(SAMPLE_COMUNI);
    raccordo_core::registry::import_comuni(&pool, comuni)
        .await
        .context("Failed to import the sample comuni")?;
    let mut conn = pool.acquire().await?;
    let year = sample_year(&mut conn, args).await?;
    let started = Instant::now();
    generate::insert_desks(&mut conn, &year).await?;
    generate::insert_year(&mut conn, &year, 5_000)
        .await
        .context("Failed to insert the generated year")?;
    sqlx::query("ANALYZE").execute(&mut *conn).await?;
    let inserted = started.elapsed();
    let mut out = format!(
        "Generated {} cases of {} (seed {}) in {:.1} s.\n",
        args.cases,
        args.year,
        args.seed,
        inserted.as_secs_f64()
    );
    for format in [ReportFormat::Json, ReportFormat::Csv, ReportFormat::Html] {
        let started = Instant::now();
        let report = load_report(&mut conn, params(settings, args.year)).await?;
        let text = format_report(&report, format)?;
        out.push_str(&format!(
            "report tavolo --format {:?}: {:.0} ms ({} bytes)\n",
            format,
            started.elapsed().as_secs_f64() * 1000.0,
            text.len()
        ));
    }
    drop(conn);
    pool.close().await;
    Ok(out)
}

/// The sample comuni, a third of them in the rotation when none is, and six desks.
async fn sample_year(
    conn: &mut PgConnection,
    args: &BenchArgs,
) -> anyhow::Result<generate::GenYear> {
    sqlx::query(
        r#"
        UPDATE comuni SET domicilio = TRUE
        WHERE NOT EXISTS (SELECT 1 FROM comuni WHERE domicilio) AND istat::INT % 3 = 0
        "#,
    )
    .execute(&mut *conn)
    .await?;
    let comuni: Vec<(String, String, i32, bool)> =
        sqlx::query_as("SELECT istat, zona, popolazione, domicilio FROM comuni ORDER BY istat")
            .fetch_all(&mut *conn)
            .await?;
    let comuni: Vec<GenComune> = comuni
        .into_iter()
        .map(|(istat, zona, pop, domicilio)| GenComune {
            istat,
            zona,
            popolazione: i64::from(pop),
            domicilio,
        })
        .collect();
    // Six desks (seed 001: "6 presidi"), spread over the comuni.
    let desks = (0..6)
        .map(|i| GenDesk {
            referent_id: format!("sportello-{}", i + 1),
            comune_istat: comuni[(i * comuni.len()) / 6].istat.clone(),
        })
        .collect();
    generate::generate(args.year, args.cases, comuni, desks, args.seed)
        .context("--year out of range, or no comune to generate on")
}
