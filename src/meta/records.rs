//! The metadata records: every change to the cluster's metadata is one of these, and the image
//! is what replaying them in order gives (Kafka's KRaft records, `metadata/src/main/resources/
//! common/metadata/*.json`, in strand's own encoding).
//!
//! Encoding: a version byte followed by postcard bytes, for one record ([`encode_record`]) or
//! a snapshot's list of them ([`encode_snapshot`]). Whatever carries the bytes (the metadata
//! log's batches, a snapshot file) carries their checksum. New kinds of record go at the end of
//! [`MetadataRecord`] (postcard numbers variants by position); a changed layout bumps
//! [`RECORD_VERSION`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::raft::NodeId;

/// The version byte in front of every encoded record and snapshot.
pub const RECORD_VERSION: u8 = 1;

/// A topic's id (Kafka's topic id, a UUID; never the nil UUID, which Kafka reserves).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicId(pub [u8; 16]);

impl TopicId {
    pub fn uuid(self) -> Uuid {
        Uuid::from_bytes(self.0)
    }
}

impl From<Uuid> for TopicId {
    fn from(id: Uuid) -> TopicId {
        TopicId(*id.as_bytes())
    }
}

impl std::fmt::Display for TopicId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.uuid())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// The cluster's id, chosen once when the cluster is formed. (KRaft keeps it in each node's
    /// `meta.properties` rather than in the log; here it is the image's first record.)
    ClusterId(ClusterIdRecord),
    /// A broker (re)joins: Kafka's `RegisterBrokerRecord`. It starts fenced.
    RegisterBroker(RegisterBrokerRecord),
    /// Kafka's `UnregisterBrokerRecord`.
    UnregisterBroker(BrokerEpochRecord),
    /// A broker missed its session: Kafka's `FenceBrokerRecord`.
    FenceBroker(BrokerEpochRecord),
    /// A broker caught up and may lead: Kafka's `UnfenceBrokerRecord`.
    UnfenceBroker(BrokerEpochRecord),
    /// A new topic with its config overrides: Kafka's `TopicRecord` and the create's
    /// `ConfigRecord`s in one. Its partitions follow as [`MetadataRecord::Partition`].
    CreateTopic(CreateTopicRecord),
    /// A new partition of a topic (at creation or when partitions are added), or, in a
    /// snapshot, a partition's whole state: Kafka's `PartitionRecord`.
    Partition(PartitionRecord),
    /// A partition's leader, ISR or replicas change: Kafka's `PartitionChangeRecord`.
    PartitionChange(PartitionChangeRecord),
    /// A topic and its partitions and configs are gone: Kafka's `RemoveTopicRecord`.
    RemoveTopic(RemoveTopicRecord),
    /// One config key of a resource is set or removed: Kafka's `ConfigRecord`.
    Config(ConfigRecord),
    /// A block of producer ids is handed to a broker: Kafka's `ProducerIdsRecord`.
    ProducerIdBlock(ProducerIdBlockRecord),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterIdRecord {
    pub cluster_id: [u8; 16],
}

/// Where a broker takes client connections.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The listener's name (Kafka's `PLAINTEXT`, ...).
    pub listener: String,
    pub host: String,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterBrokerRecord {
    pub node_id: NodeId,
    /// Random per process start: a registration with another incarnation is a restart.
    pub incarnation: [u8; 16],
    /// Grows with every registration of this node id; fence and unfence records name it, so a
    /// stale one (for an earlier registration) is refused.
    pub broker_epoch: i64,
    /// Advertised listeners.
    pub endpoints: Vec<Endpoint>,
    /// `broker.rack`.
    pub rack: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEpochRecord {
    pub node_id: NodeId,
    pub broker_epoch: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateTopicRecord {
    pub name: String,
    pub topic_id: TopicId,
    /// The keys set for this topic (the rest are the broker's defaults).
    pub configs: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub topic_id: TopicId,
    pub partition: i32,
    /// Replica placement, preferred leader first.
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    /// `None` is Kafka's leader -1 (no leader).
    pub leader: Option<NodeId>,
    pub leader_epoch: i32,
    /// Grows with every change of this partition (Kafka's partition epoch).
    pub partition_epoch: i32,
}

/// Fields left `None` are unchanged. A new leader (even `Some(None)`, no leader) bumps the
/// leader epoch; every change bumps the partition epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChangeRecord {
    pub topic_id: TopicId,
    pub partition: i32,
    pub leader: Option<Option<NodeId>>,
    pub isr: Option<Vec<NodeId>>,
    pub replicas: Option<Vec<NodeId>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveTopicRecord {
    pub topic_id: TopicId,
}

/// What a config record is about (Kafka's resource type and name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigResource {
    Topic { name: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigRecord {
    pub resource: ConfigResource,
    pub key: String,
    /// `None` removes the key (back to the default).
    pub value: Option<String>,
}

/// Producer ids `first .. first + size` belong to `node_id`. Blocks only move forward, so no
/// id is handed out twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIdBlockRecord {
    pub node_id: NodeId,
    pub first: i64,
    pub size: i64,
}

impl ProducerIdBlockRecord {
    /// The first id after this block.
    pub fn end(&self) -> i64 {
        self.first.saturating_add(self.size)
    }
}

fn versioned<T: Serialize + ?Sized>(t: &T) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION];
    out.extend(postcard::to_allocvec(t).expect("in-memory postcard encoding cannot fail"));
    out
}

fn unversioned(bytes: &[u8]) -> Result<&[u8], String> {
    match bytes.split_first() {
        None => Err("metadata record is empty".into()),
        Some((&RECORD_VERSION, body)) => Ok(body),
        Some((v, _)) => Err(format!("metadata record version {v} is not supported (expected {RECORD_VERSION})")),
    }
}

pub fn encode_record(record: &MetadataRecord) -> Vec<u8> {
    versioned(record)
}

pub fn decode_record(bytes: &[u8]) -> Result<MetadataRecord, String> {
    postcard::from_bytes(unversioned(bytes)?).map_err(|e| format!("metadata record does not decode: {e}"))
}

pub fn encode_snapshot(records: &[MetadataRecord]) -> Vec<u8> {
    versioned(records)
}

pub fn decode_snapshot(bytes: &[u8]) -> Result<Vec<MetadataRecord>, String> {
    postcard::from_bytes(unversioned(bytes)?).map_err(|e| format!("metadata snapshot does not decode: {e}"))
}
