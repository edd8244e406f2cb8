//! `raccordo serve`: runs workers as tokio tasks until stopped. Every process also runs the
//! registry consumer, the unrouted-to-dead mover and the outbox relay: they are light,
//! safe to run in many replicas, and so no deployment can forget them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use raccordo_asylum::AsylumWorker;
use raccordo_core::amqp::{
    ConsumerContext, Handler, Topology, WithPolicy, WorkQueue, run_consumer,
};
use raccordo_core::db;
use raccordo_core::health::Health;
use raccordo_core::inbound::{Inbound, Unrouted};
use raccordo_core::origin::Publishers;
use raccordo_core::registry_worker::RegistryWorker;
use raccordo_core::settings::Settings;
use raccordo_eviction::EvictionWorker;
use raccordo_housing::HousingWorker;
use raccordo_mailer::delivery::{
    Mailer, ReplayHandler, pec_transport_from_settings, run_mailer, transport_from_settings,
};
use raccordo_quota::{MonthlyVerification, QuotaWorker};

/// How often the monthly jobs check whether last month's run is still due.
const MONTHLY_CHECK_EVERY: Duration = Duration::from_secs(15 * 60);
/// How often each replica checks whether today's retention run (Europe/Rome) is due.
const RETENTION_CHECK_EVERY: Duration = Duration::from_secs(15 * 60);
/// How often each replica checks whether the Monday 08:00 list (A4) is due: it goes
/// within a minute of eight.
const WEEKLY_CHECK_EVERY: Duration = Duration::from_secs(60);

/// Which workers a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workers {
    /// Every worker in one process.
    All,
    /// Eviction steps and consent (C1–C7), with the monthly statistics.
    Eviction,
    /// Housing units (H1–H5).
    Housing,
    /// Reception coverage and quotas (Q1–Q7), with the monthly verification.
    Quota,
    /// Emails.
    Mailer,
    /// The Tavolo provinciale asilo's desks (A1–A6).
    Asylum,
    /// HTTP ingestion alone, on `ingest.addr` (CONTRACT 1.2 §10): no worker.
    Ingest,
}

impl Workers {
    fn queues(self) -> Vec<WorkQueue> {
        if self == Workers::Ingest {
            return Vec::new();
        }
        let mut queues = vec![WorkQueue::Registry, WorkQueue::Unrouted];
        match self {
            Workers::All => queues.extend([
                WorkQueue::Eviction,
                WorkQueue::Housing,
                WorkQueue::Quota,
                WorkQueue::Mailer,
                WorkQueue::Asylum,
            ]),
            Workers::Eviction => queues.push(WorkQueue::Eviction),
            Workers::Housing => queues.push(WorkQueue::Housing),
            Workers::Quota => queues.push(WorkQueue::Quota),
            Workers::Mailer => queues.push(WorkQueue::Mailer),
            Workers::Asylum => queues.push(WorkQueue::Asylum),
            Workers::Ingest => {}
        }
        queues
    }
}

/// A running hub: stop it with [`App::shutdown`].
pub struct App {
    /// Where `/healthz`, `/readyz` and `/metrics` answer.
    pub http_addr: SocketAddr,
    /// Where the console answers, when `console.enabled`.
    pub console_addr: Option<SocketAddr>,
    /// Where HTTP ingestion answers, when `ingest.addr` is set.
    pub ingest_addr: Option<SocketAddr>,
    /// The database pool the workers use.
    pub pool: PgPool,
    /// Consumers and their state.
    pub health: Health,
    token: CancellationToken,
    tracker: TaskTracker,
}

