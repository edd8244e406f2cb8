//! The mailer: sends the emails the workers decided, one per recipient, each at most once.
//!
//! Its work is rows of `deliveries`, claimed straight from the database — no broker hop:
//! woken by the NOTIFY of each committed notification, a sender locks its share of
//! `mail.max_connections` due rows (`FOR UPDATE SKIP LOCKED`), sends them and records
//! the outcome in the same transaction, so a second sender, a second replica or a restart
//! sends nothing twice. A crash between the server's acceptance and the commit resends —
//! with the same `Message-ID`, so mail systems can tell (CONTRACT F3). A transient failure
//! makes the row due again after the retry delay; after `retry.max_attempts`, or at once
//! for a refusal, the row is held and the relay announces it in `{prefix}.parked` or
//! `{prefix}.dead`, where `raccordo dlq replay` sends it to `{prefix}.mailer` and
//! [`ReplayHandler`] makes it due again (CONTRACT F1, F2).
//!
//! Nothing one email does can stop the mail: a panic while building or sending it is caught
//! around that delivery, which is held dead with a reason while the round's others go on;
//! a sender that stops all the same (a defect elsewhere in its loop) makes `/readyz` answer
//! 503 naming it, and is started again.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt;
use futures_util::future::join_all;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use raccordo_core::ack::AckLinks;
use raccordo_core::amqp::{HandleError, Handler, Message, Outcome};
use raccordo_core::clock::{Clock, SystemClock};
use raccordo_core::db::digests::Held;
use raccordo_core::db::escalation;
use raccordo_core::db::{
    self, AfterFailure, DueDelivery, FailedEmail, HeldIn, NotificationMessage, SentEmail,
};
use raccordo_core::domain::EmailAddress;
use raccordo_core::fallback::{Bounce, FallbackPolicy, record_bounce};
use raccordo_core::health::{ConsumerState, Health};
use raccordo_core::notification::NotificationKind;
use raccordo_core::preference_link::PreferenceLinks;
use raccordo_core::preferences::{self, Decision, Item, Preferences};
use raccordo_core::settings::{MailSettings, MailTransportKind, RetrySettings, SettingsError};

use crate::message::{OutgoingEmail, message_id_for, reminder_message_id_for};
use crate::outbox_file::FileOutbox;
use crate::smtp::{SmtpConfigError, SmtpOptions, SmtpTransport};
use crate::templates::{RecipientContext, render_with_links};
use crate::transport::Transport;

/// Why the configured transport cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TransportConfigError {
    /// The file transport without `mail.allow_file_transport`.
    #[error(transparent)]
    FileTransportNotAllowed(#[from] SettingsError),
    /// An SMTP URL or option that cannot work.
    #[error(transparent)]
    Smtp(#[from] SmtpConfigError),
}

/// Builds the configured transport (`mail.transport`); the file transport only where
/// `mail.allow_file_transport` says so.
pub fn transport_from_settings(settings: &MailSettings) -> Result<Transport, TransportConfigError> {
    settings.check_file_transport_allowed()?;
    Ok(match settings.transport {
        MailTransportKind::File => Transport::File(FileOutbox::new(settings.outbox_dir.clone())),
        MailTransportKind::Smtp => Transport::Smtp(SmtpTransport::new(&SmtpOptions {
            url: settings.smtp_url.expose_secret().to_owned(),
            timeout: settings.timeout(),
            pool_size: settings.pool_size.max(1),
            max_connections: settings.max_connections.max(1),
            hello_name: None,
        })?),
    })
}

/// Builds the PEC transport (`mail.pec_smtp_url`), when one is configured (CONTRACT D2).
pub fn pec_transport_from_settings(
    settings: &MailSettings,
) -> Result<Option<Transport>, TransportConfigError> {
    if !settings.pec_enabled() {
        return Ok(None);
    }
    Ok(Some(Transport::Smtp(SmtpTransport::new(&SmtpOptions {
        url: settings.pec_smtp_url.expose_secret().to_owned(),
        timeout: settings.timeout(),
        pool_size: settings.pool_size.max(1),
        max_connections: settings.max_connections.max(1),
        hello_name: None,
    })?)))
}

/// Sends due deliveries; shared by the senders of a process.
pub struct Mailer {
    pub(crate) pool: PgPool,
    pub(crate) transport: Transport,
    /// The PEC provider's server, for deliveries of channel `pec`.
    pub(crate) pec: Option<Transport>,
    pub(crate) from: String,
    pub(crate) message_id_domain: String,
    pub(crate) retry: RetrySettings,
    pub(crate) emails_per_commit: i64,
    pub(crate) senders: u16,
    pub(crate) ack_links: Option<AckLinks>,
    pub(crate) fallback: FallbackPolicy,
    /// The referents' preferences pages and one-click unsubscribes (issue 22).
    pub(crate) preference_links: Option<PreferenceLinks>,
    /// Where the preferences' windows and quiet hours read the time.
    pub(crate) clock: Arc<dyn Clock>,
}

/// Which email of a delivery is being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sending {
    /// The notification.
    First,
    /// Its reminder (CONTRACT D5): `[PROMEMORIA]`, its own Message-ID.
    Reminder,
}

