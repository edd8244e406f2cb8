//! SMTP delivery over a small pool of lettre connections on sockets we open ourselves.
//!
//! Why not lettre's own `AsyncSmtpTransport`: lettre 0.11.23 never sets `TCP_NODELAY`, and it
//! writes each command and the end-of-data marker in separate small writes. Nagle's algorithm
//! then holds back the next write until the server's delayed ACK arrives, and every message
//! costs ~40 ms: about 23 messages/s per connection where the same client on a NODELAY socket
//! does ~840/s (measured here; fixed upstream in lettre PR #1159, not yet released). So we
//! connect the socket, set NODELAY, and hand it to lettre's public
//! `AsyncSmtpConnection::connect_with_transport`, which still does the SMTP dialogue.
//!
//! The pool (`pool`) opens connections as sends need them, up to `max_connections` idle plus
//! busy, below what the server refuses (a `421` greeting or a refused connect lowers its
//! limit, and the email waits for an open connection), and retires idle, stale and broken
//! ones down to `pool_size`; a message whose pooled connection turns out dead is tried once
//! more on a fresh one.
//!
//! # Layout
//! - `endpoint`: [`SmtpOptions`] and the URL parsed into host, port, TLS mode, credentials.
//! - `pool`: the adaptive bound on connections, the idle ones and their reaper.
//! - `tls_bridge`: lettre's implicit-TLS stream as a tokio stream.
//! - `client`: [`SmtpTransport`]: opens connections and sends through the pool.

mod client;
mod endpoint;
mod pool;
mod tls_bridge;

pub use client::SmtpTransport;
pub use endpoint::{SmtpConfigError, SmtpOptions};
