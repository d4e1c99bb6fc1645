//! SimClock: a node's clock in simulated time. The wall clock carries a seeded skew (which the
//! nemesis can change, so it may jump, as NTP can make it) and a drift of up to +-500 ppm; the
//! monotonic clock never goes back.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use strand::runtime::Clock;

#[derive(Clone)]
pub struct SimClock {
    origin: tokio::time::Instant,
    skew_ms: Arc<AtomicI64>,
    /// Wall-clock drift in parts per million (within +-500, a bad crystal).
    drift_ppm: Arc<AtomicI64>,
}

impl SimClock {
    pub fn new() -> SimClock {
        SimClock { origin: tokio::time::Instant::now(), skew_ms: Arc::new(AtomicI64::new(0)), drift_ppm: Arc::new(AtomicI64::new(0)) }
    }

    pub fn set_drift_ppm(&self, ppm: i64) {
        assert!((-500..=500).contains(&ppm), "drift within bounds");
        self.drift_ppm.store(ppm, Ordering::SeqCst);
    }

    pub fn set_skew_ms(&self, skew_ms: i64) {
        self.skew_ms.store(skew_ms, Ordering::SeqCst);
    }
}

impl Default for SimClock {
    fn default() -> Self {
        SimClock::new()
    }
}

impl Clock for SimClock {
    fn monotonic(&self) -> Duration {
        tokio::time::Instant::now().duration_since(self.origin)
    }

    fn wall_ms(&self) -> i64 {
        // Simulated epoch: 2026-01-01 plus simulated time plus skew.
        let elapsed_ms = self.monotonic().as_millis() as i64;
        let drift_ms = elapsed_ms * self.drift_ppm.load(Ordering::SeqCst) / 1_000_000;
        1_767_225_600_000 + elapsed_ms + drift_ms + self.skew_ms.load(Ordering::SeqCst)
    }
}
