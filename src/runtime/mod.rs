//! The runtime seam: the ONLY code that touches the operating system's disk, clock or randomness.
//!
//! Everything above this module (log, server, cli) reaches the outside world through a
//! [`Runtime`]: an `Arc<dyn Disk>` and an `Arc<dyn Clock>`, plus [`rng`] for seeded randomness.
//! The real implementations live in `real/`. The simulated ones (SimDisk whose unsynced writes
//! can vanish, SimClock that can skew) come with the simulator (issue [sim]) and plug into the
//! same traits. Network and timers come from `tokio`, which is `madsim-tokio`: real tokio in a
//! normal build, madsim's simulated network and time under `--cfg madsim`.
//!
//! Invariants kept here: a `Disk` never reports data durable unless `sync_data` returned `Ok`
//! for it; a `Clock`'s monotonic reading never goes back.

pub mod buggify;
pub mod clock;
pub mod disk;
#[cfg(feature = "planted-bugs")]
pub mod planted;
pub mod real;
pub mod rng;

use std::sync::Arc;

pub use clock::Clock;
pub use disk::{Disk, DiskFile, IoFuture};
#[cfg(feature = "planted-bugs")]
pub use planted::planted;

/// The handles a node needs to touch the outside world. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    pub disk: Arc<dyn Disk>,
    pub clock: Arc<dyn Clock>,
}

impl Runtime {
    /// The production runtime: std files (blocking calls off the async workers) and the OS clock.
    pub fn real() -> Runtime {
        Runtime { disk: Arc::new(real::StdDisk::new()), clock: Arc::new(real::SystemClock::new()) }
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Runtime")
    }
}
