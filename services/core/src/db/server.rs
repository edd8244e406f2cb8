//! Facts about the PostgreSQL server itself, for the benchmark's report.

use sqlx::{Connection, PgConnection};

use crate::settings::DatabaseSettings;

/// The server's version (`SHOW server_version`).
pub async fn server_version(conn: &mut PgConnection) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SHOW server_version")
        .fetch_one(conn)
        .await
}

/// Transactions committed in `database` since the statistics were reset, read through the
/// maintenance database so that the reading itself is not counted.
pub async fn commit_count(settings: &DatabaseSettings, database: &str) -> Result<i64, sqlx::Error> {
    let mut conn = PgConnection::connect_with(&settings.maintenance_options()?).await?;
    let commits = sqlx::query_scalar(
        r#"
        SELECT xact_commit
        FROM pg_stat_database
        WHERE datname = $1
        "#,
    )
    .bind(database)
    .fetch_one(&mut conn)
    .await;
    conn.close().await?;
    commits
}
