//! `daticert.xml`, the certification data every PEC receipt carries (DM 2 novembre 2005,
//! technical rules of PEC, and its `postacert.dtd`): which receipt it is, for which
//! message, when, by which provider, and for which recipient.
//!
//! ```xml
//! <postacert tipo="avvenuta-consegna" errore="nessuno">
//!   <intestazione><mittente>…</mittente><destinatari tipo="certificato">…</destinatari>
//!     <risposte>…</risposte><oggetto>…</oggetto></intestazione>
//!   <dati><gestore-emittente>…</gestore-emittente>
//!     <data zona="+0100"><giorno>02/11/2026</giorno><ora>09:00:00</ora></data>
//!     <identificativo>…</identificativo><msgid>&lt;…&gt;</msgid>
//!     <ricevuta tipo="completa"/><consegna>…</consegna>
//!     <errore-esteso>…</errore-esteso></dati>
//! </postacert>
//! ```
//!
//! A receipt comes from outside, so the parser trusts nothing: the document is at most
//! [`MAX_BYTES`], nested at most [`MAX_DEPTH`] deep, each field at most [`MAX_FIELD`]
//! characters and at most [`MAX_RECIPIENTS`] recipients; a `<!DOCTYPE>` (real receipts name
//! `postacert.dtd`) is allowed but never read, and one that declares an entity refuses the
//! document, as does any reference to an entity other than XML's five and character
//! references. Nothing is ever expanded, fetched or included (quick-xml does none of it).

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};

/// The largest `daticert.xml` read (real ones are 1–2 KiB).
pub const MAX_BYTES: usize = 64 * 1024;
/// The deepest nesting read (real ones have 3 levels).
pub const MAX_DEPTH: usize = 8;
/// The longest field kept, in characters.
pub const MAX_FIELD: usize = 2048;
/// The most `<destinatari>` read.
pub const MAX_RECIPIENTS: usize = 256;

/// The receipt types of the PEC rules (`postacert/@tipo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptType {
    /// The sender's provider took the message.
    Accettazione,
    /// The sender's provider refused it (formal errors, a virus).
    NonAccettazione,
    /// The recipient's provider took it in charge (between providers).
    PresaInCarico,
    /// Delivered into the recipient's mailbox: the only proof of delivery.
    AvvenutaConsegna,
    /// It could not be delivered.
    ErroreConsegna,
    /// No delivery within 12 hours: a warning before the error.
    PreavvisoErroreConsegna,
    /// The recipient's provider found a virus.
    RilevazioneVirus,
}

impl ReceiptType {
    /// The name in `daticert.xml` and in `X-Ricevuta`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptType::Accettazione => "accettazione",
            ReceiptType::NonAccettazione => "non-accettazione",
            ReceiptType::PresaInCarico => "presa-in-carico",
            ReceiptType::AvvenutaConsegna => "avvenuta-consegna",
            ReceiptType::ErroreConsegna => "errore-consegna",
            ReceiptType::PreavvisoErroreConsegna => "preavviso-errore-consegna",
            ReceiptType::RilevazioneVirus => "rilevazione-virus",
        }
    }

    /// Reads a type name.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.trim() {
            "accettazione" => ReceiptType::Accettazione,
            "non-accettazione" => ReceiptType::NonAccettazione,
            "presa-in-carico" => ReceiptType::PresaInCarico,
            "avvenuta-consegna" => ReceiptType::AvvenutaConsegna,
            "errore-consegna" => ReceiptType::ErroreConsegna,
            "preavviso-errore-consegna" => ReceiptType::PreavvisoErroreConsegna,
            "rilevazione-virus" => ReceiptType::RilevazioneVirus,
            _ => return None,
        })
    }
}

