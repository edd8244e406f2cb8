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
