//! Bounces and their fallback (contract 1.2 §9 D3), through the real broker, database, SMTP
//! server and IMAP server (the project's Dovecot, scripts/services.sh): a report returned by
//! the mail server into the bounce mailbox, or a permanent refusal at send time, records
//! `bounced` and sends the notification to the referent's PEC, then to its deputy; a forged
//! or stray report changes nothing.

use std::time::{Duration, Instant};

use raccordo_core::fallback::FallbackPolicy;
use raccordo_core::registry::{Actor, import_referents};
use raccordo_e2e::{TestApp, prepare_with, spawn_app};
use raccordo_evidence::imap::{Appender, ImapUrl, Mailbox};
use raccordo_smtp_sink::Rejection;
use serde_json::{Value, json};
use uuid::Uuid;

const MILANO: &str = "015146";
const SA: &str = "gare.accoglienza@prefettura.mi.example";
const SA_PEC: &str = "gare.accoglienza@pec.prefettura.mi.example";
const DEPUTY: &str = "vicario@prefettura.mi.example";

/// The sample stazione appaltante with a PEC address, and a deputy of another role (so
/// not a recipient of housing offers by itself).
const WITH_PEC_AND_DEPUTY: &str = "\
deputy_of,referent_id,institution,role,email,name,comune_istat,ambito,zona,pec
,pref-sa,Prefettura di Milano - Area IV Immigrazione,stazione_appaltante,gare.accoglienza@prefettura.mi.example,Ufficio gare accoglienza,,,,gare.accoglienza@pec.prefettura.mi.example
pref-sa,pref-vicario,Prefettura di Milano - Vicario,prefettura,vicario@prefettura.mi.example,Viceprefetto vicario,,,,
";

fn offer(unit_id: &str) -> Value {
    json!({
        "unit_id": unit_id, "action": "offered", "comune_istat": MILANO,
        "address": "Via Giambellino 58, Milano", "places": 6, "reception_kind": "CAS",
        "building_type": "appartamento", "owner_declaration": true
    })
}

async fn import(app: &TestApp, csv: &str) {
    let report = import_referents(&app.pool, csv.as_bytes(), &Actor::import("test.csv"))
        .await
        .expect("the import runs");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

const IMAP_TIMEOUT: Duration = Duration::from_secs(10);

/// A bounce mailbox of this test's own in the project's Dovecot (created empty), and its
/// URL as `mail.bounce_imap_url`.
async fn bounce_mailbox() -> (ImapUrl, String) {
    let base = std::env::var("RACCORDO_TEST_IMAP_URL")
        .unwrap_or_else(|_| "imap://raccordo:raccordo@127.0.0.1:10143/INBOX".into());
    let parsed = ImapUrl::parse(&base).expect("RACCORDO_TEST_IMAP_URL parses");
    let mut inbox = Mailbox::open(&parsed, IMAP_TIMEOUT)
        .await
        .expect("Dovecot answers: start it with scripts/services.sh");
    let name = format!("bounces-{}", Uuid::new_v4().simple());
    inbox.create_if_missing(&name).await.expect("a mailbox");
    inbox.close().await;
    let mut url = url::Url::parse(&base).expect("a URL");
    url.set_path(&format!("/{name}"));
    (parsed.with_mailbox(&name), url.to_string())
}

/// APPENDs every report the SMTP sink returns into the bounce mailbox, as a mail server
/// delivers it to the envelope sender.
fn forward_reports(app: &TestApp, mailbox: ImapUrl) -> tokio::task::JoinHandle<()> {
    let mut reports = app.smtp.dsn_reports();
    tokio::spawn(async move {
        let mut appender = Appender::new(mailbox, IMAP_TIMEOUT);
        while let Some(report) = reports.recv().await {
            appender
                .append(&report)
                .await
                .expect("the report is appended");
        }
    })
}

/// The events of a notification, in order: (recipient, event, details).
async fn timeline(app: &TestApp, id: Uuid) -> Vec<(String, String, Value)> {
    sqlx::query_as(
        r#"
        SELECT recipient, event, details
        FROM delivery_events
        WHERE notification_id = $1
        ORDER BY id
        "#,
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .expect("the timeline")
}

/// The events of one delivery, by name.
fn events_of(timeline: &[(String, String, Value)], recipient: &str) -> Vec<String> {
    timeline
        .iter()
        .filter(|(r, ..)| r == recipient)
        .map(|(_, e, _)| e.clone())
        .collect()
}

fn details<'t>(timeline: &'t [(String, String, Value)], recipient: &str, event: &str) -> &'t Value {
    timeline
        .iter()
        .find(|(r, e, _)| r == recipient && e == event)
        .map(|(.., d)| d)
        .unwrap_or_else(|| panic!("no {event} of {recipient}: {timeline:#?}"))
}

