//! Layered configuration: the embedded `config/default.toml`, then the file named by
//! `RACCORDO_CONFIG`, then `RACCORDO__SECTION__KEY` environment variables (CONTRACT §8).
//!
//! Everything is read and validated once at start-up; no code reads the environment later.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sqlx::postgres::PgConnectOptions;

const DEFAULTS: &str = include_str!("../../../config/default.toml");

/// Why the settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("failed to read the configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid setting {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// The whole configuration tree.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub amqp: AmqpSettings,
    pub database: DatabaseSettings,
    pub mail: MailSettings,
    pub http: HttpSettings,
    pub log: LogSettings,
    pub quota: QuotaSettings,
    pub eviction: EvictionSettings,
    pub retry: RetrySettings,
    pub relay: RelaySettings,
    pub publishers: PublishersSettings,
    pub console: ConsoleSettings,
    pub security: SecuritySettings,
    /// Acknowledgement links (CONTRACT D4).
    pub ack: AckSettings,
    /// The referents' preferences pages and digests (issue 22).
    pub preferences: PreferenceSettings,
    /// Reminders and escalation of unacknowledged notifications (CONTRACT D5).
    pub escalation: EscalationSettings,
    /// The Tavolo provinciale asilo's desks (CONTRACT 1.2 §4 "Asylum").
    pub asylum: AsylumSettings,
    /// How long what the hub stores is kept (CONTRACT 1.2 §8 retention, C9).
    pub retention: RetentionSettings,
    /// HTTP ingestion for systems that cannot speak AMQP (CONTRACT 1.2 §10).
    pub ingest: IngestSettings,
}

/// HTTP ingestion (CONTRACT 1.2 §10, §11): off unless `addr` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    /// Listen address (`127.0.0.1:8088`, port 0: any free port); empty: off. Default empty.
    pub addr: String,
    /// Events in one batch request, at most 500. Default 500.
    pub max_batch: usize,
    /// Bytes of one request body, enforced while reading. Default 5242880 (5 MiB).
    pub max_body_bytes: usize,
    /// Events per second a publisher may post when its `rate_per_s` is not set. Default 100.
    pub rate_per_s: f64,
    /// Days of notifications `GET /v1/stream` serves. Default 30.
    pub stream_days: u32,
    /// Data rows in one CSV file. Default 5000.
    pub max_csv_rows: usize,
}

impl IngestSettings {
    /// Whether HTTP ingestion is on.
    pub fn enabled(&self) -> bool {
        !self.addr.trim().is_empty()
    }

    fn check(&self, allow_plaintext: bool) -> Result<(), (&'static str, String)> {
        if let Ok(addr) = self.addr.trim().parse::<std::net::SocketAddr>()
            && !addr.ip().is_loopback()
            && !allow_plaintext
        {
            return Err((
                "ingest.addr",
                "listens beyond this machine without TLS, so bearer tokens would travel in clear: listen on 127.0.0.1 behind a TLS-terminating proxy, or set security.allow_plaintext = true".to_owned(),
            ));
        }
        if !(1..=500).contains(&self.max_batch) {
            return Err(("ingest.max_batch", "must be 1 to 500".to_owned()));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err((
                "ingest.max_body_bytes",
                "must be 1024 to 67108864".to_owned(),
            ));
        }
        if !(self.rate_per_s.is_finite() && self.rate_per_s > 0.0 && self.rate_per_s <= 1e6) {
            return Err((
                "ingest.rate_per_s",
                "must be a positive number of events per second".to_owned(),
            ));
        }
        if !(1..=36_500).contains(&self.stream_days) {
            return Err(("ingest.stream_days", "must be 1 to 36500".to_owned()));
        }
        if !(1..=1_000_000).contains(&self.max_csv_rows) {
            return Err(("ingest.max_csv_rows", "must be 1 to 1000000".to_owned()));
        }
        let addr = self.addr.trim();
        if !addr.is_empty() && addr.parse::<std::net::SocketAddr>().is_err() {
            return Err((
                "ingest.addr",
                "use an address and port such as 127.0.0.1:8088 (empty: off)".to_owned(),
            ));
        }
        Ok(())
    }
}

/// RabbitMQ connection and topology.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSettings {
    /// AMQP URL; default `amqp://guest:guest@127.0.0.1:5672/%2f`. Not used when `urls` is set.
    pub url: SecretString,
    /// The nodes of one RabbitMQ cluster, tried in turn by every connection (the first that
    /// answers wins); when set, it replaces `url`. Same user and vhost on each. From the
    /// environment as one comma-separated list (`RACCORDO__AMQP__URLS`). Default empty.
    pub urls: Vec<SecretString>,
    /// Prefix of every exchange and queue name; default `raccordo`.
    pub prefix: String,
    /// Unacknowledged deliveries per consumer; default 16.
    pub prefetch: u16,
    /// Consumers per worker in one process; default 2.
    pub consumers: u16,
    /// Inbound messages larger than this are dead-lettered; default 262144 (256 KiB).
    pub max_message_bytes: usize,
    /// Bound on handling one message (its transaction, or its emails), in ms; past it the
    /// message is retried. Default 30000.
    pub handler_timeout_ms: u64,
    /// Type of the work and retry queues; default `quorum` (CONTRACT §2). `classic` exists
    /// for test suites that create and delete thousands of queues: quorum queues are not
    /// designed for such churn.
    pub queue_type: QueueType,
}

/// RabbitMQ queue type of the work and retry queues.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// Replicated, durable (Raft): for every deployment.
    Quorum,
    /// Single-node: for tests only.
    Classic,
}

impl QueueType {
    /// The `x-queue-type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Quorum => "quorum",
            QueueType::Classic => "classic",
        }
    }
}

/// PostgreSQL connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Database URL; default `postgres://postgres@127.0.0.1:5432/raccordo`.
    pub url: SecretString,
    /// Pool size; default 10.
    pub max_connections: u32,
    /// Wait for a pooled connection, in ms; default 5000.
    pub acquire_timeout_ms: u64,
}

/// How emails leave the hub.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MailTransportKind {
    /// Over SMTP to `mail.smtp_url`.
    Smtp,
    /// As `.eml` files in `mail.outbox_dir`.
    File,
}

/// Email delivery.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailSettings {
    /// `smtp` or `file`; default `file`.
    pub transport: MailTransportKind,
    /// lettre's URL form: `smtp://host:port`, `?tls=required` for STARTTLS, `smtps://` for TLS.
    pub smtp_url: SecretString,
    /// Sender, `Name <address>`.
    pub from: String,
    /// Folder of the file transport; default `var/outbox`.
    pub outbox_dir: PathBuf,
    /// Allow `transport = "file"` outside the demo; default false. The files hold the
    /// alerts' personal data on disk, so a deployment must choose them knowingly
    /// (`raccordo demo` sets it).
    pub allow_file_transport: bool,
    /// Bound on connecting and on each send, in ms; default 10000.
    pub timeout_ms: u64,
    /// SMTP connections kept open while idle; default 4.
    pub pool_size: usize,
    /// The most SMTP connections, and so the most emails in flight (sent and not yet
    /// recorded: what a crash may resend, CONTRACT F3); the pool grows towards it with the
    /// backlog and stays below what the server refuses. Default 32.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Tasks of one process sending due emails, each under its own claim and with its
    /// share of `max_connections`; default 2 (a round's emails go at once over the SMTP
    /// pool; a second sender sends while the first records).
    #[serde(default = "default_senders")]
    pub senders: u16,
    /// The PEC provider's SMTP server, in the form of `smtp_url`; empty (the default) sends
    /// nothing by PEC (CONTRACT D2, §11).
    #[serde(default)]
    pub pec_smtp_url: SecretString,
    /// The mailbox where PEC receipts arrive: `imaps://USER:PASSWORD@HOST:993/MAILBOX`,
    /// `imap://…?tls=required`, or plain `imap://` on loopback (CONTRACT §11). Empty: no
    /// receipt is read.
    #[serde(default)]
    pub pec_imap_url: SecretString,
    /// The kinds a referent with a `pec` receives by PEC alone; default the five of D2.
    #[serde(default = "default_pec_kinds")]
    pub pec_kinds: Vec<String>,
    /// Hours (decimal) within which a PEC delivery receipt must arrive, else the delivery
    /// failed; default 24.
    #[serde(default = "default_pec_receipt_hours")]
    pub pec_receipt_hours: f64,
    /// The mailbox where delivery status notifications arrive (CONTRACT D3, §11):
    /// `imaps://USER:PASSWORD@HOST:993/MAILBOX`, `imap://…?tls=required` (STARTTLS), or plain
    /// `imap://…` on loopback; default none (no bounce reader). Read by `serve all` and
    /// `serve mailer`.
    #[serde(default)]
    pub bounce_imap_url: Option<SecretString>,
}

