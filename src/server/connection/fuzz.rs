//! Mutated requests of every supported API and version, through the same decode -> handle ->
//! encode path a connection uses: whatever the bytes, the broker answers with a response that
//! encodes, or closes the connection; it never panics (and this debug build also traps
//! arithmetic overflow on values taken from requests).
//!
//! Seeds are real requests (a populated one for the APIs clients use most, the default for the
//! rest), encoded at each supported version; each case applies 1-4 mutations: bit flips,
//! "interesting" bytes and 32-bit values (0, -1, MAX, MIN: the usual lengths and counts),
//! truncation, a duplicated slice, or random bytes appended. The generator is a seeded
//! xorshift, so a failing case is replayed by its printed case number.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::{decode_and_handle, encode_response};
use crate::server::dispatch::{supported_apis, Reply};
use crate::server::Broker;

/// Cases per run: about 15 s in a debug build on the development VM (120,000 cases with
/// another seed also passed when this was written).
const CASES: u64 = 12_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

const TOPIC: &str = "fuzz";

/// A populated request for the APIs whose handlers read the most fields, the default for the
/// rest. Fields a version does not have make its encoding fail; the default is used there.
fn seed(key: ApiKey) -> RequestKind {
    let topic = || TopicName(s(TOPIC));
    match key {
        ApiKey::Produce => RequestKind::Produce(
            ProduceRequest::default().with_acks(-1).with_timeout_ms(1_000).with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(topic())
                .with_partition_data(vec![produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(crate::protocol::batch::build_simple_batch(0, 1_700_000_000_000, &[b"a", b"bc"])))])]),
        ),
        ApiKey::Fetch => RequestKind::Fetch(
            FetchRequest::default().with_replica_id((-1).into()).with_max_wait_ms(0).with_max_bytes(1 << 20).with_session_epoch(-1).with_topics(vec![
                fetch_request::FetchTopic::default().with_topic(topic()).with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)]),
            ]),
        ),
        ApiKey::ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::default().with_replica_id((-1).into()).with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic())
                .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1)]),
        ])),
        ApiKey::Metadata => RequestKind::Metadata(
            MetadataRequest::default()
                .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default().with_name(Some(topic()))]))
                .with_allow_auto_topic_creation(true),
        ),
        ApiKey::CreateTopics => RequestKind::CreateTopics(CreateTopicsRequest::default().with_timeout_ms(1_000).with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(TopicName(s("fuzz-created")))
                .with_num_partitions(1)
                .with_replication_factor(1)
                .with_configs(vec![create_topics_request::CreatableTopicConfig::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("60000")))]),
        ])),
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default().with_resource_type(2).with_resource_name(s(TOPIC)),
        ])),
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default().with_resource_type(2).with_resource_name(s(TOPIC)).with_configs(vec![
                incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(s("retention.ms"))
                    .with_config_operation(0)
                    .with_value(Some(s("60000"))),
            ]),
        ])),
        ApiKey::DeleteRecords => RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_timeout_ms(1_000).with_topics(vec![
            delete_records_request::DeleteRecordsTopic::default()
                .with_name(topic())
                .with_partitions(vec![delete_records_request::DeleteRecordsPartition::default().with_partition_index(0).with_offset(1)]),
        ])),
        ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
            offset_for_leader_epoch_request::OffsetForLeaderTopic::default().with_topic(topic()).with_partitions(vec![
                offset_for_leader_epoch_request::OffsetForLeaderPartition::default().with_partition(0).with_current_leader_epoch(-1).with_leader_epoch(0),
            ]),
        ])),
        ApiKey::AlterConfigs => RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
            alter_configs_request::AlterConfigsResource::default().with_resource_type(2).with_resource_name(s(TOPIC)).with_configs(vec![
                alter_configs_request::AlterableConfig::default().with_name(s("retention.ms")).with_value(Some(s("60000"))),
            ]),
        ])),
        ApiKey::JoinGroup => RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_session_timeout_ms(6_000)
                .with_rebalance_timeout_ms(100)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(crate::group::encode_subscription(&[TOPIC]))]),
        ),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(
            OffsetCommitRequest::default().with_group_id(GroupId(s("g"))).with_generation_id_or_member_epoch(-1).with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default().with_name(topic()).with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(1),
                ]),
            ]),
        ),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(OffsetFetchRequest::default().with_group_id(GroupId(s("g"))).with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default().with_name(topic()).with_partition_indexes(vec![0]),
        ]))),
        ApiKey::ConsumerGroupHeartbeat => RequestKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s("g2")))
                .with_member_id(s("m"))
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(100)
                .with_subscribed_topic_names(Some(vec![topic()])),
        ),
        other => default_request(other),
    }
}

