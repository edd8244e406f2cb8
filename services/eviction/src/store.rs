//! The eviction tables (`migrations/0004_eviction.sql`). Functions take `&mut PgConnection`
//! so the caller owns the transaction. Only [`hold_personal`] writes personal data, and
//! the worker calls it only when the decision core says consent is active.

use serde_json::Value;
use sqlx::PgConnection;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use raccordo_core::db;
use raccordo_core::domain::ComuneIstat;
use raccordo_core::notification::NotificationKind;

use crate::decide::{ConsentInForce, Personal, ProcedureState, StepRecord};
use crate::event::{ConsentDecision, Step};
use crate::personal::{Contact, Household, ProcedureId, Pseudonym};

/// A procedure's row, locked for the transaction.
#[derive(Debug, Clone)]
pub(crate) struct ProcedureRow {
    pub state: ProcedureState,
    /// The eviction_consents row in force.
    pub consent_id: Option<i64>,
    /// The comune the procedure belongs to (CONTRACT 1.2 §3): the first event's.
    pub comune: String,
}

/// Creates the procedure's row if missing, locks it (two events of one procedure are
/// decided one after the other), and loads its state.
pub(crate) async fn lock_procedure(
    tx: &mut PgConnection,
    key: &ProcedureKey,
    comune: &ComuneIstat,
) -> Result<ProcedureRow, sqlx::Error> {
    let pseudonym = &key.pseudonym;
    // One statement: the upsert locks the row, new or not, and returns what it holds.
    let (consent, consent_id, recorded_at, owner): (
        String,
        Option<i64>,
        Option<OffsetDateTime>,
        String,
    ) = sqlx::query_as(
        r#"
            INSERT INTO eviction_procedures (pseudonym, comune_istat, docket_pseudonym, court)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (pseudonym) DO UPDATE SET pseudonym = EXCLUDED.pseudonym
            RETURNING consent, consent_id, consent_recorded_at, comune_istat
            "#,
    )
    .bind(pseudonym.as_ref())
    .bind(comune.as_ref())
    .bind(key.docket.as_ref())
    .bind(key.court.as_deref())
    .fetch_one(&mut *tx)
    .await?;
    let consent = match (ConsentDecision::parse(&consent), recorded_at) {
        (Some(decision), Some(recorded_at)) => Some(ConsentInForce {
            decision,
            recorded_at,
        }),
        _ => None,
    };
    let history = load_history(tx, pseudonym).await?;
    Ok(ProcedureRow {
        state: ProcedureState { consent, history },
        consent_id,
        comune: owner,
    })
}

/// How a procedure is known: its pseudonym (of court and docket, or of the docket alone
/// while its court is unknown), its docket pseudonym, its court.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcedureKey {
    pub pseudonym: Pseudonym,
    pub docket: Pseudonym,
    /// The `source` of its court's events; None until a court's step names it.
    pub court: Option<String>,
}

/// Serialises every event of one docket number (across courts) until the transaction
/// ends, so that finding, adopting and creating its procedures never race.
pub(crate) async fn lock_docket(
    tx: &mut PgConnection,
    docket: &Pseudonym,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(docket.as_ref())
        .execute(tx)
        .await?;
    Ok(())
}

/// The procedures of a docket number: all, or those of one comune, or of one court.
pub(crate) async fn procedures_of_docket(
    tx: &mut PgConnection,
    docket: &Pseudonym,
    comune: Option<&ComuneIstat>,
) -> Result<Vec<(ProcedureKey, ComuneIstat)>, sqlx::Error> {
    let rows: Vec<(String, Option<String>, String)> = sqlx::query_as(
        r#"
        SELECT pseudonym, court, comune_istat
        FROM eviction_procedures
        WHERE docket_pseudonym = $1 AND ($2::TEXT IS NULL OR comune_istat = $2)
        ORDER BY created_at, pseudonym
        "#,
    )
    .bind(docket.as_ref())
    .bind(comune.map(AsRef::as_ref))
    .fetch_all(tx)
    .await?;
    rows.into_iter()
        .map(|(p, court, comune)| {
            let key = ProcedureKey {
                pseudonym: Pseudonym::from_stored(p),
                docket: docket.clone(),
                court,
            };
            let comune = ComuneIstat::parse(&comune).map_err(decode("comune"))?;
            Ok((key, comune))
        })
        .collect()
}

