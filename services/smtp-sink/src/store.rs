//! What the sink and its sessions share: the received mails, the fault [`Mode`] and the
//! counters. Its own module so that sessions and the sink depend on it, not on each other.

use std::{
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::{mpsc, watch};

use crate::mail::ReceivedMail;

/// How the sink answers senders: a switch for fault-injection tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Accept every mail (the default).
    #[default]
    Accept,
    /// Answer `451 4.3.0` to `MAIL FROM`: a temporary failure the sender should retry.
    TempFail,
    /// Answer `550 5.1.1` to every `RCPT TO`: a permanent failure the sender must not retry.
    PermFail,
}

/// How the sink refuses one address it is told to reject (see [`crate::SmtpSink::reject`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Answer `550 5.1.1` to its `RCPT TO`: the sender sees a permanent refusal at once.
    AtRcpt,
    /// Accept it, as a relay does, then return a delivery status notification (RFC 3464)
    /// to the envelope sender through the sink's DSN outlet: the mail is not kept.
    Dsn,
}

/// How long the sink takes before a reply, as a real relay does (a content filter on
/// `DATA`, a DNS check on `RCPT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delay {
    /// Answer at once (the default).
    #[default]
    None,
    /// Always this long.
    Fixed(Duration),
    /// Uniformly between `min` and `max` (pseudo-random, seeded per sink).
    Uniform {
        /// Shortest delay.
        min: Duration,
        /// Longest delay.
        max: Duration,
    },
}

impl Delay {
    /// `ms` milliseconds, or no delay for 0.
    pub fn fixed_ms(ms: u64) -> Delay {
        if ms == 0 {
            Delay::None
        } else {
            Delay::Fixed(Duration::from_millis(ms))
        }
    }

    /// One draw; `random` is a uniform 64-bit number.
    fn draw(self, random: u64) -> Duration {
        match self {
            Delay::None => Duration::ZERO,
            Delay::Fixed(d) => d,
            Delay::Uniform { min, max } if max > min => {
                let span = u64::try_from((max - min).as_micros()).unwrap_or(u64::MAX);
                min + Duration::from_micros(random % span.saturating_add(1))
            }
            Delay::Uniform { min, .. } => min,
        }
    }
}

/// How the sink behaves as a relay under load: its latency, its connection limit and how
/// often it refuses transiently. The default answers at once, without limit or refusal.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Behaviour {
    /// Before each command's reply, except the end of `DATA`.
    pub command_delay: Delay,
    /// Before the reply to the end of `DATA` (the message accepted or refused).
    pub data_delay: Delay,
    /// Connections served at once; one more is greeted with `421 4.7.0` and closed.
    pub max_connections: Option<usize>,
    /// Fraction (0–1) of `MAIL FROM` commands refused transiently, alternately with
    /// `451 4.3.0` (the connection stays) and `421 4.3.2` (the server closes it). Spread
    /// evenly: at 0.1, every tenth.
    pub transient_refusal_rate: f64,
}

/// A transient refusal of `MAIL FROM` (see [`Behaviour::transient_refusal_rate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Keep451,
    Close421,
}

/// Where an observed sink hands each mail (see [`SmtpSink::start_observed`]).
pub(crate) struct Observer(pub(crate) Box<dyn Fn(ReceivedMail) + Send + Sync>);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer(..)")
    }
}

/// What sessions share with the sink: received mails, the fault mode, counters.
#[derive(Debug)]
pub(crate) struct Store {
    mails: Mutex<Vec<ReceivedMail>>,
    /// When set, mails go here instead of `mails`.
    observer: Option<Observer>,
    /// The number of stored mails, published so waiters wake on arrival.
    pub(crate) count: watch::Sender<usize>,
    pub(crate) mode: Mutex<Mode>,
    pub(crate) accepted_connections: AtomicU64,
    next_queue_id: AtomicU64,
    pub(crate) behaviour: Mutex<Behaviour>,
    /// Sessions being served now, and the most at once.
    pub(crate) open_connections: AtomicUsize,
    pub(crate) peak_connections: AtomicUsize,
    /// Connections refused with `421` over the limit.
    pub(crate) refused_connections: AtomicU64,
    /// Mail transactions open now (`MAIL` accepted, final reply not yet sent), and the
    /// most at once.
    pub(crate) transactions: AtomicUsize,
    pub(crate) peak_transactions: AtomicUsize,
    /// `MAIL FROM` commands seen, and those refused by `transient_refusal_rate`.
    mail_commands: AtomicU64,
    pub(crate) transient_refusals: AtomicU64,
    random: AtomicU64,
    /// Addresses (lower-cased) refused, and how.
    rejected: Mutex<Vec<(String, Rejection)>>,
    /// Where the reports of [`Rejection::Dsn`] go, once a caller asked for them.
    dsn_outlet: Mutex<Option<mpsc::UnboundedSender<Vec<u8>>>>,
}

