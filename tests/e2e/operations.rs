//! What operators and referents see: email headers, undeliverable notifications, status,
//! dead letters through the CLI, health and metrics, imports and publishing.

use std::collections::BTreeSet;

use raccordo_e2e::{http_get, spawn_app};
use serde_json::json;

fn offer(unit_id: &str, comune: &str) -> serde_json::Value {
    json!({
        "unit_id": unit_id, "action": "offered", "comune_istat": comune,
        "address": "Via Tortona 27, Milano", "places": 3, "reception_kind": "SPRAR",
        "building_type": "casa", "owner_declaration": true, "notes": "Cortile interno"
    })
}

#[tokio::test]
async fn email_headers_name_kind_notification_and_a_stable_message_id() {
    let app = spawn_app().await;
    app.publish(&app.event("housing.unit.v1", offer("HDR-1", "015146")))
        .await;
    let mails = app.wait_for_emails(2).await;
    app.settle().await;
    let notifications: BTreeSet<String> = app
        .notifications("housing.offered")
        .await
        .into_iter()
        .chain(app.notifications("housing.ack").await)
        .map(|(id, ..)| id.to_string())
        .collect();
    for m in &mails {
        let kind = m.header("X-Raccordo-Kind").expect("X-Raccordo-Kind");
        assert!(kind == "housing.offered" || kind == "housing.ack");
        let id = m
            .header("X-Raccordo-Notification")
            .expect("X-Raccordo-Notification");
        assert!(notifications.contains(&id));
        let message_id = m.header("Message-ID").expect("Message-ID");
        assert!(message_id.contains(&id), "{message_id}");
        let subject = m.subject().expect("a subject");
        assert!(!subject.contains("Tortona"), "no address in {subject}");
        assert!(!subject.contains("Cortile"), "no notes in {subject}");
        assert!(m.from.contains("raccordo@"), "{}", m.from);
    }

    // Sending the same notification to the same recipient again yields the same Message-ID.
    let first = app.emails_of("housing.offered")[0]
        .header("Message-ID")
        .expect("Message-ID");
    sqlx::query("UPDATE deliveries SET delivered_at = NULL")
        .execute(&app.pool)
        .await
        .expect("reset");
    sqlx::query("UPDATE notifications SET published_at = NULL")
        .execute(&app.pool)
        .await
        .expect("reset");
    app.wait_for_emails(4).await;
    let again: Vec<String> = app
        .emails_of("housing.offered")
        .iter()
        .filter_map(|m| m.header("Message-ID"))
        .collect();
    assert_eq!(again, vec![first.clone(), first]);
    app.cleanup().await;
}

#[tokio::test]
async fn a_notification_with_no_referent_is_recorded_as_undeliverable_and_shown() {
    let app = spawn_app().await;
    // Cusago has no comune referent in the sample registry: its ack matches nobody.
    app.publish(&app.event("housing.unit.v1", offer("CUS-9", "015097")))
        .await;
    app.wait_for_emails(1).await;
    app.settle().await;
    let acks = app.notifications("housing.ack").await;
    assert_eq!(acks.len(), 1);
    assert!(acks[0].2, "marked undeliverable");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("raccordo_notifications_undeliverable_total{kind=\"housing.ack\"}"),
        "{metrics}"
    );
    let output = app
        .command()
        .args(["status", "--format", "json"])
        .output()
        .await
        .expect("raccordo status runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON status");
    assert_eq!(status["undeliverable_total"], json!(1));
    assert_eq!(status["undeliverable"][0]["kind"], json!("housing.ack"));
    let queues = status["queues"].as_array().expect("queues");
    let housing = queues
        .iter()
        .find(|q| q["name"] == json!(format!("{}.housing", app.settings.amqp.prefix)))
        .expect("the housing queue is listed");
    assert!(housing["consumers"].as_u64().unwrap_or(0) >= 1);
    app.cleanup().await;
}

#[tokio::test]
async fn dlq_list_show_and_replay_work_from_the_command_line_and_show_masks_personal_data() {
    let app = spawn_app().await;
    let event = json!({
        "specversion": "1.0", "id": "ev-1", "source": "urn:test", "type": "eviction.step.v9",
        "data": {"procedure_id": "RG 1234/2026", "household": {"name": "Famiglia Zanzibar"}}
    });
    app.publish(&event).await;
    let dead = app.wait_for_dead(1).await;
    let id = dead[0].id.clone();

    let list = app
        .command()
        .args(["dlq", "list", "--format", "json"])
        .output()
        .await
        .expect("dlq list");
    assert!(list.status.success());
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).expect("JSON");
    assert_eq!(listed[0]["id"], json!(id));
    assert!(
        listed[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown event type")
    );

    let show = app
        .command()
        .args(["dlq", "show", &id])
        .output()
        .await
        .expect("dlq show");
    assert!(show.status.success());
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains("unknown event type"), "{text}");
    assert!(!text.contains("Zanzibar"), "household masked: {text}");
    assert!(text.contains("masked"), "{text}");

    let replay = app
        .command()
        .args(["dlq", "replay", &id])
        .output()
        .await
        .expect("dlq replay");
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    // Still unprocessable: it comes back to the dead queue, with a new reason record.
    let dead = app.wait_for_dead(1).await;
    assert_eq!(dead.len(), 1);
    app.cleanup().await;
}

