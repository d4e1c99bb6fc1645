//! CreateTopics, DeleteTopics, CreatePartitions, DeleteRecords. One broker: replication factor 1
//! only.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsRequest;
use kafka_protocol::messages::create_partitions_response::{CreatePartitionsResponse, CreatePartitionsTopicResult};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult, CreateTopicsResponse};
use kafka_protocol::messages::delete_records_request::DeleteRecordsRequest;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsResponse, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicsRequest;
use kafka_protocol::messages::delete_topics_response::{DeletableTopicResult, DeleteTopicsResponse};
use kafka_protocol::messages::{ResponseKind, TopicName};

use super::configs::{CONFIG_SOURCE_DEFAULT, CONFIG_SOURCE_DYNAMIC_TOPIC};
use super::str_bytes;
use crate::config::{TopicConfig, TOPIC_CONFIG_KEYS};
use crate::limits::REQUEST_PARTITIONS_MAX;
use crate::protocol::errors::ErrorCode;
use crate::server::dispatch::Reply;
use crate::server::topics::AdminError;
use crate::server::Broker;

/// The partition count and overrides a CreateTopics entry asks for, checked.
fn plan(broker: &Broker, t: &CreatableTopic) -> Result<(i32, BTreeMap<String, String>), AdminError> {
    let node = broker.config.node_id;
    if !t.assignments.is_empty() {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err(AdminError::new(
                ErrorCode::INVALID_REQUEST,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
            ));
        }
        let mut seen = BTreeSet::new();
        for a in &t.assignments {
            if a.broker_ids.len() != 1 || a.broker_ids[0].0 != node || !seen.insert(a.partition_index) {
                return Err(AdminError::new(
                    ErrorCode::INVALID_REPLICA_ASSIGNMENT,
                    format!("partition {}: replicas must be exactly [{node}] on this single-broker cluster", a.partition_index),
                ));
            }
        }
        let count = t.assignments.len() as i32;
        if seen.iter().copied().ne(0..count) {
            return Err(AdminError::new(ErrorCode::INVALID_REPLICA_ASSIGNMENT, "partitions must be numbered 0..N"));
        }
    } else if t.replication_factor != -1 && t.replication_factor != 1 {
        return Err(AdminError::new(
            ErrorCode::INVALID_REPLICATION_FACTOR,
            format!(
                "Unable to replicate the partition {} time(s): The target replication factor of {} cannot be reached because only 1 broker(s) are registered.",
                t.replication_factor, t.replication_factor
            ),
        ));
    }
    let partitions = if !t.assignments.is_empty() {
        t.assignments.len() as i32
    } else if t.num_partitions == -1 {
        broker.config.num_partitions
    } else {
        t.num_partitions
    };
    let mut overrides = BTreeMap::new();
    for c in &t.configs {
        let Some(value) = &c.value else {
            return Err(AdminError::new(ErrorCode::INVALID_CONFIG, format!("Null value not supported for topic config '{}'", c.name.as_str())));
        };
        overrides.insert(c.name.as_str().to_string(), value.as_str().to_string());
    }
    Ok((partitions, overrides))
}

fn describe_configs(config: &TopicConfig, overrides: &BTreeMap<String, String>) -> Vec<CreatableTopicConfigs> {
    TOPIC_CONFIG_KEYS
        .iter()
        .map(|k| {
            CreatableTopicConfigs::default()
                .with_name(str_bytes(k))
                .with_value(config.get(k).map(|v| str_bytes(&v)))
                .with_config_source(if overrides.contains_key(*k) { CONFIG_SOURCE_DYNAMIC_TOPIC } else { CONFIG_SOURCE_DEFAULT })
        })
        .collect()
}

