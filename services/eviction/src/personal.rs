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
    /// Accepts 1 to 64 characters, as the schema does, with at least one letter or digit.
    pub fn parse(s: &str) -> Result<Self, raccordo_core::domain::ParseError> {
        let n = s.chars().count();
        // Never echo the value: it is personal.
        if !(1..=64).contains(&n) {
            return Err(raccordo_core::domain::ParseError(
                "procedure_id must be 1 to 64 characters".into(),
            ));
        }
        if !s.chars().any(char::is_alphanumeric) {
            return Err(raccordo_core::domain::ParseError(
                "procedure_id has no letter or digit".into(),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The clear docket number as the publisher wrote it; call only where consent allows
    /// it to be used.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The form two spellings of one docket number share, hashed into the pseudonym:
    /// upper case, and every character other than a letter, a digit or `/` removed, so
    /// "RG 1234/2026", "rg-1234/2026" and "R.G. 1.234/2026" are one procedure. The `/`
    /// stays: it separates number and year ("123/42026" is not "1234/2026").
    /// The rule is documented for publishers in `schemas/README.md`.
    pub fn canonical(&self) -> String {
        self.0
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '/')
            .flat_map(char::to_uppercase)
            .collect()
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

/// The `household` and `contact` of the events, as the alert's payload carries them.
pub use raccordo_core::payload::{Contact, Household};

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

/// Computes pseudonyms with the configured key chain.
///
/// A chain, oldest key first, makes keys rotatable without the docket numbers, which the
/// hub does not keep: the pseudonym is the HMAC under the first key, then each later key
/// hashes the previous pseudonym. `raccordo eviction rekey` appends a key by hashing every
/// stored pseudonym once more; a leaked older key alone no longer links anything.
#[derive(Clone)]
pub struct Pseudonymizer {
    keys: Vec<SecretString>,
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Pseudonymizer {{ keys: {} [REDACTED] }}",
            self.keys.len()
        )
    }
}

/// The input of the key fingerprint: hashed by the chain, it identifies the chain without
/// revealing it, so a database written under one chain is never read under another.
const FINGERPRINT_INPUT: &[u8] = b"raccordo:pseudonym-key-fingerprint";

impl Pseudonymizer {
    /// With one key.
    pub fn new(key: SecretString) -> Self {
        Self { keys: vec![key] }
    }

    /// With the configured key chain (`eviction.pseudonym_key` or its file).
    pub fn from_settings(settings: &raccordo_core::settings::EvictionSettings) -> Self {
        Self::with_chain(settings.pseudonym_keys())
    }

    /// With a chain of keys, oldest first (`eviction.pseudonym_key`: keys separated by
    /// white space). An empty chain is refused by the settings before this is called.
    pub fn with_chain(keys: Vec<SecretString>) -> Self {
        Self { keys }
    }

    /// The same chain with `key` appended (the chain after `raccordo eviction rekey`).
    pub fn then(&self, key: SecretString) -> Self {
        let mut keys = self.keys.clone();
        keys.push(key);
        Self { keys }
    }

    /// The pseudonym of a docket number (of its canonical form).
    pub fn pseudonym(&self, procedure_id: &ProcedureId) -> Pseudonym {
        Pseudonym(self.chain(procedure_id.canonical().as_bytes()))
    }

    /// The pseudonym of a procedure: its court (the `source` of the court's events) and its
    /// docket number, so two courts' equal numbers are two procedures (CONTRACT 1.2 §3).
    pub fn procedure_pseudonym(&self, court: &str, procedure_id: &ProcedureId) -> Pseudonym {
        let mut input = Vec::with_capacity(court.len() + 80);
        // Length-prefixed: no court and docket pair can imitate another.
        input.extend_from_slice(b"court:");
        input.extend_from_slice(&(court.len() as u64).to_be_bytes());
        input.extend_from_slice(court.as_bytes());
        input.extend_from_slice(procedure_id.canonical().as_bytes());
        Pseudonym(self.chain(&input))
    }

    /// Identifies the chain; stored beside the pseudonyms it made.
    pub fn fingerprint(&self) -> String {
        self.chain(FINGERPRINT_INPUT)
    }

    /// A stored pseudonym hashed under one more key: what `rekey` writes.
    pub fn rehash(key: &SecretString, pseudonym: &Pseudonym) -> Pseudonym {
        Pseudonym(hmac_hex(key, pseudonym.as_ref().as_bytes()))
    }

    fn chain(&self, input: &[u8]) -> String {
        let mut keys = self.keys.iter();
        let Some(first) = keys.next() else {
            return hmac_hex(&SecretString::from(String::new()), input);
        };
        let mut out = hmac_hex(first, input);
        for key in keys {
            out = hmac_hex(key, out.as_bytes());
        }
        out
    }
}

fn hmac_hex(key: &SecretString, input: &[u8]) -> String {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(input);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(digest.len() * 2);
    for byte in digest {
        use std::fmt::Write;
        let _ = write!(hex, "{byte:02x}");
    }
    hex
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
    fn docket_numbers_written_differently_are_one_procedure() {
        let key = Pseudonymizer::new("key-number-one-0123456789-0123456789".to_owned().into());
        let p = |s: &str| key.pseudonym(&ProcedureId::parse(s).expect("valid"));
        let reference = p("RG 1234/2026");
        for same in [
            "RG-1234/2026",
            "rg 1234/2026",
            "R.G. 1.234/2026",
            " RG_1234/2026 ",
        ] {
            assert_eq!(p(same), reference, "{same}");
        }
        assert_ne!(p("RG 123/42026"), reference);
        assert_ne!(p("RG 1235/2026"), reference);
    }

    #[test]
    fn a_procedure_id_without_letters_or_digits_is_refused() {
        assert!(ProcedureId::parse(" -/- ").is_err());
    }

    #[test]
    fn a_rehashed_pseudonym_is_the_pseudonym_under_the_longer_chain() {
        let old = Pseudonymizer::new("key-number-one-0123456789-0123456789".to_owned().into());
        let new_key: SecretString = "key-number-two-0123456789-0123456789".to_owned().into();
        let id = ProcedureId::parse("RG 77/2026").expect("valid");
        let chained = old.then(new_key.clone());
        assert_eq!(
            Pseudonymizer::rehash(&new_key, &old.pseudonym(&id)),
            chained.pseudonym(&id)
        );
        assert_ne!(old.fingerprint(), chained.fingerprint());
        assert_eq!(old.fingerprint(), old.clone().fingerprint());
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
