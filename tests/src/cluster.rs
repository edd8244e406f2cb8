//! The three-node RabbitMQ cluster of `scripts/rabbit-cluster.sh` (raccordo-N@localhost,
//! AMQP on 5681–5683), for the tests that take nodes away: started when a test asks for it,
//! stopped when the guard is dropped — also when the test fails.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::Value;

/// The running cluster; dropping it stops the three nodes (their data stays).
pub struct RabbitCluster {
    urls: Vec<String>,
}

fn script() -> PathBuf {
    crate::workspace_root().join("scripts/rabbit-cluster.sh")
}

/// Runs the script; its standard output, or a panic with what it printed.
async fn run(args: &[&str]) -> String {
    let output = tokio::process::Command::new(script())
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("scripts/rabbit-cluster.sh runs");
    assert!(
        output.status.success(),
        "scripts/rabbit-cluster.sh {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl RabbitCluster {
    /// Starts the three nodes (those already up are left alone) and joins them.
    pub async fn start() -> Self {
        let out = run(&["start"]).await;
        let urls: Vec<String> = out
            .lines()
            .filter(|l| l.starts_with("amqp://"))
            .map(str::to_owned)
            .collect();
        assert_eq!(urls.len(), 3, "three URLs from `start`: {out}");
        Self { urls }
    }

    /// Every node's AMQP URL, in the order given (1-based node numbers).
    pub fn urls(&self, order: &[u8]) -> Vec<SecretString> {
        order
            .iter()
            .map(|n| SecretString::from(self.urls[usize::from(*n) - 1].clone()))
            .collect()
    }

    /// The AMQP port of node `n`.
    pub fn port(n: u8) -> u16 {
        5680 + u16::from(n)
    }

    /// Kills node `n` with SIGKILL, as a crash would.
    pub async fn kill(&self, n: u8) {
        run(&["kill", &n.to_string()]).await;
    }

    /// Starts node `n` again; it rejoins the cluster.
    pub async fn start_node(&self, n: u8) {
        run(&["start-node", &n.to_string()]).await;
    }

    /// `rabbitmqctl` against node `n`.
    pub async fn ctl(&self, n: u8, args: &[&str]) -> String {
        let n = n.to_string();
        let mut all = vec!["ctl", n.as_str()];
        all.extend_from_slice(args);
        run(&all).await
    }

    /// A quorum queue as node `via` sees it: (leader, members), node names.
    pub async fn quorum_queue(&self, via: u8, queue: &str) -> (String, Vec<String>) {
        let text = self
            .ctl(
                via,
                &[
                    "list_queues",
                    "name",
                    "type",
                    "leader",
                    "members",
                    "--formatter",
                    "json",
                ],
            )
            .await;
        let rows: Vec<Value> = serde_json::from_str(text.trim()).expect("list_queues JSON");
        let row = rows
            .iter()
            .find(|r| r["name"] == queue)
            .unwrap_or_else(|| panic!("{queue} not listed: {text}"));
        assert_eq!(row["type"], "quorum", "{queue} is a quorum queue");
        let members = row["members"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        (row["leader"].as_str().unwrap_or("").to_owned(), members)
    }

    /// The broker ports (one per node) of the connections whose name starts with `prefix:`,
    /// as node `via` lists them for the whole cluster.
    pub async fn connection_ports(&self, via: u8, prefix: &str) -> Vec<u16> {
        let text = self
            .ctl(
                via,
                &[
                    "list_connections",
                    "port",
                    "client_properties",
                    "--no-table-headers",
                    "--quiet",
                ],
            )
            .await;
        let needle = format!("\"{prefix}:");
        text.lines()
            .filter(|l| l.contains(&needle))
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect()
    }
}

impl Drop for RabbitCluster {
    fn drop(&mut self) {
        // Synchronous: it runs while a failed test unwinds too.
        let _ = std::process::Command::new(script())
            .arg("stop")
            .stdin(std::process::Stdio::null())
            .output();
    }
}

/// `/readyz` polled every 50 ms in the background: what it answered, and when.
pub struct ReadinessLog {
    samples: std::sync::Arc<std::sync::Mutex<Vec<(Instant, u16)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ReadinessLog {
    /// Starts polling `addr` (0 is recorded when it does not answer).
    pub fn watch(addr: std::net::SocketAddr) -> Self {
        let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let shared = samples.clone();
        let task = tokio::spawn(async move {
            loop {
                let status = raccordo::bench::http_get(addr, "/readyz")
                    .await
                    .map_or(0, |(status, _)| status);
                if let Ok(mut s) = shared.lock() {
                    s.push((Instant::now(), status));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Self { samples, task }
    }

    /// Every sample so far.
    pub fn samples(&self) -> Vec<(Instant, u16)> {
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The samples taken at or after `since`.
    pub fn since(&self, since: Instant) -> Vec<(Instant, u16)> {
        self.samples()
            .into_iter()
            .filter(|(at, _)| *at >= since)
            .collect()
    }
}

impl Drop for ReadinessLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}
