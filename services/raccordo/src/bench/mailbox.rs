//! The benchmark's SMTP server and what it saw: the project's SMTP sink in this process,
//! observed (it keeps no mail), and a tracker that ties each arriving email to the event
//! that caused it, records when it arrived, and counts what is missing or doubled.
//!
//! The sink's callback only stamps the arrival and hands the mail to a channel; decoding
//! (subject, and the body for eviction alerts) happens on another task, so the SMTP
//! conversation answers as fast as it would without the benchmark.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use raccordo_smtp_sink::{ReceivedMail, SmtpSink};
use tokio::sync::{mpsc, watch};

use super::load::{Expected, find_key};

/// The emails one event must cause, and those that came.
#[derive(Debug, Default)]
struct Slot {
    published_at: Option<Instant>,
    expected: Vec<Expected>,
    /// (kind, recipient, Message-ID, arrival) of every email that quoted this event's key.
    arrived: Vec<(String, String, String, Instant)>,
}

/// What one run expects and what it received.
#[derive(Debug, Default)]
struct Run {
    tag: String,
    slots: HashMap<String, Slot>,
    expected_total: u64,
    /// Expected (event, kind, recipient) that have received at least one email.
    satisfied: u64,
    /// Arrival of the email that satisfied the last expectation so far.
    last_satisfied_at: Option<Instant>,
    /// Every Message-ID seen in this run, with how many times.
    message_ids: HashMap<String, u32>,
    /// Emails that quoted no key of this run, or were not expected.
    unexpected: u64,
    received: u64,
}

/// The checks and latencies of one run, once it is over.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    pub expected: u64,
    /// Distinct Message-IDs received for expected emails.
    pub received_distinct: u64,
    /// Expected (event, kind, recipient) with no email.
    pub missing: u64,
    /// Emails received again with a Message-ID already seen (resends), plus distinct
    /// emails beyond one for an expected (event, kind, recipient).
    pub duplicates: u64,
    /// Of `duplicates`: the same email sent again (a Message-ID seen before), which a crash
    /// between sending and recording may cause by design.
    pub resent: u64,
    /// Of `duplicates`: a second, distinct email (another Message-ID) for an expected
    /// (event, kind, recipient): the hub decided twice.
    pub doubled: u64,
    /// Emails this run did not expect.
    pub unexpected: u64,
    /// Publish → SMTP accepted, of the first arrival of each expected email.
    pub latencies: Vec<Duration>,
    /// Arrival of the last expected email.
    pub last_arrival: Option<Instant>,
}

/// The SMTP sink and the tracker of the current run.
pub(crate) struct Mailbox {
    sink: SmtpSink,
    run: Arc<Mutex<Run>>,
    /// Bumped at every arrival, to wake waiters.
    arrivals: watch::Receiver<u64>,
}

