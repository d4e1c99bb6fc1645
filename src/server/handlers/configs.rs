//! DescribeConfigs, IncrementalAlterConfigs and the older AlterConfigs for topics and groups
//! (KIP-848 group configs, kept by the group coordinator), and a read-only view of the broker.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsRequest;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
};
use kafka_protocol::messages::alter_configs_request::AlterConfigsRequest;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResponse;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, IncrementalAlterConfigsRequest};
use kafka_protocol::messages::incremental_alter_configs_response::{
    AlterConfigsResourceResponse, IncrementalAlterConfigsResponse,
};
use kafka_protocol::messages::ResponseKind;
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::config::TOPIC_CONFIG_KEYS;
use crate::group::{validate_group_id, GROUP_CONFIG_KEYS};
use crate::limits::REQUEST_PARTITIONS_MAX;
use crate::protocol::errors::ErrorCode;
use crate::server::dispatch::Reply;
use crate::server::topics::AdminError;
use crate::server::Broker;

// ConfigResource.Type (apache/kafka clients/.../config/ConfigResource.java).
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_GROUP: i8 = 32;
// DescribeConfigsResponse.ConfigSource.
pub const CONFIG_SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub const CONFIG_SOURCE_STATIC_BROKER: i8 = 4;
pub const CONFIG_SOURCE_DEFAULT: i8 = 5;
pub const CONFIG_SOURCE_GROUP: i8 = 8;
// DescribeConfigsResponse.ConfigType.
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;
// AlterConfigOp.OpType.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

fn topic_config_type(key: &str) -> i8 {
    match key {
        "cleanup.policy" => TYPE_LIST,
        "message.timestamp.type" => TYPE_STRING,
        "retention.ms" | "retention.bytes" | "segment.ms" => TYPE_LONG,
        _ => TYPE_INT,
    }
}

fn entry(name: &str, value: String, source: i8, config_type: i8, read_only: bool, version: i16) -> DescribeConfigsResourceResult {
    let mut e = DescribeConfigsResourceResult::default()
        .with_name(str_bytes(name))
        .with_value(Some(str_bytes(&value)))
        .with_read_only(read_only)
        .with_config_source(source);
    if version >= 3 {
        e = e.with_config_type(config_type);
    }
    e
}

