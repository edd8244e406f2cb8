//! Keyed pseudonyms of asylum case numbers (CONTRACT 1.2 §4 "Asylum"): the hub knows a
//! person only by the HMAC of the desk's case number, never by the number itself.
//!
//! The keys are the eviction key chain (`eviction.pseudonym_key`), each first turned into a
//! key of its own purpose, so a case number and a docket number that happen to be spelled
//! alike never share a pseudonym, and a pseudonym of one kind cannot be tried as the other.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::settings::EvictionSettings;

/// The purpose of asylum case pseudonyms.
const CASE_PURPOSE: &[u8] = b"raccordo:purpose:asylum-case";

/// The pseudonym of a desk's case number: 64 hex digits. The number is compared in a
/// canonical form (upper case, letters, digits and `/` only), as docket numbers are.
pub fn case_pseudonym(settings: &EvictionSettings, case_id: &str) -> String {
    let canonical: String = case_id
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '/')
        .flat_map(char::to_uppercase)
        .collect();
    let keys: Vec<Vec<u8>> = settings
        .pseudonym_keys()
        .iter()
        .map(|key| hmac(key.expose_secret().as_bytes(), CASE_PURPOSE))
        .collect();
    let mut keys = keys.iter();
    let Some(first) = keys.next() else {
        return hex(&hmac(b"", canonical.as_bytes()));
    };
    let mut out = hex(&hmac(first, canonical.as_bytes()));
    for key in keys {
        out = hex(&hmac(key, out.as_bytes()));
    }
    out
}

/// The tables that name a case by its pseudonym; `asylum_cases` first: the tables that
/// reference it follow by `ON UPDATE CASCADE`.
const CASE_TABLES: [&str; 5] = [
    "asylum_cases",
    "asylum_interventions",
    "asylum_domiciles",
    "asylum_placements",
    "asylum_placement_history",
];

/// Cases renamed per statement.
const RENAME_BATCH: usize = 1000;

/// Renames every stored case pseudonym to its hash under `new_key`, in the caller's
/// transaction (`raccordo eviction rekey` appends that key to the chain). Returns how many
/// cases.
pub async fn rename_cases(
    tx: &mut sqlx::PgConnection,
    new_key: &SecretString,
) -> Result<usize, sqlx::Error> {
    let keys: Vec<String> = sqlx::query_scalar(
        r#"
        SELECT case_key FROM asylum_cases
        UNION SELECT case_key FROM asylum_interventions
        UNION SELECT case_key FROM asylum_domiciles
        UNION SELECT case_key FROM asylum_placements
        UNION SELECT case_key FROM asylum_placement_history
        "#,
    )
    .fetch_all(&mut *tx)
    .await?;
    for batch in keys.chunks(RENAME_BATCH) {
        let renamed: Vec<String> = batch.iter().map(|k| rehash_case(new_key, k)).collect();
        for table in CASE_TABLES {
            sqlx::query(&format!(
                "UPDATE {table} t SET case_key = m.new \
                 FROM UNNEST($1::TEXT[], $2::TEXT[]) AS m (old, new) WHERE t.case_key = m.old"
            ))
            .bind(batch)
            .bind(&renamed)
            .execute(&mut *tx)
            .await?;
        }
    }
    Ok(keys.len())
}

/// A case pseudonym hashed under one more key of the chain: what a rekey writes.
pub fn rehash_case(new_key: &SecretString, pseudonym: &str) -> String {
    let key = hmac(new_key.expose_secret().as_bytes(), CASE_PURPOSE);
    hex(&hmac(&key, pseudonym.as_bytes()))
}

fn hmac(key: &[u8], input: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this never fails.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        unreachable!("HMAC takes keys of any length")
    };
    mac.update(input);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    fn settings(key: &str) -> EvictionSettings {
        let mut s = Settings::load().expect("defaults").eviction;
        s.pseudonym_key = SecretString::from(key.to_owned());
        s
    }

    #[test]
    fn spellings_of_one_case_share_a_pseudonym_and_keys_differ() {
        let a = settings("k1-0123456789abcdef0123456789abcdef");
        let b = settings("k2-0123456789abcdef0123456789abcdef");
        let p = case_pseudonym(&a, "SP-MI 2026/0142");
        assert_eq!(p, case_pseudonym(&a, "sp mi.2026/0142"));
        assert_eq!(p.len(), 64);
        assert_ne!(p, case_pseudonym(&b, "SP-MI 2026/0142"));
        assert!(!p.contains("0142"));
    }

    #[test]
    fn a_rehash_is_the_pseudonym_under_the_longer_chain() {
        let one = settings("k1-0123456789abcdef0123456789abcdef");
        let two =
            settings("k1-0123456789abcdef0123456789abcdef k2-0123456789abcdef0123456789abcdef");
        let new_key = SecretString::from("k2-0123456789abcdef0123456789abcdef".to_owned());
        assert_eq!(
            rehash_case(&new_key, &case_pseudonym(&one, "C-1")),
            case_pseudonym(&two, "C-1")
        );
    }

    #[test]
    fn the_purpose_keeps_case_and_docket_pseudonyms_apart() {
        let s = settings("k1-0123456789abcdef0123456789abcdef");
        let key = s.pseudonym_keys().remove(0);
        let plain = hex(&hmac(key.expose_secret().as_bytes(), b"RG1234/2026"));
        assert_ne!(case_pseudonym(&s, "RG 1234/2026"), plain);
    }
}
