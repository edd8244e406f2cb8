//! The PEC receipts reader (CONTRACT D2): reads `mail.pec_imap_url` (IDLE where offered,
//! polling otherwise), one replica at a time, matches each receipt to its delivery by
//! `X-Riferimento-Message-ID`, and records what it proves on the delivery's timeline; a
//! PEC delivery with no delivery receipt within `mail.pec_receipt_hours` failed.
//!
//! The state machine, per PEC delivery (after `sent`):
//!
//! | receipt | recorded | unless the timeline already has |
//! |---|---|---|
//! | `accettazione` | `pec_accepted` | a PEC event |
//! | `avvenuta-consegna` | `pec_delivered` | `pec_delivered` |
//! | `non-accettazione`, `errore-consegna`, `preavviso-errore-consegna`, `rilevazione-virus` | `pec_not_delivered` | `pec_delivered` or `pec_not_delivered` |
//! | `presa-in-carico` | nothing (between providers) | |
//! | none within `pec_receipt_hours` | `pec_not_delivered` (`reason: timeout`) | `pec_delivered` or `pec_not_delivered` |
//!
//! Only `avvenuta-consegna` makes a PEC delivery delivered; one arriving after a failure
//! was recorded is still recorded (it is a legal fact), and changes the state.
//!
//! A message that is not a receipt, does not agree with its own `daticert.xml`, names no
//! PEC delivery of the hub, or names another recipient than the delivery's changes nothing:
//! it is counted (`raccordo_pec_receipts_total{outcome="refused"|"unmatched"}`), logged
//! without addresses, and marked handled.

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use raccordo_core::db::evidence::{DeliveryEvent, Evidence, record};
use raccordo_core::fallback::{FallbackPolicy, fall_back};
use raccordo_core::settings::Settings;

use crate::daticert::ReceiptType;
use crate::imap::{ImapUrl, Mailbox};
use crate::lock::ReaderLock;
use crate::receipt::{self, MAX_RECEIPT_BYTES, Receipt};

/// The advisory lock of the PEC reader.
pub const LOCK_NAME: &str = "raccordo.pec_receipts";
/// The longest wait between two looks at the mailbox and the clock (CONTRACT §11: clocks
/// checked at least every 5 seconds).
pub const CHECK_EVERY: Duration = Duration::from_secs(5);
/// Messages handled per round.
const BATCH: usize = 200;

/// What one message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Recorded on a delivery's timeline.
    Recorded(DeliveryEvent),
    /// Already on the timeline (the same receipt again, or a state already past it).
    Duplicate,
    /// A receipt type that changes nothing for the sender (`presa-in-carico`).
    Ignored,
    /// Names no PEC delivery of the hub.
    Unmatched,
    /// Not a receipt, or one that contradicts itself or its delivery.
    Refused(String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Recorded(_) => "recorded",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored => "ignored",
            Outcome::Unmatched => "unmatched",
            Outcome::Refused(_) => "refused",
        }
    }
}

