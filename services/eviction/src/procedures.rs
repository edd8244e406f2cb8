//! Which procedure an event is about (CONTRACT 1.2 §3): a procedure is its court (the
//! `source` of the court's events) and its docket number. A step names its court; a
//! consent decision, which comes from a desk, may name it (`court`) or find the procedure
//! of its docket number in its comune. A procedure whose court is not known yet (a consent
//! before any step, or a procedure stored before 1.2) is adopted by the first court that
//! sends a step for that docket in that comune.

use sqlx::PgConnection;

use raccordo_core::domain::ComuneIstat;

use crate::event::ConsentDecision;
use crate::personal::{ProcedureId, Pseudonymizer};
use crate::store::{self, ProcedureKey};

/// A consent decision that cannot tell two courts' procedures apart.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0} procedures of different courts have this docket number in this comune: \
     the decision must name its court (the `court` field)"
)]
pub(crate) struct Ambiguous(pub usize);

/// The procedures an event of `court` (None: a decision that names none) about docket `id`
/// in `comune` applies to; a revocation applies to every one it may mean (C8). Takes the
/// docket's lock for the rest of the transaction.
pub(crate) async fn resolve(
    tx: &mut PgConnection,
    pseudonyms: &Pseudonymizer,
    id: &ProcedureId,
    court: Option<&str>,
    comune: &ComuneIstat,
    decision: Option<ConsentDecision>,
) -> Result<Vec<ProcedureKey>, ResolveError> {
    let docket = pseudonyms.pseudonym(id);
    store::lock_docket(tx, &docket).await?;
    if let Some(court) = court {
        let key = ProcedureKey {
            pseudonym: pseudonyms.procedure_pseudonym(court, id),
            docket: docket.clone(),
            court: Some(court.to_owned()),
        };
        if !store::procedure_exists(tx, &key.pseudonym).await? {
            let known = store::procedures_of_docket(tx, &docket, Some(comune)).await?;
            if let Some((unknown, _)) = known.into_iter().find(|(k, _)| k.court.is_none()) {
                store::adopt_procedure(tx, &unknown.pseudonym, &key).await?;
            }
        }
        return Ok(vec![key]);
    }
    let mut known: Vec<ProcedureKey> = store::procedures_of_docket(tx, &docket, Some(comune))
        .await?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    match known.len() {
        // Court unknown until a step names it: keyed on the docket alone meanwhile.
        0 => Ok(vec![ProcedureKey {
            pseudonym: docket.clone(),
            docket,
            court: None,
        }]),
        1 => Ok(known.split_off(0)),
        _ if decision == Some(ConsentDecision::Revoked) => Ok(known),
        n => Err(ResolveError::Ambiguous(Ambiguous(n))),
    }
}

/// Why the procedures of an event could not be found.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    #[error(transparent)]
    Ambiguous(Ambiguous),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}
