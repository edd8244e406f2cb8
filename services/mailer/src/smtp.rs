//! SMTP delivery over a small pool of lettre connections on sockets we open ourselves.
//!
//! Why not lettre's own `AsyncSmtpTransport`: lettre 0.11.23 never sets `TCP_NODELAY`, and it
//! writes each command and the end-of-data marker in separate small writes. Nagle's algorithm
//! then holds back the next write until the server's delayed ACK arrives, and every message
//! costs ~40 ms: about 23 messages/s per connection where the same client on a NODELAY socket
//! does ~840/s (measured here; fixed upstream in lettre PR #1159, not yet released). So we
//! connect the socket, set NODELAY, and hand it to lettre's public
//! [`AsyncSmtpConnection::connect_with_transport`], which still does the SMTP dialogue.
//!
//! The pool: a [`Semaphore`] bounds connections (idle plus busy) to `pool_size`; idle ones wait
//! in a stack, most recently used on top, so surplus connections age out after load drops.
//! A connection that saw any error is dropped, never returned; one idle for a while is probed
//! with `NOOP` before reuse; one idle longer than a minute is closed, by a background
//! task even when no mail is sent. When a pooled connection turns out to be dead (the server
//! restarted since), the message is tried once more on a fresh connection.

use std::{
    fmt,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak, atomic::AtomicBool, atomic::Ordering},
    task::{Context, Poll},
    time::{Duration, Instant},
};

#[allow(deprecated)]
// `AsyncNetworkStream` is the only public way to reuse lettre's TLS setup.
use lettre::transport::smtp::client::AsyncNetworkStream;
use lettre::transport::smtp::{
    authentication::{Credentials, Mechanism},
    client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters},
    extension::ClientId,
    response::Response,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::Semaphore,
};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};
use url::Url;

use crate::{
    message::OutgoingEmail,
    transport::{Delivered, SendError, Step},
};

/// Idle connections older than this are closed: servers drop idle clients after a few
/// minutes (RFC 5321 §4.5.3.2 suggests 5), and a pool that outlives its load should shrink.
pub(crate) const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// A connection used this recently is reused without a `NOOP` probe: it was working a
/// moment ago, and probing every time would add a round trip to every message.
const PROBE_AFTER: Duration = Duration::from_secs(2);

/// lettre's defaults for `smtp://`, `smtp://…?tls=required` and `smtps://` without a port.
const SMTP_PORT: u16 = 25;
const SUBMISSION_PORT: u16 = 587;
const SUBMISSIONS_PORT: u16 = 465;

/// How to reach and talk to the SMTP server.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpOptions {
    /// The server in lettre's URL form: `smtp://host:port` (plain),
    /// `smtp://host:port?tls=required` (STARTTLS, refused if the server does not offer it),
    /// `smtp://host:port?tls=opportunistic` (STARTTLS when offered), `smtps://host:port`
    /// (implicit TLS); optional `user:password@` for AUTH PLAIN/LOGIN; a path sets the EHLO
    /// name as in lettre (`smtp://host/raccordo.example`).
    pub url: String,
    /// Bound on every connect (TCP, TLS, greeting, EHLO, AUTH) and on every send
    /// (MAIL, RCPT, DATA). Waiting for a free connection when all `pool_size` are busy is
    /// not counted: that is back-pressure, and each holder is itself bounded.
    pub timeout: Duration,
    /// Most connections open at once, idle plus busy (≥ 1).
    pub pool_size: usize,
    /// The EHLO name; default from the URL path, else this host's name.
    pub hello_name: Option<String>,
}

impl fmt::Debug for SmtpOptions {
    /// The URL may carry a password: only its scheme, host and port are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = Url::parse(&self.url)
            .map(|u| {
                format!(
                    "{}://{}:{}",
                    u.scheme(),
                    u.host_str().unwrap_or_default(),
                    u.port().map_or_else(|| "-".to_owned(), |p| p.to_string())
                )
            })
            .unwrap_or_else(|_| "(unparsable)".to_owned());
        f.debug_struct("SmtpOptions")
            .field("url", &url)
            .field("timeout", &self.timeout)
            .field("pool_size", &self.pool_size)
            .field("hello_name", &self.hello_name)
            .finish()
    }
}

