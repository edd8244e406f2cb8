//! A PEC provider simulator, for the tests and the demo (CONTRACT §9): it takes the hub's
//! PEC emails over SMTP (the project's SMTP sink) and writes the receipts a provider would
//! into a real IMAP mailbox (APPEND), each with its `daticert.xml`. Told per address (or for
//! all) how to answer:
//!
//! | [`Answer`] | receipts |
//! |---|---|
//! | `Deliver` | `accettazione`, then after the delay `avvenuta-consegna` |
//! | `Refuse`  | `non-accettazione` |
//! | `Lose`    | `accettazione`, then nothing (the hub's timeout must notice) |
//! | `Fail`    | `accettazione`, then `errore-consegna` (`no-dest`) |
//! | `Virus`   | `accettazione`, then `rilevazione-virus` |
//!
//! # Layout
//! - [`compose`]: a receipt email and its `daticert.xml`, shaped as the providers' are.

pub mod compose;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use raccordo_smtp_sink::{ReceivedMail, SmtpSink};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio_util::task::TaskTracker;

use crate::daticert::ReceiptType;
use crate::imap::{Appender, ImapUrl};
use compose::{ReceiptSpec, compose_receipt};

/// How the simulated provider answers a message to one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Answer {
    /// Accepted, then delivered.
    #[default]
    Deliver,
    /// Not accepted.
    Refuse,
    /// Accepted, then never a word more.
    Lose,
    /// Accepted, then not delivered (no such mailbox).
    Fail,
    /// Accepted, then a virus found.
    Virus,
}

impl Answer {
    /// Reads `deliver`, `refuse`, `lose`, `fail`, `virus`.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.trim() {
            "deliver" => Answer::Deliver,
            "refuse" => Answer::Refuse,
            "lose" => Answer::Lose,
            "fail" => Answer::Fail,
            "virus" => Answer::Virus,
            _ => return None,
        })
    }
}

/// The simulator's set-up.
#[derive(Debug, Clone)]
pub struct SimulatorOptions {
    /// Where the receipts go.
    pub mailbox: ImapUrl,
    /// The provider's name in `daticert.xml`.
    pub gestore: String,
    /// The provider's mail domain.
    pub domain: String,
    /// Between acceptance and the delivery receipt (or its error).
    pub delay: Duration,
    /// Bound on each IMAP step.
    pub timeout: Duration,
}

impl SimulatorOptions {
    /// Defaults for `mailbox`: "Gestore PEC simulato", `pec.simulatore.invalid`, no delay.
    pub fn new(mailbox: ImapUrl) -> Self {
        Self {
            mailbox,
            gestore: "Gestore PEC simulato".into(),
            domain: "pec.simulatore.invalid".into(),
            delay: Duration::ZERO,
            timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Default)]
struct Answers {
    all: Answer,
    by_address: HashMap<String, Answer>,
    delay: Duration,
}

/// A running simulated provider. Dropping it stops taking mail.
pub struct PecSimulator {
    sink: SmtpSink,
    answers: Arc<Mutex<Answers>>,
    appended: watch::Receiver<u64>,
    tracker: TaskTracker,
}

impl std::fmt::Debug for PecSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PecSimulator")
            .field("addr", &self.sink.addr())
            .finish_non_exhaustive()
    }
}

impl PecSimulator {
    /// Listens for SMTP on `127.0.0.1` and a free port.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn start(options: SimulatorOptions) -> std::io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), options).await
    }

    /// Listens for SMTP on `addr`.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn start_on(addr: SocketAddr, options: SimulatorOptions) -> std::io::Result<Self> {
        // Unbounded: the sink's observer runs before each `250` and cannot wait; the mails
        // are the simulator's own test load, each a few KiB.
        let (mails, received) = mpsc::unbounded_channel::<ReceivedMail>();
        let sink = SmtpSink::start_observed_on(addr, move |mail| {
            let _ = mails.send(mail);
        })
        .await?;
        let answers = Arc::new(Mutex::new(Answers {
            delay: options.delay,
            ..Answers::default()
        }));
        let (count, appended) = watch::channel(0u64);
        let tracker = TaskTracker::new();
        let (receipts, to_append) = mpsc::unbounded_channel::<Vec<u8>>();
        tracker.spawn(append_receipts(
            Appender::new(options.mailbox.clone(), options.timeout),
            to_append,
            count,
        ));
        tracker.spawn(answer_mails(
            received,
            Arc::clone(&answers),
            options,
            receipts,
            tracker.clone(),
        ));
        Ok(Self {
            sink,
            answers,
            appended,
            tracker,
        })
    }

    /// The SMTP address to send to (`mail.pec_smtp_url = smtp://{addr}`).
    pub fn addr(&self) -> SocketAddr {
        self.sink.addr()
    }

    /// How to answer messages to `address` from now on.
    pub fn answer(&self, address: &str, answer: Answer) {
        self.lock()
            .by_address
            .insert(address.trim().to_lowercase(), answer);
    }

    /// How to answer every address without an answer of its own.
    pub fn answer_all(&self, answer: Answer) {
        self.lock().all = answer;
    }

    /// The delay before delivery receipts.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Answers> {
        self.answers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Receipts written into the mailbox so far.
    pub fn receipts_written(&self) -> u64 {
        *self.appended.borrow()
    }

    /// Waits until `n` receipts have been written, up to `within`; the number written.
    pub async fn wait_for_receipts(&self, n: u64, within: Duration) -> u64 {
        let mut appended = self.appended.clone();
        let _ = tokio::time::timeout(within, appended.wait_for(|&c| c >= n)).await;
        *self.appended.borrow()
    }

    /// Stops taking mail; receipts already due are still written.
    pub async fn stop(self) {
        self.sink.stop().await;
        self.tracker.close();
    }
}

