//! Eviction procedures end to end (CONTRACT C1–C7), and the leak test: a family that never
//! consents, and one that consents and then revokes, leave no personal data in the logs
//! (text and JSON, debug level), the emails, the queues or a dump of the database.

use std::process::Stdio;
use std::time::{Duration, Instant};

use lapin::options::BasicGetOptions;
use raccordo_e2e::{TestApp, prepare_with, spawn_app};
use raccordo_smtp_sink::ReceivedMail;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use raccordo_core::clock::{YearMonth, now, rome_date};
use raccordo_core::domain::format_date;
use raccordo_core::schedule::{RunOutcome, run_once};
use raccordo_eviction::stats::EvictionStatsJob;

const RHO: &str = "015182";
const MILANO: &str = "015146";
const ARESE: &str = "015009";
const SAN_COLOMBANO: &str = "015191";

/// The servizi sociali referents of Rho: the comune's and the ambito's.
const RHO_REFERENTS: [&str; 2] = [
    "servizisociali@comune.rho.example",
    "ufficiodipiano@ambito.rho.example",
];

fn in_days(days: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::days(days))
        .format(&Rfc3339)
        .expect("formattable")
}

fn today() -> String {
    format_date(rome_date(now()))
}

fn household(name: &str, address: &str, phone: &str, email: &str) -> Value {
    json!({"name": name, "address": address, "members": 4, "minors": 2, "frail": true,
           "phone": phone, "email": email, "notes": "Al piano terra"})
}

fn step(procedure: &str, comune: &str, step: &str, on: &str) -> Value {
    json!({"procedure_id": procedure, "step": step, "occurred_on": on, "comune_istat": comune,
           "info_material_delivered": true})
}

fn consent(procedure: &str, comune: &str, decision: &str, at: &str) -> Value {
    json!({"procedure_id": procedure, "comune_istat": comune, "decision": decision,
           "recorded_by": "Sportello sociale di Rho", "recorded_at": at})
}

fn recipients(mails: &[ReceivedMail]) -> Vec<String> {
    let mut to: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    to
}

/// Everything a mail says: raw data, decoded subject and bodies.
fn mail_text(m: &ReceivedMail) -> String {
    format!(
        "{}\n{}\n{}\n{}",
        m.data,
        m.subject().unwrap_or_default(),
        m.text_body().unwrap_or_default(),
        m.html_body().unwrap_or_default()
    )
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&app.pool)
        .await
        .expect("count query")
}

#[tokio::test]
async fn c1_a_family_without_consent_reaches_nobody_and_is_kept_only_under_a_pseudonym() {
    let app = spawn_app().await;
    let mut first = step("RG-C1-0001/2026", RHO, "intimazione", &today());
    first["household"] = household(
        "Famiglia Cuno",
        "Via Cuno 1",
        "+39 300 0000001",
        "cuno@example.org",
    );
    let mut second = step("RG-C1-0001/2026", RHO, "avviso_sloggio", &today());
    second["next_access_at"] = json!(in_days(1));
    second["household"] = first["household"].clone();
    app.publish(&app.event("eviction.step.v1", first)).await;
    app.publish(&app.event("eviction.step.v1", second)).await;
    app.settle().await;

    assert!(app.emails().is_empty(), "nobody is told without consent");
    assert_eq!(count(&app, "SELECT count(*) FROM eviction_steps").await, 2);
    assert_eq!(
        count(&app, "SELECT count(*) FROM eviction_personal").await,
        0
    );
    assert_eq!(count(&app, "SELECT count(*) FROM notifications").await, 0);
    let pseudonym: String = sqlx::query_scalar("SELECT pseudonym FROM eviction_procedures")
        .fetch_one(&app.pool)
        .await
        .expect("one procedure");
    assert_eq!(pseudonym.len(), 64);
    assert!(!pseudonym.contains("C1-0001"));
    app.cleanup().await;
}

#[tokio::test]
async fn c2_c3_consent_alerts_the_comune_and_ambito_with_history_then_each_step_alerts() {
    let app = spawn_app().await;
    let procedure = "RG-C2-0002/2026";
    app.publish(&app.event(
        "eviction.step.v1",
        step(procedure, RHO, "intimazione", "2026-01-12"),
    ))
    .await;
    app.settle().await;
    assert!(app.emails().is_empty());

    let mut granted = consent(procedure, RHO, "granted", &in_days(0));
    granted["contact"] = json!({"name": "Lucia Dueci", "phone": "+39 333 2222222",
                                "email": "dueci@example.org", "notes": "Dopo le 17"});
    app.publish(&app.event("eviction.consent.v1", granted))
        .await;
    let mails = app.wait_for_emails(2).await;
    assert_eq!(recipients(&mails), RHO_REFERENTS);
    for m in &mails {
        assert_eq!(
            m.header("X-Raccordo-Kind").as_deref(),
            Some("eviction.alert")
        );
        let subject = m.subject().expect("subject");
        assert_eq!(
            subject,
            "Sfratto a Rho: richiesta di aiuto della famiglia (fase: intimazione)"
        );
        let body = m.text_body().expect("text");
        assert!(
            body.contains(procedure),
            "the docket number, once consent is given"
        );
        assert!(body.contains("Lucia Dueci") && body.contains("+39 333 2222222"));
        assert!(body.contains("12 gennaio 2026: intimazione di sfratto"));
    }

    let mut later = step(procedure, RHO, "precetto", &today());
    later["household"] = household(
        "Famiglia Dueci",
        "Via Due 2, Rho",
        "+39 333 2222223",
        "casa.dueci@example.org",
    );
    app.publish(&app.event("eviction.step.v1", later)).await;
    let mails = app.wait_for_emails(4).await;
    app.settle().await;
    let step_alerts: Vec<&ReceivedMail> = mails[2..].iter().collect();
    for m in &step_alerts {
        let body = m.text_body().expect("text");
        assert!(body.contains("Famiglia Dueci") && body.contains("Via Due 2, Rho"));
        assert!(body.contains("precetto"));
        assert!(!m.subject().unwrap_or_default().contains("Dueci"));
    }
    assert_eq!(app.emails().len(), 4, "not the referents of other comuni");
    app.cleanup().await;
}

