//! Receipts shaped as a PEC provider writes them: the headers of the technical rules
//! (`X-Ricevuta`, `X-Riferimento-Message-ID`, `X-TipoRicevuta`), an Italian text, the
//! `daticert.xml` attachment and, on acceptance and complete delivery receipts, the
//! original message as `postacert.eml`. Not signed: the simulator has no provider's
//! certificate, and the hub does not check signatures (see the README).

use std::fmt::Write as _;

use time::OffsetDateTime;
use time::macros::format_description;

use crate::daticert::ReceiptType;

/// What one receipt says.
#[derive(Debug, Clone)]
pub struct ReceiptSpec<'a> {
    /// Its type.
    pub kind: ReceiptType,
    /// The `Message-ID` of the message it is about, angle brackets included.
    pub reference: &'a str,
    /// The sender's PEC address (`intestazione/mittente`, and the receipt's `To`).
    pub mittente: &'a str,
    /// The recipient it is about.
    pub destinatario: &'a str,
    /// The original subject.
    pub oggetto: &'a str,
    /// The provider's name (`gestore-emittente`).
    pub gestore: &'a str,
    /// The provider's mail domain (its `From` and identifiers).
    pub domain: &'a str,
    /// When.
    pub at: OffsetDateTime,
    /// `postacert/@errore`: `nessuno`, `no-dest`, `virus`, `altro`.
    pub errore: &'a str,
    /// `errore-esteso`, on errors.
    pub errore_esteso: Option<&'a str>,
    /// The original message, attached as `postacert.eml` where the rules want it.
    pub original: Option<&'a [u8]>,
    /// A number making the receipt's identifiers unique.
    pub serial: u64,
}

