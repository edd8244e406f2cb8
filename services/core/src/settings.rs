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
    pub console: ConsoleSettings,
}

/// RabbitMQ connection and topology.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSettings {
    /// AMQP URL; default `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub url: SecretString,
    /// Prefix of every exchange and queue name; default `raccordo`.
    pub prefix: String,
    /// Unacknowledged deliveries per consumer; default 16.
    pub prefetch: u16,
    /// Consumers per worker in one process; default 2.
    pub consumers: u16,
    /// Inbound messages larger than this are dead-lettered; default 262144 (256 KiB).
    pub max_message_bytes: usize,
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
    /// Bound on connecting and on each send, in ms; default 10000.
    pub timeout_ms: u64,
    /// SMTP connections kept; default 4.
    pub pool_size: usize,
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
    /// HMAC key of procedure pseudonyms.
    pub pseudonym_key: SecretString,
    /// Dead eviction events expire after this many days; default 7.
    pub dead_letter_ttl_days: u32,
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
    /// Mark the session cookie `Secure` (the console is served over HTTPS); default false.
    pub secure_cookie: bool,
}

/// One operator of the console.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorSettings {
    /// The login name, also written in the console's audit trail.
    pub name: String,
    /// An argon2 hash in PHC form (`$argon2id$…`), from `raccordo console hash-password`.
    pub password_hash: SecretString,
}

impl ConsoleSettings {
    /// Somebody can log in: operators, or a trusted proxy header, are configured. Checked
    /// where the console starts, so that `raccordo console hash-password` runs before.
    pub fn login_configured(&self) -> bool {
        !self.operators.is_empty() || !self.trusted_user_header.trim().is_empty()
    }

    /// How long a session lives without a request.
    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_ttl_minutes.saturating_mul(60))
    }
}

impl Settings {
    /// Loads defaults, the `RACCORDO_CONFIG` file and `RACCORDO__*` variables, then validates.
    pub fn load() -> Result<Self, SettingsError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Ok(path) = std::env::var("RACCORDO_CONFIG") {
            builder = builder.add_source(config::File::with_name(&path).required(true));
        }
        let settings: Settings = builder
            .add_source(
                config::Environment::with_prefix("RACCORDO")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()?
            .try_deserialize()?;
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
        if self.amqp.prefetch == 0 || self.amqp.consumers == 0 {
            return invalid("amqp.prefetch/amqp.consumers", "must be at least 1");
        }
        if url::Url::parse(self.amqp.url.expose_secret()).is_err() {
            return invalid("amqp.url", "not a URL");
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
        if self.quota.per_thousand.is_nan() || self.quota.per_thousand <= 0.0 {
            return invalid("quota.per_thousand", "must be positive");
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
        if self.eviction.pseudonym_key.expose_secret().len() < 16 {
            return invalid("eviction.pseudonym_key", "use at least 16 characters");
        }
        if crate::domain::EmailAddress::parse_mailbox(&self.mail.from).is_err() {
            return invalid("mail.from", "not an email address");
        }
        self.validate_console()
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
        for operator in &console.operators {
            if operator.name.trim().is_empty() || operator.name.len() > 64 {
                return invalid("console.operators.name", "use 1 to 64 characters");
            }
            if !operator
                .password_hash
                .expose_secret()
                .starts_with("$argon2")
            {
                return invalid(
                    "console.operators.password_hash",
                    "use an argon2 hash from `raccordo console hash-password`",
                );
            }
        }
        Ok(())
    }
}

impl DatabaseSettings {
    /// Options for the configured database.
    pub fn connect_options(&self) -> Result<PgConnectOptions, sqlx::Error> {
        self.url.expose_secret().parse::<PgConnectOptions>()
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

impl MailSettings {
    /// Bound on connecting and on each send.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

impl EvictionSettings {
    /// How long a dead letter that may hold personal data is kept.
    pub fn dead_letter_ttl(&self) -> Duration {
        Duration::from_secs(u64::from(self.dead_letter_ttl_days) * 86_400)
    }
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
    fn a_console_without_operators_or_proxy_header_lets_nobody_in() {
        let mut settings = Settings::load().expect("defaults are valid");
        assert!(!settings.console.login_configured());
        settings.console.trusted_user_header = "X-Remote-User".into();
        assert!(settings.console.login_configured());
    }

    #[test]
    fn an_operator_password_in_clear_is_refused() {
        let mut settings = Settings::load().expect("defaults are valid");
        settings.console.operators.push(OperatorSettings {
            name: "op".into(),
            password_hash: "secret".to_owned().into(),
        });
        assert!(settings.validate().is_err());
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
