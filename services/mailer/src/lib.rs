//! The Raccordo mailer: turns a notification into an Italian email for one referent and
//! hands it to an SMTP server or to an outbox folder (CONTRACT §6).
//!
//! Rendering and sending are separate so that the delivery loop can record what it sends:
//! [`render`] produces subject, text and HTML from a kind and its payload;
//! [`OutgoingEmail`] carries them with the contract's headers and a `Message-ID` that is
//! the same on every resend ([`message_id_for`]); [`Transport::send`] delivers it and says,
//! on failure, whether retrying can help ([`SendError::is_transient`]).
//!
//! # Layout
//! - [`templates`]: minijinja templates embedded from `templates/`, one subject, text and
//!   HTML template per kind on a shared layout; [`render`].
//! - [`message`]: [`OutgoingEmail`] → lettre `Message` (multipart/alternative, contract
//!   headers, urgency); [`message_id_for`].
//! - [`error`]: [`Delivered`], [`SendError`] and its [`Step`]: what every transport returns.
//! - [`transport`]: [`Transport`], SMTP or file.
//! - [`smtp`]: [`SmtpTransport`], a bounded pool of lettre connections on `TCP_NODELAY`
//!   sockets, configured by [`SmtpOptions`] (endpoint parsing, pool and TLS bridge in
//!   their own files).
//! - [`delivery`]: the worker: senders that claim due `deliveries` rows from the database
//!   (no broker hop), so nothing is sent twice; the handler of replayed held deliveries.
//! - [`digest`]: digests of the referents who asked for them (issue 22), once each.
//! - [`escalation`]: reminders and `delivery.unacknowledged` of urgent alerts nobody
//!   acknowledged (CONTRACT D5).
//! - [`samples`]: a sample payload per kind, for the console's gallery.
//! - [`outbox_file`]: [`FileOutbox`], atomic `.eml` files named by notification and recipient.

#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod delivery;
pub mod digest;
pub mod error;
pub mod escalation;
pub mod message;
pub mod outbox_file;
pub mod samples;
pub mod smtp;
pub mod templates;
pub mod transport;

pub use error::{Delivered, SendError, Step};
pub use message::{BuildError, OutgoingEmail, message_id_for, reminder_message_id_for};
pub use outbox_file::FileOutbox;
pub use smtp::{SmtpConfigError, SmtpOptions, SmtpTransport};
pub use templates::{
    DigestEntry, KINDS, RecipientContext, RenderError, Rendered, render, render_digest,
    render_payload, render_payload_with_link, render_payload_with_links, render_with_link,
    render_with_links,
};
pub use transport::Transport;
