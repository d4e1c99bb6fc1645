//! The consumer-group workload: simulated members speaking the classic group protocol
//! (JoinGroup, SyncGroup, Heartbeat, OffsetCommit, OffsetFetch, Fetch, LeaveGroup) to the real
//! coordinator, a producer filling the group's topic, and a monitor that polls the committed
//! offsets. Members crash and restart (their node is killed), the broker crashes, pauses and
//! is clogged by the main nemesis.
//!
//! Recorded for the checkers (`check.rs`): every successful SyncGroup (generation, member,
//! partitions), every commit attempted and acknowledged, the monitor's observations, and the
//! final committed offsets and log ends.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest,
    ProduceRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use madsim::rand::Rng;
use strand::client::Client;

use crate::scenario::{connect, event, Shared};

pub const GROUP: &str = "sim-group";
pub const GROUP_TOPIC: &str = "sim-grp";
const SESSION_TIMEOUT_MS: i32 = 6_000;
const REBALANCE_TIMEOUT_MS: i32 = 10_000;
/// Longest a request may take before the member treats the connection as broken.
const REQUEST_WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct GroupOptions {
    pub members: usize,
    pub partitions: i32,
    pub records_per_partition: usize,
    /// The nemesis may kill and restart member nodes.
    pub member_crashes: bool,
    /// KIP-848 (`group.protocol=consumer`) members instead of classic ones.
    pub consumer_protocol: bool,
    /// Classic members with a `group.instance.id` (KIP-345): a restarted member takes its
    /// place back without a rebalance.
    pub static_members: bool,
}

impl GroupOptions {
    pub fn from_seed() -> GroupOptions {
        let mut rng = madsim::rand::thread_rng();
        GroupOptions {
            members: rng.gen_range(1..=4),
            partitions: rng.gen_range(1..=4),
            records_per_partition: rng.gen_range(20..=120),
            member_crashes: rng.gen_bool(0.6),
            consumer_protocol: rng.gen_bool(0.5),
            static_members: rng.gen_bool(0.5),
        }
    }
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

/// This workload's assignment encoding: the partitions as big-endian i32s.
fn encode_parts(parts: &[i32]) -> Bytes {
    Bytes::from(parts.iter().flat_map(|p| p.to_be_bytes()).collect::<Vec<u8>>())
}

fn decode_parts(b: &[u8]) -> Vec<i32> {
    b.chunks_exact(4).map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect()
}

async fn timed<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(REQUEST_WAIT, f).await.map_err(|_| anyhow::anyhow!("request timed out"))?
}

async fn committed(client: &mut Client, partitions: i32) -> anyhow::Result<BTreeMap<i32, i64>> {
    let req = OffsetFetchRequest::default().with_group_id(GroupId(s(GROUP))).with_topics(Some(vec![OffsetFetchRequestTopic::default()
        .with_name(TopicName(s(GROUP_TOPIC)))
        .with_partition_indexes((0..partitions).collect())]));
    let r = timed(client.send_at(&req, 7)).await?;
    if r.error_code != 0 {
        anyhow::bail!("OffsetFetch error {}", r.error_code);
    }
    Ok(r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, p.committed_offset))).collect())
}

/// Fetch from one partition: (records' next offset, high watermark).
async fn fetch_next(client: &mut Client, partition: i32, from: i64) -> anyhow::Result<(i64, i64)> {
    let request = strand::client::fetch_request(GROUP_TOPIC, [(partition, from)], 100, 1 << 20, 1 << 20);
    let r = timed(client.send_at(&request, 11)).await?;
    let p = &r.responses[0].partitions[0];
    if p.error_code != 0 {
        anyhow::bail!("fetch error {}", p.error_code);
    }
    let next = match &p.records {
        Some(set) if !set.is_empty() => strand::client::records::decode_fetched(set, from)?.next_offset,
        _ => from,
    };
    Ok((next, p.high_watermark))
}

enum Next {
    /// Rejoin with this member id ("" = as a new member).
    Rejoin,
    Reconnect,
    Stop,
}

/// One group member, for as long as its node lives (a restart starts a new incarnation).
pub async fn member(name: String, opts: GroupOptions, rec: Shared, stop: Arc<AtomicBool>) {
    if opts.consumer_protocol {
        return consumer_member(name, opts, rec, stop).await;
    }
    let mut client: Option<Client> = None;
    let mut member_id = String::new();
    let mut backoff_ms = 50u64;
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if client.is_none() {
            client = connect().await;
            if client.is_none() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        }
        let c = client.as_mut().expect("connected");
        match session(c, &name, &mut member_id, &opts, &rec, &stop).await {
            Next::Stop => {
                // Leave cleanly, best effort.
                if !member_id.is_empty() {
                    let leave = LeaveGroupRequest::default().with_group_id(GroupId(s(GROUP))).with_member_id(s(&member_id));
                    let _ = timed(c.send_at(&leave, 2)).await;
                }
                return;
            }
            Next::Rejoin => backoff_ms = 50,
            Next::Reconnect => {
                client = None;
                backoff_ms = (backoff_ms * 2).min(2000);
            }
        }
        let jitter = madsim::rand::thread_rng().gen_range(0..=backoff_ms);
        tokio::time::sleep(Duration::from_millis(backoff_ms + jitter)).await;
    }
}

