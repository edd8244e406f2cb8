//! Digests (issue 22): once a referent's windows close, its waiting items go in one email.
//!
//! Every process that sends mail runs [`run_digests`]: each pass releases what quiet hours
//! held once they end (alone, to the senders), gathers the items due into
//! digests ([`db::compose_due`]: one per referent and address, each item once, whatever the
//! number of replicas), then sends the digests due, each claimed with `FOR UPDATE SKIP
//! LOCKED` and recorded in the claim's transaction. A process killed while sending one
//! leaves it to the next pass, here or on another replica: sent again whole, with the same
//! `Message-ID` (`<digest-ID@domain>`, CONTRACT F3). A refusal for good, or failures past
//! `retry.max_attempts`, closes the digest and sends its items one by one, where a refusal
//! follows each delivery's fallback (D3).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use raccordo_core::db::AfterFailure;
use raccordo_core::db::digests::{self as db, DigestItem, DueDigest};
use raccordo_core::notification::NotificationKind;

use crate::delivery::{Mailer, chain, without_addresses};
use crate::message::OutgoingEmail;
use crate::templates::{DigestEntry, RecipientContext, render_digest};

/// How often windows are checked for closing.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The `X-Raccordo-Kind` of a digest.
pub const DIGEST_KIND: &str = "digest";

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Deliveries released at the end of quiet hours.
    pub released: u64,
    /// Digests gathered.
    pub composed: usize,
    /// Digests the server accepted.
    pub sent: usize,
    /// Digests closed unsent (emptied, or given up: their items go alone).
    pub closed: usize,
}

/// The `Message-ID` of digest `id`: the same on every resend.
pub fn digest_message_id(id: uuid::Uuid, domain: &str) -> String {
    format!("<digest-{id}@{domain}>")
}

/// One pass: gather what is due at the mailer's clock, then send every digest due.
pub async fn run_pass(mailer: &Mailer) -> Result<Pass, sqlx::Error> {
    let now = mailer.clock.now();
    let mut pass = Pass {
        released: db::release_deferred(&mailer.pool, now).await?,
        ..Pass::default()
    };
    // A referent with more than a digest's worth gets several, one per call.
    for _ in 0..100 {
        let made = db::compose_due(&mailer.pool, now).await?.len();
        pass.composed += made;
        if made == 0 {
            break;
        }
    }
    loop {
        let round = send_due_digests(mailer).await?;
        pass.sent += round.sent;
        pass.closed += round.closed;
        if round.claimed == 0 {
            break;
        }
    }
    Ok(pass)
}

#[derive(Debug, Default)]
struct Round {
    claimed: usize,
    sent: usize,
    closed: usize,
}

/// Claims the digests due (this sender's share), sends each, records every outcome in the
/// claim's transaction.
async fn send_due_digests(mailer: &Mailer) -> Result<Round, sqlx::Error> {
    let mut tx = mailer.pool.begin().await?;
    let due = db::claim_due_digests(&mut tx, mailer.emails_per_commit.max(1)).await?;
    let mut round = Round {
        claimed: due.len(),
        ..Round::default()
    };
    if due.is_empty() {
        tx.rollback().await?;
        return Ok(round);
    }
    for digest in &due {
        let items = db::digest_items(&mut tx, digest.id).await?;
        if items.is_empty() {
            db::close_digest(
                &mut tx,
                digest.id,
                "every item was cancelled before it went",
            )
            .await?;
            round.closed += 1;
            continue;
        }
        match send_one(mailer, digest, &items).await {
            Ok((message_id, reply)) => {
                db::record_digest_sent(&mut tx, digest.id, &message_id, &reply).await?;
                metrics::counter!("raccordo_digests_sent_total").increment(1);
                metrics::counter!("raccordo_digest_items_sent_total").increment(items.len() as u64);
                round.sent += 1;
            }
            Err((error, AfterFailure::RetryAfter(delay))) => {
                db::record_digest_retry(&mut tx, digest.id, &error, delay).await?;
            }
            Err((error, AfterFailure::Hold(_))) => {
                let released = db::close_digest(&mut tx, digest.id, &error).await?;
                tracing::warn!(digest = %digest.id, referent = digest.referent_id, released, error, "Digest given up; its items go one by one.");
                round.closed += 1;
            }
        }
    }
    tx.commit().await?;
    Ok(round)
}

/// Renders and sends one digest; its Message-ID and the server's reply, or why not and
/// what follows.
async fn send_one(
    mailer: &Mailer,
    digest: &DueDigest,
    items: &[DigestItem],
) -> Result<(String, String), (String, AfterFailure)> {
    let now = mailer.clock.now();
    let entries: Vec<DigestEntry> = items
        .iter()
        .map(|item| DigestEntry {
            notification_id: item.notification_id,
            kind: item.kind.clone(),
            payload: item.payload.clone(),
            created_at: item.created_at,
            ack_url: ack_url(mailer, item, &digest.email),
        })
        .collect();
    let first = &items[0];
    let recipient = RecipientContext {
        name: first.name.clone(),
        institution: first.institution.clone(),
        role: first.role.clone(),
    };
    let preferences_url = mailer
        .preference_links
        .as_ref()
        .map(|links| links.page_url(&digest.referent_id, now));
    let rendered = render_digest(digest.id, &recipient, &entries, preferences_url.as_deref())
        .map_err(|e| {
            // A template or payload fault: its items go alone, where each is judged.
            (
                format!("cannot render the digest: {}", chain(&e)),
                AfterFailure::Hold(raccordo_core::db::HeldIn::Dead),
            )
        })?;
    let message_id = digest_message_id(digest.id, &mailer.message_id_domain);
    let outgoing = OutgoingEmail {
        from: mailer.from.clone(),
        to: digest.email.clone(),
        to_name: first.name.clone(),
        subject: rendered.subject,
        text: rendered.text,
        html: rendered.html,
        kind: DIGEST_KIND.to_owned(),
        notification_id: digest.id,
        message_id: message_id.clone(),
        urgent: false,
        reminder: false,
        list_unsubscribe: None,
        digest: true,
    };
    match mailer.transport.send(&outgoing).await {
        Ok(delivered) => Ok((message_id, delivered.response)),
        Err(error) => {
            let text = without_addresses(&chain(&error));
            let then = mailer.after_failure(error.is_transient(), digest.attempts);
            metrics::counter!("raccordo_digests_failed_total").increment(1);
            tracing::warn!(digest = %digest.id, referent = digest.referent_id, error = %text, then = ?then, "Digest not sent.");
            Err((text, then))
        }
    }
}

fn ack_url(mailer: &Mailer, item: &DigestItem, email: &str) -> Option<String> {
    let links = mailer.ack_links.as_ref()?;
    NotificationKind::parse(&item.kind)?
        .needs_acknowledgement()
        .then(|| links.link(item.notification_id, email, time::OffsetDateTime::now_utc()))
}

/// Runs [`run_pass`] every [`CHECK_EVERY`] until `token` is cancelled.
pub async fn run_digests(mailer: Arc<Mailer>, token: CancellationToken) {
    loop {
        match run_pass(&mailer).await {
            Ok(pass) if pass != Pass::default() => tracing::info!(
                released = pass.released,
                composed = pass.composed,
                sent = pass.sent,
                closed = pass.closed,
                "Digests gathered or sent."
            ),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %error, "Could not gather or send digests; will retry.")
            }
        }
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}
