//! Reads of the comuni table for operators' commands: the known zone, and a comune found
//! by its name.

use sqlx::PgConnection;

use crate::domain::{ComuneIstat, ParseError};

/// A lookup in the registry failed.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The query failed.
    #[error("failed to read the comuni")]
    Database(#[from] sqlx::Error),
    /// A stored ISTAT code does not parse: the table was written around the import.
    #[error("the registry holds an invalid ISTAT code")]
    InvalidIstat(#[source] ParseError),
}

/// The zone omogenee of the registry, by name.
pub async fn list_zone(conn: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        r#"
        SELECT DISTINCT zona
        FROM comuni
        ORDER BY zona
        "#,
    )
    .fetch_all(conn)
    .await
}

/// The comune named `nome` (compared without case and surrounding spaces), if any.
pub async fn find_comune_by_name(
    conn: &mut PgConnection,
    nome: &str,
) -> Result<Option<ComuneIstat>, LookupError> {
    let found: Option<String> = sqlx::query_scalar(
        r#"
        SELECT istat
        FROM comuni
        WHERE lower(nome) = lower($1)
        "#,
    )
    .bind(nome.trim())
    .fetch_optional(conn)
    .await?;
    found
        .map(|istat| ComuneIstat::parse(&istat).map_err(LookupError::InvalidIstat))
        .transpose()
}