/// Join, sync, then consume and commit until something ends the generation.
async fn session(c: &mut Client, name: &str, member_id: &mut String, opts: &GroupOptions, rec: &Shared, stop: &AtomicBool) -> Next {
    let instance = opts.static_members.then(|| s(name));
    // Who owns what: a static member is its instance id across incarnations.
    let owner = |member_id: &str| if opts.static_members { format!("static:{name}") } else { member_id.to_string() };
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_group_instance_id(instance.clone())
        .with_session_timeout_ms(SESSION_TIMEOUT_MS)
        .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(s("range")).with_metadata(strand::group::encode_subscription(&[GROUP_TOPIC]))]);
    let j = match timed(c.send_at(&join, 5)).await {
        Ok(j) => j,
        Err(_) => return Next::Reconnect,
    };
    match j.error_code {
        0 => {}
        79 => {
            *member_id = j.member_id.to_string();
            return Next::Rejoin;
        }
        25 | 82 => {
            member_id.clear();
            return Next::Rejoin;
        }
        _ => return Next::Rejoin,
    }
    *member_id = j.member_id.to_string();
    let generation = j.generation_id;
    let assignments = if j.leader.as_str() == member_id.as_str() {
        let mut ids: Vec<String> = j.members.iter().map(|m| m.member_id.to_string()).collect();
        ids.sort();
        let mut per: BTreeMap<String, Vec<i32>> = ids.iter().map(|i| (i.clone(), Vec::new())).collect();
        for p in 0..opts.partitions {
            per.get_mut(&ids[p as usize % ids.len()]).expect("listed").push(p);
        }
        per.into_iter().map(|(m, ps)| SyncGroupRequestAssignment::default().with_member_id(s(&m)).with_assignment(encode_parts(&ps))).collect()
    } else {
        Vec::new()
    };
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_group_instance_id(instance.clone())
        .with_generation_id(generation)
        .with_member_id(s(member_id))
        .with_assignments(assignments);
    let r = match timed(c.send_at(&sync, 3)).await {
        Ok(r) => r,
        Err(_) => return Next::Reconnect,
    };
    if r.error_code != 0 {
        if r.error_code == 25 || r.error_code == 82 {
            member_id.clear();
        }
        return Next::Rejoin;
    }
    let parts = decode_parts(&r.assignment);
    event(rec, format!("group: {name} ({member_id}) generation {generation} owns {parts:?}"));
    rec.lock().expect("recorder lock").history.group_syncs.push((generation, owner(member_id), parts.clone()));
    let mut positions: BTreeMap<i32, i64> = match committed(c, opts.partitions).await {
        Ok(m) => parts.iter().map(|p| (*p, m.get(p).copied().filter(|o| *o >= 0).unwrap_or(0))).collect(),
        Err(_) => return Next::Reconnect,
    };
    loop {
        if stop.load(Ordering::SeqCst) {
            return Next::Stop;
        }
        tokio::time::sleep(Duration::from_millis(madsim::rand::thread_rng().gen_range(100..=500))).await;
        let hb = HeartbeatRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_generation_id(generation)
            .with_member_id(s(member_id))
            .with_group_instance_id(instance.clone());
        match timed(c.send_at(&hb, 3)).await {
            Err(_) => return Next::Reconnect,
            Ok(h) if h.error_code == 0 => {}
            Ok(h) => {
                if h.error_code == 25 || h.error_code == 82 {
                    member_id.clear();
                }
                return Next::Rejoin;
            }
        }
        for p in parts.clone() {
            let from = positions[&p];
            let next = match fetch_next(c, p, from).await {
                Ok((next, _)) => next,
                Err(_) => return Next::Reconnect,
            };
            if next == from {
                continue;
            }
            rec.lock().expect("recorder lock").history.group_commit_attempts.insert((p, next));
            let commit = OffsetCommitRequest::default()
                .with_group_id(GroupId(s(GROUP)))
                .with_generation_id_or_member_epoch(generation)
                .with_member_id(s(member_id))
                .with_group_instance_id(instance.clone())
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(GROUP_TOPIC)))
                    .with_partitions(vec![OffsetCommitRequestPartition::default().with_partition_index(p).with_committed_offset(next)])]);
            match timed(c.send_at(&commit, 7)).await {
                Err(_) => return Next::Reconnect,
                Ok(r) => {
                    let e = r.topics[0].partitions[0].error_code;
                    if e == 0 {
                        rec.lock().expect("recorder lock").history.group_commit_acked.push((p, next));
                        positions.insert(p, next);
                    } else {
                        event(rec, format!("group: {name} commit {p}@{next} error {e}"));
                        if e == 25 || e == 82 {
                            member_id.clear();
                        }
                        return Next::Rejoin;
                    }
                }
            }
        }
    }
}