/// [`SmtpOptions`] that cannot work. Messages never include the URL: it may hold a password.
#[derive(Debug, thiserror::Error)]
pub enum SmtpConfigError {
    /// The URL does not parse.
    #[error("the SMTP URL is not a valid URL")]
    Url(#[source] url::ParseError),
    /// The URL has no host.
    #[error("the SMTP URL has no host")]
    MissingHost,
    /// Neither `smtp` nor `smtps`.
    #[error("the SMTP URL scheme {0:?} is not supported: use smtp:// or smtps://")]
    Scheme(String),
    /// A `tls` query value other than `required` or `opportunistic`, or one given with `smtps`.
    #[error(
        "the SMTP URL tls={0:?} is not supported: use smtp://…?tls=required, \
         smtp://…?tls=opportunistic or smtps://"
    )]
    Tls(String),
    /// The user name or password is not valid percent-encoded UTF-8.
    #[error("the SMTP URL credentials are not valid percent-encoded UTF-8")]
    Credentials,
    /// A user name without a password.
    #[error("the SMTP URL names a user but no password")]
    MissingPassword,
    /// Credentials on a connection that may stay plain: AUTH would send them in clear.
    #[error("the SMTP URL has credentials but no required TLS: use smtps:// or ?tls=required")]
    CredentialsInClear,
    /// TLS could not be set up (e.g. the system certificate store is unreadable).
    #[error("failed to set up TLS for the SMTP server")]
    TlsSetup(#[source] lettre::transport::smtp::Error),
    /// `pool_size` is zero.
    #[error("the SMTP pool size must be at least 1")]
    PoolSize,
    /// `timeout` is zero.
    #[error("the SMTP timeout must be longer than zero")]
    Timeout,
}

/// How the connection is secured.
#[derive(Clone)]
enum Security {
    Plain,
    StartTls {
        parameters: TlsParameters,
        required: bool,
    },
    Implicit(TlsParameters),
}

/// Where and how to connect, parsed once from [`SmtpOptions`].
struct Endpoint {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    hello: ClientId,
}

impl Endpoint {
    fn parse(options: &SmtpOptions) -> Result<Endpoint, SmtpConfigError> {
        let url = Url::parse(&options.url).map_err(SmtpConfigError::Url)?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or(SmtpConfigError::MissingHost)?;
        // `Url` keeps IPv6 literals bracketed; the resolver wants them bare.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tls = url
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let tls_parameters = || TlsParameters::new(host.clone()).map_err(SmtpConfigError::TlsSetup);
        let (security, default_port) = match (url.scheme(), tls.as_deref()) {
            ("smtp", None) => (Security::Plain, SMTP_PORT),
            ("smtp", Some(mode @ ("required" | "opportunistic"))) => (
                Security::StartTls {
                    parameters: tls_parameters()?,
                    required: mode == "required",
                },
                SUBMISSION_PORT,
            ),
            ("smtps", None) => (Security::Implicit(tls_parameters()?), SUBMISSIONS_PORT),
            ("smtp" | "smtps", Some(other)) => return Err(SmtpConfigError::Tls(other.to_owned())),
            (scheme, _) => return Err(SmtpConfigError::Scheme(scheme.to_owned())),
        };

        let credentials = match url.password() {
            Some(password) => {
                let user = percent_decode(url.username()).ok_or(SmtpConfigError::Credentials)?;
                let password = percent_decode(password).ok_or(SmtpConfigError::Credentials)?;
                Some(Credentials::new(user, password))
            }
            None if !url.username().is_empty() => return Err(SmtpConfigError::MissingPassword),
            None => None,
        };
        let encrypted = matches!(
            security,
            Security::Implicit(_) | Security::StartTls { required: true, .. }
        );
        if credentials.is_some() && !encrypted {
            return Err(SmtpConfigError::CredentialsInClear);
        }

        let path_name = url.path().trim_matches('/');
        let hello = match (&options.hello_name, path_name) {
            (Some(name), _) => ClientId::Domain(name.clone()),
            (None, "") => ClientId::default(),
            (None, name) => ClientId::Domain(name.to_owned()),
        };
        Ok(Endpoint {
            host,
            port: url.port().unwrap_or(default_port),
            security,
            credentials,
            hello,
        })
    }
}

