//! A TCP proxy on loopback between the hub and a real server, which a test (or the soak,
//! through the `faultproxy` binary) turns into the faults of a network:
//!
//! - [`Proxy::cut`]: the server vanishes mid-transaction (every open connection is dropped,
//!   new ones are refused) — what a crash or a refused port looks like;
//! - [`Proxy::blackhole`]: a partition. Sockets stay open and nothing is forwarded, no FIN,
//!   no RST: only the peers' own timeouts and heartbeats can tell. Bytes sent meanwhile are
//!   held, as TCP's retransmissions hold them, and flow again at [`Proxy::restore`] unless
//!   the connection was cut in between (a partition that outlived the server's patience);
//! - [`Proxy::retarget`]: another upstream (a promoted standby), every open connection
//!   dropped so nobody keeps talking to the old one.
//!
//! The server itself — shared by every test — is never touched.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forwards both ways.
    Forwarding,
    /// Keeps every socket open and forwards nothing, either way; new connections are
    /// accepted and reach nothing.
    Blackhole,
    /// Refuses new connections (open ones were dropped when it began).
    Down,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Forwarding => "forwarding",
            Mode::Blackhole => "blackhole",
            Mode::Down => "down",
        })
    }
}

struct Shared {
    upstream: Mutex<SocketAddr>,
    mode: watch::Sender<Mode>,
    /// Moves to drop every open connection.
    generation: watch::Sender<u64>,
    open: AtomicUsize,
}

impl Shared {
    fn upstream(&self) -> SocketAddr {
        *self.upstream.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn drop_connections(&self) {
        self.generation.send_modify(|g| *g += 1);
    }
}

/// A proxy to one upstream address.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        Proxy::bind(listen, upstream)
            .await
            .expect("the proxy binds a loopback port")
    }

    /// Listens on `listen` and forwards every connection to `upstream`.
    pub async fn bind(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (mode, _) = watch::channel(Mode::Forwarding);
        let (generation, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream),
            mode,
            generation,
            open: AtomicUsize::new(0),
        });
        let task = tokio::spawn(accept(listener, shared.clone()));
        Ok(Proxy { addr, shared, task })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where connections go.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream()
    }

    /// What the proxy does now.
    pub fn mode(&self) -> Mode {
        *self.shared.mode.borrow()
    }

    /// Connections open through the proxy.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.shared.mode.send_replace(Mode::Down);
        self.shared.drop_connections();
    }

    /// Forwards nothing, keeping every socket open (a partition).
    pub fn blackhole(&self) {
        self.shared.mode.send_replace(Mode::Blackhole);
    }

    /// Forwards again: held bytes flow, new connections are accepted.
    pub fn restore(&self) {
        self.shared.mode.send_replace(Mode::Forwarding);
    }

    /// Sends new connections to `upstream` and drops the open ones.
    pub fn retarget(&self, upstream: SocketAddr) {
        *self
            .shared
            .upstream
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = upstream;
        self.shared.drop_connections();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.shared.drop_connections();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((client, _)) = listener.accept().await {
        if *shared.mode.borrow() == Mode::Down {
            // Refused: the server is "down".
            drop(client);
            continue;
        }
        tokio::spawn(relay(client, shared.clone()));
    }
}

/// One client connection, until either side ends it or the proxy drops it.
async fn relay(client: TcpStream, shared: Arc<Shared>) {
    let mut dropped = shared.generation.subscribe();
    shared.open.fetch_add(1, Ordering::SeqCst);
    let run = async {
        // Opened during a partition: the server hears of it only once it heals.
        if !wait_forwarding(&mut shared.mode.subscribe()).await {
            return;
        }
        let Ok(server) = TcpStream::connect(shared.upstream()).await else {
            return;
        };
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        tokio::select! {
            _ = pump(client_read, server_write, shared.mode.subscribe()) => {}
            _ = pump(server_read, client_write, shared.mode.subscribe()) => {}
        }
    };
    tokio::select! {
        _ = run => {}
        _ = dropped.changed() => {}
    }
    shared.open.fetch_sub(1, Ordering::SeqCst);
}

/// Copies one direction, holding what it read while the proxy is not forwarding.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !wait_forwarding(&mut mode).await {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Read just as a partition began: held until it heals.
        if !wait_forwarding(&mut mode).await || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Waits until the proxy forwards; false when the proxy is gone.
async fn wait_forwarding(mode: &mut watch::Receiver<Mode>) -> bool {
    mode.wait_for(|m| *m == Mode::Forwarding).await.is_ok()
}