impl App {
    /// Connects, migrates, and starts the workers, the relay and the HTTP endpoint.
    pub async fn start(settings: Settings, workers: Workers) -> anyhow::Result<Self> {
        // Every process runs the registry consumer, and the eviction worker holds
        // pseudonyms: no process serves real data under a public key.
        settings.eviction.check_key_for_real_data()?;
        warn_if_plaintext(&settings);
        let settings = Arc::new(settings);
        let pool = db::connect_hub(&settings).await.with_context(|| {
            format!(
                "Failed to connect to the database {} (run `raccordo setup` first, and scripts/services.sh if PostgreSQL is down)",
                settings.database.database_name().unwrap_or_default()
            )
        })?;
        db::migrate(&pool)
            .await
            .context("Failed to run the database migrations")?;
        // Asylum cases are pseudonymised under the eviction key chain too.
        let queues = workers.queues();
        if queues.contains(&WorkQueue::Eviction) || queues.contains(&WorkQueue::Asylum) {
            raccordo_eviction::keys::verify_key(&pool, &settings.eviction).await?;
        }
        let topology = Topology::from_settings(&settings);
        let health = Health::default();
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        let ctx = ConsumerContext {
            settings: settings.clone(),
            topology: topology.clone(),
            health: health.clone(),
            pool: pool.clone(),
        };
        let publishers = Arc::new(Publishers::from_settings(&settings.publishers));
        if publishers.allows_anonymous() {
            tracing::warn!(
                "publishers.allow_anonymous is true: events without an AMQP user_id are accepted \
                 from anyone who can reach the broker. For demos, tests and migrations only."
            );
        }
        for queue in workers.queues() {
            let handler = handler_for(queue, &settings, &pool, &publishers).await?;
            for index in 0..settings.amqp.consumers {
                health.expect(&format!("{}-{}", queue.name(), index));
                tracker.spawn(run_consumer(
                    ctx.clone(),
                    queue,
                    index,
                    handler.clone(),
                    token.clone(),
                ));
            }
        }
        spawn_jobs(
            workers, &settings, &pool, topology, &health, &token, &tracker,
        )?;
        let (http_addr, http) = raccordo_core::http::serve_http(
            &settings.http.addr,
            pool.clone(),
            health.clone(),
            token.clone(),
        )
        .await
        .with_context(|| format!("Failed to listen on http.addr {}", settings.http.addr))?;
        tracker.spawn(async move {
            let _ = http.await;
        });
        let console_addr = if settings.console.enabled {
            Some(start_console(&settings, &pool, Some(health.clone()), &token, &tracker).await?)
        } else {
            None
        };
        let ingest_addr =
            start_ingest(&settings, workers, &health, &pool, &token, &tracker).await?;
        tracker.close();
        Ok(Self {
            http_addr,
            console_addr,
            ingest_addr,
            pool,
            health,
            token,
            tracker,
        })
    }

    /// Waits until every consumer is attached, up to `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.health.all_consuming() {
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "Workers not consuming after {timeout:?}: is RabbitMQ running? (scripts/services.sh)"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// A token that stops the app when cancelled.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Stops taking work, lets messages in hand finish, and waits up to `grace`
    /// (CONTRACT F4: exit within 10 s). Returns false if tasks were still running.
    pub async fn shutdown(self, grace: Duration) -> bool {
        self.token.cancel();
        let finished = tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok();
        self.pool.close().await;
        finished
    }
}

/// Says at every start that `security.allow_plaintext` lets passwords and data cross the
/// network in clear, and to which peers (CONTRACT §8: "said loudly").
fn warn_if_plaintext(settings: &Settings) {
    if !settings.security.allow_plaintext {
        return;
    }
    let peers = settings.plaintext_peers();
    let named: Vec<String> = peers
        .iter()
        .map(|p| format!("{} ({})", p.key, p.host))
        .collect();
    tracing::warn!(
        peers = %if named.is_empty() { "none right now".to_owned() } else { named.join(", ") },
        "SECURITY: security.allow_plaintext is true: a broker, database or SMTP server on \
         another machine may be reached without TLS, so passwords, families' data and emails \
         can cross the network in clear. Use amqps://, sslmode=verify-full and smtps:// (or \
         ?tls=required) and set it back to false."
    );
}

