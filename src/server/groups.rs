//! The group coordinator's shell: drives the sans-IO core (`crate::group`) with requests and
//! ticks, writes its records to `__consumer_offsets` and releases replies only once what they
//! depend on is durable.
//!
//! Order: one async lock (`order`) covers "step the core, append its records", so the log holds
//! records in the order the core produced them. The durable wait happens after the lock is
//! released (group commit with everything else). A failed write makes the coordinator
//! unavailable (COORDINATOR_NOT_AVAILABLE) until restart, whose replay rebuilds the state from
//! what is durable: the in-memory state is never trusted past a failed write.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::topics::{Topic, TopicRegistry};
use crate::group::records::{decode_key, decode_value, encode_key, encode_value, GroupRecord};
use crate::group::{Coordinator, GroupConfig, Now, Output, Reply, Token};
use crate::partition::Acks;
use crate::protocol::batch::build_batch;
use crate::protocol::errors::ErrorCode;
use crate::runtime::{rng, Runtime};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// How often timeouts are checked.
pub const TICK_MS: u64 = 100;
/// Bytes read per step when replaying a partition at start.
const REPLAY_READ_BYTES: usize = 1 << 20;

pub struct Groups {
    rt: Runtime,
    core: Mutex<Coordinator>,
    order: tokio::sync::Mutex<()>,
    waiters: Mutex<BTreeMap<Token, oneshot::Sender<Reply>>>,
    next_token: AtomicU64,
    topic: Mutex<Option<Arc<Topic>>>,
    create: tokio::sync::Mutex<()>,
    failed: AtomicBool,
    /// Compact a partition holding more than this many bytes.
    compact_bytes: u64,
    /// Bytes of live records each partition's last compaction wrote.
    live_bytes: Mutex<BTreeMap<i32, u64>>,
}

/// What a step's caller gets back: its own result, or the coordinator is unavailable.
pub type StepResult<T> = Result<T, ErrorCode>;

impl Groups {
    /// A coordinator with nothing loaded yet: `__consumer_offsets` is replayed the first
    /// time a request finds it hosted here (at start on a single node, where the topic is
    /// known at once; on a cluster, once this node's image places it here).
    pub async fn open(rt: Runtime, topics: &TopicRegistry, config: GroupConfig, compact_bytes: u64) -> anyhow::Result<Groups> {
        let core = Coordinator::new(config, rng::random_u64());
        let groups = Groups {
            rt,
            core: Mutex::new(core),
            order: tokio::sync::Mutex::new(()),
            waiters: Mutex::new(BTreeMap::new()),
            next_token: AtomicU64::new(1),
            topic: Mutex::new(None),
            create: tokio::sync::Mutex::new(()),
            failed: AtomicBool::new(false),
            compact_bytes,
            live_bytes: Mutex::new(BTreeMap::new()),
        };
        if let Some(topic) = topics.get(OFFSETS_TOPIC).filter(|t| t.hosted().next().is_some()) {
            groups.load(&topic).await?;
            *groups.topic.lock().expect("topic lock") = Some(topic);
        }
        Ok(groups)
    }

