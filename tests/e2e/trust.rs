//! The trust boundary (issue 7): every publisher proves who it is and may say only its
//! part; no message can stop a worker; keys worthy of the data; docket numbers compared as
//! one; faults told apart. Against the real broker (with real per-publisher users),
//! PostgreSQL (behind a proxy the test cuts) and SMTP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lapin::BasicProperties;
use lapin::options::BasicGetOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;

use raccordo::serve::Workers;
use raccordo_core::amqp::dead_letter::Holding;
use raccordo_core::amqp::{
    ConsumerContext, HandleError, Handler, Message, Outcome, WorkQueue, run_consumer,
};
use raccordo_core::health::Health;
use raccordo_core::settings::{PublisherRule, Settings};
use raccordo_e2e::broker_users::BrokerUser;
use raccordo_e2e::proxy::Proxy;
use raccordo_e2e::{TestApp, http_get, prepare_with, spawn_app, spawn_app_with};

const RHO: &str = "015182";
const MILANO: &str = "015146";
const STRONG_KEY: &str = "4f1c2a9e7b3d5f60a8c4e2b1d9f7a6c3e5b8d0f2a4c6e8b1d3f5a7c9e0b2d4f6";

fn in_days(days: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::days(days))
        .format(&Rfc3339)
        .expect("formattable")
}

fn offer(unit_id: &str, comune: &str) -> Value {
    json!({
        "unit_id": unit_id, "action": "offered", "comune_istat": comune,
        "address": "Via Padova 1", "places": 4, "reception_kind": "CAS",
        "building_type": "appartamento", "owner_declaration": true
    })
}

fn consent(procedure: &str, decision: &str, at: &str) -> Value {
    json!({"procedure_id": procedure, "comune_istat": RHO, "decision": decision,
           "recorded_by": "Sportello sociale di Rho", "recorded_at": at})
}

fn step(procedure: &str, step: &str, next_access_at: Option<&str>) -> Value {
    let mut data = json!({"procedure_id": procedure, "step": step, "occurred_on": "2026-11-20",
                          "comune_istat": RHO});
    if let Some(at) = next_access_at {
        data["next_access_at"] = json!(at);
    }
    data
}

fn body(app: &TestApp, event_type: &str, data: Value) -> Vec<u8> {
    serde_json::to_vec(&app.event(event_type, data)).expect("json")
}

/// Waits for `n` messages held in `holding`, then returns their reasons.
async fn held_reasons(app: &TestApp, holding: Holding, n: usize) -> Vec<String> {
    app.wait_for_held(holding, n)
        .await
        .into_iter()
        .map(|m| m.error)
        .collect()
}

// ---- No panic, no hang reaches a worker --------------------------------------------------

#[tokio::test]
async fn hostile_dates_are_dead_lettered_naming_the_field_and_each_worker_goes_on() {
    let app = spawn_app().await;
    let hostile = "9999-12-31T23:59:59-01:00";
    let cases = [
        (
            "eviction.step.v1",
            step("RG 1/2026", "precetto", Some(hostile)),
            "/next_access_at",
        ),
        (
            "eviction.consent.v1",
            consent("RG 2/2026", "granted", hostile),
            "/recorded_at",
        ),
        (
            "eviction.consent.v1",
            consent("RG 3/2026", "revoked", "0001-01-01T00:00:00Z"),
            "/recorded_at",
        ),
        (
            "eviction.step.v1",
            {
                let mut s = step("RG 4/2026", "intimazione", None);
                s["occurred_on"] = json!("9999-12-31");
                s
            },
            "/occurred_on",
        ),
        (
            "housing.unit.v1",
            {
                let mut o = offer("H-DATE", MILANO);
                o["available_from"] = json!("9999-12-31");
                o
            },
            "/available_from",
        ),
        (
            "reception.occupancy.v1",
            json!({"facility_id": "F-DATE", "comune_istat": MILANO, "reception_kind": "CAS",
                   "capacity": 10, "presences": 5, "as_of": "2201-01-01"}),
            "/as_of",
        ),
    ];
    for (event_type, data, _) in &cases {
        app.publish(&app.event(event_type, data.clone())).await;
    }
    // Then good events through the same workers: a consent with an alert, an offer.
    app.publish(&app.event(
        "eviction.consent.v1",
        consent("RG 5/2026", "granted", &in_days(0)),
    ))
    .await;
    app.publish(&app.event("housing.unit.v1", offer("H-OK", MILANO)))
        .await;
    let reasons = held_reasons(&app, Holding::Dead, cases.len()).await;
    app.wait_for_emails(4).await;
    app.settle().await;
    for (_, _, field) in &cases {
        assert!(
            reasons
                .iter()
                .any(|r| r.contains(field) && r.contains("outside the years 1900-2200")),
            "no reason names {field}: {reasons:?}"
        );
    }
    for r in &reasons {
        assert!(
            !r.contains("9999") && !r.contains("0001-01") && !r.contains("2201"),
            "{r}"
        );
    }
    assert_eq!(
        app.emails_of("eviction.alert").len(),
        2,
        "the good consent alerted"
    );
    assert_eq!(app.emails_of("housing.offered").len(), 1);
    assert_eq!(app.emails_of("housing.ack").len(), 1);
    let addr = app.app.as_ref().expect("running").http_addr;
    assert_eq!(http_get(addr, "/readyz").await.0, 200);
    app.cleanup().await;
}

