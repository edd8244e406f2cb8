//! The database side of the eviction worker: lock the procedure (by pseudonym), decide,
//! record the non-personal history, hold or forget personal data as the decision says,
//! and write the alerts to the outbox — all in the inbound transaction.
//!
//! Log lines name the pseudonym's first characters, the step and the consent state; never
//! the docket number, the household or the contact (CONTRACT C1).

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::PgConnection;
use time::OffsetDateTime;

use raccordo_core::amqp::{HandleError, HoldingPolicy, Message};
use raccordo_core::clock::{Clock, SystemClock};
use raccordo_core::db::about_comune;
use raccordo_core::db::{NewNotification, insert_notification};
use raccordo_core::domain::ComuneIstat;
use raccordo_core::envelope::{ANONYMOUS, Envelope, EventType};
use raccordo_core::inbound::EventWorker;
use raccordo_core::ownership::{self, IdKind, Owner};
use raccordo_core::payload::{
    AccessTime, AlertPayload, ConsentFacts, ConsentRevokedPayload, NextAccess, Payload, StepFacts,
};
use raccordo_core::registry::{Comune, Snapshot};

use crate::decide::{
    Decision, Input, Notice, ProcedureState, Rules, StepRecord, Trigger, days_until, decide,
    next_access,
};
use crate::event::{ConsentDecision, ConsentEvent, StepEvent};
use crate::personal::{Contact, Household, ProcedureId, Pseudonym, Pseudonymizer};
use crate::procedures::{self, ResolveError};
use crate::salvage;
use crate::store::{
    self, ConsentRecord, HeldPersonal, KeyCheck, ProcedureKey, link_notification, load_consent,
    lock_procedure, record_consent,
};
use raccordo_core::clock::rome_local;
use raccordo_core::settings::EvictionSettings;

/// Why the eviction worker could not apply an event.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EvictionError {
    /// The database's pseudonyms were made with another key chain: passes once the
    /// process restarts with the current key.
    #[error(
        "the pseudonym key differs from the one the database was written with \
         (rotated by `raccordo eviction rekey`?): restart with the current key"
    )]
    KeyDiffers,
    /// A consent decision dated beyond the allowed clock skew.
    #[error("recorded_at is more than {0} s in the future")]
    RecordedInFuture(i64),
    /// A type routed here by mistake.
    #[error("the eviction worker does not handle {0}")]
    NotMine(EventType),
}

impl From<EvictionError> for HandleError {
    fn from(error: EvictionError) -> Self {
        match error {
            EvictionError::KeyDiffers => HandleError::Unavailable(error.into()),
            EvictionError::RecordedInFuture(_) | EvictionError::NotMine(_) => {
                HandleError::Unprocessable(error.into())
            }
        }
    }
}

/// The worker of `eviction.step.v1` and `eviction.consent.v1`.
pub struct EvictionWorker {
    pseudonyms: Pseudonymizer,
    /// Of the key chain, compared with the database's in every transaction.
    fingerprint: String,
    keys: usize,
    rules: Rules,
    max_clock_skew: time::Duration,
    holding: HoldingPolicy,
    clock: Arc<dyn Clock>,
}

impl EvictionWorker {
    /// With the key chain and the `eviction` settings.
    pub fn new(settings: &EvictionSettings) -> Self {
        let count = settings.pseudonym_keys().len();
        let pseudonyms = Pseudonymizer::from_settings(settings);
        Self {
            fingerprint: pseudonyms.fingerprint(),
            keys: count,
            pseudonyms,
            rules: Rules {
                urgent_within_days: settings.urgent_within_days,
            },
            max_clock_skew: time::Duration::try_from(settings.max_clock_skew())
                .unwrap_or(time::Duration::MAX),
            holding: crate::holding::holding_policy(settings),
            clock: Arc::new(SystemClock),
        }
    }

    /// The same worker reading the time from `clock`.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Self { clock, ..self }
    }

    /// Refuses to go on when the database's pseudonyms were made with another key chain
    /// (a rotation this process has not heard of, a wrong key): mixing the two would split
    /// one family's procedure in two.
    async fn check_key(&self, tx: &mut PgConnection) -> Result<(), HandleError> {
        match store::check_key(tx, &self.fingerprint, self.keys).await? {
            KeyCheck::Matches => Ok(()),
            KeyCheck::Differs => Err(EvictionError::KeyDiffers.into()),
        }
    }
}

