//! PostgreSQL: the pool, database creation, migrations, and the classification of errors
//! into transient (retry) and permanent.
//!
//! Repository functions take `&mut PgConnection` so the caller owns the transaction.

mod acknowledgement;
mod backlog;
mod bounces;
pub mod escalation;
pub mod evidence;
mod inbox;
mod outbox;
mod outbox_reports;
mod relay;
mod schema;
mod server;
mod signal;

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, Executor, PgConnection, PgPool};

pub use acknowledgement::{AckTarget, Acknowledgement, ack_target, acknowledge};
pub use backlog::{
    Backlog, NotificationSummary, Throughput, backlog, recent_notifications, throughput,
};
pub use bounces::{BouncedDelivery, Bounces, bounces};
pub use inbox::{Ingest, count_processed, record_event, record_events};
pub use outbox::{
    AfterFailure, DueDelivery, FailedEmail, HeldIn, HeldNotification, NewNotification,
    Notification, SentEmail, cancel_pending, claim_due, insert_notification, insert_notifications,
    load_notification, of_kind, record_failed, record_sent, release_held, scrub_payloads,
    settled_of_kind, take_unannounced_held,
};
pub use outbox_reports::{NotificationLine, notification_lines};
pub use relay::{
    DeliveryEventMessage, NotificationMessage, RelayError, flush_evidence, flush_outbox,
    publish_pending, run_relay,
};

pub use schema::{MigrationError, applied_version, latest_known, migrate};
pub use server::{commit_count, server_version};
pub use signal::{OUTBOX_CHANNEL, OutboxSignal, listen_outbox};

use crate::settings::DatabaseSettings;

/// The embedded migrations of `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Opens a pool on the configured database.
pub async fn connect(settings: &DatabaseSettings) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout())
        .connect_with(settings.connect_options()?)
        .await
}

/// The session setting that tells `insert_notifications` which kinds go by PEC (CONTRACT
/// D2): set on every connection of a hub's pool from `mail.pec_kinds` (none without
/// `mail.pec_smtp_url`), so the choice is made in the statement that inserts the deliveries.
pub const PEC_KINDS_SETTING: &str = "raccordo.pec_kinds";

/// Opens the pool of a process that decides notifications: [`connect`], with the kinds that
/// go by PEC in [`PEC_KINDS_SETTING`].
pub async fn connect_hub(settings: &crate::settings::Settings) -> Result<PgPool, sqlx::Error> {
    let kinds = settings.mail.pec_channel_kinds().join(",");
    PgPoolOptions::new()
        .max_connections(settings.database.max_connections)
        .acquire_timeout(settings.database.acquire_timeout())
        .connect_with(
            settings
                .database
                .connect_options()?
                .options([(PEC_KINDS_SETTING, kinds.as_str())]),
        )
        .await
}

/// Creates the configured database when it does not exist yet; true if it did not.
pub async fn create_database_if_missing(settings: &DatabaseSettings) -> Result<bool, sqlx::Error> {
    let name = settings.database_name()?;
    let mut conn = PgConnection::connect_with(&settings.maintenance_options()?).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        let quoted = name.replace('"', "\"\"");
        conn.execute(format!(r#"CREATE DATABASE "{quoted}""#).as_str())
            .await?;
    }
    conn.close().await?;
    Ok(!exists)
}

/// Drops a database (tests clean up after themselves).
pub async fn drop_database(settings: &DatabaseSettings) -> Result<(), sqlx::Error> {
    let name = settings.database_name()?;
    let mut conn = PgConnection::connect_with(&settings.maintenance_options()?).await?;
    let quoted = name.replace('"', "\"\"");
    conn.execute(format!(r#"DROP DATABASE IF EXISTS "{quoted}" WITH (FORCE)"#).as_str())
        .await?;
    conn.close().await?;
    Ok(())
}

/// Whether a database error may pass by itself: connection loss, pool exhaustion,
/// serialization conflicts, a server shutting down.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_transient_code(&code)),
        _ => false,
    }
}

/// Whether a PostgreSQL SQLSTATE names a fault that passes by itself.
fn is_transient_code(code: &str) -> bool {
    matches!(
        code,
        // serialization_failure, deadlock_detected
        "40001" | "40P01"
        // read_only_sql_transaction: a replica promoted or a primary demoted during a failover
        | "25006"
        // query_canceled (statement_timeout, a cancel), lock_not_available (lock_timeout)
        | "57014" | "55P03"
        // idle_in_transaction_session_timeout
        | "25P03"
    ) || code.starts_with("08") // connection exceptions
        || code.starts_with("57P") // admin shutdown, crash shutdown, cannot connect now
        || code.starts_with("53") // insufficient resources: disk full, out of memory, too many connections
        || code.starts_with("58") // system errors: I/O error, undefined file
}

/// Waits until the database answers, up to `timeout`.
pub async fn ping(pool: &PgPool, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(pool)).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::is_transient_code;

    #[test]
    fn failover_cancel_lock_and_system_faults_are_transient() {
        for code in [
            "40001", "40P01", "25006", "57014", "55P03", "25P03", "08006", "57P01", "53100",
            "58030", "58000",
        ] {
            assert!(is_transient_code(code), "{code}");
        }
    }

    #[test]
    fn faults_of_the_data_are_permanent() {
        for code in ["23505", "23503", "22007", "42P01", "22008"] {
            assert!(!is_transient_code(code), "{code}");
        }
    }
}
