//! The bounded pool of SMTP connections: a [`Semaphore`] bounds connections (idle plus busy)
//! to `pool_size`; idle ones wait in a stack, most recently used on top, so surplus
//! connections age out after load drops. A connection that saw any error is never
//! returned; one idle for a while is probed with `NOOP` before reuse; one idle longer than
//! [`IDLE_LIMIT`] is closed, by a background task even when no mail is sent.

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak, atomic::AtomicBool, atomic::Ordering},
    time::{Duration, Instant},
};

use lettre::transport::smtp::client::AsyncSmtpConnection;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Idle connections older than this are closed: servers drop idle clients after a few
/// minutes (RFC 5321 §4.5.3.2 suggests 5), and a pool that outlives its load should shrink.
pub(super) const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// A connection used this recently is reused without a `NOOP` probe: it was working a
/// moment ago, and probing every time would add a round trip to every message.
pub(super) const PROBE_AFTER: Duration = Duration::from_secs(2);

/// An idle connection and when it was last used.
struct Idle {
    connection: AsyncSmtpConnection,
    since: Instant,
}

/// The pool; shared by the clones of one transport.
pub(super) struct Pool {
    /// Bound on closing a connection.
    timeout: Duration,
    /// One permit per connection that may exist, idle or busy.
    permits: Semaphore,
    /// Idle connections, most recently used last.
    idle: Mutex<Vec<Idle>>,
    /// The idle reaper runs from the first check-in on; it needs a runtime to be spawned on.
    reaper_started: AtomicBool,
}

impl Pool {
    /// A panic while the lock is held cannot leave the `Vec` inconsistent, so a poisoned
    /// lock is still usable.
    fn idle(&self) -> MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A pool of at most `size` connections; `timeout` bounds a probe and a goodbye.
    pub(super) fn new(size: usize, timeout: Duration) -> Pool {
        Pool {
            timeout,
            permits: Semaphore::new(size),
            idle: Mutex::new(Vec::new()),
            reaper_started: AtomicBool::new(false),
        }
    }

    /// Waits for the right to hold a connection, idle or new.
    pub(super) async fn permit(&self) -> SemaphorePermit<'_> {
        self.permits
            .acquire()
            .await
            .expect("the pool never closes its semaphore")
    }

    /// Takes the most recently used idle connection that still works, closing stale ones.
    pub(super) async fn checkout(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let Idle {
                mut connection,
                since,
            } = self.idle().pop()?;
            let idle_for = since.elapsed();
            if idle_for > IDLE_LIMIT {
                // In the background: a QUIT to a vanished server would delay this send by
                // up to the timeout.
                tokio::spawn(close(connection, self.timeout));
                continue;
            }
            if connection.has_broken() {
                continue;
            }
            if idle_for > PROBE_AFTER {
                let probe = tokio::time::timeout(self.timeout, connection.test_connected());
                if !matches!(probe.await, Ok(true)) {
                    continue;
                }
            }
            return Some(connection);
        }
    }

    /// Puts a working connection back; starts the reaper the first time.
    pub(super) fn checkin(self: &Arc<Self>, connection: AsyncSmtpConnection) {
        if connection.has_broken() {
            return;
        }
        self.idle().push(Idle {
            connection,
            since: Instant::now(),
        });
        if !self.reaper_started.swap(true, Ordering::AcqRel) {
            tokio::spawn(reap_idle(Arc::downgrade(self)));
        }
    }

    /// Closes the connections idle longer than [`IDLE_LIMIT`].
    pub(super) async fn reap_once(&self) {
        let stale: Vec<Idle> = {
            let mut idle = self.idle();
            let (stale, fresh) = idle.drain(..).partition(|i| i.since.elapsed() > IDLE_LIMIT);
            *idle = fresh;
            stale
        };
        for Idle { connection, .. } in stale {
            close(connection, self.timeout).await;
        }
    }

    /// Idle connections now.
    pub(super) fn idle_count(&self) -> usize {
        self.idle().len()
    }

    /// Pretends every idle connection was last used `ago`.
    #[cfg(test)]
    pub(super) fn age_idle(&self, ago: Duration) {
        for idle in self.idle().iter_mut() {
            idle.since = Instant::now()
                .checked_sub(ago)
                .expect("the monotonic clock has run for longer than the test's ages");
        }
    }
}

/// Says goodbye politely, but never waits longer than the timeout for it.
async fn close(mut connection: AsyncSmtpConnection, timeout: Duration) {
    if tokio::time::timeout(timeout, connection.quit())
        .await
        .is_err()
    {
        tracing::debug!("Timed out closing an idle SMTP connection.");
    }
}

/// Closes connections idle longer than the limit, every quarter of it, until the transport
/// is dropped.
async fn reap_idle(pool: Weak<Pool>) {
    let mut tick = tokio::time::interval(IDLE_LIMIT / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        pool.reap_once().await;
    }
}
