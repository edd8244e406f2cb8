//! Referents: who, in which institution and role, covers which scope. Kept from CSV imports
//! and from `registry.referent.v1` events sent by any signatory's administrator — each
//! change recorded with its author (`history`), and a registry publisher limited to some
//! scopes kept within them (CONTRACT §4 registry). A referent's mail preferences (issue 22)
//! come the same ways, and an upsert or a row without them keeps the stored ones: what a
//! referent chose on its own page is not undone by its administrator's next update.

use std::io::Read;

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};

use super::csv_rows::{Columns, CsvError, ImportError, ImportReport, Parsed, RowError, read_rows};
use super::history::{Actor, set_actor};
use crate::amqp::HandleError;
use crate::domain::{ComuneIstat, EmailAddress, PlainText, Role, Scope};
use crate::envelope::{ANONYMOUS, Envelope};
use crate::notification::NotificationKind;
use crate::origin::{Publishers, Refusal};
use crate::preferences::{Mode, Preferences, PreferencesWire, QuietHours, is_optional};

/// A referent of the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Referent {
    pub referent_id: String,
    pub institution: String,
    pub role: Role,
    pub email: EmailAddress,
    pub name: Option<String>,
    pub scope: Scope,
    /// Its PEC address (CONTRACT D2): the kinds of `mail.pec_kinds` go there alone, and
    /// `email` is the fallback (D3).
    pub pec: Option<EmailAddress>,
    /// The referent this one stands in for (D3, D5): told when that one cannot be reached
    /// or does not acknowledge.
    pub deputy_of: Option<String>,
    /// Its mail preferences (issue 22). None: keep what is stored — an administrator's
    /// upsert, or an import row, without them never wipes what the referent chose on its
    /// own page. [`list_referents`] always fills it.
    pub preferences: Option<Preferences>,
}

/// The `data` of `registry.referent.v1`. Its text holds no control character: a name or
/// an institution reaches an email header (CONTRACT §4), and [`PlainText`] refuses them
/// even where the schema was not applied.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum ReferentEvent {
    /// Adds or replaces a referent.
    Upsert {
        referent_id: PlainText,
        institution: PlainText,
        role: Role,
        email: EmailAddress,
        #[serde(default)]
        name: Option<PlainText>,
        // Boxed, so that an upsert is not many times a remove's size (clippy's
        // large_enum_variant).
        scope: Box<ScopeWire>,
        /// Its PEC address (added in 1.2).
        #[serde(default)]
        pec: Option<EmailAddress>,
        /// The referent it stands in for (added in 1.2): one the registry knows.
        #[serde(default)]
        deputy_of: Option<PlainText>,
        /// Its mail preferences (added for issue 22): `{"kinds": {"<kind>": "<mode>"},
        /// "quiet_hours": "HH:MM-HH:MM", "quiet_weekends": bool}`. Absent: the stored ones
        /// stay. Checked by [`preferences_of_event`], whose reasons name no value.
        #[serde(default)]
        preferences: Option<PreferencesWire>,
    },
    /// Removes a referent (unknown ids are not an error).
    Remove { referent_id: PlainText },
}

impl ReferentEvent {
    /// The referent it creates, changes or removes.
    pub fn referent_id(&self) -> &str {
        match self {
            ReferentEvent::Upsert { referent_id, .. } | ReferentEvent::Remove { referent_id } => {
                referent_id.as_ref()
            }
        }
    }
}

