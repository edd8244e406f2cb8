//! What a request carries, read into a page's types or refused with the console's Italian
//! error page (issue 24): never axum's own English rejection text.
//!
//! - [`Params`]: the query string of a page that reads one. Each name at most once, only
//!   the names the page knows ([`QueryParams::NAMES`]: a misspelt filter would otherwise be
//!   silently ignored), each value at most [`MAX_VALUE_CHARS`] characters and without
//!   control characters; the page then checks each value's type and bounds.
//! - [`Fields`]: a form posted as `application/x-www-form-urlencoded`; another body is a
//!   415, a body over the route's limit a 413, a malformed or repeated field a 400.
//! - [`Segment`]: one segment of the path (an id, a code, a token) as text.
//!
//! A refusal names the parameter (cut at [`SHOWN_NAME_CHARS`]) and what is expected; it
//! never repeats the value, and the page escapes what it shows.

use std::collections::BTreeSet;

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::render::ConsoleError;

/// The longest value a query parameter may have (an email address's limit).
pub(crate) const MAX_VALUE_CHARS: usize = 320;
/// How much of a parameter's name a refusal shows.
const SHOWN_NAME_CHARS: usize = 32;

/// A page's query parameters: the struct serde fills (every field an `Option<String>`,
/// checked by the page) and the names it admits.
pub(crate) trait QueryParams: DeserializeOwned {
    const NAMES: &'static [&'static str];
}

/// A parameter's name as a refusal shows it: printable, at most [`SHOWN_NAME_CHARS`].
pub(crate) fn shown_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect();
    match clean.char_indices().nth(SHOWN_NAME_CHARS) {
        Some((at, _)) => format!("{}…", &clean[..at]),
        None => clean,
    }
}

/// The Italian 400 of a parameter: `what` says what is expected.
pub(crate) fn invalid(name: &str, what: &str) -> ConsoleError {
    ConsoleError::BadRequest(format!(
        "Parametro «{}» non valido: {what}",
        shown_name(name)
    ))
}

/// Why the pairs of a query string are not a page's parameters, if they are not.
fn check_pairs(pairs: &[(String, String)], names: &[&str]) -> Result<(), ConsoleError> {
    let mut seen = BTreeSet::new();
    for (name, value) in pairs {
        if !names.contains(&name.as_str()) {
            let admitted = names
                .iter()
                .map(|n| format!("«{n}»"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ConsoleError::BadRequest(format!(
                "Parametro «{}» non previsto da questa pagina: sono ammessi {admitted}.",
                shown_name(name)
            )));
        }
        if !seen.insert(name.as_str()) {
            return Err(ConsoleError::BadRequest(format!(
                "Parametro «{name}» ripetuto: indicarlo una volta sola."
            )));
        }
        if value.chars().count() > MAX_VALUE_CHARS {
            return Err(invalid(
                name,
                &format!("troppo lungo (al massimo {MAX_VALUE_CHARS} caratteri)."),
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(invalid(name, "contiene caratteri di controllo."));
        }
    }
    Ok(())
}

/// The query parameters of a page, checked as the module says.
pub(crate) struct Params<T>(pub(crate) T);

impl<T, S> FromRequestParts<S> for Params<T>
where
    T: QueryParams + Send,
    S: Send + Sync,
{
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ConsoleError> {
        let malformed = || {
            ConsoleError::BadRequest(
                "Parametri dell'indirizzo non validi: aprire la pagina dai suoi collegamenti o dal suo modulo."
                    .into(),
            )
        };
        let Query(pairs) =
            Query::<Vec<(String, String)>>::try_from_uri(&parts.uri).map_err(|_| malformed())?;
        check_pairs(&pairs, T::NAMES)?;
        let Query(params) = Query::<T>::try_from_uri(&parts.uri).map_err(|_| malformed())?;
        Ok(Params(params))
    }
}

/// A form posted to the console, read into `T`.
pub(crate) struct Fields<T>(pub(crate) T);

/// The console's page for a form axum could not read.
fn form_refusal(rejection: &FormRejection) -> ConsoleError {
    match rejection {
        FormRejection::InvalidFormContentType(_) => ConsoleError::Request(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Il modulo non è arrivato nel formato dei moduli web (application/x-www-form-urlencoded): inviarlo dalla sua pagina della console.".into(),
        ),
        FormRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ConsoleError::Request(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Il modulo supera la dimensione ammessa: inviare un file più piccolo o dividerlo in più file.".into(),
            )
        }
        FormRejection::BytesRejection(_) => ConsoleError::BadRequest(
            "Il modulo non è arrivato per intero: inviarlo di nuovo.".into(),
        ),
        _ => ConsoleError::BadRequest(
            "Il modulo ha un campo mancante, ripetuto o non valido: inviarlo di nuovo dalla sua pagina della console.".into(),
        ),
    }
}

impl<T, S> FromRequest<S> for Fields<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ConsoleError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ConsoleError> {
        match Form::<T>::from_request(request, state).await {
            Ok(Form(value)) => Ok(Fields(value)),
            Err(rejection) => Err(form_refusal(&rejection)),
        }
    }
}

/// One segment of the path, as text (the page checks it).
pub(crate) struct Segment(pub(crate) String);

impl<S> FromRequestParts<S> for Segment
where
    S: Send + Sync,
{
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ConsoleError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(text)) => Ok(Segment(text)),
            Err(_) => Err(ConsoleError::BadRequest(
                "Indirizzo non valido: contiene caratteri che non formano un testo. Aprire la pagina dai suoi collegamenti.".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// The message of the 400 these pairs get.
    fn refused(p: &[(&str, &str)], names: &[&str]) -> String {
        match check_pairs(&pairs(p), names) {
            Err(ConsoleError::BadRequest(m)) => m,
            other => panic!("not a 400: {other:?}"),
        }
    }

    #[test]
    fn known_names_once_each_pass() {
        assert!(check_pairs(&pairs(&[("month", "2026-01")]), &["month"]).is_ok());
        assert!(check_pairs(&[], &["month"]).is_ok());
        assert!(check_pairs(&pairs(&[("a", ""), ("b", "x")]), &["a", "b"]).is_ok());
    }

    #[test]
    fn a_repeated_an_unknown_a_long_or_a_control_value_is_refused_by_name() {
        let m = refused(&[("month", "1"), ("month", "2")], &["month"]);
        assert!(m.contains("«month» ripetuto"), "{m}");
        let m = refused(&[("mese", "1")], &["month"]);
        assert!(
            m.contains("«mese» non previsto") && m.contains("«month»"),
            "{m}"
        );
        let long = "x".repeat(MAX_VALUE_CHARS + 1);
        let m = refused(&[("month", &long)], &["month"]);
        assert!(m.contains("troppo lungo") && !m.contains(&long), "{m}");
        let m = refused(&[("month", "a\u{7}")], &["month"]);
        assert!(m.contains("caratteri di controllo"), "{m}");
    }

    #[test]
    fn a_long_name_is_cut_and_a_control_character_replaced() {
        let name = format!("{}\n", "n".repeat(100));
        let shown = shown_name(&name);
        assert_eq!(shown.chars().count(), SHOWN_NAME_CHARS + 1);
        assert!(shown.ends_with('…'));
        assert_eq!(shown_name("a\nb"), "a\u{FFFD}b");
    }
}
