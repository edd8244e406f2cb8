//! The hub on a RabbitMQ cluster of three nodes (`scripts/rabbit-cluster.sh`) that loses a
//! node in the middle of a stream of offers: the node holding the queues' leaders, then the
//! node the hub is connected to. The hub is given the three addresses (`amqp.urls`), its
//! work queues are quorum queues with a member on each node. Nothing may be lost (every
//! offer recorded once, every email at the SMTP server), nothing sent twice beyond a
//! same-Message-ID resend (CONTRACT F3), and `/readyz` must tell the truth throughout.
//!
//! The tests start and kill the cluster's nodes: `scripts/test.sh` runs them alone, after
//! the parallel suite (tests named `cluster_*`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use raccordo::serve::Workers;
use raccordo_core::amqp::WorkQueue;
use raccordo_core::settings::{QueueType, Settings};
use raccordo_e2e::cluster::{RabbitCluster, ReadinessLog};
use raccordo_e2e::faults::publish_confirmed;
use raccordo_e2e::{TestApp, prepare_with};
use serde_json::{Value, json};

const OFFERS: usize = 200;
/// Emails per offer: `housing.offered` to the contracting authority, `housing.ack` to the comune.
const EMAILS_PER_OFFER: usize = 2;

fn offer(run: &str, i: usize) -> Value {
    json!({
        "specversion": "1.0", "id": format!("{run}-{i}"), "source": "urn:raccordo:test:cluster",
        "type": "housing.unit.v1",
        "data": {
            "unit_id": format!("{run}-{i}"), "action": "offered", "comune_istat": "015146",
            "address": "Via Padova 1, Milano", "places": 2, "reception_kind": "CAS",
            "building_type": "appartamento", "owner_declaration": true
        }
    })
}

/// Publishes every offer with confirms through the cluster's addresses, as a careful legacy
/// system would: an offer whose confirm did not arrive is published again (same id: the
/// hub's idempotency absorbs it), on a new connection to whichever node answers.
async fn publish_through_faults(settings: Settings, exchange: String, run: &'static str) {
    let bodies = (0..OFFERS).map(|i| serde_json::to_vec(&offer(run, i)).expect("json"));
    let gap = Duration::from_millis(40);
    publish_confirmed(&settings, &exchange, bodies, gap, Duration::from_secs(120)).await;
}

/// Quorum work queues on the cluster, the stream's run name as unit ids.
fn on_cluster(settings: &mut Settings, cluster: &RabbitCluster, order: &[u8]) {
    settings.amqp.urls = cluster.urls(order);
    settings.amqp.queue_type = QueueType::Quorum;
}

/// Waits until `n` emails arrived, while the killed node is still down.
async fn wait_for_every_email(app: &TestApp, within: Duration) {
    let n = OFFERS * EMAILS_PER_OFFER;
    if let Err(got) = app.smtp.wait_for(n, within).await {
        panic!("expected {n} emails with a node down, got {got:?}");
    }
}

