//! Parsed domain values shared by every worker: once parsed, a raw string never crosses a
//! module boundary where one of these is meant.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

/// A value that failed to parse, with a reason fit for an operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// The 6-digit ISTAT code of a comune.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ComuneIstat(String);

impl ComuneIstat {
    /// Accepts exactly six ASCII digits.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError(format!(
                "comune_istat {s:?} is not a 6-digit ISTAT code"
            )))
        }
    }
}

impl AsRef<str> for ComuneIstat {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ComuneIstat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ComuneIstat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The reason text with a control character is refused. It holds no value, so it is
/// safe in a dead letter's reason and in a log line.
pub const CONTROL_CHARACTER: &str =
    "holds a control character (CR, LF, NUL or another C0/C1 character)";

/// Whether `s` holds a control character: C0 (NUL, TAB, CR, LF, ESC, …), DEL or C1 — what
/// can end or split an email header, or move an operator's terminal (CONTRACT §4).
pub fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Text that may reach an email header or a terminal — a referent's name or institution —
/// free of control characters (CONTRACT §4, registry).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PlainText(String);

impl PlainText {
    /// Refuses any control character; the error names no value.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if has_control(s) {
            Err(ParseError(CONTROL_CHARACTER.to_owned()))
        } else {
            Ok(Self(s.to_owned()))
        }
    }

    /// The text.
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl AsRef<str> for PlainText {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PlainText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PlainText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An email address of a referent (institutional, not personal data of a family).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// A pragmatic check: one `@`, a non-empty local part, a dotted domain, no spaces.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        let bad = || ParseError(format!("{s:?} is not an email address"));
        let (local, domain) = s.split_once('@').ok_or_else(bad)?;
        let ok = !local.is_empty()
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !s
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ','));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(bad())
        }
    }

    /// Accepts `address` or `Name <address>`.
    pub fn parse_mailbox(s: &str) -> Result<Self, ParseError> {
        match (s.rfind('<'), s.rfind('>')) {
            (Some(open), Some(close)) if open < close => Self::parse(&s[open + 1..close]),
            _ => Self::parse(s),
        }
    }

    /// The domain part.
    pub fn domain(&self) -> &str {
        self.0.split_once('@').map(|(_, d)| d).unwrap_or_default()
    }
}

impl AsRef<str> for EmailAddress {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EmailAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The role of a referent (CONTRACT §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    StazioneAppaltante,
    Prefettura,
    Comune,
    ServiziSociali,
    Tavolo,
    /// A provincial asylum desk (CONTRACT 1.2 §1).
    SportelloAsilo,
}

impl Role {
    /// Every role, in the contract's order.
    pub const ALL: [Role; 6] = [
        Role::StazioneAppaltante,
        Role::Prefettura,
        Role::Comune,
        Role::ServiziSociali,
        Role::Tavolo,
        Role::SportelloAsilo,
    ];

    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::StazioneAppaltante => "stazione_appaltante",
            Role::Prefettura => "prefettura",
            Role::Comune => "comune",
            Role::ServiziSociali => "servizi_sociali",
            Role::Tavolo => "tavolo",
            Role::SportelloAsilo => "sportello_asilo",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| {
                ParseError(format!(
                    "role {s:?} is not one of stazione_appaltante, prefettura, comune, servizi_sociali, tavolo, sportello_asilo"
                ))
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a referent covers (CONTRACT §1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The whole area.
    All,
    /// One comune.
    Comune(ComuneIstat),
    /// One ambito territoriale.
    Ambito(String),
    /// One zona omogenea.
    Zona(String),
}

impl Scope {
    /// The database pair (kind, value).
    pub fn to_columns(&self) -> (&'static str, Option<&str>) {
        match self {
            Scope::All => ("all", None),
            Scope::Comune(c) => ("comune", Some(c.as_ref())),
            Scope::Ambito(a) => ("ambito", Some(a)),
            Scope::Zona(z) => ("zona", Some(z)),
        }
    }

    /// Rebuilds a scope from its database pair.
    pub fn from_columns(kind: &str, value: Option<&str>) -> Result<Self, ParseError> {
        match (kind, value) {
            ("all", _) => Ok(Scope::All),
            ("comune", Some(v)) => Ok(Scope::Comune(ComuneIstat::parse(v)?)),
            ("ambito", Some(v)) => Ok(Scope::Ambito(v.to_owned())),
            ("zona", Some(v)) => Ok(Scope::Zona(v.to_owned())),
            _ => Err(ParseError(format!("scope {kind:?} needs a value"))),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::All => f.write_str("tutta l'area"),
            Scope::Comune(c) => write!(f, "comune {c}"),
            Scope::Ambito(a) => write!(f, "ambito {a}"),
            Scope::Zona(z) => write!(f, "zona {z}"),
        }
    }
}

/// The reception system a facility belongs to (art. 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum ReceptionKind {
    /// Centro di accoglienza straordinaria: its presences count.
    #[serde(rename = "CAS")]
    Cas,
    /// The comuni's network (SPRAR): its places count while the project is active.
    #[serde(rename = "SPRAR")]
    Sprar,
}

impl ReceptionKind {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceptionKind::Cas => "CAS",
            ReceptionKind::Sprar => "SPRAR",
        }
    }

