//! ApiKey -> handler. The table below is also the ApiVersions answer, so what we advertise and
//! what we handle cannot drift.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseKind};

use super::handlers;
use super::Broker;
use crate::protocol::errors::ErrorCode;

/// What a handler produced.
pub enum Reply {
    /// A response ready now.
    Now(ResponseKind),
    /// A response that waits (produce durability, fetch long-poll). Resolved in request order.
    Later(Pin<Box<dyn Future<Output = ResponseKind> + Send>>),
    /// No response on the wire (produce with acks=0).
    NoResponse,
    /// Close the connection (e.g. an acks=0 produce that failed, as Kafka does).
    Close,
    /// The request body did not decode: close the connection.
    Malformed(String),
}

/// Supported APIs and versions: (key, min, max). Each range lies within what kafka-protocol
/// can decode (checked in a test).
const APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::FindCoordinator, 0, 5),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
];

/// The supported (key, min, max) list, for ApiVersions and tools.
pub fn supported_apis() -> &'static [(ApiKey, i16, i16)] {
    APIS
}

pub fn version_range(api_key: ApiKey) -> Option<(i16, i16)> {
    APIS.iter().find(|(k, _, _)| *k == api_key).map(|(_, min, max)| (*min, *max))
}

fn api_version_list() -> Vec<ApiVersion> {
    APIS.iter()
        .map(|(k, min, max)| ApiVersion::default().with_api_key(*k as i16).with_min_version(*min).with_max_version(*max))
        .collect()
}

/// KIP-511: the reply to an ApiVersions request of a version we do not know, sent as v0.
pub fn api_versions_fallback() -> ResponseKind {
    ResponseKind::ApiVersions(
        ApiVersionsResponse::default()
            .with_error_code(ErrorCode::UNSUPPORTED_VERSION.code())
            .with_api_keys(api_version_list()),
    )
}

pub async fn handle(
    broker: &Arc<Broker>,
    api_key: ApiKey,
    api_version: i16,
    header: &RequestHeader,
    peer: std::net::SocketAddr,
    body: &mut Bytes,
) -> Reply {
    let request = match RequestKind::decode(api_key, body, api_version) {
        Ok(r) => r,
        Err(e) => return Reply::Malformed(format!("{e:#}")),
    };
    match request {
        RequestKind::ApiVersions(_) => {
            Reply::Now(ResponseKind::ApiVersions(ApiVersionsResponse::default().with_api_keys(api_version_list())))
        }
        RequestKind::Metadata(r) => handlers::metadata::handle(broker, api_version, r).await,
        RequestKind::Produce(r) => handlers::produce::handle(broker, api_version, r).await,
        RequestKind::Fetch(r) => handlers::fetch::handle(broker, api_version, r).await,
        RequestKind::ListOffsets(r) => handlers::list_offsets::handle(broker, api_version, r).await,
        RequestKind::CreateTopics(r) => handlers::admin::create_topics(broker, api_version, r).await,
        RequestKind::DeleteTopics(r) => handlers::admin::delete_topics(broker, api_version, r).await,
        RequestKind::CreatePartitions(r) => handlers::admin::create_partitions(broker, api_version, r).await,
        RequestKind::DeleteRecords(r) => handlers::admin::delete_records(broker, api_version, r).await,
        RequestKind::OffsetForLeaderEpoch(r) => handlers::epochs::offset_for_leader_epoch(broker, api_version, r).await,
        RequestKind::DescribeConfigs(r) => handlers::configs::describe(broker, api_version, r).await,
        RequestKind::AlterConfigs(r) => handlers::configs::alter(broker, api_version, r).await,
        RequestKind::IncrementalAlterConfigs(r) => handlers::configs::incremental_alter(broker, api_version, r).await,
        RequestKind::DescribeCluster(r) => handlers::metadata::describe_cluster(broker, api_version, r).await,
        RequestKind::InitProducerId(r) => handlers::producer_id::init_producer_id(broker, api_version, r).await,
        RequestKind::FindCoordinator(r) => handlers::groups::find_coordinator(broker, api_version, r).await,
        RequestKind::JoinGroup(r) => handlers::groups::join_group(broker, api_version, header, peer, r).await,
        RequestKind::SyncGroup(r) => handlers::groups::sync_group(broker, api_version, r).await,
        RequestKind::Heartbeat(r) => handlers::groups::heartbeat(broker, api_version, r).await,
        RequestKind::LeaveGroup(r) => handlers::groups::leave_group(broker, api_version, r).await,
        RequestKind::OffsetCommit(r) => handlers::groups::offset_commit(broker, api_version, r).await,
        RequestKind::OffsetFetch(r) => handlers::groups::offset_fetch(broker, api_version, r).await,
        RequestKind::DescribeGroups(r) => handlers::groups::describe_groups(broker, api_version, r).await,
        RequestKind::ListGroups(r) => handlers::groups::list_groups(broker, api_version, r).await,
        RequestKind::DeleteGroups(r) => handlers::groups::delete_groups(broker, api_version, r).await,
        RequestKind::OffsetDelete(r) => handlers::groups::offset_delete(broker, api_version, r).await,
        RequestKind::ConsumerGroupHeartbeat(r) => handlers::groups::consumer_group_heartbeat(broker, api_version, header, peer, r).await,
        RequestKind::ConsumerGroupDescribe(r) => handlers::groups::consumer_group_describe(broker, api_version, r).await,
        _ => Reply::Malformed(format!("{api_key:?} is not supported")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_versions_are_decodable() {
        for (k, min, max) in APIS {
            let crate_range = k.valid_versions();
            assert!(crate_range.min <= *min && *max <= crate_range.max, "{k:?} {min}..{max} vs {crate_range}");
        }
    }
}
