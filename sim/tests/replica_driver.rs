//! Three partitions replicated on three simulated nodes (`strand::replica`: each node's
//! `ReplicaManager` hosts the three replicas, their drivers sharing one inter-broker transport
//! through its router), on one SimDisk per node that survives its kills (losing what was not
//! synced), over madsim's network. For each partition, each node appends unique batches
//! (acks=all) whenever its replica leads; a nemesis kills (power loss), pauses and clogs nodes and links.
//! Besides, a client node runs one idempotent producer per partition (KIP-98: producer id,
//! sequence numbers) that retries a batch, unchanged, on whichever replica leads until it is
//! acknowledged. Checked, per partition: at most one leader per term; a leader's published high watermark never goes back;
//! after healing, an append is acknowledged again (liveness), every replica holds the same
//! bytes below its high watermark, every acknowledged batch is there at the offsets it was
//! acknowledged at, and every idempotent producer's record is there at most once (exactly once
//! if acknowledged), however often its batch was retried across leaders. Run by ci/run.sh:
//! `RUSTFLAGS="--cfg madsim" cargo test -p strand-sim --test replica_driver`.
#![cfg(madsim)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use madsim::runtime::Handle;
use madsim::time::sleep;
use strand::config::TopicConfig;
use strand::protocol::batch::{build_producer_batch, build_simple_batch, split_batches};
use strand::raft::{NodeId, Options};
use strand::replica::driver::{AppendError, ReplicaHandle};
use strand::replica::manager::{ReplicaManager, ReplicaSettings, Router};
use strand::runtime::Runtime;
use strand::transport::{GroupId, Transport, TransportConfig, TransportLimits};
use strand_sim::clock::SimClock;
use strand_sim::disk::SimDisk;

const NODES: u32 = 3;
const PARTITIONS: i32 = 3;

/// Partition p's `min.insync.replicas`: 1, 2, 3.
fn min_insync(p: i32) -> usize {
    p as usize + 1
}

fn group(partition: i32) -> GroupId {
    GroupId::Partition { topic_id: [7; 16], partition }
}

#[derive(Default)]
struct History {
    /// (partition, value) -> (base offset, bytes of the records' values) it was acknowledged with
    acked: BTreeMap<(i32, u64), (i64, Vec<u8>)>,
    /// (partition, term) -> leader
    leaders: BTreeMap<(i32, u64), u32>,
    /// (node, partition): the highest high watermark its replica published as leader, this run
    published: BTreeMap<(u32, i32), i64>,
    violations: Vec<String>,
    next_value: u64,
    stopped: bool,
    /// (node, partition) -> the replica as of the node's latest start
    handles: BTreeMap<(u32, i32), ReplicaHandle>,
    /// (partition, sequence) -> base offset, for the idempotent producers' acknowledged batches
    idempotent_acked: BTreeMap<(i32, i32), i64>,
    /// Retries the idempotent producers made (a batch sent again after an unknown outcome).
    idempotent_retries: u64,
    /// Appends refused with NOT_ENOUGH_REPLICAS, per partition.
    not_enough_replicas: BTreeMap<i32, u64>,
}

type Shared = Arc<Mutex<History>>;

fn addr(id: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::from([10, 0, 9, id as u8]), 7200)
}