pub async fn describe(broker: &Arc<Broker>, version: i16, req: DescribeConfigsRequest) -> Reply {
    if req.resources.len() > REQUEST_PARTITIONS_MAX {
        return Reply::Malformed(format!("describe configs names {} resources", req.resources.len()));
    }
    let mut results = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let wanted = |k: &str| r.configuration_keys.as_ref().is_none_or(|keys| keys.iter().any(|w| w.as_str() == k));
        let base = DescribeConfigsResult::default().with_resource_type(r.resource_type).with_resource_name(r.resource_name.clone());
        let result = match r.resource_type {
            RESOURCE_TOPIC => match broker.topics.get(r.resource_name.as_str()) {
                None => base
                    .with_error_code(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code())
                    .with_error_message(Some(str_bytes(&format!("Topic '{}' does not exist.", r.resource_name.as_str())))),
                Some(topic) => base.with_configs(
                    TOPIC_CONFIG_KEYS
                        .iter()
                        .filter(|k| wanted(k))
                        .map(|k| {
                            let source = if topic.overrides.contains_key(*k) { CONFIG_SOURCE_DYNAMIC_TOPIC } else { CONFIG_SOURCE_DEFAULT };
                            entry(k, topic.config.get(k).unwrap_or_default(), source, topic_config_type(k), false, version)
                        })
                        .collect(),
                ),
            },
            RESOURCE_BROKER => {
                let name = r.resource_name.as_str();
                if !name.is_empty() && name != broker.config.node_id.to_string() {
                    base.with_error_code(ErrorCode::INVALID_REQUEST.code())
                        .with_error_message(Some(str_bytes(&format!("this broker is node {}, not '{name}'", broker.config.node_id))))
                } else {
                    let c = &broker.config;
                    let (host, port) = &broker.advertised;
                    let all = [
                        ("node.id", c.node_id.to_string(), TYPE_INT),
                        ("log.dirs", c.data_dir.display().to_string(), TYPE_STRING),
                        ("listeners", format!("PLAINTEXT://{}", c.listen), TYPE_LIST),
                        ("advertised.listeners", format!("PLAINTEXT://{host}:{port}"), TYPE_LIST),
                        ("auto.create.topics.enable", c.auto_create_topics_enable.to_string(), TYPE_BOOLEAN),
                        ("num.partitions", c.num_partitions.to_string(), TYPE_INT),
                        ("log.retention.check.interval.ms", c.log_retention_check_interval_ms.to_string(), TYPE_LONG),
                    ];
                    base.with_configs(
                        all.into_iter()
                            .filter(|(k, _, _)| wanted(k))
                            .map(|(k, v, t)| entry(k, v, CONFIG_SOURCE_STATIC_BROKER, t, true, version))
                            .collect(),
                    )
                }
            }
            RESOURCE_GROUP => {
                let name = r.resource_name.as_str().to_string();
                match check_group_name(&name) {
                    Err(e) => base.with_error_code(e.code.code()).with_error_message(Some(str_bytes(&e.message))),
                    Ok(()) => {
                        let query = name.clone();
                        let found = broker
                            .groups
                            .step(&broker.topics, move |c, _| (c.config_for(&query), c.group_configs(&query).cloned().unwrap_or_default()))
                            .await;
                        match found {
                            Err(code) => base
                                .with_error_code(code.code())
                                .with_error_message(Some(str_bytes("the group coordinator is not available"))),
                            // Kafka's ConfigHelper: every group config, the group's value or
                            // the broker's default, whether or not the group exists.
                            Ok((config, overrides)) => base.with_configs(
                                GROUP_CONFIG_KEYS
                                    .iter()
                                    .filter(|k| wanted(k))
                                    .map(|k| {
                                        let source = if overrides.contains_key(*k) { CONFIG_SOURCE_GROUP } else { CONFIG_SOURCE_DEFAULT };
                                        let value = config.group_config_value(k).expect("a group config key").to_string();
                                        entry(k, value, source, TYPE_INT, false, version)
                                    })
                                    .collect(),
                            ),
                        }
                    }
                }
            }
            other => base
                .with_error_code(ErrorCode::INVALID_REQUEST.code())
                .with_error_message(Some(str_bytes(&format!("resource type {other} is not supported")))),
        };
        results.push(result);
    }
    Reply::Now(ResponseKind::DescribeConfigs(DescribeConfigsResponse::default().with_results(results)))
}

/// Kafka's answer to an empty group name in a config request (ConfigHelper); a name longer
/// than strand's group ids may be gets INVALID_GROUP_ID, as everywhere else.
fn check_group_name(name: &str) -> Result<(), AdminError> {
    if name.is_empty() {
        return Err(AdminError::new(ErrorCode::INVALID_REQUEST, "Group name must not be empty"));
    }
    if validate_group_id(name) != ErrorCode::NONE {
        return Err(AdminError::new(ErrorCode::INVALID_GROUP_ID, format!("group ids are at most {} bytes", crate::group::GROUP_ID_BYTES_MAX)));
    }
    Ok(())
}

/// A config key a resource of this type does not have: INVALID_CONFIG naming it.
fn check_key(resource_type: i8, key: &str) -> Result<(), AdminError> {
    if resource_type == RESOURCE_GROUP {
        if !GROUP_CONFIG_KEYS.contains(&key) {
            return Err(AdminError::new(ErrorCode::INVALID_CONFIG, format!("Unknown group config name: {key}")));
        }
    } else if !TOPIC_CONFIG_KEYS.contains(&key) {
        return Err(AdminError::new(ErrorCode::INVALID_CONFIG, format!("unknown topic config '{key}'")));
    }
    Ok(())
}

