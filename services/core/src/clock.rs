//! Time as the hub sees it. Decision cores take `now` as an argument, so tests pass any
//! instant they like; only the edges call [`now`].
//!
//! The protocols are Italian: days and months are those of Europe/Rome (CET/CEST), taken
//! from the IANA database bundled in the binary, so a container without tzdata agrees.

use std::fmt;

use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime};

/// The current UTC instant.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Where a worker reads the time: injected, so tests fix it instead of racing the clock.
pub trait Clock: Send + Sync + 'static {
    /// The current UTC instant.
    fn now(&self) -> OffsetDateTime;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        now()
    }
}

/// A clock that always answers the same instant (tests).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub OffsetDateTime);

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        self.0
    }
}

/// The current instant as RFC 3339.
pub fn now_rfc3339() -> String {
    now().format(&Rfc3339).unwrap_or_default()
}

fn rome() -> jiff::tz::TimeZone {
    // Bundled with jiff (feature tzdb-bundle-always): cannot be missing.
    jiff::tz::TimeZone::get("Europe/Rome").unwrap_or(jiff::tz::TimeZone::UTC)
}

/// The calendar date in Europe/Rome at `instant`.
pub fn rome_date(instant: OffsetDateTime) -> Date {
    let zoned = jiff::Timestamp::from_second(instant.unix_timestamp())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(rome());
    let d = zoned.date();
    Month::try_from(d.month() as u8)
        .ok()
        .and_then(|m| Date::from_calendar_date(i32::from(d.year()), m, d.day() as u8).ok())
        .unwrap_or(instant.date())
}

/// `(YYYY-MM-DD, HH:MM)` of `instant` in Europe/Rome, as a social worker in Milan reads it.
pub fn rome_local(instant: OffsetDateTime) -> (String, String) {
    let zoned = jiff::Timestamp::from_second(instant.unix_timestamp())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(rome());
    (
        zoned.strftime("%Y-%m-%d").to_string(),
        zoned.strftime("%H:%M").to_string(),
    )
}

/// `YYYY-MM-DD HH:MM:SS` of `instant` in Europe/Rome: the one form the CLI and the console
/// show times in.
pub fn rome_datetime(instant: OffsetDateTime) -> String {
    jiff::Timestamp::from_second(instant.unix_timestamp())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(rome())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// The first instant of `date` in Europe/Rome.
pub fn rome_start_of_day(date: Date) -> OffsetDateTime {
    let civil = jiff::civil::date(
        date.year() as i16,
        u8::from(date.month()) as i8,
        date.day() as i8,
    );
    let seconds = civil
        .to_zoned(rome())
        .map(|z| z.timestamp().as_second())
        .unwrap_or(0);
    OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The Italian name of a month, lower case.
pub fn month_it(month: Month) -> &'static str {
    const NAMES: [&str; 12] = [
        "gennaio",
        "febbraio",
        "marzo",
        "aprile",
        "maggio",
        "giugno",
        "luglio",
        "agosto",
        "settembre",
        "ottobre",
        "novembre",
        "dicembre",
    ];
    NAMES[u8::from(month) as usize - 1]
}

/// A calendar month, `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct YearMonth {
    pub year: i32,
    pub month: Month,
}

impl YearMonth {
    /// Parses `YYYY-MM`.
    pub fn parse(s: &str) -> Result<Self, crate::domain::ParseError> {
        let bad = || crate::domain::ParseError(format!("{s:?} is not a month YYYY-MM"));
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if y.len() != 4 || m.len() != 2 || !digits(y) || !digits(m) {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u8 = m.parse().map_err(|_| bad())?;
        let month = Month::try_from(month).map_err(|_| bad())?;
        Ok(Self { year, month })
    }

    /// The month containing `date`.
    pub fn of(date: Date) -> Self {
        Self {
            year: date.year(),
            month: date.month(),
        }
    }

    /// The month before.
    pub fn previous(self) -> Self {
        match self.month {
            Month::January => Self {
                year: self.year - 1,
                month: Month::December,
            },
            m => Self {
                year: self.year,
                month: m.previous(),
            },
        }
    }

    /// The month after.
    pub fn next(self) -> Self {
        match self.month {
            Month::December => Self {
                year: self.year + 1,
                month: Month::January,
            },
            m => Self {
                year: self.year,
                month: m.next(),
            },
        }
    }

    /// Its first day.
    pub fn first_day(self) -> Date {
        Date::from_calendar_date(self.year, self.month, 1).unwrap_or(Date::MIN)
    }

    /// The Europe/Rome instants `[start, end)` of the month.
    pub fn rome_bounds(self) -> (OffsetDateTime, OffsetDateTime) {
        (
            rome_start_of_day(self.first_day()),
            rome_start_of_day(self.next().first_day()),
        )
    }

    /// The Italian name, `novembre 2026`.
    pub fn italian(self) -> String {
        format!("{} {}", month_it(self.month), self.year)
    }
}

/// The first month a report may cover (the protocols date from 2017): with the current
/// month as the last, every report's period is bounded.
pub const FIRST_REPORT_MONTH: YearMonth = YearMonth {
    year: 2000,
    month: Month::January,
};

/// Why a month was refused for a report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportMonthError {
    #[error("{0:?} is not a month YYYY-MM")]
    Format(String),
    #[error("{month} is before {FIRST_REPORT_MONTH}, the first month a report covers")]
    TooEarly { month: YearMonth },
    #[error("{month} has not begun yet (the current month is {current})")]
    Future {
        month: YearMonth,
        current: YearMonth,
    },
}

