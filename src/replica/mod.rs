//! Partition replication ([replication]): each partition's replicas form a Raft group
//! (`raft::RaftCore`) whose log is the partition log.
//!
//! - `store.rs`: the partition log as the core's storage (batches as multi-index entries, the
//!   leader change as a control batch, the term and vote beside the log).
//!
//! - `driver.rs`: the task that runs one replica's core on its store over the inter-broker
//!   transport, with acks=all appends answered once committed.
//!
//! - `manager.rs`: the replicas one broker hosts, their drivers sharing its transport through
//!   a router.
//!
//! Not yet: the broker placing replicated partitions from the metadata image and starting
//! their replicas, the produce and fetch paths on them, ISR, reassignment (see issue 17).

pub mod driver;
pub mod manager;
pub mod store;

#[cfg(test)]
mod tests;
