//! [`SmtpTransport`]: opens connections on `TCP_NODELAY` sockets (why: the `smtp` module
//! documentation) and sends through the pool. When a pooled connection turns out to be dead
//! (the server restarted since), the message is tried once more on a fresh connection.

use std::{fmt, sync::Arc, time::Duration};

#[allow(deprecated)]
// `AsyncNetworkStream` is the only public way to reuse lettre's TLS setup.
use lettre::transport::smtp::client::AsyncNetworkStream;
use lettre::transport::smtp::{
    authentication::Mechanism,
    client::AsyncSmtpConnection,
    response::{Category, Code, Detail, Response, Severity},
};
use tokio::net::TcpStream;
use tokio_util::compat::FuturesAsyncReadCompatExt;

use super::endpoint::{Endpoint, Security, SmtpConfigError, SmtpOptions};
use super::pool::{Pool, Pooled};
use super::tls_bridge::TlsBridge;
use crate::error::{Delivered, SendError, Step};
use crate::message::OutgoingEmail;

/// New connections refused in a row that one email waits out, with growing pauses of
/// [`REFUSAL_PAUSE`], before it fails (transiently: the mailer retries it later).
const MAX_REFUSALS_WAITED: u32 = 8;
const REFUSAL_PAUSE: Duration = Duration::from_millis(20);

/// `421`: the server is closing the channel (RFC 5321 §3.8), too busy or over its
/// connection limit.
const SERVICE_UNAVAILABLE: Code = Code {
    severity: Severity::TransientNegativeCompletion,
    category: Category::Connections,
    detail: Detail::One,
};

/// Sends email over SMTP through a bounded pool of connections. Cheap to clone: clones
/// share the pool.
#[derive(Clone)]
pub struct SmtpTransport {
    endpoint: Arc<Endpoint>,
    timeout: Duration,
    pool: Arc<Pool>,
}