/// What a `daticert.xml` says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Daticert {
    /// `postacert/@tipo`, as written (see [`Daticert::receipt_type`]).
    pub tipo: String,
    /// `postacert/@errore`: `nessuno`, `no-dest`, `no-dominio`, `virus`, `altro`.
    pub errore: String,
    /// `intestazione/mittente`.
    pub mittente: String,
    /// `intestazione/destinatari`, in order.
    pub destinatari: Vec<String>,
    /// `intestazione/oggetto`.
    pub oggetto: String,
    /// `dati/gestore-emittente`.
    pub gestore: String,
    /// `dati/data`: `giorno`, `ora` and `@zona` as written (`02/11/2026 09:00:00 +0100`).
    pub data: String,
    /// `dati/identificativo`: the receipt's own id at its provider.
    pub identificativo: String,
    /// `dati/msgid`: the `Message-ID` of the message the receipt is about.
    pub msgid: String,
    /// `dati/ricevuta/@tipo` (`completa`, `breve`, `sintetica`), on delivery receipts.
    pub ricevuta: Option<String>,
    /// `dati/consegna`: the address delivered to (or not), on delivery receipts.
    pub consegna: Option<String>,
    /// `dati/errore-esteso`: the provider's explanation of an error.
    pub errore_esteso: Option<String>,
}

impl Daticert {
    /// The receipt type, if it is one of the rules'.
    pub fn receipt_type(&self) -> Option<ReceiptType> {
        ReceiptType::parse(&self.tipo)
    }
}

/// Why a `daticert.xml` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DaticertError {
    #[error("larger than {MAX_BYTES} bytes")]
    TooLarge,
    #[error("not well-formed XML: {0}")]
    Xml(String),
    #[error("nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("a field longer than {MAX_FIELD} characters")]
    FieldTooLong,
    #[error("more than {MAX_RECIPIENTS} recipients")]
    TooManyRecipients,
    #[error("the document type declares entities")]
    EntityDeclared,
    #[error("a reference to an entity other than XML's own")]
    UnknownEntity,
    #[error("the root element is not postacert")]
    NotPostacert,
    #[error("no {0}")]
    Missing(&'static str),
}

/// Where a text being read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Mittente,
    Destinatari,
    Oggetto,
    Gestore,
    Giorno,
    Ora,
    Identificativo,
    Msgid,
    Consegna,
    ErroreEsteso,
}

fn field_of(path: &[Vec<u8>]) -> Option<Field> {
    let names: Vec<&[u8]> = path.iter().map(Vec::as_slice).collect();
    Some(match names.as_slice() {
        [b"postacert", b"intestazione", b"mittente"] => Field::Mittente,
        [b"postacert", b"intestazione", b"destinatari"] => Field::Destinatari,
        [b"postacert", b"intestazione", b"oggetto"] => Field::Oggetto,
        [b"postacert", b"dati", b"gestore-emittente"] => Field::Gestore,
        [b"postacert", b"dati", b"data", b"giorno"] => Field::Giorno,
        [b"postacert", b"dati", b"data", b"ora"] => Field::Ora,
        [b"postacert", b"dati", b"identificativo"] => Field::Identificativo,
        [b"postacert", b"dati", b"msgid"] => Field::Msgid,
        [b"postacert", b"dati", b"consegna"] => Field::Consegna,
        [b"postacert", b"dati", b"errore-esteso"] => Field::ErroreEsteso,
        _ => return None,
    })
}

/// What is gathered while reading.
#[derive(Default)]
struct Gathered {
    cert: Daticert,
    zona: String,
    giorno: String,
    ora: String,
    /// The `<destinatari>` being read; pushed at its end.
    destinatario: String,
    root_seen: bool,
}

impl Gathered {
    fn text_of(&mut self, field: Field) -> &mut String {
        match field {
            Field::Mittente => &mut self.cert.mittente,
            Field::Destinatari => &mut self.destinatario,
            Field::Oggetto => &mut self.cert.oggetto,
            Field::Gestore => &mut self.cert.gestore,
            Field::Giorno => &mut self.giorno,
            Field::Ora => &mut self.ora,
            Field::Identificativo => &mut self.cert.identificativo,
            Field::Msgid => &mut self.cert.msgid,
            Field::Consegna => self.cert.consegna.get_or_insert_with(String::new),
            Field::ErroreEsteso => self.cert.errore_esteso.get_or_insert_with(String::new),
        }
    }

