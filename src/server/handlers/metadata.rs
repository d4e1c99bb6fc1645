//! Metadata and DescribeCluster: the live brokers and each partition's leader, replicas and
//! in-sync replicas, from the metadata image (`server/cluster.rs`).

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use kafka_protocol::messages::describe_cluster_response::{DescribeClusterBroker, DescribeClusterResponse};
use kafka_protocol::messages::metadata_request::MetadataRequest;
use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, ResponseKind, TopicName};

use super::{str_bytes, topic_or_create};

use crate::protocol::acl::{authorized_operations, ResourceType, AUTHORIZED_OPERATIONS_OMITTED};
use crate::protocol::errors::ErrorCode;
use crate::server::dispatch::Reply;
use crate::server::topics::Topic;
use crate::server::Broker;

/// Kafka's form of a cluster id: the 16 bytes in URL-safe base64 without padding (22 chars).
pub fn kafka_cluster_id(id: uuid::Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = id.as_bytes();
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn topic_response(broker: &Broker, topic: &Topic) -> MetadataResponseTopic {
    let ids = |v: &[i32]| v.iter().map(|i| BrokerId(*i)).collect::<Vec<_>>();
    let partitions = (0..topic.partition_count())
        .map(|p| {
            let base = MetadataResponsePartition::default().with_partition_index(p);
            match broker.partition_view(&topic.name, p) {
                Some(v) => base
                    // A partition without a leader (its broker is fenced) is
                    // LEADER_NOT_AVAILABLE with leader -1, as Kafka answers.
                    .with_error_code(if v.leader.is_some() { 0 } else { ErrorCode::LEADER_NOT_AVAILABLE.code() })
                    .with_leader_id(BrokerId(v.leader.unwrap_or(-1)))
                    .with_leader_epoch(v.leader_epoch)
                    .with_replica_nodes(ids(&v.replicas))
                    .with_isr_nodes(ids(&v.isr))
                    .with_offline_replicas(ids(&v.offline)),
                // Deleted between the lookup and now.
                None => base.with_error_code(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code()).with_leader_id(BrokerId(-1)),
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(&topic.name))))
        .with_topic_id(topic.id)
        // As Kafka: only the coordinators' own topics are internal, not every `__` name.
        .with_is_internal(super::groups::is_internal(&topic.name))
        .with_partitions(partitions)
}

pub async fn handle(broker: &Arc<Broker>, version: i16, req: MetadataRequest) -> Reply {
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let requested = match req.topics {
        None => None,
        Some(list) if list.is_empty() && version == 0 => None,
        Some(list) => Some(list),
    };
    // Before v4 there is no flag and the broker setting alone decides.
    let allow_create = version < 4 || req.allow_auto_topic_creation;
    let mut topics = Vec::new();
    match requested {
        None => {
            for t in broker.topics.all() {
                topics.push(topic_response(broker, &t));
            }
        }
        Some(list) => {
            for requested in list {
                match requested.name {
                    Some(name) => match topic_or_create(broker, name.as_str(), allow_create).await {
                        Ok(t) => topics.push(topic_response(broker, &t)),
                        Err(e) => topics.push(
                            MetadataResponseTopic::default()
                                .with_name(Some(name))
                                .with_error_code(e.code.code()),
                        ),
                    },
                    // v12+: a topic named by id only.
                    None => match broker.topics.get_by_id(requested.topic_id) {
                        Some(t) => topics.push(topic_response(broker, &t)),
                        None => topics.push(
                            MetadataResponseTopic::default()
                                .with_topic_id(requested.topic_id)
                                .with_error_code(ErrorCode::UNKNOWN_TOPIC_ID.code()),
                        ),
                    },
                }
            }
        }
    }
    // KIP-430, as Kafka's handleTopicMetadataRequest: every topic answered by name (found or
    // not) gets the topic operations when asked; one unknown by id keeps the omitted value.
    // The cluster's exists in v8-10 only (DescribeCluster carries it from v11).
    let topic_operations = authorized_operations(ResourceType::Topic, req.include_topic_authorized_operations);
    for t in &mut topics {
        if t.name.is_some() {
            t.topic_authorized_operations = topic_operations;
        }
    }
    let cluster_operations = if (8..=10).contains(&version) {
        authorized_operations(ResourceType::Cluster, req.include_cluster_authorized_operations)
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
    let brokers = broker
        .live_brokers()
        .into_iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(str_bytes(&b.host))
                .with_port(b.port)
                .with_rack(b.rack.as_deref().map(str_bytes))
        })
        .collect();
    let response = MetadataResponse::default()
        .with_cluster_authorized_operations(cluster_operations)
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(&kafka_cluster_id(broker.topics.cluster_id()))))
        .with_controller_id(BrokerId(broker.controller_id()))
        .with_topics(topics);
    Reply::Now(ResponseKind::Metadata(response))
}

