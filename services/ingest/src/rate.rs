//! Per-publisher rates (CONTRACT 1.2 §10: `429` with `Retry-After` past
//! `publishers.<user>.rate_per_s`). A token bucket per publisher and replica that holds one
//! second of events and may go into debt: a batch larger than a second's worth passes when
//! the bucket is full, and the publisher then waits until the debt is paid, so the rate
//! holds over time whatever the batch size.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every publisher seen.
#[derive(Default)]
pub struct Rates {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Rates {
    /// Takes `events` from `user`'s bucket at `rate` per second; `Err` is how long to wait.
    pub fn take(&self, user: &str, rate: f64, events: usize) -> Result<(), Duration> {
        self.take_at(user, rate, events, Instant::now())
    }

    fn take_at(&self, user: &str, rate: f64, events: usize, now: Instant) -> Result<(), Duration> {
        let capacity = rate.max(1.0);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = buckets.entry(user.to_owned()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.at = now;
        let needed = (events as f64).min(capacity);
        if bucket.tokens >= needed {
            bucket.tokens -= events as f64;
            Ok(())
        } else {
            let wait = (needed - bucket.tokens) / rate;
            Err(Duration::from_secs_f64(wait.clamp(0.001, 86_400.0)))
        }
    }

    /// Whether `user` could post one event now (checked before the body is read).
    pub fn has_room(&self, user: &str, rate: f64) -> Result<(), Duration> {
        let now = Instant::now();
        let capacity = rate.max(1.0);
        let buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(bucket) = buckets.get(user) else {
            return Ok(());
        };
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        let tokens = (bucket.tokens + elapsed * rate).min(capacity);
        if tokens >= 1.0_f64.min(capacity) {
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                ((1.0 - tokens) / rate).clamp(0.001, 86_400.0),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_of_events_passes_then_the_rate_holds() {
        let rates = Rates::default();
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(rates.take_at("a", 10.0, 1, t0).is_ok());
        }
        let wait = rates.take_at("a", 10.0, 1, t0).expect_err("over the rate");
        assert!(wait <= Duration::from_millis(101), "{wait:?}");
        assert!(
            rates
                .take_at("a", 10.0, 1, t0 + Duration::from_millis(100))
                .is_ok()
        );
        // Another publisher has its own bucket.
        assert!(rates.take_at("b", 10.0, 1, t0).is_ok());
    }

    #[test]
    fn a_batch_larger_than_a_second_passes_once_and_is_paid_for() {
        let rates = Rates::default();
        let t0 = Instant::now();
        assert!(rates.take_at("a", 10.0, 100, t0).is_ok());
        let wait = rates.take_at("a", 10.0, 1, t0).expect_err("in debt");
        assert!(wait >= Duration::from_secs(9), "{wait:?}");
        assert!(
            rates
                .take_at("a", 10.0, 1, t0 + Duration::from_secs(10))
                .is_ok()
        );
    }
}
