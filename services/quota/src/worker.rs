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
use serde_json::json;
use sqlx::PgConnection;

use raccordo_core::amqp::HandleError;
use raccordo_core::domain::format_date;
use raccordo_core::envelope::{Envelope, EventType};
use raccordo_core::inbound::EventWorker;
use raccordo_core::notification::{NotificationKind, notify_comune};
use raccordo_core::registry::{Comune, Snapshot};
use raccordo_core::settings::QuotaSettings;

use crate::coverage::figures_by_zona;
use crate::decide::{
    Announcement, ComuneFigures, ComuneState, Ratios, Rule, ZonaTotals, decide, over_capacity,
    percentage, supersedes,
};
use crate::occupancy::OccupancyReport;
use crate::store;

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
        let report: OccupancyReport = event.data_as()?;
        self.apply_report(tx, registry, &report).await
    }
}

/// Why the quota worker could not apply a report.
#[derive(Debug, thiserror::Error)]
enum QuotaError {
    /// Another report moved the facility between the two reads: retried.
    #[error("the facility was moved by a concurrent report; retrying")]
    FacilityMoved,
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

        // A facility that moved to another comune changes the coverage of both zone.
        let previous = store::facility_comune(tx, &report.facility_id).await?;
        let mut zone = vec![comune.zona.clone()];
        if let Some(prev) = previous.as_ref().filter(|p| **p != comune.istat) {
            zone.extend(registry.comune(prev).map(|c| c.zona.clone()));
        }
        zone.sort();
        zone.dedup();
        let mut before = HashMap::new();
        for zona in &zone {
            let members = registry.comuni_by_istat(Some(zona)).len();
            before.extend(store::lock_zona(tx, zona, members).await?);
        }

        let stored = store::lock_facility(tx, &report.facility_id).await?;
        if stored.as_ref().map(|s| &s.0) != previous.as_ref() {
            return Err(QuotaError::FacilityMoved.into());
        }
        // Q1: an older report arriving late changes nothing and alerts nothing.
        if !supersedes(stored.map(|s| s.1), report.as_of) {
            tracing::debug!(facility_id = %report.facility_id, "Older occupancy report ignored.");
            return Ok(());
        }
        store::save_facility(tx, report).await?;

        // Q6: once per report that shows it.
        if over_capacity(report.capacity, report.presences) {
            self.notify(
                tx,
                registry,
                NotificationKind::ReceptionOverCapacity,
                comune,
                json!({
                    "facility_id": report.facility_id,
                    "comune_istat": comune.istat,
                    "comune_nome": comune.nome,
                    "zona": comune.zona,
                    "reception_kind": report.reception_kind,
                    "capacity": report.capacity,
                    "presences": report.presences,
                    "excess": report.presences - report.capacity,
                    "as_of": format_date(report.as_of),
                }),
            )
            .await?;
        }

        for zona in &zone {
            self.decide_zona(tx, registry, zona, &before, report)
                .await?;
        }
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
        let facilities = store::load_facility_sums(&mut *tx, zona).await?;
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
                let (kind, payload) = self.announcement(a, comune, f, totals, report);
                tracing::info!(
                    comune = %comune.istat,
                    kind = %kind,
                    coverage = f.coverage,
                    quota = f.quota,
                    "Quota state changed."
                );
                self.notify(tx, registry, kind, comune, payload).await?;
            }
        }
        Ok(())
    }

    fn announcement(
        &self,
        a: Announcement,
        comune: &Comune,
        f: &ComuneFigures,
        totals: ZonaTotals,
        report: &OccupancyReport,
    ) -> (NotificationKind, serde_json::Value) {
        let common = json!({
            "comune_istat": comune.istat,
            "comune_nome": comune.nome,
            "zona": comune.zona,
            "coverage": f.coverage,
            "quota": f.quota,
            "percentage": percentage(f.coverage, f.quota),
            "zona_coverage": totals.coverage,
            "zona_quota": totals.quota,
            "zona_percentage": percentage(totals.coverage, totals.quota),
            "threshold_percentage": self.ratios.exclusion_ratio * 100.0,
            "zone_full_percentage": self.ratios.zone_full_ratio * 100.0,
            "as_of": format_date(report.as_of),
        });
        let mut payload = common;
        match a {
            Announcement::Threshold { excluded, rule } => {
                payload["excluded"] = json!(excluded);
                payload["state"] = json!(if excluded { "excluded" } else { "included" });
                // The rule that applies now; on leaving, the one that had applied.
                payload["rule"] = json!(excluded.then_some(rule));
                payload["previous_rule"] = json!((!excluded).then_some(rule));
                payload["rule_label"] = json!(match rule {
                    Rule::Comune => "copertura del Comune",
                    Rule::Zona => "copertura della Zona omogenea",
                });
                (NotificationKind::QuotaThreshold, payload)
            }
            Announcement::Safeguard { entered } => {
                payload["entered"] = json!(entered);
                payload["safeguard"] = json!(entered);
                (NotificationKind::QuotaSafeguard, payload)
            }
        }
    }

    async fn notify(
        &self,
        tx: &mut PgConnection,
        registry: &Snapshot,
        kind: NotificationKind,
        comune: &Comune,
        payload: serde_json::Value,
    ) -> Result<(), sqlx::Error> {
        notify_comune(tx, registry, kind, comune, payload, false).await?;
        Ok(())
    }
}
