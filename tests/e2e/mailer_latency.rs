//! Issue 23: the mailer against a relay that answers as real ones do — tens of
//! milliseconds per email, a connection limit, transient refusals. Every email arrives
//! once, the server's limit holds, refusals are retried, and a kill -9 with many
//! conversations in flight resends only those, with their Message-IDs.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use raccordo::serve::Workers;
use raccordo_e2e::{TestApp, prepare_with};
use raccordo_smtp_sink::{Behaviour, Delay};
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

#[tokio::test]
async fn issue23_a_slow_relay_with_a_connection_limit_gets_every_email_once_within_its_limit() {
    // Arrange: 50 ms per email, 6 connections at most, every 20th MAIL refused (451 or 421);
    // the mailer may open 16.
    let offers = 100;
    let limit = 6;
    let app = prepare_with(|s| s.mail.max_connections = 16).await;
    app.smtp.set_behaviour(Behaviour {
        data_delay: Delay::Fixed(Duration::from_millis(50)),
        max_connections: Some(limit),
        transient_refusal_rate: 0.05,
        ..Behaviour::default()
    });
    for i in 0..offers {
        app.publish(&app.event("housing.unit.v1", offer(&format!("L-{i}"))))
            .await;
    }

    // Act
    let app = app.start(Workers::All).await;
    let wanted = 2 * offers;
    if let Err(got) = app.smtp.wait_for(wanted, Duration::from_secs(60)).await {
        panic!("expected {wanted} emails: {got:?}");
    }
    app.settle().await;

    // Assert: each once, the limit reached and never passed, the refusals retried.
    let seen = per_message_id(&app);
    assert_eq!(seen.len(), wanted, "every delivery sent");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    assert_eq!(
        app.smtp.peak_connections(),
        limit,
        "the pool grew to the limit"
    );
    assert!(
        app.smtp.refused_connections() > 0,
        "the pool never asked for more than the server allows"
    );
    assert!(
        app.smtp.transient_refusals() >= 8,
        "451s and 421s were answered"
    );
    assert!(
        app.smtp.peak_transactions() > 1,
        "emails went in parallel, not one at a time"
    );
    assert!(app.parked().await.is_empty(), "no email given up");
    assert!(app.dead_letters().await.is_empty(), "no email held dead");
    app.cleanup().await;
}

#[tokio::test]
async fn issue23_a_kill_9_with_32_conversations_in_flight_resends_only_those_with_their_message_ids()
 {
    // Arrange: 50 ms per email, so that many conversations are open at any instant.
    let app = prepare_with(|_| {}).await;
    app.smtp.set_behaviour(Behaviour {
        data_delay: Delay::Fixed(Duration::from_millis(50)),
        ..Behaviour::default()
    });
    let events = 400;
    for i in 0..events {
        app.publish(&app.event("housing.unit.v1", offer(&format!("K9-{i}"))))
            .await;
    }
    let serve = |app: &TestApp| {
        app.command()
            .args(["serve", "all"])
            .env("RACCORDO__MAIL__MAX_CONNECTIONS", "32")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("raccordo serve starts")
    };

    // Act: kill -9 mid-stream while at least 16 emails are inside their DATA.
    let mut child = serve(&app);
    let deadline = Instant::now() + Duration::from_secs(60);
    while app.emails().len() < 200 || app.smtp.transactions_in_flight() < 16 {
        assert!(Instant::now() < deadline, "no busy stream to kill");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
    let peak_before_kill = app.smtp.peak_transactions();
    assert!(app.emails().len() < 2 * events, "killed mid-stream");
    let mut child = serve(&app);
    if let Err(got) = app.smtp.wait_for(2 * events, Duration::from_secs(90)).await {
        panic!("expected {} emails: {got:?}", 2 * events);
    }
    app.settle().await;

    // Assert
    let seen = per_message_id(&app);
    assert_eq!(seen.len(), 2 * events, "nothing lost, no new Message-ID");
    let resent: usize = seen.values().map(|n| n - 1).sum();
    assert!(
        peak_before_kill > 16,
        "more conversations than the old bound of 16: {peak_before_kill}"
    );
    assert!(
        resent <= 32,
        "{resent} emails sent twice, more than the 32 that may be in flight"
    );
    let _ = child.start_kill();
    let _ = child.wait().await;
    app.cleanup().await;
}
