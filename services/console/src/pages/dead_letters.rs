//! Dead letters and parked work: the list with reasons, one message with personal fields
//! masked by `HeldMessage::masked_body` (the same renderer as `raccordo dlq show`), and
//! replay or purge — after a confirmation, with the session's CSRF token, recorded in
//! `console_actions`.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use lapin::Connection;
use minijinja::{Value, context};
use serde::Deserialize;

use raccordo_core::amqp::dead_letter::{self, HeldMessage, Holding};
use raccordo_core::amqp::{Publisher, Topology, connect};

use crate::actions::{self, NewAction};
use crate::auth::{Operator, page_context};
use crate::render::ConsoleError;
use crate::server::AppState;

/// `dead`, `parked` or `all`.
fn holdings(which: &str) -> Result<&'static [Holding], ConsoleError> {
    match which {
        "dead" => Ok(&[Holding::Dead]),
        "parked" => Ok(&[Holding::Parked]),
        "all" => Ok(&[Holding::Dead, Holding::Parked]),
        _ => Err(ConsoleError::BadRequest(
            "Coda non valida: dead, parked o all.".into(),
        )),
    }
}

fn holding_name(h: Holding) -> &'static str {
    match h {
        Holding::Dead => "dead",
        Holding::Parked => "parked",
    }
}

async fn open(state: &AppState) -> Result<(Connection, Topology), ConsoleError> {
    let topology = Topology::from_settings(&state.settings);
    let connection = connect(&state.settings.amqp, "console")
        .await
        .map_err(|_| ConsoleError::BadRequest("Il broker non è raggiungibile.".into()))?;
    // Replay and purge need the holding queues; declaring is idempotent.
    let publisher = Publisher::open(&connection).await.map_err(|e| {
        tracing::warn!(error = %e, "The console could not open a channel.");
        ConsoleError::BadRequest("Il broker non è raggiungibile.".into())
    })?;
    topology.declare(publisher.channel()).await?;
    Ok((connection, topology))
}

async fn browse_all(state: &AppState) -> Result<Vec<HeldMessage>, ConsoleError> {
    let (connection, topology) = open(state).await?;
    let mut all = Vec::new();
    for holding in [Holding::Dead, Holding::Parked] {
        all.extend(dead_letter::browse(&connection, &topology, holding).await?);
    }
    let _ = connection.close(200, "console".into()).await;
    Ok(all)
}

fn summary(m: &HeldMessage) -> Value {
    context! {
        holding => holding_name(m.holding),
        id => m.id,
        error => m.error,
        queue => m.queue,
        routing_key => m.routing_key,
        failed_at => m.failed_at,
        attempt => m.attempt,
        size => m.size,
        event_type => m.event_type,
        source => m.source,
        event_id => m.event_id,
    }
}

/// A flash message after an action, from the redirect's query.
#[derive(Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    esito: Option<String>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ConsoleError> {
    let held = browse_all(&state).await?;
    let recent = actions::recent(&state.pool, 20).await?;
    let ctx = context! {
        messages => held.iter().map(summary).collect::<Vec<_>>(),
        dead => held.iter().filter(|m| m.holding == Holding::Dead).count(),
        parked => held.iter().filter(|m| m.holding == Holding::Parked).count(),
        actions => recent,
        esito => query.esito,
        ..page_context(&operator, "dead")
    };
    state.templates.page("dead_letters.html", ctx)
}

pub(crate) async fn show(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let held = browse_all(&state).await?;
    let m = held
        .iter()
        .find(|m| m.id == id)
        .ok_or(ConsoleError::NotFound(
            "Nessun messaggio scartato o parcheggiato ha questo id (forse è già stato reinviato o è scaduto).",
        ))?;
    let headers: Vec<Value> = m
        .headers()
        .into_iter()
        .map(|(k, v)| context! { name => k, value => v })
        .collect();
    let ctx = context! {
        m => summary(m),
        headers => headers,
        body => m.masked_body(),
        ..page_context(&operator, "dead")
    };
    state.templates.page("dead_letter.html", ctx)
}

/// What an action is about.
#[derive(Deserialize)]
pub(crate) struct ActionQuery {
    action: String,
    #[serde(default = "all")]
    holding: String,
    #[serde(default)]
    id: Option<String>,
}

fn all() -> String {
    "all".into()
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
            "Reinviare tutti i messaggi {queues} alle code da cui provengono? Fatelo dopo averne corretto la causa."
        ),
        ("purge", None) => {
            format!(
                "Eliminare definitivamente tutti i messaggi {queues}? Non si potranno recuperare."
            )
        }
        _ => {
            return Err(ConsoleError::BadRequest(
                "Azione non valida: replay (di uno o di tutti) o purge (di tutti).".into(),
            ));
        }
    })
}

pub(crate) async fn confirm(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Query(q): Query<ActionQuery>,
) -> Result<Response, ConsoleError> {
    holdings(&q.holding)?;
    let question = describe(&q.action, &q.holding, q.id.as_deref())?;
    let ctx = context! {
        question => question,
        action => q.action,
        holding => q.holding,
        id => q.id,
        ..page_context(&operator, "dead")
    };
    state.templates.page("confirm.html", ctx)
}

/// The confirmed action.
#[derive(Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    csrf: String,
    action: String,
    #[serde(default = "all")]
    holding: String,
    #[serde(default)]
    id: Option<String>,
}

pub(crate) async fn act(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Form(form): Form<ActionForm>,
) -> Result<Response, ConsoleError> {
    operator.check_csrf(&form.csrf)?;
    let which = holdings(&form.holding)?;
    let id = form.id.as_deref().filter(|i| !i.is_empty());
    describe(&form.action, &form.holding, id)?;
    let (connection, topology) = open(&state).await?;
    let mut affected = 0usize;
    let mut failure = None;
    for holding in which {
        let step = match form.action.as_str() {
            "replay" => dead_letter::replay(&connection, &topology, *holding, id)
                .await
                .map(|r| r.replayed)
                .map_err(ConsoleError::from),
            _ => dead_letter::purge(&connection, &topology, *holding)
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
    }
    let _ = connection.close(200, "console".into()).await;
    let outcome = if failure.is_some() { "failed" } else { "done" };
    actions::record(
        &state.pool,
        &NewAction {
            operator: &operator.name,
            action: &form.action,
            holding: &form.holding,
            target: id,
            affected: i32::try_from(affected).unwrap_or(i32::MAX),
            outcome,
        },
    )
    .await?;
    tracing::info!(
        operator = %operator.name,
        action = %form.action,
        holding = %form.holding,
        affected,
        outcome,
        "An operator acted on held messages from the console."
    );
    if let Some(error) = failure {
        return Err(error);
    }
    let verb = if form.action == "replay" {
        "reinviati"
    } else {
        "eliminati"
    };
    Ok(Redirect::to(&format!("/dead-letters?esito={affected}+messaggi+{verb}")).into_response())
}
