//! Reminders and escalation (CONTRACT D5), run by every process that sends mail: each pass
//! decides the reminders due, sends them, and escalates what stayed unacknowledged. The
//! database makes each step happen once across replicas and restarts (see
//! [`raccordo_core::db::escalation`]); a reminder sent and not recorded before a crash goes
//! again with its own, same, Message-ID, as any email (CONTRACT F3).

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use raccordo_core::db::escalation;

use crate::delivery::{Mailer, Rounds};

/// How often the clocks of D5 are checked (the contract asks for at least every 5 s).
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Notifications whose reminders were decided.
    pub reminded: usize,
    /// Reminders claimed for sending.
    pub sent: usize,
    /// `delivery.unacknowledged` notifications written.
    pub escalated: usize,
}

/// One pass: decide reminders, send those due, escalate. `after` is
/// `escalation.after_hours`.
pub async fn run_pass(
    mailer: &Mailer,
    pool: &PgPool,
    after: Duration,
) -> Result<Pass, sqlx::Error> {
    let mut pass = Pass::default();
    let mut tx = pool.begin().await?;
    pass.reminded = escalation::decide_reminders(&mut tx, after).await?.len();
    tx.commit().await?;
    loop {
        let claimed = mailer.send_due_reminders().await?;
        pass.sent += claimed;
        if claimed < mailer.round_size().max(1) {
            break;
        }
    }
    let mut tx = pool.begin().await?;
    pass.escalated = escalation::escalate_due(&mut tx, after).await?.len();
    tx.commit().await?;
    Ok(pass)
}

/// Runs [`run_pass`] every [`CHECK_EVERY`] until `token` is cancelled.
pub async fn run_escalation(
    mailer: Arc<Mailer>,
    pool: PgPool,
    after: Duration,
    token: CancellationToken,
) {
    loop {
        match run_pass(&mailer, &pool, after).await {
            Ok(pass) if pass != Pass::default() => tracing::info!(
                reminded = pass.reminded,
                reminders_sent = pass.sent,
                escalated = pass.escalated,
                "Reminded or escalated unacknowledged notifications."
            ),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %error, "Could not check unacknowledged notifications; will retry.")
            }
        }
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}
