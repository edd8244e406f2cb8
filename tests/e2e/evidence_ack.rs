//! Acknowledgement links (CONTRACT D4), reminders and escalation (D5) and their metrics
//! (D6), end to end: the real hub, console, broker, database and SMTP server.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use raccordo_core::ack::AckKey;
use raccordo_e2e::{TestApp, prepare_with};
use raccordo_smtp_sink::ReceivedMail;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::console::{request, spawn_console_with};

const PUBLIC_URL: &str = "https://raccordo.cittametropolitana.mi.example";
const KEY: &str = "a-test-ack-key-of-at-least-thirty-two-bytes";
const MILANO: &str = "015146";
const RHO: &str = "015182";
/// What the button does, in the act-on kinds' emails.
const SENTENCE: &str = "premendo il pulsante «Confermo la presa visione» registra, con data e ora, che il suo ufficio ha ricevuto questa comunicazione";

fn offer(unit_id: &str) -> Value {
    json!({
        "unit_id": unit_id, "action": "offered", "comune_istat": MILANO,
        "address": "Via Giambellino 58, Milano", "places": 6, "reception_kind": "CAS",
        "building_type": "appartamento", "owner_declaration": true,
    })
}

fn with_links(s: &mut raccordo_core::settings::Settings) {
    s.console.public_url = PUBLIC_URL.into();
    s.ack.key = KEY.to_owned().into();
}

/// The path of the acknowledgement link in an email's text, if it has one.
fn ack_path(mail: &ReceivedMail) -> Option<String> {
    let text = mail.text_body()?;
    let prefix = format!("{PUBLIC_URL}/ack/");
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .map(|token| format!("/ack/{token}"))
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&app.pool)
        .await
        .expect("count query")
}

async fn acknowledged_events(app: &TestApp) -> i64 {
    count(
        app,
        "SELECT count(*) FROM delivery_events WHERE event = 'acknowledged'",
    )
    .await
}

async fn acknowledged_deliveries(app: &TestApp) -> i64 {
    count(
        app,
        "SELECT count(*) FROM deliveries WHERE acknowledged_at IS NOT NULL",
    )
    .await
}

