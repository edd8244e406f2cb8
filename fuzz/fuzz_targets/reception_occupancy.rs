//! `reception.occupancy.v1` from bytes to the decisions: decode,
//! `data_as::<OccupancyReport>`, then Q1 (which report stands), Q6 (over capacity), Q2–Q5
//! and the salvaguardia for the report's facility among plausible others, and Q7. Beyond
//! "no panic": `as_of` within 1900–2200, no overflow in quotas and totals, non-signatories
//! never excluded, one announcement per change and none without one.

#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

use raccordo_core::envelope::EventType;
use raccordo_fuzz::{assert_date, plausible, wire_event};
use raccordo_quota::decide::{
    Announcement, ComuneFigures, Facility, ZonaTotals, announcements, flagged, over_capacity,
    percentage, standing, supersedes, verification_deadline,
};
use raccordo_quota::occupancy::OccupancyReport;

fuzz_target!(|data: &[u8]| {
    let Some((report, body, rest)) =
        wire_event::<OccupancyReport>(data, EventType::ReceptionOccupancy)
    else {
        return;
    };
    assert_date("as_of", report.as_of, &body);
    let _ = check(&report, &mut Unstructured::new(rest));
});

fn check(report: &OccupancyReport, u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    // Q1
    let stored = plausible::date(u)?;
    assert!(
        supersedes(None, report.as_of),
        "Q1: the first report stands"
    );
    assert!(
        supersedes(Some(report.as_of), report.as_of),
        "Q1: a tie stands"
    );
    if stored != report.as_of {
        assert_ne!(
            supersedes(Some(stored), report.as_of),
            supersedes(Some(report.as_of), stored),
            "Q1: of two dates exactly one stands"
        );
    }
    // Q6
    assert_eq!(
        over_capacity(report.capacity, report.presences),
        report.presences > report.capacity
    );

    // Q2-Q5: the report's facility among others, in one zona.
    let mut facilities = vec![Facility {
        comune_istat: report.comune_istat.clone(),
        kind: report.reception_kind,
        capacity: i64::from(report.capacity),
        presences: i64::from(report.presences),
        active: report.active,
    }];
    for _ in 0..u.int_in_range(0..=8)? {
        facilities.push(plausible::facility(u)?);
    }
    let per_thousand = plausible::per_thousand(u)?;
    let ratios = plausible::ratios(u)?;
    let comuni = (0..u.int_in_range(1..=4)?)
        .map(|_| plausible::figures(u, per_thousand, &facilities))
        .collect::<arbitrary::Result<Vec<ComuneFigures>>>()?;
    let totals = ZonaTotals::of(&comuni);
    for figures in &comuni {
        assert!(figures.quota >= 0, "Q3: a negative quota");
        assert!(figures.coverage >= 0, "Q2: a negative coverage");
        assert!(percentage(figures.coverage, figures.quota).is_finite());
        let before = plausible::standing(u)?;
        let after = standing(figures, totals, ratios);
        if !figures.signatory {
            assert!(!after.excluded(), "Q4: a non-signatory excluded");
        }
        assert_eq!(after.safeguard, figures.safeguard);
        assert!(
            announcements(after, after).is_empty(),
            "Q5: no change, no word"
        );
        let said = announcements(before, after);
        let thresholds = said
            .iter()
            .filter(|a| matches!(a, Announcement::Threshold { .. }))
            .count();
        let safeguards = said.len() - thresholds;
        assert_eq!(
            thresholds,
            usize::from(before.excluded() != after.excluded())
        );
        assert_eq!(safeguards, usize::from(before.safeguard != after.safeguard));
        // Q7
        let signed_on = plausible::date(u)?;
        let today = plausible::date(u)?;
        let deadline = verification_deadline(signed_on);
        assert!(
            deadline > signed_on,
            "Q7: the deadline is after the signature"
        );
        if today < deadline {
            assert!(!flagged(figures, ratios, today, signed_on));
        }
    }
    Ok(())
}
