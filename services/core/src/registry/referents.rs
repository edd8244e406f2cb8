//! Referents: who, in which institution and role, covers which scope. Kept from CSV imports
//! and from `registry.referent.v1` events sent by any signatory's administrator.

use std::io::Read;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};

use super::csv_rows::{Columns, CsvError, ImportError, ImportReport, Parsed, RowError, read_rows};
use crate::amqp::HandleError;
use crate::domain::{ComuneIstat, EmailAddress, Role, Scope};
use crate::envelope::{Envelope, EventType};
use crate::inbound::EventWorker;

/// A referent of the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Referent {
    pub referent_id: String,
    pub institution: String,
    pub role: Role,
    pub email: EmailAddress,
    pub name: Option<String>,
    pub scope: Scope,
}

/// The `data` of `registry.referent.v1`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum ReferentEvent {
    /// Adds or replaces a referent.
    Upsert {
        referent_id: String,
        institution: String,
        role: Role,
        email: EmailAddress,
        #[serde(default)]
        name: Option<String>,
        scope: ScopeWire,
    },
    /// Removes a referent (unknown ids are not an error).
    Remove { referent_id: String },
}

/// The wire form of a scope: `{}` or one of `comune_istat`, `ambito`, `zona`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeWire {
    #[serde(default)]
    comune_istat: Option<ComuneIstat>,
    #[serde(default)]
    ambito: Option<String>,
    #[serde(default)]
    zona: Option<String>,
}

/// Why a referent's scope cannot be kept.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    /// More than one of `comune_istat`, `ambito`, `zona`, or an empty one.
    #[error("scope names at most one of comune_istat, ambito, zona, non-empty")]
    Ambiguous,
    /// It names no comune, ambito or zona the registry knows.
    #[error("scope {0} matches no comune of the registry")]
    Unknown(Scope),
}

impl ScopeWire {
    fn into_scope(self) -> Result<Scope, ScopeError> {
        match (self.comune_istat, self.ambito, self.zona) {
            (None, None, None) => Ok(Scope::All),
            (Some(c), None, None) => Ok(Scope::Comune(c)),
            (None, Some(a), None) if !a.trim().is_empty() => Ok(Scope::Ambito(a.trim().into())),
            (None, None, Some(z)) if !z.trim().is_empty() => Ok(Scope::Zona(z.trim().into())),
            _ => Err(ScopeError::Ambiguous),
        }
    }
}

/// Whether a scope names something the registry knows, so a typo cannot silently route
/// nothing.
async fn scope_is_known(conn: &mut PgConnection, scope: &Scope) -> Result<bool, sqlx::Error> {
    let (sql, value) = match scope {
        Scope::All => return Ok(true),
        Scope::Comune(c) => (
            "SELECT EXISTS (SELECT 1 FROM comuni WHERE istat = $1)",
            c.as_ref(),
        ),
        Scope::Ambito(a) => (
            "SELECT EXISTS (SELECT 1 FROM comuni WHERE ambito = $1)",
            a.as_str(),
        ),
        Scope::Zona(z) => (
            "SELECT EXISTS (SELECT 1 FROM comuni WHERE zona = $1)",
            z.as_str(),
        ),
    };
    sqlx::query_scalar(sql).bind(value).fetch_one(conn).await
}

async fn upsert(conn: &mut PgConnection, r: &Referent) -> Result<bool, sqlx::Error> {
    let (kind, value) = r.scope.to_columns();
    sqlx::query_scalar(
        r#"
        INSERT INTO referents (referent_id, institution, role, email, name, scope_kind, scope_value)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (referent_id) DO UPDATE
        SET institution = EXCLUDED.institution,
            role = EXCLUDED.role,
            email = EXCLUDED.email,
            name = EXCLUDED.name,
            scope_kind = EXCLUDED.scope_kind,
            scope_value = EXCLUDED.scope_value,
            updated_at = now()
        RETURNING (xmax = 0)
        "#,
    )
    .bind(&r.referent_id)
    .bind(&r.institution)
    .bind(r.role.as_str())
    .bind(r.email.as_ref())
    .bind(&r.name)
    .bind(kind)
    .bind(value)
    .fetch_one(conn)
    .await
}

/// Applies one registry event in `conn`'s transaction.
pub async fn apply_referent_event(
    conn: &mut PgConnection,
    event: ReferentEvent,
) -> Result<(), HandleError> {
    match event {
        ReferentEvent::Remove { referent_id } => {
            sqlx::query("DELETE FROM referents WHERE referent_id = $1")
                .bind(&referent_id)
                .execute(conn)
                .await?;
        }
        ReferentEvent::Upsert {
            referent_id,
            institution,
            role,
            email,
            name,
            scope,
        } => {
            let scope = scope
                .into_scope()
                .map_err(|e| HandleError::Unprocessable(e.into()))?;
            if !scope_is_known(conn, &scope).await? {
                return Err(HandleError::Unprocessable(
                    ScopeError::Unknown(scope).into(),
                ));
            }
            let referent = Referent {
                referent_id,
                institution,
                role,
                email,
                name,
                scope,
            };
            upsert(conn, &referent).await?;
        }
    }
    Ok(())
}

/// The worker of `registry.referent.v1`.
pub struct RegistryWorker;

#[async_trait]
impl EventWorker for RegistryWorker {
    fn accepts(&self) -> &'static [EventType] {
        &[EventType::RegistryReferent]
    }

    /// The referent's row is the only row it locks.
    fn batch_key(&self, event: &Envelope) -> Option<String> {
        event
            .data
            .get("referent_id")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    }

    /// Changes the registry, so the snapshot (the registry before) is not read.
    async fn apply(
        &self,
        tx: &mut PgConnection,
        _registry: &super::Snapshot,
        event: &Envelope,
    ) -> Result<(), HandleError> {
        let data: ReferentEvent = event.data_as()?;
        apply_referent_event(tx, data).await
    }
}

