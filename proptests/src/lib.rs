//! Property tests live in tests/; this library holds their shared harnesses.

pub mod raft_harness;