#[async_trait]
impl EventWorker for EvictionWorker {
    fn accepts(&self) -> &'static [EventType] {
        &[EventType::EvictionStep, EventType::EvictionConsent]
    }

    fn holding_policy(&self) -> HoldingPolicy {
        self.holding
    }

    /// The procedure's row (and the key fingerprint's, shared) is what it locks: its
    /// pseudonym orders the batch. Kept in memory only, like the pseudonym itself.
    fn batch_key(&self, event: &Envelope) -> Option<String> {
        let id = event.data.get("procedure_id")?.as_str()?;
        let id = ProcedureId::parse(id).ok()?;
        Some(self.pseudonyms.pseudonym(&id).as_ref().to_owned())
    }

    /// The key chain is checked once per transaction: its share lock holds to the end.
    async fn prepare(&self, tx: &mut PgConnection) -> Result<(), HandleError> {
        self.check_key(tx).await
    }

    /// Load → decide → store → notify, the same for a step and a consent decision (the
    /// key chain checked by [`EventWorker::prepare`]).
    async fn apply(
        &self,
        tx: &mut PgConnection,
        registry: &Snapshot,
        envelope: &Envelope,
    ) -> Result<(), HandleError> {
        let event = EvictionEvent::decode(envelope)?;
        let now = self.clock.now();
        self.check_recorded_at(&event, now)?;
        self.apply_event(tx, registry, &event, &envelope.publisher, None)
            .await
    }

    fn salvageable(&self, message: &Message) -> bool {
        salvage::revocation_in(message).is_some()
    }

    /// C8: a revocation that failed validation still stops the procedure's alerts.
    async fn salvage(
        &self,
        tx: &mut PgConnection,
        registry: &Snapshot,
        message: &Message,
        error: &HandleError,
    ) -> Result<Option<String>, HandleError> {
        let Some(revocation) = salvage::revocation_in(message) else {
            return Ok(None);
        };
        self.check_key(tx).await?;
        let docket = self.pseudonyms.pseudonym(&revocation.procedure_id);
        store::lock_docket(tx, &docket).await?;
        // Every procedure of the docket it may mean, each in its own comune, never the one
        // the refused event names: the notice goes only to referents told of the procedure.
        let court = revocation.court.as_deref();
        let mut found =
            procedures::revocation_targets(tx, &self.pseudonyms, &revocation.procedure_id, court)
                .await?;
        if found.is_empty() {
            let Some(comune) = revocation
                .comune_istat
                .as_ref()
                .filter(|c| registry.comune(c).is_some())
            else {
                // Neither a known procedure nor a known comune: nothing to stop.
                return Ok(None);
            };
            // Recorded, so that a grant recorded before it never gives consent (C8).
            let key = procedures::new_key(&self.pseudonyms, &revocation.procedure_id, court);
            found.push((key, comune.clone()));
        }
        let why = error.to_string();
        let publisher = message.publisher.as_deref().unwrap_or(ANONYMOUS);
        let now = self.clock.now();
        let event = revocation.into_event(found[0].1.clone(), now);
        for (key, comune) in &found {
            let event = EvictionEvent::Consent(ConsentEvent {
                comune_istat: comune.clone(),
                ..event.clone()
            });
            let comune = registry.require_comune(event.comune_istat())?;
            self.apply_to(tx, registry, &event, key, comune, publisher, Some(&why))
                .await?;
            tracing::warn!(
                procedure = key.pseudonym.short(),
                "A revocation that failed validation was applied all the same (C8)."
            );
        }
        metrics::counter!("raccordo_consent_revocations_unvalidated_total").increment(1);
        Ok(Some(
            "the revocation was applied all the same (CONTRACT C8): no further alerts for this \
             procedure, its personal data deleted"
                .to_owned(),
        ))
    }
}

