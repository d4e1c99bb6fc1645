//! Bad and borderline input to the group coordinator, spoken directly in the Kafka protocol
//! with strand's own client: each request gets the error code Kafka's GroupCoordinator would
//! answer, garbage closes only its own connection, and the broker neither panics nor stops.
#![cfg(not(madsim))]

mod common;

use std::io::Write;
use std::net::TcpStream;

use bytes::{BufMut, Bytes, BytesMut};
use common::Broker;
use kafka_protocol::messages::consumer_group_heartbeat_request::ConsumerGroupHeartbeatRequest;
use kafka_protocol::messages::consumer_group_heartbeat_response::ConsumerGroupHeartbeatResponse;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, DeleteGroupsRequest, DeleteTopicsRequest, DescribeGroupsRequest, FindCoordinatorRequest, GroupId,
    HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, MetadataRequest, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetFetchRequest, ProduceRequest, RequestHeader, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use strand::client::Client;

const BROKER_CONFIG: &[&str] = &["group_initial_rebalance_delay_ms = 0"];
const TOPIC: &str = "gbad-topic";

// Kafka error codes (apache/kafka Errors.java), as in src/protocol/errors.rs.
const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const ILLEGAL_GENERATION: i16 = 22;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const INVALID_GROUP_ID: i16 = 24;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INVALID_SESSION_TIMEOUT: i16 = 26;
const INVALID_REQUEST: i16 = 42;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const MEMBER_ID_REQUIRED: i16 = 79;
const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
const FENCED_MEMBER_EPOCH: i16 = 110;
const UNSUPPORTED_ASSIGNOR: i16 = 112;

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn gid(s: &str) -> GroupId {
    GroupId(sb(s))
}

fn tname(s: &str) -> TopicName {
    TopicName(sb(s))
}

fn subscription(topics: &[&str]) -> Bytes {
    strand::group::encode_subscription(topics)
}

fn join_request(group: &str, member: &str, protocol_type: &str, session_timeout_ms: i32) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_member_id(sb(member))
        .with_session_timeout_ms(session_timeout_ms)
        .with_rebalance_timeout_ms(30_000)
        .with_protocol_type(sb(protocol_type))
        .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(sb("range")).with_metadata(subscription(&[TOPIC]))])
}

/// JoinGroup at `version`.
async fn join(c: &mut Client, version: i16, req: &JoinGroupRequest) -> JoinGroupResponse {
    c.send_at(req, version).await.unwrap_or_else(|e| panic!("JoinGroup v{version}: {e:#}"))
}

async fn heartbeat(c: &mut Client, group: &str, member: &str, generation: i32) -> i16 {
    let req = HeartbeatRequest::default().with_group_id(gid(group)).with_member_id(sb(member)).with_generation_id(generation);
    c.send(&req, 4).await.unwrap().1.error_code
}

async fn commit(c: &mut Client, version: i16, group: &str, member: &str, generation: i32, parts: &[(&str, i32, i64)]) -> OffsetCommitResponse {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (t, p, o) in parts {
        let part = OffsetCommitRequestPartition::default().with_partition_index(*p).with_committed_offset(*o).with_committed_leader_epoch(-1);
        match topics.iter_mut().find(|x| x.name.0.as_str() == *t) {
            Some(x) => x.partitions.push(part),
            None => topics.push(OffsetCommitRequestTopic::default().with_name(tname(t)).with_partitions(vec![part])),
        }
    }
    let req = OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_member_id(sb(member))
        .with_generation_id_or_member_epoch(generation)
        .with_retention_time_ms(-1)
        .with_topics(topics);
    c.send_at(&req, version).await.unwrap_or_else(|e| panic!("OffsetCommit v{version}: {e:#}"))
}

/// (topic, partition, error) of every partition in an OffsetCommit response.
fn commit_errors(r: &OffsetCommitResponse) -> Vec<(String, i32, i16)> {
    r.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), p.partition_index, p.error_code)))
        .collect()
}

/// OffsetFetch v7 (single group, group-level error code): (error, [(topic, partition, offset, partition error)]).
async fn fetch_v7(c: &mut Client, group: &str, parts: &[(&str, i32)]) -> (i16, Vec<(String, i32, i64, i16)>) {
    let topics =
        parts.iter().map(|(t, p)| OffsetFetchRequestTopic::default().with_name(tname(t)).with_partition_indexes(vec![*p])).collect();
    let req = OffsetFetchRequest::default().with_group_id(gid(group)).with_topics(Some(topics));
    let r = c.send_at(&req, 7).await.unwrap();
    let found = r
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), p.partition_index, p.committed_offset, p.error_code)))
        .collect();
    (r.error_code, found)
}

