//! A sample payload for every notification kind, in the shape the workers write: what the
//! console's email gallery renders so that operators see what a referent receives. The
//! family in the eviction samples is fictional and says so.

use serde_json::{Value, json};

use crate::templates::RecipientContext;

/// The sample payload of `kind`, or `None` for a kind without templates.
pub fn sample_payload(kind: &str) -> Option<Value> {
    match kind.split('.').next()? {
        "housing" => housing(kind),
        "quota" | "reception" => quota(kind),
        "eviction" => eviction(kind),
        _ => None,
    }
}

/// A unit in Sesto San Giovanni, as the housing kinds carry it.
fn housing(kind: &str) -> Option<Value> {
    let unit = json!({
        "unit_id": "SSG-2026-014",
        "comune_istat": "015209",
        "comune_nome": "Sesto San Giovanni",
        "zona": "Nord Milano",
        "address": "Via dell'Esempio 12",
        "places": 4,
        "reception_kind": "SPRAR",
        "building_type": "appartamento",
        "available_from": "2026-03-01",
        "notes": "Esempio: chiavi presso l'ufficio tecnico",
        "update": false,
    });
    Some(match kind {
        "housing.offered" | "housing.ack" | "housing.consultation" => unit,
        "housing.rejected" => {
            let mut p = unit;
            p["reason_code"] = json!("ex_caserma");
            p["reason"] = json!("L'immobile è una ex caserma (art. 2.4 del protocollo).");
            p
        }
        "housing.withdrawn" => json!({
            "unit_id": "SSG-2026-014",
            "comune_istat": "015209",
            "comune_nome": "Sesto San Giovanni",
            "address": "Via dell'Esempio 12",
        }),
        _ => return None,
    })
}

/// Melegnano past half of its quota, a facility over capacity, the monthly verification.
fn quota(kind: &str) -> Option<Value> {
    let comune = comune();
    Some(match kind {
        "quota.threshold" => {
            let mut p = comune;
            p["excluded"] = json!(true);
            p["state"] = json!("excluded");
            p["rule"] = json!("comune");
            p["previous_rule"] = Value::Null;
            p
        }
        "quota.safeguard" => {
            let mut p = comune;
            p["entered"] = json!(true);
            p["safeguard"] = json!(true);
            p
        }
        "reception.over_capacity" => json!({
            "facility_id": "CAS-MEL-01",
            "comune_istat": "015140",
            "comune_nome": "Melegnano",
            "zona": "Sud Est",
            "reception_kind": "CAS",
            "capacity": 20,
            "presences": 23,
            "excess": 3,
            "as_of": "2026-11-03",
        }),
        "quota.monthly_report" => monthly(),
        _ => return None,
    })
}

