//! The referents' history: who changed which referent, when, from what to what (CONTRACT
//! §4 registry, version 1.2). A trigger on `referents` (migration 0014) writes every
//! change, whatever wrote it; a writer names itself for its transaction with
//! [`set_actor`] — a registry event's validated publisher, `import:<file>`, `cli` — and a
//! statement typed by hand is recorded as `db:<database user>`.

use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use time::OffsetDateTime;

/// Who changes the registry, as the history records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(String);

impl Actor {
    /// The publisher of a registry event: its broker-validated `user_id`, or `anonymous`
    /// where `publishers.allow_anonymous` lets such events in.
    pub fn publisher(user: Option<&str>) -> Self {
        Self(user.map_or_else(|| "anonymous".to_owned(), printable))
    }

    /// An import of the file `file` (`raccordo import referents FILE`, `-` for stdin).
    pub fn import(file: &str) -> Self {
        Self(format!("import:{}", printable(file)))
    }

    /// The referent itself, on its preferences page (a signed link of its emails).
    pub fn self_service(referent_id: &str) -> Self {
        Self(format!("self-service:{}", printable(referent_id)))
    }

    /// An operator's command that is not an import.
    pub fn cli() -> Self {
        Self("cli".to_owned())
    }

    /// The recorded text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `text` with its control characters shown as `?`: a file name may hold a newline, and
/// the history is printed on operators' terminals.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Names the actor of every change the transaction on `conn` makes to `referents`
/// (transaction-local: it ends with the transaction).
pub async fn set_actor(conn: &mut PgConnection, actor: &Actor) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT set_config('raccordo.actor', $1, true)")
        .bind(actor.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// One change of a referent.
#[derive(Debug, Clone, Serialize)]
pub struct ReferentChange {
    /// When, to the microsecond.
    #[serde(serialize_with = "crate::domain::datetime::serialize")]
    pub at: OffsetDateTime,
    /// Who: a publisher, `anonymous`, `import:<file>`, `cli` or `db:<user>`.
    pub actor: String,
    /// `created`, `changed` or `removed`.
    pub action: String,
    /// The referent before (null when created): `referent_id`, `institution`, `role`,
    /// `email`, `name`, `scope_kind`, `scope_value`.
    pub before: Option<Value>,
    /// The referent after (null when removed).
    pub after: Option<Value>,
}

impl ReferentChange {
    /// The fields that differ, with their values before and after, in column order.
    pub fn differences(&self) -> Vec<(String, Value, Value)> {
        let empty = serde_json::Map::new();
        let before = self
            .before
            .as_ref()
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let after = self
            .after
            .as_ref()
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
        keys.sort_by_key(|k| column_order(k));
        keys.dedup();
        keys.into_iter()
            .filter(|k| before.get(*k) != after.get(*k))
            .map(|k| {
                (
                    k.clone(),
                    before.get(k).cloned().unwrap_or(Value::Null),
                    after.get(k).cloned().unwrap_or(Value::Null),
                )
            })
            .collect()
    }
}

fn column_order(key: &str) -> (usize, String) {
    const ORDER: [&str; 7] = [
        "referent_id",
        "institution",
        "role",
        "email",
        "name",
        "scope_kind",
        "scope_value",
    ];
    (
        ORDER.iter().position(|k| *k == key).unwrap_or(ORDER.len()),
        key.to_owned(),
    )
}

/// (changed_at, actor, action, before, after)
type HistoryRow = (OffsetDateTime, String, String, Option<Value>, Option<Value>);

/// Every change of `referent_id`, oldest first.
pub async fn referent_history(
    conn: &mut PgConnection,
    referent_id: &str,
) -> Result<Vec<ReferentChange>, sqlx::Error> {
    let rows: Vec<HistoryRow> = sqlx::query_as(
        r#"
            SELECT changed_at, actor, action, before, after
            FROM referent_history
            WHERE referent_id = $1
            ORDER BY id
            "#,
    )
    .bind(referent_id)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(at, actor, action, before, after)| ReferentChange {
            at,
            actor,
            action,
            before,
            after,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn actors_are_printable_and_say_where_a_change_came_from() {
        assert_eq!(
            Actor::publisher(Some("registro_rho")).as_str(),
            "registro_rho"
        );
        assert_eq!(Actor::publisher(None).as_str(), "anonymous");
        assert_eq!(
            Actor::import("referents\n2026.csv").as_str(),
            "import:referents?2026.csv"
        );
        assert_eq!(Actor::cli().as_str(), "cli");
    }

    #[test]
    fn differences_list_the_changed_fields_in_column_order() {
        let change = ReferentChange {
            at: OffsetDateTime::UNIX_EPOCH,
            actor: "cli".into(),
            action: "changed".into(),
            before: Some(
                json!({"referent_id": "r1", "name": "A", "email": "a@x.example",
                                "scope_kind": "all", "scope_value": null}),
            ),
            after: Some(
                json!({"referent_id": "r1", "name": "B", "email": "a@x.example",
                               "scope_kind": "comune", "scope_value": "015146"}),
            ),
        };
        let names: Vec<String> = change
            .differences()
            .into_iter()
            .map(|(k, _, _)| k)
            .collect();
        assert_eq!(names, vec!["name", "scope_kind", "scope_value"]);
        let created = ReferentChange {
            before: None,
            ..change
        };
        assert_eq!(created.differences().len(), 5);
    }
}