fn cgh_join(group: &str, topics: Option<&[&str]>, assignor: Option<&str>) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(gid(group))
        .with_member_id(sb(""))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(topics.map(|ts| ts.iter().map(|t| tname(t)).collect()))
        .with_server_assignor(assignor.map(sb))
        .with_topic_partitions(Some(Vec::new()))
}

async fn cgh(c: &mut Client, req: &ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
    c.send(req, 1).await.unwrap_or_else(|e| panic!("ConsumerGroupHeartbeat: {e:#}")).1
}

fn batch(value: &'static str) -> Bytes {
    strand::protocol::batch::build_simple_batch(0, 1_700_000_000_000, &[value.as_bytes()])
}

/// A JoinGroup v5 frame with a valid header whose body stops in the middle of the group id.
fn truncated_join_frame() -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(ApiKey::JoinGroup as i16)
        .with_request_api_version(5)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("garbage")))
        .encode(&mut buf, ApiKey::JoinGroup.request_header_version(5))
        .unwrap();
    buf.put_i16(40); // group id: 40 bytes announced ...
    buf.put_slice(b"only-ten.."); // ... 10 sent, and the frame ends here
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.to_vec()
}


#[tokio::test(flavor = "multi_thread")]
async fn group_coordinator_answers_bad_input_like_kafka() {
    let mut broker = Broker::start_with("group-bad-input", BROKER_CONFIG);
    let addr = broker.addr();
    let mut c = Client::connect(&addr).await.unwrap();

    let created = c
        .send(
            &CreateTopicsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![CreatableTopic::default().with_name(tname(TOPIC)).with_num_partitions(2).with_replication_factor(1)]),
            5,
        )
        .await
        .unwrap()
        .1;
    assert_eq!(created.topics[0].error_code, NONE, "create {TOPIC}: {:?}", created.topics[0].error_message);

    // ---- JoinGroup validation ----
    let r = join(&mut c, 5, &join_request("", "", "consumer", 30_000)).await;
    assert_eq!(r.error_code, INVALID_GROUP_ID, "empty group id");
    let long = "g".repeat(4097);
    let r = join(&mut c, 5, &join_request(&long, "", "consumer", 30_000)).await;
    assert_eq!(r.error_code, INVALID_GROUP_ID, "group id of 4097 bytes");
    let r = join(&mut c, 5, &join_request("g1", "", "consumer", 5_999)).await;
    assert_eq!(r.error_code, INVALID_SESSION_TIMEOUT, "session timeout below group.min.session.timeout.ms");
    let r = join(&mut c, 5, &join_request("g1", "", "consumer", 1_800_001)).await;
    assert_eq!(r.error_code, INVALID_SESSION_TIMEOUT, "session timeout above group.max.session.timeout.ms");
    // The refused joins created nothing.
    let d = c.send(&DescribeGroupsRequest::default().with_groups(vec![gid("g1")]), 5).await.unwrap().1;
    assert_eq!(d.groups[0].group_state.as_str(), "Dead", "g1 after refused joins");

    // ---- KIP-394: v4+ joins first get a member id ----
    let r = join(&mut c, 5, &join_request("g1", "", "consumer", 30_000)).await;
    assert_eq!(r.error_code, MEMBER_ID_REQUIRED, "first v5 join with an empty member id");
    let member = r.member_id.to_string();
    assert!(!member.is_empty(), "MEMBER_ID_REQUIRED carries the member id");
    let r = join(&mut c, 5, &join_request("g1", &member, "consumer", 30_000)).await;
    assert_eq!(r.error_code, NONE, "join with the given member id");
    assert_eq!(r.generation_id, 1);
    assert_eq!(r.member_id.as_str(), member);
    assert_eq!(r.leader.as_str(), member, "the only member leads");
    assert_eq!(r.protocol_name.as_ref().map(|p| p.as_str()), Some("range"));
    assert_eq!(r.members.len(), 1, "the leader learns the members");
    assert_eq!(r.members[0].metadata, subscription(&[TOPIC]));

    // A second member speaking another protocol type.
    let mut c2 = Client::connect(&addr).await.unwrap();
    let r = join(&mut c2, 5, &join_request("g1", "", "connect", 30_000)).await;
    assert_eq!(r.error_code, INCONSISTENT_GROUP_PROTOCOL, "second member with protocol type 'connect'");
    // A member id the group never handed out.
    let r = join(&mut c2, 5, &join_request("g1", "nobody", "consumer", 30_000)).await;
    assert_eq!(r.error_code, UNKNOWN_MEMBER_ID, "join with an unknown member id");

    // ---- Heartbeat / SyncGroup ----
    assert_eq!(heartbeat(&mut c, "g1", &member, 2).await, ILLEGAL_GENERATION, "heartbeat with generation 2 (current 1)");
    assert_eq!(heartbeat(&mut c, "g1", "nobody", 1).await, UNKNOWN_MEMBER_ID, "heartbeat from an unknown member");
    let sync = |m: &str, generation: i32| {
        SyncGroupRequest::default().with_group_id(gid("g1")).with_member_id(sb(m)).with_generation_id(generation).with_assignments(vec![
            SyncGroupRequestAssignment::default().with_member_id(sb(m)).with_assignment(Bytes::from_static(b"\0\0\0\0\0\0\xff\xff\xff\xff")),
        ])
    };
    let r = c2.send(&sync("nobody", 1), 5).await.unwrap().1;
    assert_eq!(r.error_code, UNKNOWN_MEMBER_ID, "sync from an unknown member");
    let r = c.send(&sync(&member, 1), 5).await.unwrap().1;
    assert_eq!(r.error_code, NONE, "leader's sync");
    assert_eq!(heartbeat(&mut c, "g1", &member, 1).await, NONE, "heartbeat of the stable member");

    // ---- OffsetCommit ----
    let r = commit(&mut c, 8, "g1", &member, 1, &[(TOPIC, 0, 7), ("no-such-topic", 0, 1), (TOPIC, 9, 1)]).await;
    assert_eq!(
        commit_errors(&r),
        vec![
            (TOPIC.to_string(), 0, NONE),
            (TOPIC.to_string(), 9, UNKNOWN_TOPIC_OR_PARTITION),
            ("no-such-topic".to_string(), 0, UNKNOWN_TOPIC_OR_PARTITION)
        ],
        "commit of a valid partition next to an unknown topic and an unknown partition"
    );
    let (e, found) = fetch_v7(&mut c, "g1", &[(TOPIC, 0), (TOPIC, 1)]).await;
    assert_eq!(e, NONE);
    assert_eq!(found, vec![(TOPIC.to_string(), 0, 7, NONE), (TOPIC.to_string(), 1, -1, NONE)], "g1's offsets after the commit");
    // A non-member with generation 5. Kafka validates the member before the generation.
    let r = commit(&mut c2, 8, "g1", "stranger", 5, &[(TOPIC, 0, 100)]).await;
    assert_eq!(commit_errors(&r), vec![(TOPIC.to_string(), 0, UNKNOWN_MEMBER_ID)], "commit from a non-member of g1");
    let r = commit(&mut c2, 8, "g1", &member, 5, &[(TOPIC, 0, 100)]).await;
    assert_eq!(commit_errors(&r), vec![(TOPIC.to_string(), 0, ILLEGAL_GENERATION)], "commit from the member with generation 5");
    // A group that does not exist: before v9 ILLEGAL_GENERATION, from v9 GROUP_ID_NOT_FOUND
    // (Kafka's OffsetMetadataManager.validateOffsetCommit); either way nothing is stored.
    let r = commit(&mut c2, 8, "g-none", "stranger", 5, &[(TOPIC, 0, 100)]).await;
    assert_eq!(commit_errors(&r), vec![(TOPIC.to_string(), 0, ILLEGAL_GENERATION)], "v8 commit with generation 5 to an unknown group");
    let r = commit(&mut c2, 9, "g-none", "stranger", 5, &[(TOPIC, 0, 100), ("no-such-topic", 0, 1)]).await;
    assert_eq!(
        commit_errors(&r),
        vec![(TOPIC.to_string(), 0, GROUP_ID_NOT_FOUND), ("no-such-topic".to_string(), 0, UNKNOWN_TOPIC_OR_PARTITION)],
        "v9 commit with generation 5 to an unknown group"
    );
    let (e, found) = fetch_v7(&mut c, "g1", &[(TOPIC, 0)]).await;
    assert_eq!((e, found), (NONE, vec![(TOPIC.to_string(), 0, 7, NONE)]), "refused commits changed nothing");
    // Generation -1 is a commit from outside group management (admin tools, assign()): it
    // creates a simple group, whatever member id it names.
    let r = commit(&mut c2, 8, "g-simple", "loner", -1, &[(TOPIC, 1, 4)]).await;
    assert_eq!(commit_errors(&r), vec![(TOPIC.to_string(), 1, NONE)], "commit with generation -1 to a new group");
    let (_, found) = fetch_v7(&mut c, "g-simple", &[(TOPIC, 1)]).await;
    assert_eq!(found, vec![(TOPIC.to_string(), 1, 4, NONE)]);

    // ---- OffsetFetch / DescribeGroups of an unknown group ----
    let (e, found) = fetch_v7(&mut c, "g-unknown", &[(TOPIC, 0), (TOPIC, 1)]).await;
    assert_eq!(e, NONE, "OffsetFetch v7 of an unknown group");
    assert_eq!(found, vec![(TOPIC.to_string(), 0, -1, NONE), (TOPIC.to_string(), 1, -1, NONE)]);
    let req = OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
        .with_group_id(gid("g-unknown"))
        .with_topics(Some(vec![OffsetFetchRequestTopics::default().with_name(tname(TOPIC)).with_partition_indexes(vec![0, 1])]))]);
    let r = c.send_at(&req, 8).await.unwrap();
    assert_eq!(r.groups.len(), 1);
    assert_eq!(r.groups[0].error_code, NONE, "OffsetFetch v8 of an unknown group");
    let offsets: Vec<(i32, i64, i16)> =
        r.groups[0].topics.iter().flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, p.committed_offset, p.error_code))).collect();
    assert_eq!(offsets, vec![(0, -1, NONE), (1, -1, NONE)]);
    let d = c.send(&DescribeGroupsRequest::default().with_groups(vec![gid("g-unknown"), gid("g-none"), gid("g1")]), 5).await.unwrap().1;
    let states: Vec<(i16, &str)> = d.groups.iter().map(|g| (g.error_code, g.group_state.as_str())).collect();
    assert_eq!(states, vec![(NONE, "Dead"), (NONE, "Dead"), (NONE, "Stable")], "describe unknown, refused-commit and live groups");
    assert_eq!(d.groups[2].members.len(), 1);

    // ---- DeleteGroups / OffsetDelete ----
    let r = c.send(&DeleteGroupsRequest::default().with_groups_names(vec![gid("g1"), gid("g-unknown")]), 2).await.unwrap().1;
    let results: Vec<(&str, i16)> = r.results.iter().map(|x| (x.group_id.0.as_str(), x.error_code)).collect();
    assert_eq!(results, vec![("g1", NON_EMPTY_GROUP), ("g-unknown", GROUP_ID_NOT_FOUND)]);
    let od = |group: &str| {
        OffsetDeleteRequest::default().with_group_id(gid(group)).with_topics(vec![OffsetDeleteRequestTopic::default()
            .with_name(tname(TOPIC))
            .with_partitions(vec![OffsetDeleteRequestPartition::default().with_partition_index(0)])])
    };
    let r = c.send(&od("g1"), 0).await.unwrap().1;
    assert_eq!(r.error_code, NONE, "OffsetDelete on g1: group-level error");
    assert_eq!(r.topics[0].partitions[0].error_code, GROUP_SUBSCRIBED_TO_TOPIC, "OffsetDelete of a subscribed topic");
    let r = c.send(&od("g-unknown"), 0).await.unwrap().1;
    assert_eq!(r.error_code, GROUP_ID_NOT_FOUND, "OffsetDelete on an unknown group");
    let (_, found) = fetch_v7(&mut c, "g1", &[(TOPIC, 0)]).await;
    assert_eq!(found, vec![(TOPIC.to_string(), 0, 7, NONE)], "the subscribed offset was not deleted");

    // ---- ConsumerGroupHeartbeat (KIP-848) ----
    let mut c3 = Client::connect(&addr).await.unwrap();
    let r = cgh(&mut c3, &cgh_join("", Some(&[TOPIC]), None)).await;
    assert_eq!(r.error_code, INVALID_REQUEST, "KIP-848 join with an empty group id: {:?}", r.error_message);
    let r = cgh(&mut c3, &cgh_join("cg", None, None)).await;
    assert_eq!(r.error_code, INVALID_REQUEST, "joining without subscribed_topic_names: {:?}", r.error_message);
    let r = cgh(&mut c3, &cgh_join("cg", Some(&[TOPIC]), Some("no-such-assignor"))).await;
    assert_eq!(r.error_code, UNSUPPORTED_ASSIGNOR, "unknown server assignor: {:?}", r.error_message);
    let r = cgh(&mut c3, &cgh_join("cg", Some(&[TOPIC]), None)).await;
    assert_eq!(r.error_code, NONE, "join: {:?}", r.error_message);
    let cg_member = r.member_id.as_ref().map(|m| m.to_string()).unwrap_or_default();
    assert!(!cg_member.is_empty(), "the coordinator chose a member id");
    assert!(r.member_epoch >= 1, "epoch after joining: {}", r.member_epoch);
    let epoch = r.member_epoch;
    let wrong =
        ConsumerGroupHeartbeatRequest::default().with_group_id(gid("cg")).with_member_id(sb(&cg_member)).with_member_epoch(epoch + 5);
    let r = cgh(&mut c3, &wrong).await;
    assert_eq!(r.error_code, FENCED_MEMBER_EPOCH, "heartbeat with epoch {} (current {epoch}): {:?}", epoch + 5, r.error_message);
    // Kafka without online migration (group.consumer.migration.policy=disabled, or before 3.8):
    // a classic group with members is not a consumer group.
    let r = cgh(&mut c3, &cgh_join("g1", Some(&[TOPIC]), None)).await;
    assert_eq!(r.error_code, GROUP_ID_NOT_FOUND, "KIP-848 join of the classic group g1: {:?}", r.error_message);
    assert_eq!(heartbeat(&mut c, "g1", &member, 1).await, NONE, "g1 is untouched by the refused KIP-848 join");

    // ---- A truncated JoinGroup closes only its own connection ----
    let mut raw = TcpStream::connect(&addr).unwrap();
    raw.write_all(&truncated_join_frame()).unwrap();
    assert!(common::closed_by_broker(&mut raw), "a truncated JoinGroup body should close the connection");
    assert!(broker.is_running(), "broker died on a truncated JoinGroup:\n{}", broker.log_tail());
    assert_eq!(heartbeat(&mut c, "g1", &member, 1).await, NONE, "g1's member on its own connection after the garbage");
    let r = commit(&mut c, 8, "g1", &member, 1, &[(TOPIC, 1, 3)]).await;
    assert_eq!(commit_errors(&r), vec![(TOPIC.to_string(), 1, NONE)], "g1 commits after the garbage");

    // ---- FindCoordinator, __consumer_offsets ----
    let r = c.send_at(&FindCoordinatorRequest::default().with_key(sb("some-txn")).with_key_type(1), 3).await.unwrap();
    assert_eq!(r.error_code, INVALID_REQUEST, "FindCoordinator v3 for a transactional id: not retriable, so clients fail fast");
    let r = c.send_at(&FindCoordinatorRequest::default().with_key_type(1).with_coordinator_keys(vec![sb("some-txn")]), 4).await.unwrap();
    assert_eq!(r.coordinators.len(), 1);
    assert_eq!(r.coordinators[0].error_code, INVALID_REQUEST, "FindCoordinator v4 for a transactional id");
    let r = c.send_at(&FindCoordinatorRequest::default().with_key_type(0).with_coordinator_keys(vec![sb("g1")]), 4).await.unwrap();
    assert_eq!((r.coordinators[0].error_code, r.coordinators[0].port), (NONE, broker.port as i32), "FindCoordinator for g1");

    let produce = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![TopicProduceData::default()
        .with_name(tname("__consumer_offsets"))
        .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch("forged")))])]);
    let r = c.send_at(&produce, 8).await.unwrap();
    assert_eq!(r.responses[0].partition_responses[0].error_code, INVALID_TOPIC_EXCEPTION, "produce to __consumer_offsets");
    let r = c
        .send(&DeleteTopicsRequest::default().with_timeout_ms(10_000).with_topic_names(vec![tname("__consumer_offsets")]), 5)
        .await
        .unwrap()
        .1;
    assert_eq!(r.responses[0].error_code, INVALID_REQUEST, "delete __consumer_offsets");
    let (_, found) = fetch_v7(&mut c, "g1", &[(TOPIC, 0), (TOPIC, 1)]).await;
    assert_eq!(found, vec![(TOPIC.to_string(), 0, 7, NONE), (TOPIC.to_string(), 1, 3, NONE)], "g1's offsets at the end");

    // ---- The broker is fine ----
    assert!(broker.is_running(), "broker died:\n{}", broker.log_tail());
    let mut fresh = Client::connect(&addr).await.expect("a new connection after all that");
    let m = fresh.send(&MetadataRequest::default().with_topics(None), 9).await.unwrap().1;
    assert!(m.topics.iter().any(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == TOPIC)), "metadata lists {TOPIC}");
    let log = std::fs::read_to_string(broker.log_path()).unwrap();
    assert!(!log.contains("panic"), "the broker log shows a panic:\n{}", broker.log_tail());
    broker.stop();
}