fn default_pec_kinds() -> Vec<String> {
    [
        "eviction.alert",
        "eviction.consent_revoked",
        "housing.offered",
        "quota.threshold",
        "asylum.pronta_accoglienza",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn default_pec_receipt_hours() -> f64 {
    24.0
}

fn default_senders() -> u16 {
    2
}

fn default_max_connections() -> usize {
    32
}

/// The operators' HTTP endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Listen address of `/healthz`, `/readyz`, `/metrics`; default `127.0.0.1:9464`.
    pub addr: String,
}

/// Log output.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`; default `text`.
    pub format: LogFormat,
}

/// Reception quotas (Protocollo accoglienza art. 2.3, 3.1, 3.2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSettings {
    /// Places per thousand inhabitants where the comuni table gives no quota; default 2.8.
    pub per_thousand: f64,
    /// Coverage / quota at which a signatory comune is excluded from tenders; default 0.5.
    pub exclusion_ratio: f64,
    /// Coverage / quota of a zona at which all its signatories are excluded; default 1.0.
    pub zone_full_ratio: f64,
    /// Date the protocol was signed, `YYYY-MM-DD`; default 2017-05-18.
    pub protocol_signed_on: String,
}

/// Eviction procedures (Protocollo escomio).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvictionSettings {
    /// An access within this many days makes an alert urgent; default 7.
    pub urgent_within_days: u32,
    /// HMAC key of procedure pseudonyms: one key of at least 32 bytes, or a chain of keys
    /// separated by white space, oldest first (after `raccordo eviction rekey`). Default:
    /// the development key, refused by `serve` and `setup` unless
    /// `allow_development_key`.
    pub pseudonym_key: SecretString,
    /// A file holding the key (or the chain, one key per line), for container secrets;
    /// read at start and used instead of `pseudonym_key`. Default: none.
    #[serde(default)]
    pub pseudonym_key_file: Option<PathBuf>,
    /// Accept the development key or a key under 32 bytes (demo and tests only); default false.
    pub allow_development_key: bool,
    /// Dead eviction events expire after this many days; default 7.
    pub dead_letter_ttl_days: u32,
    /// How far in the future a consent's `recorded_at` may be (clocks differ), in
    /// seconds; later is refused as a mistyped date. Default 600.
    pub max_clock_skew_s: u64,
}

/// The key written in `config/default.toml`: known to everyone, so never for real data.
pub const DEVELOPMENT_PSEUDONYM_KEY: &str = "raccordo-development-key-change-me";

/// The smallest key `serve` and `setup` accept, in bytes (HMAC-SHA256's block of entropy).
pub const MIN_PSEUDONYM_KEY_BYTES: usize = 32;

/// Who may publish what (CONTRACT §2, version 1.1). Each entry but `allow_anonymous` is a
/// broker user: `[publishers.<user>] types = [...], comuni = [...]`.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct PublishersSettings {
    /// Accept events without an AMQP `user_id` (demo, tests, migration); default false.
    #[serde(default)]
    pub allow_anonymous: bool,
    /// The broker users of the publishing systems and what each may say.
    #[serde(flatten)]
    pub users: std::collections::BTreeMap<String, PublisherRule>,
}

/// What one publishing system may say.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PublisherRule {
    /// Event types (routing keys) it may publish.
    pub types: Vec<String>,
    /// The comuni (ISTAT codes) its events may be about; empty or absent: any. For
    /// `registry.referent.v1` they limit the referents' scopes, like `scopes`.
    #[serde(default)]
    pub comuni: Vec<String>,
    /// The scopes a registry publisher's referents must lie within, before and after each
    /// change: `[{ comune_istat = "015182" }, { ambito = "Rho" }, { zona = "Nord Ovest" }]`
    /// (CONTRACT §4 registry). Empty or absent (and no `comuni`): any referent.
    #[serde(default)]
    pub scopes: Vec<ScopeSetting>,
    /// Events per second it may post over HTTP (CONTRACT 1.2 §10); absent:
    /// `ingest.rate_per_s`.
    #[serde(default)]
    pub rate_per_s: Option<f64>,
    /// The notification kinds its tokens may read from `GET /v1/stream`: kinds such as
    /// `housing.offered`, or `housing.*`. Empty or absent: none.
    #[serde(default)]
    pub stream_kinds: Vec<String>,
}

impl PublisherRule {
    /// Whether a token of this publisher may read notifications of `kind` from the stream.
    pub fn may_read(&self, kind: &str) -> bool {
        self.stream_kinds
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => kind.starts_with(prefix),
                None => pattern == kind,
            })
    }
}

/// One scope of `publishers.<user>.scopes`: exactly one member, as in the event's `scope`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct ScopeSetting {
    /// One comune, by ISTAT code.
    #[serde(default)]
    pub comune_istat: Option<String>,
    /// One ambito territoriale, as named in the comuni table.
    #[serde(default)]
    pub ambito: Option<String>,
    /// One zona omogenea, as named in the comuni table.
    #[serde(default)]
    pub zona: Option<String>,
}

impl ScopeSetting {
    /// The scope it names; the error says what is wrong, for a start-up message.
    pub fn to_scope(&self) -> Result<crate::domain::Scope, String> {
        use crate::domain::{ComuneIstat, Scope, has_control};
        let text = |v: &String| {
            let v = v.trim();
            if v.is_empty() || has_control(v) {
                Err("names an empty ambito or zona, or one with a control character".to_owned())
            } else {
                Ok(v.to_owned())
            }
        };
        match (&self.comune_istat, &self.ambito, &self.zona) {
            (Some(c), None, None) => ComuneIstat::parse(c.trim())
                .map(Scope::Comune)
                .map_err(|e| e.0),
            (None, Some(a), None) => text(a).map(Scope::Ambito),
            (None, None, Some(z)) => text(z).map(Scope::Zona),
            _ => Err("each scope names exactly one of comune_istat, ambito, zona".to_owned()),
        }
    }
}

/// The TLS rule (CONTRACT §8, version 1.2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    /// Accept a broker, database or SMTP server on another machine without TLS; default
    /// false. Every start says so with a warning (see [`crate::tls`]).
    pub allow_plaintext: bool,
}

/// Retries of transient failures (CONTRACT F2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Attempts before the work is parked; default 8.
    pub max_attempts: u32,
    /// Delay before the first retry, in ms; default 1000.
    pub initial_delay_ms: u64,
    /// Longest delay between retries, in ms; default 60000.
    pub max_delay_ms: u64,
}

/// The outbox relay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySettings {
    /// Poll interval when no NOTIFY arrives, in ms; default 1000.
    pub poll_ms: u64,
    /// Notifications published per transaction; default 100.
    pub batch: i64,
}

