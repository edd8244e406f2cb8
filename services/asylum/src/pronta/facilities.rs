//! The reception facilities with free places nearest to a person (CONTRACT A1): capacity −
//! presences > 0 as the latest `reception.occupancy.v1` said, the comune first, then its
//! ambito, its zona, the rest; at most five.

use sqlx::PgConnection;

use raccordo_core::payload::FreeFacility;
use raccordo_core::registry::{Comune, Snapshot};

/// At most this many facilities in a notice (A1).
pub const MAX_FACILITIES: usize = 5;

/// How near a facility is to the person, in A1's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proximity {
    Comune,
    Ambito,
    Zona,
    Altro,
}

impl Proximity {
    /// Where a facility in `there` stands for a person in `near`.
    pub fn of(near: &Comune, there: &Comune) -> Self {
        if there.istat == near.istat {
            Proximity::Comune
        } else if near.ambito.is_some() && there.ambito == near.ambito {
            Proximity::Ambito
        } else if there.zona == near.zona {
            Proximity::Zona
        } else {
            Proximity::Altro
        }
    }

    /// The payload's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Proximity::Comune => "comune",
            Proximity::Ambito => "ambito",
            Proximity::Zona => "zona",
            Proximity::Altro => "altro",
        }
    }
}

/// A facility with free places, as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FacilityRow {
    pub facility_id: String,
    pub comune_istat: String,
    pub reception_kind: String,
    pub free_places: i32,
}

/// Every facility with a free place (active SPRAR projects only: Q2).
pub async fn with_free_places(conn: &mut PgConnection) -> Result<Vec<FacilityRow>, sqlx::Error> {
    sqlx::query_as(
        r#"
        SELECT facility_id, comune_istat, reception_kind, capacity - presences AS free_places
        FROM reception_facilities
        WHERE active
          AND capacity > presences
        "#,
    )
    .fetch_all(conn)
    .await
}

/// The nearest of `rows` to `near`: by proximity, then most free places, then id (so the
/// list is the same whoever computes it); at most [`MAX_FACILITIES`].
pub fn nearest(near: &Comune, rows: &[FacilityRow], registry: &Snapshot) -> Vec<FreeFacility> {
    nearest_by(near, rows, |istat| {
        raccordo_core::domain::ComuneIstat::parse(istat)
            .ok()
            .and_then(|i| registry.comune(&i).cloned())
    })
}

/// [`nearest`] with any lookup of comuni (unit tests).
pub fn nearest_by(
    near: &Comune,
    rows: &[FacilityRow],
    comune_of: impl Fn(&str) -> Option<Comune>,
) -> Vec<FreeFacility> {
    let mut ranked: Vec<(Proximity, &FacilityRow, Comune)> = rows
        .iter()
        .filter(|r| r.free_places > 0)
        .filter_map(|r| {
            let there = comune_of(&r.comune_istat)?;
            Some((Proximity::of(near, &there), r, there))
        })
        .collect();
    ranked.sort_by(|a, b| {
        (a.0, -a.1.free_places, &a.1.facility_id).cmp(&(b.0, -b.1.free_places, &b.1.facility_id))
    });
    ranked
        .into_iter()
        .take(MAX_FACILITIES)
        .map(|(proximity, row, there)| FreeFacility {
            facility_id: row.facility_id.clone(),
            comune_istat: there.istat.clone(),
            comune_nome: there.nome.clone(),
            reception_kind: row.reception_kind.clone(),
            free_places: row.free_places,
            proximity: proximity.as_str().to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use raccordo_core::domain::ComuneIstat;

    use super::*;

    fn comune(istat: &str, ambito: Option<&str>, zona: &str) -> Comune {
        Comune {
            istat: ComuneIstat::parse(istat).expect("valid"),
            nome: format!("Comune {istat}"),
            popolazione: 1000,
            zona: zona.into(),
            ambito: ambito.map(Into::into),
            quota: None,
            protocollo: true,
            domicilio: false,
        }
    }

    fn registry() -> Vec<Comune> {
        vec![
            comune("015182", Some("Rho"), "Nord Ovest"),
            comune("015009", Some("Rho"), "Nord Ovest"),
            comune("015118", Some("Legnano"), "Nord Ovest"),
            comune("015146", Some("Milano"), "Milano"),
            comune("015002", None, "Magentino"),
        ]
    }

    fn row(id: &str, istat: &str, free: i32) -> FacilityRow {
        FacilityRow {
            facility_id: id.into(),
            comune_istat: istat.into(),
            reception_kind: "CAS".into(),
            free_places: free,
        }
    }

    fn ids(near: &str, rows: &[FacilityRow]) -> Vec<(String, String)> {
        let all = registry();
        let near = all
            .iter()
            .find(|c| c.istat.as_ref() == near)
            .expect("known");
        nearest_by(near, rows, |istat| {
            all.iter().find(|c| c.istat.as_ref() == istat).cloned()
        })
        .into_iter()
        .map(|f| (f.facility_id, f.proximity))
        .collect()
    }

    #[test]
    fn the_comune_comes_first_then_its_ambito_its_zona_and_the_rest() {
        let rows = [
            row("milano", "015146", 40),
            row("legnano", "015118", 30),
            row("arese", "015009", 1),
            row("rho", "015182", 2),
        ];
        assert_eq!(
            ids("015182", &rows),
            [
                ("rho".into(), "comune".into()),
                ("arese".into(), "ambito".into()),
                ("legnano".into(), "zona".into()),
                ("milano".into(), "altro".into()),
            ]
        );
    }

    #[test]
    fn at_most_five_with_the_most_free_places_first_within_a_ring() {
        let rows: Vec<FacilityRow> = (1..=8)
            .map(|i| row(&format!("f{i}"), "015146", i))
            .collect();
        let got: Vec<String> = ids("015146", &rows).into_iter().map(|f| f.0).collect();
        assert_eq!(got, ["f8", "f7", "f6", "f5", "f4"]);
    }

    #[test]
    fn a_full_facility_or_one_in_an_unknown_comune_is_never_offered() {
        let rows = [row("full", "015182", 0), row("nowhere", "099999", 9)];
        assert!(ids("015182", &rows).is_empty());
    }

    #[test]
    fn a_comune_without_ambito_shares_no_ambito_with_another_without_one() {
        let mut all = registry();
        all.push(comune("015005", None, "Altrove"));
        let near = all[4].clone();
        let got = nearest_by(&near, &[row("x", "015005", 3)], |istat| {
            all.iter().find(|c| c.istat.as_ref() == istat).cloned()
        });
        assert_eq!(got[0].proximity, "altro");
    }

    #[test]
    fn ties_are_broken_by_id_so_every_replica_lists_the_same() {
        let rows = [row("b", "015146", 3), row("a", "015146", 3)];
        let got: Vec<String> = ids("015146", &rows).into_iter().map(|f| f.0).collect();
        assert_eq!(got, ["a", "b"]);
    }
}
