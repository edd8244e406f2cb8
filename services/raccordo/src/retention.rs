//! Retention (CONTRACT 1.2 §8, C9): `raccordo retention run [--dry-run]` and the daily job.
//!
//! Each room owns the SQL of its tables (`raccordo_eviction::retention`,
//! `raccordo_asylum::retention`, `raccordo_core::retention`); this module only orders them,
//! removes the file transport's `.eml` files, and logs the run. C9 runs first, so a
//! procedure's notices are scrubbed by C4's path before payloads are reduced by age.
//!
//! One run at a time across replicas: a session advisory lock, held on a connection of its
//! own for the run; each batch is its own short transaction on the pool. The daily job
//! records the Europe/Rome date in `scheduled_runs` once it finished, so it runs once a day;
//! a run cut short runs again at the next check, and finds only what is still due.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde::Serialize;
use sqlx::PgPool;
use sqlx::pool::PoolConnection;
use sqlx::postgres::Postgres;
use tokio_util::sync::CancellationToken;

use raccordo_core::clock::{now, rome_date};
use raccordo_core::retention::{self as core_retention, Mode, Prune, Pruned, Trigger};
use raccordo_core::schedule::{RunOutcome, record_run};
use raccordo_core::settings::{RetentionSettings, Settings};
use raccordo_core::telemetry::ErrorChain;
use raccordo_mailer::FileOutbox;

use crate::database::connect_db;
use crate::table::{Format, render, render_csv};

/// The advisory lock and the `scheduled_runs` job name.
const JOB: &str = "retention";

/// Every kind, in the order they run, cutoffs from `at`.
fn prunes(settings: &RetentionSettings, at: time::OffsetDateTime) -> Vec<Box<dyn Prune>> {
    let idle_since = core_retention::days_before(at, settings.idle_days);
    let ended = core_retention::days_before(at, settings.personal_days);
    let mut all: Vec<Box<dyn Prune>> = vec![
        Box::new(raccordo_eviction::retention::EndedProcedures {
            idle_since,
            // A step's date is a Europe/Rome day.
            ended_before: rome_date(ended),
        }),
        Box::new(raccordo_asylum::retention::EndedCases {
            ended_before: ended,
            idle_since,
        }),
    ];
    all.extend(core_retention::core_prunes(settings, at));
    all
}

/// A run's result: what went (or would go), per kind.
#[derive(Debug, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub kinds: Vec<Pruned>,
}

/// Runs every kind (or, dry, counts), then logs the counts. The caller holds the lock.
pub async fn run_all(
    pool: &PgPool,
    settings: &Settings,
    mode: Mode,
    trigger: Trigger,
) -> anyhow::Result<Report> {
    let mut kinds = Vec::new();
    for prune in prunes(&settings.retention, now()) {
        let pruned = core_retention::run_kind(pool, prune.as_ref(), &settings.retention, mode)
            .await
            .with_context(|| format!("Failed to prune {}", prune.kind()))?;
        tracing::info!(
            kind = pruned.kind,
            count = pruned.count,
            dry_run = mode == Mode::DryRun,
            "Retention: kind done."
        );
        kinds.push(pruned);
    }
    kinds.push(prune_files(pool, settings, mode).await?);
    let mut conn = pool.acquire().await?;
    core_retention::record_log(&mut conn, &kinds, mode, trigger)
        .await
        .context("Failed to write the retention log")?;
    Ok(Report {
        dry_run: mode == Mode::DryRun,
        kinds,
    })
}

/// The file transport's `.eml` files older than `retention.eml_days`, and those of
/// notifications whose payload is scrubbed, reduced or gone (C9, C4): kind `eml.files`.
async fn prune_files(pool: &PgPool, settings: &Settings, mode: Mode) -> anyhow::Result<Pruned> {
    let kind = "eml.files";
    let Some(outbox) = FileOutbox::from_settings(&settings.mail) else {
        return Ok(Pruned { kind, count: 0 });
    };
    let failed = || {
        format!(
            "Failed to read the outbox folder {}",
            outbox.dir().display()
        )
    };
    let files = outbox.files().await.with_context(failed)?;
    let age = Duration::from_secs(u64::from(settings.retention.eml_days) * 86_400);
    let cutoff = SystemTime::now()
        .checked_sub(age)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut ids: Vec<uuid::Uuid> = files.iter().map(|f| f.notification).collect();
    ids.sort();
    ids.dedup();
    let mut conn = pool.acquire().await?;
    let without: HashSet<uuid::Uuid> = core_retention::without_payload(&mut conn, &ids)
        .await?
        .into_iter()
        .collect();
    drop(conn);
    let due: Vec<_> = files
        .into_iter()
        .filter(|f| f.modified < cutoff || without.contains(&f.notification))
        .collect();
    let count = match mode {
        Mode::DryRun => due.len(),
        Mode::Prune => outbox.remove_files(&due).await.with_context(failed)?,
    };
    Ok(Pruned {
        kind,
        count: u64::try_from(count).unwrap_or(u64::MAX),
    })
}

