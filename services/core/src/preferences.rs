//! What referents ask of their mail: per kind, at once (the default), in a digest with a
//! window (hourly, daily at a time, weekly on a day), or not at all for the kinds the
//! protocols leave optional; and quiet hours, during which only what cannot wait goes out.
//!
//! Times are Europe/Rome's. The decision is pure: [`decide`] takes `now`, so tests pass any
//! instant, daylight-saving changes included.
//!
//! The wire forms (the `preferences` member of `registry.referent.v1`, the import columns
//! and the self-service page) are text: a mode is `immediate`, `off`, `hourly`,
//! `daily HH:MM` or `weekly DAY HH:MM` (Italian forms accepted: `ogni ora`,
//! `ogni giorno 08:00`, `ogni settimana lunedì 08:00`); quiet hours are `HH:MM-HH:MM`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::notification::NotificationKind;

/// A time of day in Europe/Rome, to the minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalTime {
    pub hour: u8,
    pub minute: u8,
}

impl LocalTime {
    /// Parses `HH:MM` (also `H:MM`, `HH.MM`), 00:00 to 23:59.
    pub fn parse(text: &str) -> Result<Self, PreferenceError> {
        let bad = || PreferenceError::Time(text.chars().take(40).collect());
        let (h, m) = text.trim().split_once([':', '.']).ok_or_else(bad)?;
        let digits =
            |t: &str| !t.is_empty() && t.len() <= 2 && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(h) || m.len() != 2 || !digits(m) {
            return Err(bad());
        }
        let hour: u8 = h.parse().map_err(|_| bad())?;
        let minute: u8 = m.parse().map_err(|_| bad())?;
        if hour > 23 || minute > 59 {
            return Err(bad());
        }
        Ok(Self { hour, minute })
    }

    fn minutes(self) -> u32 {
        u32::from(self.hour) * 60 + u32::from(self.minute)
    }
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Day {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl Day {
    const ALL: [Day; 7] = [
        Day::Monday,
        Day::Tuesday,
        Day::Wednesday,
        Day::Thursday,
        Day::Friday,
        Day::Saturday,
        Day::Sunday,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Day::Monday => "monday",
            Day::Tuesday => "tuesday",
            Day::Wednesday => "wednesday",
            Day::Thursday => "thursday",
            Day::Friday => "friday",
            Day::Saturday => "saturday",
            Day::Sunday => "sunday",
        }
    }

    /// The Italian name.
    pub fn label_it(self) -> &'static str {
        match self {
            Day::Monday => "lunedì",
            Day::Tuesday => "martedì",
            Day::Wednesday => "mercoledì",
            Day::Thursday => "giovedì",
            Day::Friday => "venerdì",
            Day::Saturday => "sabato",
            Day::Sunday => "domenica",
        }
    }

    /// Parses an English or Italian name, whole or in three letters, any case.
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim().to_lowercase().replace('ì', "i");
        Day::ALL.into_iter().find(|d| {
            let it = d.label_it().replace('ì', "i");
            t == d.as_str()
                || t == it
                || (t.len() == 3 && (d.as_str().starts_with(&t) || it.starts_with(&t)))
        })
    }

    fn index(self) -> i8 {
        match self {
            Day::Monday => 1,
            Day::Tuesday => 2,
            Day::Wednesday => 3,
            Day::Thursday => 4,
            Day::Friday => 5,
            Day::Saturday => 6,
            Day::Sunday => 7,
        }
    }
}

/// When a digest closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    /// At every full hour.
    Hourly,
    /// Every day at a time.
    Daily(LocalTime),
    /// Every week on a day, at a time.
    Weekly(Day, LocalTime),
}

impl Window {
    /// The first close strictly after `now`.
    pub fn next_close(self, now: OffsetDateTime) -> OffsetDateTime {
        let local = zoned(now);
        let candidate = match self {
            Window::Hourly => {
                let start = local
                    .with()
                    .minute(0)
                    .second(0)
                    .subsec_nanosecond(0)
                    .build()
                    .unwrap_or_else(|_| local.clone());
                start.checked_add(jiff::SignedDuration::from_hours(1)).ok()
            }
            Window::Daily(at) => next_at(&local, at, |_| true),
            Window::Weekly(day, at) => next_at(&local, at, |d| {
                d.weekday().to_monday_one_offset() == day.index()
            }),
        };
        candidate
            .map(|z| from_zoned(&z))
            .unwrap_or(now + time::Duration::hours(1))
    }

