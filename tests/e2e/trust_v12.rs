//! The trust boundary, second pass (issue 17, contract 1.2): idempotency per publisher, a
//! revocation that always wins (C8), the validated publisher in the consent audit, personal
//! holding queues that expire whatever they hold. Against the real broker (with real
//! per-publisher users), PostgreSQL and SMTP.

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use raccordo::serve::Workers;
use raccordo_core::amqp::dead_letter::Holding;
use raccordo_core::settings::PublisherRule;
use raccordo_e2e::broker_users::BrokerUser;
use raccordo_e2e::{TestApp, prepare_with, spawn_app};

const RHO: &str = "015182";
const MILANO: &str = "015146";
const DESK_SOURCE: &str = "urn:raccordo:sportello-rho";

fn at(minutes_from_now: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::minutes(minutes_from_now))
        .format(&Rfc3339)
        .expect("formattable")
}

fn consent(procedure: &str, comune: &str, decision: &str, recorded_at: &str) -> Value {
    json!({"procedure_id": procedure, "comune_istat": comune, "decision": decision,
           "recorded_by": "Sportello sociale di Rho", "recorded_at": recorded_at})
}

fn accesso(procedure: &str) -> Value {
    let today = raccordo_core::domain::format_date(raccordo_core::clock::rome_date(
        OffsetDateTime::now_utc(),
    ));
    json!({"procedure_id": procedure, "step": "accesso", "occurred_on": today,
           "comune_istat": RHO, "next_access_at": at(2 * 24 * 60)})
}

fn offer(unit_id: &str) -> Value {
    json!({"unit_id": unit_id, "action": "offered", "comune_istat": RHO,
           "address": "Via Padova 1", "places": 4, "reception_kind": "CAS",
           "building_type": "appartamento", "owner_declaration": true})
}

/// A CloudEvent with a chosen source and id.
fn event(source: &str, id: &str, event_type: &str, data: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "specversion": "1.0", "id": id, "source": source, "type": event_type, "data": data
    }))
    .expect("json")
}

fn rule(types: &[&str], comuni: &[&str]) -> PublisherRule {
    PublisherRule {
        types: types.iter().map(|t| (*t).to_owned()).collect(),
        comuni: comuni.iter().map(|c| (*c).to_owned()).collect(),
        ..PublisherRule::default()
    }
}

/// A social desk of Rho (consent decisions about Rho) and Rho's housing system.
struct Systems {
    desk: BrokerUser,
    comune: BrokerUser,
}

async fn with_systems() -> (TestApp, Systems) {
    let prepared = prepare_with(|_| {}).await;
    let inbound = prepared.topology.inbound_exchange();
    let url = &prepared.settings.amqp.url;
    let systems = Systems {
        desk: BrokerUser::create(url, &inbound, "sportello-rho", "eviction\\.consent\\.v1").await,
        comune: BrokerUser::create(url, &inbound, "comune-rho", "housing\\.unit\\.v1").await,
    };
    let (desk, comune) = (systems.desk.name.clone(), systems.comune.name.clone());
    let app = prepared
        .configure(move |s| {
            s.publishers.allow_anonymous = false;
            s.publishers
                .users
                .insert(desk, rule(&["eviction.consent.v1"], &[RHO]));
            s.publishers
                .users
                .insert(comune, rule(&["housing.unit.v1"], &[RHO]));
        })
        .start(Workers::All)
        .await;
    (app, systems)
}

impl Systems {
    async fn cleanup(self) {
        self.desk.delete().await;
        self.comune.delete().await;
    }
}

async fn send(app: &TestApp, who: &BrokerUser, routing_key: &str, body: &[u8]) {
    who.publish(
        &app.topology.inbound_exchange(),
        routing_key,
        body,
        Some(&who.name),
    )
    .await
    .expect("the broker confirms");
}

async fn consent_state(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT consent FROM eviction_procedures ORDER BY pseudonym")
        .fetch_all(&app.pool)
        .await
        .expect("procedures")
}

