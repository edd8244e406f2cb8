//! [`Mailbox`]: one logged-in IMAP session on one mailbox (RFC 3501), for what the hub does
//! with receipts and bounces: fetch the messages not yet handled, mark them handled, wait
//! for new ones (IDLE, RFC 2177, where the server offers it, else a plain pause), and
//! APPEND (what the PEC simulator and the SMTP sink do to deliver into the mailbox).
//!
//! "Not yet handled" is the `\Seen` flag: a reader marks a message seen only after it has
//! committed what the message says, so a crash in between reads it again (and what it
//! records must be idempotent).

use std::time::Duration;

use async_imap::{Client, Session};
use futures_util::TryStreamExt;
use tokio::net::TcpStream;

use super::stream::{ImapStream, tls_over};
use super::url::{ImapSecurity, ImapUrl};

/// Why an IMAP step failed. Every one is worth a retry later (a server down, a password
/// changed by an operator), except [`ImapError::Login`], which an operator must fix.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("cannot connect to the IMAP server")]
    Connect(#[source] std::io::Error),
    #[error("TLS with the IMAP server failed")]
    Tls(#[source] std::io::Error),
    #[error("the IMAP server closed the connection before its greeting")]
    NoGreeting,
    #[error("the IMAP server refused STARTTLS")]
    StartTls(#[source] async_imap::error::Error),
    #[error("the IMAP server refused the login of the configured user")]
    Login(#[source] async_imap::error::Error),
    #[error("IMAP {step} failed")]
    Command {
        step: &'static str,
        #[source]
        source: async_imap::error::Error,
    },
    #[error("the IMAP server did not answer within {0:?}")]
    Timeout(Duration),
}

impl ImapError {
    fn command(step: &'static str) -> impl FnOnce(async_imap::error::Error) -> Self {
        move |source| ImapError::Command { step, source }
    }
}

/// A message fetched from the mailbox.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Its UID in the mailbox.
    pub uid: u32,
    /// Its size as the server reports it.
    pub size: u32,
    /// The whole message (RFC 5322), or `None` when larger than the fetch's limit: it is
    /// not downloaded, and the caller decides (a hostile or broken message).
    pub raw: Option<Vec<u8>>,
}

/// One logged-in session, with the URL's mailbox selected.
pub struct Mailbox {
    session: Option<Session<ImapStream>>,
    idle: bool,
    timeout: Duration,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("idle", &self.idle)
            .finish_non_exhaustive()
    }
}

/// Runs `step` within `timeout`.
async fn bounded<T>(
    timeout: Duration,
    step: impl Future<Output = Result<T, ImapError>>,
) -> Result<T, ImapError> {
    tokio::time::timeout(timeout, step)
        .await
        .map_err(|_| ImapError::Timeout(timeout))?
}

/// Connects, protects the connection as the URL says, and logs in.
async fn login(url: &ImapUrl) -> Result<Session<ImapStream>, ImapError> {
    let tcp = TcpStream::connect((url.host().trim_matches(['[', ']']), url.port()))
        .await
        .map_err(ImapError::Connect)?;
    // IMAP commands are small request/response exchanges: Nagle would hold each one back.
    let _ = tcp.set_nodelay(true);
    let client = match url.security() {
        ImapSecurity::Tls => {
            let mut client = Client::new(tls_over(tcp, url.host()).await.map_err(ImapError::Tls)?);
            greeting(&mut client).await?;
            client
        }
        ImapSecurity::StartTls => {
            let mut client = Client::new(ImapStream::Plain(tcp));
            greeting(&mut client).await?;
            client
                .run_command_and_check_ok("STARTTLS", None)
                .await
                .map_err(ImapError::StartTls)?;
            let ImapStream::Plain(tcp) = client.into_inner() else {
                return Err(ImapError::NoGreeting);
            };
            // No greeting after STARTTLS (RFC 3501 §6.2.1).
            Client::new(tls_over(tcp, url.host()).await.map_err(ImapError::Tls)?)
        }
        ImapSecurity::Plain => {
            let mut client = Client::new(ImapStream::Plain(tcp));
            greeting(&mut client).await?;
            client
        }
    };
    client
        .login(url.user(), url.password())
        .await
        .map_err(|(e, _)| ImapError::Login(e))
}

async fn greeting(client: &mut Client<ImapStream>) -> Result<(), ImapError> {
    match client.read_response().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(ImapError::NoGreeting),
        Err(e) => Err(ImapError::Connect(e)),
    }
}

