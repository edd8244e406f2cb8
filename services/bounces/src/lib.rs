//! Bounces (contract 1.2 §9, D3): delivery status notifications (RFC 3464) read from the
//! mailbox `mail.bounce_imap_url`, matched to the delivery they are about, and the fallback
//! a permanent failure triggers (`raccordo_core::fallback`).
//!
//! # Layout
//! - [`dsn`]: the parser of a report, on `mail-parser`; bounded, never panics (fuzzed:
//!   `fuzz/fuzz_targets/dsn.rs`).
//! - [`report`]: one report judged and recorded, once, in one transaction.
//! - [`reader`]: [`reader::BounceReader`], the mailbox `mail.bounce_imap_url` read by one
//!   replica at a time.

pub mod dsn;
pub mod reader;
pub mod report;

pub use dsn::{DsnError, Report, parse};
pub use report::{Outcome, handle_report};