/// Finding 1: the inbox key was (source, id) alone, so a publisher that first used a desk's
/// source and a future id made the desk's revocation an acknowledged "duplicate".
#[tokio::test]
async fn issue17_f1_another_publisher_reusing_a_desks_source_and_id_never_cancels_its_revocation() {
    let (app, systems) = with_systems().await;
    // Rho's housing system, by mistake or malice, uses the desk's source and a future id.
    let squat = event(DESK_SOURCE, "rev-1", "housing.unit.v1", offer("U-SQUAT"));
    send(&app, &systems.comune, "housing.unit.v1", &squat).await;
    app.wait_for_emails(2).await;
    let grant = event(
        DESK_SOURCE,
        "grant-1",
        "eviction.consent.v1",
        consent("RG 17/2026", RHO, "granted", &at(-60)),
    );
    send(&app, &systems.desk, "eviction.consent.v1", &grant).await;
    app.wait_for_emails(4).await;
    let revoke = event(
        DESK_SOURCE,
        "rev-1",
        "eviction.consent.v1",
        consent("RG 17/2026", RHO, "revoked", &at(-1)),
    );
    send(&app, &systems.desk, "eviction.consent.v1", &revoke).await;
    app.wait_for_emails(6).await;
    app.settle().await;
    assert_eq!(app.emails_of("eviction.consent_revoked").len(), 2);
    assert_eq!(consent_state(&app).await, ["revoked"]);
    assert!(app.dead_letters().await.is_empty());
    let keys: Vec<(String, String)> =
        sqlx::query_as("SELECT publisher, event_id FROM inbox WHERE source = $1 ORDER BY 1, 2")
            .bind(DESK_SOURCE)
            .fetch_all(&app.pool)
            .await
            .expect("keys");
    assert_eq!(
        keys,
        [
            (systems.comune.name.clone(), "rev-1".to_owned()),
            (systems.desk.name.clone(), "grant-1".to_owned()),
            (systems.desk.name.clone(), "rev-1".to_owned()),
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    // Consent no longer active: the next step alerts nobody.
    let step = event(
        "urn:raccordo:tribunale",
        "step-1",
        "eviction.step.v1",
        accesso("RG 17/2026"),
    );
    app.publish_raw("eviction.step.v1", &step).await;
    app.settle().await;
    assert_eq!(app.emails().len(), 6);
    systems.cleanup().await;
    app.cleanup().await;
}

/// Contract 1.2 §3: the same key with another body is a conflict (dead-lettered), not a
/// silent duplicate; the same body again is a duplicate (nothing happens).
#[tokio::test]
async fn issue17_f1_the_same_key_with_another_body_is_a_conflict_and_the_same_body_a_duplicate() {
    let app = spawn_app().await;
    let first = event("urn:comune:rho", "offer-1", "housing.unit.v1", offer("U-1"));
    app.publish_raw("housing.unit.v1", &first).await;
    app.wait_for_emails(2).await;
    // The same event serialised again, members in another order: a duplicate.
    let mut reordered: Value = serde_json::from_slice(&first).expect("json");
    let data = reordered["data"].take();
    let mut members: Vec<(String, Value)> = data
        .as_object()
        .expect("an object")
        .clone()
        .into_iter()
        .collect();
    members.reverse();
    reordered["data"] = Value::Object(members.into_iter().collect());
    app.publish_raw(
        "housing.unit.v1",
        &serde_json::to_vec(&reordered).expect("json"),
    )
    .await;
    let mut changed = offer("U-1");
    changed["places"] = json!(9);
    let conflict = event("urn:comune:rho", "offer-1", "housing.unit.v1", changed);
    app.publish_raw("housing.unit.v1", &conflict).await;
    let dead = app.wait_for_held(Holding::Dead, 1).await;
    assert!(
        dead[0].error.contains("idempotency conflict") && dead[0].error.contains("\"anonymous\""),
        "{}",
        dead[0].error
    );
    app.settle().await;
    assert_eq!(
        app.emails().len(),
        2,
        "neither the resend nor the conflict sent anything"
    );
    app.cleanup().await;
}

/// Finding 3, tried against the release binary: a grant recorded a few minutes ahead
/// (within eviction.max_clock_skew_s) outranked a revocation sent after it.
#[tokio::test]
async fn c8_a_grant_dated_ahead_never_outranks_a_later_revocation() {
    let app = spawn_app().await;
    let procedure = "RG 8001/2026";
    app.publish(&app.event(
        "eviction.consent.v1",
        consent(procedure, RHO, "granted", &at(5)),
    ))
    .await;
    app.wait_for_emails(2).await;
    app.publish(&app.event(
        "eviction.consent.v1",
        consent(procedure, RHO, "revoked", &at(0)),
    ))
    .await;
    app.wait_for_emails(4).await;
    assert_eq!(app.emails_of("eviction.consent_revoked").len(), 2);
    // The old grant published again (a new id): consent stays revoked.
    app.publish(&app.event(
        "eviction.consent.v1",
        consent(procedure, RHO, "granted", &at(5)),
    ))
    .await;
    app.publish(&app.event("eviction.step.v1", accesso(procedure)))
        .await;
    app.settle().await;
    assert_eq!(app.emails().len(), 4, "no alert after the revocation");
    assert_eq!(consent_state(&app).await, ["revoked"]);
    app.cleanup().await;
}

/// A revocation that fails validation for a field only a grant needs (a contact too long)
/// still stops the alerts, deletes the personal data, and is reported (dead-lettered with
/// its reason, counted by `raccordo status`).
#[tokio::test]
async fn c8_a_revocation_with_a_contact_too_long_still_stops_alerts_and_is_reported() {
    let app = spawn_app().await;
    let procedure = "RG 8002/2026";
    let mut grant = consent(procedure, RHO, "granted", &at(-60));
    grant["contact"] = json!({"name": "Famiglia Lungamente", "phone": "+39 333 8002800"});
    app.publish(&app.event("eviction.consent.v1", grant)).await;
    app.wait_for_emails(2).await;
    let mut revoke = consent(procedure, RHO, "revoked", &at(0));
    revoke["contact"] = json!({"notes": "x".repeat(5000)});
    app.publish(&app.event("eviction.consent.v1", revoke)).await;
    let dead = app.wait_for_held(Holding::Dead, 1).await;
    assert!(
        dead[0].error.contains("/contact") && dead[0].error.contains("applied all the same"),
        "{}",
        dead[0].error
    );
    app.wait_for_emails(4).await;
    assert_eq!(app.emails_of("eviction.consent_revoked").len(), 2);
    let personal: i64 = sqlx::query_scalar("SELECT count(*) FROM eviction_personal")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(personal, 0, "personal data deleted");
    app.publish(&app.event("eviction.step.v1", accesso(procedure)))
        .await;
    app.settle().await;
    assert_eq!(app.emails().len(), 4, "no alert after the revocation");
    let output = app
        .command()
        .args(["status", "--format", "json"])
        .output()
        .await
        .expect("raccordo status runs");
    let status: Value = serde_json::from_slice(&output.stdout).expect("json status");
    assert_eq!(status["unvalidated_revocations"], 1);
    app.cleanup().await;
}

/// A revocation naming a comune its desk may not name (a grant-only entitlement) still
/// applies to the procedure; the audit records the validated publisher next to the
/// `recorded_by` it claims.
#[tokio::test]
async fn c8_a_revocation_about_a_comune_its_desk_may_not_name_still_stops_alerts_and_the_audit_names_the_publisher()
 {
    let (app, systems) = with_systems().await;
    let procedure = "RG 8003/2026";
    let grant = event(
        DESK_SOURCE,
        "g-8003",
        "eviction.consent.v1",
        consent(procedure, RHO, "granted", &at(-60)),
    );
    send(&app, &systems.desk, "eviction.consent.v1", &grant).await;
    app.wait_for_emails(2).await;
    let revoke = event(
        DESK_SOURCE,
        "r-8003",
        "eviction.consent.v1",
        consent(procedure, MILANO, "revoked", &at(0)),
    );
    send(&app, &systems.desk, "eviction.consent.v1", &revoke).await;
    let dead = app.wait_for_held(Holding::Dead, 1).await;
    assert!(
        dead[0].error.contains("about comune 015146")
            && dead[0].error.contains("applied all the same"),
        "{}",
        dead[0].error
    );
    app.wait_for_emails(4).await;
    let revoked = app.emails_of("eviction.consent_revoked");
    assert_eq!(revoked.len(), 2);
    for m in &revoked {
        assert!(
            m.to.iter().all(|to| to.contains("rho")),
            "told to Rho's referents, where the procedure is: {:?}",
            m.to
        );
    }
    assert_eq!(consent_state(&app).await, ["revoked"]);
    let audit: Vec<(String, Option<String>, bool)> = sqlx::query_as(
        "SELECT decision, publisher, unvalidated IS NOT NULL FROM eviction_consents ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .expect("audit");
    assert_eq!(
        audit,
        [
            ("granted".to_owned(), Some(systems.desk.name.clone()), false),
            ("revoked".to_owned(), Some(systems.desk.name.clone()), true),
        ]
    );
    systems.cleanup().await;
    app.cleanup().await;
}

/// Finding 6: `{prefix}.dead` mixed expiring eviction letters with letters that never expire
/// (the head blocks expiry), and `parked.personal` received broker dead-letters (a quorum
/// queue's delivery limit) with no expiration. Now both personal queues expire every
/// message by the queue's own TTL, and `raccordo setup` gives an empty pre-1.2 queue its TTL.
#[tokio::test]
async fn c7_personal_holding_queues_expire_every_message_by_their_own_ttl() {
    let prepared = prepare_with(|s| s.eviction.dead_letter_ttl_days = 3).await;
    let topology = prepared.topology.clone();
    let connection = raccordo_core::amqp::connect(&prepared.settings.amqp, "test-ttl")
        .await
        .expect("connects");
    // Redeclaring with other arguments is refused by RabbitMQ: so the arguments are these.
    let declares = |queue: String, ttl: Option<i64>| {
        let connection = &connection;
        async move {
            let channel = connection.create_channel().await.expect("a channel");
            let mut args = FieldTable::default();
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("classic".into()),
            );
            if let Some(ms) = ttl {
                args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ms));
            }
            channel
                .queue_declare(queue.into(), QueueDeclareOptions::durable(), args)
                .await
                .is_ok()
        }
    };
    let three_days = 3 * 24 * 3600 * 1000;
    for queue in topology.personal_queues() {
        assert!(declares(queue.clone(), Some(three_days)).await, "{queue}");
        assert!(!declares(queue.clone(), None).await, "{queue} has a TTL");
    }
    assert!(
        declares(topology.dead_queue(), None).await,
        "the dead queue keeps"
    );

    // A queue declared before 1.2 (no TTL) is given one by setup, when empty.
    let channel = connection.create_channel().await.expect("a channel");
    channel
        .queue_delete(topology.parked_personal_queue().into(), Default::default())
        .await
        .expect("deleted");
    assert!(declares(topology.parked_personal_queue(), None).await);
    let output = prepared
        .command()
        .args(["setup"])
        .output()
        .await
        .expect("raccordo setup runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(declares(topology.parked_personal_queue(), Some(three_days)).await);
    let _ = connection.close(200, "done".into()).await;
    prepared.cleanup().await;
}

fn step_of(procedure: &str, comune: &str) -> Value {
    let mut data = accesso(procedure);
    data["comune_istat"] = json!(comune);
    data["step"] = json!("precetto");
    data.as_object_mut().map(|d| d.remove("next_access_at"));
    data
}

/// A step of the Tribunale di Milano's system for `docket` in Rho, handled before returning.
async fn milano_court_step(app: &TestApp, docket: &str, id: &str) {
    let body = event(
        "urn:tribunale:milano",
        id,
        "eviction.step.v1",
        step_of(docket, RHO),
    );
    app.publish_raw("eviction.step.v1", &body).await;
    app.settle().await;
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&app.pool)
        .await
        .expect("count query")
}

