//! PEC (CONTRACT 1.2 §9, D2): a referent with a PEC address receives the PEC kinds over
//! `mail.pec_smtp_url` (the provider simulator), and the receipts the simulator writes into
//! a real Dovecot mailbox decide the delivery's state.

use std::time::Duration;

use raccordo_e2e::pec::{PEC_ADDRESS, spawn_pec_app, wait_until_handled};
use raccordo_evidence::daticert::ReceiptType;
use raccordo_evidence::imap::Appender;
use raccordo_evidence::simulator::Answer;
use raccordo_evidence::simulator::compose::{ReceiptSpec, compose_receipt};
use serde_json::{Value, json};
use uuid::Uuid;

const MILANO: &str = "015146";
const WAIT: Duration = Duration::from_secs(30);

fn offer(unit_id: &str) -> Value {
    json!({
        "unit_id": unit_id, "action": "offered", "comune_istat": MILANO,
        "address": "Via Giambellino 58, Milano", "places": 6, "reception_kind": "CAS",
        "building_type": "appartamento", "owner_declaration": true
    })
}

fn names(events: &[Value]) -> Vec<&str> {
    events.iter().filter_map(|e| e["event"].as_str()).collect()
}

/// Publishes a housing offer and returns its notification, once the PEC email was sent.
async fn offer_by_pec(app: &raccordo_e2e::TestApp, unit: &str) -> Uuid {
    app.publish(&app.event("housing.unit.v1", offer(unit)))
        .await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some((id, ..)) = app.notifications("housing.offered").await.first() {
            let events = app.events_of(*id, PEC_ADDRESS).await;
            if names(&events).contains(&"sent") {
                return *id;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the PEC email was not sent"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn d2_a_pec_is_delivered_only_by_its_delivery_receipt() {
    let (app, simulator, _) = spawn_pec_app(|_| {}).await;
    simulator.set_delay(Duration::from_millis(500));
    let id = offer_by_pec(&app, "D2-1").await;

    let events = app
        .wait_for_event(id, PEC_ADDRESS, "pec_delivered", WAIT)
        .await;
    assert_eq!(
        names(&events),
        ["queued", "sent", "pec_accepted", "pec_delivered"]
    );
    assert_eq!(events[3]["receipt"]["type"], "avvenuta-consegna");
    assert_eq!(events[3]["receipt"]["gestore"], "Gestore PEC simulato");
    let timeline = app.timeline(id).await;
    let delivery = &timeline["deliveries"][0];
    assert_eq!(delivery["channel"], "pec");
    assert_eq!(delivery["state"], "pec_delivered");
    assert_eq!(timeline["deliveries"].as_array().map(Vec::len), Some(1));
    // By PEC alone: nothing went to the plain mail server.
    assert!(app.emails_of("housing.offered").is_empty());
    // No address in what the timeline keeps of a receipt.
    assert!(!events[3]["receipt"].to_string().contains('@'));
    app.cleanup().await;
}

#[tokio::test]
async fn d2_a_pec_not_accepted_is_not_delivered() {
    let (app, simulator, _) = spawn_pec_app(|_| {}).await;
    simulator.answer(PEC_ADDRESS, Answer::Refuse);
    let id = offer_by_pec(&app, "D2-2").await;

    let events = app
        .wait_for_event(id, PEC_ADDRESS, "pec_not_delivered", WAIT)
        .await;
    // Recorded with its fallback, in one transaction (D3): the referent's email stands in.
    assert_eq!(
        names(&events),
        ["queued", "sent", "pec_not_delivered", "fallback"]
    );
    assert_eq!(events[2]["receipt"]["type"], "non-accettazione");
    assert_eq!(events[3]["channel"], "email");
    let mails = app.wait_for_emails(2).await;
    assert!(
        mails.iter().any(
            |m| m.header("X-Raccordo-Kind").as_deref() == Some("housing.offered")
                && m.to
                    .iter()
                    .any(|t| t == "gare.accoglienza@prefettura.mi.example")
        ),
        "the offer reached the referent's email"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn d2_a_pec_accepted_and_never_delivered_fails_when_the_receipt_hours_pass() {
    // 0.001 h = 3.6 s.
    let (app, simulator, _) = spawn_pec_app(|s| s.mail.pec_receipt_hours = 0.001).await;
    simulator.answer(PEC_ADDRESS, Answer::Lose);
    let id = offer_by_pec(&app, "D2-3").await;

    let accepted = app
        .wait_for_event(id, PEC_ADDRESS, "pec_accepted", WAIT)
        .await;
    assert!(
        !names(&accepted).contains(&"pec_not_delivered"),
        "not before the hours pass"
    );
    let events = app
        .wait_for_event(id, PEC_ADDRESS, "pec_not_delivered", WAIT)
        .await;
    assert_eq!(
        names(&events),
        [
            "queued",
            "sent",
            "pec_accepted",
            "pec_not_delivered",
            "fallback"
        ]
    );
    assert_eq!(events[3]["reason"], "timeout");
    assert_eq!(app.timeline(id).await["deliveries"][0]["state"], "fallback");
    app.cleanup().await;
}

#[tokio::test]
async fn d2_a_virus_alert_makes_the_pec_not_delivered() {
    let (app, simulator, _) = spawn_pec_app(|_| {}).await;
    simulator.answer(PEC_ADDRESS, Answer::Virus);
    let id = offer_by_pec(&app, "D2-4").await;

    let events = app
        .wait_for_event(id, PEC_ADDRESS, "pec_not_delivered", WAIT)
        .await;
    assert_eq!(
        names(&events),
        [
            "queued",
            "sent",
            "pec_accepted",
            "pec_not_delivered",
            "fallback"
        ]
    );
    assert_eq!(events[3]["receipt"]["type"], "rilevazione-virus");
    assert_eq!(events[3]["receipt"]["errore"], "virus");
    app.cleanup().await;
}

/// A receipt email carrying `daticert` as given, with the headers given.
fn handmade_receipt(kind: &str, reference: &str, daticert: &str) -> Vec<u8> {
    format!(
        "From: posta-certificata@pec.falso.example\r\nTo: raccordo@pec.example\r\n\
         Subject: CONSEGNA: x\r\nMessage-ID: <{}@pec.falso.example>\r\nX-Ricevuta: {kind}\r\n\
         X-Riferimento-Message-ID: {reference}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
         Content-Type: text/plain; charset=UTF-8\r\n\r\nRicevuta\r\n--b\r\n\
         Content-Type: application/xml; name=\"daticert.xml\"\r\n\
         Content-Disposition: attachment; filename=\"daticert.xml\"\r\n\r\n{daticert}\r\n--b--\r\n",
        Uuid::new_v4().simple()
    )
    .into_bytes()
}

fn delivered_daticert(reference: &str, consegna: &str, padding: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<postacert tipo=\"avvenuta-consegna\" errore=\"nessuno\">\
         <intestazione><mittente>raccordo@pec.example</mittente>\
         <destinatari tipo=\"certificato\">{consegna}</destinatari>\
         <oggetto>{padding}</oggetto></intestazione><dati><gestore-emittente>G</gestore-emittente>\
         <identificativo>forged-{}</identificativo><msgid>{}</msgid>\
         <consegna>{consegna}</consegna></dati></postacert>",
        Uuid::new_v4().simple(),
        reference.replace('<', "&lt;").replace('>', "&gt;")
    )
}

#[tokio::test]
async fn d2_a_hostile_receipt_changes_nothing() {
    let (app, simulator, mailbox) = spawn_pec_app(|_| {}).await;
    simulator.answer(PEC_ADDRESS, Answer::Lose);
    let id = offer_by_pec(&app, "D2-5").await;
    app.wait_for_event(id, PEC_ADDRESS, "pec_accepted", WAIT)
        .await;
    let reference: String = sqlx::query_scalar(
        "SELECT message_id FROM deliveries WHERE notification_id = $1 AND channel = 'pec'",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .expect("the PEC delivery's Message-ID");

    let laughs = format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE postacert [\n<!ENTITY a \"aaaaaaaaaa\">\n\
         <!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">\n<!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">\n]>\n\
         <postacert tipo=\"avvenuta-consegna\" errore=\"nessuno\"><intestazione>\
         <destinatari>{PEC_ADDRESS}</destinatari><oggetto>&c;</oggetto></intestazione>\
         <dati><identificativo>x</identificativo><msgid>{}</msgid><consegna>{PEC_ADDRESS}</consegna></dati></postacert>",
        reference.replace('<', "&lt;").replace('>', "&gt;")
    );
    let forged_spec = ReceiptSpec {
        kind: ReceiptType::AvvenutaConsegna,
        reference: "<never-sent.0000@cittametropolitana.mi.example>",
        mittente: "raccordo@pec.example",
        destinatario: PEC_ADDRESS,
        oggetto: "x",
        gestore: "Gestore falso",
        domain: "pec.falso.example",
        at: time::OffsetDateTime::now_utc(),
        errore: "nessuno",
        errore_esteso: None,
        original: None,
        serial: 1,
    };
    let hostile: Vec<Vec<u8>> = vec![
        // A reference to a message the hub never sent.
        compose_receipt(&forged_spec),
        // The delivery's reference, another recipient delivered to.
        handmade_receipt(
            "avvenuta-consegna",
            &reference,
            &delivered_daticert(&reference, "qualcun.altro@pec.example", "x"),
        ),
        // Headers and certificate disagreeing on the message.
        handmade_receipt(
            "avvenuta-consegna",
            &reference,
            &delivered_daticert("<altro@example>", PEC_ADDRESS, "x"),
        ),
        // A huge daticert.xml.
        handmade_receipt(
            "avvenuta-consegna",
            &reference,
            &delivered_daticert(&reference, PEC_ADDRESS, &"A".repeat(200 * 1024)),
        ),
        // Entity expansion.
        handmade_receipt("avvenuta-consegna", &reference, &laughs),
        // Not a receipt at all.
        b"Subject: ciao\r\n\r\nnot a receipt\r\n".to_vec(),
    ];
    let mut appender = Appender::new(mailbox.clone(), Duration::from_secs(10));
    for message in &hostile {
        appender.append(message).await.expect("append");
    }
    appender.close().await;
    wait_until_handled(&mailbox, WAIT).await;

    let events = app.events_of(id, PEC_ADDRESS).await;
    assert_eq!(
        names(&events),
        ["queued", "sent", "pec_accepted"],
        "{events:?}"
    );
    assert_eq!(
        app.timeline(id).await["deliveries"][0]["state"],
        "pec_accepted"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("raccordo_pec_receipts_total{outcome=\"refused\"} 5"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("pec_"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    app.cleanup().await;
}
