//! The TLS rule for the hub's peers (CONTRACT §8, version 1.2): a broker, database or SMTP
//! server that is not on this machine is reached over TLS, or not at all — unless the
//! operator sets `security.allow_plaintext = true`, which every start then says loudly.
//!
//! Checked on the settings alone, before any connection is attempted, so a refused
//! configuration never sends a password or a packet in clear. Loopback is `127.0.0.0/8`,
//! `::1` and `localhost`; a Unix socket is local too.

use std::net::IpAddr;

use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// A peer the settings would reach in clear over a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaintextPeer {
    /// The setting that names it (`amqp.url`, `database.url`, `mail.smtp_url`).
    pub key: &'static str,
    /// Its host, as configured (never the URL: it may hold a password).
    pub host: String,
    /// How to ask for TLS instead.
    pub remedy: &'static str,
}

impl std::fmt::Display for PlaintextPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} reaches {} without TLS, and {} is not this machine: {}",
            self.key, self.host, self.host, self.remedy
        )
    }
}

/// Whether `host` is this machine: `localhost`, an address of `127.0.0.0/8` or `::1`
/// (IPv6 in brackets too), or a Unix socket's path.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    if host.starts_with('/') {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let name = bare.strip_suffix('.').unwrap_or(bare);
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        // `::ffff:127.0.0.1` is the IPv4 loopback written as IPv6.
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// `amqp.url` in clear to another machine: its host. `amqps://` is TLS; an `amqp://`
/// URL without a host means `localhost` (the AMQP URI specification).
pub fn amqp_in_clear(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    if url.scheme() == "amqps" {
        return None;
    }
    let host = url.host_str().unwrap_or("localhost");
    (!is_loopback_host(host)).then(|| host.to_owned())
}

/// `database.url` in clear to another machine: its host. Only `sslmode=require`,
/// `verify-ca` and `verify-full` are TLS; `prefer` (sqlx's default) and `allow` fall
/// back to clear text when the server offers no TLS, which an attacker can arrange.
pub fn database_in_clear(options: &PgConnectOptions) -> Option<String> {
    let encrypted = matches!(
        options.get_ssl_mode(),
        PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull
    );
    if encrypted || options.get_socket().is_some() {
        return None;
    }
    let host = options.get_host();
    (!is_loopback_host(host)).then(|| host.to_owned())
}

/// `mail.smtp_url` in clear to another machine: its host. `smtps://` and
/// `?tls=required` are TLS; `tls=opportunistic` is not (a man in the middle strips the
/// STARTTLS offer).
pub fn smtp_in_clear(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    let tls = url.scheme() == "smtps"
        || url
            .query_pairs()
            .any(|(key, value)| key == "tls" && value == "required");
    if tls {
        return None;
    }
    let host = url.host_str().unwrap_or("localhost");
    (!is_loopback_host(host)).then(|| host.to_owned())
}

/// What `security.allow_plaintext` adds to a refusal.
pub const ALLOW_PLAINTEXT_HINT: &str =
    "or set security.allow_plaintext = true to accept clear text on the network (not recommended)";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{MailTransportKind, Settings};

    #[test]
    fn loopback_is_127_slash_8_ipv6_one_localhost_and_sockets() {
        for local in [
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "[::1]",
            "localhost",
            "LOCALHOST",
            "localhost.",
            "::ffff:127.0.0.1",
            "/var/run/postgresql",
        ] {
            assert!(is_loopback_host(local), "{local}");
        }
        for remote in [
            "192.0.2.1",
            "10.0.0.1",
            "0.0.0.0",
            "::",
            "[2001:db8::1]",
            "db.example",
            "localhost.example",
            "mylocalhost",
            "128.0.0.1",
        ] {
            assert!(!is_loopback_host(remote), "{remote}");
        }
    }

    #[test]
    fn a_broker_is_in_clear_unless_amqps_or_local() {
        assert_eq!(
            amqp_in_clear("amqp://u:p@192.0.2.1:5672/%2f"),
            Some("192.0.2.1".to_owned())
        );
        assert_eq!(amqp_in_clear("amqps://u:p@192.0.2.1:5671/%2f"), None);
        assert_eq!(amqp_in_clear("amqp://guest:guest@127.0.0.1:5672/%2f"), None);
        assert_eq!(amqp_in_clear("amqp://localhost"), None);
        assert_eq!(amqp_in_clear("amqp://[::1]:5672"), None);
    }

    #[test]
    fn a_database_is_in_clear_unless_sslmode_requires_tls_or_it_is_local() {
        let options = |url: &str| url.parse::<PgConnectOptions>().expect(url);
        for clear in [
            "postgres://postgres@192.0.2.1:5432/raccordo",
            "postgres://postgres@db.example/raccordo?sslmode=prefer",
            "postgres://postgres@db.example/raccordo?sslmode=allow",
            "postgres://postgres@db.example/raccordo?sslmode=disable",
        ] {
            assert!(database_in_clear(&options(clear)).is_some(), "{clear}");
        }
        for safe in [
            "postgres://postgres@db.example/raccordo?sslmode=require",
            "postgres://postgres@db.example/raccordo?sslmode=verify-ca",
            "postgres://postgres@db.example/raccordo?sslmode=verify-full",
            "postgres://postgres@127.0.0.1:5432/raccordo",
            "postgres://postgres@localhost/raccordo?sslmode=disable",
            "postgres://postgres@%2Fvar%2Frun%2Fpostgresql/raccordo",
        ] {
            assert_eq!(database_in_clear(&options(safe)), None, "{safe}");
        }
    }

    #[test]
    fn an_smtp_server_is_in_clear_unless_smtps_or_tls_required_or_local() {
        assert_eq!(
            smtp_in_clear("smtp://mail.example:25"),
            Some("mail.example".to_owned())
        );
        assert!(smtp_in_clear("smtp://mail.example:587?tls=opportunistic").is_some());
        assert_eq!(smtp_in_clear("smtp://mail.example:587?tls=required"), None);
        assert_eq!(smtp_in_clear("smtps://mail.example:465"), None);
        assert_eq!(smtp_in_clear("smtp://127.0.0.1:1025"), None);
    }

    #[test]
    fn the_defaults_reach_only_this_machine() {
        let settings = Settings::load().expect("defaults are valid");
        assert!(settings.plaintext_peers().is_empty());
    }

    #[test]
    fn the_smtp_server_counts_only_when_mail_goes_over_smtp() {
        let mut settings = Settings::load().expect("defaults are valid");
        settings.mail.smtp_url = "smtp://mail.example:25".to_owned().into();
        settings.mail.transport = MailTransportKind::File;
        assert!(settings.plaintext_peers().is_empty());
        settings.mail.transport = MailTransportKind::Smtp;
        let peers = settings.plaintext_peers();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].key, "mail.smtp_url");
    }
}
