//! The console's templates, embedded in the binary, and how errors become pages.
//!
//! Every value is HTML-escaped; only the SVG charts drawn by `chart` (which escape their
//! own labels) are inserted as they are.

use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{AutoEscape, Environment, Value, context};
use time::{Date, OffsetDateTime};

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("ack.html", include_str!("../templates/ack.html")),
    (
        "preferences.html",
        include_str!("../templates/preferences.html"),
    ),
    ("login.html", include_str!("../templates/login.html")),
    ("overview.html", include_str!("../templates/overview.html")),
    (
        "dead_letters.html",
        include_str!("../templates/dead_letters.html"),
    ),
    (
        "dead_letter.html",
        include_str!("../templates/dead_letter.html"),
    ),
    ("confirm.html", include_str!("../templates/confirm.html")),
    ("coverage.html", include_str!("../templates/coverage.html")),
    ("comune.html", include_str!("../templates/comune.html")),
    ("routing.html", include_str!("../templates/routing.html")),
    (
        "evictions.html",
        include_str!("../templates/evictions.html"),
    ),
    ("emails.html", include_str!("../templates/emails.html")),
    (
        "deliveries.html",
        include_str!("../templates/deliveries.html"),
    ),
    ("timeline.html", include_str!("../templates/timeline.html")),
    ("error.html", include_str!("../templates/error.html")),
    ("tavolo.html", include_str!("../templates/tavolo.html")),
    ("upload.html", include_str!("../templates/upload.html")),
    (
        "evictions_audit.html",
        include_str!("../templates/evictions_audit.html"),
    ),
];

/// The compiled templates.
pub(crate) struct Templates {
    env: Environment<'static>,
}

impl Templates {
    pub(crate) fn new() -> Self {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_filter("numero", numero);
        env.add_filter("percento", percento);
        env.add_filter("data", data);
        env.add_filter("plurale", plurale);
        env.add_filter("tipo", tipo);
        env.add_filter("ruolo", ruolo);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .expect("embedded templates parse: `every_template_parses` checks them");
        }
        Self { env }
    }

    /// Renders `name` with `ctx`.
    pub(crate) fn render(&self, name: &str, ctx: minijinja::Value) -> Result<String, ConsoleError> {
        Ok(self.env.get_template(name)?.render(ctx)?)
    }

    /// Renders `name` as a 200 page.
    pub(crate) fn page(&self, name: &str, ctx: minijinja::Value) -> Result<Response, ConsoleError> {
        Ok(Html(self.render(name, ctx)?).into_response())
    }
}

/// An instant as the console shows every one: in Europe/Rome, to the minute,
/// "7 dicembre 2026, 18:05".
pub(crate) fn local_time(at: OffsetDateTime) -> String {
    let (_, time) = raccordo_core::clock::rome_local(at);
    format!("{}, {time}", long_date(raccordo_core::clock::rome_date(at)))
}

/// A calendar date in words: "7 dicembre 2026".
pub(crate) fn long_date(date: Date) -> String {
    format!(
        "{} {} {}",
        date.day(),
        raccordo_core::clock::month_it(date.month()),
        date.year()
    )
}

/// `value` with Italian digits: thousands grouped by a point, `decimals` after a comma
/// (1.234,5).
pub(crate) fn italian_number(value: f64, decimals: usize) -> String {
    let text = format!("{:.*}", decimals, value.abs());
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let mut grouped = String::with_capacity(whole.len() + whole.len() / 3 + 1);
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push('.');
        }
        grouped.push(digit);
    }
    let negative = value < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0');
    let sign = if negative { "-" } else { "" };
    if fraction.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped},{fraction}")
    }
}

/// A template's number: an integer, a float or a string holding one; `None` for none.
fn number_of(value: &Value) -> Result<Option<(f64, bool)>, minijinja::Error> {
    if value.is_none() || value.is_undefined() {
        return Ok(None);
    }
    if let Some(text) = value.as_str() {
        let parsed = text.trim().parse::<f64>().map_err(|_| {
            minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("not a number: {text:?}"),
            )
        })?;
        return Ok(Some((parsed, !text.contains('.'))));
    }
    if value.is_integer() {
        let n = i64::try_from(value.clone())?;
        #[allow(clippy::cast_precision_loss)]
        return Ok(Some((n as f64, true)));
    }
    Ok(Some((f64::try_from(value.clone())?, false)))
}