/// Whether a procedure of this pseudonym exists.
pub(crate) async fn procedure_exists(
    tx: &mut PgConnection,
    pseudonym: &Pseudonym,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM eviction_procedures WHERE pseudonym = $1)")
        .bind(pseudonym.as_ref())
        .fetch_one(tx)
        .await
}

/// A court adopts a procedure whose court was unknown: renamed to its court-keyed
/// pseudonym, the tables that point at it following (ON UPDATE CASCADE).
pub(crate) async fn adopt_procedure(
    tx: &mut PgConnection,
    from: &Pseudonym,
    to: &ProcedureKey,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"
        UPDATE eviction_procedures
        SET pseudonym = $2, court = $3, updated_at = now()
        WHERE pseudonym = $1 AND court IS NULL
        "#,
    )
    .bind(from.as_ref())
    .bind(to.pseudonym.as_ref())
    .bind(to.court.as_deref())
    .execute(tx)
    .await?;
    Ok(())
}

/// The procedure's steps in the order they occurred (ties: arrival).
pub(crate) async fn load_history(
    tx: &mut PgConnection,
    pseudonym: &Pseudonym,
) -> Result<Vec<StepRecord>, sqlx::Error> {
    let rows: Vec<(String, Date, Option<OffsetDateTime>, Option<bool>)> = sqlx::query_as(
        r#"
        SELECT step, occurred_on, next_access_at, info_material_delivered
        FROM eviction_steps
        WHERE pseudonym = $1
        ORDER BY occurred_on, id
        "#,
    )
    .bind(pseudonym.as_ref())
    .fetch_all(tx)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(step, occurred_on, next_access_at, info)| {
            Some(StepRecord {
                step: Step::parse(&step)?,
                occurred_on,
                next_access_at,
                info_material_delivered: info,
            })
        })
        .collect())
}

/// Appends a step to the non-personal history.
pub(crate) async fn insert_step(
    tx: &mut PgConnection,
    pseudonym: &Pseudonym,
    comune: &ComuneIstat,
    step: &StepRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"
        INSERT INTO eviction_steps (pseudonym, step, occurred_on, next_access_at, comune_istat, info_material_delivered)
        VALUES ($1, $2, $3, $4, $5, $6)
        "#,
    )
    .bind(pseudonym.as_ref())
    .bind(step.step.as_str())
    .bind(step.occurred_on)
    .bind(step.next_access_at)
    .bind(comune.as_ref())
    .bind(step.info_material_delivered)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE eviction_procedures SET updated_at = now() WHERE pseudonym = $1")
        .bind(pseudonym.as_ref())
        .execute(tx)
        .await?;
    Ok(())
}

/// A consent decision as received, for the audit.
pub(crate) struct ConsentRecord<'a> {
    pub decision: ConsentDecision,
    pub recorded_by: &'a str,
    pub recorded_at: OffsetDateTime,
    /// The validated publisher (C8).
    pub publisher: &'a str,
    /// When it is now the decision in force: the time it counts from (C8).
    pub effective_at: Option<OffsetDateTime>,
    /// A revocation applied although it failed validation: why it failed.
    pub unvalidated: Option<&'a str>,
}