fn default_request(key: ApiKey) -> RequestKind {
    match key {
        ApiKey::Produce => RequestKind::Produce(Default::default()),
        ApiKey::Fetch => RequestKind::Fetch(Default::default()),
        ApiKey::ListOffsets => RequestKind::ListOffsets(Default::default()),
        ApiKey::Metadata => RequestKind::Metadata(Default::default()),
        ApiKey::ApiVersions => RequestKind::ApiVersions(Default::default()),
        ApiKey::CreateTopics => RequestKind::CreateTopics(Default::default()),
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(Default::default()),
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(Default::default()),
        ApiKey::CreatePartitions => RequestKind::CreatePartitions(Default::default()),
        ApiKey::DeleteRecords => RequestKind::DeleteRecords(Default::default()),
        ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(Default::default()),
        ApiKey::AlterConfigs => RequestKind::AlterConfigs(Default::default()),
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(Default::default()),
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(Default::default()),
        ApiKey::InitProducerId => RequestKind::InitProducerId(Default::default()),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(Default::default()),
        ApiKey::JoinGroup => RequestKind::JoinGroup(Default::default()),
        ApiKey::SyncGroup => RequestKind::SyncGroup(Default::default()),
        ApiKey::Heartbeat => RequestKind::Heartbeat(Default::default()),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(Default::default()),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(Default::default()),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(Default::default()),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(Default::default()),
        ApiKey::ListGroups => RequestKind::ListGroups(Default::default()),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(Default::default()),
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(Default::default()),
        ApiKey::ConsumerGroupHeartbeat => RequestKind::ConsumerGroupHeartbeat(Default::default()),
        ApiKey::ConsumerGroupDescribe => RequestKind::ConsumerGroupDescribe(Default::default()),
        other => panic!("no default request for {other:?}: add it here"),
    }
}

/// Header and body of `request` at `version`, as the connection hands them to the handler
/// (after the size prefix).
fn frame(key: ApiKey, version: i16, request: &RequestKind) -> Option<Vec<u8>> {
    let mut buf = BytesMut::new();
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(s("fuzz")));
    header.encode(&mut buf, key.request_header_version(version)).ok()?;
    request.encode(&mut buf, version).ok()?;
    Some(buf.to_vec())
}

fn mutate(rng: &mut Rng, mut f: Vec<u8>) -> Vec<u8> {
    const BYTES: [u8; 6] = [0x00, 0xff, 0x7f, 0x80, 0x01, 0xfe];
    const WORDS: [i32; 7] = [0, -1, -2, i32::MAX, i32::MIN, 1 << 20, 0x7fff];
    for _ in 0..1 + rng.below(4) {
        // Keep the API key and version (4 bytes): changing them only tests the closing paths.
        if f.len() <= 4 {
            break;
        }
        let at = 4 + rng.below(f.len() - 4);
        match rng.below(6) {
            0 => f[at] ^= 1 << rng.below(8),
            1 => f[at] = BYTES[rng.below(BYTES.len())],
            2 if f.len() >= at + 4 => f[at..at + 4].copy_from_slice(&WORDS[rng.below(WORDS.len())].to_be_bytes()),
            3 => f.truncate(at),
            4 => {
                let end = (at + 1 + rng.below(16)).min(f.len());
                let copy = f[at..end].to_vec();
                f.splice(at..at, copy);
            }
            _ => f.extend((0..1 + rng.below(16)).map(|_| rng.next() as u8)),
        }
    }
    // The connection hands on only frames of at least the 8 header bytes it reads first.
    f.resize(f.len().max(8), 0);
    f
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Answered,
    Closed,
    StillWaiting,
}