pub async fn create_topics(broker: &Arc<Broker>, version: i16, req: CreateTopicsRequest) -> Reply {
    if req.topics.len() > REQUEST_PARTITIONS_MAX {
        return Reply::Malformed(format!("create topics names {} topics", req.topics.len()));
    }
    // Kafka: a name given twice in one request fails for every copy.
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &req.topics {
        *counts.entry(t.name.as_str()).or_default() += 1;
    }
    let duplicated: BTreeSet<String> = counts.into_iter().filter(|(_, n)| *n > 1).map(|(k, _)| k.to_string()).collect();
    let mut results = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = t.name.as_str();
        let base = CreatableTopicResult::default().with_name(t.name.clone());
        let outcome = if duplicated.contains(name) {
            Err(AdminError::new(ErrorCode::INVALID_REQUEST, format!("Create topics request from client contains topic '{name}' more than once.")))
        } else if super::groups::is_internal(name) {
            Err(AdminError::new(ErrorCode::INVALID_REQUEST, format!("Creation of internal topic {name} is prohibited.")))
        } else {
            match plan(broker, t) {
                Err(e) => Err(e),
                Ok((partitions, overrides)) => {
                    if req.validate_only {
                        broker.topics.validate_create(name, partitions, &overrides).map(|config| (partitions, overrides, config, None))
                    } else {
                        match broker.topics.create(name, partitions, overrides.clone()).await {
                            Ok(topic) => Ok((partitions, overrides, topic.config.clone(), Some(topic.id))),
                            Err(e) => Err(e),
                        }
                    }
                }
            }
        };
        let result = match outcome {
            Ok((partitions, overrides, config, id)) => {
                let mut r = base.with_num_partitions(partitions).with_replication_factor(1);
                if let Some(id) = id {
                    r = r.with_topic_id(id);
                }
                if version >= 5 {
                    r = r.with_configs(Some(describe_configs(&config, &overrides)));
                }
                r
            }
            Err(e) => base
                .with_error_code(e.code.code())
                .with_error_message(Some(str_bytes(&e.message)))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        };
        results.push(result);
    }
    Reply::Now(ResponseKind::CreateTopics(CreateTopicsResponse::default().with_topics(results)))
}

pub async fn delete_topics(broker: &Arc<Broker>, version: i16, req: DeleteTopicsRequest) -> Reply {
    // v6+ carries names or ids in `topics`; earlier versions carry names in `topic_names`.
    let wanted: Vec<(Option<TopicName>, uuid::Uuid)> = if version >= 6 {
        req.topics.into_iter().map(|t| (t.name, t.topic_id)).collect()
    } else {
        req.topic_names.into_iter().map(|n| (Some(n), uuid::Uuid::nil())).collect()
    };
    if wanted.len() > REQUEST_PARTITIONS_MAX {
        return Reply::Malformed(format!("delete topics names {} topics", wanted.len()));
    }
    let mut results = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let resolved = match &name {
            Some(n) => Ok(n.as_str().to_string()),
            None => broker
                .topics
                .get_by_id(id)
                .map(|t| t.name.clone())
                .ok_or_else(|| AdminError::new(ErrorCode::UNKNOWN_TOPIC_ID, format!("Topic id {id} does not exist."))),
        };
        let outcome = match resolved {
            Ok(n) if super::groups::is_internal(&n) => {
                Err(AdminError::new(ErrorCode::INVALID_REQUEST, format!("Deletion of internal topic {n} is prohibited.")))
            }
            Ok(n) => broker.topics.delete(&n).await.map(|t| (t.name.clone(), t.id)),
            Err(e) => Err(e),
        };
        let result = match outcome {
            Ok((n, topic_id)) => DeletableTopicResult::default().with_name(Some(TopicName(str_bytes(&n)))).with_topic_id(topic_id),
            Err(e) => DeletableTopicResult::default()
                .with_name(name)
                .with_topic_id(id)
                .with_error_code(e.code.code())
                .with_error_message(Some(str_bytes(&e.message))),
        };
        results.push(result);
    }
    Reply::Now(ResponseKind::DeleteTopics(DeleteTopicsResponse::default().with_responses(results)))
}

