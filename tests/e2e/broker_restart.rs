//! A real RabbitMQ restart (`rabbitmqctl stop_app` / `start_app`) in the middle of a
//! stream, three times: every consumer comes back by itself, nothing is lost, nothing is
//! sent twice. It stops the machine's broker for everyone, so `scripts/test.sh` runs it
//! alone, after the parallel suite (tests named `broker_restart_*`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use raccordo_e2e::faults::publish_confirmed;
use raccordo_e2e::{http_get, spawn_app};

const OFFERS: usize = 240;
const RESTARTS: usize = 3;

async fn rabbitmqctl(args: &[&str]) {
    let output = tokio::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .await
        .expect("rabbitmqctl runs (it ships with rabbitmq-server)");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn offer(i: usize) -> Value {
    json!({
        "specversion": "1.0", "id": format!("restart-{i}"), "source": "urn:raccordo:test:restart",
        "type": "housing.unit.v1",
        "data": {
            "unit_id": format!("R-{i}"), "action": "offered", "comune_istat": "015146",
            "address": "Via Padova 1, Milano", "places": 2, "reception_kind": "CAS",
            "building_type": "appartamento", "owner_declaration": true
        }
    })
}

/// Publishes every offer with confirms, as a careful legacy system would: an offer whose
/// confirm did not arrive is published again (same id: the hub's idempotency absorbs it).
async fn publish_through_restarts(settings: raccordo_core::settings::Settings, exchange: String) {
    let bodies = (0..OFFERS).map(|i| serde_json::to_vec(&offer(i)).expect("json"));
    let gap = Duration::from_millis(40);
    publish_confirmed(&settings, &exchange, bodies, gap, Duration::from_secs(150)).await;
}

#[tokio::test]
async fn broker_restart_in_the_middle_of_a_stream_loses_nothing_and_sends_nothing_twice() {
    let mut app = spawn_app().await;
    let publishing = tokio::spawn(publish_through_restarts(
        app.settings.clone(),
        app.topology.inbound_exchange(),
    ));
    for _ in 0..RESTARTS {
        tokio::time::sleep(Duration::from_secs(2)).await;
        rabbitmqctl(&["stop_app"]).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        rabbitmqctl(&["start_app"]).await;
        rabbitmqctl(&["await_startup"]).await;
    }
    publishing.await.expect("every offer published");
    app.reconnect().await;

    let hub = app.app.as_ref().expect("running");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !hub.health.all_consuming() {
        assert!(
            Instant::now() < deadline,
            "consumers not back: {:?}",
            hub.health.states()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(http_get(hub.http_addr, "/readyz").await.0, 200);

    match app.smtp.wait_for(2 * OFFERS, Duration::from_secs(90)).await {
        Ok(_) => {}
        Err(got) => panic!("expected {} emails, got {got:?}", 2 * OFFERS),
    }
    app.settle().await;
    let mails = app.emails();
    let ids: BTreeSet<String> = mails
        .iter()
        .filter_map(|m| m.header("Message-ID"))
        .collect();
    assert_eq!(
        ids.len(),
        2 * OFFERS,
        "every (notification, recipient) once"
    );
    let offered: BTreeSet<String> = app
        .emails_of("housing.offered")
        .iter()
        .filter_map(|m| m.header("X-Raccordo-Notification"))
        .collect();
    assert_eq!(offered.len(), OFFERS, "one housing.offered per offer");
    // A resend is allowed only in the instant between SMTP acceptance and its record, and
    // then carries the same Message-ID (CONTRACT F3).
    assert!(
        mails.len() - ids.len() <= RESTARTS * 4,
        "{} resends",
        mails.len() - ids.len()
    );
    assert!(app.dead_letters().await.is_empty());
    assert!(app.parked().await.is_empty());
    app.cleanup().await;
}