    /// The Italian phrase: "ogni ora", "ogni giorno alle 08:00", "ogni lunedì alle 08:00".
    pub fn label_it(self) -> String {
        match self {
            Window::Hourly => "ogni ora".into(),
            Window::Daily(at) => format!("ogni giorno alle {at}"),
            Window::Weekly(day, at) => format!("ogni {} alle {at}", day.label_it()),
        }
    }
}

/// What a referent wants of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// One email each, at once (the default).
    #[default]
    Immediate,
    /// Collected into one email per window.
    Digest(Window),
    /// Not sent (only the kinds of [`is_optional`]).
    Off,
}

impl Mode {
    /// Parses a wire or Italian form (see the module's documentation).
    pub fn parse(text: &str) -> Result<Self, PreferenceError> {
        let bad = || PreferenceError::Mode(text.chars().take(60).collect());
        let lowered = text.trim().to_lowercase();
        let words: Vec<&str> = lowered.split_whitespace().collect();
        match words.as_slice() {
            ["immediate" | "subito" | "immediato"] => Ok(Mode::Immediate),
            ["off" | "mai" | "disattivato"] => Ok(Mode::Off),
            ["hourly"] | ["ogni", "ora"] => Ok(Mode::Digest(Window::Hourly)),
            ["daily", at] | ["ogni", "giorno", at] => {
                Ok(Mode::Digest(Window::Daily(LocalTime::parse(at)?)))
            }
            ["weekly", day, at] | ["ogni", "settimana", day, at] => Ok(Mode::Digest(
                Window::Weekly(Day::parse(day).ok_or_else(bad)?, LocalTime::parse(at)?),
            )),
            _ => Err(bad()),
        }
    }

    /// The Italian phrase shown to the referent.
    pub fn label_it(self) -> String {
        match self {
            Mode::Immediate => "subito, una email per notifica".into(),
            Mode::Digest(w) => format!("in un riepilogo {}", w.label_it()),
            Mode::Off => "non inviare".into(),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Immediate => f.write_str("immediate"),
            Mode::Off => f.write_str("off"),
            Mode::Digest(Window::Hourly) => f.write_str("hourly"),
            Mode::Digest(Window::Daily(at)) => write!(f, "daily {at}"),
            Mode::Digest(Window::Weekly(day, at)) => write!(f, "weekly {} {at}", day.as_str()),
        }
    }
}

/// Hours during which only what cannot wait goes out, `from` to `to` (across midnight when
/// `from` is later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuietHours {
    pub from: LocalTime,
    pub to: LocalTime,
}

impl QuietHours {
    /// Parses `HH:MM-HH:MM`; the two must differ.
    pub fn parse(text: &str) -> Result<Self, PreferenceError> {
        let (from, to) = text
            .split_once('-')
            .ok_or_else(|| PreferenceError::QuietHours(text.chars().take(40).collect()))?;
        let hours = Self {
            from: LocalTime::parse(from)?,
            to: LocalTime::parse(to)?,
        };
        if hours.from == hours.to {
            return Err(PreferenceError::QuietHours(text.chars().take(40).collect()));
        }
        Ok(hours)
    }

    fn contains(self, at: LocalTime) -> bool {
        let (m, from, to) = (at.minutes(), self.from.minutes(), self.to.minutes());
        if from < to {
            from <= m && m < to
        } else {
            m >= from || m < to
        }
    }
}

impl fmt::Display for QuietHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.from, self.to)
    }
}

/// Why preferences cannot be kept. Names the value's form, never a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreferenceError {
    #[error("{0:?} is not a time HH:MM")]
    Time(String),
    #[error("{0:?} is not a mode: immediate, off, hourly, \"daily HH:MM\" or \"weekly DAY HH:MM\"")]
    Mode(String),
    #[error("{0:?} is not quiet hours HH:MM-HH:MM")]
    QuietHours(String),
    #[error("{0:?} is not a notification kind")]
    Kind(String),
    #[error("{0} is required by the protocols and cannot be turned off (a digest is allowed)")]
    Mandatory(&'static str),
    #[error("{0:?} is not \"kind=mode\"")]
    Entry(String),
}

/// A referent's preferences. The default sends everything at once, at any hour.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Preferences {
    /// Per kind; a kind not named is [`Mode::Immediate`].
    pub kinds: BTreeMap<NotificationKind, Mode>,
    /// Quiet hours, if any.
    pub quiet_hours: Option<QuietHours>,
    /// Saturday and Sunday are quiet all day.
    pub quiet_weekends: bool,
}

