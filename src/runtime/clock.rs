//! The `Clock` trait: per-node monotonic time and wall-clock milliseconds.
//!
//! Record timestamps (LogAppendTime, retention by time) use `wall_ms`; timeouts and intervals
//! use `monotonic`. The simulator's SimClock (issue [sim]) can skew and drift the wall clock
//! per node but never moves the monotonic clock backwards. Timers are `tokio::time`, which
//! madsim simulates.

use std::time::Duration;

pub trait Clock: Send + Sync + 'static {
    /// Time since an arbitrary per-node origin. Never decreases.
    fn monotonic(&self) -> Duration;
    /// Milliseconds since the Unix epoch, as Kafka timestamps are. May jump.
    fn wall_ms(&self) -> i64;
}
