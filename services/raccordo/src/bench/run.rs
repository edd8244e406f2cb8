//! The benchmark's course: its own prefix and database, the raw relay, then per scenario a
//! throughput run and one latency run per offered rate, each against a fresh `serve all`
//! child; the figures; the clean-up, also after an error or Ctrl-C.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use lapin::options::{BasicPublishOptions, ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{BasicProperties, Channel, Connection, PublisherConfirm};
use secrecy::ExposeSecret;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use raccordo_core::amqp::{Publisher, Topology, connect};
use raccordo_core::db;
use raccordo_core::settings::{MailTransportKind, Settings};
use raccordo_smtp_sink::{Behaviour, Delay};

use super::hub::Hub;
use super::load::{Scenario, Workload};
use super::mailbox::Mailbox;
use super::options::BenchArgs;
use super::progress::Progress;
use super::relay::{self, RelayResult};
use super::report::{self, CpuPerEvent, HubSettings, Machine, Report, RunResult, SmtpLoad};
use super::{procfs, stats};

/// The benchmark's own settings: prefix `<prefix>-bench-<random>`, database
/// `<name>_bench_<random>`, the chosen queue type, and what a benchmark may allow itself
/// (anonymous publishers, the development key: its data is invented).
fn bench_settings(settings: Settings, args: &BenchArgs, random: &str) -> anyhow::Result<Settings> {
    isolated_settings(settings, "bench", random, args.queue_type.into())
}

/// Settings of a measuring run of its own (`bench`, `soak`): prefix
/// `<prefix>-<what>-<random>`, database `<name>_<what>_<random>`, SMTP, and what a run on
/// invented data may allow itself (anonymous publishers, the development key).
pub(crate) fn isolated_settings(
    mut settings: Settings,
    what: &str,
    random: &str,
    queue_type: raccordo_core::settings::QueueType,
) -> anyhow::Result<Settings> {
    let name = settings.database.database_name()?;
    let mut url = url::Url::parse(settings.database.url.expose_secret())
        .context("database.url is not a URL")?;
    url.set_path(&format!("/{name}_{what}_{random}"));
    settings.database.url = url.to_string().into();
    settings.amqp.prefix = format!("{}-{what}-{random}", settings.amqp.prefix);
    settings.amqp.queue_type = queue_type;
    settings.mail.transport = MailTransportKind::Smtp;
    settings.publishers.allow_anonymous = true;
    settings.eviction.allow_development_key = true;
    Ok(settings)
}

/// Runs the benchmark; prints the table on `out`, progress on stderr. `Ok(false)` when an
/// expected email is missing or doubled.
pub async fn run(
    settings: Settings,
    args: BenchArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<bool> {
    if args.scenario == super::options::ScenarioChoice::Ingest {
        return super::ingest::run(settings, args, out).await;
    }
    if report::build_profile() == "debug" {
        eprintln!(
            "WARNING: this is a DEBUG build of raccordo: the figures will be meaningless. \
             Measure with `cargo build --release -p raccordo` and target/release/raccordo bench."
        );
    }
    let random = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let settings = bench_settings(settings, &args, &random)?;
    let started = OffsetDateTime::now_utc();
    eprintln!(
        "Benchmark on prefix {} and database {}.",
        settings.amqp.prefix,
        settings.database.database_name()?
    );
    let outcome = tokio::select! {
        outcome = measure_all(&settings, &args, &random, started) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("Interrupted")),
    };
    // Whatever happened (a child still running is killed when its handle drops).
    clean_up(&settings).await;
    let logs = hub_logs(&random);
    let report = match outcome {
        Ok(report) => report,
        Err(error) => {
            eprintln!("The hub's logs: {}", logs.join(" "));
            return Err(error);
        }
    };
    let markdown = report.markdown();
    writeln!(out, "{markdown}")?;
    let stamp = format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        started.year(),
        u8::from(started.month()),
        started.day(),
        started.hour(),
        started.minute(),
        started.second()
    );
    let [json, md] = report.write(&args.out, &stamp, args.scenario.as_str())?;
    eprintln!(
        "Results written to {} and {}.",
        json.display(),
        md.display()
    );
    if report.build == "debug" {
        eprintln!("WARNING: DEBUG build: do not compare these figures.");
    }
    if report.exact() {
        for log in &logs {
            let _ = std::fs::remove_file(log);
        }
    } else {
        eprintln!("The hub's logs: {}", logs.join(" "));
    }
    Ok(report.exact())
}

