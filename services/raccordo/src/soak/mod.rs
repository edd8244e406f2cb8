//! `raccordo soak`: the hub for a long time at a steady rate, with faults on a schedule,
//! watched from outside as `raccordo bench` watches it (the real `serve all` in child
//! processes, the project's SMTP sink in this process). Every few seconds it samples the
//! hubs' resident memory, the window's p99 latency and the database's size; at the end it
//! checks that every expected email arrived once (a resend with the same Message-ID
//! allowed), and writes a CSV and an SVG of the run.
//!
//! # Layout
//! - [`faults`]: the schedule of faults and how they run.
//! - `publish`: a publisher that survives broker faults (same id again on a lost confirm).
//! - `samples`: the samples, the CSV and the plot.
//! - `hubs`: the `serve all` children, killed and started again by `hub-kill`.

pub mod faults;
mod hubs;
mod publish;
mod samples;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use time::OffsetDateTime;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use raccordo_core::amqp::Topology;
use raccordo_core::settings::Settings;

use crate::bench::load::{Scenario, Workload};
use crate::bench::mailbox::Mailbox;
use crate::bench::options::QueueChoice;
use crate::bench::progress::Progress;
use crate::bench::{clean_up, isolated_settings, stats};
use faults::{Action, Fault, Ran};
use hubs::Hubs;
use publish::SoakPublisher;
use samples::Sample;

/// `raccordo soak`: a steady load with faults on a schedule, for a long time.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// How long the paced load runs, in seconds (3600: the hour of the README's figures).
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(10..))]
    pub seconds: u64,
    /// Events per second: the mixed stream of `raccordo bench` (70% occupancy reports, 20%
    /// eviction steps and consents, 10% housing offers).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub rate: u32,
    /// `serve all` processes sharing the work.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=8))]
    pub hubs: u8,
    /// Seconds between samples (and progress lines).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub sample_seconds: u64,
    /// A fault, `SECONDS COMMAND`: at SECONDS into the load, COMMAND runs in `bash -c` (with
    /// SOAK_PREFIX, SOAK_DATABASE, SOAK_HUB_PIDS set), or is `hub-kill N` (kill -9 the N-th
    /// hub, started again at once). Repeatable.
    #[arg(long = "fault", value_name = "SECONDS COMMAND")]
    pub faults: Vec<Fault>,
    /// A file of faults, one `SECONDS COMMAND` per line (`#` starts a comment).
    #[arg(long, value_name = "FILE")]
    pub faults_file: Option<PathBuf>,
    /// Queue type of the hub's work queues.
    #[arg(long, value_enum, default_value = "quorum")]
    pub queue_type: QueueChoice,
    /// After the load: the run fails when no expected email arrived for this long, in seconds.
    #[arg(long, default_value_t = 180, value_parser = clap::value_parser!(u64).range(1..))]
    pub stall_seconds: u64,
    /// Where the CSV, the SVG and the summary are written.
    #[arg(long, default_value = "bench/soak")]
    pub out: PathBuf,
}

/// The end of a soak.
struct Summary {
    samples: Vec<Sample>,
    ran: Vec<Ran>,
    events: u64,
    expected: u64,
    received: u64,
    missing: u64,
    doubled: u64,
    resent: u64,
    unexpected: u64,
    republished: u64,
    latency: Option<stats::Latency>,
}

impl Summary {
    fn exact(&self) -> bool {
        self.missing == 0 && self.doubled == 0 && self.unexpected == 0
    }
}

/// Runs the soak; prints the summary on `out` and one progress line per sample on stderr.
/// `Ok(false)` when an expected email is missing or doubled.
pub async fn run(
    settings: Settings,
    args: SoakArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<bool> {
    if crate::bench::build_profile() == "debug" {
        eprintln!(
            "WARNING: this is a DEBUG build of raccordo: memory and latency will not be those of a release build."
        );
    }
    let mut schedule = args.faults.clone();
    if let Some(file) = &args.faults_file {
        schedule.extend(faults::read_file(file)?);
    }
    schedule.sort_by_key(|f| f.at_seconds);
    if let Some(late) = schedule.iter().find(|f| f.at_seconds >= args.seconds) {
        anyhow::bail!(
            "The fault `{}` at {} s comes after the load ends ({} s).",
            late.action.label(),
            late.at_seconds,
            args.seconds
        );
    }
    let random = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let settings = isolated_settings(settings, "soak", &random, args.queue_type.into())?;
    eprintln!(
        "Soak on prefix {} and database {}: {} events/s for {} s, {} hub(s), {} fault(s).",
        settings.amqp.prefix,
        settings.database.database_name()?,
        args.rate,
        args.seconds,
        args.hubs,
        schedule.len()
    );
    let started = OffsetDateTime::now_utc();
    let outcome = tokio::select! {
        outcome = soak(&settings, &args, schedule, &random) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("Interrupted")),
    };
    clean_up(&settings).await;
    let summary = outcome?;
    let stamp = started
        .format(&time::macros::format_description!(
            "[year][month][day]-[hour][minute][second]"
        ))
        .unwrap_or_else(|_| random.clone());
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("Failed to create {}", args.out.display()))?;
    let base = args.out.join(format!("soak-{stamp}"));
    let title = format!(
        "raccordo soak: {} events/s for {} min, {} hub(s), {} ({})",
        args.rate,
        args.seconds / 60,
        args.hubs,
        stamp,
        crate::bench::build_profile()
    );
    let files = [
        (
            base.with_extension("csv"),
            samples::csv(&summary.samples, &summary.ran),
        ),
        (
            base.with_extension("svg"),
            samples::svg(&summary.samples, &summary.ran, &title),
        ),
        (base.with_extension("md"), markdown(&summary, &args, &title)),
    ];
    for (path, text) in &files {
        std::fs::write(path, text)
            .with_context(|| format!("Failed to write {}", path.display()))?;
    }
    writeln!(out, "{}", files[2].1)?;
    eprintln!("Results written to {}.{{csv,svg,md}}.", base.display());
    Ok(summary.exact())
}