impl YearMonth {
    /// Parses the month of a report: `YYYY-MM` from [`FIRST_REPORT_MONTH`] to `current`.
    pub fn parse_report(s: &str, current: YearMonth) -> Result<Self, ReportMonthError> {
        let month = Self::parse(s).map_err(|_| ReportMonthError::Format(s.to_owned()))?;
        if month < FIRST_REPORT_MONTH {
            return Err(ReportMonthError::TooEarly { month });
        }
        if month > current {
            return Err(ReportMonthError::Future { month, current });
        }
        Ok(month)
    }

    /// The current month in Europe/Rome.
    pub fn current() -> Self {
        Self::of(rome_date(now()))
    }
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, u8::from(self.month))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn late_evening_utc_on_the_last_day_is_already_next_month_in_rome() {
        let instant = datetime!(2026-10-31 23:30 UTC);
        assert_eq!(rome_date(instant).to_string(), "2026-11-01");
        let summer = datetime!(2026-06-30 22:30 UTC);
        assert_eq!(rome_date(summer).to_string(), "2026-07-01");
        let before = datetime!(2026-06-30 21:30 UTC);
        assert_eq!(rome_date(before).to_string(), "2026-06-30");
    }

    #[test]
    fn local_times_are_shown_in_rome_winter_and_summer() {
        assert_eq!(
            rome_local(datetime!(2026-01-15 08:30 UTC)),
            ("2026-01-15".into(), "09:30".into())
        );
        assert_eq!(
            rome_local(datetime!(2026-07-15 22:30 UTC)),
            ("2026-07-16".into(), "00:30".into())
        );
    }

    #[test]
    fn month_bounds_follow_rome_offsets() {
        let (start, end) = YearMonth::parse("2026-11").expect("valid").rome_bounds();
        assert_eq!(start, datetime!(2026-10-31 23:00 UTC));
        assert_eq!(end, datetime!(2026-11-30 23:00 UTC));
        let (start, _) = YearMonth::parse("2026-07").expect("valid").rome_bounds();
        assert_eq!(start, datetime!(2026-06-30 22:00 UTC));
    }

    #[test]
    fn months_parse_step_and_print() {
        let m = YearMonth::parse("2026-01").expect("valid");
        assert_eq!(m.previous().to_string(), "2025-12");
        assert_eq!(m.next().to_string(), "2026-02");
        assert_eq!(m.italian(), "gennaio 2026");
        assert!(YearMonth::parse("2026-13").is_err());
        assert!(YearMonth::parse("26-01").is_err());
    }

    #[test]
    fn a_report_month_lies_between_the_first_and_the_current_month() {
        let current = YearMonth::parse("2026-11").expect("valid");
        assert!(YearMonth::parse_report("2026-11", current).is_ok());
        assert!(YearMonth::parse_report("2000-01", current).is_ok());
        for (s, early) in [("1900-01", true), ("0000-01", true), ("1999-12", true)] {
            assert_eq!(
                matches!(
                    YearMonth::parse_report(s, current),
                    Err(ReportMonthError::TooEarly { .. })
                ),
                early,
                "{s}"
            );
        }
        for s in ["9999-12", "2026-12"] {
            assert!(
                matches!(
                    YearMonth::parse_report(s, current),
                    Err(ReportMonthError::Future { .. })
                ),
                "{s}"
            );
        }
        assert!(matches!(
            YearMonth::parse_report("+999-01", current),
            Err(ReportMonthError::Format(_))
        ));
    }
}
