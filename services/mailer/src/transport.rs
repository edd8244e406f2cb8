//! The one way the mailer sends an email, whichever the configured transport.

// Re-exported: `crate::transport::SendError` was their home before `error` was.
pub use crate::error::{Delivered, SendError, Step};
use crate::message::OutgoingEmail;
use crate::outbox_file::FileOutbox;
use crate::smtp::SmtpTransport;

/// Where emails go (`mail.transport`): an SMTP server, or `.eml` files in a folder.
#[derive(Debug, Clone)]
pub enum Transport {
    /// Deliver over SMTP.
    Smtp(SmtpTransport),
    /// Write each email to a folder, for development and demos without a mail server.
    File(FileOutbox),
}

impl Transport {
    /// Sends one email.
    ///
    /// # Errors
    /// See [`SendError::is_transient`].
    pub async fn send(&self, email: &OutgoingEmail) -> Result<Delivered, SendError> {
        match self {
            Transport::Smtp(smtp) => smtp.send(email).await,
            Transport::File(outbox) => outbox.send(email).await,
        }
    }
}
