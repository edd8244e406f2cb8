//! `raccordo bench --scenario ingest`: the HTTP door's own cost (issue 21).
//!
//! On its own prefix and database (as every benchmark), with a publisher of housing offers
//! added to the configuration and a token made for it, it starts `raccordo serve ingest`
//! (this binary, no workers) and sends the same number of valid, distinct housing offers in
//! each mode: structured `POST /v1/events` and batches, over one kept-alive connection and
//! over many; then publishes them itself to `{prefix}.inbound` with confirms, for
//! comparison. Nothing consumes them: each mode measures only HTTP parsing, validation,
//! authorization, publishing and confirms, and the queues are purged between modes. Events
//! and requests per second, request latency, and the CPU of the ingest child, RabbitMQ,
//! PostgreSQL and the benchmark itself, per event. Queues, exchanges, database and the
//! configuration file are removed at the end, also after an error or Ctrl-C.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use lapin::Connection;
use lapin::options::QueuePurgeOptions;
use time::OffsetDateTime;

use raccordo_core::amqp::{Publisher, Topology, connect};
use raccordo_core::db;
use raccordo_core::settings::Settings;

use super::hub::{Hub, Ready, free_port, http_get};
use super::ingest_load::{self, BATCH, HttpRun, Request, STRUCTURED};
use super::ingest_report::{
    CpuUs, HEADER, IngestReport, IngestRow, TokenLookup, Transport, table_row,
};
use super::load::{Event, Scenario, Workload};
use super::options::BenchArgs;
use super::progress::Progress;
use super::run::{Servers, clean_up, hub_logs, machine, rabbitmq_version, used};
use super::{isolated_settings, procfs, report, stats};

/// The publisher the benchmark adds to the configuration, and its rate: high enough never
/// to throttle.
const USER: &str = "bench_ingest";
const RATE_PER_S: f64 = 1_000_000.0;
/// Lookups of the side measurement of the token lookup alone.
const TOKEN_LOOKUPS: u64 = 2000;
/// Pause after purging the queues, so a mode does not pay for the previous one.
const SETTLE: Duration = Duration::from_secs(2);

/// Runs the ingestion benchmark; prints the table on `out` as it goes, progress on stderr.
/// Fails, after writing the results, when a request was not answered 202.
pub(super) async fn run(
    settings: Settings,
    args: BenchArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<bool> {
    if report::build_profile() == "debug" {
        eprintln!(
            "WARNING: this is a DEBUG build of raccordo: the figures will be meaningless. \
             Measure with `cargo build --release -p raccordo` and target/release/raccordo bench."
        );
    }
    let random = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let settings = isolated_settings(settings, "bench", &random, args.queue_type.into())?;
    let started = OffsetDateTime::now_utc();
    eprintln!(
        "Ingestion benchmark on prefix {} and database {}, {} events per mode.",
        settings.amqp.prefix,
        settings.database.database_name()?,
        args.events()
    );
    let config = std::env::temp_dir().join(format!("raccordo-bench-{random}-ingest.toml"));
    let outcome = tokio::select! {
        outcome = async {
            write_config(&config)?;
            measure(&settings, &args, &random, &config, started, out).await
        } => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("Interrupted")),
    };
    // Whatever happened (a child still running is killed when its handle drops).
    clean_up(&settings).await;
    let _ = std::fs::remove_file(&config);
    let logs = hub_logs(&random);
    let report = match outcome {
        Ok(report) => report,
        Err(error) => {
            eprintln!("The ingest child's log: {}", logs.join(" "));
            return Err(error);
        }
    };
    finish(&report, &args, started, &logs, out)
}