#[tokio::test]
async fn a_consent_recorded_in_the_future_is_refused_so_later_revocations_still_apply() {
    let app = spawn_app().await;
    app.publish(&app.event(
        "eviction.consent.v1",
        consent("RG 2062/2026", "granted", "2062-03-01T10:00:00+01:00"),
    ))
    .await;
    let reasons = held_reasons(&app, Holding::Dead, 1).await;
    assert!(reasons[0].contains("in the future"), "{reasons:?}");
    app.publish(&app.event(
        "eviction.consent.v1",
        consent("RG 2062/2026", "granted", &in_days(0)),
    ))
    .await;
    app.wait_for_emails(2).await;
    app.publish(&app.event(
        "eviction.consent.v1",
        consent("RG 2062/2026", "revoked", &in_days(0)),
    ))
    .await;
    app.wait_for_emails(4).await;
    app.settle().await;
    assert_eq!(app.emails_of("eviction.consent_revoked").len(), 2);
    app.cleanup().await;
}

/// Panics on a body of "boom", records every other body.
struct Fragile {
    seen: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

#[async_trait]
impl Handler for Fragile {
    async fn handle(&self, message: &Message) -> Result<Outcome, HandleError> {
        if message.body == b"boom" {
            panic!("a defect met by this message");
        }
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(message.body.clone());
        }
        Ok(Outcome::Processed)
    }
}

