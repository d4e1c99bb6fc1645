//! `strand bench --groups`: the group coordinator against this machine's limits.
//!
//! Limits first: loopback TCP round trip (median of 2000 one-byte ping-pongs) and small durable
//! writes (4 KiB write + fdatasync, repeated; writes/s). Then, on an in-process broker:
//! - rebalance time: 10 members join a fresh group on a 100-partition topic at once (JoinGroup,
//!   MEMBER_ID_REQUIRED, JoinGroup, leader assigns, SyncGroup); from the first JoinGroup to the
//!   last member's SyncGroup answer; median of 5 rounds; shown as a multiple of the RTT;
//! - offset-commit throughput: 32 members each committing synchronously (one partition per
//!   OffsetCommit, as a consumer committing per record would) for 3 s; commits/s as a ratio to
//!   the durable small-write rate (group commit lets many commits share one fdatasync).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{CreateTopicsRequest, GroupId, JoinGroupRequest, OffsetCommitRequest, SyncGroupRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{error_name, Client};
use crate::config::BrokerConfig;
use crate::runtime::{Clock, Runtime};

const MEMBERS: usize = 10;
const PARTITIONS: i32 = 100;
const ROUNDS: usize = 5;
const COMMITTERS: usize = 32;
const COMMIT_SECS: u64 = 3;
const TOPIC: &str = "group-bench";

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub async fn run(rt: &Runtime, root: &std::path::Path) -> anyhow::Result<()> {
    println!("strand bench --groups: data in {}", root.display());
    let rtt = loopback_rtt(rt.clock.as_ref()).await?;
    println!("net    loopback TCP round trip (median):     {:.3} ms", ms(rtt));
    let writes_s = durable_small_writes(rt, root).await?;
    println!("disk   4 KiB write + fdatasync:              {writes_s:.0} writes/s");

    let config = BrokerConfig {
        listen: "127.0.0.1:0".parse().expect("static address"),
        data_dir: root.join("broker"),
        group_initial_rebalance_delay_ms: 0,
        ..BrokerConfig::default()
    };
    let server = crate::server::start(rt.clone(), config).await?;
    let addr = server.local_addr().to_string();
    let outcome = measure(rt, &addr, rtt, writes_s).await;
    server.shutdown().await?;
    outcome
}

async fn measure(rt: &Runtime, addr: &str, rtt: Duration, writes_s: f64) -> anyhow::Result<()> {
    let mut admin = Client::connect(addr).await?;
    let create = CreateTopicsRequest::default().with_timeout_ms(30_000).with_topics(vec![CreatableTopic::default()
        .with_name(TopicName(s(TOPIC)))
        .with_num_partitions(PARTITIONS)
        .with_replication_factor(-1)]);
    let (_, r) = admin.send(&create, 7).await?;
    if r.topics[0].error_code != 0 {
        bail!("creating {TOPIC}: {}", error_name(r.topics[0].error_code));
    }
    let mut times = Vec::new();
    for round in 0..ROUNDS {
        times.push(rebalance_round(rt, addr, &format!("bench-rebalance-{round}")).await?);
    }
    times.sort();
    let rebalance = times[times.len() / 2];
    let (commits, elapsed) = commit_throughput(rt, addr).await?;
    let commits_s = commits as f64 / elapsed.as_secs_f64();
    println!();
    println!("{:<44} {:>14} {:>26} {:>9}", "figure", "measured", "limit", "ratio");
    println!(
        "{:<44} {:>14} {:>26} {:>9}",
        format!("rebalance, {MEMBERS} members / {PARTITIONS} partitions"),
        format!("{:.2} ms", ms(rebalance)),
        format!("{:.3} ms loopback RTT", ms(rtt)),
        format!("{:.0} RTT", rebalance.as_secs_f64() / rtt.as_secs_f64().max(1e-9)),
    );
    println!(
        "{:<44} {:>14} {:>26} {:>9}",
        format!("offset commits, {COMMITTERS} sync committers"),
        format!("{commits_s:.0}/s"),
        format!("{writes_s:.0} fsync'd writes/s"),
        format!("{:.2}x", commits_s / writes_s.max(1e-9)),
    );
    println!("rebalance rounds (ms): {:?}", times.iter().map(|t| format!("{:.2}", ms(*t))).collect::<Vec<_>>());
    Ok(())
}

async fn loopback_rtt(clock: &dyn Clock) -> anyhow::Result<Duration> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let echo = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        s.set_nodelay(true)?;
        let mut b = [0u8; 1];
        while s.read_exact(&mut b).await.is_ok() {
            s.write_all(&b).await?;
        }
        anyhow::Ok(())
    });
    let mut c = tokio::net::TcpStream::connect(addr).await?;
    c.set_nodelay(true)?;
    let mut samples = Vec::with_capacity(2000);
    let mut b = [7u8; 1];
    for _ in 0..2000 {
        let t = clock.monotonic();
        c.write_all(&b).await?;
        c.read_exact(&mut b).await?;
        samples.push(clock.monotonic() - t);
    }
    drop(c);
    let _ = echo.await;
    samples.sort();
    Ok(samples[samples.len() / 2])
}

async fn durable_small_writes(rt: &Runtime, root: &std::path::Path) -> anyhow::Result<f64> {
    let path = root.join("small-writes.bin");
    let file = rt.disk.open(&path, true).await?;
    let chunk = Bytes::from(vec![0x5au8; 4096]);
    let start = rt.clock.monotonic();
    let mut n = 0u64;
    while rt.clock.monotonic() - start < Duration::from_secs(2) {
        file.write_at(n * 4096, chunk.clone()).await?;
        file.sync_data().await?;
        n += 1;
    }
    let elapsed = rt.clock.monotonic() - start;
    drop(file);
    rt.disk.remove(&path).await?;
    Ok(n as f64 / elapsed.as_secs_f64())
}

