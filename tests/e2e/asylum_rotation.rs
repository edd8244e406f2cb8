//! Rule A3, the rotation of domiciles among the comuni (contract 1.2 §4 "Asylum"), through
//! the real broker, database and SMTP: who is next, the announcement to the comune and the
//! desk, pauses, exactly one assignment per request whatever the redeliveries, replays and
//! hubs, fairness over 10,000 requests, and the report of a year.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use raccordo::serve::{App, Workers};
use raccordo_e2e::{TestApp, prepare_with, spawn_app};
use serde_json::{Value, json};

const RHO: &str = "015182";
const LEGNANO: &str = "015118";
const SESTO: &str = "015209"; // the most populous of the three
const DESK: &str = "sportello-prova";
const DESK_EMAIL: &str = "sportello.prova@asilo.example";
const COMUNE_SESTO: &str = "accoglienza@comune.sestosg.example";

/// Adds the desk and marks `comuni` as adhering to the rotation (as `raccordo import comuni`
/// with `domicilio=si` would).
async fn join_rotation(app: &TestApp, comuni: &[&str]) {
    let referents = format!(
        "referent_id,institution,role,email,name,comune_istat,ambito,zona\n\
         {DESK},Sportello provinciale asilo di Rho,sportello_asilo,{DESK_EMAIL},Sportello asilo,,,\n"
    );
    let report = raccordo_core::registry::import_referents(
        &app.pool,
        referents.as_bytes(),
        &raccordo_core::registry::Actor::import("test"),
    )
    .await
    .expect("the desk is imported");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let comuni: Vec<String> = comuni.iter().map(|c| (*c).to_owned()).collect();
    sqlx::query("UPDATE comuni SET domicilio = (istat = ANY($1))")
        .bind(&comuni)
        .execute(&app.pool)
        .await
        .expect("comuni marked domicilio");
}

fn request(request_id: &str, case_id: &str, people: u32) -> Value {
    json!({
        "request_id": request_id,
        "case_id": case_id,
        "desk": DESK,
        "requested_at": "2026-11-30T10:00:00+01:00",
        "people": people,
    })
}

/// The assigned comune of each request, by request id.
async fn assignments(app: &TestApp) -> BTreeMap<String, Option<String>> {
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT request_id, comune_istat FROM asylum_domiciles")
            .fetch_all(&app.pool)
            .await
            .expect("domiciles");
    rows.into_iter().collect()
}

/// Waits until `n` requests are assigned (bounded).
async fn wait_for_assigned(app: &TestApp, n: i64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM asylum_domiciles WHERE comune_istat IS NOT NULL",
        )
        .fetch_one(&app.pool)
        .await
        .expect("count");
        if done >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {n} requests assigned within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The population of `istat` in the registry.
async fn population(app: &TestApp, istat: &str) -> f64 {
    let population: i32 = sqlx::query_scalar("SELECT popolazione FROM comuni WHERE istat = $1")
        .bind(istat)
        .fetch_one(&app.pool)
        .await
        .expect("a comune");
    f64::from(population)
}

