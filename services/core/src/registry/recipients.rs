//! Who receives a notification (CONTRACT §1, §5), decided in the transaction that creates it.

use serde::Serialize;
use sqlx::PgConnection;

use super::Comune;
use crate::domain::{EmailAddress, Role};
use crate::notification::NotificationKind;

/// One recipient of one notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recipient {
    pub referent_id: String,
    pub email: EmailAddress,
    pub name: Option<String>,
    pub institution: String,
    pub role: Role,
}

type RecipientRow = (String, String, Option<String>, String, String);

fn collect(rows: Vec<RecipientRow>) -> Vec<Recipient> {
    let mut out: Vec<Recipient> = Vec::new();
    for (referent_id, email, name, institution, role) in rows {
        // Rows were validated on the way in; skip rather than fail on a hand-edited one.
        let (Ok(email), Ok(role)) = (EmailAddress::parse(&email), Role::parse(&role)) else {
            continue;
        };
        // One email per address, even if two referents share it.
        if out.iter().any(|r| r.email == email) {
            continue;
        }
        out.push(Recipient {
            referent_id,
            email,
            name,
            institution,
            role,
        });
    }
    out
}

/// Referents of `kind`'s roles that it reaches for `comune`, by the rule the workers
/// apply ([`super::Snapshot::recipients_for`]), on the registry as it is now.
pub async fn recipients_for(
    conn: &mut PgConnection,
    kind: NotificationKind,
    comune: &Comune,
) -> Result<Vec<Recipient>, sqlx::Error> {
    Ok(super::Snapshot::load(conn)
        .await?
        .recipients_for(kind, comune))
}

/// Referents of `roles` scoped to an ambito or to one of its comuni, plus — for the roles
/// in `covering_roles` — those covering the ambito's comuni (unscoped, or zona-wide).
pub async fn recipients_in_ambito(
    conn: &mut PgConnection,
    ambito: &str,
    roles: &[Role],
    covering_roles: &[Role],
) -> Result<Vec<Recipient>, sqlx::Error> {
    let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    let covering: Vec<&str> = covering_roles.iter().map(|r| r.as_str()).collect();
    let rows: Vec<RecipientRow> = sqlx::query_as(
        r#"
        SELECT referent_id, email, name, institution, role
        FROM referents r
        WHERE (
                role = ANY($2)
            AND (
                    (scope_kind = 'ambito' AND scope_value = $1)
                 OR (scope_kind = 'comune' AND scope_value IN (SELECT istat FROM comuni WHERE ambito = $1))
            )
          )
           OR (
                role = ANY($3)
            AND (
                    scope_kind = 'all'
                 OR (scope_kind = 'ambito' AND scope_value = $1)
                 OR (scope_kind = 'zona' AND scope_value IN (SELECT zona FROM comuni WHERE ambito = $1))
                 OR (scope_kind = 'comune' AND scope_value IN (SELECT istat FROM comuni WHERE ambito = $1))
            )
          )
        ORDER BY role, referent_id
        "#,
    )
    .bind(ambito)
    .bind(&roles)
    .bind(&covering)
    .fetch_all(conn)
    .await?;
    Ok(collect(rows))
}

/// Referents of `roles` with the given scope kind and value (`None` value: unscoped).
pub async fn recipients_with_roles(
    conn: &mut PgConnection,
    roles: &[Role],
    scope_kind: &str,
    scope_value: Option<&str>,
) -> Result<Vec<Recipient>, sqlx::Error> {
    let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    let rows: Vec<RecipientRow> = sqlx::query_as(
        r#"
        SELECT referent_id, email, name, institution, role
        FROM referents
        WHERE role = ANY($1)
          AND scope_kind = $2
          AND scope_value IS NOT DISTINCT FROM $3
        ORDER BY role, referent_id
        "#,
    )
    .bind(&roles)
    .bind(scope_kind)
    .bind(scope_value)
    .fetch_all(conn)
    .await?;
    Ok(collect(rows))
}

/// Who hears that nobody acknowledged an urgent notification about `comune` (CONTRACT
/// D5): the deputies of `referents` (its recipients: those whose `deputy_of` names one),
/// the servizi sociali of the comune's ambito, and the Prefettura's referents covering it.
pub async fn escalation_recipients(
    conn: &mut PgConnection,
    referents: &[String],
    comune: &Comune,
) -> Result<Vec<Recipient>, sqlx::Error> {
    let rows: Vec<RecipientRow> = sqlx::query_as(
        r#"
        SELECT referent_id, email, name, institution, role
        FROM referents
        WHERE deputy_of = ANY($1)
           OR (role = 'servizi_sociali' AND scope_kind = 'ambito' AND scope_value = $2)
           OR (role = 'prefettura'
               AND (scope_kind = 'all'
                    OR (scope_kind = 'comune' AND scope_value = $3)
                    OR (scope_kind = 'ambito' AND scope_value = $2)
                    OR (scope_kind = 'zona' AND scope_value = $4)))
        ORDER BY COALESCE(deputy_of = ANY($1), FALSE) DESC, role, referent_id
        "#,
    )
    .bind(referents)
    .bind(comune.ambito.as_deref())
    .bind(comune.istat.as_ref())
    .bind(&comune.zona)
    .fetch_all(conn)
    .await?;
    Ok(collect(rows))
}