/// Escapes text for XML content and attribute values.
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Text for a header: no line breaks, nothing but printable characters.
fn header_text(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The receipt's own identifier at its provider.
pub fn identificativo(spec: &ReceiptSpec<'_>) -> String {
    let stamp = spec
        .at
        .format(format_description!(
            "[year][month][day][hour][minute][second]"
        ))
        .unwrap_or_default();
    format!(
        "opec-sim.{stamp}.{}.{}@{}",
        spec.serial,
        spec.kind.as_str(),
        spec.domain
    )
}

/// Day (`02/11/2026`), hour (`09:00:05`) and zone (`+0100`) as `daticert.xml` writes them.
fn date_parts(at: OffsetDateTime) -> (String, String, String) {
    let day = at
        .format(format_description!("[day]/[month]/[year]"))
        .unwrap_or_default();
    let hour = at
        .format(format_description!("[hour]:[minute]:[second]"))
        .unwrap_or_default();
    let zone = at
        .format(format_description!(
            "[offset_hour sign:mandatory][offset_minute]"
        ))
        .unwrap_or_default();
    (day, hour, zone)
}

/// The `daticert.xml` of a receipt.
pub fn daticert_xml(spec: &ReceiptSpec<'_>) -> String {
    let (day, hour, zone) = date_parts(spec.at);
    let delivery = matches!(
        spec.kind,
        ReceiptType::AvvenutaConsegna
            | ReceiptType::ErroreConsegna
            | ReceiptType::PreavvisoErroreConsegna
            | ReceiptType::RilevazioneVirus
    );
    let mut xml = String::new();
    xml.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml.push_str("<!DOCTYPE postacert SYSTEM \"postacert.dtd\">\n");
    let _ = writeln!(
        xml,
        "<postacert tipo=\"{}\" errore=\"{}\">",
        spec.kind.as_str(),
        xml_escape(spec.errore)
    );
    xml.push_str("  <intestazione>\n");
    let _ = writeln!(
        xml,
        "    <mittente>{}</mittente>",
        xml_escape(spec.mittente)
    );
    let _ = writeln!(
        xml,
        "    <destinatari tipo=\"certificato\">{}</destinatari>",
        xml_escape(spec.destinatario)
    );
    let _ = writeln!(
        xml,
        "    <risposte>{}</risposte>",
        xml_escape(spec.mittente)
    );
    let _ = writeln!(xml, "    <oggetto>{}</oggetto>", xml_escape(spec.oggetto));
    xml.push_str("  </intestazione>\n  <dati>\n");
    let _ = writeln!(
        xml,
        "    <gestore-emittente>{}</gestore-emittente>",
        xml_escape(spec.gestore)
    );
    let _ = writeln!(
        xml,
        "    <data zona=\"{zone}\">\n      <giorno>{day}</giorno>\n      <ora>{hour}</ora>\n    </data>"
    );
    let _ = writeln!(
        xml,
        "    <identificativo>{}</identificativo>",
        xml_escape(&identificativo(spec))
    );
    let _ = writeln!(xml, "    <msgid>{}</msgid>", xml_escape(spec.reference));
    if spec.kind == ReceiptType::AvvenutaConsegna {
        xml.push_str("    <ricevuta tipo=\"completa\" />\n");
    }
    if delivery {
        let _ = writeln!(
            xml,
            "    <consegna>{}</consegna>",
            xml_escape(spec.destinatario)
        );
    }
    if let Some(errore) = spec.errore_esteso {
        let _ = writeln!(
            xml,
            "    <errore-esteso>{}</errore-esteso>",
            xml_escape(errore)
        );
    }
    xml.push_str("  </dati>\n</postacert>\n");
    xml
}

/// The subject prefix and the text of each receipt type (as the providers write them).
fn wording(kind: ReceiptType) -> (&'static str, &'static str) {
    match kind {
        ReceiptType::Accettazione => (
            "ACCETTAZIONE",
            "è stato accettato dal sistema ed inoltrato.",
        ),
        ReceiptType::NonAccettazione => (
            "AVVISO DI NON ACCETTAZIONE",
            "non è stato accettato dal sistema.",
        ),
        ReceiptType::PresaInCarico => ("PRESA IN CARICO", "è stato preso in carico."),
        ReceiptType::AvvenutaConsegna => (
            "CONSEGNA",
            "è stato consegnato nella casella di destinazione.",
        ),
        ReceiptType::ErroreConsegna => (
            "AVVISO DI MANCATA CONSEGNA",
            "non è stato consegnato nella casella di destinazione.",
        ),
        ReceiptType::PreavvisoErroreConsegna => (
            "AVVISO DI MANCATA CONSEGNA ENTRO 12 ORE",
            "non risulta ancora consegnato nella casella di destinazione.",
        ),
        ReceiptType::RilevazioneVirus => (
            "PROBLEMA DI SICUREZZA",
            "contiene un virus e non è stato consegnato.",
        ),
    }
}

/// Base64 with lines of 76 characters (RFC 2045 §6.8).
fn base64_lines(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut encoded = String::with_capacity(data.len() * 4 / 3 + 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                encoded.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                encoded.push('=');
            }
        }
    }
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 76 * 2 + 2);
    for (i, c) in encoded.chars().enumerate() {
        if i > 0 && i % 76 == 0 {
            out.push_str("\r\n");
        }
        out.push(c);
    }
    out
}

/// The receipt's Italian text.
fn receipt_text(spec: &ReceiptSpec<'_>, prefix: &str, sentence: &str, id: &str) -> String {
    let (day, hour, _) = date_parts(spec.at);
    format!(
        "Ricevuta: {prefix}\r\n\r\nIl giorno {day} alle ore {hour} il messaggio\r\n\"{}\" proveniente da \"{}\"\r\ned indirizzato a \"{}\"\r\n{sentence}\r\n{}Identificativo messaggio: {id}\r\n",
        header_text(spec.oggetto),
        header_text(spec.mittente),
        header_text(spec.destinatario),
        spec.errore_esteso
            .map(|e| format!("Errore: {}\r\n", header_text(e)))
            .unwrap_or_default(),
    )
}