/// The consume-loop handler of `queue`. Every inbound queue holds its dead letters under
/// the eviction worker's policy: an eviction event published with another routing key, or
/// a type no worker is bound to, may carry a family's data too (CONTRACT C7).
async fn handler_for(
    queue: WorkQueue,
    settings: &Settings,
    pool: &PgPool,
    publishers: &Arc<Publishers>,
) -> anyhow::Result<Arc<dyn Handler>> {
    let c7 = raccordo_eviction::holding::holding_policy(&settings.eviction);
    Ok(match queue {
        WorkQueue::Eviction => Arc::new(Inbound::new(
            pool.clone(),
            publishers.clone(),
            EvictionWorker::new(&settings.eviction),
        )),
        WorkQueue::Housing => Arc::new(WithPolicy::new(
            Inbound::new(pool.clone(), publishers.clone(), HousingWorker),
            c7,
        )),
        WorkQueue::Registry => Arc::new(WithPolicy::new(
            Inbound::new(
                pool.clone(),
                publishers.clone(),
                RegistryWorker::new(publishers.clone()),
            ),
            c7,
        )),
        WorkQueue::Quota => {
            let mut conn = pool
                .acquire()
                .await
                .context("Failed to read the registry")?;
            let comuni = raccordo_core::registry::list_comuni(&mut conn)
                .await
                .context("Failed to read the registry")?;
            Arc::new(WithPolicy::new(
                Inbound::new(
                    pool.clone(),
                    publishers.clone(),
                    QuotaWorker::new(&settings.quota).with_zone(&comuni),
                ),
                c7,
            ))
        }
        WorkQueue::Unrouted => Arc::new(WithPolicy::new(Unrouted, c7)),
        WorkQueue::Asylum => Arc::new(WithPolicy::new(
            Inbound::new(
                pool.clone(),
                publishers.clone(),
                AsylumWorker::new(&settings.eviction, &settings.asylum),
            ),
            c7,
        )),
        WorkQueue::Mailer => Arc::new(ReplayHandler::new(pool.clone())),
    })
}

/// The reader of `mail.bounce_imap_url`, when set (CONTRACT D3, §11); a plain URL to
/// another machine is refused unless `security.allow_plaintext` (§8).
fn bounce_reader(
    settings: &Settings,
    pool: &PgPool,
) -> anyhow::Result<Option<raccordo_bounces::reader::BounceReader>> {
    use secrecy::ExposeSecret;
    let Some(url) = settings.mail.bounce_imap_url.as_ref() else {
        return Ok(None);
    };
    let url = raccordo_evidence::imap::ImapUrl::parse(url.expose_secret())
        .context("Invalid mail.bounce_imap_url")?;
    if let Some(host) = url.in_clear_off_loopback()
        && !settings.security.allow_plaintext
    {
        anyhow::bail!(
            "mail.bounce_imap_url reaches {host} without TLS: use imaps:// or ?tls=required, or set security.allow_plaintext = true"
        );
    }
    Ok(Some(raccordo_bounces::reader::BounceReader {
        pool: pool.clone(),
        database: settings.database.clone(),
        url,
        policy: raccordo_core::fallback::FallbackPolicy::from_mail(&settings.mail),
        timeout: settings.mail.timeout(),
        poll: Duration::from_secs(5),
    }))
}

/// Starts what runs beside the consumers of `workers`: the outbox listener and relay, the
/// mailer's senders, the monthly jobs and the scrubber.
/// The mailer of this process: email and PEC transports, acknowledgement links (D4) and the
/// fallback of refusals (D3).
fn mailer_of(settings: &Settings, pool: &PgPool, senders: u16) -> anyhow::Result<Mailer> {
    let transport = transport_from_settings(&settings.mail).context("Invalid mail settings")?;
    let pec = pec_transport_from_settings(&settings.mail).context("Invalid mail.pec_smtp_url")?;
    Ok(Mailer::new(
        pool.clone(),
        transport,
        &settings.mail.from,
        &settings.retry,
        senders,
    )
    .with_max_in_flight(settings.mail.max_connections.max(1))
    .with_pec(pec)
    .with_ack_links(raccordo_core::ack::AckLinks::from_settings(settings))
    .with_preference_links(raccordo_core::preference_link::PreferenceLinks::from_settings(settings))
    .with_fallback(raccordo_core::fallback::FallbackPolicy::from_mail(
        &settings.mail,
    )))
}