/// The most emails a mailer process killed at any instant may have sent without recording
/// them, unless [`Mailer::with_max_in_flight`] says otherwise (`mail.max_connections`,
/// whose default this is): they are sent again after a restart, with the same Message-IDs
/// (CONTRACT F3).
pub const MAX_UNRECORDED_EMAILS: usize = 32;

/// What a sender does, one round at a time: the [`Mailer`] (a test may wrap it).
#[async_trait]
pub trait Rounds: Send + Sync + 'static {
    /// One round: claims due deliveries, sends them, records every outcome.
    async fn send_due(&self) -> Result<Round, sqlx::Error>;

    /// The most deliveries one round claims: a full round means more may be due now.
    fn round_size(&self) -> usize;
}

#[async_trait]
impl Rounds for Mailer {
    async fn send_due(&self) -> Result<Round, sqlx::Error> {
        Mailer::send_due(self).await
    }

    fn round_size(&self) -> usize {
        usize::try_from(self.emails_per_commit).unwrap_or(1)
    }
}

/// What one round of a sender did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Round {
    /// Deliveries claimed.
    pub claimed: usize,
    /// Of which the server accepted.
    pub sent: usize,
    /// The soonest retry this round scheduled.
    pub retry_in: Option<Duration>,
}

impl Mailer {
    /// A mailer sending from `from` (`mail.from`) through `transport`, retrying by `retry`;
    /// its `senders` share [`MAX_UNRECORDED_EMAILS`]: each sends its share under one lock
    /// and records it in one commit.
    pub fn new(
        pool: PgPool,
        transport: Transport,
        from: &str,
        retry: &RetrySettings,
        senders: u16,
    ) -> Self {
        let domain = EmailAddress::parse_mailbox(from)
            .map(|e| e.domain().to_owned())
            .unwrap_or_else(|_| "raccordo.invalid".to_owned());
        let share = MAX_UNRECORDED_EMAILS / usize::from(senders.max(1));
        Self {
            pool,
            transport,
            pec: None,
            from: from.to_owned(),
            message_id_domain: domain,
            retry: retry.clone(),
            emails_per_commit: i64::try_from(share.max(1)).unwrap_or(1),
            senders: senders.max(1),
            ack_links: None,
            fallback: FallbackPolicy::default(),
            preference_links: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// Puts a link to the referent's preferences page in every email, and a one-click
    /// `List-Unsubscribe` in those of the kinds it may turn off (issue 22); none without.
    #[must_use]
    pub fn with_preference_links(mut self, links: Option<PreferenceLinks>) -> Self {
        self.preference_links = links;
        self
    }

    /// Reads the time of the referents' windows and quiet hours from `clock` (tests).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The clock of the preferences' windows.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The pool this mailer works on.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Puts an acknowledgement link in the emails of the kinds a person must act on
    /// (CONTRACT D4); none without it.
    #[must_use]
    pub fn with_ack_links(mut self, links: Option<AckLinks>) -> Self {
        self.ack_links = links;
        self
    }

    /// Sends the reminders due (CONTRACT D5), one round, and records them in the claim's
    /// transaction: `reminded` on each timeline. Returns how many were claimed.
    pub async fn send_due_reminders(&self) -> Result<usize, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let due = escalation::claim_due_reminders(&mut tx, self.emails_per_commit).await?;
        if due.is_empty() {
            tx.rollback().await?;
            return Ok(0);
        }
        let outcomes = join_all(
            due.iter()
                .map(|row| guard_delivery(row, self.send(row, Sending::Reminder))),
        )
        .await;
        let (sent, failed): (Vec<_>, Vec<_>) = outcomes.into_iter().partition(Result::is_ok);
        let sent: Vec<SentEmail> = sent.into_iter().filter_map(Result::ok).collect();
        let failed: Vec<FailedEmail> = failed.into_iter().filter_map(Result::err).collect();
        escalation::record_reminders_sent(&mut tx, &sent).await?;
        escalation::record_reminders_failed(&mut tx, &failed).await?;
        tx.commit().await?;
        Ok(due.len())
    }

    /// Lets a permanent refusal follow `policy`'s fallback (CONTRACT D3): without it, the
    /// stand-ins get no PEC.
    #[must_use]
    pub fn with_fallback(mut self, policy: FallbackPolicy) -> Self {
        self.fallback = policy;
        self
    }

    /// Lets the senders hold `max` emails sent and not yet recorded between them (each its
    /// share, at least one): `mail.max_connections`, so that a round can keep every SMTP
    /// connection busy. It is also the most a crash can resend (CONTRACT F3).
    #[must_use]
    pub fn with_max_in_flight(mut self, max: usize) -> Self {
        let share = max / usize::from(self.senders);
        self.emails_per_commit = i64::try_from(share.max(1)).unwrap_or(1);
        self
    }

    /// Sends the deliveries of channel `pec` through `pec` (`mail.pec_smtp_url`).
    #[must_use]
    pub fn with_pec(mut self, pec: Option<Transport>) -> Self {
        self.pec = pec;
        self
    }

    /// The most emails this mailer's senders hold sent and not yet recorded, together.
    pub fn max_unrecorded(&self) -> usize {
        usize::try_from(self.emails_per_commit).unwrap_or(1) * usize::from(self.senders)
    }

    /// One round: claims this sender's share of due deliveries, sends them, and records
    /// every outcome in the claim's transaction.
    pub async fn send_due(&self) -> Result<Round, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let due = db::claim_due(&mut tx, self.emails_per_commit).await?;
        if due.is_empty() {
            // Another sender took them: nothing to record, no commit to pay.
            tx.rollback().await?;
            return Ok(Round::default());
        }
        let mut round = Round {
            claimed: due.len(),
            ..Round::default()
        };
        // What the referents asked for (issue 22): some wait for a digest or the end of
        // their quiet hours, some are not wanted at all.
        let (due, held) = self.decide(due);
        db::digests::record_held(&mut tx, &held).await?;
        let mut sent = Vec::new();
        let mut failed = Vec::new();
        // The round's emails go at once, over as many connections as the SMTP pool holds;
        // one that panics fails alone.
        let outcomes = join_all(
            due.iter()
                .map(|row| guard_delivery(row, self.send(row, Sending::First))),
        )
        .await;
        for outcome in outcomes {
            match outcome {
                Ok(email) => sent.push(email),
                Err(failure) => {
                    if let AfterFailure::RetryAfter(delay) = failure.then {
                        round.retry_in = Some(round.retry_in.map_or(delay, |d| d.min(delay)));
                    }
                    failed.push(failure);
                }
            }
        }
        round.sent = sent.len();
        db::record_sent(&mut tx, &sent).await?;
        db::record_failed(&mut tx, &failed).await?;
        // A permanent refusal is a bounce (CONTRACT D3): recorded, and its fallback
        // follows, in the round's transaction.
        for (failure, bounce) in failed.iter().filter_map(|f| refusal(f).map(|b| (f, b))) {
            record_bounce(
                &mut tx,
                &self.fallback,
                failure.notification_id,
                &failure.email,
                &bounce,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(round)
    }

    /// Splits claimed deliveries into those to send now and those the referents'
    /// preferences hold. A row whose kind the hub does not know goes now (and fails to
    /// render, held dead): preferences never hide a defect.
    fn decide(&self, due: Vec<DueDelivery>) -> (Vec<DueDelivery>, Vec<Held>) {
        let now = self.clock.now();
        let mut send = Vec::with_capacity(due.len());
        let mut held = Vec::new();
        for row in due {
            let Some(kind) = NotificationKind::parse(&row.kind) else {
                send.push(row);
                continue;
            };
            // Most referents set nothing: no parsing on the hot path.
            if row
                .preferences
                .as_object()
                .is_none_or(serde_json::Map::is_empty)
            {
                send.push(row);
                continue;
            }
            let prefs = Preferences::from_stored(&row.preferences);
            if prefs.is_default() {
                send.push(row);
                continue;
            }
            let item = Item {
                kind,
                urgent: row.urgent,
                pec: row.channel == "pec",
                out_of_digest: row.out_of_digest,
            };
            match preferences::decide(&prefs, item, now) {
                Decision::Send => send.push(row),
                Decision::Digest { until } => held.push(Held::Digested {
                    notification_id: row.notification_id,
                    email: row.email,
                    until,
                }),
                Decision::Defer { until } => held.push(Held::Deferred {
                    notification_id: row.notification_id,
                    email: row.email,
                    until,
                }),
                Decision::Suppress => held.push(Held::Suppressed {
                    notification_id: row.notification_id,
                    email: row.email,
                }),
            }
        }
        (send, held)
    }

    /// What follows a failure of attempt `attempts + 1`.
    pub(crate) fn after_failure(&self, transient: bool, attempts: i32) -> AfterFailure {
        let attempt = u32::try_from(attempts).unwrap_or(0).saturating_add(1);
        if !transient {
            AfterFailure::Hold(HeldIn::Dead)
        } else if attempt >= self.retry.max_attempts {
            AfterFailure::Hold(HeldIn::Parked)
        } else {
            AfterFailure::RetryAfter(self.retry.delay(attempt))
        }
    }
}

/// The reason of a delivery whose building or sending panicked. A defect of the hub, and
/// nothing of the email: no address, name or payload (CONTRACT §6, C1).
pub const PANICKED: &str = "the mailer panicked building or sending this email (a defect of \
    the hub, please report it); held until an operator replays it";

/// Runs `send`, one delivery's building and sending: a panic there fails that delivery
/// alone — held dead with [`PANICKED`] as its reason — instead of the round, the sender
/// and every email after it.
async fn guard_delivery(
    row: &DueDelivery,
    send: impl Future<Output = Result<SentEmail, FailedEmail>>,
) -> Result<SentEmail, FailedEmail> {
    match AssertUnwindSafe(send).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(_) => {
            metrics::counter!("raccordo_emails_failed_total", "kind" => row.kind.clone(), "cause" => "panic")
                .increment(1);
            tracing::error!(
                notification = %row.notification_id,
                referent = row.referent_id,
                "Building or sending an email panicked; the delivery is held dead."
            );
            Err(FailedEmail {
                notification_id: row.notification_id,
                email: row.email.clone(),
                error: PANICKED.to_owned(),
                message_id: None,
                then: AfterFailure::Hold(HeldIn::Dead),
            })
        }
    }
}

/// Runs `senders` senders until `token` is cancelled: each sends while work is due, then
/// waits for `woken` to move (a NOTIFY of a commit, see [`db::listen_outbox`]), its
/// soonest retry, or `poll` (a NOTIFY missed while the listener reconnected, another
/// replica's retries). A sender finishes its round before it stops (CONTRACT F4). Each is
/// registered in `health` (`mailer-sender-N`) and supervised: one that ends or panics is
/// reported stopped (`/readyz` 503) and started again after a growing pause.
pub async fn run_mailer<R: Rounds>(
    mailer: Arc<R>,
    senders: u16,
    woken: watch::Receiver<u64>,
    poll: Duration,
    health: Health,
    token: CancellationToken,
) {
    let tracker = TaskTracker::new();
    for index in 0..senders.max(1) {
        let name = format!("mailer-sender-{index}");
        health.expect(&name);
        tracker.spawn(supervise_sender(
            mailer.clone(),
            name,
            woken.clone(),
            poll,
            health.clone(),
            token.clone(),
        ));
    }
    tracker.close();
    tracker.wait().await;
    tracing::info!("Mailer stopped.");
}

/// The first pause before a stopped sender starts again; it doubles up to
/// [`RESTART_PAUSE_MAX`], and is back to this after a sender ran that long without stopping.
pub const RESTART_PAUSE_MIN: Duration = Duration::from_secs(1);
/// The longest pause before a stopped sender starts again.
pub const RESTART_PAUSE_MAX: Duration = Duration::from_secs(30);

/// Keeps one sender running until `token` is cancelled.
async fn supervise_sender<R: Rounds>(
    mailer: Arc<R>,
    name: String,
    woken: watch::Receiver<u64>,
    poll: Duration,
    health: Health,
    token: CancellationToken,
) {
    let mut pause = RESTART_PAUSE_MIN;
    loop {
        let started = Instant::now();
        let sender = run_sender(mailer.as_ref(), &name, woken.clone(), poll, &health, &token);
        let ended = AssertUnwindSafe(sender).catch_unwind().await;
        if token.is_cancelled() {
            break;
        }
        // Only cancellation ends a sender: anything else is a defect, which an operator
        // must hear of, and the mail must not wait for.
        health.set_state(&name, ConsumerState::Stopped);
        metrics::counter!("raccordo_sender_restarts_total", "worker" => "mailer").increment(1);
        if started.elapsed() >= RESTART_PAUSE_MAX {
            pause = RESTART_PAUSE_MIN;
        }
        match ended {
            Ok(()) => {
                tracing::error!(sender = %name, restart_in = ?pause, "A mail sender ended; restarting it.");
            }
            Err(panic) => {
                let cause = panic_text(panic.as_ref());
                tracing::error!(sender = %name, error = %cause, restart_in = ?pause, "A mail sender panicked; restarting it.");
            }
        }
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(RESTART_PAUSE_MAX);
    }
}

/// The message of a caught panic, for the log (the hub's panics hold no email data).
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown cause".to_owned());
    text.chars().take(300).collect()
}

