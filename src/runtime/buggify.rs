//! `buggify!()`: rare seeded deviations at chosen call sites (short reads, delayed replies,
//! early connection close), to shake out code paths that real faults reach only rarely.
//! Always `false` outside `cfg(madsim)`, and inside the simulation only when the run enabled it
//! (`madsim::buggify::enable()`); each call site then fires with a small seeded probability.

/// Whether this call site should misbehave now.
pub fn fire() -> bool {
    #[cfg(madsim)]
    {
        madsim::buggify::buggify_with_prob(0.01)
    }
    #[cfg(not(madsim))]
    {
        false
    }
}

/// `buggify!()` is `strand::runtime::buggify::fire()`.
#[macro_export]
macro_rules! buggify {
    () => {
        $crate::runtime::buggify::fire()
    };
}
