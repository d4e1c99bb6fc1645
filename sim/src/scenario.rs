//! One simulated run: a broker node on a SimDisk, producer nodes (acks=all, bounded retries),
//! a consumer node reading along, and a nemesis, all driven by one seed.
//!
//! Phases: safety (faults on, for `safety_secs` of simulated time), heal (all faults off, the
//! broker up), liveness (producers must finish within `liveness_secs`), then a final read of
//! the whole partition. The history goes to the checkers in `check.rs`.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use madsim::rand::Rng;
use strand::client::Client;
use strand::config::BrokerConfig;
use strand::runtime::Runtime;

use crate::check::History;
use crate::clock::SimClock;
use crate::disk::{DiskFaults, SimDisk};
use crate::groups::{self, GroupOptions};
use crate::trim;

pub const TOPIC: &str = "sim";
const BROKER_IP: [u8; 4] = [10, 0, 0, 1];
const PORT: u16 = 9092;

/// Everything a seed decides (swarm testing: each seed picks its own faults and rates).
#[derive(Debug, Clone)]
pub struct Options {
    pub producers: usize,
    pub batches_per_producer: usize,
    pub records_per_batch: usize,
    /// Padding per record value, so batches span several 512-byte sectors.
    pub value_pad_bytes: usize,
    pub safety_secs: u64,
    pub liveness_secs: u64,
    pub crashes: bool,
    pub clogs: bool,
    pub pauses: bool,
    pub skew: bool,
    pub buggify: bool,
    /// acks per producer: -1 (all), 1 or 0.
    pub acks: Vec<i16>,
    /// An admin client creating and deleting scratch topics.
    pub admin: bool,
    pub disk: DiskFaults,
    /// The consumer-group workload (`groups.rs`), if this seed runs it.
    pub groups: Option<GroupOptions>,
    /// `group_initial_rebalance_delay_ms` of the broker.
    pub initial_rebalance_delay_ms: u64,
    /// `offsets_topic_compact_bytes` of the broker (small: compaction under faults).
    pub offsets_compact_bytes: u64,
    /// Per producer: idempotent (KIP-98: a producer id, sequence numbers; acks=all only).
    pub idempotent: Vec<bool>,
    /// The DeleteRecords workload (`trim.rs`), if this seed runs it.
    pub trim: bool,
}

impl Options {
    /// Derive options from the run's seeded RNG (call inside the simulation).
    pub fn from_seed() -> Options {
        let mut rng = madsim::rand::thread_rng();
        let disk_faults = rng.gen_bool(0.5);
        Options {
            producers: rng.gen_range(1..=3),
            batches_per_producer: rng.gen_range(20..=80),
            records_per_batch: rng.gen_range(1..=8),
            value_pad_bytes: if rng.gen_bool(0.5) { rng.gen_range(0..=400) } else { 0 },
            safety_secs: rng.gen_range(5..=30),
            liveness_secs: 120,
            crashes: rng.gen_bool(0.8),
            clogs: rng.gen_bool(0.5),
            pauses: rng.gen_bool(0.3),
            skew: rng.gen_bool(0.3),
            buggify: rng.gen_bool(0.3),
            acks: (0..3).map(|_| [-1i16, -1, 1, 0][rng.gen_range(0..4)]).collect(),
            admin: rng.gen_bool(0.5),
            disk: DiskFaults {
                sync_eio_per_mille: if disk_faults && rng.gen_bool(0.5) { rng.gen_range(1..=50) } else { 0 },
                write_enospc_per_mille: if disk_faults && rng.gen_bool(0.5) { rng.gen_range(1..=50) } else { 0 },
                write_eio_per_mille: if disk_faults && rng.gen_bool(0.3) { rng.gen_range(1..=30) } else { 0 },
                read_corrupt_per_mille: if disk_faults && rng.gen_bool(0.3) { rng.gen_range(1..=20) } else { 0 },
                latency_us_max: if rng.gen_bool(0.5) { rng.gen_range(10..=3000) } else { 0 },
                sync_stall_per_mille: if rng.gen_bool(0.5) { rng.gen_range(10..=300) } else { 0 },
            },
            groups: if rng.gen_bool(0.6) { Some(GroupOptions::from_seed()) } else { None },
            initial_rebalance_delay_ms: [0, 0, 3000][rng.gen_range(0..3)],
            offsets_compact_bytes: [1024, 4096, 16 << 20][rng.gen_range(0..3)],
            idempotent: (0..3).map(|_| rng.gen_bool(0.5)).collect(),
            trim: rng.gen_bool(0.4),
        }
    }
}

