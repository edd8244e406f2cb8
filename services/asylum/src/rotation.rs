//! Rule A3's decision core: the smooth weighted round robin of domiciles among the comuni
//! that adhere to the rotation, each weighted by its population — pure, so its fairness is
//! tested over any number of requests without a database.
//!
//! Each request, every comune in the rotation gains its share of one assignment
//! (population / total population of the comuni in the rotation at that moment), the comune
//! with the largest credit wins (ties: the lowest ISTAT code) and pays back one whole
//! assignment. Credits are kept in [`UNIT`]ths of an assignment, so a comune's credit is
//! exactly its fair share so far minus what it received, whatever pauses and population
//! changes happened in between; the algorithm keeps every credit within (−1, 1), i.e. every
//! comune within one assignment of its fair share (nginx's smooth weighted round robin on
//! normalised weights).

use raccordo_core::domain::ComuneIstat;

/// One assignment, in credit units (`asylum_rotation.current_weight`): fine enough that the
/// rounding of a share (at most one unit per request) never adds up to anything visible.
pub const UNIT: i64 = 1_000_000_000_000;

/// A comune in the rotation, as the rotation needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub istat: ComuneIstat,
    /// Its weight; a comune of population 0 never receives a domicile.
    pub population: u64,
    /// Its credit, in [`UNIT`]ths of an assignment: fair share so far minus assignments.
    pub credit: i64,
}

/// Each member's share of one assignment, in credit units, summing to exactly [`UNIT`]:
/// the floor of its proportional share, the units left over given one each to the largest
/// remainders (ties by ISTAT), so no unit is created or lost. None when no member has a
/// population.
pub fn shares(members: &[Member]) -> Option<Vec<i64>> {
    let total: u128 = members.iter().map(|m| u128::from(m.population)).sum();
    if total == 0 {
        return None;
    }
    let unit = UNIT as u128;
    let exact: Vec<(u128, u128)> = members
        .iter()
        .map(|m| {
            let scaled = u128::from(m.population) * unit;
            (scaled / total, scaled % total)
        })
        .collect();
    let given: u128 = exact.iter().map(|(floor, _)| floor).sum();
    let left = usize::try_from(unit - given).unwrap_or(0);
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by(|&a, &b| {
        exact[b]
            .1
            .cmp(&exact[a].1)
            .then_with(|| members[a].istat.cmp(&members[b].istat))
    });
    let mut out: Vec<i64> = exact
        .iter()
        .map(|(floor, _)| i64::try_from(*floor).unwrap_or(i64::MAX))
        .collect();
    for &i in order.iter().take(left) {
        out[i] += 1;
    }
    Some(out)
}

/// Assigns one domicile among `members` (the comuni in the rotation now, paused ones left
/// out): updates their credits and returns the index of the comune chosen, or None when no
/// member has a population.
pub fn assign(members: &mut [Member]) -> Option<usize> {
    let shares = shares(members)?;
    for (member, share) in members.iter_mut().zip(&shares) {
        member.credit = member.credit.saturating_add(*share);
    }
    let chosen = (0..members.len())
        .filter(|&i| members[i].population > 0)
        .max_by(|&a, &b| {
            members[a]
                .credit
                .cmp(&members[b].credit)
                // max_by keeps the last of equals: the lower ISTAT must compare greater.
                .then_with(|| members[b].istat.cmp(&members[a].istat))
        })?;
    members[chosen].credit = members[chosen].credit.saturating_sub(UNIT);
    Some(chosen)
}