/// The whole run on its prefix and database (removed by the caller).
async fn soak(
    settings: &Settings,
    args: &SoakArgs,
    schedule: Vec<Fault>,
    random: &str,
) -> anyhow::Result<Summary> {
    let mut progress =
        Progress::start("Preparing the database, the topology and the sample registry");
    crate::setup::run(settings).await?;
    let pool = crate::database::connect_db(settings).await?;
    crate::demo::import_sample_registry(&pool).await?;
    let mailbox = Arc::new(Mailbox::start().await?);
    let tag = format!("S{}", random.to_uppercase());
    let workload = Workload::new(Scenario::Mixed, tag.clone(), OffsetDateTime::now_utc());
    mailbox.begin(&tag);
    let hubs = Arc::new(Mutex::new(
        Hubs::start(settings, mailbox.port(), args.hubs, random).await?,
    ));
    progress.update(1, 1, "");
    progress.finish("ready");

    let token = CancellationToken::new();
    let exchange = Topology::from_settings(settings).inbound_exchange();
    let mut publisher = SoakPublisher::new(settings.amqp.clone(), exchange);
    let events = u64::from(args.rate) * args.seconds;
    prepare(&workload, events, &mailbox, &mut publisher, &token, args).await?;
    // The run's steps are alerted under the keys their consents were: tracked anew.
    mailbox.begin(&tag);

    let published = Arc::new(AtomicU64::new(0));
    let start = tokio::time::Instant::now();
    let paced = tokio::spawn(pace(
        workload,
        events,
        args.rate,
        publisher,
        Arc::clone(&mailbox),
        Arc::clone(&published),
        token.clone(),
    ));
    let ran = Arc::new(std::sync::Mutex::new(Vec::new()));
    let faulting = tokio::spawn(run_faults(
        schedule,
        start,
        Arc::clone(&hubs),
        Arc::clone(&ran),
        fault_env(settings)?,
    ));
    let watch = Watch {
        mailbox: &mailbox,
        hubs: &hubs,
        pool: &pool,
        published: &published,
        start: start.into_std(),
        stall: Duration::from_secs(args.stall_seconds),
        every: Duration::from_secs(args.sample_seconds),
        events,
    };
    let samples = watch.run(&paced).await;
    token.cancel();
    let republished = paced.await.unwrap_or(0);
    faulting.abort();
    // Late doubles (a resend) would come now; they are counted, not waited for.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let outcome = mailbox.outcome();
    Arc::try_unwrap(hubs)
        .map_err(|_| anyhow::anyhow!("the hubs are still shared"))?
        .into_inner()
        .stop()
        .await;
    pool.close().await;
    let ran = ran.lock().map(|r| r.clone()).unwrap_or_default();
    Ok(Summary {
        samples,
        ran,
        events,
        expected: outcome.expected,
        received: outcome.received_distinct,
        missing: outcome.missing,
        doubled: outcome.doubled,
        resent: outcome.resent,
        unexpected: outcome.unexpected,
        republished,
        latency: stats::summarize(outcome.latencies),
    })
}

