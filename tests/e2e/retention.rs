//! Retention (CONTRACT 1.2 §8, C9) end to end: personal data of ended or idle procedures
//! and asylum cases leaves every table by C4's path while the pseudonymous history stays;
//! payloads, idempotency keys and the audit go after their times, in batches that skip
//! what a worker holds; a dry run deletes nothing, a second run nothing more; the daily job
//! runs once across replicas; the log is the privacy role's alone; no email is sent again
//! and no timeline is lost.

use std::time::Duration;

use raccordo::retention::run_daily_once;
use raccordo_core::schedule::RunOutcome;
use raccordo_e2e::{TestApp, prepare_with, spawn_app, spawn_app_with};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::console::{OPERATOR, PRIVACY, VIEWER, login_as, request, spawn_console};

const RHO: &str = "015182";

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).expect("formattable")
}

fn today() -> String {
    raccordo_core::domain::format_date(raccordo_core::clock::rome_date(raccordo_core::clock::now()))
}

fn consent(procedure: &str, name: &str) -> Value {
    json!({"procedure_id": procedure, "comune_istat": RHO, "decision": "granted",
           "recorded_by": "Sportello sociale di Rho",
           "recorded_at": rfc3339(OffsetDateTime::now_utc() - time::Duration::minutes(1)),
           "contact": {"name": name, "phone": "+39 333 1234567"}})
}

fn step(procedure: &str, step: &str) -> Value {
    json!({"procedure_id": procedure, "step": step, "occurred_on": today(),
           "comune_istat": RHO, "info_material_delivered": true})
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&app.pool)
        .await
        .expect("count query")
}

/// Runs statements as they are (back-dating rows: time moves in SQL, never by sleeping).
async fn exec(app: &TestApp, sql: &str) {
    sqlx::raw_sql(sql).execute(&app.pool).await.expect(sql);
}

