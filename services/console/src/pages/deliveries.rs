//! Deliveries: every notification sent, one row per recipient, filterable by kind, comune,
//! recipient, state and date, each linked to its timeline (CONTRACT D1); and the timeline
//! page of one notification. Times in Europe/Rome.
//!
//! A delivery of a kind that concerns one family or one person (an eviction notice, an
//! asylum case) is a row per family: only the `privacy` role sees those one by one, as it
//! alone sees the eviction audit; the other roles see the rest and are told what is left out.

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use minijinja::context;
use serde::Deserialize;
use uuid::Uuid;

use raccordo_core::clock::rome_start_of_day;
use raccordo_core::db::evidence::{self, DeliveryEvent, DeliveryFilter};
use raccordo_core::domain::{ComuneIstat, parse_date};
use raccordo_core::notification::NotificationKind;
use raccordo_core::settings::ConsoleRole;

use crate::auth::{Operator, page_context};
use crate::chart;
use crate::params::{Params, QueryParams, Segment, invalid};
use crate::render::{ConsoleError, local_time};
use crate::state::AppState;

/// Rows per page.
pub(crate) const PAGE_SIZE: i64 = 100;
/// How deep the list pages; past that, narrow the filter.
const MAX_OFFSET: i64 = 100_000;

/// Kinds whose deliveries are one per family or person: shown one by one to `privacy` alone.
pub(crate) const PER_FAMILY_KINDS: [&str; 7] = [
    "eviction.alert",
    "eviction.consent_revoked",
    "asylum.pronta_accoglienza",
    "asylum.intervention_overdue",
    "asylum.domicile_assigned",
    "asylum.place_available",
    "delivery.unacknowledged",
];

fn hidden_for(role: ConsoleRole) -> Vec<String> {
    if role == ConsoleRole::Privacy {
        Vec::new()
    } else {
        PER_FAMILY_KINDS.iter().map(|k| (*k).to_owned()).collect()
    }
}

/// The filter's fields, as the form sends them (empty = any), and the position in the list.
#[derive(Deserialize, Default)]
pub(crate) struct DeliveriesQuery {
    #[serde(default)]
    tipo: Option<String>,
    #[serde(default)]
    comune: Option<String>,
    #[serde(default)]
    destinatario: Option<String>,
    #[serde(default)]
    stato: Option<String>,
    #[serde(default)]
    dal: Option<String>,
    #[serde(default)]
    al: Option<String>,
    #[serde(default)]
    da: Option<String>,
}

impl QueryParams for DeliveriesQuery {
    const NAMES: &'static [&'static str] =
        &["tipo", "comune", "destinatario", "stato", "dal", "al", "da"];
}