    /// Replay committed offsets and group generations from `topic`'s partitions (hosted here:
    /// `__consumer_offsets` lives whole on one broker until [replication]).
    async fn load(&self, topic: &Topic) -> anyhow::Result<()> {
        let wall = self.rt.clock.wall_ms();
        let mut count = 0u64;
        let mut core = Coordinator::new(self.core.lock().expect("core lock").config.clone(), rng::random_u64());
        for (p, partition) in topic.hosted() {
            let mut offset = partition.log_start_offset();
            let end = partition.high_watermark();
            while offset < end {
                let read = partition
                    .read(offset, REPLAY_READ_BYTES)
                    .await
                    .map_err(|e| anyhow::anyhow!("replaying {OFFSETS_TOPIC}-{p} at offset {offset}: {e}"))?;
                let fetched = crate::client::records::decode_fetched(&read.records, offset)
                    .map_err(|e| anyhow::anyhow!("replaying {OFFSETS_TOPIC}-{p} at offset {offset}: {e}"))?;
                if fetched.next_offset <= offset {
                    anyhow::bail!("replaying {OFFSETS_TOPIC}-{p}: no progress at offset {offset}");
                }
                for r in &fetched.records {
                    let Some(k) = &r.key else { anyhow::bail!("{OFFSETS_TOPIC}-{p} offset {}: record without key", r.offset) };
                    let key = decode_key(k).map_err(|e| anyhow::anyhow!("{OFFSETS_TOPIC}-{p} offset {}: {e}", r.offset))?;
                    let value = match &r.value {
                        Some(v) => Some(decode_value(&key, v).map_err(|e| anyhow::anyhow!("{OFFSETS_TOPIC}-{p} offset {}: {e}", r.offset))?),
                        None => None,
                    };
                    core.replay(p, &key, value.as_ref(), wall);
                    count += 1;
                }
                offset = fetched.next_offset;
            }
        }
        tracing::info!(records = count, groups = core.groups().count(), "group coordinator loaded {OFFSETS_TOPIC}");
        if topic.partition_count() != core.config.offsets_partitions {
            tracing::warn!(
                existing = topic.partition_count(),
                configured = core.config.offsets_partitions,
                "{OFFSETS_TOPIC} exists with a different partition count; using the existing one"
            );
            core.config.offsets_partitions = topic.partition_count();
        }
        *self.core.lock().expect("core lock") = core;
        Ok(())
    }

    pub fn now(&self) -> Now {
        Now { mono_ms: self.rt.clock.monotonic().as_millis() as u64, wall_ms: self.rt.clock.wall_ms() }
    }