/// The operators' web console (`raccordo serve` with `console.enabled`, or `raccordo console`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSettings {
    /// Serve the console; default false.
    pub enabled: bool,
    /// Listen address; default `127.0.0.1:9465`. Port 0 picks a free port.
    pub addr: String,
    /// Operators who log in with a password; default none.
    #[serde(default)]
    pub operators: Vec<OperatorSettings>,
    /// A header set by a trusted reverse proxy (the administration's SSO) naming the
    /// authenticated user, e.g. `X-Remote-User`; default empty (off). Only set it when the
    /// console is reachable through that proxy alone.
    pub trusted_user_header: String,
    /// A session ends after this many minutes without a request; default 30.
    pub session_ttl_minutes: u64,
    /// Mark the session cookie `Secure` even on loopback; default false. Off loopback the
    /// cookie is always `Secure` (the console is then reached through HTTPS).
    pub secure_cookie: bool,
    // Roles, trusted proxies and login limits (issue 17, CONTRACT 1.2 §8 "Console roles").
    /// The reverse proxies whose `trusted_user_header` is believed: addresses or CIDRs
    /// (`10.0.0.5`, `10.0.0.0/24`, `::1`); default none, so the header is ignored.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// A session ends this many hours after its login, used or not; default 12.
    pub session_max_hours: u64,
    /// Failed logins of one user name before it is locked for `login_lockout_minutes`;
    /// default 5.
    pub login_failures_per_user: u32,
    /// Failed logins from one client address (an IPv6 /64) before it is locked; default 20.
    pub login_failures_per_address: u32,
    /// How long a lock lasts, and the window the failures are counted in; default 15.
    pub login_lockout_minutes: u64,
    /// Password verifications run at once (argon2 takes ~19 MiB each); default 2.
    pub hashing_concurrency: usize,
    /// The console's base URL as referents reach it (`https://raccordo.example.it`), for
    /// the acknowledgement links of the emails (CONTRACT D4, §11); default empty: the
    /// emails carry no link.
    #[serde(default)]
    pub public_url: String,
}

/// Acknowledgement links (CONTRACT D4).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckSettings {
    /// HMAC key of the tokens, at least 32 bytes (`openssl rand -hex 32`); needed once
    /// `console.public_url` is set. Default empty.
    pub key: SecretString,
    /// A link is valid this many days after its email was sent; default 30.
    pub ttl_days: u32,
}

/// The referents' preferences (issue 22).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreferenceSettings {
    /// A preferences or unsubscribe link is valid this many days after its email was sent;
    /// default 90. The links are signed with `ack.key` under their own domain.
    pub link_days: u32,
}

/// The smallest acknowledgement key accepted, in bytes.
pub const MIN_ACK_KEY_BYTES: usize = 32;

impl AckSettings {
    /// How long a link stays valid.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(u64::from(self.ttl_days).saturating_mul(86_400))
    }
}

/// Reminders and escalation (CONTRACT D5).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationSettings {
    /// Hours, a decimal number (`0.01` is 36 s), after which an urgent alert nobody
    /// acknowledged is sent again; after twice as long it is escalated. Default 12.
    pub after_hours: f64,
}

impl EscalationSettings {
    /// `after_hours` as a duration (validated finite and positive at start).
    pub fn after(&self) -> Duration {
        Duration::try_from_secs_f64(self.after_hours * 3600.0).unwrap_or(Duration::MAX)
    }
}

/// The asylum desks' clocks (CONTRACT A2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsylumSettings {
    /// Hours, a decimal number, within which a pronta accoglienza needs its first
    /// intervention (A2). Default 12.
    pub first_intervention_hours: f64,
}

impl AsylumSettings {
    /// `first_intervention_hours` as a duration (validated finite and positive at start).
    pub fn first_intervention(&self) -> Duration {
        Duration::try_from_secs_f64(self.first_intervention_hours * 3600.0).unwrap_or(Duration::MAX)
    }
}

/// How long what the hub stores is kept (CONTRACT 1.2 §8 retention, GDPR art. 5(1)(e)).
/// Pruned daily by one replica, in batches of `batch_size` rows, each its own transaction.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Days after a procedure's last step `esecuzione` (an asylum case's closure) after
    /// which its personal data is deleted (C9). Default 90.
    pub personal_days: u32,
    /// Days without any event after which a procedure's (a case's) personal data is
    /// deleted all the same (C9). Default 365.
    pub idle_days: u32,
    /// Days after which a settled notification's payload is reduced to its kind, comune,
    /// recipients and timeline. Default 90.
    pub notification_days: u32,
    /// Days the file transport's `.eml` files are kept. Default 7.
    pub eml_days: u32,
    /// Days an inbound event's idempotency key is kept. Default 400.
    pub inbox_days: u32,
    /// Years the audit and the delivery evidence are kept, as legal facts. Default 10.
    pub audit_years: u32,
    /// Rows deleted or changed per transaction. Default 1000.
    pub batch_size: u32,
    /// Milliseconds between two batches, so pruning yields to the workers. Default 10.
    pub batch_pause_ms: u64,
}

impl RetentionSettings {
    /// `batch_pause_ms` as a duration.
    pub fn batch_pause(&self) -> Duration {
        Duration::from_millis(self.batch_pause_ms)
    }

    fn check(&self) -> Result<(), (&'static str, &'static str)> {
        let days = [
            ("retention.personal_days", self.personal_days),
            ("retention.idle_days", self.idle_days),
            ("retention.notification_days", self.notification_days),
            ("retention.eml_days", self.eml_days),
            ("retention.inbox_days", self.inbox_days),
            ("retention.audit_years", self.audit_years),
        ];
        if let Some((key, _)) = days.iter().find(|(_, n)| *n == 0) {
            return Err((key, "must be at least 1"));
        }
        // Days beyond this would overflow the dates they are subtracted from.
        if let Some((key, _)) = days.iter().find(|(_, n)| *n > 36_500) {
            return Err((key, "must be at most 36500"));
        }
        if !(1..=100_000).contains(&self.batch_size) {
            return Err(("retention.batch_size", "must be between 1 and 100000"));
        }
        Ok(())
    }
}

/// What a console user may open (CONTRACT 1.2 §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleRole {
    /// Overview counts, coverage, statistics, reports, routing preview; nothing else.
    Viewer,
    /// The viewer's pages, and dead letters (show, replay, purge) and the workers' status.
    Operator,
    /// The viewer's pages, and the eviction audit and the retention log.
    Privacy,
}

impl ConsoleRole {
    /// Every role, in the order of the documentation.
    pub const ALL: [ConsoleRole; 3] = [
        ConsoleRole::Viewer,
        ConsoleRole::Operator,
        ConsoleRole::Privacy,
    ];

    /// The name in the configuration and in `console_actions`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsoleRole::Viewer => "viewer",
            ConsoleRole::Operator => "operator",
            ConsoleRole::Privacy => "privacy",
        }
    }

    /// Parses a configured name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The name the console shows its users (issue 24): Italian, not the configuration's.
    pub fn label_it(self) -> &'static str {
        match self {
            ConsoleRole::Viewer => "consultazione",
            ConsoleRole::Operator => "operatore",
            ConsoleRole::Privacy => "responsabile privacy",
        }
    }
}

/// One user of the console.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorSettings {
    /// The login name, also written in the console's audit trail.
    pub name: String,
    /// An argon2 hash in PHC form (`$argon2id$…`), from `raccordo console user add`; none
    /// for a user who comes only through the trusted proxy.
    #[serde(default)]
    pub password_hash: Option<SecretString>,
    /// `viewer`, `operator` or `privacy`. An entry without a role (configurations written
    /// before roles existed) is a `viewer`, said loudly at start.
    #[serde(default)]
    pub role: Option<ConsoleRole>,
}

impl OperatorSettings {
    /// The role this user has: the configured one, or `viewer`.
    pub fn effective_role(&self) -> ConsoleRole {
        self.role.unwrap_or(ConsoleRole::Viewer)
    }
}

impl ConsoleSettings {
    /// Somebody can log in: a user with a password, or a user the trusted proxy may name.
    /// Checked where the console starts, so that `raccordo console user add` runs before.
    pub fn login_configured(&self) -> bool {
        self.operators.iter().any(|o| o.password_hash.is_some()) || self.proxy_configured()
    }

