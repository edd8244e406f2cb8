//! The mailer worker: for each notification published on `{prefix}.events`, one email per
//! recipient recorded in the database, each sent at most once.
//!
//! Each recipient's row is locked (`FOR UPDATE SKIP LOCKED`) while its email is sent and
//! marked delivered in the same transaction, so a redelivered notification, a second mailer
//! replica or a restart sends nothing twice. A crash between the server's acceptance and
//! the commit resends — with the same `Message-ID`, so mail systems can tell (CONTRACT F3).

use std::collections::BTreeMap;
use std::time::Instant;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use uuid::Uuid;

use raccordo_core::amqp::{HandleError, Handler, Message, Outcome};
use raccordo_core::db::NotificationMessage;
use raccordo_core::domain::EmailAddress;
use raccordo_core::settings::{MailSettings, MailTransportKind, SettingsError};

use crate::message::{OutgoingEmail, message_id_for};
use crate::outbox_file::FileOutbox;
use crate::smtp::{SmtpConfigError, SmtpOptions, SmtpTransport};
use crate::templates::{RecipientContext, render};
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
            hello_name: None,
        })?),
    })
}

/// The consume-loop handler of `{prefix}.mailer`.
pub struct MailerHandler {
    pool: PgPool,
    transport: Transport,
    from: String,
    message_id_domain: String,
    emails_per_commit: i64,
}

/// The most emails a mailer process killed at any instant may have sent without recording
/// them: they are sent again after a restart, with the same Message-IDs (CONTRACT F3).
pub const MAX_UNRECORDED_EMAILS: usize = 16;

impl MailerHandler {
    /// A mailer sending from `from` (`mail.from`) through `transport`; one of `consumers`
    /// mailer consumers of the process, which share [`MAX_UNRECORDED_EMAILS`]: each sends
    /// its share under one lock and records it in one commit.
    pub fn new(pool: PgPool, transport: Transport, from: &str, consumers: u16) -> Self {
        let domain = EmailAddress::parse_mailbox(from)
            .map(|e| e.domain().to_owned())
            .unwrap_or_else(|_| "raccordo.invalid".to_owned());
        let share = MAX_UNRECORDED_EMAILS / usize::from(consumers.max(1));
        Self {
            pool,
            transport,
            from: from.to_owned(),
            message_id_domain: domain,
            emails_per_commit: i64::try_from(share.max(1)).unwrap_or(1),
        }
    }
}

/// A recipient still waiting for a notification's email, with what the email says.
#[derive(sqlx::FromRow)]
struct Pending {
    notification_id: Uuid,
    kind: String,
    payload: serde_json::Value,
    urgent: bool,
    email: String,
    referent_id: String,
    name: Option<String>,
    institution: String,
    role: String,
}

/// What one recipient's send came to.
enum Sent {
    Delivered {
        email: String,
        response: String,
        message_id: String,
    },
    Failed(Failure),
}

/// A recipient's email that did not go.
struct Failure {
    email: String,
    /// Recorded on the delivery.
    error: String,
    message_id: Option<String>,
    /// Worth a retry (SMTP 4xx, connection); otherwise the recipient is given up.
    transient: bool,
    /// For the consume loop's retry or dead letter.
    reason: String,
}

/// What became of one notification's pending recipients.
#[derive(Default)]
struct Tally {
    sent: usize,
    transient: Vec<String>,
    permanent: Vec<String>,
}

#[async_trait]
impl Handler for MailerHandler {
    async fn handle(&self, message: &Message) -> Result<Outcome, HandleError> {
        self.handle_batch(&[message])
            .await
            .pop()
            .unwrap_or(Err(HandleError::NoResult))
    }