/// The log files of this benchmark's `serve all` children.
pub(super) fn hub_logs(random: &str) -> Vec<String> {
    let prefix = format!("raccordo-bench-{random}-");
    std::fs::read_dir(std::env::temp_dir())
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix))
                })
                .map(|p| p.display().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// What every run needs.
struct Bench<'a> {
    settings: &'a Settings,
    args: &'a BenchArgs,
    mailbox: Mailbox,
    publisher: Publisher,
    connection: Connection,
    /// Bench database name (for `pg_stat_database`).
    database: String,
    ticks_per_s: u64,
    log_dir: PathBuf,
    random: String,
}

async fn measure_all(
    settings: &Settings,
    args: &BenchArgs,
    random: &str,
    started: OffsetDateTime,
) -> anyhow::Result<Report> {
    let database = settings.database.database_name()?;
    let mut progress =
        Progress::start("Preparing the database, the topology and the sample registry");
    crate::setup::run(settings).await?;
    let pool = crate::database::connect_db(settings).await?;
    crate::demo::import_sample_registry(&pool).await?;
    let postgresql = db::server_version(&mut *pool.acquire().await?)
        .await
        .context("Failed to read PostgreSQL's version")?;
    pool.close().await;
    let connection = connect(&settings.amqp, "bench")
        .await
        .context("Failed to connect to RabbitMQ (scripts/services.sh starts it)")?;
    let rabbitmq = rabbitmq_version().await;
    let publisher = Publisher::open(&connection).await?;
    let mailbox = Mailbox::start().await?;
    progress.update(1, 1, "");
    progress.finish("ready");

    let machine = machine(rabbitmq, postgresql);
    let log_dir = std::env::temp_dir();
    let bench = Bench {
        settings,
        args,
        mailbox,
        publisher,
        connection,
        database,
        ticks_per_s: procfs::ticks_per_second(),
        log_dir,
        random: random.to_owned(),
    };

    let relay = measure_relay(settings, args, started).await?;

    let mut runs = Vec::new();
    let mut number = 0;
    for &latency_ms in &args.smtp_latency_ms {
        bench
            .mailbox
            .sink()
            .set_behaviour(sink_behaviour(args, latency_ms));
        for scenario in args.scenario.scenarios() {
            let mut plans: Vec<(Option<u32>, u64)> = vec![(None, args.events())];
            for &rate in &args.rates {
                if rate > 0 {
                    plans.push((Some(rate), u64::from(rate) * args.seconds));
                }
            }
            for (rate, events) in plans {
                number += 1;
                let tag = format!("B{}{number:02}", bench.random[..6].to_ascii_uppercase());
                let workload = Workload::new(scenario, tag, OffsetDateTime::now_utc());
                let mut result = bench
                    .measure(&workload, scenario, rate, events, relay.as_ref())
                    .await?;
                result.smtp_latency_ms = latency_ms;
                runs.push(result);
            }
        }
    }
    let _ = bench.connection.close(200, "bench done".into()).await;
    Ok(Report {
        started_at: started
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        build: report::build_profile(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine,
        hub: hub_settings(settings, args),
        relay,
        runs,
    })
}

/// How the SMTP sink answers in the runs at `latency_ms`.
fn sink_behaviour(args: &BenchArgs, latency_ms: u64) -> Behaviour {
    Behaviour {
        command_delay: Delay::fixed_ms(args.smtp_command_latency_ms),
        data_delay: Delay::fixed_ms(latency_ms),
        max_connections: args.smtp_connection_limit,
        transient_refusal_rate: args.smtp_refusal_rate,
    }
}

/// The machine the benchmark ran on.
pub(super) fn machine(rabbitmq: Option<String>, postgresql: String) -> Machine {
    let (cpu_model, memory, kernel) = procfs::machine();
    Machine {
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model,
        memory_mib: memory.map(|b| b / (1024 * 1024)),
        kernel,
        rabbitmq,
        postgresql: Some(postgresql),
        load_average: std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next().map(str::to_owned)),
    }
}

