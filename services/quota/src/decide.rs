//! Rules Q1–Q7 and the salvaguardia as pure functions: quotas, coverage, the state of a
//! comune, and which announcements a change of state asks for. No I/O: the worker loads the
//! figures under its locks and writes what these functions decide.

use serde::Serialize;
use time::{Date, Month};

use raccordo_core::domain::ComuneIstat;
use raccordo_core::settings::QuotaSettings;

use crate::occupancy::ReceptionKind;

/// The thresholds of art. 2.3 and 3.2, from `quota.*` settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratios {
    /// Coverage / quota at which a signatory is excluded from tenders (default 0.5).
    pub exclusion_ratio: f64,
    /// Coverage / quota of a zona at which all its signatories are excluded (default 1.0).
    pub zone_full_ratio: f64,
}

impl From<&QuotaSettings> for Ratios {
    fn from(s: &QuotaSettings) -> Self {
        Self {
            exclusion_ratio: s.exclusion_ratio,
            zone_full_ratio: s.zone_full_ratio,
        }
    }
}

/// Q3: the quota of a comune — the Prefettura's table where given; otherwise 6 places up to
/// 2000 inhabitants, else `population × per_thousand / 1000` rounded half up (art. 1.1).
///
/// Integer arithmetic on `per_thousand` in ten-thousandths, so that 17.5 is 18 exactly and
/// never 17 by a floating-point hair.
pub fn quota_of(popolazione: i32, table_quota: Option<i32>, per_thousand: f64) -> i64 {
    if let Some(q) = table_quota {
        return i64::from(q);
    }
    if popolazione <= 2000 {
        return 6;
    }
    let per_ten_million = (per_thousand * 10_000.0).round() as i64;
    // Saturating: the settings accept any positive `per_thousand`, and an absurd one must
    // give an absurd quota, not an overflow (found by fuzz/fuzz_targets/reception_occupancy.rs).
    i64::from(popolazione)
        .saturating_mul(per_ten_million)
        .saturating_add(5_000_000)
        / 10_000_000
}

/// One facility as its newest report describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facility {
    pub comune_istat: ComuneIstat,
    pub kind: ReceptionKind,
    pub capacity: i64,
    pub presences: i64,
    pub active: bool,
}

impl Facility {
    /// Q2: what this facility adds to its comune's coverage — the places of an active SPRAR
    /// project, the presences in a CAS (art. 3.1).
    pub fn coverage(&self) -> i64 {
        match self.kind {
            ReceptionKind::Sprar if self.active => self.capacity,
            ReceptionKind::Sprar => 0,
            ReceptionKind::Cas => self.presences,
        }
    }

    /// Salvaguardia: an active SPRAR project protects its comune from further CAS placements.
    pub fn protects(&self) -> bool {
        self.kind == ReceptionKind::Sprar && self.active
    }
}

/// Q1: whether a report dated `report_as_of` replaces the stored one (`None`: none yet).
/// A later date replaces; the same date replaces too (the later arrival stands).
pub fn supersedes(stored_as_of: Option<Date>, report_as_of: Date) -> bool {
    stored_as_of.is_none_or(|stored| report_as_of >= stored)
}

/// Q6: more people hosted than places.
pub fn over_capacity(capacity: u32, presences: u32) -> bool {
    presences > capacity
}

/// A comune's figures, computed from the registry and the facilities' newest reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComuneFigures {
    pub istat: ComuneIstat,
    /// Signed the protocol: only signatories are excluded from tenders.
    pub signatory: bool,
    pub quota: i64,
    pub coverage: i64,
    /// At least one active SPRAR facility.
    pub safeguard: bool,
}

impl ComuneFigures {
    /// The figures of a comune from its facilities (those of other comuni are ignored).
    pub fn compute(
        istat: &ComuneIstat,
        signatory: bool,
        quota: i64,
        facilities: &[Facility],
    ) -> Self {
        let own = facilities.iter().filter(|f| &f.comune_istat == istat);
        let (coverage, safeguard) = own.fold((0, false), |(c, s), f| {
            (c + f.coverage(), s || f.protects())
        });
        Self {
            istat: istat.clone(),
            signatory,
            quota,
            coverage,
            safeguard,
        }
    }
}

