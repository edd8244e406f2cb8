//! The acknowledgement pages (CONTRACT D4): `/ack/<token>`, without login, whenever the
//! console is enabled. `GET` only shows the notification's kind and a button, so that a
//! link scanner or a mail client's preview acknowledges nothing; `POST` records the
//! acknowledgement once and says when. A token that is malformed, forged (another key,
//! another recipient, a changed byte) or expired gets a 403 page and nothing is recorded;
//! the page never says which, nor shows anything of the notification.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::context;
use time::OffsetDateTime;

use raccordo_core::ack::{AckKey, Claims};
use raccordo_core::db::{self, AckTarget, Acknowledgement};
use raccordo_core::notification::NotificationKind;

use crate::params::Segment;
use crate::render::{ConsoleError, local_time};
use crate::state::AppState;

/// The verified delivery a token names, or `None` for any refusal.
async fn verified(state: &AppState, token: &str) -> Result<Option<AckTarget>, ConsoleError> {
    let Some(key) = AckKey::from_settings(&state.settings.ack) else {
        return Ok(None);
    };
    let Ok(claims) = Claims::parse(token) else {
        return Ok(None);
    };
    let mut conn = state.pool.acquire().await?;
    let Some(target) = db::ack_target(&mut conn, &claims).await? else {
        return Ok(None);
    };
    Ok(key
        .verify(&claims, &target.email, OffsetDateTime::now_utc())
        .is_ok()
        .then_some(target))
}

fn kind_label(kind: &str) -> &'static str {
    NotificationKind::parse(kind).map_or("Comunicazione", NotificationKind::label_it)
}

fn page(
    state: &AppState,
    status: StatusCode,
    ctx: minijinja::Value,
) -> Result<Response, ConsoleError> {
    let html = state.templates.render("ack.html", ctx)?;
    Ok((status, Html(html)).into_response())
}

fn refused(state: &AppState) -> Result<Response, ConsoleError> {
    page(state, StatusCode::FORBIDDEN, context! { refused => true })
}

/// `GET /ack/<token>`: the kind and a button; records nothing.
pub(crate) async fn show(
    State(state): State<AppState>,
    Segment(token): Segment,
) -> Result<Response, ConsoleError> {
    let Some(target) = verified(&state, &token).await? else {
        return refused(&state);
    };
    page(
        &state,
        StatusCode::OK,
        context! {
            kind => kind_label(&target.kind),
            token => token,
            acknowledged_at => target.acknowledged_at.map(local_time),
        },
    )
}

/// `POST /ack/<token>`: records the acknowledgement, once; a repeat says when it was.
pub(crate) async fn record(
    State(state): State<AppState>,
    Segment(token): Segment,
) -> Result<Response, ConsoleError> {
    let Some(target) = verified(&state, &token).await? else {
        return refused(&state);
    };
    let mut tx = state.pool.begin().await?;
    let outcome = db::acknowledge(&mut tx, &target).await?;
    tx.commit().await?;
    let (at, now) = match outcome {
        Acknowledgement::Recorded(at) => {
            raccordo_core::delivery_metrics::observe_acknowledged(
                &target.kind,
                target.created_at,
                at,
            );
            tracing::info!(
                notification = %target.notification_id,
                referent = target.referent_id,
                "Acknowledged."
            );
            (at, true)
        }
        Acknowledgement::Already(at) => (at, false),
    };
    page(
        &state,
        StatusCode::OK,
        context! {
            kind => kind_label(&target.kind),
            acknowledged_at => local_time(at),
            recorded_now => now,
        },
    )
}
