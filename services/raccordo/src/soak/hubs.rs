//! The soak's `serve all` children: started, watched (memory, readiness), killed with
//! SIGKILL by a `hub-kill` fault and started again, stopped with SIGTERM at the end.

use std::path::PathBuf;
use std::time::Duration;

use raccordo_core::settings::Settings;

use crate::bench::hub::{Hub, http_get};
use crate::bench::procfs;

/// The hubs of one soak.
pub struct Hubs {
    settings: Settings,
    smtp_port: u16,
    random: String,
    hubs: Vec<Option<Hub>>,
    /// Processes started so far (log file names).
    started: usize,
}

impl Hubs {
    /// Starts `count` hubs and waits until each is ready.
    pub async fn start(
        settings: &Settings,
        smtp_port: u16,
        count: u8,
        random: &str,
    ) -> anyhow::Result<Self> {
        let mut hubs = Self {
            settings: settings.clone(),
            smtp_port,
            random: random.to_owned(),
            hubs: Vec::new(),
            started: 0,
        };
        for _ in 0..count {
            let hub = hubs.start_one().await?;
            hubs.hubs.push(Some(hub));
        }
        Ok(hubs)
    }

    async fn start_one(&mut self) -> anyhow::Result<Hub> {
        self.started += 1;
        let log = std::env::temp_dir().join(format!(
            "raccordo-soak-{}-hub{}.log",
            self.random, self.started
        ));
        Hub::start(&self.settings, self.smtp_port, log, &[]).await
    }

    /// The hubs' process ids, space-separated (for a command fault).
    pub fn pids_text(&self) -> String {
        self.hubs
            .iter()
            .flatten()
            .map(|h| h.pid().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// kill -9 of hub `n` (1-based), then a new one in its place, ready.
    pub async fn kill_and_restart(&mut self, n: usize) -> (bool, String) {
        let Some(slot) = n.checked_sub(1).filter(|&i| i < self.hubs.len()) else {
            return (false, format!("there is no hub {n}"));
        };
        if let Some(hub) = self.hubs[slot].take() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &hub.pid().to_string()])
                .status();
            drop(hub);
        }
        match self.start_one().await {
            Ok(hub) => {
                let pid = hub.pid();
                self.hubs[slot] = Some(hub);
                (true, format!("hub {n} ready again as pid {pid}"))
            }
            Err(error) => (false, format!("{error:#}")),
        }
    }

    /// (RSS of all hubs in MiB, hubs ready, hubs): a hub that is gone is not ready, and a
    /// missing one is started again.
    pub async fn observe(&mut self) -> (Option<f64>, usize, usize) {
        for slot in 0..self.hubs.len() {
            if self.hubs[slot].is_none()
                && let Ok(hub) = self.start_one().await
            {
                self.hubs[slot] = Some(hub);
            }
        }
        let mut rss = 0u64;
        let mut measured = false;
        let mut ready = 0;
        for hub in self.hubs.iter().flatten() {
            if let Some(bytes) = procfs::rss(hub.pid()) {
                rss += bytes;
                measured = true;
            }
            let answer =
                tokio::time::timeout(Duration::from_secs(2), http_get(hub.http, "/readyz"));
            if matches!(answer.await, Ok(Ok((200, _)))) {
                ready += 1;
            }
        }
        (
            measured.then(|| rss as f64 / (1024.0 * 1024.0)),
            ready,
            self.hubs.len(),
        )
    }

    /// Stops every hub with SIGTERM; their logs stay in the temp folder when one failed.
    pub async fn stop(self) -> Vec<PathBuf> {
        let mut kept = Vec::new();
        for hub in self.hubs.into_iter().flatten() {
            let log = hub.log.clone();
            if hub.stop().await.is_err() {
                kept.push(log);
            }
        }
        kept
    }
}