/// The kinds a referent may turn off: information the protocols do not require them to
/// receive. The others can be digested, never refused.
pub fn is_optional(kind: NotificationKind) -> bool {
    matches!(
        kind,
        NotificationKind::HousingAck | NotificationKind::EvictionStats
    )
}

/// The kinds never digested nor held for quiet hours: urgent alerts (C5), a pronta
/// accoglienza and its overdue notice (A1, A2), an unacknowledged alert (D5), and a
/// revocation, which must overtake what it revokes.
pub fn never_delayed(kind: NotificationKind) -> bool {
    matches!(
        kind,
        NotificationKind::EvictionConsentRevoked
            | NotificationKind::AsylumProntaAccoglienza
            | NotificationKind::AsylumInterventionOverdue
            | NotificationKind::DeliveryUnacknowledged
    )
}

/// The kinds that may carry a family's or a person's data: never put in a digest beside
/// other items (held for quiet hours, they go out alone).
pub fn may_carry_personal_data(kind: NotificationKind) -> bool {
    matches!(
        kind,
        NotificationKind::EvictionAlert
            | NotificationKind::EvictionConsentRevoked
            | NotificationKind::DeliveryUnacknowledged
            | NotificationKind::AsylumProntaAccoglienza
            | NotificationKind::AsylumInterventionOverdue
            | NotificationKind::AsylumDomicileAssigned
            | NotificationKind::AsylumWeeklyPriorities
            | NotificationKind::AsylumPlaceAvailable
    )
}

/// One delivery as the decision sees it.
#[derive(Debug, Clone, Copy)]
pub struct Item {
    pub kind: NotificationKind,
    /// The notification is urgent (C5).
    pub urgent: bool,
    /// It goes by PEC, where each message's receipt is the legal fact (D2).
    pub pec: bool,
    /// It was in a digest the server refused: it now goes alone.
    pub out_of_digest: bool,
}

/// What becomes of a delivery now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Sent now.
    Send,
    /// Put in the digest closing at `until`.
    Digest { until: OffsetDateTime },
    /// Held alone until `until` (quiet hours), then sent.
    Defer { until: OffsetDateTime },
    /// Not sent: the referent turned the kind off.
    Suppress,
}

/// Decides what becomes of `item` for a referent with `prefs` at `now`.
pub fn decide(prefs: &Preferences, item: Item, now: OffsetDateTime) -> Decision {
    if item.urgent || never_delayed(item.kind) {
        return Decision::Send;
    }
    let mode = prefs.mode(item.kind);
    if mode == Mode::Off && is_optional(item.kind) {
        return Decision::Suppress;
    }
    let digestible = !may_carry_personal_data(item.kind) && !item.pec && !item.out_of_digest;
    if let (Mode::Digest(window), true) = (mode, digestible) {
        let close = window.next_close(now);
        return Decision::Digest {
            until: prefs.quiet_end(close),
        };
    }
    let end = prefs.quiet_end(now);
    if end > now {
        if digestible {
            return Decision::Digest { until: end };
        }
        return Decision::Defer { until: end };
    }
    Decision::Send
}

impl Preferences {
    /// The mode of `kind`: [`Mode::Immediate`] unless set (an `off` on a kind that cannot be
    /// turned off counts as immediate).
    pub fn mode(&self, kind: NotificationKind) -> Mode {
        match self.kinds.get(&kind).copied().unwrap_or_default() {
            Mode::Off if !is_optional(kind) => Mode::Immediate,
            mode => mode,
        }
    }

    /// Whether `at` is quiet.
    pub fn is_quiet(&self, at: OffsetDateTime) -> bool {
        let local = zoned(at);
        let weekend = matches!(
            local.weekday(),
            jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
        );
        (self.quiet_weekends && weekend)
            || self.quiet_hours.is_some_and(|q| {
                q.contains(LocalTime {
                    hour: local.hour() as u8,
                    minute: local.minute() as u8,
                })
            })
    }

    /// The first instant at or after `at` that is not quiet (`at` itself when it is not).
    pub fn quiet_end(&self, at: OffsetDateTime) -> OffsetDateTime {
        let mut t = at;
        // Each step leaves one quiet stretch (an evening, a weekend); a week holds few.
        for _ in 0..16 {
            if !self.is_quiet(t) {
                return t;
            }
            let local = zoned(t);
            let weekend = matches!(
                local.weekday(),
                jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
            );
            let next = if self.quiet_weekends && weekend {
                next_at(&local, LocalTime { hour: 0, minute: 0 }, |d| {
                    d.weekday() == jiff::civil::Weekday::Monday
                })
            } else if let Some(q) = self.quiet_hours {
                next_at(&local, q.to, |_| true)
            } else {
                None
            };
            match next {
                Some(z) => t = from_zoned(&z),
                None => return t,
            }
        }
        t
    }

