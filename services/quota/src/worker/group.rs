//! Reports of one zona decided together (they share their batch key): the zona and the
//! reported facilities are locked once, the zona's figures are kept in memory from report
//! to report, and facilities, states and notifications are written in one statement each.
//! Each report is still decided against the state the previous one left, in order, so it
//! announces exactly what it would have announced alone (Q1, Q5, Q6).

use std::collections::{BTreeMap, HashMap};

use sqlx::PgConnection;

use raccordo_core::amqp::HandleError;
use raccordo_core::db::about_comune;
use raccordo_core::db::{NewNotification, insert_notifications};
use raccordo_core::ownership::{self, IdKind, Owner};
use raccordo_core::payload::Payload;
use raccordo_core::registry::{Comune, Snapshot};

use raccordo_asylum::places::Occupancy;

use super::{QuotaError, QuotaWorker, over_capacity_payload, place_alert};
use crate::coverage::{StoredFacility, figures_by_zona};
use crate::decide::{
    ComuneFigures, ComuneState, Facility, ZonaTotals, decide, over_capacity, supersedes,
};
use crate::occupancy::OccupancyReport;
use crate::store::{self, FacilitySum, counts_active};

/// A zona's facilities summed by comune, kind and `active`, kept up to date in memory.
struct ZonaSums {
    sums: HashMap<(String, &'static str, bool), FacilitySum>,
}

impl ZonaSums {
    fn new(loaded: Vec<FacilitySum>) -> Self {
        let sums = loaded.into_iter().map(|s| (Self::key(&s.sum), s)).collect();
        Self { sums }
    }

    fn key(f: &Facility) -> (String, &'static str, bool) {
        (
            f.comune_istat.as_ref().to_owned(),
            f.kind.as_str(),
            f.active,
        )
    }

    /// Counts `f` in (`sign` 1) or out (`sign` -1).
    fn add(&mut self, f: &Facility, sign: i64) {
        let entry = self
            .sums
            .entry(Self::key(f))
            .or_insert_with(|| FacilitySum {
                sum: Facility {
                    capacity: 0,
                    presences: 0,
                    ..f.clone()
                },
                count: 0,
            });
        entry.sum.capacity += sign * f.capacity;
        entry.sum.presences += sign * f.presences;
        entry.count += sign;
    }

    /// Each group that still holds a facility, as one facility (Q2 is a sum).
    fn facilities(&self) -> Vec<Facility> {
        self.sums
            .values()
            .filter(|s| s.count > 0)
            .map(|s| s.sum.clone())
            .collect()
    }
}

/// A report's facility as it will be stored.
fn facility_of(report: &OccupancyReport) -> Facility {
    Facility {
        comune_istat: report.comune_istat.clone(),
        kind: report.reception_kind,
        capacity: i64::from(report.capacity),
        presences: i64::from(report.presences),
        active: counts_active(report),
    }
}

/// A stored facility as the asylum desks' rule A5 reads it.
fn occupancy_of_stored(f: &Facility) -> Occupancy {
    Occupancy {
        kind: f.kind,
        active: f.active,
        capacity: f.capacity,
        presences: f.presences,
    }
}

/// What the reports of a group decided, written at the end.
#[derive(Default)]
struct Decided<'a> {
    states: HashMap<String, ComuneState>,
    changed: BTreeMap<String, ComuneState>,
    latest: BTreeMap<&'a str, &'a OccupancyReport>,
    notifications: Vec<NewNotification>,
}

/// Every report keeps to its facility's owner (CONTRACT 1.2 §3); a new facility belongs to
/// its first report, within the batch too. An error fails the group: one by one, the
/// report that takes the id is dead-lettered.
fn check_owners(
    reports: &[OccupancyReport],
    mut owners: HashMap<String, Owner>,
) -> Result<(), HandleError> {
    for report in reports {
        let owner = owners
            .entry(report.facility_id.clone())
            .or_insert_with(|| Owner {
                comune: report.comune_istat.as_ref().to_owned(),
                publisher: Some(report.publisher.clone()),
            });
        ownership::check(
            IdKind::Facility,
            Some(&report.facility_id),
            owner,
            report.comune_istat.as_ref(),
            &report.publisher,
        )?;
    }
    Ok(())
}

