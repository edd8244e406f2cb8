//! Domicile requests (CONTRACT A3): each `request_id` gets the next comune of the rotation,
//! once, and `asylum.domicile_assigned` tells the comune and the desk.
//!
//! Exactly once: the rotation's lock ([`rotation_store::lock_rotation`]) is taken before the
//! request's row is written, so two hubs deciding the same request (or a replay under a new
//! event id) are decided one after the other, and the second finds the row. Taking that
//! lock first also gives every transaction the same lock order: no deadlock between hubs.

use sqlx::PgConnection;
use time::OffsetDateTime;

use raccordo_core::amqp::HandleError;
use raccordo_core::db::about_comune;
use raccordo_core::db::insert_notification;
use raccordo_core::envelope::Envelope;
use raccordo_core::payload::{DomicileAssignedPayload, Payload};
use raccordo_core::registry::{Comune, Recipient, Referent, Snapshot};
use raccordo_core::settings::EvictionSettings;

use crate::desk::require_desk;
use crate::event::DomicileRequest;
use crate::rotation::assign;
use crate::rotation_store::{
    domicilio_comuni, load_rows, lock_rotation, members, period_of, save_credits,
};

/// Why a domicile request cannot be assigned.
#[derive(Debug, thiserror::Error)]
pub enum DomicileError {
    /// Nobody to assign to: retried, then parked for the operator.
    #[error(
        "no comune in the domicile rotation (none marked domicilio, or all paused): resume one \
         (raccordo asylum rotation resume ISTAT) or mark one domicilio=si, then raccordo dlq replay"
    )]
    NoComune,
    /// The request id was assigned before for another case, desk or number of people.
    #[error(
        "domicile request {request_id:?} was already assigned for another case, desk or number \
         of people; the first assignment stands (send a new request_id)"
    )]
    Conflict { request_id: String },
}

impl From<DomicileError> for HandleError {
    fn from(error: DomicileError) -> Self {
        match error {
            DomicileError::NoComune => HandleError::Unavailable(Box::new(error)),
            DomicileError::Conflict { .. } => HandleError::Unprocessable(Box::new(error)),
        }
    }
}

/// The request as stored: what tells a replay from a conflict.
#[derive(Debug, PartialEq, Eq, sqlx::FromRow)]
struct Stored {
    case_key: String,
    desk: String,
    people: i32,
}

/// Assigns a domicile request to the next comune of the rotation, once per `request_id`.
pub async fn request(
    tx: &mut PgConnection,
    registry: &Snapshot,
    keys: &EvictionSettings,
    event: &Envelope,
) -> Result<(), HandleError> {
    let request: DomicileRequest = event.data_as()?;
    let desk = require_desk(registry, &request.desk)?;
    let case_key = request.case_id.pseudonym(keys);
    let current = lock_rotation(tx).await?;
    let asked = Stored {
        case_key,
        desk: request.desk.clone(),
        people: request.people,
    };
    if let Some(stored) = stored(tx, &request.request_id).await? {
        if stored == asked {
            tracing::debug!(request_id = %request.request_id, "Domicile request already assigned.");
            return Ok(());
        }
        return Err(DomicileError::Conflict {
            request_id: request.request_id,
        }
        .into());
    }
    let now = raccordo_core::clock::now();
    let comuni = domicilio_comuni(registry);
    let rows = load_rows(tx).await?;
    let mut rotation = members(&comuni, &rows, raccordo_core::clock::rome_date(now));
    let chosen = assign(&mut rotation).ok_or(DomicileError::NoComune)?;
    let period = period_of(tx, current, &rotation).await?;
    let istat = rotation[chosen].istat.clone();
    save_credits(tx, &rotation, &istat).await?;
    record(tx, &request, &asked, &istat, now, period, &event.publisher).await?;
    let comune = registry.require_comune(&istat)?;
    let payload = assigned_payload(&request, &asked.case_key, desk, comune, now);
    let mut notification = about_comune(registry, comune, payload, false);
    add_desk(&mut notification.recipients, desk);
    insert_notification(tx, &notification).await?;
    tracing::debug!(comune = %istat, "Domicile assigned.");
    Ok(())
}

/// The request's row, if it was recorded before.
async fn stored(tx: &mut PgConnection, request_id: &str) -> Result<Option<Stored>, sqlx::Error> {
    sqlx::query_as(
        r#"
        SELECT case_key, desk, people
        FROM asylum_domiciles
        WHERE request_id = $1
        "#,
    )
    .bind(request_id)
    .fetch_optional(tx)
    .await
}

/// Writes the request with its assignment.
async fn record(
    tx: &mut PgConnection,
    request: &DomicileRequest,
    asked: &Stored,
    istat: &raccordo_core::domain::ComuneIstat,
    now: OffsetDateTime,
    period: i64,
    publisher: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"
        INSERT INTO asylum_domiciles
            (request_id, case_key, desk, people, requested_at, comune_istat, assigned_at, period_id, publisher)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        "#,
    )
    .bind(&request.request_id)
    .bind(&asked.case_key)
    .bind(&asked.desk)
    .bind(asked.people)
    .bind(request.requested_at)
    .bind(istat.as_ref())
    .bind(now)
    .bind(period)
    .bind(publisher)
    .execute(tx)
    .await?;
    Ok(())
}

/// What the comune and the desk are told: the case only by its pseudonym.
fn assigned_payload(
    request: &DomicileRequest,
    case_key: &str,
    desk: &Referent,
    comune: &Comune,
    now: OffsetDateTime,
) -> Payload {
    Payload::AsylumDomicileAssigned(DomicileAssignedPayload {
        request_id: request.request_id.clone(),
        case: case_key.to_owned(),
        desk: desk.referent_id.clone(),
        desk_name: desk.institution.clone(),
        comune_istat: comune.istat.clone(),
        comune_nome: comune.nome.clone(),
        people: request.people,
        requested_at: rome_rfc3339(request.requested_at),
        assigned_at: rome_rfc3339(now),
    })
}

/// `instant` as RFC 3339 at the offset of Europe/Rome, as a desk in Milan reads it.
fn rome_rfc3339(instant: OffsetDateTime) -> String {
    let zoned = jiff::Timestamp::from_second(instant.unix_timestamp())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(jiff::tz::TimeZone::get("Europe/Rome").unwrap_or(jiff::tz::TimeZone::UTC));
    zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// The desk's `sportello_asilo` referent joins the comune's referents (one email per address).
fn add_desk(recipients: &mut Vec<Recipient>, desk: &Referent) {
    if recipients.iter().any(|r| r.email == desk.email) {
        return;
    }
    recipients.push(Recipient {
        referent_id: desk.referent_id.clone(),
        email: desk.email.clone(),
        name: desk.name.clone(),
        institution: desk.institution.clone(),
        role: desk.role,
    });
}
