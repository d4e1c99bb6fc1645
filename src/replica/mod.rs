//! Partition replication ([replication]): each partition's replicas form a Raft group
//! (`raft::RaftCore`) whose log is the partition log.
//!
//! - `store.rs`: the partition log as the core's storage (batches as multi-index entries, the
//!   leader change as a control batch, the term and vote beside the log).
//!
//! - `driver.rs`: the task that runs one replica's core on its store over the inter-broker
//!   transport, with acks=all appends answered once committed.
//!
//! Not yet: the replica manager starting a driver per hosted partition, the produce and fetch
//! paths on it, ISR, reassignment (see issue 17).

pub mod driver;
pub mod store;

#[cfg(test)]
mod tests;
