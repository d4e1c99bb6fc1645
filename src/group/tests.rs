//! Coordinator core tests: the classic state machine step by step, KIP-848 reconciliation,
//! offsets, replay. (Random sequences are in proptests/tests/group_model.rs.)

use std::collections::BTreeMap;

use bytes::Bytes;

use super::classic::{JoinRequest, SyncRequest};
use super::*;

fn now(ms: u64) -> Now {
    Now { mono_ms: ms, wall_ms: 1_700_000_000_000 + ms as i64 }
}

fn config() -> GroupConfig {
    GroupConfig { initial_rebalance_delay_ms: 0, ..GroupConfig::default() }
}

fn join_req(group: &str, member: &str, instance: Option<&str>) -> JoinRequest {
    JoinRequest {
        group_id: group.into(),
        member_id: member.into(),
        instance_id: instance.map(String::from),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 20_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
        require_known_member_id: true,
    }
}

fn join_reply(out: &Output, token: Token) -> Option<JoinResponse> {
    out.replies.iter().find(|(t, _)| *t == token).and_then(|(_, r)| match r {
        Reply::Join(j) => Some(j.clone()),
        _ => None,
    })
}

fn sync_reply(out: &Output, token: Token) -> Option<SyncResponse> {
    out.replies.iter().find(|(t, _)| *t == token).and_then(|(_, r)| match r {
        Reply::Sync(s) => Some(s.clone()),
        _ => None,
    })
}

/// Join a dynamic member through MEMBER_ID_REQUIRED; returns its member id.
fn member_id_for(c: &mut Coordinator, t: u64, token: Token) -> String {
    c.join(now(t), token, join_req("g", "", None));
    let out = c.take_output();
    let r = join_reply(&out, token).unwrap();
    assert_eq!(r.error, ErrorCode::MEMBER_ID_REQUIRED);
    r.member_id
}

#[test]
fn two_members_join_sync_and_get_their_assignments() {
    let mut c = Coordinator::new(config(), 1);
    let a = member_id_for(&mut c, 0, 1);
    let b = member_id_for(&mut c, 0, 2);
    c.join(now(1), 3, join_req("g", &a, None));
    assert!(c.take_output().replies.is_empty(), "waits for b (pending member)");
    c.join(now(2), 4, join_req("g", &b, None));
    let out = c.take_output();
    let ra = join_reply(&out, 3).unwrap();
    let rb = join_reply(&out, 4).unwrap();
    assert_eq!((ra.error, rb.error), (ErrorCode::NONE, ErrorCode::NONE));
    assert_eq!(ra.generation, 1);
    assert_eq!(ra.leader, rb.leader);
    assert_eq!(out.records.len(), 1, "the new generation is persisted");
    let leader = ra.leader.clone();
    let (lt, ft, follower) = if leader == a { (3, 4, b.clone()) } else { (4, 3, a.clone()) };
    let _ = (lt, ft);
    // The follower's sync waits for the leader's.
    c.sync(now(3), 10, SyncRequest { group_id: "g".into(), member_id: follower.clone(), instance_id: None, generation: 1, protocol_type: None, protocol_name: None, assignments: vec![] });
    assert!(c.take_output().replies.is_empty());
    c.sync(now(4), 11, SyncRequest {
        group_id: "g".into(),
        member_id: leader.clone(),
        instance_id: None,
        generation: 1,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        assignments: vec![(leader.clone(), Bytes::from_static(b"L")), (follower.clone(), Bytes::from_static(b"F"))],
    });
    let out = c.take_output();
    assert_eq!(sync_reply(&out, 10).unwrap().assignment, Bytes::from_static(b"F"));
    assert_eq!(sync_reply(&out, 11).unwrap().assignment, Bytes::from_static(b"L"));
    assert_eq!(c.group("g").unwrap().state(), "Stable");
    assert_eq!(c.heartbeat(now(5), "g", &follower, None, 1), ErrorCode::NONE);
    assert_eq!(c.heartbeat(now(5), "g", &follower, None, 0), ErrorCode::ILLEGAL_GENERATION);
    assert_eq!(c.heartbeat(now(5), "g", "nobody", None, 1), ErrorCode::UNKNOWN_MEMBER_ID);
}