impl EvictionWorker {
    /// Load → decide → store → notify for a decoded event; `unvalidated` is set for a
    /// revocation applied although it failed validation (C8).
    async fn apply_event(
        &self,
        tx: &mut PgConnection,
        registry: &Snapshot,
        event: &EvictionEvent,
        publisher: &str,
        unvalidated: Option<&str>,
    ) -> Result<(), HandleError> {
        let comune = registry.require_comune(event.comune_istat())?;
        let keys = procedures::resolve(
            tx,
            &self.pseudonyms,
            event.procedure_id(),
            event.court(),
            &comune.istat,
            event.decision(),
        )
        .await
        .map_err(|e| match e {
            ResolveError::Database(e) => HandleError::from(e),
            ResolveError::Taken(taken) => HandleError::Taken(taken),
            ambiguous => HandleError::Unprocessable(ambiguous.into()),
        })?;
        // Each procedure in its own comune: a revocation reaches only the referents who
        // were told of the procedure it revokes.
        for (key, own) in &keys {
            let own = registry.require_comune(own)?;
            self.apply_to(tx, registry, event, key, own, publisher, unvalidated)
                .await?;
        }
        Ok(())
    }

    /// Load → decide → store → notify for one procedure.
    #[allow(clippy::too_many_arguments)]
    async fn apply_to(
        &self,
        tx: &mut PgConnection,
        registry: &Snapshot,
        event: &EvictionEvent,
        key: &ProcedureKey,
        comune: &Comune,
        publisher: &str,
        unvalidated: Option<&str>,
    ) -> Result<(), HandleError> {
        let now = self.clock.now();
        let pseudonym = key.pseudonym.clone();
        let row = lock_procedure(tx, key, &comune.istat).await?;
        // A procedure stays in its comune: its docket is never named (CONTRACT 1.2 §3).
        let owner = Owner {
            comune: row.comune.clone(),
            publisher: None,
        };
        ownership::check(
            IdKind::Procedure,
            None,
            &owner,
            comune.istat.as_ref(),
            publisher,
        )?;
        let (next, decision) = decide(&row.state, event.input(), now, &self.rules);
        let audit = Audit {
            publisher,
            unvalidated,
        };
        let consent_id = store_event(
            tx,
            &pseudonym,
            comune,
            event,
            &decision,
            row.consent_id,
            &audit,
        )
        .await?;
        let (held, cancelled) = store::apply_personal(
            tx,
            &pseudonym,
            decision.personal,
            event.procedure_id(),
            event.contact(),
            event.household(),
        )
        .await?;
        if cancelled > 0 {
            tracing::info!(
                procedure = pseudonym.short(),
                cancelled,
                "Consent revoked before delivery: alerts not sent."
            );
        }
        let told = Told {
            registry,
            event,
            comune,
            pseudonym: &pseudonym,
            state: &next,
            held: held.as_ref(),
            consent_id,
            now,
        };
        let sent = self.notify_all(tx, &told, &decision.notices).await?;
        let (procedure, consent) = (pseudonym.short(), next.consent_active());
        match event {
            EvictionEvent::Step { record, .. } => {
                tracing::debug!(procedure, step = %record.step, consent, sent, "Eviction step handled.");
            }
            EvictionEvent::Consent(c) => {
                tracing::debug!(
                    procedure,
                    decision = c.decision.as_str(),
                    consent,
                    sent,
                    "Eviction consent handled."
                );
            }
        }
        Ok(())
    }
}

/// An eviction event, decoded at the edge.
enum EvictionEvent {
    Step {
        event: StepEvent,
        record: StepRecord,
        /// The court: the event's `source` (CONTRACT 1.2 §3).
        court: String,
    },
    Consent(ConsentEvent),
}

impl EvictionEvent {
    fn decode(envelope: &Envelope) -> Result<Self, HandleError> {
        match envelope.event_type {
            EventType::EvictionStep => {
                let event: StepEvent = envelope.data_as()?;
                let record = StepRecord {
                    step: event.step,
                    occurred_on: event.occurred_on,
                    next_access_at: event.next_access_at,
                    info_material_delivered: event.info_material_delivered,
                };
                Ok(Self::Step {
                    event,
                    record,
                    court: envelope.source.clone(),
                })
            }
            EventType::EvictionConsent => Ok(Self::Consent(envelope.data_as()?)),
            other => Err(EvictionError::NotMine(other).into()),
        }
    }

    /// The court the event names, if any.
    fn court(&self) -> Option<&str> {
        match self {
            Self::Step { court, .. } => Some(court),
            Self::Consent(event) => event.court.as_deref(),
        }
    }

    /// A consent decision's decision.
    fn decision(&self) -> Option<ConsentDecision> {
        match self {
            Self::Step { .. } => None,
            Self::Consent(event) => Some(event.decision),
        }
    }

    fn procedure_id(&self) -> &ProcedureId {
        match self {
            Self::Step { event, .. } => &event.procedure_id,
            Self::Consent(event) => &event.procedure_id,
        }
    }