/// The wire form of a scope: `{}` or one of `comune_istat`, `ambito`, `zona`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeWire {
    #[serde(default)]
    comune_istat: Option<ComuneIstat>,
    #[serde(default)]
    ambito: Option<PlainText>,
    #[serde(default)]
    zona: Option<PlainText>,
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
    fn to_scope(&self) -> Result<Scope, ScopeError> {
        let text = |t: &PlainText| t.as_ref().trim().to_owned();
        match (&self.comune_istat, &self.ambito, &self.zona) {
            (None, None, None) => Ok(Scope::All),
            (Some(c), None, None) => Ok(Scope::Comune(c.clone())),
            (None, Some(a), None) if !text(a).is_empty() => Ok(Scope::Ambito(text(a))),
            (None, None, Some(z)) if !text(z).is_empty() => Ok(Scope::Zona(text(z))),
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
    let preferences = r
        .preferences
        .as_ref()
        .map(serde_json::to_value)
        .transpose()
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    // No preferences: a new referent gets the default (`{}`), a known one keeps its own.
    sqlx::query_scalar(
        r#"
        INSERT INTO referents
            (referent_id, institution, role, email, name, scope_kind, scope_value, pec, deputy_of,
             preferences)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, COALESCE($10, '{}'::JSONB))
        ON CONFLICT (referent_id) DO UPDATE
        SET institution = EXCLUDED.institution,
            role = EXCLUDED.role,
            email = EXCLUDED.email,
            name = EXCLUDED.name,
            scope_kind = EXCLUDED.scope_kind,
            scope_value = EXCLUDED.scope_value,
            pec = EXCLUDED.pec,
            deputy_of = EXCLUDED.deputy_of,
            preferences = COALESCE($10, referents.preferences),
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
    .bind(r.pec.as_ref().map(AsRef::as_ref))
    .bind(&r.deputy_of)
    .bind(preferences)
    .fetch_one(conn)
    .await
}

/// Why a referent's `deputy_of` cannot be kept.
#[derive(Debug, thiserror::Error)]
pub enum DeputyError {
    /// A referent standing in for itself would be told of its own silence.
    #[error("deputy_of names the referent itself")]
    Itself,
    /// It names no referent of the registry (nor of the file being imported).
    #[error("deputy_of {0:?} names no referent of the registry")]
    Unknown(String),
}

/// Why the `preferences` of a `registry.referent.v1` upsert cannot be kept. Names the
/// member and, where it is one the hub knows, the kind — never what was written (a member
/// name chosen by a publisher could be anything).
#[derive(Debug, thiserror::Error)]
pub enum PreferencesMemberError {
    /// `kinds` names kinds that are not notification kinds.
    #[error("preferences: kinds names {0} unknown notification kind(s)")]
    UnknownKind(usize),
    /// A kind's mode does not parse.
    #[error(
        "preferences: the mode of {0} is not one of immediate, off, hourly, \"daily HH:MM\", \"weekly DAY HH:MM\""
    )]
    Mode(&'static str),
    /// `off` on a kind the protocols require.
    #[error(
        "preferences: {0} is required by the protocols and cannot be turned off (a digest is allowed; only housing.ack and eviction.stats may be off)"
    )]
    Mandatory(&'static str),
    /// `quiet_hours` is not two different times.
    #[error("preferences: quiet_hours is not HH:MM-HH:MM with two different times")]
    QuietHours,
}

/// The preferences an upsert carries, checked entry by entry so that the reason of a
/// refusal names the member and the kind, never the value.
fn preferences_of_event(wire: PreferencesWire) -> Result<Preferences, PreferencesMemberError> {
    let unknown = wire
        .kinds
        .keys()
        .filter(|k| NotificationKind::parse(k.trim()).is_none())
        .count();
    if unknown > 0 {
        return Err(PreferencesMemberError::UnknownKind(unknown));
    }
    for (kind, mode) in &wire.kinds {
        let Some(kind) = NotificationKind::parse(kind.trim()) else {
            continue;
        };
        match Mode::parse(mode) {
            Err(_) => return Err(PreferencesMemberError::Mode(kind.as_str())),
            Ok(Mode::Off) if !is_optional(kind) => {
                return Err(PreferencesMemberError::Mandatory(kind.as_str()));
            }
            Ok(_) => {}
        }
    }
    let quiet = wire
        .quiet_hours
        .as_deref()
        .map(str::trim)
        .unwrap_or_default();
    if !quiet.is_empty() && QuietHours::parse(quiet).is_err() {
        return Err(PreferencesMemberError::QuietHours);
    }
    // Everything was checked above: the conversion cannot fail, and is mapped, not unwrapped.
    Preferences::try_from(wire).map_err(|_| PreferencesMemberError::QuietHours)
}

/// The ids among `ids` that the registry holds.
async fn known_referents(
    conn: &mut PgConnection,
    ids: &[&str],
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT referent_id FROM referents WHERE referent_id = ANY($1)")
        .bind(ids)
        .fetch_all(conn)
        .await
}

