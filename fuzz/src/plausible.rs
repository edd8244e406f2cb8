//! Prior states as the hub could hold them: dates within the contract's years, figures
//! within what the schemas, the CSV imports and the settings validation let in.

use arbitrary::{Result, Unstructured};
use time::{Date, Duration, OffsetDateTime, UtcOffset};

use raccordo_core::domain::{ComuneIstat, ReceptionKind};
use raccordo_eviction::decide::{ConsentInForce, ProcedureState, StepRecord};
use raccordo_eviction::event::{ConsentDecision, Step};
use raccordo_quota::decide::{ComuneFigures, Facility, Ratios, Rule, Standing};

/// 1900-01-01 and 2200-12-31 as Julian days.
fn day_range() -> (i32, i32) {
    let first = Date::from_calendar_date(1900, time::Month::January, 1).expect("valid date");
    let last = Date::from_calendar_date(2200, time::Month::December, 31).expect("valid date");
    (first.to_julian_day(), last.to_julian_day())
}

/// A date within 1900–2200.
pub fn date(u: &mut Unstructured<'_>) -> Result<Date> {
    let (first, last) = day_range();
    let day = u.int_in_range(first..=last)?;
    Ok(Date::from_julian_day(day).expect("within the range"))
}

/// A datetime whose date, as written and in UTC, is within 1900–2200.
pub fn datetime(u: &mut Unstructured<'_>) -> Result<OffsetDateTime> {
    let date = date(u)?;
    let second = u.int_in_range(0..=86_399)?;
    let offset_minutes: i32 = u.int_in_range(-(23 * 60 + 59)..=(23 * 60 + 59))?;
    let offset = UtcOffset::from_whole_seconds(offset_minutes * 60).expect("within ±24 h");
    let at = date
        .midnight()
        .assume_offset(offset)
        .saturating_add(Duration::seconds(i64::from(second)));
    // Keep the UTC instant inside the range too (the edges are 1900-01-01 and 2200-12-31).
    let utc_year = OffsetDateTime::from_unix_timestamp(at.unix_timestamp()).map(|u| u.year());
    match utc_year {
        Ok(y) if (1900..=2200).contains(&y) && (1900..=2200).contains(&at.year()) => Ok(at),
        _ => Ok(date
            .midnight()
            .assume_utc()
            .replace_year(2000)
            .unwrap_or(at)),
    }
}

/// The hub's clock: any instant of the range.
pub fn now(u: &mut Unstructured<'_>) -> Result<OffsetDateTime> {
    datetime(u).map(|at| at.to_offset(UtcOffset::UTC))
}

/// A step as the hub stores it.
pub fn step_record(u: &mut Unstructured<'_>) -> Result<StepRecord> {
    Ok(StepRecord {
        step: *u.choose(&Step::ALL)?,
        occurred_on: date(u)?,
        next_access_at: if u.arbitrary()? {
            Some(datetime(u)?)
        } else {
            None
        },
        info_material_delivered: u.arbitrary()?,
    })
}

/// A procedure as the hub knows it before an event: a decision in force or none, and up
/// to 16 steps.
pub fn procedure_state(u: &mut Unstructured<'_>) -> Result<ProcedureState> {
    let consent = if u.arbitrary()? {
        Some(ConsentInForce {
            decision: if u.arbitrary()? {
                ConsentDecision::Granted
            } else {
                ConsentDecision::Revoked
            },
            recorded_at: datetime(u)?,
        })
    } else {
        None
    };
    let steps = u.int_in_range(0..=16)?;
    let history = (0..steps)
        .map(|_| step_record(u))
        .collect::<Result<Vec<_>>>()?;
    Ok(ProcedureState { consent, history })
}

/// `eviction.urgent_within_days`: any `u32` the settings accept.
pub fn urgent_within_days(u: &mut Unstructured<'_>) -> Result<u32> {
    if u.arbitrary()? {
        u.arbitrary()
    } else {
        u.int_in_range(0..=30)
    }
}

/// One of a few comuni, so that facilities and figures meet.
pub fn comune(u: &mut Unstructured<'_>) -> Result<ComuneIstat> {
    let code = *u.choose(&["015146", "015182", "015002", "015005"])?;
    Ok(ComuneIstat::parse(code).expect("six digits"))
}

/// A facility as its newest report describes it (`capacity`, `presences`: the schema's u32).
pub fn facility(u: &mut Unstructured<'_>) -> Result<Facility> {
    Ok(Facility {
        comune_istat: comune(u)?,
        kind: if u.arbitrary()? {
            ReceptionKind::Cas
        } else {
            ReceptionKind::Sprar
        },
        capacity: i64::from(u.arbitrary::<u32>()?),
        presences: i64::from(u.arbitrary::<u32>()?),
        active: u.arbitrary()?,
    })
}

/// `quota.per_thousand`: what the settings validation accepts (positive, not NaN).
pub fn per_thousand(u: &mut Unstructured<'_>) -> Result<f64> {
    let raw: f64 = u.arbitrary()?;
    Ok(if raw.is_nan() || raw <= 0.0 { 3.5 } else { raw })
}

/// `quota.exclusion_ratio` and `quota.zone_full_ratio`: what the settings accept.
pub fn ratios(u: &mut Unstructured<'_>) -> Result<Ratios> {
    let mut ratio = || -> Result<f64> {
        let raw: f64 = u.arbitrary()?;
        Ok(if raw.is_finite() && raw > 0.0 {
            raw
        } else {
            0.5
        })
    };
    Ok(Ratios {
        exclusion_ratio: ratio()?,
        zone_full_ratio: ratio()?,
    })
}

/// A comune's figures as `ComuneFigures::compute` makes them from a CSV row
/// (`popolazione`, `quota`: `i32` ≥ 0) and facilities.
pub fn figures(
    u: &mut Unstructured<'_>,
    per_thousand: f64,
    facilities: &[Facility],
) -> Result<ComuneFigures> {
    let istat = comune(u)?;
    let popolazione = u.int_in_range(0..=i32::MAX)?;
    let table_quota = if u.arbitrary()? {
        Some(u.int_in_range(0..=i32::MAX)?)
    } else {
        None
    };
    let quota = raccordo_quota::decide::quota_of(popolazione, table_quota, per_thousand);
    Ok(ComuneFigures::compute(
        &istat,
        u.arbitrary()?,
        quota,
        facilities,
    ))
}

/// A standing the hub announced before.
pub fn standing(u: &mut Unstructured<'_>) -> Result<Standing> {
    let rule = *u.choose(&[None, Some(Rule::Comune), Some(Rule::Zona)])?;
    Ok(Standing {
        rule,
        safeguard: u.arbitrary()?,
    })
}