/// Writes the files, prints the conclusion; fails when a request was not answered 202.
fn finish(
    report: &IngestReport,
    args: &BenchArgs,
    started: OffsetDateTime,
    logs: &[String],
    out: &mut (dyn Write + Send),
) -> anyhow::Result<bool> {
    writeln!(out)?;
    for line in report.conclusions() {
        writeln!(out, "{line}")?;
    }
    let [json, md] = report.write(&args.out, &stamp(started))?;
    eprintln!(
        "Results written to {} and {}.",
        json.display(),
        md.display()
    );
    if report.build == "debug" {
        eprintln!("WARNING: DEBUG build: do not compare these figures.");
    }
    let errors = report.errors();
    if errors > 0 {
        eprintln!("The ingest child's log: {}", logs.join(" "));
        anyhow::bail!("{errors} request(s) were not answered 202 (see the table's notes)");
    }
    for log in logs {
        let _ = std::fs::remove_file(log);
    }
    Ok(true)
}

/// `YYYYMMDD-HHMMSS` of `at`, as the other results are named.
fn stamp(at: OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// The configuration of the child: the operator's (`RACCORDO_CONFIG`, TOML) with the
/// benchmark's publisher added.
fn write_config(path: &Path) -> anyhow::Result<()> {
    let base = match std::env::var_os("RACCORDO_CONFIG") {
        None => String::new(),
        Some(file) => {
            let mut file = PathBuf::from(file);
            if file.extension().is_none() && !file.exists() {
                file.set_extension("toml");
            }
            anyhow::ensure!(
                file.extension().is_none_or(|e| e == "toml"),
                "bench --scenario ingest adds a [publishers.{USER}] table to RACCORDO_CONFIG, which must then be TOML: {} is not",
                file.display()
            );
            std::fs::read_to_string(&file)
                .with_context(|| format!("Failed to read RACCORDO_CONFIG {}", file.display()))?
        }
    };
    std::fs::write(path, ingest_load::with_publisher(&base, USER, RATE_PER_S))
        .with_context(|| format!("Failed to write {}", path.display()))
}

/// What every mode needs.
struct Door<'a> {
    settings: &'a Settings,
    args: &'a BenchArgs,
    token: String,
    connection: Connection,
    publisher: Publisher,
    ticks_per_s: u64,
    random: String,
}