async fn node(id: u32, disk: SimDisk, clock: SimClock, history: Shared) {
    let runtime = Runtime { disk: Arc::new(disk), clock: Arc::new(clock) };
    let peers = (1..=NODES).map(|p| (NodeId(p), addr(p))).collect();
    let limits = TransportLimits {
        connect_timeout_ms: 300,
        handshake_timeout_ms: 300,
        write_timeout_ms: 300,
        backoff_min_ms: 20,
        backoff_max_ms: 200,
        ..TransportLimits::default()
    };
    let config = TransportConfig { node_id: NodeId(id), cluster_id: "sim".into(), listen: addr(id), peers, limits };
    let (transport, inbox) = Transport::start(config).await.expect("bind the inter-broker listener");
    let members: Vec<NodeId> = (1..=NODES).map(NodeId).collect();
    let options = Options { election_timeout_ticks: 10, heartbeat_interval_ticks: 1, max_entries_per_msg: 512, ..Options::default() };
    let settings = ReplicaSettings { node_id: NodeId(id), tick_ms: 50, options, replica_lag_ticks: 10 };
    let manager = ReplicaManager::new(runtime, Arc::new(transport), Router::start(inbox), settings);
    for p in 0..PARTITIONS {
        let dir = PathBuf::from(format!("/data/t-{p}"));
        // Small segments: replicas roll, truncate and rebuild across segment files (and the
        // simulated disk copies a whole file at each sync, so big files would be slow).
        let mut topic_config = TopicConfig::default();
        topic_config.set("segment.bytes", "65536").expect("a valid segment size");
        let handle = match manager.host(group(p), dir, topic_config, &members, min_insync(p)).await {
            Ok(h) => h,
            Err(e) => panic!("node {id}: replica {p} did not open: {e}"),
        };
        {
            let mut h = history.lock().unwrap();
            h.handles.insert((id, p), handle.clone());
            h.published.insert((id, p), 0);
        }
        tokio::spawn(produce(id, p, handle, history.clone()));
    }
    std::future::pending::<()>().await;
}