    /// The proxy header is on: named, with proxies to believe and users it may name (those
    /// configured with a role).
    pub fn proxy_configured(&self) -> bool {
        !self.trusted_user_header.trim().is_empty()
            && !self.trusted_proxies.is_empty()
            && self.operators.iter().any(|o| o.role.is_some())
    }

    /// How long a session lives without a request.
    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_ttl_minutes.saturating_mul(60))
    }

    /// How long a session lives at most.
    pub fn session_max(&self) -> Duration {
        Duration::from_secs(self.session_max_hours.saturating_mul(3600))
    }

    /// How long a login lock lasts.
    pub fn login_lockout(&self) -> Duration {
        Duration::from_secs(self.login_lockout_minutes.saturating_mul(60))
    }

    /// `trusted_proxies` parsed: a bare address is a network of one.
    pub fn trusted_proxy_nets(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.trusted_proxies
            .iter()
            .map(|p| {
                let p = p.trim();
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("{p:?} is neither an address nor a CIDR"))
            })
            .collect()
    }
}

/// The `RACCORDO__SECTION__KEY` variables.
fn environment() -> config::Environment {
    config::Environment::with_prefix("RACCORDO")
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        // `RACCORDO__AMQP__URLS=amqp://…@a:5672/%2f,amqp://…@b:5672/%2f`
        .list_separator(",")
        .with_list_parse_key("amqp.urls")
}

impl Settings {
    /// Loads defaults, the `RACCORDO_CONFIG` file and `RACCORDO__*` variables, then validates.
    pub fn load() -> Result<Self, SettingsError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Ok(path) = std::env::var("RACCORDO_CONFIG") {
            builder = builder.add_source(config::File::with_name(&path).required(true));
        }
        let mut settings: Settings = builder
            .add_source(environment())
            .build()?
            .try_deserialize()?;
        settings.eviction.read_key_file()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what serde cannot: ranges, URLs, names.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |key, reason: &str| {
            Err(SettingsError::Invalid {
                key,
                reason: reason.to_owned(),
            })
        };
        let prefix_ok = !self.amqp.prefix.is_empty()
            && self
                .amqp
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !prefix_ok {
            return invalid("amqp.prefix", "use letters, digits, '-', '_' or '.'");
        }
        if self.amqp.handler_timeout_ms == 0 {
            return invalid("amqp.handler_timeout_ms", "must be at least 1");
        }
        if self.amqp.prefetch == 0 || self.amqp.consumers == 0 {
            return invalid("amqp.prefetch/amqp.consumers", "must be at least 1");
        }
        if let Err((key, reason)) = self.amqp.check_urls() {
            return invalid(key, reason);
        }
        if self.database.connect_options().is_err() {
            return invalid("database.url", "not a PostgreSQL URL");
        }
        if self.retry.max_attempts == 0 || self.retry.initial_delay_ms == 0 {
            return invalid(
                "retry",
                "max_attempts and initial_delay_ms must be at least 1",
            );
        }
        if self.retry.max_delay_ms < self.retry.initial_delay_ms {
            return invalid(
                "retry.max_delay_ms",
                "must not be below retry.initial_delay_ms",
            );
        }
        if !self.quota.per_thousand.is_finite()
            || self.quota.per_thousand <= 0.0
            || self.quota.per_thousand > 1000.0
        {
            return invalid("quota.per_thousand", "must be above 0 and at most 1000");
        }
        if [self.quota.exclusion_ratio, self.quota.zone_full_ratio]
            .iter()
            .any(|r| r.is_nan() || *r <= 0.0)
        {
            return invalid("quota ratios", "must be positive");
        }
        if crate::domain::parse_date(&self.quota.protocol_signed_on).is_err() {
            return invalid("quota.protocol_signed_on", "use YYYY-MM-DD");
        }
        if self.eviction.pseudonym_keys().is_empty() {
            return invalid("eviction.pseudonym_key", "no key given");
        }
        self.validate_publishers()?;
        if let Err((key, reason)) = self.ingest.check(self.security.allow_plaintext) {
            return invalid(key, &reason);
        }
        if crate::domain::EmailAddress::parse_mailbox(&self.mail.from).is_err() {
            return invalid("mail.from", "not an email address");
        }
        // The From header of every email (CONTRACT §4, §6).
        if crate::domain::has_control(&self.mail.from) {
            return invalid("mail.from", crate::domain::CONTROL_CHARACTER);
        }
        if let Err(reason) = self.mail.check_smtp_url() {
            return invalid("mail.smtp_url", reason);
        }
        if let Err((key, reason)) = self.mail.check_pec() {
            return invalid(key, &reason);
        }
        if let Err((key, reason)) = self.retention.check() {
            return invalid(key, reason);
        }
        self.validate_console()?;
        self.validate_ack()?;
        self.validate_tls()
    }

    /// Every peer `settings` would reach in clear over a network. The SMTP server counts only
    /// when emails go over SMTP (`mail.transport = "smtp"`).
    pub fn plaintext_peers(&self) -> Vec<crate::tls::PlaintextPeer> {
        let settings = self;
        let mut peers = Vec::new();
        for url in settings.amqp.addresses() {
            if let Some(host) = crate::tls::amqp_in_clear(url.expose_secret()) {
                peers.push(crate::tls::PlaintextPeer {
                    key: settings.amqp.addresses_key(),
                    host,
                    remedy: "use amqps://user:password@host:5671/vhost",
                });
            }
        }
        if let Some(host) = settings
            .database
            .connect_options()
            .ok()
            .as_ref()
            .and_then(crate::tls::database_in_clear)
        {
            peers.push(crate::tls::PlaintextPeer {
                key: "database.url",
                host,
                remedy: "add ?sslmode=verify-full (or require, verify-ca) to the URL",
            });
        }
        if settings.mail.transport == MailTransportKind::Smtp
            && let Some(host) = crate::tls::smtp_in_clear(settings.mail.smtp_url.expose_secret())
        {
            peers.push(crate::tls::PlaintextPeer {
                key: "mail.smtp_url",
                host,
                remedy: "use smtps://host:465 or smtp://host:587?tls=required",
            });
        }
        if let Some(host) = crate::tls::smtp_in_clear(settings.mail.pec_smtp_url.expose_secret()) {
            peers.push(crate::tls::PlaintextPeer {
                key: "mail.pec_smtp_url",
                host,
                remedy: "use smtps://host:465 or smtp://host:587?tls=required",
            });
        }
        peers
    }

    /// The TLS rule: no peer on another machine in clear, unless `security.allow_plaintext`.
    /// Runs on the settings alone, before any connection is attempted.
    fn validate_tls(&self) -> Result<(), SettingsError> {
        if self.security.allow_plaintext {
            return Ok(());
        }
        match self.plaintext_peers().into_iter().next() {
            Some(peer) => Err(SettingsError::Invalid {
                key: peer.key,
                reason: format!("{peer}, {}", crate::tls::ALLOW_PLAINTEXT_HINT),
            }),
            None => Ok(()),
        }
    }

    /// Each publisher's user name, types and comuni.
    fn validate_publishers(&self) -> Result<(), SettingsError> {
        let invalid = |key, reason: &str| {
            Err(SettingsError::Invalid {
                key,
                reason: reason.to_owned(),
            })
        };
        for (user, rule) in &self.publishers.users {
            let key = "publishers";
            if user.is_empty()
                || user.len() > 255
                || user.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return invalid(
                    key,
                    "a publisher's broker user name is empty, too long or has spaces",
                );
            }
            if rule.types.is_empty() {
                return invalid(key, &format!("publishers.{user}.types is empty"));
            }
            if let Some(t) = rule
                .types
                .iter()
                .find(|t| crate::envelope::EventType::parse(t).is_none())
            {
                return invalid(
                    key,
                    &format!("publishers.{user}.types names an unknown type {t:?}"),
                );
            }
            if let Some(c) = rule
                .comuni
                .iter()
                .find(|c| crate::domain::ComuneIstat::parse(c).is_err())
            {
                return invalid(
                    key,
                    &format!("publishers.{user}.comuni: {c:?} is not an ISTAT code"),
                );
            }
            self.validate_scopes(user, rule)?;
            if let Some(rate) = rule.rate_per_s
                && !(rate.is_finite() && rate > 0.0 && rate <= 1e6)
            {
                return invalid(
                    key,
                    &format!("publishers.{user}.rate_per_s must be a positive number"),
                );
            }
            if let Some(kind) = rule.stream_kinds.iter().find(|k| {
                let known =
                    |name: &str| crate::notification::NotificationKind::parse(name).is_some();
                match k.strip_suffix('*') {
                    Some(prefix) => {
                        prefix.ends_with('.')
                            && crate::notification::NotificationKind::ALL
                                .iter()
                                .any(|n| n.as_str().starts_with(prefix))
                    }
                    None => known(k),
                }
                .then_some(())
                .is_none()
            }) {
                return invalid(
                    key,
                    &format!(
                        "publishers.{user}.stream_kinds names {kind:?}, which is neither a notification kind nor a prefix such as \"housing.*\""
                    ),
                );
            }
        }
        Ok(())
    }

    /// A registry publisher's scopes: each names one comune, ambito or zona, and only a
    /// user that may publish `registry.referent.v1` has any.
    fn validate_scopes(&self, user: &str, rule: &PublisherRule) -> Result<(), SettingsError> {
        let invalid = |reason: String| {
            Err(SettingsError::Invalid {
                key: "publishers",
                reason,
            })
        };
        if rule.scopes.is_empty() {
            return Ok(());
        }
        let registry = crate::envelope::EventType::RegistryReferent.as_str();
        if !rule.types.iter().any(|t| t == registry) {
            return invalid(format!(
                "publishers.{user}.scopes limits {registry}, which publishers.{user}.types does not name"
            ));
        }
        for (i, scope) in rule.scopes.iter().enumerate() {
            if let Err(reason) = scope.to_scope() {
                return invalid(format!("publishers.{user}.scopes[{i}] {reason}"));
            }
        }
        Ok(())
    }

    /// The acknowledgement links and the escalation clock (CONTRACT D4, D5).
    fn validate_ack(&self) -> Result<(), SettingsError> {
        let invalid = |key, reason: &str| {
            Err(SettingsError::Invalid {
                key,
                reason: reason.to_owned(),
            })
        };
        let public_url = self.console.public_url.trim();
        if !public_url.is_empty() {
            match url::Url::parse(public_url) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
                _ => {
                    return invalid(
                        "console.public_url",
                        "use the console's base URL, e.g. https://raccordo.cittametropolitana.mi.it",
                    );
                }
            }
        }
        let key = self.ack.key.expose_secret();
        if !key.is_empty() && key.len() < MIN_ACK_KEY_BYTES {
            return invalid(
                "ack.key",
                "use at least 32 bytes, e.g. the output of `openssl rand -hex 32`",
            );
        }
        if key.is_empty() && !public_url.is_empty() {
            return invalid(
                "ack.key",
                "console.public_url is set, so the emails carry acknowledgement links, which \
                 need a key of at least 32 bytes (`openssl rand -hex 32`; RACCORDO__ACK__KEY)",
            );
        }
        if self.preferences.link_days == 0 {
            return invalid("preferences.link_days", "must be at least 1");
        }
        if self.ack.ttl_days == 0 {
            return invalid("ack.ttl_days", "must be at least 1");
        }
        let hours = self.escalation.after_hours;
        if !hours.is_finite() || hours <= 0.0 || hours > 24.0 * 366.0 {
            return invalid(
                "escalation.after_hours",
                "use a positive number of hours (0.01 is 36 seconds), at most a year",
            );
        }
        let hours = self.asylum.first_intervention_hours;
        if !hours.is_finite() || hours <= 0.0 || hours > 24.0 * 366.0 {
            return invalid(
                "asylum.first_intervention_hours",
                "use a positive number of hours (0.01 is 36 seconds), at most a year",
            );
        }
        Ok(())
    }

    fn validate_console(&self) -> Result<(), SettingsError> {
        let console = &self.console;
        let invalid = |key, reason: &str| {
            Err(SettingsError::Invalid {
                key,
                reason: reason.to_owned(),
            })
        };
        if console.session_ttl_minutes == 0 {
            return invalid("console.session_ttl_minutes", "must be at least 1");
        }
        if console.session_max_hours == 0 {
            return invalid("console.session_max_hours", "must be at least 1");
        }
        if console.login_failures_per_user == 0
            || console.login_failures_per_address == 0
            || console.login_lockout_minutes == 0
        {
            return invalid(
                "console.login_failures_per_user/login_failures_per_address/login_lockout_minutes",
                "must be at least 1",
            );
        }
        if !(1..=64).contains(&console.hashing_concurrency) {
            return invalid("console.hashing_concurrency", "use 1 to 64");
        }
        if let Err(reason) = console.trusted_proxy_nets() {
            return invalid("console.trusted_proxies", &reason);
        }
        let mut names = std::collections::BTreeSet::new();
        for operator in &console.operators {
            let name = &operator.name;
            if name.trim() != name
                || name.is_empty()
                || name.chars().count() > 64
                || name.chars().any(char::is_control)
            {
                return invalid(
                    "console.operators.name",
                    "use 1 to 64 characters, no control characters, no spaces around",
                );
            }
            if !names.insert(name.as_str()) {
                return invalid(
                    "console.operators.name",
                    &format!("{name:?} is configured twice"),
                );
            }
            if operator
                .password_hash
                .as_ref()
                .is_some_and(|h| !h.expose_secret().starts_with("$argon2"))
            {
                return invalid(
                    "console.operators.password_hash",
                    "use an argon2 hash from `raccordo console user add`",
                );
            }
        }
        Ok(())
    }
}

