//! The sink itself: a listener on 127.0.0.1, the mails it has received, and the switches a
//! test uses to make it misbehave.
//!
//! Waiting is done on a `watch` channel carrying the number of stored mails, so
//! [`SmtpSink::wait_for`] wakes exactly when a mail arrives instead of polling.

use std::{
    io,
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex, PoisonError, atomic::Ordering},
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpSocket},
    sync::watch,
    task::{JoinHandle, JoinSet},
};

use crate::mail::ReceivedMail;
use crate::session;
pub use crate::store::{Behaviour, Delay, Mode, Rejection};
use crate::store::{Observer, Store};

/// [`SmtpSink::wait_for`] gave up before enough mails arrived.
#[derive(Debug, Clone, thiserror::Error)]
#[error("expected {expected} mails within {waited:?}, received {received}")]
pub struct Timeout {
    /// How many mails the caller waited for.
    pub expected: usize,
    /// How many had arrived when the wait ended.
    pub received: usize,
    /// How long the caller waited.
    pub waited: Duration,
}

/// The accept loop of a running sink and the switch that stops it.
#[derive(Debug)]
struct Running {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// A real SMTP server on `127.0.0.1` that stores every mail it accepts.
///
/// Dropping the sink stops it.
#[derive(Debug)]
pub struct SmtpSink {
    addr: SocketAddr,
    store: Arc<Store>,
    running: Mutex<Option<Running>>,
}

impl SmtpSink {
    /// Binds `127.0.0.1:0` and starts accepting connections.
    ///
    /// # Errors
    /// Binding or listening on the socket failed.
    pub async fn start() -> io::Result<SmtpSink> {
        Self::start_with(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), None).await
    }

    /// Like [`SmtpSink::start`], but every accepted mail is handed to `observer` at the moment
    /// it is accepted — before the `250` reply goes out — instead of being kept: for
    /// benchmarks, which need each mail's arrival time and must not hold thousands of mails.
    /// [`SmtpSink::mails`] then stays empty; [`SmtpSink::wait_for`] still counts arrivals
    /// (and returns an empty list). `observer` runs on the session's task: keep it cheap
    /// (record a timestamp, send to a channel).
    ///
    /// # Errors
    /// Binding or listening on the socket failed.
    pub async fn start_observed(
        observer: impl Fn(ReceivedMail) + Send + Sync + 'static,
    ) -> io::Result<SmtpSink> {
        Self::start_with(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            Some(Observer(Box::new(observer))),
        )
        .await
    }

    /// Like [`SmtpSink::start_observed`], on `addr`: for a server that others are configured
    /// to reach on a fixed port (`raccordo pec-sim`).
    ///
    /// # Errors
    /// Binding or listening on the socket failed.
    pub async fn start_observed_on(
        addr: SocketAddr,
        observer: impl Fn(ReceivedMail) + Send + Sync + 'static,
    ) -> io::Result<SmtpSink> {
        Self::start_with(addr, Some(Observer(Box::new(observer)))).await
    }

    async fn start_with(addr: SocketAddr, observer: Option<Observer>) -> io::Result<SmtpSink> {
        let listener = bind(addr)?;
        let addr = listener.local_addr()?;
        let store = Arc::new(Store::new(observer));
        let running = spawn(listener, Arc::clone(&store));
        tracing::debug!(%addr, "SMTP sink started.");
        Ok(SmtpSink {
            addr,
            store,
            running: Mutex::new(Some(running)),
        })
    }

    /// The port the sink listens on (stable across [`SmtpSink::restart`]).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address the sink listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A snapshot of every mail received so far, in arrival order.
    pub fn mails(&self) -> Vec<ReceivedMail> {
        self.store.mails().clone()
    }

