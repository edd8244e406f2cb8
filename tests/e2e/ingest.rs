//! HTTP ingestion (contract 1.2 §10, §11; issue 21) against the real broker, PostgreSQL and
//! SMTP: each binding routed exactly as the structured AMQP event, all-or-nothing batches
//! and CSV files, tokens, rates, body limits, the broker gone mid-request, the stream
//! followed across a restart, and a forged publisher header.

use std::net::SocketAddr;
use std::time::Duration;

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use raccordo::http_client::{Answer, HttpClient};
use raccordo::serve::Workers;
use raccordo_core::amqp::dead_letter::Holding;
use raccordo_core::settings::{PublisherRule, Settings};
use raccordo_e2e::proxy::Proxy;
use raccordo_e2e::{TestApp, prepare_with, spawn_app_with};
use secrecy::ExposeSecret;

const MILANO: &str = "comune_milano";
const TRIBUNALE: &str = "tribunale";

fn publishers(settings: &mut Settings) {
    settings.ingest.addr = "127.0.0.1:0".into();
    settings.publishers.users.insert(
        MILANO.into(),
        PublisherRule {
            types: vec!["housing.unit.v1".into(), "reception.occupancy.v1".into()],
            comuni: vec!["015146".into()],
            stream_kinds: vec!["housing.*".into()],
            ..PublisherRule::default()
        },
    );
    settings.publishers.users.insert(
        TRIBUNALE.into(),
        PublisherRule {
            types: vec!["eviction.step.v1".into()],
            ..PublisherRule::default()
        },
    );
}

fn offer(unit_id: &str) -> Value {
    json!({"unit_id": unit_id, "action": "offered", "comune_istat": "015146",
           "address": "Via Padova 1", "places": 4, "reception_kind": "CAS",
           "building_type": "appartamento", "owner_declaration": true})
}

fn event(id: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "urn:comune:milano:protocollo",
           "type": "housing.unit.v1", "data": data})
}

fn addr(app: &TestApp) -> SocketAddr {
    app.app
        .as_ref()
        .and_then(|a| a.ingest_addr)
        .expect("ingest.addr is served")
}

async fn token(app: &TestApp, user: &str) -> String {
    raccordo_ingest::tokens::add(&app.pool, user)
        .await
        .expect("a token is stored")
        .1
}

async fn post(
    app: &TestApp,
    token: &str,
    path: &str,
    content_type: &str,
    extra: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    let bearer = format!("Bearer {token}");
    let mut headers = vec![
        ("authorization", bearer.as_str()),
        ("content-type", content_type),
    ];
    headers.extend_from_slice(extra);
    HttpClient::connect(addr(app))
        .await
        .expect("ingest answers")
        .send("POST", path, &headers, body)
        .await
        .expect("an answer")
}

async fn post_csv(app: &TestApp, token: &str, path: &str, body: impl Into<Vec<u8>>) -> Answer {
    post(app, token, path, "text/csv", &[], body.into()).await
}

/// One event in structured mode.
async fn post_one(app: &TestApp, token: &str, event: &Value) -> Answer {
    post_json(app, token, "application/cloudevents+json", event).await
}

async fn post_json(app: &TestApp, token: &str, content_type: &str, body: &Value) -> Answer {
    post(
        app,
        token,
        "/v1/events",
        content_type,
        &[],
        serde_json::to_vec(body).expect("json"),
    )
    .await
}

async fn inbox_keys(app: &TestApp) -> Vec<(String, String)> {
    sqlx::query_as("SELECT publisher, event_id FROM inbox ORDER BY event_id")
        .fetch_all(&app.pool)
        .await
        .expect("inbox")
}