/// The scope of a stored referent, locked until the transaction ends; None: no such
/// referent (or a row that no longer parses, which no scope can hold).
async fn current_scope(
    conn: &mut PgConnection,
    referent_id: &str,
) -> Result<Option<Scope>, sqlx::Error> {
    let row: Option<(String, Option<String>)> = sqlx::query_as(
        r#"
        SELECT scope_kind, scope_value
        FROM referents
        WHERE referent_id = $1
        FOR UPDATE
        "#,
    )
    .bind(referent_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(kind, value)| {
        // Unparsable: kept as an ambito no comune has, so only an unlimited publisher
        // may touch it.
        Scope::from_columns(&kind, value.as_deref())
            .unwrap_or_else(|_| Scope::Ambito(format!("{kind}:{}", value.unwrap_or_default())))
    }))
}

/// Whether every comune `scope` covers is covered by one of `limits` (and it covers at
/// least one): a limited publisher never holds the whole area, nor a scope beyond its own.
async fn scope_within(
    conn: &mut PgConnection,
    scope: &Scope,
    limits: &[Scope],
) -> Result<bool, sqlx::Error> {
    if limits.contains(scope) {
        return Ok(true);
    }
    let (kind, Some(value)) = scope.to_columns() else {
        return Ok(false);
    };
    let mut comuni: Vec<&str> = Vec::new();
    let mut ambiti: Vec<&str> = Vec::new();
    let mut zone: Vec<&str> = Vec::new();
    for limit in limits {
        match limit {
            Scope::Comune(c) => comuni.push(c.as_ref()),
            Scope::Ambito(a) => ambiti.push(a),
            Scope::Zona(z) => zone.push(z),
            Scope::All => return Ok(true),
        }
    }
    let within: Option<bool> = sqlx::query_scalar(
        r#"
        SELECT count(*) > 0
           AND bool_and(COALESCE(c.istat = ANY($3) OR c.ambito = ANY($4) OR c.zona = ANY($5), FALSE))
        FROM comuni c
        WHERE CASE $1
                  WHEN 'comune' THEN c.istat = $2
                  WHEN 'ambito' THEN c.ambito = $2
                  WHEN 'zona' THEN c.zona = $2
                  ELSE FALSE
              END
        "#,
    )
    .bind(kind)
    .bind(value)
    .bind(&comuni)
    .bind(&ambiti)
    .bind(&zone)
    .fetch_one(conn)
    .await?;
    Ok(within.unwrap_or(false))
}

/// Refuses an event of `user`, limited to `limits`, that would create, change or remove a
/// referent whose scope — as stored, or as the event would make it — lies outside them.
async fn check_scopes(
    conn: &mut PgConnection,
    user: &str,
    limits: &[Scope],
    event: &ReferentEvent,
) -> Result<(), HandleError> {
    let referent_id = event.referent_id();
    let outside = |which, scope| {
        HandleError::Forbidden(Refusal::OutsideScopes {
            user: user.to_owned(),
            referent_id: referent_id.to_owned(),
            which,
            scope,
        })
    };
    if let Some(current) = current_scope(conn, referent_id).await?
        && !scope_within(conn, &current, limits).await?
    {
        return Err(outside("current", current));
    }
    if let ReferentEvent::Upsert { scope, .. } = event {
        let new = scope
            .to_scope()
            .map_err(|e| HandleError::Unprocessable(e.into()))?;
        if !scope_within(conn, &new, limits).await? {
            return Err(outside("new", new));
        }
    }
    Ok(())
}