fn given(field: &Option<String>) -> Option<String> {
    field
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn day(field: &Option<String>, name: &str) -> Result<Option<time::Date>, ConsoleError> {
    given(field)
        .map(|d| {
            parse_date(&d)
                .ok()
                .filter(|d| (2000..=9999).contains(&d.year()))
                .ok_or_else(|| {
                    ConsoleError::BadRequest(format!(
                        "Data «{name}» non valida: scriverla come AAAA-MM-GG, dal 2000 in poi, ad esempio 2026-03-01."
                    ))
                })
        })
        .transpose()
}

/// The position in the list: a number from 0 to [`MAX_OFFSET`].
fn offset_of(q: &DeliveriesQuery) -> Result<i64, ConsoleError> {
    given(&q.da).map_or(Ok(0), |d| {
        d.parse::<i64>()
            .ok()
            .filter(|d| (0..=MAX_OFFSET).contains(d))
            .ok_or_else(|| {
                invalid(
                    "da",
                    &format!("la posizione nell'elenco è un numero da 0 a {MAX_OFFSET}; oltre, restringere i filtri."),
                )
            })
    })
}

fn filter_of(q: &DeliveriesQuery, role: ConsoleRole) -> Result<DeliveryFilter, ConsoleError> {
    let state = given(&q.stato);
    if let Some(s) = &state
        && DeliveryEvent::parse(s).is_none()
    {
        return Err(ConsoleError::BadRequest(format!(
            "Stato non valido (parametro «stato»): uno di {}.",
            DeliveryEvent::ALL.map(DeliveryEvent::as_str).join(", ")
        )));
    }
    let kind = given(&q.tipo);
    if let Some(k) = &kind
        && NotificationKind::parse(k).is_none()
    {
        return Err(invalid(
            "tipo",
            "un tipo di notifica, ad esempio housing.offered (la pagina Email li elenca tutti).",
        ));
    }
    let comune = given(&q.comune);
    if let Some(c) = &comune
        && ComuneIstat::parse(c).is_err()
    {
        return Err(invalid(
            "comune",
            "il codice ISTAT del comune, sei cifre, ad esempio 015146.",
        ));
    }
    let from = day(&q.dal, "dal")?.map(rome_start_of_day);
    let until = day(&q.al, "al")?
        .and_then(|d| d.next_day())
        .map(rome_start_of_day);
    Ok(DeliveryFilter {
        kind,
        comune_istat: comune,
        recipient: given(&q.destinatario),
        state,
        from,
        until,
        hidden_kinds: hidden_for(role),
    })
}

/// The query string of the filter, for the pages' links.
fn query_string(q: &DeliveriesQuery) -> String {
    let pairs = [
        ("tipo", &q.tipo),
        ("comune", &q.comune),
        ("destinatario", &q.destinatario),
        ("stato", &q.stato),
        ("dal", &q.dal),
        ("al", &q.al),
    ];
    pairs
        .iter()
        .filter_map(|(k, v)| given(v).map(|v| format!("{k}={}", urlencode(&v))))
        .collect::<Vec<_>>()
        .join("&")
}

fn urlencode(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
}

pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Params(q): Params<DeliveriesQuery>,
) -> Result<Response, ConsoleError> {
    let filter = filter_of(&q, operator.role)?;
    let offset = offset_of(&q)?;
    let mut conn = state.pool.acquire().await?;
    let mut rows = evidence::list_deliveries(&mut conn, &filter, offset, PAGE_SIZE + 1).await?;
    let names = super::comune_names(&mut conn).await?;
    drop(conn);
    let more = rows.len() > usize::try_from(PAGE_SIZE).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(PAGE_SIZE).unwrap_or(usize::MAX));
    let shown: Vec<minijinja::Value> = rows
        .iter()
        .map(|r| {
            let label = DeliveryEvent::parse(&r.state).map_or("", DeliveryEvent::label_it);
            context! {
                notification => r.notification_id.to_string(),
                kind_label => raccordo_core::notification::NotificationKind::parse(&r.kind)
                    .map(raccordo_core::notification::NotificationKind::label_it),
                kind => r.kind,
                comune => super::comune_label(&names, r.comune_istat.as_deref()),
                created => local_time(r.created_at),
                referent => r.referent_id,
                recipient => r.recipient,
                channel => r.channel,
                state => r.state,
                state_label => label,
                state_at => local_time(r.state_at),
            }
        })
        .collect();
    let states: Vec<minijinja::Value> = DeliveryEvent::ALL
        .iter()
        .map(|e| context! { value => e.as_str(), label => e.label_it() })
        .collect();
    let charts = latency_charts(&state, operator.role).await?;
    let qs = query_string(&q);
    let ctx = context! {
        rows => shown,
        states => states,
        f => context! {
            tipo => given(&q.tipo), comune => given(&q.comune),
            destinatario => given(&q.destinatario), stato => given(&q.stato),
            dal => given(&q.dal), al => given(&q.al),
        },
        next => more.then(|| format!("/deliveries?{qs}{}da={}", if qs.is_empty() { "" } else { "&" }, offset + PAGE_SIZE)),
        previous => (offset > 0).then(|| format!("/deliveries?{qs}{}da={}", if qs.is_empty() { "" } else { "&" }, (offset - PAGE_SIZE).max(0))),
        hidden => (operator.role != ConsoleRole::Privacy).then_some(PER_FAMILY_KINDS),
        charts => charts,
        ..page_context(&operator, "deliveries")
    };
    state.templates.page("deliveries.html", ctx)
}

