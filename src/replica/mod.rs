//! Partition replication ([replication]): each partition's replicas form a Raft group
//! (`raft::RaftCore`) whose log is the partition log.
//!
//! - `store.rs`: the partition log as the core's storage (batches as multi-index entries, the
//!   leader change as a control batch, the term and vote beside the log).
//!
//! Not yet: the driver that runs a replica over the inter-broker transport, the produce and
//! fetch paths on it, ISR, reassignment (see issue 17).

pub mod store;

#[cfg(test)]
mod tests;
