//! The operators' endpoint: `/healthz` (the process runs), `/readyz` (broker and database
//! reachable, every consumer attached) and `/metrics` (Prometheus text format).

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::health::Health;

/// Installs the Prometheus recorder once per process and returns its handle.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = delivery_buckets(PrometheusBuilder::new()).build_recorder();
            let handle = recorder.handle();
            // Another recorder may exist in tests that embed several apps; keep ours usable.
            let _ = metrics::set_global_recorder(recorder);
            describe_metrics();
            handle
        })
        .clone()
}

/// The delivery evidence's times are histograms with buckets (D6), so they can be summed
/// across replicas; the other histograms stay summaries.
fn delivery_buckets(builder: PrometheusBuilder) -> PrometheusBuilder {
    use crate::delivery_metrics::{BUCKETS, TIME_TO_ACKNOWLEDGEMENT, TIME_TO_DELIVERY};
    use metrics_exporter_prometheus::Matcher;
    let mut builder = builder;
    for name in [TIME_TO_DELIVERY, TIME_TO_ACKNOWLEDGEMENT] {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.to_owned()), BUCKETS)
            .expect("BUCKETS is not empty");
    }
    builder
}

fn describe_metrics() {
    use metrics::{describe_counter, describe_histogram};
    describe_histogram!(
        crate::delivery_metrics::TIME_TO_DELIVERY,
        metrics::Unit::Seconds,
        "From a notification's decision to its delivery (email accepted, PEC receipt), by kind and channel."
    );
    describe_histogram!(
        crate::delivery_metrics::TIME_TO_ACKNOWLEDGEMENT,
        metrics::Unit::Seconds,
        "From a notification's decision to a recipient's acknowledgement, by kind."
    );
    metrics::describe_gauge!(
        crate::delivery_metrics::DELIVERIES,
        "Deliveries by kind and state (their latest timeline event)."
    );
    describe_counter!(
        "raccordo_messages_consumed_total",
        "Messages handled, by worker and outcome."
    );
    describe_counter!(
        "raccordo_messages_dead_lettered_total",
        "Messages moved to the dead queue, by worker."
    );
    describe_counter!(
        "raccordo_messages_retried_total",
        "Messages scheduled for a retry, by worker."
    );
    describe_counter!(
        "raccordo_messages_parked_total",
        "Messages parked after all retries, by worker."
    );
    describe_counter!(
        "raccordo_notifications_total",
        "Notifications published, by kind."
    );
    describe_counter!(
        "raccordo_notifications_undeliverable_total",
        "Notifications that matched no referent, by kind."
    );
    describe_counter!(
        "raccordo_emails_sent_total",
        "Emails accepted by the transport, by kind."
    );
    describe_counter!(
        "raccordo_emails_failed_total",
        "Email sends that failed, by kind and cause."
    );
    describe_histogram!(
        "raccordo_message_handling_seconds",
        "Time to handle one message, by worker."
    );
    describe_histogram!("raccordo_email_send_seconds", "Time to send one email.");
}

#[derive(Clone)]
struct AppState {
    pool: PgPool,
    health: Health,
    metrics: PrometheusHandle,
}

/// Binds `addr` and serves until `token` is cancelled; returns the bound address.
pub async fn serve_http(
    addr: &str,
    pool: PgPool,
    health: Health,
    token: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let state = AppState {
        pool,
        health,
        metrics: metrics_handle(),
    };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(state);
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await;
        if let Err(error) = result {
            tracing::error!(error = %error, "The HTTP endpoint failed.");
        }
    });
    tracing::info!(addr = %local, "Serving /healthz, /readyz and /metrics.");
    Ok((local, handle))
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let database = crate::db::ping(&state.pool, Duration::from_secs(2)).await;
    let consumers = state.health.states();
    let consuming = state.health.all_consuming();
    let mut body = format!(
        "database: {}\n",
        if database { "ok" } else { "unreachable" }
    );
    for (name, consumer) in &consumers {
        body.push_str(&format!("consumer {name}: {consumer}\n"));
    }
    let status = if database && consuming {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}

async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