fn protocols() -> Vec<JoinGroupRequestProtocol> {
    vec![JoinGroupRequestProtocol::default().with_name(s("range")).with_metadata(crate::group::encode_subscription(&[TOPIC]))]
}

/// Generation of each member's last successful SyncGroup, for the round to see when all agree.
type Synced = Arc<std::sync::Mutex<BTreeMap<usize, i32>>>;

/// One member as a real consumer behaves: join (again after MEMBER_ID_REQUIRED), assign if
/// leader, sync, heartbeat; rejoin whenever the coordinator says a rebalance is on; leave when
/// told to stop.
async fn member(addr: String, group: String, me: usize, synced: Synced, stop: Arc<std::sync::atomic::AtomicBool>) -> anyhow::Result<()> {
    use kafka_protocol::messages::{HeartbeatRequest, LeaveGroupRequest};
    let mut c = Client::connect(&addr).await?;
    let mut member_id = String::new();
    'rejoin: while !stop.load(Ordering::SeqCst) {
        let join = JoinGroupRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(60_000)
            .with_member_id(s(&member_id))
            .with_protocol_type(s("consumer"))
            .with_protocols(protocols());
        let joined = c.send_at(&join, 5).await?;
        match joined.error_code {
            0 => {}
            79 => {
                member_id = joined.member_id.to_string();
                continue;
            }
            e => bail!("JoinGroup: {}", error_name(e)),
        }
        member_id = joined.member_id.to_string();
        let assignments = if joined.leader.as_str() == member_id {
            let mut ids: Vec<String> = joined.members.iter().map(|m| m.member_id.to_string()).collect();
            ids.sort();
            let mut per: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for p in 0..PARTITIONS {
                per.entry(ids[p as usize % ids.len()].as_str()).or_default().push(p);
            }
            per.into_iter()
                .map(|(m, ps)| {
                    let tp: crate::group::assignor::TopicPartitions = [(TOPIC.to_string(), ps.into_iter().collect())].into();
                    SyncGroupRequestAssignment::default().with_member_id(s(m)).with_assignment(crate::group::encode_consumer_assignment(&tp))
                })
                .collect()
        } else {
            Vec::new()
        };
        let generation = joined.generation_id;
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_generation_id(generation)
            .with_member_id(s(&member_id))
            .with_assignments(assignments);
        let r = c.send_at(&sync, 3).await?;
        match r.error_code {
            0 => {}
            27 => continue,
            e => bail!("SyncGroup: {}", error_name(e)),
        }
        if r.assignment.is_empty() {
            bail!("SyncGroup gave member {member_id} no assignment");
        }
        synced.lock().expect("synced lock").insert(me, generation);
        while !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let hb = HeartbeatRequest::default().with_group_id(GroupId(s(&group))).with_generation_id(generation).with_member_id(s(&member_id));
            match c.send_at(&hb, 3).await?.error_code {
                0 => {}
                27 => continue 'rejoin,
                e => bail!("Heartbeat: {}", error_name(e)),
            }
        }
    }
    let leave = LeaveGroupRequest::default().with_group_id(GroupId(s(&group))).with_member_id(s(&member_id));
    c.send_at(&leave, 2).await?;
    Ok(())
}

/// From the first JoinGroup until every member synced in one generation.
async fn rebalance_round(rt: &Runtime, addr: &str, group: &str) -> anyhow::Result<Duration> {
    let synced: Synced = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let start = rt.clock.monotonic();
    let tasks: Vec<_> = (0..MEMBERS).map(|me| tokio::spawn(member(addr.to_string(), group.to_string(), me, synced.clone(), stop.clone()))).collect();
    let deadline = start + Duration::from_secs(60);
    let elapsed = loop {
        {
            let m = synced.lock().expect("synced lock");
            let generations: std::collections::BTreeSet<i32> = m.values().copied().collect();
            if m.len() == MEMBERS && generations.len() == 1 {
                break rt.clock.monotonic() - start;
            }
        }
        if rt.clock.monotonic() > deadline {
            bail!("rebalance round did not settle within 60 s");
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    };
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t).await.map_err(|_| anyhow!("member did not stop"))???;
    }
    Ok(elapsed)
}

async fn commit_throughput(rt: &Runtime, addr: &str) -> anyhow::Result<(u64, Duration)> {
    let count = Arc::new(AtomicU64::new(0));
    let start = rt.clock.monotonic();
    let until = start + Duration::from_secs(COMMIT_SECS);
    let mut tasks = Vec::new();
    for i in 0..COMMITTERS {
        let (addr, count, clock) = (addr.to_string(), count.clone(), rt.clock.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(&addr).await?;
            let mut offset = 0i64;
            while clock.monotonic() < until {
                offset += 1;
                // Simple (group-less) commits: generation -1, as a consumer with assign() does.
                let commit = OffsetCommitRequest::default()
                    .with_group_id(GroupId(s(&format!("bench-commit-{i}"))))
                    .with_generation_id_or_member_epoch(-1)
                    .with_topics(vec![OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(TOPIC)))
                        .with_partitions(vec![OffsetCommitRequestPartition::default()
                            .with_partition_index((i as i32) % PARTITIONS)
                            .with_committed_offset(offset)])]);
                let r = c.send_at(&commit, 8).await?;
                let e = r.topics[0].partitions[0].error_code;
                if e != 0 {
                    bail!("OffsetCommit: {}", error_name(e));
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((count.load(Ordering::Relaxed), rt.clock.monotonic() - start))
}
