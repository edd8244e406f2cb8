//! A received mail and the small amount of MIME needed to read it back in tests: unfolded
//! headers (RFC 5322 §2.2.3), encoded-word subjects (RFC 2047), and the text/plain and
//! text/html parts of a multipart message in quoted-printable or base64 (RFC 2045).
//!
//! Decoding is lenient on purpose: a test wants to see what arrived, so malformed input is
//! passed through rather than rejected.

/// One mail as the sink received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The envelope sender (`MAIL FROM`), without angle brackets; empty for `<>`.
    pub from: String,
    /// The envelope recipients (`RCPT TO`), without angle brackets, in order.
    pub to: Vec<String>,
    /// The message as transmitted after dot-unstuffing, lines ending in CRLF.
    pub data: String,
}

impl ReceivedMail {
    /// The first header called `name` (case-insensitive), unfolded and trimmed, still
    /// encoded as on the wire.
    pub fn header(&self, name: &str) -> Option<String> {
        let (head, _) = split_head_body(&self.data);
        header_in(head, name)
    }

    /// Every header as `(name, value)` pairs, unfolded, in order.
    pub fn headers(&self) -> Vec<(String, String)> {
        let (head, _) = split_head_body(&self.data);
        unfolded_headers(head)
    }

    /// The `Subject` with RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`) decoded.
    pub fn subject(&self) -> Option<String> {
        self.header("Subject").map(|s| decode_encoded_words(&s))
    }

    /// The decoded `text/plain` part (the message itself if it is not multipart), line
    /// endings normalised to `\n`.
    pub fn text_body(&self) -> Option<String> {
        let (head, body) = split_head_body(&self.data);
        find_part(head, body, "text/plain")
    }

    /// The decoded `text/html` part, line endings normalised to `\n`.
    pub fn html_body(&self) -> Option<String> {
        let (head, body) = split_head_body(&self.data);
        find_part(head, body, "text/html")
    }
}

/// Splits at the first empty line. A part that starts with an empty line has no headers.
fn split_head_body(data: &str) -> (&str, &str) {
    if let Some(body) = data.strip_prefix("\r\n") {
        return ("", body);
    }
    if let Some(at) = data.find("\r\n\r\n") {
        return (&data[..at], &data[at + 4..]);
    }
    if let Some(at) = data.find("\n\n") {
        return (&data[..at], &data[at + 2..]);
    }
    (data, "")
}

fn unfolded_headers(head: &str) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                // Unfolding removes only the line break; the leading white space stays.
                value.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.to_owned()));
        }
    }
    for (_, value) in &mut headers {
        *value = value.trim().to_owned();
    }
    headers
}

fn header_in(head: &str, name: &str) -> Option<String> {
    unfolded_headers(head)
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// A `Content-Type` value split into its lowercased media type and its parameters.
fn content_type(value: &str) -> (String, Vec<(String, String)>) {
    let mut pieces = value.split(';');
    let media = pieces
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let params = pieces
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_owned(),
            )
        })
        .collect();
    (media, params)
}

fn find_part(head: &str, body: &str, wanted: &str) -> Option<String> {
    let (media, params) =
        content_type(&header_in(head, "Content-Type").unwrap_or_else(|| "text/plain".to_owned()));
    if media.starts_with("multipart/") {
        let boundary = params.iter().find(|(k, _)| k == "boundary")?.1.clone();
        return multipart_parts(body, &boundary)
            .into_iter()
            .find_map(|part| {
                let (head, body) = split_head_body(&part);
                find_part(head, body, wanted)
            });
    }
    if media != wanted {
        return None;
    }
    let encoding = header_in(head, "Content-Transfer-Encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let bytes = match encoding.as_str() {
        "quoted-printable" => decode_quoted_printable(body.as_bytes(), false),
        "base64" => decode_base64(body.as_bytes()),
        _ => body.as_bytes().to_vec(),
    };
    Some(String::from_utf8_lossy(&bytes).replace("\r\n", "\n"))
}

