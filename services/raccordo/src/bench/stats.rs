//! Latency percentiles (nearest rank) and the small arithmetic of rates.

use std::time::Duration;

use serde::Serialize;

/// Percentiles of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Latency {
    /// How many latencies were measured.
    pub count: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The nearest-rank percentile `p` (0 < p ≤ 100) of `sorted` (ascending): the smallest
/// value such that at least p% of the values are less than or equal to it.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// p50, p95, p99 and max of `latencies` (sorted here); `None` when there are none.
pub(crate) fn summarize(mut latencies: Vec<Duration>) -> Option<Latency> {
    latencies.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Some(Latency {
        count: latencies.len(),
        p50_ms: ms(percentile(&latencies, 50.0)?),
        p95_ms: ms(percentile(&latencies, 95.0)?),
        p99_ms: ms(percentile(&latencies, 99.0)?),
        max_ms: ms(*latencies.last()?),
    })
}

/// `count` per second over `elapsed`; `None` for an empty interval.
pub(crate) fn per_second(count: u64, elapsed: Duration) -> Option<f64> {
    let seconds = elapsed.as_secs_f64();
    (seconds > 0.0).then(|| count as f64 / seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn nearest_rank_percentiles_of_one_to_a_hundred_are_the_values_themselves() {
        let values: Vec<u64> = (1..=100).collect();
        let sorted = ms(&values);
        assert_eq!(percentile(&sorted, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&sorted, 95.0), Some(Duration::from_millis(95)));
        assert_eq!(percentile(&sorted, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&sorted, 100.0), Some(Duration::from_millis(100)));
    }

    #[test]
    fn a_small_sample_rounds_the_rank_up() {
        let sorted = ms(&[10, 20, 30]);
        assert_eq!(percentile(&sorted, 50.0), Some(Duration::from_millis(20)));
        assert_eq!(percentile(&sorted, 99.0), Some(Duration::from_millis(30)));
        assert_eq!(percentile(&sorted, 1.0), Some(Duration::from_millis(10)));
    }

    #[test]
    fn no_values_or_a_meaningless_percentile_give_nothing() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&ms(&[1]), 0.0), None);
        assert_eq!(percentile(&ms(&[1]), 101.0), None);
        assert_eq!(summarize(Vec::new()), None);
    }

    #[test]
    fn a_summary_sorts_its_input() {
        let latency = summarize(ms(&[40, 10, 30, 20])).expect("four values");
        assert_eq!(latency.count, 4);
        assert_eq!(latency.p50_ms, 20.0);
        assert_eq!(latency.max_ms, 40.0);
    }

    #[test]
    fn rates_need_a_non_empty_interval() {
        assert_eq!(per_second(500, Duration::from_millis(250)), Some(2000.0));
        assert_eq!(per_second(5, Duration::ZERO), None);
    }
}
