//! `GET /v1/stream?after=CURSOR&limit=N` (CONTRACT 1.2 §10): the notifications the hub
//! published on `{prefix}.events`, in the order the relay numbered them, of the kinds the
//! token's publisher may read (`publishers.<user>.stream_kinds`), for `ingest.stream_days`.
//! The body of each is what `{prefix}.events` carries: ids, kind, comune, time — never
//! personal data, which stays in the database.
//!
//! The cursor is the relay's number. Numbers become visible in order (the relay numbers
//! one batch at a time, until commit), so a page never skips a late commit. A page shorter
//! than the limit ends at the newest number visible, whatever its kind, so a reader of a
//! rare kind does not walk the same rows again at each poll.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use raccordo_core::notification::NotificationKind;

use crate::problem::Problem;
use crate::server::{Ingest, authenticate};

/// Items per page when `limit` is not given, and at most.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

#[derive(Debug, Deserialize)]
pub(crate) struct StreamQuery {
    after: Option<String>,
    limit: Option<String>,
}

pub(crate) async fn get_stream(
    State(ingest): State<Arc<Ingest>>,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    stream(&ingest, query, &headers)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

type Row = (i64, Uuid, String, Option<String>, OffsetDateTime, bool);

async fn stream(
    ingest: &Ingest,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
    headers: &HeaderMap,
) -> Result<Response, Problem> {
    let user = authenticate(ingest, headers).await?;
    let Ok(Query(query)) = query else {
        return Err(Problem::invalid_cursor(
            "the query string could not be read: use ?after=CURSOR&limit=N",
        ));
    };
    let after: i64 = match query.after.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(text) => text.parse().ok().filter(|n: &i64| *n >= 0).ok_or_else(|| {
            Problem::invalid_cursor("after is a cursor this stream returned as next")
        })?,
    };
    let limit: i64 = match query.limit.as_deref().map(str::trim) {
        None | Some("") => DEFAULT_LIMIT,
        Some(text) => text
            .parse()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                Problem::invalid_cursor(format!("limit is a whole number from 1 to {MAX_LIMIT}"))
            })?,
    };
    let rule = ingest.settings.publishers.users.get(&user);
    let kinds: Vec<&str> = NotificationKind::ALL
        .iter()
        .map(|k| k.as_str())
        .filter(|k| rule.is_some_and(|r| r.may_read(k)))
        .collect();
    if kinds.is_empty() {
        return Err(Problem::forbidden(
            format!(
                "publisher {user:?} may read no notification: set publishers.{user}.stream_kinds"
            ),
            Vec::new(),
        ));
    }
    let days = i32::try_from(ingest.settings.ingest.stream_days).unwrap_or(i32::MAX);
    let unavailable = |error: sqlx::Error| {
        tracing::warn!(error = %error, "The stream could not be read.");
        Problem::database_unavailable()
    };
    // One snapshot for the page and the newest number, so `next` never passes a row the
    // page did not see.
    let mut tx = ingest.pool.begin().await.map_err(unavailable)?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    let rows: Vec<Row> = sqlx::query_as(
        r#"
        SELECT stream_seq, id, kind, comune_istat, created_at, undeliverable
        FROM notifications
        WHERE stream_seq > $1
          AND created_at > now() - make_interval(days => $2)
          AND kind = ANY($3)
        ORDER BY stream_seq
        LIMIT $4
        "#,
    )
    .bind(after)
    .bind(days)
    .bind(&kinds)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await
    .map_err(unavailable)?;
    let next = if rows.len() as i64 == limit {
        rows.last().map_or(after, |r| r.0)
    } else {
        let newest: Option<i64> =
            sqlx::query_scalar("SELECT max(stream_seq) FROM notifications WHERE stream_seq > $1")
                .bind(after)
                .fetch_one(&mut *tx)
                .await
                .map_err(unavailable)?;
        newest.unwrap_or(after).max(after)
    };
    tx.commit().await.map_err(unavailable)?;
    let items: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|(seq, id, kind, comune_istat, created_at, undeliverable)| {
            let created_at = created_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            serde_json::json!({
                "cursor": seq.to_string(),
                "notification": {
                    "id": id,
                    "kind": kind,
                    "comune_istat": comune_istat,
                    "created_at": created_at,
                    "undeliverable": undeliverable,
                },
            })
        })
        .collect();
    metrics::counter!("raccordo_ingest_stream_items_total").increment(items.len() as u64);
    Ok((
        StatusCode::OK,
        axum::Json(serde_json::json!({ "items": items, "next": next.to_string() })),
    )
        .into_response())
}