    fn comune_istat(&self) -> &ComuneIstat {
        match self {
            Self::Step { event, .. } => &event.comune_istat,
            Self::Consent(event) => &event.comune_istat,
        }
    }

    /// The non-personal part the rules decide on.
    fn input(&self) -> Input<'_> {
        match self {
            Self::Step { record, .. } => Input::Step(record),
            Self::Consent(event) => Input::Consent {
                decision: event.decision,
                recorded_at: event.recorded_at,
            },
        }
    }

    fn step(&self) -> Option<&StepRecord> {
        match self {
            Self::Step { record, .. } => Some(record),
            Self::Consent(_) => None,
        }
    }

    fn contact(&self) -> Option<&Contact> {
        match self {
            Self::Step { .. } => None,
            Self::Consent(event) => event.contact.as_ref(),
        }
    }

    fn household(&self) -> Option<&Household> {
        match self {
            Self::Step { event, .. } => event.household.as_ref(),
            Self::Consent(_) => None,
        }
    }
}

/// Who published a consent decision, for the audit (C8).
struct Audit<'a> {
    /// The validated publisher.
    publisher: &'a str,
    /// Why a revocation applied all the same failed validation.
    unvalidated: Option<&'a str>,
}

/// Records the event's non-personal part; returns the consent decision in force (a step)
/// or just recorded (a consent), which authorises the alerts it makes.
async fn store_event(
    tx: &mut PgConnection,
    pseudonym: &Pseudonym,
    comune: &Comune,
    event: &EvictionEvent,
    decision: &Decision,
    consent_in_force: Option<i64>,
    audit: &Audit<'_>,
) -> Result<Option<i64>, HandleError> {
    match event {
        EvictionEvent::Step { record, .. } => {
            store::insert_step(tx, pseudonym, &comune.istat, record).await?;
            Ok(consent_in_force)
        }
        EvictionEvent::Consent(consent) => {
            let record = ConsentRecord {
                decision: consent.decision,
                recorded_by: &consent.recorded_by,
                recorded_at: consent.recorded_at,
                publisher: audit.publisher,
                effective_at: decision.consent_effective_at,
                unvalidated: audit.unvalidated,
            };
            let id = record_consent(tx, pseudonym, &comune.istat, &record).await?;
            if !decision.consent_applied {
                metrics::counter!("raccordo_consent_decisions_stale_total", "decision" => consent.decision.as_str())
                    .increment(1);
                // Never dropped in silence (a revocation always applies, C8): a grant
                // older than the decision in force, or not after the revocation in force;
                // `raccordo status` counts them.
                tracing::warn!(
                    procedure = pseudonym.short(),
                    decision = consent.decision.as_str(),
                    "A consent decision not after the one in force arrived; it changes nothing."
                );
            }
            Ok(Some(id))
        }
    }
}

/// What the notices of one event are made of.
struct Told<'a> {
    registry: &'a Snapshot,
    event: &'a EvictionEvent,
    comune: &'a Comune,
    pseudonym: &'a Pseudonym,
    /// The procedure's state after the event.
    state: &'a ProcedureState,
    held: Option<&'a HeldPersonal>,
    consent_id: Option<i64>,
    now: OffsetDateTime,
}

