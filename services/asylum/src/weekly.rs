//! The weekly priority list's schedule (rule A4): every Monday at 08:00 Europe/Rome, once
//! across replicas, and once after a downtime over Monday — the weekly sibling of
//! [`raccordo_core::schedule`]'s monthly jobs, with the same lock and the same
//! `scheduled_runs` table (the period is the Monday, `YYYY-MM-DD`).
//!
//! Each check asks which Monday 08:00 was the latest one at or before `now` (the injected
//! clock's) and runs the list for it unless it ran already: a replica back after a
//! downtime over Monday sends that Monday's list once, late; after several missed Mondays,
//! only the latest (the older lists are stale).

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use time::{Date, OffsetDateTime};
use tokio_util::sync::CancellationToken;

use raccordo_core::clock::{Clock, rome_date, rome_start_of_day};
use raccordo_core::schedule::{self, RunOutcome};
use raccordo_core::telemetry::ErrorChain;

use crate::priorities::WeeklyPriorities;

/// The `scheduled_runs` job name and advisory lock of the weekly list.
pub const JOB: &str = "asylum.weekly_priorities";

/// The hour of the list, Europe/Rome (A4).
const HOUR: i64 = 8;

/// The Monday of the latest Monday 08:00 Europe/Rome at or before `now`.
///
/// Clocks change on Sundays in Europe, so a Monday 08:00 is always eight hours after the
/// Monday's local midnight.
pub fn latest_slot(now: OffsetDateTime) -> Date {
    let today = rome_date(now);
    let from_monday = i64::from(today.weekday().number_days_from_monday());
    let monday = today - time::Duration::days(from_monday);
    if now < slot_instant(monday) {
        monday - time::Duration::days(7)
    } else {
        monday
    }
}

/// The instant of the list of the week starting `monday`: 08:00 Europe/Rome.
pub fn slot_instant(monday: Date) -> OffsetDateTime {
    rome_start_of_day(monday) + time::Duration::hours(HOUR)
}

/// Runs the list of the week of `monday` unless it ran already; safe to call from many
/// replicas at once: the one that takes the lock writes the notifications and records the
/// week in the same transaction.
pub async fn run_week(
    pool: &PgPool,
    job: &WeeklyPriorities,
    monday: Date,
) -> Result<RunOutcome, sqlx::Error> {
    let period = monday.to_string();
    let mut tx = pool.begin().await?;
    if let Some(skipped) = schedule::claim(&mut tx, JOB, &period).await? {
        return Ok(skipped);
    }
    job.insert(&mut tx, monday).await?;
    schedule::record_run(&mut tx, JOB, &period).await?;
    tx.commit().await?;
    Ok(RunOutcome::Ran)
}

/// Records `monday` as the list's starting point if it never ran: a hub installed on a
/// Wednesday sends its first list the Monday after. True if this call set it.
pub async fn set_baseline(pool: &PgPool, monday: Date) -> Result<bool, sqlx::Error> {
    schedule::record_baseline(pool, JOB, &monday.to_string()).await
}

/// One check: the baseline on a first start, then the latest Monday's list if still due.
pub async fn check(
    pool: &PgPool,
    job: &WeeklyPriorities,
    clock: &dyn Clock,
) -> Result<RunOutcome, sqlx::Error> {
    let monday = latest_slot(clock.now());
    if set_baseline(pool, monday).await? {
        tracing::info!(job = JOB, week = %monday, "Weekly job: first start; the first list will be next Monday's.");
    }
    run_week(pool, job, monday).await
}

/// Checks every `every` until `token` is cancelled (every replica runs it).
pub async fn run_weekly(
    pool: PgPool,
    job: Arc<WeeklyPriorities>,
    clock: Arc<dyn Clock>,
    every: Duration,
    token: CancellationToken,
) {
    loop {
        match check(&pool, &job, clock.as_ref()).await {
            Ok(RunOutcome::Ran) => tracing::info!(job = JOB, "Weekly priority list written."),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(job = JOB, error = %ErrorChain(&error), "Weekly job failed; will retry.");
            }
        }
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime};

    use super::*;

    #[test]
    fn monday_at_eight_in_rome_is_the_slot_winter_and_summer() {
        // 2026-12-07 is a Monday; Rome is UTC+1 in December.
        assert_eq!(
            slot_instant(date!(2026 - 12 - 07)),
            datetime!(2026-12-07 07:00 UTC)
        );
        // 2026-06-01 is a Monday; Rome is UTC+2 in June.
        assert_eq!(
            slot_instant(date!(2026 - 06 - 01)),
            datetime!(2026-06-01 06:00 UTC)
        );
    }

    #[test]
    fn before_eight_on_monday_the_latest_slot_is_the_previous_week() {
        assert_eq!(
            latest_slot(datetime!(2026-12-07 06:59:59 UTC)),
            date!(2026 - 11 - 30)
        );
        assert_eq!(
            latest_slot(datetime!(2026-12-07 07:00 UTC)),
            date!(2026 - 12 - 07)
        );
    }

    #[test]
    fn any_day_of_the_week_points_back_to_its_monday() {
        for (now, monday) in [
            (datetime!(2026-12-08 12:00 UTC), date!(2026 - 12 - 07)),
            (datetime!(2026-12-13 22:59 UTC), date!(2026 - 12 - 07)),
            // Sunday 23:30 UTC is already Monday 00:30 in Rome, before eight.
            (datetime!(2026-12-13 23:30 UTC), date!(2026 - 12 - 07)),
            (datetime!(2027-01-01 00:00 UTC), date!(2026 - 12 - 28)),
        ] {
            assert_eq!(latest_slot(now), monday, "{now}");
        }
    }

    #[test]
    fn the_monday_after_a_clock_change_keeps_eight_o_clock() {
        // Summer time begins on Sunday 2027-03-28; the Monday after is UTC+2.
        assert_eq!(
            slot_instant(date!(2027 - 03 - 29)),
            datetime!(2027-03-29 06:00 UTC)
        );
        // Winter time begins on Sunday 2026-10-25; the Monday after is UTC+1.
        assert_eq!(
            slot_instant(date!(2026 - 10 - 26)),
            datetime!(2026-10-26 07:00 UTC)
        );
    }
}
