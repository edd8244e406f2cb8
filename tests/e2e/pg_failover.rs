//! A PostgreSQL failover (issue 20, item 5): the hub writes to a primary with a synchronous
//! streaming standby (`scripts/pg-ha.sh`, a pair of this test's own), through a TCP proxy
//! that follows the primary — as HAProxy with a primary check, a virtual IP or a DNS name
//! moved by the cluster manager would. The primary is killed mid-stream (immediate stop,
//! like a crash), the standby promoted, the proxy pointed at it. Nothing is lost (a commit
//! the primary acknowledged is on the standby), nothing is sent twice but with the same
//! Message-ID, and `/readyz` says 503 while there is no primary and 200 after.

use std::net::SocketAddr;
use std::time::Duration;

use raccordo::serve::Workers;
use raccordo_core::settings::Settings;
use raccordo_e2e::faults::{Readiness, assert_each_offer_emailed_once, publish_offers};
use raccordo_e2e::pg_ha::PgPair;
use raccordo_e2e::prepare_with;
use raccordo_e2e::proxy::Proxy;
use secrecy::ExposeSecret;

const OFFERS: usize = 90;
/// The most emails a failover may resend (each with the Message-ID of its first send).
const MAX_RESENDS: usize = 32;

fn at(settings: &mut Settings, addr: SocketAddr) {
    let mut url = url::Url::parse(settings.database.url.expose_secret()).expect("database.url");
    url.set_host(Some(&addr.ip().to_string())).expect("host");
    url.set_port(Some(addr.port())).expect("port");
    settings.database.url = url.to_string().into();
    settings.database.acquire_timeout_ms = 1000;
    settings.amqp.handler_timeout_ms = 3000;
}

#[tokio::test]
async fn pg_failover_promoting_the_standby_mid_stream_loses_nothing_and_sends_nothing_twice() {
    let pair = tokio::task::spawn_blocking(PgPair::start)
        .await
        .expect("the pair starts");
    let proxy = Proxy::start(pair.primary()).await;
    let app = prepare_with(|s| at(s, proxy.addr()))
        .await
        .start(Workers::All)
        .await;
    let readiness = Readiness::watch(app.app.as_ref().expect("running").http_addr);
    readiness
        .wait_for(200, Duration::from_secs(10), "ready on the primary")
        .await;
    let publishing = tokio::spawn(publish_offers(
        app.settings.clone(),
        app.topology.inbound_exchange(),
        "pf".to_owned(),
        0..OFFERS,
        Duration::from_millis(100),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM notifications")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert!(before > 0, "the stream was flowing before the failover");

    let pair = tokio::task::spawn_blocking(move || {
        pair.kill_primary();
        pair
    })
    .await
    .expect("the primary stops");
    let killed = std::time::Instant::now();
    let noticed = readiness
        .wait_for(503, Duration::from_secs(5), "no primary, yet ready")
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (pair, promoted) = tokio::task::spawn_blocking(move || {
        let promoted = pair.promote();
        (pair, promoted)
    })
    .await
    .expect("the standby is promoted");
    proxy.retarget(promoted);
    let retargeted = std::time::Instant::now();
    let ready = readiness
        .wait_for(
            200,
            Duration::from_secs(30),
            "not ready on the promoted standby",
        )
        .await;
    let during = readiness.between(noticed, retargeted);
    assert!(!during.contains(&200), "ready with no primary: {during:?}");

    publishing.await.expect("every offer published");
    let resends = assert_each_offer_emailed_once(&app, OFFERS, Duration::from_secs(90)).await;
    assert!(resends <= MAX_RESENDS, "{resends} resends");
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM notifications")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert!(
        after >= before,
        "commits acknowledged before the failover survived it"
    );
    // The figures of the README ("Beyond one machine"), with --nocapture.
    println!(
        "pg failover: 503 {} ms after the kill, ready {} ms after the retarget, {resends} resends, all {} emails in and settled {} ms after the kill",
        (noticed - killed).as_millis(),
        (ready - retargeted).as_millis(),
        app.emails().len(),
        killed.elapsed().as_millis()
    );
    app.cleanup().await;
    drop(pair);
}
