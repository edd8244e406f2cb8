//! The rotation's tables: `asylum_rotation` (each comune's credit, pause and count),
//! `asylum_rotation_state` (the lock and the current period) and the periods. Functions
//! take `&mut PgConnection` so the caller owns the transaction.

use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use time::Date;

use raccordo_core::domain::ComuneIstat;
use raccordo_core::registry::{Comune, Snapshot};

use crate::rotation::Member;

/// A comune's row of `asylum_rotation`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RotationRow {
    pub comune_istat: String,
    /// Its credit, in [`crate::rotation::UNIT`]ths of an assignment.
    pub current_weight: i64,
    /// Paused up to and including this day (Europe/Rome).
    pub paused_until: Option<Date>,
    /// Domiciles assigned to it, ever.
    pub assigned: i64,
}

impl RotationRow {
    /// Whether the comune is paused on `today`.
    pub fn paused_on(&self, today: Date) -> bool {
        self.paused_until.is_some_and(|until| until >= today)
    }
}

/// Takes the rotation's lock for the rest of the transaction; returns the current period.
pub(crate) async fn lock_rotation(tx: &mut PgConnection) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        r#"
        SELECT period_id
        FROM asylum_rotation_state
        WHERE singleton
        FOR UPDATE
        "#,
    )
    .fetch_one(tx)
    .await
}

/// Every row of `asylum_rotation`, by ISTAT code.
pub async fn load_rows(conn: &mut PgConnection) -> Result<Vec<RotationRow>, sqlx::Error> {
    sqlx::query_as(
        r#"
        SELECT comune_istat, current_weight, paused_until, assigned
        FROM asylum_rotation
        ORDER BY comune_istat
        "#,
    )
    .fetch_all(conn)
    .await
}

/// The comuni of the registry marked `domicilio`, by ISTAT code.
pub fn domicilio_comuni(registry: &Snapshot) -> Vec<Comune> {
    let mut comuni: Vec<Comune> = registry
        .comuni_by_istat(None)
        .into_iter()
        .filter(|c| c.domicilio)
        .collect();
    comuni.sort_by(|a, b| a.istat.cmp(&b.istat));
    comuni
}

/// The rotation on `today`: the comuni marked `domicilio`, not paused, with a population,
/// by ISTAT code, with their credits.
pub fn members(comuni: &[Comune], rows: &[RotationRow], today: Date) -> Vec<Member> {
    comuni
        .iter()
        .filter_map(|c| {
            let row = rows.iter().find(|r| r.comune_istat == c.istat.as_ref());
            let population = u64::try_from(c.popolazione).unwrap_or(0);
            if row.is_some_and(|r| r.paused_on(today)) || population == 0 {
                return None;
            }
            Some(Member {
                istat: c.istat.clone(),
                population,
                credit: row.map_or(0, |r| r.current_weight),
            })
        })
        .collect()
}

/// The digest of a composition of the rotation.
fn digest(members: &[Member]) -> String {
    let mut hasher = Sha256::new();
    for m in members {
        hasher.update(m.istat.as_ref().as_bytes());
        hasher.update(b":");
        hasher.update(m.population.to_string().as_bytes());
        hasher.update(b";");
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The period of `members`: `current` when its composition is theirs, else a new one
/// (recorded with its members and made current). Call with the rotation locked.
pub(crate) async fn period_of(
    tx: &mut PgConnection,
    current: Option<i64>,
    members: &[Member],
) -> Result<i64, sqlx::Error> {
    let digest = digest(members);
    if let Some(id) = current {
        let same: Option<bool> =
            sqlx::query_scalar("SELECT digest = $2 FROM asylum_rotation_periods WHERE id = $1")
                .bind(id)
                .bind(&digest)
                .fetch_optional(&mut *tx)
                .await?;
        if same == Some(true) {
            return Ok(id);
        }
    }
    let istat: Vec<&str> = members.iter().map(|m| m.istat.as_ref()).collect();
    let population: Vec<i64> = members
        .iter()
        .map(|m| i64::try_from(m.population).unwrap_or(i64::MAX))
        .collect();
    sqlx::query_scalar(
        r#"
        WITH period AS (
            INSERT INTO asylum_rotation_periods (digest)
            VALUES ($1)
            RETURNING id
        ), members AS (
            INSERT INTO asylum_rotation_period_members (period_id, comune_istat, population)
            SELECT period.id, m.istat, m.population
            FROM period, UNNEST($2::TEXT[], $3::BIGINT[]) AS m (istat, population)
        ), state AS (
            UPDATE asylum_rotation_state
            SET period_id = (SELECT id FROM period)
            WHERE singleton
        )
        SELECT id FROM period
        "#,
    )
    .bind(&digest)
    .bind(&istat)
    .bind(&population)
    .fetch_one(tx)
    .await
}

/// Writes the members' credits (rows created as needed) and counts one more domicile for
/// `chosen`. Call with the rotation locked.
pub(crate) async fn save_credits(
    tx: &mut PgConnection,
    members: &[Member],
    chosen: &ComuneIstat,
) -> Result<(), sqlx::Error> {
    let istat: Vec<&str> = members.iter().map(|m| m.istat.as_ref()).collect();
    let credit: Vec<i64> = members.iter().map(|m| m.credit).collect();
    sqlx::query(
        r#"
        INSERT INTO asylum_rotation (comune_istat, current_weight, assigned)
        SELECT m.istat, m.credit, CASE WHEN m.istat = $3 THEN 1 ELSE 0 END
        FROM UNNEST($1::TEXT[], $2::BIGINT[]) AS m (istat, credit)
        ON CONFLICT (comune_istat) DO UPDATE
        SET current_weight = EXCLUDED.current_weight,
            assigned = asylum_rotation.assigned + EXCLUDED.assigned
        "#,
    )
    .bind(&istat)
    .bind(&credit)
    .bind(chosen.as_ref())
    .execute(tx)
    .await?;
    Ok(())
}

/// Pauses `istat` up to and including `until`, or resumes it (`None`); creates its row.
pub async fn set_pause(
    conn: &mut PgConnection,
    istat: &ComuneIstat,
    until: Option<Date>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"
        INSERT INTO asylum_rotation (comune_istat, paused_until)
        VALUES ($1, $2)
        ON CONFLICT (comune_istat) DO UPDATE
        SET paused_until = EXCLUDED.paused_until
        "#,
    )
    .bind(istat.as_ref())
    .bind(until)
    .execute(conn)
    .await?;
    Ok(())
}
