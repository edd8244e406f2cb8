//! The schema's migrations, safe under replicas of two releases (issue 20): a binary runs on
//! a database that newer migrations have expanded, and refuses one they have contracted past
//! what it knows (the `schema_floor` of migration 37).

use std::borrow::Cow;

use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};

use super::MIGRATOR;

/// Why the schema could not be brought to this release.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// A newer release removed what this one uses.
    #[error(
        "the database was migrated by a newer release that removed what this release uses: \
         it needs a binary knowing migration {floor}, this one knows up to {known}; run the \
         newer release (or restore a backup made by this one)"
    )]
    BelowFloor { floor: i64, known: i64 },
    /// Reading the floor or the applied migrations failed.
    #[error("failed to read the schema's migration state")]
    Database(#[from] sqlx::Error),
    /// A migration failed, or an applied one differs from this binary's copy.
    #[error(transparent)]
    Migrate(#[from] MigrateError),
}

/// The newest migration this binary embeds.
pub fn latest_known() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The newest migration applied to the database (None before the first).
pub async fn applied_version(pool: &PgPool) -> Result<Option<i64>, sqlx::Error> {
    if !relation_exists(pool, "_sqlx_migrations").await? {
        return Ok(None);
    }
    sqlx::query_scalar(
        r#"
        SELECT max(version)
        FROM _sqlx_migrations
        WHERE success
        "#,
    )
    .fetch_one(pool)
    .await
}

/// Runs this binary's pending migrations. Migrations applied by a newer release are left as
/// they are (they only expanded the schema) unless its floor is above what this binary knows.
pub async fn migrate(pool: &PgPool) -> Result<(), MigrationError> {
    let known = latest_known();
    if let Some(floor) = floor(pool).await?
        && floor > known
    {
        return Err(MigrationError::BelowFloor { floor, known });
    }
    if let Some(applied) = applied_version(pool).await?
        && applied > known
    {
        tracing::info!(
            applied,
            known,
            "The database has migrations of a newer release; running on its expanded schema."
        );
    }
    let migrator = Migrator {
        migrations: Cow::Borrowed(MIGRATOR.migrations.as_ref()),
        ignore_missing: true,
        locking: MIGRATOR.locking,
        no_tx: MIGRATOR.no_tx,
    };
    migrator.run(pool).await?;
    Ok(())
}

/// The schema's floor (None before migration 37).
async fn floor(pool: &PgPool) -> Result<Option<i64>, sqlx::Error> {
    if !relation_exists(pool, "schema_floor").await? {
        return Ok(None);
    }
    sqlx::query_scalar(
        r#"
        SELECT version
        FROM schema_floor
        "#,
    )
    .fetch_optional(pool)
    .await
}

async fn relation_exists(pool: &PgPool, name: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(name)
        .fetch_one(pool)
        .await
}
