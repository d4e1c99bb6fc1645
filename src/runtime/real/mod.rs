//! Real implementations of the runtime seam: std files and the OS clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod clock;
mod disk;

pub use clock::SystemClock;
pub use disk::StdDisk;