#[test]
fn session_timeout_removes_a_silent_member_and_rebalances() {
    let mut c = Coordinator::new(config(), 1);
    let a = member_id_for(&mut c, 0, 1);
    c.join(now(0), 2, join_req("g", &a, None));
    let r = join_reply(&c.take_output(), 2).unwrap();
    assert_eq!(r.generation, 1);
    c.sync(now(0), 3, SyncRequest { group_id: "g".into(), member_id: a.clone(), instance_id: None, generation: 1, protocol_type: None, protocol_name: None, assignments: vec![(a.clone(), Bytes::from_static(b"x"))] });
    c.take_output();
    c.tick(now(9_999), &BTreeMap::new());
    assert_eq!(c.group("g").unwrap().state(), "Stable");
    c.tick(now(10_000), &BTreeMap::new());
    let g = c.group("g").unwrap();
    assert_eq!(g.state(), "Empty");
    let out = c.take_output();
    assert!(out.records.iter().any(|r| matches!(&r.value, Some(records::RecordValue::Group(v)) if v.generation == 2)));
}

#[test]
fn static_member_restart_keeps_assignment_without_rebalance() {
    let mut c = Coordinator::new(config(), 1);
    c.join(now(0), 1, join_req("g", "", Some("i1")));
    let r = join_reply(&c.take_output(), 1).unwrap();
    assert_eq!(r.error, ErrorCode::NONE, "static members skip MEMBER_ID_REQUIRED");
    let old = r.member_id.clone();
    c.sync(now(0), 2, SyncRequest { group_id: "g".into(), member_id: old.clone(), instance_id: Some("i1".into()), generation: 1, protocol_type: None, protocol_name: None, assignments: vec![(old.clone(), Bytes::from_static(b"A"))] });
    c.take_output();
    // Restart: same instance id, no member id.
    c.join(now(100), 3, join_req("g", "", Some("i1")));
    let out = c.take_output();
    let r = join_reply(&out, 3).unwrap();
    assert_eq!(r.error, ErrorCode::NONE);
    assert_eq!(r.generation, 1, "no rebalance");
    assert_ne!(r.member_id, old);
    assert!(out.records.is_empty());
    c.sync(now(100), 4, SyncRequest { group_id: "g".into(), member_id: r.member_id.clone(), instance_id: Some("i1".into()), generation: 1, protocol_type: None, protocol_name: None, assignments: vec![] });
    assert_eq!(sync_reply(&c.take_output(), 4).unwrap().assignment, Bytes::from_static(b"A"));
    // The old incarnation is fenced.
    assert_eq!(c.heartbeat(now(101), "g", &old, Some("i1"), 1), ErrorCode::FENCED_INSTANCE_ID);
}

#[test]
fn commits_are_fenced_by_generation_and_replayed() {
    let mut c = Coordinator::new(config(), 1);
    let p = |off| CommitPartition { topic: "t".into(), partition: 0, offset: off, leader_epoch: -1, metadata: None, error: ErrorCode::NONE };
    let e = c.commit(now(0), CommitRequest { group_id: "g".into(), member_id: String::new(), instance_id: None, generation: -1, partitions: vec![p(5)], group_id_not_found: false });
    assert_eq!(e, vec![ErrorCode::NONE]);
    let e = c.commit(now(0), CommitRequest { group_id: "g".into(), member_id: "x".into(), instance_id: None, generation: 3, partitions: vec![p(6)], group_id_not_found: false });
    assert_eq!(e, vec![ErrorCode::UNKNOWN_MEMBER_ID]);
    let out = c.take_output();
    assert_eq!(out.records.len(), 1);
    let mut d = Coordinator::new(config(), 2);
    for r in &out.records {
        let key = records::decode_key(&records::encode_key(&r.key)).unwrap();
        let value = r.value.as_ref().map(|v| records::decode_value(&key, &records::encode_value(v)).unwrap());
        d.replay(r.partition, &key, value.as_ref(), 0);
    }
    let got = d.fetch_offsets("g", Some(&[("t".into(), 0), ("t".into(), 1)]), None).unwrap();
    assert_eq!(got[0].2.as_ref().unwrap().offset, 5);
    assert!(got[1].2.is_none());
    assert_eq!(d.delete("g"), ErrorCode::NONE);
    assert_eq!(d.delete("g"), ErrorCode::GROUP_ID_NOT_FOUND);
}

