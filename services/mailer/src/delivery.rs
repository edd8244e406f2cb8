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
use raccordo_core::db::{NotificationMessage, load_notification};
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

type PendingRow = (String, String, Option<String>, String, String);

#[async_trait]
impl Handler for MailerHandler {
    async fn handle(&self, message: &Message) -> Result<Outcome, HandleError> {
        let announced: NotificationMessage = serde_json::from_slice(&message.body)
            .map_err(|e| HandleError::Permanent(format!("not a notification message: {e}")))?;
        let span = tracing::Span::current();
        span.record("type", announced.kind.as_str());
        let mut conn = self.pool.acquire().await.map_err(HandleError::from_db)?;
        let Some(notification) = load_notification(&mut conn, announced.id)
            .await
            .map_err(HandleError::from_db)?
        else {
            return Err(HandleError::Permanent(format!(
                "notification {} is not in the database",
                announced.id
            )));
        };
        drop(conn);
        if notification.undeliverable {
            return Ok(Outcome::Processed);
        }
        let pending: Vec<PendingRow> = sqlx::query_as(
            r#"
            SELECT email, referent_id, name, institution, role
            FROM deliveries
            WHERE notification_id = $1
              AND delivered_at IS NULL
              AND failed_at IS NULL
            ORDER BY email
            "#,
        )
        .bind(notification.id)
        .fetch_all(&self.pool)
        .await
        .map_err(HandleError::from_db)?;
        if pending.is_empty() {
            return Ok(Outcome::Duplicate);
        }

        let mut transient = Vec::new();
        let mut permanent = Vec::new();
        for (email, referent_id, name, institution, role) in pending {
            let recipient = RecipientContext {
                name,
                institution,
                role,
            };
            match self
                .deliver(&notification, &email, &referent_id, &recipient)
                .await
            {
                Ok(()) => {}
                Err(HandleError::Transient(e)) => transient.push(e),
                Err(HandleError::Permanent(e)) => permanent.push(e),
            }
        }
        // Transient first: a retry then also reaches what a permanent error skipped.
        if !transient.is_empty() {
            return Err(HandleError::Transient(transient.join("; ")));
        }
        if !permanent.is_empty() {
            return Err(HandleError::Permanent(permanent.join("; ")));
        }
        Ok(Outcome::Processed)
    }
}

impl MailerHandler {
    /// Sends one recipient's email under its row lock and records the outcome.
    async fn deliver(
        &self,
        notification: &raccordo_core::db::Notification,
        email: &str,
        referent_id: &str,
        recipient: &RecipientContext,
    ) -> Result<(), HandleError> {
        let kind = notification.kind.as_str();
        let mut tx = self.pool.begin().await.map_err(HandleError::from_db)?;
        let locked: Option<(Uuid,)> = sqlx::query_as(
            r#"
            SELECT notification_id
            FROM deliveries
            WHERE notification_id = $1
              AND email = $2
              AND delivered_at IS NULL
              AND failed_at IS NULL
            FOR UPDATE SKIP LOCKED
            "#,
        )
        .bind(notification.id)
        .bind(email)
        .fetch_optional(&mut *tx)
        .await
        .map_err(HandleError::from_db)?;
        if locked.is_none() {
            // Delivered meanwhile, or another mailer is sending it right now.
            return Ok(());
        }
        let rendered = match render(kind, notification.id, &notification.payload, recipient) {
            Ok(r) => r,
            Err(e) => {
                // A template or payload fault is not this message's to retry: record it on the
                // recipient so it is visible in status, and dead-letter for an operator.
                let reason = format!("cannot render {kind}: {}", chain(&e));
                record_failure(&mut tx, notification.id, email, &reason, None, false)
                    .await
                    .map_err(HandleError::from_db)?;
                tx.commit().await.map_err(HandleError::from_db)?;
                return Err(HandleError::Permanent(reason));
            }
        };
        let subject = if notification.urgent && !rendered.subject.starts_with("[URGENTE]") {
            format!("[URGENTE] {}", rendered.subject)
        } else {
            rendered.subject
        };
        let message_id = message_id_for(notification.id, email, &self.message_id_domain);
        let outgoing = OutgoingEmail {
            from: self.from.clone(),
            to: email.to_owned(),
            to_name: recipient.name.clone(),
            subject,
            text: rendered.text,
            html: rendered.html,
            kind: kind.to_owned(),
            notification_id: notification.id,
            message_id: message_id.clone(),
            urgent: notification.urgent,
        };
        let started = Instant::now();
        let result = self.transport.send(&outgoing).await;
        metrics::histogram!("raccordo_email_send_seconds").record(started.elapsed().as_secs_f64());
        let outcome = match result {
            Ok(delivered) => {
                sqlx::query(
                    r#"
                    UPDATE deliveries
                    SET delivered_at = now(),
                        smtp_response = $3,
                        message_id = $4,
                        attempts = attempts + 1,
                        last_error = NULL
                    WHERE notification_id = $1
                      AND email = $2
                    "#,
                )
                .bind(notification.id)
                .bind(email)
                .bind(&delivered.response)
                .bind(&message_id)
                .execute(&mut *tx)
                .await
                .map_err(HandleError::from_db)?;
                metrics::counter!("raccordo_emails_sent_total", "kind" => kind.to_owned())
                    .increment(1);
                tracing::debug!(notification = %notification.id, referent = referent_id, "Email sent.");
                Ok(())
            }
            Err(error) => {
                let transient = error.is_transient();
                let text = error.to_string();
                record_failure(
                    &mut tx,
                    notification.id,
                    email,
                    &text,
                    Some(&message_id),
                    transient,
                )
                .await
                .map_err(HandleError::from_db)?;
                let cause = if transient { "transient" } else { "permanent" };
                metrics::counter!("raccordo_emails_failed_total", "kind" => kind.to_owned(), "cause" => cause)
                    .increment(1);
                tracing::warn!(notification = %notification.id, referent = referent_id, error = %text, cause, "Email not sent.");
                let reason = format!("referent {referent_id}: {text}");
                Err(if transient {
                    HandleError::Transient(reason)
                } else {
                    HandleError::Permanent(reason)
                })
            }
        };
        tx.commit().await.map_err(HandleError::from_db)?;
        outcome
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
