//! `raccordo setup`: creates the database if missing, runs migrations, declares the topology.

use anyhow::Context;

use raccordo_core::amqp::{Publisher, Topology, connect};
use raccordo_core::db;
use raccordo_core::settings::Settings;

/// What setup did, for the operator.
pub struct SetupReport {
    pub database: String,
    pub created: bool,
    pub prefix: String,
}

/// Runs the three steps; each is idempotent.
pub async fn run(settings: &Settings) -> anyhow::Result<SetupReport> {
    let database = settings.database.database_name()?;
    let created = db::create_database_if_missing(&settings.database)
        .await
        .with_context(|| {
            format!("Failed to reach PostgreSQL to create database {database} (scripts/services.sh starts it)")
        })?;
    let pool = db::connect(&settings.database)
        .await
        .with_context(|| format!("Failed to connect to database {database}"))?;
    db::migrate(&pool)
        .await
        .context("Failed to run the database migrations")?;
    pool.close().await;
    let connection = connect(&settings.amqp, "setup")
        .await
        .context("Failed to connect to RabbitMQ (scripts/services.sh starts it)")?;
    let publisher = Publisher::open(&connection).await?;
    Topology::from_settings(settings)
        .declare(publisher.channel())
        .await
        .context("Failed to declare the broker topology")?;
    let _ = connection.close(200, "setup done".into()).await;
    Ok(SetupReport {
        database,
        created,
        prefix: settings.amqp.prefix.clone(),
    })
}