    /// `__consumer_offsets` as this coordinator serves it: created on first use (as Kafka
    /// does on the first FindCoordinator) and loaded the first time it is found hosted here.
    /// NOT_COORDINATOR when another broker hosts it.
    pub async fn offsets_topic(&self, topics: &TopicRegistry) -> StepResult<Arc<Topic>> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(ErrorCode::COORDINATOR_NOT_AVAILABLE);
        }
        if let Some(t) = self.topic.lock().expect("topic lock").clone() {
            return Ok(t);
        }
        let _one = self.create.lock().await;
        if let Some(t) = self.topic.lock().expect("topic lock").clone() {
            return Ok(t);
        }
        let topic = self.ensure_offsets_topic(topics).await?;
        let hosted = topic.hosted().count();
        if hosted == 0 {
            return Err(ErrorCode::NOT_COORDINATOR);
        }
        if hosted != topic.partitions.len() {
            // The coordinator writes to every partition (its groups hash over all of them), so
            // it needs the topic whole: until then, retriable.
            tracing::warn!(hosted, partitions = topic.partitions.len(), "{OFFSETS_TOPIC} is not whole on this broker yet");
            return Err(ErrorCode::COORDINATOR_NOT_AVAILABLE);
        }
        if let Err(e) = self.load(&topic).await {
            self.fail(&format!("loading {OFFSETS_TOPIC}: {e}"));
            return Err(ErrorCode::COORDINATOR_NOT_AVAILABLE);
        }
        *self.topic.lock().expect("topic lock") = Some(topic.clone());
        Ok(topic)
    }

    /// `__consumer_offsets`, created if it does not exist yet (wherever it is hosted).
    pub async fn ensure_offsets_topic(&self, topics: &TopicRegistry) -> StepResult<Arc<Topic>> {
        if let Some(t) = topics.get(OFFSETS_TOPIC) {
            return Ok(t);
        }
        let partitions = self.core.lock().expect("core lock").config.offsets_partitions;
        // Offsets are never deleted by retention: the coordinator tombstones what it drops.
        let overrides: BTreeMap<String, String> = [
            ("retention.ms".to_string(), "-1".to_string()),
            ("retention.bytes".to_string(), "-1".to_string()),
            ("segment.bytes".to_string(), (100 * 1024 * 1024).to_string()),
        ]
        .into();
        match topics.create(OFFSETS_TOPIC, partitions, overrides).await {
            Ok(t) => Ok(t),
            Err(e) if e.code == ErrorCode::TOPIC_ALREADY_EXISTS => topics.get(OFFSETS_TOPIC).ok_or(ErrorCode::COORDINATOR_NOT_AVAILABLE),
            Err(e) => {
                tracing::warn!(error = %e.message, "cannot create {OFFSETS_TOPIC}");
                Err(ErrorCode::COORDINATOR_NOT_AVAILABLE)
            }
        }
    }

    /// Register a waiter for a parked reply.
    pub fn park(&self) -> (Token, oneshot::Receiver<Reply>) {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().expect("waiters lock").insert(token, tx);
        (token, rx)
    }

    /// Forget a waiter that gave up.
    pub fn unpark(&self, token: Token) {
        self.waiters.lock().expect("waiters lock").remove(&token);
    }

    /// Step the core with `f`, persist what it wrote, wait until the affected partitions are
    /// durable, deliver parked replies, return `f`'s result.
    pub async fn step<T>(&self, topics: &TopicRegistry, f: impl FnOnce(&mut Coordinator, Now) -> T) -> StepResult<T> {
        let topic = self.offsets_topic(topics).await?;
        let (result, output, written) = {
            let _order = self.order.lock().await;
            if self.failed.load(Ordering::SeqCst) {
                return Err(ErrorCode::COORDINATOR_NOT_AVAILABLE);
            }
            let (result, output) = {
                let mut core = self.core.lock().expect("core lock");
                let now = self.now();
                let r = f(&mut core, now);
                (r, core.take_output())
            };
            let written = self.append(&topic, &output.records).await;
            (result, output, written)
        };
        #[cfg(feature = "planted-bugs")]
        if written.is_ok() && crate::runtime::planted("group-ack-before-durable") {
            // Planted bug: answer before the records are durable.
            self.deliver(output, true);
            return Ok(result);
        }
        let durable = match written {
            Ok(()) => self.barrier(&topic).await,
            Err(e) => Err(e),
        };
        self.deliver(output, durable.is_ok());
        durable.map(|()| result)
    }

    /// Wait until everything appended so far is durable.
    pub async fn barrier(&self, topic: &Topic) -> StepResult<()> {
        for (p, partition) in topic.hosted() {
            let end = partition.log_end_offset();
            if partition.high_watermark() < end {
                if let Err(e) = partition.wait_durable(end).await {
                    self.fail(&format!("{OFFSETS_TOPIC}-{p}: {e}"));
                    return Err(ErrorCode::COORDINATOR_NOT_AVAILABLE);
                }
            }
        }
        Ok(())
    }

    async fn append(&self, topic: &Topic, records: &[GroupRecord]) -> StepResult<()> {
        type KeyValue = (Option<Bytes>, Option<Bytes>);
        let mut by_partition: BTreeMap<i32, Vec<KeyValue>> = BTreeMap::new();
        for r in records {
            by_partition
                .entry(r.partition)
                .or_default()
                .push((Some(Bytes::from(encode_key(&r.key))), r.value.as_ref().map(|v| Bytes::from(encode_value(v)))));
        }
        let wall = self.rt.clock.wall_ms();
        for (p, recs) in by_partition {
            let partition = topic.partition(p).unwrap_or_else(|| panic!("group record for {OFFSETS_TOPIC}-{p}, which does not exist"));
            // Bounded batches: a group with many partitions writes several.
            for chunk in recs.chunks(1000) {
                if let Err(e) = partition.append(build_batch(0, wall, chunk), Acks::None).await {
                    self.fail(&format!("{OFFSETS_TOPIC}-{p}: {e}"));
                    return Err(ErrorCode::COORDINATOR_NOT_AVAILABLE);
                }
            }
        }
        Ok(())
    }

    fn fail(&self, why: &str) {
        if !self.failed.swap(true, Ordering::SeqCst) {
            tracing::error!(reason = why, "group coordinator unavailable until restart: a write to {OFFSETS_TOPIC} failed");
        }
    }

    fn deliver(&self, output: Output, ok: bool) {
        let mut waiters = self.waiters.lock().expect("waiters lock");
        for (token, reply) in output.replies {
            let reply = if ok { reply } else { unavailable(reply) };
            if let Some(tx) = waiters.remove(&token) {
                let _ = tx.send(reply);
            }
        }
    }

    /// Timeouts: run by the broker's group tick task.
    pub async fn tick(&self, topics: &TopicRegistry) {
        if self.topic.lock().expect("topic lock").is_none() || self.failed.load(Ordering::SeqCst) {
            return;
        }
        let view = topic_view(topics);
        let _ = self.step(topics, |c, now| c.tick(now, &view)).await;
    }

    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }
}

