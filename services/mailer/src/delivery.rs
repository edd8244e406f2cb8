//! The mailer worker: for each notification published on `{prefix}.events`, one email per
//! recipient recorded in the database, each sent at most once.
//!
//! Each recipient's row is locked (`FOR UPDATE SKIP LOCKED`) while its email is sent and
//! marked delivered in the same transaction, so a redelivered notification, a second mailer
//! replica or a restart sends nothing twice. A crash between the server's acceptance and
//! the commit resends — with the same `Message-ID`, so mail systems can tell (CONTRACT F3).

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
}

impl MailerHandler {
    /// A mailer sending from `from` (`mail.from`) through `transport`.
    pub fn new(pool: PgPool, transport: Transport, from: &str) -> Self {
        let domain = EmailAddress::parse_mailbox(from)
            .map(|e| e.domain().to_owned())
            .unwrap_or_else(|_| "raccordo.invalid".to_owned());
        Self {
            pool,
            transport,
            from: from.to_owned(),
            message_id_domain: domain,
        }
    }
}

/// A recipient still waiting for a notification's email, with what the email says.
#[derive(sqlx::FromRow)]
struct Pending {
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

#[async_trait]
impl Handler for MailerHandler {
    async fn handle(&self, message: &Message) -> Result<Outcome, HandleError> {
        let announced: NotificationMessage = serde_json::from_slice(&message.body)
            .map_err(|e| HandleError::Permanent(format!("not a notification message: {e}")))?;
        let span = tracing::Span::current();
        span.record("type", announced.kind.as_str());
        // One transaction for the notification: its pending recipients are locked while
        // their emails are sent and recorded together, so a redelivery or a second mailer
        // sends nothing twice, and a crash resends at most this notification's recipients,
        // with the same Message-IDs (CONTRACT F3).
        let mut tx = self.pool.begin().await.map_err(HandleError::from_db)?;
        let pending: Vec<Pending> = sqlx::query_as(
            r#"
            SELECT n.kind, n.payload, n.urgent, d.email, d.referent_id, d.name, d.institution, d.role
            FROM deliveries d
            JOIN notifications n ON n.id = d.notification_id
            WHERE d.notification_id = $1
              AND d.delivered_at IS NULL
              AND d.failed_at IS NULL
            ORDER BY d.email
            FOR UPDATE OF d SKIP LOCKED
            "#,
        )
        .bind(announced.id)
        .fetch_all(&mut *tx)
        .await
        .map_err(HandleError::from_db)?;
        if pending.is_empty() {
            // Delivered already (or being sent by another mailer), undeliverable, or unknown.
            let undeliverable: Option<bool> =
                sqlx::query_scalar("SELECT undeliverable FROM notifications WHERE id = $1")
                    .bind(announced.id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(HandleError::from_db)?;
            return match undeliverable {
                None => Err(HandleError::Permanent(format!(
                    "notification {} is not in the database",
                    announced.id
                ))),
                Some(true) => Ok(Outcome::Processed),
                Some(false) => Ok(Outcome::Duplicate),
            };
        }

        let mut delivered = (Vec::new(), Vec::new(), Vec::new());
        let mut failures = Vec::new();
        for row in &pending {
            match self.send(announced.id, row).await {
                Sent::Delivered {
                    email,
                    response,
                    message_id,
                } => {
                    delivered.0.push(email);
                    delivered.1.push(response);
                    delivered.2.push(message_id);
                }
                Sent::Failed(failure) => failures.push(failure),
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
                FROM UNNEST($2::TEXT[], $3::TEXT[], $4::TEXT[]) AS s (email, response, message_id)
                WHERE d.notification_id = $1
                  AND d.email = s.email
                "#,
            )
            .bind(announced.id)
            .bind(&delivered.0)
            .bind(&delivered.1)
            .bind(&delivered.2)
            .execute(&mut *tx)
            .await
            .map_err(HandleError::from_db)?;
        }
        for f in &failures {
            record_failure(
                &mut tx,
                announced.id,
                &f.email,
                &f.error,
                f.message_id.as_deref(),
                f.transient,
            )
            .await
            .map_err(HandleError::from_db)?;
        }
        tx.commit().await.map_err(HandleError::from_db)?;
        let reasons = |transient: bool| {
            failures
                .iter()
                .filter(|f| f.transient == transient)
                .map(|f| f.reason.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        };
        // Transient first: a retry then also reaches what a permanent error skipped.
        if failures.iter().any(|f| f.transient) {
            return Err(HandleError::Transient(reasons(true)));
        }
        if !failures.is_empty() {
            return Err(HandleError::Permanent(reasons(false)));
        }
        Ok(Outcome::Processed)
    }
}

impl MailerHandler {
    /// Renders and sends one recipient's email; the caller records the outcome.
    async fn send(&self, notification_id: Uuid, row: &Pending) -> Sent {
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
