//! The figures of `raccordo bench --scenario ingest`: one row per mode, printed as each
//! ends, then written with the machine and the conclusion (batch against single POSTs) as
//! `<out>/<YYYYMMDD-HHMMSS>-ingest.md` and `.json`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use super::report::Machine;
use super::stats::Latency;

/// How the events of a mode reach `{prefix}.inbound`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Transport {
    /// `POST /v1/events` to `serve ingest`.
    Http,
    /// Published by the benchmark itself with confirms: no hub in the way.
    Amqp,
}

/// CPU microseconds per event, from `/proc` (`utime + stime` deltas over the mode).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct CpuUs {
    /// The `serve ingest` child (every thread); `None` for AMQP: 0 by construction.
    pub ingest: Option<f64>,
    /// Every `beam.smp` process.
    pub rabbitmq: Option<f64>,
    /// Every `postgres` process.
    pub postgresql: Option<f64>,
    /// The benchmark's own process: the HTTP clients, or the AMQP publisher.
    pub client: Option<f64>,
}

/// One mode's figures.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct IngestRow {
    pub transport: Transport,
    /// Connections (HTTP) or channels (AMQP: 1) used at once.
    pub connections: u64,
    /// Events per request (1: structured, more: a batch); AMQP: 1 per publish.
    pub batch: u64,
    pub events: u64,
    /// Requests sent (AMQP: publishes).
    pub requests: u64,
    /// Requests not answered 202 (or not answered at all), and the first few answers.
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub seconds: f64,
    pub events_per_s: f64,
    pub requests_per_s: f64,
    /// Per request, sent → whole answer read (AMQP: publish → confirm, per event).
    pub latency: Option<Latency>,
    /// Mean time the ingest server spent per request, from its own
    /// `raccordo_ingest_request_seconds` (sum / count deltas of `/metrics`).
    pub server_mean_ms: Option<f64>,
    pub cpu_us_per_event: CpuUs,
    /// 1-minute load average before and after the mode.
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
}

impl IngestRow {
    /// The mode's name in the table.
    pub fn mode(&self) -> String {
        match (self.transport, self.batch) {
            (Transport::Amqp, _) => "AMQP, bench publishes with confirms".into(),
            (Transport::Http, 1) => "HTTP structured".into(),
            (Transport::Http, n) => format!("HTTP batch of {n}"),
        }
    }

    /// Ingest CPU seconds per 1,000 events (= ms per event).
    pub fn ingest_cpu_s_per_1k(&self) -> Option<f64> {
        self.cpu_us_per_event.ingest.map(|us| us / 1000.0)
    }
}

/// The side measurement of the per-request token lookup, alone.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TokenLookup {
    pub lookups: u64,
    pub latency: Option<Latency>,
    pub postgresql_us_per_lookup: Option<f64>,
    pub client_us_per_lookup: Option<f64>,
}

/// Everything one `bench --scenario ingest` measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct IngestReport {
    pub started_at: String,
    pub build: &'static str,
    pub command: String,
    pub machine: Machine,
    /// 1-minute load average at the end.
    pub load_average_after: Option<String>,
    pub queue_type: String,
    /// `database.max_connections` of the ingest child: its token lookups share them.
    pub database_max_connections: u32,
    pub window: u64,
    pub token_lookup: Option<TokenLookup>,
    pub rows: Vec<IngestRow>,
}

/// The table's header.
pub(crate) const HEADER: &str = "| mode | conns | events | requests | errors | s | events/s | requests/s | request latency p50 / p99 (ms) | server mean ms | ingest CPU s / 1k events | CPU µs/event ingest / RabbitMQ / PostgreSQL / bench | load before → after |\n|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---|\n";

/// One row of the table.
pub(crate) fn table_row(r: &IngestRow) -> String {
    let latency = r.latency.map_or("–".into(), |l| {
        format!("{} / {}", ms(l.p50_ms), ms(l.p99_ms))
    });
    let c = r.cpu_us_per_event;
    let ingest = match r.transport {
        Transport::Amqp => "0 (none in the way)".to_owned(),
        Transport::Http => opt(r.ingest_cpu_s_per_1k(), 3),
    };
    let ingest_us = match r.transport {
        Transport::Amqp => "0".to_owned(),
        Transport::Http => opt(c.ingest, 0),
    };
    format!(
        "| {} | {} | {} | {} | {} | {:.1} | {:.0} | {:.0} | {latency} | {} | {ingest} | {ingest_us} / {} / {} / {} | {} → {} |\n",
        r.mode(),
        r.connections,
        r.events,
        r.requests,
        r.errors,
        r.seconds,
        r.events_per_s,
        r.requests_per_s,
        opt(r.server_mean_ms, 2),
        opt(c.rabbitmq, 0),
        opt(c.postgresql, 0),
        opt(c.client, 0),
        opt(r.load_before, 2),
        opt(r.load_after, 2),
    )
}