/// Waits until the hub took part of the stream, so the fault lands in its middle.
async fn wait_for_mid_stream(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while app.emails().len() < OFFERS / 4 {
        assert!(Instant::now() < deadline, "the stream did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Nothing lost, nothing decided twice, emails once each (a resend keeps its Message-ID).
async fn assert_nothing_lost_nothing_twice(app: &TestApp, run: &str) {
    let mails = app.emails();
    let ids: BTreeSet<String> = mails
        .iter()
        .filter_map(|m| m.header("Message-ID"))
        .collect();
    assert_eq!(
        ids.len(),
        OFFERS * EMAILS_PER_OFFER,
        "every (notification, recipient) once"
    );
    assert!(
        mails.len() - ids.len() <= 4,
        "{} resends",
        mails.len() - ids.len()
    );
    let offered: BTreeSet<String> = app
        .emails_of("housing.offered")
        .iter()
        .filter_map(|m| m.header("X-Raccordo-Notification"))
        .collect();
    assert_eq!(offered.len(), OFFERS, "one housing.offered per offer");
    let (units, notifications): (i64, i64) = sqlx::query_as(
        r#"
        SELECT (SELECT count(*) FROM housing_units WHERE unit_id LIKE $1),
               (SELECT count(*) FROM notifications WHERE kind = 'housing.offered')
        "#,
    )
    .bind(format!("{run}-%"))
    .fetch_one(&app.pool)
    .await
    .expect("counts");
    assert_eq!(units as usize, OFFERS, "every offer recorded");
    assert_eq!(notifications as usize, OFFERS, "one decision per offer");
}

/// Once the killed node is back (the holding queues are classic: they live on one node):
/// nothing dead-lettered, nothing parked.
async fn assert_nothing_held(app: &mut TestApp) {
    app.reconnect().await;
    assert!(app.dead_letters().await.is_empty(), "no dead letter");
    assert!(app.parked().await.is_empty(), "nothing parked");
}

/// Readiness after a fault: 200 again within `within` of it, and 200 at the end.
fn assert_ready_again(readiness: &ReadinessLog, fault: Instant, within: Duration) {
    let after = readiness.since(fault);
    let first_ok_after_outage = after
        .iter()
        .skip_while(|(_, s)| *s == 200)
        .find(|(_, s)| *s == 200)
        .or_else(|| after.first().filter(|(_, s)| *s == 200));
    let Some((ready_at, _)) = first_ok_after_outage else {
        panic!("/readyz never 200 after the fault: {:?}", statuses(&after));
    };
    assert!(
        ready_at.duration_since(fault) <= within,
        "/readyz 200 only {:?} after the fault",
        ready_at.duration_since(fault)
    );
    assert_eq!(after.last().map(|(_, s)| *s), Some(200), "ready at the end");
}

/// How long `/readyz` answered anything but 200: from each such sample to the next.
fn not_ready_for(samples: &[(Instant, u16)]) -> Duration {
    samples
        .windows(2)
        .filter(|w| w[0].1 != 200)
        .map(|w| w[1].0.duration_since(w[0].0))
        .sum()
}

/// Statuses with run lengths, for messages: `[(200, 40), (503, 6), (200, 80)]`.
fn statuses(samples: &[(Instant, u16)]) -> Vec<(u16, usize)> {
    let mut out: Vec<(u16, usize)> = Vec::new();
    for (_, s) in samples {
        match out.last_mut() {
            Some((last, n)) if last == s => *n += 1,
            _ => out.push((*s, 1)),
        }
    }
    out
}

#[tokio::test]
async fn cluster_losing_the_node_of_the_queue_leaders_mid_stream_loses_nothing_and_sends_nothing_twice()
 {
    let cluster = RabbitCluster::start().await;
    // Declared through node 3, so the queues' leaders (and the classic holding queues) are
    // there; the hub then connects to node 1.
    let app = prepare_with(|s| on_cluster(s, &cluster, &[3, 1, 2])).await;
    let mut app = app
        .configure(|s| on_cluster(s, &cluster, &[1, 2, 3]))
        .start(Workers::All)
        .await;
    // The test's own connection follows the hub to node 1.
    app.reconnect().await;
    let housing = app.topology.queue(WorkQueue::Housing);
    let (leader, members) = cluster.quorum_queue(1, &housing).await;
    assert_eq!(members.len(), 3, "a member on each node: {members:?}");
    assert_eq!(leader, "raccordo-3@localhost");
    let ports = cluster.connection_ports(1, &app.settings.amqp.prefix).await;
    assert!(
        !ports.is_empty() && ports.iter().all(|p| *p == RabbitCluster::port(1)),
        "the hub on node 1: {ports:?}"
    );
    let hub = app.app.as_ref().expect("running");
    let readiness = ReadinessLog::watch(hub.http_addr);
    let publishing = tokio::spawn(publish_through_faults(
        app.settings.clone(),
        app.topology.inbound_exchange(),
        "leader",
    ));

    wait_for_mid_stream(&app).await;
    let killed = Instant::now();
    cluster.kill(3).await;
    publishing.await.expect("every offer published");
    wait_for_every_email(&app, Duration::from_secs(90)).await;

    let (leader, _) = cluster.quorum_queue(1, &housing).await;
    assert_ne!(
        leader, "raccordo-3@localhost",
        "a new leader while node 3 is down"
    );
    assert_ready_again(&readiness, killed, Duration::from_secs(30));
    eprintln!(
        "cluster: node 3 killed; /readyz after: {:?}, not ready for {:?}; all emails within {:?} of the kill (publishing included); {} resends",
        statuses(&readiness.since(killed)),
        not_ready_for(&readiness.since(killed)),
        killed.elapsed(),
        app.emails().len() - OFFERS * EMAILS_PER_OFFER,
    );
    app.reconnect().await;
    app.settle().await;
    assert_nothing_lost_nothing_twice(&app, "leader").await;

    cluster.start_node(3).await;
    assert_nothing_held(&mut app).await;
    app.cleanup().await;
}

#[tokio::test]
async fn cluster_losing_the_node_the_hub_is_connected_to_mid_stream_loses_nothing_and_sends_nothing_twice()
 {
    let cluster = RabbitCluster::start().await;
    let mut app = prepare_with(|s| on_cluster(s, &cluster, &[1, 2, 3]))
        .await
        .start(Workers::All)
        .await;
    let housing = app.topology.queue(WorkQueue::Housing);
    let (_, members) = cluster.quorum_queue(2, &housing).await;
    assert_eq!(members.len(), 3, "a member on each node: {members:?}");
    let prefix = app.settings.amqp.prefix.clone();
    let ports = cluster.connection_ports(2, &prefix).await;
    assert!(
        !ports.is_empty() && ports.iter().all(|p| *p == RabbitCluster::port(1)),
        "the hub on node 1: {ports:?}"
    );
    let hub = app.app.as_ref().expect("running");
    let readiness = ReadinessLog::watch(hub.http_addr);
    let publishing = tokio::spawn(publish_through_faults(
        app.settings.clone(),
        app.topology.inbound_exchange(),
        "connected",
    ));

    wait_for_mid_stream(&app).await;
    let before = readiness.samples();
    assert!(
        before.iter().all(|(_, s)| *s == 200),
        "ready before the fault: {:?}",
        statuses(&before)
    );
    let killed = Instant::now();
    cluster.kill(1).await;
    publishing.await.expect("every offer published");
    wait_for_every_email(&app, Duration::from_secs(90)).await;

    // Its consumers lost their connection: /readyz said so, then 200 once they consumed
    // again from the nodes left.
    let after = readiness.since(killed);
    assert!(
        after.iter().any(|(_, s)| *s == 503),
        "/readyz 503 while the consumers reconnected: {:?}",
        statuses(&after)
    );
    assert_ready_again(&readiness, killed, Duration::from_secs(30));
    eprintln!(
        "cluster: node 1 (the hub's) killed; /readyz after: {:?}, not ready for {:?}; all emails within {:?} of the kill (publishing included); {} resends",
        statuses(&after),
        not_ready_for(&after),
        killed.elapsed(),
        app.emails().len() - OFFERS * EMAILS_PER_OFFER,
    );
    let ports = cluster.connection_ports(2, &prefix).await;
    assert!(
        !ports.is_empty() && ports.iter().all(|p| *p != RabbitCluster::port(1)),
        "the hub moved to nodes 2 and 3: {ports:?}"
    );
    app.reconnect().await;
    app.settle().await;
    assert_nothing_lost_nothing_twice(&app, "connected").await;

    cluster.start_node(1).await;
    assert_nothing_held(&mut app).await;
    app.cleanup().await;
}
