//! The load of `raccordo bench --scenario ingest`: the requests (one event each, or a
//! batch), sent over many kept-alive connections at once, each answer checked for 202; and
//! the small texts it reads and writes (the publisher's configuration, `/metrics`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use hyper::body::Bytes;

use crate::http_client::HttpClient;

use super::progress::Progress;

/// The media types of `POST /v1/events` (CONTRACT 1.2 §10).
pub(crate) const STRUCTURED: &str = "application/cloudevents+json";
pub(crate) const BATCH: &str = "application/cloudevents-batch+json";

/// Answers kept as examples of what went wrong, per mode.
const ERROR_SAMPLES: usize = 3;

/// One request's body and how many events it carries.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub body: Bytes,
    pub events: u64,
}

/// A JSON array of the serialized events `chunk` (CloudEvents JSON batch format).
pub(crate) fn batch_body(chunk: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::with_capacity(chunk.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
    body.push(b'[');
    for (i, event) in chunk.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(event);
    }
    body.push(b']');
    body
}

/// The requests that carry `events` in order: one each (`batch` 1, structured) or
/// batches of `batch` (the last one may be shorter).
pub(crate) fn requests(events: &[Vec<u8>], batch: usize) -> Vec<Request> {
    if batch <= 1 {
        return events
            .iter()
            .map(|e| Request {
                body: Bytes::from(e.clone()),
                events: 1,
            })
            .collect();
    }
    events
        .chunks(batch)
        .map(|chunk| Request {
            body: Bytes::from(batch_body(chunk)),
            events: chunk.len() as u64,
        })
        .collect()
}

/// `base` (a TOML configuration, maybe empty) with a `[publishers.<user>]` table that may
/// post housing offers at `rate_per_s`.
pub(crate) fn with_publisher(base: &str, user: &str, rate_per_s: f64) -> String {
    let mut text = base.to_owned();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!(
        "\n# Added by `raccordo bench --scenario ingest` for its own run.\n[publishers.{user}]\ntypes = [\"housing.unit.v1\"]\nrate_per_s = {rate_per_s:.1}\n"
    ));
    text
}

/// `<name>_sum` and `<name>_count` of an unlabelled summary or histogram in a Prometheus text.
pub(crate) fn sum_and_count(metrics: &str, name: &str) -> Option<(f64, f64)> {
    let value = |suffix: &str| {
        let series = format!("{name}_{suffix}");
        metrics.lines().find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key.trim() == series).then(|| value.trim().parse::<f64>().ok())?
        })
    };
    Some((value("sum")?, value("count")?))
}

/// What one HTTP mode saw.
#[derive(Debug, Default)]
pub(crate) struct HttpRun {
    /// Per request: sent → whole answer read.
    pub latencies: Vec<Duration>,
    pub requests: u64,
    /// Requests not answered 202, or not answered.
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// First request sent → last answer read.
    pub elapsed: Duration,
}

impl HttpRun {
    fn merge(&mut self, other: HttpRun) {
        self.latencies.extend(other.latencies);
        self.requests += other.requests;
        self.errors += other.errors;
        for sample in other.error_samples {
            if self.error_samples.len() < ERROR_SAMPLES {
                self.error_samples.push(sample);
            }
        }
    }
}

/// Sends every request of `requests` to `addr` over `connections` connections at once
/// (each its own task, taking the next request as soon as its answer is in); shows the
/// events answered on `progress`.
pub(crate) async fn run_http(
    addr: SocketAddr,
    token: &str,
    content_type: &'static str,
    requests: Arc<Vec<Request>>,
    connections: usize,
    progress: &mut Progress,
) -> anyhow::Result<HttpRun> {
    let total: u64 = requests.iter().map(|r| r.events).sum();
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let authorization: Arc<str> = format!("Bearer {token}").into();
    // Connected before the clock starts: the figures are the requests'.
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        clients.push(
            HttpClient::connect(addr)
                .await
                .context("ingest.addr refused a connection")?,
        );
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client in clients {
        let shared = Shared {
            addr,
            content_type,
            authorization: authorization.clone(),
            requests: requests.clone(),
            next: next.clone(),
            done: done.clone(),
            failed: failed.clone(),
        };
        tasks.spawn(shared.send_all(client));
    }
    let mut run = HttpRun::default();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while !tasks.is_empty() {
        tokio::select! {
            joined = tasks.join_next() => {
                if let Some(joined) = joined {
                    run.merge(joined.context("An HTTP client task failed")??);
                }
            }
            _ = tick.tick() => {
                let events = done.load(Ordering::Relaxed);
                let rate = events as f64 / started.elapsed().as_secs_f64().max(1e-3);
                progress.update(
                    events,
                    total,
                    &format!("{rate:.0} events/s, {} error(s)", failed.load(Ordering::Relaxed)),
                );
            }
        }
    }
    run.elapsed = started.elapsed();
    Ok(run)
}