/// Takes the run's lock on a connection of its own (closed when dropped, so a failed run
/// never leaves it held); `None` when another process holds it.
async fn lock(pool: &PgPool) -> Result<Option<PoolConnection<Postgres>>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    conn.close_on_drop();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
        .bind(JOB)
        .fetch_one(&mut *conn)
        .await?;
    Ok(locked.then_some(conn))
}

/// Releases the run's lock now: closing its connection releases it too, but only once the
/// server has seen the connection go, and a check right after would find it still held.
async fn unlock(conn: &mut PoolConnection<Postgres>) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
        .bind(JOB)
        .execute(&mut **conn)
        .await?;
    Ok(())
}

/// How long `retention run` waits for a daily run of another process to end.
const COMMAND_WAITS: Duration = Duration::from_secs(120);

/// The run's lock for the command: it waits for another process's run to end.
async fn wait_for_lock(pool: &PgPool) -> anyhow::Result<PoolConnection<Postgres>> {
    let deadline = tokio::time::Instant::now() + COMMAND_WAITS;
    loop {
        if let Some(lock) = lock(pool).await? {
            return Ok(lock);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "Another process has been pruning for {COMMAND_WAITS:?} (the daily retention job); try again later"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Today's run (Europe/Rome date), unless another replica runs it now or it ran already.
pub async fn run_daily_once(pool: &PgPool, settings: &Settings) -> anyhow::Result<RunOutcome> {
    let period = rome_date(now()).to_string();
    let Some(mut lock) = lock(pool).await? else {
        return Ok(RunOutcome::Busy);
    };
    let done: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM scheduled_runs WHERE job = $1 AND period = $2)",
    )
    .bind(JOB)
    .bind(&period)
    .fetch_one(&mut *lock)
    .await?;
    if done {
        unlock(&mut lock).await?;
        return Ok(RunOutcome::AlreadyDone);
    }
    let report = run_all(pool, settings, Mode::Prune, Trigger::Daily).await?;
    record_run(&mut lock, JOB, &period).await?;
    unlock(&mut lock).await?;
    let total: u64 = report.kinds.iter().map(|k| k.count).sum();
    tracing::info!(day = %period, deleted = total, "Retention ran.");
    Ok(RunOutcome::Ran)
}

/// Checks every `every` whether today's run is due, until `token` is cancelled.
pub async fn run_daily(
    pool: PgPool,
    settings: Arc<Settings>,
    every: Duration,
    token: CancellationToken,
) {
    loop {
        if let Err(error) = run_daily_once(&pool, &settings).await {
            tracing::warn!(error = %ErrorChain(error.as_ref()), "Retention failed; will retry.");
        }
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// `raccordo retention run [--dry-run]`: runs now, whatever the day's job did.
pub async fn command(settings: &Settings, dry_run: bool) -> anyhow::Result<Report> {
    let pool = connect_db(settings).await?;
    let lock = wait_for_lock(&pool).await?;
    let mode = if dry_run { Mode::DryRun } else { Mode::Prune };
    let report = run_all(&pool, settings, mode, Trigger::Command).await;
    let mut lock = lock;
    unlock(&mut lock).await?;
    pool.close().await;
    report
}

/// The report as a table, CSV or JSON.
pub fn format(report: &Report, format: Format) -> anyhow::Result<String> {
    let header = if report.dry_run {
        ["kind", "would delete"]
    } else {
        ["kind", "deleted"]
    };
    let rows: Vec<Vec<String>> = report
        .kinds
        .iter()
        .map(|k| vec![k.kind.to_owned(), k.count.to_string()])
        .collect();
    Ok(match format {
        Format::Table => render(&header, &rows),
        Format::Csv => render_csv(&header, &rows)?,
        Format::Json => format!("{}\n", serde_json::to_string_pretty(report)?),
    })
}
