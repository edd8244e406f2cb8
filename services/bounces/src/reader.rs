//! The bounce reader: reads the mailbox `mail.bounce_imap_url` (CONTRACT §11) — IDLE where
//! the server offers it, polling otherwise — and hands each new message to
//! [`crate::handle_report`], from one replica at a time (an advisory lock). A message is
//! marked handled only once its report committed: a crash in between reads it again, and
//! `bounce_reports` makes the second reading change nothing.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use raccordo_core::fallback::FallbackPolicy;
use raccordo_core::settings::DatabaseSettings;
use raccordo_evidence::imap::{ImapError, ImapUrl, Mailbox};
use raccordo_evidence::lock::ReaderLock;

use crate::dsn::MAX_REPORT_BYTES;
use crate::report::handle_report;

/// The advisory lock's name: one bounce reader across replicas.
const LOCK: &str = "raccordo.bounce_reports";
/// Messages read per round.
const BATCH: usize = 50;

/// What the reader needs.
pub struct BounceReader {
    pub pool: PgPool,
    pub database: DatabaseSettings,
    pub url: ImapUrl,
    pub policy: FallbackPolicy,
    /// Bound on each IMAP step.
    pub timeout: Duration,
    /// The longest wait without IDLE, and between tries while another replica reads or
    /// the server is down (CONTRACT §11: clocks are checked at least every 5 s).
    pub poll: Duration,
}

/// Why a round of reading stopped.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Imap(#[from] ImapError),
    #[error("database")]
    Database(#[from] sqlx::Error),
}

impl BounceReader {
    /// Reads until `token` is cancelled: takes the lock when free, reads, waits for more,
    /// and after any failure tries again after `poll`.
    pub async fn run(self, token: CancellationToken) {
        tracing::info!(mailbox = self.url.mailbox(), "Bounce reader started.");
        while !token.is_cancelled() {
            match ReaderLock::try_take(&self.database, LOCK).await {
                Ok(Some(mut lock)) => {
                    if let Err(error) = self.read_while_held(&mut lock, &token).await {
                        metrics::counter!("raccordo_bounce_reader_errors_total").increment(1);
                        tracing::warn!(error = %error, "Bounce reader failed; trying again.");
                    }
                    lock.release().await;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(error = %error, "Bounce reader cannot reach the database.");
                }
            }
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
        tracing::info!("Bounce reader stopped.");
    }

    async fn read_while_held(
        &self,
        lock: &mut ReaderLock,
        token: &CancellationToken,
    ) -> Result<(), ReadError> {
        let mut mailbox = Mailbox::open(&self.url, self.timeout).await?;
        let max = u32::try_from(MAX_REPORT_BYTES).unwrap_or(u32::MAX);
        while !token.is_cancelled() && lock.held().await {
            let fetched = mailbox.unseen(BATCH, max).await?;
            let mut handled = Vec::with_capacity(fetched.len());
            for message in &fetched {
                match &message.raw {
                    Some(raw) => {
                        handle_report(&self.pool, &self.policy, raw).await?;
                    }
                    None => {
                        // Over the limit: no report of ours is that large.
                        metrics::counter!("raccordo_bounce_reports_total", "outcome" => "too_large")
                            .increment(1);
                        tracing::warn!(
                            uid = message.uid,
                            size = message.size,
                            "A message of the bounce mailbox is too large to be a report; skipped."
                        );
                    }
                }
                handled.push(message.uid);
            }
            mailbox.mark_handled(&handled).await?;
            if fetched.len() < BATCH {
                mailbox.wait(self.poll, token).await?;
            }
        }
        mailbox.close().await;
        Ok(())
    }
}
