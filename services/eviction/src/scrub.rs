//! C4 after delivery: an `eviction.consent_revoked` notice carries the docket number so
//! the mailer can write it; once every recipient has it (or has failed for good), the
//! hub has no reason to keep it, and this sweeper replaces the payload with its
//! non-personal part. Alerts are scrubbed at once, by the revocation itself.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::store::scrub_payloads;

/// How often delivered revocation notices are looked for.
pub const SCRUB_EVERY: Duration = Duration::from_secs(2);

/// Scrubs the delivered revocation notices now; returns how many.
pub async fn scrub_delivered(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let n = scrub_payloads(&mut tx, None, Some("eviction.consent_revoked")).await?;
    tx.commit().await?;
    Ok(n)
}

/// Runs [`scrub_delivered`] every [`SCRUB_EVERY`] until `token` is cancelled.
pub async fn run_scrubber(pool: PgPool, token: CancellationToken) {
    loop {
        match scrub_delivered(&pool).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(notifications = n, "Scrubbed delivered revocation notices."),
            Err(error) => {
                tracing::warn!(error = %error, "Could not scrub revocation notices; will retry.")
            }
        }
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tokio::time::sleep(SCRUB_EVERY) => {}
        }
    }
}
