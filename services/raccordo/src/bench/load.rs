//! The load: the events of a scenario, in publishing order, each with the emails it must
//! cause on the sample registry. Every event is valid and about the sample data, so the
//! hub routes all of it and nothing is dead-lettered.
//!
//! Each event that causes emails carries a key the emails quote — the unit id (in the
//! subject of housing emails), the docket number (in the body of eviction alerts) — so the
//! benchmark ties every arriving email to the event that caused it without reading the
//! hub's database. Keys start with the run's tag (`B` + random letters + run number), so
//! emails of other runs or installations are never mistaken for this run's.

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milano: a comune with a `comune` referent (housing.ack) and covered by the
/// `stazione_appaltante` (housing.offered) and with its own `servizi_sociali` (alerts).
const MILANO: &str = "015146";

/// Who receives what in `data/referents_sample.csv` for Milano (one recipient each).
pub(crate) const OFFERED_TO: &str = "gare.accoglienza@prefettura.mi.example";
pub(crate) const ACK_TO: &str = "accoglienza@comune.milano.example";
pub(crate) const ALERT_TO: &str = "sfratti@comune.milano.example";

/// Large comuni whose facilities the occupancy reports describe, with presences below the
/// 50% threshold of their quota (at most 50 × 1 presences each, every quota ≥ 140), so no
/// report ever causes a `quota.threshold` announcement and the expected emails stay exact.
/// Each facility reports again only every 250 occupancy reports: two reports of one
/// facility are never in the hub's hands at once, as in life.
const OCCUPANCY_COMUNI: [&str; 5] = [MILANO, "015209", "015077", "015118", "015182"];
const FACILITIES_PER_COMUNE: u64 = 50;

/// The scenarios of `raccordo bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Housing offers in Milano: two emails each (housing.offered, housing.ack).
    Housing,
    /// 70% occupancy reports, 20% eviction steps and consents (half of the procedures
    /// with consent granted beforehand, so their events are alerted), 10% housing offers.
    Mixed,
}

impl Scenario {
    /// The name used in tables and file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Housing => "housing",
            Scenario::Mixed => "mixed",
        }
    }
}

/// One email an event must cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Expected {
    /// `X-Raccordo-Kind`.
    pub kind: &'static str,
    /// The envelope recipient.
    pub recipient: &'static str,
}

/// One event to publish.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    /// The routing key (the event type).
    pub routing_key: &'static str,
    /// The CloudEvent, serialized.
    pub body: Vec<u8>,
    /// The key its emails quote, when it causes any.
    pub key: Option<String>,
    /// The emails it causes.
    pub expects: Vec<Expected>,
}

/// What one slot of the mixed stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Occupancy,
    /// A step of a procedure whose family granted consent beforehand: alerted.
    ConsentedStep,
    /// A step of a procedure without consent: statistics only.
    PlainStep,
    /// Consent granted again, later, by a family that had granted it: alerted (C2).
    Regrant,
    /// A revocation for a procedure that never had consent: nothing to tell (C4).
    Revoke,
    Housing,
}

/// The mixed stream's pattern: per 20 events, 14 occupancy, 4 eviction, 2 housing, spread.
fn mixed_slot(seq: u64) -> Slot {
    const PATTERN: [Slot; 20] = [
        Slot::Occupancy,
        Slot::Occupancy,
        Slot::ConsentedStep,
        Slot::Occupancy,
        Slot::Occupancy,
        Slot::PlainStep,
        Slot::Occupancy,
        Slot::Housing,
        Slot::Occupancy,
        Slot::Occupancy,
        Slot::Occupancy,
        Slot::Occupancy,
        Slot::Regrant,
        Slot::Occupancy,
        Slot::Occupancy,
        Slot::Revoke,
        Slot::Occupancy,
        Slot::Housing,
        Slot::Occupancy,
        Slot::Occupancy,
    ];
    PATTERN[(seq % 20) as usize]
}

/// The events of one run.
#[derive(Debug, Clone)]
pub(crate) struct Workload {
    scenario: Scenario,
    /// Uppercase letters and digits; starts every key of the run.
    tag: String,
    /// When the run was planned: consents are recorded before it, steps happen on its day.
    now: OffsetDateTime,
}

impl Workload {
    /// A workload whose keys start with `tag` (uppercase letters and digits only).
    pub fn new(scenario: Scenario, tag: String, now: OffsetDateTime) -> Self {
        Self { scenario, tag, now }
    }

    /// The run's tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The `seq`-th event of the run.
    pub fn event(&self, seq: u64) -> Event {
        match self.scenario {
            Scenario::Housing => self.housing(seq),
            Scenario::Mixed => match mixed_slot(seq) {
                Slot::Occupancy => self.occupancy(seq),
                Slot::ConsentedStep | Slot::PlainStep => self.step(seq),
                Slot::Regrant => self.consent(seq, "granted", 30),
                Slot::Revoke => self.consent(seq, "revoked", 30),
                Slot::Housing => self.housing(seq),
            },
        }
    }

