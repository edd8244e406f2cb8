//! Who may use the console, and what each may open (CONTRACT 1.2 §8 "Console roles").
//!
//! - Users are `console.operators`, each with a role. They log in with a password (argon2,
//!   verified off the async threads, `console.hashing_concurrency` at a time, in memory of
//!   its own: [`crate::hashing`]), or a trusted
//!   reverse proxy names them in `console.trusted_user_header` — believed only from an
//!   address of `console.trusted_proxies` and only for a configured user, and never in
//!   place of a session opened with a password.
//! - The login form carries a token of its own, matched against a cookie set with the form
//!   (login CSRF); failed logins are limited per name and per address ([`crate::limits`]).
//! - Sessions live in memory, end after `console.session_ttl_minutes` without a request and
//!   `console.session_max_hours` after the login whatever happens, and are bounded in
//!   number. The cookie is HttpOnly, SameSite=Strict, and `Secure` unless the console
//!   listens on loopback. Every session has its own CSRF token for its forms.
//! - [`gate`] runs on every route but the login page and the static files: it finds the
//!   user and lets the request through only if the route's [`Access`] admits the role.

use std::net::{IpAddr, SocketAddr};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, SaltString};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::context;
use secrecy::ExposeSecret;
use serde::Deserialize;

use raccordo_core::settings::{ConsoleRole, OperatorSettings};

use crate::limits::AddressKey;
use crate::params::Fields;
use crate::render::ConsoleError;
use crate::sessions::{Origin, random_token, same_secret};
use crate::state::AppState;

pub(crate) use crate::sessions::{Operator, Sessions};

const COOKIE_NAME: &str = "raccordo_console";
/// The login form's own token (login CSRF), before any session exists.
const LOGIN_COOKIE: &str = "raccordo_login";
/// How long a login form stays usable.
const LOGIN_FORM_SECONDS: u64 = 3600;
/// Longer passwords are refused unverified: argon2's cost grows with the input.
const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("the password is empty")]
    Empty,
    #[error("argon2 failed: {0}")]
    Argon2(String),
}

/// An argon2id hash of `password` in PHC form, for `console.operators[].password_hash`.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    if password.is_empty() {
        return Err(HashError::Empty);
    }
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| HashError::Argon2(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Argon2(e.to_string()))
}

#[cfg(test)]
fn verify(password: &str, hash: &str) -> bool {
    crate::hashing::verify_in(password.as_bytes(), hash, &mut Vec::new())
}

/// Which users a route admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anybody, logged in or not: the login page and the static files.
    Public,
    /// Every role: what the `viewer` may see (overview counts, coverage, statistics,
    /// reports, routing preview) is shown to every user.
    Viewer,
    /// `operator` only: dead letters (show, replay, purge).
    Operator,
    /// `privacy` only: the eviction audit.
    Privacy,
}

