//! A sample payload for every notification kind, built with the types the workers write:
//! what the console's email gallery renders so that operators see what a referent
//! receives. The family in the eviction samples is fictional and says so.

use raccordo_core::domain::{BuildingType, ComuneIstat, IdentifiedBy, ReceptionKind};
use raccordo_core::notification::NotificationKind;
use raccordo_core::payload::quota::bar;
use raccordo_core::payload::{
    AlertPayload, ConsentFacts, ConsentRevokedPayload, Contact, HousingPayload, MonthlyComune,
    MonthlyReportPayload, MonthlyZona, NextAccess, OverCapacityPayload, Payload, RejectReason,
    ReportScope, Rule, SafeguardPayload, StatsPayload, StatsRow, StatsStep, StepFacts,
    ThresholdPayload, ThresholdState, Trigger, UnacknowledgedPayload, UnacknowledgedRecipient,
};

mod asylum;
use serde_json::Value;
use time::Date;
use time::macros::date;

use crate::templates::RecipientContext;

/// The sample payload of `kind`, or `None` for a kind without templates.
pub fn sample_payload(kind: &str) -> Option<Value> {
    sample(NotificationKind::parse(kind)?).to_value().ok()
}

/// The sample of `kind`, typed.
pub fn sample(kind: NotificationKind) -> Payload {
    match kind {
        NotificationKind::HousingOffered => Payload::HousingOffered(unit()),
        NotificationKind::HousingAck => Payload::HousingAck(unit()),
        NotificationKind::HousingConsultation => Payload::HousingConsultation(unit()),
        NotificationKind::HousingRejected => Payload::HousingRejected(HousingPayload {
            reason_code: Some(RejectReason::ExCaserma),
            reason: Some("L'immobile è una ex caserma (art. 2.4 del protocollo).".into()),
            ..unit()
        }),
        NotificationKind::HousingWithdrawn => Payload::HousingWithdrawn(HousingPayload {
            available_from: None,
            notes: None,
            ..unit()
        }),
        NotificationKind::QuotaThreshold => Payload::QuotaThreshold(threshold()),
        NotificationKind::QuotaSafeguard => Payload::QuotaSafeguard(safeguard()),
        NotificationKind::ReceptionOverCapacity => Payload::ReceptionOverCapacity(over_capacity()),
        NotificationKind::QuotaMonthlyReport => Payload::QuotaMonthlyReport(monthly(None)),
        NotificationKind::EvictionAlert => Payload::EvictionAlert(Box::new(alert())),
        NotificationKind::EvictionConsentRevoked => {
            Payload::EvictionConsentRevoked(ConsentRevokedPayload {
                procedure_id: "RG-ESEMPIO/2026".into(),
                comune_istat: istat("015182"),
                comune_nome: "Rho".into(),
                ambito: Some("Rho".into()),
                consent: consent(),
            })
        }
        NotificationKind::EvictionStats => Payload::EvictionStats(stats()),
        NotificationKind::DeliveryUnacknowledged => {
            Payload::DeliveryUnacknowledged(UnacknowledgedPayload {
                notification: uuid::Uuid::from_u128(0x0193_8c2e_5d4f_7a10_8b2c_3d4e_5f60_7182),
                kind: "eviction.alert".into(),
                comune_istat: istat("015182"),
                comune_nome: "Rho".into(),
                ambito: Some("Rho".into()),
                sent_at: "2026-03-02 09:15".into(),
                after_hours: 12.0,
                recipients: vec![
                    UnacknowledgedRecipient {
                        referent_id: "ss-rho".into(),
                        institution: "Comune di Rho - Servizi sociali".into(),
                    },
                    UnacknowledgedRecipient {
                        referent_id: "ss-ambito-rho".into(),
                        institution: "Ambito territoriale di Rho - Ufficio di Piano".into(),
                    },
                ],
            })
        }
        NotificationKind::AsylumProntaAccoglienza => {
            Payload::AsylumProntaAccoglienza(Box::new(asylum::pronta_accoglienza()))
        }
        NotificationKind::AsylumInterventionOverdue => {
            Payload::AsylumInterventionOverdue(asylum::intervention_overdue())
        }
        NotificationKind::AsylumDomicileAssigned => {
            Payload::AsylumDomicileAssigned(asylum::domicile_assigned())
        }
        NotificationKind::AsylumWeeklyPriorities => {
            Payload::AsylumWeeklyPriorities(asylum::weekly_priorities())
        }
        NotificationKind::AsylumPlaceAvailable => {
            Payload::AsylumPlaceAvailable(asylum::place_available())
        }
    }
}