/// Records a decision; when it is the one in force, the procedure points at it.
pub(crate) async fn record_consent(
    tx: &mut PgConnection,
    pseudonym: &Pseudonym,
    comune: &ComuneIstat,
    consent: &ConsentRecord<'_>,
) -> Result<i64, sqlx::Error> {
    let id: i64 = sqlx::query_scalar(
        r#"
        INSERT INTO eviction_consents
            (pseudonym, comune_istat, decision, recorded_by, recorded_at, applied, publisher, unvalidated)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        RETURNING id
        "#,
    )
    .bind(pseudonym.as_ref())
    .bind(comune.as_ref())
    .bind(consent.decision.as_str())
    .bind(consent.recorded_by)
    .bind(consent.recorded_at)
    .bind(consent.effective_at.is_some())
    .bind(consent.publisher)
    .bind(consent.unvalidated)
    .fetch_one(&mut *tx)
    .await?;
    if let Some(effective_at) = consent.effective_at {
        sqlx::query(
            r#"
            UPDATE eviction_procedures
            SET consent = $2,
                consent_id = $3,
                consent_recorded_at = $4,
                comune_istat = $5,
                updated_at = now()
            WHERE pseudonym = $1
            "#,
        )
        .bind(pseudonym.as_ref())
        .bind(consent.decision.as_str())
        .bind(id)
        .bind(effective_at)
        .bind(comune.as_ref())
        .execute(tx)
        .await?;
    }
    Ok(id)
}

/// The personal data held for a procedure with active consent.
#[derive(Debug, Clone)]
pub(crate) struct HeldPersonal {
    pub procedure_id: ProcedureId,
    pub contact: Option<Contact>,
    pub household: Option<Household>,
}

/// Holds the clear docket number and the shared data. CONTRACT C1: call only while
/// consent is active. A `None` keeps what is held.
pub(crate) async fn hold_personal(
    tx: &mut PgConnection,
    pseudonym: &Pseudonym,
    procedure_id: &ProcedureId,
    contact: Option<&Contact>,
    household: Option<&Household>,
) -> Result<HeldPersonal, sqlx::Error> {
    let to_json = |v: Option<Value>| v.filter(|v| !v.is_null());
    let (procedure_id_text, contact, household): (String, Option<Value>, Option<Value>) =
        sqlx::query_as(
            r#"
            INSERT INTO eviction_personal (pseudonym, procedure_id, contact, household)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (pseudonym) DO UPDATE
            SET procedure_id = EXCLUDED.procedure_id,
                contact = COALESCE(EXCLUDED.contact, eviction_personal.contact),
                household = COALESCE(EXCLUDED.household, eviction_personal.household),
                updated_at = now()
            RETURNING procedure_id, contact, household
            "#,
        )
        .bind(pseudonym.as_ref())
        .bind(procedure_id.expose())
        .bind(to_json(
            contact
                .map(serde_json::to_value)
                .transpose()
                .map_err(encode("contact"))?,
        ))
        .bind(to_json(
            household
                .map(serde_json::to_value)
                .transpose()
                .map_err(encode("household"))?,
        ))
        .fetch_one(tx)
        .await?;
    // What is stored must read back: a row that does not is an error, never a silent gap.
    Ok(HeldPersonal {
        procedure_id: ProcedureId::parse(&procedure_id_text).map_err(decode("docket number"))?,
        contact: contact
            .map(serde_json::from_value)
            .transpose()
            .map_err(decode("contact"))?,
        household: household
            .map(serde_json::from_value)
            .transpose()
            .map_err(decode("household"))?,
    })
}

/// Does with the procedure's personal data what the decision says: holds what the event
/// shares (C1: only under active consent), forgets everything (C4), or keeps it as it
/// is. Returns what is held now, and how many undelivered alerts were cancelled.
pub(crate) async fn apply_personal(
    tx: &mut PgConnection,
    pseudonym: &Pseudonym,
    personal: Personal,
    procedure_id: &ProcedureId,
    contact: Option<&Contact>,
    household: Option<&Household>,
) -> Result<(Option<HeldPersonal>, u64), sqlx::Error> {
    match personal {
        Personal::Hold => {
            let held = hold_personal(tx, pseudonym, procedure_id, contact, household).await?;
            Ok((Some(held), 0))
        }
        Personal::Forget => Ok((None, forget_personal(tx, pseudonym, REVOKED).await?)),
        Personal::Drop => Ok((None, 0)),
    }
}