/// Runs `raccordo` with `args` against this test's hub; returns stdout, asserting success.
async fn raccordo(app: &TestApp, args: &[&str]) -> String {
    let output = app
        .command()
        .args(args)
        .output()
        .await
        .expect("raccordo runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "raccordo {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn a3_a_request_goes_to_the_heaviest_comune_and_is_announced_to_its_comune_and_the_desk() {
    // Arrange
    let app = spawn_app().await;
    join_rotation(&app, &[RHO, LEGNANO, SESTO]).await;

    // Act
    app.publish(&app.event("asylum.domicile.v1", request("DOM-1", "PA-2026-0042", 3)))
        .await;
    let mails = app.wait_for_emails(2).await;
    app.settle().await;

    // Assert: Sesto has the largest population, so the largest share of the first request.
    assert_eq!(
        assignments(&app)
            .await
            .get("DOM-1")
            .cloned()
            .flatten()
            .as_deref(),
        Some(SESTO)
    );
    let mut to: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    assert_eq!(to, [COMUNE_SESTO, DESK_EMAIL]);
    for mail in &mails {
        assert_eq!(
            mail.header("X-Raccordo-Kind").as_deref(),
            Some("asylum.domicile_assigned")
        );
        let subject = mail.subject().unwrap_or_default();
        assert!(subject.contains("Sesto San Giovanni"), "{subject}");
        assert!(subject.contains("DOM-1"), "{subject}");
        let text = mail.text_body().unwrap_or_default();
        assert!(!subject.contains("PA-2026-0042") && !text.contains("PA-2026-0042"));
        assert!(text.contains("Persone: 3"), "{text}");
        assert!(text.contains("COSA FARE"), "{text}");
    }
    app.cleanup().await;
}

/// Starts a second hub with the asylum worker alone on the same prefix and database.
async fn second_hub(app: &TestApp) -> App {
    let second = App::start(app.settings.clone(), Workers::Asylum)
        .await
        .expect("a second hub starts");
    second
        .wait_ready(Duration::from_secs(20))
        .await
        .expect("the second hub consumes");
    second
}

/// Waits until `n` distinct events are recorded in the inbox (bounded): each was decided
/// in the transaction that recorded it.
async fn wait_for_inbox(app: &TestApp, n: i64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox")
            .fetch_one(&app.pool)
            .await
            .expect("count");
        if done >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {n} events decided within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a3_each_request_is_assigned_exactly_once_across_redelivery_replay_and_two_hubs() {
    const REQUESTS: usize = 300;
    // Arrange: two hubs, four consumers each, on one prefix and database.
    let app = prepare_with(|s| {
        s.amqp.consumers = 4;
        s.amqp.prefetch = 8;
        s.database.max_connections = 12;
    })
    .await;
    join_rotation(&app, &[RHO, LEGNANO, SESTO]).await;
    let app = app.start(Workers::Asylum).await;
    let second = second_hub(&app).await;

    // Act: every request three times: an event, the same event again (a redelivery, a
    // publisher's retry) and the desk's replay of the request under a new event id.
    for i in 0..REQUESTS {
        let data = request(&format!("DOM-{i}"), &format!("PA-{i}"), 1);
        let event = app.event("asylum.domicile.v1", data.clone());
        app.publish(&event).await;
        app.publish(&app.event("asylum.domicile.v1", data)).await;
        app.publish(&event).await;
    }
    wait_for_inbox(&app, 2 * REQUESTS as i64, Duration::from_secs(90)).await;
    assert!(second.shutdown(Duration::from_secs(10)).await);

    // Assert: one assignment, one count and one notification per request.
    let assigned = assignments(&app).await;
    assert_eq!(assigned.len(), REQUESTS);
    assert!(assigned.values().all(Option::is_some), "{assigned:?}");
    let counted: i64 = sqlx::query_scalar("SELECT sum(assigned)::BIGINT FROM asylum_rotation")
        .fetch_one(&app.pool)
        .await
        .expect("counts");
    assert_eq!(counted, REQUESTS as i64);
    let notified: Vec<(String,)> = sqlx::query_as(
        r#"
        SELECT payload->>'request_id'
        FROM notifications
        WHERE kind = 'asylum.domicile_assigned'
        "#,
    )
    .fetch_all(&app.pool)
    .await
    .expect("notifications");
    let mut once: Vec<String> = notified.into_iter().map(|(r,)| r).collect();
    once.sort();
    once.dedup();
    assert_eq!(once.len(), REQUESTS);
    assert_eq!(
        app.notifications("asylum.domicile_assigned").await.len(),
        REQUESTS
    );
    // And the shares still hold: the hubs took one lock, never two rotations.
    let mut populations = Vec::new();
    for istat in [RHO, LEGNANO, SESTO] {
        populations.push((istat, population(&app, istat).await));
    }
    let total: f64 = populations.iter().map(|(_, p)| p).sum();
    for (istat, population) in populations {
        let got = assigned
            .values()
            .filter(|c| c.as_deref() == Some(istat))
            .count() as f64;
        let fair = REQUESTS as f64 * population / total;
        assert!((got - fair).abs() <= 1.0, "{istat}: {got} against {fair}");
    }
    app.cleanup().await;
}

#[tokio::test]
async fn a3_a_replay_naming_another_case_is_dead_lettered_and_the_first_assignment_stands() {
    // Arrange
    let app = spawn_app().await;
    join_rotation(&app, &[RHO, SESTO]).await;
    app.publish(&app.event("asylum.domicile.v1", request("DOM-7", "PA-7", 1)))
        .await;
    app.wait_for_emails(2).await;

    // Act: the same request id for another case.
    app.publish(&app.event("asylum.domicile.v1", request("DOM-7", "PA-8", 2)))
        .await;
    let dead = app.wait_for_dead(1).await;
    app.settle().await;

    // Assert
    let reason = dead[0].error.clone();
    assert!(reason.contains("DOM-7"), "{reason}");
    assert!(
        !reason.contains("PA-8") && !reason.contains("PA-7"),
        "{reason}"
    );
    assert_eq!(
        assignments(&app)
            .await
            .get("DOM-7")
            .cloned()
            .flatten()
            .as_deref(),
        Some(SESTO)
    );
    assert_eq!(app.emails().len(), 2);
    app.cleanup().await;
}

#[tokio::test]
async fn a3_with_no_comune_in_the_rotation_a_request_is_parked_and_assigned_once_replayed() {
    // Arrange: the desk exists, no comune adheres yet.
    let app = spawn_app().await;
    join_rotation(&app, &[]).await;

    // Act
    app.publish(&app.event("asylum.domicile.v1", request("DOM-9", "PA-9", 1)))
        .await;
    let parked = app
        .wait_for_held(raccordo_core::amqp::dead_letter::Holding::Parked, 1)
        .await;

    // Assert: the reason says what to do; nothing was recorded.
    let reason = parked[0].error.clone();
    assert!(reason.contains("rotation"), "{reason}");
    assert!(assignments(&app).await.is_empty());

    // Act: a comune joins; the operator replays.
    join_rotation(&app, &[RHO]).await;
    raccordo(&app, &["dlq", "replay", "--all", "--queue", "all"]).await;
    app.wait_for_emails(2).await;
    app.settle().await;

    // Assert
    assert_eq!(
        assignments(&app)
            .await
            .get("DOM-9")
            .cloned()
            .flatten()
            .as_deref(),
        Some(RHO)
    );
    app.cleanup().await;
}

/// The year the hub assigns in now (Europe/Rome).
fn this_year() -> i32 {
    raccordo_core::clock::rome_date(raccordo_core::clock::now()).year()
}

#[tokio::test]
async fn a3_a_paused_comune_receives_nothing_until_resumed_and_the_report_follows_the_pauses() {
    // Arrange
    let app = spawn_app().await;
    join_rotation(&app, &[RHO, SESTO]).await;
    let send = |id: &str| app.event("asylum.domicile.v1", request(id, &format!("PA-{id}"), 2));

    // Act: one request with both, two with Sesto paused, two after it resumed.
    app.publish(&send("D1")).await;
    app.wait_for_emails(2).await;
    let paused = raccordo(
        &app,
        &[
            "asylum",
            "rotation",
            "pause",
            SESTO,
            "--until",
            "2099-12-31",
        ],
    )
    .await;
    assert!(paused.contains("2099-12-31"), "{paused}");
    let list: Value = serde_json::from_str(
        &raccordo(&app, &["asylum", "rotation", "list", "--format", "json"]).await,
    )
    .expect("JSON");
    app.publish(&send("D2")).await;
    app.publish(&send("D3")).await;
    app.wait_for_emails(6).await;
    raccordo(&app, &["asylum", "rotation", "resume", SESTO]).await;
    // One at a time: with several consumers, two requests in flight may be decided in
    // either order.
    app.publish(&send("D4")).await;
    app.wait_for_emails(8).await;
    app.publish(&send("D5")).await;
    app.wait_for_emails(10).await;
    app.settle().await;

    // Assert: the list showed the pause, and Rho next.
    let sesto = list
        .as_array()
        .and_then(|l| l.iter().find(|e| e["istat"] == SESTO))
        .expect("Sesto listed");
    assert_eq!(sesto["paused_until"], "2099-12-31");
    let rho = list
        .as_array()
        .and_then(|l| l.iter().find(|e| e["istat"] == RHO))
        .expect("Rho listed");
    assert_eq!(rho["next"], true);
    let assigned = assignments(&app).await;
    let of = |id: &str| assigned.get(id).cloned().flatten();
    assert_eq!(of("D1").as_deref(), Some(SESTO));
    assert_eq!(of("D2").as_deref(), Some(RHO));
    assert_eq!(of("D3").as_deref(), Some(RHO));
    // Rho's credit from the first request was still owed to it; then Sesto's turn.
    assert_eq!(of("D4").as_deref(), Some(RHO));
    assert_eq!(of("D5").as_deref(), Some(SESTO));

    // The fair shares count Sesto only while it was in the rotation.
    let year = this_year().to_string();
    let report: Value = serde_json::from_str(
        &raccordo(
            &app,
            &["report", "domiciles", "--year", &year, "--format", "json"],
        )
        .await,
    )
    .expect("JSON");
    let line = |istat: &str| {
        report
            .as_array()
            .and_then(|l| l.iter().find(|e| e["istat"] == istat))
            .cloned()
            .expect("a line")
    };
    let (rho_people, sesto_people) = (population(&app, RHO).await, population(&app, SESTO).await);
    let both = rho_people + sesto_people;
    let fair_rho = 3.0 * rho_people / both + 2.0;
    let fair_sesto = 3.0 * sesto_people / both;
    assert_eq!(line(RHO)["assigned"], 3);
    assert_eq!(line(RHO)["people"], 6);
    assert_eq!(line(SESTO)["assigned"], 2);
    assert!((line(RHO)["fair_share"].as_f64().unwrap_or_default() - fair_rho).abs() < 1e-9);
    assert!((line(SESTO)["fair_share"].as_f64().unwrap_or_default() - fair_sesto).abs() < 1e-9);
    let table = raccordo(&app, &["report", "domiciles", "--year", &year]).await;
    assert!(
        table.contains("Sesto San Giovanni") && table.contains("total"),
        "{table}"
    );
    let csv = raccordo(
        &app,
        &["report", "domiciles", "--year", &year, "--format", "csv"],
    )
    .await;
    assert!(csv.starts_with("istat,comune,population,"), "{csv}");
    app.cleanup().await;
}

#[tokio::test]
async fn a3_pausing_a_comune_outside_the_rotation_fails_and_says_why() {
    let app = spawn_app().await;
    join_rotation(&app, &[RHO]).await;

    let output = app
        .command()
        .args([
            "asylum",
            "rotation",
            "pause",
            LEGNANO,
            "--until",
            "2099-01-01",
        ])
        .output()
        .await
        .expect("raccordo runs");

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("domicilio"), "{stderr}");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a3_over_10000_requests_every_comune_stays_within_one_assignment_of_its_fair_share() {
    const REQUESTS: i64 = 10_000;
    // Arrange: every comune of the Città Metropolitana in the rotation, from Milano (1.4
    // million) to Morimondo (1,100); the asylum worker alone (no emails: the outbox keeps them).
    let app = prepare_with(|s| {
        s.amqp.prefetch = 64;
    })
    .await;
    join_rotation(&app, &[]).await;
    sqlx::query("UPDATE comuni SET domicilio = TRUE")
        .execute(&app.pool)
        .await
        .expect("every comune adheres");
    let app = app.start(Workers::Asylum).await;

    // Act
    for i in 0..REQUESTS {
        let data = request(&format!("R-{i}"), &format!("C-{i}"), 1);
        app.publish(&app.event("asylum.domicile.v1", data)).await;
    }
    wait_for_assigned(&app, REQUESTS, Duration::from_secs(300)).await;

    // Assert: against a computation of this test's own.
    let populations: Vec<(String, i64)> =
        sqlx::query_as("SELECT istat, popolazione::BIGINT FROM comuni ORDER BY istat")
            .fetch_all(&app.pool)
            .await
            .expect("comuni");
    let total: i64 = populations.iter().map(|(_, p)| p).sum();
    let year = this_year().to_string();
    let report: Value = serde_json::from_str(
        &raccordo(
            &app,
            &["report", "domiciles", "--year", &year, "--format", "json"],
        )
        .await,
    )
    .expect("JSON");
    let lines = report.as_array().expect("an array");
    assert_eq!(lines.len(), populations.len());
    let mut sum = 0;
    for (istat, population) in &populations {
        let line = lines
            .iter()
            .find(|l| l["istat"] == istat.as_str())
            .expect("every comune has a line");
        let got = line["assigned"].as_i64().expect("a count");
        let fair = REQUESTS as f64 * *population as f64 / total as f64;
        sum += got;
        assert!(
            (got as f64 - fair).abs() <= 1.0,
            "{istat}: {got} domiciles against a fair share of {fair:.3}"
        );
        let reported = line["fair_share"].as_f64().expect("a share");
        assert!(
            (reported - fair).abs() < 1e-6,
            "{istat}: {reported} vs {fair}"
        );
    }
    assert_eq!(sum, REQUESTS);
    app.cleanup().await;
}

/// The README's figure: domicile assignments per second with two competing hub processes
/// (`raccordo serve asylum` twice, 4 consumers each) on one prefix and database, every
/// comune of the Città Metropolitana in the rotation. The requests wait in the queue before
/// the hubs start, so the figure is the rate of the assignments' own timestamps, first to
/// last. Run alone:
/// `cargo nextest run -p raccordo-tests --run-ignored only -E 'test(a3_measure)' --no-capture`
/// (`RACCORDO_BENCH_DOMICILES`, default 5000, sets the number of requests).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement, run on demand (see the README)"]
async fn a3_measure_domicile_assignments_per_second_with_two_hub_processes() {
    let requests: i64 = std::env::var("RACCORDO_BENCH_DOMICILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let app = prepare_with(|_| {}).await;
    join_rotation(&app, &[]).await;
    sqlx::query("UPDATE comuni SET domicilio = TRUE")
        .execute(&app.pool)
        .await
        .expect("every comune adheres");
    // The queue exists from setup: the requests wait in it.
    for i in 0..requests {
        let data = request(&format!("B-{i}"), &format!("C-{i}"), 1);
        app.publish(&app.event("asylum.domicile.v1", data)).await;
    }

    let hubs: Vec<tokio::process::Child> = (0..2)
        .map(|_| {
            app.command()
                .args(["serve", "asylum"])
                .env("RACCORDO__AMQP__CONSUMERS", "4")
                .env("RACCORDO__AMQP__PREFETCH", "32")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("a hub process starts")
        })
        .collect();
    wait_for_assigned(&app, requests, Duration::from_secs(600)).await;
    drop(hubs);

    let (first, last, assigned, counted): (f64, f64, i64, i64) = sqlx::query_as(
        r#"
        SELECT extract(epoch FROM min(assigned_at))::FLOAT8,
               extract(epoch FROM max(assigned_at))::FLOAT8,
               count(*),
               (SELECT sum(assigned)::BIGINT FROM asylum_rotation)
        FROM asylum_domiciles
        WHERE comune_istat IS NOT NULL
        "#,
    )
    .fetch_one(&app.pool)
    .await
    .expect("figures");
    assert_eq!(assigned, requests);
    assert_eq!(counted, requests);
    let seconds = (last - first).max(1e-3);
    println!(
        "| hubs | comuni | requests | seconds | assignments/s |\n|---|---|---|---|---|\n| 2 processes × 4 consumers | 133 | {requests} | {seconds:.2} | {:.0} |",
        requests as f64 / seconds
    );
    app.cleanup().await;
}
