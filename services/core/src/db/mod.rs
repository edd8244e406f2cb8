//! PostgreSQL: the pool, database creation, migrations, and the classification of errors
//! into transient (retry) and permanent.
//!
//! Repository functions take `&mut PgConnection` so the caller owns the transaction.

mod backlog;
mod inbox;
mod outbox;
mod relay;

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, Executor, PgConnection, PgPool};

pub use backlog::{
    Backlog, NotificationSummary, Throughput, backlog, recent_notifications, throughput,
};
pub use inbox::{Ingest, record_event};
pub use outbox::{NewNotification, Notification, insert_notification, load_notification};
pub use relay::{NotificationMessage, OUTBOX_CHANNEL, flush_outbox, publish_pending, run_relay};

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

/// Runs pending migrations.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
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
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 40001 serialization_failure, 40P01 deadlock_detected, 08* connection,
            // 57P* operator intervention (admin shutdown, cannot connect now), 53* resources.
            code == "40001"
                || code == "40P01"
                || code.starts_with("08")
                || code.starts_with("57P")
                || code.starts_with("53")
        }),
        _ => false,
    }
}

/// Waits until the database answers, up to `timeout`.
pub async fn ping(pool: &PgPool, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(pool)).await,
        Ok(Ok(_))
    )
}