impl EvictionWorker {
    /// Refuses a consent decision dated beyond the allowed clock skew: a mistyped year
    /// would make every later decision of the citizen "stale".
    fn check_recorded_at(
        &self,
        event: &EvictionEvent,
        now: OffsetDateTime,
    ) -> Result<(), EvictionError> {
        // C8: a revocation is never refused for its recorded_at (it counts from now).
        match event {
            EvictionEvent::Consent(c)
                if c.decision == ConsentDecision::Granted
                    && c.recorded_at > now + self.max_clock_skew =>
            {
                Err(EvictionError::RecordedInFuture(
                    self.max_clock_skew.whole_seconds(),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Writes the notices to the outbox; returns how many.
    async fn notify_all(
        &self,
        tx: &mut PgConnection,
        told: &Told<'_>,
        notices: &[Notice],
    ) -> Result<usize, HandleError> {
        let Some(consent_id) = told.consent_id else {
            return Ok(0);
        };
        let mut sent = 0;
        for notice in notices {
            let (payload, urgent) = match (notice, told.held) {
                (Notice::Alert { trigger, urgent }, Some(held)) => {
                    let consent = consent_facts(tx, told.event, consent_id).await?;
                    let payload = alert_payload(&AlertFacts {
                        trigger: *trigger,
                        urgent: *urgent,
                        urgent_within_days: self.rules.urgent_within_days,
                        comune: told.comune,
                        held,
                        household: told.event.household().or(held.household.as_ref()),
                        step: told.event.step(),
                        history: &told.state.history,
                        consent: &consent,
                        now: told.now,
                    });
                    (Payload::EvictionAlert(Box::new(payload)), *urgent)
                }
                (Notice::ConsentRevoked, _) => {
                    let consent = consent_facts(tx, told.event, consent_id).await?;
                    let payload = revoked_payload(told.event.procedure_id(), told.comune, &consent);
                    (Payload::EvictionConsentRevoked(payload), false)
                }
                (Notice::Alert { .. }, None) => continue,
            };
            let notification = about_comune(told.registry, told.comune, payload, urgent);
            notify(tx, &notification, told.pseudonym, consent_id).await?;
            sent += 1;
        }
        Ok(sent)
    }
}

/// Who recorded the consent decision that authorises a notice, and when.
async fn consent_facts(
    tx: &mut PgConnection,
    event: &EvictionEvent,
    consent_id: i64,
) -> Result<(String, OffsetDateTime), HandleError> {
    Ok(match event {
        EvictionEvent::Consent(c) => (c.recorded_by.clone(), c.recorded_at),
        EvictionEvent::Step { .. } => load_consent(tx, consent_id).await?,
    })
}

/// Writes one notification to the outbox and links it to the procedure and the consent
/// decision that authorised it.
async fn notify(
    tx: &mut PgConnection,
    notification: &NewNotification,
    pseudonym: &Pseudonym,
    consent_id: i64,
) -> Result<(), HandleError> {
    let id = insert_notification(tx, notification).await?;
    link_notification(tx, id, pseudonym, consent_id).await?;
    Ok(())
}

/// Everything an alert says.
struct AlertFacts<'a> {
    trigger: Trigger,
    urgent: bool,
    urgent_within_days: u32,
    comune: &'a Comune,
    held: &'a HeldPersonal,
    household: Option<&'a Household>,
    /// The step that made the alert (C3).
    step: Option<&'a StepRecord>,
    /// The procedure's known steps, oldest first.
    history: &'a [StepRecord],
    /// Who recorded the consent in force, and when.
    consent: &'a (String, OffsetDateTime),
    now: OffsetDateTime,
}

/// The template data of an `eviction.alert`. Holds personal data: built only from data
/// held under active consent.
fn alert_payload(f: &AlertFacts<'_>) -> AlertPayload {
    AlertPayload {
        trigger: f.trigger,
        procedure_id: f.held.procedure_id.expose().to_owned(),
        comune_istat: f.comune.istat.clone(),
        comune_nome: f.comune.nome.clone(),
        ambito: f.comune.ambito.clone(),
        step: f.step.map(step_facts),
        current_step: f.history.last().map(step_facts),
        history: f.history.iter().map(step_facts).collect(),
        contact: f.held.contact.clone(),
        household: f.household.cloned(),
        urgent: f.urgent,
        urgent_within_days: f.urgent_within_days,
        next_access: next_access(f.history).map(|at| {
            let (date, time) = rome_local(at);
            NextAccess {
                date,
                time,
                days: days_until(at, f.now),
            }
        }),
        consent: consent_facts_of(f.consent),
    }
}

/// The template data of an `eviction.consent_revoked` (C4): the docket number from the
/// revocation event, which the referents already know, and nothing else personal.
fn revoked_payload(
    procedure_id: &ProcedureId,
    comune: &Comune,
    consent: &(String, OffsetDateTime),
) -> ConsentRevokedPayload {
    ConsentRevokedPayload {
        procedure_id: procedure_id.expose().to_owned(),
        comune_istat: comune.istat.clone(),
        comune_nome: comune.nome.clone(),
        ambito: comune.ambito.clone(),
        consent: consent_facts_of(consent),
    }
}

fn step_facts(s: &StepRecord) -> StepFacts {
    StepFacts {
        step: s.step.as_str().to_owned(),
        short: s.step.short().to_owned(),
        label: s.step.label().to_owned(),
        occurred_on: s.occurred_on,
        next_access: s.next_access_at.map(|at| {
            let (date, time) = rome_local(at);
            AccessTime { date, time }
        }),
        info_material_delivered: s.info_material_delivered,
    }
}

fn consent_facts_of(consent: &(String, OffsetDateTime)) -> ConsentFacts {
    let (date, time) = rome_local(consent.1);
    ConsentFacts {
        recorded_by: consent.0.clone(),
        date,
        time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Step;
    use crate::personal::Contact;
    use raccordo_mailer::{RecipientContext, Rendered, render};
    use serde_json::json;
    use time::macros::{date, datetime};
    use uuid::Uuid;

    const NOW: OffsetDateTime = datetime!(2026-03-02 10:00 +01:00);

    fn rho() -> Comune {
        Comune {
            istat: raccordo_core::domain::ComuneIstat::parse("015182").expect("valid"),
            nome: "Rho".into(),
            popolazione: 50_000,
            zona: "Nord Ovest".into(),
            ambito: Some("Rho".into()),
            quota: None,
            protocollo: true,
            domicilio: false,
        }
    }

    fn held() -> HeldPersonal {
        HeldPersonal {
            procedure_id: ProcedureId::parse("RG-9931/2026").expect("valid"),
            contact: Some(Contact {
                name: Some("Lucia Quetzal".into()),
                phone: Some("+39 333 7654321".into()),
                email: Some("quetzal@example.org".into()),
                address: None,
                notes: Some("Chiamare dopo le 17".into()),
            }),
            household: None,
        }
    }

    fn household() -> Household {
        Household {
            name: Some("Famiglia Quetzal".into()),
            address: Some("Via Giada 3, Rho".into()),
            members: Some(4),
            minors: Some(2),
            frail: Some(true),
            ..Household::default()
        }
    }

    fn history() -> Vec<StepRecord> {
        vec![
            StepRecord {
                step: Step::Intimazione,
                occurred_on: date!(2026 - 01 - 12),
                next_access_at: None,
                info_material_delivered: Some(true),
            },
            StepRecord {
                step: Step::Precetto,
                occurred_on: date!(2026 - 02 - 20),
                next_access_at: Some(datetime!(2026-03-02 09:00 +01:00)),
                info_material_delivered: None,
            },
        ]
    }

    /// The email a payload makes, once stored and read back as the mailer reads it.
    fn email(payload: Payload) -> Rendered {
        let kind = payload.kind();
        let stored = payload.to_value().expect("encodes");
        render(
            kind.as_str(),
            Uuid::nil(),
            &stored,
            &RecipientContext {
                name: None,
                institution: "Comune di Rho - Servizi sociali".into(),
                role: "servizi_sociali".into(),
            },
        )
        .unwrap_or_else(|e| panic!("{kind}: {e:?}"))
    }

    fn consent() -> (String, OffsetDateTime) {
        (
            "Sportello sociale di Rho".into(),
            datetime!(2026-03-01 11:00 +01:00),
        )
    }

    #[test]
    fn c2_the_consent_alert_has_the_contact_and_the_history_and_a_clean_subject() {
        let h = history();
        let held = held();
        let c = consent();
        let payload = alert_payload(&AlertFacts {
            trigger: Trigger::Consent,
            urgent: false,
            urgent_within_days: 7,
            comune: &rho(),
            held: &held,
            household: None,
            step: None,
            history: &h,
            consent: &c,
            now: NOW,
        });
        let mail = email(Payload::EvictionAlert(Box::new(payload.clone())));
        assert_eq!(
            mail.subject,
            "Sfratto a Rho: richiesta di aiuto della famiglia (fase: precetto)"
        );
        assert!(mail.text.contains("RG-9931/2026"));
        for body in [&mail.text, &mail.html] {
            assert!(body.contains("RG-9931"));
            assert!(body.contains("Lucia Quetzal"));
            assert!(body.contains("+39 333 7654321"));
            assert!(body.contains("12 gennaio 2026"));
            assert!(body.contains("20 febbraio 2026"));
            assert!(body.contains("Sportello sociale di Rho"));
            assert!(body.contains("art. 3"));
            assert!(body.contains("escomio"));
        }
        for secret in ["9931", "Quetzal", "333"] {
            assert!(!mail.subject.contains(secret));
        }
    }

    #[test]
    fn c2_consent_before_any_step_says_no_step_is_known_yet() {
        let held = held();
        let c = consent();
        let payload = alert_payload(&AlertFacts {
            trigger: Trigger::Consent,
            urgent: false,
            urgent_within_days: 7,
            comune: &rho(),
            held: &held,
            household: None,
            step: None,
            history: &[],
            consent: &c,
            now: NOW,
        });
        let mail = email(Payload::EvictionAlert(Box::new(payload.clone())));
        assert!(mail.subject.ends_with("(fase: non ancora nota)"));
        assert!(
            mail.text
                .contains("Nessuna fase della procedura è ancora nota")
        );
    }

    #[test]
    fn c3_a_step_alert_carries_the_step_and_the_household() {
        let h = history();
        let held = held();
        let c = consent();
        let hh = household();
        let payload = alert_payload(&AlertFacts {
            trigger: Trigger::Step,
            urgent: false,
            urgent_within_days: 7,
            comune: &rho(),
            held: &held,
            household: Some(&hh),
            step: Some(&h[1]),
            history: &h,
            consent: &c,
            now: NOW - time::Duration::days(30),
        });
        let mail = email(Payload::EvictionAlert(Box::new(payload.clone())));
        assert_eq!(
            mail.subject,
            "Sfratto a Rho: nuova fase della procedura (fase: precetto)"
        );
        assert!(mail.text.contains("Famiglia Quetzal"));
        assert!(mail.text.contains("Via Giada 3, Rho"));
        assert!(mail.text.contains("Minori: 2"));
        assert!(mail.text.contains("persone fragili"));
    }

    #[test]
    fn c5_an_urgent_alert_on_the_day_of_the_access_asks_for_the_highest_priority() {
        let h = history();
        let held = held();
        let c = consent();
        let payload = alert_payload(&AlertFacts {
            trigger: Trigger::Consent,
            urgent: true,
            urgent_within_days: 7,
            comune: &rho(),
            held: &held,
            household: None,
            step: None,
            history: &h,
            consent: &c,
            now: NOW,
        });
        assert_eq!(payload.next_access.as_ref().map(|a| a.days), Some(0));
        let mail = email(Payload::EvictionAlert(Box::new(payload.clone())));
        for body in [&mail.text, &mail.html] {
            assert!(body.contains("URGENTE"));
            assert!(body.contains("OGGI"));
            assert!(body.contains("massima priorità"));
            assert!(body.contains("anche il giorno stesso dell"));
        }
    }

    #[test]
    fn c4_the_revocation_notice_has_the_docket_number_and_nothing_else_personal() {
        let payload = revoked_payload(&held().procedure_id, &rho(), &consent());
        let text = serde_json::to_string(&payload).expect("encodes");
        assert!(text.contains("RG-9931/2026"));
        assert!(!text.contains("Quetzal") && !text.contains("333"));
        let mail = email(Payload::EvictionConsentRevoked(payload));
        assert_eq!(
            mail.subject,
            "Sfratto a Rho: la famiglia ha revocato il consenso"
        );
        assert!(mail.text.contains("RG-9931/2026"));
        assert!(mail.text.contains("Non contatti la famiglia"));
    }

    #[test]
    fn c6_the_statistics_email_shows_masked_counts() {
        let units = crate::stats::group(vec![
            (
                Some("Rho".into()),
                "015182".into(),
                "Rho".into(),
                "precetto".into(),
                2,
            ),
            (
                Some("Rho".into()),
                "015009".into(),
                "Arese".into(),
                "accesso".into(),
                5,
            ),
        ]);
        let month = raccordo_core::clock::YearMonth::parse("2026-03").expect("valid");
        let mail = email(Payload::EvictionStats(crate::stats::stats_payload(
            month, &units[0],
        )));
        assert_eq!(
            mail.subject,
            "Statistiche sfratti di marzo 2026: ambito territoriale Rho"
        );
        assert!(mail.text.contains("precetto: <3"));
        assert!(mail.text.contains("accesso dell'ufficiale giudiziario: 5"));
        assert!(mail.html.contains("&lt;3"));
    }

    fn alert_facts<'a>(
        comune: &'a Comune,
        held: &'a HeldPersonal,
        household: Option<&'a Household>,
        step: Option<&'a StepRecord>,
        history: &'a [StepRecord],
        consent: &'a (String, OffsetDateTime),
    ) -> AlertFacts<'a> {
        AlertFacts {
            trigger: Trigger::Step,
            urgent: true,
            urgent_within_days: 7,
            comune,
            held,
            household,
            step,
            history,
            consent,
            now: NOW - time::Duration::days(3),
        }
    }

    #[test]
    fn c3_an_alert_writes_the_json_it_always_wrote() {
        let h = history();
        let held = held();
        let c = consent();
        let hh = household();
        let rho = rho();
        let payload = Payload::EvictionAlert(Box::new(alert_payload(&alert_facts(
            &rho,
            &held,
            Some(&hh),
            Some(&h[1]),
            &h,
            &c,
        ))));
        let intimazione = json!({
            "step": "intimazione", "short": "intimazione",
            "label": "intimazione di sfratto", "occurred_on": "2026-01-12",
            "next_access": null, "info_material_delivered": true,
        });
        let precetto = json!({
            "step": "precetto", "short": "precetto", "label": "precetto",
            "occurred_on": "2026-02-20",
            "next_access": {"date": "2026-03-02", "time": "09:00"},
            "info_material_delivered": null,
        });

        let value = payload.to_value().expect("encodes");

        assert_eq!(
            value,
            json!({
                "trigger": "step",
                "procedure_id": "RG-9931/2026",
                "comune_istat": "015182",
                "comune_nome": "Rho",
                "ambito": "Rho",
                "step": precetto,
                "current_step": precetto,
                "history": [intimazione, precetto],
                "contact": {"name": "Lucia Quetzal", "phone": "+39 333 7654321",
                            "email": "quetzal@example.org", "address": null,
                            "notes": "Chiamare dopo le 17"},
                "household": {"name": "Famiglia Quetzal", "address": "Via Giada 3, Rho",
                              "members": 4, "minors": 2, "frail": true, "phone": null,
                              "email": null, "notes": null},
                "urgent": true,
                "urgent_within_days": 7,
                "next_access": {"date": "2026-03-02", "time": "09:00", "days": 3},
                "consent": {"recorded_by": "Sportello sociale di Rho",
                            "date": "2026-03-01", "time": "11:00"},
            })
        );
        assert_eq!(
            Payload::from_parts("eviction.alert", &value).expect("decodes"),
            payload
        );
    }

    #[test]
    fn c2_an_alert_before_any_step_writes_nulls_and_an_empty_history() {
        let held = HeldPersonal {
            contact: None,
            ..held()
        };
        let c = consent();
        let value = Payload::EvictionAlert(Box::new(alert_payload(&alert_facts(
            &rho(),
            &held,
            None,
            None,
            &[],
            &c,
        ))))
        .to_value()
        .expect("encodes");

        for key in [
            "step",
            "current_step",
            "contact",
            "household",
            "next_access",
        ] {
            assert_eq!(value[key], serde_json::Value::Null, "{key}");
        }
        assert_eq!(value["history"], json!([]));
    }

    #[test]
    fn c4_a_revocation_writes_the_json_it_always_wrote() {
        let payload = Payload::EvictionConsentRevoked(revoked_payload(
            &held().procedure_id,
            &rho(),
            &consent(),
        ));

        let value = payload.to_value().expect("encodes");

        assert_eq!(
            value,
            json!({
                "procedure_id": "RG-9931/2026",
                "comune_istat": "015182",
                "comune_nome": "Rho",
                "ambito": "Rho",
                "consent": {"recorded_by": "Sportello sociale di Rho",
                            "date": "2026-03-01", "time": "11:00"},
            })
        );
        assert_eq!(
            Payload::from_parts("eviction.consent_revoked", &value).expect("decodes"),
            payload
        );
    }

    #[test]
    fn c1_the_debug_of_an_alert_notification_shows_no_personal_data() {
        let h = history();
        let held = held();
        let c = consent();
        let hh = household();
        let rho = rho();
        let payload = Payload::EvictionAlert(Box::new(alert_payload(&alert_facts(
            &rho,
            &held,
            Some(&hh),
            Some(&h[1]),
            &h,
            &c,
        ))));
        let notification = NewNotification {
            comune_istat: Some(rho.istat.clone()),
            payload: payload.clone(),
            urgent: true,
            recipients: Vec::new(),
        };

        for debug in [format!("{payload:?}"), format!("{notification:?}")] {
            for secret in ["9931", "Quetzal", "333", "Giada", "17"] {
                assert!(!debug.contains(secret), "{debug}");
            }
        }
    }
}