    /// What to publish before the run, on a hub of its own, and wait for:
    /// - one occupancy report per comune, so the quota state of each zona exists (a fresh
    ///   database is not what the benchmark measures);
    /// - one consent per consented procedure among the first `events`, so the run's events
    ///   of those procedures are alerted whatever order the hub handles them in.
    pub fn preparation(&self, events: u64) -> Vec<Event> {
        if self.scenario != Scenario::Mixed {
            return Vec::new();
        }
        let warm_up = (0..OCCUPANCY_COMUNI.len() as u64)
            .map(|n| self.occupancy_as(n * FACILITIES_PER_COMUNE, 'W'));
        let consents = (0..events)
            .filter(|&seq| matches!(mixed_slot(seq), Slot::ConsentedStep | Slot::Regrant))
            .map(|seq| self.consent(seq, "granted", 120));
        warm_up.chain(consents).collect()
    }

    fn key(&self, letter: char, seq: u64) -> String {
        format!("{}{letter}{seq:07}", self.tag)
    }

    fn envelope(&self, event_type: &str, source: &str, id: String, data: Value) -> Vec<u8> {
        let time = self.now.format(&Rfc3339).unwrap_or_default();
        let event = json!({
            "specversion": "1.0",
            "id": id,
            "source": source,
            "type": event_type,
            "time": time,
            "datacontenttype": "application/json",
            "data": data,
        });
        event.to_string().into_bytes()
    }

    fn housing(&self, seq: u64) -> Event {
        let unit_id = self.key('H', seq);
        let body = self.envelope(
            "housing.unit.v1",
            "urn:comune:015146:protocollo",
            format!("{unit_id}-offer"),
            json!({
                "unit_id": unit_id,
                "action": "offered",
                "comune_istat": MILANO,
                "address": format!("Via del Banco {}, Milano", seq % 500 + 1),
                "places": seq % 8 + 1,
                "reception_kind": "CAS",
                "building_type": "appartamento",
                "owner_declaration": true,
                "available_from": "2027-01-01",
            }),
        );
        Event {
            routing_key: "housing.unit.v1",
            body,
            key: Some(unit_id),
            expects: vec![
                Expected {
                    kind: "housing.offered",
                    recipient: OFFERED_TO,
                },
                Expected {
                    kind: "housing.ack",
                    recipient: ACK_TO,
                },
            ],
        }
    }

    fn occupancy(&self, seq: u64) -> Event {
        self.occupancy_as(seq, 'O')
    }

    /// An occupancy report whose event id is made with `letter` (the warm-up's differ from
    /// the run's, or the hub would take the run's for duplicates).
    fn occupancy_as(&self, seq: u64, letter: char) -> Event {
        let facility = seq % (OCCUPANCY_COMUNI.len() as u64 * FACILITIES_PER_COMUNE);
        let comune = OCCUPANCY_COMUNI[(facility / FACILITIES_PER_COMUNE) as usize];
        let body = self.envelope(
            "reception.occupancy.v1",
            "urn:prefettura:mi:accoglienza",
            format!("{}-occ", self.key(letter, seq)),
            json!({
                "facility_id": format!("{}-CAS-{facility:02}", self.tag),
                "comune_istat": comune,
                "reception_kind": "CAS",
                "capacity": 40,
                "presences": (seq / 7) % 2,
                "as_of": self.now.date().to_string(),
            }),
        );
        Event {
            routing_key: "reception.occupancy.v1",
            body,
            key: None,
            expects: Vec::new(),
        }
    }

    /// The docket number of the procedure the `seq`-th event belongs to (canonical form:
    /// upper case, digits and `/`, so the hub shows it as published).
    fn procedure(&self, seq: u64) -> String {
        format!("{}/2026", self.key('E', seq))
    }

    fn step(&self, seq: u64) -> Event {
        let consented = mixed_slot(seq) == Slot::ConsentedStep;
        let body = self.envelope(
            "eviction.step.v1",
            "urn:tribunale-milano:unep",
            format!("{}-step", self.key('E', seq)),
            json!({
                "procedure_id": self.procedure(seq),
                "step": "convalida",
                "occurred_on": self.now.date().to_string(),
                "comune_istat": MILANO,
                "info_material_delivered": true,
            }),
        );
        Event {
            routing_key: "eviction.step.v1",
            body,
            key: consented.then(|| self.key('E', seq)),
            expects: if consented {
                vec![Expected {
                    kind: "eviction.alert",
                    recipient: ALERT_TO,
                }]
            } else {
                Vec::new()
            },
        }
    }

