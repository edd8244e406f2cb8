//! A case's 12-hour clock (CONTRACT A2) in `asylum_cases`: `due_at` is set by the first
//! report, and the intervention columns are kept from `asylum_interventions`, whichever of
//! the two events arrived first.

use sqlx::PgConnection;

/// Sets the case's `taken_in_charge_at`, `first_intervention_at` and `closed_at` to the
/// earliest of each action recorded for it: an intervention published before the report
/// (a phone call is faster than a desk's system) still stops the clock. It stops the clock
/// when dated within it; a later one is recorded and counts in the annual report, but the
/// notice of its lateness is due all the same.
pub async fn refresh(tx: &mut PgConnection, case_key: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"
        UPDATE asylum_cases c
        SET taken_in_charge_at = i.taken,
            first_intervention_at = i.first,
            closed_at = i.closed,
            clock_stopped_at = CASE
                WHEN c.clock_stopped_at IS NOT NULL THEN c.clock_stopped_at
                WHEN c.overdue_at IS NOT NULL THEN NULL
                WHEN LEAST(i.taken, i.first) <= c.due_at THEN LEAST(i.taken, i.first)
            END
        FROM (
            SELECT min(at) FILTER (WHERE action = 'presa_in_carico') AS taken,
                   min(at) FILTER (WHERE action = 'primo_intervento') AS first,
                   min(at) FILTER (WHERE action = 'chiuso') AS closed
            FROM asylum_interventions
            WHERE case_key = $1
        ) i
        WHERE c.case_key = $1
        "#,
    )
    .bind(case_key)
    .execute(tx)
    .await?;
    Ok(())
}
