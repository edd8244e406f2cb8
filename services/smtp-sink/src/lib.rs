//! A small, real SMTP server that keeps what it receives.
//!
//! A product component, not only a test tool: the `raccordo` binary links it, and
//! `raccordo bench` runs it as the mail server the hub under measurement delivers to, so an
//! operator can benchmark an installation without a real SMTP server (and without mailing
//! anyone). The end-to-end tests (`tests/`) and `cargo bench -p raccordo-mailer` use it too.
//! `raccordo demo` does not need it: without `mail.smtp_url` it writes `.eml` files.
//!
//! Raccordo's benchmark, tests and mailer benchmark need an SMTP server that behaves
//! like a real one on the wire — greeting, EHLO extensions, pipelined commands, dot-stuffed
//! DATA, many concurrent connections — and lets a test read back what arrived and inject
//! faults (temporary and permanent rejections, a server that goes away and comes back).
//! It speaks enough of RFC 5321 for lettre's client and nothing more: no TLS, no AUTH.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! use raccordo_smtp_sink::SmtpSink;
//!
//! let sink = SmtpSink::start().await?;
//! // … point the mailer at smtp://127.0.0.1:{sink.port()} and send two emails …
//! let mails = sink.wait_for(2, Duration::from_secs(5)).await.expect("two emails");
//! assert_eq!(mails[0].subject().as_deref(), Some("Nuova disponibilità di alloggio"));
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - [`sink`]: [`SmtpSink`] — the listener, its lifecycle (`start`, `stop`, `restart`), the
//!   received mails, the fault [`Mode`] and the [`Behaviour`] of a relay under load (delays,
//!   a connection limit answered with `421`, transient refusals), with counters of open
//!   connections and mail transactions in flight.
//! - `session`: one SMTP conversation per accepted connection (the RFC 5321 state machine).
//! - `store`: what the sink and its sessions share: received mails, fault mode, behaviour,
//!   counters.
//! - [`dsn`]: the delivery status notification returned for an address rejected by a
//!   report ([`Rejection::Dsn`]).
//! - [`mail`]: [`ReceivedMail`] and its MIME helpers (unfolded headers, RFC 2047 subjects,
//!   quoted-printable and base64 bodies).

#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod dsn;
pub mod mail;
mod session;
pub mod sink;
mod store;

pub use mail::ReceivedMail;
pub use sink::{SmtpSink, Timeout};
pub use store::{Behaviour, Delay, Mode, Rejection};