/// The overrides a topic or group would have after the operations, validated as a whole.
fn apply_ops(current: &BTreeMap<String, String>, r: &AlterConfigsResource) -> Result<BTreeMap<String, String>, AdminError> {
    let mut overrides = current.clone();
    for c in &r.configs {
        let key = c.name.as_str();
        check_key(r.resource_type, key)?;
        match c.config_operation {
            OP_SET => {
                let value = c.value.as_ref().ok_or_else(|| {
                    AdminError::new(ErrorCode::INVALID_REQUEST, format!("SET of '{key}' needs a value"))
                })?;
                overrides.insert(key.to_string(), value.as_str().to_string());
            }
            OP_DELETE => {
                overrides.remove(key);
            }
            OP_APPEND | OP_SUBTRACT => {
                if r.resource_type == RESOURCE_GROUP || topic_config_type(key) != TYPE_LIST {
                    return Err(AdminError::new(
                        ErrorCode::INVALID_CONFIG,
                        format!("Config value append is not allowed for config key: {key}"),
                    ));
                }
                // cleanup.policy is the only list config and only "delete" is supported, so the
                // result must still be exactly "delete".
                let value = c.value.as_ref().map(|v| v.as_str().to_string()).unwrap_or_default();
                let mut items: Vec<String> = overrides.get(key).cloned().unwrap_or_else(|| "delete".into()).split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
                for v in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if c.config_operation == OP_APPEND {
                        if !items.iter().any(|i| i == v) {
                            items.push(v.to_string());
                        }
                    } else {
                        items.retain(|i| i != v);
                    }
                }
                overrides.insert(key.to_string(), items.join(","));
            }
            other => return Err(AdminError::new(ErrorCode::INVALID_REQUEST, format!("unknown config operation {other}"))),
        }
    }
    Ok(overrides)
}

/// Alter one resource's configs to the overrides `alter` makes of its current ones (validated
/// as a whole; only checked when `validate_only`).
async fn alter_resource(
    broker: &Arc<Broker>,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    alter: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, AdminError>,
) -> Result<(), AdminError> {
    match resource_type {
        RESOURCE_TOPIC => broker.topics.alter_configs(name, validate_only, alter).await,
        RESOURCE_GROUP => {
            check_group_name(name)?;
            let group = name.to_string();
            // One step of the coordinator: read, change, validate against the broker's bounds
            // and queue the record, so concurrent alters of one group lose no update; the
            // answer comes once the record is durable (a group that does not exist yet keeps
            // its configs for when it does, as in Kafka).
            let stepped = broker
                .groups
                .step(&broker.topics, move |c, _| {
                    let current = c.group_configs(&group).cloned().unwrap_or_default();
                    let next = alter(&current)?;
                    c.config.validate_group_overrides(&next).map_err(|m| AdminError::new(ErrorCode::INVALID_CONFIG, m))?;
                    if !validate_only && next != current {
                        c.set_group_configs(&group, next);
                    }
                    Ok(())
                })
                .await;
            match stepped {
                Ok(outcome) => outcome,
                Err(code) => Err(AdminError::new(code, "the group coordinator is not available")),
            }
        }
        RESOURCE_BROKER => Err(AdminError::new(
            ErrorCode::INVALID_REQUEST,
            "dynamic broker configs are not supported; edit strand.toml and restart",
        )),
        other => Err(AdminError::new(ErrorCode::INVALID_REQUEST, format!("resource type {other} is not supported"))),
    }
}

/// The error code and message of one resource's answer (both alter responses carry the pair,
/// in two different generated types).
fn error_fields(outcome: Result<(), AdminError>) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (0, None),
        Err(e) => (e.code.code(), Some(str_bytes(&e.message))),
    }
}

