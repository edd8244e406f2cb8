//! Rules C1–C5 as pure functions of a procedure's state, the new event and the time the
//! alert is made: the procedure's next state, what to send, and what personal data the
//! hub may hold afterwards. The only place a procedure's state changes.
//!
//! The state is non-personal (the consent in force, the steps); the personal data itself
//! never enters this module — only the verdict on whether it may be held.

use time::{Date, OffsetDateTime};

use raccordo_core::clock::rome_date;

use crate::event::{ConsentDecision, Step};

/// A step as the hub keeps it: non-personal history (CONTRACT C1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    pub step: Step,
    pub occurred_on: Date,
    pub next_access_at: Option<OffsetDateTime>,
    pub info_material_delivered: Option<bool>,
}

/// The citizen's decision in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentInForce {
    pub decision: ConsentDecision,
    pub recorded_at: OffsetDateTime,
}

/// What the hub knows of a procedure before the new event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcedureState {
    /// The latest decision (by `recorded_at`), if any was ever recorded.
    pub consent: Option<ConsentInForce>,
    /// Steps in the order they occurred (ties: arrival).
    pub history: Vec<StepRecord>,
}

impl ProcedureState {
    /// Whether the citizen's decision in force is `granted`.
    pub fn consent_active(&self) -> bool {
        self.consent
            .is_some_and(|c| c.decision == ConsentDecision::Granted)
    }
}

/// The new event, without its personal part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    Step(&'a StepRecord),
    Consent {
        decision: ConsentDecision,
        recorded_at: OffsetDateTime,
    },
}

pub use raccordo_core::payload::Trigger;

/// A notification the decision asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// `eviction.alert` to the comune's and ambito's servizi sociali.
    Alert { trigger: Trigger, urgent: bool },
    /// `eviction.consent_revoked` to the same referents (C4).
    ConsentRevoked,
}

/// What may happen to the procedure's personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Personal {
    /// Drop the personal data the event carries (C1 without consent; a stale decision);
    /// whatever is already held stays as it is.
    Drop,
    /// Consent is active: hold the clear docket number and the shared data.
    Hold,
    /// Consent was revoked: delete whatever is held (C4).
    Forget,
}

/// The verdict on one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub notices: Vec<Notice>,
    pub personal: Personal,
    /// For a consent decision: whether it is now the one in force (false when it changes
    /// nothing: a grant older than the decision in force, or not recorded after the
    /// revocation in force, or dated in the future after one — C8).
    pub consent_applied: bool,
    /// For a decision applied: the time it counts from, which a later grant must follow
    /// (C8). A revocation counts from no earlier than every grant received before it, and
    /// no decision counts from a time after it was received.
    pub consent_effective_at: Option<OffsetDateTime>,
}

/// The settings the rules read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// `eviction.urgent_within_days` (C5).
    pub urgent_within_days: u32,
}

/// Decides on one event at `now`: the procedure's next state and the verdict.
pub fn decide(
    state: &ProcedureState,
    input: Input<'_>,
    now: OffsetDateTime,
    rules: &Rules,
) -> (ProcedureState, Decision) {
    let decision = verdict(state, input, now, rules.urgent_within_days);
    let mut next = state.clone();
    match input {
        Input::Step(step) => {
            next.history.push(step.clone());
            // Stable: steps of the same day keep their arrival order.
            next.history.sort_by_key(|s| s.occurred_on);
        }
        Input::Consent {
            decision: consent, ..
        } => {
            if let Some(recorded_at) = decision.consent_effective_at {
                next.consent = Some(ConsentInForce {
                    decision: consent,
                    recorded_at,
                });
            }
        }
    }
    (next, decision)
}

