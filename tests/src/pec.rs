//! PEC in the end-to-end tests: the project's Dovecot (scripts/services.sh; the tests fail,
//! never skip, when it is down), a mailbox of each test's own, the PEC provider simulator
//! in front of it, and a hub configured to send by PEC to the simulator and read the
//! receipts from that mailbox.

use std::time::{Duration, Instant};

use raccordo_evidence::imap::{ImapUrl, Mailbox};
use raccordo_evidence::simulator::{PecSimulator, SimulatorOptions};
use secrecy::ExposeSecret;
use serde_json::Value;
use uuid::Uuid;

use crate::{TestApp, prepare_with};

/// The referent whose PEC the tests use: the Prefettura's stazione appaltante, sole
/// recipient of a housing offer in Milano.
pub const PEC_REFERENT: &str = "pref-sa";
/// Its PEC address.
pub const PEC_ADDRESS: &str = "protocollo.prefmi@pec.interno.example";

/// A fresh mailbox on the test Dovecot (`RACCORDO_TEST_IMAP_URL`, default the one
/// scripts/services.sh starts on 127.0.0.1:10143).
pub fn test_mailbox() -> ImapUrl {
    let base = std::env::var("RACCORDO_TEST_IMAP_URL")
        .unwrap_or_else(|_| "imap://raccordo:raccordo@127.0.0.1:10143/INBOX".into());
    let url = ImapUrl::parse(&base).expect("RACCORDO_TEST_IMAP_URL parses");
    let addr = format!("{}:{}", url.host(), url.port());
    let reachable = addr
        .parse()
        .is_ok_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(3)).is_ok());
    assert!(
        reachable,
        "Dovecot is not reachable on {addr}: start it with scripts/services.sh"
    );
    url.with_mailbox(&format!("t-{}", Uuid::new_v4().simple()))
}

/// The URL form of `url` for `mail.pec_imap_url`.
pub fn imap_url_text(url: &ImapUrl) -> String {
    format!(
        "imap://raccordo:raccordo@{}:{}/{}",
        url.host(),
        url.port(),
        url.mailbox()
    )
}

/// A hub sending by PEC through a simulator whose receipts land in a mailbox of this
/// test's own; `configure` adjusts the settings (e.g. `mail.pec_receipt_hours`). The
/// referent [`PEC_REFERENT`] has the PEC address [`PEC_ADDRESS`].
pub async fn spawn_pec_app(
    configure: impl FnOnce(&mut raccordo_core::settings::Settings),
) -> (TestApp, PecSimulator, ImapUrl) {
    let mailbox = test_mailbox();
    let simulator = PecSimulator::start(SimulatorOptions::new(mailbox.clone()))
        .await
        .expect("the PEC simulator binds");
    let smtp = format!("smtp://{}", simulator.addr());
    let imap = imap_url_text(&mailbox);
    let app = prepare_with(|s| {
        s.mail.pec_smtp_url = smtp.into();
        s.mail.pec_imap_url = imap.into();
        configure(s);
    })
    .await;
    sqlx::query("UPDATE referents SET pec = $1 WHERE referent_id = $2")
        .bind(PEC_ADDRESS)
        .bind(PEC_REFERENT)
        .execute(&app.pool)
        .await
        .expect("the referent gets a PEC address");
    let app = app.start(raccordo::serve::Workers::All).await;
    assert!(!app.settings.mail.pec_imap_url.expose_secret().is_empty());
    (app, simulator, mailbox)
}

impl TestApp {
    /// The timeline of notification `id` as `raccordo timeline --format json` prints it.
    pub async fn timeline(&self, id: Uuid) -> Value {
        let mut conn = self.pool.acquire().await.expect("a connection");
        let timeline = raccordo_core::db::evidence::timeline(&mut conn, id)
            .await
            .expect("the timeline reads")
            .expect("the notification exists");
        serde_json::to_value(timeline).expect("serialisable")
    }

    /// The events of the delivery to `recipient`, in order.
    pub async fn events_of(&self, id: Uuid, recipient: &str) -> Vec<Value> {
        let timeline = self.timeline(id).await;
        timeline["deliveries"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["recipient"] == recipient)
            .and_then(|d| d["events"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Waits until the delivery to `recipient` has `event` on its timeline (bounded to
    /// `within`); its events.
    pub async fn wait_for_event(
        &self,
        id: Uuid,
        recipient: &str,
        event: &str,
        within: Duration,
    ) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let events = self.events_of(id, recipient).await;
            if events.iter().any(|e| e["event"] == event) {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "no {event} within {within:?}: {events:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits until every message of `mailbox` is marked handled by the reader (bounded).
pub async fn wait_until_handled(mailbox: &ImapUrl, within: Duration) {
    let deadline = Instant::now() + within;
    let mut reader = Mailbox::open(mailbox, Duration::from_secs(10))
        .await
        .expect("the test opens its mailbox");
    loop {
        let left = reader
            .unseen(1000, u32::MAX)
            .await
            .expect("the test reads its mailbox")
            .len();
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} messages still unhandled after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reader.close().await;
}
