//! Delivery status notifications (RFC 3464): a `multipart/report; report-type=delivery-status`
//! whose `message/delivery-status` part says, per recipient, what became of a message, and
//! whose third part returns the message or its headers.
//!
//! The MIME structure is read by `mail-parser`; the status fields, a header-like grammar of
//! their own (RFC 3464 §2), by the small reader below. Everything here comes from outside:
//! sizes and counts are bounded, nothing panics, and a report that does not parse is an
//! error naming what is missing, never a guess.

use std::fmt;

use mail_parser::{MessageParser, MimeHeaders, PartType};
use uuid::Uuid;

/// The largest report read: a DSN returning a whole message may be large, but what is
/// needed (the status and the returned headers) is near its start.
pub const MAX_REPORT_BYTES: usize = 2 * 1024 * 1024;
/// The most recipients one report may list; more is not a report of ours.
pub const MAX_RECIPIENTS: usize = 100;
/// The most status fields one group may hold (RFC 3464 defines about a dozen).
const MAX_FIELDS: usize = 64;
/// The longest diagnostic kept, in characters.
const MAX_DIAGNOSTIC_CHARS: usize = 300;

/// Why a message is not a delivery status notification this hub can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    /// Over [`MAX_REPORT_BYTES`].
    #[error("the report is larger than {MAX_REPORT_BYTES} bytes")]
    TooLarge,
    /// Not a MIME message at all.
    #[error("not a MIME message")]
    NotMime,
    /// A message, but not `multipart/report; report-type=delivery-status`.
    #[error("not a multipart/report of report-type delivery-status")]
    NotAReport,
    /// No `message/delivery-status` part.
    #[error("no message/delivery-status part")]
    NoStatusPart,
    /// The status part names no recipient.
    #[error("the delivery status names no recipient")]
    NoRecipient,
    /// Over [`MAX_RECIPIENTS`] recipients, or over the fields a group may hold.
    #[error("the delivery status lists too many recipients or fields")]
    TooMany,
    /// A recipient group without a required field, or with one that does not parse.
    #[error("a recipient's {0} is missing or malformed")]
    Field(&'static str),
}

/// What the reporting MTA did for a recipient (RFC 3464 §2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// It could not deliver, and will not try again.
    Failed,
    /// It could not deliver yet, and will try again.
    Delayed,
    /// Delivered.
    Delivered,
    /// Passed to a system that sends no DSN.
    Relayed,
    /// Delivered and forwarded to more addresses.
    Expanded,
}

impl Action {
    fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "failed" => Some(Action::Failed),
            "delayed" => Some(Action::Delayed),
            "delivered" => Some(Action::Delivered),
            "relayed" => Some(Action::Relayed),
            "expanded" => Some(Action::Expanded),
            _ => None,
        }
    }

    /// Its name in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
            Action::Expanded => "expanded",
        }
    }
}

/// An enhanced status code (RFC 3463): class `2` success, `4` persistent transient failure,
/// `5` permanent failure; then subject and detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    class: u8,
    subject: u16,
    detail: u16,
}

impl Status {
    /// `class.subject.detail`, each number of at most three digits, the class 2, 4 or 5.
    pub fn parse(text: &str) -> Option<Self> {
        // A status may be followed by a comment: `5.1.1 (bad destination mailbox)`.
        let code = text.split_whitespace().next()?;
        let mut parts = code.split('.');
        let number = |p: Option<&str>| -> Option<u16> {
            let p = p?;
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse().ok()
        };
        let class = u8::try_from(number(parts.next())?).ok()?;
        let subject = number(parts.next())?;
        let detail = number(parts.next())?;
        if parts.next().is_some() || !matches!(class, 2 | 4 | 5) {
            return None;
        }
        Some(Self {
            class,
            subject,
            detail,
        })
    }

