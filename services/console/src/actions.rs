//! The console's audit trail: every replay and purge, who did it, when, on what, how many
//! (`console_actions`, migration 0009). Ids and counts only, never message content.

use serde::Serialize;
use sqlx::PgPool;
use time::OffsetDateTime;

/// One recorded action.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ActionRecord {
    pub(crate) operator: String,
    pub(crate) action: String,
    pub(crate) holding: String,
    pub(crate) target: Option<String>,
    pub(crate) affected: i32,
    pub(crate) outcome: String,
    pub(crate) at: String,
}

/// What to record.
pub(crate) struct NewAction<'a> {
    pub(crate) operator: &'a str,
    pub(crate) action: &'a str,
    pub(crate) holding: &'a str,
    pub(crate) target: Option<&'a str>,
    pub(crate) affected: i32,
    pub(crate) outcome: &'a str,
}

pub(crate) async fn record(pool: &PgPool, action: &NewAction<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"
        INSERT INTO console_actions (operator, action, holding, target, affected, outcome)
        VALUES ($1, $2, $3, $4, $5, $6)
        "#,
    )
    .bind(action.operator)
    .bind(action.action)
    .bind(action.holding)
    .bind(action.target)
    .bind(action.affected)
    .bind(action.outcome)
    .execute(pool)
    .await?;
    Ok(())
}

/// The newest actions, newest first.
pub(crate) async fn recent(pool: &PgPool, limit: i64) -> Result<Vec<ActionRecord>, sqlx::Error> {
    type Row = (
        String,
        String,
        String,
        Option<String>,
        i32,
        String,
        OffsetDateTime,
    );
    let rows: Vec<Row> = sqlx::query_as(
        r#"
        SELECT operator, action, holding, target, affected, outcome, at
        FROM console_actions
        ORDER BY at DESC, id DESC
        LIMIT $1
        "#,
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(operator, action, holding, target, affected, outcome, at)| ActionRecord {
                operator,
                action,
                holding,
                target,
                affected,
                outcome,
                at: crate::render::local_time(at),
            },
        )
        .collect())
}