impl fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("host", &self.endpoint.host)
            .field("port", &self.endpoint.port)
            .field("security", &self.endpoint.security_name())
            .field("auth", &self.endpoint.credentials.is_some())
            .field("idle", &self.pool.idle_count())
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
            endpoint: Arc::new(endpoint),
            timeout: options.timeout,
            pool: Arc::new(Pool::new(
                options.max_connections.max(options.pool_size),
                options.pool_size,
                options.timeout,
            )),
        })
    }

    /// Sends one email; `Delivered::response` is the server's final reply
    /// (`250 2.0.0 Ok: queued as …`).
    ///
    /// A new connection the server refuses (a `421` greeting, a refused connect) while
    /// others of the pool are open lowers the pool's limit, and the email waits for one of
    /// those instead of failing: the server said how many it takes.
    ///
    /// # Errors
    /// See [`SendError::is_transient`] for which ones are worth retrying.
    pub async fn send(&self, email: &OutgoingEmail) -> Result<Delivered, SendError> {
        let message = email.to_message()?;
        let bytes = message.formatted();

        let mut refusals = 0;
        loop {
            let permit = self.pool.permit().await;
            let result = match self.pool.checkout().await {
                Some(pooled) => match self.transmit(pooled, &message, &bytes).await {
                    // A pooled connection the server closed while it sat idle fails on its
                    // first command. That says nothing about the message, so it is tried
                    // once more on a fresh connection, which makes a restarted server
                    // invisible.
                    Err(SendError::Transaction(error)) if is_broken_link(&error) => {
                        tracing::debug!(%error, "Pooled SMTP connection failed; retrying on a new one.");
                        self.send_on_fresh(&message, &bytes).await
                    }
                    result => result,
                },
                None => self.send_on_fresh(&message, &bytes).await,
            };
            match result {
                Err(error) if is_refused_connection(&error) => {
                    let others_open = self.pool.refused();
                    refusals += 1;
                    if !others_open || refusals > MAX_REFUSALS_WAITED {
                        return Err(error);
                    }
                    tracing::debug!(%error, "SMTP server refused a new connection; waiting for an open one.");
                    drop(permit);
                    tokio::time::sleep(REFUSAL_PAUSE * refusals).await;
                }
                Err(SendError::Transaction(error)) => {
                    if error.status() == Some(SERVICE_UNAVAILABLE) {
                        self.pool.busy();
                    }
                    return Err(SendError::Transaction(error));
                }
                Ok(delivered) => {
                    self.pool.sent();
                    return Ok(delivered);
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Connections now (open, the most at once, the pool's current limit).
    pub fn connections(&self) -> (usize, usize, usize) {
        self.pool.connections()
    }

    async fn send_on_fresh(
        &self,
        message: &lettre::Message,
        bytes: &[u8],
    ) -> Result<Delivered, SendError> {
        let slot = self.pool.opening();
        let fresh = self.connect().await?;
        self.transmit(slot.fill(fresh), message, bytes).await
    }

    /// One MAIL/RCPT/DATA exchange, bounded by the timeout; the connection goes back to the
    /// pool only if it succeeded.
    async fn transmit(
        &self,
        mut pooled: Pooled,
        message: &lettre::Message,
        bytes: &[u8],
    ) -> Result<Delivered, SendError> {
        let timeout = self.timeout;
        let sending = pooled.connection.send(message.envelope(), bytes);
        match tokio::time::timeout(timeout, sending).await {
            Ok(Ok(response)) => {
                self.pool.checkin(pooled);
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

    /// Opens a connection, bounded by the timeout as a whole.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, open(&self.endpoint))
            .await
            .map_err(|_| SendError::Timeout {
                step: Step::Connect,
                after: timeout,
            })?
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
            // Implicit TLS is up before the greeting: see `tls_bridge`.
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

/// The connection broke (reset, closed, garbled) rather than the server answering: neither
/// a 4xx/5xx reply nor lettre refusing the message.
fn is_broken_link(error: &lettre::transport::smtp::Error) -> bool {
    !(error.is_transient() || error.is_permanent() || error.is_client() || error.is_timeout())
}

/// The server would not take one more connection: the TCP connect was refused, or the
/// greeting was a `421`.
fn is_refused_connection(error: &SendError) -> bool {
    match error {
        SendError::Connect(io) => io.kind() == std::io::ErrorKind::ConnectionRefused,
        SendError::Session(error) => error.status() == Some(SERVICE_UNAVAILABLE),
        _ => false,
    }
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

#[cfg(test)]
mod tests {
    use raccordo_smtp_sink::{Behaviour, Delay, Mode, SmtpSink};
    use tokio::net::TcpListener;
    use uuid::Uuid;

    use super::super::endpoint::tests::options;
    use super::super::pool::{IDLE_LIMIT, PROBE_AFTER};
    use super::*;
    use crate::message::message_id_for;

    const WAIT: Duration = Duration::from_secs(5);

    fn transport_for(sink: &SmtpSink, pool_size: usize) -> SmtpTransport {
        SmtpTransport::new(&SmtpOptions {
            pool_size,
            max_connections: pool_size,
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
            reminder: false,
            list_unsubscribe: None,
            digest: false,
        }
    }

    #[test]
    fn a_zero_pool_size_or_timeout_is_refused() {
        assert!(matches!(
            SmtpTransport::new(&SmtpOptions {
                pool_size: 0,
                max_connections: 0,
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
        assert_eq!(transport.pool.idle_count(), 1);
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
        assert!(transport.pool.idle_count() <= 2);
    }

    #[tokio::test]
    async fn a_server_refusing_connections_over_its_limit_gets_every_email_within_it() {
        // Arrange: a relay that takes 20 ms per email and 3 connections; a pool of 12.
        let sink = SmtpSink::start().await.expect("sink starts");
        sink.set_behaviour(Behaviour {
            data_delay: Delay::Fixed(Duration::from_millis(20)),
            max_connections: Some(3),
            ..Behaviour::default()
        });
        let transport = transport_for(&sink, 12);

        // Act
        let mut senders = tokio::task::JoinSet::new();
        for n in 0..40 {
            let transport = transport.clone();
            senders.spawn(async move { transport.send(&email(n)).await });
        }
        while let Some(done) = senders.join_next().await {
            done.expect("task finished").expect("sent despite the 421s");
        }

        // Assert: the 421 greetings were waited out on the connections the server took.
        sink.wait_for(40, WAIT).await.expect("forty mails");
        assert!(sink.refused_connections() > 0);
        assert_eq!(sink.peak_connections(), 3);
        let (_, peak, limit) = transport.connections();
        assert!(peak <= 12 && limit <= 4, "peak {peak}, limit {limit}");
    }

    #[tokio::test]
    async fn the_pool_opens_connections_as_the_backlog_needs_them() {
        let sink = SmtpSink::start().await.expect("sink starts");
        sink.set_behaviour(Behaviour {
            data_delay: Delay::Fixed(Duration::from_millis(100)),
            ..Behaviour::default()
        });
        let transport = transport_for(&sink, 16);

        // One at a time: one connection, reused.
        for n in 0..3 {
            transport.send(&email(n)).await.expect("sent");
        }
        assert_eq!(sink.connections_accepted(), 1);

        // Ten at once: ten conversations in flight.
        let mut senders = tokio::task::JoinSet::new();
        for n in 3..13 {
            let transport = transport.clone();
            senders.spawn(async move { transport.send(&email(n)).await });
        }
        while let Some(done) = senders.join_next().await {
            done.expect("task finished").expect("sent");
        }
        assert_eq!(sink.peak_transactions(), 10);
        assert_eq!(sink.peak_connections(), 10);
    }

    #[tokio::test]
    async fn a_temporary_rejection_is_transient_and_drops_the_connection() {
        let sink = SmtpSink::start().await.expect("sink starts");
        let transport = transport_for(&sink, 1);
        sink.set_mode(Mode::TempFail);

        let error = transport.send(&email(1)).await.expect_err("451");

        assert!(matches!(error, SendError::Transaction(_)), "{error:?}");
        assert!(error.is_transient());
        assert_eq!(transport.pool.idle_count(), 0);
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
        transport
            .pool
            .age_idle(PROBE_AFTER + Duration::from_secs(1));

        transport
            .send(&email(2))
            .await
            .expect("sent on the probed connection");
        sink.stop().await;
        sink.restart().await.expect("restarts");
        transport
            .pool
            .age_idle(PROBE_AFTER + Duration::from_secs(1));
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
        assert_eq!(transport.pool.idle_count(), 1);

        transport.pool.age_idle(IDLE_LIMIT + Duration::from_secs(1));
        transport.pool.reap_once().await;

        assert_eq!(transport.pool.idle_count(), 0);
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
        transport.pool.age_idle(IDLE_LIMIT + Duration::from_secs(1));

        transport.send(&email(2)).await.expect("sent");

        assert_eq!(sink.connections_accepted(), 2);
        assert_eq!(transport.pool.idle_count(), 1);
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
