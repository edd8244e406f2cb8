//! The bounded pool of SMTP connections: a [`Semaphore`] bounds connections (idle plus busy)
//! to a limit that starts at `max_connections` and adapts to the server: a refused
//! connection (a `421` greeting, a refused TCP connect) lowers it to the connections that
//! worked, a `421` inside a conversation lowers it by one, and every `limit` emails sent
//! without refusal, [`HOLD_AFTER_REFUSAL`] after the last, raise it by one, back towards
//! the maximum. Connections are opened
//! only when a send finds none idle, so the pool grows with the backlog. Idle ones wait in
//! a stack, most recently used on top, so surplus connections age out after load drops:
//! those beyond `keep_idle` after [`SHRINK_AFTER`], every one after [`IDLE_LIMIT`], by a
//! background task even when no mail is sent. A connection that saw any error is never
//! returned; one idle for a while is probed with `NOOP` before reuse.

use std::{
    sync::{
        Arc, Mutex, MutexGuard, PoisonError, Weak,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use lettre::transport::smtp::client::AsyncSmtpConnection;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Idle connections older than this are closed: servers drop idle clients after a few
/// minutes (RFC 5321 §4.5.3.2 suggests 5), and a pool that outlives its load should shrink.
pub(super) const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// Idle connections beyond `keep_idle` are closed after this: the surplus of a burst goes
/// soon, the server's connection slots with it.
pub(super) const SHRINK_AFTER: Duration = Duration::from_secs(5);

/// After the limit was lowered it stays for this long: a server at its connection limit is
/// probed with one more connection at most this often.
pub(super) const HOLD_AFTER_REFUSAL: Duration = Duration::from_millis(500);

/// A connection used this recently is reused without a `NOOP` probe: it was working a
/// moment ago, and probing every time would add a round trip to every message.
pub(super) const PROBE_AFTER: Duration = Duration::from_secs(2);

/// An idle connection and when it was last used.
struct Idle {
    connection: Pooled,
    since: Instant,
}

/// The adaptive limit on connections.
#[derive(Debug)]
struct Limit {
    current: usize,
    /// Emails sent since the limit last moved.
    sent_since: usize,
    /// When it was last lowered.
    lowered_at: Option<Instant>,
}

/// The right to hold a connection. A permit returned while the pool owes permits (the
/// limit was lowered) is forgotten instead.
pub(super) struct Permit<'a> {
    pool: &'a Pool,
    permit: Option<SemaphorePermit<'a>>,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let owed = self
            .pool
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1));
        if owed.is_ok() {
            permit.forget();
        }
    }
}

/// A connection being opened or open, counted in the pool's connections until dropped.
pub(super) struct Slot {
    open: Arc<AtomicUsize>,
}

impl Slot {
    /// The connection opened in this slot.
    pub(super) fn fill(self, connection: AsyncSmtpConnection) -> Pooled {
        Pooled {
            connection,
            _slot: self,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let now = self.open.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        metrics::gauge!("raccordo_smtp_connections").set(now as f64);
    }
}

/// An open connection of the pool.
pub(super) struct Pooled {
    pub(super) connection: AsyncSmtpConnection,
    _slot: Slot,
}

/// The pool; shared by the clones of one transport.
pub(super) struct Pool {
    /// Bound on closing a connection.
    timeout: Duration,
    /// One permit per connection that may exist, idle or busy.
    permits: Semaphore,
    /// The most connections, whatever the server's replies.
    max: usize,
    /// Idle connections kept beyond [`SHRINK_AFTER`].
    keep_idle: usize,
    /// The adaptive limit (≤ `max`) and its bookkeeping.
    limit: Mutex<Limit>,
    /// Permits owed after a lowering: forgotten as their holders return them.
    debt: AtomicUsize,
    /// Connections open now, idle or busy, and the most at once.
    open: Arc<AtomicUsize>,
    peak_open: AtomicUsize,
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

    /// A pool of at most `max` connections, keeping `keep_idle` of them open while idle;
    /// `timeout` bounds a probe and a goodbye.
    pub(super) fn new(max: usize, keep_idle: usize, timeout: Duration) -> Pool {
        let max = max.max(1);
        Pool {
            timeout,
            permits: Semaphore::new(max),
            max,
            keep_idle,
            limit: Mutex::new(Limit {
                current: max,
                sent_since: 0,
                lowered_at: None,
            }),
            debt: AtomicUsize::new(0),
            open: Arc::new(AtomicUsize::new(0)),
            peak_open: AtomicUsize::new(0),
            idle: Mutex::new(Vec::new()),
            reaper_started: AtomicBool::new(false),
        }
    }

    fn limit(&self) -> MutexGuard<'_, Limit> {
        self.limit.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for the right to hold a connection, idle or new.
    pub(super) async fn permit(&self) -> Permit<'_> {
        // The semaphore is never closed, so acquiring fails never; were it closed, going
        // without a permit would only lift the bound.
        Permit {
            pool: self,
            permit: self.permits.acquire().await.ok(),
        }
    }

    /// Counts a connection about to be opened: while it connects, a refusal of another
    /// one does not take the pool for empty.
    pub(super) fn opening(&self) -> Slot {
        let now = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak_open.fetch_max(now, Ordering::AcqRel);
        metrics::gauge!("raccordo_smtp_connections").set(now as f64);
        Slot {
            open: Arc::clone(&self.open),
        }
    }

