//! `asylum.*` (CONTRACT 1.2 §4 "Asylum", A1–A5): the Tavolo provinciale asilo's desks.
//!
//! A person is named only by `case`, the keyed pseudonym of the desk's case number. The
//! one exception is [`Person`] in `asylum.pronta_accoglienza`, present only when the person
//! consented and only in the notification to the social services of the comune and its
//! ambito (A1). Times are RFC 3339, as the events gave them; dates `YYYY-MM-DD`.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::ComuneIstat;

/// PERSONAL DATA of an asylum seeker, as the desk sent it (`person` of
/// `asylum.vulnerability.v1`). `Debug` prints nothing of it (CONTRACT C1).
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Person {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_year: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nationality: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

impl fmt::Debug for Person {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Person(redacted)")
    }
}

/// A reception facility with free places, as the latest `reception.occupancy.v1` said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreeFacility {
    pub facility_id: String,
    pub comune_istat: ComuneIstat,
    pub comune_nome: String,
    /// `CAS` or `SPRAR`.
    pub reception_kind: String,
    /// Capacity − presences, > 0.
    pub free_places: i32,
    /// How near it is to the person: `comune`, `ambito`, `zona` or `altro` (A1's order).
    pub proximity: String,
}

/// `asylum.pronta_accoglienza` (A1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProntaAccoglienzaPayload {
    /// The case's pseudonym.
    pub case: String,
    /// The desk's referent id, and its institution.
    pub desk: String,
    pub desk_name: String,
    pub comune_istat: ComuneIstat,
    pub comune_nome: String,
    pub ambito: Option<String>,
    pub zona: String,
    pub categories: Vec<String>,
    pub reported_at: String,
    /// When the first intervention is due (A2).
    pub due_at: String,
    /// At most five, nearest first.
    pub facilities: Vec<FreeFacility>,
    /// Only with consent, only to the social services (A1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<Person>,
}

/// `asylum.intervention_overdue` (A2): never personal data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterventionOverduePayload {
    pub case: String,
    pub desk: String,
    pub desk_name: String,
    pub comune_istat: ComuneIstat,
    pub comune_nome: String,
    pub ambito: Option<String>,
    pub reported_at: String,
    pub due_at: String,
    /// `asylum.first_intervention_hours`, as configured.
    pub hours: f64,
    /// The `asylum.pronta_accoglienza` nobody answered.
    pub notification: Option<Uuid>,
}

/// `asylum.domicile_assigned` (A3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomicileAssignedPayload {
    pub request_id: String,
    pub case: String,
    pub desk: String,
    pub desk_name: String,
    pub comune_istat: ComuneIstat,
    pub comune_nome: String,
    pub people: i32,
    pub requested_at: String,
    pub assigned_at: String,
}

/// A case on the SPRAR waiting list (A4, A5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingCase {
    pub case: String,
    /// `alta`, `media` or `ordinaria`.
    pub priority: String,
    pub categories: Vec<String>,
    /// On the list since (`YYYY-MM-DD`).
    pub since: String,
    pub weeks_waiting: i64,
    #[serde(default)]
    pub desk: Option<String>,
}

/// Free SPRAR places in one comune (A4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComunePlaces {
    pub comune_istat: ComuneIstat,
    pub comune_nome: String,
    pub free_places: i64,
    /// The comune's zona omogenea.
    #[serde(default)]
    pub zona: String,
    /// Active SPRAR projects with free places in the comune.
    #[serde(default)]
    pub facilities: i64,
}

/// `asylum.weekly_priorities` (A4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeeklyPrioritiesPayload {
    /// The ISO week, `2026-W10`.
    pub week: String,
    /// The Monday of the list (`YYYY-MM-DD`).
    pub monday: String,
    /// By priority, then waiting time.
    pub cases: Vec<WaitingCase>,
    pub places: Vec<ComunePlaces>,
    /// The day the figures were read (`YYYY-MM-DD`, Europe/Rome).
    #[serde(default)]
    pub generated_on: String,
    /// Cases waiting, and of them with priority `alta`, `media`, `ordinaria`.
    #[serde(default)]
    pub waiting: i64,
    #[serde(default)]
    pub alta: i64,
    #[serde(default)]
    pub media: i64,
    #[serde(default)]
    pub ordinaria: i64,
    /// Free places in all active SPRAR projects.
    #[serde(default)]
    pub free_total: i64,
}

/// `asylum.place_available` (A5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceAvailablePayload {
    pub facility_id: String,
    pub comune_istat: ComuneIstat,
    pub comune_nome: String,
    pub free_places: i64,
    pub previous_free_places: i64,
    /// The first three cases of the list.
    pub first_waiting: Vec<WaitingCase>,
    #[serde(default)]
    pub zona: String,
    /// The report's figures and date (`YYYY-MM-DD`).
    #[serde(default)]
    pub capacity: i64,
    #[serde(default)]
    pub presences: i64,
    #[serde(default)]
    pub as_of: String,
    /// Cases on the whole waiting list.
    #[serde(default)]
    pub waiting: i64,
}

impl super::Payload {
    /// The payload as a recipient of `role` may read it: `asylum.pronta_accoglienza`
    /// without `person` for anyone but the social services (A1: the desk and any other
    /// office get the same notice without it); every other kind as it is. The mailer
    /// renders through it, so one notification serves every recipient.
    pub fn visible_to(&self, role: &str) -> std::borrow::Cow<'_, super::Payload> {
        use std::borrow::Cow;
        match self {
            super::Payload::AsylumProntaAccoglienza(p)
                if p.person.is_some() && !shows_person_to(role) =>
            {
                Cow::Owned(super::Payload::AsylumProntaAccoglienza(Box::new(
                    ProntaAccoglienzaPayload {
                        person: None,
                        ..(**p).clone()
                    },
                )))
            }
            _ => Cow::Borrowed(self),
        }
    }
}

/// Whether a recipient of `role` may read a consenting person's data (A1).
pub fn shows_person_to(role: &str) -> bool {
    crate::domain::Role::parse(role).is_ok_and(|r| r == crate::domain::Role::ServiziSociali)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Payload;

    fn with_person() -> Payload {
        Payload::AsylumProntaAccoglienza(Box::new(ProntaAccoglienzaPayload {
            case: "c".into(),
            desk: "sportello-rho".into(),
            desk_name: "Sportello".into(),
            comune_istat: ComuneIstat::parse("015182").expect("valid"),
            comune_nome: "Rho".into(),
            ambito: Some("Rho".into()),
            zona: "Nord Ovest".into(),
            categories: vec!["salute".into()],
            reported_at: "2026-03-02T09:15:00+01:00".into(),
            due_at: "2026-03-02T21:15:00+01:00".into(),
            facilities: vec![],
            person: Some(Person {
                name: Some("Nome Riservato".into()),
                ..Person::default()
            }),
        }))
    }

    fn person_of(p: &Payload) -> Option<&Person> {
        match p {
            Payload::AsylumProntaAccoglienza(p) => p.person.as_ref(),
            _ => None,
        }
    }

    #[test]
    fn only_the_social_services_read_the_person() {
        let payload = with_person();
        assert!(person_of(&payload.visible_to("servizi_sociali")).is_some());
        for role in ["sportello_asilo", "prefettura", "tavolo", "comune", "", "x"] {
            assert!(person_of(&payload.visible_to(role)).is_none(), "{role}");
        }
    }

    #[test]
    fn a_person_never_prints() {
        let shown = format!("{:?}", with_person());
        assert!(!shown.contains("Riservato"), "{shown}");
    }
}