    /// A permanent failure (`5.x.x`): the message will never arrive this way (CONTRACT D3).
    pub fn is_permanent(self) -> bool {
        self.class == 5
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One recipient's fields of a report (RFC 3464 §2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientStatus {
    /// The address the reporting MTA tried (`Final-Recipient`, its `rfc822;` type removed).
    pub final_recipient: String,
    /// The address as the sender gave it (`Original-Recipient`), when reported.
    pub original_recipient: Option<String>,
    pub action: Action,
    pub status: Status,
    /// The remote server's words (`Diagnostic-Code`), bounded, with control characters
    /// and addresses removed: fit for a timeline and a terminal.
    pub diagnostic: Option<String>,
}

impl RecipientStatus {
    /// A permanent failure: `Action: failed` with a `5.x.x` status.
    pub fn is_permanent_failure(&self) -> bool {
        self.action == Action::Failed && self.status.is_permanent()
    }
}

/// A delivery status notification, as far as the hub reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The report's own `Message-ID`, without angle brackets.
    pub report_id: Option<String>,
    /// The returned message's `Message-ID`, without angle brackets: what it is about.
    pub original_message_id: Option<String>,
    /// The returned message's `X-Raccordo-Notification` (CONTRACT §6), when it parses.
    pub original_notification: Option<Uuid>,
    /// Each recipient reported on, in order.
    pub recipients: Vec<RecipientStatus>,
}

/// Reads a delivery status notification.
///
/// # Errors
/// [`DsnError`] naming why `raw` is not one.
pub fn parse(raw: &[u8]) -> Result<Report, DsnError> {
    if raw.len() > MAX_REPORT_BYTES {
        return Err(DsnError::TooLarge);
    }
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(DsnError::NotMime)?;
    let is_report = message.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
            && ct
                .attribute("report-type")
                .is_some_and(|t| t.eq_ignore_ascii_case("delivery-status"))
    });
    if !is_report {
        return Err(DsnError::NotAReport);
    }
    let mut status_part: Option<&[u8]> = None;
    let mut original_message_id = None;
    let mut original_notification = None;
    // The report's parts, the root (0) aside: nested parts of a returned message are
    // not the report's own.
    let top: Vec<usize> = match message.parts.first().map(|p| &p.body) {
        Some(PartType::Multipart(ids)) => ids.iter().map(|id| *id as usize).collect(),
        _ => return Err(DsnError::NotAReport),
    };
    for index in top {
        let Some(part) = message.parts.get(index) else {
            continue;
        };
        let Some(ct) = part.content_type() else {
            continue;
        };
        let (ctype, subtype) = (ct.ctype(), ct.subtype().unwrap_or_default());
        let is =
            |t: &str, s: &str| ctype.eq_ignore_ascii_case(t) && subtype.eq_ignore_ascii_case(s);
        if is("message", "delivery-status") || is("message", "global-delivery-status") {
            status_part.get_or_insert(part.contents());
        } else if (is("message", "rfc822") || is("message", "global"))
            && let PartType::Message(returned) = &part.body
        {
            original_message_id = returned.message_id().map(str::to_owned);
            original_notification = notification_header(returned);
        } else if is("text", "rfc822-headers")
            && let Some(headers) = MessageParser::default().parse_headers(part.contents())
        {
            original_message_id = headers.message_id().map(str::to_owned);
            original_notification = notification_header(&headers);
        }
    }
    let status_part = status_part.ok_or(DsnError::NoStatusPart)?;
    let recipients = parse_status(status_part)?;
    Ok(Report {
        report_id: message.message_id().map(str::to_owned),
        original_message_id: original_message_id.map(|id| bounded(&id, 998)),
        original_notification,
        recipients,
    })
}

/// The `X-Raccordo-Notification` of a returned message.
fn notification_header(message: &mail_parser::Message<'_>) -> Option<Uuid> {
    message
        .header_raw("X-Raccordo-Notification")
        .and_then(|v| Uuid::parse_str(v.trim()).ok())
}