/// A KIP-848 member: ConsumerGroupHeartbeat v1 (client-chosen member id), reporting what it
/// owns; fetch and commit (OffsetCommit v9 with the member epoch) for its partitions. The
/// coordinator asserts that no partition is held by two members (a panic fails the seed).
async fn consumer_member(name: String, opts: GroupOptions, rec: Shared, stop: Arc<AtomicBool>) {
    use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as Owned;
    use kafka_protocol::messages::ConsumerGroupHeartbeatRequest;
    let member_id = format!("{name}-{:016x}", madsim::rand::thread_rng().gen::<u64>());
    let mut client: Option<Client> = None;
    let mut topic_id = None;
    let mut epoch = 0i32;
    let mut owned: BTreeMap<i32, i64> = BTreeMap::new(); // partition -> position
    let mut pending_positions = true;
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(madsim::rand::thread_rng().gen_range(100..=500))).await;
        if client.is_none() {
            client = connect().await;
        }
        let Some(c) = client.as_mut() else { continue };
        if topic_id.is_none() {
            match strand::cli::topic::metadata(c, Some(&[GROUP_TOPIC]), false).await {
                Ok(md) => topic_id = md.topics.first().map(|t| t.topic_id),
                Err(_) => {
                    client = None;
                    continue;
                }
            }
        }
        let tid = topic_id.expect("known");
        let mut hb = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_member_id(s(&member_id))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
            .with_topic_partitions(Some(vec![Owned::default().with_topic_id(tid).with_partitions(owned.keys().copied().collect())]));
        if epoch == 0 {
            hb = hb.with_subscribed_topic_names(Some(vec![TopicName(s(GROUP_TOPIC))]));
        }
        let r = match timed(c.send_at(&hb, 1)).await {
            Ok(r) => r,
            Err(_) => {
                client = None;
                continue;
            }
        };
        match r.error_code {
            0 => {}
            25 | 110 => {
                // Fenced or forgotten (a coordinator restart): give everything up, rejoin.
                event(&rec, format!("group: {name} fenced ({}), rejoining", r.error_code));
                owned.clear();
                epoch = 0;
                continue;
            }
            _ => continue,
        }
        epoch = r.member_epoch;
        if let Some(a) = &r.assignment {
            let now: Vec<i32> = a.topic_partitions.iter().filter(|t| t.topic_id == tid).flat_map(|t| t.partitions.iter().copied()).collect();
            owned.retain(|p, _| now.contains(p));
            for p in &now {
                owned.entry(*p).or_insert(-1);
            }
            pending_positions = true;
            event(&rec, format!("group: {name} epoch {epoch} owns {now:?}"));
        }
        if pending_positions && owned.values().any(|o| *o < 0) {
            match committed(c, opts.partitions).await {
                Ok(m) => {
                    for (p, pos) in owned.iter_mut() {
                        if *pos < 0 {
                            *pos = m.get(p).copied().filter(|o| *o >= 0).unwrap_or(0);
                        }
                    }
                    pending_positions = false;
                }
                Err(_) => {
                    client = None;
                    continue;
                }
            }
        }
        let parts: Vec<(i32, i64)> = owned.iter().map(|(p, o)| (*p, *o)).collect();
        for (p, from) in parts {
            let next = match fetch_next(c, p, from).await {
                Ok((next, _)) => next,
                Err(_) => {
                    client = None;
                    break;
                }
            };
            if next == from {
                continue;
            }
            rec.lock().expect("recorder lock").history.group_commit_attempts.insert((p, next));
            let commit = OffsetCommitRequest::default()
                .with_group_id(GroupId(s(GROUP)))
                .with_generation_id_or_member_epoch(epoch)
                .with_member_id(s(&member_id))
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(GROUP_TOPIC)))
                    .with_partitions(vec![OffsetCommitRequestPartition::default().with_partition_index(p).with_committed_offset(next)])]);
            match timed(c.send_at(&commit, 8)).await {
                Err(_) => {
                    client = None;
                    break;
                }
                Ok(r) if r.topics[0].partitions[0].error_code == 0 => {
                    rec.lock().expect("recorder lock").history.group_commit_acked.push((p, next));
                    owned.insert(p, next);
                }
                Ok(r) => {
                    event(&rec, format!("group: {name} commit {p}@{next} error {}", r.topics[0].partitions[0].error_code));
                    break;
                }
            }
        }
    }
    // Leave (epoch -1), best effort.
    if let Some(c) = client.as_mut() {
        let leave = ConsumerGroupHeartbeatRequest::default().with_group_id(GroupId(s(GROUP))).with_member_id(s(&member_id)).with_member_epoch(-1);
        let _ = timed(c.send_at(&leave, 1)).await;
    }
}

