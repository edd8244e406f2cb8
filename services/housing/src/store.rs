//! The `housing_units` table: one row per unit, locked while an event about it is
//! decided. Functions take `&mut PgConnection` so the caller owns the transaction.

use serde::Deserialize;
use serde_json::Value;
use sqlx::PgConnection;

use crate::decide::UnitState;
use crate::unit::{Action, BuildingType, HousingUnit, IdentifiedBy, ReceptionKind};

/// What the unit's row keeps of its last offer (the `details` column, a serialized
/// [`HousingUnit`], `{}` before any offer): what a withdrawal names the unit by.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct LastOffer {
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub places: Option<u16>,
    #[serde(default)]
    pub reception_kind: Option<ReceptionKind>,
    #[serde(default)]
    pub building_type: Option<BuildingType>,
}

/// Creates the unit's row if missing, then locks it: two offers of one unit handled by two
/// workers at once are decided one after the other. Returns whether the stazione appaltante
/// holds the unit, and what it keeps of the last offer.
pub(crate) async fn lock_unit(
    tx: &mut PgConnection,
    unit: &HousingUnit,
) -> Result<(UnitState, LastOffer), sqlx::Error> {
    // One statement: the upsert locks the row, new or not, and returns what it holds.
    let (forwarded, details): (bool, Value) = sqlx::query_as(
        r#"
        INSERT INTO housing_units (unit_id, comune_istat, identified_by, last_action, forwarded, details)
        VALUES ($1, $2, 'comune', 'new', FALSE, '{}'::jsonb)
        ON CONFLICT (unit_id) DO UPDATE SET unit_id = EXCLUDED.unit_id
        RETURNING forwarded, details
        "#,
    )
    .bind(&unit.unit_id)
    .bind(unit.comune_istat.as_ref())
    .fetch_one(&mut *tx)
    .await?;
    let last = LastOffer::deserialize(&details).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok((UnitState { forwarded }, last))
}

/// Records the event on the unit's row with the state the decision left it in.
pub(crate) async fn save_unit(
    tx: &mut PgConnection,
    unit: &HousingUnit,
    next: &UnitState,
) -> Result<(), sqlx::Error> {
    // A withdrawal keeps the last offer's details, so later messages can name the unit.
    let details = match unit.action {
        Action::Offered => {
            Some(serde_json::to_value(unit).map_err(|e| sqlx::Error::Encode(Box::new(e)))?)
        }
        Action::Withdrawn => None,
    };
    sqlx::query(
        r#"
        UPDATE housing_units
        SET comune_istat = $2,
            identified_by = $3,
            last_action = $4,
            forwarded = $5,
            details = COALESCE($6, details),
            updated_at = now()
        WHERE unit_id = $1
        "#,
    )
    .bind(&unit.unit_id)
    .bind(unit.comune_istat.as_ref())
    .bind(match unit.identified_by {
        IdentifiedBy::Comune => "comune",
        IdentifiedBy::Prefettura => "prefettura",
    })
    .bind(match unit.action {
        Action::Offered => "offered",
        Action::Withdrawn => "withdrawn",
    })
    .bind(next.forwarded)
    .bind(details)
    .execute(tx)
    .await?;
    Ok(())
}