/// Fault kinds a run may be limited to (`--faults a,b`): each seed still draws all its options,
/// then those not named are switched off.
pub const FAULT_NAMES: &[&str] = &["crash", "pause", "clog", "skew", "buggify", "disk", "member-crash"];

/// Parse a `--faults` list; an unknown name is an error naming it.
pub fn parse_faults(list: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
    if let Some(bad) = names.iter().find(|n| !FAULT_NAMES.contains(&n.as_str())) {
        return Err(format!("unknown fault '{bad}' (known: {})", FAULT_NAMES.join(", ")));
    }
    Ok(names)
}

impl Options {
    /// Switch off every fault kind not in `allowed`.
    pub fn limit_faults(&mut self, allowed: &[String]) {
        let on = |name: &str| allowed.iter().any(|a| a == name);
        self.crashes &= on("crash");
        self.pauses &= on("pause");
        self.clogs &= on("clog");
        self.skew &= on("skew");
        self.buggify &= on("buggify");
        if !on("disk") {
            self.disk = DiskFaults::default();
        }
        if let Some(g) = self.groups.as_mut() {
            g.member_crashes &= on("member-crash");
        }
    }
}

/// The event trace (for replay and the determinism hash) and the history (for the checkers).
#[derive(Default)]
pub struct Recorder {
    pub trace: Vec<String>,
    pub history: History,
    start: Option<tokio::time::Instant>,
}

pub type Shared = Arc<Mutex<Recorder>>;

pub fn event(rec: &Shared, what: String) {
    let mut r = rec.lock().expect("recorder lock");
    let now = tokio::time::Instant::now();
    let start = *r.start.get_or_insert(now);
    let t = now.duration_since(start);
    r.trace.push(format!("{:>10.6}s {what}", t.as_secs_f64()));
}

/// Startup failures go to stderr of the simulation (the node has no recorder handle).
fn tracing_free_event(what: String) {
    eprintln!("[broker] {what}");
}

fn broker_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::from(BROKER_IP), PORT)
}

fn values_for(producer: usize, batch: usize, n: usize, pad: usize) -> Vec<String> {
    (0..n).map(|i| format!("p{producer}-b{batch}-r{i}{}", ".".repeat(pad))).collect()
}

/// An idempotent producer's identity and next sequence number.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Idempotence {
    producer_id: i64,
    epoch: i16,
    next_seq: i32,
}

async fn init_producer_id(client: &mut Client) -> anyhow::Result<(i64, i16)> {
    use kafka_protocol::messages::InitProducerIdRequest;
    let req = InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(60_000).with_producer_id((-1).into()).with_producer_epoch(-1);
    let r = tokio::time::timeout(Duration::from_secs(10), client.send_at(&req, 4)).await.map_err(|_| anyhow::anyhow!("InitProducerId timed out"))??;
    if r.error_code != 0 {
        anyhow::bail!("InitProducerId error {}", r.error_code);
    }
    Ok((r.producer_id.0, r.producer_epoch))
}

