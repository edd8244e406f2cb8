//! One email to one recipient, and how it becomes an RFC 5322 message (CONTRACT §6).
//!
//! The `Message-ID` is derived from the (notification, recipient) pair, so a resend after a
//! crash between SMTP acceptance and its record carries the same id (CONTRACT F3) and the
//! recipient's mail client shows it once.
//!
//! No text from the registry can break a header: a display name with a control character
//! (stored before the edges refused them, CONTRACT §4) is left out — the address alone is
//! enough — and control characters in a subject become spaces. lettre panics on a CR or LF
//! in a display name; this is why the mailer never hands it one.

use lettre::{
    Address, Message,
    address::AddressError,
    message::{
        Mailbox, MultiPart,
        header::{HeaderName, HeaderValue},
    },
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Everything needed to send one notification to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEmail {
    /// The sender mailbox, `mail.from` (`Raccordo <raccordo@…>` or a bare address).
    pub from: String,
    /// The recipient's address.
    pub to: String,
    /// The recipient's display name, if the registry has one.
    pub to_name: Option<String>,
    /// The subject, already rendered; never personal data (CONTRACT §6).
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML alternative.
    pub html: String,
    /// The notification kind (`housing.offered`, …), sent as `X-Raccordo-Kind`.
    pub kind: String,
    /// The notification id shared by all its recipients, sent as `X-Raccordo-Notification`.
    pub notification_id: Uuid,
    /// The `Message-ID`, angle brackets included; see [`message_id_for`].
    pub message_id: String,
    /// Marks the email as urgent for the recipient's mail client.
    pub urgent: bool,
    /// A reminder of an unacknowledged notification (CONTRACT D5): `X-Raccordo-Reminder: 1`.
    pub reminder: bool,
    /// The one-click unsubscribe URL of an optional kind (RFC 2369, RFC 8058): sent as
    /// `List-Unsubscribe` with `List-Unsubscribe-Post: List-Unsubscribe=One-Click`.
    pub list_unsubscribe: Option<String>,
    /// A digest (issue 22): `notification_id` is the digest's id, sent as
    /// `X-Raccordo-Digest` instead of `X-Raccordo-Notification`; `kind` is `digest`.
    pub digest: bool,
}

/// The email could not be turned into a message. Retrying cannot help.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `from` is not a mailbox.
    #[error("invalid sender mailbox")]
    From(#[source] AddressError),
    /// `from` holds a control character (refused at start: `mail.from`).
    #[error("invalid sender mailbox: it holds a control character")]
    FromControl,
    /// `to` is not an email address.
    #[error("invalid recipient address")]
    To(#[source] AddressError),
    /// `kind` is not a lowercase dotted token.
    #[error("invalid notification kind for a header")]
    Kind,
    /// `message_id` is not of the form `<left@right>` in printable ASCII.
    #[error("invalid message id")]
    MessageId,
    /// lettre refused to assemble the message.
    #[error("failed to assemble the message")]
    Assemble(#[source] lettre::error::Error),
}

/// The `Message-ID` for one notification sent to one recipient:
/// `<{notification_id}.{first 16 hex digits of sha256(lowercased recipient)}@{domain}>`.
///
/// Stable for the pair; the address is hashed so the id does not disclose it.
pub fn message_id_for(notification_id: Uuid, recipient_email: &str, domain: &str) -> String {
    format!(
        "<{notification_id}.{}@{domain}>",
        address_hash(recipient_email)
    )
}

/// The `Message-ID` of the reminder of one notification to one recipient (CONTRACT §11: a
/// Message-ID of its own): `<{notification_id}.{hash}.promemoria@{domain}>`, as stable.
pub fn reminder_message_id_for(
    notification_id: Uuid,
    recipient_email: &str,
    domain: &str,
) -> String {
    format!(
        "<{notification_id}.{}.promemoria@{domain}>",
        address_hash(recipient_email)
    )
}

fn address_hash(recipient_email: &str) -> String {
    let digest = Sha256::digest(recipient_email.to_lowercase().as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl OutgoingEmail {
    /// Builds the multipart/alternative message (plain text first, then HTML, so clients
    /// that can show HTML prefer it) with the contract's headers.
    ///
    /// # Errors
    /// A malformed address, kind or message id, or a message lettre cannot assemble.
    pub fn to_message(&self) -> Result<Message, BuildError> {
        if self.from.chars().any(char::is_control) {
            return Err(BuildError::FromControl);
        }
        let from: Mailbox = self.from.parse().map_err(BuildError::From)?;
        let to_address: Address = self.to.trim().parse().map_err(BuildError::To)?;
        let to = Mailbox::new(display_name(self.to_name.as_deref()), to_address);
        if !is_kind_token(&self.kind) {
            return Err(BuildError::Kind);
        }
        if !is_message_id(&self.message_id) {
            return Err(BuildError::MessageId);
        }

        let mut builder = Message::builder()
            .from(from)
            .to(to)
            .subject(header_text(&self.subject))
            .message_id(Some(self.message_id.clone()))
            .raw_header(header("X-Raccordo-Kind", self.kind.clone()))
            .raw_header(header(
                if self.digest {
                    "X-Raccordo-Digest"
                } else {
                    "X-Raccordo-Notification"
                },
                self.notification_id.to_string(),
            ))
            // RFC 3834: an automatic message; well-behaved autoresponders stay silent.
            .raw_header(header("Auto-Submitted", "auto-generated".to_owned()))
            .raw_header(header("Content-Language", "it".to_owned()));
        if self.urgent {
            // Clients disagree on which header they read: Outlook `Importance` and
            // `X-Priority`, RFC 2156 `Priority`. Sending all three covers them.
            builder = builder
                .raw_header(header("Importance", "high".to_owned()))
                .raw_header(header("X-Priority", "1".to_owned()))
                .raw_header(header("Priority", "urgent".to_owned()));
        }
        if self.reminder {
            builder = builder.raw_header(header("X-Raccordo-Reminder", "1".to_owned()));
        }
        // Only an https URL of printable ASCII can be a header's angle-bracketed URI.
        if let Some(url) = self
            .list_unsubscribe
            .as_deref()
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .filter(|u| {
                u.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>')
            })
        {
            builder = builder
                .raw_header(header("List-Unsubscribe", format!("<{url}>")))
                .raw_header(header(
                    "List-Unsubscribe-Post",
                    "List-Unsubscribe=One-Click".to_owned(),
                ));
        }
        builder
            .multipart(MultiPart::alternative_plain_html(
                self.text.clone(),
                self.html.clone(),
            ))
            .map_err(BuildError::Assemble)
    }
}

/// The recipient's display name, if it can be one: none when empty or when it holds a
/// control character (the address alone still reaches the recipient).
pub fn display_name(name: Option<&str>) -> Option<String> {
    let name = name?.trim();
    if name.is_empty() || name.chars().any(char::is_control) {
        return None;
    }
    Some(name.to_owned())
}

/// `text` for a header: each control character (CR, LF, TAB, NUL, C1, …) a space.
fn header_text(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn header(name: &'static str, value: String) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
}

/// `housing.offered`, `quota.monthly_report`: safe to put in a header unencoded.
fn is_kind_token(kind: &str) -> bool {
    !kind.is_empty()
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// RFC 5322 §3.6.4 `msg-id`, checked loosely: `<left@right>`, printable ASCII, no spaces.
fn is_message_id(id: &str) -> bool {
    id.strip_prefix('<')
        .and_then(|rest| rest.strip_suffix('>'))
        .and_then(|inner| inner.split_once('@'))
        .is_some_and(|(left, right)| {
            let printable = |s: &str| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_graphic() && !b"<>@".contains(&b))
            };
            printable(left) && printable(right)
        })
}

#[cfg(test)]
mod tests {
    use raccordo_smtp_sink::ReceivedMail;

    use super::*;

    fn sample(urgent: bool) -> OutgoingEmail {
        let notification_id = Uuid::from_u128(0x0193_8c2e_5d4f_7a10_8b2c_3d4e_5f60_7182);
        OutgoingEmail {
            from: "Raccordo <raccordo@cittametropolitana.mi.example>".into(),
            to: "Ufficio.Accoglienza@Prefettura.example".into(),
            to_name: Some("Ufficio accoglienza".into()),
            subject: "Nuova disponibilità di alloggio — Sesto San Giovanni".into(),
            text: "Gentile referente,\nè disponibile un alloggio.\n".into(),
            html: "<p>Gentile referente,</p><p>è disponibile un alloggio.</p>".into(),
            kind: "housing.offered".into(),
            notification_id,
            message_id: message_id_for(
                notification_id,
                "Ufficio.Accoglienza@Prefettura.example",
                "raccordo.example",
            ),
            urgent,
            reminder: false,
            list_unsubscribe: None,
            digest: false,
        }
    }

    /// Parses the bytes lettre would put on the wire, with the same reader the tests use
    /// for mails that went through SMTP.
    fn formatted(email: &OutgoingEmail) -> ReceivedMail {
        let message = email.to_message().expect("valid email");
        ReceivedMail {
            from: String::new(),
            to: Vec::new(),
            data: String::from_utf8(message.formatted()).expect("utf-8 message"),
        }
    }

    #[test]
    fn message_id_is_stable_for_a_pair_and_ignores_address_case() {
        let id = Uuid::from_u128(42);

        let first = message_id_for(id, "Mario.Rossi@Comune.example", "raccordo.example");
        let again = message_id_for(id, "mario.rossi@comune.example", "raccordo.example");
        let other_recipient = message_id_for(id, "anna@comune.example", "raccordo.example");
        let other_notification = message_id_for(
            Uuid::from_u128(43),
            "mario.rossi@comune.example",
            "raccordo.example",
        );

        assert_eq!(first, again);
        assert_ne!(first, other_recipient);
        assert_ne!(first, other_notification);
        let hash = first
            .strip_prefix(&format!("<{id}."))
            .and_then(|rest| rest.strip_suffix("@raccordo.example>"))
            .expect("shape <id.hash@domain>");
        assert_eq!(hash.len(), 16);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!first.to_lowercase().contains("mario"));
    }

    #[test]
    fn the_message_carries_every_contract_header() {
        let email = sample(false);

        let mail = formatted(&email);

        assert_eq!(
            mail.header("X-Raccordo-Kind").as_deref(),
            Some("housing.offered")
        );
        assert_eq!(
            mail.header("X-Raccordo-Notification"),
            Some(email.notification_id.to_string())
        );
        assert_eq!(mail.header("Message-ID"), Some(email.message_id.clone()));
        assert_eq!(mail.subject(), Some(email.subject.clone()));
        assert_eq!(
            mail.header("Auto-Submitted").as_deref(),
            Some("auto-generated")
        );
        assert!(
            mail.header("To")
                .is_some_and(|to| to.contains("<Ufficio.Accoglienza@Prefettura.example>"))
        );
        assert!(
            mail.header("Content-Type")
                .is_some_and(|ct| ct.starts_with("multipart/alternative"))
        );
        assert_eq!(mail.text_body(), Some(email.text.clone()));
        assert_eq!(mail.html_body(), Some(email.html.clone()));
        assert_eq!(mail.header("Importance"), None);
        assert_eq!(mail.header("X-Priority"), None);
    }

    #[test]
    fn the_message_id_is_the_same_on_every_build() {
        let email = sample(false);

        let first = formatted(&email).header("Message-ID");
        let second = formatted(&email).header("Message-ID");

        assert_eq!(first, second);
        assert_eq!(first, Some(email.message_id));
    }

    #[test]
    fn an_urgent_email_carries_the_priority_headers() {
        let mail = formatted(&sample(true));

        assert_eq!(mail.header("Importance").as_deref(), Some("high"));
        assert_eq!(mail.header("X-Priority").as_deref(), Some("1"));
        assert_eq!(mail.header("Priority").as_deref(), Some("urgent"));
        assert_eq!(mail.header("X-Raccordo-Reminder"), None);
    }

    #[test]
    fn a_reminder_says_so_with_a_message_id_of_its_own() {
        let email = sample(true);
        let reminder = OutgoingEmail {
            reminder: true,
            message_id: reminder_message_id_for(
                email.notification_id,
                &email.to,
                "raccordo.example",
            ),
            ..email.clone()
        };

        let mail = formatted(&reminder);

        assert_eq!(mail.header("X-Raccordo-Reminder").as_deref(), Some("1"));
        assert_ne!(mail.header("Message-ID"), Some(email.message_id.clone()));
        assert_eq!(
            mail.header("X-Raccordo-Notification"),
            Some(email.notification_id.to_string())
        );
        assert!(is_message_id(&reminder.message_id));
    }

    #[test]
    fn a_display_name_with_a_control_character_is_left_out_and_the_address_kept() {
        for name in [
            "Mario\r\nBcc: intruso@evil.example",
            "Mario\nRossi",
            "Mario\rRossi",
            "Mario\0",
            "Mario\tRossi",
            "Mario\u{1b}[2J",
            "Mario\u{7f}",
            "Mario\u{85}Rossi",
            "Mario\u{9b}",
        ] {
            let email = OutgoingEmail {
                to_name: Some(name.into()),
                ..sample(false)
            };

            let mail = formatted(&email);

            let to = mail.header("To").expect("a To header");
            assert_eq!(to, "Ufficio.Accoglienza@Prefettura.example", "{name:?}");
            assert_eq!(mail.header("Bcc"), None, "{name:?}");
            assert!(!mail.data.contains("intruso"), "{name:?}");
        }
        assert_eq!(display_name(Some("  ")), None);
        assert_eq!(display_name(Some(" Ufficio ")), Some("Ufficio".into()));
    }

    #[test]
    fn control_characters_anywhere_in_the_email_never_make_lettre_panic() {
        let nasty = "a\r\nBcc: intruso@evil.example\0\u{7}\u{85}\u{9b}\tb";
        let email = OutgoingEmail {
            to_name: Some(nasty.into()),
            subject: format!("Oggetto {nasty}"),
            text: format!("Testo {nasty}"),
            html: format!("<p>{nasty}</p>"),
            ..sample(true)
        };

        let built = std::panic::catch_unwind(|| email.to_message().map(|m| m.formatted()));

        let bytes = built.expect("no panic").expect("built");
        let mail = ReceivedMail {
            from: String::new(),
            to: Vec::new(),
            data: String::from_utf8(bytes).expect("utf-8"),
        };
        assert_eq!(mail.header("Bcc"), None);
        assert!(
            mail.subject()
                .is_some_and(|s| s.starts_with("Oggetto a  Bcc")),
            "{:?}",
            mail.subject()
        );
        let bad_from = OutgoingEmail {
            from: "Raccordo\r\nBcc: x@evil.example <raccordo@cm.example>".into(),
            ..sample(false)
        };
        assert!(matches!(
            bad_from.to_message(),
            Err(BuildError::FromControl)
        ));
    }

    #[test]
    fn malformed_fields_are_build_errors() {
        let bad_to = OutgoingEmail {
            to: "not an address".into(),
            ..sample(false)
        };
        let bad_from = OutgoingEmail {
            from: "Raccordo".into(),
            ..sample(false)
        };
        let bad_kind = OutgoingEmail {
            kind: "housing.offered\r\nBcc: x@example.org".into(),
            ..sample(false)
        };
        let bad_id = OutgoingEmail {
            message_id: "no-brackets@example.org".into(),
            ..sample(false)
        };

        assert!(matches!(bad_to.to_message(), Err(BuildError::To(_))));
        assert!(matches!(bad_from.to_message(), Err(BuildError::From(_))));
        assert!(matches!(bad_kind.to_message(), Err(BuildError::Kind)));
        assert!(matches!(bad_id.to_message(), Err(BuildError::MessageId)));
    }
}
