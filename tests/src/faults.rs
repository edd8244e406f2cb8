//! What the fault tests (partitions, a database failover) share: a stream of housing offers
//! published by a careful legacy system, a record of `/readyz` polled throughout, and the
//! count of what arrived at the SMTP server.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::BasicProperties;
use raccordo_core::amqp::{Publisher, connect};
use raccordo_core::settings::Settings;
use serde_json::{Value, json};

use crate::TestApp;

/// Recipients of one Milano offer in the sample registry.
pub const EMAILS_PER_OFFER: usize = 2;

/// Offer `i` of a stream named `tag` (its id is stable: a resend is a duplicate).
pub fn offer(tag: &str, i: usize) -> Value {
    json!({
        "specversion": "1.0", "id": format!("{tag}-{i}"), "source": format!("urn:raccordo:test:{tag}"),
        "type": "housing.unit.v1",
        "data": {
            "unit_id": format!("{tag}-{i}"), "action": "offered", "comune_istat": "015146",
            "address": "Via Padova 1, Milano", "places": 2, "reception_kind": "CAS",
            "building_type": "appartamento", "owner_declaration": true
        }
    })
}

/// Publishes offers `range` of `tag` with confirms, `gap` apart, straight to the broker of
/// `settings` (not through any proxy of the hub's); an offer whose confirm did not come is
/// published again with the same id.
pub async fn publish_offers(
    settings: Settings,
    exchange: String,
    tag: String,
    range: std::ops::Range<usize>,
    gap: Duration,
) {
    let bodies = range.map(|i| serde_json::to_vec(&offer(&tag, i)).expect("json"));
    publish_confirmed(&settings, &exchange, bodies, gap, Duration::from_secs(120)).await;
}

/// Publishes housing offers in order as a careful legacy system does: each until the broker
/// confirms it, on a new connection (to whichever node answers) after a failure — an offer sent
/// twice is absorbed by the hub's idempotency —, `gap` apart; panics past `within`.
pub async fn publish_confirmed(
    settings: &Settings,
    exchange: &str,
    bodies: impl IntoIterator<Item = Vec<u8>>,
    gap: Duration,
    within: Duration,
) {
    let mut publisher: Option<(lapin::Connection, Publisher)> = None;
    let deadline = Instant::now() + within;
    for (i, body) in bodies.into_iter().enumerate() {
        loop {
            assert!(Instant::now() < deadline, "could not publish offer {i}");
            if publisher.is_none()
                && let Ok(c) = connect(&settings.amqp, "test-publisher").await
                && let Ok(p) = Publisher::open(&c).await
            {
                publisher = Some((c, p));
            }
            let Some((_, p)) = &publisher else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let properties = BasicProperties::default();
            if p.publish(exchange, "housing.unit.v1", &body, properties, false)
                .await
                .is_ok()
            {
                break;
            }
            publisher = None;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(gap).await;
    }
}

/// `/readyz` polled every 100 ms for as long as it lives: (when the answer came, status;
/// 0 when there was no answer within 5 s).
pub struct Readiness {
    samples: Arc<Mutex<Vec<(Instant, u16)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Readiness {
    /// Starts polling `addr`.
    pub fn watch(addr: SocketAddr) -> Readiness {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let samples = samples.clone();
            tokio::spawn(async move {
                loop {
                    let status = raccordo::bench::http_get(addr, "/readyz")
                        .await
                        .map_or(0, |(status, _)| status);
                    if let Ok(mut s) = samples.lock() {
                        s.push((Instant::now(), status));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        Readiness { samples, task }
    }

    /// Every answer so far.
    pub fn samples(&self) -> Vec<(Instant, u16)> {
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until an answer given after now has `status`; when it came. Panics after
    /// `within`, naming `what`.
    pub async fn wait_for(&self, status: u16, within: Duration, what: &str) -> Instant {
        let since = Instant::now();
        loop {
            if let Some((at, _)) = self
                .samples()
                .into_iter()
                .find(|(at, s)| *at >= since && *s == status)
            {
                return at;
            }
            assert!(
                since.elapsed() < within,
                "/readyz never answered {status} within {within:?}: {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The statuses answered between `from` and `to`.
    pub fn between(&self, from: Instant, to: Instant) -> Vec<u16> {
        self.samples()
            .into_iter()
            .filter(|(at, _)| *at >= from && *at <= to)
            .map(|(_, s)| s)
            .collect()
    }
}

impl Drop for Readiness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits for every email of `offers` offers and checks that each (notification, recipient)
/// arrived, each offer made one notification, and any resend carried the Message-ID of
/// its first send (CONTRACT F3); the number of resends.
pub async fn assert_each_offer_emailed_once(
    app: &TestApp,
    offers: usize,
    within: Duration,
) -> usize {
    let expected = EMAILS_PER_OFFER * offers;
    if let Err(got) = app.smtp.wait_for(expected, within).await {
        panic!("expected {expected} emails, got {got:?}: some work was lost");
    }
    app.settle().await;
    let mails = app.emails();
    let ids: BTreeSet<String> = mails
        .iter()
        .filter_map(|m| m.header("Message-ID"))
        .collect();
    assert_eq!(ids.len(), expected, "every (notification, recipient) once");
    let mut per_notification: BTreeMap<String, usize> = BTreeMap::new();
    for mail in app.emails_of("housing.offered") {
        if let Some(id) = mail.header("X-Raccordo-Notification") {
            *per_notification.entry(id).or_default() += 1;
        }
    }
    assert_eq!(
        per_notification.len(),
        offers,
        "one housing.offered per offer"
    );
    let notifications = app.notifications("housing.offered").await;
    assert_eq!(
        notifications.len(),
        offers,
        "one stored notification per offer"
    );
    assert!(app.dead_letters().await.is_empty(), "nothing dead-lettered");
    assert!(app.parked().await.is_empty(), "nothing parked");
    mails.len() - ids.len()
}