    /// A consent decision recorded `minutes_ago` before the run was planned.
    fn consent(&self, seq: u64, decision: &str, minutes_ago: i64) -> Event {
        let recorded_at = (self.now - time::Duration::minutes(minutes_ago))
            .format(&Rfc3339)
            .unwrap_or_default();
        let body = self.envelope(
            "eviction.consent.v1",
            "urn:comune:015146:sportello-sociale",
            format!("{}-{decision}-{minutes_ago}", self.key('E', seq)),
            json!({
                "procedure_id": self.procedure(seq),
                "comune_istat": MILANO,
                "decision": decision,
                "recorded_by": "Sportello sociale (benchmark)",
                "recorded_at": recorded_at,
            }),
        );
        let alerted = decision == "granted";
        Event {
            routing_key: "eviction.consent.v1",
            body,
            key: alerted.then(|| self.key('E', seq)),
            expects: if alerted {
                vec![Expected {
                    kind: "eviction.alert",
                    recipient: ALERT_TO,
                }]
            } else {
                Vec::new()
            },
        }
    }
}

/// The key an email quotes: the first `tag` followed by a letter and seven digits in `text`.
pub(crate) fn find_key<'t>(text: &'t str, tag: &str) -> Option<&'t str> {
    let mut from = 0;
    while let Some(at) = text.get(from..)?.find(tag) {
        let start = from + at;
        let end = start + tag.len() + 8;
        if let Some(key) = text.get(start..end) {
            let mut rest = key[tag.len()..].chars();
            if rest.next().is_some_and(|c| c.is_ascii_uppercase())
                && rest.all(|c| c.is_ascii_digit())
            {
                return Some(key);
            }
        }
        from = start + tag.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(scenario: Scenario) -> Workload {
        Workload::new(
            scenario,
            "BTEST1".into(),
            OffsetDateTime::from_unix_timestamp(1_790_000_000).expect("valid time"),
        )
    }

    #[test]
    fn the_mixed_stream_is_seventy_twenty_ten() {
        let slots: Vec<Slot> = (0..1000).map(mixed_slot).collect();
        let count = |f: fn(&Slot) -> bool| slots.iter().filter(|s| f(s)).count();
        assert_eq!(count(|s| *s == Slot::Occupancy), 700);
        assert_eq!(count(|s| *s == Slot::Housing), 100);
        assert_eq!(
            count(|s| matches!(
                s,
                Slot::ConsentedStep | Slot::PlainStep | Slot::Regrant | Slot::Revoke
            )),
            200
        );
    }

    #[test]
    fn every_event_is_valid_against_the_schemas() {
        for scenario in [Scenario::Housing, Scenario::Mixed] {
            let w = workload(scenario);
            for event in (0..40).map(|seq| w.event(seq)).chain(w.preparation(40)) {
                let decoded = raccordo_core::envelope::Envelope::decode(&event.body);
                assert!(
                    decoded.is_ok(),
                    "{}: {:?}",
                    String::from_utf8_lossy(&event.body),
                    decoded.err()
                );
            }
        }
    }

    #[test]
    fn every_consented_procedure_is_prepared_and_alerted_once() {
        let w = workload(Scenario::Mixed);
        let alerted: Vec<String> = (0..200).filter_map(|seq| w.event(seq).key).collect();
        let prepared: Vec<String> = w
            .preparation(200)
            .into_iter()
            .filter_map(|e| e.key)
            .collect();
        let emails: usize = (0..200).map(|seq| w.event(seq).expects.len()).sum();
        // 20 housing offers (2 emails each) and 20 alerted eviction events.
        assert_eq!(emails, 20 * 2 + 20);
        assert_eq!(prepared.len(), 20);
        assert_eq!(w.preparation(200).len(), 20 + OCCUPANCY_COMUNI.len());
        assert!(prepared.iter().all(|k| alerted.contains(k)));
    }

    #[test]
    fn the_recipients_are_in_the_sample_registry() {
        let sample = include_str!("../../../../data/referents_sample.csv");
        for email in [OFFERED_TO, ACK_TO, ALERT_TO] {
            assert!(sample.contains(&format!(",{email},")), "{email}");
        }
    }

    #[test]
    fn a_key_is_found_in_a_subject_and_not_in_a_longer_tag() {
        let subject = "Nuova disponibilità — Milano, 3 posti (unità BTEST1H0000042)";
        assert_eq!(find_key(subject, "BTEST1"), Some("BTEST1H0000042"));
        assert_eq!(
            find_key("Numero di ruolo: BTEST1E0000007/2026", "BTEST1"),
            Some("BTEST1E0000007")
        );
        assert_eq!(find_key("BTEST12H0000042", "BTEST1"), None);
        assert_eq!(find_key("BTEST1 BTEST1H00000", "BTEST1"), None);
        assert_eq!(
            find_key("àà BTEST1H0000001", "BTEST1"),
            Some("BTEST1H0000001")
        );
    }
}