    /// Parses the wire and database name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "CAS" => Some(ReceptionKind::Cas),
            "SPRAR" => Some(ReceptionKind::Sprar),
            _ => None,
        }
    }
}

/// Who found a housing unit (`housing.unit.v1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentifiedBy {
    #[default]
    Comune,
    Prefettura,
}

/// The kind of building of a housing unit (`housing.unit.v1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildingType {
    Appartamento,
    Casa,
    StrutturaCollettiva,
    ExCaserma,
    Altro,
}

/// The years a date or datetime of the contract may fall in (CONTRACT §2, version 1.1).
/// Outside them an instant may not fit PostgreSQL's or the `time` crate's range once
/// converted to UTC, and no eviction, report or offer is that far away.
pub const YEARS: std::ops::RangeInclusive<i32> = 1900..=2200;

/// The text of a date or datetime outside [`YEARS`]; error messages that carry it are
/// safe to show (they hold no value).
pub const OUT_OF_RANGE: &str = "outside the years 1900-2200";

/// Parses a `YYYY-MM-DD` date within [`YEARS`].
pub fn parse_date(s: &str) -> Result<Date, ParseError> {
    let date = Date::parse(s, format_description!("[year]-[month]-[day]"))
        .map_err(|_| ParseError("not a date YYYY-MM-DD".into()))?;
    check_year(date.year())?;
    Ok(date)
}

/// Parses an RFC 3339 datetime whose year, both as written and in UTC, is within [`YEARS`].
pub fn parse_datetime(s: &str) -> Result<OffsetDateTime, ParseError> {
    let at = OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|_| ParseError("not an RFC 3339 date-time".into()))?;
    check_year(at.year())?;
    // The year in UTC can differ at the edges (2200-12-31T23:59-01:00 is 2201 in UTC).
    let utc = OffsetDateTime::from_unix_timestamp(at.unix_timestamp())
        .map_err(|_| ParseError(OUT_OF_RANGE.into()))?;
    check_year(utc.year())?;
    Ok(at)
}

fn check_year(year: i32) -> Result<(), ParseError> {
    if YEARS.contains(&year) {
        Ok(())
    } else {
        Err(ParseError(OUT_OF_RANGE.into()))
    }
}

/// Formats a date as `YYYY-MM-DD`.
pub fn format_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Serde for RFC 3339 datetimes within [`YEARS`].
pub mod datetime {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    /// Serializes as RFC 3339.
    pub fn serialize<S: Serializer>(at: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        let text = at.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    /// Deserializes from RFC 3339, refusing years outside [`super::YEARS`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_datetime(&s).map_err(serde::de::Error::custom)
    }

    /// The same for `Option<OffsetDateTime>`.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};
        use time::OffsetDateTime;

        /// Serializes as RFC 3339 or null.
        pub fn serialize<S: Serializer>(
            at: &Option<OffsetDateTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => super::serialize(at, s),
                None => s.serialize_none(),
            }
        }

        /// Deserializes from RFC 3339 or null.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<OffsetDateTime>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| super::super::parse_datetime(&s).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

