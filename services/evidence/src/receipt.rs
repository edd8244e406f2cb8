//! A PEC receipt as it arrives in the mailbox: an email whose headers say what it is
//! (`X-Ricevuta`, `X-Riferimento-Message-ID`, `X-TipoRicevuta`) and whose `daticert.xml`
//! attachment certifies it. Parsed with mail-parser; the two must agree, or the message is
//! not taken as a receipt.
//!
//! Only a `daticert.xml` among the receipt's own parts counts: one inside the original
//! message (`postacert.eml`, attached to complete receipts) is the sender's, not the
//! provider's.

use mail_parser::{MessageParser, MimeHeaders, PartType};

use crate::daticert::{self, Daticert, DaticertError, ReceiptType};

/// The largest receipt read; larger messages are not downloaded (a complete delivery
/// receipt carries the original message, a few tens of KiB for the hub's emails).
pub const MAX_RECEIPT_BYTES: u32 = 2 * 1024 * 1024;

/// A receipt read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Its type (header and certificate agree).
    pub kind: ReceiptType,
    /// The `Message-ID` of the message it is about, angle brackets included.
    pub reference: String,
    /// `X-TipoRicevuta` (`completa`, `breve`, `sintetica`), when given.
    pub tipo_ricevuta: Option<String>,
    /// What its `daticert.xml` certifies.
    pub cert: Daticert,
}

/// Why a message is not taken as a receipt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("larger than {MAX_RECEIPT_BYTES} bytes")]
    TooLarge,
    #[error("not a MIME message")]
    NotMime,
    #[error("no X-Ricevuta header: not a PEC receipt")]
    NotAReceipt,
    #[error("unknown receipt type")]
    UnknownType,
    #[error("no X-Riferimento-Message-ID header")]
    NoReference,
    #[error("no daticert.xml")]
    NoDaticert,
    #[error("more than one daticert.xml")]
    TwoDaticerts,
    #[error("daticert.xml: {0}")]
    Daticert(#[from] DaticertError),
    #[error("the headers and daticert.xml disagree on the {0}")]
    Mismatch(&'static str),
}

/// `<id>` however the id was written (with or without brackets, with spaces).
pub fn normalise_message_id(id: &str) -> String {
    let bare = id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    format!("<{bare}>")
}

/// Reads a receipt from a whole message.
///
/// # Errors
/// [`ReceiptError`]: not a receipt, or one whose parts disagree.
pub fn read(raw: &[u8]) -> Result<Receipt, ReceiptError> {
    if raw.len() > MAX_RECEIPT_BYTES as usize {
        return Err(ReceiptError::TooLarge);
    }
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(ReceiptError::NotMime)?;
    let header = |name: &str| {
        message
            .header_raw(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let kind_header = header("X-Ricevuta").ok_or(ReceiptError::NotAReceipt)?;
    let kind = ReceiptType::parse(&kind_header).ok_or(ReceiptError::UnknownType)?;
    let reference = header("X-Riferimento-Message-ID")
        .map(|r| normalise_message_id(&r))
        .ok_or(ReceiptError::NoReference)?;
    let tipo_ricevuta = header("X-TipoRicevuta");

    let mut certs = message.parts.iter().filter(|part| {
        !matches!(part.body, PartType::Message(_) | PartType::Multipart(_))
            && part
                .attachment_name()
                .or_else(|| part.content_type().and_then(|ct| ct.attribute("name")))
                .is_some_and(|name| name.trim().eq_ignore_ascii_case("daticert.xml"))
    });
    let part = certs.next().ok_or(ReceiptError::NoDaticert)?;
    if certs.next().is_some() {
        return Err(ReceiptError::TwoDaticerts);
    }
    let cert = daticert::parse(part.contents())?;
    if cert.receipt_type() != Some(kind) {
        return Err(ReceiptError::Mismatch("type"));
    }
    if normalise_message_id(&cert.msgid) != reference {
        return Err(ReceiptError::Mismatch("message id"));
    }
    Ok(Receipt {
        kind,
        reference,
        tipo_ricevuta,
        cert,
    })
}