/// The raw two-hop relay, when asked for: the broker's ceiling on this machine.
async fn measure_relay(
    settings: &Settings,
    args: &BenchArgs,
    started: OffsetDateTime,
) -> anyhow::Result<Option<RelayResult>> {
    if args.relay_messages > 0 {
        let sample = Workload::new(Scenario::Housing, "BRELAY".into(), started).event(0);
        let progress = Progress::start(format!(
            "Raw two-hop relay, {} {} queues",
            args.relay_messages,
            settings.amqp.queue_type.as_str()
        ));
        let result = relay::run(settings, args.relay_messages, &sample.body).await?;
        progress.finish(&format!("{:.0} msg/s", result.messages_per_s));
        Ok(Some(result))
    } else {
        Ok(None)
    }
}

/// The hub's settings that shape its figures.
fn hub_settings(settings: &Settings, args: &BenchArgs) -> HubSettings {
    HubSettings {
        queue_type: settings.amqp.queue_type.as_str().to_owned(),
        prefetch: settings.amqp.prefetch,
        consumers: settings.amqp.consumers,
        database_max_connections: settings.database.max_connections,
        mail_pool_size: settings.mail.pool_size,
        mail_max_connections: args
            .mail_max_connections
            .unwrap_or(settings.mail.max_connections),
        smtp_command_latency_ms: args.smtp_command_latency_ms,
        smtp_connection_limit: args.smtp_connection_limit,
        smtp_refusal_rate: args.smtp_refusal_rate,
        mail_senders: settings.mail.senders,
        relay_batch: settings.relay.batch,
    }
}

/// RabbitMQ's version from `rabbitmqctl version` (lapin does not expose the server's
/// properties); `None` where rabbitmqctl is not installed or does not answer in 20 s.
pub(super) async fn rabbitmq_version() -> Option<String> {
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new("rabbitmqctl")
            .arg("version")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .ok()?
    .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (output.status.success() && !text.is_empty()).then_some(text)
}

/// The processes of RabbitMQ and PostgreSQL at one moment.
#[derive(Debug, Clone)]
pub(super) struct Servers {
    pub(super) rabbitmq: Vec<(u32, procfs::Stat)>,
    pub(super) postgresql: Vec<(u32, procfs::Stat)>,
}

impl Servers {
    pub(super) fn now() -> Self {
        Self {
            rabbitmq: procfs::processes_named("beam.smp"),
            postgresql: procfs::processes_named("postgres"),
        }
    }
}

/// Ticks used by a program between two snapshots; `None` where it was not seen.
pub(super) fn used(before: &[(u32, procfs::Stat)], after: &[(u32, procfs::Stat)]) -> Option<u64> {
    (!before.is_empty() && !after.is_empty()).then(|| procfs::program_delta(before, after))
}

/// `xact_commit` of `database`; `None` (shown as `?`, with a warning) when the statistics
/// cannot be read.
async fn commits(settings: &Settings, database: &str) -> Option<i64> {
    match db::commit_count(&settings.database, database).await {
        Ok(commits) => Some(commits),
        Err(error) => {
            tracing::warn!(%error, "Commits not measured: pg_stat_database is unreadable.");
            None
        }
    }
}

/// What watching one run saw.
struct Watched {
    /// Every expected email arrived and every event was routed.
    complete: bool,
    /// When the last event was confirmed.
    published: Option<Instant>,
    /// Events consumed by the hub over time.
    samples: Vec<(Instant, u64)>,
    progress: Progress,
}

