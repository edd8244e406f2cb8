//! The pseudonym key in use: checked against the database before a process serves, and
//! rotated by `raccordo eviction rekey` (see [`crate::personal::Pseudonymizer`]).

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;

use raccordo_core::settings::{
    DEVELOPMENT_PSEUDONYM_KEY, EvictionSettings, MIN_PSEUDONYM_KEY_BYTES, SettingsError,
};

use crate::personal::Pseudonymizer;
use crate::store::{self, KeyCheck};

/// Procedures renamed per statement, and between two progress reports.
const BATCH: usize = 1000;

/// Why the key cannot be used or rotated.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(
        "the database's pseudonyms were made with another key chain: configure the chain in \
         force (after a rekey: the old keys and the new one, in order)"
    )]
    Differs,
    #[error(
        "the new key must have at least {MIN_PSEUDONYM_KEY_BYTES} bytes, no white space, and \
         not be the development key"
    )]
    WeakNewKey,
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

/// Checks the configured chain against the database (recording it on first use).
pub async fn verify_key(pool: &PgPool, settings: &EvictionSettings) -> Result<(), KeyError> {
    settings.check_key_for_real_data()?;
    let pseudonyms = Pseudonymizer::from_settings(settings);
    let mut tx = pool.begin().await?;
    let check = store::check_key(
        &mut tx,
        &pseudonyms.fingerprint(),
        settings.pseudonym_keys().len(),
    )
    .await?;
    tx.commit().await?;
    match check {
        KeyCheck::Matches => Ok(()),
        KeyCheck::Differs => Err(KeyError::Differs),
    }
}

/// What a rotation did.
#[derive(Debug)]
pub struct Rekeyed {
    /// Procedures re-pseudonymised.
    pub procedures: usize,
    /// Asylum cases re-pseudonymised.
    pub cases: usize,
    /// The chain to configure from now on, oldest first, one key per line.
    pub chain: SecretString,
}

/// Appends `new_key` to the chain: every stored pseudonym is hashed once more under it,
/// in one transaction. `progress(done, total)` is called after each batch.
pub async fn rekey(
    pool: &PgPool,
    settings: &EvictionSettings,
    new_key: SecretString,
    mut progress: impl FnMut(usize, usize),
) -> Result<Rekeyed, KeyError> {
    settings.check_key_for_real_data()?;
    let key = new_key.expose_secret().trim();
    if key.len() < MIN_PSEUDONYM_KEY_BYTES
        || key.chars().any(char::is_whitespace)
        || key == DEVELOPMENT_PSEUDONYM_KEY
    {
        return Err(KeyError::WeakNewKey);
    }
    let new_key = SecretString::from(key.to_owned());
    let current = Pseudonymizer::from_settings(settings);
    let next = current.then(new_key.clone());
    let keys = settings.pseudonym_keys();

    let mut tx = pool.begin().await?;
    let stored = store::lock_for_rekey(&mut tx).await?;
    if store::check_key(&mut tx, &current.fingerprint(), keys.len()).await? == KeyCheck::Differs {
        return Err(KeyError::Differs);
    }
    let total = stored.len();
    let mut done = 0;
    for batch in stored.chunks(BATCH) {
        let renames: Vec<store::Rename> = batch
            .iter()
            .map(|(old, docket)| store::Rename {
                new: Pseudonymizer::rehash(&new_key, old),
                old: old.clone(),
                docket: Pseudonymizer::rehash(&new_key, docket),
            })
            .collect();
        store::rename_procedures(&mut tx, &renames).await?;
        done += batch.len();
        progress(done, total);
    }
    // Asylum cases are pseudonymised under the same chain, with their own purpose key.
    let cases = raccordo_core::pseudonym::rename_cases(&mut tx, &new_key).await?;
    store::record_key(&mut tx, &next.fingerprint(), keys.len() + 1).await?;
    tx.commit().await?;

    let mut chain = String::new();
    for k in keys.iter().chain(std::iter::once(&new_key)) {
        chain.push_str(k.expose_secret());
        chain.push('\n');
    }
    Ok(Rekeyed {
        procedures: total,
        cases,
        chain: SecretString::from(chain),
    })
}