/// Serde for `YYYY-MM-DD` dates.
pub mod iso_date {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Date;

    /// Serializes as `YYYY-MM-DD`.
    pub fn serialize<S: Serializer>(d: &Date, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_date(*d))
    }

    /// Deserializes from `YYYY-MM-DD`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_date(&s).map_err(serde::de::Error::custom)
    }

    /// The same for `Option<Date>`.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};
        use time::Date;

        /// Serializes as `YYYY-MM-DD` or null.
        pub fn serialize<S: Serializer>(d: &Option<Date>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_str(&super::super::format_date(*d)),
                None => s.serialize_none(),
            }
        }

        /// Deserializes from `YYYY-MM-DD` or null.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Date>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| super::super::parse_date(&s).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_istat_code_has_six_digits() {
        assert!(ComuneIstat::parse("015146").is_ok());
        assert!(ComuneIstat::parse("15146").is_err());
        assert!(ComuneIstat::parse("01514a").is_err());
        assert!(ComuneIstat::parse("0151466").is_err());
    }

    #[test]
    fn plain_text_refuses_every_c0_and_c1_control_character_without_echoing_it() {
        for bad in [
            "Mario\r\nBcc: x@evil.example",
            "Mario\0",
            "tab\there",
            "esc\u{1b}[2J",
            "del\u{7f}",
            "nel\u{85}",
            "csi\u{9b}",
        ] {
            let error = PlainText::parse(bad).expect_err(bad);
            assert_eq!(error.to_string(), CONTROL_CHARACTER);
        }
        for good in [
            "Ufficio Accoglienza",
            "Città di Sesto San Giovanni",
            "O'Brien – «ok»",
        ] {
            assert_eq!(
                PlainText::parse(good).map(PlainText::into_inner),
                Ok(good.to_owned())
            );
        }
        assert!(EmailAddress::parse("a\u{7}b@c.example").is_err());
        assert!(EmailAddress::parse("ab@c.example\0").is_err());
    }

    #[test]
    fn email_addresses_are_checked_and_mailboxes_unwrapped() {
        assert!(EmailAddress::parse("a@b.example").is_ok());
        assert!(EmailAddress::parse("a@b").is_err());
        assert!(EmailAddress::parse("a b@c.example").is_err());
        assert!(EmailAddress::parse("@c.example").is_err());
        let mb = EmailAddress::parse_mailbox("Raccordo <hub@cm.example>").expect("valid");
        assert_eq!(mb.as_ref(), "hub@cm.example");
        assert_eq!(mb.domain(), "cm.example");
    }

    #[test]
    fn roles_round_trip_and_unknown_roles_are_refused() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
        }
        assert!(Role::parse("sindaco").is_err());
    }

    #[test]
    fn dates_and_datetimes_outside_1900_2200_are_refused_without_echoing_them() {
        for bad in ["9999-12-31", "1899-12-31", "2201-01-01"] {
            let err = parse_date(bad).expect_err(bad);
            assert_eq!(err.to_string(), OUT_OF_RANGE);
        }
        for bad in [
            "9999-12-31T23:59:59-01:00",
            "0001-01-01T00:00:00Z",
            "2200-12-31T23:59:59-01:00",
            "1900-01-01T00:30:00+01:00",
        ] {
            let err = parse_datetime(bad).expect_err(bad);
            assert_eq!(err.to_string(), OUT_OF_RANGE, "{bad}");
        }
        assert!(parse_datetime("2200-12-31T23:59:59Z").is_ok());
        assert!(parse_datetime("1900-01-01T00:00:00Z").is_ok());
        assert!(parse_date("2200-12-31").is_ok());
        let err = parse_datetime("yesterday at Via Segreta 9").expect_err("not a date");
        assert!(!err.to_string().contains("Segreta"));
    }

    #[test]
    fn dates_parse_and_format() {
        let d = parse_date("2026-02-03").expect("valid");
        assert_eq!(format_date(d), "2026-02-03");
        assert!(parse_date("2026-02-30").is_err());
        assert!(parse_date("03/02/2026").is_err());
    }
}