pub async fn create_partitions(broker: &Arc<Broker>, _version: i16, req: CreatePartitionsRequest) -> Reply {
    if req.topics.len() > REQUEST_PARTITIONS_MAX {
        return Reply::Malformed(format!("create partitions names {} topics", req.topics.len()));
    }
    let node = broker.config.node_id;
    // Kafka answers every entry of a topic named twice with INVALID_REQUEST.
    let mut named = std::collections::BTreeMap::<String, usize>::new();
    for t in &req.topics {
        *named.entry(t.name.as_str().to_string()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.as_str().to_string();
        let bad_assignment = t
            .assignments
            .as_ref()
            .is_some_and(|a| a.iter().any(|a| a.broker_ids.len() != 1 || a.broker_ids[0].0 != node));
        let current = broker.topics.get(&name).map(|topic| topic.partitions.len() as i64);
        let assignments_count = match (&t.assignments, current) {
            (Some(a), Some(current)) if i64::from(t.count) > current && a.len() as i64 != i64::from(t.count) - current => {
                Some((i64::from(t.count) - current, a.len()))
            }
            _ => None,
        };
        let outcome = if named[&name] > 1 {
            Err(AdminError::new(ErrorCode::INVALID_REQUEST, "Duplicate topic in request."))
        } else if let Some((added, given)) = assignments_count {
            Err(AdminError::new(
                ErrorCode::INVALID_REPLICA_ASSIGNMENT,
                format!("Increasing the number of partitions by {added} but {given} assignments provided."),
            ))
        } else if bad_assignment {
            Err(AdminError::new(
                ErrorCode::INVALID_REPLICA_ASSIGNMENT,
                format!("replicas must be exactly [{node}] on this single-broker cluster"),
            ))
        } else if super::groups::is_internal(&name) {
            Err(AdminError::new(ErrorCode::INVALID_REQUEST, format!("{name} has a fixed partition count (groups map onto its partitions)")))
        } else {
            broker.topics.add_partitions(&name, t.count, req.validate_only).await
        };
        let result = match outcome {
            Ok(()) => CreatePartitionsTopicResult::default().with_name(t.name),
            Err(e) => CreatePartitionsTopicResult::default()
                .with_name(t.name)
                .with_error_code(e.code.code())
                .with_error_message(Some(str_bytes(&e.message))),
        };
        results.push(result);
    }
    Reply::Now(ResponseKind::CreatePartitions(CreatePartitionsResponse::default().with_results(results)))
}

/// DeleteRecords' offset meaning "up to the high watermark" (DeleteRecordsRequest.HIGH_WATERMARK).
pub const DELETE_RECORDS_HIGH_WATERMARK: i64 = -1;

/// KIP-107 DeleteRecords: move each partition's log start up to the given offset (-1: the high
/// watermark), as Kafka's `ReplicaManager.deleteRecords`: internal topics are refused
/// (INVALID_TOPIC_EXCEPTION), an offset past the high watermark or below -1 is
/// OFFSET_OUT_OF_RANGE, one at or below the current start succeeds and changes nothing. The
/// answer (the new low watermark) comes once the new start is on disk; segments wholly below it
/// are removed at once rather than by the next retention pass. One broker, so `timeout_ms`
/// (the wait for followers) never applies.
pub async fn delete_records(broker: &Arc<Broker>, _version: i16, req: DeleteRecordsRequest) -> Reply {
    let partition_count: usize = req.topics.iter().map(|t| t.partitions.len()).sum();
    if partition_count > REQUEST_PARTITIONS_MAX {
        return Reply::Malformed(format!("delete records names {partition_count} partitions"));
    }
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let internal = super::groups::is_internal(t.name.as_str());
        let topic = broker.topics.get(t.name.as_str());
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let base = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index).with_low_watermark(-1);
            let partition = topic.as_ref().ok_or(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION).and_then(|topic| topic.lookup(p.partition_index));
            let outcome = match partition {
                _ if internal => Err(ErrorCode::INVALID_TOPIC_EXCEPTION),
                Err(code) => Err(code),
                Ok(partition) => {
                    let offset = if p.offset == DELETE_RECORDS_HIGH_WATERMARK { partition.high_watermark() } else { p.offset };
                    if offset < 0 {
                        Err(ErrorCode::OFFSET_OUT_OF_RANGE)
                    } else {
                        match partition.delete_records_before(offset).await {
                            Ok(_) => Ok(partition.log_start_offset()),
                            Err(e) => Err(ErrorCode::from(&e)),
                        }
                    }
                }
            };
            partitions.push(match outcome {
                Ok(low_watermark) => base.with_low_watermark(low_watermark),
                Err(code) => base.with_error_code(code.code()),
            });
        }
        topics.push(DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(partitions));
    }
    Reply::Now(ResponseKind::DeleteRecords(DeleteRecordsResponse::default().with_topics(topics)))
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};

    use super::*;
    use crate::partition::Acks;

    fn request(topic: &str, partitions: &[(i32, i64)]) -> DeleteRecordsRequest {
        DeleteRecordsRequest::default().with_timeout_ms(1_000).with_topics(vec![DeleteRecordsTopic::default()
            .with_name(TopicName(str_bytes(topic)))
            .with_partitions(partitions.iter().map(|&(p, o)| DeleteRecordsPartition::default().with_partition_index(p).with_offset(o)).collect())])
    }

    /// (partition, low watermark, error code) of each partition in the answer.
    async fn delete(broker: &Arc<Broker>, topic: &str, partitions: &[(i32, i64)]) -> Vec<(i32, i64, i16)> {
        let Reply::Now(ResponseKind::DeleteRecords(r)) = delete_records(broker, 2, request(topic, partitions)).await else {
            panic!("DeleteRecords answers at once");
        };
        assert_eq!(r.topics.len(), 1);
        assert_eq!(r.topics[0].name.as_str(), topic);
        r.topics[0].partitions.iter().map(|p| (p.partition_index, p.low_watermark, p.error_code)).collect()
    }

    /// The error cases Kafka's `ReplicaManager.deleteRecords` has, each with its code and a
    /// low watermark of -1, beside a successful partition of the same request.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delete_records_answers_each_partition_with_kafkas_codes() {
        let test = crate::server::TestServer::start("delete-records").await;
        let broker = test.broker.clone();
        let topic = broker.topics.create("t", 2, Default::default()).await.expect("create");
        let p0 = topic.partition(0).expect("partition 0");
        for i in 0..10i64 {
            p0.append(crate::protocol::batch::build_simple_batch(0, 1_000 + i, &[b"a", b"b"]), Acks::Durable).await.expect("append");
        }
        assert_eq!(p0.high_watermark(), 20);

        let (oor, unknown, invalid) =
            (ErrorCode::OFFSET_OUT_OF_RANGE.code(), ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code(), ErrorCode::INVALID_TOPIC_EXCEPTION.code());
        assert_eq!(delete(&broker, "t", &[(0, 5), (1, 1), (2, 0), (0, -2)]).await, vec![(0, 5, 0), (1, -1, oor), (2, -1, unknown), (0, -1, oor)]);
        assert_eq!(p0.log_start_offset(), 5);
        assert_eq!(delete(&broker, "t", &[(0, 21), (0, 3)]).await, vec![(0, -1, oor), (0, 5, 0)], "past the high watermark; below the start");
        assert_eq!(delete(&broker, "t", &[(0, DELETE_RECORDS_HIGH_WATERMARK), (1, DELETE_RECORDS_HIGH_WATERMARK)]).await, vec![(0, 20, 0), (1, 0, 0)]);
        assert_eq!(delete(&broker, "nope", &[(0, 0)]).await, vec![(0, -1, unknown)]);
        assert_eq!(delete(&broker, crate::server::groups::OFFSETS_TOPIC, &[(0, 0)]).await, vec![(0, -1, invalid)], "internal topics are refused");
        test.stop().await;
    }

    /// CreatePartitions as Kafka checks it: a topic named twice gets INVALID_REQUEST on each
    /// entry (and is not grown), assignments must number the partitions added.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn create_partitions_rejects_duplicates_and_miscounted_assignments() {
        use kafka_protocol::messages::create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsTopic};
        use kafka_protocol::messages::BrokerId;
        let test = crate::server::TestServer::start("create-partitions").await;
        let broker = test.broker.clone();
        broker.topics.create("a", 1, Default::default()).await.expect("create");
        broker.topics.create("b", 1, Default::default()).await.expect("create");
        let node = BrokerId(broker.config.node_id);
        let grow = |name: &str, count: i32, assignments: Option<usize>| {
            CreatePartitionsTopic::default().with_name(TopicName(str_bytes(name))).with_count(count).with_assignments(
                assignments.map(|n| (0..n).map(|_| CreatePartitionsAssignment::default().with_broker_ids(vec![node])).collect()),
            )
        };
        let req = CreatePartitionsRequest::default().with_timeout_ms(1_000).with_topics(vec![
            grow("a", 2, None),
            grow("a", 3, None),
            grow("b", 3, Some(1)),
        ]);
        let Reply::Now(ResponseKind::CreatePartitions(r)) = create_partitions(&broker, 3, req).await else { panic!("answered at once") };
        let codes: Vec<i16> = r.results.iter().map(|r| r.error_code).collect();
        let (invalid, assignment) = (ErrorCode::INVALID_REQUEST.code(), ErrorCode::INVALID_REPLICA_ASSIGNMENT.code());
        assert_eq!(codes, vec![invalid, invalid, assignment]);
        assert_eq!(broker.topics.get("a").unwrap().partitions.len(), 1);
        assert_eq!(broker.topics.get("b").unwrap().partitions.len(), 1);
        let req = CreatePartitionsRequest::default().with_timeout_ms(1_000).with_topics(vec![grow("b", 3, Some(2))]);
        let Reply::Now(ResponseKind::CreatePartitions(r)) = create_partitions(&broker, 3, req).await else { panic!("answered at once") };
        assert_eq!(r.results[0].error_code, 0);
        assert_eq!(broker.topics.get("b").unwrap().partitions.len(), 3);
        test.stop().await;
    }
}