/// `{{ n|numero }}`: 1234 → "1.234", 1234.5 → "1.234,5"; `{{ x|numero(2) }}` fixes the
/// decimals (an integer has none, a float one unless told); none → "—".
fn numero(value: Value, decimals: Option<usize>) -> Result<String, minijinja::Error> {
    Ok(match number_of(&value)? {
        None => "—".to_owned(),
        Some((n, integer)) => italian_number(n, decimals.unwrap_or(usize::from(!integer))),
    })
}

/// `{{ p|percento }}`: a percentage (12.5, not 0.125) → "12,5%"; one decimal unless told.
fn percento(value: Value, decimals: Option<usize>) -> Result<String, minijinja::Error> {
    Ok(match number_of(&value)? {
        None => "—".to_owned(),
        Some((n, _)) => format!("{}%", italian_number(n, decimals.unwrap_or(1))),
    })
}

/// `{{ d|data }}`: an ISO date "2026-12-07" → "7 dicembre 2026"; an RFC 3339 instant →
/// "7 dicembre 2026, 18:05" in Europe/Rome; none → "—"; any other text as it is.
/// A notification kind's Italian name (`housing.offered` → "Nuova disponibilità di
/// alloggio"); the text as it is when it names no kind.
fn tipo(value: Value) -> String {
    let code = value
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| value.to_string());
    raccordo_core::notification::NotificationKind::parse(&code)
        .map_or(code, |k| k.label_it().to_owned())
}

/// A console role's Italian name (`operator` → "operatore"); the text as it is otherwise.
fn ruolo(value: Value) -> String {
    let code = value.as_str().map(str::to_owned).unwrap_or_default();
    raccordo_core::settings::ConsoleRole::parse(&code).map_or(code, |r| r.label_it().to_owned())
}

fn data(value: Value) -> String {
    let Some(text) = value.as_str() else {
        return if value.is_none() || value.is_undefined() {
            "—".to_owned()
        } else {
            value.to_string()
        };
    };
    let iso = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(date) = Date::parse(text, &iso) {
        return long_date(date);
    }
    match OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        Ok(at) => local_time(at),
        Err(_) => text.to_owned(),
    }
}

/// `{{ n|plurale("comune", "comuni") }}`: "1 comune", "2 comuni", "0 comuni", "1.500 comuni".
fn plurale(value: Value, singular: &str, plural: &str) -> Result<String, minijinja::Error> {
    let n = number_of(&value)?.map_or(0.0, |(n, _)| n);
    #[allow(clippy::float_cmp)]
    let word = if n == 1.0 { singular } else { plural };
    let decimals = usize::from(n.fract() != 0.0);
    Ok(format!("{} {word}", italian_number(n, decimals)))
}