#[test]
fn commit_to_an_unknown_group_and_refused_partitions_as_kafka() {
    let mut c = Coordinator::new(config(), 1);
    let p = |topic: &str, error| CommitPartition { topic: topic.into(), partition: 0, offset: 1, leader_epoch: -1, metadata: None, error };
    let req = |group: &str, member: &str, generation, v9| CommitRequest {
        group_id: group.into(),
        member_id: member.into(),
        instance_id: None,
        generation,
        partitions: vec![p("t", ErrorCode::NONE), p("gone", ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)],
        group_id_not_found: v9,
    };
    // With a generation, to a group that does not exist: v8 ILLEGAL_GENERATION, v9
    // GROUP_ID_NOT_FOUND; a partition the shell refused keeps its own error.
    assert_eq!(c.commit(now(0), req("g", "m", 5, false)), vec![ErrorCode::ILLEGAL_GENERATION, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION]);
    assert_eq!(c.commit(now(0), req("g", "m", 5, true)), vec![ErrorCode::GROUP_ID_NOT_FOUND, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION]);
    assert!(c.group("g").is_none(), "refused commits create no group");
    // Generation -1 is a commit from outside group management, whatever the member id.
    assert_eq!(c.commit(now(0), req("g", "m", -1, true)), vec![ErrorCode::NONE, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION]);
    assert_eq!(c.commit(now(0), req("g", "other", -1, false)), vec![ErrorCode::NONE, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION]);
    assert_eq!(c.group("g").unwrap().offsets.len(), 1);
}

#[test]
fn consumer_protocol_moves_partitions_only_after_revocation() {
    use consumer::HeartbeatRequest;
    let mut c = Coordinator::new(config(), 1);
    let topics: BTreeMap<String, i32> = [("t".to_string(), 4)].into();
    let hb = |member: &str, epoch: i32, owned: Option<Vec<i32>>| HeartbeatRequest {
        group_id: "g".into(),
        member_id: member.into(),
        member_epoch: epoch,
        instance_id: None,
        rack_id: None,
        rebalance_timeout_ms: if epoch == 0 { 30_000 } else { -1 },
        subscribed: (epoch == 0).then(|| vec!["t".to_string()]),
        subscribed_regex: None,
        server_assignor: None,
        owned: owned.map(|ps| [("t".to_string(), ps.into_iter().collect())].into()),
        client_id: "c".into(),
        client_host: "h".into(),
    };
    let r1 = c.consumer_heartbeat(now(0), hb("m1", 0, Some(vec![])), &topics);
    assert_eq!(r1.error, ErrorCode::NONE);
    assert_eq!(r1.assignment.as_ref().unwrap()["t"].len(), 4);
    let e1 = r1.member_epoch;
    // m2 joins: target splits 2/2, but m1 still holds everything.
    let r2 = c.consumer_heartbeat(now(1), hb("m2", 0, Some(vec![])), &topics);
    assert!(r2.assignment.as_ref().unwrap().is_empty(), "nothing is free yet: {r2:?}");
    // m1 is told to give up two partitions.
    let r1 = c.consumer_heartbeat(now(2), hb("m1", e1, None), &topics);
    let kept: Vec<i32> = r1.assignment.as_ref().unwrap()["t"].iter().copied().collect();
    assert_eq!(kept.len(), 2);
    assert_eq!(r1.member_epoch, e1, "epoch moves only after revocation");
    // m2 still gets nothing while m1 has not confirmed.
    let r2b = c.consumer_heartbeat(now(3), hb("m2", r2.member_epoch, None), &topics);
    assert!(r2b.assignment.is_none() || r2b.assignment.as_ref().unwrap().is_empty());
    // m1 confirms; it advances; then m2 receives the freed partitions.
    let r1 = c.consumer_heartbeat(now(4), hb("m1", e1, Some(kept.clone())), &topics);
    assert!(r1.member_epoch > e1);
    let r2c = c.consumer_heartbeat(now(5), hb("m2", r2.member_epoch, Some(vec![])), &topics);
    let got: Vec<i32> = r2c.assignment.unwrap()["t"].iter().copied().collect();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|p| !kept.contains(p)));
    assert_eq!(c.group("g").unwrap().state(), "Stable");
}