/// A fictional family of Rho that asked for help, and the ambito's statistics.
fn eviction(kind: &str) -> Option<Value> {
    let consent =
        json!({"recorded_by": "Sportello sociale di Rho", "date": "2026-11-02", "time": "10:30"});
    let step = |step: &str, label: &str, on: &str| {
        json!({"step": step, "short": step, "label": label, "occurred_on": on,
               "next_access": null, "info_material_delivered": true})
    };
    Some(match kind {
        "eviction.alert" => json!({
            "trigger": "consent",
            "procedure_id": "RG-ESEMPIO/2026",
            "comune_istat": "015182",
            "comune_nome": "Rho",
            "ambito": "Rho",
            "step": null,
            "current_step": step("avviso_sloggio", "avviso di sloggio", "2026-10-28"),
            "history": [
                step("intimazione", "intimazione di sfratto", "2026-09-02"),
                step("avviso_sloggio", "avviso di sloggio", "2026-10-28"),
            ],
            "contact": {"name": "Famiglia Esempio (dati fittizi)", "phone": "+39 000 0000000",
                        "email": "esempio@example.org", "address": null,
                        "notes": "Esempio: preferisce essere chiamata al mattino"},
            "household": null,
            "urgent": true,
            "urgent_within_days": 7,
            "next_access": {"date": "2026-11-06", "time": "09:00", "days": 4},
            "consent": consent,
        }),
        "eviction.consent_revoked" => json!({
            "procedure_id": "RG-ESEMPIO/2026",
            "comune_istat": "015182",
            "comune_nome": "Rho",
            "ambito": "Rho",
            "consent": consent,
        }),
        "eviction.stats" => json!({
            "month": "2026-10",
            "month_label": "ottobre 2026",
            "ambito": "Rho",
            "comune_nome": null,
            "steps": [
                {"step": "intimazione", "label": "intimazione"},
                {"step": "convalida", "label": "convalida"},
                {"step": "precetto", "label": "precetto"},
                {"step": "avviso_sloggio", "label": "avviso di sloggio"},
                {"step": "accesso", "label": "accesso"},
                {"step": "esecuzione", "label": "esecuzione"},
            ],
            "rows": [
                {"comune_istat": "015182", "comune_nome": "Rho", "counts": ["4", "<3", "", "<3", "3", ""]},
                {"comune_istat": "015010", "comune_nome": "Arluno", "counts": ["<3", "", "", "", "", ""]},
            ],
        }),
        _ => return None,
    })
}

/// A comune's coverage as the quota kinds carry it (Melegnano, past half of its quota).
pub(crate) fn comune() -> Value {
    json!({
        "comune_istat": "015140",
        "comune_nome": "Melegnano",
        "zona": "Sud Est",
        "coverage": 24,
        "quota": 47,
        "percentage": 51.1,
        "zona_coverage": 120,
        "zona_quota": 477,
        "zona_percentage": 25.2,
        "threshold_percentage": 50.0,
        "zone_full_percentage": 100.0,
        "as_of": "2026-11-03",
    })
}

fn monthly() -> Value {
    let comuni = json!([
        {"istat": "015082", "nome": "Colturano", "quota": 6, "coverage": 2,
         "percentage": 33.3, "bar": 33, "excluded": false, "rule": null,
         "signatory": true, "safeguard": true, "flagged": true,
         "last_report": "2026-10-30"},
        {"istat": "015140", "nome": "Melegnano", "quota": 47, "coverage": 24,
         "percentage": 51.1, "bar": 51, "excluded": true, "rule": "comune",
         "signatory": true, "safeguard": false, "flagged": false,
         "last_report": null}
    ]);
    json!({
        "period": "2026-10",
        "period_label": "ottobre 2026",
        "generated_on": "2026-11-01",
        "scope": "all",
        "zona": null,
        "threshold_percentage": 50.0,
        "zone_full_percentage": 100.0,
        "protocol_signed_on": "2017-05-18",
        "deadline": "2017-11-18",
        "deadline_passed": true,
        "comuni_count": 2,
        "excluded_count": 1,
        "flagged_count": 1,
        "safeguard_count": 1,
        "zone": [{
            "zona": "Sud Est", "population": 18726, "quota": 53, "coverage": 26,
            "ratio": 0.49, "percentage": 49.1, "full": false, "excluded": 1, "flagged": 1,
            "safeguard": 1, "last_report": "2026-10-30", "bar": 49, "comuni": comuni,
        }],
    })
}

/// A recipient of the role that receives `kind` first (CONTRACT §5), for the greeting.
pub fn sample_recipient(kind: &str) -> RecipientContext {
    let (institution, role) = match kind.split('.').next() {
        Some("eviction") => ("Comune di Rho - Servizi sociali", "servizi_sociali"),
        Some("housing") if kind != "housing.offered" && kind != "housing.withdrawn" => {
            ("Comune di Sesto San Giovanni", "comune")
        }
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
    fn an_unknown_kind_has_no_sample() {
        assert!(sample_payload("pizza.v1").is_none());
    }
}