impl Groups {
    /// Compaction, strand's way: a partition of `__consumer_offsets` that grew past
    /// `compact_bytes` (and past 4x its live records) gets every live record of its groups
    /// appended again after a segment roll; once those are durable, the log start moves to the
    /// first of them and the older segments are deleted. Replay from the new start rebuilds the
    /// same state, because the copies carry everything live.
    pub async fn compact(&self) {
        if self.failed.load(Ordering::SeqCst) {
            return;
        }
        let Some(topic) = self.topic.lock().expect("topic lock").clone() else { return };
        for (p, partition) in topic.hosted() {
            let size = partition.size_bytes().await;
            let live = self.live_bytes.lock().expect("live lock").get(&p).copied().unwrap_or(0);
            if size <= self.compact_bytes || size <= live.saturating_mul(4) {
                continue;
            }
            let start = {
                let _order = self.order.lock().await;
                if let Err(e) = partition.roll().await {
                    self.fail(&format!("{OFFSETS_TOPIC}-{p}: roll for compaction: {e}"));
                    return;
                }
                let start = partition.log_end_offset();
                let records = self.core.lock().expect("core lock").snapshot(p);
                let bytes: u64 = records.iter().map(|r| encode_key(&r.key).len() as u64 + r.value.as_ref().map_or(0, |v| encode_value(v).len() as u64) + 16).sum();
                if self.append(&topic, &records).await.is_err() {
                    return;
                }
                self.live_bytes.lock().expect("live lock").insert(p, bytes);
                start
            };
            if self.barrier(&topic).await.is_err() {
                return;
            }
            match partition.delete_records_before(start).await {
                Ok(n) => tracing::info!(partition = p, before = size, start, segments = n, "compacted {OFFSETS_TOPIC}"),
                Err(e) => {
                    self.fail(&format!("{OFFSETS_TOPIC}-{p}: deleting the compacted prefix: {e}"));
                    return;
                }
            }
        }
    }
}

/// Every topic's partition count by name (what KIP-848 assignors see).
pub fn topic_view(topics: &TopicRegistry) -> BTreeMap<String, i32> {
    topics.all().iter().filter(|t| t.name != OFFSETS_TOPIC).map(|t| (t.name.clone(), t.partition_count())).collect()
}

fn unavailable(reply: Reply) -> Reply {
    use crate::group::classic::{JoinResponse, SyncResponse};
    match reply {
        Reply::Join(j) => Reply::Join(JoinResponse::error(ErrorCode::COORDINATOR_NOT_AVAILABLE, &j.member_id)),
        Reply::Sync(_) => Reply::Sync(SyncResponse::error(ErrorCode::COORDINATOR_NOT_AVAILABLE)),
    }
}

/// The tick loop.
pub async fn tick_loop(broker: Arc<super::Broker>) {
    let mut n = 0u64;
    loop {
        tokio::time::sleep(Duration::from_millis(TICK_MS)).await;
        broker.groups.tick(&broker.topics).await;
        n += 1;
        if n.is_multiple_of(COMPACT_EVERY_TICKS) {
            broker.groups.compact().await;
        }
    }
}

/// How often (in ticks) partitions are checked for compaction.
const COMPACT_EVERY_TICKS: u64 = 50;
