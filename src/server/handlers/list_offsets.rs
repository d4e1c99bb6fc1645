//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3, KIP-734), earliest local (-4),
//! latest tiered (-5), or the first offset whose timestamp >= T.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_request::ListOffsetsRequest;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::ResponseKind;

use crate::limits::REQUEST_PARTITIONS_MAX;
use crate::partition::Partition;
use crate::protocol::errors::ErrorCode;
use crate::server::dispatch::Reply;
use crate::server::Broker;

pub const EARLIEST_TIMESTAMP: i64 = -2;
pub const LATEST_TIMESTAMP: i64 = -1;
pub const MAX_TIMESTAMP: i64 = -3;
pub const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;
pub const LATEST_TIERED_TIMESTAMP: i64 = -5;

pub async fn handle(broker: &Arc<Broker>, version: i16, req: ListOffsetsRequest) -> Reply {
    let partition_count: usize = req.topics.iter().map(|t| t.partitions.len()).sum();
    if partition_count > REQUEST_PARTITIONS_MAX {
        return Reply::Malformed(format!("list offsets names {partition_count} partitions"));
    }
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = broker.topics.get(t.name.as_str());
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let base = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            let partition = topic.as_ref().ok_or(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION).and_then(|topic| topic.lookup(p.partition_index));
            let response = match partition {
                Err(code) => base.with_error_code(code.code()),
                Ok(partition) => match lookup(partition, p.timestamp).await {
                    Ok((offset, timestamp)) => {
                        let r = base.with_offset(offset).with_timestamp(timestamp);
                        // leader_epoch exists from v4 (the encoder rejects it earlier). As Kafka:
                        // for the latest offset the current leader epoch (a Kafka leader enters
                        // its epoch in the cache when elected), else the epoch of the batch
                        // holding the offset (-1 if none).
                        if version >= 4 {
                            let epoch = match (p.timestamp, offset) {
                                (LATEST_TIMESTAMP, _) => partition.leader_epoch(),
                                (_, o) if o >= 0 => partition.epoch_for_offset(o).await,
                                _ => -1,
                            };
                            r.with_leader_epoch(epoch)
                        } else {
                            r
                        }
                    }
                    Err(code) => base.with_error_code(code.code()),
                },
            };
            partitions.push(response);
        }
        topics.push(ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions));
    }
    Reply::Now(ResponseKind::ListOffsets(ListOffsetsResponse::default().with_topics(topics)))
}

/// (offset, timestamp) for one partition. No transactions yet, so the last stable offset is the
/// high watermark and both isolation levels get the same answer.
async fn lookup(partition: &Partition, timestamp: i64) -> Result<(i64, i64), ErrorCode> {
    let high_watermark = partition.high_watermark();
    match timestamp {
        EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP => Ok((partition.log_start_offset(), -1)),
        LATEST_TIMESTAMP => Ok((high_watermark, -1)),
        // No tiered storage: Kafka answers -1 here when remote storage is disabled.
        LATEST_TIERED_TIMESTAMP => Ok((-1, -1)),
        MAX_TIMESTAMP => match partition.offset_for_max_timestamp().await {
            Ok(Some((offset, ts))) if offset < high_watermark => Ok((offset, ts)),
            Ok(_) => Ok((-1, -1)),
            Err(e) => Err(ErrorCode::from(&e)),
        },
        t if t >= 0 => match partition.offset_for_timestamp(t).await {
            Ok(Some((offset, ts))) if offset < high_watermark => Ok((offset, ts)),
            Ok(_) => Ok((-1, -1)),
            Err(e) => Err(ErrorCode::from(&e)),
        },
        _ => Err(ErrorCode::INVALID_REQUEST),
    }
}