impl Mailbox {
    /// Connects to the URL's server, logs in and selects its mailbox, each step within
    /// `timeout`.
    ///
    /// # Errors
    /// The step that failed.
    pub async fn open(url: &ImapUrl, timeout: Duration) -> Result<Self, ImapError> {
        bounded(timeout, async {
            let mut session = login(url).await?;
            let idle = session
                .capabilities()
                .await
                .map_err(ImapError::command("CAPABILITY"))?
                .has_str("IDLE");
            // The mailbox may not exist before the first receipt is delivered into it.
            create_if_missing(&mut session, url.mailbox()).await?;
            session
                .select(url.mailbox())
                .await
                .map_err(ImapError::command("SELECT"))?;
            Ok(Self {
                session: Some(session),
                idle,
                timeout,
            })
        })
        .await
    }

    /// Whether the server offers IDLE (else [`Mailbox::wait`] pauses and polls).
    pub fn offers_idle(&self) -> bool {
        self.idle
    }

    fn session(&mut self) -> Result<&mut Session<ImapStream>, ImapError> {
        // Only an IDLE that failed half-way leaves no session: the connection is gone.
        self.session
            .as_mut()
            .ok_or(ImapError::Connect(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "the IMAP session was lost during IDLE",
            )))
    }

    /// The messages not yet marked handled (`UNSEEN`), oldest first, at most `limit` of
    /// them; those larger than `max_bytes` are listed without their content.
    ///
    /// # Errors
    /// The command that failed.
    pub async fn unseen(
        &mut self,
        limit: usize,
        max_bytes: u32,
    ) -> Result<Vec<Fetched>, ImapError> {
        let timeout = self.timeout;
        let session = self.session()?;
        bounded(timeout, async move {
            let mut uids: Vec<u32> = session
                .uid_search("UNSEEN")
                .await
                .map_err(ImapError::command("UID SEARCH"))?
                .into_iter()
                .collect();
            uids.sort_unstable();
            uids.truncate(limit);
            if uids.is_empty() {
                return Ok(Vec::new());
            }
            let sizes: Vec<(u32, u32)> = session
                .uid_fetch(uid_set(&uids), "(UID RFC822.SIZE)")
                .await
                .map_err(ImapError::command("UID FETCH"))?
                .try_filter_map(|f| async move { Ok(f.uid.zip(f.size)) })
                .try_collect()
                .await
                .map_err(ImapError::command("UID FETCH"))?;
            let small: Vec<u32> = sizes
                .iter()
                .filter(|(_, size)| *size <= max_bytes)
                .map(|(uid, _)| *uid)
                .collect();
            let mut bodies: Vec<(u32, Vec<u8>)> = Vec::new();
            if !small.is_empty() {
                // BODY.PEEK: fetching does not set \Seen; the reader does once it committed.
                bodies = session
                    .uid_fetch(uid_set(&small), "(UID BODY.PEEK[])")
                    .await
                    .map_err(ImapError::command("UID FETCH"))?
                    .try_filter_map(|f| async move { Ok(f.uid.zip(f.body().map(<[u8]>::to_vec))) })
                    .try_collect()
                    .await
                    .map_err(ImapError::command("UID FETCH"))?;
            }
            let mut fetched: Vec<Fetched> = sizes
                .into_iter()
                .map(|(uid, size)| Fetched {
                    uid,
                    size,
                    raw: bodies
                        .iter()
                        .position(|(u, _)| *u == uid)
                        .map(|at| bodies.swap_remove(at).1),
                })
                .collect();
            fetched.sort_by_key(|f| f.uid);
            Ok(fetched)
        })
        .await
    }

    /// Marks messages handled (`\Seen`).
    ///
    /// # Errors
    /// The command that failed.
    pub async fn mark_handled(&mut self, uids: &[u32]) -> Result<(), ImapError> {
        if uids.is_empty() {
            return Ok(());
        }
        let timeout = self.timeout;
        let session = self.session()?;
        bounded(timeout, async move {
            session
                .uid_store(uid_set(uids), "+FLAGS.SILENT (\\Seen)")
                .await
                .map_err(ImapError::command("UID STORE"))?
                .try_collect::<Vec<_>>()
                .await
                .map_err(ImapError::command("UID STORE"))?;
            Ok(())
        })
        .await
    }

    /// Waits up to `poll` for the mailbox to change: IDLE where offered (woken by the
    /// server's `EXISTS`), else a plain pause. Returns early when `stop` is cancelled.
    ///
    /// # Errors
    /// The IDLE exchange failed; the connection is then unusable.
    pub async fn wait(
        &mut self,
        poll: Duration,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<(), ImapError> {
        if !self.idle {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(poll) => {}
            }
            return Ok(());
        }
        let session = self
            .session
            .take()
            .ok_or(ImapError::Connect(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "the IMAP session was lost during IDLE",
            )))?;
        let mut handle = session.idle();
        bounded(self.timeout, async {
            handle.init().await.map_err(ImapError::command("IDLE"))
        })
        .await?;
        {
            let (wait, interrupt) = handle.wait_with_timeout(poll);
            let woken = tokio::select! {
                _ = stop.cancelled() => {
                    drop(interrupt);
                    None
                }
                woken = wait => Some(woken),
            };
            if let Some(woken) = woken {
                woken.map_err(ImapError::command("IDLE"))?;
            }
        }
        let session = bounded(self.timeout, async {
            handle.done().await.map_err(ImapError::command("DONE"))
        })
        .await?;
        self.session = Some(session);
        Ok(())
    }

    /// Creates `name` on the server unless it exists.
    ///
    /// # Errors
    /// The command that failed.
    pub async fn create_if_missing(&mut self, name: &str) -> Result<(), ImapError> {
        let timeout = self.timeout;
        let session = self.session()?;
        bounded(timeout, create_if_missing(session, name)).await
    }

    /// Logs out (best effort: the server drops the session anyway when the socket closes).
    pub async fn close(mut self) {
        if let Some(mut session) = self.session.take() {
            let _ = tokio::time::timeout(self.timeout, session.logout()).await;
        }
    }
}