/// `raccordo retention run [--dry-run] --format json` as operators run it: kind → count.
async fn retention_run(app: &TestApp, dry_run: bool) -> std::collections::BTreeMap<String, u64> {
    let mut cmd = app.command();
    cmd.env(
        "RACCORDO__RETENTION__BATCH_SIZE",
        app.settings.retention.batch_size.to_string(),
    )
    .args(["retention", "run", "--format", "json"]);
    if dry_run {
        cmd.arg("--dry-run");
    }
    let out = cmd.output().await.expect("raccordo runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["dry_run"], json!(dry_run));
    report["kinds"]
        .as_array()
        .expect("kinds")
        .iter()
        .map(|k| {
            (
                k["kind"].as_str().expect("kind").to_owned(),
                k["count"].as_u64().expect("count"),
            )
        })
        .collect()
}

/// Every table's rows as one text: what must (not) contain a name.
async fn dump(app: &TestApp) -> String {
    let rows: Vec<String> = sqlx::query_scalar(
        r#"
        SELECT COALESCE(string_agg(t::TEXT, E'\n'), '') FROM (
            SELECT to_jsonb(p) AS t FROM eviction_personal p
            UNION ALL SELECT payload FROM notifications
            UNION ALL SELECT to_jsonb(a) FROM asylum_personal a
        ) x
        "#,
    )
    .fetch_all(&app.pool)
    .await
    .expect("dump");
    rows.concat()
}

#[tokio::test]
async fn c9_an_executed_or_idle_procedure_loses_its_personal_data_and_a_live_one_keeps_it() {
    let app = spawn_app().await;
    // Three consenting families of Rho: each consent alerts two offices.
    for (procedure, name) in [
        ("RG-C9-0001/2026", "Eseguita Nove"),
        ("RG-C9-0002/2026", "Inattiva Nove"),
        ("RG-C9-0003/2026", "Vivente Nove"),
    ] {
        app.publish(&app.event("eviction.step.v1", step(procedure, "intimazione")))
            .await;
        app.settle().await;
        app.publish(&app.event("eviction.consent.v1", consent(procedure, name)))
            .await;
        app.settle().await;
    }
    // The first is executed: one more alert.
    app.publish(&app.event("eviction.step.v1", step("RG-C9-0001/2026", "esecuzione")))
        .await;
    app.wait_for_emails(8).await;
    app.settle().await;
    let keys = raccordo_eviction::Pseudonymizer::from_settings(&app.settings.eviction);
    let docket = |p: &str| {
        keys.pseudonym(&raccordo_eviction::personal::ProcedureId::parse(p).expect("docket"))
            .as_ref()
            .to_owned()
    };
    // The execution was 91 days ago (personal_days 90); the second family has been silent
    // for 366 days (idle_days 365).
    exec(&app, &format!(
        "UPDATE eviction_steps SET occurred_on = occurred_on - 91 WHERE pseudonym IN (SELECT pseudonym FROM eviction_procedures WHERE docket_pseudonym = '{}')",
        docket("RG-C9-0001/2026")
    )).await;
    exec(&app, &format!(
        "UPDATE eviction_procedures SET updated_at = now() - interval '366 days' WHERE docket_pseudonym = '{0}';
         UPDATE eviction_consents SET received_at = now() - interval '366 days' WHERE pseudonym IN (SELECT pseudonym FROM eviction_procedures WHERE docket_pseudonym = '{0}')",
        docket("RG-C9-0002/2026")
    )).await;
    let steps = count(&app, "SELECT count(*) FROM eviction_steps").await;
    let consents = count(&app, "SELECT count(*) FROM eviction_consents").await;

    let dry = retention_run(&app, true).await;
    assert_eq!(dry["eviction.procedures"], 2, "{dry:?}");
    assert_eq!(
        count(&app, "SELECT count(*) FROM eviction_personal").await,
        3
    );

    let done = retention_run(&app, false).await;
    assert_eq!(done["eviction.procedures"], 2, "{done:?}");
    let text = dump(&app).await;
    for gone in ["Eseguita", "Inattiva", "C9-0001", "C9-0002"] {
        assert!(!text.contains(gone), "{gone} is still stored");
    }
    assert!(text.contains("Vivente"), "a live procedure keeps its data");
    assert_eq!(
        count(&app, "SELECT count(*) FROM eviction_personal").await,
        1
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM eviction_steps").await,
        steps,
        "the pseudonymous history stays"
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM eviction_consents").await,
        consents,
        "the consent audit stays"
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM eviction_notifications").await,
        4,
        "the audit of who was told stays"
    );
    let again = retention_run(&app, false).await;
    assert_eq!(again["eviction.procedures"], 0, "{again:?}");
    app.settle().await;
    assert_eq!(app.emails().len(), 8, "nothing sent again");
    app.cleanup().await;
}

#[tokio::test]
async fn c9_a_closed_asylum_case_loses_its_person_from_the_case_and_its_notices() {
    let app = spawn_app().await;
    let root = raccordo_e2e::workspace_root();
    let csv = std::fs::read_to_string(root.join("data/demo/referents_asylum.csv"))
        .expect("data/demo/referents_asylum.csv");
    let report = raccordo_core::registry::import_referents(
        &app.pool,
        csv.as_bytes(),
        &raccordo_core::registry::Actor::import("retention test"),
    )
    .await
    .expect("referents import");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let now = OffsetDateTime::now_utc();
    for case in ["SP-C9-CLOSED", "SP-C9-OPEN"] {
        app.publish(&app.event(
            "asylum.vulnerability.v1",
            json!({"case_id": case, "desk": "sportello-rho", "comune_istat": RHO,
                   "categories": ["salute"], "reported_at": rfc3339(now), "consent": true,
                   "person": {"name": format!("Persona {case}"), "birth_year": 1990,
                              "nationality": "Xandriana", "languages": ["francese"],
                              "phone": "+39 348 5550199", "notes": "Nota"}}),
        ))
        .await;
    }
    app.publish(&app.event(
        "asylum.intervention.v1",
        json!({"case_id": "SP-C9-CLOSED", "action": "chiuso", "at": rfc3339(now),
               "by": "Servizi sociali di Rho"}),
    ))
    .await;
    app.settle().await;
    assert_eq!(count(&app, "SELECT count(*) FROM asylum_personal").await, 2);
    let closed = raccordo_core::pseudonym::case_pseudonym(&app.settings.eviction, "SP-C9-CLOSED");
    // Closed 91 days ago.
    sqlx::query(
        "UPDATE asylum_cases SET closed_at = now() - interval '91 days' WHERE case_key = $1",
    )
    .bind(&closed)
    .execute(&app.pool)
    .await
    .expect("backdate");

    let dry = retention_run(&app, true).await;
    assert_eq!(dry["asylum.cases"], 1, "{dry:?}");
    assert_eq!(count(&app, "SELECT count(*) FROM asylum_personal").await, 2);
    let done = retention_run(&app, false).await;
    assert_eq!(done["asylum.cases"], 1, "{done:?}");
    let text = dump(&app).await;
    assert!(!text.contains("Persona SP-C9-CLOSED"), "{text}");
    assert!(
        text.contains("Persona SP-C9-OPEN"),
        "an open case keeps its person"
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM asylum_cases").await,
        2,
        "the pseudonymous cases stay"
    );
    assert_eq!(retention_run(&app, false).await["asylum.cases"], 0);
    app.cleanup().await;
}

/// Housing units of Rho: each sends emails, leaves notifications, deliveries, timelines and
/// idempotency keys.
async fn fill_housing(app: &TestApp, n: usize) {
    for i in 0..n {
        app.publish(&app.event(
            "housing.unit.v1",
            json!({"unit_id": format!("RET-{i}"), "action": "offered", "comune_istat": RHO,
                   "address": format!("Via della Conservazione {i}, Rho"), "places": 4,
                   "reception_kind": "CAS", "building_type": "appartamento",
                   "owner_declaration": true}),
        ))
        .await;
    }
}

#[tokio::test]
async fn retention_dry_run_deletes_nothing_a_second_run_nothing_more_and_no_email_or_timeline_is_lost()
 {
    let app = spawn_app().await;
    fill_housing(&app, 3).await;
    // Each offer: the stazione appaltante's email and the comune's acknowledgement.
    app.wait_for_emails(6).await;
    app.settle().await;
    let sent = app.emails().len();
    assert!(sent >= 3, "the housing offers went out");
    let events = count(&app, "SELECT count(*) FROM delivery_events").await;
    let deliveries = count(&app, "SELECT count(*) FROM deliveries").await;
    // 100 days old: payloads due (90), timelines and deliveries within audit_years (10).
    exec(
        &app,
        "UPDATE notifications SET created_at = now() - interval '100 days'",
    )
    .await;
    exec(
        &app,
        "UPDATE inbox SET received_at = now() - interval '401 days'",
    )
    .await;
    let notifications = count(&app, "SELECT count(*) FROM notifications").await;
    let keys = count(&app, "SELECT count(*) FROM inbox").await;

    let dry = retention_run(&app, true).await;
    assert_eq!(
        dry["notification.payloads"],
        u64::try_from(notifications).expect("n")
    );
    assert_eq!(dry["inbox.keys"], u64::try_from(keys).expect("n"));
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM notifications WHERE payload ? 'scrubbed'"
        )
        .await,
        0,
        "a dry run changes nothing"
    );
    assert_eq!(count(&app, "SELECT count(*) FROM inbox").await, keys);

    let done = retention_run(&app, false).await;
    assert_eq!(done["notification.payloads"], dry["notification.payloads"]);
    assert_eq!(done["inbox.keys"], dry["inbox.keys"]);
    assert_eq!(done["notifications"], 0);
    assert_eq!(done["delivery.events"], 0);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM notifications WHERE payload = '{\"scrubbed\": true}'"
        )
        .await,
        notifications
    );
    assert_eq!(count(&app, "SELECT count(*) FROM inbox").await, 0);
    assert_eq!(
        count(&app, "SELECT count(*) FROM delivery_events").await,
        events
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM deliveries").await,
        deliveries
    );

    let again = retention_run(&app, false).await;
    assert!(again.values().all(|n| *n == 0), "{again:?}");
    // Nothing pending came back: no email is sent again.
    app.settle().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(app.emails().len(), sent);
    // Eleven years on, the whole evidence goes.
    exec(
        &app,
        "UPDATE notifications SET created_at = now() - interval '11 years'",
    )
    .await;
    exec(
        &app,
        "UPDATE delivery_events SET at = now() - interval '11 years'",
    )
    .await;
    let late = retention_run(&app, false).await;
    assert_eq!(
        late["notifications"],
        u64::try_from(notifications).expect("n")
    );
    assert_eq!(late["delivery.events"], u64::try_from(events).expect("n"));
    assert_eq!(count(&app, "SELECT count(*) FROM deliveries").await, 0);
    let runs = count(
        &app,
        "SELECT count(DISTINCT run_id) FROM retention_log WHERE trigger = 'command'",
    )
    .await;
    assert_eq!(runs, 4, "every run is logged, dry or not");
    assert_eq!(
        count(
            &app,
            "SELECT count(DISTINCT run_id) FROM retention_log WHERE dry_run"
        )
        .await,
        1
    );
    app.cleanup().await;
}

