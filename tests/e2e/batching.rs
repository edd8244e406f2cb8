//! Batched decisions (issue 8): the deliveries a consumer holds are decided in one
//! transaction and acknowledged together. When one of them fails, the transaction is
//! rolled back and the batch applied again, each event in a savepoint of its own.

use raccordo::serve::Workers;
use raccordo_e2e::prepare_with;
use serde_json::{Value, json};

fn offer(unit_id: &str, comune: &str) -> Value {
    json!({
        "unit_id": unit_id, "action": "offered", "comune_istat": comune,
        "address": "Via Padova 1", "places": 4, "reception_kind": "CAS",
        "building_type": "appartamento", "owner_declaration": true
    })
}

#[tokio::test]
async fn a_batch_holding_a_poison_event_dead_letters_it_alone_and_commits_the_rest() {
    // One consumer, so the twelve events wait in its prefetch and are decided together.
    let app = prepare_with(|s| {
        s.amqp.consumers = 1;
        s.amqp.prefetch = 16;
    })
    .await;
    for i in 0..12 {
        // The sixth passes the schema but names a comune the registry does not know: it
        // fails inside the batch's transaction, after five others were applied.
        let comune = if i == 5 { "015999" } else { "015146" };
        app.publish(&app.event("housing.unit.v1", offer(&format!("B-{i}"), comune)))
            .await;
    }
    let app = app.start(Workers::All).await;
    let dead = app.wait_for_dead(1).await;
    app.wait_for_emails(22).await;
    app.settle().await;
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].error.contains("unknown comune 015999"),
        "{}",
        dead[0].error
    );
    assert_eq!(app.emails_of("housing.offered").len(), 11);
    let units: i64 = sqlx::query_scalar("SELECT count(*) FROM housing_units")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(units, 11, "the eleven good events committed");
    let inbox: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(inbox, 11, "the poison event left no idempotency row");
    assert!(app.parked().await.is_empty());
    app.cleanup().await;
}

#[tokio::test]
async fn a_lone_event_that_fails_leaves_no_trace_so_its_replay_is_processed() {
    let app = raccordo_e2e::spawn_app().await;
    app.publish(&app.event("housing.unit.v1", offer("LONE-1", "015999")))
        .await;
    let dead = app.wait_for_dead(1).await;
    assert!(
        dead[0].error.contains("unknown comune 015999"),
        "{}",
        dead[0].error
    );
    app.settle().await;
    let inbox: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(inbox, 0, "no idempotency row: a replay is a new event");
    let units: i64 = sqlx::query_scalar("SELECT count(*) FROM housing_units")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(units, 0);
    app.cleanup().await;
}

#[tokio::test]
async fn a_batch_holding_an_event_twice_and_one_already_processed_sends_each_once() {
    let app = prepare_with(|s| {
        s.amqp.consumers = 1;
        s.amqp.prefetch = 16;
    })
    .await;
    let first = app.event("housing.unit.v1", offer("TWICE-0", "015146"));
    app.publish(&first).await;
    let mut app = app.start(Workers::All).await;
    app.wait_for_emails(2).await;
    app.settle().await;
    app.stop_workers().await;

    // One batch: the event already processed, four new ones, one of them twice.
    let repeated = app.event("housing.unit.v1", offer("TWICE-1", "015146"));
    app.publish(&first).await;
    app.publish(&repeated).await;
    for i in 2..5 {
        app.publish(&app.event("housing.unit.v1", offer(&format!("TWICE-{i}"), "015146")))
            .await;
    }
    app.publish(&repeated).await;
    let app = app.start(Workers::All).await;
    app.wait_for_emails(10).await;
    app.settle().await;
    assert_eq!(app.emails_of("housing.offered").len(), 5);
    assert_eq!(app.notifications("housing.offered").await.len(), 5);
    let inbox: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(inbox, 5);
    assert!(app.dead_letters().await.is_empty());
    app.cleanup().await;
}