/// Strict percent-decoding (RFC 3986 §2.1) into UTF-8; `+` stays a plus.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// An idle connection and when it was last used.
struct Idle {
    connection: AsyncSmtpConnection,
    since: Instant,
}

struct Shared {
    endpoint: Endpoint,
    timeout: Duration,
    /// One permit per connection that may exist, idle or busy.
    permits: Semaphore,
    /// Idle connections, most recently used last.
    idle: Mutex<Vec<Idle>>,
    /// The idle reaper runs from the first check-in on; it needs a runtime to be spawned on.
    reaper_started: AtomicBool,
}

impl Shared {
    /// A panic while the lock is held cannot leave the `Vec` inconsistent, so a poisoned
    /// lock is still usable.
    fn idle(&self) -> MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Sends email over SMTP through a bounded pool of connections. Cheap to clone: clones
/// share the pool.
#[derive(Clone)]
pub struct SmtpTransport {
    shared: Arc<Shared>,
}

impl fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let security = match self.shared.endpoint.security {
            Security::Plain => "plain",
            Security::StartTls { required: true, .. } => "starttls",
            Security::StartTls {
                required: false, ..
            } => "starttls-opportunistic",
            Security::Implicit(_) => "tls",
        };
        f.debug_struct("SmtpTransport")
            .field("host", &self.shared.endpoint.host)
            .field("port", &self.shared.endpoint.port)
            .field("security", &security)
            .field("auth", &self.shared.endpoint.credentials.is_some())
            .field("idle", &self.shared.idle().len())
            .finish_non_exhaustive()
    }
}

impl SmtpTransport {
    /// Validates the options; connects lazily, on the first send.
    ///
    /// # Errors
    /// A malformed or unsupported URL, a zero pool size or timeout, or TLS that cannot be
    /// set up.
    pub fn new(options: &SmtpOptions) -> Result<SmtpTransport, SmtpConfigError> {
        if options.pool_size == 0 {
            return Err(SmtpConfigError::PoolSize);
        }
        if options.timeout.is_zero() {
            return Err(SmtpConfigError::Timeout);
        }
        let endpoint = Endpoint::parse(options)?;
        Ok(SmtpTransport {
            shared: Arc::new(Shared {
                endpoint,
                timeout: options.timeout,
                permits: Semaphore::new(options.pool_size),
                idle: Mutex::new(Vec::new()),
                reaper_started: AtomicBool::new(false),
            }),
        })
    }

    /// Sends one email; `Delivered::response` is the server's final reply
    /// (`250 2.0.0 Ok: queued as …`).
    ///
    /// # Errors
    /// See [`SendError::is_transient`] for which ones are worth retrying.
    pub async fn send(&self, email: &OutgoingEmail) -> Result<Delivered, SendError> {
        let message = email.to_message()?;
        let bytes = message.formatted();

        let _permit = self
            .shared
            .permits
            .acquire()
            .await
            .expect("the pool never closes its semaphore");
        match self.checkout().await {
            Some(pooled) => match self.transmit(pooled, &message, &bytes).await {
                // A pooled connection the server closed while it sat idle fails on its
                // first command. That says nothing about the message, so it is tried once
                // more on a fresh connection, which makes a restarted server invisible.
                Err(SendError::Transaction(error)) if is_broken_link(&error) => {
                    tracing::debug!(%error, "Pooled SMTP connection failed; retrying on a new one.");
                    let fresh = self.connect().await?;
                    self.transmit(fresh, &message, &bytes).await
                }
                result => result,
            },
            None => {
                let fresh = self.connect().await?;
                self.transmit(fresh, &message, &bytes).await
            }
        }
    }