/// Personal data that does not convert to or from its stored form. The cause is left
/// out on purpose: serde's messages quote the values they met, and those are personal.
#[derive(Debug, thiserror::Error)]
#[error("the held {0} does not convert to or from its stored form")]
struct Unconvertible(&'static str);

fn encode(what: &'static str) -> impl FnOnce(serde_json::Error) -> sqlx::Error {
    move |_| sqlx::Error::Encode(Box::new(Unconvertible(what)))
}

fn decode<E>(what: &'static str) -> impl FnOnce(E) -> sqlx::Error {
    move |_| sqlx::Error::Decode(Box::new(Unconvertible(what)))
}

/// What an eviction notification keeps once scrubbed (C4): nothing personal.
const SCRUB_KEEPS: [&str; 3] = ["comune_istat", "comune_nome", "trigger"];

/// Why an undelivered alert is cancelled on revocation (C4).
const REVOKED: &str = "not sent: the family revoked its consent before delivery (C4)";

/// CONTRACT C4 (and C9, whose deletion is C4's): deletes the personal data held for a
/// procedure, removes it from the payloads of the alerts already made, and cancels those
/// not yet delivered, saying `reason`. Returns how many deliveries were cancelled.
pub(crate) async fn forget_personal(
    tx: &mut PgConnection,
    pseudonym: &Pseudonym,
    reason: &str,
) -> Result<u64, sqlx::Error> {
    sqlx::query("DELETE FROM eviction_personal WHERE pseudonym = $1")
        .bind(pseudonym.as_ref())
        .execute(&mut *tx)
        .await?;
    let made: Vec<Uuid> = sqlx::query_scalar(
        "SELECT notification_id FROM eviction_notifications WHERE pseudonym = $1",
    )
    .bind(pseudonym.as_ref())
    .fetch_all(&mut *tx)
    .await?;
    let alerts = db::of_kind(tx, &made, NotificationKind::EvictionAlert).await?;
    let cancelled = db::cancel_pending(tx, &alerts, reason).await?;
    scrub(tx, &alerts).await?;
    Ok(cancelled)
}

/// Replaces the payloads of the notifications `ids` not scrubbed yet with their
/// non-personal part ([`SCRUB_KEEPS`]), and records when. Returns how many.
pub(crate) async fn scrub(tx: &mut PgConnection, ids: &[Uuid]) -> Result<u64, sqlx::Error> {
    let claimed: Vec<Uuid> = sqlx::query_scalar(
        r#"
        UPDATE eviction_notifications
        SET scrubbed_at = now()
        WHERE notification_id = ANY($1)
          AND scrubbed_at IS NULL
        RETURNING notification_id
        "#,
    )
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?;
    let scrubbed = db::scrub_payloads(tx, &claimed, &SCRUB_KEEPS).await?;
    Ok(u64::try_from(scrubbed.len()).unwrap_or(u64::MAX))
}

/// Among `ids`, the eviction notifications already scrubbed.
pub(crate) async fn scrubbed_among(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        r#"
        SELECT notification_id
        FROM eviction_notifications
        WHERE notification_id = ANY($1)
          AND scrubbed_at IS NOT NULL
        "#,
    )
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// Links a notification to its procedure and to the consent decision that authorised it.
pub(crate) async fn link_notification(
    tx: &mut PgConnection,
    notification_id: Uuid,
    pseudonym: &Pseudonym,
    consent_id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"
        INSERT INTO eviction_notifications (notification_id, pseudonym, consent_id)
        VALUES ($1, $2, $3)
        "#,
    )
    .bind(notification_id)
    .bind(pseudonym.as_ref())
    .bind(consent_id)
    .execute(tx)
    .await?;
    Ok(())
}

/// Who recorded a consent decision, and when.
pub(crate) async fn load_consent(
    tx: &mut PgConnection,
    consent_id: i64,
) -> Result<(String, OffsetDateTime), sqlx::Error> {
    sqlx::query_as(
        r#"
        SELECT recorded_by, recorded_at
        FROM eviction_consents
        WHERE id = $1
        "#,
    )
    .bind(consent_id)
    .fetch_one(tx)
    .await
}

/// Whether the key chain in use made the stored pseudonyms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyCheck {
    /// It did (or nothing was stored yet, and now it is recorded as the one).
    Matches,
    /// Another chain made them: writing now would mix two keys' pseudonyms.
    Differs,
}