/// The body of a `message/delivery-status` part: a group of per-message fields, then one
/// group per recipient, separated by blank lines (RFC 3464 §2.1).
fn parse_status(body: &[u8]) -> Result<Vec<RecipientStatus>, DsnError> {
    let text = String::from_utf8_lossy(body);
    let mut groups: Vec<Vec<(String, String)>> = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                groups.push(std::mem::take(&mut current));
                if groups.len() > MAX_RECIPIENTS + 1 {
                    return Err(DsnError::TooMany);
                }
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // A folded line continues the field before it.
            if let Some((_, value)) = current.last_mut()
                && value.len() < 4096
            {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if current.len() >= MAX_FIELDS {
            return Err(DsnError::TooMany);
        }
        current.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    if !current.is_empty() {
        groups.push(current);
    }
    if groups.len() > MAX_RECIPIENTS + 1 {
        return Err(DsnError::TooMany);
    }
    // The per-message group comes first and has no Final-Recipient; a report that omits it
    // is read all the same.
    let field = |group: &[(String, String)], name: &str| -> Option<String> {
        group
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut recipients = Vec::new();
    for group in groups
        .iter()
        .filter(|g| field(g, "final-recipient").is_some())
    {
        let final_recipient = field(group, "final-recipient")
            .and_then(|v| address_of(&v))
            .ok_or(DsnError::Field("Final-Recipient"))?;
        let original_recipient = field(group, "original-recipient").and_then(|v| address_of(&v));
        let action = field(group, "action")
            .and_then(|v| Action::parse(&v))
            .ok_or(DsnError::Field("Action"))?;
        let status = field(group, "status")
            .and_then(|v| Status::parse(&v))
            .ok_or(DsnError::Field("Status"))?;
        let diagnostic = field(group, "diagnostic-code").map(|v| diagnostic_text(&v));
        recipients.push(RecipientStatus {
            final_recipient,
            original_recipient,
            action,
            status,
            diagnostic,
        });
    }
    if recipients.is_empty() {
        return Err(DsnError::NoRecipient);
    }
    Ok(recipients)
}

/// The address of `rfc822; someone@example.org` (or of a bare address), lower-cased;
/// None when it is no plausible address.
fn address_of(value: &str) -> Option<String> {
    let address = match value.split_once(';') {
        Some((kind, address)) if kind.trim().eq_ignore_ascii_case("rfc822") => address,
        Some(_) => return None,
        None => value,
    };
    let address = address.trim().trim_start_matches('<').trim_end_matches('>');
    let plausible = address.len() <= 254
        && address.split('@').count() == 2
        && !address.starts_with('@')
        && !address.ends_with('@')
        && !address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ','));
    plausible.then(|| address.to_lowercase())
}

/// A diagnostic fit for a timeline: its type (`smtp;`) removed, words holding an `@`
/// replaced (a server often echoes the address), control characters dropped, bounded.
fn diagnostic_text(value: &str) -> String {
    let text = match value.split_once(';') {
        Some((kind, rest)) if !kind.contains(' ') => rest,
        _ => value,
    };
    let words: Vec<&str> = text
        .split_whitespace()
        .map(|w| if w.contains('@') { "<indirizzo>" } else { w })
        .collect();
    bounded(&words.join(" "), MAX_DIAGNOSTIC_CHARS)
}