impl Store {
    pub(crate) fn new(observer: Option<Observer>) -> Self {
        Self {
            mails: Mutex::new(Vec::new()),
            observer,
            count: watch::Sender::new(0),
            mode: Mutex::new(Mode::Accept),
            accepted_connections: AtomicU64::new(0),
            next_queue_id: AtomicU64::new(1),
            behaviour: Mutex::new(Behaviour::default()),
            open_connections: AtomicUsize::new(0),
            peak_connections: AtomicUsize::new(0),
            refused_connections: AtomicU64::new(0),
            transactions: AtomicUsize::new(0),
            peak_transactions: AtomicUsize::new(0),
            mail_commands: AtomicU64::new(0),
            transient_refusals: AtomicU64::new(0),
            random: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
            rejected: Mutex::new(Vec::new()),
            dsn_outlet: Mutex::new(None),
        }
    }

    /// How `address` is refused, if it is.
    pub(crate) fn rejection(&self, address: &str) -> Option<Rejection> {
        let address = address.to_lowercase();
        self.rejected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(a, _)| *a == address)
            .map(|(_, how)| *how)
    }

    /// Refuses `address` from now on (`None`: accepts it again).
    pub(crate) fn set_rejection(&self, address: &str, how: Option<Rejection>) {
        let address = address.to_lowercase();
        let mut rejected = self.rejected.lock().unwrap_or_else(PoisonError::into_inner);
        rejected.retain(|(a, _)| *a != address);
        if let Some(how) = how {
            rejected.push((address, how));
        }
    }

    /// Sends reports to `outlet` from now on.
    pub(crate) fn set_dsn_outlet(&self, outlet: mpsc::UnboundedSender<Vec<u8>>) {
        *self
            .dsn_outlet
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(outlet);
    }

    /// Hands a report to the outlet; without one (or with its receiver gone) it is dropped,
    /// as a relay's report to a sender nobody reads.
    pub(crate) fn emit_dsn(&self, report: Vec<u8>) {
        if let Some(outlet) = &*self
            .dsn_outlet
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            let _ = outlet.send(report);
        }
    }

    /// The next queue id.
    pub(crate) fn next_queue_id(&self) -> u64 {
        self.next_queue_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn behaviour(&self) -> Behaviour {
        *self
            .behaviour
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How long to wait before replying to a command, or to the end of `DATA`.
    pub(crate) fn delay(&self, data: bool) -> Duration {
        let behaviour = self.behaviour();
        let delay = if data {
            behaviour.data_delay
        } else {
            behaviour.command_delay
        };
        if delay == Delay::None {
            return Duration::ZERO;
        }
        delay.draw(self.next_random())
    }

    /// xorshift64: enough spread for delays, no dependency.
    fn next_random(&self) -> u64 {
        let mut x = self.random.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random.store(x, Ordering::Relaxed);
        x
    }

    /// Whether this `MAIL FROM` is refused, and how.
    pub(crate) fn refusal(&self) -> Option<Refusal> {
        let rate = self.behaviour().transient_refusal_rate.clamp(0.0, 1.0);
        let n = self.mail_commands.fetch_add(1, Ordering::Relaxed);
        if rate <= 0.0 {
            return None;
        }
        // The n-th command is refused when the running count of refusals due moves on.
        let due = |n: u64| (n as f64 * rate).floor() as u64;
        if due(n + 1) == due(n) {
            return None;
        }
        let k = self.transient_refusals.fetch_add(1, Ordering::Relaxed);
        Some(if k.is_multiple_of(2) {
            Refusal::Keep451
        } else {
            Refusal::Close421
        })
    }

    /// Counts one more of `now`, keeping `peak` at the most seen.
    pub(crate) fn raise(now: &AtomicUsize, peak: &AtomicUsize) {
        let current = now.fetch_add(1, Ordering::AcqRel) + 1;
        peak.fetch_max(current, Ordering::AcqRel);
    }

    /// Locks the mail list. A panicking test thread cannot leave a `Vec` half-written, so a
    /// poisoned lock is still safe to use.
    pub(crate) fn mails(&self) -> MutexGuard<'_, Vec<ReceivedMail>> {
        self.mails.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn mode(&self) -> Mode {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores a mail and returns the queue id quoted in the `250` reply.
    pub(crate) fn push(&self, mail: ReceivedMail) -> u64 {
        let id = self.next_queue_id.fetch_add(1, Ordering::Relaxed);
        if let Some(observer) = &self.observer {
            (observer.0)(mail);
            self.count.send_modify(|count| *count += 1);
            return id;
        }
        let mut mails = self.mails();
        mails.push(mail);
        self.count.send_replace(mails.len());
        id
    }
}
