//! Fixed-size latency histograms: bounded memory, lock-free recording, snapshots that can be
//! subtracted to look at one interval (the benchmark reads the broker's fdatasync times over its
//! latency phase this way).
//!
//! Buckets are log-linear over microseconds: four per power of two, so a percentile is known
//! to within 19 % (it is reported as its bucket's upper bound, never below the true value).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two.
const SUB: u32 = 4;
/// Powers of two covered: up to 2^40 us (about 12 days); larger values land in the last bucket.
const POWERS: u32 = 40;
const BUCKETS: usize = (POWERS * SUB) as usize;

fn bucket_of(us: u64) -> usize {
    if us < u64::from(SUB) {
        return us as usize;
    }
    let power = 63 - us.leading_zeros(); // us >= SUB, so power >= 2
    let sub = (us >> (power - 2)) & u64::from(SUB - 1);
    ((power * SUB + sub as u32) as usize).min(BUCKETS - 1)
}

/// The largest value (us) that falls in `bucket`.
fn upper_bound_us(bucket: usize) -> u64 {
    let b = bucket as u32;
    if b < 2 * SUB {
        // 0..SUB hold the values themselves; SUB..2*SUB are never used (values >= SUB start
        // at power 2, bucket 2*SUB).
        return u64::from(b.min(SUB - 1));
    }
    let (power, sub) = (b / SUB, u64::from(b % SUB));
    ((SUB as u64 + sub + 1) << (power - 2)) - 1
}

pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { buckets: std::array::from_fn(|_| AtomicU64::new(0)) }
    }
}

impl Histogram {
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot { counts: self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect() }
    }
}

/// Counts at one moment; `since` gives the recordings between two snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    counts: Vec<u64>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot { counts: vec![0; BUCKETS] }
    }
}

impl Snapshot {
    /// Add another histogram's counts (e.g. every partition's).
    pub fn add(&mut self, other: &Snapshot) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// The recordings made after `earlier` was taken.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot { counts: self.counts.iter().zip(&earlier.counts).map(|(a, b)| a.saturating_sub(*b)).collect() }
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `p` quantile (0..=1) as its bucket's upper bound; zero when empty.
    pub fn quantile(&self, p: f64) -> Duration {
        let n = self.count();
        if n == 0 {
            return Duration::ZERO;
        }
        let rank = ((n as f64 * p).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_micros(upper_bound_us(i));
            }
        }
        unreachable!("rank <= count")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_bound_their_values() {
        let mut last = 0;
        for us in [0u64, 1, 3, 4, 5, 7, 8, 9, 15, 16, 100, 999, 1000, 1_000_000, 123_456_789] {
            let b = bucket_of(us);
            assert!(b >= last, "bucket order at {us}");
            last = b;
            assert!(upper_bound_us(b) >= us, "{us} above its bucket's bound {}", upper_bound_us(b));
            if b > 0 {
                assert!(upper_bound_us(b - 1) < us, "{us} belongs in an earlier bucket");
            }
            if us >= 4 {
                assert!(upper_bound_us(b) as f64 <= us as f64 * 1.25 + 1.0, "bucket of {us} too wide");
            }
        }
    }

    #[test]
    fn quantiles_and_intervals() {
        let h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let before = h.snapshot();
        assert_eq!(before.count(), 100);
        let p50 = before.quantile(0.5);
        assert!(p50 >= Duration::from_millis(50) && p50 <= Duration::from_micros(62_500), "{p50:?}");
        assert!(before.quantile(1.0) >= Duration::from_millis(100));
        h.record(Duration::from_secs(3));
        let interval = h.snapshot().since(&before);
        assert_eq!(interval.count(), 1);
        assert!(interval.quantile(0.5) >= Duration::from_secs(3));
        assert_eq!(Snapshot::default().quantile(0.99), Duration::ZERO);
    }
}