/// A session that APPENDs messages to one mailbox (created if missing), unseen: how
/// receipts and DSNs reach the mailbox from the simulator and the SMTP sink. It logs in on
/// first use and again after a failure.
pub struct Appender {
    url: ImapUrl,
    timeout: Duration,
    session: Option<Session<ImapStream>>,
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appender")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Appender {
    /// An appender to `url`'s mailbox; nothing is connected yet.
    pub fn new(url: ImapUrl, timeout: Duration) -> Self {
        Self {
            url,
            timeout,
            session: None,
        }
    }

    /// APPENDs `message`, logging in first if needed. A failed attempt drops the session;
    /// the next call logs in again.
    ///
    /// # Errors
    /// The step that failed.
    pub async fn append(&mut self, message: &[u8]) -> Result<(), ImapError> {
        let url = &self.url;
        let slot = &mut self.session;
        let result = bounded(self.timeout, async {
            if slot.is_none() {
                let mut session = login(url).await?;
                create_if_missing(&mut session, url.mailbox()).await?;
                *slot = Some(session);
            }
            let Some(session) = slot.as_mut() else {
                return Err(ImapError::NoGreeting);
            };
            session
                .append(url.mailbox(), None, None, message)
                .await
                .map_err(ImapError::command("APPEND"))
        })
        .await;
        if result.is_err() {
            self.session = None;
        }
        result
    }

    /// Logs out.
    pub async fn close(mut self) {
        if let Some(mut session) = self.session.take() {
            let _ = tokio::time::timeout(self.timeout, session.logout()).await;
        }
    }
}

/// APPENDs one message to `url`'s mailbox on a session of its own.
///
/// # Errors
/// The step that failed.
pub async fn append(url: &ImapUrl, message: &[u8], timeout: Duration) -> Result<(), ImapError> {
    let mut appender = Appender::new(url.clone(), timeout);
    appender.append(message).await?;
    appender.close().await;
    Ok(())
}

async fn create_if_missing(session: &mut Session<ImapStream>, name: &str) -> Result<(), ImapError> {
    let exists = session
        .list(None, Some(name))
        .await
        .map_err(ImapError::command("LIST"))?
        .try_collect::<Vec<_>>()
        .await
        .map_err(ImapError::command("LIST"))?
        .iter()
        .any(|n| n.name() == name);
    if !exists {
        session
            .create(name)
            .await
            .map_err(ImapError::command("CREATE"))?;
    }
    Ok(())
}

/// A UID set in IMAP syntax: `3,5,7`.
fn uid_set(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