/// The consents of the run's consented procedures, recorded before the load so their
/// steps are alerted whatever order the hubs take them in.
async fn prepare(
    workload: &Workload,
    events: u64,
    mailbox: &Mailbox,
    publisher: &mut SoakPublisher,
    token: &CancellationToken,
    args: &SoakArgs,
) -> anyhow::Result<()> {
    let preparation = workload.preparation(events);
    let mut progress = Progress::start(format!(
        "Recording {} consents and warm-up reports first",
        preparation.len()
    ));
    let total = preparation.len() as u64;
    for (n, event) in preparation.iter().enumerate() {
        if let Some(key) = &event.key {
            mailbox.expect(key, &event.expects);
            mailbox.published(key, Instant::now());
        }
        anyhow::ensure!(publisher.publish(event, token).await, "Interrupted");
        progress.update(n as u64 + 1, total, "published");
    }
    anyhow::ensure!(
        mailbox
            .wait_all(Duration::from_secs(args.stall_seconds))
            .await,
        "The preparation's alerts did not all arrive"
    );
    progress.finish("done");
    Ok(())
}

/// Publishes the run's events at `rate`, each at the time it is due (a publisher held
/// back by a fault counts against the hub); returns how many publishes were repeated.
async fn pace(
    workload: Workload,
    events: u64,
    rate: u32,
    mut publisher: SoakPublisher,
    mailbox: Arc<Mailbox>,
    published: Arc<AtomicU64>,
    token: CancellationToken,
) -> u64 {
    let start = tokio::time::Instant::now();
    let every = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    for seq in 0..events {
        let due = start + every.mul_f64(seq as f64);
        tokio::time::sleep_until(due).await;
        let event = workload.event(seq);
        if let Some(key) = &event.key {
            mailbox.expect(key, &event.expects);
            mailbox.published(key, due.into_std());
        }
        if !publisher.publish(&event, &token).await {
            break;
        }
        published.fetch_add(1, Ordering::Relaxed);
    }
    publisher.republished
}

/// The environment of a command fault.
fn fault_env(settings: &Settings) -> anyhow::Result<Vec<(String, String)>> {
    Ok(vec![
        ("SOAK_PREFIX".to_owned(), settings.amqp.prefix.clone()),
        (
            "SOAK_DATABASE".to_owned(),
            settings.database.database_name()?,
        ),
    ])
}

/// Runs each fault at its time and records what happened.
async fn run_faults(
    schedule: Vec<Fault>,
    start: tokio::time::Instant,
    hubs: Arc<Mutex<Hubs>>,
    ran: Arc<std::sync::Mutex<Vec<Ran>>>,
    env: Vec<(String, String)>,
) {
    for fault in schedule {
        tokio::time::sleep_until(start + Duration::from_secs(fault.at_seconds)).await;
        let at_seconds = start.elapsed().as_secs_f64();
        let label = fault.action.label();
        eprintln!("[soak {}] fault: {label}", clock(at_seconds));
        let (ok, detail) = match &fault.action {
            Action::HubKill(n) => hubs.lock().await.kill_and_restart(*n).await,
            Action::Command(command) => {
                let mut env = env.clone();
                env.push(("SOAK_HUB_PIDS".to_owned(), hubs.lock().await.pids_text()));
                faults::run_command(command, &env).await
            }
        };
        if !ok {
            eprintln!(
                "[soak {}] fault FAILED: {label}: {detail}",
                clock(at_seconds)
            );
        }
        if let Ok(mut ran) = ran.lock() {
            ran.push(Ran {
                at_seconds,
                label,
                ok,
                detail,
            });
        }
    }
}

fn clock(seconds: f64) -> String {
    let s = seconds as u64;
    format!("{:02}:{:02}", s / 60, s % 60)
}

/// What the sampler looks at.
struct Watch<'a> {
    mailbox: &'a Mailbox,
    hubs: &'a Mutex<Hubs>,
    pool: &'a sqlx::PgPool,
    published: &'a AtomicU64,
    start: Instant,
    stall: Duration,
    every: Duration,
    events: u64,
}

impl Watch<'_> {
    /// Samples until the load is published and every expected email arrived, or nothing
    /// arrived for the stall time after the load.
    async fn run(&self, paced: &tokio::task::JoinHandle<u64>) -> Vec<Sample> {
        let mut samples = Vec::new();
        let mut window_start = self.start;
        let mut last_progress = (Instant::now(), 0);
        loop {
            tokio::time::sleep(self.every).await;
            let now = Instant::now();
            let sample = self.sample(window_start, now).await;
            window_start = now;
            eprintln!(
                "[soak {}] published {}/{}, emails {}/{}, p99 {}, RSS {}, database {}, ready {}/{}",
                clock(sample.t),
                sample.published,
                self.events,
                sample.arrived,
                sample.expected,
                sample.p99_ms.map_or("-".into(), |v| format!("{v:.0} ms")),
                sample.rss_mib.map_or("-".into(), |v| format!("{v:.0} MiB")),
                sample
                    .tables_mib
                    .map_or("-".into(), |v| format!("{v:.0} MiB")),
                sample.ready,
                sample.hubs
            );
            let load_done = paced.is_finished();
            let all_in = sample.arrived >= sample.expected;
            if sample.arrived != last_progress.1 {
                last_progress = (now, sample.arrived);
            }
            samples.push(sample);
            if load_done && (all_in || last_progress.0.elapsed() > self.stall) {
                return samples;
            }
        }
    }

    async fn sample(&self, from: Instant, to: Instant) -> Sample {
        let (arrived, expected) = self.mailbox.progress();
        let window = self.mailbox.latencies_between(from, to);
        let window_emails = window.len();
        let (rss_mib, ready, hubs) = self.hubs.lock().await.observe().await;
        Sample {
            t: to.saturating_duration_since(self.start).as_secs_f64(),
            published: self.published.load(Ordering::Relaxed),
            arrived,
            expected,
            p99_ms: samples::p99_ms(window),
            window_emails,
            rss_mib,
            tables_mib: database_mib(self.pool).await,
            ready,
            hubs,
        }
    }
}