/// How long a woken sender waits before claiming: a few more commits' rows for the same
/// round, one commit of the mailer's for several of the workers'.
const LINGER: Duration = Duration::from_millis(2);

async fn run_sender<R: Rounds>(
    mailer: &R,
    name: &str,
    mut woken: watch::Receiver<u64>,
    poll: Duration,
    health: &Health,
    token: &CancellationToken,
) {
    let mut retry_at: Option<Instant> = None;
    while !token.is_cancelled() {
        woken.borrow_and_update();
        let wait = match mailer.send_due().await {
            Ok(round) => {
                health.set_state(name, ConsumerState::Consuming);
                // A delay too long for the clock (retry.max_delay_ms) leaves it to the poll.
                if let Some(at) = round.retry_in.and_then(|d| Instant::now().checked_add(d)) {
                    retry_at = Some(retry_at.map_or(at, |r| r.min(at)));
                }
                if round.claimed >= mailer.round_size() {
                    continue;
                }
                let until_retry = retry_at.map(|r| r.saturating_duration_since(Instant::now()));
                if until_retry == Some(Duration::ZERO) {
                    retry_at = None;
                    continue;
                }
                until_retry.map_or(poll, |d| d.min(poll))
            }
            Err(error) => {
                // Nothing was recorded: the claimed rows are due again, and an email the
                // server accepted goes again with its Message-ID.
                health.set_state(name, ConsumerState::PausedDatabaseDown);
                tracing::warn!(error = %error, "Mailer could not record its round; retrying.");
                poll
            }
        };
        tokio::select! {
            _ = token.cancelled() => break,
            changed = woken.changed() => {
                // Commits come in bursts: a moment's wait lets one round take several. A
                // listener gone (the process stopping) leaves the poll.
                tokio::time::sleep(if changed.is_ok() { LINGER } else { wait }).await;
            }
            _ = tokio::time::sleep(wait) => {
                if retry_at.is_some_and(|r| r <= Instant::now()) {
                    retry_at = None;
                }
            }
        }
    }
}