    /// Waits until at least `n` mails have arrived, or `within` has passed.
    ///
    /// # Errors
    /// [`Timeout`] with the number that did arrive.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Result<Vec<ReceivedMail>, Timeout> {
        let mut count = self.store.count.subscribe();
        // The borrow `wait_for` returns is dropped at once: holding it while locking the mail
        // list would invert the lock order of `Store::push`.
        let reached = tokio::time::timeout(within, async {
            count.wait_for(|&c| c >= n).await.map(|_| ())
        })
        .await;
        match reached {
            Ok(Ok(())) => Ok(self.mails()),
            // The sender lives in `self.store`, so the channel cannot close while we wait;
            // either way the honest answer is a timeout with the current count.
            Ok(Err(_)) | Err(_) => Err(Timeout {
                expected: n,
                received: self.store.mails().len(),
                waited: within,
            }),
        }
    }

    /// Forgets every mail received so far.
    pub fn clear(&self) {
        let mut mails = self.store.mails();
        mails.clear();
        self.store.count.send_replace(0);
    }

    /// Switches how the sink answers; open sessions follow from their next command.
    pub fn set_mode(&self, mode: Mode) {
        *self
            .store
            .mode
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = mode;
    }

    /// Refuses `address` from now on, `how` says how (`None`: accepts it again). Open
    /// sessions follow from their next `RCPT`.
    pub fn reject(&self, address: &str, how: Option<Rejection>) {
        self.store.set_rejection(address, how);
    }

    /// The delivery status notifications of addresses rejected by [`Rejection::Dsn`], from
    /// now on, each as the bytes of a message (a former receiver gets no more).
    pub fn dsn_reports(&self) -> tokio::sync::mpsc::UnboundedReceiver<Vec<u8>> {
        let (outlet, reports) = tokio::sync::mpsc::unbounded_channel();
        self.store.set_dsn_outlet(outlet);
        reports
    }

    /// Sets the sink's latency, connection limit and transient refusals; open sessions
    /// follow from their next command, the limit applies to the next connection.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self
            .store
            .behaviour
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = behaviour;
    }

    /// Sessions being served now.
    pub fn open_connections(&self) -> usize {
        self.store.open_connections.load(Ordering::Acquire)
    }

    /// The most sessions served at once since the sink was created.
    pub fn peak_connections(&self) -> usize {
        self.store.peak_connections.load(Ordering::Acquire)
    }

    /// Connections greeted with `421` because [`Behaviour::max_connections`] were open.
    pub fn refused_connections(&self) -> u64 {
        self.store.refused_connections.load(Ordering::Relaxed)
    }

    /// Mail transactions open now (`MAIL` accepted, the final reply to `DATA` not yet
    /// sent): the emails in flight.
    pub fn transactions_in_flight(&self) -> usize {
        self.store.transactions.load(Ordering::Acquire)
    }

    /// The most mail transactions open at once since the sink was created.
    pub fn peak_transactions(&self) -> usize {
        self.store.peak_transactions.load(Ordering::Acquire)
    }

    /// `MAIL FROM` commands refused by [`Behaviour::transient_refusal_rate`].
    pub fn transient_refusals(&self) -> u64 {
        self.store.transient_refusals.load(Ordering::Relaxed)
    }

    /// Forgets the peaks, so that the next run measures its own.
    pub fn reset_peaks(&self) {
        self.store
            .peak_connections
            .store(self.open_connections(), Ordering::Release);
        self.store
            .peak_transactions
            .store(self.transactions_in_flight(), Ordering::Release);
    }

    /// How many TCP connections the sink has served since it was created (not counting
    /// those refused over the limit), to observe connection reuse.
    pub fn connections_accepted(&self) -> u64 {
        self.store.accepted_connections.load(Ordering::Relaxed)
    }

    /// Closes the listener and every open session, and waits until they are closed: from then
    /// on the port refuses connections. Stopping a stopped sink does nothing.
    pub async fn stop(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(running) = running {
            running.shutdown.send_replace(true);
            // The accept loop only ends by our signal; a panic there has already been
            // reported by the runtime and leaves nothing to clean up.
            let _ = running.task.await;
            tracing::debug!(addr = %self.addr, "SMTP sink stopped.");
        }
    }

    /// Listens again on the same port after [`SmtpSink::stop`]. Restarting a running sink
    /// does nothing.
    ///
    /// # Errors
    /// The port could not be bound again (another process took it meanwhile).
    pub async fn restart(&self) -> io::Result<()> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if running.is_none() {
            let listener = bind(self.addr)?;
            *running = Some(spawn(listener, Arc::clone(&self.store)));
            tracing::debug!(addr = %self.addr, "SMTP sink restarted.");
        }
        Ok(())
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(running) = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            // The accept loop sees the signal, closes the listener and aborts the sessions.
            running.shutdown.send_replace(true);
        }
    }
}

/// Binds with `SO_REUSEADDR` so that [`SmtpSink::restart`] can take the same port back while
/// the sessions closed by `stop` linger in `TIME_WAIT`.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

fn spawn(listener: TcpListener, store: Arc<Store>) -> Running {
    let (shutdown, signal) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, store, signal));
    Running { shutdown, task }
}