fn verdict(
    state: &ProcedureState,
    input: Input<'_>,
    now: OffsetDateTime,
    urgent_within_days: u32,
) -> Decision {
    match input {
        Input::Step(step) => {
            if !state.consent_active() {
                // C1: the step counts in the statistics only.
                return Decision::nothing();
            }
            let mut history = state.history.clone();
            history.push(step.clone());
            // C3, C5
            let urgent = is_urgent(next_access(&history), now, urgent_within_days);
            Decision {
                notices: vec![Notice::Alert {
                    trigger: Trigger::Step,
                    urgent,
                }],
                personal: Personal::Hold,
                consent_applied: false,
                consent_effective_at: None,
            }
        }
        Input::Consent {
            decision: ConsentDecision::Revoked,
            recorded_at,
        } => {
            // C8: a revocation always wins. It counts from no earlier than the decision in
            // force, whatever that one's recorded_at, and from no later than now.
            let effective = state.consent.map_or(recorded_at.min(now), |c| {
                recorded_at.min(now).max(c.recorded_at)
            });
            Decision {
                // C4: only referents who were told of the procedure hear of the revocation.
                notices: if state.consent_active() {
                    vec![Notice::ConsentRevoked]
                } else {
                    vec![]
                },
                personal: Personal::Forget,
                consent_applied: true,
                consent_effective_at: Some(effective),
            }
        }
        Input::Consent {
            decision: ConsentDecision::Granted,
            recorded_at,
        } => {
            let applies = match state.consent {
                None => true,
                // C8: only a grant recorded after the revocation, and not in the future,
                // gives consent again; an old grant replayed never does.
                Some(c) if c.decision == ConsentDecision::Revoked => {
                    recorded_at > c.recorded_at && recorded_at <= now
                }
                // Of two grants, the later recorded stands (the later arrival on a tie).
                Some(c) => recorded_at >= c.recorded_at,
            };
            if !applies {
                // Its personal data is dropped; what is held for the decision in force stays.
                return Decision::nothing();
            }
            let effective = state.consent.map_or(recorded_at.min(now), |c| {
                recorded_at.min(now).max(c.recorded_at)
            });
            // C2 (and again after a revocation: consent may be granted anew).
            Decision {
                notices: vec![Notice::Alert {
                    trigger: Trigger::Consent,
                    urgent: is_urgent(next_access(&state.history), now, urgent_within_days),
                }],
                personal: Personal::Hold,
                consent_applied: true,
                consent_effective_at: Some(effective),
            }
        }
    }
}

impl Decision {
    /// Nothing sent, the event's personal data dropped, no consent applied.
    fn nothing() -> Self {
        Decision {
            notices: vec![],
            personal: Personal::Drop,
            consent_applied: false,
            consent_effective_at: None,
        }
    }
}

/// The next access the procedure knows of: the one announced by the latest step (by
/// `occurred_on`; of steps on the same day, the later arrival) that announced one.
pub fn next_access(history: &[StepRecord]) -> Option<OffsetDateTime> {
    history
        .iter()
        .filter(|s| s.next_access_at.is_some())
        .max_by_key(|s| s.occurred_on)
        .and_then(|s| s.next_access_at)
}

/// C5: the access falls on a Europe/Rome calendar day from today to `within_days` days
/// ahead. An access earlier today is still urgent: the protocol asks for an appointment
/// "anche il giorno dello sfratto esecutivo" (art. 3 lett. b).
pub fn is_urgent(
    next_access: Option<OffsetDateTime>,
    now: OffsetDateTime,
    within_days: u32,
) -> bool {
    next_access.is_some_and(|at| {
        let days = (rome_date(at) - rome_date(now)).whole_days();
        (0..=i64::from(within_days)).contains(&days)
    })
}