/// Milliseconds with the precision they deserve: two decimals below 10 ms.
fn ms(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.0}")
    }
}

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or("–".into(), |v| format!("{v:.decimals$}"))
}

/// The conclusion for `connections`: the ingest child's CPU per event in batches against
/// single POSTs, or `None` when either mode is missing, unmeasured, or had a request not
/// answered 202 (its CPU would be that of refusals).
pub(crate) fn conclusion(rows: &[IngestRow], connections: u64) -> Option<String> {
    let of = |batched: bool| {
        rows.iter().find(|r| {
            r.transport == Transport::Http
                && r.connections == connections
                && (r.batch > 1) == batched
        })
    };
    let (batch, single) = (of(true)?, of(false)?);
    if batch.errors > 0 || single.errors > 0 {
        return None;
    }
    let (x, y) = (
        batch.cpu_us_per_event.ingest?,
        single.cpu_us_per_event.ingest?,
    );
    let verdict = if x < y {
        format!("{:.1}× less", y / x.max(f64::EPSILON))
    } else {
        "NOT less".to_owned()
    };
    Some(format!(
        "batch of {}: {x:.1} µs CPU per event vs single POSTs: {y:.1} µs ({} connection{}; {verdict})",
        batch.batch,
        connections,
        if connections == 1 { "" } else { "s" },
    ))
}

impl IngestReport {
    /// Whether every request was answered 202.
    pub fn errors(&self) -> u64 {
        self.rows.iter().map(|r| r.errors).sum()
    }

    /// The conclusion lines, one per connection count measured.
    pub fn conclusions(&self) -> Vec<String> {
        let mut counts: Vec<u64> = self.rows.iter().map(|r| r.connections).collect();
        counts.sort_unstable();
        counts.dedup();
        counts
            .into_iter()
            .filter_map(|c| conclusion(&self.rows, c))
            .collect()
    }