fn assert_problem(answer: &Answer, status: u16, slug: &str) {
    assert_eq!(
        answer.status,
        status,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(
        answer.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    let problem = answer.json();
    assert_eq!(problem["type"], format!("urn:raccordo:problem:{slug}"));
    assert_eq!(problem["status"], status);
    assert_documented("Problem", &problem);
}

/// `value` as `schemas/openapi.yaml` describes the component.
fn assert_documented(component: &str, value: &Value) {
    let errors = crate::openapi::component_errors(component, value);
    assert!(
        errors.is_empty(),
        "the answer is not the documented {component}: {errors:?}\n{value}"
    );
}

#[tokio::test]
async fn ingest_each_binding_is_routed_as_the_structured_amqp_event() {
    let app = spawn_app_with(publishers).await;
    let token = token(&app, MILANO).await;
    let structured = post_one(&app, &token, &event("H-1", offer("U-1"))).await;
    assert_eq!(structured.status, 202, "{:?}", structured.json());
    assert_eq!(structured.json(), json!({"accepted": 1, "ids": ["H-1"]}));
    assert_documented("Accepted", &structured.json());
    let binary = post(
        &app,
        &token,
        "/v1/events",
        "application/json",
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "H-2"),
            ("ce-source", "urn:comune:milano:protocollo"),
            ("ce-type", "housing.unit.v1"),
            ("ce-time", "2026-11-02T09:00:00+01:00"),
        ],
        serde_json::to_vec(&offer("U-2")).expect("json"),
    )
    .await;
    assert_eq!(binary.status, 202, "{:?}", binary.json());
    let batch = post_json(
        &app,
        &token,
        "application/cloudevents-batch+json",
        &json!([event("H-3", offer("U-3")), event("H-4", offer("U-4"))]),
    )
    .await;
    assert_eq!(batch.json(), json!({"accepted": 2, "ids": ["H-3", "H-4"]}));
    app.wait_for_emails(8).await;
    app.settle().await;
    assert_eq!(app.emails_of("housing.offered").len(), 4);
    assert_eq!(app.emails_of("housing.ack").len(), 4);
    // Judged as the token's publisher: the idempotency key is that user's.
    let keys = inbox_keys(&app).await;
    assert_eq!(keys.len(), 4);
    assert!(keys.iter().all(|(p, _)| p == MILANO), "{keys:?}");
    // The same event again, by any binding: accepted, and nothing more happens.
    let again = post_json(
        &app,
        &token,
        "application/json",
        &event("H-1", offer("U-1")),
    )
    .await;
    assert_eq!(again.status, 202);
    app.settle().await;
    assert_eq!(app.emails().len(), 8, "a resend is a duplicate");
    assert!(app.dead_letters().await.is_empty());
    app.cleanup().await;
}

#[tokio::test]
async fn ingest_a_batch_with_one_invalid_event_is_refused_whole_naming_it() {
    let app = spawn_app_with(publishers).await;
    let token = token(&app, MILANO).await;
    let mut bad = offer("U-2");
    bad["places"] = json!(0);
    let answer = post_json(
        &app,
        &token,
        "application/cloudevents-batch+json",
        &json!([
            event("B-1", offer("U-1")),
            event("B-2", bad),
            event("B-3", offer("U-3"))
        ]),
    )
    .await;
    assert_problem(&answer, 400, "invalid-event");
    let errors = answer.json()["errors"].clone();
    assert_eq!(errors.as_array().map(Vec::len), Some(1), "{errors}");
    assert_eq!(errors[0]["pointer"], "/1/data/places");
    // Not JSON, an empty batch, a batch over ingest.max_batch, a text body.
    let answer = post(
        &app,
        &token,
        "/v1/events",
        "application/cloudevents+json",
        &[],
        b"{not json".to_vec(),
    )
    .await;
    assert_problem(&answer, 400, "invalid-event");
    let many: Vec<Value> = (0..501)
        .map(|i| event(&format!("M-{i}"), offer("U")))
        .collect();
    let answer = post_json(
        &app,
        &token,
        "application/cloudevents-batch+json",
        &json!(many),
    )
    .await;
    assert_problem(&answer, 413, "too-large");
    let answer = post(
        &app,
        &token,
        "/v1/events",
        "text/plain",
        &[],
        b"hello".to_vec(),
    )
    .await;
    assert_problem(&answer, 415, "unsupported-media-type");
    app.settle().await;
    assert!(app.emails().is_empty());
    assert!(inbox_keys(&app).await.is_empty(), "nothing was published");
    app.cleanup().await;
}

