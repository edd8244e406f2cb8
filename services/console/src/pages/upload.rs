//! CSV upload (role `operator`, CONTRACT 1.2 §10): a file of housing units or occupancy
//! reports, as one configured publisher's events. A preview names each bad row (its
//! spreadsheet row and column, never a cell's value) and publishes nothing; a file without
//! bad rows can then be published, after a confirmation, each row one event whose id is a
//! hash of the row. Every publish is recorded in `console_actions` with the user and role.

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use minijinja::context;
use serde::Deserialize;

use raccordo_core::csv_events::csv_types;
use raccordo_ingest::{CsvJudged, CsvRefusal};

use crate::actions::{self, NewAction};
use crate::auth::{Operator, page_context};
use crate::params::Fields;
use crate::render::ConsoleError;
use crate::state::AppState;

/// The bytes of an upload form: a file of the default `ingest.max_body_bytes` (5 MiB) may
/// triple when percent-encoded; the file itself is held to `ingest.max_body_bytes` below.
pub(crate) const FORM_LIMIT: usize = 16 * 1024 * 1024;

/// The types a file may hold, with their Italian names.
fn types() -> Vec<minijinja::Value> {
    csv_types()
        .iter()
        .map(|t| {
            context! {
                name => t.as_str(),
                label => match t.as_str() {
                    "housing.unit.v1" => "Alloggi disponibili (housing.unit.v1)",
                    _ => "Presenze nelle strutture (reception.occupancy.v1)",
                },
            }
        })
        .collect()
}

/// The publishers that may publish any CSV type.
fn publishers(state: &AppState) -> Vec<String> {
    let mut all: Vec<String> = csv_types()
        .iter()
        .flat_map(|t| state.door.publishers_of(*t))
        .collect();
    all.sort();
    all.dedup();
    all
}

pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
) -> Result<Response, ConsoleError> {
    let ctx = context! {
        types => types(),
        publishers => publishers(&state),
        ..page_context(&operator, "upload")
    };
    state.templates.page("upload.html", ctx)
}

/// The form of both steps.
#[derive(Deserialize)]
pub(crate) struct UploadForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    event_type: String,
    #[serde(default)]
    publisher: String,
    #[serde(default)]
    csv: String,
}

fn judge(state: &AppState, form: &UploadForm) -> Result<CsvJudged, ConsoleError> {
    let max = state.settings.ingest.max_body_bytes;
    if form.csv.len() > max {
        return Err(ConsoleError::BadRequest(format!(
            "Il file supera il limite di {max} byte (ingest.max_body_bytes): dividerlo in più file."
        )));
    }
    if !publishers(state).contains(&form.publisher) {
        return Err(ConsoleError::BadRequest(
            "Scegliere un sistema pubblicatore configurato in [publishers].".into(),
        ));
    }
    state
        .door
        .judge_csv(&form.publisher, &form.event_type, form.csv.as_bytes())
        .map_err(|refusal| {
            ConsoleError::BadRequest(match refusal {
                CsvRefusal::Type => "Tipo di file non previsto: alloggi o presenze.".to_owned(),
                CsvRefusal::Forbidden { user, event_type } => format!(
                    "Il sistema {user} non può pubblicare {event_type}: scegliere un altro pubblicatore."
                ),
                CsvRefusal::File(e) => format!(
                    "Il file non si legge come CSV di questo tipo: {}.",
                    e.message_it()
                ),
            })
        })
}

fn preview_context(judged: &CsvJudged) -> minijinja::Value {
    context! {
        rows => judged.rows,
        valid => judged.events.len(),
        errors => judged.errors.iter().map(|e| context! {
            row => e.row,
            column => e.column,
            detail => e.detail,
            detail_it => e.detail_it,
        }).collect::<Vec<_>>(),
    }
}

pub(crate) async fn preview(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Fields(form): Fields<UploadForm>,
) -> Result<Response, ConsoleError> {
    operator.check_csrf(&form.csrf)?;
    let judged = judge(&state, &form)?;
    let ctx = context! {
        types => types(),
        publishers => publishers(&state),
        chosen_type => form.event_type,
        chosen_publisher => form.publisher,
        csv => form.csv,
        preview => preview_context(&judged),
        ..page_context(&operator, "upload")
    };
    state.templates.page("upload.html", ctx)
}

pub(crate) async fn publish(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Fields(form): Fields<UploadForm>,
) -> Result<Response, ConsoleError> {
    operator.check_csrf(&form.csrf)?;
    let judged = judge(&state, &form)?;
    if !judged.errors.is_empty() || judged.events.is_empty() {
        return Err(ConsoleError::BadRequest(
            "Il file ha righe errate o nessuna riga: nulla è stato pubblicato. Correggerlo e ripetere l'anteprima.".into(),
        ));
    }
    let events: Vec<_> = judged.events.iter().map(|(_, e)| e.clone()).collect();
    let published = state.door.publish(&form.publisher, &events).await;
    let outcome = if published.is_ok() { "done" } else { "failed" };
    actions::record(
        &state.pool,
        &NewAction {
            operator: &operator.name,
            role: operator.role.as_str(),
            action: "csv_upload",
            holding: &form.event_type,
            target: Some(&form.publisher),
            affected: i32::try_from(events.len()).unwrap_or(i32::MAX),
            outcome,
        },
    )
    .await?;
    tracing::info!(
        operator = %operator.name,
        role = operator.role.as_str(),
        publisher = %form.publisher,
        event_type = %form.event_type,
        events = events.len(),
        outcome,
        "A user published a CSV file from the console."
    );
    if published.is_err() {
        return Err(ConsoleError::BrokerDown);
    }
    let ctx = context! {
        types => types(),
        publishers => publishers(&state),
        published => events.len(),
        chosen_type => form.event_type,
        chosen_publisher => form.publisher,
        ..page_context(&operator, "upload")
    };
    state.templates.page("upload.html", ctx)
}