impl Mailbox {
    /// Starts the sink on a free loopback port and the task that reads what arrives.
    pub async fn start() -> anyhow::Result<Self> {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, ReceivedMail)>();
        let sink = SmtpSink::start_observed(move |mail| {
            // The receiving task ends only with the mailbox; a mail after that is moot.
            let _ = tx.send((Instant::now(), mail));
        })
        .await
        .context("Failed to start the SMTP sink")?;
        let run = Arc::new(Mutex::new(Run::default()));
        let (arrivals_tx, arrivals) = watch::channel(0);
        let shared = Arc::clone(&run);
        tokio::spawn(async move {
            while let Some((at, mail)) = rx.recv().await {
                let tag = lock(&shared).tag.clone();
                let parsed = parse(&mail, &tag);
                record(&mut lock(&shared), parsed, at);
                arrivals_tx.send_modify(|n| *n += 1);
            }
        });
        Ok(Self {
            sink,
            run,
            arrivals,
        })
    }

    /// The sink itself: its behaviour and its connection and transaction counters.
    pub fn sink(&self) -> &SmtpSink {
        &self.sink
    }

    /// The sink's port.
    pub fn port(&self) -> u16 {
        self.sink.port()
    }

    /// Starts tracking a new run whose keys start with `tag`; forgets the previous run.
    pub fn begin(&self, tag: &str) {
        *lock(&self.run) = Run {
            tag: tag.to_owned(),
            ..Run::default()
        };
    }

    /// Registers an event's expected emails before it is published.
    pub fn expect(&self, key: &str, expected: &[Expected]) {
        let mut run = lock(&self.run);
        run.expected_total += expected.len() as u64;
        run.slots.entry(key.to_owned()).or_default().expected = expected.to_vec();
    }

    /// Records when an event was published (or was due, in paced runs).
    pub fn published(&self, key: &str, at: Instant) {
        if let Some(slot) = lock(&self.run).slots.get_mut(key) {
            slot.published_at = Some(at);
        }
    }

    /// (expected emails arrived, expected emails) so far.
    pub fn progress(&self) -> (u64, u64) {
        let run = lock(&self.run);
        (run.satisfied, run.expected_total)
    }

    /// Waits until every expected email arrived, or until none arrived for `stall`.
    /// Returns whether all arrived.
    pub async fn wait_all(&self, stall: Duration) -> bool {
        let mut arrivals = self.arrivals.clone();
        loop {
            arrivals.borrow_and_update();
            let (done, total) = self.progress();
            if done >= total {
                return true;
            }
            match tokio::time::timeout(stall, arrivals.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return false,
            }
        }
    }

    /// Publish → SMTP accepted of the expected emails whose first arrival fell in
    /// `[from, to)`: one window of a long run.
    pub fn latencies_between(&self, from: Instant, to: Instant) -> Vec<Duration> {
        let run = lock(&self.run);
        let mut latencies = Vec::new();
        for slot in run.slots.values() {
            let Some(published) = slot.published_at else {
                continue;
            };
            for expected in &slot.expected {
                let first = slot
                    .arrived
                    .iter()
                    .filter(|(k, r, _, _)| k == expected.kind && r == expected.recipient)
                    .map(|(_, _, _, at)| *at)
                    .min();
                if let Some(at) = first.filter(|at| *at >= from && *at < to) {
                    latencies.push(at.saturating_duration_since(published));
                }
            }
        }
        latencies
    }

    /// The checks and latencies of the current run.
    pub fn outcome(&self) -> Outcome {
        outcome_of(&lock(&self.run))
    }
}

fn outcome_of(run: &Run) -> Outcome {
    let mut outcome = Outcome {
        expected: run.expected_total,
        unexpected: run.unexpected,
        last_arrival: run.last_satisfied_at,
        resent: run.message_ids.values().map(|&n| u64::from(n) - 1).sum(),
        ..Outcome::default()
    };
    outcome.duplicates = outcome.resent;
    for slot in run.slots.values() {
        for expected in &slot.expected {
            // Distinct Message-IDs for this (event, kind, recipient), each at its first arrival.
            let mut first_by_id: HashMap<&str, Instant> = HashMap::new();
            for (kind, recipient, id, at) in &slot.arrived {
                if kind == expected.kind && recipient == expected.recipient {
                    let first = first_by_id.entry(id.as_str()).or_insert(*at);
                    *first = (*first).min(*at);
                }
            }
            match first_by_id.values().min() {
                None => outcome.missing += 1,
                Some(first) => {
                    outcome.received_distinct += 1;
                    // A second notification for the same event and recipient is doubled.
                    outcome.doubled += first_by_id.len() as u64 - 1;
                    outcome.duplicates += first_by_id.len() as u64 - 1;
                    if let Some(published) = slot.published_at {
                        outcome
                            .latencies
                            .push(first.saturating_duration_since(published));
                    }
                }
            }
        }
    }
    outcome
}

