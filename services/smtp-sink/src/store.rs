//! What the sink and its sessions share: the received mails, the fault [`Mode`] and the
//! counters. Its own module so that sessions and the sink depend on it, not on each other.

use std::sync::{
    Mutex, MutexGuard, PoisonError,
    atomic::{AtomicU64, Ordering},
};

use tokio::sync::watch;

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
        }
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