/// OffsetFetch v8+ asks about several groups at once; FindCoordinator v4+ about several keys;
/// LeaveGroup v3+ removes several members at once.
#[tokio::test(flavor = "multi_thread")]
async fn batched_group_requests() {
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    use kafka_protocol::messages::{FindCoordinatorRequest, LeaveGroupRequest, OffsetFetchRequest};
    let broker = Broker::start_with("group-batched", BROKER_CONFIG);
    let addr = broker.addr();
    let mut c = Client::connect(&addr).await.unwrap();
    let created = c
        .send(
            &CreateTopicsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![CreatableTopic::default().with_name(tname("bt")).with_num_partitions(2).with_replication_factor(1)]),
            5,
        )
        .await
        .unwrap()
        .1;
    assert_eq!(created.topics[0].error_code, NONE);
    let fc = c
        .send_at(&FindCoordinatorRequest::default().with_key_type(0).with_coordinator_keys(vec![sb("ga"), sb("gb"), sb("")]), 4)
        .await
        .unwrap();
    let errors: Vec<i16> = fc.coordinators.iter().map(|k| k.error_code).collect();
    assert_eq!(errors, vec![0, 0, 24], "two groups found, an empty key is INVALID_GROUP_ID");
    assert!(fc.coordinators[0].port > 0);
    for (g, o) in [("ga", 11i64), ("gb", 22)] {
        let r = commit(&mut c, 8, g, "", -1, &[("bt", 0, o), ("bt", 1, o + 1)]).await;
        assert!(commit_errors(&r).iter().all(|(_, _, e)| *e == NONE));
    }
    let fetch = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default().with_group_id(gid("ga")).with_topics(None),
        OffsetFetchRequestGroup::default()
            .with_group_id(gid("gb"))
            .with_topics(Some(vec![OffsetFetchRequestTopics::default().with_name(tname("bt")).with_partition_indexes(vec![1])])),
        OffsetFetchRequestGroup::default().with_group_id(gid("nobody")).with_topics(None),
    ]);
    let r = c.send_at(&fetch, 8).await.unwrap();
    assert_eq!(r.groups.len(), 3);
    let offsets = |i: usize| -> Vec<(i32, i64)> {
        r.groups[i].topics.iter().flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, p.committed_offset))).collect()
    };
    assert_eq!(offsets(0), vec![(0, 11), (1, 12)]);
    assert_eq!(offsets(1), vec![(1, 23)]);
    assert!(offsets(2).is_empty(), "an unknown group has no offsets");
    assert!(r.groups.iter().all(|g| g.error_code == NONE));
    // Two members join one group, then leave in one LeaveGroup.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let first = join(&mut c, 5, &join_request("gl", "", "consumer", 10_000)).await;
        assert_eq!(first.error_code, 79);
        ids.push(first.member_id.to_string());
    }
    let mut c2 = Client::connect(&addr).await.unwrap();
    let (a, b) = (ids[0].clone(), ids[1].clone());
    let ja = tokio::spawn(async move { join(&mut c2, 5, &join_request("gl", &a, "consumer", 10_000)).await });
    let jb = join(&mut c, 5, &join_request("gl", &b, "consumer", 10_000)).await;
    let ja = ja.await.unwrap();
    assert_eq!((ja.error_code, jb.error_code), (NONE, NONE));
    let leave = LeaveGroupRequest::default().with_group_id(gid("gl")).with_members(vec![
        MemberIdentity::default().with_member_id(sb(&ids[0])),
        MemberIdentity::default().with_member_id(sb(&ids[1])),
        MemberIdentity::default().with_member_id(sb("stranger")),
    ]);
    let r = c.send_at(&leave, 4).await.unwrap();
    let errors: Vec<i16> = r.members.iter().map(|m| m.error_code).collect();
    assert_eq!(errors, vec![NONE, NONE, 25]);
}