/// What the tracker needs of one email.
struct Parsed {
    key: Option<String>,
    kind: String,
    recipients: Vec<String>,
    message_id: String,
}

/// Reads the kind, Message-ID and key of one email: the key from the subject, else from
/// the text body (eviction alerts keep the docket number out of the subject).
fn parse(mail: &ReceivedMail, tag: &str) -> Parsed {
    let key = if tag.is_empty() {
        None
    } else {
        mail.subject()
            .and_then(|s| find_key(&s, tag).map(str::to_owned))
            .or_else(|| {
                mail.text_body()
                    .and_then(|b| find_key(&b, tag).map(str::to_owned))
            })
    };
    Parsed {
        key,
        kind: mail.header("X-Raccordo-Kind").unwrap_or_default(),
        recipients: mail.to.clone(),
        message_id: mail.header("Message-ID").unwrap_or_default(),
    }
}

fn record(run: &mut Run, mail: Parsed, at: Instant) {
    run.received += 1;
    *run.message_ids.entry(mail.message_id.clone()).or_insert(0) += 1;
    let Some(slot) = mail.key.as_deref().and_then(|k| run.slots.get_mut(k)) else {
        run.unexpected += 1;
        return;
    };
    let mut newly_satisfied = 0;
    let mut matched = false;
    for recipient in &mail.recipients {
        let wanted = slot
            .expected
            .iter()
            .any(|e| e.kind == mail.kind && e.recipient == recipient);
        if !wanted {
            continue;
        }
        matched = true;
        let first = !slot
            .arrived
            .iter()
            .any(|(k, r, _, _)| *k == mail.kind && r == recipient);
        if first {
            newly_satisfied += 1;
        }
        slot.arrived.push((
            mail.kind.clone(),
            recipient.clone(),
            mail.message_id.clone(),
            at,
        ));
    }
    if !matched {
        run.unexpected += 1;
    }
    if newly_satisfied > 0 {
        run.satisfied += newly_satisfied;
        run.last_satisfied_at = Some(at);
    }
}

fn lock(run: &Mutex<Run>) -> std::sync::MutexGuard<'_, Run> {
    run.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFERED: Expected = Expected {
        kind: "housing.offered",
        recipient: "sa@example.org",
    };

    fn mail(key: &str, kind: &str, id: &str) -> Parsed {
        Parsed {
            key: Some(key.into()),
            kind: kind.into(),
            recipients: vec!["sa@example.org".into()],
            message_id: id.into(),
        }
    }

    #[test]
    fn a_resend_with_the_same_message_id_counts_as_a_duplicate_not_as_missing() {
        // Arrange
        let mut run = Run {
            expected_total: 2,
            ..Run::default()
        };
        run.slots.entry("K1".into()).or_default().expected = vec![OFFERED];
        run.slots.entry("K2".into()).or_default().expected = vec![OFFERED];
        let at = Instant::now();

        // Act
        record(&mut run, mail("K1", "housing.offered", "<a@x>"), at);
        record(&mut run, mail("K1", "housing.offered", "<a@x>"), at);
        record(&mut run, mail("K9", "housing.offered", "<b@x>"), at);

        // Assert
        assert_eq!(run.satisfied, 1);
        let outcome = outcome_of(&run);
        assert_eq!(outcome.received_distinct, 1);
        assert_eq!(outcome.missing, 1);
        assert_eq!(outcome.duplicates, 1);
        assert_eq!(outcome.unexpected, 1);
    }

    #[test]
    fn a_wrong_kind_for_a_known_key_is_unexpected() {
        let mut run = Run {
            expected_total: 1,
            ..Run::default()
        };
        run.slots.entry("K1".into()).or_default().expected = vec![OFFERED];

        record(
            &mut run,
            mail("K1", "housing.rejected", "<c@x>"),
            Instant::now(),
        );

        assert_eq!((run.satisfied, run.unexpected), (0, 1));
    }
}