/// A sample ISTAT code, written here as a valid one.
fn istat(code: &str) -> ComuneIstat {
    ComuneIstat::parse(code).unwrap_or_else(|_| unreachable!("the samples' codes are valid"))
}

/// A unit in Sesto San Giovanni, as the housing kinds carry it.
fn unit() -> HousingPayload {
    HousingPayload {
        unit_id: "SSG-2026-014".into(),
        comune_istat: istat("015209"),
        comune_nome: "Sesto San Giovanni".into(),
        zona: "Nord Milano".into(),
        address: Some("Via dell'Esempio 12".into()),
        places: Some(4),
        reception_kind: Some(ReceptionKind::Sprar),
        building_type: Some(BuildingType::Appartamento),
        identified_by: IdentifiedBy::Comune,
        available_from: Some(date!(2026 - 03 - 01)),
        notes: Some("Esempio: chiavi presso l'ufficio tecnico".into()),
        update: false,
        reason_code: None,
        reason: None,
    }
}

const AS_OF: Date = date!(2026 - 11 - 03);

/// Melegnano past half of its quota.
pub(crate) fn threshold() -> ThresholdPayload {
    ThresholdPayload {
        comune_istat: istat("015140"),
        comune_nome: "Melegnano".into(),
        zona: "Sud Est".into(),
        coverage: 24,
        quota: 47,
        percentage: 51.1,
        zona_coverage: 120,
        zona_quota: 477,
        zona_percentage: 25.2,
        threshold_percentage: 50.0,
        zone_full_percentage: 100.0,
        as_of: AS_OF,
        excluded: true,
        state: ThresholdState::Excluded,
        rule: Some(Rule::Comune),
        previous_rule: None,
        rule_label: Rule::Comune.label().into(),
    }
}

/// Melegnano entering the salvaguardia.
pub(crate) fn safeguard() -> SafeguardPayload {
    let t = threshold();
    SafeguardPayload {
        comune_istat: t.comune_istat,
        comune_nome: t.comune_nome,
        zona: t.zona,
        coverage: t.coverage,
        quota: t.quota,
        percentage: t.percentage,
        zona_coverage: t.zona_coverage,
        zona_quota: t.zona_quota,
        zona_percentage: t.zona_percentage,
        threshold_percentage: t.threshold_percentage,
        zone_full_percentage: t.zone_full_percentage,
        as_of: t.as_of,
        entered: true,
        safeguard: true,
    }
}

/// A facility of Melegnano over capacity.
pub(crate) fn over_capacity() -> OverCapacityPayload {
    OverCapacityPayload {
        facility_id: "CAS-MEL-01".into(),
        comune_istat: istat("015140"),
        comune_nome: "Melegnano".into(),
        zona: "Sud Est".into(),
        reception_kind: ReceptionKind::Cas,
        capacity: 20,
        presences: 23,
        excess: 3,
        as_of: AS_OF,
    }
}