#[tokio::test]
async fn ingest_a_type_or_comune_the_publisher_may_not_send_is_403_and_nothing_is_published() {
    let app = spawn_app_with(publishers).await;
    let milano = token(&app, MILANO).await;
    let step = json!({"specversion": "1.0", "id": "S-1", "source": "urn:tribunale",
        "type": "eviction.step.v1", "data": {"procedure_id": "RG 1/2026", "step": "intimazione",
            "occurred_on": "2026-03-04", "comune_istat": "015146"}});
    let answer = post_one(&app, &milano, &step).await;
    assert_problem(&answer, 403, "forbidden");
    assert!(
        answer.json()["errors"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("may not publish eviction.step.v1")),
        "{:?}",
        answer.json()
    );
    // Another comune's unit, second of a batch: the pointer names it, the first is not sent.
    let mut rho = offer("U-RHO");
    rho["comune_istat"] = json!("015182");
    let answer = post_json(
        &app,
        &milano,
        "application/cloudevents-batch+json",
        &json!([event("F-1", offer("U-1")), event("F-2", rho)]),
    )
    .await;
    assert_problem(&answer, 403, "forbidden");
    assert_eq!(answer.json()["errors"][0]["pointer"], "/1");
    // A token of a publisher that may not publish the type of a CSV.
    let tribunale = token(&app, TRIBUNALE).await;
    let answer = post_csv(
        &app,
        &tribunale,
        "/v1/csv/housing.unit.v1",
        b"unit_id,action,comune_istat\nU-9,withdrawn,015146\n".to_vec(),
    )
    .await;
    assert_problem(&answer, 403, "forbidden");
    app.settle().await;
    assert!(app.emails().is_empty());
    assert!(inbox_keys(&app).await.is_empty());
    app.cleanup().await;
}