/// Compares `fingerprint` with the one stored, recording it when none is. Takes a share
/// lock on the row, so a `rekey` waits for transactions that checked the old chain.
pub(crate) async fn check_key(
    tx: &mut PgConnection,
    fingerprint: &str,
    keys: usize,
) -> Result<KeyCheck, sqlx::Error> {
    // The row exists but on a fresh database: one statement in the steady state.
    let stored = match stored_fingerprint(tx).await? {
        Some(stored) => stored,
        None => {
            sqlx::query(
                r#"
                INSERT INTO eviction_key (fingerprint, keys)
                VALUES ($1, $2)
                ON CONFLICT (singleton) DO NOTHING
                "#,
            )
            .bind(fingerprint)
            .bind(i32::try_from(keys).map_err(|e| sqlx::Error::Encode(Box::new(e)))?)
            .execute(&mut *tx)
            .await?;
            stored_fingerprint(tx)
                .await?
                .ok_or(sqlx::Error::RowNotFound)?
        }
    };
    Ok(if stored == fingerprint {
        KeyCheck::Matches
    } else {
        KeyCheck::Differs
    })
}

/// The key chain's fingerprint, locked against a rekey until the transaction ends.
async fn stored_fingerprint(tx: &mut PgConnection) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        r#"
        SELECT fingerprint
        FROM eviction_key
        FOR SHARE
        "#,
    )
    .fetch_optional(&mut *tx)
    .await
}

/// Every stored procedure's pseudonym and docket pseudonym, for `rekey`, with the key row
/// locked against workers.
pub(crate) async fn lock_for_rekey(
    tx: &mut PgConnection,
) -> Result<Vec<(Pseudonym, Pseudonym)>, sqlx::Error> {
    sqlx::query("LOCK TABLE eviction_key, eviction_procedures IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let rows: Vec<(String, String)> = sqlx::query_as(
        r#"
        SELECT pseudonym, docket_pseudonym
        FROM eviction_procedures
        ORDER BY pseudonym
        "#,
    )
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(p, d)| (Pseudonym::from_stored(p), Pseudonym::from_stored(d)))
        .collect())
}

/// One procedure renamed by `rekey`: its pseudonym and its docket pseudonym hashed anew.
pub(crate) struct Rename {
    pub old: Pseudonym,
    pub new: Pseudonym,
    pub docket: Pseudonym,
}

/// Renames procedures, the tables that point at them following (ON UPDATE CASCADE). New
/// names are hashes under a new key: they never collide with old ones.
pub(crate) async fn rename_procedures(
    tx: &mut PgConnection,
    renames: &[Rename],
) -> Result<u64, sqlx::Error> {
    let old: Vec<&str> = renames.iter().map(|r| r.old.as_ref()).collect();
    let new: Vec<&str> = renames.iter().map(|r| r.new.as_ref()).collect();
    let docket: Vec<&str> = renames.iter().map(|r| r.docket.as_ref()).collect();
    Ok(sqlx::query(
        r#"
        UPDATE eviction_procedures p
        SET pseudonym = r.new, docket_pseudonym = r.docket
        FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[]) AS r (old, new, docket)
        WHERE p.pseudonym = r.old
        "#,
    )
    .bind(&old)
    .bind(&new)
    .bind(&docket)
    .execute(tx)
    .await?
    .rows_affected())
}

/// Records the chain that now made every pseudonym.
pub(crate) async fn record_key(
    tx: &mut PgConnection,
    fingerprint: &str,
    keys: usize,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"
        INSERT INTO eviction_key (fingerprint, keys)
        VALUES ($1, $2)
        ON CONFLICT (singleton) DO UPDATE
        SET fingerprint = EXCLUDED.fingerprint,
            keys = EXCLUDED.keys,
            changed_at = now()
        "#,
    )
    .bind(fingerprint)
    .bind(i32::try_from(keys).map_err(|e| sqlx::Error::Encode(Box::new(e)))?)
    .execute(tx)
    .await?;
    Ok(())
}

