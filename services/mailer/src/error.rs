//! What sending an email returns, whichever the transport: [`Delivered`], or a
//! [`SendError`] that answers the one question every failure answers: is it worth trying
//! again? Its own module so that the transports depend on it and not on each other.

use std::{fmt, io, time::Duration};

use crate::message::BuildError;

/// An email was handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The SMTP server's final reply (`250 2.0.0 Ok: queued as …`), or the path of the
    /// written file: worth recording with the delivery.
    pub response: String,
}

/// The SMTP step that ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// TCP, TLS, greeting, EHLO, STARTTLS, AUTH.
    Connect,
    /// MAIL, RCPT, DATA and the message.
    Send,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Connect => "connecting to the SMTP server",
            Step::Send => "sending the message",
        })
    }
}

/// An email was not handed over.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The email cannot become a message (bad address, bad header value).
    #[error("failed to build the message")]
    Build(#[from] BuildError),
    /// The TCP connection failed: refused, unreachable, name not resolved.
    #[error("failed to connect to the SMTP server")]
    Connect(#[source] io::Error),
    /// A step exceeded `mail.timeout_ms`.
    #[error("timed out {step} after {after:?}")]
    Timeout {
        /// The step that ran out of time.
        step: Step,
        /// The configured bound.
        after: Duration,
    },
    /// Setting up the session failed: TLS, greeting, EHLO, STARTTLS or AUTH.
    #[error("failed to open an SMTP session")]
    Session(#[source] lettre::transport::smtp::Error),
    /// The URL asks for STARTTLS and the server does not offer it.
    #[error("the SMTP server does not offer STARTTLS, which the SMTP URL requires")]
    StartTlsUnavailable,
    /// The server refused this message, or the connection broke while sending it.
    #[error("the SMTP server did not accept the message")]
    Transaction(#[source] lettre::transport::smtp::Error),
    /// Writing the `.eml` file failed.
    #[error("failed to write the outbox file")]
    Outbox(#[source] io::Error),
    /// A PEC delivery, and no `mail.pec_smtp_url` in this process.
    #[error("a PEC delivery and no mail.pec_smtp_url configured in this process")]
    NoPecServer,
}

impl SendError {
    /// Whether trying again later may succeed (CONTRACT F2: retry, then park).
    ///
    /// Permanent only when the message itself is at fault: it cannot be built, or the
    /// server answered a 5xx reply to this message's MAIL, RCPT or DATA (RFC 5321 §4.2.1),
    /// or lettre refused it before sending (non-ASCII content the server cannot take).
    /// Everything about reaching the server — refused or reset connections, timeouts, 4xx
    /// replies, TLS, and failures while opening the session, even 5xx to AUTH — is
    /// transient: the email is fine, the server or the configuration is not, and an
    /// operator can fix that and replay the parked work.
    pub fn is_transient(&self) -> bool {
        match self {
            SendError::Build(_) => false,
            SendError::Transaction(error) => !(error.is_permanent() || error.is_client()),
            SendError::Connect(_)
            | SendError::Timeout { .. }
            | SendError::Session(_)
            | SendError::StartTlsUnavailable
            | SendError::Outbox(_)
            | SendError::NoPecServer => true,
        }
    }
}
