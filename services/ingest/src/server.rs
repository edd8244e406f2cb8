//! The HTTP door (CONTRACT 1.2 §10): `POST /v1/events`, `POST /v1/csv/{type}`,
//! `GET /v1/stream`, on `ingest.addr`.
//!
//! Every request is authenticated before its body is read; the body is read up to
//! `ingest.max_body_bytes` and no further; the events are judged as the workers would judge
//! the same user's AMQP events (schema, types, comuni) and published only when all pass;
//! `202` goes out only after the broker confirmed every one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde::Deserialize;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use raccordo_core::csv_events::CsvFileError;
use raccordo_core::health::Health;
use raccordo_core::http_binding::{self, HttpBindingError, HttpEvent};
use raccordo_core::settings::Settings;

use crate::broker::BrokerError;
use crate::door::{CsvRefusal, Door};
use crate::problem::{Problem, ProblemItem};
use crate::rate::Rates;

pub(crate) struct Ingest {
    pub(crate) settings: Arc<Settings>,
    pub(crate) pool: PgPool,
    door: Door,
    rates: Rates,
    tokens: TokenCache,
}

/// How long a token found live is believed without asking the database again: the bound on
/// how long a revoked token still works on a replica that just saw it. Each lookup costs
/// three round trips to PostgreSQL, the largest part of a single POST's cost.
const TOKEN_TTL: Duration = Duration::from_secs(5);
/// Tokens remembered at most; past it the cache is emptied (tokens are few, one per system).
const TOKEN_CACHE_MAX: usize = 10_000;

/// Live tokens recently seen: their hash, publisher and when they were looked up.
#[derive(Default)]
struct TokenCache {
    entries: std::sync::Mutex<HashMap<Vec<u8>, (String, Instant)>>,
}

impl TokenCache {
    fn get(&self, hash: &[u8]) -> Option<String> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(hash)
            .filter(|(_, at)| at.elapsed() < TOKEN_TTL)
            .map(|(user, _)| user.clone())
    }

    fn put(&self, hash: Vec<u8>, user: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= TOKEN_CACHE_MAX {
            entries.clear();
        }
        entries.insert(hash, (user.to_owned(), Instant::now()));
    }
}

type Shared = Arc<Ingest>;

/// Serves HTTP ingestion on `ingest.addr` until `token` is cancelled; returns the bound
/// address and the server's task.
pub async fn serve_ingest(
    settings: Arc<Settings>,
    pool: PgPool,
    health: Health,
    token: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let ingest = Arc::new(Ingest {
        door: Door::new(settings.clone()),
        rates: Rates::default(),
        tokens: TokenCache::default(),
        pool,
        settings: settings.clone(),
    });
    health.expect(READINESS);
    tokio::spawn(watch_broker(ingest.clone(), health, token.clone()));
    let app = router(ingest.clone());
    let listener = TcpListener::bind(settings.ingest.addr.trim()).await?;
    let local = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await;
        if let Err(error) = result {
            tracing::error!(error = %error, "HTTP ingestion failed.");
        }
        ingest.door.close().await;
    });
    tracing::info!(addr = %local, "Serving HTTP ingestion (POST /v1/events, /v1/csv, GET /v1/stream).");
    Ok((local, handle))
}

/// The door's line in `/readyz`.
const READINESS: &str = "ingest-broker";

/// Keeps the door's broker connection open and `/readyz` told whether it is: an
/// ingest-only process is ready when it can publish.
async fn watch_broker(ingest: Shared, health: Health, token: CancellationToken) {
    loop {
        let ready = ingest.door.ready().await;
        health.set_consuming(READINESS, ready);
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

fn router(ingest: Shared) -> Router {
    Router::new()
        .route("/v1/events", post(post_events))
        .route("/v1/csv/{event_type}", post(post_csv))
        .route("/v1/stream", get(crate::stream::get_stream))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "application/problem+json")],
                r#"{"type":"urn:raccordo:problem:not-found","title":"Not found","status":404,"detail":"HTTP ingestion serves POST /v1/events, POST /v1/csv/{type} and GET /v1/stream"}"#,
            )
        })
        .with_state(ingest)
}

/// The publisher of the request's bearer token, or the problem to answer.
pub(crate) async fn authenticate(ingest: &Ingest, headers: &HeaderMap) -> Result<String, Problem> {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
    else {
        return Err(Problem::unauthorized());
    };
    let hash = crate::tokens::hash(token);
    let cached = ingest.tokens.get(&hash);
    let looked_up = match cached {
        Some(user) => Ok(Some(user)),
        None => crate::tokens::publisher_of(&ingest.pool, token).await,
    };
    let user = match looked_up {
        Ok(Some(user)) => {
            ingest.tokens.put(hash, &user);
            user
        }
        Ok(None) => return Err(Problem::unauthorized()),
        Err(error) => {
            tracing::warn!(error = %error, "Token lookup failed.");
            return Err(Problem::database_unavailable());
        }
    };
    if !ingest.settings.publishers.users.contains_key(&user) {
        return Err(Problem::forbidden(
            format!("publisher {user:?} is no longer configured in [publishers]"),
            Vec::new(),
        ));
    }
    Ok(user)
}

