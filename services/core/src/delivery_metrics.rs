//! Delivery evidence as metrics (CONTRACT D6): time to delivery and time to
//! acknowledgement per kind, as Prometheus histograms, and deliveries by state.
//!
//! Both times start when the notification was decided (its `queued`). Time to delivery
//! ends at the event that makes a delivery delivered: the server's acceptance for email
//! (`sent`), the recipient's receipt for PEC (`pec_delivered`); time to acknowledgement at
//! the button of D4. Each is observed once, where its event is recorded, by the process
//! that records it. Deliveries by state is a gauge read from the database by every
//! replica (the same figure: take `max` across replicas, not `sum`).

use std::time::Duration;

use sqlx::PgPool;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// The histogram of times to delivery, by `kind` and `channel`.
pub const TIME_TO_DELIVERY: &str = "raccordo_time_to_delivery_seconds";
/// The histogram of times to acknowledgement, by `kind`.
pub const TIME_TO_ACKNOWLEDGEMENT: &str = "raccordo_time_to_acknowledgement_seconds";
/// The gauge of deliveries by `kind` and `state` (their latest D1 event).
pub const DELIVERIES: &str = "raccordo_deliveries";

/// The histograms' buckets, in seconds: from a second to a week, around the clocks that
/// matter (a minute, an hour, `escalation.after_hours` 12 and 24, `mail.pec_receipt_hours`).
pub const BUCKETS: &[f64] = &[
    1.0,
    5.0,
    15.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    4.0 * 3600.0,
    12.0 * 3600.0,
    24.0 * 3600.0,
    48.0 * 3600.0,
    72.0 * 3600.0,
    7.0 * 86400.0,
];

fn seconds_since(created_at: OffsetDateTime, at: OffsetDateTime) -> f64 {
    (at - created_at).as_seconds_f64().max(0.0)
}

/// A delivery of `kind` by `channel` (`email`, `pec`) delivered at `at`.
pub fn observe_delivered(
    kind: &str,
    channel: &'static str,
    created_at: OffsetDateTime,
    at: OffsetDateTime,
) {
    metrics::histogram!(TIME_TO_DELIVERY, "kind" => kind.to_owned(), "channel" => channel)
        .record(seconds_since(created_at, at));
}

/// A delivery of `kind` acknowledged at `at`.
pub fn observe_acknowledged(kind: &str, created_at: OffsetDateTime, at: OffsetDateTime) {
    metrics::histogram!(TIME_TO_ACKNOWLEDGEMENT, "kind" => kind.to_owned())
        .record(seconds_since(created_at, at));
}

/// Sets the gauge of deliveries by kind and state from the database.
pub async fn refresh_states(pool: &PgPool) -> Result<(), sqlx::Error> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        r#"
        SELECT n.kind, d.state, count(*)
        FROM deliveries d
        JOIN notifications n ON n.id = d.notification_id
        GROUP BY n.kind, d.state
        "#,
    )
    .fetch_all(pool)
    .await?;
    for (kind, state, count) in rows {
        metrics::gauge!(DELIVERIES, "kind" => kind, "state" => state).set(count as f64);
    }
    Ok(())
}

/// How often [`run_state_gauges`] reads the states.
pub const STATES_EVERY: Duration = Duration::from_secs(15);

/// Refreshes the gauge of deliveries by state every [`STATES_EVERY`] until `token` is
/// cancelled.
pub async fn run_state_gauges(pool: PgPool, token: CancellationToken) {
    loop {
        if let Err(error) = refresh_states(&pool).await {
            tracing::debug!(error = %error, "Could not count the deliveries by state; will retry.");
        }
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tokio::time::sleep(STATES_EVERY) => {}
        }
    }
}
