//! Cluster metadata as Kafka's KRaft keeps it: a sequence of [`records`] (topics, partitions
//! with their replicas, ISR, leader and leader epoch, configs, brokers, producer id blocks, the
//! cluster id) and the [`image`] that replaying them gives.
//!
//! This module is pure: no IO, no runtime, no clock, no randomness (a new topic's id or a
//! broker's incarnation comes in the record). Every map is ordered, so replaying the same
//! records gives the same image, and the same snapshot bytes, on every node. Where the records
//! come from and how they are made durable is the caller's business: today the replica manager
//! (`server/topics.rs`) writes them to `strand.meta`; the metadata quorum will put them on the
//! Raft log (`raft/`) and snapshot the image.
//!
//! Invariants the image keeps (a record that would break one is refused with an
//! [`ImageError`] and changes nothing): topic names and ids are unique and ids are never nil;
//! a topic's partitions are numbered 0..count without gaps; a partition has distinct replicas,
//! its ISR is among them and its leader is in the ISR; leader and partition epochs only grow;
//! producer id blocks only move forward; the cluster id never changes once set.

pub mod image;
pub mod records;
#[cfg(test)]
mod tests;

pub use image::{BrokerImage, ImageError, MetadataImage, PartitionImage, TopicImage};
pub use records::{MetadataRecord, NodeId, TopicId};