    /// One MAIL/RCPT/DATA exchange, bounded by the timeout; the connection goes back to the
    /// pool only if it succeeded.
    async fn transmit(
        &self,
        mut connection: AsyncSmtpConnection,
        message: &lettre::Message,
        bytes: &[u8],
    ) -> Result<Delivered, SendError> {
        let timeout = self.shared.timeout;
        match tokio::time::timeout(timeout, connection.send(message.envelope(), bytes)).await {
            Ok(Ok(response)) => {
                self.checkin(connection);
                Ok(Delivered {
                    response: describe(&response),
                })
            }
            // lettre has already sent QUIT and closed a connection that saw an error.
            Ok(Err(error)) => Err(SendError::Transaction(error)),
            // Dropping the connection mid-dialogue closes the socket; the server discards
            // an unfinished DATA.
            Err(_) => Err(SendError::Timeout {
                step: Step::Send,
                after: timeout,
            }),
        }
    }

    /// Takes the most recently used idle connection that still works, closing stale ones.
    async fn checkout(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let Idle {
                mut connection,
                since,
            } = self.shared.idle().pop()?;
            let idle_for = since.elapsed();
            if idle_for > IDLE_LIMIT {
                // In the background: a QUIT to a vanished server would delay this send by
                // up to the timeout.
                tokio::spawn(close(connection, self.shared.timeout));
                continue;
            }
            if connection.has_broken() {
                continue;
            }
            if idle_for > PROBE_AFTER {
                let probe = tokio::time::timeout(self.shared.timeout, connection.test_connected());
                if !matches!(probe.await, Ok(true)) {
                    continue;
                }
            }
            return Some(connection);
        }
    }

    fn checkin(&self, connection: AsyncSmtpConnection) {
        if connection.has_broken() {
            return;
        }
        self.shared.idle().push(Idle {
            connection,
            since: Instant::now(),
        });
        if !self.shared.reaper_started.swap(true, Ordering::AcqRel) {
            tokio::spawn(reap_idle(Arc::downgrade(&self.shared)));
        }
    }

    /// Opens a connection, bounded by the timeout as a whole.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let timeout = self.shared.timeout;
        tokio::time::timeout(timeout, open(&self.shared.endpoint))
            .await
            .map_err(|_| SendError::Timeout {
                step: Step::Connect,
                after: timeout,
            })?
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.shared.idle().len()
    }

    /// Pretends every idle connection was last used `ago`.
    #[cfg(test)]
    fn age_idle(&self, ago: Duration) {
        for idle in self.shared.idle().iter_mut() {
            idle.since = Instant::now()
                .checked_sub(ago)
                .expect("the monotonic clock has run for longer than the test's ages");
        }
    }
}

/// TCP with NODELAY, then (implicit TLS), greeting and EHLO, then STARTTLS, then AUTH.
async fn open(endpoint: &Endpoint) -> Result<AsyncSmtpConnection, SendError> {
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(SendError::Connect)?;
    // The reason this module exists: see the module documentation.
    tcp.set_nodelay(true).map_err(SendError::Connect)?;

    let mut connection = match &endpoint.security {
        Security::Implicit(parameters) => {
            // `connect_with_transport` reads the greeting at once, so implicit TLS must be
            // up before it. lettre's TLS setup is reachable only through the (deprecated,
            // public) `AsyncNetworkStream`, which speaks futures-io; `TlsBridge` turns it
            // back into the tokio stream `connect_with_transport` takes.
            #[allow(deprecated)]
            let mut stream = AsyncNetworkStream::use_existing_tokio1(Box::new(tcp));
            stream
                .upgrade_tls(parameters.clone())
                .await
                .map_err(SendError::Session)?;
            AsyncSmtpConnection::connect_with_transport(
                Box::new(TlsBridge(stream.compat())),
                &endpoint.hello,
            )
            .await
        }
        Security::Plain | Security::StartTls { .. } => {
            AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &endpoint.hello).await
        }
    }
    .map_err(SendError::Session)?;

    if let Security::StartTls {
        parameters,
        required,
    } = &endpoint.security
    {
        if connection.can_starttls() {
            connection
                .starttls(parameters.clone(), &endpoint.hello)
                .await
                .map_err(SendError::Session)?;
        } else if *required {
            connection.abort().await;
            return Err(SendError::StartTlsUnavailable);
        }
    }
    if let Some(credentials) = &endpoint.credentials {
        connection
            .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
            .await
            .map_err(SendError::Session)?;
    }
    Ok(connection)
}

