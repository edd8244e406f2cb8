//! Samples of the asylum kinds (CONTRACT A1–A5). The person is fictional and says so.

use raccordo_core::payload::{
    ComunePlaces, DomicileAssignedPayload, FreeFacility, InterventionOverduePayload, Person,
    PlaceAvailablePayload, ProntaAccoglienzaPayload, WaitingCase, WeeklyPrioritiesPayload,
};

use super::istat;

/// A pseudonym as the hub writes it (64 hex digits).
const CASE: &str = "5f1c0a9e3b7d42c8a6e1f09b3d7c5a2e8f4b6d1c9a3e7f05b2d8c4a6e1f3b9d7";

fn facility(id: &str, code: &str, nome: &str, kind: &str, free: i32, near: &str) -> FreeFacility {
    FreeFacility {
        facility_id: id.into(),
        comune_istat: istat(code),
        comune_nome: nome.into(),
        reception_kind: kind.into(),
        free_places: free,
        proximity: near.into(),
    }
}

pub(super) fn pronta_accoglienza() -> ProntaAccoglienzaPayload {
    ProntaAccoglienzaPayload {
        case: CASE.into(),
        desk: "sportello-rho".into(),
        desk_name: "Sportello asilo di Rho".into(),
        comune_istat: istat("015182"),
        comune_nome: "Rho".into(),
        ambito: Some("Rho".into()),
        zona: "Nord Ovest".into(),
        categories: vec!["nucleo_con_minori".into(), "salute".into()],
        reported_at: "2026-03-02T09:15:00+01:00".into(),
        due_at: "2026-03-02T21:15:00+01:00".into(),
        facilities: vec![
            facility("SPRAR-RHO-01", "015182", "Rho", "SPRAR", 3, "comune"),
            facility("CAS-PER-02", "015170", "Pero", "CAS", 2, "ambito"),
            facility("SPRAR-LEG-01", "015118", "Legnano", "SPRAR", 5, "zona"),
        ],
        person: Some(Person {
            name: Some("Persona di esempio (fittizia)".into()),
            birth_year: Some(1994),
            nationality: Some("Guinea".into()),
            languages: vec!["francese".into(), "fula".into()],
            phone: Some("+39 000 0000000".into()),
            notes: Some("Con due figli di 3 e 6 anni.".into()),
        }),
    }
}

pub(super) fn intervention_overdue() -> InterventionOverduePayload {
    InterventionOverduePayload {
        case: CASE.into(),
        desk: "sportello-rho".into(),
        desk_name: "Sportello asilo di Rho".into(),
        comune_istat: istat("015182"),
        comune_nome: "Rho".into(),
        ambito: Some("Rho".into()),
        reported_at: "2026-03-02T09:15:00+01:00".into(),
        due_at: "2026-03-02T21:15:00+01:00".into(),
        hours: 12.0,
        notification: Some(uuid::Uuid::from_u128(
            0x0193_8c2e_5d4f_7a10_8b2c_3d4e_5f60_7183,
        )),
    }
}

pub(super) fn domicile_assigned() -> DomicileAssignedPayload {
    DomicileAssignedPayload {
        request_id: "DOM-2026-0007".into(),
        case: CASE.into(),
        desk: "sportello-milano".into(),
        desk_name: "Sportello asilo di Milano".into(),
        comune_istat: istat("015209"),
        comune_nome: "Sesto San Giovanni".into(),
        people: 1,
        requested_at: "2026-03-03T10:00:00+01:00".into(),
        assigned_at: "2026-03-03T10:00:02+01:00".into(),
    }
}

fn waiting(case: &str, priority: &str, category: &str, since: &str, weeks: i64) -> WaitingCase {
    WaitingCase {
        case: case.into(),
        priority: priority.into(),
        categories: vec![category.into()],
        since: since.into(),
        weeks_waiting: weeks,
        desk: Some("sportello-milano".into()),
    }
}

fn list() -> Vec<WaitingCase> {
    vec![
        waiting(CASE, "alta", "nucleo_con_minori", "2026-02-02", 4),
        waiting(
            "0a7e3c9b1d5f48e2b6c0a4d8f2e6b1c5a9d3f7e0b4c8a2d6f1e5b9c3a7d0e4f8",
            "media",
            "donna_sola",
            "2026-01-19",
            6,
        ),
        waiting(
            "c3e7a1d5b9f24c8e0a6d2b7f1c5e9a3d8b2f6c0e4a7d1b5f9c3e8a2d6b0f4c7e",
            "ordinaria",
            "salute",
            "2025-12-15",
            11,
        ),
    ]
}

pub(super) fn weekly_priorities() -> WeeklyPrioritiesPayload {
    WeeklyPrioritiesPayload {
        week: "2026-W10".into(),
        monday: "2026-03-02".into(),
        cases: list(),
        places: vec![
            ComunePlaces {
                comune_istat: istat("015209"),
                comune_nome: "Sesto San Giovanni".into(),
                free_places: 4,
                zona: "Nord Milano".into(),
                facilities: 2,
            },
            ComunePlaces {
                comune_istat: istat("015182"),
                comune_nome: "Rho".into(),
                free_places: 1,
                zona: "Nord Ovest".into(),
                facilities: 1,
            },
        ],
        generated_on: "2026-03-02".into(),
        waiting: 3,
        alta: 1,
        media: 1,
        ordinaria: 1,
        free_total: 5,
    }
}

pub(super) fn place_available() -> PlaceAvailablePayload {
    PlaceAvailablePayload {
        facility_id: "SPRAR-SSG-01".into(),
        comune_istat: istat("015209"),
        comune_nome: "Sesto San Giovanni".into(),
        free_places: 3,
        previous_free_places: 1,
        first_waiting: list(),
        zona: "Nord Milano".into(),
        capacity: 25,
        presences: 22,
        as_of: "2026-03-04".into(),
        waiting: 7,
    }
}
