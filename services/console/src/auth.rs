//! Who may use the console: operators configured with argon2 password hashes, or the user
//! a trusted reverse proxy names in `console.trusted_user_header` (the administration's
//! SSO). Sessions live in memory and expire after `console.session_ttl_minutes` without a
//! request; the cookie is HttpOnly and SameSite=Strict. Every session has its own CSRF
//! token, required by every POST that changes something.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::Form;
use axum::extract::{Request, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::render::ConsoleError;
use crate::server::AppState;

const COOKIE_NAME: &str = "raccordo_console";

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

fn verify(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// The operator of a request, with the CSRF token of their session.
#[derive(Debug, Clone)]
pub(crate) struct Operator {
    pub(crate) name: String,
    pub(crate) csrf: String,
}

impl Operator {
    /// Refuses a form whose token is not this session's.
    pub(crate) fn check_csrf(&self, token: &str) -> Result<(), ConsoleError> {
        let (a, b) = (self.csrf.as_bytes(), token.as_bytes());
        // Compared in constant time: the token is a secret of the session.
        let same =
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
        if same {
            Ok(())
        } else {
            Err(ConsoleError::Forbidden(
                "Token CSRF mancante o non valido: ricaricare la pagina e riprovare.",
            ))
        }
    }
}

struct Session {
    operator: String,
    csrf: String,
    expires_at: Instant,
}

/// The sessions of this process.
#[derive(Clone)]
pub(crate) struct Sessions {
    inner: Arc<Mutex<HashMap<String, Session>>>,
    ttl: Duration,
}

fn random_token() -> String {
    rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Sessions {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            inner: Arc::default(),
            ttl,
        }
    }

    /// Opens a session for `operator`; returns its cookie value.
    fn open(&self, operator: &str) -> String {
        let token = random_token();
        if let Ok(mut map) = self.inner.lock() {
            let now = Instant::now();
            map.retain(|_, s| s.expires_at > now);
            map.insert(
                token.clone(),
                Session {
                    operator: operator.to_owned(),
                    csrf: random_token(),
                    expires_at: now + self.ttl,
                },
            );
        }
        token
    }

    /// The operator of a live session, whose expiry moves forward.
    fn touch(&self, token: &str) -> Option<Operator> {
        let mut map = self.inner.lock().ok()?;
        let now = Instant::now();
        match map.get_mut(token) {
            Some(s) if s.expires_at > now => {
                s.expires_at = now + self.ttl;
                Some(Operator {
                    name: s.operator.clone(),
                    csrf: s.csrf.clone(),
                })
            }
            Some(_) => {
                map.remove(token);
                None
            }
            None => None,
        }
    }

    fn close(&self, token: &str) {
        if let Ok(mut map) = self.inner.lock() {
            map.remove(token);
        }
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.to_owned())
}

/// The session cookie; `None` keeps it until the browser closes (the session's expiry is
/// kept on the server and moves with every request), `Some(0)` deletes it.
fn set_cookie(state: &AppState, token: &str, max_age: Option<u64>) -> HeaderValue {
    let secure = if state.settings.console.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    let max_age = max_age
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    let value =
        format!("{COOKIE_NAME}={token}; Path=/; HttpOnly; SameSite=Strict{max_age}{secure}");
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The user named by the trusted proxy header, when one is configured and sent.
fn proxy_user(state: &AppState, headers: &HeaderMap) -> Option<String> {
    let name = state.settings.console.trusted_user_header.trim();
    if name.is_empty() {
        return None;
    }
    let user = headers.get(name)?.to_str().ok()?.trim();
    (!user.is_empty() && user.len() <= 64).then(|| user.to_owned())
}

/// Lets a request through with its [`Operator`], or sends it to the login page.
pub(crate) async fn require_operator(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = session_cookie(request.headers());
    let session = token.as_deref().and_then(|t| state.sessions.touch(t));
    let proxied = proxy_user(&state, request.headers());
    let (operator, new_cookie) = match (session, proxied) {
        (Some(op), Some(user)) if op.name == user => (op, None),
        (_, Some(user)) => {
            let token = state.sessions.open(&user);
            match state.sessions.touch(&token) {
                Some(op) => (op, Some(token)),
                None => return Redirect::to("/login").into_response(),
            }
        }
        (Some(op), None) => (op, None),
        (None, None) => return Redirect::to("/login").into_response(),
    };
    request.extensions_mut().insert(operator);
    let mut response = next.run(request).await;
    if let Some(token) = new_cookie {
        response
            .headers_mut()
            .append(SET_COOKIE, set_cookie(&state, &token, None));
    }
    response
}

pub(crate) async fn login_page(State(state): State<AppState>) -> Result<Response, ConsoleError> {
    state.templates.login(None, StatusCode::OK)
}

/// The login form.
#[derive(Deserialize)]
pub(crate) struct LoginForm {
    user: String,
    password: String,
}

pub(crate) async fn login(
    State(state): State<AppState>,
    Form(form): Form<LoginForm>,
) -> Result<Response, ConsoleError> {
    let hash = state
        .settings
        .console
        .operators
        .iter()
        .find(|o| o.name == form.user)
        .map(|o| o.password_hash.expose_secret().to_owned());
    let password = form.password;
    // Argon2 is deliberately slow: off the async threads. An unknown user costs the same.
    let known = hash.is_some();
    let verified = tokio::task::spawn_blocking(move || {
        let hash = hash.unwrap_or_else(|| DUMMY_HASH.to_owned());
        verify(&password, &hash)
    })
    .await
    .unwrap_or(false);
    if !(known && verified) {
        tracing::warn!("A console login failed.");
        return state.templates.login(
            Some("Nome utente o password non validi."),
            StatusCode::UNAUTHORIZED,
        );
    }
    tracing::info!(operator = %form.user, "An operator logged in to the console.");
    let token = state.sessions.open(&form.user);
    let mut response = Redirect::to("/").into_response();
    response
        .headers_mut()
        .append(SET_COOKIE, set_cookie(&state, &token, None));
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
    Form(form): Form<LogoutForm>,
) -> Result<Response, ConsoleError> {
    operator.check_csrf(&form.csrf)?;
    if let Some(token) = session_cookie(&headers) {
        state.sessions.close(&token);
    }
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .append(SET_COOKIE, set_cookie(&state, "", Some(0)));
    Ok(response)
}

/// Context every page needs: the operator and the CSRF token for its forms.
pub(crate) fn page_context(operator: &Operator, current: &str) -> minijinja::Value {
    context! { operator => operator.name, csrf => operator.csrf, current => current }
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
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[test]
    fn a_session_expires_after_its_ttl() {
        let sessions = Sessions::new(Duration::from_millis(0));
        let token = sessions.open("op");
        assert!(sessions.touch(&token).is_none());
        let sessions = Sessions::new(Duration::from_secs(60));
        let token = sessions.open("op");
        let op = sessions.touch(&token).expect("live");
        assert_eq!(op.name, "op");
        assert!(op.check_csrf(&op.csrf).is_ok());
        assert!(op.check_csrf("").is_err());
    }
}