/// Finding 5: the docket pseudonym ignored the court, so two courts' equal docket numbers
/// merged into one procedure (one family's consent reaching the other's alerts).
#[tokio::test]
async fn issue17_f5_two_courts_with_one_docket_number_are_two_procedures() {
    let app = spawn_app().await;
    let docket = "RG 500/2026";
    for (i, court) in ["urn:tribunale:milano", "urn:tribunale:monza"]
        .iter()
        .enumerate()
    {
        let body = event(
            court,
            &format!("s-{i}"),
            "eviction.step.v1",
            step_of(docket, RHO),
        );
        app.publish_raw("eviction.step.v1", &body).await;
    }
    app.settle().await;
    assert_eq!(
        count(&app, "SELECT count(*) FROM eviction_procedures").await,
        2
    );
    // A grant naming no court cannot tell them apart: refused, saying what to add.
    app.publish(&app.event(
        "eviction.consent.v1",
        consent(docket, RHO, "granted", &at(-30)),
    ))
    .await;
    let dead = app.wait_for_held(Holding::Dead, 1).await;
    assert!(
        dead[0].error.contains("the `court` field"),
        "{}",
        dead[0].error
    );
    // Naming its court, it reaches that procedure only.
    let mut grant = consent(docket, RHO, "granted", &at(-20));
    grant["court"] = json!("urn:tribunale:milano");
    app.publish(&app.event("eviction.consent.v1", grant)).await;
    app.wait_for_emails(2).await;
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM eviction_procedures WHERE consent = 'granted' AND court = 'urn:tribunale:milano'"
        )
        .await,
        1
    );
    // A revocation naming no court applies to every procedure it may mean (C8).
    app.publish(&app.event(
        "eviction.consent.v1",
        consent(docket, RHO, "revoked", &at(-1)),
    ))
    .await;
    app.wait_for_emails(4).await;
    app.settle().await;
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM eviction_procedures WHERE consent = 'revoked'"
        )
        .await,
        2
    );
    assert_eq!(app.emails_of("eviction.consent_revoked").len(), 2);
    app.cleanup().await;
}

