//! The email gallery: every notification kind rendered by the mailer's own templates with
//! sample data, subject, text and HTML side by side, as a referent's mail client shows them.
//! The HTML is served on its own URL under a policy of its own (no script, no request
//! anywhere, sandboxed) and framed by the gallery.

use axum::Extension;
use axum::extract::State;
use axum::http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_FRAME_OPTIONS};
use axum::response::{IntoResponse, Response};
use minijinja::context;
use uuid::Uuid;

use raccordo_mailer::samples::{sample_payload, sample_recipient};
use raccordo_mailer::{KINDS, Rendered, render};

use crate::auth::{Operator, page_context};
use crate::headers::EMAIL_PREVIEW_CSP;
use crate::params::Segment;
use crate::render::ConsoleError;
use crate::state::AppState;

/// The id printed in the samples' footers.
const SAMPLE_ID: Uuid = Uuid::nil();

fn sample(kind: &str) -> Result<Rendered, ConsoleError> {
    let payload =
        sample_payload(kind).ok_or(ConsoleError::NotFound("Tipo di notifica sconosciuto."))?;
    render(kind, SAMPLE_ID, &payload, &sample_recipient(kind)).map_err(|e| {
        tracing::error!(error = %e, kind, "A sample email does not render.");
        ConsoleError::BadRequest(format!("Il modello {kind} non si compone: {e}"))
    })
}

pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
) -> Result<Response, ConsoleError> {
    let mut emails = Vec::new();
    for kind in KINDS {
        let r = sample(kind)?;
        emails.push(context! { kind_label => super::kind_label(kind), kind => kind, subject => r.subject, text => r.text });
    }
    let ctx = context! { emails => emails, ..page_context(&operator, "emails") };
    state.templates.page("emails.html", ctx)
}

pub(crate) async fn html(Segment(kind): Segment) -> Result<Response, ConsoleError> {
    let r = sample(&kind)?;
    Ok((
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CONTENT_SECURITY_POLICY, EMAIL_PREVIEW_CSP),
            (X_FRAME_OPTIONS, "SAMEORIGIN"),
        ],
        r.html,
    )
        .into_response())
}
