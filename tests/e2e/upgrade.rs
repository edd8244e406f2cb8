//! Upgrades (issue 20, item 2): the database the previous release filled through its own
//! binary (setup, imports, serve, publish of every flow; `scripts/upgrade.sh fixture`),
//! migrated by this release; every stored fact kept, every flow working, nothing re-sent;
//! and new migrations expand-only, so a running replica of the previous release keeps working.

use std::collections::{BTreeMap, BTreeSet};

use raccordo::serve::Workers;
use raccordo_e2e::upgrade::{
    PREVIOUS_RELEASE, PREVIOUS_RELEASE_MIGRATION, expand_only_violations, facts, fixture_path,
};
use raccordo_e2e::{TestApp, prepare_from_dump, workspace_root};
use serde_json::{Value, json};
use uuid::Uuid;

/// The clocks that would act on the fixture's age (reminders, PEC receipts, the 12-hour
/// clock) are pushed out: this test checks what the upgrade does, not what time does.
fn clocks_far(settings: &mut raccordo_core::settings::Settings) {
    settings.escalation.after_hours = 1.0e6;
    settings.mail.pec_receipt_hours = 1.0e6;
    settings.asylum.first_intervention_hours = 1.0e6;
    // The fixture's dates are fixed: as they age, the daily retention job must not prune
    // what the test compares.
    let far = 36_500;
    settings.retention.personal_days = far;
    settings.retention.idle_days = far;
    settings.retention.notification_days = far;
    settings.retention.eml_days = far;
    settings.retention.inbox_days = far;
    settings.retention.audit_years = 100;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_from_the_previous_release_keeps_every_stored_fact() {
    let (app, columns, before) = prepare_from_dump(&fixture_path(), clocks_far).await;
    let applied: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
        .fetch_one(&app.pool)
        .await
        .expect("the applied migrations");
    assert_eq!(applied, raccordo_core::db::latest_known());
    // The fixture is the previous release's: its own migrations, and data in every flow.
    let fixture_migrations = before
        .get("_sqlx_migrations")
        .map(|f| f.rows)
        .unwrap_or_default();
    assert!(fixture_migrations > 0, "the fixture has no migrations");
    for table in [
        "notifications",
        "deliveries",
        "inbox",
        "eviction_procedures",
        "eviction_steps",
        "eviction_personal",
        "asylum_cases",
        "referents",
    ] {
        assert!(
            before.get(table).is_some_and(|f| f.rows > 0),
            "the {PREVIOUS_RELEASE} fixture has no {table}: {before:?}"
        );
    }
    let mut columns = columns;
    // The migrations' own bookkeeping grows by this release's migrations.
    columns.remove("_sqlx_migrations");
    let after = facts(&app.pool, &columns).await;
    let changed: Vec<&String> = columns
        .keys()
        .filter(|t| before.get(*t) != after.get(*t))
        .collect();
    assert!(
        changed.is_empty(),
        "the migration changed stored facts of {changed:?}"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_from_the_previous_release_runs_every_flow_and_resends_nothing() {
    let (app, _, _) = prepare_from_dump(&fixture_path(), clocks_far).await;
    let old: BTreeSet<Uuid> = sqlx::query_scalar("SELECT id FROM notifications")
        .fetch_all(&app.pool)
        .await
        .expect("the fixture's notifications")
        .into_iter()
        .collect();
    let steps_before = steps_of_rho_procedure(&app).await;
    let inbox_before = count(&app, "SELECT count(*) FROM inbox").await;
    let app = app.start(Workers::All).await;
    app.settle().await;
    // Started on the old data: not one email of a notification the old release made.
    assert_no_email_of(&app, &old);

    let events = new_events_of_every_flow(&app);
    for event in &events {
        app.publish(event).await;
    }
    app.settle().await;
    assert_eq!(
        count(&app, "SELECT count(*) FROM inbox").await,
        inbox_before + events.len() as i64,
        "every new event is processed once"
    );
    assert!(app.dead_letters().await.is_empty(), "no dead letter");
    assert!(app.parked().await.is_empty(), "nothing parked");
    // The old procedure goes on under the old pseudonym (the key chain is the same).
    assert_eq!(steps_of_rho_procedure(&app).await, steps_before + 1);
    assert_no_email_of(&app, &old);
    let kinds = new_kinds(&app, &old).await;
    for flow in ["housing.", "eviction.", "asylum."] {
        assert!(
            kinds.keys().any(|k| k.starts_with(flow)),
            "no new {flow}* notification after the upgrade: {kinds:?}"
        );
    }
    // Each new delivery was emailed exactly once.
    let delivered = count(
        &app,
        "SELECT count(*) FROM deliveries WHERE delivered_at IS NOT NULL",
    )
    .await;
    let old_delivered = count_old_delivered(&app, &old).await;
    let emails = app.emails();
    let pairs: BTreeSet<(String, String)> = emails
        .iter()
        .flat_map(|m| {
            let id = m.header("X-Raccordo-Notification").unwrap_or_default();
            m.to.iter().map(move |to| (id.clone(), to.clone()))
        })
        .collect();
    let sent: usize = emails.iter().map(|m| m.to.len()).sum();
    assert_eq!(sent, pairs.len(), "an email was sent twice");
    assert_eq!(sent as i64, delivered - old_delivered);
    app.cleanup().await;
}

#[test]
fn upgrade_migrations_after_the_previous_release_are_expand_only() {
    let dir = workspace_root().join("migrations");
    let mut checked = 0;
    let mut problems = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("migrations/") {
        let path = entry.expect("an entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let version: i64 = name
            .split('_')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if version <= PREVIOUS_RELEASE_MIGRATION || !name.ends_with(".sql") {
            continue;
        }
        checked += 1;
        let sql = std::fs::read_to_string(&path).expect("a readable migration");
        let found = expand_only_violations(&sql);
        if !found.is_empty() {
            problems.insert(name, found);
        }
    }
    assert!(
        checked > 0,
        "no migration after {PREVIOUS_RELEASE} was checked"
    );
    assert!(
        problems.is_empty(),
        "migrations after {PREVIOUS_RELEASE} must keep its running replicas working \
         (expand now, contract a release later with `-- contract:` and schema_floor): {problems:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_a_binary_below_the_schema_floor_refuses_to_start() {
    let (mut app, _, _) = prepare_from_dump(&fixture_path(), clocks_far).await;
    // A later release contracted the schema past what this binary knows.
    let known = raccordo_core::db::latest_known();
    sqlx::query("UPDATE schema_floor SET version = $1")
        .bind(known + 1)
        .execute(&app.pool)
        .await
        .expect("raise the floor");
    let refused = raccordo::serve::App::start(app.settings.clone(), Workers::All).await;
    let error = format!("{:#}", refused.err().expect("the hub refuses to start"));
    assert!(error.contains("newer release"), "{error}");
    // One that only expanded the schema (a migration this binary does not know) is fine.
    sqlx::query("UPDATE schema_floor SET version = $1")
        .bind(known)
        .execute(&app.pool)
        .await
        .expect("lower the floor");
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, 'a newer release', TRUE, '\\x00', 0)",
    )
    .bind(known + 1)
    .execute(&app.pool)
    .await
    .expect("a newer migration");
    app = app.start(Workers::All).await;
    app.stop_workers().await;
    app.cleanup().await;
}

fn new_events_of_every_flow(app: &TestApp) -> Vec<Value> {
    let mut events = vec![
        app.event(
            "housing.unit.v1",
            json!({"unit_id": "UPG-0001", "action": "offered", "comune_istat": "015146",
                   "address": "Via dell'Aggiornamento 1, Milano", "places": 5,
                   "reception_kind": "CAS", "building_type": "appartamento",
                   "owner_declaration": true}),
        ),
        app.event(
            "reception.occupancy.v1",
            json!({"facility_id": "UPG-CAS-01", "comune_istat": "015146",
                   "reception_kind": "CAS", "capacity": 40, "presences": 12,
                   "as_of": "2026-11-30"}),
        ),
        app.event(
            "asylum.vulnerability.v1",
            json!({"case_id": "SP-UPG-2026-0001", "desk": "sportello-rho",
                   "comune_istat": "015182", "categories": ["salute"],
                   "reported_at": "2026-12-01T10:00:00+01:00", "consent": false}),
        ),
        app.event(
            "registry.referent.v1",
            json!({"referent_id": "ss-upg", "action": "upsert", "institution": "Comune di Rho",
                   "role": "servizi_sociali", "email": "upgrade@comune.rho.example",
                   "name": "Ufficio di prova", "scope": {"comune_istat": "015182"}}),
        ),
    ];
    // The next step of a procedure the previous release recorded (with consent there).
    let mut step = app.event(
        "eviction.step.v1",
        json!({"procedure_id": "RG-DEMO-RHO/118", "step": "accesso",
               "occurred_on": "2026-01-18", "comune_istat": "015182",
               "info_material_delivered": true}),
    );
    step["source"] = json!("urn:tribunale-milano:unep");
    events.push(step);
    events
}

fn assert_no_email_of(app: &TestApp, old: &BTreeSet<Uuid>) {
    let resent: Vec<String> = app
        .emails()
        .iter()
        .filter_map(|m| m.header("X-Raccordo-Notification"))
        .filter(|id| Uuid::parse_str(id).is_ok_and(|id| old.contains(&id)))
        .collect();
    assert!(
        resent.is_empty(),
        "emails of notifications the previous release had sent: {resent:?}"
    );
}

async fn new_kinds(app: &TestApp, old: &BTreeSet<Uuid>) -> BTreeMap<String, usize> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as("SELECT id, kind FROM notifications")
        .fetch_all(&app.pool)
        .await
        .expect("notifications");
    let mut kinds = BTreeMap::new();
    for (id, kind) in rows {
        if !old.contains(&id) {
            *kinds.entry(kind).or_default() += 1;
        }
    }
    kinds
}

async fn count_old_delivered(app: &TestApp, old: &BTreeSet<Uuid>) -> i64 {
    let ids: Vec<Uuid> = old.iter().copied().collect();
    sqlx::query_scalar(
        "SELECT count(*) FROM deliveries WHERE delivered_at IS NOT NULL AND notification_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_one(&app.pool)
    .await
    .expect("old deliveries")
}

async fn steps_of_rho_procedure(app: &TestApp) -> i64 {
    // The demo's Rho family is the only procedure of comune 015182 in the fixture.
    count(
        app,
        "SELECT count(*) FROM eviction_steps s JOIN eviction_procedures p USING (pseudonym) \
         WHERE p.comune_istat = '015182'",
    )
    .await
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}