impl QuotaWorker {
    /// Applies `reports`, all of one zona, in order. A report whose comune or facility is
    /// in another zona makes the whole group fail, to be applied one report at a time.
    pub(super) async fn apply_reports(
        &self,
        tx: &mut PgConnection,
        registry: &Snapshot,
        reports: &[OccupancyReport],
    ) -> Result<(), HandleError> {
        let Some(first) = reports.first() else {
            return Ok(());
        };
        let zona = registry.require_comune(&first.comune_istat)?.zona.clone();
        let mut comuni = Vec::with_capacity(reports.len());
        for report in reports {
            let comune = registry.require_comune(&report.comune_istat)?;
            if comune.zona != zona {
                return Err(QuotaError::AcrossZone.into());
            }
            comuni.push(comune);
        }
        let members = registry.comuni_by_istat(Some(&zona));
        let mut decided = Decided {
            states: store::lock_zona(tx, &zona, members.len()).await?,
            ..Decided::default()
        };
        let ids: Vec<&str> = reports.iter().map(|r| r.facility_id.as_str()).collect();
        let store::LockedFacilities { mut stored, owners } =
            store::lock_facilities(tx, &ids).await?;
        check_owners(reports, owners)?;
        let elsewhere = |s: &StoredFacility| {
            registry
                .comune(&s.facility.comune_istat)
                .is_none_or(|c| c.zona != zona)
        };
        if stored.values().any(elsewhere) {
            return Err(QuotaError::AcrossZone.into());
        }
        let mut sums = ZonaSums::new(store::load_facility_sums(tx, &zona).await?);
        for (report, comune) in reports.iter().zip(comuni) {
            let previous = stored.get(&report.facility_id);
            // Q1: an older report arriving late changes nothing and alerts nothing.
            if !supersedes(previous.map(|s| s.as_of), report.as_of) {
                tracing::debug!(facility_id = %report.facility_id, "Older occupancy report ignored.");
                continue;
            }
            if let Some(previous) = previous {
                sums.add(&previous.facility, -1);
            }
            let before = previous.map(|p| occupancy_of_stored(&p.facility));
            if let Some(alert) = place_alert(tx, comune, report, before.as_ref()).await? {
                decided.notifications.push(alert);
            }
            let facility = facility_of(report);
            sums.add(&facility, 1);
            let as_of = report.as_of;
            stored.insert(
                report.facility_id.clone(),
                StoredFacility { facility, as_of },
            );
            decided.latest.insert(&report.facility_id, report);
            // Q6: once per report that shows it.
            if over_capacity(report.capacity, report.presences) {
                let payload = Payload::ReceptionOverCapacity(over_capacity_payload(report, comune));
                let notice = about_comune(registry, comune, payload, false);
                decided.notifications.push(notice);
            }
            self.decide_in_memory(registry, &zona, &members, &sums, report, &mut decided);
        }
        let latest: Vec<&OccupancyReport> = decided.latest.values().copied().collect();
        store::save_facilities(tx, &latest).await?;
        let changed: Vec<(&str, ComuneState)> = decided
            .changed
            .iter()
            .map(|(istat, state)| (istat.as_str(), *state))
            .collect();
        store::save_states(tx, &changed).await?;
        insert_notifications(tx, &decided.notifications).await?;
        tracing::debug!(reports = reports.len(), zona = %zona, "Occupancy reports handled together.");
        Ok(())
    }

    /// Decides every comune of the zona after `report`, against the states the reports
    /// before it left.
    fn decide_in_memory(
        &self,
        registry: &Snapshot,
        zona: &str,
        members: &[Comune],
        sums: &ZonaSums,
        report: &OccupancyReport,
        decided: &mut Decided<'_>,
    ) {
        let facilities = sums.facilities();
        let by_zona = figures_by_zona(members, &facilities, self.per_thousand);
        let Some(list) = by_zona.get(zona) else {
            return;
        };
        let figures: Vec<ComuneFigures> = list.iter().map(|(_, f)| f.clone()).collect();
        let totals = ZonaTotals::of(&figures);
        for (comune, f) in list {
            let istat = comune.istat.as_ref();
            let state = decided.states.get(istat).copied().unwrap_or_default();
            let (next, told) = decide(&state, f, totals, &self.ratios);
            if next != state {
                decided.states.insert(istat.to_owned(), next);
                decided.changed.insert(istat.to_owned(), next);
            }
            for a in told {
                let payload = self.announcement(a, comune, f, totals, report);
                tracing::info!(
                    comune = %comune.istat,
                    kind = %payload.kind(),
                    coverage = f.coverage,
                    quota = f.quota,
                    "Quota state changed."
                );
                decided
                    .notifications
                    .push(about_comune(registry, comune, payload, false));
            }
        }
    }
}