/// One produce attempt to partition 0 of `topic`: Ok(Ok(base offset)) when acknowledged
/// (-1 with acks=0, which has no answer), Ok(Err(code)) when refused.
pub(crate) async fn produce_once(
    client: &mut Client,
    topic: &'static str,
    values: &[String],
    now_ms: i64,
    acks: i16,
    idem: Option<Idempotence>,
) -> anyhow::Result<Result<i64, i16>> {
    let (producer_id, epoch, base_sequence) = idem.map_or((-1, -1, -1), |i| (i.producer_id, i.epoch, i.next_seq));
    let records: Vec<(Option<Bytes>, Option<Bytes>)> = values.iter().map(|v| (None, Some(Bytes::from(v.clone())))).collect();
    let batch = strand::protocol::batch::build_producer_batch(0, now_ms, producer_id, epoch, base_sequence, &records);
    let request = ProduceRequest::default().with_acks(acks).with_timeout_ms(5_000).with_topic_data(vec![TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str(topic)))
        .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch))])]);
    if acks == 0 {
        // No answer comes; offset -1 marks "sent, unacknowledged".
        client.send_no_response(&request, 8).await?;
        return Ok(Ok(-1));
    }
    let response = tokio::time::timeout(Duration::from_secs(10), client.send_at(&request, 8))
        .await
        .map_err(|_| anyhow::anyhow!("produce timed out"))??;
    let p = &response.responses[0].partition_responses[0];
    Ok(if p.error_code == 0 { Ok(p.base_offset) } else { Err(p.error_code) })
}

pub async fn connect() -> Option<Client> {
    match tokio::time::timeout(Duration::from_secs(5), Client::connect(&broker_addr().to_string())).await {
        Ok(Ok(c)) => Some(c),
        _ => None,
    }
}

async fn producer(id: usize, opts: Options, rec: Shared, clock: SimClock) {
    let mut client: Option<Client> = None;
    let acks = opts.acks[id % opts.acks.len()];
    // Idempotence needs acks=all (as Kafka requires).
    let idempotent = acks == -1 && opts.idempotent[id % opts.idempotent.len()];
    let mut idem: Option<Idempotence> = None;
    // Spread the batches over the safety phase so faults hit a busy broker.
    let think_ms_max = (opts.safety_secs * 1000 * 3 / 2) / opts.batches_per_producer.max(1) as u64;
    for batch in 0..opts.batches_per_producer {
        let think = madsim::rand::thread_rng().gen_range(0..=think_ms_max);
        tokio::time::sleep(Duration::from_millis(think)).await;
        let values = values_for(id, batch, opts.records_per_batch, opts.value_pad_bytes);
        rec.lock().expect("recorder lock").history.attempted.extend(values.iter().cloned());
        if idempotent {
            rec.lock().expect("recorder lock").history.idempotent_values.extend(values.iter().cloned());
        }
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if client.is_none() {
                client = connect().await;
            }
            if idempotent && idem.is_none() {
                if let Some(c) = client.as_mut() {
                    match init_producer_id(c).await {
                        Ok((producer_id, epoch)) => {
                            event(&rec, format!("producer {id}: idempotent as producer id {producer_id} epoch {epoch}"));
                            idem = Some(Idempotence { producer_id, epoch, next_seq: 0 });
                        }
                        Err(_) => client = None,
                    }
                }
            }
            let outcome = match client.as_mut() {
                None => None,
                Some(_) if idempotent && idem.is_none() => None,
                Some(c) => Some(produce_once(c, TOPIC, &values, strand::runtime::Clock::wall_ms(&clock), acks, idem).await),
            };
            match outcome {
                Some(Ok(Ok(-1))) => {
                    event(&rec, format!("producer {id} batch {batch}: sent with acks=0"));
                    break;
                }
                Some(Ok(Ok(base))) => {
                    event(&rec, format!("producer {id} batch {batch}: acked (acks={acks}) at offset {base} (attempt {attempt})"));
                    rec.lock().expect("recorder lock").history.acked.push((base, values.clone()));
                    if let Some(i) = idem.as_mut() {
                        i.next_seq += values.len() as i32;
                    }
                    break;
                }
                Some(Ok(Err(code))) => {
                    // An error answer: the batch may or may not be in the log; retry it (an
                    // idempotent producer with the same sequence numbers).
                    event(&rec, format!("producer {id} batch {batch}: error {code} (attempt {attempt})"));
                    if idempotent && (code == 45 || code == 47) {
                        rec.lock().expect("recorder lock").history.idempotent_errors.push(format!("producer {id} batch {batch}: error {code}"));
                    }
                }
                Some(Err(e)) => {
                    event(&rec, format!("producer {id} batch {batch}: {e} (attempt {attempt})"));
                    client = None;
                }
                None => {
                    client = None;
                }
            }
            // Bounded backoff with seeded jitter.
            let backoff = 50u64 << attempt.min(5);
            let jitter = madsim::rand::thread_rng().gen_range(0..=backoff);
            tokio::time::sleep(Duration::from_millis(backoff + jitter)).await;
        }
    }
    event(&rec, format!("producer {id} done"));
    rec.lock().expect("recorder lock").history.unfinished.retain(|p| p != &format!("producer {id}"));
}

