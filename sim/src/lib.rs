//! strand's deterministic simulator. The harness (SimDisk, SimClock, scenario, nemesis) exists
//! only under `--cfg madsim`; the checkers are plain functions usable anywhere.

pub mod check;
#[cfg(madsim)]
pub mod clock;
#[cfg(madsim)]
pub mod disk;
#[cfg(madsim)]
pub mod groups;
#[cfg(madsim)]
pub mod nemesis;
#[cfg(madsim)]
pub mod scenario;
#[cfg(madsim)]
pub mod trim;