#[tokio::test]
async fn d4_an_acknowledgement_by_link_is_recorded_once_and_a_get_by_a_link_scanner_records_nothing()
 {
    let (app, addr) = spawn_console_with(with_links).await;
    app.publish(&app.event("housing.unit.v1", offer("D4-1")))
        .await;
    app.wait_for_emails(2).await;
    app.settle().await;

    // The act-on kind carries the link and the sentence; the comune's receipt does not.
    let offered = app.emails_of("housing.offered");
    assert_eq!(offered.len(), 1);
    let path = ack_path(&offered[0]).expect("housing.offered carries a link");
    for body in [offered[0].text_body(), offered[0].html_body()] {
        let body = body
            .unwrap_or_default()
            .replace("&laquo;", "«")
            .replace("&raquo;", "»");
        assert!(body.contains(SENTENCE), "{body}");
    }
    let ack = &app.emails_of("housing.ack")[0];
    assert_eq!(ack_path(ack), None);
    assert!(
        !ack.text_body()
            .unwrap_or_default()
            .contains("presa visione")
    );
    assert!(
        !path.contains("prefettura") && !path.contains('@'),
        "{path}"
    );

    // A link scanner (and the referent reading first) GETs: the kind and a button, no record.
    for _ in 0..3 {
        let page = request(addr, "GET", &path, None, None).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("Nuova disponibilità di alloggio"));
        assert!(page.body.contains("Confermo la presa visione"));
        assert!(!page.body.contains("Giambellino"), "nothing of the content");
    }
    let head = request(addr, "HEAD", &path, None, None).await;
    assert_ne!(head.status, 0);
    assert_eq!(acknowledged_events(&app).await, 0);
    assert_eq!(acknowledged_deliveries(&app).await, 0);

    // The button: recorded once, with who; again, nothing changes.
    let first = request(addr, "POST", &path, None, Some("")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(
        first.body.contains("Presa visione registrata il"),
        "{}",
        first.body
    );
    let again = request(addr, "POST", &path, None, Some("")).await;
    assert_eq!(again.status, 200);
    assert!(
        again.body.contains("già stata registrata"),
        "{}",
        again.body
    );
    let concurrent = futures_lite::future::zip(
        request(addr, "POST", &path, None, Some("")),
        request(addr, "POST", &path, None, Some("")),
    )
    .await;
    assert_eq!((concurrent.0.status, concurrent.1.status), (200, 200));
    assert_eq!(acknowledged_events(&app).await, 1);
    assert_eq!(acknowledged_deliveries(&app).await, 1);
    let by: String = sqlx::query_scalar(
        "SELECT details ->> 'by' FROM delivery_events WHERE event = 'acknowledged'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("the event");
    assert_eq!(by, "pref-sa");
    let shown = request(addr, "GET", &path, None, None).await;
    assert!(shown.body.contains("già stata registrata"));
    assert!(!shown.body.contains("<button"));
    app.cleanup().await;
}

#[tokio::test]
async fn d4_a_forged_or_expired_token_gets_403_and_records_nothing() {
    let (app, addr) = spawn_console_with(with_links).await;
    app.publish(&app.event("housing.unit.v1", offer("D4-2")))
        .await;
    app.wait_for_emails(2).await;
    app.settle().await;
    let path = ack_path(&app.emails_of("housing.offered")[0]).expect("a link");
    let token = path.trim_start_matches("/ack/").to_owned();
    let (notification, recipient): (uuid::Uuid, String) = sqlx::query_as(
        "SELECT notification_id, email FROM deliveries WHERE referent_id = 'pref-sa'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("the delivery");
    let real = AckKey::from_settings(&app.settings.ack).expect("the key");
    let mut other_settings = app.settings.ack.clone();
    other_settings.key = "another-key-of-at-least-thirty-two-bytes!"
        .to_owned()
        .into();
    let other = AckKey::from_settings(&other_settings).expect("another key");
    let in_a_day = OffsetDateTime::now_utc() + time::Duration::days(1);
    let flipped = |at: usize| {
        let mut bytes = token.clone().into_bytes();
        bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
        String::from_utf8(bytes).expect("hex")
    };
    let forged = [
        ("a changed MAC byte", flipped(token.len() - 1)),
        ("a changed expiry", flipped(60)),
        ("a changed recipient digest", flipped(40)),
        (
            "another key",
            other.issue(notification, &recipient, in_a_day),
        ),
        (
            "another recipient",
            real.issue(notification, "altro@prefettura.mi.example", in_a_day),
        ),
        (
            "expired",
            real.issue(
                notification,
                &recipient,
                OffsetDateTime::now_utc() - time::Duration::seconds(1),
            ),
        ),
        ("truncated", token[..96].to_owned()),
        ("not hex", "z".repeat(98)),
        ("garbage", "..%2f..%2fetc%2fpasswd".to_owned()),
    ];
    for (what, bad) in &forged {
        for method in ["GET", "POST"] {
            let form = (method == "POST").then_some("");
            let r = request(addr, method, &format!("/ack/{bad}"), None, form).await;
            assert_eq!(r.status, 403, "{what} {method}: {}", r.body);
            assert!(r.body.contains("non è valido o è scaduto"), "{what}");
            assert!(
                !r.body.contains("alloggio"),
                "{what}: nothing of the notification"
            );
        }
    }
    assert_eq!(acknowledged_events(&app).await, 0);
    assert_eq!(acknowledged_deliveries(&app).await, 0);
    // The real one still works.
    let ok = request(addr, "POST", &path, None, Some("")).await;
    assert_eq!(ok.status, 200);
    assert_eq!(acknowledged_events(&app).await, 1);
    app.cleanup().await;
}

#[tokio::test]
async fn d6_metrics_show_time_to_delivery_and_to_acknowledgement_per_kind_and_deliveries_by_state()
{
    let (app, addr) = spawn_console_with(with_links).await;
    app.publish(&app.event("housing.unit.v1", offer("D6-1")))
        .await;
    app.wait_for_emails(2).await;
    app.settle().await;
    let path = ack_path(&app.emails_of("housing.offered")[0]).expect("a link");
    assert_eq!(
        request(addr, "POST", &path, None, Some("")).await.status,
        200
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let metrics = app.metrics().await;
        if metrics.contains(r#"raccordo_deliveries{kind="housing.offered",state="acknowledged"} 1"#)
        {
            break metrics;
        }
        assert!(
            Instant::now() < deadline,
            "no deliveries by state: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for line in [
        r#"raccordo_time_to_delivery_seconds_count{kind="housing.offered",channel="email"} 1"#,
        r#"raccordo_time_to_delivery_seconds_count{kind="housing.ack",channel="email"} 1"#,
        r#"raccordo_time_to_acknowledgement_seconds_count{kind="housing.offered"} 1"#,
        r#"raccordo_deliveries{kind="housing.ack",state="sent"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    // Histograms with buckets, and the acknowledgement came within a minute.
    assert!(metrics.contains(
        r#"raccordo_time_to_acknowledgement_seconds_bucket{kind="housing.offered",le="60"} 1"#
    ));
    assert!(!metrics.contains("pref-sa") && !metrics.contains('@'));
    app.cleanup().await;
}

// ---------------------------------------------------------------------------------------
// D5

fn in_days(days: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::days(days))
        .format(&Rfc3339)
        .expect("formattable")
}

const FAMILY: [&str; 3] = [
    "Famiglia Escalatoria",
    "Via dei Solleciti 7",
    "+39 333 7654321",
];

/// Consent, then a step with the bailiff's access today: an urgent alert to Rho's
/// servizi sociali (the comune's and the ambito's), after a first, non-urgent one.
async fn publish_urgent_alert(app: &TestApp, procedure: &str) {
    let today = raccordo_core::domain::format_date(raccordo_core::clock::rome_date(
        raccordo_core::clock::now(),
    ));
    app.publish(&app.event(
        "eviction.consent.v1",
        json!({"procedure_id": procedure, "comune_istat": RHO, "decision": "granted",
               "recorded_by": "Sportello sociale di Rho", "recorded_at": in_days(0)}),
    ))
    .await;
    // The step after the consent is applied: with two consumers a step taken first would
    // be counted only, and the consent's alert alone would carry the access.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut conn = app.pool.acquire().await.expect("a connection");
        let applied = raccordo_core::db::count_processed(&mut conn, Some("eviction.consent"))
            .await
            .expect("the inbox");
        if applied >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the consent was not applied within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut step = json!({"procedure_id": procedure, "step": "accesso", "occurred_on": today,
        "comune_istat": RHO, "info_material_delivered": true, "next_access_at": in_days(0)});
    step["household"] = json!({"name": FAMILY[0], "address": FAMILY[1], "members": 3,
        "minors": 1, "frail": false, "phone": FAMILY[2]});
    app.publish(&app.event("eviction.step.v1", step)).await;
}

fn reminders(app: &TestApp) -> Vec<ReceivedMail> {
    app.emails()
        .into_iter()
        .filter(|m| m.header("X-Raccordo-Reminder").as_deref() == Some("1"))
        .collect()
}

async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn spawn_hub(app: &TestApp, after_hours: &str) -> tokio::process::Child {
    app.command()
        .args(["serve", "all"])
        .env("RACCORDO__ESCALATION__AFTER_HOURS", after_hours)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("raccordo serve starts")
}

#[tokio::test]
async fn d5_an_unacknowledged_urgent_alert_is_reminded_then_escalated_exactly_once_across_two_hubs_and_a_kill_9()
 {
    // 0.004 h = 14.4 s: the reminder then, the escalation at 28.8 s.
    let after_hours = "0.004";
    let app = prepare_with(|_| {}).await;
    // The comune's office stands in for Rho's servizi sociali.
    sqlx::query("UPDATE referents SET deputy_of = 'ss-rho' WHERE referent_id = 'com-rho'")
        .execute(&app.pool)
        .await
        .expect("a deputy");
    let mut a = spawn_hub(&app, after_hours);
    let mut b = spawn_hub(&app, after_hours);
    publish_urgent_alert(&app, "RG-D5-0001/2026").await;
    let mails = app.wait_for_emails(4).await;
    let urgent: Vec<&ReceivedMail> = mails
        .iter()
        .filter(|m| m.subject().unwrap_or_default().starts_with("[URGENTE]"))
        .collect();
    assert_eq!(urgent.len(), 2, "one urgent alert to two offices");
    let alert_id = urgent[0].header("X-Raccordo-Notification").expect("an id");

    // The reminder: the same notification again, to the same two, once.
    wait_until("two reminders", Duration::from_secs(40), || {
        reminders(&app).len() >= 2
    })
    .await;
    for m in reminders(&app) {
        let subject = m.subject().unwrap_or_default();
        assert!(
            subject.starts_with("[URGENTE] [PROMEMORIA] Sfratto a Rho"),
            "{subject}"
        );
        assert_eq!(
            m.header("X-Raccordo-Notification").as_deref(),
            Some(alert_id.as_str())
        );
        assert_eq!(
            m.header("X-Raccordo-Kind").as_deref(),
            Some("eviction.alert")
        );
        assert!(
            m.header("Message-ID")
                .unwrap_or_default()
                .contains(".promemoria@")
        );
        assert!(
            m.text_body().unwrap_or_default().contains(FAMILY[0]),
            "the alert itself"
        );
    }

    // A hub killed hard between the reminder and the escalation, then started again.
    a.start_kill().expect("SIGKILL");
    let _ = a.wait().await;
    let mut a = spawn_hub(&app, after_hours);

    // The escalation: one delivery.unacknowledged to the deputy, the ambito, the Prefettura.
    wait_until(
        "the escalation's three emails",
        Duration::from_secs(60),
        || app.emails_of("delivery.unacknowledged").len() >= 3,
    )
    .await;
    // Several more passes of both hubs change nothing.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let escalations = app.emails_of("delivery.unacknowledged");
    let to: BTreeSet<String> = escalations.iter().flat_map(|m| m.to.clone()).collect();
    assert_eq!(
        to,
        BTreeSet::from([
            "accoglienza@comune.rho.example".to_owned(),
            "coordinamento@prefettura.mi.example".to_owned(),
            "ufficiodipiano@ambito.rho.example".to_owned(),
        ])
    );
    let ids: BTreeSet<String> = escalations
        .iter()
        .filter_map(|m| m.header("X-Raccordo-Notification"))
        .collect();
    assert_eq!(ids.len(), 1, "one notification");
    let message_ids: BTreeSet<String> = escalations
        .iter()
        .filter_map(|m| m.header("Message-ID"))
        .collect();
    assert_eq!(message_ids.len(), 3);
    let reminder_ids: BTreeSet<String> = reminders(&app)
        .iter()
        .filter_map(|m| m.header("Message-ID"))
        .collect();
    assert_eq!(reminder_ids.len(), 2, "one reminder per recipient");
    for m in &escalations {
        let subject = m.subject().unwrap_or_default();
        assert!(
            subject.starts_with("[URGENTE] Avviso urgente senza presa visione"),
            "{subject}"
        );
        let text = format!("{}\n{}", m.data, m.html_body().unwrap_or_default());
        for personal in FAMILY.iter().chain(["RG-D5-0001"].iter()) {
            assert!(!text.contains(personal), "{personal} in the escalation");
        }
        assert!(m.text_body().unwrap_or_default().contains(&alert_id));
    }
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM notifications WHERE kind = 'delivery.unacknowledged'"
        )
        .await,
        1
    );
    for (event, n) in [("reminded", 2), ("escalated", 2)] {
        let sql = format!("SELECT count(*) FROM delivery_events WHERE event = '{event}'");
        assert_eq!(count(&app, &sql).await, n, "{event}");
    }
    let _ = a.start_kill();
    let _ = b.start_kill();
    let _ = a.wait().await;
    let _ = b.wait().await;
    app.cleanup().await;
}

#[tokio::test]
async fn d5_an_acknowledgement_stops_the_reminder_and_the_escalation() {
    // 0.004 h = 14.4 s; the acknowledgement comes first.
    let after = Duration::from_secs_f64(0.004 * 3600.0);
    let (app, addr) = spawn_console_with(|s| {
        with_links(s);
        s.escalation.after_hours = 0.004;
    })
    .await;
    publish_urgent_alert(&app, "RG-D5-0002/2026").await;
    // Pressed as soon as the alert exists, whatever the mail's latency on a loaded machine:
    // the token is the one its email carries (same key, address and notification).
    let deadline = Instant::now() + Duration::from_secs(30);
    let (notification, recipient) = loop {
        let row: Option<(uuid::Uuid, String)> = sqlx::query_as(
            r#"
            SELECT d.notification_id, d.email
            FROM deliveries d JOIN notifications n ON n.id = d.notification_id
            WHERE n.urgent AND n.kind = 'eviction.alert'
            LIMIT 1
            "#,
        )
        .fetch_optional(&app.pool)
        .await
        .expect("the urgent alert");
        if let Some(row) = row {
            break row;
        }
        assert!(Instant::now() < deadline, "no urgent alert");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let key = AckKey::from_settings(&app.settings.ack).expect("the key");
    let token = key.issue(
        notification,
        &recipient,
        OffsetDateTime::now_utc() + time::Duration::days(1),
    );
    let path = format!("/ack/{token}");
    assert_eq!(
        request(addr, "POST", &path, None, Some("")).await.status,
        200
    );
    app.wait_for_emails(4).await;
    let urgent: Vec<ReceivedMail> = app
        .emails()
        .into_iter()
        .filter(|m| m.subject().unwrap_or_default().starts_with("[URGENTE]"))
        .collect();
    assert!(ack_path(&urgent[0]).is_some(), "an alert carries a link");
    let (created, acknowledged): (OffsetDateTime, OffsetDateTime) = sqlx::query_as(
        r#"
        SELECT n.created_at, d.acknowledged_at
        FROM deliveries d JOIN notifications n ON n.id = d.notification_id
        WHERE d.acknowledged_at IS NOT NULL
        "#,
    )
    .fetch_one(&app.pool)
    .await
    .expect("the acknowledged alert");
    assert!(
        acknowledged - created < after,
        "the acknowledgement came before the reminder was due (a machine this slow needs a longer after_hours)"
    );
    // Past twice the time, and a few passes more.
    let until = created + after * 2 + Duration::from_secs(6);
    let wait = until - OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await;
    assert!(reminders(&app).is_empty(), "no reminder");
    assert!(
        app.emails_of("delivery.unacknowledged").is_empty(),
        "no escalation"
    );
    assert_eq!(count(&app, "SELECT count(*) FROM escalations").await, 0);
    assert_eq!(app.emails().len(), 4);
    app.cleanup().await;
}