async fn measure(
    settings: &Settings,
    args: &BenchArgs,
    random: &str,
    config: &Path,
    started: OffsetDateTime,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<IngestReport> {
    let (door, postgresql, token_lookup) = prepare(settings, args, random).await?;
    let rabbitmq = rabbitmq_version().await;
    let machine = machine(rabbitmq, postgresql);
    let addr = free_port().context("Failed to find a free port for ingest.addr")?;
    let log = std::env::temp_dir().join(format!("raccordo-bench-{random}-INGEST-serve.log"));
    let extra = [
        ("RACCORDO__INGEST__ADDR".to_owned(), addr.to_string()),
        ("RACCORDO_CONFIG".to_owned(), config.display().to_string()),
    ];
    let progress = Progress::start(format!("Starting raccordo serve ingest on {addr}"));
    let hub =
        Hub::start_serving(settings, "ingest", Ready::Listening(addr), 1, log, &extra).await?;
    progress.finish(&format!("pid {}", hub.pid()));
    let rows = door.modes(&hub, addr, out).await;
    let stopped = hub.stop().await;
    let _ = door.connection.close(200, "bench done".into()).await;
    let rows = rows?;
    stopped?;
    Ok(IngestReport {
        started_at: started
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        build: report::build_profile(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine,
        load_average_after: load_average().map(|l| format!("{l:.2}")),
        queue_type: settings.amqp.queue_type.as_str().to_owned(),
        database_max_connections: settings.database.max_connections,
        window: args.window,
        token_lookup: Some(token_lookup),
        rows,
    })
}

/// The database and topology (as `raccordo setup`), the publisher's token, the broker
/// connection of the AMQP mode, and the token lookup measured alone.
async fn prepare<'a>(
    settings: &'a Settings,
    args: &'a BenchArgs,
    random: &str,
) -> anyhow::Result<(Door<'a>, String, TokenLookup)> {
    let mut progress = Progress::start("Preparing the database, the topology and a token");
    crate::setup::run(settings).await?;
    let pool = crate::database::connect_db(settings).await?;
    let postgresql = db::server_version(&mut *pool.acquire().await?)
        .await
        .context("Failed to read PostgreSQL's version")?;
    let (_, token) = raccordo_ingest::tokens::add(&pool, USER)
        .await
        .context("Failed to store the benchmark's token")?;
    let connection = connect(&settings.amqp, "bench")
        .await
        .context("Failed to connect to RabbitMQ (scripts/services.sh starts it)")?;
    let publisher = Publisher::open(&connection).await?;
    progress.update(1, 1, "");
    progress.finish("ready");
    let ticks_per_s = procfs::ticks_per_second();
    let lookup = token_lookup(&pool, &token, ticks_per_s).await;
    pool.close().await;
    Ok((
        Door {
            settings,
            args,
            token,
            connection,
            publisher,
            ticks_per_s,
            random: random.to_owned(),
        },
        postgresql,
        lookup?,
    ))
}

/// The per-request token lookup of the ingest server, alone: [`TOKEN_LOOKUPS`] sequential
/// `raccordo_ingest::tokens::publisher_of` on one pooled connection.
async fn token_lookup(
    pool: &sqlx::PgPool,
    token: &str,
    ticks_per_s: u64,
) -> anyhow::Result<TokenLookup> {
    let progress = Progress::start(format!("Token lookup alone, {TOKEN_LOOKUPS} times"));
    let before = Sample::now(None);
    let mut latencies = Vec::with_capacity(TOKEN_LOOKUPS as usize);
    for _ in 0..TOKEN_LOOKUPS {
        let sent = Instant::now();
        let user = raccordo_ingest::tokens::publisher_of(pool, token)
            .await
            .context("The token lookup failed")?;
        latencies.push(sent.elapsed());
        anyhow::ensure!(user.as_deref() == Some(USER), "The token was not found");
    }
    let after = Sample::now(None);
    let cpu = before.cpu_until(&after, TOKEN_LOOKUPS, ticks_per_s);
    let latency = stats::summarize(latencies);
    progress.finish(&format!(
        "p50 {:.3} ms, PostgreSQL {:.0} µs CPU per lookup",
        latency.map_or(0.0, |l| l.p50_ms),
        cpu.postgresql.unwrap_or(0.0)
    ));
    Ok(TokenLookup {
        lookups: TOKEN_LOOKUPS,
        latency,
        postgresql_us_per_lookup: cpu.postgresql,
        client_us_per_lookup: cpu.client,
    })
}

/// One mode: how its events travel, over how many connections, in requests of how many.
#[derive(Debug, Clone, Copy)]
struct Mode {
    transport: Transport,
    connections: u64,
    batch: u64,
}

/// The CPU counters and the load at one moment.
struct Sample {
    ingest: Option<u64>,
    client: Option<u64>,
    servers: Servers,
    load: Option<f64>,
}

impl Sample {
    fn now(ingest_pid: Option<u32>) -> Self {
        Self {
            ingest: ingest_pid.and_then(procfs::stat).map(|s| s.own_ticks),
            client: procfs::stat(std::process::id()).map(|s| s.own_ticks),
            servers: Servers::now(),
            load: load_average(),
        }
    }

    /// CPU microseconds per unit (event, lookup) from this sample to `after`.
    fn cpu_until(&self, after: &Sample, units: u64, ticks_per_s: u64) -> CpuUs {
        let us = |ticks: Option<u64>| {
            ticks.map(|t| t as f64 * 1e6 / ticks_per_s.max(1) as f64 / units.max(1) as f64)
        };
        let delta = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| a.saturating_sub(b));
        CpuUs {
            ingest: us(delta(after.ingest, self.ingest)),
            rabbitmq: us(used(&self.servers.rabbitmq, &after.servers.rabbitmq)),
            postgresql: us(used(&self.servers.postgresql, &after.servers.postgresql)),
            client: us(delta(after.client, self.client)),
        }
    }
}