/// A zona's totals (Q3: sums over its comuni).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ZonaTotals {
    pub quota: i64,
    pub coverage: i64,
}

impl ZonaTotals {
    /// Sums `comuni`, which must be every comune of one zona.
    pub fn of(comuni: &[ComuneFigures]) -> Self {
        comuni.iter().fold(Self::default(), |t, c| Self {
            quota: t.quota + c.quota,
            coverage: t.coverage + c.coverage,
        })
    }
}

pub use raccordo_core::payload::Rule;

/// The state of a comune that the hub announces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    /// `Some(rule)` while excluded from tenders; every comune starts included.
    pub rule: Option<Rule>,
    /// Under the salvaguardia.
    pub safeguard: bool,
}

impl Standing {
    /// Excluded from tenders.
    pub fn excluded(&self) -> bool {
        self.rule.is_some()
    }
}

/// `coverage / quota` as a fraction; 0 when the quota is 0.
pub fn ratio(coverage: i64, quota: i64) -> f64 {
    if quota <= 0 {
        0.0
    } else {
        coverage as f64 / quota as f64
    }
}

/// `coverage / quota` in percent, one decimal.
pub fn percentage(coverage: i64, quota: i64) -> f64 {
    (ratio(coverage, quota) * 1000.0).round() / 10.0
}

/// Whether `coverage` reaches `threshold` of `quota`. A quota of 0 asks nothing, so it is
/// never "reached" (a comune with no quota is not excluded by it).
pub fn reaches(coverage: i64, quota: i64, threshold: f64) -> bool {
    // The tolerance absorbs float noise in `threshold × quota` (0.5 × 89 = 44.5 exactly, but
    // 0.3 × 10 is 3.0000000000000004).
    quota > 0 && coverage as f64 >= threshold * quota as f64 - 1e-9
}

/// Q4: the standing of one comune of a zona whose totals are `zona`. The comune rule wins
/// when both apply; non-signatories are never excluded.
pub fn standing(comune: &ComuneFigures, zona: ZonaTotals, ratios: Ratios) -> Standing {
    let rule = if !comune.signatory {
        None
    } else if reaches(comune.coverage, comune.quota, ratios.exclusion_ratio) {
        Some(Rule::Comune)
    } else if reaches(zona.coverage, zona.quota, ratios.zone_full_ratio) {
        Some(Rule::Zona)
    } else {
        None
    };
    Standing {
        rule,
        safeguard: comune.safeguard,
    }
}

/// What a change of standing must announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announcement {
    /// Q5: `quota.threshold` — excluded from tenders now (with the rule), or included again
    /// (with the rule that had applied).
    Threshold { excluded: bool, rule: Rule },
    /// `quota.safeguard`: entered (true) or left (false) the salvaguardia.
    Safeguard { entered: bool },
}

/// Q5 and salvaguardia: exactly one announcement per change, none when nothing changed.
/// A change of rule while the comune stays excluded is not a change of state: the
/// stazione appaltante still must not tender there.
pub fn announcements(before: Standing, after: Standing) -> Vec<Announcement> {
    let mut out = Vec::new();
    match (before.rule, after.rule) {
        (None, Some(rule)) => out.push(Announcement::Threshold {
            excluded: true,
            rule,
        }),
        (Some(rule), None) => out.push(Announcement::Threshold {
            excluded: false,
            rule,
        }),
        _ => {}
    }
    if before.safeguard != after.safeguard {
        out.push(Announcement::Safeguard {
            entered: after.safeguard,
        });
    }
    out
}

/// What the hub stored of a comune: the standing it announced, and the figures it was
/// decided on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ComuneState {
    pub standing: Standing,
    pub coverage: i64,
    pub quota: i64,
}