/// Applies one registry event in `conn`'s transaction, with no limit on its scopes (the
/// worker checks them first; see [`RegistryWorker`]).
pub async fn apply_referent_event(
    conn: &mut PgConnection,
    event: ReferentEvent,
) -> Result<(), HandleError> {
    match event {
        ReferentEvent::Remove { referent_id } => {
            sqlx::query("DELETE FROM referents WHERE referent_id = $1")
                .bind(referent_id.as_ref())
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
            pec,
            deputy_of,
            preferences,
        } => {
            let scope = scope
                .to_scope()
                .map_err(|e| HandleError::Unprocessable(e.into()))?;
            let preferences = preferences
                .map(preferences_of_event)
                .transpose()
                .map_err(|e| HandleError::Unprocessable(e.into()))?;
            if !scope_is_known(conn, &scope).await? {
                return Err(HandleError::Unprocessable(
                    ScopeError::Unknown(scope).into(),
                ));
            }
            let deputy_of = deputy_of
                .map(|d| d.as_ref().trim().to_owned())
                .filter(|d| !d.is_empty());
            if let Some(of) = &deputy_of {
                if of == referent_id.as_ref() {
                    return Err(HandleError::Unprocessable(DeputyError::Itself.into()));
                }
                if known_referents(conn, &[of.as_str()]).await?.is_empty() {
                    return Err(HandleError::Unprocessable(
                        DeputyError::Unknown(of.clone()).into(),
                    ));
                }
            }
            let referent = Referent {
                referent_id: referent_id.into_inner(),
                institution: institution.into_inner(),
                role,
                email,
                name: name.map(PlainText::into_inner),
                scope,
                pec,
                deputy_of,
                preferences,
            };
            upsert(conn, &referent).await?;
        }
    }
    Ok(())
}

/// A `registry.referent.v1` event as its publisher sent it: names the publisher as the
/// author of the change, holds it to its `publishers.<user>.scopes`, and changes the
/// registry. Each is decided in a transaction of its own: the history records one author
/// per transaction, and registry changes are rare.
pub async fn apply_published_referent_event(
    tx: &mut PgConnection,
    publishers: &Publishers,
    event: &Envelope,
) -> Result<(), HandleError> {
    let publisher = (event.publisher != ANONYMOUS).then_some(event.publisher.as_str());
    event.refuse_control_characters()?;
    let data: ReferentEvent = event.data_as()?;
    set_actor(tx, &Actor::publisher(publisher)).await?;
    if let (Some(user), Some(limits)) = (publisher, publishers.registry_scopes(publisher)) {
        check_scopes(tx, user, limits, &data).await?;
    }
    apply_referent_event(tx, data).await
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
    // Control characters were refused for the whole record (`csv_rows`).
    let text = |k| opt(k).map(PlainText::parse).transpose().map_err(|e| e.0);
    let scope = ScopeWire {
        comune_istat: opt("comune_istat")
            .map(ComuneIstat::parse)
            .transpose()
            .map_err(|e| e.0)?,
        ambito: text("ambito")?,
        zona: text("zona")?,
    }
    .to_scope()
    .map_err(|e| e.to_string())?;
    let pec = opt("pec")
        .map(EmailAddress::parse)
        .transpose()
        .map_err(|e| format!("pec: {}", e.0))?;
    let deputy_of = opt("deputy_of").map(str::to_owned);
    if deputy_of.as_deref() == Some(referent_id) {
        return Err(DeputyError::Itself.to_string());
    }
    let preferences = preferences_columns(cols, record)?;
    Ok(Referent {
        referent_id: referent_id.to_owned(),
        institution: institution.to_owned(),
        role,
        email,
        name,
        scope,
        pec,
        deputy_of,
        preferences,
    })
}

/// The `preferences` (`kind=mode; kind=mode`), `quiet_hours` (`HH:MM-HH:MM`) and
/// `quiet_weekends` (`sì`/`no`) columns (issue 22). None when all three are empty or absent:
/// the stored preferences stay. Otherwise the three together replace them (a row with
/// `quiet_weekends` = `no` alone resets them to the default).
fn preferences_columns(
    cols: &Columns,
    record: &csv::StringRecord,
) -> Result<Option<Preferences>, String> {
    let kinds = cols.get(record, "preferences");
    let quiet = cols.get(record, "quiet_hours");
    let weekends = cols.get(record, "quiet_weekends");
    if kinds.is_empty() && quiet.is_empty() && weekends.is_empty() {
        return Ok(None);
    }
    let kinds = Preferences::parse_kinds(kinds).map_err(|e| format!("preferences: {e}"))?;
    let quiet_hours = Some(quiet)
        .filter(|q| !q.is_empty())
        .map(QuietHours::parse)
        .transpose()
        .map_err(|e| format!("quiet_hours: {e}"))?;
    let quiet_weekends = match weekends.to_lowercase().as_str() {
        "sì" | "si" | "yes" | "true" | "1" => true,
        "" | "no" | "false" | "0" => false,
        _ => {
            return Err(
                "quiet_weekends: must be sì, si, yes, true, 1, no, false, 0 or empty".into(),
            );
        }
    };
    Ok(Some(Preferences {
        kinds,
        quiet_hours,
        quiet_weekends,
    }))
}

