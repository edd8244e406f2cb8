//! `raccordo ids move`: an operator gives a unit, a facility or a procedure to another
//! comune (and publisher), which an event may never do (contract 1.2 §3); each move is
//! recorded in `id_moves` with who made it and why.

use anyhow::{Context, bail};
use raccordo_core::domain::ComuneIstat;
use raccordo_core::ownership::{self, IdKind, Move, Owner};
use raccordo_core::settings::Settings;
use raccordo_eviction::personal::{ProcedureId, Pseudonymizer};
use raccordo_eviction::store::{ProcedureMove, move_procedure};

use crate::database::connect_db;

/// What to move, where, and who asks.
pub struct MoveRequest<'a> {
    pub kind: IdKind,
    /// The unit or facility id, or the docket number of a procedure (hashed, never stored).
    pub id: &'a str,
    /// A procedure's court (the `source` of its court's events), when several have it.
    pub court: Option<&'a str>,
    pub to_comune: &'a str,
    pub to_publisher: Option<&'a str>,
    pub by: &'a str,
    pub reason: &'a str,
}

/// Moves the id in one transaction with its audit row; returns the line to print.
pub async fn move_id(settings: &Settings, r: &MoveRequest<'_>) -> anyhow::Result<String> {
    let to = ComuneIstat::parse(r.to_comune).context("--to")?;
    if r.by.trim().is_empty() || r.reason.trim().is_empty() {
        bail!("--by and --reason are required: every move is audited");
    }
    let pool = connect_db(settings).await?;
    let mut tx = pool.begin().await?;
    let known: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM comuni WHERE istat = $1)")
        .bind(to.as_ref())
        .fetch_one(&mut *tx)
        .await?;
    if !known {
        bail!("unknown comune {to}: it is not in the registry (raccordo import comuni)");
    }
    let (subject, from) = match r.kind {
        IdKind::Unit => (
            r.id.to_owned(),
            raccordo_housing::move_unit(&mut tx, r.id, to.as_ref(), r.to_publisher).await?,
        ),
        IdKind::Facility => (
            r.id.to_owned(),
            raccordo_quota::move_facility(&mut tx, r.id, to.as_ref(), r.to_publisher).await?,
        ),
        IdKind::Procedure => {
            let docket = ProcedureId::parse(r.id).context("the docket number")?;
            let pseudonym = Pseudonymizer::from_settings(&settings.eviction).pseudonym(&docket);
            match move_procedure(&mut tx, &pseudonym, r.court, &to).await? {
                ProcedureMove::Moved { pseudonym, from } => (
                    pseudonym.as_ref().to_owned(),
                    Some(Owner {
                        comune: from,
                        publisher: None,
                    }),
                ),
                ProcedureMove::NotFound => (String::new(), None),
                ProcedureMove::Ambiguous(n) => bail!(
                    "{n} courts have a procedure with this docket number: name one with --court"
                ),
            }
        }
    };
    let Some(from) = from else {
        bail!("no {} with this id is known to the hub", r.kind.as_str());
    };
    let number = ownership::record_move(
        &mut tx,
        &Move {
            kind: r.kind,
            subject: &subject,
            from: &from,
            to_comune: to.as_ref(),
            to_publisher: r.to_publisher,
            moved_by: r.by,
            reason: r.reason,
        },
    )
    .await?;
    tx.commit().await?;
    pool.close().await;
    // A procedure is named by its pseudonym's start only: the docket is personal.
    let shown = match r.kind {
        IdKind::Procedure => format!("procedure {}…", &subject[..subject.len().min(12)]),
        kind => format!("{} {:?}", kind.as_str(), subject),
    };
    Ok(format!(
        "Moved {shown} from comune {} to comune {to}{}; recorded as move {number} by {}.",
        from.comune,
        r.to_publisher
            .map(|p| format!(" (publisher {p:?})"))
            .unwrap_or_default(),
        r.by
    ))
}