#[test]
fn java_string_hash_partitioning() {
    // "abc".hashCode() == 96354; 96354 % 50 == 4.
    assert_eq!(partition_for("abc", 50), 4);
    assert!((0..50).contains(&partition_for("a-very-long-group-name-with-negative-hash-perhaps", 50)));
}

#[test]
fn offsets_of_an_empty_group_expire_after_retention() {
    let cfg = GroupConfig { offsets_retention_ms: 60_000, ..config() };
    let mut c = Coordinator::new(cfg, 1);
    let p = CommitPartition { topic: "t".into(), partition: 0, offset: 7, leader_epoch: -1, metadata: None, error: ErrorCode::NONE };
    let e = c.commit(now(0), CommitRequest { group_id: "g".into(), member_id: String::new(), instance_id: None, generation: -1, group_id_not_found: false, partitions: vec![p] });
    assert_eq!(e, vec![ErrorCode::NONE]);
    c.take_output();
    c.tick(now(1_000), &BTreeMap::new());
    c.tick(now(60_000), &BTreeMap::new());
    assert!(c.group("g").is_some(), "kept until the retention has passed since the group became empty");
    c.tick(now(61_001), &BTreeMap::new());
    assert!(c.group("g").is_none(), "expired");
    let out = c.take_output();
    assert!(out.records.iter().any(|r| matches!(&r.key, records::RecordKey::Offset { .. }) && r.value.is_none()), "offset tombstone written");
    assert!(out.records.iter().any(|r| matches!(&r.key, records::RecordKey::Group { .. }) && r.value.is_none()), "group tombstone written");
}

#[test]
fn an_empty_group_without_offsets_is_removed_after_the_grace_period() {
    let mut c = Coordinator::new(config(), 1);
    let a = member_id_for(&mut c, 0, 1);
    c.join(now(0), 2, join_req("g", &a, None));
    c.take_output();
    assert_eq!(c.leave(now(10), "g", &[(a.clone(), None)]), vec![ErrorCode::NONE]);
    c.tick(now(20), &BTreeMap::new());
    assert_eq!(c.group("g").unwrap().state(), "Empty");
    c.tick(now(20 + EMPTY_GROUP_GRACE_MS as u64), &BTreeMap::new());
    assert!(c.group("g").is_none());
}

#[test]
fn initial_rebalance_delay_waits_for_more_members() {
    let cfg = GroupConfig { initial_rebalance_delay_ms: 3_000, ..GroupConfig::default() };
    let mut c = Coordinator::new(cfg, 1);
    let a = member_id_for(&mut c, 0, 1);
    c.join(now(0), 2, join_req("g", &a, None));
    assert!(c.take_output().replies.is_empty(), "the first member waits out the delay");
    let b = member_id_for(&mut c, 1_000, 3);
    c.join(now(1_000), 4, join_req("g", &b, None));
    c.tick(now(2_999), &BTreeMap::new());
    assert!(c.take_output().replies.is_empty(), "a newcomer extends the delay");
    c.tick(now(4_000), &BTreeMap::new());
    let out = c.take_output();
    let (ra, rb) = (join_reply(&out, 2).unwrap(), join_reply(&out, 4).unwrap());
    assert_eq!((ra.generation, rb.generation), (1, 1), "both in the first generation");
}

