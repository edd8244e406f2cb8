//! The overview: for every role the counts — dead and parked messages, the backlog, messages
//! and emails per second over the last hour; for the role `operator` also the status —
//! workers and their consumers, queue depths, undeliverable and newest notifications (kind
//! and comune only).

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use minijinja::{Value, context};

use raccordo_core::amqp::{QueueStatus, Topology, WorkQueue, depth_of, queue_status};
use raccordo_core::db;

use crate::auth::{Access, Operator, page_context};
use crate::chart;
use crate::render::{ConsoleError, local_time};
use crate::state::AppState;

pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
) -> Result<Response, ConsoleError> {
    let topology = state.broker.topology();
    let queues = match state.broker.connection().await {
        Ok(connection) => queue_status(&connection, topology).await.ok(),
        Err(_) => None,
    };
    let status = Access::Operator.admits(operator.role);
    let workers = worker_rows(topology, queues.as_deref());
    let local = local_rows(&state);
    let (dead, parked) = queues
        .as_deref()
        .map(|qs| held_counts(topology, qs))
        .unzip();
    let other_queues: Vec<Value> = queues
        .iter()
        .flatten()
        .filter(|q| q.messages.is_some_and(|m| m > 0) || q.name.ends_with(".dead"))
        .map(|q| context! { name => q.name, messages => q.messages, consumers => q.consumers })
        .collect();

    let mut conn = state.pool.acquire().await?;
    let backlog = db::backlog(&mut conn).await?;
    let throughput = db::throughput(&mut conn, 60).await?;
    let (recent, undeliverable) = if status {
        (
            db::recent_notifications(&mut conn, false, 15).await?,
            db::recent_notifications(&mut conn, true, 10).await?,
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let names = if status {
        super::comune_names(&mut conn).await?
    } else {
        Default::default()
    };
    drop(conn);
    let summarize = |n: &db::NotificationSummary| {
        context! {
            kind_label => super::kind_label(&n.kind),
            kind => n.kind,
            comune => super::comune_label(&names, n.comune_istat.as_deref()),
            at => local_time(n.created_at),
            recipients => n.recipients,
            delivered => n.delivered,
            undeliverable => n.undeliverable,
        }
    };
    let ready = !local.is_empty()
        && local
            .iter()
            .all(|c| c.get_attr("up").is_ok_and(|v| v.is_true()));
    let ctx = context! {
        status => status,
        broker => queues.is_some(),
        workers => workers,
        local => local,
        ready => ready,
        dead => dead,
        parked => parked,
        queues => other_queues,
        backlog => backlog,
        events_chart => Value::from_safe_string(chart::rate_bars("ev", "Eventi elaborati al secondo, ultima ora", &throughput.events)),
        emails_chart => Value::from_safe_string(chart::rate_bars("em", "Email inviate al secondo, ultima ora", &throughput.emails)),
        events_hour => throughput.events.iter().sum::<i64>(),
        emails_hour => throughput.emails.iter().sum::<i64>(),
        recent => recent.iter().map(summarize).collect::<Vec<_>>(),
        undeliverable => undeliverable.iter().map(summarize).collect::<Vec<_>>(),
        prefix => state.settings.amqp.prefix,
        ..page_context(&operator, "overview")
    };
    state.templates.page("overview.html", ctx)
}

/// One row per work queue: its depth and consumers, when the broker answered.
fn worker_rows(topology: &Topology, queues: Option<&[QueueStatus]>) -> Vec<Value> {
    WorkQueue::ALL
        .iter()
        .map(|q| {
            let name = topology.queue(*q);
            let status = queues.and_then(|qs| qs.iter().find(|s| s.name == name));
            context! {
                worker => q.name(),
                queue => name,
                messages => status.and_then(|s| s.messages),
                consumers => status.and_then(|s| s.consumers),
            }
        })
        .collect()
}

/// This process's consumers and whether each takes work.
fn local_rows(state: &AppState) -> Vec<Value> {
    state
        .health
        .as_ref()
        .map(|h| {
            h.consumers()
                .into_iter()
                .map(|(name, up)| context! { name => name, up => up })
                .collect()
        })
        .unwrap_or_default()
}

/// (dead, parked) messages; parked counts `{prefix}.parked` and every `{prefix}.parked.*`.
fn held_counts(topology: &Topology, queues: &[QueueStatus]) -> (u32, u32) {
    let parked = topology.parked_queue();
    let parked_total = queues
        .iter()
        .filter(|q| {
            q.name == parked
                || q.name
                    .strip_prefix(parked.as_str())
                    .is_some_and(|r| r.starts_with('.'))
        })
        .map(|q| q.messages.unwrap_or(0))
        .sum::<u32>();
    let dead = depth_of(queues, &topology.dead_queue())
        + depth_of(queues, &topology.dead_personal_queue());
    (dead, parked_total)
}
