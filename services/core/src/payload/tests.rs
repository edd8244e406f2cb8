//! Decoding stored payloads: old shapes, wrong types, and what errors and `Debug` say.

use serde_json::{Value, json};

use super::*;

fn housing() -> Value {
    json!({
        "unit_id": "SSG-2025-014",
        "comune_istat": "015209",
        "comune_nome": "Sesto San Giovanni",
        "zona": "Nord Milano",
        "address": "Via Fratelli Bandiera 12",
        "places": 4,
        "reception_kind": "SPRAR",
        "building_type": "appartamento",
        "identified_by": "comune",
        "available_from": "2025-03-01",
        "notes": null,
        "update": false,
    })
}

fn alert() -> Value {
    json!({
        "trigger": "step",
        "procedure_id": "RG-9931/2026",
        "comune_istat": "015182",
        "comune_nome": "Rho",
        "ambito": "Rho",
        "step": null,
        "current_step": null,
        "history": [{"step": "precetto", "short": "precetto", "label": "precetto",
                     "occurred_on": "2026-02-20", "next_access": null,
                     "info_material_delivered": null}],
        "contact": {"name": "Lucia Quetzal", "phone": "+39 333 7654321", "email": null,
                    "address": "Via Giada 3", "notes": null},
        "household": {"name": "Famiglia Quetzal", "address": "Via Giada 3, Rho",
                      "members": 4, "minors": 2, "frail": true, "phone": null,
                      "email": null, "notes": null},
        "urgent": false,
        "urgent_within_days": 7,
        "next_access": null,
        "consent": {"recorded_by": "Sportello sociale di Rho", "date": "2026-03-01",
                    "time": "11:00"},
    })
}

#[test]
fn a_payload_decodes_under_its_kind_by_name_or_by_value_and_reencodes_unchanged() {
    let by_name = Payload::from_parts("housing.offered", &housing()).expect("decodes");
    let by_kind =
        Payload::from_parts(NotificationKind::HousingOffered, &housing()).expect("decodes");

    assert_eq!(by_name, by_kind);
    assert_eq!(by_name.kind(), NotificationKind::HousingOffered);
    assert_eq!(by_name.to_value().expect("encodes"), housing());
}

#[test]
fn a_first_version_housing_ack_without_update_decodes_as_not_an_update() {
    let mut old = housing();
    old.as_object_mut().expect("object").remove("update");

    let Payload::HousingAck(p) = Payload::from_parts("housing.ack", &old).expect("decodes") else {
        panic!("housing.ack decodes as HousingAck");
    };

    assert!(!p.update);
}

#[test]
fn optional_housing_fields_may_be_absent_or_null() {
    let mut sparse = housing();
    let object = sparse.as_object_mut().expect("object");
    for key in [
        "address",
        "places",
        "reception_kind",
        "building_type",
        "notes",
    ] {
        object.remove(key);
    }
    object.insert("available_from".into(), Value::Null);

    let Payload::HousingWithdrawn(p) =
        Payload::from_parts("housing.withdrawn", &sparse).expect("decodes")
    else {
        panic!("housing.withdrawn decodes as HousingWithdrawn");
    };

    assert_eq!((p.address, p.places, p.available_from), (None, None, None));
}

#[test]
fn a_rejection_without_its_reason_names_the_missing_field() {
    let error = Payload::from_parts("housing.rejected", &housing()).expect_err("no reason");

    assert_eq!(
        error,
        PayloadError::Missing {
            kind: NotificationKind::HousingRejected,
            field: "reason_code".into(),
        }
    );
}

#[test]
fn a_missing_required_field_is_named_with_its_kind() {
    let mut p = housing();
    p.as_object_mut().expect("object").remove("comune_nome");

    let error = Payload::from_parts("housing.ack", &p).expect_err("no comune_nome");

    assert_eq!(
        error.to_string(),
        "the housing.ack payload has no comune_nome"
    );
}

#[test]
fn a_wrong_type_names_the_field_and_not_the_value() {
    let mut p = alert();
    p["household"]["members"] = json!("Famiglia Quetzal, quattro");

    let error = Payload::from_parts("eviction.alert", &p).expect_err("members is a number");
    let text = error.to_string();

    assert_eq!(
        error,
        PayloadError::Invalid {
            kind: NotificationKind::EvictionAlert,
            field: "household.members".into(),
        }
    );
    assert!(!text.contains("Quetzal"), "{text}");
    assert!(!format!("{error:?}").contains("Quetzal"));
}

#[test]
fn a_missing_field_of_a_nested_value_is_named_with_its_path() {
    let mut p = alert();
    p["history"][0]
        .as_object_mut()
        .expect("object")
        .remove("label");

    let error = Payload::from_parts("eviction.alert", &p).expect_err("no label");

    assert_eq!(
        error,
        PayloadError::Missing {
            kind: NotificationKind::EvictionAlert,
            field: "history[0].label".into(),
        }
    );
}

#[test]
fn an_unknown_enum_value_is_invalid_without_being_quoted() {
    let mut p = housing();
    p["building_type"] = json!("castello di Lucia");

    let error = Payload::from_parts("housing.offered", &p).expect_err("unknown type");

    assert!(matches!(&error, PayloadError::Invalid { field, .. } if field == "building_type"));
    assert!(!error.to_string().contains("Lucia"));
}

#[test]
fn a_payload_that_is_not_an_object_or_of_an_unknown_kind_is_refused() {
    let not_object = Payload::from_parts("quota.safeguard", &json!([1, 2]));
    let unknown = Payload::from_parts("housing.sold", &housing());

    assert!(matches!(not_object, Err(PayloadError::Invalid { .. })));
    assert!(matches!(unknown, Err(PayloadError::UnknownKind(k)) if k == "housing.sold"));
}

#[test]
fn debug_of_an_alert_shows_no_personal_data() {
    let p = Payload::from_parts("eviction.alert", &alert()).expect("decodes");
    let revoked = Payload::from_parts(
        "eviction.consent_revoked",
        &json!({"procedure_id": "RG-9931/2026", "comune_istat": "015182",
                "comune_nome": "Rho", "ambito": null, "consent": alert()["consent"]}),
    )
    .expect("decodes");

    for debug in [format!("{p:?}"), format!("{revoked:?}")] {
        for secret in ["9931", "Quetzal", "333", "Giada"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(debug.contains("015182"), "{debug}");
    }
}
