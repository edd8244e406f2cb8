//! Dead letters and parked work (role `operator`): the list with reasons, a page at a time;
//! one message with personal fields masked by `HeldMessage::masked_body` (the same renderer
//! as `raccordo dlq show`); replay or purge of one message or of all — after a
//! confirmation, with the session's CSRF token, recorded in `console_actions` with the
//! user and role.
//!
//! Every read goes over the console's one broker connection. A page holds summaries only
//! (no body), at most [`PAGE_SIZE`] messages and no more once their bodies reach
//! [`PAGE_BYTES`]; a shown body is cut at [`SHOWN_BODY_CHARS`].

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value, context};
use serde::Deserialize;

use raccordo_core::amqp::dead_letter::{self, HeldMessage, Holding};

use crate::actions::{self, NewAction};
use crate::auth::{Operator, page_context};
use crate::params::{Fields, Params, QueryParams, Segment, invalid};
use crate::render::ConsoleError;
use crate::state::AppState;

/// Messages per page.
pub(crate) const PAGE_SIZE: usize = 50;
/// The bytes of held bodies one page reads at most (the first message is always shown).
pub(crate) const PAGE_BYTES: usize = 1024 * 1024;
/// How deep the console reads into the holding queues; past that, `raccordo dlq list`.
pub(crate) const MAX_OFFSET: usize = 10_000;
/// A masked body is shown up to this many characters.
pub(crate) const SHOWN_BODY_CHARS: usize = 64 * 1024;

/// `dead`, `parked` or `all`.
fn holdings(which: &str) -> Result<&'static [Holding], ConsoleError> {
    match which {
        "dead" => Ok(&[Holding::Dead]),
        "parked" => Ok(&[Holding::Parked]),
        "all" => Ok(&[Holding::Dead, Holding::Parked]),
        _ => Err(ConsoleError::BadRequest(
            "Coda non valida (parametro «coda» o «holding»): dead, parked o all.".into(),
        )),
    }
}

fn holding_name(h: Holding) -> &'static str {
    match h {
        Holding::Dead => "dead",
        Holding::Parked => "parked",
    }
}

/// A held message's instant as the console shows every time: Europe/Rome, to the minute
/// (the header carries UTC with nanoseconds); as it is when it is not RFC 3339.
fn rome_time(text: &str) -> String {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(crate::render::local_time)
        .unwrap_or_else(|_| text.to_owned())
}

fn summary(m: &HeldMessage) -> Value {
    context! {
        holding => holding_name(m.holding),
        id => m.id,
        error => m.error,
        error_it => raccordo_core::amqp::reason_it(&m.error),
        queue => m.queue,
        routing_key => m.routing_key,
        failed_at => rome_time(&m.failed_at),
        attempt => m.attempt,
        size => m.size,
        event_type => m.event_type,
        source => m.source,
        event_id => m.event_id,
    }
}

/// Which queue, from where, and the action whose outcome to announce.
#[derive(Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    coda: Option<String>,
    #[serde(default)]
    da: Option<String>,
    /// The id of the action just taken (its record gives the notice).
    #[serde(default)]
    esito: Option<String>,
}

impl QueryParams for ListQuery {
    const NAMES: &'static [&'static str] = &["coda", "da", "esito"];
}