/// Decides one comune of a zona whose totals are `zona`: its next state and what to
/// announce (Q4, Q5). Time plays no part: a report's date was weighed by [`supersedes`].
pub fn decide(
    state: &ComuneState,
    comune: &ComuneFigures,
    zona: ZonaTotals,
    ratios: &Ratios,
) -> (ComuneState, Vec<Announcement>) {
    let after = standing(comune, zona, *ratios);
    let next = ComuneState {
        standing: after,
        coverage: comune.coverage,
        quota: comune.quota,
    };
    (next, announcements(state.standing, after))
}

/// Q7: the date from which comuni still below the ratio are flagged — six months after the
/// protocol was signed (art. 2.8), the same day of the month or its last day.
pub fn verification_deadline(signed_on: Date) -> Date {
    let mut year = signed_on.year();
    let mut month = u8::from(signed_on.month()) + 6;
    if month > 12 {
        month -= 12;
        year += 1;
    }
    let month = Month::try_from(month).unwrap_or(Month::December);
    let day = signed_on.day().min(time::util::days_in_month(month, year));
    Date::from_calendar_date(year, month, day).unwrap_or(signed_on)
}

/// Q7: a signatory still below the exclusion ratio once the deadline has passed.
pub fn flagged(comune: &ComuneFigures, ratios: Ratios, today: Date, signed_on: Date) -> bool {
    today >= verification_deadline(signed_on)
        && comune.signatory
        && !reaches(comune.coverage, comune.quota, ratios.exclusion_ratio)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    const RATIOS: Ratios = Ratios {
        exclusion_ratio: 0.5,
        zone_full_ratio: 1.0,
    };

    fn istat(s: &str) -> ComuneIstat {
        ComuneIstat::parse(s).expect("valid")
    }

    fn cas(comune: &str, capacity: i64, presences: i64) -> Facility {
        Facility {
            comune_istat: istat(comune),
            kind: ReceptionKind::Cas,
            capacity,
            presences,
            active: true,
        }
    }

    fn sprar(comune: &str, capacity: i64, presences: i64, active: bool) -> Facility {
        Facility {
            kind: ReceptionKind::Sprar,
            active,
            ..cas(comune, capacity, presences)
        }
    }

    fn figures(comune: &str, quota: i64, coverage: i64) -> ComuneFigures {
        ComuneFigures {
            istat: istat(comune),
            signatory: true,
            quota,
            coverage,
            safeguard: false,
        }
    }

    fn zona(quota: i64, coverage: i64) -> ZonaTotals {
        ZonaTotals { quota, coverage }
    }

    #[test]
    fn q3_an_absurd_per_thousand_saturates_instead_of_overflowing() {
        let quota = quota_of(i32::MAX, None, 1e300);
        assert_eq!(quota, i64::MAX / 10_000_000);
        let zona = ZonaTotals::of(&vec![figures("015146", quota, 0); 200]);
        assert!(zona.quota > 0);
    }

    #[test]
    fn q1_a_newer_report_supersedes_and_an_older_one_does_not() {
        assert!(supersedes(None, date!(2026 - 03 - 01)));
        assert!(supersedes(
            Some(date!(2026 - 03 - 01)),
            date!(2026 - 03 - 02)
        ));
        assert!(!supersedes(
            Some(date!(2026 - 03 - 02)),
            date!(2026 - 03 - 01)
        ));
    }

    #[test]
    fn q1_of_two_reports_with_the_same_date_the_later_arrival_stands() {
        assert!(supersedes(
            Some(date!(2026 - 03 - 01)),
            date!(2026 - 03 - 01)
        ));
    }

    #[test]
    fn q2_coverage_counts_active_sprar_places_and_cas_presences() {
        let facilities = vec![
            sprar("015140", 10, 3, true),
            sprar("015140", 7, 7, false),
            cas("015140", 20, 12),
            cas("015191", 50, 50),
        ];
        let f = ComuneFigures::compute(&istat("015140"), true, 47, &facilities);
        assert_eq!(f.coverage, 10 + 12);
        assert!(f.safeguard);
    }

    #[test]
    fn q2_an_inactive_sprar_project_neither_counts_nor_protects() {
        let f = ComuneFigures::compute(
            &istat("015140"),
            true,
            47,
            &[sprar("015140", 10, 10, false)],
        );
        assert_eq!(f.coverage, 0);
        assert!(!f.safeguard);
    }

    #[test]
    fn q3_comuni_up_to_2000_inhabitants_get_6_places() {
        assert_eq!(quota_of(1952, None, 2.8), 6);
        assert_eq!(quota_of(2000, None, 2.8), 6);
        assert_eq!(quota_of(0, None, 2.8), 6);
    }

    #[test]
    fn q3_larger_comuni_get_per_thousand_rounded_half_up() {
        assert_eq!(quota_of(2001, None, 2.8), 6); // 5.6028
        assert_eq!(quota_of(16774, None, 2.8), 47); // 46.9672
        assert_eq!(quota_of(12500, None, 2.8), 35); // 35.0
        // 6250 × 2.8 / 1000 = 17.5 exactly: halves go up.
        assert_eq!(quota_of(6250, None, 2.8), 18);
        // 3125 × 2.8 / 1000 = 8.75 → 9; 2.5 per thousand of 3000 = 7.5 → 8.
        assert_eq!(quota_of(3125, None, 2.8), 9);
        assert_eq!(quota_of(3000, None, 2.5), 8);
    }

    #[test]
    fn q3_the_table_quota_overrides_the_computation() {
        assert_eq!(quota_of(30994, Some(89), 2.8), 89);
        assert_eq!(quota_of(1500, Some(2), 2.8), 2);
    }

    #[test]
    fn q3_a_zona_quota_and_coverage_are_sums() {
        let t = ZonaTotals::of(&[figures("015140", 47, 10), figures("015191", 21, 4)]);
        assert_eq!(t, zona(68, 14));
    }

    #[test]
    fn q4_half_the_quota_excludes_a_signatory_by_the_comune_rule() {
        let below = standing(&figures("015140", 47, 23), zona(500, 23), RATIOS);
        let at = standing(&figures("015140", 47, 24), zona(500, 24), RATIOS);
        let even = standing(&figures("015140", 46, 23), zona(500, 23), RATIOS);
        assert_eq!(below.rule, None);
        assert_eq!(at.rule, Some(Rule::Comune));
        assert_eq!(even.rule, Some(Rule::Comune));
    }

    #[test]
    fn q4_a_full_zona_excludes_every_signatory_by_the_zona_rule() {
        let s = standing(&figures("015140", 47, 0), zona(500, 500), RATIOS);
        assert_eq!(s.rule, Some(Rule::Zona));
        let short = standing(&figures("015140", 47, 0), zona(500, 499), RATIOS);
        assert_eq!(short.rule, None);
    }

    #[test]
    fn q4_the_comune_rule_wins_when_both_apply() {
        let s = standing(&figures("015140", 47, 30), zona(500, 600), RATIOS);
        assert_eq!(s.rule, Some(Rule::Comune));
    }

    #[test]
    fn q4_a_non_signatory_is_never_excluded() {
        let c = ComuneFigures {
            signatory: false,
            ..figures("015140", 47, 47)
        };
        assert_eq!(standing(&c, zona(47, 47), RATIOS).rule, None);
    }

    #[test]
    fn q4_a_quota_of_zero_excludes_nobody() {
        assert_eq!(
            standing(&figures("015140", 0, 0), zona(0, 0), RATIOS).rule,
            None
        );
    }

    #[test]
    fn q5_crossing_up_and_back_down_announces_once_each_way() {
        let included = Standing::default();
        let excluded = Standing {
            rule: Some(Rule::Comune),
            safeguard: false,
        };
        assert_eq!(
            announcements(included, excluded),
            vec![Announcement::Threshold {
                excluded: true,
                rule: Rule::Comune
            }]
        );
        assert_eq!(
            announcements(excluded, included),
            vec![Announcement::Threshold {
                excluded: false,
                rule: Rule::Comune
            }]
        );
    }

    #[test]
    fn q5_no_change_of_state_announces_nothing() {
        let excluded = Standing {
            rule: Some(Rule::Comune),
            safeguard: false,
        };
        assert!(announcements(excluded, excluded).is_empty());
        assert!(announcements(Standing::default(), Standing::default()).is_empty());
    }

    #[test]
    fn q5_a_change_of_rule_while_excluded_is_not_a_change_of_state() {
        let by_comune = Standing {
            rule: Some(Rule::Comune),
            safeguard: false,
        };
        let by_zona = Standing {
            rule: Some(Rule::Zona),
            safeguard: false,
        };
        assert!(announcements(by_comune, by_zona).is_empty());
    }

    #[test]
    fn zona_rule_a_zona_reaching_its_quota_flips_every_signatory_at_once() {
        let comuni = [
            figures("015140", 47, 20),
            figures("015191", 21, 0),
            ComuneFigures {
                signatory: false,
                ..figures("015192", 32, 0)
            },
            figures("015195", 10, 10),
        ];
        let before = ZonaTotals {
            quota: 110,
            coverage: 30,
        };
        let after = ZonaTotals::of(&[
            figures("015140", 47, 100),
            figures("015191", 21, 0),
            figures("015192", 32, 0),
            figures("015195", 10, 10),
        ]);
        assert_eq!(after, zona(110, 110));
        let flips: Vec<Vec<Announcement>> = comuni
            .iter()
            .map(|c| {
                let now = ComuneFigures {
                    coverage: if c.istat.as_ref() == "015140" {
                        100
                    } else {
                        c.coverage
                    },
                    ..c.clone()
                };
                announcements(standing(c, before, RATIOS), standing(&now, after, RATIOS))
            })
            .collect();
        // 015140 by its own coverage, 015191 by the zona; the non-signatory never; 015195
        // was already excluded by its own coverage.
        assert_eq!(
            flips[0],
            vec![Announcement::Threshold {
                excluded: true,
                rule: Rule::Comune
            }]
        );
        assert_eq!(
            flips[1],
            vec![Announcement::Threshold {
                excluded: true,
                rule: Rule::Zona
            }]
        );
        assert!(flips[2].is_empty());
        assert!(flips[3].is_empty());
    }

    #[test]
    fn q6_more_presences_than_places_is_over_capacity() {
        assert!(over_capacity(10, 11));
        assert!(!over_capacity(10, 10));
        assert!(!over_capacity(0, 0));
    }

    #[test]
    fn q7_the_deadline_is_six_months_after_signing() {
        assert_eq!(
            verification_deadline(date!(2017 - 05 - 18)),
            date!(2017 - 11 - 18)
        );
        assert_eq!(
            verification_deadline(date!(2017 - 08 - 31)),
            date!(2018 - 02 - 28)
        );
    }

    #[test]
    fn q7_signatories_below_the_ratio_are_flagged_after_the_deadline_only() {
        let signed = date!(2017 - 05 - 18);
        let below = figures("015140", 47, 23);
        let above = figures("015140", 47, 24);
        let outsider = ComuneFigures {
            signatory: false,
            ..below.clone()
        };
        assert!(!flagged(&below, RATIOS, date!(2017 - 11 - 17), signed));
        assert!(flagged(&below, RATIOS, date!(2017 - 11 - 18), signed));
        assert!(!flagged(&above, RATIOS, date!(2018 - 01 - 01), signed));
        assert!(!flagged(&outsider, RATIOS, date!(2018 - 01 - 01), signed));
    }

    #[test]
    fn salvaguardia_entering_and_leaving_each_announce_once() {
        let none = Standing::default();
        let safe = Standing {
            rule: None,
            safeguard: true,
        };
        assert_eq!(
            announcements(none, safe),
            vec![Announcement::Safeguard { entered: true }]
        );
        assert_eq!(
            announcements(safe, none),
            vec![Announcement::Safeguard { entered: false }]
        );
        assert!(announcements(safe, safe).is_empty());
    }

    #[test]
    fn percentages_have_one_decimal_and_survive_a_zero_quota() {
        assert_eq!(percentage(24, 47), 51.1);
        assert_eq!(percentage(5, 0), 0.0);
        assert_eq!(ratio(1, 2), 0.5);
    }
}
