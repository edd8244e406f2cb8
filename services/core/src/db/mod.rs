//! PostgreSQL: the pool, database creation, migrations, and the classification of errors
//! into transient (retry) and permanent.
//!
//! Repository functions take `&mut PgConnection` so the caller owns the transaction.

mod acknowledgement;
mod backlog;
mod bounces;
pub mod digests;
pub mod escalation;
pub mod evidence;
mod inbox;
mod outbox;
mod outbox_reports;
mod relay;
mod schema;
mod server;
mod signal;

pub use crate::pg::{is_transient, ping};

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
    Notification, SentEmail, about_comune, cancel_pending, claim_due, insert_notification,
    insert_notifications, load_notification, notify_comune, of_kind, record_failed, record_sent,
    release_held, scrub_payloads, settled_of_kind, take_unannounced_held,
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
