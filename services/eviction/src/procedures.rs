//! Which procedure an event is about (CONTRACT 1.2 §3): a procedure is its court (the
//! `source` of the court's events) and its docket number. A step names its court; a
//! consent decision, which comes from a desk, may name it (`court`) or find the procedure
//! of its docket number in its comune. A procedure whose court is not known yet (a consent
//! before any step, or a procedure stored before 1.2) is adopted by the first court that
//! sends a step for that docket in that comune.

use sqlx::PgConnection;

use raccordo_core::domain::ComuneIstat;
use raccordo_core::ownership::{IdKind, Owner, Taken};

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
/// in `comune` applies to, each with its own comune. Takes the docket's lock for the rest of
/// the transaction.
pub(crate) async fn resolve(
    tx: &mut PgConnection,
    pseudonyms: &Pseudonymizer,
    id: &ProcedureId,
    court: Option<&str>,
    comune: &ComuneIstat,
    decision: Option<ConsentDecision>,
) -> Result<Vec<(ProcedureKey, ComuneIstat)>, ResolveError> {
    let docket = pseudonyms.pseudonym(id);
    store::lock_docket(tx, &docket).await?;
    if decision == Some(ConsentDecision::Revoked) {
        let known = revocation_targets(tx, pseudonyms, id, court).await?;
        return Ok(if known.is_empty() {
            vec![(new_key(pseudonyms, id, court), comune.clone())]
        } else {
            known
        });
    }
    if let Some(court) = court {
        let key = new_key(pseudonyms, id, Some(court));
        if !store::procedure_exists(tx, &key.pseudonym).await? {
            let known = store::procedures_of_docket(tx, &docket, Some(comune)).await?;
            if let Some((unknown, _)) = known.into_iter().find(|(k, _)| k.court.is_none()) {
                store::adopt_procedure(tx, &unknown.pseudonym, &key).await?;
            }
        }
        // A procedure of this court in another comune is refused when locked (ownership).
        return Ok(vec![(key, comune.clone())]);
    }
    let known = store::procedures_of_docket(tx, &docket, None).await?;
    let (mut here, elsewhere): (Vec<_>, Vec<_>) = known.into_iter().partition(|(_, c)| c == comune);
    match (here.len(), elsewhere.first()) {
        (1, _) => Ok(here.split_off(0)),
        // Court unknown until a step names it: keyed on the docket alone meanwhile.
        (0, None) => Ok(vec![(new_key(pseudonyms, id, None), comune.clone())]),
        // A grant never moves a procedure to another comune (CONTRACT 1.2 §3).
        (0, Some((_, owner))) => Err(ResolveError::Taken(Taken {
            kind: IdKind::Procedure,
            id: None,
            owner: Owner {
                comune: owner.as_ref().to_owned(),
                publisher: None,
            },
        })),
        (n, _) => Err(ResolveError::Ambiguous(Ambiguous(n))),
    }
}

/// Every procedure a revocation may mean (C8): of its docket in any comune, of its court
/// when it names one, each with its own comune. The docket's lock must be held.
pub(crate) async fn revocation_targets(
    tx: &mut PgConnection,
    pseudonyms: &Pseudonymizer,
    id: &ProcedureId,
    court: Option<&str>,
) -> Result<Vec<(ProcedureKey, ComuneIstat)>, sqlx::Error> {
    let docket = pseudonyms.pseudonym(id);
    Ok(store::procedures_of_docket(tx, &docket, None)
        .await?
        .into_iter()
        .filter(|(k, _)| court.is_none() || k.court.as_deref() == court)
        .collect())
}

/// The key of a procedure not known yet: of its court, or of the docket alone.
pub(crate) fn new_key(
    pseudonyms: &Pseudonymizer,
    id: &ProcedureId,
    court: Option<&str>,
) -> ProcedureKey {
    let docket = pseudonyms.pseudonym(id);
    match court {
        Some(court) => ProcedureKey {
            pseudonym: pseudonyms.procedure_pseudonym(court, id),
            docket,
            court: Some(court.to_owned()),
        },
        None => ProcedureKey {
            pseudonym: docket.clone(),
            docket,
            court: None,
        },
    }
}

/// Why the procedures of an event could not be found.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    #[error(transparent)]
    Ambiguous(Ambiguous),
    #[error(transparent)]
    Taken(Taken),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}