#[tokio::test]
async fn ingest_a_missing_wrong_or_revoked_token_is_401() {
    let app = spawn_app_with(publishers).await;
    let body = serde_json::to_vec(&event("T-1", offer("U-1"))).expect("json");
    let mut client = HttpClient::connect(addr(&app)).await.expect("connects");
    let none = client
        .send(
            "POST",
            "/v1/events",
            &[("content-type", "application/cloudevents+json")],
            body.clone(),
        )
        .await
        .expect("answer");
    assert_problem(&none, 401, "unauthorized");
    assert!(
        none.header("www-authenticate")
            .is_some_and(|h| h.starts_with("Bearer"))
    );
    let wrong = post(
        &app,
        "rcd_0000000000000000000000000000000000000000000000000000000000000000",
        "/v1/events",
        "application/cloudevents+json",
        &[],
        body.clone(),
    )
    .await;
    assert_problem(&wrong, 401, "unauthorized");
    let (id, live) = raccordo_ingest::tokens::add(&app.pool, MILANO)
        .await
        .expect("token");
    assert!(
        raccordo_ingest::tokens::revoke(&app.pool, id)
            .await
            .expect("revoke")
    );
    let revoked = post(
        &app,
        &live,
        "/v1/events",
        "application/cloudevents+json",
        &[],
        body,
    )
    .await;
    assert_problem(&revoked, 401, "unauthorized");
    // A token in use, then revoked: believed at most ingest's 5 s cache longer.
    let (id, used) = raccordo_ingest::tokens::add(&app.pool, MILANO)
        .await
        .expect("token");
    let first = post_one(&app, &used, &event("T-2", offer("U-2"))).await;
    assert_eq!(first.status, 202);
    assert!(
        raccordo_ingest::tokens::revoke(&app.pool, id)
            .await
            .expect("revoke")
    );
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let after = post_one(&app, &used, &event("T-3", offer("U-3"))).await;
    assert_problem(&after, 401, "unauthorized");
    let stream = HttpClient::connect(addr(&app))
        .await
        .expect("connects")
        .send("GET", "/v1/stream", &[], Vec::new())
        .await
        .expect("answer");
    assert_problem(&stream, 401, "unauthorized");
    app.settle().await;
    let keys = inbox_keys(&app).await;
    assert_eq!(
        keys.len(),
        1,
        "only the event posted before the revocation: {keys:?}"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn ingest_serve_ingest_alone_is_ready_when_it_can_publish() {
    let app = prepare_with(publishers).await.start(Workers::Ingest).await;
    let running = app.app.as_ref().expect("running");
    let (status, body) = raccordo_e2e::http_get(running.http_addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("ingest-broker: consuming"), "{body}");
    let token = token(&app, MILANO).await;
    let answer = post_one(&app, &token, &event("ALONE-1", offer("U-1"))).await;
    assert_eq!(answer.status, 202, "{:?}", answer.json());
    // No worker here: the event waits in the housing queue for one.
    let queue = app.topology.queue(raccordo_core::amqp::WorkQueue::Housing);
    let mut depth = 0;
    for _ in 0..50 {
        depth = app.queue_depth(&queue).await;
        if depth == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(depth, 1);
    app.cleanup().await;
}

#[tokio::test]
async fn ingest_a_10_mb_body_is_refused_413_before_it_is_read_whole() {
    let app = spawn_app_with(publishers).await;
    let token = token(&app, MILANO).await;
    const TEN_MB: usize = 10 * 1024 * 1024;
    // Declared: refused on its Content-Length.
    let answer = post(
        &app,
        &token,
        "/v1/events",
        "application/cloudevents+json",
        &[],
        vec![b' '; TEN_MB],
    )
    .await;
    assert_problem(&answer, 413, "too-large");
    // Undeclared (chunked): refused once past ingest.max_body_bytes, while the client is
    // still sending; the rest is never read.
    let mut stream = tokio::net::TcpStream::connect(addr(&app))
        .await
        .expect("connects");
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/cloudevents+json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0usize;
        while sent < TEN_MB {
            let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            if write.write_all(&framed).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        let _ = write.write_all(b"0\r\n\r\n").await;
        sent
    });
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), read.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    assert!(
        text.starts_with("HTTP/1.1 413"),
        "{}",
        &text[..text.len().min(200)]
    );
    let sent = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("the writer ends")
        .expect("writer");
    let max = app.settings.ingest.max_body_bytes;
    assert!(
        sent < TEN_MB,
        "the server read the whole 10 MB ({sent} bytes)"
    );
    assert!(sent >= max, "refused only past the limit: {sent} < {max}");
    app.settle().await;
    assert!(inbox_keys(&app).await.is_empty());
    app.cleanup().await;
}

#[tokio::test]
async fn ingest_over_the_rate_is_429_with_retry_after_and_not_published() {
    let app = spawn_app_with(|s| {
        publishers(s);
        if let Some(rule) = s.publishers.users.get_mut(MILANO) {
            rule.rate_per_s = Some(0.5);
        }
    })
    .await;
    let token = token(&app, MILANO).await;
    let first = post_one(&app, &token, &event("R-1", offer("U-1"))).await;
    assert_eq!(first.status, 202);
    let second = post_one(&app, &token, &event("R-2", offer("U-2"))).await;
    assert_problem(&second, 429, "rate-limited");
    let wait: u64 = second
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let third = post_one(&app, &token, &event("R-2", offer("U-2"))).await;
    assert_eq!(third.status, 202, "{:?}", third.json());
    app.wait_for_emails(4).await;
    app.settle().await;
    assert_eq!(app.emails().len(), 4);
    app.cleanup().await;
}

#[tokio::test]
async fn ingest_the_broker_gone_during_a_post_is_503_and_nothing_is_acknowledged() {
    let upstream = {
        let settings = raccordo_e2e::test_settings(0);
        let url = url::Url::parse(settings.amqp.url.expose_secret()).expect("amqp.url");
        tokio::net::lookup_host((
            url.host_str().unwrap_or("127.0.0.1"),
            url.port().unwrap_or(5672),
        ))
        .await
        .expect("resolves")
        .next()
        .expect("an address")
    };
    let proxy = Proxy::start(upstream).await;
    let app = prepare_with(|s| {
        publishers(s);
        let mut url = url::Url::parse(s.amqp.url.expose_secret()).expect("amqp.url");
        url.set_port(Some(proxy.addr().port())).expect("port");
        url.set_host(Some(&proxy.addr().ip().to_string()))
            .expect("host");
        s.amqp.url = url.to_string().into();
    })
    .await
    .start(Workers::All)
    .await;
    let token = token(&app, MILANO).await;
    let first = post_one(&app, &token, &event("D-1", offer("U-1"))).await;
    assert_eq!(first.status, 202);
    proxy.cut();
    let batch = json!([event("D-2", offer("U-2")), event("D-3", offer("U-3"))]);
    let down = post_json(&app, &token, "application/cloudevents-batch+json", &batch).await;
    assert_problem(&down, 503, "broker-unavailable");
    assert!(down.header("retry-after").is_some());
    proxy.restore();
    // The same batch again once the broker is back: accepted, each event handled once.
    let mut accepted = None;
    for _ in 0..60 {
        let answer = post_json(&app, &token, "application/cloudevents-batch+json", &batch).await;
        if answer.status == 202 {
            accepted = Some(answer);
            break;
        }
        assert_eq!(answer.status, 503, "{:?}", answer.json());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(accepted.is_some(), "accepted once the broker is back");
    app.wait_for_emails(6).await;
    app.settle().await;
    assert_eq!(app.emails_of("housing.offered").len(), 3);
    assert_eq!(inbox_keys(&app).await.len(), 3);
    app.cleanup().await;
}

const CSV_GOOD: &str = "unit_id;action;comune_istat;address;places;reception_kind;building_type;owner_declaration\n\
    C-1;offered;015146;Via Padova 1;4;CAS;appartamento;sì\n\
    C-2;offered;015146;Via Padova 2;6;SPRAR;appartamento;true\n";

#[tokio::test]
async fn ingest_csv_preview_names_each_bad_row_and_nothing_is_sent_until_the_file_is_good() {
    let app = spawn_app_with(publishers).await;
    let token = token(&app, MILANO).await;
    let bad = format!("{CSV_GOOD}C-3;offered;015146;Via Padova 3;many;CAS;appartamento;sì\n");
    let preview = post(
        &app,
        &token,
        "/v1/csv/housing.unit.v1?dry_run=true",
        "text/csv; charset=utf-8",
        &[],
        bad.clone().into_bytes(),
    )
    .await;
    assert_eq!(preview.status, 200, "{:?}", preview.json());
    let body = preview.json();
    assert_documented("CsvPreview", &body);
    assert_eq!(body["rows"], 3);
    assert_eq!(body["valid"], 2);
    assert_eq!(body["errors"][0]["row"], 4, "{body}");
    assert_eq!(body["errors"][0]["column"], "places", "{body}");
    assert!(!body.to_string().contains("many"), "never a cell's value");
    let refused = post_csv(&app, &token, "/v1/csv/housing.unit.v1", bad.into_bytes()).await;
    assert_problem(&refused, 400, "invalid-csv");
    assert_eq!(refused.json()["errors"][0]["row"], 4);
    app.settle().await;
    assert!(
        app.emails().is_empty(),
        "a preview and a bad file send nothing"
    );
    assert!(inbox_keys(&app).await.is_empty());
    let sent = post_csv(
        &app,
        &token,
        "/v1/csv/housing.unit.v1",
        CSV_GOOD.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(sent.status, 202, "{:?}", sent.json());
    assert_eq!(sent.json()["accepted"], 2);
    app.wait_for_emails(4).await;
    // The same file again: the same ids, nothing sent twice.
    let again = post_csv(
        &app,
        &token,
        "/v1/csv/housing.unit.v1",
        CSV_GOOD.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(again.json()["ids"], sent.json()["ids"]);
    app.settle().await;
    assert_eq!(app.emails_of("housing.offered").len(), 2);
    // Occupancy reports by CSV too; an unknown type is refused.
    let unknown = post_csv(
        &app,
        &token,
        "/v1/csv/eviction.step.v1",
        b"procedure_id\nX\n".to_vec(),
    )
    .await;
    assert_problem(&unknown, 400, "invalid-csv");
    app.cleanup().await;
}

/// Follows the stream from `after` to its end; returns the items' notification ids and the
/// last cursor.
async fn follow(app: &TestApp, token: &str, mut after: String) -> (Vec<String>, String) {
    let mut ids = Vec::new();
    let mut client = HttpClient::connect(addr(app)).await.expect("connects");
    loop {
        let answer = client
            .send(
                "GET",
                &format!("/v1/stream?after={after}&limit=3"),
                &[("authorization", &format!("Bearer {token}"))],
                Vec::new(),
            )
            .await
            .expect("answer");
        assert_eq!(answer.status, 200, "{:?}", answer.json());
        let page = answer.json();
        assert_documented("StreamPage", &page);
        let items = page["items"].as_array().cloned().unwrap_or_default();
        for item in &items {
            let n = &item["notification"];
            assert!(
                n["kind"]
                    .as_str()
                    .is_some_and(|k| k.starts_with("housing.")),
                "{item}"
            );
            let keys: Vec<&String> = n
                .as_object()
                .map(|o| o.keys().collect())
                .unwrap_or_default();
            assert_eq!(
                keys,
                ["comune_istat", "created_at", "id", "kind", "undeliverable"],
                "the announcement only, never content"
            );
            ids.push(n["id"].as_str().unwrap_or_default().to_owned());
        }
        let next = page["next"].as_str().unwrap_or_default().to_owned();
        if items.is_empty() {
            return (ids, next);
        }
        after = next;
    }
}

async fn streamed_kinds_in_db(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT id::text FROM notifications WHERE kind LIKE 'housing.%' AND published_at IS NOT NULL ORDER BY stream_seq",
    )
    .fetch_all(&app.pool)
    .await
    .expect("notifications")
}

#[tokio::test]
async fn ingest_the_stream_is_followed_across_a_restart_and_misses_nothing() {
    let mut app = spawn_app_with(publishers).await;
    let token = token(&app, MILANO).await;
    for i in 0..4 {
        app.publish(&app.event("housing.unit.v1", offer(&format!("S-{i}"))))
            .await;
    }
    app.wait_for_emails(8).await;
    app.settle().await;
    let (first, cursor) = follow(&app, &token, String::new()).await;
    assert_eq!(first.len(), 8, "offered and ack of each unit");
    app.stop_workers().await;
    app = app.start(Workers::All).await;
    for i in 4..7 {
        app.publish(&app.event("housing.unit.v1", offer(&format!("S-{i}"))))
            .await;
    }
    app.wait_for_emails(14).await;
    app.settle().await;
    let (second, _) = follow(&app, &token, cursor).await;
    let all: Vec<String> = first.into_iter().chain(second).collect();
    assert_eq!(
        all,
        streamed_kinds_in_db(&app).await,
        "in order, none missed or repeated"
    );
    // A malformed cursor, and a publisher without stream_kinds.
    let mut client = HttpClient::connect(addr(&app)).await.expect("connects");
    let bad = client
        .send(
            "GET",
            "/v1/stream?after=abc",
            &[("authorization", &format!("Bearer {token}"))],
            Vec::new(),
        )
        .await
        .expect("answer");
    assert_problem(&bad, 400, "invalid-cursor");
    let tribunale = raccordo_ingest::tokens::add(&app.pool, TRIBUNALE)
        .await
        .expect("token")
        .1;
    let forbidden = client
        .send(
            "GET",
            "/v1/stream",
            &[("authorization", &format!("Bearer {tribunale}"))],
            Vec::new(),
        )
        .await
        .expect("answer");
    assert_problem(&forbidden, 403, "forbidden");
    app.cleanup().await;
}

#[tokio::test]
async fn ingest_a_forged_http_publisher_header_over_amqp_is_not_believed() {
    let app = spawn_app_with(|s| {
        publishers(s);
        s.publishers.allow_anonymous = false;
    })
    .await;
    let mut headers = FieldTable::default();
    headers.insert(
        "x-raccordo-http-publisher".into(),
        AMQPValue::LongString(LongString::from(MILANO)),
    );
    headers.insert(
        "x-raccordo-http-signature".into(),
        AMQPValue::LongString(LongString::from("0".repeat(64))),
    );
    let body = serde_json::to_vec(&event("FORGED-1", offer("U-1"))).expect("json");
    app.publish_with(
        "housing.unit.v1",
        &body,
        BasicProperties::default()
            .with_content_type("application/cloudevents+json".into())
            .with_headers(headers),
    )
    .await;
    let dead = app.wait_for_held(Holding::Dead, 1).await;
    assert!(
        dead[0].error.contains("unauthenticated"),
        "{}",
        dead[0].error
    );
    app.settle().await;
    assert!(app.emails().is_empty());
    app.cleanup().await;
}

#[tokio::test]
async fn ingest_publishers_token_add_prints_the_token_alone_on_the_last_line() {
    let app = spawn_app_with(publishers).await;
    let config = std::env::temp_dir().join(format!("ingest-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(
        &config,
        format!("[publishers.{MILANO}]\ntypes = [\"housing.unit.v1\"]\n"),
    )
    .expect("config written");
    let output = app
        .command()
        .env("RACCORDO_CONFIG", &config)
        .args(["publishers", "token", "add", MILANO])
        .output()
        .await
        .expect("raccordo runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let token = stdout.lines().last().unwrap_or_default().to_owned();
    assert!(
        token.starts_with("rcd_") && !token.contains(' '),
        "{stdout}"
    );
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT hash FROM publisher_tokens")
        .fetch_all(&app.pool)
        .await
        .expect("tokens");
    assert_eq!(stored, vec![raccordo_ingest::tokens::hash(&token)]);
    let answer = post_one(&app, &token, &event("CLI-1", offer("U-1"))).await;
    assert_eq!(answer.status, 202, "{:?}", answer.json());
    // A user that is not configured is refused, and nothing is stored.
    let unknown = app
        .command()
        .env("RACCORDO_CONFIG", &config)
        .args(["publishers", "token", "add", "nessuno"])
        .output()
        .await
        .expect("raccordo runs");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("nessuno"));
    let _ = std::fs::remove_file(&config);
    app.cleanup().await;
}

#[tokio::test]
async fn ingest_console_upload_previews_rows_then_publishes_after_confirmation_as_an_operator() {
    use crate::console::{VIEWER, csrf_of, form_encode, login_as, request, spawn_console_with};
    let (app, console) = spawn_console_with(publishers).await;
    let viewer = login_as(console, VIEWER).await;
    let denied = request(console, "GET", "/upload", Some(&viewer), None).await;
    assert_eq!(denied.status, 403, "only operators upload");
    let cookie = login_as(console, crate::console::OPERATOR).await;
    let page = request(console, "GET", "/upload", Some(&cookie), None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(MILANO), "the publishers to choose from");
    let csrf = csrf_of(&page.body);
    let bad = format!("{CSV_GOOD}C-3;offered;015146;Via Padova 3;many;CAS;appartamento;sì\n");
    let form = |csv: &str, step: &str| {
        (
            format!("/upload/{step}"),
            form_encode(&[
                ("csrf", &csrf),
                ("event_type", "housing.unit.v1"),
                ("publisher", MILANO),
                ("csv", csv),
            ]),
        )
    };
    let (path, body) = form(&bad, "preview");
    let preview = request(console, "POST", &path, Some(&cookie), Some(&body)).await;
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert!(preview.body.contains("2 di 3"), "{}", preview.body);
    assert!(
        preview.body.contains(
            "<td class=\"num\">4</td><td><code>places</code></td><td>non è un numero intero</td>"
        ),
        "row 4, column places, in Italian (issue 24): {}",
        preview.body
    );
    assert!(
        !preview.body.contains("/upload/publish"),
        "no publish button for a bad file"
    );
    // Publishing a bad file anyway is refused.
    let (path, body) = form(&bad, "publish");
    let refused = request(console, "POST", &path, Some(&cookie), Some(&body)).await;
    assert_eq!(refused.status, 400);
    app.settle().await;
    assert!(app.emails().is_empty(), "nothing before confirmation");
    let (path, body) = form(CSV_GOOD, "preview");
    let preview = request(console, "POST", &path, Some(&cookie), Some(&body)).await;
    assert!(preview.body.contains("/upload/publish"), "{}", preview.body);
    // Without the session's CSRF token nothing happens.
    let forged = request(
        console,
        "POST",
        "/upload/publish",
        Some(&cookie),
        Some(&form_encode(&[
            ("csrf", "x"),
            ("event_type", "housing.unit.v1"),
            ("publisher", MILANO),
            ("csv", CSV_GOOD),
        ])),
    )
    .await;
    assert_eq!(forged.status, 403);
    let (path, body) = form(CSV_GOOD, "publish");
    let done = request(console, "POST", &path, Some(&cookie), Some(&body)).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("2 eventi pubblicati"), "{}", done.body);
    app.wait_for_emails(4).await;
    app.settle().await;
    assert_eq!(app.emails_of("housing.offered").len(), 2);
    let keys = inbox_keys(&app).await;
    assert!(keys.iter().all(|(p, _)| p == MILANO), "{keys:?}");
    let recorded: (String, String, Option<String>, i32) = sqlx::query_as(
        "SELECT operator, action, target, affected FROM console_actions WHERE action = 'csv_upload'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("the upload is recorded");
    assert_eq!(
        recorded,
        (
            crate::console::OPERATOR.to_owned(),
            "csv_upload".to_owned(),
            Some(MILANO.to_owned()),
            2
        )
    );
    app.cleanup().await;
}