/// Consent decisions that arrived after a later one and so changed nothing, by decision:
/// a revocation among them is worth an operator's look (was it meant to apply?).
pub async fn stale_decisions(
    conn: &mut PgConnection,
) -> Result<Vec<(ConsentDecision, i64)>, sqlx::Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        r#"
        SELECT decision, COUNT(*)
        FROM eviction_consents
        WHERE NOT applied
        GROUP BY decision
        ORDER BY decision
        "#,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(d, n)| ConsentDecision::parse(&d).map(|d| (d, n)))
        .collect())
}

/// How many revocations were applied although they failed validation (C8).
pub async fn unvalidated_revocations(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM eviction_consents WHERE unvalidated IS NOT NULL")
        .fetch_one(conn)
        .await
}

/// A raw count from the database: ambito, istat, nome, step, count.
pub(crate) type RawRow = (Option<String>, String, String, String, i64);

/// Steps per comune and step between `from` (included) and `to` (excluded), by
/// `occurred_on`, with the comune's ambito and name. A procedure's step on one day counts
/// once, however often it was published.
pub(crate) async fn step_counts(
    conn: &mut PgConnection,
    from: Date,
    to: Date,
) -> Result<Vec<RawRow>, sqlx::Error> {
    sqlx::query_as(
        r#"
        SELECT c.ambito, c.istat, c.nome, s.step, COUNT(DISTINCT (s.pseudonym, s.occurred_on))
        FROM eviction_steps s
        JOIN comuni c ON c.istat = s.comune_istat
        WHERE s.occurred_on >= $1
          AND s.occurred_on < $2
        GROUP BY c.ambito, c.istat, c.nome, s.step
        "#,
    )
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await
}

/// A recorded consent decision: decision, recorded by, recorded at, received at, applied,
/// the validated publisher (None before 1.2), why it failed validation (a revocation
/// applied all the same, C8).
pub(crate) type ConsentRow = (
    String,
    String,
    OffsetDateTime,
    OffsetDateTime,
    bool,
    Option<String>,
    Option<String>,
);

/// Every consent decision recorded for the procedures of a docket number (`procedure`: its
/// docket pseudonym), in the order recorded.
pub(crate) async fn consent_rows(
    conn: &mut PgConnection,
    procedure: &Pseudonym,
) -> Result<Vec<ConsentRow>, sqlx::Error> {
    sqlx::query_as(
        r#"
        SELECT decision, recorded_by, recorded_at, received_at, applied, publisher, unvalidated
        FROM eviction_consents
        WHERE pseudonym IN (SELECT pseudonym FROM eviction_procedures WHERE docket_pseudonym = $1)
        ORDER BY recorded_at, id
        "#,
    )
    .bind(procedure.as_ref())
    .fetch_all(conn)
    .await
}

/// What `raccordo ids move procedure` found.
#[derive(Debug)]
pub enum ProcedureMove {
    /// Moved: its pseudonym, and its comune before.
    Moved { pseudonym: Pseudonym, from: String },
    /// No procedure of this docket number (and court).
    NotFound,
    /// Several courts' procedures: the court must be named.
    Ambiguous(usize),
}

/// Moves the procedure of a docket number (its docket pseudonym; of `court` when given)
/// to another comune, for `raccordo ids move`.
pub async fn move_procedure(
    tx: &mut PgConnection,
    docket: &Pseudonym,
    court: Option<&str>,
    to_comune: &ComuneIstat,
) -> Result<ProcedureMove, sqlx::Error> {
    lock_docket(tx, docket).await?;
    let mut found: Vec<(ProcedureKey, ComuneIstat)> = procedures_of_docket(tx, docket, None)
        .await?
        .into_iter()
        .filter(|(k, _)| court.is_none() || k.court.as_deref() == court)
        .collect();
    let (key, from) = match found.len() {
        0 => return Ok(ProcedureMove::NotFound),
        1 => found.remove(0),
        n => return Ok(ProcedureMove::Ambiguous(n)),
    };
    sqlx::query(
        "UPDATE eviction_procedures SET comune_istat = $2, updated_at = now() WHERE pseudonym = $1",
    )
    .bind(key.pseudonym.as_ref())
    .bind(to_comune.as_ref())
    .execute(tx)
    .await?;
    Ok(ProcedureMove::Moved {
        pseudonym: key.pseudonym,
        from: from.as_ref().to_owned(),
    })
}
