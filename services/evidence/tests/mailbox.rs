//! The IMAP client against the project's Dovecot (scripts/services.sh starts it on
//! 127.0.0.1:10143, or `RACCORDO_TEST_IMAP_URL`): each test works in a mailbox of its own.

use std::time::{Duration, Instant};

use raccordo_evidence::imap::{Appender, ImapUrl, Mailbox};
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(10);

fn test_mailbox() -> ImapUrl {
    let base = std::env::var("RACCORDO_TEST_IMAP_URL")
        .unwrap_or_else(|_| "imap://raccordo:raccordo@127.0.0.1:10143/INBOX".into());
    let url = ImapUrl::parse(&base).expect("RACCORDO_TEST_IMAP_URL parses");
    let reachable = std::net::TcpStream::connect_timeout(
        &format!("{}:{}", url.host(), url.port())
            .parse()
            .expect("a loopback address"),
        Duration::from_secs(3),
    )
    .is_ok();
    assert!(
        reachable,
        "Dovecot is not reachable on {}:{}: start it with scripts/services.sh",
        url.host(),
        url.port()
    );
    url.with_mailbox(&format!("t-{}", uuid::Uuid::new_v4().simple()))
}

fn message(n: usize, body: &str) -> Vec<u8> {
    format!("From: a@example.org\r\nTo: b@example.org\r\nSubject: m{n}\r\nMessage-ID: <m{n}@example.org>\r\n\r\n{body}\r\n")
        .into_bytes()
}

#[tokio::test]
async fn appended_messages_are_fetched_once_until_marked_handled() {
    let url = test_mailbox();
    let mut appender = Appender::new(url.clone(), TIMEOUT);
    appender.append(&message(1, "uno")).await.expect("append 1");
    appender
        .append(&message(2, &"x".repeat(5000)))
        .await
        .expect("append 2");

    let mut mailbox = Mailbox::open(&url, TIMEOUT).await.expect("open");
    assert!(mailbox.offers_idle(), "Dovecot offers IDLE");
    let fetched = mailbox.unseen(10, 1000).await.expect("unseen");
    assert_eq!(fetched.len(), 2);
    let first = fetched[0]
        .raw
        .as_deref()
        .expect("the small one is downloaded");
    assert!(String::from_utf8_lossy(first).contains("Subject: m1"));
    assert!(fetched[1].raw.is_none(), "the one over the limit is not");
    assert!(fetched[1].size > 5000);

    mailbox.mark_handled(&[fetched[0].uid]).await.expect("mark");
    let again = mailbox.unseen(10, 1000).await.expect("unseen again");
    assert_eq!(
        again.iter().map(|f| f.uid).collect::<Vec<_>>(),
        vec![fetched[1].uid]
    );
    mailbox.close().await;
    appender.close().await;
}

#[tokio::test]
async fn idle_wakes_on_a_new_message_well_before_the_poll() {
    let url = test_mailbox();
    let mut mailbox = Mailbox::open(&url, TIMEOUT).await.expect("open");
    let stop = CancellationToken::new();
    let writer = url.clone();
    let append = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        raccordo_evidence::imap::append(&writer, &message(3, "tre"), TIMEOUT)
            .await
            .expect("append");
    });
    let started = Instant::now();
    mailbox
        .wait(Duration::from_secs(20), &stop)
        .await
        .expect("idle");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woken by EXISTS, not by the poll"
    );
    append.await.expect("the appender finishes");
    assert_eq!(mailbox.unseen(10, 10_000).await.expect("unseen").len(), 1);
    mailbox.close().await;
}

#[tokio::test]
async fn a_wrong_password_is_a_login_error() {
    let url = test_mailbox();
    let wrong = ImapUrl::parse(&format!(
        "imap://raccordo:wrong@{}:{}/INBOX",
        url.host(),
        url.port()
    ))
    .expect("url");
    let error = Mailbox::open(&wrong, TIMEOUT).await.expect_err("refused");
    assert!(
        matches!(error, raccordo_evidence::imap::ImapError::Login(_)),
        "{error:?}"
    );
}
