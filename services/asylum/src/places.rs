//! Places available (rule A5): an occupancy report of a SPRAR facility that shows more free
//! places than its previous report, while cases wait, tells the `sportello_asilo` referents
//! the facility, its free places and the first three cases of the waiting list.
//!
//! The quota worker calls [`place_available`] in the transaction that records the report
//! (after it decided the report supersedes the stored one, Q1), so the alert is written
//! exactly when the report is — redelivery and replay are the quota worker's inbox's
//! business. The dependency goes one way: quota calls asylum, never the reverse.
//!
//! Free places are `capacity − presences` (never below 0) of an *active* SPRAR project;
//! a CAS, or an inactive project, has none to offer the waiting list. A facility's first
//! report counts as freeing its places (the hub had none of them before).

use sqlx::PgConnection;
use time::Date;

use raccordo_core::db::NewNotification;
use raccordo_core::domain::{ReceptionKind, Role};
use raccordo_core::payload::{Payload, PlaceAvailablePayload};
use raccordo_core::registry::{Comune, list_referents};

use crate::priorities::recipients;
use crate::waiting::load_waiting;

/// How many waiting cases an alert lists (A5).
pub const LISTED: usize = 3;

/// What A5 reads of an occupancy report (or of the report stored before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occupancy {
    pub kind: ReceptionKind,
    pub active: bool,
    pub capacity: i64,
    pub presences: i64,
}

impl Occupancy {
    /// Free places the waiting list can use: those of an active SPRAR project.
    pub fn free_sprar_places(&self) -> i64 {
        if self.kind == ReceptionKind::Sprar && self.active {
            (self.capacity - self.presences).max(0)
        } else {
            0
        }
    }
}

/// The newly freed places a report announces: its free places when more than the
/// previous report's (none before: 0), otherwise `None`.
pub fn newly_freed(previous: Option<&Occupancy>, report: &Occupancy) -> Option<i64> {
    let before = previous.map_or(0, Occupancy::free_sprar_places);
    let now = report.free_sprar_places();
    (now > before).then_some(now)
}

/// An occupancy report as A5 reads it.
#[derive(Debug, Clone, Copy)]
pub struct FacilityReport<'a> {
    pub facility_id: &'a str,
    pub comune: &'a Comune,
    pub as_of: Date,
    pub occupancy: Occupancy,
}

/// The report stored for `facility_id` (read in the quota worker's transaction, under its
/// row lock, before the new report replaces it).
pub async fn stored_occupancy(
    conn: &mut PgConnection,
    facility_id: &str,
) -> Result<Option<Occupancy>, sqlx::Error> {
    let row: Option<(String, bool, i32, i32)> = sqlx::query_as(
        r#"
        SELECT reception_kind, active, capacity, presences
        FROM reception_facilities
        WHERE facility_id = $1
        "#,
    )
    .bind(facility_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.and_then(|(kind, active, capacity, presences)| {
        Some(Occupancy {
            kind: ReceptionKind::parse(&kind)?,
            active,
            capacity: i64::from(capacity),
            presences: i64::from(presences),
        })
    }))
}

/// A5: the `asylum.place_available` a report calls for — when it frees SPRAR places
/// ([`newly_freed`]) while cases wait — addressed to every `sportello_asilo` (the SPRAR
/// list is one for the province, as the weekly list). `None` otherwise. `today` counts the
/// weeks waited. The caller writes it in its own transaction.
pub async fn place_available(
    conn: &mut PgConnection,
    report: &FacilityReport<'_>,
    previous: Option<&Occupancy>,
    today: Date,
) -> Result<Option<NewNotification>, sqlx::Error> {
    let Some(free) = newly_freed(previous, &report.occupancy) else {
        return Ok(None);
    };
    let waiting = load_waiting(&mut *conn).await?;
    if waiting.is_empty() {
        return Ok(None);
    }
    let desks = recipients(&list_referents(&mut *conn).await?, |r| {
        r.role == Role::SportelloAsilo
    });
    tracing::info!(
        facility_id = %report.facility_id,
        free_places = free,
        waiting = waiting.len(),
        "SPRAR places freed while cases wait."
    );
    let payload = PlaceAvailablePayload {
        facility_id: report.facility_id.to_owned(),
        comune_istat: report.comune.istat.clone(),
        comune_nome: report.comune.nome.clone(),
        free_places: free,
        previous_free_places: previous.map_or(0, Occupancy::free_sprar_places),
        first_waiting: waiting
            .iter()
            .take(LISTED)
            .map(|c| c.to_wire(today))
            .collect(),
        zona: report.comune.zona.clone(),
        capacity: report.occupancy.capacity,
        presences: report.occupancy.presences,
        as_of: report.as_of.to_string(),
        waiting: i64::try_from(waiting.len()).unwrap_or(i64::MAX),
    };
    Ok(Some(NewNotification {
        comune_istat: Some(report.comune.istat.clone()),
        payload: Payload::AsylumPlaceAvailable(payload),
        urgent: false,
        recipients: desks,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sprar(capacity: i64, presences: i64) -> Occupancy {
        Occupancy {
            kind: ReceptionKind::Sprar,
            active: true,
            capacity,
            presences,
        }
    }

    #[test]
    fn more_free_places_than_before_are_announced_with_the_new_count() {
        assert_eq!(newly_freed(Some(&sprar(10, 10)), &sprar(10, 8)), Some(2));
        assert_eq!(newly_freed(Some(&sprar(10, 9)), &sprar(12, 9)), Some(3));
    }

    #[test]
    fn the_same_or_fewer_free_places_announce_nothing() {
        assert_eq!(newly_freed(Some(&sprar(10, 8)), &sprar(10, 8)), None);
        assert_eq!(newly_freed(Some(&sprar(10, 7)), &sprar(10, 8)), None);
        assert_eq!(newly_freed(Some(&sprar(10, 12)), &sprar(10, 10)), None);
    }

    #[test]
    fn over_capacity_counts_as_no_free_place() {
        assert_eq!(newly_freed(Some(&sprar(10, 14)), &sprar(10, 9)), Some(1));
    }

    #[test]
    fn a_cas_or_an_inactive_project_has_no_place_for_the_waiting_list() {
        let cas = Occupancy {
            kind: ReceptionKind::Cas,
            ..sprar(10, 2)
        };
        let inactive = Occupancy {
            active: false,
            ..sprar(10, 2)
        };
        assert_eq!(newly_freed(None, &cas), None);
        assert_eq!(newly_freed(None, &inactive), None);
        assert_eq!(newly_freed(Some(&inactive), &sprar(10, 2)), Some(8));
    }

    #[test]
    fn a_first_report_with_free_places_frees_them() {
        assert_eq!(newly_freed(None, &sprar(6, 4)), Some(2));
        assert_eq!(newly_freed(None, &sprar(6, 6)), None);
    }
}
