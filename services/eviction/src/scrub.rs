//! C4 after the revocation's commit, for what the revocation's transaction cannot reach.
//!
//! - An `eviction.consent_revoked` notice carries the docket number so the mailer can write
//!   it; once every recipient has it (or its delivery was cancelled), the hub has no reason
//!   to keep it, and the payload is replaced with its non-personal part. A notice held for
//!   an operator (refused, or parked) keeps it, so that a replay can still deliver it, for
//!   `eviction.dead_letter_ttl_days` at most; then it is scrubbed and its delivery cancelled. Alerts are scrubbed at once,
//!   by the revocation itself.
//! - The file transport (`mail.transport = "file"`) keeps each email as an `.eml` file: the
//!   files of an alert scrubbed by a revocation are removed from the outbox. Files are not
//!   in the database's transaction, so they go only after the revocation is committed, and
//!   the pass is stateless (the folder's files against the scrubbed alerts): it catches up
//!   after a restart, and a file written just before a crash is found too.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use raccordo_core::db;
use raccordo_core::notification::NotificationKind;
use raccordo_mailer::FileOutbox;

use crate::store::{scrub, scrubbed_among};

/// How often delivered revocation notices and revoked alerts' files are looked for.
pub(crate) const SCRUB_EVERY: Duration = Duration::from_secs(2);

/// Scrubs the delivered revocation notices now, and those held for an operator longer
/// than `held_for` (`eviction.dead_letter_ttl_days`, as the dead letters that may hold
/// personal data): their held deliveries are cancelled, so a late replay sends nothing.
/// Returns how many notices.
pub(crate) async fn scrub_delivered(pool: &PgPool, held_for: Duration) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let kind = NotificationKind::EvictionConsentRevoked;
    let settled = db::settled_of_kind(&mut tx, kind, held_for).await?;
    let n = scrub(&mut tx, &settled).await?;
    if n > 0 {
        let reason = "not sent: held longer than eviction.dead_letter_ttl_days, its docket number was removed (C4)";
        db::cancel_pending(&mut tx, &settled, reason).await?;
    }
    tx.commit().await?;
    Ok(n)
}

/// Why a pass over the outbox folder stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RemoveFilesError {
    #[error("failed to read or change the outbox folder")]
    Outbox(#[from] std::io::Error),
    #[error("failed to find the revoked alerts")]
    Database(#[from] sqlx::Error),
}

/// Removes from `outbox` every file of an alert whose procedure's consent was revoked
/// (an alert the revocation scrubbed); returns how many files.
pub(crate) async fn remove_revoked_files(
    pool: &PgPool,
    outbox: &FileOutbox,
) -> Result<usize, RemoveFilesError> {
    let in_folder = outbox.notifications().await?;
    if in_folder.is_empty() {
        return Ok(0);
    }
    let mut conn = pool.acquire().await?;
    let alerts = db::of_kind(&mut conn, &in_folder, NotificationKind::EvictionAlert).await?;
    let revoked = scrubbed_among(&mut conn, &alerts).await?;
    drop(conn);
    let mut removed = 0;
    for id in revoked {
        removed += outbox.remove_notification(id).await?;
    }
    Ok(removed)
}

/// Runs [`scrub_delivered`] and, with the file transport, [`remove_revoked_files`] every
/// [`SCRUB_EVERY`] until `token` is cancelled. Give it `FileOutbox::from_settings(&mail)`
/// and `EvictionSettings::dead_letter_ttl`.
pub async fn run_scrubber_with_outbox(
    pool: PgPool,
    outbox: Option<FileOutbox>,
    held_for: Duration,
    token: CancellationToken,
) {
    loop {
        match scrub_delivered(&pool, held_for).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(notifications = n, "Scrubbed delivered revocation notices."),
            Err(error) => {
                tracing::warn!(error = %error, "Could not scrub revocation notices; will retry.")
            }
        }
        if let Some(outbox) = &outbox {
            match remove_revoked_files(&pool, outbox).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(files = n, "Removed the outbox files of revoked alerts."),
                Err(error) => tracing::warn!(
                    error = %error,
                    folder = %outbox.dir().display(),
                    "Could not remove the outbox files of revoked alerts; will retry."
                ),
            }
        }
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tokio::time::sleep(SCRUB_EVERY) => {}
        }
    }
}