impl Bench<'_> {
    /// One run: a fresh hub; for the mixed scenario, consents recorded first (on a hub of
    /// their own, so their cost stays out); then the events, throughput or paced.
    async fn measure(
        &self,
        workload: &Workload,
        scenario: Scenario,
        rate: Option<u32>,
        events: u64,
        relay: Option<&RelayResult>,
    ) -> anyhow::Result<RunResult> {
        let label = match rate {
            Some(r) => format!("{} at {r}/s for {} s", scenario.as_str(), self.args.seconds),
            None => format!("{} throughput, {events} events", scenario.as_str()),
        };
        let preparation = workload.preparation(events);
        if !preparation.is_empty() {
            let mut progress = Progress::start(format!(
                "{label}: recording {} consents first",
                preparation.len()
            ));
            let hub = self.start_hub(workload.tag(), "prep").await?;
            self.mailbox.begin(workload.tag());
            let count = preparation.len() as u64;
            let prepared = async {
                self.publish_events(preparation.into_iter(), None).await?;
                let arrived = self.mailbox.wait_all(self.stall()).await;
                // Every event handled, so none is left for the measured hub.
                let deadline = Instant::now() + self.stall();
                while hub.consumed().await.is_some_and(|c| c < count) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                anyhow::Ok(arrived && hub.consumed().await.is_none_or(|c| c >= count))
            }
            .await;
            let stopped = hub.stop().await;
            let (done, total) = self.mailbox.progress();
            anyhow::ensure!(
                prepared?,
                "The preparation did not complete: {done} of the {total} consent alerts arrived; see the hub's log in {}",
                self.log_dir.display()
            );
            stopped?;
            progress.update(done, total, "");
            progress.finish(&format!("{done} alerts"));
        }

        let hub = self.start_hub(workload.tag(), "run").await?;
        let result = self
            .measure_on(&hub, workload, scenario, rate, events, relay, &label)
            .await;
        match result {
            Ok(partial) => {
                let stopped = hub.stop().await;
                // Backends of the stopped hub flush their statistics as they exit.
                tokio::time::sleep(Duration::from_millis(500)).await;
                let after = Servers::now();
                let commits_after = commits(self.settings, &self.database).await;
                stopped?;
                Ok(partial.complete(after, commits_after, self.ticks_per_s))
            }
            Err(error) => {
                let _ = hub.stop().await;
                Err(error)
            }
        }
    }

    fn stall(&self) -> Duration {
        Duration::from_secs(self.args.stall_seconds)
    }

    async fn start_hub(&self, tag: &str, phase: &str) -> anyhow::Result<Hub> {
        let log = self
            .log_dir
            .join(format!("raccordo-bench-{}-{tag}-{phase}.log", self.random));
        let extra: Vec<(String, String)> = self
            .args
            .mail_max_connections
            .map(|n| ("RACCORDO__MAIL__MAX_CONNECTIONS".to_owned(), n.to_string()))
            .into_iter()
            .collect();
        Hub::start(self.settings, self.mailbox.port(), log, &extra).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn measure_on(
        &self,
        hub: &Hub,
        workload: &Workload,
        scenario: Scenario,
        rate: Option<u32>,
        events: u64,
        relay: Option<&RelayResult>,
        label: &str,
    ) -> anyhow::Result<Partial> {
        self.mailbox.begin(workload.tag());
        let hub_before = procfs::stat(hub.pid()).map(|s| s.own_ticks);
        let before = Servers::now();
        let commits_before = commits(self.settings, &self.database).await;
        let started = Instant::now();
        let (watched, smtp) = sample_smtp(
            self.mailbox.sink(),
            self.watch(hub, workload, rate, events, label),
        )
        .await;
        let Watched {
            complete,
            published,
            samples,
            progress,
        } = watched?;
        let hub_ticks = procfs::stat(hub.pid()).map(|s| s.own_ticks);
        let peak_rss = procfs::peak_rss(hub.pid());
        // Late doubles (a resend) would come now; they are counted, not waited for.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let outcome = self.mailbox.outcome();
        let routed_at = crossing(&samples, events);
        let end = [outcome.last_arrival, routed_at, published]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or_else(Instant::now);
        let elapsed = end.saturating_duration_since(started);
        let events_per_s = stats::per_second(events, elapsed).unwrap_or(0.0);
        let published_per_s = published
            .and_then(|p| stats::per_second(events, p.saturating_duration_since(started)))
            .unwrap_or(0.0);
        progress.finish(&format!(
            "{events_per_s:.0} events/s, emails {}/{}{}",
            outcome.received_distinct,
            outcome.expected,
            if complete { "" } else { " — STALLED" }
        ));
        if !complete {
            eprintln!(
                "No progress for {} s: {} expected email(s) missing; the hub's log: {}",
                self.args.stall_seconds,
                outcome.missing,
                hub.log.display()
            );
        }
        let result = RunResult {
            scenario: scenario.as_str(),
            mode: rate.map_or("throughput", |_| "latency"),
            offered_per_s: rate,
            events,
            emails_expected: outcome.expected,
            emails_received: outcome.received_distinct,
            missing: outcome.missing,
            duplicates: outcome.duplicates,
            unexpected: outcome.unexpected,
            seconds: elapsed.as_secs_f64(),
            published_per_s,
            events_per_s,
            emails_per_s: stats::per_second(outcome.expected, elapsed).unwrap_or(0.0),
            routed_per_s: routed_at
                .and_then(|at| stats::per_second(events, at.saturating_duration_since(started))),
            relay_ratio: relay.map(|r| events_per_s / r.messages_per_s.max(f64::EPSILON)),
            latency: stats::summarize(outcome.latencies),
            cpu_ms_per_event: CpuPerEvent::default(),
            commits: None,
            commits_per_event: None,
            peak_rss_mib: peak_rss.map(|b| b as f64 / (1024.0 * 1024.0)),
            smtp_latency_ms: 0,
            smtp,
        };
        Ok(Partial {
            result,
            before,
            hub_before,
            hub_after: hub_ticks,
            commits_before,
        })
    }

    /// Publishes the events and watches the hub route them and the emails arrive, until
    /// every expected email is in or nothing moved for the stall time.
    async fn watch(
        &self,
        hub: &Hub,
        workload: &Workload,
        rate: Option<u32>,
        events: u64,
        label: &str,
    ) -> anyhow::Result<Watched> {
        let mut progress = Progress::start(label);
        let publishing = self.publish_events((0..events).map(|seq| workload.event(seq)), rate);
        tokio::pin!(publishing);
        let mut published: Option<Instant> = None;
        let mut samples: Vec<(Instant, u64)> = Vec::new();
        let mut last_change = Instant::now();
        let mut last_state = (0, 0);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let complete = loop {
            tokio::select! {
                done = &mut publishing, if published.is_none() => {
                    done?;
                    published = Some(Instant::now());
                }
                _ = tick.tick() => {
                    let consumed = hub.consumed().await;
                    if let Some(c) = consumed {
                        samples.push((Instant::now(), c));
                    }
                    let (arrived, expected) = self.mailbox.progress();
                    let routed = consumed.unwrap_or(0);
                    progress.update(
                        arrived.max(routed.min(events) * expected / events.max(1)),
                        expected.max(1),
                        &format!("routed {routed}/{events}, emails {arrived}/{expected}"),
                    );
                    let routed_all = consumed.is_none_or(|c| c >= events);
                    if published.is_some() && arrived >= expected && routed_all {
                        break true;
                    }
                    if (arrived, routed) != last_state {
                        last_state = (arrived, routed);
                        last_change = Instant::now();
                    } else if published.is_some() && last_change.elapsed() > self.stall() {
                        break false;
                    }
                }
            }
        };
        Ok(Watched {
            complete,
            published,
            samples,
            progress,
        })
    }

    /// Publishes `events` to `{prefix}.inbound` with confirms, at most `window` unconfirmed;
    /// paced at `rate` per second when given. Records each event's publish time (paced: the
    /// time it was due, so a publisher held back by the broker counts against the hub).
    async fn publish_events(
        &self,
        events: impl Iterator<Item = super::load::Event>,
        rate: Option<u32>,
    ) -> anyhow::Result<()> {
        let exchange = Topology::from_settings(self.settings).inbound_exchange();
        publish_confirmed(
            self.publisher.channel(),
            &exchange,
            usize::try_from(self.args.window).unwrap_or(256),
            self.stall(),
            events,
            rate,
            |event, due| {
                if let Some(key) = &event.key {
                    self.mailbox.expect(key, &event.expects);
                    self.mailbox.published(key, due);
                }
            },
            None,
        )
        .await
        .map(|_| ())
    }
}