/// The 1-minute load average.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Door<'_> {
    /// Every mode, each row printed as it ends.
    async fn modes(
        &self,
        hub: &Hub,
        addr: SocketAddr,
        out: &mut (dyn Write + Send),
    ) -> anyhow::Result<Vec<IngestRow>> {
        self.warm_up(addr).await?;
        let (conns, batch) = (self.args.connections, self.args.batch);
        let modes = [(1, 1), (conns, 1), (1, batch), (conns, batch)]
            .into_iter()
            .map(|(connections, batch)| Mode {
                transport: Transport::Http,
                connections,
                batch,
            })
            .chain([Mode {
                transport: Transport::Amqp,
                connections: 1,
                batch: 1,
            }]);
        write!(out, "\n{HEADER}")?;
        out.flush()?;
        let mut rows = Vec::new();
        for (number, mode) in modes.enumerate() {
            self.purge().await;
            tokio::time::sleep(SETTLE).await;
            let events = self.events(number);
            let row = match mode.transport {
                Transport::Http => self.http_mode(hub, addr, mode, &events).await?,
                Transport::Amqp => self.amqp_mode(hub, events).await?,
            };
            write!(out, "{}", table_row(&row))?;
            out.flush()?;
            rows.push(row);
        }
        self.purge().await;
        Ok(rows)
    }

    /// The events of mode `number`: distinct housing offers, ids unique across modes.
    fn events(&self, number: usize) -> Vec<Event> {
        let tag = format!("BI{}{number}", self.random[..5].to_ascii_uppercase());
        let workload = Workload::new(Scenario::Housing, tag, OffsetDateTime::now_utc());
        (0..self.args.events())
            .map(|seq| workload.event(seq))
            .collect()
    }

    /// One structured request and one batch before measuring: the ingest server opens its
    /// broker connection on the first, and a refused token is told at once.
    async fn warm_up(&self, addr: SocketAddr) -> anyhow::Result<()> {
        let events: Vec<Vec<u8>> = self.events(9).into_iter().take(3).map(|e| e.body).collect();
        let mut progress = Progress::start("Warming up the ingest server");
        for (content_type, batch) in [(STRUCTURED, 1), (BATCH, 2)] {
            let requests = Arc::new(ingest_load::requests(&events[..batch], batch));
            let run =
                ingest_load::run_http(addr, &self.token, content_type, requests, 1, &mut progress)
                    .await?;
            anyhow::ensure!(
                run.errors == 0,
                "The ingest server refused the warm-up request ({content_type}): {}",
                run.error_samples.join(" · ")
            );
        }
        progress.finish("202");
        Ok(())
    }

    async fn http_mode(
        &self,
        hub: &Hub,
        addr: SocketAddr,
        mode: Mode,
        events: &[Event],
    ) -> anyhow::Result<IngestRow> {
        let bodies: Vec<Vec<u8>> = events.iter().map(|e| e.body.clone()).collect();
        let batch = usize::try_from(mode.batch).unwrap_or(1);
        let requests: Arc<Vec<Request>> = Arc::new(ingest_load::requests(&bodies, batch));
        drop(bodies);
        let content_type = if mode.batch > 1 { BATCH } else { STRUCTURED };
        let label = format!(
            "{} on {} connection{}, {} events",
            if mode.batch > 1 {
                format!("HTTP batch of {}", mode.batch)
            } else {
                "HTTP structured".into()
            },
            mode.connections,
            if mode.connections == 1 { "" } else { "s" },
            events.len()
        );
        let mut progress = Progress::start(label);
        let server_before = server_time(hub).await;
        let before = Sample::now(Some(hub.pid()));
        let connections = usize::try_from(mode.connections).unwrap_or(1);
        let run = ingest_load::run_http(
            addr,
            &self.token,
            content_type,
            requests,
            connections,
            &mut progress,
        )
        .await?;
        let after = Sample::now(Some(hub.pid()));
        let server_after = server_time(hub).await;
        let server_mean_ms = server_before
            .zip(server_after)
            .and_then(|((s0, c0), (s1, c1))| (c1 > c0).then(|| (s1 - s0) / (c1 - c0) * 1000.0));
        let row = self.row(
            mode,
            events.len() as u64,
            run,
            &before,
            &after,
            server_mean_ms,
        );
        progress.finish(&format!(
            "{:.0} events/s, {:.0} requests/s, {:.0} µs ingest CPU per event, {} error(s)",
            row.events_per_s,
            row.requests_per_s,
            row.cpu_us_per_event.ingest.unwrap_or(0.0),
            row.errors
        ));
        Ok(row)
    }

    /// The same events published by the benchmark itself, with confirms (at most
    /// `--window` unconfirmed): no hub in the way.
    async fn amqp_mode(&self, hub: &Hub, events: Vec<Event>) -> anyhow::Result<IngestRow> {
        let total = events.len() as u64;
        let mut progress = Progress::start(format!(
            "AMQP with confirms (the bench publishes), {total} events"
        ));
        let exchange = Topology::from_settings(self.settings).inbound_exchange();
        let confirmed = Arc::new(AtomicU64::new(0));
        let window = usize::try_from(self.args.window).unwrap_or(256);
        let stall = Duration::from_secs(self.args.stall_seconds);
        let before = Sample::now(Some(hub.pid()));
        let started = Instant::now();
        let publishing = super::run::publish_confirmed(
            self.publisher.channel(),
            &exchange,
            window,
            stall,
            events.into_iter(),
            None,
            |_, _| {},
            Some(confirmed.clone()),
        );
        tokio::pin!(publishing);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let latencies = loop {
            tokio::select! {
                done = &mut publishing => break done?,
                _ = tick.tick() => {
                    let n = confirmed.load(Ordering::Relaxed);
                    let rate = n as f64 / started.elapsed().as_secs_f64().max(1e-3);
                    progress.update(n, total, &format!("{rate:.0} events/s confirmed"));
                }
            }
        };
        let elapsed = started.elapsed();
        let after = Sample::now(Some(hub.pid()));
        let run = HttpRun {
            requests: total,
            latencies,
            elapsed,
            ..HttpRun::default()
        };
        let row = self.row(
            Mode {
                transport: Transport::Amqp,
                connections: 1,
                batch: 1,
            },
            total,
            run,
            &before,
            &after,
            None,
        );
        progress.finish(&format!(
            "{:.0} events/s, {:.0} µs CPU per event on the publishing side",
            row.events_per_s,
            row.cpu_us_per_event.client.unwrap_or(0.0)
        ));
        Ok(row)
    }

    fn row(
        &self,
        mode: Mode,
        events: u64,
        run: HttpRun,
        before: &Sample,
        after: &Sample,
        server_mean_ms: Option<f64>,
    ) -> IngestRow {
        let mut cpu = before.cpu_until(after, events, self.ticks_per_s);
        if mode.transport == Transport::Amqp {
            // Nothing of the hub is in the way: its (idle) child is not this mode's cost.
            cpu.ingest = None;
        }
        IngestRow {
            transport: mode.transport,
            connections: mode.connections,
            batch: mode.batch,
            events,
            requests: run.requests,
            errors: run.errors,
            error_samples: run.error_samples,
            seconds: run.elapsed.as_secs_f64(),
            events_per_s: stats::per_second(events, run.elapsed).unwrap_or(0.0),
            requests_per_s: stats::per_second(run.requests, run.elapsed).unwrap_or(0.0),
            latency: stats::summarize(run.latencies),
            server_mean_ms,
            cpu_us_per_event: cpu,
            load_before: before.load,
            load_after: after.load,
        }
    }

    /// Empties every queue of the prefix: the events of one mode must not weigh on the next.
    async fn purge(&self) {
        for queue in Topology::from_settings(self.settings).all_queues() {
            if let Ok(channel) = self.connection.create_channel().await {
                let _ = channel
                    .queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
                    .await;
                let _ = channel.close(200, "purged".into()).await;
            }
        }
    }
}

/// `raccordo_ingest_request_seconds` (sum, count) of the ingest child's `/metrics`.
async fn server_time(hub: &Hub) -> Option<(f64, f64)> {
    let (status, body) = http_get(hub.http, "/metrics").await.ok()?;
    (status == 200)
        .then(|| ingest_load::sum_and_count(&body, "raccordo_ingest_request_seconds"))
        .flatten()
}
