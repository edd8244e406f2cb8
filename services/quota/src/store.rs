//! The quota worker's tables: `reception_facilities` (each facility's newest report) and
//! `quota_state` (each comune's announced standing). Comuni are read through the core
//! registry. Functions take `&mut PgConnection` so the caller owns the transaction.

use std::collections::HashMap;

use sqlx::PgConnection;
use time::Date;

use raccordo_core::domain::ComuneIstat;
use raccordo_core::ownership::Owner;
use raccordo_core::registry::Comune;

use crate::decide::{ComuneState, Facility, Rule, Standing};
use crate::occupancy::{OccupancyReport, ReceptionKind};

/// A facility's newest report, with its date.
#[derive(Debug, Clone)]
pub(crate) struct StoredFacility {
    pub facility: Facility,
    pub as_of: Date,
}

/// A facility with its comune's name and zona, as [`census_rows`] reads it.
pub(crate) type CensusRow = (String, String, String, String, String, i32, i32, bool, Date);

/// An `INTEGER` column's value: a figure beyond it is refused, never clamped.
fn column<T: TryInto<i32, Error = std::num::TryFromIntError>>(
    value: T,
) -> Result<i32, sqlx::Error> {
    value
        .try_into()
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// Who a facility belongs to, if it was ever reported.
pub(crate) async fn facility_owner(
    tx: &mut PgConnection,
    facility_id: &str,
) -> Result<Option<Owner>, sqlx::Error> {
    let row: Option<(String, Option<String>)> = sqlx::query_as(
        r#"
        SELECT comune_istat, publisher
        FROM reception_facilities
        WHERE facility_id = $1
        "#,
    )
    .bind(facility_id)
    .fetch_optional(tx)
    .await?;
    Ok(row.map(|(comune, publisher)| Owner { comune, publisher }))
}

/// Moves a facility to another comune (and publisher), for `raccordo ids move`; returns
/// its owner before, or None when no such facility exists.
pub async fn move_facility(
    tx: &mut PgConnection,
    facility_id: &str,
    to_comune: &str,
    to_publisher: Option<&str>,
) -> Result<Option<Owner>, sqlx::Error> {
    let before: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT comune_istat, publisher FROM reception_facilities WHERE facility_id = $1 FOR UPDATE",
    )
    .bind(facility_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((comune, publisher)) = before else {
        return Ok(None);
    };
    sqlx::query(
        r#"
        UPDATE reception_facilities
        SET comune_istat = $2, publisher = COALESCE($3, publisher), received_at = now()
        WHERE facility_id = $1
        "#,
    )
    .bind(facility_id)
    .bind(to_comune)
    .bind(to_publisher)
    .execute(tx)
    .await?;
    Ok(Some(Owner { comune, publisher }))
}

/// Locks a facility's row; returns its comune and the date of its newest report.
pub(crate) async fn lock_facility(
    tx: &mut PgConnection,
    facility_id: &str,
) -> Result<Option<(ComuneIstat, Date)>, sqlx::Error> {
    let row: Option<(String, Date)> = sqlx::query_as(
        r#"
        SELECT comune_istat, as_of
        FROM reception_facilities
        WHERE facility_id = $1
        FOR UPDATE
        "#,
    )
    .bind(facility_id)
    .fetch_optional(tx)
    .await?;
    row.map(|(i, as_of)| {
        ComuneIstat::parse(&i)
            .map(|i| (i, as_of))
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))
    })
    .transpose()
}

/// Locks the state rows of the zona's comuni, in ISTAT order, creating them first when
/// fewer than `members` exist. Returns each comune's announced standing and stored
/// coverage and quota.
pub(crate) async fn lock_zona(
    tx: &mut PgConnection,
    zona: &str,
    members: usize,
) -> Result<HashMap<String, ComuneState>, sqlx::Error> {
    // One decision per zona at a time, taken before any row of it is touched: the first
    // reports of a zona on a fresh database insert its state rows, and two such inserts
    // running at once can deadlock on the unique index even in the same order.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('raccordo:quota:' || $1, 0))")
        .bind(zona)
        .execute(&mut *tx)
        .await?;
    let locked = lock_states(tx, zona).await?;
    if locked.len() >= members {
        return Ok(locked);
    }
    sqlx::query(
        r#"
        INSERT INTO quota_state (comune_istat)
        SELECT istat
        FROM comuni
        WHERE zona = $1
        ORDER BY istat
        ON CONFLICT (comune_istat) DO NOTHING
        "#,
    )
    .bind(zona)
    .execute(&mut *tx)
    .await?;
    lock_states(tx, zona).await
}

