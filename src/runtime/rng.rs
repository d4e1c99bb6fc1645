//! Seeded randomness. Under `--cfg madsim` `madsim::rand` draws from the simulation's seed;
//! in a normal build it is rand 0.8's thread RNG. Never call `rand`/`getrandom` directly.

/// A random u64.
pub fn random_u64() -> u64 {
    madsim::rand::random::<u64>()
}

/// 16 random bytes as a UUID (v4 layout), for topic ids and the cluster id.
pub fn random_uuid() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(madsim::rand::random::<[u8; 16]>()).into_uuid()
}
