//! Failures (F1–F4): bad input is dead-lettered with a reason and loses nothing; transient
//! faults are retried, then parked, then replayed; a killed worker sends nothing twice; a
//! stopped worker exits in time.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use raccordo::serve::Workers;
use raccordo_core::amqp::dead_letter::Holding;
use raccordo_e2e::{Mode, prepare_with, spawn_app, spawn_app_with};
use serde_json::{Value, json};

fn offer(unit_id: &str) -> Value {
    json!({
        "unit_id": unit_id, "action": "offered", "comune_istat": "015146",
        "address": "Via Padova 1, Milano", "places": 4, "reception_kind": "CAS",
        "building_type": "appartamento", "owner_declaration": true
    })
}

/// A CloudEvent body of `event_type` around `data`.
fn envelope(event_type: &str, data: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "specversion": "1.0", "id": "x", "source": "s", "type": event_type, "data": data
    }))
    .expect("json")
}

/// Publishes `body` with `routing_key`, then a valid offer; asserts the bad one is dead with
/// a reason containing `expected` and the valid one still produced its two emails.
async fn assert_dead_lettered(routing_key: &str, body: Vec<u8>, expected: &str) {
    let app = spawn_app().await;
    app.publish_raw(routing_key, &body).await;
    app.publish(&app.event("housing.unit.v1", offer("F1-OK")))
        .await;
    let dead = app.wait_for_dead(1).await;
    app.wait_for_emails(2).await;
    app.settle().await;
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].error.contains(expected),
        "reason {:?} should mention {expected:?}",
        dead[0].error
    );
    assert!(!dead[0].id.is_empty(), "a dead id for dlq show/replay");
    let original_headers: Vec<String> = dead[0].headers().into_iter().map(|(k, _)| k).collect();
    assert!(original_headers.contains(&"x-raccordo-error".to_owned()));
    assert_eq!(
        app.emails().len(),
        2,
        "the valid event after it was processed"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn f1_a_body_that_is_not_json_is_dead_lettered() {
    assert_dead_lettered("housing.unit.v1", b"<xml>no</xml>".to_vec(), "not JSON").await;
}

#[tokio::test]
async fn f1_an_envelope_violation_is_dead_lettered() {
    let body = serde_json::to_vec(&json!({
        "id": "x", "source": "s", "type": "housing.unit.v1", "data": offer("X")
    }))
    .expect("json");
    assert_dead_lettered("housing.unit.v1", body, "envelope violation").await;
}

#[tokio::test]
async fn f1_a_schema_violation_is_dead_lettered() {
    let mut data = offer("X");
    data["places"] = json!(0);
    let body = envelope("housing.unit.v1", data);
    assert_dead_lettered("housing.unit.v1", body, "/places").await;
}

#[tokio::test]
async fn f1_an_unknown_type_no_worker_is_bound_to_is_dead_lettered_not_lost() {
    let body = envelope("housing.pizza.v1", json!({}));
    assert_dead_lettered("housing.pizza.v1", body, "unknown event type").await;
}

#[tokio::test]
async fn f1_a_known_type_with_a_routing_key_no_worker_is_bound_to_is_dead_lettered() {
    let body = envelope("housing.unit.v1", offer("X"));
    assert_dead_lettered("housing.units", body, "no worker is bound").await;
}

#[tokio::test]
async fn f1_an_unknown_comune_is_dead_lettered() {
    let mut data = offer("X");
    data["comune_istat"] = json!("015999");
    let body = envelope("housing.unit.v1", data);
    assert_dead_lettered("housing.unit.v1", body, "unknown comune 015999").await;
}

#[tokio::test]
async fn f1_a_message_over_256_kib_is_dead_lettered() {
    let mut data = offer("X");
    data["notes"] = json!("x".repeat(300 * 1024));
    let body = envelope("housing.unit.v1", data);
    assert_dead_lettered("housing.unit.v1", body, "over the 262144-byte limit").await;
}

#[tokio::test]
async fn f2_an_smtp_server_down_delays_the_email_and_loses_nothing() {
    let app = spawn_app_with(|s| s.retry.max_attempts = 20).await;
    app.smtp.set_mode(Mode::TempFail);
    app.publish(&app.event("housing.unit.v1", offer("F2-1")))
        .await;
    // Wait until the mailer has tried and scheduled a retry.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempts: i64 =
            sqlx::query_scalar("SELECT COALESCE(max(attempts), 0)::bigint FROM deliveries")
                .fetch_one(&app.pool)
                .await
                .expect("attempts");
        if attempts >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the mailer never retried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(app.emails().is_empty());
    app.smtp.set_mode(Mode::Accept);
    app.wait_for_emails(2).await;
    app.settle().await;
    assert_eq!(app.emails().len(), 2);
    assert!(
        app.metrics()
            .await
            .contains("raccordo_messages_retried_total")
    );
    app.cleanup().await;
}

#[tokio::test]
async fn f2_work_that_keeps_failing_is_parked_and_dlq_replay_reinjects_it() {
    let app = spawn_app_with(|s| s.retry.max_attempts = 3).await;
    app.smtp.set_mode(Mode::TempFail);
    app.publish(&app.event("housing.unit.v1", offer("F2-2")))
        .await;
    let parked = app.wait_for_held(Holding::Parked, 1).await;
    assert!(
        parked[0].error.contains("gave up after 3 attempts"),
        "{}",
        parked[0].error
    );
    assert!(app.emails().is_empty());
    app.smtp.set_mode(Mode::Accept);
    let output = app
        .command()
        .args(["dlq", "replay", "--all", "--queue", "parked"])
        .output()
        .await
        .expect("raccordo dlq replay runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    app.wait_for_emails(2).await;
    app.settle().await;
    assert_eq!(app.emails().len(), 2);
    assert!(app.parked().await.is_empty());
    app.cleanup().await;
}

/// `raccordo serve all` as a child process of this test, output discarded.
fn spawn_serve(app: &raccordo_e2e::TestApp) -> tokio::process::Child {
    app.command()
        .args(["serve", "all"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("raccordo serve starts")
}

#[tokio::test]
async fn f3_a_worker_killed_mid_stream_loses_nothing_and_sends_nothing_twice() {
    let app = prepare_with(|_| {}).await;
    let events = 40;
    for i in 0..events {
        app.publish(&app.event("housing.unit.v1", offer(&format!("F3-{i}"))))
            .await;
    }
    let mut child = spawn_serve(&app);
    // Kill it hard once some, but not all, emails are out.
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.emails().len() < 10 {
        assert!(Instant::now() < deadline, "no emails from the first worker");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
    let before_restart = app.emails().len();
    assert!(before_restart < 2 * events, "killed mid-stream");

    let mut child = spawn_serve(&app);
    app.wait_for_emails(2 * events).await;
    app.settle().await;

    let mails = app.emails();
    let mut per_message_id: BTreeMap<String, usize> = BTreeMap::new();
    for m in &mails {
        *per_message_id
            .entry(m.header("Message-ID").expect("a Message-ID"))
            .or_default() += 1;
    }
    assert_eq!(
        per_message_id.len(),
        2 * events,
        "every (notification, recipient) delivered"
    );
    let resent: usize = per_message_id.values().map(|n| n - 1).sum();
    // Only sends caught between SMTP acceptance and their record may repeat, same
    // Message-ID: at most what the mailers had in hand.
    assert!(
        resent <= raccordo_mailer::delivery::MAX_UNRECORDED_EMAILS,
        "{resent} emails sent twice"
    );
    let units: BTreeSet<String> = mails
        .iter()
        .filter_map(|m| m.text_body())
        .filter_map(|b| {
            b.split_whitespace()
                .find(|w| w.starts_with("F3-"))
                .map(str::to_owned)
        })
        .collect();
    assert!(
        units.len() >= events,
        "every unit reported: {}",
        units.len()
    );
    let _ = child.start_kill();
    let _ = child.wait().await;
    app.cleanup().await;
}

#[tokio::test]
async fn f4_sigterm_stops_taking_work_and_exits_zero_within_ten_seconds() {
    let app = prepare_with(|_| {}).await;
    let mut child = app
        .command()
        .args(["serve", "all"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("raccordo serve starts");
    app.publish(&app.event("housing.unit.v1", offer("F4-1")))
        .await;
    app.wait_for_emails(2).await;
    let pid = child.id().expect("a pid");
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .expect("kill runs");
    assert!(status.success());
    let started = Instant::now();
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits within 10 s")
        .expect("exit status");
    assert!(exit.success(), "exit code 0, got {exit:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    app.cleanup().await;
}

#[tokio::test]
async fn f4_in_process_shutdown_finishes_in_time_and_later_work_waits_in_the_queue() {
    let mut app = spawn_app().await;
    app.stop_workers().await;
    app.publish(&app.event("housing.unit.v1", offer("F4-2")))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.emails().is_empty(), "stopped workers take no work");
    let app = app.start(Workers::All).await;
    app.wait_for_emails(2).await;
    app.cleanup().await;
}

/// Closes, on the broker's side, every connection of this test's hub (not the test's own).
async fn close_hub_connections(prefix: &str) -> usize {
    let output = tokio::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "pid",
            "client_properties",
            "--quiet",
            "--no-table-headers",
        ])
        .output()
        .await
        .expect("rabbitmqctl runs (it ships with rabbitmq-server)");
    let listing = String::from_utf8_lossy(&output.stdout);
    let mut closed = 0;
    for line in listing.lines() {
        let ours =
            line.contains(&format!("\"{prefix}:")) && !line.contains(&format!("\"{prefix}:test\""));
        let Some((pid, _)) = line.split_once('\t') else {
            continue;
        };
        if ours {
            let status = tokio::process::Command::new("rabbitmqctl")
                .args(["close_connection", pid, "test: broker connection lost"])
                .output()
                .await
                .expect("rabbitmqctl close_connection");
            if status.status.success() {
                closed += 1;
            }
        }
    }
    closed
}

#[tokio::test]
async fn workers_reconnect_by_themselves_after_the_broker_drops_their_connections() {
    let app = spawn_app().await;
    app.publish(&app.event("housing.unit.v1", offer("RC-1")))
        .await;
    app.wait_for_emails(2).await;
    let closed = close_hub_connections(&app.settings.amqp.prefix).await;
    assert!(closed >= 4, "closed {closed} hub connections");
    app.publish(&app.event("housing.unit.v1", offer("RC-2")))
        .await;
    app.wait_for_emails(4).await;
    let addr = app.app.as_ref().expect("running").http_addr;
    let deadline = Instant::now() + Duration::from_secs(20);
    while raccordo_e2e::http_get(addr, "/readyz").await.0 != 200 {
        assert!(Instant::now() < deadline, "ready again after reconnecting");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.settle().await;
    assert_eq!(app.emails().len(), 4);
    app.cleanup().await;
}

#[tokio::test]
async fn f3_a_worker_killed_with_a_thousand_offers_in_flight_resends_only_what_it_was_sending() {
    let app = prepare_with(|_| {}).await;
    let events = 1000;
    for i in 0..events {
        app.publish(&app.event("housing.unit.v1", offer(&format!("K-{i}"))))
            .await;
    }
    let mut child = spawn_serve(&app);
    let deadline = Instant::now() + Duration::from_secs(120);
    while app.emails().len() < 300 {
        assert!(Instant::now() < deadline, "no emails from the first worker");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
    assert!(app.emails().len() < 2 * events, "killed mid-stream");

    let mut child = spawn_serve(&app);
    match app
        .smtp
        .wait_for(2 * events, Duration::from_secs(150))
        .await
    {
        Ok(_) => {}
        Err(got) => panic!("expected {} emails, got {got:?}", 2 * events),
    }
    app.settle().await;
    let mut per_message_id: BTreeMap<String, usize> = BTreeMap::new();
    for m in &app.emails() {
        *per_message_id
            .entry(m.header("Message-ID").expect("a Message-ID"))
            .or_default() += 1;
    }
    assert_eq!(per_message_id.len(), 2 * events, "nothing lost");
    let resent: usize = per_message_id.values().map(|n| n - 1).sum();
    // Batching keeps the window an instant: at most what the mailers had sent and not yet
    // recorded when the process died, each with the same Message-ID.
    assert!(
        resent <= raccordo_mailer::delivery::MAX_UNRECORDED_EMAILS,
        "{resent} emails sent twice"
    );
    let _ = child.start_kill();
    let _ = child.wait().await;
    app.cleanup().await;
}