/// The period of the charts.
const CHART_DAYS: i64 = 30;

/// Time to delivery and to acknowledgement per kind over the last [`CHART_DAYS`] (D6). A
/// per-family kind with fewer than 3 deliveries is left out for the roles that may not see
/// its deliveries one by one.
async fn latency_charts(
    state: &AppState,
    role: ConsoleRole,
) -> Result<minijinja::Value, ConsoleError> {
    let since = raccordo_core::clock::now() - time::Duration::days(CHART_DAYS);
    let mut conn = state.pool.acquire().await?;
    let rows = evidence::latency_by_kind(&mut conn, since).await?;
    drop(conn);
    let visible = |kind: &str, n: i64| {
        role == ConsoleRole::Privacy || !PER_FAMILY_KINDS.contains(&kind) || n >= 3
    };
    let delivery: Vec<(String, f64, f64)> = rows
        .iter()
        .filter(|r| visible(&r.kind, r.delivered))
        .filter_map(|r| Some((r.kind.clone(), r.delivery_p50_s?, r.delivery_p90_s?)))
        .collect();
    let ack: Vec<(String, f64, f64)> = rows
        .iter()
        .filter(|r| visible(&r.kind, r.acknowledged))
        .filter_map(|r| Some((r.kind.clone(), r.ack_p50_s?, r.ack_p90_s?)))
        .collect();
    let chart = |id: &str, title: &str, rows: &[(String, f64, f64)]| {
        (!rows.is_empty())
            .then(|| minijinja::Value::from_safe_string(chart::latency_bars(id, title, rows)))
    };
    Ok(context! {
        days => CHART_DAYS,
        delivery => chart("to-delivery", "Tempo dalla decisione alla consegna, per tipo", &delivery),
        ack => chart("to-ack", "Tempo dalla decisione alla presa visione, per tipo", &ack),
    })
}

pub(crate) async fn timeline(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    Segment(id): Segment,
) -> Result<Response, ConsoleError> {
    let id = Uuid::parse_str(&id).map_err(|_| {
        ConsoleError::NotFound("Notifica non trovata: l'identificativo non è valido.")
    })?;
    let mut conn = state.pool.acquire().await?;
    let timeline = evidence::timeline(&mut conn, id)
        .await?
        .ok_or(ConsoleError::NotFound("Notifica non trovata."))?;
    drop(conn);
    if operator.role != ConsoleRole::Privacy && PER_FAMILY_KINDS.contains(&timeline.kind.as_str()) {
        return Err(ConsoleError::Denied(format!(
            "Le consegne di {} riguardano una famiglia o una persona: le vede solo il ruolo privacy.",
            timeline.kind
        )));
    }
    let deliveries: Vec<minijinja::Value> = timeline
        .deliveries
        .iter()
        .map(|d| {
            let events: Vec<minijinja::Value> = d
                .events
                .iter()
                .map(|e| {
                    let details: Vec<(String, String)> = e
                        .details
                        .iter()
                        .map(|(k, v)| {
                            let v = match v {
                                serde_json::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            (k.clone(), v)
                        })
                        .collect();
                    context! {
                        event => e.event,
                        label => DeliveryEvent::parse(&e.event).map_or("", DeliveryEvent::label_it),
                        at => local_time(e.at),
                        at_iso => e.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                        details => details,
                    }
                })
                .collect();
            context! {
                recipient => d.recipient,
                referent => d.referent_id,
                channel => d.channel,
                state => d.state,
                state_label => DeliveryEvent::parse(&d.state).map_or("", DeliveryEvent::label_it),
                events => events,
            }
        })
        .collect();
    let ctx = context! {
        notification => timeline.notification.to_string(),
        kind_label => raccordo_core::notification::NotificationKind::parse(&timeline.kind)
            .map(raccordo_core::notification::NotificationKind::label_it),
        kind => timeline.kind,
        deliveries => deliveries,
        ..page_context(&operator, "deliveries")
    };
    state.templates.page("timeline.html", ctx)
}