/// A consent before any step (court unknown) is adopted by the first court that sends a
/// step for that docket in that comune: one procedure, keyed on its court from then on.
#[tokio::test]
async fn issue17_f5_a_procedure_known_before_its_court_is_adopted_by_the_first_step() {
    let app = spawn_app().await;
    let docket = "RG 501/2026";
    app.publish(&app.event(
        "eviction.consent.v1",
        consent(docket, RHO, "granted", &at(-30)),
    ))
    .await;
    app.wait_for_emails(2).await;
    let body = event(
        "urn:tribunale:milano",
        "s-501",
        "eviction.step.v1",
        step_of(docket, RHO),
    );
    app.publish_raw("eviction.step.v1", &body).await;
    app.wait_for_emails(4).await;
    app.settle().await;
    let rows: Vec<(Option<String>, String)> =
        sqlx::query_as("SELECT court, consent FROM eviction_procedures")
            .fetch_all(&app.pool)
            .await
            .expect("procedures");
    assert_eq!(
        rows,
        [(
            Some("urn:tribunale:milano".to_owned()),
            "granted".to_owned()
        )]
    );
    assert_eq!(
        app.emails_of("eviction.alert").len(),
        4,
        "the step alerted (C3)"
    );
    app.cleanup().await;
}

/// Finding 5: an event reusing another comune's unit, facility or procedure id re-homed it.
/// Now it is dead-lettered naming the owner, and an operator moves it, audited.
#[tokio::test]
async fn issue17_f5_ids_stay_in_their_comune_and_an_operator_moves_them() {
    let app = spawn_app().await;
    app.publish(&app.event("housing.unit.v1", offer("U-F5")))
        .await;
    let facility = |comune: &str, presences: u32| {
        json!({"facility_id": "CAS-F5", "comune_istat": comune, "reception_kind": "CAS",
               "capacity": 10, "presences": presences, "as_of": "2026-11-01"})
    };
    app.publish(&app.event("reception.occupancy.v1", facility(RHO, 2)))
        .await;
    app.publish(&app.event("eviction.step.v1", step_of("RG 502/2026", RHO)))
        .await;
    app.settle().await;
    let mut elsewhere = offer("U-F5");
    elsewhere["comune_istat"] = json!(MILANO);
    app.publish(&app.event("housing.unit.v1", elsewhere)).await;
    app.publish(&app.event("reception.occupancy.v1", facility(MILANO, 3)))
        .await;
    app.publish(&app.event("eviction.step.v1", step_of("RG 502/2026", MILANO)))
        .await;
    let mut reasons: Vec<String> = app
        .wait_for_held(Holding::Dead, 3)
        .await
        .into_iter()
        .map(|m| m.error)
        .collect();
    reasons.sort();
    assert!(
        reasons[0].starts_with("facility \"CAS-F5\" belongs to comune 015182"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].starts_with("this procedure belongs to comune 015182"),
        "{reasons:?}"
    );
    assert!(
        !reasons[1].contains("502"),
        "a docket number is never named"
    );
    assert!(
        reasons[2].starts_with("unit \"U-F5\" belongs to comune 015182"),
        "{reasons:?}"
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM housing_units WHERE comune_istat = '015146'"
        )
        .await,
        0
    );
    let output = app
        .command()
        .args([
            "ids",
            "move",
            "facility",
            "CAS-F5",
            "--to",
            MILANO,
            "--by",
            "Operatore Rossi",
            "--reason",
            "comune sbagliato nel primo rapporto",
        ])
        .output()
        .await
        .expect("raccordo ids move runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .contains("Moved facility \"CAS-F5\" from comune 015182 to comune 015146"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let mut later = facility(MILANO, 4);
    later["as_of"] = json!("2026-11-02");
    app.publish(&app.event("reception.occupancy.v1", later))
        .await;
    app.settle().await;
    assert_eq!(
        app.dead_letters().await.len(),
        3,
        "the moved facility is Milano's now"
    );
    assert_eq!(
        count(
            &app,
            "SELECT presences::BIGINT FROM reception_facilities WHERE facility_id = 'CAS-F5'"
        )
        .await,
        4
    );
    let audit: (String, String, String, String) =
        sqlx::query_as("SELECT kind, from_comune, to_comune, moved_by FROM id_moves")
            .fetch_one(&app.pool)
            .await
            .expect("the move is audited");
    assert_eq!(
        audit,
        (
            "facility".into(),
            RHO.into(),
            MILANO.into(),
            "Operatore Rossi".into()
        )
    );
    app.cleanup().await;
}