/// The columns of a referents CSV (CONTRACT §8), found by their header names.
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

/// The optional columns of a referents CSV: `pec`, `deputy_of` (CONTRACT §11, added in
/// 1.2); `preferences`, `quiet_hours`, `quiet_weekends` (issue 22: a referent's mail
/// preferences, kept as stored when all three are empty or absent).
const REFERENT_OPTIONAL_COLUMNS: [&str; 5] = [
    "pec",
    "deputy_of",
    "preferences",
    "quiet_hours",
    "quiet_weekends",
];

/// Parses a referents CSV (`referent_id,institution,role,email,name,comune_istat,ambito,zona`
/// and optionally `pec`, `deputy_of`, `preferences`, `quiet_hours`, `quiet_weekends`, in any
/// order) without touching the database: the rows with their line numbers, and every bad
/// line (the imports, and the console's preview of an import). Whether each scope names
/// something the registry knows, and each `deputy_of` a referent, is checked by the import.
/// `preferences` is `kind=mode; kind=mode` (e.g. `housing.offered=daily 08:00;
/// eviction.stats=off`), `quiet_hours` `HH:MM-HH:MM`, `quiet_weekends` `sì`/`no`; a row
/// with all three empty keeps the referent's stored preferences.
pub fn parse_referents(input: impl Read) -> Result<Parsed<Referent>, CsvError> {
    read_rows(
        input,
        &REFERENT_COLUMNS,
        &REFERENT_OPTIONAL_COLUMNS,
        parse_referent,
        |r: &Referent| format!("referent_id {}", r.referent_id),
    )
}