/// Publishes `events` to `exchange` on a confirm-mode `channel`, at most `window`
/// unconfirmed; paced at `rate` per second when given. `published(event, due)` is called
/// before each publish (paced: `due` is when the event was due); `confirmed` counts the
/// events confirmed so far. Returns each event's publish → confirm time; fails on a nack,
/// a lost channel, or no confirm for `stall`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    window: usize,
    stall: Duration,
    events: impl Iterator<Item = super::load::Event>,
    rate: Option<u32>,
    mut published: impl FnMut(&super::load::Event, Instant),
    confirmed: Option<Arc<AtomicU64>>,
) -> anyhow::Result<Vec<Duration>> {
    let (tx, mut rx) = mpsc::channel::<(Instant, PublisherConfirm)>(window.max(1));
    let confirmer = tokio::spawn(async move {
        let mut latencies = Vec::new();
        while let Some((sent, confirm)) = rx.recv().await {
            let confirmation = tokio::time::timeout(stall, confirm)
                .await
                .context("The broker confirmed nothing for --stall-seconds")?
                .context("Lost the broker while publishing")?;
            anyhow::ensure!(confirmation.is_ack(), "The broker refused an event (nack)");
            latencies.push(sent.elapsed());
            if let Some(count) = &confirmed {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        anyhow::Ok(latencies)
    });
    let start = tokio::time::Instant::now();
    let interval = rate.map(|r| Duration::from_secs_f64(1.0 / f64::from(r.max(1))));
    let mut outcome = Ok(());
    for (seq, event) in events.enumerate() {
        let due = match interval {
            Some(every) => {
                let due = start + every.mul_f64(seq as f64);
                tokio::time::sleep_until(due).await;
                due.into_std()
            }
            None => Instant::now(),
        };
        published(&event, due);
        let properties = BasicProperties::default()
            .with_content_type("application/cloudevents+json".into())
            .with_app_id("raccordo-bench".into())
            .with_delivery_mode(2);
        let sent = Instant::now();
        let confirm = match channel
            .basic_publish(
                exchange.into(),
                event.routing_key.into(),
                BasicPublishOptions::default(),
                &event.body,
                properties,
            )
            .await
        {
            Ok(confirm) => confirm,
            Err(error) => {
                outcome = Err(anyhow::Error::from(error).context("Failed to publish an event"));
                break;
            }
        };
        if tx.send((sent, confirm)).await.is_err() {
            break;
        }
    }
    drop(tx);
    let latencies = confirmer.await.context("The confirm task failed")?;
    outcome.and(latencies)
}

/// How often the SMTP sink's open connections and transactions are sampled.
const SMTP_SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// Runs `watching` while sampling the sink's open connections and mail transactions (the
/// emails in flight) every [`SMTP_SAMPLE_EVERY`].
async fn sample_smtp<T>(
    sink: &raccordo_smtp_sink::SmtpSink,
    watching: impl Future<Output = T>,
) -> (T, SmtpLoad) {
    sink.reset_peaks();
    let refused_before = sink.refused_connections();
    let refusals_before = sink.transient_refusals();
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(SMTP_SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tokio::pin!(watching);
    let done = loop {
        tokio::select! {
            done = &mut watching => break done,
            _ = tick.tick() => {
                samples.push((sink.open_connections(), sink.transactions_in_flight()));
            }
        }
    };
    let load = SmtpLoad::of(
        &samples,
        sink,
        sink.refused_connections() - refused_before,
        sink.transient_refusals() - refusals_before,
    );
    (done, load)
}

/// A run's figures before the hub stopped.
struct Partial {
    result: RunResult,
    before: Servers,
    hub_before: Option<u64>,
    hub_after: Option<u64>,
    commits_before: Option<i64>,
}

impl Partial {
    /// Adds the CPU and commit deltas read once the hub stopped.
    fn complete(
        mut self,
        after: Servers,
        commits_after: Option<i64>,
        ticks_per_s: u64,
    ) -> RunResult {
        let events = self.result.events as f64;
        let ms_per_event =
            |ticks: Option<u64>| ticks.map(|t| t as f64 * 1000.0 / ticks_per_s as f64 / events);
        let hub = ms_per_event(
            self.hub_after
                .zip(self.hub_before)
                .map(|(a, b)| a.saturating_sub(b)),
        );
        let rabbitmq = ms_per_event(used(&self.before.rabbitmq, &after.rabbitmq));
        let postgresql = ms_per_event(used(&self.before.postgresql, &after.postgresql));
        let total = match (hub, rabbitmq, postgresql) {
            (Some(h), Some(r), Some(p)) => Some(h + r + p),
            _ => None,
        };
        self.result.cpu_ms_per_event = CpuPerEvent {
            hub,
            rabbitmq,
            postgresql,
            total,
        };
        let commits = commits_after.zip(self.commits_before).map(|(a, b)| a - b);
        self.result.commits = commits;
        self.result.commits_per_event = commits.map(|c| c as f64 / events);
        self.result
    }
}

/// When the consumed count first reached `target`, interpolated between two samples.
fn crossing(samples: &[(Instant, u64)], target: u64) -> Option<Instant> {
    let at = samples.iter().position(|(_, c)| *c >= target)?;
    let (t1, c1) = samples[at];
    let Some(&(t0, c0)) = at.checked_sub(1).and_then(|i| samples.get(i)) else {
        return Some(t1);
    };
    let fraction = (target - c0) as f64 / (c1 - c0).max(1) as f64;
    Some(t0 + (t1 - t0).mul_f64(fraction.clamp(0.0, 1.0)))
}

/// Deletes the benchmark's queues and exchanges and drops its database; best effort.
pub(crate) async fn clean_up(settings: &Settings) {
    let topology = Topology::from_settings(settings);
    if let Ok(connection) = connect(&settings.amqp, "bench-cleanup").await {
        let mut queues = topology.all_queues();
        queues.push(format!("{}.relay.a", settings.amqp.prefix));
        queues.push(format!("{}.relay.b", settings.amqp.prefix));
        for name in queues {
            if let Ok(channel) = connection.create_channel().await {
                let _ = channel
                    .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
        }
        for exchange in topology.exchanges() {
            if let Ok(channel) = connection.create_channel().await {
                let _ = channel
                    .exchange_delete(
                        exchange.name.as_str().into(),
                        ExchangeDeleteOptions::default(),
                    )
                    .await;
            }
        }
        let _ = connection.close(200, "bench cleaned up".into()).await;
    } else {
        eprintln!(
            "Could not reach RabbitMQ to delete the queues of prefix {}.",
            settings.amqp.prefix
        );
    }
    if let Err(error) = db::drop_database(&settings.database).await {
        eprintln!("Could not drop the benchmark's database: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_routed_time_is_interpolated_between_samples() {
        let t0 = Instant::now();
        let samples = vec![
            (t0, 0),
            (t0 + Duration::from_millis(100), 40),
            (t0 + Duration::from_millis(200), 140),
        ];
        assert_eq!(
            crossing(&samples, 90),
            Some(t0 + Duration::from_millis(150))
        );
        assert_eq!(crossing(&samples, 0), Some(t0));
        assert_eq!(crossing(&samples, 141), None);
    }
}
