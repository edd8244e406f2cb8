//! A PostgreSQL primary and synchronous standby of a test's own (`scripts/pg-ha.sh` on two
//! free ports, in a folder under `target/pg-ha/`), destroyed when dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use uuid::Uuid;

/// A running pair.
pub struct PgPair {
    dir: PathBuf,
    ports: [u16; 2],
}

impl PgPair {
    /// Creates and starts a pair; returns once the standby streams synchronously.
    pub fn start() -> PgPair {
        let id = Uuid::new_v4().simple().to_string();
        let dir = crate::workspace_root().join("target/pg-ha").join(&id[..12]);
        let pair = PgPair {
            dir,
            ports: [free_port(), free_port()],
        };
        let status = pair.script("start");
        assert!(
            status.contains("primary (sync)") && status.contains("standby (streaming)"),
            "the pair replicates synchronously: {status}"
        );
        pair
    }

    /// Runs `scripts/pg-ha.sh COMMAND` for this pair; its standard output.
    pub fn script(&self, command: &str) -> String {
        let output = Command::new(crate::workspace_root().join("scripts/pg-ha.sh"))
            .arg(command)
            .env("PG_HA_DIR", &self.dir)
            .env(
                "PG_HA_PORTS",
                format!("{} {}", self.ports[0], self.ports[1]),
            )
            .output()
            .expect("scripts/pg-ha.sh runs");
        assert!(
            output.status.success(),
            "scripts/pg-ha.sh {command}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The address of the node that accepts writes.
    pub fn primary(&self) -> SocketAddr {
        let port: u16 = self.script("primary-port").trim().parse().expect("a port");
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Stops the primary at once, as a crash would.
    pub fn kill_primary(&self) {
        self.script("kill-primary");
    }

    /// Promotes the standby; its address.
    pub fn promote(&self) -> SocketAddr {
        let port: u16 = self.script("promote").trim().parse().expect("a port");
        SocketAddr::from(([127, 0, 0, 1], port))
    }
}

impl Drop for PgPair {
    fn drop(&mut self) {
        let _ = Command::new(crate::workspace_root().join("scripts/pg-ha.sh"))
            .arg("destroy")
            .env("PG_HA_DIR", &self.dir)
            .env(
                "PG_HA_PORTS",
                format!("{} {}", self.ports[0], self.ports[1]),
            )
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port free at the time of asking.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