async fn lock_states(
    tx: &mut PgConnection,
    zona: &str,
) -> Result<HashMap<String, ComuneState>, sqlx::Error> {
    let rows: Vec<(String, Option<String>, bool, i32, i32)> = sqlx::query_as(
        r#"
        SELECT s.comune_istat, s.rule, s.safeguard, s.coverage, s.quota
        FROM quota_state s
        JOIN comuni c ON c.istat = s.comune_istat
        WHERE c.zona = $1
        ORDER BY s.comune_istat
        FOR UPDATE OF s
        "#,
    )
    .bind(zona)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(istat, rule, safeguard, coverage, quota)| {
            let standing = Standing {
                rule: rule.as_deref().and_then(Rule::parse),
                safeguard,
            };
            let state = ComuneState {
                standing,
                coverage: i64::from(coverage),
                quota: i64::from(quota),
            };
            (istat, state)
        })
        .collect())
}

/// Records a facility's newest report.
pub(crate) async fn save_facility(
    tx: &mut PgConnection,
    r: &OccupancyReport,
    publisher: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"
        INSERT INTO reception_facilities (facility_id, comune_istat, reception_kind, capacity, presences, as_of, active, publisher)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (facility_id) DO UPDATE
        SET comune_istat = EXCLUDED.comune_istat,
            reception_kind = EXCLUDED.reception_kind,
            capacity = EXCLUDED.capacity,
            presences = EXCLUDED.presences,
            as_of = EXCLUDED.as_of,
            active = EXCLUDED.active,
            publisher = EXCLUDED.publisher,
            received_at = now()
        "#,
    )
    .bind(&r.facility_id)
    .bind(r.comune_istat.as_ref())
    .bind(r.reception_kind.as_str())
    .bind(column(r.capacity)?)
    .bind(column(r.presences)?)
    .bind(r.as_of)
    .bind(counts_active(r))
    .bind(publisher)
    .execute(tx)
    .await?;
    Ok(())
}

/// Stores a comune's state as decided.
pub(crate) async fn save_state(
    tx: &mut PgConnection,
    comune: &Comune,
    state: &ComuneState,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"
        UPDATE quota_state
        SET rule = $2,
            safeguard = $3,
            coverage = $4,
            quota = $5,
            updated_at = now()
        WHERE comune_istat = $1
        "#,
    )
    .bind(comune.istat.as_ref())
    .bind(state.standing.rule.map(Rule::as_str))
    .bind(state.standing.safeguard)
    .bind(column(state.coverage)?)
    .bind(column(state.quota)?)
    .execute(tx)
    .await?;
    Ok(())
}

type GroupRow = (String, String, bool, i64, i64, i64);

/// The facilities of one zona summed by comune, kind and `active`: at most four rows per
/// comune, whatever their number. Q2's coverage is a sum over facilities of their places
/// or presences, so each sum counts as one facility in [`crate::decide::ComuneFigures`].
pub(crate) async fn load_facility_sums(
    conn: &mut PgConnection,
    zona: &str,
) -> Result<Vec<FacilitySum>, sqlx::Error> {
    let rows: Vec<GroupRow> = sqlx::query_as(
        r#"
        SELECT f.comune_istat, f.reception_kind, f.active,
               sum(f.capacity)::BIGINT, sum(f.presences)::BIGINT, count(*)
        FROM reception_facilities f
        JOIN comuni c ON c.istat = f.comune_istat
        WHERE c.zona = $1
        GROUP BY f.comune_istat, f.reception_kind, f.active
        "#,
    )
    .bind(zona)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(comune, kind, active, capacity, presences, count)| {
            let (Ok(comune_istat), Some(kind)) =
                (ComuneIstat::parse(&comune), ReceptionKind::parse(&kind))
            else {
                skipped_facility_row();
                return None;
            };
            let sum = Facility {
                comune_istat,
                kind,
                capacity,
                presences,
                active,
            };
            Some(FacilitySum { sum, count })
        })
        .collect())
}