/// Says goodbye politely, but never waits longer than the timeout for it.
async fn close(mut connection: AsyncSmtpConnection, timeout: Duration) {
    if tokio::time::timeout(timeout, connection.quit())
        .await
        .is_err()
    {
        tracing::debug!("Timed out closing an idle SMTP connection.");
    }
}

/// Closes connections idle longer than the limit, every quarter of it, until the transport
/// is dropped.
async fn reap_idle(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(IDLE_LIMIT / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        reap_once(&shared).await;
    }
}

async fn reap_once(shared: &Shared) {
    let stale: Vec<Idle> = {
        let mut idle = shared.idle();
        let (stale, fresh) = idle.drain(..).partition(|i| i.since.elapsed() > IDLE_LIMIT);
        *idle = fresh;
        stale
    };
    for Idle { connection, .. } in stale {
        close(connection, shared.timeout).await;
    }
}

/// The connection broke (reset, closed, garbled) rather than the server answering: neither
/// a 4xx/5xx reply nor lettre refusing the message.
fn is_broken_link(error: &lettre::transport::smtp::Error) -> bool {
    !(error.is_transient() || error.is_permanent() || error.is_client() || error.is_timeout())
}

/// `250 2.0.0 Ok: queued as …`
fn describe(response: &Response) -> String {
    let mut text = response.code().to_string();
    for line in response.message() {
        text.push(' ');
        text.push_str(line);
    }
    text
}

/// lettre's TLS stream (futures-io) seen as the tokio stream lettre's connection takes.
/// A local type because neither the trait nor `Compat` is ours.
#[allow(deprecated)]
struct TlsBridge(Compat<AsyncNetworkStream>);

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

#[cfg(test)]
mod tests {
    use raccordo_smtp_sink::{Mode, SmtpSink};
    use tokio::net::TcpListener;
    use uuid::Uuid;

    use super::*;
    use crate::message::message_id_for;

    const WAIT: Duration = Duration::from_secs(5);

    fn options(url: &str) -> SmtpOptions {
        SmtpOptions {
            url: url.to_owned(),
            timeout: WAIT,
            pool_size: 2,
            hello_name: None,
        }
    }

    fn transport_for(sink: &SmtpSink, pool_size: usize) -> SmtpTransport {
        SmtpTransport::new(&SmtpOptions {
            pool_size,
            ..options(&format!("smtp://127.0.0.1:{}", sink.port()))
        })
        .expect("valid options")
    }

    fn email(n: u128) -> OutgoingEmail {
        let notification_id = Uuid::from_u128(n);
        let to = "stazione.appaltante@prefettura.example";
        OutgoingEmail {
            from: "Raccordo <raccordo@cittametropolitana.mi.example>".into(),
            to: to.into(),
            to_name: Some("Ufficio accoglienza".into()),
            subject: format!("Nuova disponibilità di alloggio — Rho ({n})"),
            text: "Gentile referente,\n.riga con punto iniziale\n".into(),
            html: "<p>Gentile referente,</p>".into(),
            kind: "housing.offered".into(),
            notification_id,
            message_id: message_id_for(notification_id, to, "raccordo.example"),
            urgent: false,
        }
    }