async fn run_case(broker: &Arc<Broker>, key: ApiKey, version: i16, bytes: Vec<u8>, case: u64) -> Outcome {
    let peer: SocketAddr = "127.0.0.1:9".parse().expect("static address");
    let mut body = Bytes::from(bytes.clone());
    let what = || format!("case {case}: {key:?} v{version} {bytes:02x?}");
    let handled = tokio::time::timeout(Duration::from_secs(10), decode_and_handle(broker, &mut body, peer)).await;
    let Some((api_key, api_version, correlation_id, reply)) = handled.unwrap_or_else(|_| panic!("handler hung: {}", what())) else {
        return Outcome::Closed; // a malformed request
    };
    let response = match reply {
        Reply::Now(r) => r,
        // Long-polls may legitimately wait as long as the request asks; give them a moment.
        Reply::Later(fut) => match tokio::time::timeout(Duration::from_millis(200), fut).await {
            Ok(r) => r,
            Err(_) => return Outcome::StillWaiting,
        },
        Reply::NoResponse | Reply::Close | Reply::Malformed(_) => return Outcome::Closed,
    };
    if let Err(e) = encode_response(api_key, api_version, correlation_id, &response) {
        panic!("the response does not encode ({e:#}): {}", what());
    }
    Outcome::Answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_requests_of_every_api_get_an_answer_or_a_close_never_a_panic() {
    let dir = std::env::temp_dir().join(format!("strand-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = crate::config::BrokerConfig {
        listen: "127.0.0.1:0".parse().expect("static address"),
        data_dir: dir.clone(),
        ..Default::default()
    };
    let server = crate::server::start(crate::runtime::Runtime::real(), config).await.expect("broker starts");
    let broker = server.broker().clone();
    // The seeds' topic exists, so produce and fetch reach the log.
    let create = RequestKind::CreateTopics(CreateTopicsRequest::default().with_timeout_ms(1_000).with_topics(vec![
        create_topics_request::CreatableTopic::default().with_name(TopicName(s(TOPIC))).with_num_partitions(2).with_replication_factor(1),
    ]));
    let created = run_case(&broker, ApiKey::CreateTopics, 5, frame(ApiKey::CreateTopics, 5, &create).expect("encodes"), u64::MAX).await;
    assert_eq!(created, Outcome::Answered);

    let mut seeds = Vec::new();
    for &(key, min, max) in supported_apis() {
        for version in min..=max {
            let f = frame(key, version, &seed(key)).or_else(|| frame(key, version, &default_request(key)));
            seeds.push((key, version, f.unwrap_or_else(|| panic!("{key:?} v{version}: the default request does not encode"))));
        }
    }
    // Every seed, unmutated, is a valid request: answered (a JoinGroup may still be waiting
    // for its rebalance), never closed.
    for (case, (key, version, bytes)) in seeds.iter().enumerate() {
        let outcome = run_case(&broker, *key, *version, bytes.clone(), case as u64).await;
        assert_ne!(outcome, Outcome::Closed, "{key:?} v{version}: a valid request closed the connection");
    }
    let mut rng = Rng(0x5eed_f00d_0bad_cafe);
    let (mut answered, mut closed) = (0u64, 0u64);
    for case in seeds.len() as u64..CASES {
        let (key, version, seed) = &seeds[rng.below(seeds.len())];
        match run_case(&broker, *key, *version, mutate(&mut rng, seed.clone()), case).await {
            Outcome::Answered => answered += 1,
            Outcome::Closed => closed += 1,
            Outcome::StillWaiting => {}
        }
    }
    // Not vacuous: mutations both get through the decoder to a handler and get refused by it.
    let cases = CASES - seeds.len() as u64;
    assert!(answered > cases / 10 && closed > cases / 10, "{answered} answered, {closed} closed of {cases}");
    server.shutdown().await.expect("clean shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}