/// What every client task shares.
struct Shared {
    addr: SocketAddr,
    content_type: &'static str,
    authorization: Arc<str>,
    requests: Arc<Vec<Request>>,
    next: Arc<AtomicUsize>,
    done: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl Shared {
    /// Sends requests on `client` until none is left; a connection that breaks is
    /// counted as an error and opened again.
    async fn send_all(self, mut client: HttpClient) -> anyhow::Result<HttpRun> {
        let mut run = HttpRun::default();
        let headers = [
            ("authorization", &*self.authorization),
            ("content-type", self.content_type),
        ];
        loop {
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(request) = self.requests.get(index) else {
                break;
            };
            let sent = Instant::now();
            let answer = client
                .send("POST", "/v1/events", &headers, request.body.clone())
                .await;
            run.requests += 1;
            let problem = match answer {
                Ok(answer) if answer.status == 202 => {
                    run.latencies.push(sent.elapsed());
                    None
                }
                Ok(answer) => Some(format!(
                    "{} {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                        .chars()
                        .take(300)
                        .collect::<String>()
                )),
                Err(error) => {
                    client = HttpClient::connect(self.addr)
                        .await
                        .context("ingest.addr refused a connection again")?;
                    Some(format!("no answer: {error:#}"))
                }
            };
            if let Some(problem) = problem {
                run.errors += 1;
                self.failed.fetch_add(1, Ordering::Relaxed);
                if run.error_samples.len() < ERROR_SAMPLES {
                    run.error_samples.push(problem);
                }
            }
            self.done.fetch_add(request.events, Ordering::Relaxed);
        }
        Ok(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!(r#"{{"id":"e{i}"}}"#).into_bytes())
            .collect()
    }

    #[test]
    fn a_batch_body_is_a_json_array_of_the_events_in_order() {
        let body = batch_body(&events(3));
        let value: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        let ids: Vec<&str> = value
            .as_array()
            .expect("an array")
            .iter()
            .filter_map(|e| e["id"].as_str())
            .collect();
        assert_eq!(ids, ["e0", "e1", "e2"]);
        assert_eq!(batch_body(&[]), b"[]");
    }

    #[test]
    fn events_are_split_into_requests_of_one_or_of_a_batch() {
        let single = requests(&events(5), 1);
        assert_eq!(single.len(), 5);
        assert!(single.iter().all(|r| r.events == 1));
        assert_eq!(&single[2].body[..], br#"{"id":"e2"}"#);

        let batched = requests(&events(250), 100);
        let sizes: Vec<u64> = batched.iter().map(|r| r.events).collect();
        assert_eq!(sizes, [100, 100, 50]);
        let last: serde_json::Value = serde_json::from_slice(&batched[2].body).expect("JSON");
        assert_eq!(last[0]["id"], "e200");
        assert_eq!(last[49]["id"], "e249");
    }

    #[test]
    fn the_publisher_table_is_appended_to_the_configuration() {
        let text = with_publisher("[amqp]\nprefix = \"x\"", "bench_ingest", 1_000_000.0);
        assert!(text.starts_with("[amqp]\nprefix = \"x\"\n"), "{text}");
        assert!(
            text.ends_with(
                "[publishers.bench_ingest]\ntypes = [\"housing.unit.v1\"]\nrate_per_s = 1000000.0\n"
            ),
            "{text}"
        );
        assert!(with_publisher("", "u", 5.0).starts_with("\n# Added by"));
    }

    #[test]
    fn sum_and_count_are_read_from_the_metrics_text() {
        let metrics = "# TYPE raccordo_ingest_request_seconds summary\n\
            raccordo_ingest_request_seconds{quantile=\"0.5\"} 0.001\n\
            raccordo_ingest_request_seconds_sum 1.25\n\
            raccordo_ingest_request_seconds_count 500\n\
            raccordo_ingest_request_seconds_total_sum 9\n";
        assert_eq!(
            sum_and_count(metrics, "raccordo_ingest_request_seconds"),
            Some((1.25, 500.0))
        );
        assert_eq!(
            sum_and_count("raccordo_up 1\n", "raccordo_ingest_request_seconds"),
            None
        );
    }
}
