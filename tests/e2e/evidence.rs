//! Delivery evidence (CONTRACT 1.2 §9): the timeline of every delivery (D1), through the real
//! broker, database and SMTP.

use std::time::{Duration, Instant};

use raccordo::serve::Workers;
use raccordo_e2e::prepare_with;
use serde_json::{Value, json};

const MILANO: &str = "015146";
const SA: &str = "gare.accoglienza@prefettura.mi.example";

fn offer(unit_id: &str) -> Value {
    json!({
        "unit_id": unit_id, "action": "offered", "comune_istat": MILANO,
        "address": "Via Giambellino 58, Milano", "places": 6, "reception_kind": "CAS",
        "building_type": "appartamento", "owner_declaration": true
    })
}

#[tokio::test]
async fn d1_a_timeline_records_queued_then_sent_in_order_and_publishes_delivery_events_without_addresses()
 {
    let app = prepare_with(|_| {}).await;
    let tap = app.tap_events("delivery.#").await;
    let app = app.start(Workers::All).await;
    app.publish(&app.event("housing.unit.v1", offer("D1-1")))
        .await;
    app.wait_for_emails(2).await;
    app.settle().await;
    let (id, ..) = app.notifications("housing.offered").await[0];

    // The CLI's JSON, in the form of §11.
    let out = app
        .command()
        .args(["timeline", &id.to_string(), "--format", "json"])
        .output()
        .await
        .expect("raccordo timeline runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let timeline: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(timeline["notification"], json!(id.to_string()));
    assert_eq!(timeline["kind"], json!("housing.offered"));
    let deliveries = timeline["deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries.len(), 1, "{timeline}");
    let delivery = &deliveries[0];
    assert_eq!(delivery["recipient"], json!(SA));
    assert_eq!(delivery["channel"], json!("email"));
    assert_eq!(delivery["state"], json!("sent"));
    assert!(
        delivery["referent_id"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    let events = delivery["events"].as_array().expect("events");
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(names, ["queued", "sent"]);
    let at = |i: usize| {
        time::OffsetDateTime::parse(
            events[i]["at"].as_str().expect("at"),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("RFC 3339")
    };
    assert!(at(0) <= at(1), "in order: {events:?}");
    assert!(
        events[1]["reply"]
            .as_str()
            .is_some_and(|r| r.starts_with("250") || r.contains("OK") || !r.is_empty()),
        "the server's reply: {events:?}"
    );

    // The same as a table, in Europe/Rome time.
    let out = app
        .command()
        .args(["timeline", &id.to_string()])
        .output()
        .await
        .expect("raccordo timeline runs");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("queued") && table.contains("sent") && table.contains(SA),
        "{table}"
    );
    assert!(table.contains("Europe/Rome"), "{table}");

    // Published as delivery.* on {prefix}.events, with no address in any body.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        seen.extend(app.drain_tap(&tap).await);
        let of_this: Vec<&str> = seen
            .iter()
            .filter(|(_, b)| b["notification"] == json!(id.to_string()))
            .map(|(k, _)| k.as_str())
            .collect();
        if of_this.contains(&"delivery.sent") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let of_this: Vec<&(String, Value)> = seen
        .iter()
        .filter(|(_, b)| b["notification"] == json!(id.to_string()))
        .collect();
    let keys: Vec<&str> = of_this.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        keys.contains(&"delivery.queued") && keys.contains(&"delivery.sent"),
        "{keys:?}"
    );
    for (key, body) in &seen {
        let text = body.to_string();
        assert!(
            !text.contains('@'),
            "{key}: an address left the hub: {text}"
        );
        assert_eq!(
            body["event"]
                .as_str()
                .map(|e| format!("delivery.{e}"))
                .as_deref(),
            Some(key.as_str())
        );
    }
    app.cleanup().await;
}

#[tokio::test]
async fn d1_an_unknown_or_malformed_notification_id_is_a_clear_error() {
    let app = prepare_with(|_| {}).await;
    for (id, says) in [
        ("not-a-uuid", "is not a notification id"),
        ("6f1c7f5e-0000-4000-8000-000000000000", "No notification"),
    ] {
        let out = app
            .command()
            .args(["timeline", id])
            .output()
            .await
            .expect("raccordo timeline runs");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{id}: {err}");
    }
    app.cleanup().await;
}

/// One family of Rho consents: its alert goes to the servizi sociali.
async fn one_consented_alert(app: &raccordo_e2e::TestApp) -> uuid::Uuid {
    let family = &raccordo_e2e::families::REVOKING;
    let mut step = json!({"procedure_id": family.procedure, "step": "intimazione",
        "occurred_on": raccordo_core::domain::format_date(raccordo_core::clock::rome_date(raccordo_core::clock::now())),
        "comune_istat": "015182", "info_material_delivered": true});
    step["household"] = family.household();
    app.publish(&app.event("eviction.step.v1", step)).await;
    app.settle().await;
    let at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formattable");
    app.publish(&app.event(
        "eviction.consent.v1",
        json!({"procedure_id": family.procedure, "comune_istat": "015182",
               "decision": "granted", "recorded_by": "Sportello sociale di Rho",
               "recorded_at": at, "contact": family.contact()}),
    ))
    .await;
    app.settle().await;
    app.notifications("eviction.alert").await[0].0
}

#[tokio::test]
async fn d1_the_console_lists_every_delivery_with_filters_and_shows_its_timeline_to_the_roles_that_may_see_it()
 {
    use crate::console::{PRIVACY, VIEWER, login_as, request, spawn_console};
    let (app, addr) = spawn_console().await;
    app.publish(&app.event("housing.unit.v1", offer("D1-C")))
        .await;
    app.wait_for_emails(2).await;
    let alert = one_consented_alert(&app).await;
    app.settle().await;
    let (offered, ..) = app.notifications("housing.offered").await[0];

    let viewer = login_as(addr, VIEWER).await;
    let home = request(addr, "GET", "/", Some(&viewer), None).await;
    assert!(
        home.body.contains("href=\"/deliveries\""),
        "the overview links the deliveries"
    );
    let list = request(addr, "GET", "/deliveries", Some(&viewer), None).await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(
        list.body.contains(&format!("/deliveries/{offered}")),
        "{}",
        list.body
    );
    assert!(list.body.contains(SA));
    // A consented alert is a row per family: not for the viewer, who is told so.
    assert!(!list.body.contains(&alert.to_string()), "{}", list.body);
    assert!(list.body.contains("solo il ruolo privacy"));
    let denied = request(
        addr,
        "GET",
        &format!("/deliveries/{alert}"),
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(denied.status, 403);
    for s in raccordo_e2e::families::REVOKING.strings() {
        assert!(!denied.body.contains(s) && !list.body.contains(s), "{s:?}");
    }

    // Filters narrow; a bad one is an Italian 400.
    let sent = request(
        addr,
        "GET",
        "/deliveries?stato=sent&tipo=housing.ack",
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(sent.status, 200);
    assert!(
        !sent.body.contains(SA) && sent.body.contains("accoglienza@comune.milano.example"),
        "{}",
        sent.body
    );
    let none = request(
        addr,
        "GET",
        "/deliveries?stato=bounced",
        Some(&viewer),
        None,
    )
    .await;
    assert!(none.body.contains("Nessuna consegna"), "{}", none.body);
    for bad in [
        "/deliveries?stato=lost",
        "/deliveries?dal=31-12-2026",
        "/deliveries?dal=99999-01-01",
    ] {
        let r = request(addr, "GET", bad, Some(&viewer), None).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(r.body.contains("non valid"), "{bad}: {}", r.body);
    }

    // The timeline, in order, in Europe/Rome time.
    let page = request(
        addr,
        "GET",
        &format!("/deliveries/{offered}"),
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let queued = page.body.find("<code>queued</code>").expect("queued shown");
    let sent = page.body.find("<code>sent</code>").expect("sent shown");
    assert!(queued < sent, "in order");
    assert!(page.body.contains("orari di Roma"));
    let missing = request(
        addr,
        "GET",
        "/deliveries/6f1c7f5e-0000-4000-8000-000000000000",
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(missing.status, 404);

    // The privacy officer sees the alert's deliveries and timeline, never the family.
    let privacy = login_as(addr, PRIVACY).await;
    let list = request(
        addr,
        "GET",
        "/deliveries?tipo=eviction.alert",
        Some(&privacy),
        None,
    )
    .await;
    assert!(
        list.body.contains(&format!("/deliveries/{alert}")),
        "{}",
        list.body
    );
    let page = request(
        addr,
        "GET",
        &format!("/deliveries/{alert}"),
        Some(&privacy),
        None,
    )
    .await;
    assert_eq!(page.status, 200);
    for s in raccordo_e2e::families::REVOKING.strings() {
        assert!(!page.body.contains(s) && !list.body.contains(s), "{s:?}");
    }
    app.cleanup().await;
}

#[tokio::test]
async fn d6_the_console_charts_time_to_delivery_per_kind_without_singling_out_a_family() {
    use crate::console::{PRIVACY, VIEWER, login_as, request, spawn_console};
    let (app, addr) = spawn_console().await;
    app.publish(&app.event("housing.unit.v1", offer("D6-C")))
        .await;
    app.wait_for_emails(2).await;
    one_consented_alert(&app).await;
    app.settle().await;
    let chart_of = |body: &str| -> String {
        let start = body
            .find("Tempo dalla decisione alla consegna")
            .expect("the delivery chart");
        let end = body[start..]
            .find("</svg>")
            .map_or(body.len(), |e| start + e);
        body[start..end].to_owned()
    };
    let viewer = login_as(addr, VIEWER).await;
    let page = request(addr, "GET", "/deliveries", Some(&viewer), None).await;
    let chart = chart_of(&page.body);
    assert!(
        chart.contains("housing.offered") && chart.contains("housing.ack"),
        "{chart}"
    );
    assert!(
        chart.contains("mediana"),
        "described for screen readers: {chart}"
    );
    // Two deliveries of one family's alert: a timing that would single it out.
    assert!(!chart.contains("eviction.alert"), "{chart}");
    let privacy = login_as(addr, PRIVACY).await;
    let page = request(addr, "GET", "/deliveries", Some(&privacy), None).await;
    assert!(chart_of(&page.body).contains("eviction.alert"));
    app.cleanup().await;
}
