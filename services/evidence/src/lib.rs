//! Delivery evidence beyond SMTP's `250` (CONTRACT §9): the mailboxes where PEC receipts and
//! delivery status notifications arrive, read over IMAP by one replica at a time.
//!
//! # Layout
//! - [`imap`]: the IMAP URL forms of CONTRACT §11, the connection and [`imap::Mailbox`]
//!   (fetch the unhandled messages, mark them handled, IDLE or poll, APPEND).
//! - [`lock`]: [`lock::ReaderLock`], the advisory lock that keeps one reader per mailbox.

#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod imap;
pub mod lock;
