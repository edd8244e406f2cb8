//! What referents ask of their mail (issue 22) through the real broker, database and SMTP,
//! the mailer reading an injected clock: each preference, quiet hours with an urgent alert
//! inside them, a withdrawn unit leaving its digest, a digest exactly once with two hubs
//! and a kill -9 while it is being sent, and no personal data in any digest.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raccordo::serve::Workers;
use raccordo_core::clock::Clock;
use raccordo_core::preferences::Preferences;
use raccordo_core::registry::{Actor, set_preferences};
use raccordo_e2e::{TestApp, prepare_with};
use raccordo_mailer::delivery::{Mailer, transport_from_settings};
use raccordo_smtp_sink::{Behaviour, Delay, ReceivedMail};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

const KEY: &str = "0123456789abcdef0123456789abcdef-digests";
const PUBLIC: &str = "https://raccordo.example";
/// `pref-sa`: the stazione appaltante of every comune (data/referents_sample.csv).
const SA: &str = "gare.accoglienza@prefettura.mi.example";
/// `com-milano`: the Comune di Milano's reception office.
const MILANO: &str = "accoglienza@comune.milano.example";
/// `ss-rho`: Rho's social services; `ss-ambito-rho` its ambito's.
const SS_RHO: &str = "servizisociali@comune.rho.example";
const RHO: &str = "015182";

/// A clock the test moves.
struct TestClock(Mutex<OffsetDateTime>);

impl TestClock {
    fn at(now: OffsetDateTime) -> Arc<Self> {
        Arc::new(Self(Mutex::new(now)))
    }

    fn set(&self, now: OffsetDateTime) {
        *self.0.lock().expect("clock") = now;
    }
}

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().expect("clock")
    }
}

/// Now plus `days`, RFC 3339.
fn rfc3339(days: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::days(days))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formattable")
}

fn offer(unit_id: &str) -> Value {
    json!({
        "unit_id": unit_id, "action": "offered", "comune_istat": "015146",
        "address": "Via Padova 1, Milano", "places": 4, "reception_kind": "CAS",
        "building_type": "appartamento", "owner_declaration": true
    })
}

/// A hub whose housing worker runs in this process, with no mailer: the test's own mailer
/// reads the test's clock.
async fn hub(workers: Workers) -> TestApp {
    prepare_with(|s| {
        s.console.public_url = PUBLIC.into();
        s.ack.key = KEY.to_owned().into();
    })
    .await
    .start(workers)
    .await
}

fn mailer(app: &TestApp, clock: &Arc<TestClock>) -> Mailer {
    let transport = transport_from_settings(&app.settings.mail).expect("the SMTP transport");
    let clock: Arc<dyn Clock> = clock.clone();
    Mailer::new(
        app.pool.clone(),
        transport,
        &app.settings.mail.from,
        &app.settings.retry,
        1,
    )
    .with_ack_links(raccordo_core::ack::AckLinks::from_settings(&app.settings))
    .with_preference_links(
        raccordo_core::preference_link::PreferenceLinks::from_settings(&app.settings),
    )
    .with_clock(clock)
}

/// Sends what is due now, then passes over quiet hours and digests, until nothing moves.
async fn drive(mailer: &Mailer) {
    for _ in 0..4 {
        loop {
            let round = mailer.send_due().await.expect("a round");
            if round.claimed == 0 {
                break;
            }
        }
        let pass = raccordo_mailer::digest::run_pass(mailer)
            .await
            .expect("a digest pass");
        if pass == raccordo_mailer::digest::Pass::default() {
            break;
        }
    }
}

async fn prefer(app: &TestApp, referent: &str, kinds: &str, quiet: Option<&str>) {
    let prefs = Preferences {
        kinds: Preferences::parse_kinds(kinds).expect("valid preferences"),
        quiet_hours: quiet
            .map(|q| raccordo_core::preferences::QuietHours::parse(q).expect("valid quiet hours")),
        quiet_weekends: false,
    };
    let mut conn = app.pool.acquire().await.expect("a connection");
    assert!(
        set_preferences(&mut conn, referent, &prefs, &Actor::cli())
            .await
            .expect("stored"),
        "{referent} is in the sample registry"
    );
}