    /// Whether nothing is set.
    pub fn is_default(&self) -> bool {
        self == &Preferences::default()
    }

    /// Sets `kind=mode` entries from text such as
    /// `housing.offered=daily 08:00; eviction.stats=off` (the import column).
    pub fn parse_kinds(text: &str) -> Result<BTreeMap<NotificationKind, Mode>, PreferenceError> {
        let mut kinds = BTreeMap::new();
        for entry in text
            .split([';', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (kind, mode) = entry
                .split_once('=')
                .ok_or_else(|| PreferenceError::Entry(entry.chars().take(60).collect()))?;
            let (kind, mode) = (parse_kind(kind)?, Mode::parse(mode)?);
            check(kind, mode)?;
            kinds.insert(kind, mode);
        }
        Ok(kinds)
    }

    /// The `kind=mode` entries, as [`Preferences::parse_kinds`] reads them.
    pub fn kinds_text(&self) -> String {
        self.kinds
            .iter()
            .map(|(k, m)| format!("{}={m}", k.as_str()))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn parse_kind(text: &str) -> Result<NotificationKind, PreferenceError> {
    NotificationKind::parse(text.trim())
        .ok_or_else(|| PreferenceError::Kind(text.trim().chars().take(60).collect()))
}

fn check(kind: NotificationKind, mode: Mode) -> Result<(), PreferenceError> {
    if mode == Mode::Off && !is_optional(kind) {
        return Err(PreferenceError::Mandatory(kind.as_str()));
    }
    Ok(())
}

/// The wire form: `{"kinds": {"<kind>": "<mode>"}, "quiet_hours": "HH:MM-HH:MM",
/// "quiet_weekends": bool}`, every member optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreferencesWire {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kinds: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quiet_weekends: bool,
}

impl TryFrom<PreferencesWire> for Preferences {
    type Error = PreferenceError;

    fn try_from(wire: PreferencesWire) -> Result<Self, Self::Error> {
        let mut kinds = BTreeMap::new();
        for (kind, mode) in &wire.kinds {
            let (kind, mode) = (parse_kind(kind)?, Mode::parse(mode)?);
            check(kind, mode)?;
            if mode != Mode::Immediate {
                kinds.insert(kind, mode);
            }
        }
        let quiet_hours = wire
            .quiet_hours
            .as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(QuietHours::parse)
            .transpose()?;
        Ok(Self {
            kinds,
            quiet_hours,
            quiet_weekends: wire.quiet_weekends,
        })
    }
}

impl From<&Preferences> for PreferencesWire {
    fn from(prefs: &Preferences) -> Self {
        Self {
            kinds: prefs
                .kinds
                .iter()
                .map(|(k, m)| (k.as_str().to_owned(), m.to_string()))
                .collect(),
            quiet_hours: prefs.quiet_hours.map(|q| q.to_string()),
            quiet_weekends: prefs.quiet_weekends,
        }
    }
}

impl Serialize for Preferences {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        PreferencesWire::from(self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Preferences {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Preferences::try_from(PreferencesWire::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl Preferences {
    /// Reads the stored JSON; what no longer parses (a kind since renamed) counts as the
    /// default, so a stored value can never stop the mail.
    pub fn from_stored(value: &serde_json::Value) -> Self {
        serde_json::from_value(value.clone()).unwrap_or_default()
    }
}

fn rome() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get("Europe/Rome").unwrap_or(jiff::tz::TimeZone::UTC)
}

fn zoned(at: OffsetDateTime) -> jiff::Zoned {
    jiff::Timestamp::from_second(at.unix_timestamp())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(rome())
}

fn from_zoned(z: &jiff::Zoned) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(z.timestamp().as_second())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The first instant strictly after `local` at `at` on a day `day_ok` accepts (within 8
/// days). A time skipped by the spring change falls on the instant after the gap.
fn next_at(
    local: &jiff::Zoned,
    at: LocalTime,
    day_ok: impl Fn(jiff::civil::Date) -> bool,
) -> Option<jiff::Zoned> {
    let today = local.date();
    for offset in 0..9 {
        let date = today.checked_add(jiff::Span::new().days(offset)).ok()?;
        if !day_ok(date) {
            continue;
        }
        let time = jiff::civil::time(at.hour as i8, at.minute as i8, 0, 0);
        let candidate = date.to_datetime(time).to_zoned(rome()).ok()?;
        if candidate.timestamp() > local.timestamp() {
            return Some(candidate);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn prefs(kinds: &str, quiet: Option<&str>, weekends: bool) -> Preferences {
        Preferences {
            kinds: Preferences::parse_kinds(kinds).expect("valid kinds"),
            quiet_hours: quiet.map(|q| QuietHours::parse(q).expect("valid hours")),
            quiet_weekends: weekends,
        }
    }

    fn item(kind: NotificationKind) -> Item {
        Item {
            kind,
            urgent: false,
            pec: false,
            out_of_digest: false,
        }
    }

    #[test]
    fn modes_parse_in_english_and_italian_and_print_canonically() {
        for (text, printed) in [
            ("immediate", "immediate"),
            ("subito", "immediate"),
            ("off", "off"),
            ("hourly", "hourly"),
            ("ogni ora", "hourly"),
            ("daily 08:00", "daily 08:00"),
            ("ogni giorno 8.30", "daily 08:30"),
            ("weekly mon 09:00", "weekly monday 09:00"),
            ("ogni settimana lunedì 09:00", "weekly monday 09:00"),
            ("WEEKLY Venerdi 17:15", "weekly friday 17:15"),
        ] {
            assert_eq!(
                Mode::parse(text).expect(text).to_string(),
                printed,
                "{text}"
            );
            assert_eq!(Mode::parse(printed).expect(printed).to_string(), printed);
        }
        for bad in [
            "",
            "daily",
            "daily 24:00",
            "daily 8:60",
            "weekly xyz 08:00",
            "sometimes",
        ] {
            assert!(Mode::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_mandatory_kind_cannot_be_turned_off_only_digested() {
        assert_eq!(
            Preferences::parse_kinds("housing.offered=off"),
            Err(PreferenceError::Mandatory("housing.offered"))
        );
        assert!(
            Preferences::parse_kinds("housing.offered=daily 08:00; eviction.stats=off").is_ok()
        );
        assert!(matches!(
            Preferences::parse_kinds("housing.unknown=off"),
            Err(PreferenceError::Kind(_))
        ));
        let wire: Result<Preferences, _> =
            serde_json::from_value(serde_json::json!({"kinds": {"quota.threshold": "off"}}));
        assert!(wire.is_err());
        let wire: Result<Preferences, _> =
            serde_json::from_value(serde_json::json!({"colour": "blue"}));
        assert!(wire.is_err(), "unknown members are refused");
    }

    #[test]
    fn windows_close_in_rome_time_across_daylight_saving() {
        // 10:20 in Rome (winter) → the hour closes at 11:00 Rome, 10:00 UTC.
        let now = datetime!(2026-12-07 09:20 UTC);
        assert_eq!(
            Window::Hourly.next_close(now),
            datetime!(2026-12-07 10:00 UTC)
        );
        let eight = LocalTime::parse("08:00").expect("time");
        assert_eq!(
            Window::Daily(eight).next_close(now),
            datetime!(2026-12-08 07:00 UTC)
        );
        // Monday 7 December 2026: the next Monday 08:00 is a week later.
        assert_eq!(
            Window::Weekly(Day::Monday, eight).next_close(now),
            datetime!(2026-12-14 07:00 UTC)
        );
        // Saturday 28 March 2026 10:00 Rome; the clocks go forward on Sunday 29.
        let before = datetime!(2026-03-28 09:00 UTC);
        assert_eq!(
            Window::Daily(eight).next_close(before),
            datetime!(2026-03-29 06:00 UTC),
            "08:00 CEST"
        );
        // 02:30 does not exist on 29 March: the instant after the gap.
        let half_two = LocalTime::parse("02:30").expect("time");
        let close = Window::Daily(half_two).next_close(before);
        assert!(
            close > before && close <= datetime!(2026-03-29 01:30 UTC),
            "{close}"
        );
        // A close exactly now is the next one.
        assert_eq!(
            Window::Daily(eight).next_close(datetime!(2026-12-08 07:00 UTC)),
            datetime!(2026-12-09 07:00 UTC)
        );
    }

    #[test]
    fn quiet_hours_wrap_midnight_and_weekends_run_to_monday() {
        let p = prefs("", Some("20:00-08:00"), true);
        // Friday 11 December 2026, 21:00 Rome: quiet until Monday 08:00 Rome.
        let friday_night = datetime!(2026-12-11 20:00 UTC);
        assert!(p.is_quiet(friday_night));
        assert_eq!(p.quiet_end(friday_night), datetime!(2026-12-14 07:00 UTC));
        // Tuesday 07:59 Rome is quiet, 08:00 is not.
        assert!(p.is_quiet(datetime!(2026-12-08 06:59 UTC)));
        assert!(!p.is_quiet(datetime!(2026-12-08 07:00 UTC)));
        let day = datetime!(2026-12-08 10:00 UTC);
        assert_eq!(p.quiet_end(day), day);
        let evening = prefs("", Some("13:00-14:00"), false);
        assert!(evening.is_quiet(datetime!(2026-12-08 12:30 UTC)));
        assert!(!evening.is_quiet(datetime!(2026-12-08 13:00 UTC)));
    }

    #[test]
    fn urgent_kinds_always_go_out_at_once() {
        let p = prefs("quota.threshold=daily 08:00", Some("00:00-23:59"), true);
        let night = datetime!(2026-12-12 23:00 UTC);
        for kind in NotificationKind::ALL
            .into_iter()
            .filter(|k| never_delayed(*k))
        {
            assert_eq!(decide(&p, item(kind), night), Decision::Send, "{kind}");
        }
        let urgent = Item {
            urgent: true,
            ..item(NotificationKind::EvictionAlert)
        };
        assert_eq!(decide(&p, urgent, night), Decision::Send);
    }

    #[test]
    fn personal_data_is_never_digested_only_held_alone() {
        let p = prefs("eviction.alert=hourly", Some("20:00-08:00"), false);
        let night = datetime!(2026-12-08 22:00 UTC);
        assert_eq!(
            decide(&p, item(NotificationKind::EvictionAlert), night),
            Decision::Defer {
                until: datetime!(2026-12-09 07:00 UTC)
            }
        );
        let day = datetime!(2026-12-08 10:00 UTC);
        assert_eq!(
            decide(&p, item(NotificationKind::EvictionAlert), day),
            Decision::Send
        );
    }

    #[test]
    fn a_digest_closing_in_quiet_hours_waits_for_their_end() {
        let p = prefs("quota.threshold=hourly", Some("20:00-08:00"), false);
        // 19:30 Rome: the hour closes at 20:00, quiet: the digest goes at 08:00.
        let now = datetime!(2026-12-08 18:30 UTC);
        assert_eq!(
            decide(&p, item(NotificationKind::QuotaThreshold), now),
            Decision::Digest {
                until: datetime!(2026-12-09 07:00 UTC)
            }
        );
        // An immediate kind in quiet hours joins the morning digest.
        assert_eq!(
            decide(
                &p,
                item(NotificationKind::HousingOffered),
                datetime!(2026-12-08 22:00 UTC)
            ),
            Decision::Digest {
                until: datetime!(2026-12-09 07:00 UTC)
            }
        );
        // By PEC, or out of a refused digest, it is held alone.
        let pec = Item {
            pec: true,
            ..item(NotificationKind::HousingOffered)
        };
        assert!(matches!(
            decide(&p, pec, datetime!(2026-12-08 22:00 UTC)),
            Decision::Defer { .. }
        ));
    }

    #[test]
    fn off_suppresses_optional_kinds_only() {
        let p = prefs("eviction.stats=off", None, false);
        let now = datetime!(2026-12-08 10:00 UTC);
        assert_eq!(
            decide(&p, item(NotificationKind::EvictionStats), now),
            Decision::Suppress
        );
        let mut forced = Preferences::default();
        forced
            .kinds
            .insert(NotificationKind::HousingOffered, Mode::Off);
        assert_eq!(
            decide(&forced, item(NotificationKind::HousingOffered), now),
            Decision::Send
        );
    }

    #[test]
    fn stored_preferences_round_trip_and_a_bad_stored_value_is_the_default() {
        let p = prefs(
            "housing.offered=weekly fri 17:00; eviction.stats=off",
            Some("20:00-08:00"),
            true,
        );
        let value = serde_json::to_value(&p).expect("serialises");
        assert_eq!(Preferences::from_stored(&value), p);
        assert_eq!(
            Preferences::from_stored(&serde_json::json!({"kinds": {"gone.kind": "hourly"}})),
            Preferences::default()
        );
        assert_eq!(
            p.kinds_text(),
            "eviction.stats=off; housing.offered=weekly friday 17:00"
        );
    }
}