#[test]
fn consumer_protocol_does_not_resend_an_unchanged_empty_assignment() {
    use consumer::HeartbeatRequest;
    let mut c = Coordinator::new(config(), 1);
    let topics: BTreeMap<String, i32> = [("t".to_string(), 1)].into();
    let hb = |member: &str, epoch: i32| HeartbeatRequest {
        group_id: "g".into(),
        member_id: member.into(),
        member_epoch: epoch,
        instance_id: None,
        rack_id: None,
        rebalance_timeout_ms: 30_000,
        subscribed: Some(vec!["t".to_string()]),
        subscribed_regex: None,
        server_assignor: None,
        // As clients report "nothing": the topic with an empty partition list.
        owned: Some([("t".to_string(), Default::default())].into()),
        client_id: "c".into(),
        client_host: "h".into(),
    };
    let r1 = c.consumer_heartbeat(now(0), hb("m1", 0), &topics);
    let r2 = c.consumer_heartbeat(now(1), hb("m2", 0), &topics);
    let (idle, epoch) = if r1.assignment.as_ref().unwrap().is_empty() { ("m1", r1.member_epoch) } else { ("m2", r2.member_epoch) };
    let again = c.consumer_heartbeat(now(2), hb(idle, epoch.max(1)), &topics);
    let again = c.consumer_heartbeat(now(3), hb(idle, again.member_epoch), &topics);
    assert_eq!(again.error, ErrorCode::NONE);
    assert!(again.assignment.is_none(), "nothing changed, nothing resent: {again:?}");
}

#[test]
fn consumer_protocol_regex_subscription_follows_new_topics() {
    use assignor::TopicPartitions;
    use consumer::HeartbeatRequest;
    let mut c = Coordinator::new(config(), 1);
    let hb = |epoch: i32, regex: Option<&str>, owned: Option<TopicPartitions>| HeartbeatRequest {
        group_id: "g".into(),
        member_id: "m1".into(),
        member_epoch: epoch,
        instance_id: None,
        rack_id: None,
        rebalance_timeout_ms: 30_000,
        subscribed: None,
        subscribed_regex: regex.map(String::from),
        server_assignor: None,
        owned,
        client_id: "c".into(),
        client_host: "h".into(),
    };
    let bad = c.consumer_heartbeat(now(0), hb(0, Some("rx-("), None), &BTreeMap::new());
    assert_eq!(bad.error, ErrorCode::INVALID_REGULAR_EXPRESSION);
    let mut topics: BTreeMap<String, i32> = [("rx-a".to_string(), 2), ("rx-b".to_string(), 1), ("other-rx-a".to_string(), 3)].into();
    let r = c.consumer_heartbeat(now(1), hb(0, Some("rx-.*"), Some(TopicPartitions::new())), &topics);
    assert_eq!(r.error, ErrorCode::NONE);
    let got = r.assignment.unwrap();
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), vec!["rx-a".to_string(), "rx-b".to_string()], "whole names only");
    assert_eq!(got.values().map(|p| p.len()).sum::<usize>(), 3);
    // A new matching topic is picked up on the next heartbeat.
    topics.insert("rx-c".to_string(), 2);
    let r2 = c.consumer_heartbeat(now(2), hb(r.member_epoch, None, Some(got.clone())), &topics);
    assert!(r2.member_epoch > r.member_epoch, "the group epoch moved");
    assert_eq!(r2.assignment.unwrap().get("rx-c").map(|p| p.len()), Some(2));
}