pub async fn incremental_alter(broker: &Arc<Broker>, _version: i16, req: IncrementalAlterConfigsRequest) -> Reply {
    if req.resources.len() > REQUEST_PARTITIONS_MAX {
        return Reply::Malformed(format!("alter configs names {} resources", req.resources.len()));
    }
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in &req.resources {
        let outcome = alter_resource(broker, r.resource_type, r.resource_name.as_str(), req.validate_only, |current| apply_ops(current, r)).await;
        let (error_code, error_message) = error_fields(outcome);
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone())
                .with_error_code(error_code)
                .with_error_message(error_message),
        );
    }
    Reply::Now(ResponseKind::IncrementalAlterConfigs(IncrementalAlterConfigsResponse::default().with_responses(responses)))
}

/// The older AlterConfigs (what kafka-python before 3.0, Sarama and other clients send): the
/// configs given *replace* the topic's overrides, so every key left out goes back to its
/// default, as in Kafka. A null value also means the default.
pub async fn alter(broker: &Arc<Broker>, _version: i16, req: AlterConfigsRequest) -> Reply {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    if req.resources.len() > REQUEST_PARTITIONS_MAX {
        return Reply::Malformed(format!("alter configs names {} resources", req.resources.len()));
    }
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in &req.resources {
        let replace = |_: &BTreeMap<String, String>| {
            let mut overrides = BTreeMap::new();
            for c in &r.configs {
                let key = c.name.as_str();
                check_key(r.resource_type, key)?;
                match &c.value {
                    Some(v) => overrides.insert(key.to_string(), v.as_str().to_string()),
                    None => overrides.remove(key),
                };
            }
            Ok(overrides)
        };
        let outcome = alter_resource(broker, r.resource_type, r.resource_name.as_str(), req.validate_only, replace).await;
        let (error_code, error_message) = error_fields(outcome);
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone())
                .with_error_code(error_code)
                .with_error_message(error_message),
        );
    }
    Reply::Now(ResponseKind::AlterConfigs(AlterConfigsResponse::default().with_responses(responses)))
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource as LegacyResource, AlterableConfig};

    use super::*;

    async fn alter_legacy(broker: &Arc<Broker>, resource_type: i8, name: &str, configs: &[(&str, Option<&str>)], validate_only: bool) -> i16 {
        let req = AlterConfigsRequest::default().with_validate_only(validate_only).with_resources(vec![LegacyResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(str_bytes(name))
            .with_configs(configs.iter().map(|(k, v)| AlterableConfig::default().with_name(str_bytes(k)).with_value(v.map(str_bytes))).collect())]);
        let Reply::Now(ResponseKind::AlterConfigs(r)) = alter(broker, 2, req).await else { panic!("AlterConfigs answers at once") };
        assert_eq!(r.responses.len(), 1);
        r.responses[0].error_code
    }

    /// AlterConfigs replaces a topic's overrides (a key left out, or given a null value, goes
    /// back to its default) where IncrementalAlterConfigs changes only the keys it names;
    /// validate_only and refused requests change nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn alter_configs_replaces_the_overrides_incremental_changes_them() {
        let test = crate::server::TestServer::start("alter-configs").await;
        let broker = test.broker.clone();
        broker.topics.create("t", 1, Default::default()).await.expect("create");
        let overrides = || broker.topics.get("t").expect("topic").overrides.clone().into_iter().collect::<Vec<_>>();
        let pairs = |v: &[(&str, &str)]| v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();

        assert_eq!(alter_legacy(&broker, RESOURCE_TOPIC, "t", &[("retention.ms", Some("1000")), ("max.message.bytes", Some("5000"))], false).await, 0);
        assert_eq!(overrides(), pairs(&[("max.message.bytes", "5000"), ("retention.ms", "1000")]));
        assert_eq!(broker.topics.get("t").unwrap().config.retention_ms, 1000, "the new config is in force");
        // Only segment.ms named: the other two go back to their defaults; a null value is the default.
        assert_eq!(alter_legacy(&broker, RESOURCE_TOPIC, "t", &[("segment.ms", Some("60000")), ("retention.bytes", None)], false).await, 0);
        assert_eq!(overrides(), pairs(&[("segment.ms", "60000")]));
        assert_eq!(broker.topics.get("t").unwrap().config.retention_ms, crate::config::TopicConfig::default().retention_ms);
        // Refused or only validated: nothing changes.
        let invalid_config = ErrorCode::INVALID_CONFIG.code();
        assert_eq!(alter_legacy(&broker, RESOURCE_TOPIC, "t", &[("retention.ms", Some("soon"))], false).await, invalid_config);
        assert_eq!(alter_legacy(&broker, RESOURCE_TOPIC, "t", &[("no.such.key", Some("1"))], false).await, invalid_config);
        assert_eq!(alter_legacy(&broker, RESOURCE_TOPIC, "t", &[("retention.ms", Some("5"))], true).await, 0);
        assert_eq!(overrides(), pairs(&[("segment.ms", "60000")]));
        assert_eq!(alter_legacy(&broker, RESOURCE_TOPIC, "nope", &[], false).await, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code());
        assert_eq!(alter_legacy(&broker, RESOURCE_BROKER, "", &[("num.partitions", Some("3"))], false).await, ErrorCode::INVALID_REQUEST.code());

        // IncrementalAlterConfigs SET keeps what it does not name.
        use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig as Op;
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(str_bytes("t"))
            .with_configs(vec![Op::default().with_name(str_bytes("retention.ms")).with_config_operation(OP_SET).with_value(Some(str_bytes("2000")))])]);
        let Reply::Now(ResponseKind::IncrementalAlterConfigs(r)) = incremental_alter(&broker, 1, req).await else { panic!("answers at once") };
        assert_eq!(r.responses[0].error_code, 0);
        assert_eq!(overrides(), pairs(&[("retention.ms", "2000"), ("segment.ms", "60000")]));
        test.stop().await;
    }

    fn set_op(resource: &str, key: &str, value: &str) -> IncrementalAlterConfigsRequest {
        use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig as Op;
        IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(str_bytes(resource))
            .with_configs(vec![Op::default().with_name(str_bytes(key)).with_config_operation(OP_SET).with_value(Some(str_bytes(value)))])])
    }

    /// Two IncrementalAlterConfigs of different keys of one topic, queued behind another admin
    /// operation, both take effect: each applies its change to the overrides as the other left
    /// them. (Regression: each read the overrides before waiting its turn, and the second
    /// write put back the value the first had replaced.)
    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_alters_of_one_topic_lose_no_update() {
        let test = crate::server::TestServer::start("alter-race").await;
        let broker = test.broker.clone();
        broker.topics.create("t", 1, Default::default()).await.expect("create");
        // A create holds the admin lock across its disk work; both alters arrive meanwhile.
        let b = broker.clone();
        let create = tokio::spawn(async move { b.topics.create("other", 8, Default::default()).await.map(|_| ()) });
        tokio::task::yield_now().await;
        let (b1, b2) = (broker.clone(), broker.clone());
        let first = tokio::spawn(async move { incremental_alter(&b1, 1, set_op("t", "retention.ms", "1000")).await });
        let second = tokio::spawn(async move { incremental_alter(&b2, 1, set_op("t", "segment.ms", "60000")).await });
        create.await.unwrap().expect("create other");
        for reply in [first.await.unwrap(), second.await.unwrap()] {
            let Reply::Now(ResponseKind::IncrementalAlterConfigs(r)) = reply else { panic!("answers at once") };
            assert_eq!(r.responses[0].error_code, 0);
        }
        let overrides: Vec<_> = broker.topics.get("t").expect("topic").overrides.clone().into_iter().collect();
        assert_eq!(overrides, vec![("retention.ms".to_string(), "1000".to_string()), ("segment.ms".to_string(), "60000".to_string())]);
        test.stop().await;
    }
}
