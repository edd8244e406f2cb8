//! Readiness as operators see it: which consumers are attached to the broker and taking
//! work right now — and which of the mailer's senders are sending —, and why the others
//! are not.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// What one consumer is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerState {
    /// Attached and taking messages.
    Consuming,
    /// Connecting or reconnecting (also after a restart that followed a panic).
    WaitingForBroker,
    /// Holding a message, taking no other, until the database answers again.
    PausedDatabaseDown,
    /// Not running: it ended or panicked, and is being started again.
    Stopped,
}

impl fmt::Display for ConsumerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConsumerState::Consuming => "consuming",
            ConsumerState::WaitingForBroker => "waiting for the broker",
            ConsumerState::PausedDatabaseDown => "paused: the database is unreachable",
            ConsumerState::Stopped => "stopped: it ended or panicked, restarting",
        })
    }
}

/// Shared by every consumer of a process and by `/readyz`.
#[derive(Clone, Default)]
pub struct Health {
    consumers: Arc<Mutex<BTreeMap<String, ConsumerState>>>,
}

impl Health {
    /// Records what consumer `name` is doing.
    pub fn set_state(&self, name: &str, state: ConsumerState) {
        if let Ok(mut map) = self.consumers.lock() {
            map.insert(name.to_owned(), state);
        }
    }

    /// Records whether consumer `name` is attached.
    pub fn set_consuming(&self, name: &str, consuming: bool) {
        self.set_state(
            name,
            if consuming {
                ConsumerState::Consuming
            } else {
                ConsumerState::WaitingForBroker
            },
        );
    }

    /// Declares a consumer that will start, so readiness waits for it.
    pub fn expect(&self, name: &str) {
        if let Ok(mut map) = self.consumers.lock() {
            map.entry(name.to_owned())
                .or_insert(ConsumerState::WaitingForBroker);
        }
    }

    /// Every known consumer and what it is doing.
    pub fn states(&self) -> BTreeMap<String, ConsumerState> {
        self.consumers.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Every known consumer and whether it is taking messages.
    pub fn consumers(&self) -> BTreeMap<String, bool> {
        self.states()
            .into_iter()
            .map(|(name, state)| (name, state == ConsumerState::Consuming))
            .collect()
    }

    /// True when at least one consumer is known and all are taking messages.
    pub fn all_consuming(&self) -> bool {
        let map = self.states();
        !map.is_empty() && map.values().all(|c| *c == ConsumerState::Consuming)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_sender_makes_the_process_not_ready_until_it_runs_again() {
        let health = Health::default();
        health.set_state("registry-0", ConsumerState::Consuming);
        health.set_state("mailer-sender-0", ConsumerState::Consuming);
        assert!(health.all_consuming());

        health.set_state("mailer-sender-0", ConsumerState::Stopped);

        assert!(!health.all_consuming());
        assert_eq!(
            ConsumerState::Stopped.to_string(),
            "stopped: it ended or panicked, restarting"
        );
        health.set_state("mailer-sender-0", ConsumerState::Consuming);
        assert!(health.all_consuming());
    }
}