    fn push(&mut self, field: Field, text: &str) -> Result<(), DaticertError> {
        let into = self.text_of(field);
        if into.chars().count() + text.chars().count() > MAX_FIELD {
            return Err(DaticertError::FieldTooLong);
        }
        into.push_str(text);
        Ok(())
    }

    fn start(&mut self, path: &[Vec<u8>], element: &BytesStart<'_>) -> Result<(), DaticertError> {
        let names: Vec<&[u8]> = path.iter().map(Vec::as_slice).collect();
        match names.as_slice() {
            [b"postacert"] => {
                self.root_seen = true;
                self.cert.tipo = attribute(element, b"tipo")?.unwrap_or_default();
                self.cert.errore = attribute(element, b"errore")?.unwrap_or_default();
            }
            [other] if *other != b"postacert" => return Err(DaticertError::NotPostacert),
            [b"postacert", b"intestazione", b"destinatari"] => {
                if self.cert.destinatari.len() >= MAX_RECIPIENTS {
                    return Err(DaticertError::TooManyRecipients);
                }
                self.destinatario.clear();
            }
            [b"postacert", b"dati", b"data"] => {
                self.zona = attribute(element, b"zona")?.unwrap_or_default();
            }
            [b"postacert", b"dati", b"ricevuta"] => {
                self.cert.ricevuta = attribute(element, b"tipo")?;
            }
            [b"postacert", b"dati", b"consegna"] => {
                self.cert.consegna.get_or_insert_with(String::new);
            }
            _ => {}
        }
        Ok(())
    }

    fn end(&mut self, path: &[Vec<u8>]) {
        if field_of(path) == Some(Field::Destinatari) {
            let address = std::mem::take(&mut self.destinatario);
            self.cert.destinatari.push(address.trim().to_owned());
        }
    }