pub async fn describe_cluster(broker: &Arc<Broker>, _version: i16, req: DescribeClusterRequest) -> Reply {
    let mut response = DescribeClusterResponse::default()
        .with_endpoint_type(req.endpoint_type)
        .with_cluster_id(str_bytes(&kafka_cluster_id(broker.topics.cluster_id())))
        .with_controller_id(BrokerId(broker.controller_id()))
        .with_cluster_authorized_operations(authorized_operations(ResourceType::Cluster, req.include_cluster_authorized_operations));
    // endpoint_type 1 = brokers; 2 = controllers (KIP-919), which we do not run separately.
    if req.endpoint_type == 2 {
        response = response
            .with_error_code(ErrorCode::UNSUPPORTED_ENDPOINT_TYPE.code())
            .with_error_message(Some(str_bytes("strand runs no separate controller endpoints")));
    } else {
        response = response.with_brokers(
            broker
                .live_brokers()
                .into_iter()
                .map(|b| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.id))
                        .with_host(str_bytes(&b.host))
                        .with_port(b.port)
                        .with_rack(b.rack.as_deref().map(str_bytes))
                })
                .collect(),
        );
    }
    Reply::Now(ResponseKind::DescribeCluster(response))
}

#[cfg(test)]
mod tests {
    #[test]
    fn cluster_id_is_kafka_base64() {
        // Kafka's Uuid.toString: URL-safe base64, no padding.
        let id = uuid::Uuid::from_bytes([0xfb; 16]);
        assert_eq!(super::kafka_cluster_id(id), "-_v7-_v7-_v7-_v7-_v7-w");
        assert_eq!(super::kafka_cluster_id(uuid::Uuid::nil()), "AAAAAAAAAAAAAAAAAAAAAA");
    }

    /// `is_internal` is set for `__consumer_offsets` only: a user topic named `__x` is not.
    #[cfg(not(madsim))]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_the_offsets_topic_is_internal() {
        use kafka_protocol::messages::ResponseKind;

        use crate::server::dispatch::Reply;
        let test = crate::server::TestServer::start("metadata-internal").await;
        let broker = test.broker.clone();
        broker.topics.create("__mine", 1, Default::default()).await.expect("create");
        broker.groups.offsets_topic(&broker.topics).await.expect("offsets topic");
        let all = kafka_protocol::messages::MetadataRequest::default().with_topics(None);
        let Reply::Now(ResponseKind::Metadata(r)) = super::handle(&broker, 12, all).await else { panic!("metadata") };
        let mut internal: Vec<(String, bool)> =
            r.topics.iter().map(|t| (t.name.as_ref().unwrap().as_str().to_string(), t.is_internal)).collect();
        internal.sort();
        assert_eq!(internal, vec![("__consumer_offsets".to_string(), true), ("__mine".to_string(), false)]);
        test.stop().await;
    }

    /// KIP-430 (issue 21): the full sets of a broker without an authorizer when asked, the
    /// schemas' -2147483648 when not; the cluster's in Metadata only for v8-10.
    #[cfg(not(madsim))]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn authorized_operations_only_when_asked() {
        use kafka_protocol::messages::{DescribeClusterRequest, MetadataRequest, ResponseKind};

        use crate::protocol::acl::{authorized_operations, ResourceType, AUTHORIZED_OPERATIONS_OMITTED};
        use crate::server::dispatch::Reply;
        let test = crate::server::TestServer::start("metadata-acl-ops").await;
        let broker = test.broker.clone();
        broker.topics.create("ops", 1, Default::default()).await.expect("create");
        let (topic_ops, cluster_ops) =
            (authorized_operations(ResourceType::Topic, true), authorized_operations(ResourceType::Cluster, true));
        for (version, include, want_topic, want_cluster) in [
            (9, false, AUTHORIZED_OPERATIONS_OMITTED, AUTHORIZED_OPERATIONS_OMITTED),
            (9, true, topic_ops, cluster_ops),
            (12, true, topic_ops, AUTHORIZED_OPERATIONS_OMITTED),
        ] {
            let req = MetadataRequest::default()
                .with_topics(None)
                .with_include_topic_authorized_operations(include)
                .with_include_cluster_authorized_operations(include && version <= 10);
            let Reply::Now(ResponseKind::Metadata(r)) = super::handle(&broker, version, req).await else { panic!("metadata") };
            assert_eq!(r.topics[0].topic_authorized_operations, want_topic, "v{version} include {include}");
            assert_eq!(r.cluster_authorized_operations, want_cluster, "v{version} include {include}");
        }
        for include in [false, true] {
            let req = DescribeClusterRequest::default().with_include_cluster_authorized_operations(include).with_endpoint_type(1);
            let Reply::Now(ResponseKind::DescribeCluster(r)) = super::describe_cluster(&broker, 1, req).await else { panic!("describe cluster") };
            assert_eq!(r.cluster_authorized_operations, if include { cluster_ops } else { AUTHORIZED_OPERATIONS_OMITTED });
        }
        test.stop().await;
    }
}
