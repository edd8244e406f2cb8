//! lettre's implicit-TLS stream handed back to lettre's connection as a tokio stream.
//!
//! `connect_with_transport` reads the greeting at once, so implicit TLS must be up before
//! it. lettre's TLS setup is reachable only through the (deprecated, public)
//! `AsyncNetworkStream`, which speaks futures-io; [`TlsBridge`] turns it back into the
//! tokio stream `connect_with_transport` takes.

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

#[allow(deprecated)]
// `AsyncNetworkStream` is the only public way to reuse lettre's TLS setup.
use lettre::transport::smtp::client::AsyncNetworkStream;
use lettre::transport::smtp::client::AsyncTokioStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::compat::Compat;

/// lettre's TLS stream (futures-io) seen as the tokio stream lettre's connection takes.
/// A local type because neither the trait nor `Compat` is ours.
#[allow(deprecated)]
pub(super) struct TlsBridge(pub(super) Compat<AsyncNetworkStream>);

impl fmt::Debug for TlsBridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsBridge")
    }
}

impl AsyncRead for TlsBridge {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsBridge {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TlsBridge {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().peer_addr()
    }
}