/// A parameter's value, `None` when absent or empty.
fn given(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

/// The position in the holding queues: a number from 0 to [`MAX_OFFSET`].
fn offset_of(da: Option<&str>) -> Result<usize, ConsoleError> {
    given(da).map_or(Ok(0), |d| {
        d.parse::<usize>()
            .ok()
            .filter(|d| *d <= MAX_OFFSET)
            .ok_or_else(|| {
                ConsoleError::BadRequest(format!(
                    "Posizione non valida (parametro «da»): un numero da 0 a {MAX_OFFSET}. Oltre, usare `raccordo dlq list`."
                ))
            })
    })
}

/// The action whose outcome to announce: its record's number.
fn outcome_of(esito: Option<&str>) -> Result<Option<i64>, ConsoleError> {
    given(esito)
        .map(|e| {
            e.parse::<i64>().ok().filter(|e| *e > 0).ok_or_else(|| {
                invalid(
                    "esito",
                    "il numero dell'azione appena compiuta, come lo scrive la console dopo un reinvio o un'eliminazione.",
                )
            })
        })
        .transpose()
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Params(query): Params<ListQuery>,
) -> Result<Response, ConsoleError> {
    let coda = given(query.coda.as_deref()).unwrap_or("all").to_owned();
    let which = holdings(&coda)?;
    let offset = offset_of(query.da.as_deref())?;
    let esito = outcome_of(query.esito.as_deref())?;
    let connection = state.broker.connection().await?;
    let topology = state.broker.topology();
    let dead = dead_letter::held_count(&connection, topology, &[Holding::Dead]).await?;
    let parked = dead_letter::held_count(&connection, topology, &[Holding::Parked]).await?;
    let window =
        dead_letter::browse_window(&connection, topology, which, offset, PAGE_SIZE, PAGE_BYTES)
            .await?;
    drop(connection);
    let esito = match esito {
        Some(id) => actions::notice(&state.pool, id, &operator.name).await?,
        None => None,
    };
    let recent = actions::recent(&state.pool, 20).await?;
    let mut conn = state.pool.acquire().await?;
    let bounces = raccordo_core::db::bounces(&mut conn, 20).await?;
    drop(conn);
    let shown = window.messages.len();
    let next = (window.more && offset + shown <= MAX_OFFSET).then_some(offset + shown);
    let ctx = context! {
        messages => window.messages.iter().map(summary).collect::<Vec<_>>(),
        dead => dead,
        parked => parked,
        coda => coda,
        from => offset + 1,
        to => offset + shown,
        previous => (offset > 0).then(|| offset.saturating_sub(PAGE_SIZE)),
        next => next,
        cut_by_bytes => window.more && shown < PAGE_SIZE,
        actions => recent,
        esito => esito,
        bounces => bounces_context(&bounces),
        ..page_context(&operator, "dead")
    };
    state.templates.page("dead_letters.html", ctx)
}

/// The bounced deliveries (D3) for the page: referent ids, never addresses; times in
/// Europe/Rome.
fn bounces_context(b: &raccordo_core::db::Bounces) -> Value {
    let recent: Vec<Value> = b
        .recent
        .iter()
        .map(|r| {
            context! {
                notification => r.notification_id.to_string(),
                kind => r.kind,
                kind_label => raccordo_core::notification::NotificationKind::parse(&r.kind)
                    .map(raccordo_core::notification::NotificationKind::label_it),
                referent => r.referent_id,
                channel => r.channel,
                status => r.status,
                source => r.source,
                at => crate::render::local_time(r.at),
                stand_ins => r.stand_ins,
            }
        })
        .collect();
    context! {
        total => b.bounced_total,
        without_stand_in => b.without_stand_in,
        unmatched => b.unmatched_reports,
        malformed => b.malformed_reports,
        recent => recent,
    }
}

/// `text` cut at `max` characters; whether it was cut.
fn cut(text: String, max: usize) -> (String, bool) {
    match text.char_indices().nth(max) {
        Some((at, _)) => (text[..at].to_owned(), true),
        None => (text, false),
    }
}

pub(crate) async fn show(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Segment(id): Segment,
) -> Result<Response, ConsoleError> {
    let connection = state.broker.connection().await?;
    let found = dead_letter::find(
        &connection,
        state.broker.topology(),
        &[Holding::Dead, Holding::Parked],
        &id,
        MAX_OFFSET,
    )
    .await?;
    drop(connection);
    let m = found.ok_or(ConsoleError::NotFound(
        "Nessun messaggio scartato o parcheggiato ha questo id (forse è già stato reinviato, eliminato o è scaduto).",
    ))?;
    let headers: Vec<Value> = m
        .headers()
        .into_iter()
        .map(|(k, v)| context! { name => k, value => v })
        .collect();
    let (body, body_cut) = cut(m.masked_body(), SHOWN_BODY_CHARS);
    let ctx = context! {
        m => summary(&m),
        headers => headers,
        body => body,
        body_cut => body_cut,
        ..page_context(&operator, "dead")
    };
    state.templates.page("dead_letter.html", ctx)
}

/// What an action is about.
#[derive(Deserialize)]
pub(crate) struct ActionQuery {
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    holding: Option<String>,
    #[serde(default)]
    id: Option<String>,
}

impl QueryParams for ActionQuery {
    const NAMES: &'static [&'static str] = &["action", "holding", "id"];
}

/// The longest id of a held message (a UUID has 36 characters).
const MAX_ID_CHARS: usize = 64;

/// A held message's id as the list links it: letters, digits, `-`, `_`, `.`.
fn message_id(id: Option<&str>) -> Result<Option<&str>, ConsoleError> {
    match given(id) {
        Some(id)
            if id.len() > MAX_ID_CHARS
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) =>
        {
            Err(invalid(
                "id",
                "l'identificativo di un messaggio scartato o parcheggiato, come lo mostra l'elenco.",
            ))
        }
        other => Ok(other),
    }
}