/// Why a message on `{prefix}.mailer` cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("not a notification message")]
    NotANotification(#[source] serde_json::Error),
    #[error("notification {0} is not in the database")]
    UnknownNotification(uuid::Uuid),
}

/// The handler of `{prefix}.mailer`: a held notification replayed by an operator has its
/// held deliveries made due again; the senders are woken at commit.
pub struct ReplayHandler {
    pool: PgPool,
}

impl ReplayHandler {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl Handler for ReplayHandler {
    async fn handle(&self, message: &Message) -> Result<Outcome, HandleError> {
        let n: NotificationMessage = serde_json::from_slice(&message.body)
            .map_err(|e| HandleError::Unprocessable(Box::new(ReplayError::NotANotification(e))))?;
        message.span.record("type", n.kind.as_str());
        let mut conn = self.pool.acquire().await?;
        if db::load_notification(&mut conn, n.id).await?.is_none() {
            return Err(HandleError::Unprocessable(Box::new(
                ReplayError::UnknownNotification(n.id),
            )));
        }
        let released = db::release_held(&mut conn, n.id).await?;
        tracing::info!(notification = %n.id, released, "Held deliveries due again.");
        Ok(if released == 0 {
            Outcome::Duplicate
        } else {
            Outcome::Processed
        })
    }
}

impl Mailer {
    /// Renders and sends one recipient's email; the caller records the outcome.
    async fn send(&self, row: &DueDelivery, sending: Sending) -> Result<SentEmail, FailedEmail> {
        let notification_id = row.notification_id;
        let kind = row.kind.as_str();
        let rendered = self.render(row)?;
        let subject = subject_of(rendered.subject, row.urgent, sending);
        let message_id = sending.message_id(notification_id, &row.email, &self.message_id_domain);
        let outgoing = OutgoingEmail {
            from: self.from.clone(),
            to: row.email.clone(),
            to_name: row.name.clone(),
            subject,
            text: rendered.text,
            html: rendered.html,
            kind: kind.to_owned(),
            notification_id,
            message_id: message_id.clone(),
            urgent: row.urgent,
            reminder: sending == Sending::Reminder,
            list_unsubscribe: self.unsubscribe_link(row),
            digest: false,
        };
        let started = Instant::now();
        let result = match (row.channel.as_str(), &self.pec) {
            ("pec", Some(pec)) => pec.send(&outgoing).await,
            // A PEC delivery decided by a process configured for PEC, met by one that is
            // not: it waits, and the operator hears of it, rather than go as plain email.
            ("pec", None) => Err(crate::SendError::NoPecServer),
            _ => self.transport.send(&outgoing).await,
        };
        metrics::histogram!("raccordo_email_send_seconds").record(started.elapsed().as_secs_f64());
        match result {
            Ok(delivered) => {
                metrics::counter!("raccordo_emails_sent_total", "kind" => kind.to_owned())
                    .increment(1);
                // A PEC is delivered by its receipt, observed by the receipts' reader.
                if sending == Sending::First && row.channel == "email" {
                    raccordo_core::delivery_metrics::observe_delivered(
                        kind,
                        "email",
                        row.created_at,
                        time::OffsetDateTime::now_utc(),
                    );
                }
                tracing::debug!(notification = %notification_id, referent = row.referent_id, "Email sent.");
                Ok(SentEmail {
                    notification_id,
                    email: row.email.clone(),
                    response: delivered.response,
                    message_id,
                })
            }
            Err(error) => {
                let transient = error.is_transient();
                // The server's own reply says why; an address it may echo is left out of
                // what operators list.
                let text = without_addresses(&chain(&error));
                let then = self.after_failure(transient, row.attempts);
                let cause = if transient { "transient" } else { "permanent" };
                metrics::counter!("raccordo_emails_failed_total", "kind" => kind.to_owned(), "cause" => cause)
                    .increment(1);
                if matches!(then, AfterFailure::RetryAfter(_)) {
                    metrics::counter!("raccordo_messages_retried_total", "worker" => "mailer")
                        .increment(1);
                }
                tracing::warn!(notification = %notification_id, referent = row.referent_id, error = %text, cause, then = ?then, "Email not sent.");
                Err(FailedEmail {
                    notification_id,
                    email: row.email.clone(),
                    error: text,
                    message_id: Some(message_id),
                    then,
                })
            }
        }
    }
}

/// The subject as sent: `[PROMEMORIA]` for a reminder, after `[URGENTE]` for an urgent
/// notification (CONTRACT §11).
fn subject_of(rendered: String, urgent: bool, sending: Sending) -> String {
    let subject = match sending {
        Sending::First => rendered,
        Sending::Reminder => format!("[PROMEMORIA] {rendered}"),
    };
    if urgent && !subject.starts_with("[URGENTE]") {
        format!("[URGENTE] {subject}")
    } else {
        subject
    }
}

impl Sending {
    /// The `Message-ID` of this email: the delivery's, or its reminder's own.
    fn message_id(self, notification_id: uuid::Uuid, email: &str, domain: &str) -> String {
        match self {
            Sending::First => message_id_for(notification_id, email, domain),
            Sending::Reminder => reminder_message_id_for(notification_id, email, domain),
        }
    }
}

impl Mailer {
    /// Renders `row`'s email, with its acknowledgement link where its kind has one. A
    /// template or payload fault is not worth a retry: held in `{prefix}.dead`.
    fn render(&self, row: &DueDelivery) -> Result<crate::Rendered, FailedEmail> {
        let kind = row.kind.as_str();
        let recipient = RecipientContext {
            name: row.name.clone(),
            institution: row.institution.clone(),
            role: row.role.clone(),
        };
        let ack_url = self.ack_link(row);
        let preferences_url = self
            .preference_links
            .as_ref()
            .map(|links| links.page_url(&row.referent_id, self.clock.now()));
        render_with_links(
            kind,
            row.notification_id,
            &row.payload,
            &recipient,
            ack_url.as_deref(),
            preferences_url.as_deref(),
        )
        .map_err(|e| {
            metrics::counter!("raccordo_emails_failed_total", "kind" => kind.to_owned(), "cause" => "render")
                .increment(1);
            FailedEmail {
                notification_id: row.notification_id,
                email: row.email.clone(),
                error: format!("cannot render {kind}: {}", chain(&e)),
                message_id: None,
                then: AfterFailure::Hold(HeldIn::Dead),
            }
        })
    }

