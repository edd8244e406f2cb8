//! A queue's dead-letter policy: which of its held messages may carry personal data, and
//! how long those may stay. Core knows no event type; the worker that owns a queue says
//! what its messages may hold (the eviction worker: CONTRACT C7).

use std::time::Duration;

/// Whether a held message, by its routing key and body, may carry personal data.
pub type MayHoldPersonal = fn(routing_key: &str, body: &[u8]) -> bool;

/// What happens to a queue's messages once held in `{prefix}.dead` or `{prefix}.parked`.
/// The default keeps them until an operator acts.
#[derive(Debug, Clone, Copy, Default)]
pub struct HoldingPolicy {
    personal: Option<Expiring>,
}

#[derive(Debug, Clone, Copy)]
struct Expiring {
    ttl: Duration,
    may_hold: MayHoldPersonal,
}

impl HoldingPolicy {
    /// Held messages stay until an operator replays or purges them.
    pub fn keep() -> Self {
        Self::default()
    }

    /// Held messages that `may_hold` says may carry personal data expire after `ttl`;
    /// parked ones wait in `{prefix}.parked.personal`, where every message has that TTL.
    pub fn expire_personal(ttl: Duration, may_hold: MayHoldPersonal) -> Self {
        Self {
            personal: Some(Expiring { ttl, may_hold }),
        }
    }

    /// How long a held message may stay: None for ever.
    pub fn expiry_of(&self, routing_key: &str, body: &[u8]) -> Option<Duration> {
        self.personal
            .filter(|p| (p.may_hold)(routing_key, body))
            .map(|p| p.ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_keeps_every_message() {
        assert_eq!(
            HoldingPolicy::keep().expiry_of("eviction.step.v1", b"{}"),
            None
        );
    }

    #[test]
    fn a_personal_policy_expires_only_what_its_test_names() {
        let policy =
            HoldingPolicy::expire_personal(Duration::from_secs(60), |key, _| key == "personal");

        assert_eq!(
            policy.expiry_of("personal", b""),
            Some(Duration::from_secs(60))
        );
        assert_eq!(policy.expiry_of("other", b""), None);
    }
}