/// Create and delete scratch topics, recording acknowledged deletions.
async fn admin_workload(rec: Shared, rounds: usize) {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{CreateTopicsRequest, DeleteTopicsRequest};
    let mut client: Option<Client> = None;
    for n in 0..rounds {
        let name = format!("scratch-{n}");
        tokio::time::sleep(Duration::from_millis(madsim::rand::thread_rng().gen_range(100..=1500))).await;
        if client.is_none() {
            client = connect().await;
        }
        let Some(c) = client.as_mut() else { continue };
        let create = CreateTopicsRequest::default().with_timeout_ms(5_000).with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.clone())))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
        match tokio::time::timeout(Duration::from_secs(10), c.send_at(&create, 5)).await {
            Ok(Ok(r)) => event(&rec, format!("admin: create {name}: error code {}", r.topics[0].error_code)),
            _ => {
                client = None;
                continue;
            }
        }
        let delete = DeleteTopicsRequest::default().with_timeout_ms(5_000).with_topic_names(vec![TopicName(StrBytes::from_string(name.clone()))]);
        match tokio::time::timeout(Duration::from_secs(10), c.send_at(&delete, 4)).await {
            Ok(Ok(r)) if r.responses[0].error_code == 0 => {
                event(&rec, format!("admin: deleted {name}"));
                rec.lock().expect("recorder lock").history.deleted_topics.push(name);
            }
            Ok(Ok(r)) => event(&rec, format!("admin: delete {name}: error code {}", r.responses[0].error_code)),
            _ => client = None,
        }
    }
}

/// Create `name` with `partitions` partitions (already existing is fine).
async fn create_topic(c: &mut Client, name: &str, partitions: i32) -> bool {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::CreateTopicsRequest;
    let create = CreateTopicsRequest::default().with_timeout_ms(5_000).with_topics(vec![CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.to_string())))
        .with_num_partitions(partitions)
        .with_replication_factor(1)]);
    matches!(tokio::time::timeout(Duration::from_secs(10), c.send_at(&create, 5)).await, Ok(Ok(r)) if r.topics[0].error_code == 0 || r.topics[0].error_code == 36)
}

/// Read the partition from `from`, returning records, the high watermark, and whether the read
/// reached it.
/// What one fetch returned: (offset, value) of the records from `from` on, the batches they
/// came in (base offset, next offset, max record timestamp) and the high watermark.
type Fetched = (Vec<(i64, String)>, Vec<(i64, i64, i64)>, i64);

async fn fetch_from(client: &mut Client, from: i64) -> anyhow::Result<Fetched> {
    let request = strand::client::fetch_request(TOPIC, [(0, from)], 200, 1 << 20, 1 << 20);
    let response = tokio::time::timeout(Duration::from_secs(10), client.send_at(&request, 11))
        .await
        .map_err(|_| anyhow::anyhow!("fetch timed out"))??;
    let p = &response.responses[0].partitions[0];
    if p.error_code != 0 {
        anyhow::bail!("fetch error {}", p.error_code);
    }
    let (mut out, mut batches) = (Vec::new(), Vec::new());
    if let Some(mut records) = p.records.clone() {
        for set in RecordBatchDecoder::decode_all(&mut records)? {
            if let (Some(first), Some(last)) = (set.records.first(), set.records.last()) {
                let max_ts = set.records.iter().map(|r| r.timestamp).max().unwrap_or(-1);
                batches.push((first.offset, last.offset + 1, max_ts));
            }
            for r in set.records {
                if r.offset >= from {
                    out.push((r.offset, String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()));
                }
            }
        }
    }
    Ok((out, batches, p.high_watermark))
}

