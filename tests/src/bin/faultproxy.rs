//! `faultproxy`: the tests' TCP proxy ([`raccordo_e2e::proxy`]) as a process, so the soak and
//! an operator's rehearsal can partition the hub from its broker or database by command.
//!
//! ```text
//! faultproxy --listen 127.0.0.1:15672 --upstream 127.0.0.1:5672 --control 127.0.0.1:15999
//! curl -X POST http://127.0.0.1:15999/blackhole     # partition: sockets open, nothing forwarded
//! curl -X POST http://127.0.0.1:15999/restore       # heal
//! curl -X POST http://127.0.0.1:15999/cut           # drop every connection, refuse new ones
//! curl -X POST --data 127.0.0.1:5442 http://127.0.0.1:15999/retarget
//! curl http://127.0.0.1:15999/status                # mode, upstream, open connections
//! ```
//!
//! It prints `listening ADDR` and `control ADDR` on stdout once bound (port 0 picks one).
//! The control interface answers on loopback only: it can cut a production path.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use clap::Parser;
use raccordo_e2e::proxy::Proxy;

/// A TCP proxy that can cut, blackhole, restore and retarget its traffic on command.
#[derive(Parser)]
#[command(name = "faultproxy")]
struct Cli {
    /// Where clients connect.
    #[arg(long)]
    listen: SocketAddr,
    /// Where connections go.
    #[arg(long)]
    upstream: SocketAddr,
    /// The HTTP control interface (loopback only).
    #[arg(long, default_value = "127.0.0.1:0")]
    control: SocketAddr,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if !cli.control.ip().is_loopback() {
        bail!("--control must be a loopback address: whoever reaches it can cut the traffic");
    }
    let proxy = Arc::new(
        Proxy::bind(cli.listen, cli.upstream)
            .await
            .with_context(|| format!("Failed to listen on {}", cli.listen))?,
    );
    let app = Router::new()
        .route("/status", get(status))
        .route("/cut", post(cut))
        .route("/blackhole", post(blackhole))
        .route("/restore", post(restore))
        .route("/retarget", post(retarget))
        .with_state(proxy.clone());
    let control = tokio::net::TcpListener::bind(cli.control)
        .await
        .with_context(|| format!("Failed to listen on {}", cli.control))?;
    println!("listening {}", proxy.addr());
    println!("control {}", control.local_addr()?);
    axum::serve(control, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("Failed to serve the control interface")
}

async fn status(State(proxy): State<Arc<Proxy>>) -> String {
    format!(
        "mode {}\nupstream {}\nconnections {}\n",
        proxy.mode(),
        proxy.upstream(),
        proxy.open_connections()
    )
}

async fn cut(State(proxy): State<Arc<Proxy>>) -> &'static str {
    proxy.cut();
    "down\n"
}

async fn blackhole(State(proxy): State<Arc<Proxy>>) -> &'static str {
    proxy.blackhole();
    "blackhole\n"
}

async fn restore(State(proxy): State<Arc<Proxy>>) -> &'static str {
    proxy.restore();
    "forwarding\n"
}

async fn retarget(
    State(proxy): State<Arc<Proxy>>,
    body: String,
) -> Result<String, (StatusCode, String)> {
    let upstream: SocketAddr = body.trim().parse().map_err(|_| {
        (
            StatusCode::BAD_REQUEST,
            "the body must be an address, e.g. 127.0.0.1:5442\n".to_owned(),
        )
    })?;
    proxy.retarget(upstream);
    Ok(format!("upstream {upstream}\n"))
}