/// The readers of delivery evidence beside the mailer, each one replica at a time: bounces
/// (D3) and PEC receipts with their clock (D2).
fn spawn_evidence_readers(
    settings: &Settings,
    pool: &PgPool,
    token: &CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<()> {
    if let Some(reader) = bounce_reader(settings, pool)? {
        tracker.spawn(reader.run(token.clone()));
    }
    if let Some(reader) =
        raccordo_evidence::pec::PecReader::from_settings(pool.clone(), Arc::new(settings.clone()))
            .context("Invalid PEC settings")?
    {
        tracker.spawn(reader.run(token.clone()));
    }
    Ok(())
}

/// The mailer's senders and what runs beside them: the evidence readers (D2, D3),
/// reminders and escalation (D5), the referents' digests (issue 22).
fn spawn_mail_jobs(
    settings: &Settings,
    pool: &PgPool,
    signal: &db::OutboxSignal,
    health: &Health,
    token: &CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<()> {
    let senders = settings.mail.senders.max(1);
    let mailer = Arc::new(mailer_of(settings, pool, senders)?);
    spawn_evidence_readers(settings, pool, token, tracker)?;
    // D5: reminders and escalation, once across replicas.
    tracker.spawn(raccordo_mailer::escalation::run_escalation(
        mailer.clone(),
        pool.clone(),
        settings.escalation.after(),
        token.clone(),
    ));
    // Issue 22: the referents' digests, once across replicas.
    tracker.spawn(raccordo_mailer::digest::run_digests(
        mailer.clone(),
        token.clone(),
    ));
    tracker.spawn(run_mailer(
        mailer,
        senders,
        signal.commits.clone(),
        settings.relay.poll(),
        health.clone(),
        token.clone(),
    ));
    Ok(())
}

fn spawn_jobs(
    workers: Workers,
    settings: &Settings,
    pool: &PgPool,
    topology: Topology,
    health: &Health,
    token: &CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<()> {
    // One LISTEN for the relay and the mailer of this process.
    let (signal, listening) = db::listen_outbox(pool.clone(), settings.relay.poll(), token.clone());
    tracker.spawn(listening);
    tracker.spawn(db::run_relay(
        pool.clone(),
        Arc::new(settings.clone()),
        topology,
        signal.clone(),
        token.clone(),
    ));
    // Retention (§8, C9): every replica checks, one prunes per day.
    tracker.spawn(crate::retention::run_daily(
        pool.clone(),
        Arc::new(settings.clone()),
        RETENTION_CHECK_EVERY,
        token.clone(),
    ));
    // D6: deliveries by state, for /metrics.
    tracker.spawn(raccordo_core::delivery_metrics::run_state_gauges(
        pool.clone(),
        token.clone(),
    ));
    let queues = workers.queues();
    if queues.contains(&WorkQueue::Mailer) {
        spawn_mail_jobs(settings, pool, &signal, health, token, tracker)?;
    }
    if queues.contains(&WorkQueue::Eviction) {
        // The eviction statistics (C6): every replica checks, one sends them per month.
        tracker.spawn(raccordo_core::schedule::run_monthly(
            pool.clone(),
            Arc::new(raccordo_eviction::stats::EvictionStatsJob),
            MONTHLY_CHECK_EVERY,
            token.clone(),
        ));
        // C4: docket numbers leave delivered revocation notices, and the `.eml` files
        // of revoked alerts leave the file transport's folder.
        tracker.spawn(raccordo_eviction::scrub::run_scrubber_with_outbox(
            pool.clone(),
            raccordo_mailer::FileOutbox::from_settings(&settings.mail),
            settings.eviction.dead_letter_ttl(),
            token.clone(),
        ));
    }
    if queues.contains(&WorkQueue::Asylum) {
        // A2: the first-intervention clocks, every replica checking, one notice per case.
        tracker.spawn(raccordo_asylum::pronta::overdue::run_clock(
            pool.clone(),
            settings.asylum.clone(),
            Arc::new(raccordo_core::clock::SystemClock),
            token.clone(),
        ));
        // The weekly priority list (A4): every replica checks, one sends it per Monday.
        tracker.spawn(raccordo_asylum::weekly::run_weekly(
            pool.clone(),
            Arc::new(raccordo_asylum::priorities::WeeklyPriorities::default()),
            Arc::new(raccordo_core::clock::SystemClock),
            WEEKLY_CHECK_EVERY,
            token.clone(),
        ));
    }
    if queues.contains(&WorkQueue::Quota) {
        // The monthly verification (Q7): every replica checks, one runs it per month.
        tracker.spawn(raccordo_core::schedule::run_monthly(
            pool.clone(),
            Arc::new(MonthlyVerification::new(&settings.quota)),
            MONTHLY_CHECK_EVERY,
            token.clone(),
        ));
    }
    Ok(())
}

/// Starts HTTP ingestion on `ingest.addr` under `tracker`, when set and the process serves
/// it (`all`, `ingest`); returns its address.
async fn start_ingest(
    settings: &Arc<Settings>,
    workers: Workers,
    health: &Health,
    pool: &PgPool,
    token: &CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<Option<SocketAddr>> {
    if !settings.ingest.enabled() {
        if workers == Workers::Ingest {
            anyhow::bail!(
                "`serve ingest` needs ingest.addr (e.g. 127.0.0.1:8088, or RACCORDO__INGEST__ADDR)"
            );
        }
        return Ok(None);
    }
    if !matches!(workers, Workers::All | Workers::Ingest) {
        return Ok(None);
    }
    let (addr, ingest) = raccordo_ingest::serve_ingest(
        settings.clone(),
        pool.clone(),
        health.clone(),
        token.clone(),
    )
    .await
    .with_context(|| format!("Failed to listen on ingest.addr {}", settings.ingest.addr))?;
    tracker.spawn(async move {
        let _ = ingest.await;
    });
    Ok(Some(addr))
}

/// Starts the console on `console.addr` under `tracker`; returns its address.
async fn start_console(
    settings: &Arc<Settings>,
    pool: &PgPool,
    health: Option<Health>,
    token: &CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<SocketAddr> {
    anyhow::ensure!(
        settings.console.login_configured(),
        "The console is enabled but nobody can log in: add users to console.operators with `raccordo console user add NAME --role ROLE` (a user without a password needs console.trusted_user_header and console.trusted_proxies)"
    );
    let (addr, console) =
        raccordo_console::serve_console(settings.clone(), pool.clone(), health, token.clone())
            .await
            .context("Failed to start the console")?;
    tracker.spawn(async move {
        let _ = console.await;
    });
    Ok(addr)
}

/// `raccordo console`: the console alone, over the configured database and broker, until
/// SIGINT or SIGTERM.
pub async fn run_console_until_stopped(mut settings: Settings) -> anyhow::Result<()> {
    settings.console.enabled = true;
    let settings = Arc::new(settings);
    let pool = db::connect_hub(&settings).await.with_context(|| {
        format!(
            "Failed to connect to the database {} (run `raccordo setup` first)",
            settings.database.database_name().unwrap_or_default()
        )
    })?;
    db::migrate(&pool)
        .await
        .context("Failed to run the database migrations")?;
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let addr = start_console(&settings, &pool, None, &token, &tracker).await?;
    tracker.close();
    tracing::info!(console = %addr, "Raccordo console is running.");
    println!("Console on http://{addr}/ (Ctrl-C stops it).");
    wait_for_signal(token.clone()).await;
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(9), tracker.wait()).await;
    pool.close().await;
    Ok(())
}

/// Runs until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn run_until_stopped(settings: Settings, workers: Workers) -> anyhow::Result<()> {
    let app = App::start(settings, workers).await?;
    tracing::info!(workers = ?workers, http = %app.http_addr, console = ?app.console_addr, ingest = ?app.ingest_addr, "Raccordo is running.");
    wait_for_signal(app.token()).await;
    tracing::info!("Stopping: finishing the messages in hand.");
    if app.shutdown(Duration::from_secs(9)).await {
        tracing::info!("Stopped.");
    } else {
        tracing::warn!(
            "Stopped with tasks still running after 9 s; their messages will be redelivered."
        );
    }
    Ok(())
}

/// Returns on SIGINT, SIGTERM or when `token` is cancelled.
pub async fn wait_for_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
            _ = token.cancelled() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::select! {
        _ = ctrl_c => {}
        _ = token.cancelled() => {}
    }
}
