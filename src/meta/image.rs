//! The metadata image: the cluster's metadata as replaying the records in order leaves it
//! (Kafka's `MetadataImage`). Deterministic: every map is ordered, so the same records give
//! the same image and the same snapshot bytes on every node.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::records::*;
use crate::config::validate_topic_name;
use crate::limits::TOPIC_PARTITIONS_MAX;

/// A record that contradicts the image (replaying it would break an invariant), or an admin
/// change the image refuses. Each message is the one Kafka's controller gives clients.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("{0}")]
    InvalidTopicName(String),
    #[error("Topic '{name}' already exists.")]
    TopicExists { name: String },
    #[error("Topic '{name}' collides with existing topic: {other}")]
    TopicCollides { name: String, other: String },
    #[error("Topic '{name}' does not exist.")]
    UnknownTopic { name: String },
    #[error("Number of partitions must be between 1 and {TOPIC_PARTITIONS_MAX}, got {count}.")]
    InvalidPartitionCount { count: i32 },
    #[error("Topic already has {current} partitions.")]
    PartitionCountUnchanged { current: i32 },
    #[error("Topic currently has {current} partitions, which is higher than the requested {requested}.")]
    PartitionCountDecrease { current: i32, requested: i32 },
    #[error("Number of partitions must be at most {TOPIC_PARTITIONS_MAX}, got {count}.")]
    PartitionCountOverMax { count: i32 },
    #[error("topic id {id} is already in use")]
    TopicIdInUse { id: TopicId },
    #[error("the nil topic id is reserved")]
    NilTopicId,
    #[error("no topic has id {id}")]
    UnknownTopicId { id: TopicId },
    #[error("topic {id} has {count} partitions; partition {partition} is not the next one")]
    PartitionNotNext { id: TopicId, partition: i32, count: i32 },
    #[error("topic {id} has no partition {partition}")]
    UnknownPartition { id: TopicId, partition: i32 },
    #[error("partition {partition} of topic {id}: {problem}")]
    BadAssignment { id: TopicId, partition: i32, problem: String },
    #[error("the cluster id is already {current}")]
    ClusterIdChanged { current: Uuid },
    #[error("producer id block {first}+{size} does not follow the blocks handed out (next is {next})")]
    ProducerIdBlockBehind { first: i64, size: i64, next: i64 },
    #[error("broker {node_id} is not registered")]
    UnknownBroker { node_id: NodeId },
    #[error("broker {node_id} has epoch {current}, not {given}")]
    StaleBrokerEpoch { node_id: NodeId, current: i64, given: i64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerImage {
    pub registration: RegisterBrokerRecord,
    pub fenced: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionImage {
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    pub leader: Option<NodeId>,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub id: TopicId,
    /// Only the keys set for this topic.
    pub configs: BTreeMap<String, String>,
    /// Partition `i` is `partitions[i]`: partitions are numbered 0..count with no gap.
    pub partitions: Vec<PartitionImage>,
}

impl TopicImage {
    pub fn partition(&self, index: i32) -> Option<&PartitionImage> {
        usize::try_from(index).ok().and_then(|i| self.partitions.get(i))
    }
    pub fn partition_count(&self) -> i32 {
        self.partitions.len() as i32
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetadataImage {
    cluster_id: Option<Uuid>,
    brokers: BTreeMap<NodeId, BrokerImage>,
    topics: BTreeMap<TopicId, TopicImage>,
    /// Name -> id, for lookups by name (and ordering by name).
    names: BTreeMap<String, TopicId>,
    /// The last block of producer ids handed out.
    producer_ids: Option<ProducerIdBlockRecord>,
}

/// Checks of a partition's assignment shared by new partitions and changes.
fn check_assignment(replicas: &[NodeId], isr: &[NodeId], leader: Option<NodeId>) -> Result<(), String> {
    if replicas.is_empty() {
        return Err("no replicas".into());
    }
    for (i, r) in replicas.iter().enumerate() {
        if replicas[..i].contains(r) {
            return Err(format!("replica {r} is listed twice"));
        }
    }
    for (i, r) in isr.iter().enumerate() {
        if !replicas.contains(r) {
            return Err(format!("in-sync replica {r} is not a replica"));
        }
        if isr[..i].contains(r) {
            return Err(format!("in-sync replica {r} is listed twice"));
        }
    }
    if let Some(l) = leader {
        if !isr.contains(&l) {
            return Err(format!("leader {l} is not in sync"));
        }
    }
    Ok(())
}

impl MetadataImage {
    /// The image a snapshot's records describe.
    pub fn from_snapshot(records: &[MetadataRecord]) -> Result<MetadataImage, ImageError> {
        MetadataImage::default().applied(records)
    }

    /// This image with `records` applied in order, or the first one's error (then nothing of
    /// the batch applies: the image itself never changes).
    pub fn applied(&self, records: &[MetadataRecord]) -> Result<MetadataImage, ImageError> {
        let mut next = self.clone();
        for r in records {
            next.apply(r)?;
        }
        Ok(next)
    }

    /// Apply one record. A record that contradicts the image is an error and changes nothing.
    pub fn apply(&mut self, record: &MetadataRecord) -> Result<(), ImageError> {
        match record {
            MetadataRecord::ClusterId(r) => {
                let id = Uuid::from_bytes(r.cluster_id);
                match self.cluster_id {
                    Some(current) if current != id => return Err(ImageError::ClusterIdChanged { current }),
                    _ => self.cluster_id = Some(id),
                }
            }
            MetadataRecord::RegisterBroker(r) => {
                if let Some(b) = self.brokers.get(&r.node_id) {
                    if r.broker_epoch <= b.registration.broker_epoch {
                        return Err(ImageError::StaleBrokerEpoch {
                            node_id: r.node_id,
                            current: b.registration.broker_epoch,
                            given: r.broker_epoch,
                        });
                    }
                }
                self.brokers.insert(r.node_id, BrokerImage { registration: r.clone(), fenced: true });
            }
            MetadataRecord::UnregisterBroker(r) => {
                self.broker_at_epoch(r)?;
                self.brokers.remove(&r.node_id);
            }
            MetadataRecord::FenceBroker(r) => {
                self.broker_at_epoch(r)?;
                self.brokers.get_mut(&r.node_id).expect("checked").fenced = true;
            }
            MetadataRecord::UnfenceBroker(r) => {
                self.broker_at_epoch(r)?;
                self.brokers.get_mut(&r.node_id).expect("checked").fenced = false;
            }
            MetadataRecord::CreateTopic(r) => {
                validate_topic_name(&r.name).map_err(ImageError::InvalidTopicName)?;
                if self.names.contains_key(&r.name) {
                    return Err(ImageError::TopicExists { name: r.name.clone() });
                }
                if r.topic_id.uuid().is_nil() {
                    return Err(ImageError::NilTopicId);
                }
                if self.topics.contains_key(&r.topic_id) {
                    return Err(ImageError::TopicIdInUse { id: r.topic_id });
                }
                self.names.insert(r.name.clone(), r.topic_id);
                self.topics.insert(
                    r.topic_id,
                    TopicImage { name: r.name.clone(), id: r.topic_id, configs: r.configs.clone(), partitions: Vec::new() },
                );
            }
            MetadataRecord::Partition(r) => {
                let id = r.topic_id;
                let topic = self.topics.get_mut(&id).ok_or(ImageError::UnknownTopicId { id })?;
                let count = topic.partition_count();
                if r.partition != count {
                    return Err(ImageError::PartitionNotNext { id, partition: r.partition, count });
                }
                if count >= TOPIC_PARTITIONS_MAX {
                    return Err(ImageError::PartitionCountOverMax { count: count + 1 });
                }
                check_assignment(&r.replicas, &r.isr, r.leader)
                    .map_err(|problem| ImageError::BadAssignment { id, partition: r.partition, problem })?;
                topic.partitions.push(PartitionImage {
                    replicas: r.replicas.clone(),
                    isr: r.isr.clone(),
                    leader: r.leader,
                    leader_epoch: r.leader_epoch,
                    partition_epoch: r.partition_epoch,
                });
            }
            MetadataRecord::PartitionChange(r) => {
                let (id, partition) = (r.topic_id, r.partition);
                let topic = self.topics.get_mut(&id).ok_or(ImageError::UnknownTopicId { id })?;
                let p = usize::try_from(partition)
                    .ok()
                    .and_then(|i| topic.partitions.get_mut(i))
                    .ok_or(ImageError::UnknownPartition { id, partition })?;
                let replicas = r.replicas.as_ref().unwrap_or(&p.replicas);
                let isr = r.isr.as_ref().unwrap_or(&p.isr);
                let leader = r.leader.unwrap_or(p.leader);
                check_assignment(replicas, isr, leader).map_err(|problem| ImageError::BadAssignment { id, partition, problem })?;
                let changed = PartitionImage {
                    replicas: replicas.clone(),
                    isr: isr.clone(),
                    leader,
                    leader_epoch: if r.leader.is_some() { p.leader_epoch.saturating_add(1) } else { p.leader_epoch },
                    partition_epoch: p.partition_epoch.saturating_add(1),
                };
                *p = changed;
            }
            MetadataRecord::RemoveTopic(r) => {
                let id = r.topic_id;
                let topic = self.topics.remove(&id).ok_or(ImageError::UnknownTopicId { id })?;
                self.names.remove(&topic.name);
            }
            MetadataRecord::Config(r) => match &r.resource {
                ConfigResource::Topic { name } => {
                    let id = *self.names.get(name).ok_or_else(|| ImageError::UnknownTopic { name: name.clone() })?;
                    let configs = &mut self.topics.get_mut(&id).expect("names and topics agree").configs;
                    match &r.value {
                        Some(v) => {
                            configs.insert(r.key.clone(), v.clone());
                        }
                        None => {
                            configs.remove(&r.key);
                        }
                    }
                }
            },
            MetadataRecord::ProducerIdBlock(r) => {
                let next = self.next_producer_id();
                if r.first < next || r.size < 1 || r.first.checked_add(r.size).is_none() {
                    return Err(ImageError::ProducerIdBlockBehind { first: r.first, size: r.size, next });
                }
                self.producer_ids = Some(r.clone());
            }
        }
        Ok(())
    }

    fn broker_at_epoch(&self, r: &BrokerEpochRecord) -> Result<(), ImageError> {
        let b = self.brokers.get(&r.node_id).ok_or(ImageError::UnknownBroker { node_id: r.node_id })?;
        if b.registration.broker_epoch != r.broker_epoch {
            return Err(ImageError::StaleBrokerEpoch {
                node_id: r.node_id,
                current: b.registration.broker_epoch,
                given: r.broker_epoch,
            });
        }
        Ok(())
    }

    /// Records that rebuild this image from an empty one: the cluster id, brokers, the last
    /// producer id block, then each topic (by name) with its partitions in their current
    /// state.
    pub fn snapshot(&self) -> Vec<MetadataRecord> {
        let mut out = Vec::new();
        if let Some(id) = self.cluster_id {
            out.push(MetadataRecord::ClusterId(ClusterIdRecord { cluster_id: *id.as_bytes() }));
        }
        for b in self.brokers.values() {
            out.push(MetadataRecord::RegisterBroker(b.registration.clone()));
            if !b.fenced {
                let r = &b.registration;
                out.push(MetadataRecord::UnfenceBroker(BrokerEpochRecord { node_id: r.node_id, broker_epoch: r.broker_epoch }));
            }
        }
        if let Some(block) = &self.producer_ids {
            out.push(MetadataRecord::ProducerIdBlock(block.clone()));
        }
        for t in self.topics() {
            out.push(MetadataRecord::CreateTopic(CreateTopicRecord {
                name: t.name.clone(),
                topic_id: t.id,
                configs: t.configs.clone(),
            }));
            for (i, p) in t.partitions.iter().enumerate() {
                out.push(MetadataRecord::Partition(PartitionRecord {
                    topic_id: t.id,
                    partition: i as i32,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                }));
            }
        }
        out
    }

    pub fn cluster_id(&self) -> Option<Uuid> {
        self.cluster_id
    }

    pub fn broker(&self, node_id: NodeId) -> Option<&BrokerImage> {
        self.brokers.get(&node_id)
    }

    /// Every registered broker, by node id.
    pub fn brokers(&self) -> impl Iterator<Item = &BrokerImage> {
        self.brokers.values()
    }

    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.names.get(name).and_then(|id| self.topics.get(id))
    }

    pub fn topic_by_id(&self, id: TopicId) -> Option<&TopicImage> {
        self.topics.get(&id)
    }

    /// Every topic, ordered by name.
    pub fn topics(&self) -> impl Iterator<Item = &TopicImage> {
        self.names.values().map(|id| &self.topics[id])
    }

    /// The first producer id no block has handed out yet.
    pub fn next_producer_id(&self) -> i64 {
        self.producer_ids.as_ref().map_or(0, ProducerIdBlockRecord::end)
    }

    /// Whether a topic `name` with `partitions` partitions may be created, checked in Kafka's
    /// order: the name, an existing topic, a name colliding with one ('.' and '_' collide in
    /// Kafka's metric names), the partition count. Configs are the controller's to check.
    pub fn validate_create(&self, name: &str, partitions: i32) -> Result<(), ImageError> {
        validate_topic_name(name).map_err(ImageError::InvalidTopicName)?;
        if self.names.contains_key(name) {
            return Err(ImageError::TopicExists { name: name.to_string() });
        }
        let canon = name.replace('.', "_");
        if let Some(other) = self.names.keys().find(|n| n.replace('.', "_") == canon) {
            return Err(ImageError::TopicCollides { name: name.to_string(), other: other.clone() });
        }
        if !(1..=TOPIC_PARTITIONS_MAX).contains(&partitions) {
            return Err(ImageError::InvalidPartitionCount { count: partitions });
        }
        Ok(())
    }

    /// Whether topic `name` may grow to `count` partitions; returns the topic.
    pub fn validate_add_partitions(&self, name: &str, count: i32) -> Result<&TopicImage, ImageError> {
        let topic = self.topic(name).ok_or_else(|| ImageError::UnknownTopic { name: name.to_string() })?;
        let current = topic.partition_count();
        if count == current {
            return Err(ImageError::PartitionCountUnchanged { current });
        }
        if count < current {
            return Err(ImageError::PartitionCountDecrease { current, requested: count });
        }
        if count > TOPIC_PARTITIONS_MAX {
            return Err(ImageError::PartitionCountOverMax { count });
        }
        Ok(topic)
    }

    /// The config records that turn topic `name`'s overrides into `next` (sets for new or
    /// changed keys, removals for dropped ones), ordered by key.
    pub fn config_changes(&self, name: &str, next: &BTreeMap<String, String>) -> Result<Vec<MetadataRecord>, ImageError> {
        let topic = self.topic(name).ok_or_else(|| ImageError::UnknownTopic { name: name.to_string() })?;
        let resource = ConfigResource::Topic { name: name.to_string() };
        let mut keys: Vec<&String> = topic.configs.keys().chain(next.keys()).collect();
        keys.sort();
        keys.dedup();
        Ok(keys
            .into_iter()
            .filter(|k| topic.configs.get(*k) != next.get(*k))
            .map(|k| {
                MetadataRecord::Config(ConfigRecord { resource: resource.clone(), key: k.clone(), value: next.get(k).cloned() })
            })
            .collect())
    }
}