fn comune_line(
    istat: &str,
    nome: &str,
    (quota, coverage, percentage): (i64, i64, f64),
    rule: Option<Rule>,
    safeguard: bool,
    flagged: bool,
    last_report: Option<&str>,
) -> MonthlyComune {
    MonthlyComune {
        istat: istat.into(),
        nome: nome.into(),
        zona: "Sud Est".into(),
        quota,
        coverage,
        ratio: percentage / 100.0,
        excluded: rule.is_some(),
        rule,
        population: 9_000,
        percentage,
        quota_source: "calcolata".into(),
        sprar_places: if safeguard { coverage } else { 0 },
        cas_presences: if safeguard { 0 } else { coverage },
        signatory: true,
        safeguard,
        flagged,
        facilities: 1,
        last_report: last_report.map(str::to_owned),
        bar: bar(percentage),
    }
}

/// The monthly verification of October 2026: the whole report, or `zona`'s part.
pub(crate) fn monthly(zona: Option<&str>) -> MonthlyReportPayload {
    let comuni = vec![
        comune_line(
            "015082",
            "Colturano",
            (6, 2, 33.3),
            None,
            true,
            true,
            Some("2026-10-30"),
        ),
        comune_line(
            "015140",
            "Melegnano",
            (47, 24, 51.1),
            Some(Rule::Comune),
            false,
            false,
            None,
        ),
    ];
    MonthlyReportPayload {
        period: "2026-10".into(),
        period_label: "ottobre 2026".into(),
        generated_on: "2026-11-01".into(),
        scope: if zona.is_some() {
            ReportScope::Zona
        } else {
            ReportScope::All
        },
        zona: zona.map(str::to_owned),
        threshold_percentage: 50.0,
        zone_full_percentage: 100.0,
        protocol_signed_on: "2017-05-18".into(),
        deadline: "2017-11-18".into(),
        deadline_passed: true,
        comuni_count: 2,
        excluded_count: 1,
        flagged_count: 1,
        safeguard_count: 1,
        zone: vec![MonthlyZona {
            zona: "Sud Est".into(),
            population: 18_726,
            quota: 53,
            coverage: 26,
            ratio: 0.49,
            percentage: 49.1,
            full: false,
            excluded: 1,
            flagged: 1,
            safeguard: 1,
            last_report: Some("2026-10-30".into()),
            comuni,
            bar: 49,
        }],
    }
}

fn consent() -> ConsentFacts {
    ConsentFacts {
        recorded_by: "Sportello sociale di Rho".into(),
        date: "2026-11-02".into(),
        time: "10:30".into(),
    }
}

fn step(step: &str, label: &str, on: Date) -> StepFacts {
    StepFacts {
        step: step.into(),
        short: step.into(),
        label: label.into(),
        occurred_on: on,
        next_access: None,
        info_material_delivered: Some(true),
    }
}

/// A fictional family of Rho that asked for help.
fn alert() -> AlertPayload {
    let last = step("avviso_sloggio", "avviso di sloggio", date!(2026 - 10 - 28));
    AlertPayload {
        trigger: Trigger::Consent,
        procedure_id: "RG-ESEMPIO/2026".into(),
        comune_istat: istat("015182"),
        comune_nome: "Rho".into(),
        ambito: Some("Rho".into()),
        step: None,
        current_step: Some(last.clone()),
        history: vec![
            step(
                "intimazione",
                "intimazione di sfratto",
                date!(2026 - 09 - 02),
            ),
            last,
        ],
        contact: Some(Contact {
            name: Some("Famiglia Esempio (dati fittizi)".into()),
            phone: Some("+39 000 0000000".into()),
            email: Some("esempio@example.org".into()),
            address: None,
            notes: Some("Esempio: preferisce essere chiamata al mattino".into()),
        }),
        household: None,
        urgent: true,
        urgent_within_days: 7,
        next_access: Some(NextAccess {
            date: "2026-11-06".into(),
            time: "09:00".into(),
            days: 4,
        }),
        consent: consent(),
    }
}