    /// The results as markdown: the machine, the table, the notes, the conclusion.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "## raccordo bench --scenario ingest — {}\n",
            self.started_at
        );
        if self.build == "debug" {
            let _ = writeln!(
                out,
                "> **DEBUG BUILD: these figures are meaningless.** Build with `cargo build --release -p raccordo`.\n"
            );
        }
        let _ = writeln!(
            out,
            "`{}` · {} build · {} CPU ({}) · {} MiB · Linux {} · RabbitMQ {} · PostgreSQL {} · load {} before, {} after\n",
            self.command,
            self.build,
            m.nproc,
            m.cpu_model.as_deref().unwrap_or("?"),
            m.memory_mib.map_or("?".into(), |v| v.to_string()),
            m.kernel.as_deref().unwrap_or("?"),
            m.rabbitmq.as_deref().unwrap_or("?"),
            m.postgresql.as_deref().unwrap_or("?"),
            m.load_average.as_deref().unwrap_or("?"),
            self.load_average_after.as_deref().unwrap_or("?"),
        );
        let _ = writeln!(
            out,
            "`raccordo serve ingest` alone (no workers: events stay in the {} work queues, purged between modes), {} database connections; AMQP window {}.\n",
            self.queue_type, self.database_max_connections, self.window
        );
        out.push_str(HEADER);
        for row in &self.rows {
            out.push_str(&table_row(row));
        }
        out.push_str(&self.notes());
        for line in self.conclusions() {
            let _ = writeln!(out, "\n**{line}**");
        }
        out
    }

    fn notes(&self) -> String {
        let mut out = String::from(
            "\n- HTTP: every request is `POST /v1/events` with a bearer token, answered 202 only once RabbitMQ confirmed its events; latency is sent → whole answer read, per request. \"server mean\" is the ingest server's own time per request (`raccordo_ingest_request_seconds`).\n\
             - AMQP: the same events published by the benchmark itself to `{prefix}.inbound` with publisher confirms: no hub in the way, so the hub's CPU is 0 by construction; the row gives the publishing side's own rate and CPU (\"bench\"); latency is publish → confirm, per event.\n\
             - CPU: `utime + stime` deltas from `/proc` over each mode; RabbitMQ and PostgreSQL are every `beam.smp` and `postgres` process of the machine, so other work on it counts too.\n",
        );
        if let Some(t) = &self.token_lookup {
            let _ = writeln!(
                out,
                "- The token lookup alone (`raccordo_ingest::tokens::publisher_of`, {} sequential lookups on one connection): p50 {} ms, p99 {} ms; PostgreSQL {} µs CPU per lookup, client {} µs.",
                t.lookups,
                t.latency.map_or("–".into(), |l| ms(l.p50_ms)),
                t.latency.map_or("–".into(), |l| ms(l.p99_ms)),
                opt(t.postgresql_us_per_lookup, 0),
                opt(t.client_us_per_lookup, 0),
            );
        }
        for r in self.rows.iter().filter(|r| r.errors > 0) {
            let _ = writeln!(
                out,
                "- **{} on {} connection(s): {} request(s) not answered 202**, e.g. {}",
                r.mode(),
                r.connections,
                r.errors,
                r.error_samples.join(" · ")
            );
        }
        out
    }

    /// Writes `<dir>/<stamp>-ingest.json` and `.md`; returns their paths.
    pub fn write(&self, dir: &Path, stamp: &str) -> anyhow::Result<[PathBuf; 2]> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("Failed to create {}", dir.display()))?;
        let json = dir.join(format!("{stamp}-ingest.json"));
        let md = dir.join(format!("{stamp}-ingest.md"));
        std::fs::write(&json, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("Failed to write {}", json.display()))?;
        std::fs::write(&md, self.markdown())
            .with_context(|| format!("Failed to write {}", md.display()))?;
        Ok([json, md])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(transport: Transport, connections: u64, batch: u64, ingest: Option<f64>) -> IngestRow {
        IngestRow {
            transport,
            connections,
            batch,
            events: 1000,
            requests: 1000 / batch,
            errors: 0,
            error_samples: Vec::new(),
            seconds: 1.0,
            events_per_s: 1000.0,
            requests_per_s: 1000.0 / batch as f64,
            latency: None,
            server_mean_ms: None,
            cpu_us_per_event: CpuUs {
                ingest,
                ..CpuUs::default()
            },
            load_before: Some(0.5),
            load_after: None,
        }
    }

    #[test]
    fn the_conclusion_compares_batches_with_single_posts_on_as_many_connections() {
        let rows = vec![
            row(Transport::Http, 1, 1, Some(120.0)),
            row(Transport::Http, 32, 1, Some(90.0)),
            row(Transport::Http, 1, 100, Some(15.0)),
            row(Transport::Http, 32, 100, Some(30.0)),
            row(Transport::Amqp, 1, 1, None),
        ];
        assert_eq!(
            conclusion(&rows, 1).as_deref(),
            Some(
                "batch of 100: 15.0 µs CPU per event vs single POSTs: 120.0 µs (1 connection; 8.0× less)"
            )
        );
        assert_eq!(
            conclusion(&rows, 32).as_deref(),
            Some(
                "batch of 100: 30.0 µs CPU per event vs single POSTs: 90.0 µs (32 connections; 3.0× less)"
            )
        );
        assert_eq!(conclusion(&rows, 8), None);
    }

    #[test]
    fn a_batch_that_costs_more_says_so_and_an_unmeasured_or_refused_one_gives_nothing() {
        let dearer = vec![
            row(Transport::Http, 1, 1, Some(10.0)),
            row(Transport::Http, 1, 100, Some(11.0)),
        ];
        assert!(
            conclusion(&dearer, 1)
                .expect("both measured")
                .ends_with("NOT less)")
        );
        let unmeasured = vec![
            row(Transport::Http, 1, 1, Some(10.0)),
            row(Transport::Http, 1, 100, None),
        ];
        assert_eq!(conclusion(&unmeasured, 1), None);
        let mut refused = vec![
            row(Transport::Http, 1, 1, Some(10.0)),
            row(Transport::Http, 1, 100, Some(1.0)),
        ];
        refused[1].errors = 1;
        assert_eq!(conclusion(&refused, 1), None);
    }

    #[test]
    fn the_amqp_row_shows_no_hub_cpu_and_every_row_has_every_column() {
        let columns = HEADER
            .lines()
            .next()
            .expect("a header")
            .matches('|')
            .count();
        let amqp = table_row(&row(Transport::Amqp, 1, 1, None));
        assert!(amqp.contains("0 (none in the way)"), "{amqp}");
        assert_eq!(amqp.trim_end().matches('|').count(), columns);
        let http = table_row(&row(Transport::Http, 32, 100, Some(25.0)));
        assert!(http.starts_with("| HTTP batch of 100 | 32 |"), "{http}");
        assert!(http.contains("| 0.025 |"), "{http}");
        assert_eq!(http.trim_end().matches('|').count(), columns);
    }
}