/// The size of every table of the hub's schema with its indexes and TOAST; `None` when the
/// database does not answer within 3 s (a failover, a partition).
async fn database_mib(pool: &sqlx::PgPool) -> Option<f64> {
    let query = sqlx::query_scalar::<_, i64>(
        "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
         WHERE c.relkind IN ('r', 'm') AND c.relnamespace = 'public'::regnamespace",
    )
    .fetch_one(pool);
    match tokio::time::timeout(Duration::from_secs(3), query).await {
        Ok(Ok(bytes)) => Some(bytes as f64 / (1024.0 * 1024.0)),
        _ => None,
    }
}

/// MiB the database grew per 1,000 events published, over each half of the load: equal
/// halves mean no bloat, whatever the data itself adds.
fn growth(samples: &[Sample], end: f64) -> String {
    let per_thousand = |from: f64, to: f64| {
        let inside: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.t >= from && s.t <= to && s.tables_mib.is_some())
            .collect();
        let (first, last) = (inside.first()?, inside.last()?);
        let events = last
            .published
            .checked_sub(first.published)
            .filter(|&e| e > 0)?;
        Some((last.tables_mib? - first.tables_mib?) * 1000.0 / events as f64)
    };
    match (per_thousand(0.0, end / 2.0), per_thousand(end / 2.0, end)) {
        (Some(a), Some(b)) => format!("{a:.2} / {b:.2}"),
        _ => "-".to_owned(),
    }
}

fn markdown(summary: &Summary, args: &SoakArgs, title: &str) -> String {
    let quarter = args.seconds as f64 / 4.0;
    let mean = |value: fn(&Sample) -> Option<f64>, from: f64, to: f64| {
        samples::mean_between(&summary.samples, value, from, to)
            .map_or("-".to_owned(), |v| format!("{v:.1}"))
    };
    let end = args.seconds as f64;
    let mut text = format!(
        "## {title}\n\n\
         | | |\n|---|---|\n\
         | events published | {} ({} repeated after a broker fault) |\n\
         | emails expected / received | {} / {} |\n\
         | missing | {} |\n\
         | doubled (another Message-ID) | {} |\n\
         | resent (same Message-ID) | {} |\n\
         | unexpected | {} |\n\
         | latency p50 / p99 / max | {} |\n\
         | RSS of the hubs, first / last quarter (MiB) | {} / {} |\n\
         | p99 of the windows, first / last quarter (ms) | {} / {} |\n\
         | database, first / last quarter (MiB) | {} / {} |\n\
         | database growth per 1,000 events, first / second half (MiB) | {} |\n",
        summary.events,
        summary.republished,
        summary.expected,
        summary.received,
        summary.missing,
        summary.doubled,
        summary.resent,
        summary.unexpected,
        summary.latency.map_or("-".to_owned(), |l| format!(
            "{:.0} / {:.0} / {:.0} ms",
            l.p50_ms, l.p99_ms, l.max_ms
        )),
        mean(|s| s.rss_mib, 0.0, quarter),
        mean(|s| s.rss_mib, end - quarter, end),
        mean(|s| s.p99_ms, 0.0, quarter),
        mean(|s| s.p99_ms, end - quarter, end),
        mean(|s| s.tables_mib, 0.0, quarter),
        mean(|s| s.tables_mib, end - quarter, end),
        growth(&summary.samples, end),
    );
    if !summary.ran.is_empty() {
        text.push_str("\n| fault at | what | outcome |\n|---|---|---|\n");
        for fault in &summary.ran {
            text.push_str(&format!(
                "| {} | `{}` | {}{} |\n",
                clock(fault.at_seconds),
                fault.label.replace('|', "\\|"),
                if fault.ok { "ok" } else { "FAILED" },
                if fault.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", fault.detail.replace('|', "\\|"))
                }
            ));
        }
    }
    text.push_str(if summary.exact() {
        "\nEvery expected email arrived, none doubled.\n"
    } else {
        "\nFAILED: emails missing, doubled or unexpected (see above).\n"
    });
    text
}
