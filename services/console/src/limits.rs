//! Failed logins, limited per user name and per client address (CONTRACT 1.2 §8): past
//! the limit a name or an address is locked for `console.login_lockout_minutes`, and a
//! locked attempt costs no password verification. Failures older than the lockout are
//! forgotten. Both maps are bounded: a flood of names or addresses evicts the oldest
//! entries, never grows the process.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept per map.
const MAX_ENTRIES: usize = 10_000;

/// What is counted of one name or address.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    first: Instant,
    locked_until: Option<Instant>,
}

/// Failures per key, bounded.
#[derive(Debug)]
struct Counter<K> {
    entries: HashMap<K, Failures>,
    limit: u32,
}

impl<K: Hash + Eq + Clone> Counter<K> {
    fn new(limit: u32) -> Self {
        Self {
            entries: HashMap::new(),
            limit,
        }
    }

    /// How long `key` stays locked, if it is.
    fn locked(&self, key: &K, now: Instant) -> Option<Duration> {
        self.entries
            .get(key)?
            .locked_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    fn fail(&mut self, key: &K, now: Instant, window: Duration) {
        if !self.entries.contains_key(key) && self.entries.len() >= MAX_ENTRIES {
            self.entries
                .retain(|_, f| f.locked_until.is_some_and(|u| u > now) || now - f.first < window);
            if self.entries.len() >= MAX_ENTRIES
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, f)| f.first)
                    .map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        let f = self.entries.entry(key.clone()).or_insert(Failures {
            count: 0,
            first: now,
            locked_until: None,
        });
        let lock_over = f.locked_until.is_some_and(|u| u <= now);
        if lock_over || (f.locked_until.is_none() && now - f.first >= window) {
            *f = Failures {
                count: 0,
                first: now,
                locked_until: None,
            };
        }
        f.count = f.count.saturating_add(1);
        if f.count >= self.limit {
            f.locked_until = Some(now + window);
        }
    }

    fn forget(&mut self, key: &K) {
        self.entries.remove(key);
    }
}

/// The key of a client address: an IPv4 address, or the /64 network of an IPv6 one (a
/// single client commonly holds a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct AddressKey(u128);

impl From<IpAddr> for AddressKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => AddressKey(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey(u128::from(u32::from(v4))),
                None => AddressKey((u128::from(v6) >> 64) | (1u128 << 127)),
            },
        }
    }
}

struct State {
    users: Counter<String>,
    addresses: Counter<AddressKey>,
}

/// The console's login limits.
pub(crate) struct LoginLimits {
    state: Mutex<State>,
    lockout: Duration,
}

impl LoginLimits {
    pub(crate) fn new(per_user: u32, per_address: u32, lockout: Duration) -> Self {
        Self {
            state: Mutex::new(State {
                users: Counter::new(per_user.max(1)),
                addresses: Counter::new(per_address.max(1)),
            }),
            lockout,
        }
    }

    /// `Err(wait)` while the name or the address is locked.
    pub(crate) fn check(&self, user: &str, address: AddressKey) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(state) = self.state.lock() else {
            return Err(self.lockout);
        };
        let wait = [
            state.users.locked(&user.to_owned(), now),
            state.addresses.locked(&address, now),
        ]
        .into_iter()
        .flatten()
        .max();
        match wait {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Counts a failed login.
    pub(crate) fn failed(&self, user: &str, address: AddressKey) {
        let now = Instant::now();
        if let Ok(mut state) = self.state.lock() {
            state.users.fail(&user.to_owned(), now, self.lockout);
            state.addresses.fail(&address, now, self.lockout);
        }
    }

    /// A successful login clears its name's failures (not its address's: one account that
    /// works must not reset the guessing of others from the same place).
    pub(crate) fn succeeded(&self, user: &str) {
        if let Ok(mut state) = self.state.lock() {
            state.users.forget(&user.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> AddressKey {
        AddressKey::from(s.parse::<IpAddr>().expect("an address"))
    }

    #[test]
    fn a_name_is_locked_after_its_limit_and_a_success_clears_it() {
        let limits = LoginLimits::new(3, 100, Duration::from_secs(60));
        let a = addr("10.0.0.1");
        for _ in 0..2 {
            limits.failed("m.rossi", a);
            assert!(limits.check("m.rossi", a).is_ok());
        }
        limits.failed("m.rossi", a);
        let wait = limits
            .check("m.rossi", addr("10.0.0.2"))
            .expect_err("locked");
        assert!(wait <= Duration::from_secs(60) && wait > Duration::from_secs(55));
        assert!(limits.check("l.bianchi", addr("10.0.0.2")).is_ok());
        limits.succeeded("m.rossi");
        assert!(limits.check("m.rossi", addr("10.0.0.2")).is_ok());
    }

    #[test]
    fn an_address_is_locked_whatever_names_it_tries() {
        let limits = LoginLimits::new(100, 3, Duration::from_secs(60));
        let a = addr("2001:db8::1");
        for name in ["a", "b", "c"] {
            limits.failed(name, a);
        }
        assert!(
            limits.check("d", addr("2001:db8::ffff")).is_err(),
            "same /64"
        );
        assert!(limits.check("d", addr("2001:db8:0:1::1")).is_ok());
        assert_eq!(addr("::ffff:10.0.0.1"), addr("10.0.0.1"));
    }

    #[test]
    fn a_lock_ends_and_the_count_starts_again() {
        let limits = LoginLimits::new(1, 100, Duration::from_millis(30));
        let a = addr("10.0.0.1");
        limits.failed("x", a);
        assert!(limits.check("x", a).is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert!(limits.check("x", a).is_ok());
    }

    #[test]
    fn the_maps_stay_bounded() {
        let limits = LoginLimits::new(5, 5, Duration::from_secs(60));
        for i in 0..(MAX_ENTRIES + 50) {
            limits.failed(&format!("user-{i}"), AddressKey(i as u128));
        }
        let state = limits.state.lock().expect("lock");
        assert!(state.users.entries.len() <= MAX_ENTRIES);
        assert!(state.addresses.entries.len() <= MAX_ENTRIES);
    }
}
