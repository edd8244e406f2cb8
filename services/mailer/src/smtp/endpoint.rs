//! Where and how to reach the SMTP server: [`SmtpOptions`] in lettre's URL form, parsed and
//! checked once into an [`Endpoint`] (host, port, TLS mode, credentials, EHLO name).

use std::{fmt, time::Duration};

use lettre::transport::smtp::{
    authentication::Credentials, client::TlsParameters, extension::ClientId,
};
use url::Url;

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
    /// Connections kept open while idle (≥ 1).
    pub pool_size: usize,
    /// Most connections open at once, idle plus busy (at least `pool_size`); fewer while
    /// the server refuses more.
    pub max_connections: usize,
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
            .field("max_connections", &self.max_connections)
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
pub(super) enum Security {
    Plain,
    StartTls {
        parameters: TlsParameters,
        required: bool,
    },
    Implicit(TlsParameters),
}

/// Where and how to connect, parsed once from [`SmtpOptions`].
pub(super) struct Endpoint {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) security: Security,
    pub(super) credentials: Option<Credentials>,
    pub(super) hello: ClientId,
}

impl Endpoint {
    pub(super) fn parse(options: &SmtpOptions) -> Result<Endpoint, SmtpConfigError> {
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

impl Endpoint {
    /// The TLS mode as shown in `Debug` output.
    pub(super) fn security_name(&self) -> &'static str {
        match self.security {
            Security::Plain => "plain",
            Security::StartTls { required: true, .. } => "starttls",
            Security::StartTls {
                required: false, ..
            } => "starttls-opportunistic",
            Security::Implicit(_) => "tls",
        }
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Options for `url` with a short timeout and a pool of two.
    pub(in crate::smtp) fn options(url: &str) -> SmtpOptions {
        SmtpOptions {
            url: url.to_owned(),
            timeout: Duration::from_secs(5),
            pool_size: 2,
            max_connections: 2,
            hello_name: None,
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
    }
}
