//! The end-to-end harness: each test gets a running hub of its own — its own database, its
//! own `amqp.prefix`, a real SMTP server on a free port — against the real RabbitMQ and
//! PostgreSQL of this machine, and intent methods to drive it as a legacy system would.
//!
//! When RabbitMQ or PostgreSQL is unreachable the harness fails at once, naming the script
//! that starts them: integration tests never skip.

pub mod broker_users;
pub mod cluster;
pub mod faults;
pub mod pec;
pub mod pg_ha;
pub mod proxy;
pub mod upgrade;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{BasicProperties, Connection};
use raccordo::serve::{App, Workers};
use raccordo_core::amqp::dead_letter::{self, HeldMessage, Holding};
use raccordo_core::amqp::{Publisher, Topology, connect};
use raccordo_core::settings::{MailTransportKind, QueueType, Settings};
use raccordo_smtp_sink::{ReceivedMail, SmtpSink};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

pub use raccordo_smtp_sink::Mode;

pub mod families;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The `raccordo` binary built next to the test binary (`scripts/test.sh` builds it first).
pub fn raccordo_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    // target/<profile>/deps/e2e-… → target/<profile>/raccordo
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("raccordo"))
        .expect("the test binary lives in target/<profile>/deps");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p raccordo` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// Settings for one test: a fresh prefix and database name, fast retries, the SMTP sink.
pub fn test_settings(smtp_port: u16) -> Settings {
    let mut settings = Settings::load().expect("the default settings load");
    let id = Uuid::new_v4().simple().to_string();
    settings.amqp.prefix = format!("t-{}", &id[..12]);
    let mut url = url::Url::parse(settings.database.url.expose_secret()).expect("database.url");
    url.set_path(&format!("/raccordo_test_{}", &id[..16]));
    settings.database.url = url.to_string().into();
    settings.database.max_connections = 8;
    settings.mail.transport = MailTransportKind::Smtp;
    settings.mail.smtp_url = format!("smtp://127.0.0.1:{smtp_port}").into();
    settings.mail.timeout_ms = 3000;
    settings.http.addr = "127.0.0.1:0".into();
    // Quorum queues are not made for the churn of a test suite (thousands declared and
    // deleted); one test checks the quorum declaration itself.
    settings.amqp.queue_type = QueueType::Classic;
    settings.retry.max_attempts = 4;
    settings.retry.initial_delay_ms = 100;
    settings.retry.max_delay_ms = 400;
    settings.relay.poll_ms = 200;
    // Tests publish as the broker's guest user without user_id, and pseudonymise with the
    // public development key; the trust tests turn both off.
    settings.publishers.allow_anonymous = true;
    settings.eviction.allow_development_key = true;
    settings
}

/// A hub running for one test.
pub struct TestApp {
    /// This test's settings.
    pub settings: Settings,
    /// The running workers (in this process).
    pub app: Option<App>,
    /// The SMTP server the mailer talks to.
    pub smtp: SmtpSink,
    /// A pool on this test's database.
    pub pool: PgPool,
    /// This test's names.
    pub topology: Topology,
    connection: Connection,
    publisher: Publisher,
}

/// Starts a hub with every worker and the sample registry.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], after `configure` adjusts the settings.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let app = prepare_with(configure).await;
    app.start(Workers::All).await
}

/// Prepares everything but starts no worker (tests that run the real binary instead).
pub async fn prepare_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let smtp = SmtpSink::start().await.expect("the SMTP sink binds");
    let mut settings = test_settings(smtp.port());
    configure(&mut settings);
    preflight(&settings).await;
    raccordo::setup::run(&settings)
        .await
        .expect("setup creates the database and the topology");
    let pool = raccordo_core::db::connect(&settings.database)
        .await
        .expect("the test database accepts connections");
    let root = workspace_root();
    let comuni = std::fs::File::open(root.join("data/comuni_mi.csv")).expect("data/comuni_mi.csv");
    let report = raccordo_core::registry::import_comuni(&pool, comuni)
        .await
        .expect("comuni import");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let referents =
        std::fs::File::open(root.join("data/referents_sample.csv")).expect("referents sample");
    let report = raccordo_core::registry::import_referents(
        &pool,
        referents,
        &raccordo_core::registry::Actor::import("data/referents_sample.csv"),
    )
    .await
    .expect("referents import");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    attach(settings, smtp, pool).await
}

/// Prepares a hub on a database restored from `dump` (made by an earlier release): restores
/// it, reads its columns and stored facts, then runs this release's `setup` (migrations,
/// topology). Starts no worker.
pub async fn prepare_from_dump(
    dump: &std::path::Path,
    configure: impl FnOnce(&mut Settings),
) -> (TestApp, upgrade::Columns, upgrade::Facts) {
    let smtp = SmtpSink::start().await.expect("the SMTP sink binds");
    let mut settings = test_settings(smtp.port());
    configure(&mut settings);
    preflight(&settings).await;
    raccordo_core::db::create_database_if_missing(&settings.database)
        .await
        .expect("the test database is created");
    upgrade::restore_dump(&settings.database, dump).await;
    let pool = raccordo_core::db::connect(&settings.database)
        .await
        .expect("the test database accepts connections");
    let columns = upgrade::columns(&pool).await;
    let facts = upgrade::facts(&pool, &columns).await;
    raccordo::setup::run(&settings)
        .await
        .expect("setup migrates the restored database and declares the topology");
    (attach(settings, smtp, pool).await, columns, facts)
}

/// The test's own broker connection and names, around a prepared database.
async fn attach(settings: Settings, smtp: SmtpSink, pool: PgPool) -> TestApp {
    let topology = Topology::from_settings(&settings);
    let connection = connect(&settings.amqp, "test")
        .await
        .expect("the test connects to RabbitMQ");
    let publisher = Publisher::open(&connection)
        .await
        .expect("a confirm channel");
    TestApp {
        settings,
        app: None,
        smtp,
        pool,
        topology,
        connection,
        publisher,
    }
}

async fn preflight(settings: &Settings) {
    let amqp = url::Url::parse(settings.amqp.url.expose_secret()).expect("amqp.url");
    let db = settings
        .database
        .connect_options()
        .expect("database.url parses");
    for (what, host, port) in [
        (
            "RabbitMQ",
            amqp.host_str().unwrap_or("127.0.0.1").to_owned(),
            amqp.port().unwrap_or(5672),
        ),
        ("PostgreSQL", db.get_host().to_owned(), db.get_port()),
    ] {
        let reachable = tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        assert!(
            reachable,
            "{what} is not reachable on {host}:{port}: start it with scripts/services.sh"
        );
    }
}

impl TestApp {
    /// Opens the test's own broker connection again (after a broker restart).
    pub async fn reconnect(&mut self) {
        self.connection = connect(&self.settings.amqp, "test")
            .await
            .expect("the test connects to RabbitMQ");
        self.publisher = Publisher::open(&self.connection)
            .await
            .expect("a confirm channel");
    }

    /// Changes the settings the workers will start with (prepare, then configure, then start).
    pub fn configure(mut self, configure: impl FnOnce(&mut Settings)) -> Self {
        configure(&mut self.settings);
        self
    }

    /// Starts workers in this process.
    pub async fn start(mut self, workers: Workers) -> Self {
        let app = App::start(self.settings.clone(), workers)
            .await
            .expect("the hub starts");
        app.wait_ready(Duration::from_secs(20))
            .await
            .expect("the hub consumes");
        self.app = Some(app);
        self
    }

    /// Stops the in-process workers (graceful), keeping database and queues.
    pub async fn stop_workers(&mut self) {
        if let Some(app) = self.app.take() {
            assert!(
                app.shutdown(Duration::from_secs(10)).await,
                "workers stop within 10 s"
            );
        }
    }

    /// A CloudEvent of `event_type` with a fresh id.
    pub fn event(&self, event_type: &str, data: Value) -> Value {
        json!({
            "specversion": "1.0",
            "id": Uuid::new_v4().to_string(),
            "source": "urn:raccordo:test",
            "type": event_type,
            "time": "2026-11-02T09:00:00+01:00",
            "data": data,
        })
    }

    /// Publishes an event to `{prefix}.inbound` as a legacy system would (persistent, confirmed).
    pub async fn publish(&self, event: &Value) {
        let key = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let body = serde_json::to_vec(event).expect("serializable");
        self.publish_raw(&key, &body).await;
    }

    /// Publishes any bytes with any routing key and properties, as the guest user.
    pub async fn publish_with(&self, routing_key: &str, body: &[u8], properties: BasicProperties) {
        self.publisher
            .publish(
                &self.topology.inbound_exchange(),
                routing_key,
                body,
                properties,
                false,
            )
            .await
            .expect("the broker confirms the event");
    }

    /// Publishes any bytes with any routing key.
    pub async fn publish_raw(&self, routing_key: &str, body: &[u8]) {
        self.publisher
            .publish(
                &self.topology.inbound_exchange(),
                routing_key,
                body,
                BasicProperties::default().with_content_type("application/cloudevents+json".into()),
                false,
            )
            .await
            .expect("the broker confirms the event");
    }

    /// Waits for `n` emails in all (bounded).
    pub async fn wait_for_emails(&self, n: usize) -> Vec<ReceivedMail> {
        match self.smtp.wait_for(n, Duration::from_secs(20)).await {
            Ok(mails) => mails,
            Err(timeout) => panic!(
                "expected {n} emails, got {:?}; subjects: {:?}",
                timeout,
                self.smtp
                    .mails()
                    .iter()
                    .map(|m| m.subject())
                    .collect::<Vec<_>>()
            ),
        }
    }

    /// Emails received so far.
    pub fn emails(&self) -> Vec<ReceivedMail> {
        self.smtp.mails()
    }

    /// Emails of one kind (`X-Raccordo-Kind`).
    pub fn emails_of(&self, kind: &str) -> Vec<ReceivedMail> {
        self.smtp
            .mails()
            .into_iter()
            .filter(|m| m.header("X-Raccordo-Kind").as_deref() == Some(kind))
            .collect()
    }

    /// Waits until the hub is quiet: inbound and mailer queues empty, no outbox row waiting,
    /// no email pending, and all of it unchanged for 600 ms (bounded to 20 s).
    pub async fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = None;
        let mut since = Instant::now();
        loop {
            let snapshot = self.snapshot().await;
            let quiet = snapshot.0 == 0 && snapshot.1 == 0 && snapshot.2 == 0;
            if last != Some(snapshot) {
                last = Some(snapshot);
                since = Instant::now();
            } else if quiet && since.elapsed() >= Duration::from_millis(600) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the hub did not settle within 20 s: {snapshot:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// (messages ready in work and retry queues, outbox pending, deliveries pending,
    /// inbox rows, dead + parked, emails received)
    async fn snapshot(&self) -> (u32, i64, i64, i64, u32, usize) {
        let mut queued = 0;
        let mut held = 0;
        for name in self.topology.all_queues() {
            let n = self.queue_depth(&name).await;
            if name == self.topology.dead_queue()
                || name == self.topology.parked_queue()
                || name == self.topology.parked_personal_queue()
                || name == self.topology.dead_personal_queue()
            {
                held += n;
            } else {
                queued += n;
            }
        }
        let (outbox, pending, inbox): (i64, i64, i64) = sqlx::query_as(
            r#"
            SELECT (SELECT count(*) FROM notifications WHERE published_at IS NULL),
                   (SELECT count(*) FROM deliveries WHERE delivered_at IS NULL AND failed_at IS NULL),
                   (SELECT count(*) FROM inbox)
            "#,
        )
        .fetch_one(&self.pool)
        .await
        .expect("counts");
        (
            queued,
            outbox,
            pending,
            inbox,
            held,
            self.smtp.mails().len(),
        )
    }

    /// Binds a queue of the test's own to `{prefix}.events` for `pattern` (e.g. `delivery.#`),
    /// as any system may; returns its name, for [`TestApp::drain_tap`]. Deleted at cleanup
    /// with the test's exchange (it is auto-delete).
    pub async fn tap_events(&self, pattern: &str) -> String {
        let channel = self.connection.create_channel().await.expect("a channel");
        let name = format!(
            "{}.tap.{}",
            self.settings.amqp.prefix,
            Uuid::new_v4().simple()
        );
        channel
            .queue_declare(
                name.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    auto_delete: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .expect("declare the tap");
        channel
            .queue_bind(
                name.as_str().into(),
                self.topology.events_exchange().as_str().into(),
                pattern.into(),
                lapin::options::QueueBindOptions::default(),
                lapin::types::FieldTable::default(),
            )
            .await
            .expect("bind the tap");
        name
    }

    /// Takes every message now in a tap: (routing key, JSON body).
    pub async fn drain_tap(&self, name: &str) -> Vec<(String, Value)> {
        let channel = self.connection.create_channel().await.expect("a channel");
        let mut out = Vec::new();
        while let Ok(Some(message)) = channel
            .basic_get(
                name.into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
        {
            let body = serde_json::from_slice(&message.delivery.data).unwrap_or(Value::Null);
            out.push((message.delivery.routing_key.to_string(), body));
        }
        let _ = channel.close(200, "tap drained".into()).await;
        out
    }

    /// Messages ready in a queue (0 when it does not exist).
    pub async fn queue_depth(&self, name: &str) -> u32 {
        let Ok(channel) = self.connection.create_channel().await else {
            return 0;
        };
        let depth = channel
            .queue_declare(
                name.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .map(|q| q.message_count())
            .unwrap_or(0);
        let _ = channel.close(200, "depth".into()).await;
        depth
    }

    /// The dead letters (oldest first).
    pub async fn dead_letters(&self) -> Vec<HeldMessage> {
        dead_letter::browse(&self.connection, &self.topology, Holding::Dead)
            .await
            .expect("browse dead")
    }

    /// The parked messages.
    pub async fn parked(&self) -> Vec<HeldMessage> {
        dead_letter::browse(&self.connection, &self.topology, Holding::Parked)
            .await
            .expect("browse parked")
    }

    /// Waits until `n` dead letters are there (bounded).
    pub async fn wait_for_dead(&self, n: usize) -> Vec<HeldMessage> {
        self.wait_for_held(Holding::Dead, n).await
    }

    /// Waits until `n` messages are in a holding queue (bounded).
    pub async fn wait_for_held(&self, holding: Holding, n: usize) -> Vec<HeldMessage> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut depth = 0;
            for queue in holding.queues(&self.topology) {
                depth += self.queue_depth(&queue).await as usize;
            }
            if depth >= n {
                return dead_letter::browse(&self.connection, &self.topology, holding)
                    .await
                    .expect("browse");
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} messages in {holding:?}, found {depth}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Notifications of a kind: (id, comune_istat, undeliverable).
    pub async fn notifications(&self, kind: &str) -> Vec<(Uuid, Option<String>, bool)> {
        sqlx::query_as(
            r#"
            SELECT id, comune_istat, undeliverable
            FROM notifications
            WHERE kind = $1
            ORDER BY created_at
            "#,
        )
        .bind(kind)
        .fetch_all(&self.pool)
        .await
        .expect("notifications")
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let addr = self.app.as_ref().expect("workers run").http_addr;
        http_get(addr, "/metrics").await.1
    }

    /// Environment variables that point a `raccordo` child process at this test.
    pub fn env(&self) -> Vec<(String, String)> {
        let s = &self.settings;
        let urls: Vec<&str> = s.amqp.urls.iter().map(|u| u.expose_secret()).collect();
        vec![
            ("RACCORDO__AMQP__URLS".into(), urls.join(",")),
            (
                "RACCORDO__AMQP__URL".into(),
                s.amqp.url.expose_secret().to_owned(),
            ),
            ("RACCORDO__AMQP__PREFIX".into(), s.amqp.prefix.clone()),
            (
                "RACCORDO__DATABASE__URL".into(),
                s.database.url.expose_secret().to_owned(),
            ),
            ("RACCORDO__MAIL__TRANSPORT".into(), "smtp".into()),
            (
                "RACCORDO__MAIL__SMTP_URL".into(),
                s.mail.smtp_url.expose_secret().to_owned(),
            ),
            (
                "RACCORDO__MAIL__TIMEOUT_MS".into(),
                s.mail.timeout_ms.to_string(),
            ),
            ("RACCORDO__HTTP__ADDR".into(), "127.0.0.1:0".into()),
            (
                "RACCORDO__RETRY__MAX_ATTEMPTS".into(),
                s.retry.max_attempts.to_string(),
            ),
            (
                "RACCORDO__RETRY__INITIAL_DELAY_MS".into(),
                s.retry.initial_delay_ms.to_string(),
            ),
            (
                "RACCORDO__RETRY__MAX_DELAY_MS".into(),
                s.retry.max_delay_ms.to_string(),
            ),
            (
                "RACCORDO__RELAY__POLL_MS".into(),
                s.relay.poll_ms.to_string(),
            ),
            (
                "RACCORDO__AMQP__QUEUE_TYPE".into(),
                s.amqp.queue_type.as_str().to_owned(),
            ),
            (
                "RACCORDO__PUBLISHERS__ALLOW_ANONYMOUS".into(),
                s.publishers.allow_anonymous.to_string(),
            ),
            (
                "RACCORDO__EVICTION__ALLOW_DEVELOPMENT_KEY".into(),
                s.eviction.allow_development_key.to_string(),
            ),
            (
                "RACCORDO__EVICTION__DEAD_LETTER_TTL_DAYS".into(),
                s.eviction.dead_letter_ttl_days.to_string(),
            ),
            (
                "RACCORDO__EVICTION__PSEUDONYM_KEY".into(),
                s.eviction.pseudonym_key.expose_secret().to_owned(),
            ),
        ]
    }

    /// A `raccordo` command configured for this test.
    pub fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(raccordo_bin());
        cmd.envs(self.env()).env_remove("RACCORDO_CONFIG");
        cmd
    }

    /// Stops workers, deletes this test's queues and exchanges, drops its database.
    pub async fn cleanup(mut self) {
        self.stop_workers().await;
        for name in self.topology.all_queues() {
            if let Ok(channel) = self.connection.create_channel().await {
                let _ = channel
                    .queue_delete(name.into(), QueueDeleteOptions::default())
                    .await;
            }
        }
        for name in [
            self.topology.inbound_exchange(),
            self.topology.events_exchange(),
            self.topology.unrouted_exchange(),
        ] {
            if let Ok(channel) = self.connection.create_channel().await {
                let _ = channel
                    .exchange_delete(name.into(), ExchangeDeleteOptions::default())
                    .await;
            }
        }
        let _ = self.connection.close(200, "test done".into()).await;
        self.pool.close().await;
        let _ = raccordo_core::db::drop_database(&self.settings.database).await;
    }
}

/// A minimal HTTP/1.1 GET on loopback: (status, body) — the benchmark's own client.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    raccordo::bench::http_get(addr, path)
        .await
        .expect("the HTTP endpoint answers within 5 s")
}