    fn finish(mut self) -> Result<Daticert, DaticertError> {
        if !self.root_seen {
            return Err(DaticertError::NotPostacert);
        }
        let trim = |s: &mut String| *s = s.trim().to_owned();
        trim(&mut self.cert.mittente);
        trim(&mut self.cert.oggetto);
        trim(&mut self.cert.gestore);
        trim(&mut self.cert.identificativo);
        trim(&mut self.cert.msgid);
        if let Some(c) = self.cert.consegna.as_mut() {
            trim(c);
        }
        if let Some(e) = self.cert.errore_esteso.as_mut() {
            trim(e);
        }
        self.cert.data = [self.giorno.trim(), self.ora.trim(), self.zona.trim()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        if self.cert.tipo.is_empty() {
            return Err(DaticertError::Missing("postacert/@tipo"));
        }
        if self.cert.msgid.is_empty() {
            return Err(DaticertError::Missing("dati/msgid"));
        }
        Ok(self.cert)
    }
}

/// An attribute's value, unescaped (XML's own entities only).
fn attribute(element: &BytesStart<'_>, name: &[u8]) -> Result<Option<String>, DaticertError> {
    for attr in element.attributes() {
        let attr = attr.map_err(|e| DaticertError::Xml(e.to_string()))?;
        if attr.key.as_ref() == name {
            let value = attr
                .unescape_value()
                .map_err(|_| DaticertError::UnknownEntity)?;
            if value.chars().count() > MAX_FIELD {
                return Err(DaticertError::FieldTooLong);
            }
            return Ok(Some(value.trim().to_owned()));
        }
    }
    Ok(None)
}

/// XML's five entities and character references; anything else is refused, never expanded.
fn resolve_reference(reference: &quick_xml::events::BytesRef<'_>) -> Result<String, DaticertError> {
    match reference.resolve_char_ref() {
        Ok(Some(c)) => Ok(c.to_string()),
        Ok(None) => {
            let name = reference
                .decode()
                .map_err(|e| DaticertError::Xml(e.to_string()))?;
            resolve_predefined_entity(&name)
                .map(str::to_owned)
                .ok_or(DaticertError::UnknownEntity)
        }
        Err(_) => Err(DaticertError::UnknownEntity),
    }
}

/// A document type may name `postacert.dtd` (never read); an internal subset, where
/// entities are declared (the "billion laughs"), makes the document no receipt.
fn check_doctype(doctype: &[u8]) -> Result<(), DaticertError> {
    if doctype.contains(&b'[')
        || doctype
            .windows(b"<!ENTITY".len())
            .any(|w| w.eq_ignore_ascii_case(b"<!ENTITY"))
    {
        return Err(DaticertError::EntityDeclared);
    }
    Ok(())
}

/// Parses a `daticert.xml`.
///
/// # Errors
/// [`DaticertError`]: too large, malformed, hostile (entities), or not a `postacert`.
pub fn parse(xml: &[u8]) -> Result<Daticert, DaticertError> {
    if xml.len() > MAX_BYTES {
        return Err(DaticertError::TooLarge);
    }
    let mut reader = Reader::from_reader(xml);
    reader.config_mut().check_end_names = true;
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut gathered = Gathered::default();
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| DaticertError::Xml(e.to_string()))?;
        match event {
            Event::Start(element) => {
                if path.len() >= MAX_DEPTH {
                    return Err(DaticertError::TooDeep);
                }
                path.push(element.local_name().as_ref().to_vec());
                gathered.start(&path, &element)?;
            }
            Event::Empty(element) => {
                if path.len() >= MAX_DEPTH {
                    return Err(DaticertError::TooDeep);
                }
                path.push(element.local_name().as_ref().to_vec());
                gathered.start(&path, &element)?;
                gathered.end(&path);
                path.pop();
            }
            Event::End(_) => {
                gathered.end(&path);
                path.pop();
            }
            Event::Text(text) => {
                if let Some(field) = field_of(&path) {
                    let text = text
                        .decode()
                        .map_err(|e| DaticertError::Xml(e.to_string()))?;
                    gathered.push(field, &text)?;
                }
            }
            Event::CData(data) => {
                if let Some(field) = field_of(&path) {
                    let text = data
                        .decode()
                        .map_err(|e| DaticertError::Xml(e.to_string()))?;
                    gathered.push(field, &text)?;
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = resolve_reference(&reference)?;
                if let Some(field) = field_of(&path) {
                    gathered.push(field, &resolved)?;
                }
            }
            Event::DocType(doctype) => check_doctype(&doctype)?,
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
        buf.clear();
    }
    if !path.is_empty() {
        return Err(DaticertError::Xml("unclosed elements".into()));
    }
    gathered.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const DELIVERED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE postacert SYSTEM "postacert.dtd">
<postacert tipo="avvenuta-consegna" errore="nessuno">
  <intestazione>
    <mittente>raccordo@pec.cittametropolitana.mi.it</mittente>
    <destinatari tipo="certificato">protocollo@pec.comune.milano.it</destinatari>
    <risposte>raccordo@pec.cittametropolitana.mi.it</risposte>
    <oggetto>[URGENTE] Sfratto imminente &amp; accesso</oggetto>
  </intestazione>
  <dati>
    <gestore-emittente>Gestore PEC di prova</gestore-emittente>
    <data zona="+0100">
      <giorno>02/11/2026</giorno>
      <ora>09:00:05</ora>
    </data>
    <identificativo>opec210.20261102090005.1234.56.1.1@pec.gestore.example</identificativo>
    <msgid>&lt;a1b2.c3d4@cittametropolitana.mi.example&gt;</msgid>
    <ricevuta tipo="completa" />
    <consegna>protocollo@pec.comune.milano.it</consegna>
  </dati>
</postacert>
"#;

    #[test]
    fn a_delivery_receipt_is_read_field_by_field() {
        let cert = parse(DELIVERED.as_bytes()).expect("a real-shaped receipt");
        assert_eq!(cert.receipt_type(), Some(ReceiptType::AvvenutaConsegna));
        assert_eq!(cert.errore, "nessuno");
        assert_eq!(cert.mittente, "raccordo@pec.cittametropolitana.mi.it");
        assert_eq!(cert.destinatari, vec!["protocollo@pec.comune.milano.it"]);
        assert_eq!(cert.oggetto, "[URGENTE] Sfratto imminente & accesso");
        assert_eq!(cert.gestore, "Gestore PEC di prova");
        assert_eq!(cert.data, "02/11/2026 09:00:05 +0100");
        assert_eq!(cert.msgid, "<a1b2.c3d4@cittametropolitana.mi.example>");
        assert_eq!(cert.ricevuta.as_deref(), Some("completa"));
        assert_eq!(
            cert.consegna.as_deref(),
            Some("protocollo@pec.comune.milano.it")
        );
        assert_eq!(cert.errore_esteso, None);
    }

    #[test]
    fn every_receipt_type_of_the_rules_is_known() {
        for name in [
            "accettazione",
            "non-accettazione",
            "presa-in-carico",
            "avvenuta-consegna",
            "errore-consegna",
            "preavviso-errore-consegna",
            "rilevazione-virus",
        ] {
            let t = ReceiptType::parse(name).expect(name);
            assert_eq!(t.as_str(), name);
        }
        assert_eq!(ReceiptType::parse("consegna"), None);
    }

    #[test]
    fn an_entity_declaration_refuses_the_document() {
        let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE postacert [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
]>
<postacert tipo="avvenuta-consegna" errore="nessuno"><dati><msgid>&lol2;</msgid></dati></postacert>"#;
        assert_eq!(parse(laughs.as_bytes()), Err(DaticertError::EntityDeclared));
    }

    #[test]
    fn an_undeclared_or_external_entity_is_never_expanded() {
        let external =
            r#"<postacert tipo="accettazione"><dati><msgid>&xxe;</msgid></dati></postacert>"#;
        assert_eq!(
            parse(external.as_bytes()),
            Err(DaticertError::UnknownEntity)
        );
        let in_attribute = r#"<postacert tipo="&xxe;"><dati><msgid>x</msgid></dati></postacert>"#;
        assert_eq!(
            parse(in_attribute.as_bytes()),
            Err(DaticertError::UnknownEntity)
        );
    }

    #[test]
    fn size_depth_and_field_limits_hold() {
        let huge = format!(
            "<postacert tipo=\"accettazione\"><dati><msgid>{}</msgid></dati></postacert>",
            "a".repeat(MAX_BYTES)
        );
        assert_eq!(parse(huge.as_bytes()), Err(DaticertError::TooLarge));
        let long = format!(
            "<postacert tipo=\"accettazione\"><dati><msgid>{}</msgid></dati></postacert>",
            "a".repeat(MAX_FIELD + 1)
        );
        assert_eq!(parse(long.as_bytes()), Err(DaticertError::FieldTooLong));
        let deep = format!(
            "<postacert tipo=\"accettazione\">{}{}</postacert>",
            "<x>".repeat(MAX_DEPTH),
            "</x>".repeat(MAX_DEPTH)
        );
        assert_eq!(parse(deep.as_bytes()), Err(DaticertError::TooDeep));
    }

    #[test]
    fn what_is_not_a_receipt_is_refused() {
        assert_eq!(
            parse(b"<html><body/></html>"),
            Err(DaticertError::NotPostacert)
        );
        assert_eq!(
            parse(b"<postacert tipo=\"accettazione\"><dati/></postacert>"),
            Err(DaticertError::Missing("dati/msgid"))
        );
        assert!(matches!(
            parse(b"<postacert tipo=\"a\"><dati><msgid>x</dati></postacert>"),
            Err(DaticertError::Xml(_))
        ));
        assert!(parse(b"").is_err());
    }
}