/// Waits until `n` deliveries exist (the workers decided them).
async fn wait_deliveries(app: &TestApp, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries")
            .fetch_one(&app.pool)
            .await
            .expect("count");
        if count >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{count} of {n} deliveries");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until at least `min` deliveries exist and their number held for a second.
async fn wait_stable(app: &TestApp, min: i64) -> i64 {
    wait_deliveries(app, min).await;
    let mut last = -1;
    loop {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries")
            .fetch_one(&app.pool)
            .await
            .expect("count");
        if count == last {
            return count;
        }
        last = count;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The timeline events of `email`'s deliveries, per notification, in order.
async fn timelines(app: &TestApp, email: &str) -> BTreeMap<String, Vec<String>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT notification_id::TEXT, event FROM delivery_events WHERE recipient = $1 ORDER BY id",
    )
    .bind(email)
    .fetch_all(&app.pool)
    .await
    .expect("timelines");
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, event) in rows {
        out.entry(id).or_default().push(event);
    }
    out
}

fn to(mails: &[ReceivedMail], email: &str) -> Vec<ReceivedMail> {
    mails
        .iter()
        .filter(|m| m.to.iter().any(|t| t == email))
        .cloned()
        .collect()
}

#[tokio::test]
async fn digest_each_preference_hourly_digest_off_and_immediate_with_its_links() {
    let app = hub(Workers::Housing).await;
    // Tuesday 8 December 2026, 10:20 in Rome.
    let clock = TestClock::at(datetime!(2026-12-08 09:20 UTC));
    let mailer = mailer(&app, &clock);
    prefer(&app, "pref-sa", "housing.offered=hourly", None).await;
    for unit in ["DG-1", "DG-2", "DG-3"] {
        app.publish(&app.event("housing.unit.v1", offer(unit)))
            .await;
    }
    // Three offers to the stazione appaltante, three acknowledgements to the Comune.
    wait_deliveries(&app, 6).await;
    drive(&mailer).await;
    let mails = app.smtp.mails();
    assert!(to(&mails, SA).is_empty(), "the offers wait for the hour");
    let acks = to(&mails, MILANO);
    assert_eq!(acks.len(), 3, "immediate is the default");
    for ack in &acks {
        // housing.ack may be turned off: a one-click unsubscribe (RFC 8058).
        let unsubscribe = ack.header("List-Unsubscribe").expect("List-Unsubscribe");
        assert!(
            unsubscribe.starts_with("<https://raccordo.example/preferenze/")
                && unsubscribe.ends_with("/disiscrivi>"),
            "{unsubscribe}"
        );
        assert_eq!(
            ack.header("List-Unsubscribe-Post").as_deref(),
            Some("List-Unsubscribe=One-Click")
        );
        let body = ack.text_body().unwrap_or_default();
        assert!(
            body.contains("https://raccordo.example/preferenze/"),
            "{body}"
        );
    }
    for events in timelines(&app, SA).await.values() {
        assert_eq!(events, &["queued", "digested"]);
    }

    // 11:00:30: the hour closed; one digest of three.
    clock.set(datetime!(2026-12-08 10:00:30 UTC));
    drive(&mailer).await;
    let digests = to(&app.smtp.mails(), SA);
    assert_eq!(digests.len(), 1, "one digest per referent and window");
    let digest = &digests[0];
    assert_eq!(digest.header("X-Raccordo-Kind").as_deref(), Some("digest"));
    assert!(digest.header("X-Raccordo-Digest").is_some());
    assert!(digest.header("X-Raccordo-Notification").is_none());
    assert!(
        digest.header("List-Unsubscribe").is_none(),
        "offers cannot be turned off"
    );
    assert_eq!(
        digest.subject().as_deref(),
        Some("Riepilogo Raccordo: 3 notifiche")
    );
    let body = digest.text_body().unwrap_or_default();
    for unit in ["DG-1", "DG-2", "DG-3"] {
        assert!(body.contains(unit), "{unit} in the digest");
    }
    assert!(
        body.contains("https://raccordo.example/ack/"),
        "each offer's acknowledgement"
    );
    let message_id = digest.header("Message-ID").expect("a Message-ID");
    for events in timelines(&app, SA).await.values() {
        assert_eq!(events, &["queued", "digested", "sent_in_digest"]);
    }
    let carried: Vec<String> = sqlx::query_scalar(
        "SELECT message_id FROM deliveries WHERE email = $1 AND state = 'sent_in_digest'",
    )
    .bind(SA)
    .fetch_all(&app.pool)
    .await
    .expect("deliveries");
    assert_eq!(carried, vec![message_id.clone(); 3]);

    // Off: the Comune turns the acknowledgements off; the next offer's is not sent.
    prefer(&app, "com-milano", "housing.ack=off", None).await;
    app.publish(&app.event("housing.unit.v1", offer("DG-4")))
        .await;
    wait_deliveries(&app, 8).await;
    drive(&mailer).await;
    assert_eq!(to(&app.smtp.mails(), MILANO).len(), 3, "turned off");
    let states: Vec<String> = sqlx::query_scalar(
        "SELECT state FROM deliveries d JOIN notifications n ON n.id = d.notification_id
         WHERE d.email = $1 AND n.payload ->> 'unit_id' = 'DG-4'",
    )
    .bind(MILANO)
    .fetch_all(&app.pool)
    .await
    .expect("state");
    assert_eq!(states, ["suppressed"]);
    // A second pass sends no second digest.
    clock.set(datetime!(2026-12-08 12:00:30 UTC));
    drive(&mailer).await;
    let digests = to(&app.smtp.mails(), SA);
    assert_eq!(digests.len(), 2, "DG-4's offer in the next hour's digest");
    assert_ne!(digests[1].header("Message-ID"), Some(message_id));
    app.cleanup().await;
}