/// Where publishers are configured, an id also belongs to the publisher that first used it.
#[tokio::test]
async fn issue17_f5_another_publisher_of_the_same_comune_cannot_take_a_unit() {
    let (app, systems) = with_systems().await;
    let inbound = app.topology.inbound_exchange();
    let rival = BrokerUser::create(
        &app.settings.amqp.url,
        &inbound,
        "rival-rho",
        "housing\\.unit\\.v1",
    )
    .await;
    // The rival is configured too, for Rho's housing: then the hub restarts with it.
    let mut app = app;
    app.stop_workers().await;
    let name = rival.name.clone();
    let app = app
        .configure(move |s| {
            s.publishers
                .users
                .insert(name, rule(&["housing.unit.v1"], &[RHO]));
        })
        .start(Workers::All)
        .await;
    send(
        &app,
        &systems.comune,
        "housing.unit.v1",
        &event("urn:rho", "u1", "housing.unit.v1", offer("U-OWN")),
    )
    .await;
    app.wait_for_emails(2).await;
    let mut taken = offer("U-OWN");
    taken["places"] = json!(1);
    send(
        &app,
        &rival,
        "housing.unit.v1",
        &event("urn:rival", "u2", "housing.unit.v1", taken),
    )
    .await;
    let dead = app.wait_for_held(Holding::Dead, 1).await;
    assert!(
        dead[0]
            .error
            .contains(&format!("and publisher {:?}", systems.comune.name)),
        "{}",
        dead[0].error
    );
    rival.delete().await;
    systems.cleanup().await;
    app.cleanup().await;
}

