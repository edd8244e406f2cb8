//! The console's sessions, in memory: who is logged in, with which role and CSRF token,
//! until when. A restart logs everyone out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raccordo_core::settings::ConsoleRole;

use crate::render::ConsoleError;

/// Sessions kept at most, and per user: a proxy opens one per browser, and a client that
/// drops its cookie must not grow the map.
const MAX_SESSIONS: usize = 2_000;
const MAX_SESSIONS_PER_USER: usize = 20;
/// Compared in constant time: tokens are secrets.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How a session began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Password,
    Proxy,
}

/// The user of a request, with the CSRF token of their session.
#[derive(Debug, Clone)]
pub(crate) struct Operator {
    pub(crate) name: String,
    pub(crate) role: ConsoleRole,
    pub(crate) csrf: String,
    pub(crate) origin: Origin,
}

impl Operator {
    /// Refuses a form whose token is not this session's.
    pub(crate) fn check_csrf(&self, token: &str) -> Result<(), ConsoleError> {
        if same_secret(&self.csrf, token) {
            Ok(())
        } else {
            Err(ConsoleError::Forbidden(
                "Token CSRF mancante o non valido: ricaricare la pagina e riprovare.",
            ))
        }
    }
}

struct Session {
    user: String,
    role: ConsoleRole,
    csrf: String,
    origin: Origin,
    created: Instant,
    last: Instant,
}

/// The sessions of this process.
#[derive(Clone)]
pub(crate) struct Sessions {
    inner: Arc<Mutex<HashMap<String, Session>>>,
    ttl: Duration,
    max_life: Duration,
}

pub(crate) fn random_token() -> String {
    rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Sessions {
    pub(crate) fn new(ttl: Duration, max_life: Duration) -> Self {
        Self {
            inner: Arc::default(),
            ttl,
            max_life,
        }
    }

    fn live(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.last) < self.ttl && now.duration_since(s.created) < self.max_life
    }

    /// Opens a session; returns its cookie value. The oldest sessions make room, of the
    /// user first.
    pub(crate) fn open(&self, user: &str, role: ConsoleRole, origin: Origin) -> String {
        let token = random_token();
        if let Ok(mut map) = self.inner.lock() {
            let now = Instant::now();
            map.retain(|_, s| self.live(s, now));
            let oldest = |map: &HashMap<String, Session>, of: Option<&str>| {
                map.iter()
                    .filter(|(_, s)| of.is_none_or(|u| s.user == u))
                    .min_by_key(|(_, s)| s.last)
                    .map(|(k, _)| k.clone())
            };
            if map.values().filter(|s| s.user == user).count() >= MAX_SESSIONS_PER_USER
                && let Some(k) = oldest(&map, Some(user))
            {
                map.remove(&k);
            }
            if map.len() >= MAX_SESSIONS
                && let Some(k) = oldest(&map, None)
            {
                map.remove(&k);
            }
            map.insert(
                token.clone(),
                Session {
                    user: user.to_owned(),
                    role,
                    csrf: random_token(),
                    origin,
                    created: now,
                    last: now,
                },
            );
        }
        token
    }

    /// The user of a live session, whose idle expiry moves forward.
    pub(crate) fn touch(&self, token: &str) -> Option<Operator> {
        let mut map = self.inner.lock().ok()?;
        let now = Instant::now();
        let live = map.get(token).is_some_and(|s| self.live(s, now));
        if !live {
            map.remove(token);
            return None;
        }
        let s = map.get_mut(token)?;
        s.last = now;
        Some(Operator {
            name: s.user.clone(),
            role: s.role,
            csrf: s.csrf.clone(),
            origin: s.origin,
        })
    }

    pub(crate) fn close(&self, token: &str) {
        if let Ok(mut map) = self.inner.lock() {
            map.remove(token);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_expires_after_its_idle_ttl_and_after_its_lifetime() {
        let hour = Duration::from_secs(3600);
        let sessions = Sessions::new(Duration::from_millis(0), hour);
        let token = sessions.open("op", ConsoleRole::Operator, Origin::Password);
        assert!(sessions.touch(&token).is_none());
        let sessions = Sessions::new(hour, Duration::from_millis(30));
        let token = sessions.open("op", ConsoleRole::Operator, Origin::Password);
        let op = sessions.touch(&token).expect("live");
        assert_eq!(op.name, "op");
        assert_eq!(op.role, ConsoleRole::Operator);
        assert!(op.check_csrf(&op.csrf).is_ok());
        assert!(op.check_csrf("").is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert!(
            sessions.touch(&token).is_none(),
            "used, but past its lifetime"
        );
    }

    #[test]
    fn the_sessions_stay_bounded_in_all_and_per_user() {
        let hour = Duration::from_secs(3600);
        let sessions = Sessions::new(hour, hour);
        let first = sessions.open("proxied", ConsoleRole::Viewer, Origin::Proxy);
        for _ in 0..MAX_SESSIONS_PER_USER {
            sessions.open("proxied", ConsoleRole::Viewer, Origin::Proxy);
        }
        assert!(
            sessions.touch(&first).is_none(),
            "the user's oldest made room"
        );
        for i in 0..MAX_SESSIONS {
            sessions.open(&format!("u{i}"), ConsoleRole::Viewer, Origin::Proxy);
        }
        assert!(sessions.len() <= MAX_SESSIONS);
    }
}
