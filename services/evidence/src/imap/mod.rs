//! IMAP (RFC 3501): the URL forms of CONTRACT §11, the connection (plain, STARTTLS,
//! implicit TLS) and [`Mailbox`], what the hub does with a mailbox.

mod client;
mod stream;
mod url;

pub use client::{Appender, Fetched, ImapError, Mailbox, append};
pub use stream::ImapStream;
pub use url::{ImapSecurity, ImapUrl, ImapUrlError};
