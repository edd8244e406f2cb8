//! CloudEvents binary mode over AMQP (contract 1.2 §3, issue 21 item 1): the attributes as
//! application properties under either prefix, the body the `data` alone — judged exactly
//! as the structured event, the same key and the same digest.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString};
use serde_json::{Value, json};

use raccordo_core::amqp::dead_letter::Holding;
use raccordo_e2e::spawn_app;

fn offer(unit_id: &str) -> Value {
    json!({"unit_id": unit_id, "action": "offered", "comune_istat": "015146",
           "address": "Via Padova 1", "places": 4, "reception_kind": "CAS",
           "building_type": "appartamento", "owner_declaration": true})
}

fn binary(prefix: &str, id: &str, content_type: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (k, v) in [
        ("specversion", "1.0"),
        ("id", id),
        ("source", "urn:comune:milano"),
        ("type", "housing.unit.v1"),
        ("time", "2026-11-02T09:00:00+01:00"),
    ] {
        headers.insert(
            format!("{prefix}{k}").into(),
            AMQPValue::LongString(LongString::from(v)),
        );
    }
    BasicProperties::default()
        .with_content_type(content_type.into())
        .with_headers(headers)
}

#[tokio::test]
async fn issue21_binary_mode_is_routed_as_the_structured_event_under_either_prefix() {
    let app = spawn_app().await;
    for (prefix, unit) in [("cloudEvents_", "BIN-1"), ("cloudEvents:", "BIN-2")] {
        let body = serde_json::to_vec(&offer(unit)).expect("json");
        app.publish_with(
            "housing.unit.v1",
            &body,
            binary(prefix, unit, "application/json"),
        )
        .await;
    }
    app.wait_for_emails(4).await;
    app.settle().await;
    assert_eq!(app.emails_of("housing.offered").len(), 2);
    assert_eq!(app.emails_of("housing.ack").len(), 2);
    // The same event again in structured mode: the same key and digest, a duplicate.
    let structured = json!({"specversion": "1.0", "id": "BIN-1", "source": "urn:comune:milano",
                            "type": "housing.unit.v1", "data": offer("BIN-1")});
    app.publish(&structured).await;
    // In binary mode with a content type that is not JSON: dead-lettered, saying so.
    let body = serde_json::to_vec(&offer("BIN-3")).expect("json");
    app.publish_with(
        "housing.unit.v1",
        &body,
        binary("cloudEvents_", "BIN-3", "text/plain"),
    )
    .await;
    let dead = app.wait_for_held(Holding::Dead, 1).await;
    assert!(
        dead[0].error.contains("application/json"),
        "{}",
        dead[0].error
    );
    app.settle().await;
    assert_eq!(
        app.emails().len(),
        4,
        "the structured resend is a duplicate"
    );
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(keys, 2);
    app.cleanup().await;
}

#[tokio::test]
async fn issue21_raccordo_publish_binary_sends_data_alone_and_the_hub_handles_it() {
    let app = spawn_app().await;
    let line = serde_json::to_string(&json!({"specversion": "1.0", "id": "BIN-CLI",
        "source": "urn:comune:milano", "type": "housing.unit.v1", "data": offer("BIN-CLI")}))
    .expect("json");
    let file = std::env::temp_dir().join(format!("binary-{}.ndjson", uuid::Uuid::new_v4()));
    std::fs::write(&file, format!("{line}\n")).expect("written");
    let output = app
        .command()
        .args(["publish", "--binary"])
        .arg(&file)
        .output()
        .await
        .expect("raccordo publish runs");
    let _ = std::fs::remove_file(&file);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    app.wait_for_emails(2).await;
    app.settle().await;
    assert_eq!(app.emails_of("housing.offered").len(), 1);
    app.cleanup().await;
}