    fn endpoint(url: &str) -> Result<Endpoint, SmtpConfigError> {
        Endpoint::parse(&options(url))
    }

    #[test]
    fn urls_follow_lettres_forms_and_default_ports() {
        let plain = endpoint("smtp://mail.example").expect("valid");
        let starttls = endpoint("smtp://mail.example?tls=required").expect("valid");
        let opportunistic = endpoint("smtp://mail.example:2525?tls=opportunistic").expect("valid");
        let implicit = endpoint("smtps://mail.example").expect("valid");

        assert!(matches!(plain.security, Security::Plain));
        assert_eq!((plain.host.as_str(), plain.port), ("mail.example", 25));
        assert!(matches!(
            starttls.security,
            Security::StartTls { required: true, .. }
        ));
        assert_eq!(starttls.port, 587);
        assert!(matches!(
            opportunistic.security,
            Security::StartTls {
                required: false,
                ..
            }
        ));
        assert_eq!(opportunistic.port, 2525);
        assert!(matches!(implicit.security, Security::Implicit(_)));
        assert_eq!(implicit.port, 465);
    }

    #[test]
    fn credentials_and_hello_name_come_from_the_url() {
        let with_user =
            endpoint("smtps://user%40x:p%25ss%2Bw@mail.example:465/relay.example").expect("valid");
        let named = Endpoint::parse(&SmtpOptions {
            hello_name: Some("raccordo.example".into()),
            ..options("smtp://mail.example/ignored.example")
        })
        .expect("valid");

        assert_eq!(
            with_user.credentials,
            Some(Credentials::new("user@x".into(), "p%ss+w".into()))
        );
        assert_eq!(with_user.hello, ClientId::Domain("relay.example".into()));
        assert_eq!(named.hello, ClientId::Domain("raccordo.example".into()));
        assert!(
            endpoint("smtp://127.0.0.1:1025")
                .expect("valid")
                .credentials
                .is_none()
        );
    }

