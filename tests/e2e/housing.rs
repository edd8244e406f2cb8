//! Housing units from comuni to the contracting authority (H1–H5), through the real broker,
//! database and SMTP.

use std::collections::BTreeSet;

use raccordo_e2e::spawn_app;
use serde_json::{Value, json};

const MILANO: &str = "015146";
const SA: &str = "gare.accoglienza@prefettura.mi.example";
const COMUNE_MILANO: &str = "accoglienza@comune.milano.example";

fn offer(unit_id: &str, comune: &str) -> Value {
    json!({
        "unit_id": unit_id, "action": "offered", "comune_istat": comune,
        "address": "Via Giambellino 58, Milano", "places": 6, "reception_kind": "CAS",
        "building_type": "appartamento", "owner_declaration": true,
        "notes": "Secondo piano, ascensore"
    })
}

fn recipients(mails: &[raccordo_smtp_sink::ReceivedMail]) -> BTreeSet<(String, String)> {
    mails
        .iter()
        .flat_map(|m| {
            let kind = m.header("X-Raccordo-Kind").unwrap_or_default();
            m.to.iter()
                .map(move |to| (kind.clone(), to.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(k, t)| (k.to_string(), t.to_string()))
        .collect()
}

#[tokio::test]
async fn h1_a_valid_offer_reaches_the_stazione_appaltante_and_the_comune_gets_an_ack() {
    let app = spawn_app().await;
    app.publish(&app.event("housing.unit.v1", offer("MI-1", MILANO)))
        .await;
    let mails = app.wait_for_emails(2).await;
    assert_eq!(
        recipients(&mails),
        set(&[("housing.offered", SA), ("housing.ack", COMUNE_MILANO)])
    );
    let offered = &app.emails_of("housing.offered")[0];
    let body = offered.text_body().expect("a text part");
    assert!(body.contains("Via Giambellino 58"), "{body}");
    assert!(offered.html_body().is_some(), "an HTML alternative");
    app.settle().await;
    assert_eq!(app.emails().len(), 2);
    app.cleanup().await;
}

#[tokio::test]
async fn h1_a_later_offer_of_the_same_unit_is_sent_as_an_update() {
    let app = spawn_app().await;
    app.publish(&app.event("housing.unit.v1", offer("MI-2", MILANO)))
        .await;
    app.wait_for_emails(2).await;
    let mut again = offer("MI-2", MILANO);
    again["places"] = json!(8);
    app.publish(&app.event("housing.unit.v1", again)).await;
    app.wait_for_emails(4).await;
    let offers = app.emails_of("housing.offered");
    assert_eq!(offers.len(), 2);
    let subjects: Vec<String> = offers.iter().filter_map(|m| m.subject()).collect();
    assert!(
        subjects.iter().any(|s| s.contains("Aggiornamento")),
        "{subjects:?}"
    );
    assert!(
        subjects.iter().any(|s| !s.contains("Aggiornamento")),
        "{subjects:?}"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn h2_an_ex_caserma_is_not_forwarded_and_the_comune_is_told_why() {
    let app = spawn_app().await;
    let mut unit = offer("RHO-1", "015182");
    unit["building_type"] = json!("ex_caserma");
    app.publish(&app.event("housing.unit.v1", unit)).await;
    let mails = app.wait_for_emails(1).await;
    app.settle().await;
    assert_eq!(
        recipients(&app.emails()),
        set(&[("housing.rejected", "accoglienza@comune.rho.example")])
    );
    let body = mails[0].text_body().unwrap_or_default();
    assert!(body.contains("2.4"), "cites art. 2.4: {body}");
    app.cleanup().await;
}

#[tokio::test]
async fn h3_an_offer_without_the_owner_declaration_is_rejected_with_the_reason() {
    let app = spawn_app().await;
    let mut unit = offer("LEG-1", "015118");
    unit.as_object_mut()
        .expect("object")
        .remove("owner_declaration");
    app.publish(&app.event("housing.unit.v1", unit)).await;
    let mails = app.wait_for_emails(1).await;
    app.settle().await;
    assert_eq!(
        recipients(&app.emails()),
        set(&[("housing.rejected", "accoglienza@comune.legnano.example")])
    );
    let body = mails[0].text_body().unwrap_or_default();
    assert!(body.contains("dichiarazione"), "{body}");
    app.cleanup().await;
}

#[tokio::test]
async fn h4_a_unit_found_by_the_prefettura_is_put_to_the_comune_only() {
    let app = spawn_app().await;
    let mut unit = offer("PREF-1", "015209");
    unit["identified_by"] = json!("prefettura");
    app.publish(&app.event("housing.unit.v1", unit)).await;
    app.wait_for_emails(1).await;
    app.settle().await;
    assert_eq!(
        recipients(&app.emails()),
        set(&[("housing.consultation", "accoglienza@comune.sestosg.example")])
    );
    app.cleanup().await;
}

#[tokio::test]
async fn h5_withdrawing_a_forwarded_unit_tells_the_stazione_appaltante_and_a_never_forwarded_one_sends_nothing()
 {
    let app = spawn_app().await;
    app.publish(&app.event("housing.unit.v1", offer("MI-3", MILANO)))
        .await;
    app.wait_for_emails(2).await;
    let withdraw = |id: &str, comune: &str| json!({"unit_id": id, "action": "withdrawn", "comune_istat": comune});
    app.publish(&app.event("housing.unit.v1", withdraw("MI-3", MILANO)))
        .await;
    app.publish(&app.event("housing.unit.v1", withdraw("MAG-9", "015130")))
        .await;
    app.wait_for_emails(3).await;
    app.settle().await;
    let withdrawn = app.emails_of("housing.withdrawn");
    assert_eq!(withdrawn.len(), 1);
    assert_eq!(withdrawn[0].to, vec![SA.to_owned()]);
    assert_eq!(
        app.emails().len(),
        3,
        "nothing for the unit never forwarded"
    );
    assert!(
        app.dead_letters().await.is_empty(),
        "and it is not an error"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_zona_scoped_stazione_appaltante_gets_offers_of_its_zona_too() {
    let app = spawn_app().await;
    app.publish(&app.event("housing.unit.v1", offer("MEL-1", "015140")))
        .await;
    app.wait_for_emails(3).await;
    app.settle().await;
    assert_eq!(
        recipients(&app.emails()),
        set(&[
            ("housing.offered", SA),
            (
                "housing.offered",
                "appalti.sudest@cittametropolitana.mi.example"
            ),
            ("housing.ack", "accoglienza@comune.melegnano.example"),
        ])
    );
    let ids: BTreeSet<String> = app
        .emails_of("housing.offered")
        .iter()
        .filter_map(|m| m.header("X-Raccordo-Notification"))
        .collect();
    assert_eq!(ids.len(), 1, "one notification id shared by its recipients");
    app.cleanup().await;
}

#[tokio::test]
async fn the_same_event_published_twice_sends_one_email_per_recipient() {
    let app = spawn_app().await;
    let event = app.event("housing.unit.v1", offer("MI-4", MILANO));
    app.publish(&event).await;
    app.publish(&event).await;
    app.wait_for_emails(2).await;
    app.settle().await;
    assert_eq!(app.emails().len(), 2);
    assert_eq!(app.notifications("housing.offered").await.len(), 1);
    app.cleanup().await;
}

#[tokio::test]
async fn a_referent_added_by_a_registry_event_receives_the_next_notification() {
    let app = spawn_app().await;
    let cusago = "015097";
    app.publish(&app.event(
        "registry.referent.v1",
        json!({"referent_id": "com-cusago", "action": "upsert", "institution": "Comune di Cusago",
               "role": "comune", "email": "protocollo@comune.cusago.example",
               "scope": {"comune_istat": cusago}}),
    ))
    .await;
    app.settle().await;
    app.publish(&app.event("housing.unit.v1", offer("CUS-1", cusago)))
        .await;
    app.wait_for_emails(2).await;
    app.settle().await;
    assert_eq!(
        recipients(&app.emails()),
        set(&[
            ("housing.offered", SA),
            ("housing.ack", "protocollo@comune.cusago.example")
        ])
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_referent_changed_by_hand_in_the_database_receives_the_next_notification() {
    // Workers keep the registry in memory: a change made outside the hub must still reach
    // the next decision (the registry version moves with any write to the table).
    let app = spawn_app().await;
    app.publish(&app.event("housing.unit.v1", offer("HAND-1", MILANO)))
        .await;
    app.wait_for_emails(2).await;
    let moved = "nuovo.protocollo@comune.milano.example";
    let changed = sqlx::query("UPDATE referents SET email = $1 WHERE email = $2")
        .bind(moved)
        .bind(COMUNE_MILANO)
        .execute(&app.pool)
        .await
        .expect("update referents")
        .rows_affected();
    assert_eq!(changed, 1);
    app.publish(&app.event("housing.unit.v1", offer("HAND-2", MILANO)))
        .await;
    app.wait_for_emails(4).await;
    app.settle().await;
    let acks: Vec<Vec<String>> = app
        .emails_of("housing.ack")
        .iter()
        .map(|m| m.to.clone())
        .collect();
    assert_eq!(acks.len(), 2);
    assert!(acks.contains(&vec![COMUNE_MILANO.to_owned()]), "{acks:?}");
    assert!(acks.contains(&vec![moved.to_owned()]), "{acks:?}");
    app.cleanup().await;
}
