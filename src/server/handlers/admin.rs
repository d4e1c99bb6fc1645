//! CreateTopics, DeleteTopics, CreatePartitions. One broker: replication factor 1 only.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsRequest;
use kafka_protocol::messages::create_partitions_response::{CreatePartitionsResponse, CreatePartitionsTopicResult};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult, CreateTopicsResponse};
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
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.as_str().to_string();
        let bad_assignment = t
            .assignments
            .as_ref()
            .is_some_and(|a| a.iter().any(|a| a.broker_ids.len() != 1 || a.broker_ids[0].0 != node));
        let outcome = if bad_assignment {
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