/// The facilities of one comune, kind and `active`, summed; `count` of them.
#[derive(Debug, Clone)]
pub(crate) struct FacilitySum {
    pub sum: Facility,
    pub count: i64,
}

/// Locks the rows of `ids` that exist, in id order; returns each one's newest report.
pub(crate) async fn lock_facilities(
    tx: &mut PgConnection,
    ids: &[&str],
) -> Result<LockedFacilities, sqlx::Error> {
    let rows: Vec<OwnedFacilityRow> =
        sqlx::query_as(
            r#"
            SELECT facility_id, comune_istat, reception_kind, capacity, presences, active, as_of, publisher
            FROM reception_facilities
            WHERE facility_id = ANY($1)
            ORDER BY facility_id
            FOR UPDATE
            "#,
        )
        .bind(ids)
        .fetch_all(tx)
        .await?;
    let mut locked = LockedFacilities::default();
    for (id, comune, kind, capacity, presences, active, as_of, publisher) in rows {
        let owner = Owner {
            comune: comune.clone(),
            publisher,
        };
        let row = (id.clone(), comune, kind, capacity, presences, active, as_of);
        if let Some(stored) = stored_facility(row) {
            locked.stored.insert(id.clone(), stored);
            locked.owners.insert(id, owner);
        }
    }
    Ok(locked)
}

/// Facilities locked for a batch: their newest reports and their owners, by id.
#[derive(Debug, Default)]
pub(crate) struct LockedFacilities {
    pub stored: HashMap<String, StoredFacility>,
    pub owners: HashMap<String, Owner>,
}

/// Records the newest report of several facilities, one per facility, in one statement.
pub(crate) async fn save_facilities(
    tx: &mut PgConnection,
    reports: &[&OccupancyReport],
) -> Result<(), sqlx::Error> {
    let ids: Vec<&str> = reports.iter().map(|r| r.facility_id.as_str()).collect();
    let comuni: Vec<&str> = reports.iter().map(|r| r.comune_istat.as_ref()).collect();
    let kinds: Vec<&str> = reports.iter().map(|r| r.reception_kind.as_str()).collect();
    let capacities = reports
        .iter()
        .map(|r| column(r.capacity))
        .collect::<Result<Vec<i32>, _>>()?;
    let presences = reports
        .iter()
        .map(|r| column(r.presences))
        .collect::<Result<Vec<i32>, _>>()?;
    let as_of: Vec<Date> = reports.iter().map(|r| r.as_of).collect();
    let active: Vec<bool> = reports.iter().map(|r| counts_active(r)).collect();
    let publishers: Vec<&str> = reports.iter().map(|r| r.publisher.as_str()).collect();
    // A named owner stays; an anonymous or unknown one is claimed (CONTRACT 1.2 §3).
    sqlx::query(
        r#"
        INSERT INTO reception_facilities (facility_id, comune_istat, reception_kind, capacity, presences, as_of, active, publisher)
        SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::INT[], $5::INT[], $6::DATE[], $7::BOOL[], $8::TEXT[])
        ON CONFLICT (facility_id) DO UPDATE
        SET publisher = CASE
                WHEN reception_facilities.publisher IS NULL OR reception_facilities.publisher = 'anonymous'
                THEN EXCLUDED.publisher
                ELSE reception_facilities.publisher
            END,
            comune_istat = EXCLUDED.comune_istat,
            reception_kind = EXCLUDED.reception_kind,
            capacity = EXCLUDED.capacity,
            presences = EXCLUDED.presences,
            as_of = EXCLUDED.as_of,
            active = EXCLUDED.active,
            received_at = now()
        "#,
    )
    .bind(&ids)
    .bind(&comuni)
    .bind(&kinds)
    .bind(&capacities)
    .bind(&presences)
    .bind(&as_of)
    .bind(&active)
    .bind(&publishers)
    .execute(tx)
    .await?;
    Ok(())
}