/// Why a page could not be served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConsoleError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("broker error")]
    Broker(#[from] lapin::Error),
    #[error("replay failed")]
    Replay(#[from] raccordo_core::amqp::dead_letter::ReplayError),
    #[error("template error")]
    Template(#[from] minijinja::Error),
    #[error("not found")]
    NotFound(&'static str),
    #[error("forbidden")]
    Forbidden(&'static str),
    /// The user's role may not open this page or take this action.
    #[error("denied to the role")]
    Denied(String),
    #[error("bad request")]
    BadRequest(String),
    /// The request itself is refused with this status (a form's body of another type: 415;
    /// over the route's limit: 413).
    #[error("request refused")]
    Request(StatusCode, String),
    /// Too many failed logins: try again after this many seconds.
    #[error("too many attempts")]
    TooManyAttempts(u64),
    /// Every password verification slot stayed busy.
    #[error("busy")]
    Busy,
    #[error("broker unreachable")]
    BrokerDown,
}

/// The page of an outage: only for what may pass by itself.
const UNREACHABLE: &str = "Il servizio non ha risposto (database o broker non raggiungibile). Riprovare tra poco; `raccordo status` dice cosa manca.";

/// The page of a fault of the console itself.
const INTERNAL: &str = "La console non ha potuto completare la richiesta per un errore interno, registrato nel suo log. Riprovare; se si ripete, segnalarlo all'amministratore.";

/// The status and message of a database error: a value PostgreSQL refused (SQLSTATE class
/// 22, data exception: a date or number out of range, text that is not of its type) comes
/// from the request, a 400; a connection that failed or a fault that passes by itself
/// ([`raccordo_core::pg::is_transient`]) is an outage, a 503; anything else is the
/// console's own fault, a 500.
fn database_refusal(error: &sqlx::Error) -> (StatusCode, String) {
    let code = error
        .as_database_error()
        .and_then(|db| db.code().map(|c| c.into_owned()));
    if code.as_deref().is_some_and(|c| c.starts_with("22")) {
        tracing::warn!(error = ?error, "The database refused a value of a console request.");
        return (
            StatusCode::BAD_REQUEST,
            "Un valore della richiesta non è accettato dal database (fuori dall'intervallo ammesso o nel formato sbagliato): correggere i parametri e riprovare.".to_owned(),
        );
    }
    if raccordo_core::pg::is_transient(error) {
        tracing::error!(error = ?error, "A console page failed: the database is unreachable.");
        return (StatusCode::SERVICE_UNAVAILABLE, UNREACHABLE.to_owned());
    }
    tracing::error!(error = ?error, "A console page failed on a database error.");
    (StatusCode::INTERNAL_SERVER_ERROR, INTERNAL.to_owned())
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let mut retry_after = None;
        let (status, message) = match &self {
            ConsoleError::NotFound(m) => (StatusCode::NOT_FOUND, (*m).to_owned()),
            ConsoleError::Forbidden(m) => (StatusCode::FORBIDDEN, (*m).to_owned()),
            ConsoleError::Denied(m) => (StatusCode::FORBIDDEN, m.clone()),
            ConsoleError::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            ConsoleError::Request(status, m) => (*status, m.clone()),
            ConsoleError::Database(error) => database_refusal(error),
            ConsoleError::Template(error) => {
                tracing::error!(error = ?error, "A console page failed to render.");
                (StatusCode::INTERNAL_SERVER_ERROR, INTERNAL.to_owned())
            }
            ConsoleError::TooManyAttempts(seconds) => {
                retry_after = Some(*seconds);
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "Troppi tentativi di accesso non riusciti. Riprovare tra {} minuti.",
                        seconds.div_ceil(60).max(1)
                    ),
                )
            }
            ConsoleError::Busy => {
                retry_after = Some(5);
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Troppi accessi in corso. Riprovare tra qualche secondo.".to_owned(),
                )
            }
            ConsoleError::BrokerDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Il broker RabbitMQ non è raggiungibile. Riprovare tra poco; `raccordo status` dice cosa manca.".to_owned(),
            ),
            other => {
                tracing::error!(error = ?other, "A console page failed.");
                (StatusCode::SERVICE_UNAVAILABLE, UNREACHABLE.to_owned())
            }
        };
        let body = Templates::new()
            .render(
                "error.html",
                context! { status => status.as_u16(), message => message },
            )
            .unwrap_or_else(|_| message.clone());
        let mut response =
            (status, [(CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, axum::http::HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_is_shown_by_its_italian_name_and_other_text_as_it_is() {
        assert_eq!(
            tipo(Value::from("housing.offered")),
            "Nuova disponibilità di alloggio"
        );
        assert_eq!(tipo(Value::from("altro.tipo")), "altro.tipo");
        assert_eq!(ruolo(Value::from("operator")), "operatore");
        assert_eq!(ruolo(Value::from("privacy")), "responsabile privacy");
    }

    #[test]
    fn every_template_parses() {
        let templates = Templates::new();
        for (name, _) in TEMPLATES {
            assert!(templates.env.get_template(name).is_ok(), "{name}");
        }
    }

    /// A PostgreSQL error of this SQLSTATE, as sqlx reports it.
    #[derive(Debug)]
    struct Refused(&'static str);

    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for Refused {}

    impl sqlx::error::DatabaseError for Refused {
        fn message(&self) -> &str {
            "refused"
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn status_of(error: sqlx::Error) -> StatusCode {
        ConsoleError::Database(error).into_response().status()
    }

    #[test]
    fn a_value_the_database_refused_is_a_400_and_only_an_outage_a_503() {
        for code in ["22008", "22003", "22P02", "22007"] {
            let error = sqlx::Error::Database(Box::new(Refused(code)));
            assert_eq!(status_of(error), StatusCode::BAD_REQUEST, "{code}");
        }
        for code in ["08006", "57P01", "53300", "40001"] {
            let error = sqlx::Error::Database(Box::new(Refused(code)));
            assert_eq!(status_of(error), StatusCode::SERVICE_UNAVAILABLE, "{code}");
        }
        assert_eq!(
            status_of(sqlx::Error::PoolTimedOut),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            status_of(sqlx::Error::Io(io)),
            StatusCode::SERVICE_UNAVAILABLE
        );
        for error in [
            sqlx::Error::Database(Box::new(Refused("42P01"))),
            sqlx::Error::Database(Box::new(Refused("23505"))),
            sqlx::Error::RowNotFound,
        ] {
            assert_eq!(status_of(error), StatusCode::INTERNAL_SERVER_ERROR);
        }
    }

    fn show(template: &str, ctx: minijinja::Value) -> String {
        let mut env = Templates::new().env;
        env.add_template_owned("t", template.to_owned())
            .expect("parses");
        env.get_template("t")
            .and_then(|t| t.render(ctx))
            .expect("renders")
    }

    #[test]
    fn numbers_are_italian() {
        assert_eq!(italian_number(1234.5, 1), "1.234,5");
        assert_eq!(italian_number(1_234_567.0, 0), "1.234.567");
        assert_eq!(italian_number(999.0, 0), "999");
        assert_eq!(italian_number(-1234.25, 2), "-1.234,25");
        assert_eq!(italian_number(-0.01, 1), "0,0");
        assert_eq!(
            show(
                "{{ a|numero }} {{ b|numero }} {{ b|numero(2) }} {{ c|numero }} {{ d|numero }}",
                context! { a => 12345, b => 1234.5, c => "0.5", d => () }
            ),
            "12.345 1.234,5 1.234,50 0,5 —"
        );
    }

    #[test]
    fn percentages_take_a_comma() {
        assert_eq!(
            show(
                "{{ a|percento }} {{ b|percento }} {{ c|percento(0) }} {{ d|percento }}",
                context! { a => 12.5, b => 0, c => 66.67, d => "100.0" }
            ),
            "12,5% 0,0% 67% 100,0%"
        );
    }

    #[test]
    fn dates_and_instants_are_in_words_in_rome() {
        assert_eq!(
            show(
                "{{ a|data }} · {{ b|data }} · {{ c|data }} · {{ d|data }}",
                context! { a => "2026-12-07", b => "2026-12-07T17:05:09.123456Z", c => "2026-07-01T22:30:00Z", d => "n.d." }
            ),
            "7 dicembre 2026 · 7 dicembre 2026, 18:05 · 2 luglio 2026, 00:30 · n.d."
        );
        let at = time::macros::datetime!(2026-03-29 01:30 UTC);
        assert_eq!(local_time(at), "29 marzo 2026, 03:30");
    }

    #[test]
    fn counts_agree_with_their_noun() {
        assert_eq!(
            show(
                "{{ 0|plurale('comune', 'comuni') }}, {{ 1|plurale('comune', 'comuni') }}, {{ 2|plurale('comune', 'comuni') }}, {{ 1500|plurale('messaggio', 'messaggi') }}",
                context! {}
            ),
            "0 comuni, 1 comune, 2 comuni, 1.500 messaggi"
        );
    }

    #[test]
    fn values_are_html_escaped() {
        let html = Templates::new()
            .render(
                "error.html",
                context! { status => 400, message => "<script>x</script>" },
            )
            .expect("renders");
        assert!(!html.contains("<script>x"));
        assert!(html.contains("&lt;script&gt;"));
    }
}
