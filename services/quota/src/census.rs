//! The facility census (the regional plan's census of reception facilities): capacity,
//! presences and free places per facility, comune and zona, as of each facility's newest
//! report, with its date.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::PgConnection;

use raccordo_core::domain::{ComuneIstat, format_date};

/// One facility as its newest report describes it.
#[derive(Debug, Clone, Serialize)]
pub struct FacilityCensus {
    pub facility_id: String,
    pub comune_istat: String,
    pub comune_nome: String,
    pub zona: String,
    pub reception_kind: String,
    pub capacity: i64,
    pub presences: i64,
    /// Places still free: capacity − presences, never below 0.
    pub free_places: i64,
    /// More people than places (Q6).
    pub over_capacity: bool,
    /// For SPRAR: the project is active.
    pub active: bool,
    /// The date of the newest report.
    pub as_of: String,
}

/// Totals of a comune or a zona.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CensusTotals {
    /// The comune's ISTAT code (empty for a zona).
    pub istat: String,
    /// The comune's or the zona's name.
    pub nome: String,
    pub zona: String,
    pub facilities: usize,
    pub capacity: i64,
    pub presences: i64,
    pub free_places: i64,
    /// The newest report among its facilities.
    pub as_of: String,
}

/// The census: facilities, and their totals per comune and per zona.
#[derive(Debug, Clone, Serialize)]
pub struct Census {
    pub facilities: Vec<FacilityCensus>,
    pub comuni: Vec<CensusTotals>,
    pub zone: Vec<CensusTotals>,
}

/// Loads the census, optionally of one comune or one zona.
pub async fn load_census(
    conn: &mut PgConnection,
    comune: Option<&ComuneIstat>,
    zona: Option<&str>,
) -> Result<Census, sqlx::Error> {
    let rows = crate::store::census_rows(conn, comune, zona).await?;
    let facilities: Vec<FacilityCensus> = rows
        .into_iter()
        .map(
            |(id, istat, nome, zona, kind, capacity, presences, active, as_of)| FacilityCensus {
                facility_id: id,
                comune_istat: istat,
                comune_nome: nome,
                zona,
                reception_kind: kind,
                capacity: i64::from(capacity),
                presences: i64::from(presences),
                free_places: i64::from(capacity - presences).max(0),
                over_capacity: presences > capacity,
                active,
                as_of: format_date(as_of),
            },
        )
        .collect();
    Ok(summarize(facilities))
}

/// Adds the totals per comune and per zona.
pub fn summarize(facilities: Vec<FacilityCensus>) -> Census {
    let mut comuni: BTreeMap<(String, String), CensusTotals> = BTreeMap::new();
    let mut zone: BTreeMap<String, CensusTotals> = BTreeMap::new();
    for f in &facilities {
        let c = comuni
            .entry((f.zona.clone(), f.comune_nome.clone()))
            .or_insert_with(|| CensusTotals {
                istat: f.comune_istat.clone(),
                nome: f.comune_nome.clone(),
                zona: f.zona.clone(),
                ..CensusTotals::default()
            });
        add(c, f);
        let z = zone.entry(f.zona.clone()).or_insert_with(|| CensusTotals {
            nome: f.zona.clone(),
            zona: f.zona.clone(),
            ..CensusTotals::default()
        });
        add(z, f);
    }
    Census {
        facilities,
        comuni: comuni.into_values().collect(),
        zone: zone.into_values().collect(),
    }
}

fn add(t: &mut CensusTotals, f: &FacilityCensus) {
    t.facilities += 1;
    t.capacity += f.capacity;
    t.presences += f.presences;
    t.free_places += f.free_places;
    if f.as_of > t.as_of {
        t.as_of = f.as_of.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facility(
        id: &str,
        nome: &str,
        zona: &str,
        capacity: i64,
        presences: i64,
        as_of: &str,
    ) -> FacilityCensus {
        FacilityCensus {
            facility_id: id.into(),
            comune_istat: "015140".into(),
            comune_nome: nome.into(),
            zona: zona.into(),
            reception_kind: "CAS".into(),
            capacity,
            presences,
            free_places: (capacity - presences).max(0),
            over_capacity: presences > capacity,
            active: true,
            as_of: as_of.into(),
        }
    }

    #[test]
    fn totals_add_up_per_comune_and_zona_with_the_newest_date() {
        let census = summarize(vec![
            facility("a", "Melegnano", "Sud Est", 20, 12, "2026-03-01"),
            facility("b", "Melegnano", "Sud Est", 10, 12, "2026-03-05"),
        ]);
        assert_eq!(census.comuni.len(), 1);
        let m = &census.comuni[0];
        assert_eq!((m.capacity, m.presences, m.free_places), (30, 24, 8));
        assert_eq!(m.as_of, "2026-03-05");
        assert_eq!(census.zone[0].facilities, 2);
        assert!(census.facilities[1].over_capacity);
    }
}