/// Writes receipts in order, over one IMAP session; a failed APPEND is retried until it
/// succeeds (a receipt lost by the simulator would be a lie of the provider's).
async fn append_receipts(
    mut appender: Appender,
    mut receipts: mpsc::UnboundedReceiver<Vec<u8>>,
    count: watch::Sender<u64>,
) {
    while let Some(receipt) = receipts.recv().await {
        let mut pause = Duration::from_millis(100);
        loop {
            match appender.append(&receipt).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(error = %error, "The PEC simulator could not write a receipt; retrying.");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
        count.send_modify(|c| *c += 1);
    }
    appender.close().await;
}

static SERIAL: AtomicU64 = AtomicU64::new(1);

/// Answers each mail received: the receipts now, and those due after the delay.
async fn answer_mails(
    mut received: mpsc::UnboundedReceiver<ReceivedMail>,
    answers: Arc<Mutex<Answers>>,
    options: SimulatorOptions,
    receipts: mpsc::UnboundedSender<Vec<u8>>,
    tracker: TaskTracker,
) {
    while let Some(mail) = received.recv().await {
        let Some(reference) = mail.header("Message-ID") else {
            tracing::warn!("The PEC simulator got a message without Message-ID; no receipt.");
            continue;
        };
        let oggetto = mail.subject().unwrap_or_default();
        let mittente = mail.from.clone();
        for to in &mail.to {
            let (answer, delay) = {
                let answers = answers.lock().unwrap_or_else(PoisonError::into_inner);
                (
                    answers
                        .by_address
                        .get(&to.trim().to_lowercase())
                        .copied()
                        .unwrap_or(answers.all),
                    answers.delay,
                )
            };
            let receipt = |kind: ReceiptType, errore: &str, errore_esteso: Option<&str>| {
                compose_receipt(&ReceiptSpec {
                    kind,
                    reference: &reference,
                    mittente: &mittente,
                    destinatario: to,
                    oggetto: &oggetto,
                    gestore: &options.gestore,
                    domain: &options.domain,
                    at: OffsetDateTime::now_utc(),
                    errore,
                    errore_esteso,
                    original: Some(mail.data.as_bytes()),
                    serial: SERIAL.fetch_add(1, Ordering::Relaxed),
                })
            };
            if answer == Answer::Refuse {
                let _ = receipts.send(receipt(
                    ReceiptType::NonAccettazione,
                    "altro",
                    Some("messaggio non accettato dal gestore"),
                ));
                continue;
            }
            let _ = receipts.send(receipt(ReceiptType::Accettazione, "nessuno", None));
            let later = match answer {
                Answer::Deliver => receipt(ReceiptType::AvvenutaConsegna, "nessuno", None),
                Answer::Fail => receipt(
                    ReceiptType::ErroreConsegna,
                    "no-dest",
                    Some("5.1.1 - casella di destinazione inesistente"),
                ),
                Answer::Virus => receipt(
                    ReceiptType::RilevazioneVirus,
                    "virus",
                    Some("virus rilevato nel messaggio"),
                ),
                Answer::Lose | Answer::Refuse => continue,
            };
            if delay.is_zero() {
                let _ = receipts.send(later);
            } else {
                let receipts = receipts.clone();
                tracker.spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = receipts.send(later);
                });
            }
        }
    }
}
