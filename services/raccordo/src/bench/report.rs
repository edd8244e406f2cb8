//! The results: one row per run, the machine they were measured on, the raw relay; as a
//! markdown table (stdout and a `.md` file) and as JSON, under `bench/results/`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use super::relay::RelayResult;
use super::stats::Latency;

/// `release` or `debug`: figures of a debug build are meaningless.
pub(crate) fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// The machine and the services measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    pub nproc: usize,
    pub cpu_model: Option<String>,
    pub memory_mib: Option<u64>,
    pub kernel: Option<String>,
    pub rabbitmq: Option<String>,
    pub postgresql: Option<String>,
    /// 1-minute load average when the benchmark started: a busy machine skews everything.
    pub load_average: Option<String>,
}

/// The hub's settings that shape its figures, as the child process ran with them.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HubSettings {
    pub queue_type: String,
    pub prefetch: u16,
    pub consumers: u16,
    pub database_max_connections: u32,
    pub mail_pool_size: usize,
    pub mail_max_connections: usize,
    /// The SMTP sink's delay before every reply but the end of DATA, its connection limit
    /// and its rate of transient refusals.
    pub smtp_command_latency_ms: u64,
    pub smtp_connection_limit: Option<usize>,
    pub smtp_refusal_rate: f64,
    pub mail_senders: u16,
    pub relay_batch: i64,
}

impl HubSettings {
    /// The settings in one sentence, for the markdown report.
    fn line(&self) -> String {
        format!(
            "Hub: {} queues, prefetch {}, {} consumers per worker, {} database connections, SMTP pool {} (at most {}), {} mail senders, relay batch {}. SMTP sink: {} ms per command, connection limit {}, transient refusals {:.1}%.",
            self.queue_type,
            self.prefetch,
            self.consumers,
            self.database_max_connections,
            self.mail_pool_size,
            self.mail_max_connections,
            self.mail_senders,
            self.relay_batch,
            self.smtp_command_latency_ms,
            self.smtp_connection_limit
                .map_or("none".to_owned(), |l| l.to_string()),
            self.smtp_refusal_rate * 100.0,
        )
    }
}

/// The SMTP side of one run, seen from the sink: connections open and emails in flight
/// (mail transactions open), sampled every 10 ms.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct SmtpLoad {
    pub connections_peak: usize,
    pub connections_mean: f64,
    pub in_flight_peak: usize,
    pub in_flight_mean: f64,
    /// Connections refused over the sink's limit, and MAIL FROM refused transiently.
    pub connections_refused: u64,
    pub transient_refusals: u64,
    /// (connections, emails in flight), each the mean over 100 ms, from the run's start.
    pub over_time: Vec<(f64, f64)>,
}

impl SmtpLoad {
    /// From the samples (every 10 ms) and the sink's exact peaks.
    pub fn of(
        samples: &[(usize, usize)],
        sink: &raccordo_smtp_sink::SmtpSink,
        connections_refused: u64,
        transient_refusals: u64,
    ) -> SmtpLoad {
        let mean = |values: &mut dyn Iterator<Item = usize>, n: usize| {
            values.sum::<usize>() as f64 / n.max(1) as f64
        };
        let over_time = samples
            .chunks(10)
            .map(|c| {
                (
                    mean(&mut c.iter().map(|s| s.0), c.len()),
                    mean(&mut c.iter().map(|s| s.1), c.len()),
                )
            })
            .collect();
        SmtpLoad {
            connections_peak: sink.peak_connections(),
            connections_mean: mean(&mut samples.iter().map(|s| s.0), samples.len()),
            in_flight_peak: sink.peak_transactions(),
            in_flight_mean: mean(&mut samples.iter().map(|s| s.1), samples.len()),
            connections_refused,
            transient_refusals,
            over_time,
        }
    }
}

/// CPU milliseconds per event, from `/proc`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct CpuPerEvent {
    /// The `serve all` child (every thread).
    pub hub: Option<f64>,
    /// Every `beam.smp` process.
    pub rabbitmq: Option<f64>,
    /// Every `postgres` process (and backends that exited during the run).
    pub postgresql: Option<f64>,
    pub total: Option<f64>,
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunResult {
    pub scenario: &'static str,
    /// `throughput`, or `latency` at `offered_per_s`.
    pub mode: &'static str,
    pub offered_per_s: Option<u32>,
    pub events: u64,
    pub emails_expected: u64,
    /// Distinct Message-IDs received for expected emails.
    pub emails_received: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub unexpected: u64,
    /// First publish → last expected email arrived and every event handled.
    pub seconds: f64,
    /// Events published (and confirmed) per second.
    pub published_per_s: f64,
    /// End to end.
    pub events_per_s: f64,
    pub emails_per_s: f64,
    /// Inbound events handled per second (`raccordo_messages_consumed_total`).
    pub routed_per_s: Option<f64>,
    /// `events_per_s` / the raw relay's messages per second.
    pub relay_ratio: Option<f64>,
    /// Publish (or, paced, when the event was due) → SMTP accepted.
    pub latency: Option<Latency>,
    pub cpu_ms_per_event: CpuPerEvent,
    /// `pg_stat_database.xact_commit` of the benchmark's database.
    pub commits: Option<i64>,
    pub commits_per_event: Option<f64>,
    /// `VmHWM` of `serve all` over this run (a fresh process per run).
    pub peak_rss_mib: Option<f64>,
    /// The SMTP sink's delay before accepting each email.
    pub smtp_latency_ms: u64,
    pub smtp: SmtpLoad,
}