    /// The notifications of the batch are delivered together: their pending recipients are
    /// locked (`FOR UPDATE SKIP LOCKED`) its share of [`MAX_UNRECORDED_EMAILS`] at a time, sent, and marked
    /// delivered in the same transaction, so a redelivery or a second mailer sends nothing
    /// twice.
    async fn handle_batch(&self, messages: &[&Message]) -> Vec<Result<Outcome, HandleError>> {
        let announced: Vec<Result<Uuid, HandleError>> = messages
            .iter()
            .map(|m| {
                let n: NotificationMessage = serde_json::from_slice(&m.body).map_err(|e| {
                    HandleError::Unprocessable(format!("not a notification message: {e}").into())
                })?;
                m.span.record("type", n.kind.as_str());
                Ok(n.id)
            })
            .collect();
        let ids: Vec<Uuid> = announced
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        let tallies = match self.deliver(&ids).await {
            Ok(t) => t,
            Err(error) => {
                // Whatever was committed stays delivered; the rest is retried.
                return announced
                    .into_iter()
                    .map(|r| {
                        r.and_then(|_| {
                            Err(HandleError::Unavailable(
                                format!("database: {error}").into(),
                            ))
                        })
                    })
                    .collect();
            }
        };
        let untouched: Vec<Uuid> = ids
            .iter()
            .filter(|id| !tallies.contains_key(*id))
            .copied()
            .collect();
        let known = match self.undeliverable(&untouched).await {
            Ok(known) => known,
            Err(error) => {
                let error = std::sync::Arc::new(error);
                return announced
                    .into_iter()
                    .map(|r| r.and_then(|_| Err(HandleError::shared(&error))))
                    .collect();
            }
        };
        announced
            .into_iter()
            .map(|r| {
                let id = r?;
                match tallies.get(&id) {
                    // Transient first: a retry then also reaches what a permanent error skipped.
                    Some(t) if !t.transient.is_empty() => {
                        Err(HandleError::Unavailable(t.transient.join("; ").into()))
                    }
                    Some(t) if !t.permanent.is_empty() => {
                        Err(HandleError::Unprocessable(t.permanent.join("; ").into()))
                    }
                    Some(_) => Ok(Outcome::Processed),
                    // Delivered already (or being sent by another mailer), undeliverable, or unknown.
                    None => match known.get(&id) {
                        None => Err(HandleError::Unprocessable(
                            format!("notification {id} is not in the database").into(),
                        )),
                        Some(true) => Ok(Outcome::Processed),
                        Some(false) => Ok(Outcome::Duplicate),
                    },
                }
            })
            .collect()
    }
}

impl MailerHandler {
    /// Sends every pending email of `ids`, its share of [`MAX_UNRECORDED_EMAILS`] per transaction.
    async fn deliver(&self, ids: &[Uuid]) -> Result<BTreeMap<Uuid, Tally>, sqlx::Error> {
        let mut tallies: BTreeMap<Uuid, Tally> = BTreeMap::new();
        if ids.is_empty() {
            return Ok(tallies);
        }
        // Recipients tried in this call: a transient failure stays pending, and must not be
        // tried again before the consume loop's retry delay.
        let mut tried: (Vec<Uuid>, Vec<String>) = (Vec::new(), Vec::new());
        loop {
            let mut tx = self.pool.begin().await?;
            let pending: Vec<Pending> = sqlx::query_as(
                r#"
                SELECT d.notification_id, n.kind, n.payload, n.urgent,
                       d.email, d.referent_id, d.name, d.institution, d.role
                FROM deliveries d
                JOIN notifications n ON n.id = d.notification_id
                WHERE d.notification_id = ANY($1)
                  AND d.delivered_at IS NULL
                  AND d.failed_at IS NULL
                  AND NOT EXISTS (
                        SELECT 1
                        FROM UNNEST($2::UUID[], $3::TEXT[]) AS t (notification_id, email)
                        WHERE t.notification_id = d.notification_id
                          AND t.email = d.email
                  )
                ORDER BY d.notification_id, d.email
                LIMIT $4
                FOR UPDATE OF d SKIP LOCKED
                "#,
            )
            .bind(ids)
            .bind(&tried.0)
            .bind(&tried.1)
            .bind(self.emails_per_commit)
            .fetch_all(&mut *tx)
            .await?;
            if pending.is_empty() {
                tx.commit().await?;
                return Ok(tallies);
            }
            let mut delivered = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut failures = Vec::new();
            for row in &pending {
                tried.0.push(row.notification_id);
                tried.1.push(row.email.clone());
                let tally = tallies.entry(row.notification_id).or_default();
                match self.send(row).await {
                    Sent::Delivered {
                        email,
                        response,
                        message_id,
                    } => {
                        tally.sent += 1;
                        delivered.0.push(row.notification_id);
                        delivered.1.push(email);
                        delivered.2.push(response);
                        delivered.3.push(message_id);
                    }
                    Sent::Failed(failure) => {
                        if failure.transient {
                            tally.transient.push(failure.reason.clone());
                        } else {
                            tally.permanent.push(failure.reason.clone());
                        }
                        failures.push((row.notification_id, failure));
                    }
                }
            }
            if !delivered.0.is_empty() {
                sqlx::query(
                    r#"
                    UPDATE deliveries d
                    SET delivered_at = now(),
                        smtp_response = s.response,
                        message_id = s.message_id,
                        attempts = d.attempts + 1,
                        last_error = NULL
                    FROM UNNEST($1::UUID[], $2::TEXT[], $3::TEXT[], $4::TEXT[])
                        AS s (notification_id, email, response, message_id)
                    WHERE d.notification_id = s.notification_id
                      AND d.email = s.email
                    "#,
                )
                .bind(&delivered.0)
                .bind(&delivered.1)
                .bind(&delivered.2)
                .bind(&delivered.3)
                .execute(&mut *tx)
                .await?;
            }
            // Failures are rare: recorded one by one, in the same commit.
            for (notification_id, f) in &failures {
                record_failure(
                    &mut tx,
                    *notification_id,
                    &f.email,
                    &f.error,
                    f.message_id.as_deref(),
                    f.transient,
                )
                .await?;
            }
            tx.commit().await?;
            if (pending.len() as i64) < self.emails_per_commit {
                return Ok(tallies);
            }
        }
    }