/// The comune the next request would go to, without changing anything (for `list`).
pub fn peek(members: &[Member]) -> Option<usize> {
    let mut copy = members.to_vec();
    assign(&mut copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(istat: &str, population: u64) -> Member {
        Member {
            istat: ComuneIstat::parse(istat).expect("valid"),
            population,
            credit: 0,
        }
    }

    /// A deterministic pseudo-random sequence (no dependency for a property test).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, below: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % below
        }
    }

    fn istat(i: u64) -> String {
        format!("015{:03}", i + 1)
    }

    #[test]
    fn shares_sum_to_one_assignment_exactly() {
        let mut rng = Lcg(7);
        for _ in 0..200 {
            let n = rng.next(40) + 1;
            let members: Vec<Member> = (0..n)
                .map(|i| member(&istat(i), rng.next(2_000_000)))
                .collect();
            if let Some(shares) = shares(&members) {
                assert_eq!(shares.iter().sum::<i64>(), UNIT);
            }
        }
    }

    #[test]
    fn weights_three_to_one_give_a_smooth_sequence_with_ties_to_the_lower_istat() {
        let mut members = vec![member("015002", 3000), member("015001", 1000)];
        members.sort_by(|a, b| a.istat.cmp(&b.istat));

        let picked: Vec<&str> = (0..8)
            .map(|_| {
                let i = assign(&mut members).expect("someone");
                if i == 0 { "015001" } else { "015002" }
            })
            .collect();

        assert_eq!(
            picked,
            [
                "015002", "015001", "015002", "015002", "015002", "015001", "015002", "015002"
            ]
        );
        assert!(members.iter().all(|m| m.credit == 0), "{members:?}");
    }

    #[test]
    fn equal_weights_go_round_in_istat_order() {
        let mut members = vec![
            member("015001", 10),
            member("015002", 10),
            member("015003", 10),
        ];

        let picked: Vec<usize> = (0..6)
            .map(|_| assign(&mut members).expect("someone"))
            .collect();

        assert_eq!(picked, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn every_comune_stays_within_one_assignment_of_its_fair_share() {
        let mut rng = Lcg(42);
        for _ in 0..30 {
            let n = rng.next(30) + 2;
            let mut members: Vec<Member> = (0..n)
                .map(|i| member(&istat(i), rng.next(1_500_000) + 1))
                .collect();
            let total: u64 = members.iter().map(|m| m.population).sum();
            let mut counts = vec![0u64; members.len()];
            for k in 1..=2000u64 {
                let i = assign(&mut members).expect("someone");
                counts[i] += 1;
                for (m, c) in members.iter().zip(&counts) {
                    let fair = k as f64 * m.population as f64 / total as f64;
                    assert!((fair - *c as f64).abs() < 1.0, "{m:?} {c} {fair}");
                }
            }
        }
    }

    #[test]
    fn a_credit_is_the_fair_share_minus_the_assignments_across_changes_of_the_rotation() {
        // Members come and go (pauses) and change population; credits stay exact.
        let mut rng = Lcg(3);
        let all: Vec<Member> = (0..8).map(|i| member(&istat(i), 1)).collect();
        let mut credits = vec![0i64; all.len()];
        let mut fair = vec![0f64; all.len()];
        let mut counts = vec![0i64; all.len()];
        for _ in 0..3000 {
            let active: Vec<usize> = (0..all.len()).filter(|_| rng.next(4) != 0).collect();
            let mut members: Vec<Member> = active
                .iter()
                .map(|&i| Member {
                    population: rng.next(100_000) + 1,
                    credit: credits[i],
                    ..all[i].clone()
                })
                .collect();
            let total: u64 = members.iter().map(|m| m.population).sum();
            let Some(chosen) = assign(&mut members) else {
                continue;
            };
            for (m, &i) in members.iter().zip(&active) {
                credits[i] = m.credit;
                fair[i] += m.population as f64 / total as f64;
            }
            counts[active[chosen]] += 1;
        }
        for i in 0..all.len() {
            let expected = fair[i] - counts[i] as f64;
            let credit = credits[i] as f64 / UNIT as f64;
            assert!((expected - credit).abs() < 1e-6, "{i}: {expected} {credit}");
        }
        assert_eq!(credits.iter().sum::<i64>(), 0);
    }

    #[test]
    fn a_comune_without_population_never_receives_and_none_at_all_means_no_assignment() {
        let mut members = vec![member("015001", 0), member("015002", 5)];
        for _ in 0..5 {
            assert_eq!(assign(&mut members), Some(1));
        }
        let mut empty = vec![member("015001", 0)];
        assert_eq!(assign(&mut empty), None);
        assert_eq!(assign(&mut []), None);
    }

    #[test]
    fn peek_names_the_next_comune_and_changes_nothing() {
        let members = vec![member("015001", 1), member("015002", 2)];
        let next = peek(&members);
        let mut copy = members.clone();
        assert_eq!(next, assign(&mut copy));
        assert!(members.iter().all(|m| m.credit == 0));
    }
}