/// Waits (bounded) until `recipient` has received an email of `kind`.
async fn wait_for_email_to(app: &TestApp, kind: &str, recipient: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !app
        .emails_of(kind)
        .iter()
        .any(|m| m.to.iter().any(|t| t == recipient))
    {
        assert!(
            Instant::now() < deadline,
            "no {kind} reached {recipient}: {:?}",
            app.emails()
                .iter()
                .map(|m| (m.header("X-Raccordo-Kind"), m.to.clone()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn d3_a_bounce_falls_back_to_the_referents_pec_and_a_refused_pec_to_its_deputy() {
    let (mailbox, url) = bounce_mailbox().await;
    // PEC goes through the same SMTP server (the sink), for the eviction kinds alone: the
    // offer goes by email first, and its PEC is the other channel.
    let app = prepare_with(|s| {
        s.mail.bounce_imap_url = Some(url.into());
        s.mail.pec_smtp_url = s.mail.smtp_url.clone();
        s.mail.pec_kinds = vec!["eviction.alert".into()];
    })
    .await;
    import(&app, WITH_PEC_AND_DEPUTY).await;
    // The email comes back as a report into the bounce mailbox; the PEC address is refused
    // at RCPT.
    app.smtp.reject(SA, Some(Rejection::Dsn));
    app.smtp.reject(SA_PEC, Some(Rejection::AtRcpt));
    let forwarding = forward_reports(&app, mailbox);
    let app = app.start(raccordo::serve::Workers::All).await;

    app.publish(&app.event("housing.unit.v1", offer("MI-B1")))
        .await;

    wait_for_email_to(&app, "housing.offered", DEPUTY).await;
    let [(id, ..)] = app.notifications("housing.offered").await[..] else {
        panic!("one offer");
    };
    let timeline = timeline(&app, id).await;
    assert_eq!(
        events_of(&timeline, SA),
        ["queued", "sent", "bounced", "fallback"],
        "{timeline:#?}"
    );
    let bounced = details(&timeline, SA, "bounced");
    assert_eq!(bounced["status"], "5.1.1");
    assert_eq!(bounced["source"], "dsn");
    let diagnostic = bounced["diagnostic"].as_str().expect("a diagnostic");
    assert!(
        diagnostic.contains("User unknown") && !diagnostic.contains('@'),
        "{diagnostic}"
    );
    let fallback = details(&timeline, SA, "fallback");
    assert_eq!(
        (&fallback["to"], &fallback["channel"], &fallback["why"]),
        (&json!("pref-sa"), &json!("pec"), &json!("other_channel"))
    );
    assert_eq!(
        events_of(&timeline, SA_PEC),
        ["queued", "bounced", "fallback"],
        "{timeline:#?}"
    );
    assert_eq!(details(&timeline, SA_PEC, "bounced")["source"], "smtp");
    let to_deputy = details(&timeline, SA_PEC, "fallback");
    assert_eq!(
        (&to_deputy["to"], &to_deputy["why"]),
        (&json!("pref-vicario"), &json!("deputy"))
    );
    assert_eq!(
        details(&timeline, DEPUTY, "queued")["fallback_of"],
        "pref-sa"
    );
    assert!(events_of(&timeline, DEPUTY).contains(&"sent".to_owned()));
    // No address in any event's details: they are published as `delivery.*` events.
    for (_, event, d) in &timeline {
        assert!(
            !d.to_string().contains('@') || event == "sent",
            "{event}: {d}"
        );
    }
    // One report, recorded once, about this delivery.
    let reports: Vec<(String, Option<Uuid>, Option<String>)> =
        sqlx::query_as("SELECT outcome, notification_id, referent_id FROM bounce_reports")
            .fetch_all(&app.pool)
            .await
            .expect("reports");
    assert_eq!(
        reports,
        [("bounced".into(), Some(id), Some("pref-sa".into()))]
    );
    // The deputy alone got it, once; the chain ends there.
    app.settle().await;
    assert_eq!(
        app.emails_of("housing.offered")
            .iter()
            .flat_map(|m| m.to.clone())
            .collect::<Vec<_>>(),
        [DEPUTY]
    );
    forwarding.abort();
    app.cleanup().await;
}

/// A report as a mail server returns one, about `message_id` sent to `recipient`.
fn report(message_id: &str, recipient: &str, action: &str, status: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.example\r\n\
         To: raccordo@cittametropolitana.mi.example\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Message-ID: <{}@mx.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\
         \r\n\
         --B\r\n\
         Content-Type: text/plain\r\n\
         \r\n\
         Not delivered.\r\n\
         --B\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; mx.example\r\n\
         \r\n\
         Final-Recipient: rfc822; {recipient}\r\n\
         Action: {action}\r\n\
         Status: {status}\r\n\
         \r\n\
         --B\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         Message-ID: {message_id}\r\n\
         Subject: Nuova disponibilita\r\n\
         \r\n\
         --B--\r\n",
        Uuid::new_v4().simple()
    )
}

#[tokio::test]
async fn d3_a_forged_or_stray_report_changes_nothing() {
    let app = spawn_app().await;
    app.publish(&app.event("housing.unit.v1", offer("MI-F1")))
        .await;
    app.wait_for_emails(2).await;
    app.settle().await;
    let [(id, ..)] = app.notifications("housing.offered").await[..] else {
        panic!("one offer");
    };
    let message_id: String = sqlx::query_scalar(
        "SELECT message_id FROM deliveries WHERE notification_id = $1 AND email = $2",
    )
    .bind(id)
    .bind(SA)
    .fetch_one(&app.pool)
    .await
    .expect("the offer's Message-ID");
    let before = timeline(&app, id).await;
    let policy = FallbackPolicy::default();
    let handle = |raw: String| {
        let pool = app.pool.clone();
        let policy = policy.clone();
        async move {
            raccordo_bounces::handle_report(&pool, &policy, raw.as_bytes())
                .await
                .expect("recorded")
        }
    };

    // The right message, another address: someone who saw the Message-ID.
    let other_address = handle(report(
        &message_id,
        "intruso@evil.example",
        "failed",
        "5.1.1",
    ))
    .await;
    // An address of ours, a message never sent.
    let unknown = handle(report("<nope@hub.example>", SA, "failed", "5.1.1")).await;
    // Not a report at all, and a report that says nothing failed.
    let plain = handle("From: a@b.example\r\nSubject: hi\r\n\r\nciao\r\n".into()).await;
    let delayed = report(&message_id, SA, "delayed", "4.4.1");
    let delay = handle(delayed.clone()).await;
    // The same report read twice (a second replica, a restart).
    let again = handle(delayed).await;

    use raccordo_bounces::Outcome;
    assert_eq!(
        [other_address, unknown, plain, delay, again],
        [
            Outcome::Unmatched,
            Outcome::Unmatched,
            Outcome::Malformed,
            Outcome::NotPermanent,
            Outcome::Duplicate
        ]
    );
    assert_eq!(
        timeline(&app, id).await.len(),
        before.len(),
        "no event added"
    );
    let deliveries: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE notification_id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(deliveries, 1, "no stand-in");
    let outcomes: Vec<String> =
        sqlx::query_scalar("SELECT outcome FROM bounce_reports ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .expect("reports");
    assert_eq!(
        outcomes,
        ["unmatched", "unmatched", "malformed", "not_permanent"]
    );
    app.settle().await;
    assert_eq!(app.emails().len(), 2, "nobody else was mailed");
    app.cleanup().await;
}