#[tokio::test]
async fn digest_a_withdrawn_unit_leaves_the_digest_before_its_window_closes() {
    let app = hub(Workers::Housing).await;
    let clock = TestClock::at(datetime!(2026-12-08 09:20 UTC));
    let mailer = mailer(&app, &clock);
    prefer(
        &app,
        "pref-sa",
        "housing.offered=daily 08:00; housing.withdrawn=daily 08:00",
        None,
    )
    .await;
    prefer(&app, "com-milano", "housing.ack=off", None).await;
    app.publish(&app.event("housing.unit.v1", offer("WD-1")))
        .await;
    app.publish(&app.event("housing.unit.v1", offer("WD-2")))
        .await;
    wait_deliveries(&app, 4).await;
    drive(&mailer).await;
    let mut withdrawal = offer("WD-1");
    withdrawal["action"] = json!("withdrawn");
    app.publish(&app.event("housing.unit.v1", withdrawal)).await;
    // The withdrawal itself (housing.withdrawn) joins the same digest.
    wait_stable(&app, 5).await;
    drive(&mailer).await;
    clock.set(datetime!(2026-12-09 07:00:30 UTC));
    drive(&mailer).await;
    let digests = to(&app.smtp.mails(), SA);
    assert_eq!(digests.len(), 1);
    let body = digests[0].text_body().unwrap_or_default();
    assert_eq!(
        digests[0].subject().as_deref(),
        Some("Riepilogo Raccordo: 2 notifiche"),
        "WD-2's offer and WD-1's withdrawal"
    );
    assert!(body.contains("WD-2"));
    assert!(body.contains("ritirato"), "the withdrawal is listed");
    let cancelled: Vec<Vec<String>> = timelines(&app, SA)
        .await
        .into_values()
        .filter(|events| events.contains(&"cancelled".to_owned()))
        .collect();
    assert_eq!(cancelled, vec![vec!["queued", "digested", "cancelled"]]);
    app.cleanup().await;
}