    /// The one-click unsubscribe of `row`'s kind, for the kinds a referent may turn off.
    fn unsubscribe_link(&self, row: &DueDelivery) -> Option<String> {
        let links = self.preference_links.as_ref()?;
        let kind = NotificationKind::parse(&row.kind)?;
        preferences::is_optional(kind)
            .then(|| links.unsubscribe_url(&row.referent_id, kind, self.clock.now()))
    }

    /// The acknowledgement link of `row`, for the kinds a person must act on.
    fn ack_link(&self, row: &DueDelivery) -> Option<String> {
        let links = self.ack_links.as_ref()?;
        let kind = NotificationKind::parse(&row.kind)?;
        kind.needs_acknowledgement().then(|| {
            links.link(
                row.notification_id,
                &row.email,
                time::OffsetDateTime::now_utc(),
            )
        })
    }
}

/// The bounce of a delivery the server refused for good. Only a refusal carries the
/// Message-ID it was sent with and is held dead: a render fault or a panic has none.
fn refusal(failure: &FailedEmail) -> Option<Bounce> {
    if failure.message_id.is_none() || failure.then != AfterFailure::Hold(HeldIn::Dead) {
        return None;
    }
    Some(Bounce {
        status: refusal_status(&failure.error),
        diagnostic: Some(failure.error.chars().take(300).collect()),
        source: "smtp",
    })
}

/// The enhanced status of a refusal (`5.1.1`), else its reply code (`550`), else `5.0.0`.
fn refusal_status(text: &str) -> String {
    let enhanced = text.split_whitespace().find(|w| {
        let parts: Vec<&str> = w.split('.').collect();
        parts.len() == 3
            && parts[0] == "5"
            && parts[1..]
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
    });
    if let Some(status) = enhanced {
        return status.to_owned();
    }
    text.split(|c: char| !c.is_ascii_digit())
        .find(|n| n.len() == 3 && n.starts_with('5'))
        .map_or_else(|| "5.0.0".to_owned(), str::to_owned)
}

/// An error and its sources, for a reason an operator can act on.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `text` with every word holding an `@` replaced, so that no address reaches a reason.
pub(crate) fn without_addresses(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            if word.contains('@') {
                "<indirizzo>"
            } else {
                word
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due() -> DueDelivery {
        DueDelivery {
            notification_id: uuid::Uuid::from_u128(7),
            kind: "housing.offered".into(),
            payload: serde_json::Value::Null,
            urgent: false,
            email: "ufficio@comune.example".into(),
            referent_id: "r1".into(),
            name: Some("Mario\r\nRossi".into()),
            institution: "Comune".into(),
            role: "comune".into(),
            attempts: 0,
            channel: "email".into(),
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            preferences: serde_json::json!({}),
            out_of_digest: false,
        }
    }

    #[tokio::test]
    async fn a_panic_sending_one_email_fails_that_delivery_alone_without_personal_data() {
        let row = due();
        let sent = |email: &str| SentEmail {
            notification_id: row.notification_id,
            email: email.to_owned(),
            response: "250 ok".into(),
            message_id: "<a@b>".into(),
        };
        let panicking = async {
            let _ = sent("x");
            panic!("a Display implementation returned an error unexpectedly");
        };

        let outcomes = join_all([
            guard_delivery(&row, panicking.boxed()),
            guard_delivery(&row, async { Ok(sent("altro@comune.example")) }.boxed()),
        ])
        .await;

        let failed = outcomes[0].as_ref().err().expect("the panic is a failure");
        assert_eq!(failed.error, PANICKED);
        assert_eq!(failed.then, AfterFailure::Hold(HeldIn::Dead));
        assert!(!failed.error.contains('@') && !failed.error.contains("Mario"));
        let other = outcomes[1].as_ref().ok().expect("the other email goes on");
        assert_eq!(other.email, "altro@comune.example");
    }

    #[test]
    fn a_refusal_is_a_bounce_with_its_status_and_a_render_fault_is_not() {
        let failure = |message_id: Option<&str>, then, error: &str| FailedEmail {
            notification_id: uuid::Uuid::from_u128(1),
            email: "a@b.example".into(),
            error: error.into(),
            message_id: message_id.map(str::to_owned),
            then,
        };
        let dead = AfterFailure::Hold(HeldIn::Dead);

        let refused = refusal(&failure(
            Some("<m@h>"),
            dead,
            "permanent error (550): 5.1.1 Mailbox unavailable",
        ))
        .expect("a bounce");
        assert_eq!(refused.status, "5.1.1");
        assert_eq!(refused.source, "smtp");
        let bare = refusal(&failure(
            Some("<m@h>"),
            dead,
            "permanent error (554): rejected",
        ))
        .expect("a bounce");
        assert_eq!(bare.status, "554");
        assert!(refusal(&failure(None, dead, "cannot render housing.offered")).is_none());
        let parked = AfterFailure::Hold(HeldIn::Parked);
        assert!(refusal(&failure(Some("<m@h>"), parked, "timed out")).is_none());
    }

    #[test]
    fn reasons_keep_the_servers_reply_and_drop_addresses() {
        assert_eq!(
            without_addresses(
                "permanent error (550): 5.1.1 <ufficio@comune.milano.it>: no such user"
            ),
            "permanent error (550): 5.1.1 <indirizzo> no such user"
        );
        assert_eq!(without_addresses("timed out"), "timed out");
    }
}