    #[test]
    fn bad_urls_and_options_are_refused_clearly() {
        assert!(matches!(
            endpoint("not a url"),
            Err(SmtpConfigError::Url(_))
        ));
        assert!(matches!(
            endpoint("http://mail.example"),
            Err(SmtpConfigError::Scheme(s)) if s == "http"
        ));
        assert!(matches!(
            endpoint("smtp://mail.example?tls=maybe"),
            Err(SmtpConfigError::Tls(t)) if t == "maybe"
        ));
        assert!(matches!(
            endpoint("smtps://mail.example?tls=required"),
            Err(SmtpConfigError::Tls(_))
        ));
        assert!(matches!(
            endpoint("smtp://user@mail.example"),
            Err(SmtpConfigError::MissingPassword)
        ));
        for clear in [
            "smtp://user:s3cret@mail.example",
            "smtp://user:s3cret@mail.example?tls=opportunistic",
        ] {
            let Err(error) = endpoint(clear) else {
                panic!("credentials in clear accepted");
            };
            assert!(matches!(error, SmtpConfigError::CredentialsInClear));
            assert!(!error.to_string().contains("s3cret"));
        }
        assert!(matches!(
            endpoint("smtp:relay"),
            Err(SmtpConfigError::MissingHost)
        ));
        assert!(matches!(
            SmtpTransport::new(&SmtpOptions {
                pool_size: 0,
                ..options("smtp://mail.example")
            }),
            Err(SmtpConfigError::PoolSize)
        ));
        assert!(matches!(
            SmtpTransport::new(&SmtpOptions {
                timeout: Duration::ZERO,
                ..options("smtp://mail.example")
            }),
            Err(SmtpConfigError::Timeout)
        ));
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let options = options("smtp://user:s3cret@mail.example:587?tls=required");
        let transport = SmtpTransport::new(&options).expect("valid");

        let printed = format!("{options:?} {transport:?}");

        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("mail.example"));
    }

    #[tokio::test]
    async fn sequential_sends_reuse_one_connection() {
        let sink = SmtpSink::start().await.expect("sink starts");
        let transport = transport_for(&sink, 4);

        for n in 0..5 {
            let delivered = transport.send(&email(n)).await.expect("sent");
            assert!(delivered.response.starts_with("250 "), "{delivered:?}");
        }

        let mails = sink.wait_for(5, WAIT).await.expect("five mails");
        assert_eq!(sink.connections_accepted(), 1);
        assert_eq!(transport.idle_count(), 1);
        assert_eq!(mails[0].to, vec!["stazione.appaltante@prefettura.example"]);
        assert_eq!(
            mails[4].header("Message-ID"),
            Some(email(4).message_id),
            "the Message-ID survives the trip"
        );
        assert_eq!(
            mails[0].text_body().as_deref(),
            Some("Gentile referente,\n.riga con punto iniziale\n")
        );
    }

    #[tokio::test]
    async fn concurrent_sends_never_open_more_than_pool_size_connections() {
        let sink = SmtpSink::start().await.expect("sink starts");
        let transport = transport_for(&sink, 2);

        let mut senders = tokio::task::JoinSet::new();
        for n in 0..12 {
            let transport = transport.clone();
            senders.spawn(async move { transport.send(&email(n)).await });
        }
        while let Some(done) = senders.join_next().await {
            done.expect("task finished").expect("sent");
        }

        sink.wait_for(12, WAIT).await.expect("twelve mails");
        assert!(
            sink.connections_accepted() <= 2,
            "{}",
            sink.connections_accepted()
        );
        assert!(transport.idle_count() <= 2);
    }

    #[tokio::test]
    async fn a_temporary_rejection_is_transient_and_drops_the_connection() {
        let sink = SmtpSink::start().await.expect("sink starts");
        let transport = transport_for(&sink, 1);
        sink.set_mode(Mode::TempFail);

        let error = transport.send(&email(1)).await.expect_err("451");

        assert!(matches!(error, SendError::Transaction(_)), "{error:?}");
        assert!(error.is_transient());
        assert_eq!(transport.idle_count(), 0);
        sink.set_mode(Mode::Accept);
        transport
            .send(&email(1))
            .await
            .expect("accepted once the fault clears");
    }

    #[tokio::test]
    async fn a_permanent_rejection_is_permanent() {
        let sink = SmtpSink::start().await.expect("sink starts");
        let transport = transport_for(&sink, 1);
        sink.set_mode(Mode::PermFail);

        let error = transport.send(&email(1)).await.expect_err("550");

        assert!(matches!(error, SendError::Transaction(_)), "{error:?}");
        assert!(!error.is_transient());
    }

    #[tokio::test]
    async fn a_refused_connection_is_transient() {
        let sink = SmtpSink::start().await.expect("sink starts");
        let transport = transport_for(&sink, 1);
        sink.stop().await;

        let error = transport.send(&email(1)).await.expect_err("refused");

        assert!(matches!(error, SendError::Connect(_)), "{error:?}");
        assert!(error.is_transient());
    }

    #[tokio::test]
    async fn a_server_that_never_greets_times_out_transiently() {
        let silent = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let port = silent.local_addr().expect("bound").port();
        let holder = tokio::spawn(async move {
            let accepted = silent.accept().await;
            // Hold the connection open, silent, until the test ends.
            std::future::pending::<()>().await;
            drop(accepted);
        });
        let transport = SmtpTransport::new(&SmtpOptions {
            timeout: Duration::from_millis(200),
            ..options(&format!("smtp://127.0.0.1:{port}"))
        })
        .expect("valid");

        let error = transport.send(&email(1)).await.expect_err("no greeting");

        assert!(
            matches!(
                error,
                SendError::Timeout {
                    step: Step::Connect,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.is_transient());
        holder.abort();
    }

    #[tokio::test]
    async fn a_restarted_server_is_invisible_to_the_next_send() {
        let sink = SmtpSink::start().await.expect("sink starts");
        let transport = transport_for(&sink, 1);
        transport.send(&email(1)).await.expect("sent");

        sink.stop().await;
        sink.restart().await.expect("restarts");
        // Used a moment ago: reused without a probe, fails, retried on a new connection.
        transport.send(&email(2)).await.expect("sent after restart");

        sink.wait_for(2, WAIT).await.expect("both mails");
        assert_eq!(sink.connections_accepted(), 2);
    }

    #[tokio::test]
    async fn a_connection_idle_for_a_while_is_probed_before_reuse() {
        let sink = SmtpSink::start().await.expect("sink starts");
        let transport = transport_for(&sink, 1);
        transport.send(&email(1)).await.expect("sent");
        transport.age_idle(PROBE_AFTER + Duration::from_secs(1));

        transport
            .send(&email(2))
            .await
            .expect("sent on the probed connection");
        sink.stop().await;
        sink.restart().await.expect("restarts");
        transport.age_idle(PROBE_AFTER + Duration::from_secs(1));
        transport
            .send(&email(3))
            .await
            .expect("sent after a failed probe");

        sink.wait_for(3, WAIT).await.expect("three mails");
        assert_eq!(sink.connections_accepted(), 2);
    }

    #[tokio::test]
    async fn connections_idle_past_the_limit_are_closed() {
        let sink = SmtpSink::start().await.expect("sink starts");
        let transport = transport_for(&sink, 2);
        transport.send(&email(1)).await.expect("sent");
        assert_eq!(transport.idle_count(), 1);

        transport.age_idle(IDLE_LIMIT + Duration::from_secs(1));
        reap_once(&transport.shared).await;

        assert_eq!(transport.idle_count(), 0);
        transport
            .send(&email(2))
            .await
            .expect("sent on a new connection");
        assert_eq!(sink.connections_accepted(), 2);
    }

    #[tokio::test]
    async fn a_stale_connection_found_at_checkout_is_replaced() {
        let sink = SmtpSink::start().await.expect("sink starts");
        let transport = transport_for(&sink, 1);
        transport.send(&email(1)).await.expect("sent");
        transport.age_idle(IDLE_LIMIT + Duration::from_secs(1));

        transport.send(&email(2)).await.expect("sent");

        assert_eq!(sink.connections_accepted(), 2);
        assert_eq!(transport.idle_count(), 1);
    }

    #[tokio::test]
    async fn required_starttls_on_a_server_without_it_is_refused() {
        let sink = SmtpSink::start().await.expect("sink starts");
        let transport = SmtpTransport::new(&options(&format!(
            "smtp://127.0.0.1:{}?tls=required",
            sink.port()
        )))
        .expect("valid");

        let error = transport.send(&email(1)).await.expect_err("no STARTTLS");

        assert!(matches!(error, SendError::StartTlsUnavailable), "{error:?}");
        assert!(sink.mails().is_empty());
    }

    #[tokio::test]
    async fn implicit_tls_to_a_plain_server_fails_transiently() {
        let sink = SmtpSink::start().await.expect("sink starts");
        let transport = SmtpTransport::new(&SmtpOptions {
            timeout: Duration::from_secs(2),
            ..options(&format!("smtps://127.0.0.1:{}", sink.port()))
        })
        .expect("valid");

        let error = transport.send(&email(1)).await.expect_err("not TLS");

        assert!(
            matches!(error, SendError::Session(_) | SendError::Timeout { .. }),
            "{error:?}"
        );
        assert!(error.is_transient());
    }

    #[tokio::test]
    async fn an_invalid_recipient_is_permanent_and_opens_no_connection() {
        let sink = SmtpSink::start().await.expect("sink starts");
        let transport = transport_for(&sink, 1);
        let bad = OutgoingEmail {
            to: "not an address".into(),
            ..email(1)
        };

        let error = transport.send(&bad).await.expect_err("bad address");

        assert!(matches!(error, SendError::Build(_)), "{error:?}");
        assert!(!error.is_transient());
        assert_eq!(sink.connections_accepted(), 0);
    }
}