    /// Of notifications with nothing to send: which exist, and whether undeliverable.
    async fn undeliverable(&self, ids: &[Uuid]) -> Result<BTreeMap<Uuid, bool>, sqlx::Error> {
        if ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let rows: Vec<(Uuid, bool)> =
            sqlx::query_as("SELECT id, undeliverable FROM notifications WHERE id = ANY($1)")
                .bind(ids)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().collect())
    }
}

impl MailerHandler {
    /// Renders and sends one recipient's email; the caller records the outcome.
    async fn send(&self, row: &Pending) -> Sent {
        let notification_id = row.notification_id;
        let kind = row.kind.as_str();
        let recipient = RecipientContext {
            name: row.name.clone(),
            institution: row.institution.clone(),
            role: row.role.clone(),
        };
        let rendered = match render(kind, notification_id, &row.payload, &recipient) {
            Ok(r) => r,
            Err(e) => {
                // A template or payload fault is not this message's to retry: recorded on
                // the recipient so it is visible in status, and dead-lettered for an operator.
                let reason = format!("cannot render {kind}: {}", chain(&e));
                return Sent::Failed(Failure {
                    email: row.email.clone(),
                    error: reason.clone(),
                    message_id: None,
                    transient: false,
                    reason,
                });
            }
        };
        let subject = if row.urgent && !rendered.subject.starts_with("[URGENTE]") {
            format!("[URGENTE] {}", rendered.subject)
        } else {
            rendered.subject
        };
        let message_id = message_id_for(notification_id, &row.email, &self.message_id_domain);
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
        };
        let started = Instant::now();
        let result = self.transport.send(&outgoing).await;
        metrics::histogram!("raccordo_email_send_seconds").record(started.elapsed().as_secs_f64());
        match result {
            Ok(delivered) => {
                metrics::counter!("raccordo_emails_sent_total", "kind" => kind.to_owned())
                    .increment(1);
                tracing::debug!(notification = %notification_id, referent = row.referent_id, "Email sent.");
                Sent::Delivered {
                    email: row.email.clone(),
                    response: delivered.response,
                    message_id,
                }
            }
            Err(error) => {
                let transient = error.is_transient();
                let text = error.to_string();
                let cause = if transient { "transient" } else { "permanent" };
                metrics::counter!("raccordo_emails_failed_total", "kind" => kind.to_owned(), "cause" => cause)
                    .increment(1);
                tracing::warn!(notification = %notification_id, referent = row.referent_id, error = %text, cause, "Email not sent.");
                Sent::Failed(Failure {
                    email: row.email.clone(),
                    reason: format!("referent {}: {text}", row.referent_id),
                    error: text,
                    message_id: Some(message_id),
                    transient,
                })
            }
        }
    }
}

/// Records a failed attempt; a permanent failure stops further attempts for that recipient.
async fn record_failure(
    tx: &mut sqlx::PgConnection,
    notification_id: Uuid,
    email: &str,
    error: &str,
    message_id: Option<&str>,
    transient: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"
        UPDATE deliveries
        SET attempts = attempts + 1,
            last_error = $3,
            message_id = COALESCE($4, message_id),
            failed_at = CASE WHEN $5 THEN NULL ELSE now() END
        WHERE notification_id = $1
          AND email = $2
        "#,
    )
    .bind(notification_id)
    .bind(email)
    .bind(error)
    .bind(message_id)
    .bind(transient)
    .execute(tx)
    .await?;
    Ok(())
}

/// An error and its sources, for a reason an operator can act on.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