#[tokio::test]
async fn health_readiness_and_metrics_answer_on_the_http_endpoint() {
    let app = spawn_app().await;
    let addr = app.app.as_ref().expect("running").http_addr;
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    let (status, body) = http_get(addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("consumer housing-0: consuming"), "{body}");
    app.publish(&app.event("housing.unit.v1", offer("MET-1", "015146")))
        .await;
    app.wait_for_emails(2).await;
    app.settle().await;
    let metrics = app.metrics().await;
    for name in [
        "raccordo_messages_consumed_total{worker=\"housing\",outcome=\"processed\"}",
        "raccordo_emails_sent_total{kind=\"housing.offered\"}",
        "raccordo_notifications_total{kind=\"housing.ack\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing in\n{metrics}");
    }
    app.cleanup().await;
}

#[tokio::test]
async fn a_bad_csv_imports_nothing_and_names_every_wrong_line() {
    let app = spawn_app().await;
    let dir = std::env::temp_dir().join(format!("raccordo-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("referents.csv");
    std::fs::write(
        &file,
        "referent_id,institution,role,email,name,comune_istat,ambito,zona\n\
         new-1,Comune di Rho,comune,ok@rho.example,,015182,,\n\
         new-2,Comune di Rho,sindaco,ok2@rho.example,,015182,,\n\
         new-3,Comune di Rho,comune,not-an-email,,015182,,\n\
         new-4,Ambito,servizi_sociali,a@b.example,,,Atlantide,\n",
    )
    .expect("write csv");
    let output = app
        .command()
        .args(["import", "referents"])
        .arg(&file)
        .output()
        .await
        .expect("import runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in ["line 3", "line 4", "line 5", "Nothing imported"] {
        assert!(stderr.contains(expected), "{expected} in {stderr}");
    }
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM referents WHERE referent_id = 'new-1'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(count, 0, "all or nothing");
    let _ = std::fs::remove_dir_all(&dir);
    app.cleanup().await;
}

#[tokio::test]
async fn raccordo_publish_sends_valid_lines_and_refuses_invalid_ones_with_their_line_number() {
    let app = spawn_app().await;
    let good = app.event("housing.unit.v1", offer("PUB-1", "015146"));
    let input = format!("{good}\n{{\"specversion\":\"1.0\"}}\n\n");
    let mut child = app
        .command()
        .args(["publish", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("publish runs");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).await.expect("write");
    }
    let output = child.wait_with_output().await.expect("publish ends");
    assert!(!output.status.success(), "a refused line fails the command");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 2 not published"), "{stderr}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("Published 1 event"));
    app.wait_for_emails(2).await;
    app.cleanup().await;
}

#[tokio::test]
async fn work_and_retry_queues_are_quorum_queues_by_default() {
    use lapin::options::QueueDeclareOptions;
    use lapin::types::{AMQPValue, FieldTable, LongString};
    use raccordo_core::amqp::{Topology, WorkQueue, connect};
    use raccordo_core::settings::QueueType;

    let app = raccordo_e2e::prepare_with(|s| s.amqp.queue_type = QueueType::Quorum).await;
    let topology = Topology::from_settings(&app.settings);
    let connection = connect(&app.settings.amqp, "test").await.expect("connect");
    let declare_as = |queue: String, kind: &'static str| {
        let connection = &connection;
        async move {
            let channel = connection.create_channel().await.expect("channel");
            let mut args = FieldTable::default();
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString(LongString::from(kind)),
            );
            // Redeclaring with another type is refused (406): the existing type is `kind`'s
            // opposite. A passive declare would not tell.
            channel
                .queue_declare(
                    queue.into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..QueueDeclareOptions::default()
                    },
                    args,
                )
                .await
                .is_ok()
        }
    };
    let housing = topology.queue(WorkQueue::Housing);
    assert!(!declare_as(housing.clone(), "classic").await, "not classic");
    let delay = topology.retry_delays()[0];
    let retry = topology.retry_queue(WorkQueue::Housing, delay);
    assert!(
        !declare_as(retry, "classic").await,
        "retry queue not classic"
    );
    assert!(
        !declare_as(topology.dead_queue(), "quorum").await,
        "the dead queue is classic, browsable without counting deliveries"
    );
    let _ = connection.close(200, "done".into()).await;
    app.cleanup().await;
}