/// The ambito of Rho's statistics.
fn stats() -> StatsPayload {
    let steps = [
        ("intimazione", "intimazione"),
        ("convalida", "convalida"),
        ("precetto", "precetto"),
        ("avviso_sloggio", "avviso di sloggio"),
        ("accesso", "accesso"),
        ("esecuzione", "esecuzione"),
    ];
    let row = |istat: &str, nome: &str, counts: [&str; 6]| StatsRow {
        comune_istat: istat.into(),
        comune_nome: nome.into(),
        counts: counts.iter().map(|c| (*c).to_owned()).collect(),
    };
    StatsPayload {
        month: "2026-10".into(),
        month_label: "ottobre 2026".into(),
        ambito: Some("Rho".into()),
        comune_nome: None,
        steps: steps
            .iter()
            .map(|(step, label)| StatsStep {
                step: (*step).into(),
                label: (*label).into(),
            })
            .collect(),
        rows: vec![
            row("015182", "Rho", ["4", "<3", "", "<3", "3", ""]),
            row("015010", "Arluno", ["<3", "", "", "", "", ""]),
        ],
    }
}

/// A recipient of the role that receives `kind` first (CONTRACT §5), for the greeting.
pub fn sample_recipient(kind: &str) -> RecipientContext {
    let (institution, role) = match kind.split('.').next() {
        Some("eviction") => ("Comune di Rho - Servizi sociali", "servizi_sociali"),
        // A1's notice as the social services read it, the person's data included.
        Some("asylum") if kind == "asylum.pronta_accoglienza" => {
            ("Comune di Rho - Servizi sociali", "servizi_sociali")
        }
        Some("housing") if kind != "housing.offered" && kind != "housing.withdrawn" => {
            ("Comune di Sesto San Giovanni", "comune")
        }
        _ if kind == "asylum.domicile_assigned" => ("Comune di Sesto San Giovanni", "comune"),
        _ => ("Prefettura di Milano", "prefettura"),
    };
    RecipientContext {
        name: Some("Ufficio di esempio".into()),
        institution: institution.into(),
        role: role.into(),
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::templates::{KINDS, render};

    #[test]
    fn every_kind_has_a_sample_that_renders() {
        for kind in KINDS {
            let payload = sample_payload(kind).expect("a sample for every kind");
            let rendered = render(kind, Uuid::nil(), &payload, &sample_recipient(kind));
            assert!(rendered.is_ok(), "{kind}: {rendered:?}");
        }
    }

    #[test]
    fn every_sample_decodes_back_under_its_kind() {
        for kind in NotificationKind::ALL {
            let value = sample_payload(kind.as_str()).expect("a sample for every kind");
            assert_eq!(
                Payload::from_parts(kind, &value),
                Ok(sample(kind)),
                "{kind}"
            );
        }
    }

    #[test]
    fn a3_the_domicile_email_tells_the_comune_and_the_desk_what_to_do() {
        let kind = "asylum.domicile_assigned";
        let payload = sample_payload(kind).expect("a sample");
        for (role, expected) in [
            ("comune", "Registri il domicilio"),
            (
                "sportello_asilo",
                "Comunichi al Comune di Sesto San Giovanni",
            ),
        ] {
            let recipient = RecipientContext {
                role: role.into(),
                ..sample_recipient(kind)
            };
            let rendered = render(kind, Uuid::nil(), &payload, &recipient).expect("renders");
            assert!(
                rendered.text.contains(expected),
                "{role}: {}",
                rendered.text
            );
            assert!(rendered.html.contains(expected), "{role}");
            assert!(
                rendered.text.contains("3 marzo 2026 alle 10:00"),
                "{}",
                rendered.text
            );
            assert_eq!(
                rendered.subject,
                "Domicilio assegnato a rotazione — Comune di Sesto San Giovanni (richiesta DOM-2026-0007)"
            );
        }
    }

    #[test]
    fn an_unknown_kind_has_no_sample() {
        assert!(sample_payload("pizza.v1").is_none());
    }
}

#[cfg(test)]
mod english_words {
    use super::*;
    use crate::templates::{DigestEntry, render_digest, render_with_links};
    use raccordo_core::notification::NotificationKind;
    use uuid::Uuid;

    /// Words of a developer's English that must not reach a referent (issue 24): status
    /// words, placeholders, serialisation leftovers.
    const ENGLISH: &[&str] = &[
        "delivered",
        "granted",
        "revoked",
        "pending",
        "queued",
        "bounced",
        "parked",
        "dead",
        "failed",
        "error",
        "done",
        "click",
        "here",
        "please",
        "unsubscribe",
        "notification",
        "kind",
        "status",
        "true",
        "false",
        "null",
        "none",
        "some",
        "undefined",
        "unknown",
        "yes",
        "no",
        "the",
        "and",
        "of",
        "to",
        "from",
        "with",
        "date",
        "time",
        "step",
    ];

    fn words(text: &str) -> Vec<String> {
        // HTML: the text between tags, not the markup or the links.
        let mut plain = String::new();
        let mut in_tag = false;
        for c in text.chars() {
            match c {
                '<' => in_tag = true,
                '>' => {
                    in_tag = false;
                    plain.push(' ');
                }
                c if !in_tag => plain.push(c),
                _ => {}
            }
        }
        plain
            .split_whitespace()
            .filter(|token| !token.contains("://"))
            .flat_map(|token| token.split(|c: char| !c.is_alphanumeric() && c != '_'))
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    }

    fn english_in(what: &str, text: &str) -> Vec<String> {
        words(text)
            .into_iter()
            .filter(|w| ENGLISH.contains(&w.as_str()))
            .map(|w| format!("{what}: {w:?}"))
            .collect()
    }

    #[test]
    fn issue24_no_english_ui_word_in_any_email_or_digest() {
        // The scan sees a word between tags, and not a link's.
        assert_eq!(
            english_in(
                "probe",
                "<p>Stato: <b>delivered</b> https://x.example/the</p>"
            ),
            ["probe: \"delivered\""]
        );
        let mut found = Vec::new();
        for kind in NotificationKind::ALL {
            let payload = sample_payload(kind.as_str()).expect("a sample");
            let recipient = sample_recipient(kind.as_str());
            let rendered = render_with_links(
                kind.as_str(),
                Uuid::from_u128(1),
                &payload,
                &recipient,
                Some("https://raccordo.example/ack/abc"),
                Some("https://raccordo.example/preferenze/def"),
            )
            .expect("renders");
            for (part, text) in [
                ("subject", &rendered.subject),
                ("text", &rendered.text),
                ("html", &rendered.html),
            ] {
                // Identifiers are quoted as they are; the words around them are Italian.
                let text = text.replace(&Uuid::from_u128(1).to_string(), "");
                found.extend(english_in(&format!("{kind} {part}"), &text));
            }
        }
        let entries: Vec<DigestEntry> = [
            NotificationKind::HousingOffered,
            NotificationKind::QuotaThreshold,
        ]
        .into_iter()
        .map(|kind| DigestEntry {
            notification_id: Uuid::from_u128(2),
            kind: kind.as_str().to_owned(),
            payload: sample_payload(kind.as_str()).expect("a sample"),
            created_at: time::macros::datetime!(2026-12-07 17:05 UTC),
            ack_url: None,
        })
        .collect();
        let digest = render_digest(
            Uuid::from_u128(3),
            &sample_recipient("housing.offered"),
            &entries,
            Some("https://raccordo.example/preferenze/def"),
        )
        .expect("renders");
        for (part, text) in [
            ("subject", &digest.subject),
            ("text", &digest.text),
            ("html", &digest.html),
        ] {
            found.extend(english_in(&format!("digest {part}"), text));
        }
        assert!(found.is_empty(), "English in the emails: {found:#?}");
    }
}
