//! Personal data of a family facing eviction, in types that cannot leak by accident, and
//! the keyed pseudonym under which the hub knows a procedure without its docket number.
//!
//! `Debug` and `Display` of [`ProcedureId`], [`Household`] and [`Contact`] print
//! `…(redacted)`: a stray `?event` or `%id` in a log line shows nothing (CONTRACT C1).
//! The clear values are reached only through `expose()` or serde, which the worker uses
//! when — and only when — consent is active.

use std::fmt;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The docket number of an eviction procedure: personal data (it names a family's case).
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ProcedureId(String);

impl ProcedureId {
    /// Accepts 1 to 64 characters, as the schema does.
    pub fn parse(s: &str) -> Result<Self, raccordo_core::domain::ParseError> {
        let n = s.chars().count();
        if (1..=64).contains(&n) {
            Ok(Self(s.to_owned()))
        } else {
            // Never echo the value: it is personal.
            Err(raccordo_core::domain::ParseError(
                "procedure_id must be 1 to 64 characters".into(),
            ))
        }
    }

    /// The clear docket number; call only where consent allows it to be used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ProcedureId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProcedureId(redacted)")
    }
}

impl fmt::Display for ProcedureId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

impl<'de> Deserialize<'de> for ProcedureId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The `household` of `eviction.step.v1`: who lives in the dwelling.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Household {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub members: Option<u16>,
    #[serde(default)]
    pub minors: Option<u16>,
    #[serde(default)]
    pub frail: Option<bool>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
}

impl fmt::Debug for Household {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Household(redacted)")
    }
}

impl fmt::Display for Household {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

/// The `contact` of `eviction.consent.v1`: what the citizen chose to share.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
}

impl fmt::Debug for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Contact(redacted)")
    }
}

impl fmt::Display for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

/// A procedure's keyed pseudonym: HMAC-SHA256 of the docket number under
/// `eviction.pseudonym_key`, in hex. Without the key it cannot be linked back to the
/// docket number, nor computed from a guessed one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Pseudonym(String);

impl Pseudonym {
    /// Rebuilds a pseudonym read from the database.
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    /// A short form for log lines.
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(12)]
    }
}

impl AsRef<str> for Pseudonym {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Computes pseudonyms with the configured key.
#[derive(Clone)]
pub struct Pseudonymizer {
    key: SecretString,
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pseudonymizer { key: [REDACTED] }")
    }
}

impl Pseudonymizer {
    /// With `eviction.pseudonym_key`.
    pub fn new(key: SecretString) -> Self {
        Self { key }
    }

    /// The pseudonym of a docket number.
    pub fn pseudonym(&self, procedure_id: &ProcedureId) -> Pseudonym {
        // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose_secret().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(procedure_id.expose().as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut hex = String::with_capacity(digest.len() * 2);
        for byte in digest {
            hex.push_str(&format!("{byte:02x}"));
        }
        Pseudonym(hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn household() -> Household {
        Household {
            name: Some("Famiglia Zanzibar".into()),
            address: Some("Via Quarzo 7".into()),
            phone: Some("+39 333 0000001".into()),
            email: Some("zanzibar@example.org".into()),
            ..Household::default()
        }
    }

    #[test]
    fn c1_personal_types_redact_in_debug_and_display() {
        let id = ProcedureId::parse("RG-4242/2026").expect("valid");
        let contact = Contact {
            name: Some("Zanzibar".into()),
            ..Contact::default()
        };
        let text = format!(
            "{id:?} {id} {:?} {} {contact:?} {contact} {:?}",
            household(),
            household(),
            Some(household())
        );
        for secret in ["4242", "Zanzibar", "Quarzo", "333", "example.org"] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
        assert!(text.contains("Household(redacted)"));
    }

    #[test]
    fn c1_a_bad_procedure_id_is_refused_without_echoing_it() {
        let long = "Z".repeat(65);
        let err = ProcedureId::parse(&long).expect_err("too long");
        assert!(!err.to_string().contains("ZZZ"));
    }

    #[test]
    fn c1_pseudonyms_are_keyed_and_stable() {
        let id = ProcedureId::parse("RG-4242/2026").expect("valid");
        let a = Pseudonymizer::new("key-number-one-0123456789".to_owned().into());
        let b = Pseudonymizer::new("key-number-two-0123456789".to_owned().into());
        assert_eq!(a.pseudonym(&id), a.pseudonym(&id));
        assert_ne!(a.pseudonym(&id), b.pseudonym(&id));
        assert_eq!(a.pseudonym(&id).as_ref().len(), 64);
        assert!(!a.pseudonym(&id).as_ref().contains("4242"));
        assert!(!format!("{a:?}").contains("number-one"));
    }
}