/// Append unique batches to partition `p` through node `id`'s replica while it leads.
async fn produce(id: u32, p: i32, handle: ReplicaHandle, history: Shared) {
    loop {
        let status = handle.status();
        if status.is_leader {
            let mut h = history.lock().unwrap();
            match h.leaders.get(&(p, status.term.0)) {
                Some(&other) if other != id => {
                    let term = status.term.0;
                    h.violations.push(format!("partition {p}: nodes {other} and {id} both lead term {term}"));
                }
                _ => {
                    h.leaders.insert((p, status.term.0), id);
                }
            }
            let before = h.published.get(&(id, p)).copied().unwrap_or(0);
            if status.high_watermark < before {
                h.violations.push(format!("partition {p}, node {id}: published high watermark went back from {before} to {}", status.high_watermark));
            }
            h.published.insert((id, p), status.high_watermark.max(before));
        }
        if status.is_leader && !history.lock().unwrap().stopped {
            let value = {
                let mut h = history.lock().unwrap();
                h.next_value += 1;
                h.next_value
            };
            let records: Vec<Vec<u8>> = (0..1 + value % 3).map(|i| format!("{value}-{i}").into_bytes()).collect();
            let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
            let batch = build_simple_batch(0, 1_000, &refs);
            match tokio::time::timeout(Duration::from_secs(3), handle.append(batch)).await {
                Ok(Ok(appended)) => {
                    let mut h = history.lock().unwrap();
                    if appended.last_offset - appended.base_offset + 1 != records.len() as i64 {
                        h.violations.push(format!("partition {p}, value {value}: acknowledged at {appended:?} for {} records", records.len()));
                    }
                    // A majority, and min.insync.replicas, hold the batch when it is acknowledged.
                    let holding = h.handles.iter().filter(|((_, q), r)| *q == p && r.status().log_end_offset > appended.last_offset).count();
                    let needed = min_insync(p).max(NODES as usize / 2 + 1);
                    if holding < needed {
                        h.violations.push(format!("partition {p}, value {value}: acknowledged with {holding} replicas holding it, {needed} needed"));
                    }
                    h.acked.insert((p, value), (appended.base_offset, records.concat()));
                }
                Ok(Err(AppendError::NotEnoughReplicas { .. })) => {
                    *history.lock().unwrap().not_enough_replicas.entry(p).or_default() += 1;
                    sleep(Duration::from_millis(20)).await;
                }
                _ => {}
            }
        } else {
            sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Partition `p`'s idempotent producer: batches of 1-3 records `i{p}-{seq}-{i}`, each sent
/// (unchanged) to the replica that leads until one acknowledges it, then the next sequence.
async fn idempotent_producer(p: i32, history: Shared) {
    let producer_id = 1000 + i64::from(p);
    // `seq` numbers the batches; `sequence` is Kafka's: it counts records.
    let (mut seq, mut sequence) = (0i32, 0i32);
    let mut attempt = 0u32;
    loop {
        let leader = {
            let h = history.lock().unwrap();
            if h.stopped {
                return;
            }
            h.handles.iter().find(|((_, q), r)| *q == p && r.status().is_leader && r.status().running).map(|(_, r)| r.clone())
        };
        let Some(leader) = leader else {
            sleep(Duration::from_millis(20)).await;
            continue;
        };
        let records: Vec<(Option<Bytes>, Option<Bytes>)> =
            (0..1 + seq % 3).map(|i| (None, Some(Bytes::from(format!("i{p}-{seq}-{i}"))))).collect();
        let batch = build_producer_batch(0, 1_000, producer_id, 0, sequence, &records);
        match tokio::time::timeout(Duration::from_secs(3), leader.append(batch)).await {
            Ok(Ok(appended)) => {
                let mut h = history.lock().unwrap();
                h.idempotent_acked.insert((p, seq), appended.base_offset);
                sequence += records.len() as i32;
                seq += 1;
                attempt = 0;
            }
            Ok(Err(e @ (AppendError::OutOfOrderSequence { .. } | AppendError::InvalidProducerEpoch { .. }))) => {
                history.lock().unwrap().violations.push(format!("partition {p}: idempotent batch {seq} refused: {e}"));
                sleep(Duration::from_millis(100)).await;
            }
            _ => {
                attempt += 1;
                if attempt == 1 {
                    history.lock().unwrap().idempotent_retries += 1;
                }
                sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// The idempotent records (`i{p}-{seq}-{i}`) of a data batch, with their offsets.
fn idempotent_records(batch: &Bytes) -> Vec<(i64, String)> {
    let mut buf = batch.clone();
    let Ok(set) = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf) else { return Vec::new() };
    set.records
        .iter()
        .filter(|r| !r.control)
        .filter_map(|r| {
            let v = String::from_utf8(r.value.clone()?.to_vec()).ok()?;
            v.starts_with('i').then_some((r.offset, v))
        })
        .collect()
}

/// Every batch of a replica below its high watermark: (base offset, batch bytes).
async fn batches(handle: &ReplicaHandle) -> Vec<(i64, Bytes)> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let Ok(read) = handle.read(offset, 1 << 20).await else { panic!("read at {offset} failed") };
        let (views, _) = split_batches(&read).expect("whole batches");
        if views.is_empty() {
            return out;
        }
        for b in &views {
            out.push((b.base_offset(), Bytes::copy_from_slice(b.bytes())));
            offset = b.next_offset();
        }
    }
}

/// The values of a data batch's records, concatenated.
fn values(batch: &Bytes) -> Option<Vec<u8>> {
    let mut buf = batch.clone();
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).ok()?;
    if set.records.iter().any(|r| r.control) {
        return None;
    }
    Some(set.records.iter().flat_map(|r| r.value.clone().unwrap_or_default().to_vec()).collect())
}

#[madsim::test]
async fn a_replicated_partition_keeps_every_acknowledged_batch_under_faults() {
    let handle = Handle::current();
    let history: Shared = Arc::default();
    let mut ids = Vec::new();
    let mut disks = Vec::new();
    for id in 1..=NODES {
        let (disk, clock, h) = (SimDisk::new(), SimClock::new(), history.clone());
        disks.push(disk.clone());
        let node = handle
            .create_node()
            .name(format!("replica-{id}"))
            .ip(addr(id).ip())
            .init(move || node(id, disk.clone(), clock.clone(), h.clone()))
            .build();
        ids.push(node.id());
    }
    let h = history.clone();
    handle
        .create_node()
        .name("client")
        .ip(IpAddr::from([10, 0, 9, 100]))
        .init(move || {
            let h = h.clone();
            async move {
                for p in 0..PARTITIONS {
                    tokio::spawn(idempotent_producer(p, h.clone()));
                }
                std::future::pending::<()>().await;
            }
        })
        .build();
    sleep(Duration::from_secs(3)).await;
    assert!(!history.lock().unwrap().acked.is_empty(), "nothing acknowledged in 3 s without faults");

    strand_sim::nemesis::kills_and_clogs(&ids, &disks, 12, 300..2500, 100..1500).await;

    let acked_before: Vec<usize> =
        (0..PARTITIONS).map(|p| history.lock().unwrap().acked.keys().filter(|(q, _)| *q == p).count()).collect();
    sleep(Duration::from_secs(10)).await;
    history.lock().unwrap().stopped = true;
    sleep(Duration::from_secs(3)).await; // appends in flight finish; followers learn the commit
    let (handles, acked, idempotent) = {
        let h = history.lock().unwrap();
        eprintln!(
            "replica_driver: idempotent: {} batches acknowledged, {} retried; NOT_ENOUGH_REPLICAS per partition {:?}",
            h.idempotent_acked.len(),
            h.idempotent_retries,
            h.not_enough_replicas
        );
        assert!(!h.idempotent_acked.is_empty(), "no idempotent batch acknowledged");
        assert!(h.violations.is_empty(), "violations: {:#?}", h.violations);
        for p in 0..PARTITIONS {
            let after = h.acked.keys().filter(|(q, _)| *q == p).count() - acked_before[p as usize];
            assert!(after > 0, "partition {p}: no append acknowledged in the 10 s after heal (liveness)");
        }
        (h.handles.clone(), h.acked.clone(), h.idempotent_acked.clone())
    };
    eprintln!(
        "replica_driver: {} batches acknowledged ({} after heal), {} terms with a leader",
        acked.len(),
        acked.len() - acked_before.iter().sum::<usize>(),
        history.lock().unwrap().leaders.len()
    );
    for p in 0..PARTITIONS {
        let mut logs = Vec::new();
        for ((id, q), handle) in &handles {
            if *q != p {
                continue;
            }
            // No disk faults here: a replica that stopped (fail-stop) hit a broken invariant.
            assert!(handle.status().running, "partition {p}: replica {id} stopped");
            logs.push((*id, batches(handle).await));
        }
        let (first_id, first) = &logs[0];
        for (id, log) in &logs[1..] {
            let n = first.len().min(log.len());
            assert!(first[..n] == log[..n], "partition {p}: replicas {first_id} and {id} differ below their high watermarks");
        }
        let longest = logs.iter().map(|(_, l)| l).max_by_key(|l| l.len()).unwrap();
        // Exactly once: each idempotent record at most once, an acknowledged batch's at its offset.
        let mut seen: BTreeMap<String, i64> = BTreeMap::new();
        for (_, b) in longest {
            for (offset, v) in idempotent_records(b) {
                if let Some(earlier) = seen.insert(v.clone(), offset) {
                    panic!("partition {p}: idempotent record {v} is in the log twice, at {earlier} and {offset}");
                }
            }
        }
        for ((q, seq), offset) in &idempotent {
            if *q == p {
                assert_eq!(seen.get(&format!("i{p}-{seq}-0")), Some(offset), "partition {p}: acknowledged idempotent batch {seq} is not at {offset}");
            }
        }
        let by_offset: BTreeMap<i64, Option<Vec<u8>>> = longest.iter().map(|(o, b)| (*o, values(b))).collect();
        let acked_here: Vec<(u64, i64, Vec<u8>)> =
            acked.iter().filter(|((q, _), _)| *q == p).map(|((_, v), (o, e))| (*v, *o, e.clone())).collect();
        for (value, offset, expected) in &acked_here {
            assert_eq!(by_offset.get(offset), Some(&Some(expected.clone())), "partition {p}: acknowledged value {value} is not at offset {offset}");
        }
        let max_acked = acked_here.iter().map(|(_, o, _)| *o).max().unwrap_or(0);
        for (id, log) in &logs {
            assert!(log.last().is_some_and(|(o, _)| *o >= max_acked), "partition {p}: replica {id}'s high watermark is below the acknowledged offset {max_acked}");
        }
    }
}