impl Ingest {
    fn rate_of(&self, user: &str) -> f64 {
        self.settings
            .publishers
            .users
            .get(user)
            .and_then(|rule| rule.rate_per_s)
            .unwrap_or(self.settings.ingest.rate_per_s)
    }
}

/// Reads the body up to `ingest.max_body_bytes`: a declared length over it is refused
/// before reading, and a body that grows past it is dropped as soon as it does.
async fn read_body(ingest: &Ingest, headers: &HeaderMap, body: Body) -> Result<Vec<u8>, Problem> {
    let max = ingest.settings.ingest.max_body_bytes;
    let too_large = || {
        Problem::too_large(format!(
            "the body is larger than ingest.max_body_bytes ({max} bytes)"
        ))
    };
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > max as u64)
    {
        return Err(too_large());
    }
    let reading = async {
        let mut stream = body.into_data_stream();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| {
                Problem::invalid_event("the request body could not be read", Vec::new())
            })?;
            if bytes.len() + chunk.len() > max {
                // Dropped here: the rest is never read.
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    };
    // A body that trickles in holds a task and its buffer: bounded like the broker's confirm.
    tokio::time::timeout(BODY_TIMEOUT, reading)
        .await
        .map_err(|_| Problem::body_timeout(BODY_TIMEOUT))?
}

/// The longest a request body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn post_events(State(ingest): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let response = events(&ingest, &headers, body).await;
    let outcome = match &response {
        Ok(_) => "accepted",
        Err(p) => problem_outcome(p),
    };
    metrics::counter!("raccordo_ingest_requests_total", "outcome" => outcome).increment(1);
    metrics::histogram!("raccordo_ingest_request_seconds").record(started.elapsed().as_secs_f64());
    response.unwrap_or_else(IntoResponse::into_response)
}

fn problem_outcome(problem: &Problem) -> &'static str {
    match problem.status {
        400 => "invalid",
        401 => "unauthorized",
        403 => "forbidden",
        408 => "timeout",
        413 => "too_large",
        415 => "unsupported",
        429 => "rate_limited",
        _ => "unavailable",
    }
}

async fn events(ingest: &Ingest, headers: &HeaderMap, body: Body) -> Result<Response, Problem> {
    let user = authenticate(ingest, headers).await?;
    let rate = ingest.rate_of(&user);
    if let Err(wait) = ingest.rates.has_room(&user, rate) {
        return Err(Problem::rate_limited(&user, rate, wait));
    }
    let ct = content_type(headers);
    // The media type is known before the body: refuse it without reading.
    if !ct
        .as_deref()
        .map(http_binding::media_type)
        .is_some_and(|m| m == "application/json" || m.ends_with("+json"))
    {
        return Err(Problem::unsupported(
            HttpBindingError::UnsupportedMediaType(
                ct.as_deref()
                    .map(http_binding::media_type)
                    .unwrap_or_default(),
            )
            .to_string(),
        ));
    }
    let bytes = read_body(ingest, headers, body).await?;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (_, events) = http_binding::decode(
        ct.as_deref(),
        &header,
        &bytes,
        ingest.settings.ingest.max_batch,
    )
    .map_err(|error| match error {
        HttpBindingError::UnsupportedMediaType(_) => Problem::unsupported(error.to_string()),
        HttpBindingError::TooMany { .. } => Problem::too_large(error.to_string()),
        HttpBindingError::Invalid(invalid) => Problem::invalid_event(
            format!("{} invalid event(s): nothing was published", invalid.len()),
            invalid
                .into_iter()
                .map(|i| ProblemItem {
                    pointer: Some(i.pointer),
                    row: None,
                    column: None,
                    detail: i.detail,
                })
                .collect(),
        ),
    })?;
    publish(ingest, &user, &events, |e| ProblemItem {
        pointer: Some(e.pointer.clone()),
        row: None,
        column: None,
        detail: String::new(),
    })
    .await
}