/// Whole Europe/Rome days from `now` to the access (negative when past).
pub fn days_until(at: OffsetDateTime, now: OffsetDateTime) -> i64 {
    (rome_date(at) - rome_date(now)).whole_days()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    const NOW: OffsetDateTime = datetime!(2026-03-02 10:00 +01:00);
    const RULES: Rules = Rules {
        urgent_within_days: 7,
    };

    fn step(step: Step, on: Date, next_access_at: Option<OffsetDateTime>) -> StepRecord {
        StepRecord {
            step,
            occurred_on: on,
            next_access_at,
            info_material_delivered: Some(true),
        }
    }

    fn grant(at: OffsetDateTime) -> Input<'static> {
        Input::Consent {
            decision: ConsentDecision::Granted,
            recorded_at: at,
        }
    }

    fn revoke(at: OffsetDateTime) -> Input<'static> {
        Input::Consent {
            decision: ConsentDecision::Revoked,
            recorded_at: at,
        }
    }

    /// Decides, and moves `state` on to the next one.
    fn run(state: &mut ProcedureState, input: Input<'_>) -> Decision {
        let (next, d) = decide(state, input, NOW, &RULES);
        *state = next;
        d
    }

    fn alert(trigger: Trigger, urgent: bool) -> Vec<Notice> {
        vec![Notice::Alert { trigger, urgent }]
    }

    #[test]
    fn c1_a_step_without_consent_sends_nothing_and_keeps_nothing() {
        let mut state = ProcedureState::default();
        let s = step(Step::Intimazione, date!(2026 - 02 - 01), None);
        let d = run(&mut state, Input::Step(&s));
        assert!(d.notices.is_empty());
        assert_eq!(d.personal, Personal::Drop);
    }

    #[test]
    fn c1_an_urgent_step_without_consent_still_sends_nothing() {
        let mut state = ProcedureState::default();
        let s = step(
            Step::Accesso,
            date!(2026 - 03 - 01),
            Some(datetime!(2026-03-03 09:00 +01:00)),
        );
        let d = run(&mut state, Input::Step(&s));
        assert!(d.notices.is_empty());
        assert_eq!(d.personal, Personal::Drop);
    }

    #[test]
    fn c2_consent_before_any_step_alerts_with_the_contact_only() {
        let mut state = ProcedureState::default();
        let d = run(&mut state, grant(NOW));
        assert_eq!(d.notices, alert(Trigger::Consent, false));
        assert_eq!(d.personal, Personal::Hold);
        assert!(d.consent_applied);
    }

    #[test]
    fn c2_consent_after_steps_alerts_once_with_the_known_history() {
        let mut state = ProcedureState::default();
        for s in [
            step(Step::Intimazione, date!(2026 - 01 - 10), None),
            step(Step::Convalida, date!(2026 - 02 - 01), None),
        ] {
            assert!(run(&mut state, Input::Step(&s)).notices.is_empty());
        }
        let d = run(&mut state, grant(NOW));
        assert_eq!(d.notices, alert(Trigger::Consent, false));
        assert_eq!(state.history.len(), 2, "the alert carries both steps");
    }

    #[test]
    fn c3_each_step_while_consent_is_active_alerts() {
        let mut state = ProcedureState::default();
        run(&mut state, grant(NOW));
        for s in [
            step(Step::Precetto, date!(2026 - 02 - 20), None),
            step(Step::AvvisoSloggio, date!(2026 - 02 - 25), None),
        ] {
            let d = run(&mut state, Input::Step(&s));
            assert_eq!(d.notices, alert(Trigger::Step, false));
            assert_eq!(d.personal, Personal::Hold);
        }
    }

    #[test]
    fn c3_consent_between_steps_gates_only_the_later_ones() {
        let mut state = ProcedureState::default();
        let before = step(Step::Intimazione, date!(2026 - 01 - 10), None);
        let after = step(Step::Convalida, date!(2026 - 02 - 10), None);
        assert!(run(&mut state, Input::Step(&before)).notices.is_empty());
        assert_eq!(
            run(&mut state, grant(NOW)).notices,
            alert(Trigger::Consent, false)
        );
        assert_eq!(
            run(&mut state, Input::Step(&after)).notices,
            alert(Trigger::Step, false)
        );
    }

    #[test]
    fn c4_revocation_tells_the_referents_and_forgets_the_personal_data() {
        let mut state = ProcedureState::default();
        run(&mut state, grant(NOW));
        let d = run(&mut state, revoke(NOW + time::Duration::hours(1)));
        assert_eq!(d.notices, vec![Notice::ConsentRevoked]);
        assert_eq!(d.personal, Personal::Forget);
        assert!(!state.consent_active());
    }

    #[test]
    fn c4_steps_after_revocation_send_nothing() {
        let mut state = ProcedureState::default();
        run(&mut state, grant(NOW));
        run(&mut state, revoke(NOW + time::Duration::hours(1)));
        let s = step(
            Step::Accesso,
            date!(2026 - 03 - 01),
            Some(datetime!(2026-03-03 09:00 +01:00)),
        );
        let d = run(&mut state, Input::Step(&s));
        assert!(d.notices.is_empty());
        assert_eq!(d.personal, Personal::Drop);
    }

    #[test]
    fn c4_a_revocation_without_consent_tells_nobody() {
        let mut state = ProcedureState::default();
        let d = run(&mut state, revoke(NOW));
        assert!(d.notices.is_empty(), "the referents never heard of it");
        assert_eq!(d.personal, Personal::Forget);
        let again = run(&mut state, revoke(NOW + time::Duration::hours(1)));
        assert!(again.notices.is_empty());
    }

    #[test]
    fn c4_consent_granted_again_after_a_revocation_alerts_again() {
        let mut state = ProcedureState::default();
        run(&mut state, grant(NOW - time::Duration::hours(3)));
        run(&mut state, revoke(NOW - time::Duration::hours(2)));
        let d = run(&mut state, grant(NOW - time::Duration::hours(1)));
        assert_eq!(d.notices, alert(Trigger::Consent, false));
        assert_eq!(d.personal, Personal::Hold);
        let s = step(Step::Precetto, date!(2026 - 03 - 01), None);
        assert_eq!(
            run(&mut state, Input::Step(&s)).notices,
            alert(Trigger::Step, false)
        );
    }

    #[test]
    fn c4_a_grant_recorded_before_a_revocation_but_arriving_after_it_changes_nothing() {
        let mut state = ProcedureState::default();
        run(&mut state, revoke(NOW));
        let d = run(&mut state, grant(NOW - time::Duration::hours(1)));
        assert!(d.notices.is_empty());
        assert_eq!(d.personal, Personal::Drop);
        assert!(!d.consent_applied);
        assert!(!state.consent_active());
    }

    #[test]
    fn c8_a_revocation_recorded_before_the_grant_in_force_still_revokes_it() {
        let mut state = ProcedureState::default();
        run(&mut state, grant(NOW));
        let d = run(&mut state, revoke(NOW - time::Duration::hours(1)));
        assert_eq!(d.notices, vec![Notice::ConsentRevoked]);
        assert_eq!(d.personal, Personal::Forget);
        assert!(!state.consent_active());
    }

    #[test]
    fn c8_a_grant_dated_ahead_never_outranks_a_later_revocation() {
        let mut state = ProcedureState::default();
        // Recorded ten minutes ahead (within the allowed skew), then revoked "now".
        run(&mut state, grant(NOW + time::Duration::minutes(10)));
        let d = run(&mut state, revoke(NOW));
        assert_eq!(d.notices, vec![Notice::ConsentRevoked]);
        assert!(!state.consent_active());
        // The old grant replayed (a new event id, the same recorded_at) gives nothing back.
        let replay = run(&mut state, grant(NOW + time::Duration::minutes(10)));
        assert!(replay.notices.is_empty());
        assert!(!replay.consent_applied);
        assert!(!state.consent_active());
    }

    #[test]
    fn c8_an_old_grant_replayed_after_a_revocation_never_reactivates_consent() {
        let mut state = ProcedureState::default();
        run(&mut state, grant(NOW - time::Duration::hours(3)));
        // A revocation recorded even earlier still counts from after the grant it revoked.
        run(&mut state, revoke(NOW - time::Duration::hours(5)));
        let replay = run(&mut state, grant(NOW - time::Duration::hours(3)));
        assert!(!replay.consent_applied);
        assert!(!state.consent_active());
        let between = run(&mut state, grant(NOW - time::Duration::hours(4)));
        assert!(!between.consent_applied);
    }

    #[test]
    fn c8_a_grant_after_a_revocation_must_be_recorded_after_it_and_not_in_the_future() {
        let mut state = ProcedureState::default();
        run(&mut state, grant(NOW - time::Duration::hours(2)));
        run(&mut state, revoke(NOW - time::Duration::hours(1)));
        let future = run(&mut state, grant(NOW + time::Duration::seconds(30)));
        assert!(!future.consent_applied, "dated in the future");
        assert!(!state.consent_active());
        let fresh = run(&mut state, grant(NOW - time::Duration::minutes(5)));
        assert!(fresh.consent_applied);
        assert_eq!(fresh.notices, alert(Trigger::Consent, false));
        assert!(state.consent_active());
    }

    #[test]
    fn c8_a_revocation_dated_ahead_counts_from_now() {
        let mut state = ProcedureState::default();
        run(&mut state, grant(NOW - time::Duration::hours(1)));
        let d = run(&mut state, revoke(NOW + time::Duration::days(3)));
        assert_eq!(d.consent_effective_at, Some(NOW));
        // The family asks again a minute later: that grant stands.
        let (next, again) = decide(
            &state,
            grant(NOW + time::Duration::minutes(1)),
            NOW + time::Duration::minutes(2),
            &RULES,
        );
        assert!(again.consent_applied);
        assert!(next.consent_active());
    }

    #[test]
    fn c5_an_access_within_seven_days_makes_the_alert_urgent() {
        let mut state = ProcedureState::default();
        run(&mut state, grant(NOW));
        let s = step(
            Step::AvvisoSloggio,
            date!(2026 - 03 - 01),
            Some(datetime!(2026-03-09 09:00 +01:00)),
        );
        assert_eq!(
            run(&mut state, Input::Step(&s)).notices,
            alert(Trigger::Step, true)
        );
    }

    #[test]
    fn c5_an_access_eight_days_away_is_not_urgent() {
        let at = datetime!(2026-03-10 09:00 +01:00);
        assert!(!is_urgent(Some(at), NOW, RULES.urgent_within_days));
        assert!(is_urgent(Some(at), NOW, 8));
    }

    #[test]
    fn c5_an_access_today_is_still_urgent_even_after_its_hour() {
        let this_morning = datetime!(2026-03-02 08:00 +01:00);
        let tonight = datetime!(2026-03-02 23:30 +01:00);
        assert!(is_urgent(Some(this_morning), NOW, RULES.urgent_within_days));
        assert!(is_urgent(Some(tonight), NOW, RULES.urgent_within_days));
        assert!(is_urgent(Some(this_morning), NOW, 0));
    }

    #[test]
    fn c5_an_access_that_already_happened_is_not_urgent() {
        assert!(!is_urgent(
            Some(datetime!(2026-03-01 09:00 +01:00)),
            NOW,
            RULES.urgent_within_days
        ));
        assert!(!is_urgent(None, NOW, RULES.urgent_within_days));
    }

    #[test]
    fn c5_days_are_counted_in_europe_rome_across_the_cest_change() {
        // 22 March 23:45 in Rome (CET, 22:45 UTC); access 30 March 00:15 in Rome (CEST,
        // 29 March 22:15 UTC): eight Rome days — not urgent, though UTC dates say seven
        // and a fixed +01:00 offset would too.
        let now = datetime!(2026-03-22 22:45 UTC);
        let access = datetime!(2026-03-29 22:15 UTC);
        assert_eq!(days_until(access, now), 8);
        assert!(!is_urgent(Some(access), now, RULES.urgent_within_days));
        // The same access seen from 23 March 00:30 (Rome) is seven days away: urgent.
        let next_morning = datetime!(2026-03-22 23:30 UTC);
        assert!(is_urgent(
            Some(access),
            next_morning,
            RULES.urgent_within_days
        ));
    }

    #[test]
    fn c5_a_late_night_access_at_the_end_of_october_counts_in_the_rome_day() {
        // 25 October 2026 is the CEST→CET change; 01:30 UTC on 1 Nov is 02:30 in Rome.
        let now = datetime!(2026-10-24 21:30 UTC); // 24 Oct 23:30 CEST
        let access = datetime!(2026-10-31 23:30 UTC); // 1 Nov 00:30 CET
        assert_eq!(days_until(access, now), 8);
        assert!(!is_urgent(Some(access), now, RULES.urgent_within_days));
    }

    #[test]
    fn c5_the_consent_alert_is_urgent_when_the_known_access_is_near() {
        let mut state = ProcedureState::default();
        let s = step(
            Step::AvvisoSloggio,
            date!(2026 - 02 - 25),
            Some(datetime!(2026-03-05 09:00 +01:00)),
        );
        run(&mut state, Input::Step(&s));
        assert_eq!(
            run(&mut state, grant(NOW)).notices,
            alert(Trigger::Consent, true)
        );
    }

    #[test]
    fn c5_the_latest_step_sets_the_next_access() {
        let history = vec![
            step(
                Step::AvvisoSloggio,
                date!(2026 - 02 - 25),
                Some(datetime!(2026-03-03 09:00 +01:00)),
            ),
            step(
                Step::Accesso,
                date!(2026 - 03 - 03),
                Some(datetime!(2026-04-20 09:00 +02:00)),
            ),
            // arrived late, occurred earlier: does not override
            step(
                Step::Precetto,
                date!(2026 - 02 - 01),
                Some(datetime!(2026-03-04 09:00 +01:00)),
            ),
        ];
        assert_eq!(
            next_access(&history),
            Some(datetime!(2026-04-20 09:00 +02:00))
        );
    }
}