#[tokio::test]
async fn a_handler_that_panics_dead_letters_its_message_and_the_consumer_goes_on() {
    let app = prepare_with(|_| {}).await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let health = Health::default();
    health.expect("housing-0");
    let token = CancellationToken::new();
    let ctx = ConsumerContext {
        settings: Arc::new(app.settings.clone()),
        topology: app.topology.clone(),
        health: health.clone(),
        pool: app.pool.clone(),
    };
    // Waiting before the consumer starts, the three are taken as one batch.
    app.publish_raw("housing.unit.v1", b"before").await;
    app.publish_raw("housing.unit.v1", b"boom").await;
    app.publish_raw("housing.unit.v1", b"after").await;
    let consumer = tokio::spawn(run_consumer(
        ctx,
        WorkQueue::Housing,
        0,
        Arc::new(Fragile { seen: seen.clone() }),
        token.clone(),
    ));
    let reasons = held_reasons(&app, Holding::Dead, 1).await;
    assert!(reasons[0].contains("panicked"), "{reasons:?}");
    assert!(
        reasons[0].contains("a defect met by this message"),
        "{reasons:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let seen_all = || {
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        seen.contains(&b"before".to_vec()) && seen.contains(&b"after".to_vec())
    };
    while !seen_all() {
        assert!(
            Instant::now() < deadline,
            "the consumer went on after the panic"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The batch was decided again one by one: only the poison message is dead.
    assert!(
        !seen
            .lock()
            .map(|s| s.contains(&b"boom".to_vec()))
            .unwrap_or(true)
    );
    assert_eq!(app.dead_letters().await.len(), 1);
    assert!(health.all_consuming());
    token.cancel();
    consumer.await.expect("the consumer stops");
    app.cleanup().await;
}

#[tokio::test]
async fn consumers_pause_while_the_database_is_unreachable_and_resume_by_themselves() {
    let db = raccordo_core::settings::Settings::load()
        .expect("defaults")
        .database
        .connect_options()
        .expect("database.url");
    let upstream = tokio::net::lookup_host((db.get_host(), db.get_port()))
        .await
        .expect("the database host resolves")
        .next()
        .expect("an address");
    let proxy = Proxy::start(upstream).await;
    let prepared = prepare_with(|_| {}).await;
    // The hub reaches its database through the proxy; the test keeps its own direct pool.
    let mut hub = prepared.settings.clone();
    let mut url = url::Url::parse(secrecy::ExposeSecret::expose_secret(&hub.database.url))
        .expect("database.url");
    url.set_host(Some("127.0.0.1")).expect("host");
    url.set_port(Some(proxy.addr().port())).expect("port");
    hub.database.url = url.to_string().into();
    hub.database.acquire_timeout_ms = 1000;
    let app = prepared.configure(|s| *s = hub).start(Workers::All).await;
    let addr = app.app.as_ref().expect("running").http_addr;

    proxy.cut();
    for i in 0..5 {
        app.publish(&app.event("housing.unit.v1", offer(&format!("DB-{i}"), MILANO)))
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = http_get(addr, "/readyz").await;
        if status == 503 && body.contains("housing-") && body.contains("paused") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readyz never named a paused consumer: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing was given up on while the database was away.
    assert!(app.parked().await.is_empty());
    assert!(app.dead_letters().await.is_empty());

    proxy.restore();
    app.wait_for_emails(10).await;
    app.settle().await;
    assert_eq!(app.emails_of("housing.offered").len(), 5);
    assert!(app.parked().await.is_empty() && app.dead_letters().await.is_empty());
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(addr, "/readyz").await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "ready again once the database answers"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.cleanup().await;
}

// ---- Authenticated origin ---------------------------------------------------------------

fn rule(types: &[&str], comuni: &[&str]) -> PublisherRule {
    PublisherRule {
        types: types.iter().map(|t| (*t).to_owned()).collect(),
        comuni: comuni.iter().map(|c| (*c).to_owned()).collect(),
        ..PublisherRule::default()
    }
}

/// Three systems: a comune's (housing of its own comune, with a broker that would also
/// let it write registry events), the Prefettura's registry administrator, a social desk.
struct Systems {
    comune: BrokerUser,
    registry: BrokerUser,
    desk: BrokerUser,
}

async fn systems(app_settings: &Settings, inbound: &str) -> Systems {
    let url = &app_settings.amqp.url;
    Systems {
        comune: BrokerUser::create(
            url,
            inbound,
            "comune-rho",
            "housing\\.unit\\.v1|registry\\.referent\\.v1",
        )
        .await,
        registry: BrokerUser::create(
            url,
            inbound,
            "prefettura-registry",
            "registry\\.referent\\.v1",
        )
        .await,
        desk: BrokerUser::create(url, inbound, "sportello-rho", "eviction\\.consent\\.v1").await,
    }
}

async fn with_publishers(prepared: TestApp, systems: &Systems) -> TestApp {
    let (comune, registry, desk) = (
        systems.comune.name.clone(),
        systems.registry.name.clone(),
        systems.desk.name.clone(),
    );
    prepared
        .configure(move |s| {
            s.publishers.allow_anonymous = false;
            s.publishers
                .users
                .insert(comune, rule(&["housing.unit.v1"], &[RHO]));
            s.publishers
                .users
                .insert(registry, rule(&["registry.referent.v1"], &[]));
            s.publishers
                .users
                .insert(desk, rule(&["eviction.consent.v1"], &[RHO]));
        })
        .start(Workers::All)
        .await
}

fn hijack(referent_id: &str) -> Value {
    json!({"referent_id": referent_id, "action": "upsert", "institution": "Comune di Milano",
           "role": "servizi_sociali", "email": "attacker@evil.example",
           "scope": {"comune_istat": MILANO}})
}

#[tokio::test]
async fn only_the_configured_publisher_may_change_the_registry_or_record_consent() {
    let prepared = prepare_with(|_| {}).await;
    let inbound = prepared.topology.inbound_exchange();
    let systems = systems(&prepared.settings, &inbound).await;
    let app = with_publishers(prepared, &systems).await;
    let inbound = app.topology.inbound_exchange();

    // The comune's system tries to redirect Milano's eviction alerts to itself.
    let forged = body(&app, "registry.referent.v1", hijack("SS-MILANO-HIJACK"));
    systems
        .comune
        .publish(
            &inbound,
            "registry.referent.v1",
            &forged,
            Some(&systems.comune.name),
        )
        .await
        .expect("the broker lets it write the key; the hub must refuse it");
    let reasons = held_reasons(&app, Holding::Dead, 1).await;
    assert_eq!(
        reasons[0],
        format!(
            "publisher {:?} may not publish registry.referent.v1",
            systems.comune.name
        )
    );
    // Without user_id the same event is anonymous, and refused too.
    systems
        .comune
        .publish(&inbound, "registry.referent.v1", &forged, None)
        .await
        .expect("confirmed");
    let reasons = held_reasons(&app, Holding::Dead, 2).await;
    assert!(reasons[1].contains("unauthenticated"), "{reasons:?}");
    // A forged x-raccordo-user header is the hub's own name for the publisher: ignored.
    let mut headers = FieldTable::default();
    headers.insert(
        "x-raccordo-user".into(),
        AMQPValue::LongString(LongString::from(systems.registry.name.clone())),
    );
    app.publish_with(
        "registry.referent.v1",
        &forged,
        BasicProperties::default().with_headers(headers),
    )
    .await;
    let reasons = held_reasons(&app, Holding::Dead, 3).await;
    assert!(reasons[2].contains("unauthenticated"), "{reasons:?}");
    let hijacked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM referents WHERE email = 'attacker@evil.example'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(hijacked, 0, "no refused event changed the registry");

    // The registry's own administrator may.
    let legit = body(&app, "registry.referent.v1", hijack("SS-MILANO-NEW"));
    systems
        .registry
        .publish(
            &inbound,
            "registry.referent.v1",
            &legit,
            Some(&systems.registry.name),
        )
        .await
        .expect("confirmed");
    // The social desk records a consent for Rho: processed, alerts sent.
    let grant = body(
        &app,
        "eviction.consent.v1",
        consent("RG 77/2026", "granted", &in_days(0)),
    );
    systems
        .desk
        .publish(
            &inbound,
            "eviction.consent.v1",
            &grant,
            Some(&systems.desk.name),
        )
        .await
        .expect("confirmed");
    app.wait_for_emails(2).await;
    app.settle().await;
    assert_eq!(app.emails_of("eviction.alert").len(), 2);
    let added: i64 =
        sqlx::query_scalar("SELECT count(*) FROM referents WHERE referent_id = 'SS-MILANO-NEW'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(added, 1);
    assert_eq!(app.dead_letters().await.len(), 3);
    for user in [systems.comune, systems.registry, systems.desk] {
        user.delete().await;
    }
    app.cleanup().await;
}

#[tokio::test]
async fn a_comune_system_reports_units_of_its_own_comune_only() {
    let prepared = prepare_with(|_| {}).await;
    let systems = systems(&prepared.settings, &prepared.topology.inbound_exchange()).await;
    let app = with_publishers(prepared, &systems).await;
    let inbound = app.topology.inbound_exchange();
    let me = Some(systems.comune.name.as_str());
    let other = body(&app, "housing.unit.v1", offer("U-MILANO", MILANO));
    systems
        .comune
        .publish(&inbound, "housing.unit.v1", &other, me)
        .await
        .expect("confirmed");
    let own = body(&app, "housing.unit.v1", offer("U-RHO", RHO));
    systems
        .comune
        .publish(&inbound, "housing.unit.v1", &own, me)
        .await
        .expect("confirmed");
    let reasons = held_reasons(&app, Holding::Dead, 1).await;
    assert!(reasons[0].contains("about comune 015146"), "{reasons:?}");
    app.wait_for_emails(2).await;
    app.settle().await;
    assert_eq!(app.emails_of("housing.offered").len(), 1);
    for user in [systems.comune, systems.registry, systems.desk] {
        user.delete().await;
    }
    app.cleanup().await;
}

#[tokio::test]
async fn the_broker_refuses_a_forged_user_id_and_a_routing_key_outside_the_topic_permissions() {
    let app = prepare_with(|_| {}).await;
    let systems = systems(&app.settings, &app.topology.inbound_exchange()).await;
    let inbound = app.topology.inbound_exchange();
    let grant = body(
        &app,
        "eviction.consent.v1",
        consent("RG 9/2026", "granted", &in_days(0)),
    );
    // The comune's system claims to be the social desk.
    let forged = systems
        .comune
        .publish(
            &inbound,
            "eviction.consent.v1",
            &grant,
            Some(&systems.desk.name),
        )
        .await;
    assert!(
        forged.is_err(),
        "RabbitMQ refuses a user_id that is not the connection's"
    );
    // The desk writes a key its topic permissions do not grant.
    let step = body(&app, "eviction.step.v1", step("RG 9/2026", "accesso", None));
    let outside = systems
        .desk
        .publish(
            &inbound,
            "eviction.step.v1",
            &step,
            Some(&systems.desk.name),
        )
        .await;
    assert!(
        outside.is_err(),
        "topic permissions keep it to its routing keys"
    );
    for user in [systems.comune, systems.registry, systems.desk] {
        user.delete().await;
    }
    app.cleanup().await;
}

#[test]
fn setup_writes_definitions_that_limit_each_publisher_to_its_types() {
    let mut settings = Settings::load().expect("defaults");
    settings
        .publishers
        .users
        .insert("tribunale".into(), rule(&["eviction.step.v1"], &[]));
    let definitions =
        raccordo::setup::publisher_definitions(&settings).expect("definitions are written");
    assert_eq!(definitions["users"][0]["name"], "tribunale");
    assert_eq!(
        definitions["permissions"][0]["write"],
        "^raccordo\\.inbound$"
    );
    assert_eq!(definitions["permissions"][0]["configure"], "^$");
    assert_eq!(definitions["permissions"][0]["vhost"], "/");
    assert_eq!(
        definitions["topic_permissions"][0]["write"],
        "^(eviction\\.step\\.v1)$"
    );
}

// ---- Keys worthy of the data -------------------------------------------------------------

#[tokio::test]
async fn serve_and_setup_refuse_the_development_key_unless_allowed() {
    let app = prepare_with(|_| {}).await;
    for args in [&["serve", "all"][..], &["setup"][..]] {
        let output = app
            .command()
            .args(args)
            .env("RACCORDO__EVICTION__ALLOW_DEVELOPMENT_KEY", "false")
            .env(
                "RACCORDO__EVICTION__PSEUDONYM_KEY",
                raccordo_core::settings::DEVELOPMENT_PSEUDONYM_KEY,
            )
            .output()
            .await
            .expect("raccordo runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} must refuse");
        assert!(
            stderr.contains("eviction.pseudonym_key"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains(raccordo_core::settings::DEVELOPMENT_PSEUDONYM_KEY));
    }
    app.cleanup().await;
}

#[tokio::test]
async fn rekey_rotates_every_pseudonym_and_a_process_with_the_old_key_cannot_serve() {
    let dir = std::env::temp_dir().join(format!("raccordo-rekey-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let app = spawn_app_with(|s| {
        s.eviction.allow_development_key = false;
        s.eviction.pseudonym_key = STRONG_KEY.to_owned().into();
    })
    .await;
    app.publish(&app.event(
        "eviction.consent.v1",
        consent("RG 555/2026", "granted", &in_days(0)),
    ))
    .await;
    app.publish(&app.event("eviction.step.v1", step("RG 999/2026", "intimazione", None)))
        .await;
    app.wait_for_emails(2).await;
    app.settle().await;
    let before: Vec<String> = sqlx::query_scalar("SELECT pseudonym FROM eviction_procedures")
        .fetch_all(&app.pool)
        .await
        .expect("pseudonyms");
    assert_eq!(before.len(), 2);
    let mut app = app;
    app.stop_workers().await;

    let new_key = dir.join("new.key");
    let chain = dir.join("chain.key");
    std::fs::write(&new_key, "d".repeat(64)).expect("new key");
    let output = app
        .command()
        .args(["eviction", "rekey", "--new-key-file"])
        .arg(&new_key)
        .arg("--write-key-file")
        .arg(&chain)
        .output()
        .await
        .expect("raccordo eviction rekey runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("Re-pseudonymised 2 procedure(s)"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&chain)
            .expect("chain")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let after: Vec<String> = sqlx::query_scalar("SELECT pseudonym FROM eviction_procedures")
        .fetch_all(&app.pool)
        .await
        .expect("pseudonyms");
    assert_eq!(after.len(), 2);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "every pseudonym changed"
    );

    // The old key alone can no longer serve this database.
    let refused = raccordo::serve::App::start(app.settings.clone(), Workers::Eviction).await;
    let error = format!("{:#}", refused.err().expect("the old key is refused"));
    assert!(error.contains("another key chain"), "{error}");

    // With the chain, the procedure is found again: its revocation reaches the referents.
    app.settings.eviction.pseudonym_key_file = Some(chain.clone());
    app.settings.eviction.pseudonym_key = std::fs::read_to_string(&chain).expect("chain").into();
    let app = app.start(Workers::All).await;
    app.publish(&app.event(
        "eviction.consent.v1",
        consent("RG 555/2026", "revoked", &in_days(0)),
    ))
    .await;
    app.wait_for_emails(4).await;
    app.settle().await;
    assert_eq!(app.emails_of("eviction.consent_revoked").len(), 2);
    let _ = std::fs::remove_dir_all(dir);
    app.cleanup().await;
}

// ---- Revocations never missed ------------------------------------------------------------

#[tokio::test]
async fn a_revocation_typed_differently_from_the_grant_still_revokes() {
    let app = spawn_app().await;
    app.publish(&app.event(
        "eviction.consent.v1",
        consent("RG 1234/2026", "granted", &in_days(0)),
    ))
    .await;
    app.wait_for_emails(2).await;
    app.publish(&app.event(
        "eviction.consent.v1",
        consent("rg-1234/2026", "revoked", &in_days(0)),
    ))
    .await;
    app.wait_for_emails(4).await;
    app.settle().await;
    assert_eq!(app.emails_of("eviction.consent_revoked").len(), 2);
    let procedures: i64 = sqlx::query_scalar("SELECT count(*) FROM eviction_procedures")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(
        procedures, 1,
        "one procedure, however its number is written"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn c8_a_late_revocation_still_revokes_and_an_old_grant_is_never_dropped_in_silence() {
    let app = spawn_app().await;
    app.publish(&app.event(
        "eviction.consent.v1",
        consent("RG 31/2026", "granted", &in_days(0)),
    ))
    .await;
    app.wait_for_emails(2).await;
    // Recorded two days before the grant in force, received after it: it wins (C8).
    app.publish(&app.event(
        "eviction.consent.v1",
        consent("RG 31/2026", "revoked", &in_days(-2)),
    ))
    .await;
    app.wait_for_emails(4).await;
    app.settle().await;
    assert_eq!(app.emails_of("eviction.consent_revoked").len(), 2);
    // A grant recorded before that revocation arrives late: it changes nothing, but says so.
    app.publish(&app.event(
        "eviction.consent.v1",
        consent("RG 31/2026", "granted", &in_days(-1)),
    ))
    .await;
    app.settle().await;
    assert_eq!(app.emails().len(), 4, "no alert from the old grant");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("raccordo_consent_decisions_stale_total{decision=\"granted\"} 1"),
        "{metrics}"
    );
    let output = app
        .command()
        .args(["status", "--format", "json"])
        .output()
        .await
        .expect("raccordo status runs");
    let status: Value = serde_json::from_slice(&output.stdout).expect("json status");
    assert_eq!(
        status["stale_revocations"], 0,
        "a revocation is never stale"
    );
    app.cleanup().await;
}

// ---- Personal data in the queues -----------------------------------------------------

#[tokio::test]
async fn parked_eviction_work_waits_in_its_own_queue_and_expires() {
    let app = spawn_app_with(|s| {
        s.retry.max_attempts = 2;
        s.eviction.dead_letter_ttl_days = 3;
    })
    .await;
    // Another key chain wrote this database: eviction work fails transiently until parked.
    sqlx::query("UPDATE eviction_key SET fingerprint = repeat('a', 64)")
        .execute(&app.pool)
        .await
        .expect("fingerprint changed");
    let mut data = step("RG PARCHEGGIO-77/2026", "accesso", None);
    data["household"] = json!({"name": "Famiglia Parcheggio"});
    app.publish(&app.event("eviction.step.v1", data)).await;
    let parked = app.wait_for_held(Holding::Parked, 1).await;
    assert!(
        parked[0].error.contains("pseudonym key differs"),
        "{}",
        parked[0].error
    );
    assert_eq!(app.queue_depth(&app.topology.parked_queue()).await, 0);
    let connection = raccordo_core::amqp::connect(&app.settings.amqp, "test-get")
        .await
        .expect("connects");
    let channel = connection.create_channel().await.expect("channel");
    let message = channel
        .basic_get(
            app.topology.parked_personal_queue().into(),
            BasicGetOptions { no_ack: false },
        )
        .await
        .expect("get")
        .expect("the parked eviction event");
    let expiration = message
        .delivery
        .properties
        .expiration()
        .as_ref()
        .map(|e| e.as_str().to_owned());
    assert_eq!(expiration.as_deref(), Some("259200000"), "three days");
    let _ = connection.close(200, "done".into()).await;
    // What an operator sees of it names no one.
    for args in [
        vec!["dlq", "list", "--queue", "parked"],
        vec!["dlq", "show", parked[0].id.as_str()],
    ] {
        let output = app
            .command()
            .args(&args)
            .output()
            .await
            .expect("raccordo dlq");
        assert!(output.status.success(), "{args:?}");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !text.contains("Parcheggio") && !text.contains("PARCHEGGIO"),
            "{args:?}: {text}"
        );
    }
    app.cleanup().await;
}

#[test]
fn the_docker_definitions_give_each_configured_publisher_exactly_its_types() {
    let root = raccordo_e2e::workspace_root();
    let publishers: raccordo_core::settings::PublishersSettings = config::Config::builder()
        .add_source(config::File::from(root.join("docker/raccordo.toml")))
        .build()
        .expect("docker/raccordo.toml parses")
        .get("publishers")
        .expect("a [publishers] table");
    assert!(!publishers.allow_anonymous);
    let mut settings = Settings::load().expect("defaults");
    settings.publishers = publishers;
    settings
        .validate()
        .expect("the docker publishers are valid settings");
    let expected = raccordo::setup::publisher_definitions(&settings).expect("definitions");
    let text = std::fs::read_to_string(root.join("docker/rabbitmq/definitions.json"))
        .expect("definitions.json");
    let shipped: Value = serde_json::from_str(&text).expect("JSON");
    for section in ["permissions", "topic_permissions"] {
        for entry in expected[section].as_array().expect("entries") {
            assert!(
                shipped[section]
                    .as_array()
                    .expect("entries")
                    .contains(entry),
                "{section} of definitions.json lacks {entry}"
            );
        }
    }
    let shipped_users: Vec<&str> = shipped["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    for user in settings.publishers.users.keys() {
        assert!(shipped_users.contains(&user.as_str()), "{user} missing");
    }
    // Nobody but the hub may write anything other than the inbound exchange.
    for permission in shipped["permissions"].as_array().expect("permissions") {
        if permission["user"] != "raccordo" {
            assert_eq!(permission["write"], "^raccordo\\.inbound$");
            assert_eq!(permission["configure"], "^$");
        }
    }
}