/// `text` with every word holding an `@` replaced: a provider's error may echo addresses.
fn without_addresses(text: &str) -> String {
    text.split_whitespace()
        .map(|w| if w.contains('@') { "<indirizzo>" } else { w })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the timeline keeps of a receipt: its type and certificate, never an address.
fn receipt_details(receipt: &Receipt) -> Value {
    let cert = &receipt.cert;
    json!({
        "receipt": {
            "type": receipt.kind.as_str(),
            "identificativo": without_addresses(&cert.identificativo),
            "gestore": cert.gestore,
            "data": cert.data,
            "errore": cert.errore,
            "errore_esteso": cert.errore_esteso.as_deref().map(without_addresses),
        }
    })
}

/// Whether a receipt about a recipient (delivery, its errors, a virus) names the delivery's
/// address; the provider's own receipts (acceptance) name none.
fn about_the_delivery(receipt: &Receipt, address: &str) -> bool {
    let about_recipient = !matches!(
        receipt.kind,
        ReceiptType::Accettazione | ReceiptType::NonAccettazione | ReceiptType::PresaInCarico
    );
    !about_recipient
        || receipt
            .cert
            .consegna
            .as_deref()
            .into_iter()
            .chain(receipt.cert.destinatari.iter().map(String::as_str))
            .any(|a| a.trim().eq_ignore_ascii_case(address))
}

/// Time to delivery by PEC (D6): from the decision to the delivery receipt.
async fn observe_delivered(conn: &mut PgConnection, notification: Uuid) -> Result<(), sqlx::Error> {
    let decided: Option<(String, time::OffsetDateTime)> =
        sqlx::query_as("SELECT kind, created_at FROM notifications WHERE id = $1")
            .bind(notification)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some((kind, created_at)) = decided {
        raccordo_core::delivery_metrics::observe_delivered(
            &kind,
            "pec",
            created_at,
            time::OffsetDateTime::now_utc(),
        );
    }
    Ok(())
}

/// Applies one raw message: reads it as a receipt and records what it proves, in `conn`'s
/// transaction (the caller commits, then marks the message handled).
///
/// # Errors
/// Database errors only; everything wrong with the message is an [`Outcome`].
pub async fn apply(
    conn: &mut PgConnection,
    policy: &FallbackPolicy,
    raw: &[u8],
) -> Result<Outcome, sqlx::Error> {
    let receipt = match receipt::read(raw) {
        Ok(receipt) => receipt,
        Err(error) => return Ok(Outcome::Refused(error.to_string())),
    };
    let delivery: Option<(Uuid, String)> = sqlx::query_as(
        r#"
        SELECT notification_id, email
        FROM deliveries
        WHERE message_id = $1
          AND channel = 'pec'
        FOR UPDATE
        "#,
    )
    .bind(&receipt.reference)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((notification_id, address)) = delivery else {
        return Ok(Outcome::Unmatched);
    };
    if !about_the_delivery(&receipt, &address) {
        return Ok(Outcome::Refused(
            "the receipt is about another recipient than the delivery's".into(),
        ));
    }
    let event = match receipt.kind {
        ReceiptType::PresaInCarico => return Ok(Outcome::Ignored),
        ReceiptType::Accettazione => DeliveryEvent::PecAccepted,
        ReceiptType::AvvenutaConsegna => DeliveryEvent::PecDelivered,
        ReceiptType::NonAccettazione
        | ReceiptType::ErroreConsegna
        | ReceiptType::PreavvisoErroreConsegna
        | ReceiptType::RilevazioneVirus => DeliveryEvent::PecNotDelivered,
    };
    let blocking: &[&str] = match event {
        DeliveryEvent::PecAccepted => &["pec_accepted", "pec_delivered", "pec_not_delivered"],
        DeliveryEvent::PecDelivered => &["pec_delivered"],
        _ => &["pec_delivered", "pec_not_delivered"],
    };
    let already: bool = sqlx::query_scalar(
        r#"
        SELECT EXISTS (
            SELECT 1
            FROM delivery_events
            WHERE notification_id = $1
              AND recipient = $2
              AND event = ANY($3)
        )
        "#,
    )
    .bind(notification_id)
    .bind(&address)
    .bind(blocking)
    .fetch_one(&mut *conn)
    .await?;
    if already {
        return Ok(Outcome::Duplicate);
    }
    let evidence = Evidence {
        notification_id,
        recipient: address,
        event,
        details: receipt_details(&receipt),
    };
    record(conn, std::slice::from_ref(&evidence)).await?;
    if event == DeliveryEvent::PecDelivered {
        observe_delivered(conn, evidence.notification_id).await?;
    }
    if event == DeliveryEvent::PecNotDelivered {
        // D3: the referent's email, then for act-on kinds its deputies, in this transaction.
        fall_back(conn, policy, evidence.notification_id, &evidence.recipient).await?;
    }
    Ok(Outcome::Recorded(event))
}

/// Records `pec_not_delivered` (`reason: timeout`) for PEC deliveries sent more than
/// `timeout` ago without a delivery receipt or a failure. Returns how many.
///
/// # Errors
/// Database errors.
pub async fn fail_overdue(
    conn: &mut PgConnection,
    policy: &FallbackPolicy,
    timeout: Duration,
) -> Result<u64, sqlx::Error> {
    let overdue: Vec<(Uuid, String)> = sqlx::query_as(
        r#"
        SELECT d.notification_id, d.email
        FROM deliveries d
        WHERE d.channel = 'pec'
          AND d.delivered_at IS NOT NULL
          AND d.delivered_at < now() - make_interval(secs => $1)
          AND d.state NOT IN ('pec_delivered', 'pec_not_delivered', 'cancelled')
          AND NOT EXISTS (
                SELECT 1
                FROM delivery_events e
                WHERE e.notification_id = d.notification_id
                  AND e.recipient = d.email
                  AND e.event IN ('pec_delivered', 'pec_not_delivered')
          )
        ORDER BY d.delivered_at
        LIMIT 500
        FOR UPDATE OF d SKIP LOCKED
        "#,
    )
    .bind(timeout.as_secs_f64())
    .fetch_all(&mut *conn)
    .await?;
    if overdue.is_empty() {
        return Ok(0);
    }
    let hours = timeout.as_secs_f64() / 3600.0;
    let evidence: Vec<Evidence> = overdue
        .into_iter()
        .map(|(id, address)| {
            Evidence::new(id, address, DeliveryEvent::PecNotDelivered)
                .with("reason", "timeout")
                .with("receipt_hours", hours)
        })
        .collect();
    let recorded = record(conn, &evidence).await?;
    for failed in &evidence {
        fall_back(conn, policy, failed.notification_id, &failed.recipient).await?;
    }
    Ok(recorded)
}

/// The reader's set-up, from the settings.
#[derive(Debug, Clone)]
pub struct PecReader {
    pool: PgPool,
    settings: Arc<Settings>,
    mailbox: Option<ImapUrl>,
    timeout: Duration,
}

/// Why the reader cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PecConfigError {
    #[error("mail.pec_imap_url: {0}")]
    Url(#[from] crate::imap::ImapUrlError),
    #[error(
        "mail.pec_imap_url reaches {0} without TLS, and {0} is not this machine: use imaps://HOST:993/MAILBOX or imap://HOST:143/MAILBOX?tls=required, {hint}",
        hint = raccordo_core::tls::ALLOW_PLAINTEXT_HINT
    )]
    Plaintext(String),
}

