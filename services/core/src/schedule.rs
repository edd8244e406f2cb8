//! Monthly jobs (the eviction statistics, the coverage verification): each runs once per
//! month for the month that just ended in Europe/Rome, whatever the number of replicas.
//!
//! A replica takes a transaction-scoped advisory lock named after the job, checks
//! `scheduled_runs`, runs the job in that transaction (its notifications go to the outbox)
//! and records the month — all or nothing. Others skip while the lock is held.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::clock::{YearMonth, now, rome_date};
use crate::telemetry::ErrorChain;

/// A job run once per month.
#[async_trait]
pub trait MonthlyJob: Send + Sync + 'static {
    /// Stable name: the advisory lock and the `scheduled_runs` key.
    fn name(&self) -> &'static str;

    /// Does the month's work in `tx`; an error rolls everything back and is retried at the
    /// next check.
    async fn run(&self, tx: &mut PgConnection, month: YearMonth) -> Result<(), sqlx::Error>;
}

/// Whether a run happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// This call ran the job.
    Ran,
    /// It had run for that month already.
    AlreadyDone,
    /// Another replica is running it now.
    Busy,
}

/// Takes `job`'s lock for `period` in `tx` and checks `scheduled_runs`: `None` when the
/// caller is to run it now (then [`record_run`] in the same transaction), else why not.
/// Any periodic job uses it: the monthly ones here, the weekly list of the asylum desks.
pub async fn claim(
    tx: &mut PgConnection,
    job: &str,
    period: &str,
) -> Result<Option<RunOutcome>, sqlx::Error> {
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext($1))")
        .bind(job)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(Some(RunOutcome::Busy));
    }
    let done: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM scheduled_runs WHERE job = $1 AND period = $2)",
    )
    .bind(job)
    .bind(period)
    .fetch_one(&mut *tx)
    .await?;
    Ok(done.then_some(RunOutcome::AlreadyDone))
}

/// Records that `job` ran for `period`, in the transaction of its work.
pub async fn record_run(tx: &mut PgConnection, job: &str, period: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO scheduled_runs (job, period) VALUES ($1, $2)")
        .bind(job)
        .bind(period)
        .execute(tx)
        .await?;
    Ok(())
}

/// Records `period` as `job`'s starting point if it has never run: a hub installed today
/// does not send what it did not witness. True if this call set it.
pub async fn record_baseline(pool: &PgPool, job: &str, period: &str) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        r#"
        INSERT INTO scheduled_runs (job, period)
        SELECT $1, $2
        WHERE NOT EXISTS (SELECT 1 FROM scheduled_runs WHERE job = $1)
        ON CONFLICT DO NOTHING
        "#,
    )
    .bind(job)
    .bind(period)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Runs `job` for `month` unless it ran already; safe to call from many replicas at once.
pub async fn run_once(
    pool: &PgPool,
    job: &dyn MonthlyJob,
    month: YearMonth,
) -> Result<RunOutcome, sqlx::Error> {
    let period = month.to_string();
    let mut tx = pool.begin().await?;
    if let Some(skipped) = claim(&mut tx, job.name(), &period).await? {
        return Ok(skipped);
    }
    job.run(&mut tx, month).await?;
    record_run(&mut tx, job.name(), &period).await?;
    tx.commit().await?;
    Ok(RunOutcome::Ran)
}

/// Records `month` as the job's starting point if it has never run: a hub installed today
/// does not send reports for months it did not witness. True if this call set it.
pub async fn set_baseline(
    pool: &PgPool,
    job: &dyn MonthlyJob,
    month: YearMonth,
) -> Result<bool, sqlx::Error> {
    record_baseline(pool, job.name(), &month.to_string()).await
}

/// Checks every `every` whether the month that just ended (Europe/Rome) still needs its
/// run, until `token` is cancelled. The first start of a new installation only records
/// the baseline ([`set_baseline`]); the first automatic run is for the month after.
pub async fn run_monthly(
    pool: PgPool,
    job: Arc<dyn MonthlyJob>,
    every: Duration,
    token: CancellationToken,
) {
    loop {
        let month = YearMonth::of(rome_date(now())).previous();
        match set_baseline(&pool, job.as_ref(), month).await {
            Ok(true) => {
                tracing::info!(job = job.name(), month = %month, "Monthly job: first start; the first automatic run will be for the month after.")
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(job = job.name(), error = %ErrorChain(&error), "Monthly job: cannot read its runs.")
            }
        }
        match run_once(&pool, job.as_ref(), month).await {
            Ok(RunOutcome::Ran) => {
                tracing::info!(job = job.name(), month = %month, "Monthly job ran.");
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(job = job.name(), month = %month, error = %ErrorChain(&error), "Monthly job failed; will retry.");
            }
        }
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