/// ListOffsets by `timestamp` on the workload's partition: Some((offset, timestamp)) when
/// answered without an error.
async fn lookup_timestamp(client: &mut Client, timestamp: i64) -> anyhow::Result<Option<(i64, i64)>> {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::ListOffsetsRequest;
    let request = ListOffsetsRequest::default().with_replica_id((-1).into()).with_topics(vec![ListOffsetsTopic::default()
        .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
        .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(timestamp)])]);
    let response = tokio::time::timeout(Duration::from_secs(10), client.send_at(&request, 4))
        .await
        .map_err(|_| anyhow::anyhow!("list offsets timed out"))??;
    let p = response.topics.first().and_then(|t| t.partitions.first()).ok_or_else(|| anyhow::anyhow!("empty ListOffsets response"))?;
    Ok((p.error_code == 0).then_some((p.offset, p.timestamp)))
}

async fn consumer(rec: Shared, stop: Arc<std::sync::atomic::AtomicBool>) {
    let mut client: Option<Client> = None;
    let mut next = 0i64;
    let mut fetches = 0u64;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        if client.is_none() {
            client = connect().await;
            if client.is_none() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        }
        fetches += 1;
        if fetches % 4 == 0 {
            // Now and then look an offset up by timestamp: 0 (the first batch) or the max
            // timestamp of a batch seen, minus 0 or 1 ms.
            let timestamp = {
                let r = rec.lock().expect("recorder lock");
                let seen: Vec<i64> = r.history.batches.values().map(|(_, ts)| *ts).collect();
                let mut rng = madsim::rand::thread_rng();
                match seen.len() {
                    0 => 0,
                    n if rng.gen_bool(0.8) => seen[rng.gen_range(0..n)] - rng.gen_range(0..=1),
                    _ => 0,
                }
            };
            match lookup_timestamp(client.as_mut().expect("connected"), timestamp).await {
                Ok(Some((offset, ts))) => rec.lock().expect("recorder lock").history.timestamp_lookups.push((timestamp, offset, ts)),
                Ok(None) => {}
                Err(_) => {
                    client = None;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        match fetch_from(client.as_mut().expect("connected"), next).await {
            Ok((records, batches, high_watermark)) => {
                let mut r = rec.lock().expect("recorder lock");
                r.history.high_watermarks.push(high_watermark);
                for (base, end, max_ts) in batches {
                    r.history.batches.insert(base, (end, max_ts));
                }
                for (o, v) in records {
                    next = o + 1;
                    r.history.observed.push((o, v));
                }
            }
            Err(_) => {
                client = None;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Run one seed's scenario inside the madsim runtime.
pub async fn run(opts: Options, rec: Shared) {
    let handle = madsim::runtime::Handle::current();
    let disk = SimDisk::new();
    let clock = SimClock::new();
    event(&rec, format!("options {opts:?}"));
    let initial_delay = opts.initial_rebalance_delay_ms;
    let compact_bytes = opts.offsets_compact_bytes;
    let broker = {
        let (disk, clock) = (disk.clone(), clock.clone());
        handle
            .create_node()
            .name("broker")
            .ip(IpAddr::from(BROKER_IP))
            .init(move || {
                let runtime = Runtime { disk: Arc::new(disk.clone()), clock: Arc::new(clock.clone()) };
                async move {
                    let config = BrokerConfig {
                        listen: broker_addr(),
                        data_dir: "/data".into(),
                        offsets_topic_num_partitions: 3,
                        group_initial_rebalance_delay_ms: initial_delay,
                        offsets_topic_compact_bytes: compact_bytes,
                        group_consumer_session_timeout_ms: 10_000,
                        group_consumer_heartbeat_interval_ms: 500,
                        ..BrokerConfig::default()
                    };
                    // A broker that cannot start (a disk error during recovery) exits with its
                    // error, as the real process does; healing restarts it, as a supervisor would.
                    match strand::server::start(runtime, config).await {
                        Ok(server) => {
                            std::future::pending::<()>().await;
                            drop(server);
                        }
                        Err(e) => tracing_free_event(format!("broker exited: {e:#}")),
                    }
                }
            })
            .build()
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Create the topic before the faults start (from a node with an address: madsim's main
    // node has none).
    let admin = handle.create_node().name("admin").ip(IpAddr::from([10, 0, 4, 1])).build();
    let group_partitions = opts.groups.as_ref().map(|g| g.partitions);
    let trim = opts.trim;
    admin
        .spawn(async move {
            loop {
                if let Some(mut c) = connect().await {
                    let grp_ok = match group_partitions {
                        None => true,
                        Some(n) => create_topic(&mut c, groups::GROUP_TOPIC, n).await,
                    };
                    let trim_ok = !trim || create_topic(&mut c, trim::TRIM_TOPIC, 1).await;
                    if grp_ok && trim_ok && strand::cli::topic::partition_count(&mut c, TOPIC, true).await.is_ok() {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("admin task");
    event(&rec, "topic created".into());
    rec.lock().expect("recorder lock").history.unfinished = (0..opts.producers).map(|i| format!("producer {i}")).collect();
    let mut producers = Vec::new();
    for id in 0..opts.producers {
        let (opts, rec, clock) = (opts.clone(), rec.clone(), clock.clone());
        let node = handle.create_node().name(format!("producer-{id}")).ip(IpAddr::from([10, 0, 1, id as u8 + 1])).build();
        producers.push(node.spawn(producer(id, opts, rec, clock)));
    }
    let admin_task = if opts.admin {
        let node = handle.create_node().name("admin-workload").ip(IpAddr::from([10, 0, 5, 1])).build();
        Some(node.spawn(admin_workload(rec.clone(), 10)))
    } else {
        None
    };
    let trim_task = if opts.trim {
        rec.lock().expect("recorder lock").history.trim_enabled = true;
        let node = handle.create_node().name("trim-workload").ip(IpAddr::from([10, 0, 8, 1])).build();
        let rounds = madsim::rand::thread_rng().gen_range(10..=40);
        Some(node.spawn(trim::workload(rec.clone(), rounds, opts.safety_secs * 1500, clock.clone())))
    } else {
        None
    };
    // The group workload: member nodes (restartable: a restart is a new incarnation), its
    // producer and a monitor of the committed offsets.
    let group_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut member_nodes = Vec::new();
    let mut group_tasks = Vec::new();
    if let Some(g) = opts.groups.clone() {
        rec.lock().expect("recorder lock").history.group_enabled = true;
        rec.lock().expect("recorder lock").history.unfinished.push("group producer".into());
        for m in 0..g.members {
            let (g, rec, stop) = (g.clone(), rec.clone(), group_stop.clone());
            let node = handle
                .create_node()
                .name(format!("member-{m}"))
                .ip(IpAddr::from([10, 0, 6, m as u8 + 1]))
                .init(move || groups::member(format!("member-{m}"), g.clone(), rec.clone(), stop.clone()))
                .build();
            member_nodes.push(node);
        }
        let node = handle.create_node().name("group-producer").ip(IpAddr::from([10, 0, 7, 1])).build();
        group_tasks.push(node.spawn(groups::producer(g.clone(), rec.clone())));
        let node = handle.create_node().name("group-monitor").ip(IpAddr::from([10, 0, 7, 2])).build();
        group_tasks.push(node.spawn(groups::monitor(g.clone(), rec.clone(), group_stop.clone())));
    }
    let member_crashes = opts.groups.as_ref().is_some_and(|g| g.member_crashes);

    let consumer_node = handle.create_node().name("consumer").ip(IpAddr::from([10, 0, 2, 1])).build();
    let consumer_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let consumer_task = consumer_node.spawn(consumer(rec.clone(), consumer_stop.clone()));

    // Safety phase: the nemesis.
    disk.set_faults(opts.disk.clone());
    if opts.buggify {
        madsim::buggify::enable();
    }
    if opts.skew {
        clock.set_drift_ppm(madsim::rand::thread_rng().gen_range(-500..=500));
    }
    let net = madsim::net::NetSim::current();
    let safety_end = tokio::time::Instant::now() + Duration::from_secs(opts.safety_secs);
    while tokio::time::Instant::now() < safety_end {
        let wait = madsim::rand::thread_rng().gen_range(200..=3000);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let choice = madsim::rand::thread_rng().gen_range(0..6);
        match choice {
            0 if opts.crashes => {
                if madsim::rand::thread_rng().gen_bool(0.5) {
                    // Targeted: crash the moment a client learns of an acknowledgement (a
                    // produce or an offset commit), when an early answer would be exposed.
                    let commits_only = opts.groups.is_some() && madsim::rand::thread_rng().gen_bool(0.5);
                    let acks = |r: &Recorder| {
                        r.history.group_commit_acked.len() + if commits_only { 0 } else { r.history.acked.len() }
                    };
                    let before = acks(&rec.lock().expect("recorder lock"));
                    let until = tokio::time::Instant::now() + Duration::from_secs(2);
                    while acks(&rec.lock().expect("recorder lock")) == before && tokio::time::Instant::now() < until {
                        tokio::time::sleep(Duration::from_micros(200)).await;
                    }
                }
                event(&rec, "nemesis: kill broker, lose unsynced writes".into());
                handle.kill(broker.id());
                event(&rec, format!("disk before crash (durable, written): {:?}", disk.describe()));
                disk.crash();
                event(&rec, format!("disk after crash: {:?}", disk.describe()));
                let down = madsim::rand::thread_rng().gen_range(0..=2000);
                tokio::time::sleep(Duration::from_millis(down)).await;
                event(&rec, "nemesis: restart broker".into());
                handle.restart(broker.id());
            }
            1 if opts.clogs => {
                event(&rec, "nemesis: clog broker".into());
                net.clog_node(broker.id());
                let t = madsim::rand::thread_rng().gen_range(100..=3000);
                tokio::time::sleep(Duration::from_millis(t)).await;
                net.unclog_node(broker.id());
                event(&rec, "nemesis: unclog broker".into());
            }
            3 if opts.pauses => {
                event(&rec, "nemesis: pause broker".into());
                handle.pause(broker.id());
                let t = madsim::rand::thread_rng().gen_range(100..=3000);
                tokio::time::sleep(Duration::from_millis(t)).await;
                handle.resume(broker.id());
                event(&rec, "nemesis: resume broker".into());
            }
            5 if member_crashes && !member_nodes.is_empty() => {
                let m = madsim::rand::thread_rng().gen_range(0..member_nodes.len());
                event(&rec, format!("nemesis: kill member-{m}"));
                handle.kill(member_nodes[m].id());
                let down = madsim::rand::thread_rng().gen_range(0..=8000);
                tokio::time::sleep(Duration::from_millis(down)).await;
                event(&rec, format!("nemesis: restart member-{m}"));
                handle.restart(member_nodes[m].id());
            }
            2 if opts.skew => {
                let skew = madsim::rand::thread_rng().gen_range(-60_000..=60_000);
                event(&rec, format!("nemesis: broker wall clock skew {skew} ms"));
                clock.set_skew_ms(skew);
            }
            _ => {}
        }
    }
    // Heal.
    event(&rec, "heal: faults off".into());
    madsim::buggify::disable();
    disk.set_faults(DiskFaults::default());
    clock.set_drift_ppm(0);
    net.unclog_node(broker.id());
    clock.set_skew_ms(0);
    // A partition failed by a disk error stays failed until restart (by design), and a broker
    // whose start failed has exited: restart it, as an operator or supervisor would.
    event(&rec, "heal: restart broker".into());
    handle.kill(broker.id());
    handle.restart(broker.id());

    // Liveness phase.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(opts.liveness_secs);
    for p in producers {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let _ = tokio::time::timeout(remaining, p).await;
    }
    if let Some(task) = admin_task {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if tokio::time::timeout(remaining, task).await.is_err() {
            rec.lock().expect("recorder lock").history.unfinished.push("admin".into());
        }
    }
    if let Some(task) = trim_task {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if tokio::time::timeout(remaining, task).await.is_err() {
            rec.lock().expect("recorder lock").history.unfinished.push("trim workload".into());
        }
    }
    // The group: its producer finishes, then the members commit everything.
    let mut group_tasks = group_tasks.into_iter();
    if let Some(producer_task) = group_tasks.next() {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let _ = tokio::time::timeout(remaining, producer_task).await;
        let g = opts.groups.clone().expect("group workload on");
        let checker = handle.create_node().name("group-checker").ip(IpAddr::from([10, 0, 7, 3])).build();
        let settled = checker
            .spawn(async move {
                loop {
                    if let Ok((committed, ends)) = groups::final_state(&g).await {
                        if ends.iter().all(|(p, e)| committed.get(p).copied().unwrap_or(0) == *e) {
                            return true;
                        }
                    }
                    if tokio::time::Instant::now() > deadline {
                        return false;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            })
            .await
            .expect("group checker task");
        event(&rec, format!("group settled: {settled}"));
        group_stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for t in group_tasks {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
        let g = opts.groups.clone().expect("group workload on");
        let rec3 = rec.clone();
        checker
            .spawn(async move {
                match groups::final_state(&g).await {
                    Ok((committed, ends)) => {
                        let mut r = rec3.lock().expect("recorder lock");
                        r.history.group_final_committed = committed;
                        r.history.group_final_log_end = ends;
                    }
                    Err(e) => rec3.lock().expect("recorder lock").history.read_errors.push(e),
                }
            })
            .await
            .expect("group checker task");
    }
    consumer_stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = tokio::time::timeout(Duration::from_secs(15), consumer_task).await;

    // Final read of the whole partition.
    let reader = handle.create_node().name("checker").ip(IpAddr::from([10, 0, 3, 1])).build();
    let rec2 = rec.clone();
    let read = reader
        .spawn(async move {
            let mut log = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            let mut client = None;
            loop {
                if tokio::time::Instant::now() > deadline {
                    return Err("final metadata did not complete".to_string());
                }
                if let Some(mut c) = connect().await {
                    if let Ok(md) = strand::cli::topic::metadata(&mut c, None, false).await {
                        let names = md.topics.iter().filter_map(|t| t.name.as_ref().map(|n| n.as_str().to_string())).collect();
                        rec2.lock().expect("recorder lock").history.final_topics = names;
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            loop {
                if tokio::time::Instant::now() > deadline {
                    return Err(format!("final read did not complete; {} records read", log.len()));
                }
                if client.is_none() {
                    client = connect().await;
                }
                let Some(c) = client.as_mut() else { continue };
                let from = log.last().map(|(o, _): &(i64, String)| o + 1).unwrap_or(0);
                match fetch_from(c, from).await {
                    Ok((records, batches, high_watermark)) => {
                        let mut r = rec2.lock().expect("recorder lock");
                        r.history.high_watermarks.push(high_watermark);
                        for (base, end, max_ts) in batches {
                            r.history.batches.insert(base, (end, max_ts));
                        }
                        drop(r);
                        log.extend(records);
                        if log.last().map(|(o, _)| o + 1).unwrap_or(0) >= high_watermark {
                            return Ok(log);
                        }
                    }
                    Err(e) => {
                        client = None;
                        event(&rec2, format!("final read: {e}"));
                    }
                }
            }
        })
        .await
        .expect("checker task");
    if opts.trim {
        let trimmed = reader.spawn(trim::final_state()).await.expect("checker task");
        let mut r = rec.lock().expect("recorder lock");
        match trimmed {
            Ok(state) => r.history.trim_final = Some(state),
            Err(e) => r.history.read_errors.push(e),
        }
    }
    let mut r = rec.lock().expect("recorder lock");
    match read {
        Ok(log) => {
            r.history.final_log = log;
        }
        Err(e) => r.history.read_errors.push(e),
    }
    let n = r.history.final_log.len();
    drop(r);
    event(&rec, format!("final log: {n} records"));
}