impl PecReader {
    /// What a PEC failure falls back to (D3): the stand-ins get PEC for the PEC kinds.
    fn policy(&self) -> FallbackPolicy {
        FallbackPolicy::from_mail(&self.settings.mail)
    }

    /// The reader for `settings`; `None` when PEC is off (no `mail.pec_smtp_url`).
    ///
    /// # Errors
    /// A `mail.pec_imap_url` that cannot be used.
    pub fn from_settings(
        pool: PgPool,
        settings: Arc<Settings>,
    ) -> Result<Option<Self>, PecConfigError> {
        let text = settings.mail.pec_imap_url.expose_secret().trim().to_owned();
        let mailbox = if text.is_empty() {
            None
        } else {
            let url = ImapUrl::parse(&text)?;
            if let Some(host) = url.in_clear_off_loopback()
                && !settings.security.allow_plaintext
            {
                return Err(PecConfigError::Plaintext(host.to_owned()));
            }
            Some(url)
        };
        if !settings.mail.pec_enabled() && mailbox.is_none() {
            return Ok(None);
        }
        let timeout = settings.mail.pec_receipt_timeout();
        Ok(Some(Self {
            pool,
            settings,
            mailbox,
            timeout,
        }))
    }

    /// Runs until `token` is cancelled: takes the lock when no other replica holds it,
    /// then reads receipts and checks the clock at least every [`CHECK_EVERY`].
    pub async fn run(self, token: CancellationToken) {
        let mut pause = Duration::from_millis(200);
        while !token.is_cancelled() {
            match ReaderLock::try_take(&self.settings.database, LOCK_NAME).await {
                Ok(Some(lock)) => {
                    tracing::info!("PEC receipts reader started.");
                    let ended = self.read_while_locked(lock, &token).await;
                    if let Err(error) = ended {
                        tracing::warn!(error = %error, "PEC receipts reader interrupted; retrying.");
                        pause = (pause * 2).min(CHECK_EVERY);
                    } else {
                        pause = Duration::from_millis(200);
                    }
                }
                Ok(None) => pause = CHECK_EVERY,
                Err(error) => {
                    tracing::warn!(error = %error, "PEC receipts reader cannot reach the database; retrying.");
                    pause = CHECK_EVERY;
                }
            }
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn read_while_locked(
        &self,
        mut lock: ReaderLock,
        token: &CancellationToken,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut mailbox = match &self.mailbox {
            Some(url) => Some(Mailbox::open(url, Duration::from_secs(30)).await?),
            None => None,
        };
        let result = async {
            while !token.is_cancelled() {
                if !lock.held().await {
                    return Err("the reader's lock connection was lost".into());
                }
                let mut full = false;
                if let Some(mailbox) = mailbox.as_mut() {
                    full = read_round(&self.pool, &self.policy(), mailbox).await? >= BATCH;
                }
                let mut conn = self.pool.begin().await?;
                let failed = fail_overdue(&mut conn, &self.policy(), self.timeout).await?;
                conn.commit().await?;
                if failed > 0 {
                    metrics::counter!("raccordo_pec_timeouts_total").increment(failed);
                    tracing::info!(failed, "PEC deliveries without a delivery receipt in time.");
                }
                if full {
                    continue;
                }
                match mailbox.as_mut() {
                    Some(mailbox) => mailbox.wait(CHECK_EVERY, token).await?,
                    None => {
                        tokio::select! {
                            _ = token.cancelled() => {}
                            _ = tokio::time::sleep(CHECK_EVERY) => {}
                        }
                    }
                }
            }
            Ok(())
        }
        .await;
        if let Some(mailbox) = mailbox {
            mailbox.close().await;
        }
        lock.release().await;
        result
    }
}

/// Handles the unseen messages of one round of the mailbox, in one transaction, then marks
/// them handled; returns how many. The reader's round, and the bench's.
///
/// # Errors
/// IMAP or database errors: nothing of the round is marked handled.
pub async fn read_round(
    pool: &PgPool,
    policy: &FallbackPolicy,
    mailbox: &mut Mailbox,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    let fetched = mailbox.unseen(BATCH, MAX_RECEIPT_BYTES).await?;
    if fetched.is_empty() {
        return Ok(0);
    }
    let mut tx = pool.begin().await?;
    let mut outcomes = Vec::with_capacity(fetched.len());
    for message in &fetched {
        let outcome = match &message.raw {
            Some(raw) => apply(&mut tx, policy, raw).await?,
            None => Outcome::Refused(format!("larger than {MAX_RECEIPT_BYTES} bytes")),
        };
        outcomes.push(outcome);
    }
    tx.commit().await?;
    // Marked after the commit: a crash in between reads them again, which records
    // nothing twice.
    let uids: Vec<u32> = fetched.iter().map(|m| m.uid).collect();
    mailbox.mark_handled(&uids).await?;
    for outcome in &outcomes {
        metrics::counter!("raccordo_pec_receipts_total", "outcome" => outcome.label()).increment(1);
        match outcome {
            Outcome::Refused(reason) => {
                tracing::warn!(reason = %reason, "A message in the PEC mailbox was not taken as a receipt.");
            }
            Outcome::Unmatched => {
                tracing::warn!("A PEC receipt names no PEC delivery of the hub; ignored.");
            }
            Outcome::Recorded(event) => {
                tracing::debug!(event = %event, "PEC receipt recorded.");
            }
            Outcome::Duplicate | Outcome::Ignored => {}
        }
    }
    Ok(fetched.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_errors_lose_their_addresses() {
        assert_eq!(
            without_addresses("5.1.1 <protocollo@pec.comune.example> casella inesistente"),
            "5.1.1 <indirizzo> casella inesistente"
        );
    }
}
