//! The IMAP URL forms of CONTRACT §11: `imaps://USER:PASSWORD@HOST:993/MAILBOX` (implicit
//! TLS), `imap://USER:PASSWORD@HOST:143/MAILBOX?tls=required` (STARTTLS), or plain
//! `imap://…` where the TLS rule of §8 allows it. The password is percent-encoded;
//! `MAILBOX` defaults to `INBOX`.

use percent_encoding::percent_decode_str;
use secrecy::{ExposeSecret, SecretString};

use raccordo_core::tls::is_loopback_host;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImapSecurity {
    /// TLS from the first byte (`imaps://`, port 993 by default).
    Tls,
    /// Plain, then `STARTTLS` before logging in (`imap://…?tls=required`).
    StartTls,
    /// Plain text throughout: loopback, or `security.allow_plaintext`.
    Plain,
}

/// A parsed `mail.pec_imap_url` / `mail.bounce_imap_url`. Its `Debug` hides the password.
#[derive(Clone)]
pub struct ImapUrl {
    host: String,
    port: u16,
    security: ImapSecurity,
    user: String,
    password: SecretString,
    mailbox: String,
}

/// Why an IMAP URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImapUrlError {
    #[error("not a URL")]
    NotAUrl,
    #[error("the scheme must be imap or imaps, not {0}")]
    Scheme(String),
    #[error("no host")]
    NoHost,
    #[error("no user")]
    NoUser,
    #[error("no password")]
    NoPassword,
    #[error("the user or password is not valid percent-encoded UTF-8")]
    Encoding,
    #[error("unknown query parameter {0} (only tls=required)")]
    Query(String),
    #[error("tls=required with imaps:// (implicit TLS already)")]
    TlsTwice,
    #[error("the mailbox name holds a control character or a quote")]
    Mailbox,
}

impl ImapUrl {
    /// Parses one of the forms of CONTRACT §11.
    ///
    /// # Errors
    /// [`ImapUrlError`] naming the part that is wrong (never the password).
    pub fn parse(text: &str) -> Result<Self, ImapUrlError> {
        let url = url::Url::parse(text.trim()).map_err(|_| ImapUrlError::NotAUrl)?;
        let implicit = match url.scheme() {
            "imaps" => true,
            "imap" => false,
            other => return Err(ImapUrlError::Scheme(other.to_owned())),
        };
        let mut starttls = false;
        for (key, value) in url.query_pairs() {
            if key == "tls" && value == "required" {
                starttls = true;
            } else {
                return Err(ImapUrlError::Query(key.into_owned()));
            }
        }
        if implicit && starttls {
            return Err(ImapUrlError::TlsTwice);
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or(ImapUrlError::NoHost)?
            .to_owned();
        let decode = |s: &str| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| ImapUrlError::Encoding)
        };
        let user = decode(url.username())?;
        if user.is_empty() {
            return Err(ImapUrlError::NoUser);
        }
        let password = decode(url.password().ok_or(ImapUrlError::NoPassword)?)?;
        let path = decode(url.path().trim_start_matches('/'))?;
        let mailbox = if path.is_empty() {
            "INBOX".to_owned()
        } else {
            path
        };
        if mailbox
            .chars()
            .any(|c| c.is_control() || c == '"' || c == '\\')
        {
            return Err(ImapUrlError::Mailbox);
        }
        let security = if implicit {
            ImapSecurity::Tls
        } else if starttls {
            ImapSecurity::StartTls
        } else {
            ImapSecurity::Plain
        };
        let port = url.port().unwrap_or(if implicit { 993 } else { 143 });
        Ok(Self {
            host,
            port,
            security,
            user,
            password: password.into(),
            mailbox,
        })
    }

    /// The host, as written (brackets of an IPv6 address included).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How the connection is protected.
    pub fn security(&self) -> ImapSecurity {
        self.security
    }

    /// The user logged in as.
    pub fn user(&self) -> &str {
        &self.user
    }

    pub(crate) fn password(&self) -> &str {
        self.password.expose_secret()
    }

    /// The mailbox read or appended to.
    pub fn mailbox(&self) -> &str {
        &self.mailbox
    }

    /// The same server and user, another mailbox.
    #[must_use]
    pub fn with_mailbox(&self, mailbox: &str) -> Self {
        Self {
            mailbox: mailbox.to_owned(),
            ..self.clone()
        }
    }

    /// The host when this URL reaches another machine without TLS (CONTRACT §8): refused
    /// unless `security.allow_plaintext`.
    pub fn in_clear_off_loopback(&self) -> Option<&str> {
        (self.security == ImapSecurity::Plain && !is_loopback_host(&self.host))
            .then_some(self.host.as_str())
    }
}

impl std::fmt::Debug for ImapUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("user", &self.user)
            .field("mailbox", &self.mailbox)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implicit_tls_defaults_to_port_993_and_inbox() {
        let url = ImapUrl::parse("imaps://pec%40ente.it:p%25ss%3Aw@mail.ente.it").expect("url");
        assert_eq!(url.security(), ImapSecurity::Tls);
        assert_eq!(url.port(), 993);
        assert_eq!(url.user(), "pec@ente.it");
        assert_eq!(url.password(), "p%ss:w");
        assert_eq!(url.mailbox(), "INBOX");
        assert_eq!(url.in_clear_off_loopback(), None);
    }

    #[test]
    fn starttls_and_a_mailbox_are_read_from_the_url() {
        let url =
            ImapUrl::parse("imap://u:p@mail.ente.it:143/Ricevute%20PEC?tls=required").expect("url");
        assert_eq!(url.security(), ImapSecurity::StartTls);
        assert_eq!(url.mailbox(), "Ricevute PEC");
        assert_eq!(url.in_clear_off_loopback(), None);
    }

    #[test]
    fn plain_imap_is_in_clear_only_off_loopback() {
        let local = ImapUrl::parse("imap://u:p@127.0.0.1:10143/INBOX").expect("url");
        assert_eq!(local.security(), ImapSecurity::Plain);
        assert_eq!(local.in_clear_off_loopback(), None);
        let remote = ImapUrl::parse("imap://u:p@mail.ente.it/INBOX").expect("url");
        assert_eq!(remote.in_clear_off_loopback(), Some("mail.ente.it"));
    }

    #[test]
    fn malformed_urls_are_refused_without_naming_the_password() {
        for (text, error) in [
            ("pop3://u:p@h/", ImapUrlError::Scheme("pop3".into())),
            ("imap://h/", ImapUrlError::NoUser),
            ("imap://u@h/", ImapUrlError::NoPassword),
            ("imaps://u:p@h/?tls=required", ImapUrlError::TlsTwice),
            ("imap://u:p@h/?tls=maybe", ImapUrlError::Query("tls".into())),
            ("imap://u:p@h/a%0Ab", ImapUrlError::Mailbox),
            ("imap://u:%FF@h/", ImapUrlError::Encoding),
        ] {
            assert_eq!(ImapUrl::parse(text).err(), Some(error), "{text}");
        }
        let url = ImapUrl::parse("imap://u:secret@h/").expect("url");
        assert!(!format!("{url:?}").contains("secret"));
    }
}