impl Access {
    /// Whether a user of `role` may open such a route.
    pub fn admits(self, role: ConsoleRole) -> bool {
        match self {
            Access::Public | Access::Viewer => true,
            Access::Operator => role == ConsoleRole::Operator,
            Access::Privacy => role == ConsoleRole::Privacy,
        }
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A cookie of the console; `None` keeps it until the browser closes (the session's expiry
/// is kept on the server), `Some(0)` deletes it.
fn set_cookie(state: &AppState, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let secure = if state.secure_cookie { "; Secure" } else { "" };
    let max_age = max_age
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    let value = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict{max_age}{secure}");
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The configured user of this name.
fn configured<'a>(state: &'a AppState, name: &str) -> Option<&'a OperatorSettings> {
    state
        .settings
        .console
        .operators
        .iter()
        .find(|o| o.name == name)
}

/// The peer's address, as the listener saw it.
fn peer(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

fn trusted_proxy(state: &AppState, peer: Option<IpAddr>) -> bool {
    peer.is_some_and(|ip| {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        state.trusted_proxies.iter().any(|net| net.contains(&ip))
    })
}

/// The user the trusted proxy names: only when the request comes from one of
/// `console.trusted_proxies` and the header is configured and sent.
fn proxy_user(state: &AppState, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<String> {
    let name = state.settings.console.trusted_user_header.trim();
    if name.is_empty() || !trusted_proxy(state, peer) {
        return None;
    }
    let user = headers.get(name)?.to_str().ok()?.trim();
    (!user.is_empty()).then(|| user.to_owned())
}

/// The client's address for the login limits: the peer, or behind a trusted proxy the
/// address that proxy appended to `X-Forwarded-For`.
fn client_address(state: &AppState, peer: Option<IpAddr>, headers: &HeaderMap) -> AddressKey {
    let forwarded = trusted_proxy(state, peer)
        .then(|| {
            headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .next_back()
                .and_then(|a| a.trim().parse::<IpAddr>().ok())
        })
        .flatten();
    AddressKey::from(
        forwarded
            .or(peer)
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
    )
}

/// The route's access, for [`gate`].
#[derive(Clone)]
pub(crate) struct Gate {
    pub(crate) state: AppState,
    pub(crate) access: Access,
}

/// Finds the request's user, lets it through when the route admits the user's role, and
/// otherwise answers with the login page (nobody), or a 403 page (a role that may not).
pub(crate) async fn gate(State(gate): State<Gate>, mut request: Request, next: Next) -> Response {
    let state = &gate.state;
    let token = cookie(request.headers(), COOKIE_NAME);
    let session = token.as_deref().and_then(|t| state.sessions.touch(t));
    let peer = peer(&request);
    let proxied = proxy_user(state, peer, request.headers());
    let (operator, new_cookie) = match (session, proxied) {
        // A session opened with a password is never replaced by a header.
        (Some(op), _) if op.origin == Origin::Password => (op, None),
        (Some(op), Some(user)) if op.name == user => (op, None),
        (Some(op), None) => (op, None),
        (old, Some(user)) => {
            // The proxy names another user than its session's: that session is over.
            if let (Some(_), Some(t)) = (old, token.as_deref()) {
                state.sessions.close(t);
            }
            // Only a user configured with a role: an entry without one is a password
            // user of before roles, never named by a proxy.
            let Some(configured) = configured(state, &user).filter(|u| u.role.is_some()) else {
                tracing::warn!(
                    "The trusted proxy named a user the console does not know; no session."
                );
                return ConsoleError::Denied(
                    "L'utente indicato dal proxy non è abilitato alla console: chiedere all'amministratore di aggiungerlo (raccordo console user add)."
                        .into(),
                )
                .into_response();
            };
            let role = configured.effective_role();
            let token = state.sessions.open(&user, role, Origin::Proxy);
            match state.sessions.touch(&token) {
                Some(op) => (op, Some(token)),
                None => return Redirect::to("/login").into_response(),
            }
        }
        (None, None) => return Redirect::to("/login").into_response(),
    };
    if !gate.access.admits(operator.role) {
        tracing::warn!(
            user = %operator.name,
            role = operator.role.as_str(),
            path = %request.uri().path(),
            "A console user was refused a page of another role."
        );
        let mut response = ConsoleError::Denied(format!(
            "Accesso negato: il ruolo «{}» di {} non consente di aprire questa pagina né di compiere questa azione.",
            operator.role.label_it(),
            operator.name
        ))
        .into_response();
        if let Some(token) = new_cookie {
            response
                .headers_mut()
                .append(SET_COOKIE, set_cookie(state, COOKIE_NAME, &token, None));
        }
        return response;
    }
    request.extensions_mut().insert(operator);
    let mut response = next.run(request).await;
    if let Some(token) = new_cookie {
        response
            .headers_mut()
            .append(SET_COOKIE, set_cookie(state, COOKIE_NAME, &token, None));
    }
    response
}

/// The login page with a fresh form token (and its cookie), and an error after a failed
/// attempt.
fn login_form(
    state: &AppState,
    error: Option<&str>,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let token = random_token();
    let html = state.templates.render(
        "login.html",
        context! { error => error, login_csrf => token },
    )?;
    let mut response = (status, Html(html)).into_response();
    response.headers_mut().append(
        SET_COOKIE,
        set_cookie(state, LOGIN_COOKIE, &token, Some(LOGIN_FORM_SECONDS)),
    );
    Ok(response)
}

pub(crate) async fn login_page(State(state): State<AppState>) -> Result<Response, ConsoleError> {
    login_form(&state, None, StatusCode::OK)
}

/// The login form.
#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    login_csrf: String,
}

pub(crate) async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Fields(form): Fields<LoginForm>,
) -> Result<Response, ConsoleError> {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_secret(&expected, &form.login_csrf) {
        tracing::warn!("A console login came without its form's token.");
        return login_form(
            &state,
            Some(
                "Il modulo di accesso è scaduto o non viene da questa console: inserire di nuovo nome e password.",
            ),
            StatusCode::FORBIDDEN,
        );
    }
    let address = client_address(&state, Some(peer.ip()), &headers);
    if let Err(wait) = state.limits.check(&form.user, address) {
        tracing::warn!("A console login was refused: too many failed attempts.");
        return Err(ConsoleError::TooManyAttempts(wait.as_secs().max(1)));
    }
    let user = configured(&state, &form.user);
    let hash = user
        .and_then(|o| o.password_hash.as_ref())
        .map(|h| h.expose_secret().to_owned());
    let known = hash.is_some();
    let password = form.password;
    let verified = if password.len() > MAX_PASSWORD_BYTES {
        false
    } else {
        // Argon2 is deliberately slow and takes memory: off the async threads, a bounded
        // number at a time ([`crate::hashing`]). An unknown user costs the same as a known one.
        let hash = hash.unwrap_or_else(|| DUMMY_HASH.to_owned());
        state
            .hashing
            .verify(password, hash)
            .await
            .map_err(|_| ConsoleError::Busy)?
    };
    let Some(user) = user.filter(|_| known && verified) else {
        state.limits.failed(&form.user, address);
        tracing::warn!("A console login failed.");
        return login_form(
            &state,
            Some("Nome utente o password non validi."),
            StatusCode::UNAUTHORIZED,
        );
    };
    state.limits.succeeded(&user.name);
    let role = user.effective_role();
    tracing::info!(operator = %user.name, role = role.as_str(), "A user logged in to the console.");
    let token = state.sessions.open(&user.name, role, Origin::Password);
    let mut response = Redirect::to("/").into_response();
    let headers = response.headers_mut();
    headers.append(SET_COOKIE, set_cookie(&state, COOKIE_NAME, &token, None));
    headers.append(SET_COOKIE, set_cookie(&state, LOGIN_COOKIE, "", Some(0)));
    Ok(response)
}

/// A hash of no password anybody knows, so that an unknown user takes as long as a known one.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2i2PN6nqlAIZ9tYxDl7O+fSgN4ZEbSbC5o62DsOoZ5U";

/// The logout form.
#[derive(Deserialize)]
pub(crate) struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn logout(
    State(state): State<AppState>,
    axum::Extension(operator): axum::Extension<Operator>,
    headers: HeaderMap,
    Fields(form): Fields<LogoutForm>,
) -> Result<Response, ConsoleError> {
    operator.check_csrf(&form.csrf)?;
    if let Some(token) = cookie(&headers, COOKIE_NAME) {
        state.sessions.close(&token);
    }
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .append(SET_COOKIE, set_cookie(&state, COOKIE_NAME, "", Some(0)));
    Ok(response)
}

/// Context every page needs: the user, the role and what it may open (the navigation shows
/// only that), and the CSRF token for its forms.
pub(crate) fn page_context(operator: &Operator, current: &str) -> minijinja::Value {
    context! {
        operator => operator.name,
        role => operator.role.as_str(),
        can_operate => Access::Operator.admits(operator.role),
        can_audit => Access::Privacy.admits(operator.role),
        csrf => operator.csrf,
        current => current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hashed_password_verifies_and_another_does_not() {
        let hash = hash_password("correct horse").expect("hashes");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify("correct horse", &hash));
        assert!(!verify("wrong horse", &hash));
    }

    #[test]
    fn an_empty_password_is_refused() {
        assert!(matches!(hash_password(""), Err(HashError::Empty)));
    }

    #[test]
    fn the_dummy_hash_parses_so_unknown_users_cost_a_verification() {
        assert!(argon2::password_hash::PasswordHash::new(DUMMY_HASH).is_ok());
        assert_eq!(crate::users::hash_weakness(DUMMY_HASH), None);
    }

    #[test]
    fn only_the_role_a_route_names_may_open_it() {
        use ConsoleRole::*;
        for role in [Viewer, Operator, Privacy] {
            assert!(Access::Viewer.admits(role));
            assert!(Access::Public.admits(role));
        }
        assert!(Access::Operator.admits(Operator));
        assert!(!Access::Operator.admits(Viewer) && !Access::Operator.admits(Privacy));
        assert!(Access::Privacy.admits(Privacy));
        assert!(!Access::Privacy.admits(Viewer) && !Access::Privacy.admits(Operator));
    }
}