/// `text` without control characters, at most `max` characters.
fn bounded(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report as Postfix writes one, with the returned headers.
    pub(crate) fn postfix_report(message_id: &str, recipient: &str, status: &str) -> String {
        format!(
            "From: MAILER-DAEMON@mx.comune.example\r\n\
             To: raccordo@cittametropolitana.example\r\n\
             Subject: Undelivered Mail Returned to Sender\r\n\
             Message-ID: <dsn-1@mx.comune.example>\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status;\r\n\
             \tboundary=\"B1\"\r\n\
             \r\n\
             --B1\r\n\
             Content-Type: text/plain; charset=us-ascii\r\n\
             \r\n\
             I'm sorry to have to inform you that your message could not be delivered.\r\n\
             \r\n\
             --B1\r\n\
             Content-Type: message/delivery-status\r\n\
             \r\n\
             Reporting-MTA: dns; mx.comune.example\r\n\
             Arrival-Date: Mon, 7 Dec 2026 10:00:00 +0100 (CET)\r\n\
             \r\n\
             Final-Recipient: rfc822; {recipient}\r\n\
             Original-Recipient: rfc822;{recipient}\r\n\
             Action: failed\r\n\
             Status: {status}\r\n\
             Remote-MTA: dns; mail.comune.example\r\n\
             Diagnostic-Code: smtp; 550 {status} <{recipient}>:\r\n\
             \x20   Recipient address rejected: User unknown\r\n\
             \r\n\
             --B1\r\n\
             Content-Type: text/rfc822-headers\r\n\
             \r\n\
             From: raccordo@cittametropolitana.example\r\n\
             To: {recipient}\r\n\
             Message-ID: {message_id}\r\n\
             X-Raccordo-Kind: housing.offered\r\n\
             X-Raccordo-Notification: 6f1c2f43-6a52-4f43-9d39-0c3b2f0c8f11\r\n\
             Subject: Nuova disponibilita\r\n\
             \r\n\
             --B1--\r\n"
        )
    }

    #[test]
    fn a_postfix_report_gives_recipient_status_diagnostic_and_the_original_message_id() {
        let raw = postfix_report("<n1.abcd@hub.example>", "Ufficio@Comune.example", "5.1.1");

        let report = parse(raw.as_bytes()).expect("a report");

        assert_eq!(report.report_id.as_deref(), Some("dsn-1@mx.comune.example"));
        assert_eq!(
            report.original_message_id.as_deref(),
            Some("n1.abcd@hub.example")
        );
        assert_eq!(
            report.original_notification,
            Uuid::parse_str("6f1c2f43-6a52-4f43-9d39-0c3b2f0c8f11").ok()
        );
        let [r] = report.recipients.as_slice() else {
            panic!("one recipient: {report:?}");
        };
        assert_eq!(r.final_recipient, "ufficio@comune.example");
        assert_eq!(
            r.original_recipient.as_deref(),
            Some("ufficio@comune.example")
        );
        assert_eq!(r.action, Action::Failed);
        assert_eq!(r.status.to_string(), "5.1.1");
        assert!(r.is_permanent_failure());
        let diagnostic = r.diagnostic.as_deref().expect("diagnostic");
        assert_eq!(
            diagnostic,
            "550 5.1.1 <indirizzo> Recipient address rejected: User unknown"
        );
    }

    #[test]
    fn a_delay_is_not_a_permanent_failure() {
        let raw = postfix_report("<n1@hub.example>", "a@b.example", "4.4.1")
            .replace("Action: failed", "Action: delayed");

        let report = parse(raw.as_bytes()).expect("a report");

        assert_eq!(report.recipients[0].action, Action::Delayed);
        assert!(!report.recipients[0].is_permanent_failure());
    }

    #[test]
    fn a_returned_whole_message_gives_its_message_id() {
        let raw = postfix_report("<n2@hub.example>", "a@b.example", "5.2.2").replace(
            "Content-Type: text/rfc822-headers",
            "Content-Type: message/rfc822",
        );

        let report = parse(raw.as_bytes()).expect("a report");

        assert_eq!(
            report.original_message_id.as_deref(),
            Some("n2@hub.example")
        );
    }

    #[test]
    fn what_is_not_a_delivery_report_is_refused_naming_why() {
        let plain = "From: a@b.example\r\nSubject: hi\r\n\r\nhello\r\n";
        assert_eq!(parse(plain.as_bytes()), Err(DsnError::NotAReport));
        let mdn = postfix_report("<n@h.example>", "a@b.example", "5.1.1").replace(
            "report-type=delivery-status",
            "report-type=disposition-notification",
        );
        assert_eq!(parse(mdn.as_bytes()), Err(DsnError::NotAReport));
        let no_status = postfix_report("<n@h.example>", "a@b.example", "5.1.1")
            .replace("message/delivery-status", "text/plain");
        assert_eq!(parse(no_status.as_bytes()), Err(DsnError::NoStatusPart));
        let bad_status = postfix_report("<n@h.example>", "a@b.example", "5.1.1")
            .replace("Status: 5.1.1", "Status: 9.99.9999");
        assert_eq!(parse(bad_status.as_bytes()), Err(DsnError::Field("Status")));
        let no_action = postfix_report("<n@h.example>", "a@b.example", "5.1.1")
            .replace("Action: failed", "Action: exploded");
        assert_eq!(parse(no_action.as_bytes()), Err(DsnError::Field("Action")));
        let big = vec![b'a'; MAX_REPORT_BYTES + 1];
        assert_eq!(parse(&big), Err(DsnError::TooLarge));
    }

    #[test]
    fn a_report_of_thousands_of_recipients_is_refused() {
        let mut many = String::new();
        for i in 0..=MAX_RECIPIENTS + 1 {
            many.push_str(&format!(
                "Final-Recipient: rfc822; r{i}@b.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
            ));
        }
        let raw = postfix_report("<n@h.example>", "a@b.example", "5.1.1").replace(
            "Reporting-MTA: dns; mx.comune.example\r\n",
            &format!("Reporting-MTA: dns; mx\r\n\r\n{many}"),
        );
        assert_eq!(parse(raw.as_bytes()), Err(DsnError::TooMany));
    }

    #[test]
    fn mutated_reports_never_panic_and_never_yield_an_address_in_a_diagnostic() {
        // A deterministic stand-in for the fuzz target (fuzz/fuzz_targets/dsn.rs), run with
        // every test: truncations, byte flips and splices of a real report.
        let seed = postfix_report("<n1@hub.example>", "a@b.example", "5.1.1").into_bytes();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..3000 {
            let mut input = seed.clone();
            for _ in 0..(next() % 8 + 1) {
                let at = (next() as usize) % input.len().max(1);
                match next() % 4 {
                    0 => input.truncate(at),
                    1 => {
                        if let Some(b) = input.get_mut(at) {
                            *b = (next() & 0xff) as u8;
                        }
                    }
                    2 => input.insert(
                        at.min(input.len()),
                        b"\r\n:;<>@\x00\xff"[(next() % 9) as usize],
                    ),
                    _ => {
                        let from = (next() as usize) % seed.len();
                        let to = (from + (next() as usize) % 200).min(seed.len());
                        let at = at.min(input.len());
                        input.splice(at..at, seed[from..to].iter().copied());
                    }
                }
            }
            if let Ok(report) = parse(&input) {
                for r in &report.recipients {
                    let d = r.diagnostic.as_deref().unwrap_or_default();
                    assert!(
                        !d.contains('@') && !d.chars().any(char::is_control),
                        "{d:?}"
                    );
                    assert_eq!(r.final_recipient.matches('@').count(), 1);
                }
            }
        }
    }

    #[test]
    fn status_codes_parse_strictly() {
        assert_eq!(
            Status::parse("5.7.1 (delivery not authorized)").map(|s| s.to_string()),
            Some("5.7.1".into())
        );
        for bad in ["", "5.1", "5.1.1.1", "3.1.1", "5.a.1", "5.1.1234", "-5.1.1"] {
            assert_eq!(Status::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn recipient_types_other_than_rfc822_and_implausible_addresses_are_refused() {
        assert_eq!(
            address_of("rfc822; A@B.example"),
            Some("a@b.example".into())
        );
        assert_eq!(address_of("<a@b.example>"), Some("a@b.example".into()));
        assert_eq!(address_of("x400; a@b.example"), None);
        assert_eq!(address_of("rfc822; a@@b"), None);
        assert_eq!(address_of("rfc822; a b@c.example"), None);
    }
}