/// The body parts between `--boundary` delimiter lines (RFC 2046 §5.1.1). The line break
/// before a delimiter belongs to the delimiter, so parts are joined without a trailing CRLF.
fn multipart_parts(body: &str, boundary: &str) -> Vec<String> {
    let delimiter = format!("--{boundary}");
    let closing = format!("--{boundary}--");
    let mut parts = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in body.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim_end() == closing {
            break;
        }
        if line.trim_end() == delimiter {
            if let Some(lines) = current.take() {
                parts.push(lines.join("\r\n"));
            }
            current = Some(Vec::new());
        } else if let Some(lines) = current.as_mut() {
            lines.push(line);
        }
    }
    if let Some(lines) = current {
        parts.push(lines.join("\r\n"));
    }
    parts
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Quoted-printable (RFC 2045 §6.7); with `underscore_is_space` the RFC 2047 "Q" variant.
fn decode_quoted_printable(input: &[u8], underscore_is_space: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'=' => {
                let rest = &input[i + 1..];
                if rest.starts_with(b"\r\n") {
                    i += 3; // soft line break
                } else if rest.starts_with(b"\n") {
                    i += 2;
                } else if let (Some(hi), Some(lo)) = (
                    rest.first().copied().and_then(hex_value),
                    rest.get(1).copied().and_then(hex_value),
                ) {
                    out.push(hi << 4 | lo);
                    i += 3;
                } else {
                    out.push(b'=');
                    i += 1;
                }
            }
            b'_' if underscore_is_space => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// Standard base64 (RFC 4648 §4), skipping line breaks and anything outside the alphabet.
fn decode_base64(input: &[u8]) -> Vec<u8> {
    fn value(byte: u8) -> Option<u32> {
        match byte {
            b'A'..=b'Z' => Some(u32::from(byte - b'A')),
            b'a'..=b'z' => Some(u32::from(byte - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(byte - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let mut accumulator = 0u32;
    let mut bits = 0;
    for &byte in input {
        if byte == b'=' {
            break;
        }
        let Some(v) = value(byte) else { continue };
        accumulator = (accumulator << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((accumulator >> bits) as u8);
            accumulator &= (1 << bits) - 1;
        }
    }
    out
}

/// Decodes one `charset?encoding?text` encoded word; `None` if it is not one.
fn decode_word(word: &str) -> Option<String> {
    let mut pieces = word.splitn(3, '?');
    let charset = pieces.next()?.to_ascii_lowercase();
    let encoding = pieces.next()?.to_ascii_lowercase();
    let text = pieces.next()?;
    let bytes = match encoding.as_str() {
        "b" => decode_base64(text.as_bytes()),
        "q" => decode_quoted_printable(text.as_bytes(), true),
        _ => return None,
    };
    // RFC 2231 allows a language after `*` in the charset: `utf-8*it`.
    let charset = charset.split('*').next().unwrap_or_default();
    Some(match charset {
        "iso-8859-1" | "latin1" => bytes.iter().map(|&b| char::from(b)).collect(),
        _ => String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// The length of `charset?encoding?text` before its closing `?=`. The closing marker is
/// searched after the two inner question marks, since `?=` may also start a Q-encoded text
/// (`=?utf-8?q?=3D…?=`).
fn encoded_word_len(inner: &str) -> Option<usize> {
    let second_mark = inner.match_indices('?').nth(1)?.0;
    let text_len = inner[second_mark + 1..].find("?=")?;
    Some(second_mark + 1 + text_len)
}

/// Decodes every RFC 2047 encoded word in a header value. White space between two adjacent
/// encoded words is dropped (§6.2); everything else is kept as is.
fn decode_encoded_words(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let inner = &rest[start + 2..];
        let decoded = encoded_word_len(inner)
            .and_then(|len| decode_word(&inner[..len]).map(|text| (text, start + 2 + len + 2)));
        match decoded {
            Some((text, consumed)) => {
                let gap = &rest[..start];
                if !(after_word && gap.chars().all(char::is_whitespace)) {
                    out.push_str(gap);
                }
                out.push_str(&text);
                rest = &rest[consumed..];
                after_word = true;
            }
            None => {
                out.push_str(&rest[..start + 2]);
                rest = &rest[start + 2..];
                after_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(data: &str) -> ReceivedMail {
        ReceivedMail {
            from: "a@example.org".into(),
            to: vec!["b@example.org".into()],
            data: data.into(),
        }
    }

    #[test]
    fn headers_are_found_case_insensitively_and_unfolded() {
        let m = mail("X-Long: one\r\n two\r\n\tthree\r\nSubject: hi\r\n\r\nbody\r\n");
        assert_eq!(m.header("x-long").as_deref(), Some("one two\tthree"));
        assert_eq!(m.header("SUBJECT").as_deref(), Some("hi"));
        assert_eq!(m.header("Missing"), None);
    }

    #[test]
    fn encoded_word_subjects_are_decoded() {
        let b = mail("Subject: =?utf-8?b?Q2l0dMOg?= =?utf-8?b?IGRpIE1pbGFubw==?=\r\n\r\n");
        assert_eq!(b.subject().as_deref(), Some("Città di Milano"));
        let q = mail("Subject: Avviso: =?UTF-8?Q?citt=C3=A0_metropolitana?= ok\r\n\r\n");
        assert_eq!(
            q.subject().as_deref(),
            Some("Avviso: città metropolitana ok")
        );
        let plain = mail("Subject: a =? b\r\n\r\n");
        assert_eq!(plain.subject().as_deref(), Some("a =? b"));
    }

    #[test]
    fn multipart_alternative_parts_are_decoded() {
        let data = "Content-Type: multipart/alternative; boundary=\"XYZ\"\r\n\
                    \r\n\
                    preamble\r\n\
                    --XYZ\r\n\
                    Content-Type: text/plain; charset=utf-8\r\n\
                    Content-Transfer-Encoding: quoted-printable\r\n\
                    \r\n\
                    Citt=C3=A0 lunga =\r\nriga\r\nseconda\r\n\
                    --XYZ\r\n\
                    Content-Type: text/html; charset=utf-8\r\n\
                    Content-Transfer-Encoding: base64\r\n\
                    \r\n\
                    PHA+Q2l0dMOgPC9wPg==\r\n\
                    --XYZ--\r\n";
        let m = mail(data);
        assert_eq!(m.text_body().as_deref(), Some("Città lunga riga\nseconda"));
        assert_eq!(m.html_body().as_deref(), Some("<p>Città</p>"));
    }

    #[test]
    fn a_single_part_message_is_its_own_text_body() {
        let m = mail("Subject: x\r\n\r\nhello\r\n");
        assert_eq!(m.text_body().as_deref(), Some("hello\n"));
        assert_eq!(m.html_body(), None);
    }
}
