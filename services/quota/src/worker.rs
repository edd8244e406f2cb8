//! The quota worker in the inbound transaction: load (lock the zone), decide each comune,
//! store, notify. Each report is decided under row locks on the
//! state of every comune of its zona (the zona rule of Q4 ties them together): two reports
//! of one zona, on any replica, are decided one after the other, each against the state the
//! previous one committed — so a change of state is announced exactly once (Q5).
//!
//! Lock order, the same everywhere: zone by name, then comuni by ISTAT code, then the
//! facility. A deadlock or serialization failure is transient and the delivery retried.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::PgConnection;

use raccordo_asylum::places::{FacilityReport, Occupancy, place_available};
use raccordo_core::amqp::HandleError;
use raccordo_core::clock::{now, rome_date};
use raccordo_core::db::notify_comune;
use raccordo_core::db::{NewNotification, insert_notification};
use raccordo_core::envelope::{Envelope, EventType};
use raccordo_core::inbound::EventWorker;
use raccordo_core::ownership::{self, IdKind};
use raccordo_core::payload::{
    OverCapacityPayload, Payload, SafeguardPayload, ThresholdPayload, ThresholdState,
};
use raccordo_core::registry::{Comune, Snapshot};
use raccordo_core::settings::QuotaSettings;

use crate::coverage::figures_by_zona;
use crate::decide::{
    Announcement, ComuneFigures, ComuneState, Ratios, ZonaTotals, decide, over_capacity,
    percentage, supersedes,
};
use crate::occupancy::OccupancyReport;
use crate::store;

mod group;

/// The worker of `reception.occupancy.v1`.
pub struct QuotaWorker {
    per_thousand: f64,
    ratios: Ratios,
    /// Each comune's zona (ISTAT code → zona), as the registry said at start: the lock key
    /// of a batch. A comune imported later is decided in a transaction of its own; a comune
    /// moved to another zona since only risks a deadlock, which is detected and retried.
    zona_of: HashMap<String, String>,
}

impl QuotaWorker {
    /// A worker with the configured quota rules.
    pub fn new(settings: &QuotaSettings) -> Self {
        Self {
            per_thousand: settings.per_thousand,
            ratios: Ratios::from(settings),
            zona_of: HashMap::new(),
        }
    }

    /// The same, deciding reports in batches ordered by their comune's zona.
    pub fn with_zone(mut self, comuni: &[Comune]) -> Self {
        self.zona_of = comuni
            .iter()
            .map(|c| (c.istat.as_ref().to_owned(), c.zona.clone()))
            .collect();
        self
    }
}

#[async_trait]
impl EventWorker for QuotaWorker {
    fn accepts(&self) -> &'static [EventType] {
        &[EventType::ReceptionOccupancy]
    }

    /// A report locks its zona (an advisory lock, then every comune of it in ISTAT order):
    /// batches apply reports zona by zona, so two batches never wait on each other in a
    /// circle.
    fn batch_key(&self, event: &Envelope) -> Option<String> {
        let comune = event.data.get("comune_istat")?.as_str()?;
        self.zona_of.get(comune).cloned()
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        registry: &Snapshot,
        event: &Envelope,
    ) -> Result<(), HandleError> {
        let report = report_of(event)?;
        self.apply_report(tx, registry, &report).await
    }

    /// Reports of one zona, decided together ([`group`]).
    async fn apply_group(
        &self,
        tx: &mut PgConnection,
        registry: &Snapshot,
        events: &[&Envelope],
    ) -> Result<(), HandleError> {
        let reports = events
            .iter()
            .map(|e| report_of(e))
            .collect::<Result<Vec<_>, _>>()?;
        self.apply_reports(tx, registry, &reports).await
    }
}

/// The report an event carries, with its validated publisher.
fn report_of(event: &Envelope) -> Result<OccupancyReport, HandleError> {
    let mut report: OccupancyReport = event.data_as()?;
    report.publisher.clone_from(&event.publisher);
    Ok(report)
}

