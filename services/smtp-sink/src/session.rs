//! One SMTP conversation (RFC 5321 §3–§4) on one accepted connection.
//!
//! Replies are buffered and flushed only when no further client input is already buffered:
//! a pipelining client (RFC 2920) that sends `MAIL`, `RCPT` and `DATA` in one write gets the
//! three replies in one write, and a client that waits for each reply gets it at once.

use std::{
    io,
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
};

use crate::mail::ReceivedMail;
use crate::store::{Mode, Refusal, Rejection, Store};

/// How long after accepting a mail the sink returns its reports ([`Rejection::Dsn`]).
const DSN_DELAY: std::time::Duration = std::time::Duration::from_millis(300);

/// The largest message accepted, advertised with the `SIZE` extension (RFC 1870).
pub(crate) const MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;

/// Longest accepted line. RFC 5321 §4.5.3.1 sets 512 for commands and 1000 for text lines;
/// the sink is lenient so that a sloppy client's mail is kept and can be inspected.
const MAX_LINE_BYTES: u64 = 64 * 1024;

/// Serves one connection until the client quits or disconnects.
/// One served connection, counted in `open_connections` until dropped — also when the
/// sink aborts the session.
pub(crate) struct Served(pub(crate) Arc<Store>);

impl Served {
    pub(crate) fn new(store: Arc<Store>) -> Served {
        Store::raise(&store.open_connections, &store.peak_connections);
        Served(store)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(crate) async fn serve(stream: TcpStream, peer: SocketAddr, served: Served) {
    let store = Arc::clone(&served.0);
    let (read, write) = stream.into_split();
    let mut session = Session {
        reader: BufReader::new(read),
        writer: BufWriter::new(write),
        store,
        greeted: false,
        from: None,
        to: Vec::new(),
    };
    let ended = session.run().await;
    drop(session);
    drop(served);
    match ended {
        Ok(()) => tracing::trace!(%peer, "SMTP session closed."),
        Err(error) => tracing::debug!(%peer, %error, "SMTP session ended with an error."),
    }
}

/// Greets a connection over the limit with `421` and closes it (RFC 5321 §3.1).
pub(crate) async fn refuse(mut stream: TcpStream) {
    let _ = stream
        .write_all(b"421 4.7.0 Too many connections, try again later\r\n")
        .await;
    let _ = stream.shutdown().await;
}

impl Drop for Session {
    /// A transaction cut short (the client went away, the sink stopped) is no longer in
    /// flight.
    fn drop(&mut self) {
        self.end_transaction();
    }
}

/// What a command asks of the session loop.
enum Next {
    Continue,
    Quit,
}

struct Session {
    reader: BufReader<OwnedReadHalf>,
    writer: BufWriter<OwnedWriteHalf>,
    store: Arc<Store>,
    /// `EHLO`/`HELO` seen: mail transactions may start.
    greeted: bool,
    /// Reverse path of the open transaction (`Some("")` for the null sender `<>`).
    from: Option<String>,
    /// Forward paths accepted so far in the open transaction.
    to: Vec<String>,
}

impl Session {
    async fn run(&mut self) -> io::Result<()> {
        self.reply("220 raccordo-smtp-sink ESMTP ready").await?;
        self.writer.flush().await?;
        loop {
            let Some(line) = self.read_line().await? else {
                return Ok(());
            };
            let delay = self.store.delay(false);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let next = self.command(&line).await?;
            if self.reader.buffer().is_empty() {
                self.writer.flush().await?;
            }
            if let Next::Quit = next {
                self.writer.flush().await?;
                return self.writer.shutdown().await;
            }
        }
    }

    async fn command(&mut self, line: &[u8]) -> io::Result<Next> {
        let line = String::from_utf8_lossy(line);
        let (verb, argument) = match line.split_once(' ') {
            Some((verb, argument)) => (verb, argument.trim()),
            None => (line.as_ref(), ""),
        };
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" if argument.is_empty() => self.reply("501 5.5.4 EHLO needs a domain").await?,
            "EHLO" => {
                self.reset();
                self.greeted = true;
                let size = format!("250 SIZE {MAX_MESSAGE_BYTES}");
                for line in [
                    format!("250-raccordo-smtp-sink greets {argument}"),
                    "250-PIPELINING".to_owned(),
                    "250-8BITMIME".to_owned(),
                    "250-SMTPUTF8".to_owned(),
                    size,
                ] {
                    self.reply(&line).await?;
                }
            }
            "HELO" if argument.is_empty() => self.reply("501 5.5.4 HELO needs a domain").await?,
            "HELO" => {
                self.reset();
                self.greeted = true;
                self.reply("250 raccordo-smtp-sink").await?;
            }
            "MAIL" => self.mail(argument).await?,
            "RCPT" => self.rcpt(argument).await?,
            "DATA" => self.data(argument).await?,
            "RSET" => {
                self.reset();
                self.reply("250 2.0.0 Reset").await?;
            }
            "NOOP" => self.reply("250 2.0.0 OK").await?,
            "VRFY" => self.reply("252 2.1.5 Cannot verify, will accept").await?,
            "QUIT" => {
                self.reply("221 2.0.0 Bye").await?;
                return Ok(Next::Quit);
            }
            "" => self.reply("500 5.5.2 Empty command").await?,
            _ => self.reply("502 5.5.1 Command not implemented").await?,
        }
        Ok(Next::Continue)
    }

    async fn mail(&mut self, argument: &str) -> io::Result<()> {
        if !self.greeted {
            return self.reply("503 5.5.1 Send EHLO first").await;
        }
        if self.from.is_some() {
            return self.reply("503 5.5.1 Nested MAIL command").await;
        }
        let Some(path) = strip_prefix_ignore_case(argument, "FROM:").and_then(parse_path) else {
            return self.reply("501 5.5.4 Syntax: MAIL FROM:<address>").await;
        };
        if self.store.mode() == Mode::TempFail {
            return self
                .reply("451 4.3.0 Temporary failure, try again later")
                .await;
        }
        match self.store.refusal() {
            Some(Refusal::Keep451) => {
                return self
                    .reply("451 4.3.0 Temporary failure, try again later")
                    .await;
            }
            Some(Refusal::Close421) => {
                self.reply("421 4.3.2 Service busy, closing transmission channel")
                    .await?;
                self.writer.flush().await?;
                self.writer.shutdown().await?;
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "closed with 421",
                ));
            }
            None => {}
        }
        Store::raise(&self.store.transactions, &self.store.peak_transactions);
        self.from = Some(path);
        self.reply("250 2.1.0 Sender OK").await
    }

    async fn rcpt(&mut self, argument: &str) -> io::Result<()> {
        if self.from.is_none() {
            return self.reply("503 5.5.1 Need MAIL before RCPT").await;
        }
        let Some(path) = strip_prefix_ignore_case(argument, "TO:").and_then(parse_path) else {
            return self.reply("501 5.5.4 Syntax: RCPT TO:<address>").await;
        };
        if path.is_empty() {
            return self.reply("501 5.1.3 Empty recipient").await;
        }
        if self.store.mode() == Mode::PermFail {
            return self.reply("550 5.1.1 Mailbox unavailable").await;
        }
        if self.store.rejection(&path) == Some(Rejection::AtRcpt) {
            return self
                .reply(&format!(
                    "550 5.1.1 <{path}>: Recipient address rejected: User unknown"
                ))
                .await;
        }
        self.to.push(path);
        self.reply("250 2.1.5 Recipient OK").await
    }

    async fn data(&mut self, argument: &str) -> io::Result<()> {
        if !argument.is_empty() {
            return self.reply("501 5.5.4 DATA takes no argument").await;
        }
        if self.from.is_none() {
            return self.reply("503 5.5.1 Need MAIL before DATA").await;
        }
        if self.to.is_empty() {
            // RFC 2920 §3.1: with pipelining, DATA after rejected recipients gets 554.
            return self.reply("554 5.5.1 No valid recipients").await;
        }
        self.reply("354 End data with <CR><LF>.<CR><LF>").await?;
        // The client waits for 354 before sending the content.
        self.writer.flush().await?;

        let mut data = Vec::new();
        let mut too_big = false;
        loop {
            let Some(line) = self.read_line().await? else {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside DATA",
                ));
            };
            if line == b"." {
                break;
            }
            // RFC 5321 §4.5.2: a leading dot was doubled by the sender.
            let line = line.strip_prefix(b".").unwrap_or(&line);
            if data.len() + line.len() + 2 > MAX_MESSAGE_BYTES {
                too_big = true;
                continue;
            }
            data.extend_from_slice(line);
            data.extend_from_slice(b"\r\n");
        }

        let delay = self.store.delay(true);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.end_transaction();
        let from = self.from.take().unwrap_or_default();
        let to = std::mem::take(&mut self.to);
        if too_big {
            return self.reply("552 5.3.4 Message too big").await;
        }
        let data = String::from_utf8_lossy(&data).into_owned();
        // Recipients to reject by a report: accepted now, returned afterwards.
        let (returned, to): (Vec<String>, Vec<String>) = to
            .into_iter()
            .partition(|r| self.store.rejection(r) == Some(Rejection::Dsn));
        let id = if to.is_empty() {
            self.store.next_queue_id()
        } else {
            self.store.push(ReceivedMail {
                from: from.clone(),
                to,
                data: data.clone(),
            })
        };
        if !returned.is_empty() {
            // A relay returns a report from its queue, after the sender recorded the
            // acceptance: a moment later, never within the SMTP transaction.
            let reports: Vec<Vec<u8>> = returned
                .iter()
                .map(|r| crate::dsn::report(&from, r, &data, id).into_bytes())
                .collect();
            let store = self.store.clone();
            tokio::spawn(async move {
                tokio::time::sleep(DSN_DELAY).await;
                for report in reports {
                    store.emit_dsn(report);
                }
            });
        }
        self.reply(&format!("250 2.0.0 Ok: queued as {id:08X}"))
            .await
    }

    fn reset(&mut self) {
        self.end_transaction();
        self.from = None;
        self.to.clear();
    }

    /// The open transaction, if any, no longer counts as in flight.
    fn end_transaction(&mut self) {
        if self.from.is_some() {
            self.store.transactions.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Reads one line without its line ending (CRLF, or a bare LF from a sloppy client);
    /// `None` at end of stream.
    async fn read_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        let read = (&mut self.reader)
            .take(MAX_LINE_BYTES)
            .read_until(b'\n', &mut line)
            .await?;
        if read == 0 {
            return Ok(None);
        }
        if line.last() != Some(&b'\n') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                if read as u64 == MAX_LINE_BYTES {
                    "line too long"
                } else {
                    "connection closed mid-line"
                },
            ));
        }
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(Some(line))
    }

    async fn reply(&mut self, line: &str) -> io::Result<()> {
        self.writer.write_all(line.as_bytes()).await?;
        self.writer.write_all(b"\r\n").await
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| text[prefix.len()..].trim_start())
}

/// The address inside `<…>`, ignoring ESMTP parameters after it (`BODY=8BITMIME`, `SMTPUTF8`).
fn parse_path(argument: &str) -> Option<String> {
    let rest = argument.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some(rest[..end].to_owned())
}