    /// Connections open now, the most at once, and the current limit.
    pub(super) fn connections(&self) -> (usize, usize, usize) {
        (
            self.open.load(Ordering::Acquire),
            self.peak_open.load(Ordering::Acquire),
            self.limit().current,
        )
    }

    /// The server refused a new connection: the limit drops to the connections open or
    /// opening (those it took or may take). Returns whether there are any, so that waiting
    /// for one is worth it. The refused one's slot must be gone.
    pub(super) fn refused(&self) -> bool {
        let mut limit = self.limit();
        let open = self.open.load(Ordering::Acquire);
        self.lower_to(&mut limit, open.max(1));
        open > 0
    }

    /// A `421` inside a conversation: the server is busy; one connection fewer.
    pub(super) fn busy(&self) {
        let mut limit = self.limit();
        let target = limit.current.saturating_sub(1).max(1);
        self.lower_to(&mut limit, target);
    }

    fn lower_to(&self, limit: &mut Limit, target: usize) {
        limit.sent_since = 0;
        limit.lowered_at = Some(Instant::now());
        if target >= limit.current {
            return;
        }
        let drop_by = limit.current - target;
        limit.current = target;
        let forgotten = self.permits.forget_permits(drop_by);
        self.debt.fetch_add(drop_by - forgotten, Ordering::AcqRel);
        tracing::debug!(limit = target, "SMTP server refusing: fewer connections.");
    }

    /// An email went through: after `limit` of them without refusal, one more connection.
    pub(super) fn sent(&self) {
        let mut limit = self.limit();
        if limit.current >= self.max {
            return;
        }
        limit.sent_since += 1;
        let held = limit
            .lowered_at
            .is_some_and(|at| at.elapsed() < HOLD_AFTER_REFUSAL);
        if limit.sent_since < limit.current || held {
            return;
        }
        limit.sent_since = 0;
        limit.current += 1;
        let repaid = self
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1));
        if repaid.is_err() {
            self.permits.add_permits(1);
        }
    }

    /// Takes the most recently used idle connection that still works, closing stale ones.
    pub(super) async fn checkout(&self) -> Option<Pooled> {
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
            if connection.connection.has_broken() {
                continue;
            }
            if idle_for > PROBE_AFTER {
                let probe =
                    tokio::time::timeout(self.timeout, connection.connection.test_connected());
                if !matches!(probe.await, Ok(true)) {
                    continue;
                }
            }
            return Some(connection);
        }
    }

    /// Puts a working connection back; starts the reaper the first time.
    pub(super) fn checkin(self: &Arc<Self>, connection: Pooled) {
        if connection.connection.has_broken() {
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

    /// Closes the connections idle longer than [`IDLE_LIMIT`], and those beyond
    /// `keep_idle` idle longer than [`SHRINK_AFTER`].
    pub(super) async fn reap_once(&self) {
        let stale: Vec<Idle> = {
            let mut idle = self.idle();
            // Most recently used last: the oldest are the surplus.
            let surplus = idle.len().saturating_sub(self.keep_idle);
            let mut index = 0;
            let (stale, fresh) = idle.drain(..).partition(|i| {
                index += 1;
                let idle_for = i.since.elapsed();
                idle_for > IDLE_LIMIT || (index <= surplus && idle_for > SHRINK_AFTER)
            });
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
async fn close(mut connection: Pooled, timeout: Duration) {
    if tokio::time::timeout(timeout, connection.connection.quit())
        .await
        .is_err()
    {
        tracing::debug!("Timed out closing an idle SMTP connection.");
    }
}

/// Closes connections idle longer than the limit, every quarter of it, until the transport
/// is dropped.
async fn reap_idle(pool: Weak<Pool>) {
    let mut tick = tokio::time::interval(SHRINK_AFTER);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        pool.reap_once().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refusal_lowers_the_limit_to_the_open_connections_and_sends_raise_it_again() {
        // Arrange: 8 permits out, 3 of them with a connection open or opening.
        let pool = Pool::new(8, 2, Duration::from_secs(1));
        let mut permits = Vec::new();
        for _ in 0..8 {
            permits.push(pool.permit().await);
        }
        let slots: Vec<Slot> = (0..3).map(|_| pool.opening()).collect();

        // Act: the server refuses a fourth connection.
        assert!(pool.refused(), "others are open");
        drop(permits);

        // Assert: only 3 permits come back; the 5 owed are forgotten.
        assert_eq!(pool.connections().2, 3);
        assert_eq!(pool.permits.available_permits(), 3);
        assert_eq!(pool.debt.load(Ordering::Acquire), 0);

        // Held for a moment, then one more per `limit` emails sent.
        for _ in 0..3 {
            pool.sent();
        }
        assert_eq!(pool.connections().2, 3, "held after the refusal");
        tokio::time::sleep(HOLD_AFTER_REFUSAL).await;
        for _ in 0..3 {
            pool.sent();
        }
        assert_eq!(pool.connections().2, 4);
        assert_eq!(pool.permits.available_permits(), 4);
        drop(slots);
        assert_eq!(pool.connections().0, 0);
    }

    #[tokio::test]
    async fn a_421_in_a_conversation_takes_one_connection_away_but_never_the_last() {
        let pool = Pool::new(2, 1, Duration::from_secs(1));

        pool.busy();
        pool.busy();

        assert_eq!(pool.connections().2, 1);
        assert_eq!(pool.permits.available_permits(), 1);
        assert!(!pool.refused(), "nothing open to wait for");
    }
}