/// The whole receipt email, CRLF line endings.
pub fn compose_receipt(spec: &ReceiptSpec<'_>) -> Vec<u8> {
    let (prefix, sentence) = wording(spec.kind);
    let id = identificativo(spec);
    let boundary = format!("----=_PEC_{}_{}", spec.serial, spec.kind.as_str());
    let date = spec
        .at
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default();
    let mut m = String::new();
    let _ = write!(m, "Date: {date}\r\n");
    let _ = write!(
        m,
        "From: \"Per conto di: {}\" <posta-certificata@{}>\r\n",
        header_text(spec.mittente),
        spec.domain
    );
    let _ = write!(m, "To: {}\r\n", header_text(spec.mittente));
    let _ = write!(
        m,
        "Subject: {prefix}: {}\r\n",
        header_text(&spec.oggetto.replace(|c: char| !c.is_ascii(), "?"))
    );
    let _ = write!(m, "Message-ID: <{id}>\r\n");
    let _ = write!(m, "X-Ricevuta: {}\r\n", spec.kind.as_str());
    let _ = write!(
        m,
        "X-Riferimento-Message-ID: {}\r\n",
        header_text(spec.reference)
    );
    if spec.kind == ReceiptType::AvvenutaConsegna {
        m.push_str("X-TipoRicevuta: completa\r\n");
    }
    if let Some(errore) = spec.errore_esteso.filter(|_| spec.errore != "nessuno") {
        let _ = write!(m, "X-Errore: {}\r\n", header_text(errore));
    }
    m.push_str("MIME-Version: 1.0\r\n");
    let _ = write!(
        m,
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"
    );
    m.push_str("This is a multi-part message in MIME format.\r\n");
    let _ = write!(m, "--{boundary}\r\n");
    m.push_str("Content-Type: text/plain; charset=\"UTF-8\"\r\n");
    m.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
    let _ = write!(
        m,
        "{}\r\n",
        base64_lines(receipt_text(spec, prefix, sentence, &id).as_bytes())
    );
    let _ = write!(m, "--{boundary}\r\n");
    m.push_str("Content-Type: application/xml; name=\"daticert.xml\"\r\n");
    m.push_str("Content-Transfer-Encoding: base64\r\n");
    m.push_str("Content-Disposition: attachment; filename=\"daticert.xml\"\r\n\r\n");
    let _ = write!(m, "{}\r\n", base64_lines(daticert_xml(spec).as_bytes()));
    let mut out = m.into_bytes();
    if let Some(original) = spec.original.filter(|_| {
        matches!(
            spec.kind,
            ReceiptType::Accettazione | ReceiptType::AvvenutaConsegna
        )
    }) {
        let mut part = format!("--{boundary}\r\n");
        part.push_str("Content-Type: message/rfc822; name=\"postacert.eml\"\r\n");
        part.push_str("Content-Disposition: attachment; filename=\"postacert.eml\"\r\n\r\n");
        out.extend_from_slice(part.as_bytes());
        out.extend_from_slice(original);
        if !original.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipt;

    fn spec(kind: ReceiptType) -> ReceiptSpec<'static> {
        ReceiptSpec {
            kind,
            reference: "<n1.abc@cittametropolitana.mi.example>",
            mittente: "raccordo@pec.cittametropolitana.mi.example",
            destinatario: "protocollo@pec.comune.example",
            oggetto: "[URGENTE] Sfratto: accesso dell'ufficiale giudiziario",
            gestore: "Gestore PEC simulato",
            domain: "pec.sim.example",
            at: time::macros::datetime!(2026-11-02 09:00:05 +01:00),
            errore: "nessuno",
            errore_esteso: None,
            original: Some(b"Subject: x\r\n\r\nbody\r\n"),
            serial: 7,
        }
    }

    #[test]
    fn a_composed_receipt_reads_back_as_what_it_says() {
        for kind in [
            ReceiptType::Accettazione,
            ReceiptType::NonAccettazione,
            ReceiptType::AvvenutaConsegna,
            ReceiptType::ErroreConsegna,
            ReceiptType::PreavvisoErroreConsegna,
            ReceiptType::RilevazioneVirus,
        ] {
            let raw = compose_receipt(&spec(kind));
            let read = receipt::read(&raw).expect("the simulator's receipt reads");
            assert_eq!(read.kind, kind);
            assert_eq!(read.reference, "<n1.abc@cittametropolitana.mi.example>");
            assert_eq!(
                read.cert.oggetto,
                "[URGENTE] Sfratto: accesso dell'ufficiale giudiziario"
            );
            assert_eq!(read.cert.data, "02/11/2026 09:00:05 +0100");
        }
    }

    #[test]
    fn a_delivery_receipt_names_the_address_delivered_to() {
        let raw = compose_receipt(&spec(ReceiptType::AvvenutaConsegna));
        let read = receipt::read(&raw).expect("reads");
        assert_eq!(
            read.cert.consegna.as_deref(),
            Some("protocollo@pec.comune.example")
        );
        assert_eq!(read.tipo_ricevuta.as_deref(), Some("completa"));
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_lines(plain.as_bytes()), encoded);
        }
    }
}