/// Why the quota worker could not apply a report.
#[derive(Debug, thiserror::Error)]
enum QuotaError {
    /// Another report moved the facility between the two reads: retried.
    #[error("the facility was moved by a concurrent report; retrying")]
    FacilityMoved,
    /// A report of a group names a comune or a facility of another zona than the group's.
    #[error("a report of the batch concerns another zona; applied one by one")]
    AcrossZone,
}

impl From<QuotaError> for HandleError {
    fn from(error: QuotaError) -> Self {
        HandleError::Unavailable(error.into())
    }
}

impl QuotaWorker {
    async fn apply_report(
        &self,
        tx: &mut PgConnection,
        registry: &Snapshot,
        report: &OccupancyReport,
    ) -> Result<(), HandleError> {
        let comune = registry.require_comune(&report.comune_istat)?;

        // A facility stays in the comune (and with the publisher) that first reported it.
        let previous = store::facility_owner(tx, &report.facility_id).await?;
        if let Some(owner) = &previous {
            ownership::check(
                IdKind::Facility,
                Some(&report.facility_id),
                owner,
                report.comune_istat.as_ref(),
                &report.publisher,
            )?;
        }
        let zona = comune.zona.clone();
        let members = registry.comuni_by_istat(Some(&zona)).len();
        let before = store::lock_zona(tx, &zona, members).await?;

        let stored = store::lock_facility(tx, &report.facility_id).await?;
        if stored.as_ref().map(|s| s.0.as_ref()) != previous.as_ref().map(|o| o.comune.as_str()) {
            return Err(QuotaError::FacilityMoved.into());
        }
        // Q1: an older report arriving late changes nothing and alerts nothing.
        if !supersedes(stored.map(|s| s.1), report.as_of) {
            tracing::debug!(facility_id = %report.facility_id, "Older occupancy report ignored.");
            return Ok(());
        }
        let publisher = previous.as_ref().map_or(report.publisher.as_str(), |o| {
            o.publisher_after(&report.publisher)
        });
        let previous_occupancy = if occupancy_of(report).free_sprar_places() > 0 {
            raccordo_asylum::places::stored_occupancy(tx, &report.facility_id).await?
        } else {
            None
        };
        store::save_facility(tx, report, publisher).await?;
        if let Some(alert) = place_alert(tx, comune, report, previous_occupancy.as_ref()).await? {
            insert_notification(tx, &alert).await?;
        }

        // Q6: once per report that shows it.
        if over_capacity(report.capacity, report.presences) {
            let payload = Payload::ReceptionOverCapacity(over_capacity_payload(report, comune));
            notify_comune(tx, registry, comune, payload, false).await?;
        }

        self.decide_zona(tx, registry, &zona, &before, report)
            .await?;
        tracing::debug!(facility_id = %report.facility_id, "Occupancy report handled.");
        Ok(())
    }

    /// Recomputes the zona from the facilities table (inside the locks, so with every
    /// committed report), stores the new state and writes the announcements.
    async fn decide_zona(
        &self,
        tx: &mut PgConnection,
        registry: &Snapshot,
        zona: &str,
        before: &HashMap<String, ComuneState>,
        report: &OccupancyReport,
    ) -> Result<(), HandleError> {
        let comuni = registry.comuni_by_istat(Some(zona));
        let facilities: Vec<_> = store::load_facility_sums(&mut *tx, zona)
            .await?
            .into_iter()
            .map(|s| s.sum)
            .collect();
        let by_zona = figures_by_zona(&comuni, &facilities, self.per_thousand);
        let Some(members) = by_zona.get(zona) else {
            return Ok(());
        };
        let figures: Vec<ComuneFigures> = members.iter().map(|(_, f)| f.clone()).collect();
        let totals = ZonaTotals::of(&figures);
        for (comune, f) in members {
            let state = before
                .get(comune.istat.as_ref())
                .copied()
                .unwrap_or_default();
            let (next, told) = decide(&state, f, totals, &self.ratios);
            if next != state {
                store::save_state(tx, comune, &next).await?;
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
                notify_comune(tx, registry, comune, payload, false).await?;
            }
        }
        Ok(())
    }