/// Judges, rate-limits and publishes `events` as `user`'s; `item` places a refused event in
/// the request.
async fn publish(
    ingest: &Ingest,
    user: &str,
    events: &[HttpEvent],
    item: impl Fn(&HttpEvent) -> ProblemItem,
) -> Result<Response, Problem> {
    let refused: Vec<ProblemItem> = events
        .iter()
        .filter_map(|event| {
            ingest
                .door
                .authorize(user, event)
                .err()
                .map(|refusal| ProblemItem {
                    detail: refusal.to_string(),
                    ..item(event)
                })
        })
        .collect();
    if !refused.is_empty() {
        return Err(Problem::forbidden(
            format!(
                "{} event(s) that publisher {user:?} may not publish: nothing was published",
                refused.len()
            ),
            refused,
        ));
    }
    let rate = ingest.rate_of(user);
    if let Err(wait) = ingest.rates.take(user, rate, events.len()) {
        return Err(Problem::rate_limited(user, rate, wait));
    }
    match ingest.door.publish(user, events).await {
        Ok(()) => {
            metrics::counter!("raccordo_ingest_events_total", "publisher" => user.to_owned())
                .increment(events.len() as u64);
            let ids: Vec<&str> = events.iter().map(|e| e.envelope.id.as_str()).collect();
            Ok((
                StatusCode::ACCEPTED,
                axum::Json(serde_json::json!({ "accepted": ids.len(), "ids": ids })),
            )
                .into_response())
        }
        Err(error @ (BrokerError::Unreachable | BrokerError::NotConfirmed(_))) => {
            tracing::warn!(publisher = user, events = events.len(), error = %error, "Events not confirmed by the broker; answered 503.");
            Err(Problem::broker_unavailable())
        }
    }
}

#[derive(Debug, Deserialize)]
struct CsvQuery {
    #[serde(default)]
    dry_run: Option<String>,
}

async fn post_csv(
    State(ingest): State<Shared>,
    Path(event_type): Path<String>,
    query: Result<Query<CsvQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let response = csv(&ingest, &event_type, query, &headers, body).await;
    let outcome = match &response {
        Ok(_) => "accepted",
        Err(p) => problem_outcome(p),
    };
    metrics::counter!("raccordo_ingest_csv_requests_total", "outcome" => outcome).increment(1);
    response.unwrap_or_else(IntoResponse::into_response)
}

async fn csv(
    ingest: &Ingest,
    event_type: &str,
    query: Result<Query<CsvQuery>, axum::extract::rejection::QueryRejection>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let user = authenticate(ingest, headers).await?;
    let dry_run = match query.map(|Query(q)| q.dry_run) {
        Ok(None) => false,
        Ok(Some(v)) => match v.as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(Problem::invalid_csv("dry_run is true or false", Vec::new())),
        },
        Err(_) => {
            return Err(Problem::invalid_csv(
                "the query string could not be read: use ?dry_run=true or nothing",
                Vec::new(),
            ));
        }
    };
    let rate = ingest.rate_of(&user);
    if !dry_run && let Err(wait) = ingest.rates.has_room(&user, rate) {
        return Err(Problem::rate_limited(&user, rate, wait));
    }
    let ct = content_type(headers);
    let media = ct
        .as_deref()
        .map(http_binding::media_type)
        .unwrap_or_default();
    if media != "text/csv" && media != "application/csv" {
        return Err(Problem::unsupported(format!(
            "unsupported content type {:?}: send text/csv",
            media.chars().take(80).collect::<String>()
        )));
    }
    let bytes = read_body(ingest, headers, body).await?;
    let judged =
        ingest
            .door
            .judge_csv(&user, event_type, &bytes)
            .map_err(|refusal| match refusal {
                CsvRefusal::Forbidden { .. } => Problem::forbidden(refusal.to_string(), Vec::new()),
                CsvRefusal::File(CsvFileError::TooManyRows { .. }) => {
                    Problem::too_large(refusal.to_string())
                }
                _ => Problem::invalid_csv(refusal.to_string(), Vec::new()),
            })?;
    if dry_run {
        return Ok((
            StatusCode::OK,
            axum::Json(serde_json::json!({
                "rows": judged.rows,
                "valid": judged.events.len(),
                "errors": judged.errors,
                "ids": judged.ids(),
            })),
        )
            .into_response());
    }
    if !judged.errors.is_empty() {
        let forbidden = judged.errors.iter().all(|e| e.forbidden);
        let items: Vec<ProblemItem> = judged
            .errors
            .iter()
            .map(|e| ProblemItem {
                pointer: None,
                row: Some(e.row),
                column: e.column.clone(),
                detail: e.detail.clone(),
            })
            .collect();
        let detail = format!(
            "{} of {} row(s) are refused: nothing was published",
            items.len(),
            judged.rows
        );
        return Err(if forbidden {
            Problem::forbidden(detail, items)
        } else {
            Problem::invalid_csv(detail, items)
        });
    }
    if judged.events.is_empty() {
        return Err(Problem::invalid_csv(
            "the file has no data rows",
            Vec::new(),
        ));
    }
    let events: Vec<HttpEvent> = judged.events.into_iter().map(|(_, e)| e).collect();
    publish(ingest, &user, &events, |_| ProblemItem {
        pointer: None,
        row: None,
        column: None,
        detail: String::new(),
    })
    .await
}