/// KIP-848 group configs (issue 21): stored for a group that does not exist yet, validated
/// against the broker's bounds, applied to that group's members (the heartbeat interval they
/// are told, the session timeout that fences them) and to no other group, and rebuilt by replay
/// and compaction's snapshot.
#[test]
fn group_configs_apply_to_their_group_and_survive_replay() {
    use consumer::HeartbeatRequest;
    let mut c = Coordinator::new(config(), 1);
    let topics: BTreeMap<String, i32> = [("t".to_string(), 2)].into();
    let hb = |group: &str, epoch: i32| HeartbeatRequest {
        group_id: group.into(),
        member_id: String::new(),
        member_epoch: epoch,
        instance_id: None,
        rack_id: None,
        rebalance_timeout_ms: 30_000,
        subscribed: Some(vec!["t".to_string()]),
        subscribed_regex: None,
        server_assignor: None,
        owned: Some(Default::default()),
        client_id: "c".into(),
        client_host: "h".into(),
    };
    let set = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
    // Bounds, as Kafka's GroupConfig.validate words them.
    let v = |pairs: &[(&str, &str)]| c.config.validate_group_overrides(&set(pairs));
    assert_eq!(
        v(&[(CONSUMER_SESSION_TIMEOUT_MS, "1000")]).unwrap_err(),
        "consumer.session.timeout.ms must be greater than or equal to group.consumer.min.session.timeout.ms (45000)"
    );
    assert_eq!(
        v(&[(CONSUMER_HEARTBEAT_INTERVAL_MS, "20000")]).unwrap_err(),
        "consumer.heartbeat.interval.ms must be less than or equal to group.consumer.max.heartbeat.interval.ms (15000)"
    );
    assert!(v(&[(CONSUMER_HEARTBEAT_INTERVAL_MS, "soon")]).unwrap_err().contains("consumer.heartbeat.interval.ms"));
    assert!(v(&[("consumer.nope", "1")]).unwrap_err().contains("Unknown group config name: consumer.nope"));
    assert!(v(&[(CONSUMER_SESSION_TIMEOUT_MS, "50000"), (CONSUMER_HEARTBEAT_INTERVAL_MS, "7000")]).is_ok());

    // Set before the group exists.
    let overrides = set(&[(CONSUMER_SESSION_TIMEOUT_MS, "50000"), (CONSUMER_HEARTBEAT_INTERVAL_MS, "7000")]);
    c.set_group_configs("g", overrides.clone());
    let out = c.take_output();
    assert_eq!(out.records.len(), 1);
    assert!(matches!(&out.records[0].key, records::RecordKey::GroupConfig { group } if group == "g"));
    assert!(c.group("g").is_none(), "a config does not create the group");

    let r = c.consumer_heartbeat(now(0), hb("g", 0), &topics);
    assert_eq!((r.error, r.heartbeat_interval_ms), (ErrorCode::NONE, 7_000), "the group's interval");
    let other = c.consumer_heartbeat(now(0), hb("other", 0), &topics);
    assert_eq!(other.heartbeat_interval_ms, 5_000, "another group keeps the broker's");
    // The broker's 45 s would have fenced both at 46 s; the group's 50 s keeps its member.
    c.tick(now(46_000), &topics);
    assert!(c.group("other").unwrap().is_empty(), "fenced after the broker's session timeout");
    assert!(!c.group("g").unwrap().is_empty(), "kept within the group's session timeout");
    c.tick(now(50_000), &topics);
    assert!(c.group("g").unwrap().is_empty(), "fenced after the group's session timeout");
    c.take_output();

    // Replay and compaction's snapshot bring the configs back; a tombstone removes them.
    let partition = partition_for("g", c.config.offsets_partitions);
    let snapshot = c.snapshot(partition);
    let mut replayed = Coordinator::new(config(), 2);
    for r in &snapshot {
        replayed.replay(r.partition, &r.key, r.value.as_ref(), 0);
    }
    assert_eq!(replayed.group_configs("g"), Some(&overrides));
    assert_eq!(replayed.config_for("g").consumer_heartbeat_interval_ms, 7_000);
    replayed.set_group_configs("g", BTreeMap::new());
    let out = replayed.take_output();
    assert_eq!(out.records.len(), 1);
    assert!(out.records[0].value.is_none(), "no overrides left: a tombstone");
    replayed.replay(out.records[0].partition, &out.records[0].key, None, 0);
    assert_eq!(replayed.group_configs("g"), None);
    assert_eq!(replayed.config_for("g").consumer_heartbeat_interval_ms, 5_000);
}
