//! OffsetForLeaderEpoch (KIP-101, KIP-320): the end offset of a leader epoch in this replica's
//! log, from its leader-epoch cache (`log/epochs.rs`). A consumer validating its position after
//! a leader change, or a follower finding where its log diverges, asks for the epoch of the
//! last batch it has; the answer is the largest epoch at or below it and the offset where the
//! next one starts (the log end for the latest epoch).

use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderEpochRequest;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderEpochResponse, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::ResponseKind;

use crate::limits::REQUEST_PARTITIONS_MAX;
use crate::log::epochs::{UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};
use crate::partition::Partition;
use crate::protocol::errors::ErrorCode;
use crate::server::dispatch::Reply;
use crate::server::Broker;

/// The check every epoch-carrying request makes (Kafka's `Partition.checkCurrentLeaderEpoch`):
/// -1 means the client does not know one; an older epoch than the partition's is
/// FENCED_LEADER_EPOCH (the client's metadata is stale), a newer one UNKNOWN_LEADER_EPOCH (this
/// broker's is).
pub fn check_current_leader_epoch(partition: &Partition, current_leader_epoch: i32) -> Result<(), ErrorCode> {
    let ours = partition.leader_epoch();
    match current_leader_epoch {
        -1 => Ok(()),
        e if e < ours => Err(ErrorCode::FENCED_LEADER_EPOCH),
        e if e > ours => Err(ErrorCode::UNKNOWN_LEADER_EPOCH),
        _ => Ok(()),
    }
}

pub async fn offset_for_leader_epoch(broker: &Arc<Broker>, _version: i16, req: OffsetForLeaderEpochRequest) -> Reply {
    let partition_count: usize = req.topics.iter().map(|t| t.partitions.len()).sum();
    if partition_count > REQUEST_PARTITIONS_MAX {
        return Reply::Malformed(format!("offset for leader epoch names {partition_count} partitions"));
    }
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = broker.topics.get(t.topic.as_str());
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let base = EpochEndOffset::default()
                .with_partition(p.partition)
                .with_leader_epoch(UNDEFINED_EPOCH)
                .with_end_offset(UNDEFINED_EPOCH_OFFSET);
            let answer = match topic.as_ref().ok_or(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION).and_then(|topic| topic.lookup(p.partition)) {
                Err(code) => Err(code),
                Ok(partition) => match check_current_leader_epoch(partition, p.current_leader_epoch) {
                    Err(code) => Err(code),
                    Ok(()) => partition.end_offset_for_epoch(p.leader_epoch).await.map_err(|e| ErrorCode::from(&e)),
                },
            };
            partitions.push(match answer {
                Ok((epoch, end_offset)) => base.with_leader_epoch(epoch).with_end_offset(end_offset),
                Err(code) => base.with_error_code(code.code()),
            });
        }
        topics.push(OffsetForLeaderTopicResult::default().with_topic(t.topic).with_partitions(partitions));
    }
    Reply::Now(ResponseKind::OffsetForLeaderEpoch(OffsetForLeaderEpochResponse::default().with_topics(topics)))
}
