//! Delivery evidence beyond SMTP's `250` (CONTRACT §9): the mailboxes where PEC receipts and
//! delivery status notifications arrive, read over IMAP by one replica at a time.
//!
//! # Layout
//! - [`imap`]: the IMAP URL forms of CONTRACT §11, the connection and [`imap::Mailbox`]
//!   (fetch the unhandled messages, mark them handled, IDLE or poll, APPEND).
//! - [`lock`]: [`lock::ReaderLock`], the advisory lock that keeps one reader per mailbox.
//! - [`daticert`]: the certification data of a PEC receipt, parsed with quick-xml, no
//!   entity ever expanded, sizes bounded.
//! - [`receipt`]: a receipt email (mail-parser): its headers and its `daticert.xml`, agreeing.
//! - [`simulator`]: the PEC provider simulator: SMTP in, receipts APPENDed into IMAP.

#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod daticert;
pub mod imap;
pub mod lock;
pub mod receipt;
pub mod simulator;