    /// The data of an announcement: its kind follows from the variant.
    fn announcement(
        &self,
        a: Announcement,
        comune: &Comune,
        f: &ComuneFigures,
        totals: ZonaTotals,
        report: &OccupancyReport,
    ) -> Payload {
        let zona_percentage = percentage(totals.coverage, totals.quota);
        let percentage = percentage(f.coverage, f.quota);
        let threshold_percentage = self.ratios.exclusion_ratio * 100.0;
        let zone_full_percentage = self.ratios.zone_full_ratio * 100.0;
        match a {
            Announcement::Threshold { excluded, rule } => {
                Payload::QuotaThreshold(ThresholdPayload {
                    comune_istat: comune.istat.clone(),
                    comune_nome: comune.nome.clone(),
                    zona: comune.zona.clone(),
                    coverage: f.coverage,
                    quota: f.quota,
                    percentage,
                    zona_coverage: totals.coverage,
                    zona_quota: totals.quota,
                    zona_percentage,
                    threshold_percentage,
                    zone_full_percentage,
                    as_of: report.as_of,
                    excluded,
                    state: if excluded {
                        ThresholdState::Excluded
                    } else {
                        ThresholdState::Included
                    },
                    // The rule that applies now; on leaving, the one that had applied.
                    rule: excluded.then_some(rule),
                    previous_rule: (!excluded).then_some(rule),
                    rule_label: rule.label().to_owned(),
                })
            }
            Announcement::Safeguard { entered } => Payload::QuotaSafeguard(SafeguardPayload {
                comune_istat: comune.istat.clone(),
                comune_nome: comune.nome.clone(),
                zona: comune.zona.clone(),
                coverage: f.coverage,
                quota: f.quota,
                percentage,
                zona_coverage: totals.coverage,
                zona_quota: totals.quota,
                zona_percentage,
                threshold_percentage,
                zone_full_percentage,
                as_of: report.as_of,
                entered,
                safeguard: entered,
            }),
        }
    }
}

/// What the asylum desks' rule A5 reads of a report.
fn occupancy_of(report: &OccupancyReport) -> Occupancy {
    Occupancy {
        kind: report.reception_kind,
        active: report.active,
        capacity: i64::from(report.capacity),
        presences: i64::from(report.presences),
    }
}

/// A5: SPRAR places freed while asylum cases wait tell the desks, in the report's
/// transaction (raccordo-asylum decides; the quota worker only calls it).
async fn place_alert(
    tx: &mut PgConnection,
    comune: &Comune,
    report: &OccupancyReport,
    previous: Option<&Occupancy>,
) -> Result<Option<NewNotification>, sqlx::Error> {
    let facility = FacilityReport {
        facility_id: &report.facility_id,
        comune,
        as_of: report.as_of,
        occupancy: occupancy_of(report),
    };
    place_available(tx, &facility, previous, rome_date(now())).await
}