/// Finding 6: an oversize message was kept whole in the dead queue, where operators browse.
/// It is held cut to `amqp.max_message_bytes`, its size before named in a header.
#[tokio::test]
async fn issue17_f6_an_oversize_message_is_held_cut_to_the_limit() {
    let app = spawn_app().await;
    let mut data = offer("U-BIG");
    data["notes"] = json!("x".repeat(2 * 1024 * 1024));
    let body = event("urn:big", "big-1", "housing.unit.v1", data);
    app.publish_raw("housing.unit.v1", &body).await;
    let dead = app.wait_for_held(Holding::Dead, 1).await;
    assert!(
        dead[0].error.contains("over the 262144-byte limit"),
        "{}",
        dead[0].error
    );
    assert_eq!(dead[0].size, 262_144);
    let headers = dead[0].headers();
    let from = headers
        .iter()
        .find(|(k, _)| k == "x-raccordo-truncated-from")
        .map(|(_, v)| v.clone());
    assert_eq!(from.as_deref(), Some(body.len().to_string().as_str()));
    app.cleanup().await;
}

/// C8 with court-keyed procedures: a revocation naming the wrong comune still revokes the
/// court's procedure of its docket, told to that procedure's own comune only.
#[tokio::test]
async fn c8_a_revocation_naming_another_comune_still_revokes_the_courts_procedure() {
    let app = spawn_app().await;
    let docket = "RG 8004/2026";
    milano_court_step(&app, docket, "s-8004").await;
    app.publish(&app.event(
        "eviction.consent.v1",
        consent(docket, RHO, "granted", &at(-30)),
    ))
    .await;
    app.wait_for_emails(2).await;
    app.publish(&app.event(
        "eviction.consent.v1",
        consent(docket, MILANO, "revoked", &at(-1)),
    ))
    .await;
    app.wait_for_emails(4).await;
    app.settle().await;
    let revoked = app.emails_of("eviction.consent_revoked");
    assert_eq!(revoked.len(), 2);
    assert!(
        revoked
            .iter()
            .all(|m| m.to.iter().all(|to| to.contains("rho"))),
        "told to Rho only"
    );
    assert_eq!(consent_state(&app).await, ["revoked"]);
    assert_eq!(
        count(&app, "SELECT count(*) FROM eviction_procedures").await,
        1
    );
    app.cleanup().await;
}

/// A grant naming another comune than its procedure's never moves it there (nor makes a
/// second procedure): dead-lettered naming the owner's comune, never the docket.
#[tokio::test]
async fn issue17_f5_a_grant_naming_another_comune_is_refused_naming_the_owner() {
    let app = spawn_app().await;
    let docket = "RG 503/2026";
    milano_court_step(&app, docket, "s-503").await;
    app.publish(&app.event(
        "eviction.consent.v1",
        consent(docket, MILANO, "granted", &at(-30)),
    ))
    .await;
    let dead = app.wait_for_held(Holding::Dead, 1).await;
    assert!(
        dead[0]
            .error
            .starts_with("this procedure belongs to comune 015182"),
        "{}",
        dead[0].error
    );
    app.settle().await;
    assert!(app.emails().is_empty(), "no alert anywhere");
    assert_eq!(
        count(&app, "SELECT count(*) FROM eviction_procedures").await,
        1
    );
    app.cleanup().await;
}