#[tokio::test]
async fn retention_batches_commit_one_by_one_and_skip_a_row_a_worker_holds() {
    let app = prepare_with(|s| s.retention.batch_size = 10).await;
    exec(
        &app,
        "INSERT INTO inbox (publisher, source, event_id, event_type, received_at)
         SELECT '', 'urn:test', 'e' || i, 'housing.unit.v1', now() - interval '500 days'
         FROM generate_series(1, 35) AS i",
    )
    .await;
    // A worker's transaction holds one key.
    let mut holder = app.pool.begin().await.expect("tx");
    sqlx::query("SELECT 1 FROM inbox WHERE event_id = 'e7' FOR UPDATE")
        .execute(&mut *holder)
        .await
        .expect("lock");
    let database = app.settings.database.database_name().expect("name");
    let before = raccordo_core::db::commit_count(&app.settings.database, &database)
        .await
        .expect("commits");
    let started = std::time::Instant::now();
    let done = retention_run(&app, false).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "no batch waited for the lock"
    );
    assert_eq!(done["inbox.keys"], 34, "{done:?}");
    let after = raccordo_core::db::commit_count(&app.settings.database, &database)
        .await
        .expect("commits");
    assert!(
        after - before >= 4,
        "35 rows in batches of 10: four transactions at least"
    );
    holder.rollback().await.expect("rollback");
    assert_eq!(count(&app, "SELECT count(*) FROM inbox").await, 1);
    assert_eq!(
        retention_run(&app, false).await["inbox.keys"],
        1,
        "the next run takes it"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn retention_two_replicas_run_the_daily_job_once() {
    let app = prepare_with(|_| {}).await;
    exec(
        &app,
        "INSERT INTO inbox (publisher, source, event_id, event_type, received_at)
         SELECT '', 'urn:test', 'e' || i, 'housing.unit.v1', now() - interval '500 days'
         FROM generate_series(1, 2500) AS i",
    )
    .await;
    let one = raccordo_core::db::connect(&app.settings.database)
        .await
        .expect("pool");
    let two = raccordo_core::db::connect(&app.settings.database)
        .await
        .expect("pool");
    let (a, b) = tokio::join!(
        run_daily_once(&one, &app.settings),
        run_daily_once(&two, &app.settings)
    );
    let outcomes = [a.expect("replica one"), b.expect("replica two")];
    assert_eq!(
        outcomes.iter().filter(|o| **o == RunOutcome::Ran).count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        run_daily_once(&one, &app.settings).await.expect("again"),
        RunOutcome::AlreadyDone
    );
    assert_eq!(count(&app, "SELECT count(*) FROM inbox").await, 0);
    assert_eq!(
        count(
            &app,
            "SELECT count(DISTINCT run_id) FROM retention_log WHERE trigger = 'daily'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT count FROM retention_log WHERE kind = 'inbox.keys'"
        )
        .await,
        2500
    );
    one.close().await;
    two.close().await;
    app.cleanup().await;
}

#[tokio::test]
async fn retention_log_is_shown_to_the_privacy_role_and_not_to_viewer_or_operator() {
    let (app, addr) = spawn_console().await;
    retention_run(&app, true).await;
    let privacy = login_as(addr, PRIVACY).await;
    let r = request(addr, "GET", "/evictions/audit", Some(&privacy), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let table = r
        .body
        .split("id=\"retention\"")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .expect("the retention log")
        .to_owned();
    assert!(table.contains("inbox.keys"), "{table}");
    assert!(table.contains("comando"), "{table}");
    for user in [VIEWER, OPERATOR] {
        let cookie = login_as(addr, user).await;
        let r = request(addr, "GET", "/evictions/audit", Some(&cookie), None).await;
        assert_eq!(r.status, 403, "{user}");
    }
    app.cleanup().await;
}

#[tokio::test]
async fn retention_eml_files_go_after_eml_days_and_with_their_scrubbed_notification() {
    let dir = std::env::temp_dir().join(format!("raccordo-eml-{}", uuid::Uuid::new_v4()));
    let outbox = dir.clone();
    let app = spawn_app_with(move |s| {
        s.mail.transport = raccordo_core::settings::MailTransportKind::File;
        s.mail.allow_file_transport = true;
        s.mail.outbox_dir = outbox;
    })
    .await;
    fill_housing(&app, 2).await;
    app.settle().await;
    let files = || {
        std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                    .count()
            })
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while files() < 4 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.settle().await;
    let written = files();
    assert_eq!(written, 4, "the file transport wrote two emails per offer");
    let mut cmd = app.command();
    cmd.env("RACCORDO__MAIL__TRANSPORT", "file")
        .env("RACCORDO__MAIL__ALLOW_FILE_TRANSPORT", "true")
        .env("RACCORDO__MAIL__OUTBOX_DIR", &dir)
        .args(["retention", "run", "--format", "json"]);
    let out = cmd.output().await.expect("raccordo runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(files(), written, "young files of live notifications stay");
    // One notification's payload reduced: its files go, at once.
    exec(&app, "UPDATE notifications SET created_at = now() - interval '100 days' WHERE id = (SELECT id FROM notifications ORDER BY created_at LIMIT 1)").await;
    let out = cmd.output().await.expect("raccordo runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let eml = report["kinds"]
        .as_array()
        .and_then(|k| k.iter().find(|k| k["kind"] == "eml.files"))
        .and_then(|k| k["count"].as_u64())
        .expect("eml.files");
    assert!(eml >= 1, "{report}");
    assert_eq!(files(), written - usize::try_from(eml).expect("n"));
    app.cleanup().await;
    let _ = std::fs::remove_dir_all(&dir);
}