/// Imports referents from CSV (`referent_id,institution,role,email,name,comune_istat,ambito,zona`
/// and the optional columns of [`parse_referents`]).
/// All or nothing, like [`super::import_comuni`]; scopes must name known comuni, ambiti, zone.
/// `actor` (e.g. [`Actor::import`] of the file) is recorded as the author of each change.
pub async fn import_referents(
    pool: &PgPool,
    input: impl Read,
    actor: &Actor,
) -> Result<ImportReport, ImportError> {
    let (rows, errors) = parse_referents(input)?;
    let mut report = ImportReport {
        errors,
        ..ImportReport::default()
    };
    let mut tx = pool.begin().await?;
    set_actor(&mut tx, actor).await?;
    // A deputy may name a referent of the registry or one further on in the same file
    // (two offices may stand in for each other).
    let named: Vec<&str> = rows
        .iter()
        .filter_map(|(_, r)| r.deputy_of.as_deref())
        .collect();
    let known = known_referents(&mut tx, &named).await?;
    for (line, r) in &rows {
        if !scope_is_known(&mut tx, &r.scope).await? {
            report.errors.push(RowError {
                line: *line,
                reason: ScopeError::Unknown(r.scope.clone()).to_string(),
            });
        }
        if let Some(of) = &r.deputy_of
            && !known.contains(of)
            && !rows.iter().any(|(_, other)| &other.referent_id == of)
        {
            report.errors.push(RowError {
                line: *line,
                reason: DeputyError::Unknown(of.clone()).to_string(),
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
    Option<String>,
    Option<String>,
    serde_json::Value,
);

/// Every referent, by role and id, with its stored preferences.
pub async fn list_referents(conn: &mut PgConnection) -> Result<Vec<Referent>, sqlx::Error> {
    let rows: Vec<ReferentRow> = sqlx::query_as(
        r#"
            SELECT referent_id, institution, role, email, name, scope_kind, scope_value, pec,
                   deputy_of, preferences
            FROM referents
            ORDER BY role, referent_id
            "#,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(
            |(id, inst, role, email, name, kind, value, pec, deputy_of, preferences)| {
                let (Ok(role), Ok(email), Ok(scope), Ok(pec)) = (
                    Role::parse(&role),
                    EmailAddress::parse(&email),
                    Scope::from_columns(&kind, value.as_deref()),
                    pec.as_deref().map(EmailAddress::parse).transpose(),
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
                    pec,
                    deputy_of,
                    preferences: Some(Preferences::from_stored(&preferences)),
                })
            },
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::EventType;
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
            assert_eq!(scope.to_scope().ok(), Some(expected));
        }
    }

    #[test]
    fn two_scope_members_are_refused() {
        let text = |s: &str| PlainText::parse(s).ok();
        let wire = ScopeWire {
            comune_istat: None,
            ambito: text("Rho"),
            zona: text("Nord Ovest"),
        };
        assert!(wire.to_scope().is_err());
    }

    #[test]
    fn a_control_character_in_any_text_member_is_refused_naming_the_member_not_the_value() {
        for (member, data) in [
            (
                "name",
                json!({"name": "Mario\r\nBcc: intruso@evil.example"}),
            ),
            ("institution", json!({"institution": "Comune\u{0}"})),
            ("referent_id", json!({"referent_id": "r\u{85}1"})),
            ("scope/ambito", json!({"scope": {"ambito": "Rho\u{1b}[2J"}})),
            ("scope/zona", json!({"scope": {"zona": "Nord\tOvest"}})),
        ] {
            let mut event = json!({
                "referent_id": "r1", "action": "upsert", "institution": "Comune",
                "role": "comune", "email": "a@b.example", "name": "Ufficio", "scope": {}
            });
            for (k, v) in data.as_object().expect("object") {
                event[k] = v.clone();
            }
            // As the worker decodes it, the schema aside: the code refuses it on its own.
            let envelope = Envelope {
                id: "e1".into(),
                source: "urn:test".into(),
                event_type: EventType::RegistryReferent,
                data: event.clone(),
                publisher: ANONYMOUS.into(),
            };
            let text = envelope
                .refuse_control_characters()
                .expect_err(member)
                .to_string();
            assert!(text.contains(&format!("at /{member}:")), "{text}");
            assert!(text.contains(crate::domain::CONTROL_CHARACTER), "{text}");
            assert!(!text.contains("evil") && !text.contains("Bcc"), "{text}");
            // The wire types refuse it too, should a path skip both checks.
            let text = envelope
                .data_as::<ReferentEvent>()
                .expect_err(member)
                .to_string();
            assert!(text.contains(crate::domain::CONTROL_CHARACTER), "{text}");
            // And the schema refuses it first, in the same words.
            let text = crate::envelope::validate_data(EventType::RegistryReferent, &event)
                .expect_err(member);
            assert!(text.contains(&format!("/{member}")), "{text}");
            assert!(text.contains(crate::domain::CONTROL_CHARACTER), "{text}");
        }
        let remove = json!({"referent_id": "r\u{7}", "action": "remove"});
        assert!(serde_json::from_value::<ReferentEvent>(remove).is_err());
    }

    const HEADER: &str = "referent_id,institution,role,email,name,comune_istat,ambito,zona";

    fn parse(csv: &str) -> Parsed<Referent> {
        parse_referents(csv.as_bytes()).expect("a header")
    }

    #[test]
    fn preferences_columns_set_the_referents_preferences() {
        let csv = format!(
            "{HEADER},quiet_weekends,preferences,quiet_hours\n\
             r1,Comune,comune,a@b.example,,,,,sì,housing.offered=daily 08:00; eviction.stats=off,20:00-08:00\n\
             r2,Comune,comune,b@b.example,,,,,,quota.threshold=ogni settimana lunedì 9.00,\n\
             r3,Comune,comune,c@b.example,,,,,no,,\n"
        );

        let (rows, errors) = parse(&csv);

        assert!(errors.is_empty(), "{errors:?}");
        let prefs: Vec<Option<Preferences>> =
            rows.into_iter().map(|(_, r)| r.preferences).collect();
        let first = prefs[0].as_ref().expect("r1 sets preferences");
        assert_eq!(
            first.kinds_text(),
            "eviction.stats=off; housing.offered=daily 08:00"
        );
        assert_eq!(
            first.quiet_hours.map(|q| q.to_string()).as_deref(),
            Some("20:00-08:00")
        );
        assert!(first.quiet_weekends);
        let second = prefs[1].as_ref().expect("r2 sets preferences");
        assert_eq!(second.kinds_text(), "quota.threshold=weekly monday 09:00");
        assert_eq!((second.quiet_hours, second.quiet_weekends), (None, false));
        assert_eq!(
            prefs[2],
            Some(Preferences::default()),
            "no alone resets them"
        );
    }

    #[test]
    fn preferences_columns_all_empty_or_absent_keep_the_stored_preferences() {
        let with_columns = format!(
            "{HEADER},preferences,quiet_hours,quiet_weekends\nr1,Comune,comune,a@b.example,,,,,,,\n"
        );
        let without = format!("{HEADER}\nr1,Comune,comune,a@b.example,,,,\n");

        for csv in [with_columns, without] {
            let (rows, errors) = parse(&csv);

            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(rows[0].1.preferences, None, "{csv}");
        }
    }

    #[test]
    fn a_bad_preferences_column_is_a_row_error_naming_the_line_and_the_column() {
        let csv = format!(
            "{HEADER},preferences,quiet_hours,quiet_weekends\n\
             ok,Comune,comune,a@b.example,,,,,housing.offered=hourly,,\n\
             mode,Comune,comune,b@b.example,,,,,housing.offered=sometimes,,\n\
             off,Comune,comune,c@b.example,,,,,housing.offered=off,,\n\
             kind,Comune,comune,d@b.example,,,,,housing.everything=hourly,,\n\
             hours,Comune,comune,e@b.example,,,,,,20-8,\n\
             weekends,Comune,comune,f@b.example,,,,,,,maybe\n"
        );

        let (rows, errors) = parse(&csv);

        assert_eq!(rows.len(), 1);
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 5, "{shown:#?}");
        assert!(shown[0].starts_with("line 3: preferences: "), "{shown:#?}");
        assert!(shown[0].contains("is not a mode"), "{shown:#?}");
        assert!(shown[1].starts_with("line 4: preferences: "), "{shown:#?}");
        assert!(shown[1].contains("cannot be turned off"), "{shown:#?}");
        assert!(shown[2].starts_with("line 5: preferences: "), "{shown:#?}");
        assert!(shown[2].contains("not a notification kind"), "{shown:#?}");
        assert!(shown[3].starts_with("line 6: quiet_hours: "), "{shown:#?}");
        assert!(
            shown[4].starts_with("line 7: quiet_weekends: "),
            "{shown:#?}"
        );
    }

    fn upsert_with(preferences: serde_json::Value) -> ReferentEvent {
        serde_json::from_value(json!({
            "referent_id": "r1", "action": "upsert", "institution": "Comune",
            "role": "comune", "email": "a@b.example", "scope": {}, "preferences": preferences
        }))
        .expect("the wire form parses")
    }

    fn event_preferences(event: ReferentEvent) -> Result<Preferences, PreferencesMemberError> {
        let ReferentEvent::Upsert { preferences, .. } = event else {
            panic!("upsert expected");
        };
        preferences_of_event(preferences.expect("the member is present"))
    }

    #[test]
    fn registry_preferences_refusals_name_the_member_and_the_kind_never_the_value() {
        for (preferences, expected) in [
            (
                json!({"kinds": {"housing.offered": "off"}}),
                "preferences: housing.offered is required by the protocols and cannot be turned off",
            ),
            (
                json!({"kinds": {"quota.threshold": "daily Mario Rossi"}}),
                "preferences: the mode of quota.threshold is not one of",
            ),
            (
                json!({"kinds": {"Mario Rossi": "hourly"}}),
                "preferences: kinds names 1 unknown notification kind(s)",
            ),
            (
                json!({"quiet_hours": "Mario Rossi"}),
                "preferences: quiet_hours is not HH:MM-HH:MM",
            ),
        ] {
            let text = event_preferences(upsert_with(preferences.clone()))
                .expect_err("refused")
                .to_string();

            assert!(text.starts_with(expected), "{preferences}: {text}");
            assert!(!text.contains("Mario"), "{text}");
        }
        // Without the member the event keeps the stored preferences; an unknown member
        // inside it does not fit the wire type.
        let plain: ReferentEvent = serde_json::from_value(json!({
            "referent_id": "r1", "action": "upsert", "institution": "Comune",
            "role": "comune", "email": "a@b.example", "scope": {}
        }))
        .expect("valid event");
        assert!(matches!(
            plain,
            ReferentEvent::Upsert {
                preferences: None,
                ..
            }
        ));
        let unknown = serde_json::from_value::<ReferentEvent>(json!({
            "referent_id": "r1", "action": "upsert", "institution": "Comune",
            "role": "comune", "email": "a@b.example", "scope": {},
            "preferences": {"colour": "blue"}
        }));
        assert!(unknown.is_err());
        let good = event_preferences(upsert_with(json!({
            "kinds": {"housing.offered": "ogni giorno 8.00", "eviction.stats": "off"},
            "quiet_hours": "20:00-08:00", "quiet_weekends": true
        })))
        .expect("valid preferences");
        assert_eq!(
            good.kinds_text(),
            "eviction.stats=off; housing.offered=daily 08:00"
        );
    }

    #[test]
    fn the_schema_names_every_notification_kind_and_accepts_the_modes_the_hub_prints() {
        let schema: serde_json::Value =
            serde_json::from_str(EventType::RegistryReferent.schema_source()).expect("JSON");
        let named: Vec<&str> =
            schema["properties"]["preferences"]["properties"]["kinds"]["properties"]
                .as_object()
                .expect("the kinds are listed")
                .keys()
                .map(String::as_str)
                .collect();
        let mut kinds: Vec<&str> = NotificationKind::ALL.iter().map(|k| k.as_str()).collect();
        let mut listed = named.clone();
        kinds.sort_unstable();
        listed.sort_unstable();
        assert_eq!(listed, kinds);
        let data = |preferences: serde_json::Value| {
            json!({"referent_id": "r1", "action": "upsert", "institution": "Comune",
                   "role": "comune", "email": "a@b.example", "scope": {},
                   "preferences": preferences})
        };
        let valid = |preferences: serde_json::Value| {
            crate::envelope::validate_data(EventType::RegistryReferent, &data(preferences))
        };
        // Every form the hub prints, and the lower-case Italian ones it reads.
        for mode in [
            "immediate",
            "off",
            "hourly",
            "daily 08:00",
            "daily 23:59",
            "weekly monday 09:00",
            "weekly sunday 00:00",
            "subito",
            "mai",
            "ogni ora",
            "ogni giorno 8.30",
            "ogni settimana lunedì 09:00",
            "ogni settimana venerdi 17:15",
            "weekly mon 09:00",
        ] {
            let parsed = Mode::parse(mode).expect(mode);
            for text in [mode.to_owned(), parsed.to_string()] {
                assert!(
                    valid(json!({"kinds": {"eviction.stats": text}})).is_ok(),
                    "{text}"
                );
            }
        }
        for day in [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ] {
            let text = format!("weekly {day} 08:00");
            assert!(
                valid(json!({"kinds": {"quota.threshold": text}})).is_ok(),
                "{text}"
            );
        }
        for bad in [
            "",
            "daily",
            "daily 24:00",
            "daily 8:60",
            "weekly xyz 08:00",
            "sometimes",
        ] {
            assert!(Mode::parse(bad).is_err(), "{bad}");
            assert!(
                valid(json!({"kinds": {"quota.threshold": bad}})).is_err(),
                "{bad}"
            );
        }
        assert!(valid(json!({"quiet_hours": "20:00-08:00", "quiet_weekends": true})).is_ok());
        assert!(valid(json!({"quiet_hours": "20-8"})).is_err());
        let unknown = valid(json!({"kinds": {"Mario Rossi": "hourly"}})).expect_err("unknown");
        assert!(!unknown.contains("Mario"), "{unknown}");
    }
}