fn parse_referent(cols: &Columns, record: &csv::StringRecord) -> Result<Referent, String> {
    let referent_id = cols.get(record, "referent_id");
    if referent_id.is_empty() {
        return Err("referent_id is empty".into());
    }
    let institution = cols.get(record, "institution");
    if institution.is_empty() {
        return Err("institution is empty".into());
    }
    let role = Role::parse(cols.get(record, "role")).map_err(|e| e.0)?;
    let email = EmailAddress::parse(cols.get(record, "email")).map_err(|e| e.0)?;
    let name = Some(cols.get(record, "name"))
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    let opt = |k| Some(cols.get(record, k)).filter(|v| !v.is_empty());
    let scope = ScopeWire {
        comune_istat: opt("comune_istat")
            .map(ComuneIstat::parse)
            .transpose()
            .map_err(|e| e.0)?,
        ambito: opt("ambito").map(str::to_owned),
        zona: opt("zona").map(str::to_owned),
    }
    .into_scope()
    .map_err(|e| e.to_string())?;
    Ok(Referent {
        referent_id: referent_id.to_owned(),
        institution: institution.to_owned(),
        role,
        email,
        name,
        scope,
    })
}

/// The columns of a referents CSV (CONTRACT §8).
const REFERENT_COLUMNS: [&str; 8] = [
    "referent_id",
    "institution",
    "role",
    "email",
    "name",
    "comune_istat",
    "ambito",
    "zona",
];

/// Parses a referents CSV (`referent_id,institution,role,email,name,comune_istat,ambito,zona`)
/// without touching the database: the rows with their line numbers, and every bad line
/// (the imports, and the console's preview of an import). Whether each scope names
/// something the registry knows is checked by the import.
pub fn parse_referents(input: impl Read) -> Result<Parsed<Referent>, CsvError> {
    read_rows(
        input,
        &REFERENT_COLUMNS,
        &[],
        parse_referent,
        |r: &Referent| format!("referent_id {}", r.referent_id),
    )
}

/// Imports referents from CSV (`referent_id,institution,role,email,name,comune_istat,ambito,zona`).
/// All or nothing, like [`super::import_comuni`]; scopes must name known comuni, ambiti, zone.
pub async fn import_referents(
    pool: &PgPool,
    input: impl Read,
) -> Result<ImportReport, ImportError> {
    let (rows, errors) = parse_referents(input)?;
    let mut report = ImportReport {
        errors,
        ..ImportReport::default()
    };
    let mut tx = pool.begin().await?;
    for (line, r) in &rows {
        if !scope_is_known(&mut tx, &r.scope).await? {
            report.errors.push(RowError {
                line: *line,
                reason: ScopeError::Unknown(r.scope.clone()).to_string(),
            });
        }
    }
    if !report.errors.is_empty() {
        report.errors.sort_by_key(|e| e.line);
        return Ok(report);
    }
    for (_, r) in &rows {
        if upsert(&mut tx, r).await? {
            report.inserted += 1;
        } else {
            report.updated += 1;
        }
    }
    tx.commit().await?;
    Ok(report)
}

type ReferentRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
);

/// Every referent, by role and id.
pub async fn list_referents(conn: &mut PgConnection) -> Result<Vec<Referent>, sqlx::Error> {
    let rows: Vec<ReferentRow> = sqlx::query_as(
        r#"
            SELECT referent_id, institution, role, email, name, scope_kind, scope_value
            FROM referents
            ORDER BY role, referent_id
            "#,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, inst, role, email, name, kind, value)| {
            let (Ok(role), Ok(email), Ok(scope)) = (
                Role::parse(&role),
                EmailAddress::parse(&email),
                Scope::from_columns(&kind, value.as_deref()),
            ) else {
                // Written by hand or by an older version: counted and logged, never silent.
                metrics::counter!("raccordo_rows_skipped_total", "table" => "referents")
                    .increment(1);
                tracing::warn!(
                    table = "referents",
                    "A referents row that does not parse was skipped."
                );
                return None;
            };
            Some(Referent {
                referent_id: id,
                institution: inst,
                role,
                email,
                name,
                scope,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_upsert_event_parses_with_each_scope_form() {
        for (scope, expected) in [
            (json!({}), Scope::All),
            (
                json!({"comune_istat": "015146"}),
                Scope::Comune(ComuneIstat::parse("015146").expect("valid")),
            ),
            (json!({"ambito": "Rho"}), Scope::Ambito("Rho".into())),
            (
                json!({"zona": "Nord Ovest"}),
                Scope::Zona("Nord Ovest".into()),
            ),
        ] {
            let event: ReferentEvent = serde_json::from_value(json!({
                "referent_id": "r1", "action": "upsert", "institution": "Comune",
                "role": "comune", "email": "a@b.example", "scope": scope
            }))
            .expect("valid event");
            let ReferentEvent::Upsert { scope, .. } = event else {
                panic!("upsert expected");
            };
            assert_eq!(scope.into_scope().ok(), Some(expected));
        }
    }

    #[test]
    fn two_scope_members_are_refused() {
        let wire = ScopeWire {
            comune_istat: None,
            ambito: Some("Rho".into()),
            zona: Some("Nord Ovest".into()),
        };
        assert!(wire.into_scope().is_err());
    }
}