#[tokio::test]
async fn c4_revocation_stops_alerts_tells_the_same_referents_and_forgets_then_consent_again() {
    let app = spawn_app().await;
    let procedure = "RG-C4-0004/2026";
    let mut granted = consent(procedure, RHO, "granted", &in_days(-1));
    granted["contact"] = json!({"name": "Quarto Revocante", "phone": "+39 333 4444444"});
    app.publish(&app.event("eviction.consent.v1", granted))
        .await;
    app.wait_for_emails(2).await;
    assert_eq!(
        count(&app, "SELECT count(*) FROM eviction_personal").await,
        1
    );

    app.publish(&app.event(
        "eviction.consent.v1",
        consent(procedure, RHO, "revoked", &in_days(0)),
    ))
    .await;
    let mails = app.wait_for_emails(4).await;
    app.settle().await;
    let revoked = app.emails_of("eviction.consent_revoked");
    assert_eq!(recipients(&revoked), RHO_REFERENTS);
    for m in &revoked {
        let body = m.text_body().expect("text");
        assert!(
            body.contains(procedure),
            "the docket number they already know"
        );
        assert!(!body.contains("Quarto") && !body.contains("4444444"));
        assert_eq!(
            m.subject().as_deref(),
            Some("Sfratto a Rho: la famiglia ha revocato il consenso")
        );
    }
    assert_eq!(mails.len(), 4);
    assert_eq!(
        count(&app, "SELECT count(*) FROM eviction_personal").await,
        0
    );
    let alert_payloads: Vec<Value> =
        sqlx::query_scalar("SELECT payload FROM notifications WHERE kind = 'eviction.alert'")
            .fetch_all(&app.pool)
            .await
            .expect("payloads");
    for p in alert_payloads {
        assert!(!p.to_string().contains("Quarto"), "{p}");
        assert!(!p.to_string().contains("C4-0004"), "{p}");
    }

    // No further alerts after revocation.
    let mut after = step(procedure, RHO, "accesso", &today());
    after["next_access_at"] = json!(in_days(2));
    app.publish(&app.event("eviction.step.v1", after)).await;
    app.settle().await;
    assert_eq!(app.emails().len(), 4);

    // Consent may be granted again: the alert tells where the procedure stands.
    app.publish(&app.event(
        "eviction.consent.v1",
        consent(procedure, RHO, "granted", &in_days(0)),
    ))
    .await;
    let mails = app.wait_for_emails(6).await;
    app.settle().await;
    let again = &mails[4..];
    for m in again {
        assert!(m.subject().unwrap_or_default().starts_with("[URGENTE]"));
        assert!(
            m.text_body()
                .unwrap_or_default()
                .contains("accesso dell'ufficiale giudiziario")
        );
    }
    app.cleanup().await;
}

#[tokio::test]
async fn c5_an_access_within_seven_days_makes_the_alert_urgent_and_a_later_one_does_not() {
    let app = spawn_app().await;
    let procedure = "RG-C5-0005/2026";
    app.publish(&app.event(
        "eviction.consent.v1",
        consent(procedure, RHO, "granted", &in_days(0)),
    ))
    .await;
    app.wait_for_emails(2).await;
    let mut far = step(procedure, RHO, "avviso_sloggio", &today());
    far["next_access_at"] = json!(in_days(20));
    app.publish(&app.event("eviction.step.v1", far)).await;
    let mails = app.wait_for_emails(4).await;
    for m in &mails[2..] {
        assert!(!m.subject().unwrap_or_default().starts_with("[URGENTE]"));
        assert_ne!(m.header("Importance").as_deref(), Some("high"));
    }
    let mut near = step(procedure, RHO, "accesso", &today());
    near["next_access_at"] = json!(in_days(0));
    app.publish(&app.event("eviction.step.v1", near)).await;
    let mails = app.wait_for_emails(6).await;
    app.settle().await;
    for m in &mails[4..] {
        let subject = m.subject().unwrap_or_default();
        assert!(subject.starts_with("[URGENTE] Sfratto a Rho"), "{subject}");
        assert_eq!(m.header("Importance").as_deref(), Some("high"));
        let body = m.text_body().unwrap_or_default();
        assert!(body.contains("OGGI"), "the access is today");
        assert!(body.contains("massima priorità"));
        assert!(body.contains("anche il giorno stesso dell'accesso"));
    }
    app.cleanup().await;
}