async fn accept_loop(listener: TcpListener, store: Arc<Store>, mut signal: watch::Receiver<bool>) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = async { signal.wait_for(|&stop| stop).await.map(|_| ()) } => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Replies are small writes answering small writes: without NODELAY,
                    // Nagle's algorithm meets the client's delayed ACK and every reply waits
                    // tens of milliseconds, which would make the sink the benchmark's bottleneck.
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%error, "Failed to set TCP_NODELAY.");
                    }
                    let limit = store.behaviour().max_connections;
                    if limit.is_some_and(|l| store.open_connections.load(Ordering::Acquire) >= l) {
                        store.refused_connections.fetch_add(1, Ordering::Relaxed);
                        sessions.spawn(session::refuse(stream));
                        continue;
                    }
                    store.accepted_connections.fetch_add(1, Ordering::Relaxed);
                    // Counted here, not in the session: the next accept must see it.
                    let served = session::Served::new(Arc::clone(&store));
                    sessions.spawn(session::serve(stream, peer, served));
                }
                Err(error) => {
                    // Accept fails for per-connection reasons (reset before accept) or for
                    // exhaustion (EMFILE); a short pause keeps the latter from spinning.
                    tracing::debug!(%error, "Failed to accept a connection.");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    drop(listener);
    // Aborting drops each session's socket, which closes it.
    sessions.shutdown().await;
}