impl DatabaseSettings {
    /// Options for the configured database. Every statement and lock wait is bounded on
    /// the server, so no await on the database hangs a worker: past the bound PostgreSQL
    /// cancels it (57014, 55P03), a fault the hub retries.
    pub fn connect_options(&self) -> Result<PgConnectOptions, sqlx::Error> {
        Ok(self
            .url
            .expose_secret()
            .parse::<PgConnectOptions>()?
            .options([("statement_timeout", "30s"), ("lock_timeout", "15s")]))
    }

    /// The name of the configured database.
    pub fn database_name(&self) -> Result<String, sqlx::Error> {
        Ok(self
            .connect_options()?
            .get_database()
            .unwrap_or("postgres")
            .to_owned())
    }

    /// Options for the server's `postgres` database, used to create ours.
    pub fn maintenance_options(&self) -> Result<PgConnectOptions, sqlx::Error> {
        Ok(self.connect_options()?.database("postgres"))
    }

    /// Bound on waiting for a pooled connection.
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }
}

impl AmqpSettings {
    /// Bound on handling one message.
    pub fn handler_timeout(&self) -> Duration {
        Duration::from_millis(self.handler_timeout_ms)
    }

    /// The broker's addresses, in the order connections try them: `urls` (blank entries
    /// skipped) when it names any, else `url`.
    pub fn addresses(&self) -> Vec<&SecretString> {
        let listed: Vec<&SecretString> = self
            .urls
            .iter()
            .filter(|u| !u.expose_secret().trim().is_empty())
            .collect();
        if listed.is_empty() {
            vec![&self.url]
        } else {
            listed
        }
    }

    /// The first address: where a command reads the user and vhost it connects as.
    pub fn primary_url(&self) -> &SecretString {
        self.addresses().first().copied().unwrap_or(&self.url)
    }