#[tokio::test]
async fn digest_quiet_hours_hold_an_ordinary_alert_and_let_an_urgent_one_through() {
    let app = hub(Workers::Eviction).await;
    // Tuesday 8 December 2026, 22:00 in Rome.
    let clock = TestClock::at(datetime!(2026-12-08 21:00 UTC));
    let mailer = mailer(&app, &clock);
    // Rho's social services are quiet from 20:00 to 08:00 and would digest alerts hourly:
    // an alert carries a family's data, so it is never digested, only held alone.
    prefer(&app, "ss-rho", "eviction.alert=hourly", Some("20:00-08:00")).await;
    let procedure = "RG-Q-0001/2026";
    let today = raccordo_core::clock::rome_date(OffsetDateTime::now_utc()).to_string();
    app.publish(&app.event(
        "eviction.consent.v1",
        json!({"procedure_id": procedure, "comune_istat": RHO, "decision": "granted",
               "recorded_by": "Sportello sociale di Rho", "recorded_at": rfc3339(0)}),
    ))
    .await;
    let mut far = json!({"procedure_id": procedure, "step": "avviso_sloggio", "occurred_on": today,
                         "comune_istat": RHO, "info_material_delivered": true});
    far["next_access_at"] = json!(rfc3339(20));
    app.publish(&app.event("eviction.step.v1", far)).await;
    // The step's alerts (Rho and its ambito).
    let before = wait_stable(&app, 2).await;
    drive(&mailer).await;
    let held_back = to(&app.smtp.mails(), SS_RHO);
    assert!(held_back.is_empty(), "quiet: nothing ordinary goes out");

    // The bailiff's access today: urgent (C5), through quiet hours.
    let mut near = json!({"procedure_id": procedure, "step": "accesso", "occurred_on": today,
                          "comune_istat": RHO, "info_material_delivered": true});
    near["next_access_at"] = json!(rfc3339(0));
    app.publish(&app.event("eviction.step.v1", near)).await;
    wait_stable(&app, before + 1).await;
    drive(&mailer).await;
    let urgent = to(&app.smtp.mails(), SS_RHO);
    assert_eq!(urgent.len(), 1, "only the urgent alert, at once");
    assert!(
        urgent[0]
            .subject()
            .unwrap_or_default()
            .starts_with("[URGENTE]")
    );
    let deferred: Vec<Value> = sqlx::query_scalar(
        "SELECT details FROM delivery_events WHERE recipient = $1 AND event = 'deferred'",
    )
    .bind(SS_RHO)
    .fetch_all(&app.pool)
    .await
    .expect("events");
    assert!(!deferred.is_empty());
    for details in &deferred {
        // 08:00 in Rome on Wednesday.
        assert_eq!(details["until"], json!("2026-12-09T07:00:00Z"));
    }

    // 08:00: the held alerts go, each alone, never in a digest.
    clock.set(datetime!(2026-12-09 07:00:10 UTC));
    drive(&mailer).await;
    let all = to(&app.smtp.mails(), SS_RHO);
    assert_eq!(all.len(), 1 + deferred.len());
    for m in &all {
        assert_ne!(m.header("X-Raccordo-Kind").as_deref(), Some("digest"));
        assert!(m.header("X-Raccordo-Notification").is_some());
    }
    let digests: i64 = sqlx::query_scalar("SELECT count(*) FROM digests")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(digests, 0, "personal data is never digested");
    app.cleanup().await;
}