#[cfg(test)]
mod tests {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor, message::MultiPart};
    use tokio::{
        io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
        net::TcpStream,
    };

    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    fn lettre_for(sink: &SmtpSink) -> AsyncSmtpTransport<Tokio1Executor> {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(sink.port())
            .timeout(Some(WAIT))
            .build()
    }

    fn sample(subject: &str, text: &str, html: &str) -> Message {
        Message::builder()
            .from(
                "Raccordo <raccordo@example.org>"
                    .parse()
                    .expect("valid from"),
            )
            .to("Referente <referente@comune.example>"
                .parse()
                .expect("valid to"))
            .subject(subject)
            .multipart(MultiPart::alternative_plain_html(
                text.to_owned(),
                html.to_owned(),
            ))
            .expect("valid message")
    }

    /// Reads reply lines until a final line (`NNN ` rather than `NNN-`) with `code`.
    async fn read_until_final<R: tokio::io::AsyncBufRead + Unpin>(
        reader: &mut R,
        code: &str,
    ) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(WAIT, reader.read_line(&mut line))
                .await
                .expect("reply in time")
                .expect("readable");
            assert!(read > 0, "connection closed; got {lines:?}");
            let done = line.starts_with(&format!("{code} "));
            lines.push(line.trim_end().to_owned());
            if done {
                return lines;
            }
        }
    }

    #[tokio::test]
    async fn lettre_delivers_a_multipart_message_with_a_non_ascii_subject() {
        // Arrange
        let sink = SmtpSink::start().await.expect("sink starts");
        let text = "Gentile referente,\n.una riga che inizia con un punto\nà è ì ò ù €\n";
        let html = "<p>Città <b>metropolitana</b></p>\n<p>.punto</p>";
        let message = sample("Disponibilità — Città di Sesto", text, html);

        // Act
        let response = lettre_for(&sink).send(message).await.expect("sink accepts");

        // Assert
        assert_eq!(response.code().to_string(), "250");
        let mails = sink.wait_for(1, WAIT).await.expect("one mail");
        let mail = &mails[0];
        assert_eq!(mail.from, "raccordo@example.org");
        assert_eq!(mail.to, vec!["referente@comune.example".to_owned()]);
        assert_eq!(
            mail.subject().as_deref(),
            Some("Disponibilità — Città di Sesto")
        );
        assert_eq!(mail.text_body().as_deref(), Some(text));
        assert_eq!(mail.html_body().as_deref(), Some(html));
        assert!(
            mail.header("Content-Type")
                .is_some_and(|ct| ct.starts_with("multipart/alternative"))
        );
    }

    #[tokio::test]
    async fn bodies_lettre_encodes_in_base64_and_quoted_printable_both_decode() {
        let sink = SmtpSink::start().await.expect("sink starts");
        let text = "€€€ ÀÈÌÒÙ àèìòù €€€ ÀÈÌÒÙ àèìòù\n".repeat(3);
        let html = "<p>Gentile referente, è disponibile un alloggio.</p>\n".repeat(3);

        lettre_for(&sink)
            .send(sample("s", &text, &html))
            .await
            .expect("sink accepts");

        let mails = sink.wait_for(1, WAIT).await.expect("one mail");
        assert!(mails[0].data.contains("Content-Transfer-Encoding: base64"));
        assert!(
            mails[0]
                .data
                .contains("Content-Transfer-Encoding: quoted-printable")
        );
        assert_eq!(mails[0].text_body(), Some(text));
        assert_eq!(mails[0].html_body(), Some(html));
    }

    #[tokio::test]
    async fn ehlo_advertises_the_extensions_lettre_relies_on() {
        let sink = SmtpSink::start().await.expect("sink starts");
        let stream = TcpStream::connect(sink.addr()).await.expect("connects");
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        read_until_final(&mut reader, "220").await;

        write
            .write_all(b"EHLO client.example\r\n")
            .await
            .expect("writes");
        let lines = read_until_final(&mut reader, "250").await;

        for extension in ["PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE"] {
            assert!(
                lines.iter().any(|l| l[4..].starts_with(extension)),
                "{extension} missing from {lines:?}"
            );
        }
    }

    #[tokio::test]
    async fn pipelined_commands_are_all_answered_and_dots_are_unstuffed() {
        // Arrange
        let sink = SmtpSink::start().await.expect("sink starts");
        let stream = TcpStream::connect(sink.addr()).await.expect("connects");
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        read_until_final(&mut reader, "220").await;

        // Act: one write for the envelope, one for the content and QUIT (RFC 2920).
        write
            .write_all(
                b"EHLO client.example\r\nMAIL FROM:<a@example.org> BODY=8BITMIME\r\n\
                  RCPT TO:<b@example.org>\r\nRCPT TO:<c@example.org>\r\nDATA\r\n",
            )
            .await
            .expect("writes");
        read_until_final(&mut reader, "250").await; // EHLO
        read_until_final(&mut reader, "250").await; // MAIL
        read_until_final(&mut reader, "250").await; // RCPT
        read_until_final(&mut reader, "250").await; // RCPT
        read_until_final(&mut reader, "354").await;
        write
            .write_all(b"Subject: pipelined\r\n\r\n..starts with a dot\r\nend\r\n.\r\nQUIT\r\n")
            .await
            .expect("writes");
        let queued = read_until_final(&mut reader, "250").await;
        let bye = read_until_final(&mut reader, "221").await;

        // Assert
        assert!(queued[0].contains("queued as"));
        assert_eq!(bye.len(), 1);
        let mails = sink.wait_for(1, WAIT).await.expect("one mail");
        assert_eq!(mails[0].to, vec!["b@example.org", "c@example.org"]);
        assert_eq!(
            mails[0].data,
            "Subject: pipelined\r\n\r\n.starts with a dot\r\nend\r\n"
        );
    }

    #[tokio::test]
    async fn commands_out_of_order_are_refused_and_rset_clears_the_transaction() {
        let sink = SmtpSink::start().await.expect("sink starts");
        let stream = TcpStream::connect(sink.addr()).await.expect("connects");
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        read_until_final(&mut reader, "220").await;

        write
            .write_all(
                b"MAIL FROM:<a@example.org>\r\nHELO c\r\nRCPT TO:<b@example.org>\r\n\
                  MAIL FROM:<>\r\nRSET\r\nDATA\r\nNOOP\r\nFOO\r\n",
            )
            .await
            .expect("writes");

        read_until_final(&mut reader, "503").await; // MAIL before HELO
        read_until_final(&mut reader, "250").await; // HELO
        read_until_final(&mut reader, "503").await; // RCPT before MAIL
        read_until_final(&mut reader, "250").await; // null sender accepted
        read_until_final(&mut reader, "250").await; // RSET
        read_until_final(&mut reader, "503").await; // DATA after RSET
        read_until_final(&mut reader, "250").await; // NOOP
        read_until_final(&mut reader, "502").await; // unknown command
        assert!(sink.mails().is_empty());
    }

    #[tokio::test]
    async fn many_concurrent_connections_all_deliver() {
        let sink = SmtpSink::start().await.expect("sink starts");
        let transport = lettre_for(&sink);
        let mut senders = JoinSet::new();
        for sender in 0..16 {
            let transport = transport.clone();
            senders.spawn(async move {
                for n in 0..5 {
                    transport
                        .send(sample(&format!("{sender}-{n}"), "testo", "<p>html</p>"))
                        .await
                        .expect("sink accepts");
                }
            });
        }
        while let Some(done) = senders.join_next().await {
            done.expect("sender finished");
        }

        let mails = sink.wait_for(80, WAIT).await.expect("all mails");

        assert_eq!(mails.len(), 80);
        assert!(sink.connections_accepted() > 1);
    }

    #[tokio::test]
    async fn temp_fail_mode_answers_451_and_lettre_sees_a_transient_error() {
        let sink = SmtpSink::start().await.expect("sink starts");
        sink.set_mode(Mode::TempFail);

        let error = lettre_for(&sink)
            .send(sample("s", "t", "<p>h</p>"))
            .await
            .expect_err("rejected");

        assert!(error.is_transient(), "{error:?}");
        assert_eq!(error.status().map(u16::from), Some(451));
        assert!(sink.mails().is_empty());
    }

    #[tokio::test]
    async fn an_address_rejected_at_rcpt_gets_550_and_others_still_arrive() {
        let sink = SmtpSink::start().await.expect("sink starts");
        sink.reject("REFERENTE@comune.example", Some(Rejection::AtRcpt));

        let error = lettre_for(&sink)
            .send(sample("s", "t", "<p>h</p>"))
            .await
            .expect_err("rejected");
        assert!(error.is_permanent(), "{error:?}");
        assert_eq!(error.status().map(u16::from), Some(550));
        assert!(sink.mails().is_empty());

        sink.reject("referente@comune.example", None);
        lettre_for(&sink)
            .send(sample("s", "t", "<p>h</p>"))
            .await
            .expect("accepted again");
        assert_eq!(sink.mails().len(), 1);
    }

    #[tokio::test]
    async fn an_address_rejected_by_report_is_accepted_then_returned_as_an_rfc3464_report() {
        let sink = SmtpSink::start().await.expect("sink starts");
        let mut reports = sink.dsn_reports();
        sink.reject("referente@comune.example", Some(Rejection::Dsn));
        let message = sample("s", "t", "<p>h</p>");

        lettre_for(&sink).send(message).await.expect("accepted");

        let report = tokio::time::timeout(WAIT, reports.recv())
            .await
            .expect("a report in time")
            .expect("a report");
        let report = String::from_utf8(report).expect("ASCII");
        assert!(sink.mails().is_empty(), "a returned mail is not kept");
        assert!(report.contains("To: <raccordo@example.org>"), "{report}");
        assert!(report.contains("report-type=delivery-status"), "{report}");
        assert!(
            report.contains("Final-Recipient: rfc822; referente@comune.example\r\nOriginal-Recipient: rfc822;referente@comune.example\r\nAction: failed\r\nStatus: 5.1.1"),
            "{report}"
        );
        // The returned headers (with the original Message-ID, which the hub matches; this
        // sample has none), not the body.
        let returned = report
            .split("Content-Type: text/rfc822-headers\r\n\r\n")
            .nth(1)
            .expect("returned headers");
        assert!(returned.contains("Subject: s\r\n"), "{returned}");
        assert!(!returned.contains("<p>h</p>"), "{returned}");
    }

    #[tokio::test]
    async fn perm_fail_mode_answers_550_and_lettre_sees_a_permanent_error() {
        let sink = SmtpSink::start().await.expect("sink starts");
        sink.set_mode(Mode::PermFail);

        let error = lettre_for(&sink)
            .send(sample("s", "t", "<p>h</p>"))
            .await
            .expect_err("rejected");

        assert!(error.is_permanent(), "{error:?}");
        assert_eq!(error.status().map(u16::from), Some(550));

        sink.set_mode(Mode::Accept);
        lettre_for(&sink)
            .send(sample("s", "t", "<p>h</p>"))
            .await
            .expect("accepted again");
        assert_eq!(sink.mails().len(), 1);
    }

    #[tokio::test]
    async fn stop_closes_open_sessions_and_refuses_connections_until_restart() {
        // Arrange: an idle open session.
        let sink = SmtpSink::start().await.expect("sink starts");
        let stream = TcpStream::connect(sink.addr()).await.expect("connects");
        let mut reader = BufReader::new(stream);
        read_until_final(&mut reader, "220").await;

        // Act
        sink.stop().await;

        // Assert: the session sees end of stream, new connections are refused.
        let mut rest = String::new();
        let read = tokio::time::timeout(WAIT, reader.read_line(&mut rest))
            .await
            .expect("closed in time");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?} {rest:?}");
        let refused = TcpStream::connect(sink.addr()).await;
        assert!(refused.is_err(), "port still accepts connections");

        sink.restart().await.expect("rebinds the same port");
        lettre_for(&sink)
            .send(sample("after restart", "t", "<p>h</p>"))
            .await
            .expect("accepted after restart");
        let mails = sink.wait_for(1, WAIT).await.expect("one mail");
        assert_eq!(mails[0].subject().as_deref(), Some("after restart"));
    }

    #[tokio::test]
    async fn an_observed_sink_hands_each_mail_over_and_keeps_none() {
        // Arrange
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = SmtpSink::start_observed({
            let seen = Arc::clone(&seen);
            move |mail: ReceivedMail| {
                seen.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(mail.subject());
            }
        })
        .await
        .expect("sink starts");

        // Act
        for subject in ["one", "two"] {
            lettre_for(&sink)
                .send(sample(subject, "t", "<p>h</p>"))
                .await
                .expect("accepted");
        }

        // Assert
        sink.wait_for(2, WAIT).await.expect("two arrivals counted");
        assert!(sink.mails().is_empty());
        let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert_eq!(seen, vec![Some("one".to_owned()), Some("two".to_owned())]);
    }

    #[tokio::test]
    async fn a_connection_over_the_limit_is_greeted_with_421_and_closed() {
        let sink = SmtpSink::start().await.expect("sink starts");
        sink.set_behaviour(Behaviour {
            max_connections: Some(1),
            ..Behaviour::default()
        });
        let first = TcpStream::connect(sink.addr()).await.expect("connects");
        let mut first = BufReader::new(first);
        read_until_final(&mut first, "220").await;

        let second = TcpStream::connect(sink.addr()).await.expect("connects");
        let mut second = BufReader::new(second);
        let refused = read_until_final(&mut second, "421").await;
        let mut rest = String::new();
        let closed = tokio::time::timeout(WAIT, second.read_line(&mut rest)).await;

        assert!(refused[0].starts_with("421 4.7.0"), "{refused:?}");
        assert!(matches!(closed, Ok(Ok(0))), "{closed:?} {rest:?}");
        assert_eq!(
            (sink.peak_connections(), sink.refused_connections()),
            (1, 1)
        );
        drop(first);
    }

    #[tokio::test]
    async fn delays_hold_the_replies_and_refusals_alternate_451_and_421() {
        // Arrange: 60 ms before accepting each mail, every second MAIL refused.
        let sink = SmtpSink::start().await.expect("sink starts");
        sink.set_behaviour(Behaviour {
            data_delay: Delay::Uniform {
                min: Duration::from_millis(60),
                max: Duration::from_millis(70),
            },
            transient_refusal_rate: 0.5,
            ..Behaviour::default()
        });
        let lettre = lettre_for(&sink);

        // Act
        let mut outcomes = Vec::new();
        for n in 0..4 {
            let started = std::time::Instant::now();
            let sent = lettre.send(sample(&format!("m{n}"), "t", "<p>h</p>")).await;
            outcomes.push((sent.map_err(|e| e.status()), started.elapsed()));
        }

        // Assert: MAIL 1 and 3 refused (451, then 421), 2 and 4 accepted after the delay.
        let codes: Vec<_> = outcomes
            .iter()
            .map(|(o, _)| o.as_ref().err().copied().flatten().map(|c| c.to_string()))
            .collect();
        assert_eq!(codes, [None, Some("451".into()), None, Some("421".into())]);
        for (outcome, took) in &outcomes {
            if outcome.is_ok() {
                assert!(*took >= Duration::from_millis(60), "{took:?}");
            }
        }
        assert_eq!(sink.transient_refusals(), 2);
        assert_eq!(sink.transactions_in_flight(), 0);
    }

    #[tokio::test]
    async fn wait_for_gives_up_with_the_count_and_clear_forgets() {
        let sink = SmtpSink::start().await.expect("sink starts");
        lettre_for(&sink)
            .send(sample("one", "t", "<p>h</p>"))
            .await
            .expect("accepted");

        let timeout = sink
            .wait_for(2, Duration::from_millis(50))
            .await
            .expect_err("only one mail");
        sink.clear();

        assert_eq!((timeout.expected, timeout.received), (2, 1));
        assert!(sink.mails().is_empty());
    }
}
