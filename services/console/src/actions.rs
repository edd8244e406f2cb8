//! The console's audit trail: every replay and purge, who did it with which role, when, on
//! what, how many (`console_actions`, migrations 0009 and 0016). Ids and counts only, never
//! message content. The notice shown after an action is made from its record here, by the
//! hub's own sentences: nothing of the URL is shown.

use serde::Serialize;
use sqlx::PgPool;
use time::OffsetDateTime;

/// One recorded action.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ActionRecord {
    pub(crate) operator: String,
    pub(crate) role: Option<String>,
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
    pub(crate) role: &'a str,
    pub(crate) action: &'a str,
    pub(crate) holding: &'a str,
    pub(crate) target: Option<&'a str>,
    pub(crate) affected: i32,
    pub(crate) outcome: &'a str,
}

/// Records `action`; returns its id.
pub(crate) async fn record(pool: &PgPool, action: &NewAction<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        r#"
        INSERT INTO console_actions (operator, role, action, holding, target, affected, outcome)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        RETURNING id
        "#,
    )
    .bind(action.operator)
    .bind(action.role)
    .bind(action.action)
    .bind(action.holding)
    .bind(action.target)
    .bind(action.affected)
    .bind(action.outcome)
    .fetch_one(pool)
    .await
}

/// The newest actions, newest first.
pub(crate) async fn recent(pool: &PgPool, limit: i64) -> Result<Vec<ActionRecord>, sqlx::Error> {
    type Row = (
        String,
        Option<String>,
        String,
        String,
        Option<String>,
        i32,
        String,
        OffsetDateTime,
    );
    let rows: Vec<Row> = sqlx::query_as(
        r#"
        SELECT operator, role, action, holding, target, affected, outcome, at
        FROM console_actions
        WHERE action IN ('replay', 'purge')
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
            |(operator, role, action, holding, target, affected, outcome, at)| ActionRecord {
                operator,
                role,
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

/// The notice after action `id`, when it is this user's and recent; `None` otherwise.
pub(crate) async fn notice(
    pool: &PgPool,
    id: i64,
    operator: &str,
) -> Result<Option<String>, sqlx::Error> {
    let row: Option<(String, Option<String>, i32, String)> = sqlx::query_as(
        r#"
        SELECT action, target, affected, outcome
        FROM console_actions
        WHERE id = $1 AND operator = $2 AND at > now() - interval '1 hour'
        "#,
    )
    .bind(id)
    .bind(operator)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(action, target, affected, outcome)| {
        sentence(&action, target.is_some(), affected, &outcome)
    }))
}

/// The hub's sentence for an action's outcome.
fn sentence(action: &str, one: bool, affected: i32, outcome: &str) -> String {
    let replay = action == "replay";
    match (outcome == "done", one, affected) {
        (false, _, 1) => "L'azione non è riuscita (broker non raggiungibile?): 1 messaggio trattato prima dell'errore.".to_owned(),
        (false, _, n) => format!(
            "L'azione non è riuscita (broker non raggiungibile?): {n} messaggi trattati prima dell'errore."
        ),
        (true, true, 0) => {
            "Il messaggio non è più in coda (già reinviato, eliminato o scaduto): nulla è cambiato."
                .to_owned()
        }
        (true, _, 1) if replay => "1 messaggio reinviato.".to_owned(),
        (true, _, 1) => "1 messaggio eliminato.".to_owned(),
        (true, _, n) if replay => format!("{n} messaggi reinviati."),
        (true, _, n) => format!("{n} messaggi eliminati."),
    }
}

#[cfg(test)]
mod tests {
    use super::sentence;

    #[test]
    fn every_notice_is_one_of_the_hub_s_sentences() {
        assert_eq!(
            sentence("replay", false, 2, "done"),
            "2 messaggi reinviati."
        );
        assert_eq!(
            sentence("replay", true, 1, "done"),
            "1 messaggio reinviato."
        );
        assert_eq!(sentence("purge", true, 1, "done"), "1 messaggio eliminato.");
        assert_eq!(sentence("purge", false, 0, "done"), "0 messaggi eliminati.");
        assert!(sentence("purge", true, 0, "done").starts_with("Il messaggio non è più"));
        assert!(sentence("replay", false, 1, "failed").starts_with("L'azione non è riuscita"));
    }
}