/// Everything one invocation measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// UTC, RFC 3339.
    pub started_at: String,
    pub build: &'static str,
    pub command: String,
    pub machine: Machine,
    pub hub: HubSettings,
    pub relay: Option<RelayResult>,
    pub runs: Vec<RunResult>,
}

impl Report {
    /// Whether every run received every expected email exactly once.
    pub fn exact(&self) -> bool {
        self.runs
            .iter()
            .all(|r| r.missing == 0 && r.duplicates == 0)
    }

    /// The results as markdown: a heading with the machine, then the table.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(out, "## raccordo bench — {}\n", self.started_at);
        if self.build == "debug" {
            let _ = writeln!(
                out,
                "> **DEBUG BUILD: these figures are meaningless.** Build with `cargo build --release -p raccordo`.\n"
            );
        }
        let _ = writeln!(
            out,
            "`{}` · {} build · {} CPU ({}) · {} MiB · Linux {} · RabbitMQ {} · PostgreSQL {} · load {}\n",
            self.command,
            self.build,
            m.nproc,
            m.cpu_model.as_deref().unwrap_or("?"),
            m.memory_mib.map_or("?".into(), |v| v.to_string()),
            m.kernel.as_deref().unwrap_or("?"),
            m.rabbitmq.as_deref().unwrap_or("?"),
            m.postgresql.as_deref().unwrap_or("?"),
            m.load_average.as_deref().unwrap_or("?"),
        );
        let _ = writeln!(out, "{}\n", self.hub.line());
        if let Some(r) = &self.relay {
            let _ = writeln!(
                out,
                "Raw two-hop relay ({} queues, {} messages): **{:.0} msg/s**.\n",
                r.queue_type, r.messages, r.messages_per_s
            );
        }
        out.push_str(
            "| scenario | SMTP ms | run | events | emails | events/s | emails/s | routed/s | of relay | latency p50 / p95 / p99 / max (ms) | SMTP connections peak / mean | emails in flight peak / mean | 421 connects / refusals | CPU ms/event hub / RabbitMQ / PostgreSQL = total | commits/event | peak RSS MiB | missing / dup / unexpected |\n",
        );
        out.push_str(
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|---|---|---|---:|---:|---|\n",
        );
        for r in &self.runs {
            let run = match r.offered_per_s {
                Some(rate) => format!("{rate}/s offered"),
                None => "throughput".into(),
            };
            let latency = r.latency.map_or("–".into(), |l| {
                format!(
                    "{:.0} / {:.0} / {:.0} / {:.0}",
                    l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms
                )
            });
            let c = r.cpu_ms_per_event;
            let _ = writeln!(
                out,
                "| {} | {} | {run} | {} | {}/{} | {:.0} | {:.0} | {} | {} | {latency} | {} / {:.1} | {} / {:.1} | {} / {} | {} / {} / {} = {} | {} | {} | {} / {} / {} |",
                r.scenario,
                r.smtp_latency_ms,
                r.events,
                r.emails_received,
                r.emails_expected,
                r.events_per_s,
                r.emails_per_s,
                opt(r.routed_per_s, 0),
                r.relay_ratio
                    .map_or("–".into(), |v| format!("{:.1}%", v * 100.0)),
                r.smtp.connections_peak,
                r.smtp.connections_mean,
                r.smtp.in_flight_peak,
                r.smtp.in_flight_mean,
                r.smtp.connections_refused,
                r.smtp.transient_refusals,
                opt(c.hub, 2),
                opt(c.rabbitmq, 2),
                opt(c.postgresql, 2),
                opt(c.total, 2),
                opt(r.commits_per_event, 2),
                opt(r.peak_rss_mib, 0),
                r.missing,
                r.duplicates,
                r.unexpected,
            );
        }
        out
    }

    /// Writes `<dir>/<YYYYMMDD-HHMMSS>-<scenario>.json` and `.md`; returns their paths.
    pub fn write(&self, dir: &Path, stamp: &str, scenario: &str) -> anyhow::Result<[PathBuf; 2]> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("Failed to create {}", dir.display()))?;
        let json = dir.join(format!("{stamp}-{scenario}.json"));
        let md = dir.join(format!("{stamp}-{scenario}.md"));
        std::fs::write(&json, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("Failed to write {}", json.display()))?;
        std::fs::write(&md, self.markdown())
            .with_context(|| format!("Failed to write {}", md.display()))?;
        Ok([json, md])
    }
}

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or("–".into(), |v| format!("{v:.decimals$}"))
}