/// The action, the queues and the message, checked.
fn target<'a>(
    action: Option<&'a str>,
    holding: Option<&'a str>,
    id: Option<&'a str>,
) -> Result<(&'a str, &'a str, Option<&'a str>), ConsoleError> {
    let holding = given(holding).unwrap_or("all");
    holdings(holding)?;
    let id = message_id(id)?;
    let action = given(action).unwrap_or_default();
    describe(action, holding, id)?;
    Ok((action, holding, id))
}

fn describe(action: &str, holding: &str, id: Option<&str>) -> Result<String, ConsoleError> {
    let queues = match holding {
        "dead" => "dei messaggi scartati",
        "parked" => "dei messaggi parcheggiati",
        _ => "dei messaggi scartati e parcheggiati",
    };
    Ok(match (action, id) {
        ("replay", Some(id)) => format!(
            "Reinviare il messaggio {id} alla coda da cui proviene? Fatelo dopo averne corretto la causa."
        ),
        ("replay", None) => format!(
            "Reinviare tutti i messaggi {queues} presenti ora alle code da cui provengono? Ciascuno è reinviato una volta; chi fallisce di nuovo torna qui. Fatelo dopo averne corretto la causa."
        ),
        ("purge", Some(id)) => {
            format!("Eliminare definitivamente il messaggio {id}? Non si potrà recuperare.")
        }
        ("purge", None) => format!(
            "Eliminare definitivamente tutti i messaggi {queues}? Non si potranno recuperare."
        ),
        _ => {
            return Err(ConsoleError::BadRequest(
                "Azione non valida (parametro «action»): replay o purge, di un messaggio o di tutti.".into(),
            ));
        }
    })
}

pub(crate) async fn confirm(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Params(q): Params<ActionQuery>,
) -> Result<Response, ConsoleError> {
    let (action, holding, id) = target(q.action.as_deref(), q.holding.as_deref(), q.id.as_deref())?;
    let question = describe(action, holding, id)?;
    let ctx = context! {
        question => question,
        action => action,
        holding => holding,
        id => id,
        ..page_context(&operator, "dead")
    };
    state.templates.page("confirm.html", ctx)
}

/// The confirmed action.
#[derive(Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    holding: Option<String>,
    #[serde(default)]
    id: Option<String>,
}

pub(crate) async fn act(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Fields(form): Fields<ActionForm>,
) -> Result<Response, ConsoleError> {
    operator.check_csrf(&form.csrf)?;
    let (action, holding, id) = target(
        form.action.as_deref(),
        form.holding.as_deref(),
        form.id.as_deref(),
    )?;
    let which = holdings(holding)?;
    let connection = state.broker.connection().await?;
    let topology = state.broker.topology();
    let mut affected = 0usize;
    let mut failure = None;
    for holding in which {
        let step = match (action, id) {
            ("replay", _) => dead_letter::replay(&connection, topology, *holding, id)
                .await
                .map(|r| r.replayed)
                .map_err(ConsoleError::from),
            ("purge", Some(id)) => dead_letter::purge_one(&connection, topology, *holding, id)
                .await
                .map(usize::from)
                .map_err(ConsoleError::from),
            _ => dead_letter::purge(&connection, topology, *holding)
                .await
                .map(|n| n as usize)
                .map_err(ConsoleError::from),
        };
        match step {
            Ok(n) => affected += n,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
        // One message is in one queue: found, the others are not read.
        if id.is_some() && affected > 0 {
            break;
        }
    }
    drop(connection);
    let outcome = if failure.is_some() { "failed" } else { "done" };
    let recorded = actions::record(
        &state.pool,
        &NewAction {
            operator: &operator.name,
            role: operator.role.as_str(),
            action,
            holding,
            target: id,
            affected: i32::try_from(affected).unwrap_or(i32::MAX),
            outcome,
        },
    )
    .await?;
    tracing::info!(
        operator = %operator.name,
        role = operator.role.as_str(),
        action,
        holding,
        affected,
        outcome,
        "A user acted on held messages from the console."
    );
    if let Some(error) = failure {
        return Err(error);
    }
    Ok(Redirect::to(&format!("/dead-letters?esito={recorded}")).into_response())
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn a_long_body_is_cut_on_a_character_boundary() {
        let (text, was_cut) = cut("àèìòù".repeat(3), 4);
        assert_eq!(text, "àèìò");
        assert!(was_cut);
        let (text, was_cut) = cut("abc".into(), 3);
        assert_eq!(text, "abc");
        assert!(!was_cut);
    }
}