/// Stores several comuni's states as decided, in one statement.
pub(crate) async fn save_states(
    tx: &mut PgConnection,
    states: &[(&str, ComuneState)],
) -> Result<(), sqlx::Error> {
    let istat: Vec<&str> = states.iter().map(|(i, _)| *i).collect();
    let rules: Vec<Option<&str>> = states
        .iter()
        .map(|(_, s)| s.standing.rule.map(Rule::as_str))
        .collect();
    let safeguard: Vec<bool> = states.iter().map(|(_, s)| s.standing.safeguard).collect();
    let coverage = states
        .iter()
        .map(|(_, s)| column(s.coverage))
        .collect::<Result<Vec<i32>, _>>()?;
    let quota = states
        .iter()
        .map(|(_, s)| column(s.quota))
        .collect::<Result<Vec<i32>, _>>()?;
    sqlx::query(
        r#"
        UPDATE quota_state q
        SET rule = s.rule,
            safeguard = s.safeguard,
            coverage = s.coverage,
            quota = s.quota,
            updated_at = now()
        FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BOOL[], $4::INT[], $5::INT[])
            AS s (comune_istat, rule, safeguard, coverage, quota)
        WHERE q.comune_istat = s.comune_istat
        "#,
    )
    .bind(&istat)
    .bind(&rules)
    .bind(&safeguard)
    .bind(&coverage)
    .bind(&quota)
    .execute(tx)
    .await?;
    Ok(())
}

/// `active` speaks of SPRAR projects; a CAS is counted by its presences whatever it says.
pub(crate) fn counts_active(r: &OccupancyReport) -> bool {
    r.active || r.reception_kind == ReceptionKind::Cas
}

/// Written by hand or by an older version: counted and logged, never silent.
fn skipped_facility_row() {
    metrics::counter!("raccordo_rows_skipped_total", "table" => "reception_facilities")
        .increment(1);
    tracing::warn!(
        table = "reception_facilities",
        "A facility row with an invalid comune or kind was skipped."
    );
}

type FacilityRow = (String, String, String, i32, i32, bool, Date);

/// A [`FacilityRow`] and the facility's publisher.
type OwnedFacilityRow = (String, String, String, i32, i32, bool, Date, Option<String>);

/// The newest report of every facility of one zona, or of all.
pub(crate) async fn load_facilities(
    conn: &mut PgConnection,
    zona: Option<&str>,
) -> Result<Vec<StoredFacility>, sqlx::Error> {
    let rows: Vec<FacilityRow> = sqlx::query_as(
        r#"
        SELECT f.facility_id, f.comune_istat, f.reception_kind, f.capacity, f.presences, f.active, f.as_of
        FROM reception_facilities f
        JOIN comuni c ON c.istat = f.comune_istat
        WHERE $1::TEXT IS NULL OR c.zona = $1
        ORDER BY f.comune_istat, f.facility_id
        "#,
    )
    .bind(zona)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().filter_map(stored_facility).collect())
}

/// A facility row as stored; `None` (counted and logged) for one that does not parse.
fn stored_facility(row: FacilityRow) -> Option<StoredFacility> {
    let (_id, comune, kind, capacity, presences, active, as_of) = row;
    let (Ok(comune_istat), Some(kind)) = (ComuneIstat::parse(&comune), ReceptionKind::parse(&kind))
    else {
        skipped_facility_row();
        return None;
    };
    Some(StoredFacility {
        facility: Facility {
            comune_istat,
            kind,
            capacity: i64::from(capacity),
            presences: i64::from(presences),
            active,
        },
        as_of,
    })
}

/// Every facility's newest report with its comune's name and zona, optionally of one
/// comune or one zona, by zona, comune name and facility.
pub(crate) async fn census_rows(
    conn: &mut PgConnection,
    comune: Option<&ComuneIstat>,
    zona: Option<&str>,
) -> Result<Vec<CensusRow>, sqlx::Error> {
    sqlx::query_as(
        r#"
        SELECT f.facility_id, f.comune_istat, c.nome, c.zona, f.reception_kind, f.capacity,
               f.presences, f.active, f.as_of
        FROM reception_facilities f
        JOIN comuni c ON c.istat = f.comune_istat
        WHERE ($1::TEXT IS NULL OR f.comune_istat = $1)
          AND ($2::TEXT IS NULL OR c.zona = $2)
        ORDER BY c.zona, c.nome, f.facility_id
        "#,
    )
    .bind(comune.map(|c| c.as_ref().to_owned()))
    .bind(zona)
    .fetch_all(conn)
    .await
}
