//! The `housing_units` table: one row per unit, locked while an event about it is
//! decided. Functions take `&mut PgConnection` so the caller owns the transaction.

use serde::Deserialize;
use serde_json::Value;
use sqlx::PgConnection;

use raccordo_core::ownership::Owner;

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
    publisher: &str,
) -> Result<(UnitState, LastOffer, Owner), sqlx::Error> {
    // One statement: the upsert locks the row, new or not, and returns what it holds.
    let (forwarded, details, comune, owner): (bool, Value, String, Option<String>) =
        sqlx::query_as(
            r#"
            INSERT INTO housing_units (unit_id, comune_istat, identified_by, last_action, forwarded, details, publisher)
            VALUES ($1, $2, 'comune', 'new', FALSE, '{}'::jsonb, $3)
            ON CONFLICT (unit_id) DO UPDATE SET unit_id = EXCLUDED.unit_id
            RETURNING forwarded, details, comune_istat, publisher
            "#,
        )
        .bind(&unit.unit_id)
        .bind(unit.comune_istat.as_ref())
        .bind(publisher)
        .fetch_one(&mut *tx)
        .await?;
    let last = LastOffer::deserialize(&details).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let owner = Owner {
        comune,
        publisher: owner,
    };
    Ok((UnitState { forwarded }, last, owner))
}

/// Moves a unit to another comune (and publisher), for `raccordo ids move`; returns its
/// owner before, or None when no such unit exists.
pub async fn move_unit(
    tx: &mut PgConnection,
    unit_id: &str,
    to_comune: &str,
    to_publisher: Option<&str>,
) -> Result<Option<Owner>, sqlx::Error> {
    let before: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT comune_istat, publisher FROM housing_units WHERE unit_id = $1 FOR UPDATE",
    )
    .bind(unit_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((comune, publisher)) = before else {
        return Ok(None);
    };
    sqlx::query(
        r#"
        UPDATE housing_units
        SET comune_istat = $2, publisher = COALESCE($3, publisher), updated_at = now()
        WHERE unit_id = $1
        "#,
    )
    .bind(unit_id)
    .bind(to_comune)
    .bind(to_publisher)
    .execute(tx)
    .await?;
    Ok(Some(Owner { comune, publisher }))
}

/// Records the event on the unit's row with the state the decision left it in.
pub(crate) async fn save_unit(
    tx: &mut PgConnection,
    unit: &HousingUnit,
    next: &UnitState,
    publisher: &str,
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
            publisher = $7,
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
    .bind(publisher)
    .execute(tx)
    .await?;
    Ok(())
}