#[tokio::test]
async fn digest_exactly_once_with_two_hubs_and_a_kill_9_while_it_is_sent() {
    let app = hub(Workers::Housing).await;
    // Three hours ago: the hour's window closed long before the hubs start.
    let clock = TestClock::at(OffsetDateTime::now_utc() - time::Duration::hours(3));
    let mailer = mailer(&app, &clock);
    prefer(&app, "pref-sa", "housing.offered=hourly", None).await;
    prefer(&app, "com-milano", "housing.ack=off", None).await;
    let units: Vec<String> = (1..=5).map(|i| format!("KD-{i}")).collect();
    for unit in &units {
        app.publish(&app.event("housing.unit.v1", offer(unit)))
            .await;
    }
    wait_deliveries(&app, 10).await;
    loop {
        if mailer.send_due().await.expect("a round").claimed == 0 {
            break;
        }
    }
    let digested: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE state = 'digested'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(digested, 5);
    // The server takes 3 s to accept a message: the first hub dies inside that time.
    app.smtp.set_behaviour(Behaviour {
        data_delay: Delay::fixed_ms(3000),
        ..Behaviour::default()
    });
    let serve = |app: &TestApp| {
        app.command()
            .args(["serve", "mailer"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("raccordo serve mailer starts")
    };
    let mut first = serve(&app);
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.smtp.transactions_in_flight() == 0 {
        assert!(
            Instant::now() < deadline,
            "the first hub never sent the digest"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut second = serve(&app);
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.start_kill().expect("SIGKILL");
    let _ = first.wait().await;
    app.smtp.set_behaviour(Behaviour::default());
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let sent: i64 =
            sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE state = 'sent_in_digest'")
                .fetch_one(&app.pool)
                .await
                .expect("count");
        if sent == 5 {
            break;
        }
        assert!(Instant::now() < deadline, "{sent} of 5 items sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Another pass of the surviving hub, to see that nothing goes twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = second.start_kill();
    let _ = second.wait().await;

    let digests = to(&app.smtp.mails(), SA);
    let ids: BTreeSet<String> = digests
        .iter()
        .map(|m| m.header("Message-ID").expect("a Message-ID"))
        .collect();
    assert_eq!(ids.len(), 1, "one digest, whatever was resent: {ids:?}");
    // A copy the killed hub had fully handed over may come again, with the same id (F3).
    assert!(
        !digests.is_empty() && digests.len() <= 2,
        "{}",
        digests.len()
    );
    let body = digests[0].text_body().unwrap_or_default();
    for unit in &units {
        assert!(body.contains(unit.as_str()), "{unit} in the digest");
    }
    let rows: Vec<(Option<OffsetDateTime>, Option<OffsetDateTime>)> =
        sqlx::query_as("SELECT sent_at, closed_at FROM digests")
            .fetch_all(&app.pool)
            .await
            .expect("digests");
    assert_eq!(rows.len(), 1, "composed once across two hubs");
    assert!(rows[0].0.is_some() && rows[0].1.is_none());
    let in_two: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM delivery_events WHERE event = 'sent_in_digest'
         GROUP BY notification_id, recipient HAVING count(*) > 1",
    )
    .fetch_optional(&app.pool)
    .await
    .expect("count")
    .unwrap_or(0);
    assert_eq!(in_two, 0, "each item recorded in one digest once");
    app.cleanup().await;
}

#[tokio::test]
async fn digest_a_window_of_more_than_a_hundred_items_goes_in_digests_of_at_most_a_hundred() {
    let app = hub(Workers::Housing).await;
    let clock = TestClock::at(datetime!(2026-12-08 09:20 UTC));
    let mailer = mailer(&app, &clock);
    prefer(&app, "pref-sa", "housing.offered=hourly", None).await;
    prefer(&app, "com-milano", "housing.ack=off", None).await;
    for i in 0..105 {
        app.publish(&app.event("housing.unit.v1", offer(&format!("BIG-{i}"))))
            .await;
    }
    wait_deliveries(&app, 210).await;
    drive(&mailer).await;
    clock.set(datetime!(2026-12-08 10:00:30 UTC));
    drive(&mailer).await;
    let digests = to(&app.smtp.mails(), SA);
    let mut subjects: Vec<String> = digests.iter().filter_map(ReceivedMail::subject).collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "Riepilogo Raccordo: 100 notifiche",
            "Riepilogo Raccordo: 5 notifiche"
        ]
    );
    let sent: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT notification_id) FROM deliveries WHERE state = 'sent_in_digest'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(sent, 105, "every item, once");
    app.cleanup().await;
}
