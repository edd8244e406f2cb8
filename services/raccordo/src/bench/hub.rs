//! The hub under test: the real `raccordo serve all`, this very binary, in a child process
//! configured only through `RACCORDO__…` variables — the benchmark never reaches into it,
//! it watches it from outside: `/readyz`, `/metrics`, `/proc/<pid>`, SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use secrecy::ExposeSecret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use raccordo_core::settings::Settings;

/// Bound on `serve all` becoming ready (connections, topology, consumers).
const READY_WITHIN: Duration = Duration::from_secs(60);
/// Bound on a graceful stop (CONTRACT F4 asks 10 s) before the child is killed.
const STOP_WITHIN: Duration = Duration::from_secs(15);

/// When a started child counts as ready.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ready {
    /// `/readyz` answers 200: database reachable, every consumer attached.
    Readyz,
    /// `/healthz` answers 200 and this address takes connections: a process without
    /// consumers (`serve ingest`), whose `/readyz` waits for consumers it will never have.
    Listening(SocketAddr),
}

impl Ready {
    async fn is_ready(self, http: SocketAddr) -> bool {
        match self {
            Ready::Readyz => matches!(http_get(http, "/readyz").await, Ok((200, _))),
            Ready::Listening(addr) => {
                matches!(http_get(http, "/healthz").await, Ok((200, _)))
                    && tokio::net::TcpStream::connect(addr).await.is_ok()
            }
        }
    }
}

/// A running `raccordo serve all` (or another `serve`).
pub(crate) struct Hub {
    child: Child,
    pid: u32,
    /// Where its `/healthz`, `/readyz` and `/metrics` answer.
    pub http: SocketAddr,
    /// Its stderr (logs).
    pub log: PathBuf,
}

impl Hub {
    /// Starts `serve all` on the benchmark's prefix, database and SMTP sink, and waits
    /// until `/readyz` answers 200.
    /// `extra` are further `RACCORDO__…` variables (the benchmark's overrides).
    pub async fn start(
        settings: &Settings,
        smtp_port: u16,
        log: PathBuf,
        extra: &[(String, String)],
    ) -> anyhow::Result<Self> {
        Self::start_serving(settings, "all", Ready::Readyz, smtp_port, log, extra).await
    }

    /// Starts `serve <workers>` like [`Hub::start`], and waits until it is `ready`.
    pub async fn start_serving(
        settings: &Settings,
        workers: &str,
        ready: Ready,
        smtp_port: u16,
        log: PathBuf,
        extra: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let http = free_port().context("Failed to find a free port for the hub's HTTP endpoint")?;
        let exe = std::env::current_exe().context("Failed to find the raccordo binary")?;
        let stderr = std::fs::File::create(&log)
            .with_context(|| format!("Failed to create {}", log.display()))?;
        let mut command = Command::new(exe);
        command
            .args(["serve", workers])
            .envs(environment(settings, smtp_port, http))
            .envs(extra.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("Failed to start raccordo serve {workers}"))?;
        let pid = child.id().context("The hub exited as soon as it started")?;
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!(
                    "raccordo serve {workers} exited with {status} before it was ready; its log: {}",
                    log.display()
                );
            }
            if ready.is_ready(http).await {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "raccordo serve {workers} was not ready within {READY_WITHIN:?}; its log: {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            child,
            pid,
            http,
            log,
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Inbound events the hub has handled so far: `raccordo_messages_consumed_total` of
    /// the workers fed by `{prefix}.inbound` (housing, quota, eviction), every outcome.
    /// `None` when the endpoint does not answer or has no such series.
    pub async fn consumed(&self) -> Option<u64> {
        let (status, body) = http_get(self.http, "/metrics").await.ok()?;
        (status == 200).then(|| consumed_inbound(&body)).flatten()
    }

    /// Stops it with SIGTERM, as an operator would, and waits; kills it past the bound.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let signalled = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if signalled && let Ok(waited) = tokio::time::timeout(STOP_WITHIN, self.child.wait()).await
        {
            waited.context("Failed to wait for the hub")?;
            return Ok(());
        }
        self.child.kill().await.context("Failed to kill the hub")?;
        anyhow::bail!(
            "raccordo serve all did not stop within {STOP_WITHIN:?} of SIGTERM; its log: {}",
            self.log.display()
        )
    }
}

/// The variables that point a `raccordo` child at the benchmark (the rest of the
/// configuration is inherited: `RACCORDO_CONFIG` and other `RACCORDO__…` variables).
fn environment(settings: &Settings, smtp_port: u16, http: SocketAddr) -> Vec<(String, String)> {
    vec![
        (
            "RACCORDO__AMQP__URL".into(),
            settings.amqp.url.expose_secret().to_owned(),
        ),
        (
            "RACCORDO__AMQP__PREFIX".into(),
            settings.amqp.prefix.clone(),
        ),
        (
            "RACCORDO__AMQP__QUEUE_TYPE".into(),
            settings.amqp.queue_type.as_str().to_owned(),
        ),
        (
            "RACCORDO__DATABASE__URL".into(),
            settings.database.url.expose_secret().to_owned(),
        ),
        ("RACCORDO__MAIL__TRANSPORT".into(), "smtp".into()),
        (
            "RACCORDO__MAIL__SMTP_URL".into(),
            format!("smtp://127.0.0.1:{smtp_port}"),
        ),
        ("RACCORDO__HTTP__ADDR".into(), http.to_string()),
        (
            "RACCORDO__PUBLISHERS__ALLOW_ANONYMOUS".into(),
            "true".into(),
        ),
        (
            "RACCORDO__EVICTION__ALLOW_DEVELOPMENT_KEY".into(),
            "true".into(),
        ),
        // Per-message logs are at debug: an inherited RUST_LOG=debug would measure logging.
        ("RUST_LOG".into(), "info".into()),
    ]
}

/// A loopback address with a port free at the time of asking.
pub(crate) fn free_port() -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.local_addr()
}

/// Sums `raccordo_messages_consumed_total` over the inbound workers in a Prometheus text.
pub(crate) fn consumed_inbound(metrics: &str) -> Option<u64> {
    let mut found = false;
    let mut total = 0.0;
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("raccordo_messages_consumed_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once('}') else {
            continue;
        };
        let inbound = ["housing", "quota", "eviction"].iter().any(|w| {
            labels
                .split(',')
                .any(|l| l.trim() == format!("worker=\"{w}\""))
        });
        if let (true, Ok(v)) = (inbound, value.trim().parse::<f64>()) {
            found = true;
            total += v;
        }
    }
    found.then_some(total as u64)
}

/// A minimal HTTP/1.1 GET on loopback: (status, body), bounded to 5 s.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        anyhow::Ok((status, body))
    })
    .await
    .context("HTTP request timed out")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumed_counts_only_the_inbound_workers() {
        let metrics = "# TYPE raccordo_messages_consumed_total counter\n\
            raccordo_messages_consumed_total{worker=\"housing\",outcome=\"processed\"} 40\n\
            raccordo_messages_consumed_total{worker=\"quota\",outcome=\"duplicate\"} 2\n\
            raccordo_messages_consumed_total{outcome=\"processed\",worker=\"eviction\"} 3\n\
            raccordo_messages_consumed_total{worker=\"mailer\",outcome=\"processed\"} 80\n\
            raccordo_messages_consumed_total{worker=\"registry\",outcome=\"processed\"} 1\n";
        assert_eq!(consumed_inbound(metrics), Some(45));
        assert_eq!(consumed_inbound("raccordo_up 1\n"), None);
    }
}