    /// The key the addresses come from, for messages.
    pub fn addresses_key(&self) -> &'static str {
        if self
            .urls
            .iter()
            .any(|u| !u.expose_secret().trim().is_empty())
        {
            "amqp.urls"
        } else {
            "amqp.url"
        }
    }

    /// Every address is an AMQP URL, and all name the same user and vhost: they are nodes of
    /// one cluster, where users and vhosts are shared. Reasons never quote a URL (passwords).
    fn check_urls(&self) -> Result<(), (&'static str, &'static str)> {
        let key = self.addresses_key();
        let mut first: Option<(String, String)> = None;
        for url in self.addresses() {
            let parsed: lapin::uri::AMQPUri = url
                .expose_secret()
                .parse()
                .map_err(|_| (key, "not an AMQP URL"))?;
            let identity = (parsed.authority.userinfo.username, parsed.vhost);
            match &first {
                None => first = Some(identity),
                Some(seen) if *seen != identity => {
                    return Err((key, "every node must name the same user and vhost"));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// Why `mail.transport = "file"` stops a start without `mail.allow_file_transport`.
const FILE_TRANSPORT_REFUSED: &str = "\"file\" writes every email to mail.outbox_dir, eviction \
    alerts with families' personal data included: it is refused outside the demo unless \
    mail.allow_file_transport = true (or use mail.transport = \"smtp\")";

impl MailSettings {
    /// Bound on connecting and on each send.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Refuses SMTP credentials that would travel in clear: a user or password needs
    /// `smtps://` (implicit TLS) or `?tls=required` (STARTTLS that cannot be skipped).
    /// The reason never quotes the URL, which holds the password.
    fn check_smtp_url(&self) -> Result<(), &'static str> {
        let Ok(url) = url::Url::parse(self.smtp_url.expose_secret()) else {
            return Err("not a URL (smtp://host:port, smtps://host:port)");
        };
        let credentials = !url.username().is_empty() || url.password().is_some();
        let tls_required = url.scheme() == "smtps"
            || url
                .query_pairs()
                .any(|(key, value)| key == "tls" && value == "required");
        if credentials && !tls_required {
            return Err("credentials would be sent in clear: use smtps:// or add ?tls=required");
        }
        Ok(())
    }

    /// Checks the PEC keys: the receipt hours, the kinds.
    fn check_pec(&self) -> Result<(), (&'static str, String)> {
        if !self.pec_receipt_hours.is_finite() || self.pec_receipt_hours <= 0.0 {
            return Err((
                "mail.pec_receipt_hours",
                "must be a positive number of hours".into(),
            ));
        }
        // A kind the hub does not emit yet (asylum.*, CONTRACT D2's list) is harmless.
        let kind_token = |k: &String| {
            k.split_once('.').is_some_and(|(a, b)| {
                [a, b]
                    .iter()
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            })
        };
        match self.pec_kinds.iter().find(|k| !kind_token(k)) {
            Some(kind) => Err(("mail.pec_kinds", format!("not a notification kind: {kind}"))),
            None => Ok(()),
        }
    }

    /// Whether emails go by PEC at all (`pec_smtp_url` set).
    pub fn pec_enabled(&self) -> bool {
        !self.pec_smtp_url.expose_secret().trim().is_empty()
    }

    /// The kinds that go by PEC in this process: `pec_kinds`, or none without a PEC server.
    pub fn pec_channel_kinds(&self) -> Vec<String> {
        if self.pec_enabled() {
            self.pec_kinds.clone()
        } else {
            Vec::new()
        }
    }

    /// The PEC receipt timeout (`pec_receipt_hours`).
    pub fn pec_receipt_timeout(&self) -> Duration {
        Duration::try_from_secs_f64(self.pec_receipt_hours * 3600.0).unwrap_or(Duration::MAX)
    }

    /// Refuses the file transport unless `mail.allow_file_transport`: what the mailer
    /// checks before it writes a single file.
    pub fn check_file_transport_allowed(&self) -> Result<(), SettingsError> {
        if self.transport == MailTransportKind::File && !self.allow_file_transport {
            return Err(SettingsError::Invalid {
                key: "mail.transport",
                reason: FILE_TRANSPORT_REFUSED.to_owned(),
            });
        }
        Ok(())
    }
}

impl EvictionSettings {
    /// Replaces `pseudonym_key` with the content of `pseudonym_key_file`, when one is set.
    fn read_key_file(&mut self) -> Result<(), SettingsError> {
        if let Some(path) = &self.pseudonym_key_file {
            check_key_file_mode(path)?;
            let text = std::fs::read_to_string(path).map_err(|e| SettingsError::Invalid {
                key: "eviction.pseudonym_key_file",
                reason: format!("cannot read {}: {e}", path.display()),
            })?;
            self.pseudonym_key = SecretString::from(text);
        }
        Ok(())
    }

    /// The key chain, oldest first.
    pub fn pseudonym_keys(&self) -> Vec<SecretString> {
        self.pseudonym_key
            .expose_secret()
            .split_whitespace()
            .map(|k| SecretString::from(k.to_owned()))
            .collect()
    }

    /// Refuses the development key and short keys unless `allow_development_key`: what
    /// `serve`, `setup` and `rekey` call before touching procedures.
    pub fn check_key_for_real_data(&self) -> Result<(), SettingsError> {
        if self.allow_development_key {
            return Ok(());
        }
        let keys = self.pseudonym_keys();
        let weak = keys.iter().any(|k| {
            let k = k.expose_secret();
            k == DEVELOPMENT_PSEUDONYM_KEY || k.len() < MIN_PSEUDONYM_KEY_BYTES
        });
        if weak || keys.is_empty() {
            return Err(SettingsError::Invalid {
                key: "eviction.pseudonym_key",
                reason: format!(
                    "the development key, or a key under {MIN_PSEUDONYM_KEY_BYTES} bytes, would let anyone \
                     reverse the pseudonyms of families: set your own key (e.g. `openssl rand -hex 32`) \
                     in eviction.pseudonym_key or eviction.pseudonym_key_file, or set \
                     eviction.allow_development_key = true for a demo or a test"
                ),
            });
        }
        Ok(())
    }

    /// How far in the future a consent's `recorded_at` may be.
    pub fn max_clock_skew(&self) -> Duration {
        Duration::from_secs(self.max_clock_skew_s)
    }

    /// How long a dead letter that may hold personal data is kept.
    pub fn dead_letter_ttl(&self) -> Duration {
        Duration::from_secs(u64::from(self.dead_letter_ttl_days) * 86_400)
    }
}

/// Refuses a key file that the group or others may read or write (mode & 0o077): the key
/// reverses every family's pseudonym. On systems without Unix modes nothing is checked.
fn check_key_file_mode(path: &std::path::Path) -> Result<(), SettingsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| SettingsError::Invalid {
                key: "eviction.pseudonym_key_file",
                reason: format!("cannot read {}: {e}", path.display()),
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(SettingsError::Invalid {
                key: "eviction.pseudonym_key_file",
                reason: format!(
                    "{} has mode {:04o}: its group or others may read it, and the key reverses \
                     the families' pseudonyms; make it readable by the hub's user alone \
                     (chmod 600 {})",
                    path.display(),
                    mode & 0o7777,
                    path.display()
                ),
            });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

impl RetrySettings {
    /// Delay before retry number `attempt` (1-based): doubles from `initial_delay_ms`, capped.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(32);
        let ms = self
            .initial_delay_ms
            .saturating_mul(1u64 << exp)
            .min(self.max_delay_ms);
        Duration::from_millis(ms)
    }

    /// The distinct delays used, one retry queue each.
    pub fn delays(&self) -> Vec<Duration> {
        let mut delays: Vec<Duration> = (1..self.max_attempts).map(|a| self.delay(a)).collect();
        delays.dedup();
        delays
    }
}

impl RelaySettings {
    /// Poll interval when no NOTIFY arrives.
    pub fn poll(&self) -> Duration {
        Duration::from_millis(self.poll_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_defaults_load_and_validate() {
        let settings = Settings::load().expect("defaults are valid");
        assert_eq!(settings.amqp.prefix, "raccordo");
        assert_eq!(settings.mail.transport, MailTransportKind::File);
        assert_eq!(settings.quota.exclusion_ratio, 0.5);
        assert_eq!(settings.eviction.urgent_within_days, 7);
        assert!(!settings.console.enabled);
        assert_eq!(settings.console.addr, "127.0.0.1:9465");
    }

    #[test]
    fn retention_defaults_are_the_contract_s_and_a_zero_day_is_refused() {
        let mut settings = Settings::load().expect("defaults are valid");
        let r = &settings.retention;
        assert_eq!(
            (r.personal_days, r.idle_days, r.notification_days),
            (90, 365, 90)
        );
        assert_eq!((r.eml_days, r.inbox_days, r.audit_years), (7, 400, 10));
        settings.retention.personal_days = 0;
        let error = settings.validate().expect_err("zero days refused");
        assert!(
            error.to_string().contains("retention.personal_days"),
            "{error}"
        );
        settings.retention.personal_days = 90;
        settings.retention.batch_size = 0;
        assert!(settings.validate().is_err());
    }

    #[test]
    fn a_console_without_users_lets_nobody_in() {
        let settings = Settings::load().expect("defaults are valid");
        assert!(!settings.console.login_configured());
    }

    #[test]
    fn an_operator_password_in_clear_is_refused() {
        let mut settings = Settings::load().expect("defaults are valid");
        settings.console.operators.push(OperatorSettings {
            name: "op".into(),
            password_hash: Some("secret".to_owned().into()),
            role: Some(ConsoleRole::Operator),
        });
        assert!(settings.validate().is_err());
    }

    #[test]
    fn the_proxy_header_alone_lets_nobody_in_without_proxies_and_users() {
        let mut settings = Settings::load().expect("defaults are valid");
        settings.console.trusted_user_header = "X-Remote-User".into();
        assert!(!settings.console.login_configured(), "no proxy, no user");
        settings.console.trusted_proxies = vec!["10.0.0.0/24".into(), "::1".into()];
        assert!(!settings.console.login_configured(), "no user");
        settings.console.operators.push(OperatorSettings {
            name: "m.rossi".into(),
            password_hash: None,
            role: None,
        });
        assert!(
            !settings.console.login_configured(),
            "the header names only users configured with a role"
        );
        assert_eq!(
            settings.console.operators[0].effective_role(),
            ConsoleRole::Viewer,
            "an entry without a role is a viewer"
        );
        settings.console.operators[0].role = Some(ConsoleRole::Viewer);
        assert!(settings.console.login_configured());
        assert!(settings.validate().is_ok());
        settings.console.trusted_proxies.push("10.0.0.300".into());
        assert!(settings.validate().is_err());
    }

    #[test]
    fn a_console_user_name_is_configured_once_and_without_control_characters() {
        let mut settings = Settings::load().expect("defaults are valid");
        let user = |name: &str| OperatorSettings {
            name: name.into(),
            password_hash: None,
            role: Some(ConsoleRole::Viewer),
        };
        settings.console.operators = vec![user("a"), user("a")];
        assert!(settings.validate().is_err());
        settings.console.operators = vec![user("a\nb")];
        assert!(settings.validate().is_err());
        settings.console.operators = vec![user("a"), user("b")];
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn the_development_key_is_refused_for_real_data_unless_allowed() {
        let mut settings = Settings::load().expect("defaults are valid");
        assert!(settings.eviction.check_key_for_real_data().is_err());
        settings.eviction.pseudonym_key = "short-key-0123456789".to_owned().into();
        let err = settings
            .eviction
            .check_key_for_real_data()
            .expect_err("short");
        assert!(!err.to_string().contains("short-key"), "{err}");
        settings.eviction.pseudonym_key = "k".repeat(32).into();
        assert!(settings.eviction.check_key_for_real_data().is_ok());
        settings.eviction.pseudonym_key =
            format!("{} {}", "a".repeat(32), DEVELOPMENT_PSEUDONYM_KEY).into();
        assert!(settings.eviction.check_key_for_real_data().is_err());
        settings.eviction.allow_development_key = true;
        assert!(settings.eviction.check_key_for_real_data().is_ok());
    }

    #[test]
    fn the_key_file_replaces_the_key_and_may_hold_a_chain() {
        let dir = std::env::temp_dir().join(format!("raccordo-key-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("key");
        std::fs::write(&file, format!("{}\n{}\n", "a".repeat(40), "b".repeat(40))).expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        let mut settings = Settings::load().expect("defaults are valid");
        settings.eviction.pseudonym_key_file = Some(file);
        settings.eviction.read_key_file().expect("readable");
        assert_eq!(settings.eviction.pseudonym_keys().len(), 2);
        assert!(settings.eviction.check_key_for_real_data().is_ok());
        settings.eviction.pseudonym_key_file = Some(dir.join("missing"));
        assert!(settings.eviction.read_key_file().is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn publishers_name_known_types_and_comuni() {
        let mut settings = Settings::load().expect("defaults are valid");
        assert!(!settings.publishers.allow_anonymous);
        settings.publishers.users.insert(
            "comune_rho".into(),
            PublisherRule {
                types: vec!["housing.unit.v1".into()],
                comuni: vec!["015182".into()],
                ..PublisherRule::default()
            },
        );
        assert!(settings.validate().is_ok());
        settings.publishers.users.insert(
            "typo".into(),
            PublisherRule {
                types: vec!["housing.units.v1".into()],
                comuni: vec![],
                ..PublisherRule::default()
            },
        );
        let err = settings.validate().expect_err("unknown type");
        assert!(err.to_string().contains("housing.units.v1"), "{err}");
    }

    #[test]
    fn smtp_credentials_without_tls_are_refused_without_quoting_the_password() {
        let mut settings = Settings::load().expect("defaults are valid");
        for clear in [
            "smtp://raccordo:s3cret-Pa55@mail.example:587",
            "smtp://raccordo:s3cret-Pa55@mail.example:587?tls=opportunistic",
            "smtp://raccordo@mail.example:25",
        ] {
            settings.mail.smtp_url = clear.to_owned().into();
            let error = settings.validate().expect_err(clear);
            let text = error.to_string();
            assert!(
                matches!(
                    error,
                    SettingsError::Invalid {
                        key: "mail.smtp_url",
                        ..
                    }
                ),
                "{text}"
            );
            assert!(
                !text.contains("s3cret") && !text.contains("raccordo@"),
                "{text}"
            );
        }
        for protected in [
            "smtps://raccordo:s3cret-Pa55@mail.example:465",
            "smtp://raccordo:s3cret-Pa55@mail.example:587?tls=required",
            "smtp://127.0.0.1:1025",
        ] {
            settings.mail.smtp_url = protected.to_owned().into();
            assert!(settings.validate().is_ok(), "{protected}");
        }
    }

    #[test]
    fn the_file_transport_is_refused_unless_allowed_naming_both_keys() {
        let mut settings = Settings::load().expect("defaults are valid");
        assert!(!settings.mail.allow_file_transport, "off by default");
        settings.mail.transport = MailTransportKind::File;
        let text = settings
            .mail
            .check_file_transport_allowed()
            .expect_err("refused")
            .to_string();
        assert!(
            text.contains("mail.transport") && text.contains("mail.allow_file_transport"),
            "{text}"
        );
        settings.mail.allow_file_transport = true;
        assert!(settings.mail.check_file_transport_allowed().is_ok());
        settings.mail.allow_file_transport = false;
        settings.mail.transport = MailTransportKind::Smtp;
        assert!(settings.mail.check_file_transport_allowed().is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_the_group_or_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("raccordo-key-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("key");
        std::fs::write(&file, "k".repeat(40)).expect("write");
        let mut settings = Settings::load().expect("defaults are valid");
        settings.eviction.pseudonym_key_file = Some(file.clone());
        for mode in [0o644, 0o640, 0o604, 0o660, 0o602] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let text = settings
                .eviction
                .read_key_file()
                .expect_err("readable by others")
                .to_string();
            assert!(
                text.contains("eviction.pseudonym_key_file") && text.contains("chmod 600"),
                "{text}"
            );
            assert!(!text.contains(&"k".repeat(40)), "{text}");
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
            assert!(settings.eviction.read_key_file().is_ok(), "{mode:o}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_sender_with_a_control_character_is_refused() {
        let mut settings = Settings::load().expect("defaults are valid");
        for bad in [
            "Raccordo\r\nBcc: x@evil.example <raccordo@cm.example>",
            "Raccordo\u{0} <raccordo@cm.example>",
            "Raccordo\u{85} <raccordo@cm.example>",
        ] {
            settings.mail.from = bad.to_owned();
            let error = settings.validate().expect_err(bad);
            assert!(
                matches!(
                    error,
                    SettingsError::Invalid {
                        key: "mail.from",
                        ..
                    }
                ),
                "{error}"
            );
        }
    }

    #[test]
    fn registry_scopes_name_one_comune_ambito_or_zona_of_a_registry_publisher() {
        let mut settings = Settings::load().expect("defaults are valid");
        let scope = |c: Option<&str>, a: Option<&str>, z: Option<&str>| ScopeSetting {
            comune_istat: c.map(str::to_owned),
            ambito: a.map(str::to_owned),
            zona: z.map(str::to_owned),
        };
        settings.publishers.users.insert(
            "registro_rho".into(),
            PublisherRule {
                types: vec!["registry.referent.v1".into()],
                scopes: vec![
                    scope(Some("015182"), None, None),
                    scope(None, Some("Rho"), None),
                    scope(None, None, Some("Nord Ovest")),
                ],
                ..PublisherRule::default()
            },
        );
        assert!(settings.validate().is_ok());
        for (bad, expected) in [
            (scope(Some("15182"), None, None), "6-digit"),
            (scope(Some("015182"), Some("Rho"), None), "exactly one"),
            (scope(None, None, None), "exactly one"),
            (scope(None, Some(" "), None), "empty"),
            (scope(None, None, Some("Nord\nOvest")), "control"),
        ] {
            let mut settings = settings.clone();
            if let Some(rule) = settings.publishers.users.get_mut("registro_rho") {
                rule.scopes.push(bad);
            }
            let text = settings.validate().expect_err(expected).to_string();
            assert!(
                text.contains("registro_rho.scopes[3]") && text.contains(expected),
                "{text}"
            );
        }
        settings.publishers.users.insert(
            "comune_rho".into(),
            PublisherRule {
                types: vec!["housing.unit.v1".into()],
                scopes: vec![scope(Some("015182"), None, None)],
                ..PublisherRule::default()
            },
        );
        let text = settings
            .validate()
            .expect_err("not a registry publisher")
            .to_string();
        assert!(
            text.contains("publishers.comune_rho.scopes limits registry.referent.v1"),
            "{text}"
        );
    }

    #[test]
    fn a_peer_on_another_machine_in_clear_is_refused_unless_plaintext_is_allowed() {
        let mut settings = Settings::load().expect("defaults are valid");
        assert!(!settings.security.allow_plaintext, "off by default");
        settings.database.url = "postgres://postgres:s3cret@192.0.2.1:5432/raccordo"
            .to_owned()
            .into();
        let text = settings.validate().expect_err("clear text").to_string();
        assert!(
            text.contains("database.url")
                && text.contains("192.0.2.1")
                && text.contains("sslmode=verify-full")
                && text.contains("security.allow_plaintext"),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
        settings.database.url = "postgres://postgres@192.0.2.1:5432/raccordo?sslmode=verify-full"
            .to_owned()
            .into();
        assert!(settings.validate().is_ok());
        settings.amqp.url = "amqp://u:p@broker.example:5672/%2f".to_owned().into();
        let text = settings.validate().expect_err("clear broker").to_string();
        assert!(
            text.contains("amqp.url") && text.contains("amqps://"),
            "{text}"
        );
        settings.security.allow_plaintext = true;
        assert!(settings.validate().is_ok());
    }

    /// The defaults with `vars` as the environment.
    fn with_environment(vars: &[(&str, &str)]) -> Settings {
        let vars = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .add_source(environment().source(Some(vars)))
            .build()
            .and_then(|c| c.try_deserialize())
            .expect("the settings load")
    }

    #[test]
    fn a_comma_separated_list_of_broker_nodes_replaces_the_single_url_in_its_order() {
        let settings = with_environment(&[(
            "RACCORDO__AMQP__URLS",
            "amqp://u:p@127.0.0.1:5681/%2f,amqp://u:p@127.0.0.1:5682/%2f,amqp://u:p@127.0.0.1:5683/%2f",
        )]);

        let addresses: Vec<&str> = settings
            .amqp
            .addresses()
            .into_iter()
            .map(|u| u.expose_secret())
            .collect();
        assert_eq!(
            addresses,
            [
                "amqp://u:p@127.0.0.1:5681/%2f",
                "amqp://u:p@127.0.0.1:5682/%2f",
                "amqp://u:p@127.0.0.1:5683/%2f"
            ]
        );
        assert_eq!(
            settings.amqp.primary_url().expose_secret(),
            "amqp://u:p@127.0.0.1:5681/%2f"
        );
        assert_eq!(settings.amqp.addresses_key(), "amqp.urls");
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn without_a_list_the_single_url_is_the_only_address() {
        let settings = with_environment(&[
            ("RACCORDO__AMQP__URL", "amqp://u:p@127.0.0.1:5690/%2f"),
            ("RACCORDO__AMQP__URLS", ""),
        ]);

        let addresses: Vec<&str> = settings
            .amqp
            .addresses()
            .into_iter()
            .map(|u| u.expose_secret())
            .collect();
        assert_eq!(addresses, ["amqp://u:p@127.0.0.1:5690/%2f"]);
        assert_eq!(settings.amqp.addresses_key(), "amqp.url");
    }

    #[test]
    fn broker_nodes_with_another_user_or_vhost_or_no_url_are_refused_without_quoting_them() {
        for urls in [
            "amqp://a:s3cret@127.0.0.1:5681/%2f,amqp://b:s3cret@127.0.0.1:5682/%2f",
            "amqp://a:s3cret@127.0.0.1:5681/%2f,amqp://a:s3cret@127.0.0.1:5682/other",
            "amqp://a:s3cret@127.0.0.1:5681/%2f,http://a:s3cret@[::1",
        ] {
            let settings = with_environment(&[("RACCORDO__AMQP__URLS", urls)]);

            let text = settings.validate().expect_err(urls).to_string();

            assert!(text.contains("amqp.urls"), "{text}");
            assert!(!text.contains("s3cret"), "{text}");
        }
    }

    #[test]
    fn a_broker_node_in_clear_on_another_machine_is_named_by_the_list() {
        let settings = with_environment(&[(
            "RACCORDO__AMQP__URLS",
            "amqps://u:p@rabbit-1.example:5671/%2f,amqp://u:p@rabbit-2.example:5672/%2f",
        )]);

        let peers = settings.plaintext_peers();

        assert_eq!(peers.len(), 1, "{peers:?}");
        assert_eq!(peers[0].key, "amqp.urls");
        assert_eq!(peers[0].host, "rabbit-2.example");
    }

    #[test]
    fn retry_delays_grow_from_one_second_to_the_cap() {
        let retry = RetrySettings {
            max_attempts: 10,
            initial_delay_ms: 1000,
            max_delay_ms: 60_000,
        };
        assert_eq!(retry.delay(1), Duration::from_secs(1));
        assert_eq!(retry.delay(2), Duration::from_secs(2));
        assert_eq!(retry.delay(7), Duration::from_secs(60));
        assert_eq!(retry.delay(40), Duration::from_secs(60));
        let delays = retry.delays();
        assert_eq!(delays.first(), Some(&Duration::from_secs(1)));
        assert_eq!(delays.last(), Some(&Duration::from_secs(60)));
        assert!(delays.windows(2).all(|w| w[0] < w[1]));
    }
}
