//! The mailer claims its work from `deliveries`, without a broker hop: replicas never send
//! one delivery twice; a failed send is retried with growing delays, then held where
//! `raccordo dlq` lists and replays it (CONTRACT F1, F2, F3).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use raccordo::serve::{App, Workers};
use raccordo_core::amqp::dead_letter::Holding;
use raccordo_e2e::{Mode, TestApp, prepare_with, spawn_app_with};
use serde_json::{Value, json};

fn offer(unit_id: &str) -> Value {
    json!({
        "unit_id": unit_id, "action": "offered", "comune_istat": "015146",
        "address": "Via Padova 1, Milano", "places": 4, "reception_kind": "CAS",
        "building_type": "appartamento", "owner_declaration": true
    })
}

/// Emails received per Message-ID.
fn per_message_id(app: &TestApp) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for mail in app.smtp.mails() {
        *seen
            .entry(mail.header("Message-ID").expect("a Message-ID"))
            .or_insert(0) += 1;
    }
    seen
}

/// Runs `raccordo dlq …` as an operator would; returns its standard output.
async fn dlq(app: &TestApp, args: &[&str]) -> String {
    let output = app
        .command()
        .arg("dlq")
        .args(args)
        .output()
        .await
        .expect("raccordo dlq runs");
    assert!(
        output.status.success(),
        "dlq {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

#[tokio::test]
async fn mailer_replicas_never_send_one_delivery_twice() {
    let offers = 150;
    let app = prepare_with(|s| s.mail.senders = 4).await;
    for i in 0..offers {
        app.publish(&app.event("housing.unit.v1", offer(&format!("M-{i}"))))
            .await;
    }
    // Three mailer replicas contend for the same rows while the housing worker makes them.
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let replica = App::start(app.settings.clone(), Workers::Mailer)
            .await
            .expect("a mailer replica starts");
        replicas.push(replica);
    }
    let app = app.start(Workers::All).await;
    app.wait_for_emails(2 * offers).await;
    app.settle().await;
    let seen = per_message_id(&app);
    assert_eq!(seen.len(), 2 * offers, "every delivery sent");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    for replica in replicas {
        assert!(replica.shutdown(Duration::from_secs(10)).await);
    }
    app.cleanup().await;
}

#[tokio::test]
async fn a_transiently_failing_delivery_is_retried_with_growing_delays_then_parked() {
    let app = spawn_app_with(|s| {
        s.retry.max_attempts = 4;
        s.retry.initial_delay_ms = 150;
        s.retry.max_delay_ms = 2000;
    })
    .await;
    app.smtp.set_mode(Mode::TempFail);
    app.publish(&app.event("housing.unit.v1", offer("M-RETRY")))
        .await;
    // When each attempt was seen recorded, for one delivery.
    let mut seen_at: Vec<Instant> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen_at.len() < 4 {
        let attempts: Option<i32> = sqlx::query_scalar(
            "SELECT max(attempts) FROM deliveries d JOIN notifications n ON n.id = d.notification_id WHERE n.kind = 'housing.offered'",
        )
        .fetch_one(&app.pool)
        .await
        .expect("attempts");
        let attempts = usize::try_from(attempts.unwrap_or(0)).expect("non-negative");
        while seen_at.len() < attempts {
            seen_at.push(Instant::now());
        }
        assert!(Instant::now() < deadline, "attempts stalled at {attempts}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Each retry waits at least its delay: 150, 300, 600 ms (the poll adds to it, never less).
    for (i, pair) in seen_at.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let floor = Duration::from_millis(150 << i) - Duration::from_millis(20);
        assert!(gap >= floor, "retry {} came after {gap:?}", i + 1);
    }
    let parked = app.wait_for_held(Holding::Parked, 2).await;
    assert!(
        parked
            .iter()
            .all(|p| p.error.contains("gave up after 4 attempts")),
        "{:?}",
        parked.iter().map(|p| &p.error).collect::<Vec<_>>()
    );
    let listed = dlq(&app, &["list", "--format", "json", "--queue", "parked"]).await;
    let listed: Value = serde_json::from_str(&listed).expect("dlq list --format json");
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    // No address in what operators see: the reason names referents by id.
    assert!(!listed.to_string().contains('@'), "{listed}");
    assert!(app.emails().is_empty());

    app.smtp.set_mode(Mode::Accept);
    dlq(&app, &["replay", "--all", "--queue", "parked"]).await;
    app.wait_for_emails(2).await;
    app.settle().await;
    assert_eq!(app.emails().len(), 2);
    assert!(app.parked().await.is_empty());
    app.cleanup().await;
}

#[tokio::test]
async fn a_refused_delivery_is_dead_at_once_and_its_replay_sends_it() {
    let app = spawn_app_with(|s| s.retry.max_attempts = 8).await;
    app.smtp.set_mode(Mode::PermFail);
    app.publish(&app.event("housing.unit.v1", offer("M-REFUSED")))
        .await;
    let dead = app.wait_for_held(Holding::Dead, 2).await;
    for held in &dead {
        assert!(held.error.contains("550"), "{}", held.error);
        assert!(held.error.contains("referent "), "{}", held.error);
    }
    let attempts: Vec<i32> = sqlx::query_scalar("SELECT attempts FROM deliveries")
        .fetch_all(&app.pool)
        .await
        .expect("attempts");
    assert_eq!(attempts, vec![1, 1], "a refusal is not retried");

    app.smtp.set_mode(Mode::Accept);
    dlq(&app, &["replay", "--all", "--queue", "dead"]).await;
    app.wait_for_emails(2).await;
    app.settle().await;
    assert_eq!(per_message_id(&app).len(), 2);
    assert!(app.dead_letters().await.is_empty());
    app.cleanup().await;
}
