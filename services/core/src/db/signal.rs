//! One LISTEN per process on the outbox channel, shared by the relay and the mailer's
//! senders. Each NOTIFY a listening backend reads costs the database a transaction, so two
//! listeners in one process paid two per commit of a worker.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The PostgreSQL channel that wakes the relay and the mailer.
pub const OUTBOX_CHANNEL: &str = "raccordo_outbox";

/// The NOTIFY payload that says a delivery was held: the relay announces it.
pub const HELD_PAYLOAD: &str = "held";

/// What the outbox listener has seen: counters that move at each NOTIFY, so a receiver
/// waiting on `changed()` wakes once for any number of commits since it last looked.
#[derive(Clone)]
pub struct OutboxSignal {
    /// Moves at every NOTIFY (a commit that wrote notifications, a held delivery, a replay)
    /// and whenever the listener (re)connects: what committed meanwhile is looked for.
    pub commits: watch::Receiver<u64>,
    /// Moves when a delivery was held, and whenever the listener (re)connects.
    pub held: watch::Receiver<u64>,
}

/// Starts listening; the returned future runs the listener until `token` is cancelled,
/// reconnecting after `retry` when the connection is lost.
pub fn listen_outbox(
    pool: PgPool,
    retry: Duration,
    token: CancellationToken,
) -> (OutboxSignal, impl Future<Output = ()> + Send + 'static) {
    let (commits_tx, commits) = watch::channel(0u64);
    let (held_tx, held) = watch::channel(0u64);
    let run = async move {
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                error = listen_until_lost(&pool, &commits_tx, &held_tx) => {
                    tracing::warn!(error = %error, "Outbox listener lost; reconnecting.");
                }
            }
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(retry) => {}
            }
        }
    };
    (OutboxSignal { commits, held }, run)
}

async fn listen_until_lost(
    pool: &PgPool,
    commits: &watch::Sender<u64>,
    held: &watch::Sender<u64>,
) -> sqlx::Error {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(l) => l,
        Err(error) => return error,
    };
    if let Err(error) = listener.listen(OUTBOX_CHANNEL).await {
        return error;
    }
    // What committed while no listener was up is found by this wake.
    commits.send_modify(|n| *n += 1);
    held.send_modify(|n| *n += 1);
    loop {
        match listener.recv().await {
            Ok(notification) => {
                if notification.payload() == HELD_PAYLOAD {
                    held.send_modify(|n| *n += 1);
                }
                commits.send_modify(|n| *n += 1);
            }
            Err(error) => return error,
        }
    }
}
