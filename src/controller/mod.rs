//! The metadata quorum (issue [raft], item 3), as Kafka's KRaft controller: a Raft group over
//! the controller nodes whose log will hold the cluster's metadata records (`meta/`).
//!
//! - `log_store.rs`: the quorum's Raft log, hard state and snapshot on a `runtime::Disk`,
//!   checksummed, recovered up to the first torn frame;
//! - `driver.rs`: the shell that runs `raft::RaftCore` over the inter-broker transport, a
//!   ticker and proposals, in the core's durability order, and applies committed entries.
//!
//! Not yet: forwarding admin requests to the active controller, the image replayed from the
//! log, broker registration and fencing, snapshots of the image. The simulator checks the
//! driver on three nodes under crashes and partitions (`sim/tests/quorum.rs`).

pub mod driver;
pub mod log_store;