#[tokio::test]
async fn c6_statistics_per_ambito_mask_small_counts_and_reach_the_ambito_and_the_prefettura() {
    let app = spawn_app().await;
    let month = "2026-02";
    for (i, comune) in [RHO, RHO, RHO, ARESE, SAN_COLOMBANO].iter().enumerate() {
        let s = if *comune == RHO {
            "precetto"
        } else {
            "intimazione"
        };
        app.publish(&app.event(
            "eviction.step.v1",
            step(&format!("RG-C6-{i}/2026"), comune, s, "2026-02-10"),
        ))
        .await;
    }
    // In March in Rome: not counted in February.
    app.publish(&app.event(
        "eviction.step.v1",
        step("RG-C6-9/2026", MILANO, "precetto", "2026-03-01"),
    ))
    .await;
    app.settle().await;

    let output = app
        .command()
        .args(["report", "evictions", "--month", month, "--format", "json"])
        .output()
        .await
        .expect("raccordo report evictions runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&output.stdout).expect("json");
    let by_istat = |istat: &str| {
        rows.iter()
            .find(|r| r["istat"] == istat)
            .unwrap_or_else(|| panic!("{istat} in {rows:?}"))
            .clone()
    };
    assert_eq!(by_istat(RHO)["counts"]["precetto"], 3);
    assert_eq!(by_istat(ARESE)["counts"]["intimazione"], "<3");
    assert_eq!(by_istat(SAN_COLOMBANO)["counts"]["intimazione"], "<3");
    assert_eq!(by_istat(SAN_COLOMBANO)["ambito"], Value::Null);
    assert!(
        rows.iter().all(|r| r["istat"] != MILANO),
        "March steps not in February"
    );

    let output = app
        .command()
        .args(["report", "evictions", "--month", month, "--send"])
        .output()
        .await
        .expect("raccordo report evictions --send runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Ambito Rho: its servizi sociali, Rho's, the prefettura; San Colombano: its own and the prefettura.
    let mails = app.wait_for_emails(5).await;
    app.settle().await;
    assert_eq!(mails.len(), 5);
    let mut to = recipients(&mails);
    to.dedup();
    assert_eq!(
        to,
        vec![
            "coordinamento@prefettura.mi.example",
            "servizisociali@comune.rho.example",
            "servizisociali@comune.sancolombano.example",
            "ufficiodipiano@ambito.rho.example",
        ]
    );
    for m in &mails {
        assert_eq!(
            m.header("X-Raccordo-Kind").as_deref(),
            Some("eviction.stats")
        );
        let body = m.text_body().unwrap_or_default();
        assert!(!body.contains("RG-C6"), "no docket numbers in statistics");
        assert!(m.subject().unwrap_or_default().contains("febbraio 2026"));
    }
    let rho_mail = mails
        .iter()
        .find(|m| {
            m.to.contains(&"ufficiodipiano@ambito.rho.example".to_owned())
        })
        .expect("the ambito's email");
    let body = rho_mail.text_body().unwrap_or_default();
    assert!(body.contains("precetto: 3"));
    assert!(body.contains("intimazione di sfratto: <3"));

    // The monthly job runs once per month, whatever the number of replicas.
    let month = YearMonth::parse(month).expect("valid");
    assert_eq!(
        run_once(&app.pool, &EvictionStatsJob, month)
            .await
            .expect("runs"),
        RunOutcome::Ran
    );
    assert_eq!(
        run_once(&app.pool, &EvictionStatsJob, month)
            .await
            .expect("runs"),
        RunOutcome::AlreadyDone
    );
    // An ambito with no steps gets none: nothing for Milano in February.
    app.wait_for_emails(10).await;
    app.settle().await;
    assert!(
        app.emails()
            .iter()
            .all(|m| !m.to.contains(&"sfratti@comune.milano.example".to_owned()))
    );
    app.cleanup().await;
}

/// Every message on every queue of the test's prefix, read with basic.get and returned to
/// the queue: (queue, body, properties).
async fn queue_contents(app: &TestApp) -> Vec<(String, String, lapin::BasicProperties)> {
    let connection = raccordo_core::amqp::connect(&app.settings.amqp, "browse")
        .await
        .expect("connects");
    let mut out = Vec::new();
    for name in app.topology.all_queues() {
        let channel = connection.create_channel().await.expect("a channel");
        while let Ok(Some(msg)) = channel
            .basic_get(name.clone().into(), BasicGetOptions { no_ack: false })
            .await
        {
            out.push((
                name.clone(),
                String::from_utf8_lossy(&msg.delivery.data).into_owned(),
                msg.delivery.properties.clone(),
            ));
        }
        // Closing without acks returns every message to its queue.
        let _ = channel.close(200, "browsed".into()).await;
    }
    let _ = connection.close(200, "browsed".into()).await;
    out
}

#[tokio::test]
async fn c7_an_eviction_event_off_the_eviction_queue_expires_from_the_dead_queue_too() {
    let app = spawn_app().await;
    let mut event = step("RG-C7-0008/2026", RHO, "sgombero", &today());
    event["household"] = household(
        "Famiglia Ottava",
        "Via Otto 8",
        "+39 333 8888888",
        "ottava@example.org",
    );
    // A careless publisher: a routing key no worker is bound to, and the housing key.
    let body = serde_json::to_vec(&app.event("eviction.step.v1", event)).expect("json");
    app.publish_raw("eviction.step.v2", &body).await;
    app.publish_raw("housing.unit.v1", &body).await;
    app.wait_for_dead(2).await;
    let held = queue_contents(&app).await;
    let dead: Vec<_> = held
        .iter()
        .filter(|(q, ..)| *q == app.topology.dead_personal_queue())
        .collect();
    assert_eq!(dead.len(), 2);
    for (_, _, properties) in dead {
        assert_eq!(
            properties.expiration().as_ref().map(|e| e.as_str()),
            Some("604800000"),
            "7 days (eviction.dead_letter_ttl_days)"
        );
    }
    app.cleanup().await;
}

#[tokio::test]
async fn c7_an_invalid_eviction_event_expires_from_the_dead_queue_and_dlq_show_masks_it() {
    let app = spawn_app().await;
    let mut bad = step("RG-C7-0007/2026", RHO, "sgombero", &today());
    bad["household"] = household(
        "Famiglia Settima",
        "Via Sette 7",
        "+39 333 7777777",
        "settima@example.org",
    );
    app.publish(&app.event("eviction.step.v1", bad)).await;
    let dead = app.wait_for_dead(1).await;
    assert!(dead[0].error.contains("/step"), "{}", dead[0].error);
    let held = queue_contents(&app).await;
    let (_, _, properties) = held
        .iter()
        .find(|(q, ..)| *q == app.topology.dead_personal_queue())
        .expect("the dead letter");
    assert_eq!(
        properties.expiration().as_ref().map(|e| e.as_str()),
        Some("604800000"),
        "7 days (eviction.dead_letter_ttl_days)"
    );
    let output = app
        .command()
        .args(["dlq", "show", &dead[0].id])
        .output()
        .await
        .expect("raccordo dlq show runs");
    assert!(output.status.success());
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(shown.contains("masked"), "{shown}");
    for secret in ["Settima", "Via Sette", "7777777", "settima@"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    app.cleanup().await;
}

#[tokio::test]
async fn audit_lists_each_alert_with_recipient_smtp_outcome_and_the_consent_that_authorised_it() {
    let app = spawn_app().await;
    let procedure = "RG-AUD-0001/2026";
    app.publish(&app.event(
        "eviction.consent.v1",
        consent(procedure, RHO, "granted", "2026-03-02T10:00:00+01:00"),
    ))
    .await;
    app.wait_for_emails(2).await;
    app.settle().await;
    let output = app
        .command()
        .args(["audit", "--procedure", procedure, "--format", "json"])
        .output()
        .await
        .expect("raccordo audit runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let audit: Value = serde_json::from_slice(&output.stdout).expect("json");
    let entries = audit["notifications"].as_array().expect("entries");
    assert_eq!(entries.len(), 2);
    for e in entries {
        assert_eq!(e["kind"], "eviction.alert");
        assert_eq!(e["outcome"], "delivered");
        assert!(e["smtp_response"].as_str().is_some_and(|r| !r.is_empty()));
        assert_eq!(e["consent_decision"], "granted");
        assert_eq!(e["consent_recorded_by"], "Sportello sociale di Rho");
        assert_eq!(e["consent_recorded_at"], "2026-03-02T09:00:00Z");
    }
    assert_eq!(audit["consent_decisions"][0]["decision"], "granted");
    let other = app
        .command()
        .args([
            "audit",
            "--procedure",
            "RG-NOT-THIS/2026",
            "--format",
            "json",
        ])
        .output()
        .await
        .expect("raccordo audit runs");
    let other: Value = serde_json::from_slice(&other.stdout).expect("json");
    assert_eq!(other["notifications"].as_array().map(Vec::len), Some(0));
    app.cleanup().await;
}

/// Distinctive strings of one family.
struct Family {
    procedure: &'static str,
    name: &'static str,
    address: &'static str,
    phone: &'static str,
    email: &'static str,
}

impl Family {
    fn strings(&self) -> [&'static str; 5] {
        [
            self.procedure,
            self.name,
            self.address,
            self.phone,
            self.email,
        ]
    }

    fn household(&self) -> Value {
        household(self.name, self.address, self.phone, self.email)
    }
}

const NEVER: Family = Family {
    procedure: "RG-XQZLEAK-4411/2026",
    name: "Famiglia Xylofagorrea",
    address: "Via Quizzolvente 913",
    phone: "+39 347 5550913",
    email: "xylofago.leak@example.org",
};

const REVOKING: Family = Family {
    procedure: "RG-WVKLEAK-7722/2026",
    name: "Famiglia Wombatiello",
    address: "Vicolo Kappaonda 27",
    phone: "+39 348 5550727",
    email: "wombatiello.leak@example.org",
};

fn assert_absent(place: &str, haystack: &str, strings: &[&str]) {
    for s in strings {
        assert!(
            !haystack.contains(s),
            "{s:?} leaked into {place}: …{}…",
            haystack
                .find(s)
                .map(|i| &haystack[i.saturating_sub(200)..(i + 200).min(haystack.len())])
                .unwrap_or_default()
        );
    }
}

/// Runs the whole scenario with the real binary logging at debug level in `log_format`.
async fn leak_scenario(log_format: &str) {
    leak_scenario_with(log_format, false).await;
}

/// [`leak_scenario`]; with `digests`, every referent first asks for every kind in an
/// hourly digest (issue 22): what carries a family's data still goes alone. The monthly
/// statistics stay immediate, so the scenario's counts and its settling hold.
async fn leak_scenario_with(log_format: &str, digests: bool) {
    let app = prepare_with(|_| {}).await;
    if digests {
        let kinds = raccordo_core::notification::NotificationKind::ALL
            .iter()
            .filter(|k| **k != raccordo_core::notification::NotificationKind::EvictionStats)
            .map(|k| format!("{}=hourly", k.as_str()))
            .collect::<Vec<_>>()
            .join("; ");
        let prefs = raccordo_core::preferences::Preferences {
            kinds: raccordo_core::preferences::Preferences::parse_kinds(&kinds)
                .expect("valid preferences"),
            ..Default::default()
        };
        let ids: Vec<String> = sqlx::query_scalar("SELECT referent_id FROM referents")
            .fetch_all(&app.pool)
            .await
            .expect("referents");
        let mut conn = app.pool.acquire().await.expect("a connection");
        for id in ids {
            raccordo_core::registry::set_preferences(
                &mut conn,
                &id,
                &prefs,
                &raccordo_core::registry::Actor::cli(),
            )
            .await
            .expect("stored");
        }
    }
    let log_path = std::env::temp_dir().join(format!(
        "raccordo-leak-{}-{log_format}.log",
        app.settings.amqp.prefix
    ));
    let mut child = app
        .command()
        .args(["--log-format", log_format, "serve", "all"])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log file"))
        .kill_on_drop(true)
        .spawn()
        .expect("raccordo serve starts");

    // The family that never consents: three steps in Milano, one with an access in 2 days.
    for (s, access) in [
        ("intimazione", None),
        ("avviso_sloggio", Some(2)),
        ("accesso", Some(2)),
    ] {
        let mut e = step(NEVER.procedure, MILANO, s, &today());
        e["household"] = NEVER.household();
        if let Some(days) = access {
            e["next_access_at"] = json!(in_days(days));
        }
        app.publish(&app.event("eviction.step.v1", e)).await;
    }
    // The family that consents, then revokes, in Rho.
    let mut first = step(REVOKING.procedure, RHO, "intimazione", &today());
    first["household"] = REVOKING.household();
    app.publish(&app.event("eviction.step.v1", first)).await;
    let mut granted = consent(REVOKING.procedure, RHO, "granted", &in_days(0));
    granted["contact"] = json!({"name": REVOKING.name, "phone": REVOKING.phone,
                                "email": REVOKING.email, "address": REVOKING.address});
    app.publish(&app.event("eviction.consent.v1", granted))
        .await;
    let mut urgent = step(REVOKING.procedure, RHO, "avviso_sloggio", &today());
    urgent["household"] = REVOKING.household();
    urgent["next_access_at"] = json!(in_days(3));
    app.publish(&app.event("eviction.step.v1", urgent)).await;
    app.wait_for_emails(4).await;
    app.settle().await;
    let alerts = app.emails_of("eviction.alert");
    assert_eq!(alerts.len(), 4);
    assert!(
        alerts.iter().all(|m| mail_text(m).contains(REVOKING.name)),
        "the test can see the strings where consent allows them"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let revoke_at = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .expect("formattable");
    app.publish(&app.event(
        "eviction.consent.v1",
        consent(REVOKING.procedure, RHO, "revoked", &revoke_at),
    ))
    .await;
    app.wait_for_emails(6).await;
    // A step after revocation sends nothing.
    let mut after = step(REVOKING.procedure, RHO, "accesso", &today());
    after["household"] = REVOKING.household();
    app.publish(&app.event("eviction.step.v1", after)).await;

    // The statistics of this month, sent through the CLI (its logs are captured too).
    let month = YearMonth::of(rome_date(now())).to_string();
    let report_log = std::env::temp_dir().join(format!(
        "raccordo-leak-{}-{log_format}-report.log",
        app.settings.amqp.prefix
    ));
    let report = app
        .command()
        .args([
            "--log-format",
            log_format,
            "report",
            "evictions",
            "--month",
            &month,
            "--send",
        ])
        .env("RUST_LOG", "debug")
        .stderr(std::fs::File::create(&report_log).expect("log file"))
        .output()
        .await
        .expect("raccordo report runs");
    assert!(report.status.success());
    let mut stdout = String::from_utf8_lossy(&report.stdout).into_owned();
    let audit = app
        .command()
        .args([
            "--log-format",
            log_format,
            "audit",
            "--procedure",
            NEVER.procedure,
        ])
        .env("RUST_LOG", "debug")
        .output()
        .await
        .expect("raccordo audit runs");
    stdout.push_str(&String::from_utf8_lossy(&audit.stdout));
    stdout.push_str(&String::from_utf8_lossy(&audit.stderr));
    // Ambito Milano: ss-milano, prefettura; ambito Rho: ss-rho, ss-ambito-rho, prefettura.
    app.wait_for_emails(11).await;
    app.settle().await;
    // The delivered revocation notices lose the docket number (scrubbed every 2 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(
        &app,
        "SELECT count(*) FROM eviction_notifications WHERE scrubbed_at IS NULL",
    )
    .await
        > 0
    {
        assert!(Instant::now() < deadline, "revocation notices not scrubbed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let queues = queue_contents(&app).await;
    let pid = child.id().expect("a pid");
    let _ = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    let mut logs = std::fs::read_to_string(&log_path).expect("the hub's log");
    logs.push_str(&std::fs::read_to_string(&report_log).expect("the report's log"));
    logs.push_str(&stdout);
    let db = app
        .settings
        .database
        .database_name()
        .expect("a database name");
    let dump = tokio::process::Command::new("pg_dump")
        .args(["-h", "127.0.0.1", "-U", "postgres", &db])
        .output()
        .await
        .expect("pg_dump runs");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout).into_owned();

    // The scan covers something real.
    assert!(
        logs.contains("Eviction step handled."),
        "debug lines captured"
    );
    assert!(logs.lines().count() > 50);
    if log_format == "json" {
        assert!(
            logs.lines()
                .filter(|l| l.starts_with('{'))
                .all(|l| serde_json::from_str::<Value>(l).is_ok())
        );
    }
    assert!(dump.contains("eviction_steps") && dump.contains("COPY public.eviction_procedures"));
    let all: Vec<&str> = NEVER
        .strings()
        .into_iter()
        .chain(REVOKING.strings())
        .collect();

    assert_absent(&format!("{log_format} logs"), &logs, &all);
    assert_absent("the database dump", &dump, &all);
    for (queue, body, properties) in &queues {
        assert_absent(queue, &format!("{body} {properties:?}"), &all);
    }
    let mails = app.emails();
    assert!(mails.len() >= 11);
    for m in &mails {
        let text = mail_text(m);
        // The family that never consented appears in no email at all.
        assert_absent("an email", &text, &NEVER.strings());
        let kind = m.header("X-Raccordo-Kind").unwrap_or_default();
        match kind.as_str() {
            // Sent while consent was active: allowed.
            "eviction.alert" => {}
            // C4: the docket number from the revocation event, nothing else personal.
            "eviction.consent_revoked" => {
                assert!(text.contains(REVOKING.procedure));
                assert_absent("the revocation notice", &text, &REVOKING.strings()[1..]);
            }
            _ => assert_absent("a statistics email", &text, &REVOKING.strings()),
        }
        assert_absent("a subject", &m.subject().unwrap_or_default(), &all);
    }
    let _ = std::fs::remove_file(&log_path);
    let _ = std::fs::remove_file(&report_log);
    app.cleanup().await;
}

#[tokio::test]
async fn leak_test_no_personal_data_in_text_logs_emails_queues_or_database() {
    leak_scenario("text").await;
}

#[tokio::test]
async fn leak_test_no_personal_data_in_json_logs_emails_queues_or_database() {
    leak_scenario("json").await;
}

#[tokio::test]
async fn leak_test_with_digests_on_no_personal_data_is_digested_logged_or_stored() {
    leak_scenario_with("json", true).await;
}

/// Runs `raccordo <args>` for this test and returns what it printed, stdout and stderr.
async fn run_cli(app: &TestApp, args: &[&str]) -> String {
    let output = app
        .command()
        .args(args)
        .output()
        .await
        .expect("raccordo runs");
    assert!(
        output.status.success(),
        "raccordo {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn leak_test_dlq_list_and_show_print_nothing_of_a_dead_lettered_household() {
    let app = spawn_app().await;
    let all: Vec<&str> = NEVER
        .strings()
        .into_iter()
        .chain(REVOKING.strings())
        .collect();
    // A schema violation (unknown step) with a household: dead-lettered as it was sent.
    let mut bad_step = step(NEVER.procedure, MILANO, "sgombero", &today());
    bad_step["household"] = NEVER.household();
    bad_step["next_access_at"] = json!(in_days(2));
    app.publish(&app.event("eviction.step.v1", bad_step)).await;
    // A consent whose contact has a field the schema does not know.
    let mut bad_consent = consent(REVOKING.procedure, RHO, "granted", &in_days(0));
    bad_consent["contact"] = json!({"name": REVOKING.name, "phone": REVOKING.phone,
                                    "mobile": REVOKING.email, "address": REVOKING.address});
    app.publish(&app.event("eviction.consent.v1", bad_consent))
        .await;
    // A body that is not JSON, and JSON that is not an object, both full of the family.
    let text = format!("{} {} {}", NEVER.procedure, NEVER.name, NEVER.phone);
    app.publish_raw("eviction.step.v1", text.as_bytes()).await;
    let array = json!([NEVER.name, NEVER.address, {"household": NEVER.household()}]);
    app.publish_raw("eviction.step.v1", array.to_string().as_bytes())
        .await;
    let dead = app.wait_for_dead(4).await;
    assert_eq!(dead.len(), 4);

    let mut printed = run_cli(&app, &["dlq", "list"]).await;
    printed.push_str(&run_cli(&app, &["dlq", "list", "--format", "json"]).await);
    let mut shows = Vec::new();
    for held in &dead {
        let show = run_cli(&app, &["dlq", "show", &held.id]).await;
        assert!(show.contains(&held.id), "{show}");
        shows.push(show);
    }
    for show in &shows {
        printed.push_str(show);
    }

    assert_absent("dlq list and show", &printed, &all);
    // The scan covers something real: what is known not to be personal is shown.
    let step_show = shows
        .iter()
        .find(|s| s.contains("sgombero") || s.contains("\"step\""))
        .expect("the step's dead letter");
    assert!(step_show.contains(MILANO), "{step_show}");
    assert!(
        step_show.contains("\"household\": \"***masked***\""),
        "{step_show}"
    );
    assert!(
        step_show.contains("\"procedure_id\": \"***masked***\""),
        "{step_show}"
    );
    let consent_show = shows
        .iter()
        .find(|s| s.contains("eviction.consent.v1"))
        .expect("the consent's dead letter");
    assert!(
        consent_show.contains("Sportello sociale di Rho"),
        "{consent_show}"
    );
    assert!(shows.iter().any(|s| s.contains("not JSON: not shown")));
    assert!(shows.iter().any(|s| s.contains("not an object: not shown")));
    app.cleanup().await;
}

/// The `.eml` files in `dir`, with their contents.
fn eml_files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(std::path::PathBuf, String)> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "eml"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            (path, text)
        })
        .collect();
    files.sort();
    files
}

/// Waits until `ready` holds for the outbox's files (bounded to 20 s).
async fn wait_for_files(
    dir: &std::path::Path,
    what: &str,
    ready: impl Fn(&[(std::path::PathBuf, String)]) -> bool,
) -> Vec<(std::path::PathBuf, String)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let files = eml_files(dir);
        if ready(&files) {
            return files;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {:?}",
            files.iter().map(|(p, _)| p).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn kind_of(eml: &str) -> &str {
    eml.lines()
        .find_map(|l| l.strip_prefix("X-Raccordo-Kind: "))
        .unwrap_or_default()
        .trim()
}

#[cfg(unix)]
#[tokio::test]
async fn leak_test_eml_files_are_private_and_gone_for_a_family_that_revoked_its_consent() {
    use std::os::unix::fs::PermissionsExt;

    let outbox_dir =
        std::env::temp_dir().join(format!("raccordo-outbox-{}", uuid::Uuid::new_v4().simple()));
    let dir = outbox_dir.join("outbox");
    let app = prepare_with(|settings| {
        settings.mail.transport = raccordo_core::settings::MailTransportKind::File;
        settings.mail.allow_file_transport = true;
        settings.mail.outbox_dir = dir.clone();
    })
    .await
    .start(raccordo::serve::Workers::All)
    .await;

    // Mail that has nothing to do with the family stays.
    app.publish(&app.event(
        "housing.unit.v1",
        json!({"unit_id": "LEAK-EML-1", "action": "offered", "comune_istat": RHO,
               "address": "Via Roma 1, Rho", "places": 4, "reception_kind": "CAS",
               "building_type": "appartamento", "owner_declaration": true}),
    ))
    .await;
    // The family that never consents: no file at all.
    let mut never = step(NEVER.procedure, MILANO, "avviso_sloggio", &today());
    never["household"] = NEVER.household();
    never["next_access_at"] = json!(in_days(2));
    app.publish(&app.event("eviction.step.v1", never)).await;
    // The family that consents: an alert, then a step with its household, two referents each.
    let mut granted = consent(REVOKING.procedure, RHO, "granted", &in_days(-1));
    granted["contact"] = json!({"name": REVOKING.name, "phone": REVOKING.phone,
                                "email": REVOKING.email, "address": REVOKING.address});
    app.publish(&app.event("eviction.consent.v1", granted))
        .await;
    wait_for_files(&dir, "two alerts on consent", |files| {
        files
            .iter()
            .filter(|(_, t)| kind_of(t) == "eviction.alert")
            .count()
            == 2
    })
    .await;
    let mut later = step(REVOKING.procedure, RHO, "precetto", &today());
    later["household"] = REVOKING.household();
    app.publish(&app.event("eviction.step.v1", later)).await;
    let files = wait_for_files(&dir, "four alerts", |files| {
        files
            .iter()
            .filter(|(_, t)| kind_of(t) == "eviction.alert")
            .count()
            == 4
    })
    .await;
    app.settle().await;
    let housing_files: Vec<_> = eml_files(&dir)
        .into_iter()
        .filter(|(_, t)| kind_of(t).starts_with("housing."))
        .map(|(p, _)| p)
        .collect();
    assert!(!housing_files.is_empty(), "the housing offer's emails");

    // While they exist, nobody else can read them.
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "the outbox folder");
    for (path, text) in &files {
        assert_eq!(mode(path), 0o600, "{}", path.display());
        assert_absent("an .eml file", text, &NEVER.strings());
    }
    assert!(
        files
            .iter()
            .filter(|(_, t)| kind_of(t) == "eviction.alert")
            .all(|(_, t)| t.contains(REVOKING.procedure)),
        "the test can see the strings where consent allows them"
    );

    // Revocation: the alerts' files go; the revocation notices arrive.
    app.publish(&app.event(
        "eviction.consent.v1",
        consent(REVOKING.procedure, RHO, "revoked", &in_days(0)),
    ))
    .await;
    let files = wait_for_files(&dir, "alerts removed, notices written", |files| {
        files.iter().all(|(_, t)| kind_of(t) != "eviction.alert")
            && files
                .iter()
                .filter(|(_, t)| kind_of(t) == "eviction.consent_revoked")
                .count()
                == 2
    })
    .await;

    for (path, text) in &files {
        assert_eq!(mode(path), 0o600, "{}", path.display());
        assert_absent("an .eml file", text, &NEVER.strings());
        // C4: the docket number they already know, nothing else of the family.
        assert_absent("an .eml file", text, &REVOKING.strings()[1..]);
    }
    for path in &housing_files {
        assert!(path.exists(), "{} was removed", path.display());
    }
    app.cleanup().await;
    let _ = std::fs::remove_dir_all(&outbox_dir);
}

#[tokio::test]
async fn c4_an_alert_held_by_a_refusal_is_cancelled_by_the_revocation_and_its_replay_sends_nothing()
{
    let app = spawn_app().await;
    let procedure = "RG-C4-HELD/2026";
    app.smtp.set_mode(raccordo_e2e::Mode::PermFail);
    let mut granted = consent(procedure, RHO, "granted", &in_days(-1));
    granted["contact"] = json!({"name": "Quinto Trattenuto", "phone": "+39 333 5555555"});
    app.publish(&app.event("eviction.consent.v1", granted))
        .await;
    // The server refused the alert: held in the dead queue, where an operator may replay it.
    app.wait_for_held(raccordo_core::amqp::dead_letter::Holding::Dead, 1)
        .await;

    app.smtp.set_mode(raccordo_e2e::Mode::Accept);
    app.publish(&app.event(
        "eviction.consent.v1",
        consent(procedure, RHO, "revoked", &in_days(0)),
    ))
    .await;
    app.wait_for_emails(2).await;
    app.settle().await;
    let held_alerts = count(
        &app,
        "SELECT count(*) FROM deliveries d JOIN notifications n ON n.id = d.notification_id \
         WHERE n.kind = 'eviction.alert' AND d.held_in IS NOT NULL",
    )
    .await;
    assert_eq!(held_alerts, 0, "the revocation cancels held alerts too");

    replay_dead(&app).await;
    app.settle().await;
    assert!(app.emails_of("eviction.alert").is_empty());
    assert_eq!(app.emails_of("eviction.consent_revoked").len(), 2);
    assert!(
        app.dead_letters().await.is_empty(),
        "the replayed alert released nothing and is not held again"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn c4_a_refused_revocation_notice_keeps_its_content_until_a_replay_delivers_it() {
    let app = spawn_app().await;
    let procedure = "RG-C4-NOTICE/2026";
    let mut granted = consent(procedure, RHO, "granted", &in_days(-1));
    granted["contact"] = json!({"name": "Sesto Rifiutato", "phone": "+39 333 6666666"});
    app.publish(&app.event("eviction.consent.v1", granted))
        .await;
    app.wait_for_emails(2).await;
    app.settle().await;

    // The server refuses the revocation notice: held in the dead queue.
    app.smtp.set_mode(raccordo_e2e::Mode::PermFail);
    app.publish(&app.event(
        "eviction.consent.v1",
        consent(procedure, RHO, "revoked", &in_days(0)),
    ))
    .await;
    app.wait_for_held(raccordo_core::amqp::dead_letter::Holding::Dead, 1)
        .await;
    // Longer than the scrubber's period: a held notice is not settled, so it keeps its text.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let scrubbed = scrubbed_notices(&app).await;
    assert_eq!(scrubbed, 0);

    app.smtp.set_mode(raccordo_e2e::Mode::Accept);
    replay_dead(&app).await;
    app.wait_for_emails(4).await;
    let notices = app.emails_of("eviction.consent_revoked");
    assert_eq!(recipients(&notices), RHO_REFERENTS);
    for m in &notices {
        assert!(m.text_body().expect("text").contains(procedure));
    }
    // Delivered: now the scrubber takes the docket number away.
    wait_for_scrubbed_notice(&app).await;
    app.cleanup().await;
}

#[tokio::test]
async fn c4_a_revocation_notice_held_longer_than_the_ttl_is_scrubbed_and_its_replay_sends_nothing()
{
    let app = spawn_app().await;
    let procedure = "RG-C4-EXPIRED/2026";
    let mut granted = consent(procedure, RHO, "granted", &in_days(-1));
    granted["contact"] = json!({"name": "Settimo Scaduto", "phone": "+39 333 7777777"});
    app.publish(&app.event("eviction.consent.v1", granted))
        .await;
    app.wait_for_emails(2).await;
    app.settle().await;
    app.smtp.set_mode(raccordo_e2e::Mode::PermFail);
    app.publish(&app.event(
        "eviction.consent.v1",
        consent(procedure, RHO, "revoked", &in_days(0)),
    ))
    .await;
    app.wait_for_held(raccordo_core::amqp::dead_letter::Holding::Dead, 1)
        .await;
    // Held for longer than eviction.dead_letter_ttl_days (7).
    sqlx::query(
        "UPDATE deliveries SET failed_at = now() - INTERVAL '8 days' WHERE held_in IS NOT NULL",
    )
    .execute(&app.pool)
    .await
    .expect("age the held deliveries");
    wait_for_scrubbed_notice(&app).await;
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM deliveries WHERE held_in IS NOT NULL"
        )
        .await,
        0,
        "its held deliveries are cancelled"
    );
    app.smtp.set_mode(raccordo_e2e::Mode::Accept);
    replay_dead(&app).await;
    app.settle().await;
    assert!(app.emails_of("eviction.consent_revoked").is_empty());
    assert!(app.dead_letters().await.is_empty());
    app.cleanup().await;
}

/// `raccordo dlq replay --all --queue dead`, as an operator runs it.
async fn replay_dead(app: &TestApp) {
    let replay = app
        .command()
        .args(["dlq", "replay", "--all", "--queue", "dead"])
        .output()
        .await
        .expect("raccordo dlq runs");
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
}

/// Revocation notices whose docket number was scrubbed.
async fn scrubbed_notices(app: &TestApp) -> i64 {
    count(
        app,
        "SELECT count(*) FROM notifications \
         WHERE kind = 'eviction.consent_revoked' AND payload ? 'scrubbed'",
    )
    .await
}

/// Waits (up to 20 s) until the scrubber has scrubbed a revocation notice.
async fn wait_for_scrubbed_notice(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while scrubbed_notices(app).await == 0 {
        assert!(
            Instant::now() < deadline,
            "a revocation notice is scrubbed within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