/// Q6: the data of a report that shows more presences than places.
fn over_capacity_payload(report: &OccupancyReport, comune: &Comune) -> OverCapacityPayload {
    OverCapacityPayload {
        facility_id: report.facility_id.clone(),
        comune_istat: comune.istat.clone(),
        comune_nome: comune.nome.clone(),
        zona: comune.zona.clone(),
        reception_kind: report.reception_kind,
        capacity: report.capacity,
        presences: report.presences,
        // Only called when over capacity; saturating all the same.
        excess: report.presences.saturating_sub(report.capacity),
        as_of: report.as_of,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use time::macros::date;

    use raccordo_core::domain::{ComuneIstat, ReceptionKind};
    use raccordo_core::notification::NotificationKind;

    use super::*;
    use crate::decide::Rule;

    fn worker() -> QuotaWorker {
        QuotaWorker::new(&QuotaSettings {
            per_thousand: 2.8,
            exclusion_ratio: 0.5,
            zone_full_ratio: 1.0,
            protocol_signed_on: "2017-05-18".into(),
        })
    }

    fn melegnano() -> Comune {
        Comune {
            istat: ComuneIstat::parse("015140").expect("valid"),
            nome: "Melegnano".into(),
            popolazione: 18_000,
            zona: "Sud Est".into(),
            ambito: None,
            quota: Some(47),
            protocollo: true,
            domicilio: false,
        }
    }

    fn figures() -> ComuneFigures {
        ComuneFigures {
            istat: ComuneIstat::parse("015140").expect("valid"),
            signatory: true,
            quota: 47,
            coverage: 24,
            safeguard: false,
        }
    }

    fn report(presences: u32) -> OccupancyReport {
        OccupancyReport {
            facility_id: "CAS-MEL-01".into(),
            comune_istat: ComuneIstat::parse("015140").expect("valid"),
            reception_kind: ReceptionKind::Cas,
            capacity: 20,
            presences,
            as_of: date!(2026 - 11 - 03),
            active: true,
            publisher: "anonymous".into(),
        }
    }

    const TOTALS: ZonaTotals = ZonaTotals {
        quota: 477,
        coverage: 120,
    };

    /// What `json!` wrote for every announcement about [`melegnano`] before the payload
    /// was typed; each kind added its own fields.
    fn common(extra: Value) -> Value {
        let mut v = json!({
            "comune_istat": "015140",
            "comune_nome": "Melegnano",
            "zona": "Sud Est",
            "coverage": 24,
            "quota": 47,
            "percentage": 51.1,
            "zona_coverage": 120,
            "zona_quota": 477,
            "zona_percentage": 25.2,
            "threshold_percentage": 50.0,
            "zone_full_percentage": 100.0,
            "as_of": "2026-11-03",
        });
        for (k, x) in extra.as_object().expect("object") {
            v[k] = x.clone();
        }
        v
    }

    fn wire(payload: &Payload) -> Value {
        let value = payload.to_value().expect("encodes");
        let back = Payload::from_parts(payload.kind(), &value).expect("decodes");
        assert_eq!(&back, payload, "{}", payload.kind());
        value
    }

    fn announce(a: Announcement) -> Payload {
        worker().announcement(a, &melegnano(), &figures(), TOTALS, &report(10))
    }

    #[test]
    fn an_exclusion_writes_the_json_it_always_wrote() {
        let payload = announce(Announcement::Threshold {
            excluded: true,
            rule: Rule::Comune,
        });

        assert_eq!(payload.kind(), NotificationKind::QuotaThreshold);
        assert_eq!(
            wire(&payload),
            common(json!({
                "excluded": true,
                "state": "excluded",
                "rule": "comune",
                "previous_rule": null,
                "rule_label": "copertura del Comune",
            }))
        );
    }

    #[test]
    fn a_return_to_the_tenders_names_the_rule_that_had_applied() {
        let payload = announce(Announcement::Threshold {
            excluded: false,
            rule: Rule::Zona,
        });

        assert_eq!(
            wire(&payload),
            common(json!({
                "excluded": false,
                "state": "included",
                "rule": null,
                "previous_rule": "zona",
                "rule_label": "copertura della Zona omogenea",
            }))
        );
    }

    #[test]
    fn a_safeguard_change_writes_the_json_it_always_wrote() {
        let payload = announce(Announcement::Safeguard { entered: true });

        assert_eq!(payload.kind(), NotificationKind::QuotaSafeguard);
        assert_eq!(
            wire(&payload),
            common(json!({"entered": true, "safeguard": true}))
        );
    }

    #[test]
    fn an_over_capacity_report_writes_the_json_it_always_wrote() {
        let payload =
            Payload::ReceptionOverCapacity(over_capacity_payload(&report(23), &melegnano()));

        assert_eq!(
            wire(&payload),
            json!({
                "facility_id": "CAS-MEL-01",
                "comune_istat": "015140",
                "comune_nome": "Melegnano",
                "zona": "Sud Est",
                "reception_kind": "CAS",
                "capacity": 20,
                "presences": 23,
                "excess": 3,
                "as_of": "2026-11-03",
            })
        );
    }

    #[test]
    fn a_threshold_with_a_figure_of_the_wrong_type_names_the_field() {
        let mut value = common(
            json!({"excluded": true, "state": "excluded", "rule": "comune",
                                      "previous_rule": null, "rule_label": "x"}),
        );
        value["zona_quota"] = json!("477");

        let error = Payload::from_parts("quota.threshold", &value).expect_err("a string");

        assert_eq!(
            error.to_string(),
            "the quota.threshold payload's zona_quota has the wrong type or value"
        );
    }
}