/// Fill the group's topic: `records_per_partition` per partition, acks=all, retried.
pub async fn producer(opts: GroupOptions, rec: Shared) {
    let mut client: Option<Client> = None;
    for p in 0..opts.partitions {
        let mut sent = 0;
        while sent < opts.records_per_partition {
            let n = madsim::rand::thread_rng().gen_range(1..=10).min(opts.records_per_partition - sent);
            let records: Vec<(Option<Bytes>, Bytes)> = (0..n).map(|i| (None, Bytes::from(format!("g{p}-{}", sent + i)))).collect();
            loop {
                if client.is_none() {
                    client = connect().await;
                }
                let Some(c) = client.as_mut() else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let batch = strand::cli::produce::encode_batch(&records, 0).expect("encode");
                let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(5_000).with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(s(GROUP_TOPIC)))
                    .with_partition_data(vec![PartitionProduceData::default().with_index(p).with_records(Some(batch))])]);
                match timed(c.send_at(&req, 8)).await {
                    Ok(r) if r.responses[0].partition_responses[0].error_code == 0 => break,
                    Ok(_) => {}
                    Err(_) => client = None,
                }
                tokio::time::sleep(Duration::from_millis(madsim::rand::thread_rng().gen_range(50..=500))).await;
            }
            // Duplicates from retries are fine: the group checks count offsets, not values.
            sent += n;
            // Spread over the safety phase, so members commit while faults happen.
            tokio::time::sleep(Duration::from_millis(madsim::rand::thread_rng().gen_range(50..=1200))).await;
        }
    }
    event(&rec, "group producer done".into());
    rec.lock().expect("recorder lock").history.unfinished.retain(|x| x != "group producer");
}

/// Poll the committed offsets (one connection, so observations are in order).
pub async fn monitor(opts: GroupOptions, rec: Shared, stop: Arc<AtomicBool>) {
    let mut client: Option<Client> = None;
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if client.is_none() {
            client = connect().await;
        }
        let Some(c) = client.as_mut() else { continue };
        // Commits acknowledged before this request was sent must be visible in its answer.
        let acked_before: BTreeMap<i32, i64> = {
            let r = rec.lock().expect("recorder lock");
            let mut m = BTreeMap::new();
            for (p, o) in &r.history.group_commit_acked {
                let e = m.entry(*p).or_insert(*o);
                *e = (*e).max(*o);
            }
            m
        };
        match committed(c, opts.partitions).await {
            Ok(m) => {
                let mut r = rec.lock().expect("recorder lock");
                for (p, acked) in &acked_before {
                    let got = m.get(p).copied().unwrap_or(-1);
                    if got < *acked {
                        r.history.group_lost_commits.push(format!("partition {p}: commit of {acked} was acknowledged, then OffsetFetch returned {got}"));
                    }
                }
                r.history.group_committed_seen.extend(m.into_iter().filter(|(_, o)| *o >= 0));
            }
            Err(_) => client = None,
        }
    }
}

/// After the run: committed offsets and log ends (high watermarks), once both answer.
pub async fn final_state(opts: &GroupOptions) -> Result<(BTreeMap<i32, i64>, BTreeMap<i32, i64>), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if tokio::time::Instant::now() > deadline {
            return Err("final group read did not complete".into());
        }
        if let Some(mut c) = connect().await {
            if let Ok(m) = committed(&mut c, opts.partitions).await {
                let mut ends = BTreeMap::new();
                let mut ok = true;
                for p in 0..opts.partitions {
                    match fetch_next(&mut c, p, 0).await {
                        Ok((_, hw)) => {
                            ends.insert(p, hw);
                        }
                        Err(_) => ok = false,
                    }
                }
                if ok {
                    return Ok((m.into_iter().filter(|(_, o)| *o >= 0).collect(), ends));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether the monitor's latest observations say the group committed everything.
pub fn caught_up(rec: &Shared, ends: &BTreeMap<i32, i64>) -> bool {
    let r = rec.lock().expect("recorder lock");
    let mut latest: BTreeMap<i32, i64> = BTreeMap::new();
    for (p, o) in &r.history.group_committed_seen {
        latest.insert(*p, *o);
    }
    ends.iter().all(|(p, e)| latest.get(p).copied().unwrap_or(0) >= *e)
}
