//! The replica manager of this node: it keeps the metadata image (`meta/`) and hosts the
//! partitions the image assigns to this node.
//!
//! Every admin change (create, delete, alter, add partitions, a producer id block) is turned
//! into metadata records, checked against the image, made durable, applied, and then the
//! hosted partitions are reconciled with the new image: partitions it assigns here are opened
//! (before the records are durable, so a published topic is always ready to serve), and a
//! topic's directories are removed only after the image without it is durable and published.
//! Until the metadata quorum arrives, "durable" is the metadata file `strand.meta` in the data
//! directory, written from the image: postcard bytes followed by their CRC-32C, replaced
//! atomically (`.swap` + rename + directory sync). Its format (version 1) predates the image
//! and holds no placement: on this single node every partition is assigned to this node, so
//! placement is rebuilt on open. This node's image is the whole committed metadata, so
//! partition directories it does not name are leftovers of an interrupted create or delete and
//! are removed at start.
//!
//! Admin operations are serialised by one async lock; lookups take a short std lock, never
//! held across an await, over the image and the hosted topics, which change together.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::{validate_topic_name, TopicConfig};
use crate::meta::records::{
    ClusterIdRecord, CreateTopicRecord, PartitionRecord, ProducerIdBlockRecord, RemoveTopicRecord,
};
use crate::controller::driver::{self, Applied, Apply, QuorumConfig, QuorumHandle};
use crate::meta::records::{decode_snapshot, encode_snapshot};
use crate::meta::{ImageError, MetadataImage, MetadataRecord, NodeId, TopicId, TopicImage};
use crate::raft::{LogIndex, Payload, ProposeError};
use crate::transport::{Envelope, TransportHandle};
use tokio::sync::{mpsc, watch};
use crate::partition::Partition;
use crate::protocol::errors::ErrorCode;
use crate::runtime::disk::{read_whole, write_atomic};
use crate::runtime::{rng, Runtime};

const META_FILE: &str = "strand.meta";
const META_VERSION: u32 = 1;

/// A topic as this node hosts it: its metadata from the image and its open partitions.
pub struct Topic {
    pub name: String,
    pub id: Uuid,
    /// Only the keys the user set (DescribeConfigs reports the rest as defaults).
    pub overrides: BTreeMap<String, String>,
    pub config: TopicConfig,
    /// Every partition of the topic, by index: `Some` where this node hosts it (its replica is
    /// here; until [replication], replication factor 1, so this node leads it).
    pub partitions: Vec<Option<Arc<Partition>>>,
}

impl Topic {
    /// Partition `index` if this node hosts it.
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index).ok().and_then(|i| self.partitions.get(i)).and_then(Option::as_ref)
    }

    /// Partition `index` for a request that needs its leader: NOT_LEADER_OR_FOLLOWER when
    /// the partition exists but is on another broker (clients refresh metadata and go there),
    /// UNKNOWN_TOPIC_OR_PARTITION when it does not exist.
    pub fn lookup(&self, index: i32) -> Result<&Arc<Partition>, ErrorCode> {
        match usize::try_from(index).ok().and_then(|i| self.partitions.get(i)) {
            Some(Some(p)) => Ok(p),
            Some(None) => Err(ErrorCode::NOT_LEADER_OR_FOLLOWER),
            None => Err(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION),
        }
    }

    pub fn partition_count(&self) -> i32 {
        self.partitions.len() as i32
    }

    /// The partitions this node hosts, with their index.
    pub fn hosted(&self) -> impl Iterator<Item = (i32, &Arc<Partition>)> {
        self.partitions.iter().enumerate().filter_map(|(i, p)| p.as_ref().map(|p| (i as i32, p)))
    }
}

/// One topic in `strand.meta` (version 1).
#[derive(Debug, Serialize, Deserialize)]
struct MetaFileTopic {
    name: String,
    id: [u8; 16],
    partitions: i32,
    overrides: Vec<(String, String)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct MetaFile {
    version: u32,
    cluster_id: [u8; 16],
    topics: Vec<MetaFileTopic>,
    /// Producer ids below this may have been handed out; a restart continues from here.
    producer_id_block_end: i64,
}

impl MetaFile {
    /// The file holding `image` (which has a cluster id: it is the first record of a new one).
    fn from_image(image: &MetadataImage) -> MetaFile {
        MetaFile {
            version: META_VERSION,
            cluster_id: *image.cluster_id().expect("the image of a formed cluster has its id").as_bytes(),
            topics: image
                .topics()
                .map(|t| MetaFileTopic {
                    name: t.name.clone(),
                    id: t.id.0,
                    partitions: t.partition_count(),
                    overrides: t.configs.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                })
                .collect(),
            producer_id_block_end: image.next_producer_id(),
        }
    }

    /// The records of the image this file holds, every partition placed on `node`.
    fn records(&self, node: NodeId) -> Vec<MetadataRecord> {
        let mut out = vec![MetadataRecord::ClusterId(ClusterIdRecord { cluster_id: self.cluster_id })];
        if self.producer_id_block_end > 0 {
            out.push(MetadataRecord::ProducerIdBlock(ProducerIdBlockRecord {
                node_id: node,
                first: 0,
                size: self.producer_id_block_end,
            }));
        }
        for t in &self.topics {
            let topic_id = TopicId(t.id);
            out.push(MetadataRecord::CreateTopic(CreateTopicRecord {
                name: t.name.clone(),
                topic_id,
                configs: t.overrides.iter().cloned().collect(),
            }));
            out.extend((0..t.partitions).map(|p| local_partition(node, topic_id, p)));
        }
        out
    }
}

/// A new partition placed on this node alone (a single node: replication factor 1).
fn local_partition(node: NodeId, topic_id: TopicId, partition: i32) -> MetadataRecord {
    MetadataRecord::Partition(PartitionRecord {
        topic_id,
        partition,
        replicas: vec![node],
        isr: vec![node],
        leader: Some(node),
        leader_epoch: 0,
        partition_epoch: 0,
    })
}

/// Producer ids are reserved durably in blocks of this many.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// An admin failure: a Kafka error code and a message for the client.
#[derive(Debug, Clone)]
pub struct AdminError {
    pub code: ErrorCode,
    pub message: String,
}

impl AdminError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> AdminError {
        AdminError { code, message: message.into() }
    }
}

impl From<ImageError> for AdminError {
    fn from(e: ImageError) -> AdminError {
        let code = match &e {
            ImageError::InvalidTopicName(_) | ImageError::TopicCollides { .. } => ErrorCode::INVALID_TOPIC_EXCEPTION,
            ImageError::TopicExists { .. } => ErrorCode::TOPIC_ALREADY_EXISTS,
            ImageError::UnknownTopic { .. } => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
            ImageError::InvalidPartitionCount { .. }
            | ImageError::PartitionCountUnchanged { .. }
            | ImageError::PartitionCountDecrease { .. }
            | ImageError::PartitionCountOverMax { .. } => ErrorCode::INVALID_PARTITIONS,
            // Records this node made from its own image contradict it: a bug here, not in the
            // request.
            _ => {
                tracing::error!(error = %e, "metadata records contradict the image");
                ErrorCode::UNKNOWN_SERVER_ERROR
            }
        };
        AdminError::new(code, e.to_string())
    }
}

/// The image and what this node hosts of it. They change together, under one lock.
struct Hosted {
    image: MetadataImage,
    /// By name: the image's topics with the partitions placed here open.
    topics: BTreeMap<String, Arc<Topic>>,
}

/// Where metadata changes are made durable.
enum Store {
    /// `strand.meta` in the data directory: a single node (a quorum of one whose log is
    /// rewritten whole as its snapshot at every change).
    File,
    /// The metadata quorum's Raft log: a change is proposed (forwarded to the active
    /// controller by the quorum's driver), and applied to the image, here and on every node,
    /// by the apply task once committed.
    Quorum(Quorum),
}

/// Outcomes kept of the last batches applied (a proposer reads its own after waiting for its
/// index to be applied).
const OUTCOMES_MAX: usize = 4096;

struct Quorum {
    handle: QuorumHandle,
    /// The highest log index whose records are applied to the published image.
    applied: watch::Receiver<LogIndex>,
    /// The last [`OUTCOMES_MAX`] applied batches: refused ones carry the image's reason.
    /// Each with the CRC-32C of its bytes, to find a proposal whose answer was lost.
    outcomes: std::sync::Mutex<BTreeMap<LogIndex, (u32, Result<(), ImageError>)>>,
    /// The log index of each broker's current registration (the controller unfences a broker
    /// once its log holds that index).
    registered_at: std::sync::Mutex<BTreeMap<NodeId, LogIndex>>,
    /// Compact the quorum's log to a snapshot of the image every this many entries.
    snapshot_every: u64,
    /// Snapshots this node's image was rebuilt from (at start, or sent by the leader).
    snapshots_loaded: std::sync::atomic::AtomicU64,
    /// Set once this node's image is known to hold everything committed up to some point
    /// after its start (its registration is applied): the apply task then removes partition
    /// directories of topics the image no longer has.
    orphans_check: AtomicBool,
    /// Set when applying committed records failed here (a partition could not be opened): this
    /// node's image can no longer follow the log, so it stops applying and refuses changes.
    failed: AtomicBool,
}

/// A committed entry as the apply task gets it.
enum Committed {
    Snapshot { index: LogIndex, data: Bytes },
    Entry { index: LogIndex, data: Option<Bytes> },
}

/// How long a proposal waits for its commit and for this node to apply it.
pub const PROPOSE_TIMEOUT_MS: u64 = 30_000;
/// How long one attempt waits for its answer before it counts as lost (and is settled).
const PROPOSE_ATTEMPT_MS: u64 = 5_000;

pub struct TopicRegistry {
    rt: Runtime,
    data_dir: PathBuf,
    defaults: TopicConfig,
    node_id: NodeId,
    cluster_id: Uuid,
    store: Store,
    state: RwLock<Hosted>,
    admin: tokio::sync::Mutex<()>,
    /// (next producer id to hand out, end of the durably reserved block).
    producer_ids: std::sync::Mutex<(i64, i64)>,
    /// Every partition here shares one data directory, so one disk: their syncs are aligned.
    sync_rounds: Arc<crate::partition::rounds::SyncRounds>,
}

fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// Whether a directory name looks like one of ours (`{topic}-{partition}`).
fn parse_partition_dir(name: &str) -> Option<(&str, i32)> {
    let (topic, p) = name.rsplit_once('-')?;
    let p: i32 = p.parse().ok()?;
    validate_topic_name(topic).ok()?;
    Some((topic, p))
}

/// Whether a file name is one strand writes in a partition directory.
fn is_partition_file(name: &str) -> bool {
    crate::log::is_log_file(name) || name == PARTITION_METADATA_FILE
}

/// The file in a partition directory naming the topic id it belongs to (Kafka's
/// `partition.metadata`): a directory is named after the topic's *name*, which a deleted and
/// recreated topic shares, so a replay of the metadata log that reaches the first topic's
/// records must not open, or delete, the second one's data.
const PARTITION_METADATA_FILE: &str = "partition.metadata";

fn partition_metadata(id: TopicId) -> Bytes {
    Bytes::from(format!("version: 0\ntopic_id: {}\n", crate::server::handlers::metadata::kafka_cluster_id(id.uuid())))
}

/// Reads of a `partition.metadata` file before its reads are taken to disagree for good.
const MARKER_READS: usize = 4;

/// The `partition.metadata` of the partition directory `dir` (`None`: there is none). The file
/// has Kafka's text format and no checksum, so a read that flips a bit can turn one topic id
/// into another valid-looking one (the simulator's disk did: base64 'X' read as 'P'), which
/// would make this topic's directory look like another topic's: left closed, or removed as an
/// orphan. So a read counts at once only when it is one of the `known` markers; any other
/// content must be read the same twice in a row. Reads that never agree are an error.
async fn read_marker(rt: &Runtime, dir: &Path, known: &[Bytes]) -> std::io::Result<Option<Bytes>> {
    let path = dir.join(PARTITION_METADATA_FILE);
    let mut previous: Option<Bytes> = None;
    for _ in 0..MARKER_READS {
        let Some(read) = read_whole(rt.disk.as_ref(), &path).await? else { return Ok(None) };
        if known.contains(&read) || previous.as_ref() == Some(&read) {
            return Ok(Some(read));
        }
        previous = Some(read);
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{}: {MARKER_READS} reads gave no two equal contents", path.display()),
    ))
}

/// The quorum's directory in the data directory (Kafka's `__cluster_metadata-0`; without the
/// `-0`, so it never looks like a partition directory).
pub const QUORUM_DIR: &str = "__cluster_metadata";

/// Placement of `count` new partitions `first..first + count` (replication factor 1, until
/// [replication]): over the unfenced brokers, alternating racks (as Kafka's rack-aware
/// assignment orders them), starting at a random one. `__consumer_offsets` goes whole on
/// `proposer`, which is then every group's coordinator (see DESIGN.md).
fn place(image: &MetadataImage, topic: &str, first: i32, count: i32, proposer: NodeId) -> Result<Vec<NodeId>, AdminError> {
    if topic == super::groups::OFFSETS_TOPIC {
        return Ok(vec![proposer; count.max(0) as usize]);
    }
    let mut by_rack: BTreeMap<Option<&str>, Vec<NodeId>> = BTreeMap::new();
    for b in image.brokers().filter(|b| !b.fenced) {
        by_rack.entry(b.registration.rack.as_deref()).or_default().push(b.registration.node_id);
    }
    let mut brokers = Vec::new();
    let racks: Vec<Vec<NodeId>> = by_rack.into_values().collect();
    let longest = racks.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        brokers.extend(racks.iter().filter_map(|r| r.get(i).copied()));
    }
    if brokers.is_empty() {
        return Err(AdminError::new(
            ErrorCode::INVALID_REPLICATION_FACTOR,
            "Unable to replicate the partition 1 time(s): The target replication factor of 1 cannot be reached because only 0 broker(s) are registered.",
        ));
    }
    let start = (rng::random_u64() % brokers.len() as u64) as usize;
    Ok((first..first + count).map(|p| brokers[(start + p as usize) % brokers.len()]).collect())
}

fn placed_partition(node: NodeId, topic_id: TopicId, partition: i32) -> MetadataRecord {
    local_partition(node, topic_id, partition)
}

impl TopicRegistry {
    /// [`TopicRegistry::open_as`] node 1 (the default `node.id`).
    pub async fn open(rt: Runtime, data_dir: PathBuf, defaults: TopicConfig) -> anyhow::Result<TopicRegistry> {
        let node = crate::config::BrokerConfig::default().node_id;
        TopicRegistry::open_as(rt, data_dir, defaults, NodeId(node as u32)).await
    }

    /// A single node: load the metadata file (or start a new cluster) into the image, open
    /// every partition, remove leftovers.
    pub async fn open_as(
        rt: Runtime,
        data_dir: PathBuf,
        defaults: TopicConfig,
        node_id: NodeId,
    ) -> anyhow::Result<TopicRegistry> {
        rt.disk
            .create_dir_all(&data_dir)
            .await
            .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", data_dir.display()))?;
        let meta_path = data_dir.join(META_FILE);
        let existing = read_meta(&rt, &meta_path).await?;
        let is_new = existing.is_none();
        let records = match existing {
            Some(meta) => meta.records(node_id),
            None => vec![MetadataRecord::ClusterId(ClusterIdRecord { cluster_id: *rng::random_uuid().as_bytes() })],
        };
        let image = MetadataImage::from_snapshot(&records).map_err(|e| anyhow::anyhow!("{}: {e}", meta_path.display()))?;
        let cluster_id = image.cluster_id().expect("the first record");
        // Never reuse an id that may have been handed out before the restart.
        let block_end = image.next_producer_id();
        let registry = TopicRegistry {
            rt: rt.clone(),
            data_dir: data_dir.clone(),
            defaults,
            node_id,
            cluster_id,
            store: Store::File,
            state: RwLock::new(Hosted { image: MetadataImage::default(), topics: BTreeMap::new() }),
            admin: tokio::sync::Mutex::new(()),
            producer_ids: std::sync::Mutex::new((block_end, block_end)),
            sync_rounds: Arc::default(),
        };
        let mut opened = Opened::default();
        let mut topics = BTreeMap::new();
        for t in image.topics() {
            for p in &t.partitions {
                assert_eq!(p.replicas, [node_id], "a single node places every partition on itself");
            }
            let topic = registry.reconcile(t, None, &mut opened).await.map_err(|e| anyhow::anyhow!("topic {}: {}", t.name, e.message))?;
            topics.insert(t.name.clone(), topic);
        }
        // Remove partition directories the image does not place here (an interrupted create
        // or delete). This image is all the committed metadata there is, so a topic it does not
        // know is gone, not merely unknown yet.
        for name in rt.disk.list(&data_dir).await? {
            if let Some((topic, p)) = parse_partition_dir(&name) {
                let owned = image.topic(topic).is_some_and(|t| t.partition(p).is_some_and(|p| p.replicas.contains(&node_id)));
                if !owned {
                    let dir = data_dir.join(&name);
                    let entries = rt.disk.list(&dir).await.unwrap_or_default();
                    if entries.iter().all(|e| is_partition_file(e)) {
                        tracing::warn!(dir = %name, "removing partition directory that no topic owns");
                        rt.disk.remove_dir_all(&dir).await?;
                    } else {
                        // Not ours (or not only ours): never delete what strand did not write.
                        tracing::warn!(dir = %name, "leaving a directory that looks like a partition but holds other files");
                    }
                }
            }
        }
        if is_new {
            // A new cluster: its id must be durable before any client sees it.
            registry.write_meta(&image).await?;
        }
        *registry.state.write().expect("topics lock") = Hosted { image, topics };
        Ok(registry)
    }

    /// A node of a metadata quorum: start the quorum's driver on `transport` with this
    /// registry as its state machine. The image starts empty and follows the committed log
    /// (a snapshot, then entries) as the apply task replays it; partitions open as the image
    /// places them here. Directories of topics the image does not know yet are left alone: a
    /// lagging image is not a deleted topic.
    pub async fn open_quorum(
        rt: Runtime,
        data_dir: PathBuf,
        defaults: TopicConfig,
        node_id: NodeId,
        cluster_id: Uuid,
        quorum: QuorumConfig,
        snapshot_every: u64,
        transport: TransportHandle,
        inbox: mpsc::Receiver<Envelope>,
    ) -> anyhow::Result<Arc<TopicRegistry>> {
        rt.disk
            .create_dir_all(&data_dir)
            .await
            .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", data_dir.display()))?;
        // Unbounded: the driver must never wait for the state machine (it would miss its
        // heartbeats); what queues here is bounded by the committed log not yet applied.
        let (committed_tx, committed_rx) = mpsc::unbounded_channel();
        let apply: Apply = Box::new(move |applied| {
            let event = match applied {
                Applied::Snapshot { meta, data } => Committed::Snapshot { index: meta.index, data: data.clone() },
                Applied::Entry { index, entry } => Committed::Entry {
                    index,
                    data: match &entry.payload {
                        Payload::Data(d) => Some(d.clone()),
                        _ => None,
                    },
                },
            };
            let _ = committed_tx.send(event);
        });
        let dir = quorum.dir.clone();
        let handle = driver::start(&rt, quorum, transport, inbox, apply)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the metadata quorum's log in {}: {e}", dir.display()))?;
        let (applied_tx, applied_rx) = watch::channel(LogIndex(0));
        let registry = Arc::new(TopicRegistry {
            rt,
            data_dir,
            defaults,
            node_id,
            cluster_id,
            store: Store::Quorum(Quorum {
                handle,
                applied: applied_rx,
                outcomes: Default::default(),
                registered_at: Default::default(),
                snapshot_every,
                snapshots_loaded: Default::default(),
                orphans_check: AtomicBool::new(false),
                failed: AtomicBool::new(false),
            }),
            state: RwLock::new(Hosted { image: MetadataImage::default(), topics: BTreeMap::new() }),
            admin: tokio::sync::Mutex::new(()),
            producer_ids: std::sync::Mutex::new((0, 0)),
            sync_rounds: Arc::default(),
        });
        tokio::spawn(registry.clone().apply_loop(committed_rx, applied_tx));
        Ok(registry)
    }

    /// The quorum's state machine: apply committed batches of records in log order.
    async fn apply_loop(self: Arc<Self>, mut committed: mpsc::UnboundedReceiver<Committed>, applied: watch::Sender<LogIndex>) {
        let Store::Quorum(q) = &self.store else { unreachable!("the apply task runs only on a quorum") };
        let mut snapshot_at = LogIndex(0);
        while let Some(event) = committed.recv().await {
            let index = match event {
                Committed::Snapshot { index, data } => {
                    let image = match decode_snapshot(&data).and_then(|r| MetadataImage::from_snapshot(&r).map_err(|e| e.to_string())) {
                        Ok(image) => image,
                        Err(e) => return self.apply_failed(&format!("the snapshot at {index:?} does not load: {e}")),
                    };
                    let brokers: Vec<NodeId> = image.brokers().map(|b| b.registration.node_id).collect();
                    *q.registered_at.lock().expect("registered lock") = brokers.into_iter().map(|b| (b, index)).collect();
                    if let Err(e) = self.install(image, false).await {
                        return self.apply_failed(&format!("installing the snapshot at {index:?}: {}", e.message));
                    }
                    snapshot_at = index;
                    q.snapshots_loaded.fetch_add(1, Ordering::Relaxed);
                    index
                }
                Committed::Entry { index, data: None } => index,
                Committed::Entry { index, data: Some(data) } => {
                    let records = match decode_snapshot(&data) {
                        Ok(r) => r,
                        Err(e) => return self.apply_failed(&format!("the entry at {index:?} does not decode: {e}")),
                    };
                    let next = self.with_image(|image| image.applied(&records));
                    let outcome = match next {
                        Ok(next) => {
                            if let Err(e) = self.install(next, false).await {
                                return self.apply_failed(&format!("applying the entry at {index:?}: {}", e.message));
                            }
                            for r in &records {
                                if let MetadataRecord::RegisterBroker(b) = r {
                                    q.registered_at.lock().expect("registered lock").insert(b.node_id, index);
                                }
                            }
                            Ok(())
                        }
                        // Refused the same way on every node: the image is the same.
                        Err(e) => {
                            tracing::debug!(?index, error = %e, "committed metadata records refused by the image");
                            Err(e)
                        }
                    };
                    let mut outcomes = q.outcomes.lock().expect("outcomes lock");
                    outcomes.insert(index, (crc32c::crc32c(&data), outcome));
                    while outcomes.len() > OUTCOMES_MAX {
                        outcomes.pop_first();
                    }
                    index
                }
            };
            if snapshot_at == LogIndex(0) || index < snapshot_at {
                // The first event of this start (the stored snapshot, or the log's first entry).
                snapshot_at = index;
            }
            if index.0 - snapshot_at.0 >= q.snapshot_every {
                // The image as of `index` exactly: the apply task is the only writer.
                let data = Bytes::from(encode_snapshot(&self.with_image(MetadataImage::snapshot)));
                q.handle.compact(index, data);
                snapshot_at = index;
            }
            if q.orphans_check.swap(false, Ordering::SeqCst) {
                if let Err(e) = self.remove_orphans().await {
                    tracing::warn!(node = %self.node_id, error = %e, "could not remove partition directories of deleted topics; next start tries again");
                }
            }
            applied.send_replace(index);
        }
    }

    /// Ask the apply task to remove the directories of deleted topics: called once this node's
    /// image has caught up with what was committed after its start.
    pub fn check_orphans(&self) {
        if let Store::Quorum(q) = &self.store {
            q.orphans_check.store(true, Ordering::SeqCst);
        }
    }

    /// Partition directories whose `partition.metadata` names a topic id the image does not
    /// have are left from topics deleted while this node was away (a snapshot carries no
    /// `RemoveTopic` to act on): removed, if they hold only strand's files. A topic created
    /// after them is in the image already (this runs in the apply task, after the image has
    /// caught up), so nothing live is touched. Partitions that stayed closed because such a
    /// directory had their name are opened now.
    async fn remove_orphans(&self) -> anyhow::Result<()> {
        let live: Vec<Bytes> = self.with_image(|image| image.topics().map(|t| partition_metadata(t.id)).collect());
        let mut removed = 0;
        for name in self.rt.disk.list(&self.data_dir).await? {
            if parse_partition_dir(&name).is_none() {
                continue;
            }
            let dir = self.data_dir.join(&name);
            let marker = match read_marker(&self.rt, &dir, &live).await {
                Ok(Some(marker)) => marker,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(dir = %name, error = %e, "cannot read the directory's partition.metadata; left alone");
                    continue;
                }
            };
            if live.contains(&marker) {
                continue;
            }
            let entries = self.rt.disk.list(&dir).await.unwrap_or_default();
            if entries.iter().all(|e| is_partition_file(e)) {
                tracing::info!(dir = %name, "removing the partition directory of a deleted topic");
                self.rt.disk.remove_dir_all(&dir).await?;
                removed += 1;
            }
        }
        if removed > 0 {
            let image = self.with_image(Clone::clone);
            self.install(image, false).await.map_err(|e| anyhow::anyhow!("{}", e.message))?;
        }
        Ok(())
    }

    fn apply_failed(&self, why: &str) {
        if let Store::Quorum(q) = &self.store {
            q.failed.store(true, Ordering::SeqCst);
        }
        tracing::error!(node = %self.node_id, reason = why, "metadata: this node stops applying the quorum's log (fail-stop); restart it");
    }

    pub fn cluster_id(&self) -> Uuid {
        self.cluster_id
    }

    /// This node's id, as the image's placement names it.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The metadata quorum, when this node is one of its voters.
    pub fn quorum(&self) -> Option<&QuorumHandle> {
        match &self.store {
            Store::File => None,
            Store::Quorum(q) => Some(&q.handle),
        }
    }

    /// How many snapshots this node's image was rebuilt from since start (0 on a single node).
    pub fn snapshots_loaded(&self) -> u64 {
        match &self.store {
            Store::File => 0,
            Store::Quorum(q) => q.snapshots_loaded.load(Ordering::Relaxed),
        }
    }

    /// The log index of `node`'s current registration, as applied here.
    pub fn registered_at(&self, node: NodeId) -> Option<LogIndex> {
        match &self.store {
            Store::File => None,
            Store::Quorum(q) => q.registered_at.lock().expect("registered lock").get(&node).copied(),
        }
    }

    /// Read the published metadata image (under the lookup lock: do not block in `f`).
    pub fn with_image<R>(&self, f: impl FnOnce(&MetadataImage) -> R) -> R {
        f(&self.state.read().expect("topics lock").image)
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.state.read().expect("topics lock").topics.get(name).cloned()
    }

    pub fn get_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        let state = self.state.read().expect("topics lock");
        let topic = state.image.topic_by_id(TopicId::from(id))?;
        state.topics.get(&topic.name).cloned()
    }

    /// Every topic, ordered by name.
    pub fn all(&self) -> Vec<Arc<Topic>> {
        self.state.read().expect("topics lock").topics.values().cloned().collect()
    }

    fn config_with(&self, overrides: &BTreeMap<String, String>) -> Result<TopicConfig, AdminError> {
        let mut c = self.defaults.clone();
        for (k, v) in overrides {
            c.set(k, v).map_err(|e| AdminError::new(ErrorCode::INVALID_CONFIG, e.0))?;
        }
        Ok(c)
    }

    /// Check a create without doing it: name, collisions, partition count, configs.
    pub fn validate_create(
        &self,
        name: &str,
        partitions: i32,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, AdminError> {
        self.with_image(|image| image.validate_create(name, partitions))?;
        self.config_with(overrides)
    }

    /// New partitions `first..first + count` of a topic, placed (a single node: all here).
    fn new_partitions(&self, name: &str, topic_id: TopicId, first: i32, count: i32) -> Result<Vec<MetadataRecord>, AdminError> {
        let nodes = match &self.store {
            Store::File => vec![self.node_id; count.max(0) as usize],
            Store::Quorum(_) => self.with_image(|image| place(image, name, first, count, self.node_id))?,
        };
        Ok(nodes.into_iter().zip(first..).map(|(node, p)| placed_partition(node, topic_id, p)).collect())
    }

    /// Create a topic: its records are a `CreateTopic` and one `Partition` per partition.
    pub async fn create(
        &self,
        name: &str,
        partitions: i32,
        overrides: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, AdminError> {
        let _admin = self.admin.lock().await;
        self.catch_up().await?;
        self.validate_create(name, partitions, &overrides)?;
        let topic_id = TopicId::from(rng::random_uuid());
        let mut records =
            vec![MetadataRecord::CreateTopic(CreateTopicRecord { name: name.to_string(), topic_id, configs: overrides })];
        records.extend(self.new_partitions(name, topic_id, 0, partitions)?);
        self.commit(&records).await?;
        tracing::info!(topic = name, partitions, "created topic");
        self.get(name).filter(|t| t.id == topic_id.uuid()).ok_or_else(|| {
            AdminError::new(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, format!("Topic '{name}' was deleted right after it was created."))
        })
    }

    /// Delete a topic: it disappears from lookups at once, its absence is made durable, and
    /// then its data is removed.
    pub async fn delete(&self, name: &str) -> Result<Arc<Topic>, AdminError> {
        let _admin = self.admin.lock().await;
        self.catch_up().await?;
        let unknown = || AdminError::new(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, format!("Topic '{name}' does not exist."));
        let topic = match &self.store {
            Store::File => self.state.write().expect("topics lock").topics.remove(name).ok_or_else(unknown)?,
            // The apply task removes it, here and everywhere, once the removal is committed.
            Store::Quorum(_) => self.get(name).ok_or_else(unknown)?,
        };
        if let Err(e) = self.commit(&[MetadataRecord::RemoveTopic(RemoveTopicRecord { topic_id: topic.id.into() })]).await {
            if let Store::File = self.store {
                self.state.write().expect("topics lock").topics.insert(name.to_string(), topic);
            }
            return Err(e);
        }
        if let Store::File = self.store {
            self.remove_hosted(&topic).await;
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(topic)
    }

    /// Grow a topic to `count` partitions.
    pub async fn add_partitions(&self, name: &str, count: i32, validate_only: bool) -> Result<(), AdminError> {
        let _admin = self.admin.lock().await;
        self.catch_up().await?;
        let (topic_id, current) =
            self.with_image(|image| image.validate_add_partitions(name, count).map(|t| (t.id, t.partition_count())))?;
        if validate_only {
            return Ok(());
        }
        let records = self.new_partitions(name, topic_id, current, count - current)?;
        self.commit(&records).await
    }

    /// Alter a topic's overrides to what `alter` makes of its current ones, validated as a
    /// whole (and only validated when `validate_only`). The read, the change and the write all
    /// happen under the admin lock, so two alters of one topic each see the other's result
    /// (regression: the overrides were read before waiting for the lock, and the later write
    /// put back a value the earlier one had replaced).
    pub async fn alter_configs(
        &self,
        name: &str,
        validate_only: bool,
        alter: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, AdminError>,
    ) -> Result<(), AdminError> {
        let _admin = self.admin.lock().await;
        self.catch_up().await?;
        let topic = self.get(name).ok_or_else(|| {
            AdminError::new(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, format!("Topic '{name}' does not exist."))
        })?;
        let overrides = alter(&topic.overrides)?;
        self.config_with(&overrides)?;
        if validate_only {
            return Ok(());
        }
        let records = self.with_image(|image| image.config_changes(name, &overrides))?;
        if records.is_empty() && matches!(self.store, Store::Quorum(_)) {
            return Ok(());
        }
        // Even with nothing changed the file is written, as before the image.
        self.commit(&records).await
    }

    /// A producer id never handed out before (InitProducerId). Reserves a new block durably
    /// when the current one is used up.
    pub async fn allocate_producer_id(&self) -> anyhow::Result<i64> {
        // Ids come from a block whose end is durable in the metadata, so none is handed out
        // twice across a crash. The block is used only after it is durable: until then every
        // caller waits here (regression: the end was raised before the write, and a concurrent
        // caller took an id from the unwritten block; after a crash the same id went to
        // another producer, whose batches were then acknowledged as "duplicates" of the first
        // one's and never written: simulator seeds 1792 and 2328). On a quorum, blocks are
        // taken from the image's next free id; a block another broker took first is refused by
        // the image and this one tries again after it.
        {
            let mut ids = self.producer_ids.lock().expect("producer id lock");
            if ids.0 < ids.1 {
                ids.0 += 1;
                return Ok(ids.0 - 1);
            }
        }
        let _admin = self.admin.lock().await;
        for _ in 0..8 {
            let block = {
                let mut ids = self.producer_ids.lock().expect("producer id lock");
                if ids.0 < ids.1 {
                    ids.0 += 1;
                    return Ok(ids.0 - 1);
                }
                let first = self.with_image(MetadataImage::next_producer_id).max(ids.1);
                ProducerIdBlockRecord { node_id: self.node_id, first, size: PRODUCER_ID_BLOCK }
            };
            match self.commit(&[MetadataRecord::ProducerIdBlock(block.clone())]).await {
                Ok(()) => {
                    let mut ids = self.producer_ids.lock().expect("producer id lock");
                    *ids = (block.first + 1, block.end());
                    return Ok(block.first);
                }
                Err(e) if e.code == ErrorCode::UNKNOWN_SERVER_ERROR && matches!(self.store, Store::Quorum(_)) => continue,
                Err(e) => anyhow::bail!("{}", e.message),
            }
        }
        anyhow::bail!("could not reserve a block of producer ids: other brokers kept taking the next one")
    }

    /// The broker-wide topic defaults.
    pub fn defaults(&self) -> &TopicConfig {
        &self.defaults
    }

    /// Make `records` durable, then (only then) visible: on a single node, the metadata file
    /// is rewritten (see [`TopicRegistry::install`]); on a quorum, they are proposed and this
    /// returns once they are committed and applied here (the image refusing them, as a batch
    /// built from a stale image may be, is the error). Callers hold the admin lock.
    async fn commit(&self, records: &[MetadataRecord]) -> Result<(), AdminError> {
        match &self.store {
            Store::File => {
                let next = self.with_image(|image| image.applied(records))?;
                self.install(next, true).await
            }
            Store::Quorum(_) => self.propose(records).await,
        }
    }

    /// On a quorum: bring this node's image up to everything committed before now (an empty
    /// batch proposed and applied here), so an admin change is checked against the controller's
    /// metadata, as Kafka's controller checks it, not against a lagging image (regression,
    /// simulator: a broker that had not applied a create yet refused its delete with
    /// UNKNOWN_TOPIC_OR_PARTITION).
    async fn catch_up(&self) -> Result<(), AdminError> {
        match &self.store {
            Store::File => Ok(()),
            // Planted bug: check admin changes against whatever this node has applied.
            Store::Quorum(_) if crate::raft::planted("raft-meta-skip-catch-up") => Ok(()),
            Store::Quorum(_) => self.propose(&[]).await,
        }
    }

    /// Propose `records` to the quorum and wait until they are applied here; their outcome.
    ///
    /// While no leader is known the proposal is tried again (it was never appended). When its
    /// answer is lost (the leader it was forwarded to is gone, or it took too long) it may or may
    /// not be in the log: an empty batch committed after it settles that (every entry before
    /// that batch is committed or gone for good), and the proposal's own outcome is looked up by
    /// its bytes among the batches applied since it was first sent; if it is not there it is
    /// sent again. So a controller's death costs an election, not a timeout, and a change is
    /// never applied twice by its own retry. REQUEST_TIMED_OUT after 30 s in all.
    pub async fn propose(&self, records: &[MetadataRecord]) -> Result<(), AdminError> {
        let deadline = self.rt.clock.monotonic() + Duration::from_millis(PROPOSE_TIMEOUT_MS);
        let data = Bytes::from(encode_snapshot(records));
        let Store::Quorum(q) = &self.store else {
            return Err(AdminError::new(ErrorCode::NOT_CONTROLLER, "this node is not part of a metadata quorum"));
        };
        let crc = crc32c::crc32c(&data);
        let since = *q.applied.borrow();
        loop {
            match self.propose_once(&data, deadline).await? {
                Some(index) => {
                    return match q.outcomes.lock().expect("outcomes lock").remove(&index) {
                        Some((_, Ok(()))) => Ok(()),
                        Some((_, Err(e))) => Err(e.into()),
                        // Committed, but this node caught up by a snapshot that covers it, so
                        // it cannot tell whether the image took it: as for a lost answer, the
                        // client is told the outcome is unknown (REQUEST_TIMED_OUT, retriable).
                        None => Err(AdminError::new(
                            ErrorCode::REQUEST_TIMED_OUT,
                            "the change was committed while this broker caught up from a snapshot; its outcome is unknown here, check before retrying",
                        )),
                    };
                }
                None if records.is_empty() => continue,
                None => {
                    // Settle whether the lost proposal is in the log.
                    while self.propose_once(&Bytes::from(encode_snapshot(&[])), deadline).await?.is_none() {}
                    let found = q
                        .outcomes
                        .lock()
                        .expect("outcomes lock")
                        .iter()
                        .find(|(i, (c, _))| **i > since && *c == crc)
                        .map(|(_, (_, outcome))| outcome.clone());
                    if let Some(outcome) = found {
                        return outcome.map_err(AdminError::from);
                    }
                }
            }
        }
    }

    /// One attempt: `Some(index)` once committed and applied here, `None` when the answer was
    /// lost (it may be in the log), an error when it was refused or the deadline passed.
    async fn propose_once(&self, data: &Bytes, deadline: Duration) -> Result<Option<LogIndex>, AdminError> {
        let Store::Quorum(q) = &self.store else { unreachable!("callers check") };
        if q.failed.load(Ordering::SeqCst) {
            return Err(AdminError::new(ErrorCode::KAFKA_STORAGE_ERROR, "this node stopped applying metadata; restart it"));
        }
        let timed_out = || AdminError::new(ErrorCode::REQUEST_TIMED_OUT, "the metadata quorum did not commit the change in time");
        let index = loop {
            let left = deadline.saturating_sub(self.rt.clock.monotonic()).as_millis() as u64;
            if left == 0 {
                let status = q.handle.status();
                tracing::warn!(node = %self.node_id, leader = ?status.leader, term = status.term.0,
                    "metadata quorum: a change was not committed in time (is the quorum's majority reachable?)");
                return Err(timed_out());
            }
            match q.handle.propose(data.clone(), left.min(PROPOSE_ATTEMPT_MS)).await {
                Ok(index) => break index,
                Err(Some(ProposeError::NotLeader { .. } | ProposeError::NotReady | ProposeError::Transferring)) => {
                    // Not appended anywhere: safe to try again once a leader is known.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(Some(e)) => return Err(AdminError::new(ErrorCode::NOT_CONTROLLER, format!("the metadata quorum refused the change: {e}"))),
                Err(None) => return Ok(None),
            }
        };
        let mut applied = q.applied.clone();
        let left = deadline.saturating_sub(self.rt.clock.monotonic());
        let waited = matches!(tokio::time::timeout(left, applied.wait_for(|a| *a >= index)).await, Ok(Ok(_)));
        if waited {
            Ok(Some(index))
        } else {
            Err(timed_out())
        }
    }

    /// Make `next` the published image: open the partitions it places here that are not open
    /// yet; with `write`, write the metadata file from it (a failure there changes nothing
    /// visible: partitions it opened are closed, their directories are orphans the next start
    /// removes); then publish the image and the hosted topics together, give partitions whose
    /// topic config changed the new config, and close the topics the new image no longer has
    /// and remove their directories.
    async fn install(&self, next: MetadataImage, write: bool) -> Result<(), AdminError> {
        let hosted = self.state.read().expect("topics lock").topics.clone();
        let mut topics = BTreeMap::new();
        let mut opened = Opened::default();
        let mut reconfigured = Vec::new();
        for t in next.topics() {
            let old = hosted.get(&t.name).filter(|o| o.id == t.id.uuid());
            match self.reconcile(t, old, &mut opened).await {
                Ok(topic) => {
                    if let Some(old) = old.filter(|o| o.overrides != topic.overrides) {
                        reconfigured.extend(old.hosted().map(|(_, p)| (p.clone(), topic.config.clone())));
                    }
                    topics.insert(t.name.clone(), topic);
                }
                Err(e) => {
                    opened.undo(&self.rt).await;
                    return Err(e);
                }
            }
        }
        if write {
            if let Err(e) = self.write_meta(&next).await {
                opened.undo(&self.rt).await;
                return Err(AdminError::new(ErrorCode::KAFKA_STORAGE_ERROR, format!("writing topic metadata: {e}")));
            }
        }
        let removed: Vec<Arc<Topic>> =
            hosted.values().filter(|o| topics.get(&o.name).is_none_or(|t| t.id != o.id)).cloned().collect();
        // Each hosted partition appends in the leader epoch the image gives it.
        let epochs: Vec<(Arc<Partition>, i32)> = next
            .topics()
            .filter_map(|t| topics.get(&t.name).map(|hosted| (t, hosted)))
            .flat_map(|(t, hosted)| hosted.hosted().filter_map(move |(i, p)| Some((p.clone(), t.partitions.get(i as usize)?.leader_epoch))))
            .collect();
        *self.state.write().expect("topics lock") = Hosted { image: next, topics };
        for (partition, epoch) in epochs {
            partition.set_leader_epoch(epoch).await;
        }
        for (partition, config) in reconfigured {
            partition.set_config(config).await;
        }
        for topic in removed {
            self.remove_hosted(&topic).await;
        }
        Ok(())
    }

    /// Topic `t` of a new image as this node hosts it: `old`'s partitions kept, the other
    /// partitions the image places here opened (and added to `opened`), its config rebuilt if
    /// it changed.
    async fn reconcile(
        &self,
        t: &TopicImage,
        old: Option<&Arc<Topic>>,
        opened: &mut Opened,
    ) -> Result<Arc<Topic>, AdminError> {
        let same_configs = old.filter(|o| o.overrides == t.configs);
        let complete = |o: &Topic| {
            o.partitions.len() == t.partitions.len()
                && o.partitions.iter().zip(&t.partitions).all(|(h, p)| h.is_some() == p.replicas.contains(&self.node_id))
        };
        if let Some(o) = same_configs.filter(|o| complete(o)) {
            return Ok(o.clone());
        }
        let config = match same_configs {
            Some(o) => o.config.clone(),
            None => self.config_with(&t.configs)?,
        };
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for (p, placed) in t.partitions.iter().enumerate() {
            let p = p as i32;
            if !placed.replicas.contains(&self.node_id) {
                partitions.push(None);
                continue;
            }
            if let Some(existing) = old.and_then(|o| o.partition(p)) {
                partitions.push(Some(existing.clone()));
                continue;
            }
            let dir = partition_dir(&self.data_dir, &t.name, p);
            let storage = |e: std::io::Error| AdminError::new(ErrorCode::KAFKA_STORAGE_ERROR, format!("creating partition {p}: {e}"));
            let marker = dir.join(PARTITION_METADATA_FILE);
            let expected = partition_metadata(t.id);
            let mut found = read_marker(&self.rt, &dir, std::slice::from_ref(&expected)).await.map_err(storage)?;
            if found.as_ref().is_some_and(|f| *f != expected) {
                let ours_only = self.rt.disk.list(&dir).await.map_err(storage)?.iter().all(|e| is_partition_file(e));
                if matches!(self.store, Store::File) && ours_only {
                    // A single node's image is all the metadata there is: no later topic of this
                    // name exists, so the directory is what a failed change of an earlier one
                    // left (its removal failed too). Its data was never visible; it goes.
                    tracing::warn!(topic = %t.name, partition = p, "removing a partition directory left by an earlier topic of this name");
                    self.rt.disk.remove_dir_all(&dir).await.map_err(storage)?;
                    found = None;
                } else {
                    // The directory holds a later topic of the same name (a replay of the log
                    // passing this topic's records): not this topic's data. It stays unhosted
                    // here until the log reaches the topic that owns the directory.
                    tracing::info!(topic = %t.name, partition = p, "directory belongs to another topic of this name; not opened");
                    partitions.push(None);
                    continue;
                }
            }
            match found {
                Some(_) => {}
                None => {
                    // New, or written before the marker existed: it is this topic's from now on.
                    if !self.rt.disk.exists(&dir).await.map_err(storage)? {
                        opened.new_dirs.push(dir.clone());
                    }
                    self.rt.disk.create_dir_all(&dir).await.map_err(storage)?;
                    write_atomic(self.rt.disk.as_ref(), &marker, expected).await.map_err(storage)?;
                }
            }
            let partition = Partition::open_in(self.rt.clone(), dir, config.clone(), self.sync_rounds.clone())
                .await
                .map_err(|e| AdminError::new(ErrorCode::KAFKA_STORAGE_ERROR, format!("creating partition {p}: {e}")))?;
            opened.partitions.push(partition.clone());
            partitions.push(Some(partition));
        }
        Ok(Arc::new(Topic { name: t.name.clone(), id: t.id.uuid(), overrides: t.configs.clone(), config, partitions }))
    }

    /// Close a topic the image no longer has and remove its directories.
    async fn remove_hosted(&self, topic: &Topic) {
        for (p, partition) in topic.hosted() {
            let _ = partition.close().await;
            let dir = partition_dir(&self.data_dir, &topic.name, p);
            if let Err(e) = self.rt.disk.remove_dir_all(&dir).await {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove deleted partition; it is removed at next start");
            }
        }
    }

    /// Write the metadata file holding `image`.
    async fn write_meta(&self, image: &MetadataImage) -> anyhow::Result<()> {
        let mut bytes = postcard::to_allocvec(&MetaFile::from_image(image))?;
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_be_bytes());
        write_atomic(self.rt.disk.as_ref(), &self.data_dir.join(META_FILE), Bytes::from(bytes)).await?;
        Ok(())
    }

    /// Close every partition (sync and checkpoint).
    pub async fn close_all(&self) {
        for topic in self.all() {
            for (_, partition) in topic.hosted() {
                if let Err(e) = partition.close().await {
                    tracing::error!(topic = %topic.name, error = %e, "closing partition failed");
                }
            }
        }
    }
}

/// Close partitions that never became visible (a create or grow that failed part-way).
/// What an install opened and created, undone when it fails.
#[derive(Default)]
struct Opened {
    partitions: Vec<Arc<Partition>>,
    /// Partition directories that did not exist before. They must go with a failed change: a
    /// retry of a create gives the topic a new id, and a directory left with the old id's
    /// `partition.metadata` would keep that partition closed (as another topic's), which the
    /// simulator found (seed 164: a write error half-way through creating `__consumer_offsets`
    /// left two of its partitions unhosted, and the coordinator wrote to one).
    new_dirs: Vec<PathBuf>,
}

impl Opened {
    async fn undo(&self, rt: &Runtime) {
        close_partitions(&self.partitions).await;
        for dir in &self.new_dirs {
            if let Err(e) = rt.disk.remove_dir_all(dir).await {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove a partition directory of a failed change; the next start removes it");
            }
        }
    }
}

async fn close_partitions(partitions: &[Arc<Partition>]) {
    for partition in partitions {
        let _ = partition.close().await;
    }
}

/// Reads of the metadata file before a failed check counts as a corrupt file rather than a bad
/// read (a bit flipped on the way from the disk: the next read is clean).
const META_READS: usize = 3;

/// The metadata file, or `None` when there is none (a new cluster). A file that fails its
/// checks in every one of `META_READS` reads stops the broker: starting without it would
/// forget every topic.
async fn read_meta(rt: &Runtime, path: &Path) -> anyhow::Result<Option<MetaFile>> {
    let mut last = String::new();
    for _ in 0..META_READS {
        let Some(bytes) = read_whole(rt.disk.as_ref(), path).await? else { return Ok(None) };
        match decode_meta(&bytes) {
            Ok(meta) => return Ok(Some(meta)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "metadata file failed its checks; reading it again");
                last = e;
            }
        }
    }
    Err(anyhow::anyhow!("{}: {last} (in {META_READS} reads)", path.display()))
}

fn decode_meta(bytes: &[u8]) -> Result<MetaFile, String> {
    if bytes.len() < 4 {
        return Err("metadata file is truncated".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_be_bytes(crc.try_into().expect("4 bytes"));
    if crc32c::crc32c(body) != stored {
        return Err("metadata file fails its CRC-32C check".into());
    }
    let meta: MetaFile = postcard::from_bytes(body).map_err(|e| format!("metadata file does not decode: {e}"))?;
    if meta.version != META_VERSION {
        return Err(format!("metadata version {} is not supported (expected {META_VERSION})", meta.version));
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_dir_names() {
        assert_eq!(parse_partition_dir("orders-3"), Some(("orders", 3)));
        assert_eq!(parse_partition_dir("my-topic-12"), Some(("my-topic", 12)));
        assert_eq!(parse_partition_dir("strand.meta"), None);
        assert_eq!(parse_partition_dir("x-y"), None);
    }

    #[test]
    fn only_strand_files_count_as_partition_files() {
        assert!(is_partition_file("00000000000000001234.log"));
        assert!(is_partition_file("00000000000000001234.timeindex"));
        assert!(is_partition_file("recovery-checkpoint"));
        assert!(is_partition_file("leader-epoch-checkpoint"));
        assert!(is_partition_file("partition.metadata"));
        assert!(!is_partition_file("notes.txt"));
        assert!(!is_partition_file("1234.log"));
    }

    #[tokio::test]
    async fn unowned_directories_with_foreign_files_are_left_alone() {
        let dir = std::env::temp_dir().join(format!("strand-registry-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("backup-2")).unwrap();
        std::fs::write(dir.join("backup-2/notes.txt"), "mine").unwrap();
        std::fs::create_dir_all(dir.join("stale-0")).unwrap();
        std::fs::write(dir.join("stale-0/00000000000000000000.log"), "").unwrap();
        let registry = TopicRegistry::open(Runtime::real(), dir.clone(), TopicConfig::default()).await.unwrap();
        assert!(dir.join("backup-2/notes.txt").exists(), "a foreign file was deleted");
        assert!(!dir.join("stale-0").exists(), "an orphan partition directory was kept");
        registry.close_all().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A bit flipped while reading the metadata file is read again (the stored file is
    /// intact); a file that stays corrupt stops the start rather than forget every topic.
    #[tokio::test]
    async fn a_bad_read_of_the_metadata_file_is_read_again_a_corrupt_file_stops_the_start() {
        let dir = std::env::temp_dir().join(format!("strand-meta-read-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (rt, faults) = crate::log::tests::faulty_runtime();
        let registry = TopicRegistry::open(rt.clone(), dir.clone(), TopicConfig::default()).await.unwrap();
        registry.create("kept", 2, BTreeMap::new()).await.unwrap();
        let cluster = registry.cluster_id();
        registry.close_all().await;
        drop(registry);

        // Two bad reads: the third is good.
        faults.corrupt_next_reads(META_FILE, 2);
        let registry = TopicRegistry::open(rt.clone(), dir.clone(), TopicConfig::default()).await.unwrap();
        assert_eq!(faults.corrupt_reads_left(), 0, "the bad reads were used up");
        assert_eq!(registry.get("kept").map(|t| t.partitions.len()), Some(2));
        assert_eq!(registry.cluster_id(), cluster);
        registry.close_all().await;
        drop(registry);

        faults.corrupt_next_reads(META_FILE, META_READS as u64);
        let err = TopicRegistry::open(rt.clone(), dir.clone(), TopicConfig::default()).await.err().expect("must not start");
        assert!(err.to_string().contains("strand.meta"), "{err}");
        // The file is intact: the next start finds the topic.
        let registry = TopicRegistry::open(rt, dir.clone(), TopicConfig::default()).await.unwrap();
        assert!(registry.get("kept").is_some());
        registry.close_all().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A new topic, new partitions and new configs become visible only once the metadata file
    /// that holds them is durable (regression: they were published first, so a client could
    /// produce to a topic, or read a config, that a crash during the write took back).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changes_are_visible_only_after_the_metadata_is_durable() {
        use std::sync::atomic::Ordering;
        use std::time::Duration;
        let dir = std::env::temp_dir().join(format!("strand-meta-publish-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (rt, faults) = crate::log::tests::faulty_runtime();
        let registry = Arc::new(TopicRegistry::open(rt, dir.clone(), TopicConfig::default()).await.unwrap());
        faults.sync_delay_ms.store(400, Ordering::SeqCst);
        let during = |registry: &Arc<TopicRegistry>| registry.get("t").map(|t| (t.partitions.len(), t.overrides.clone()));
        let r = registry.clone();
        let create = tokio::spawn(async move { r.create("t", 1, BTreeMap::new()).await.map(|_| ()) });
        // Partition opens sync nothing; the metadata write waits 400 ms in its sync.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(during(&registry), None, "visible before the metadata write finished");
        create.await.unwrap().unwrap();
        assert_eq!(during(&registry), Some((1, BTreeMap::new())));

        let r = registry.clone();
        let grow = tokio::spawn(async move { r.add_partitions("t", 3, false).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(during(&registry), Some((1, BTreeMap::new())), "new partitions visible before the write finished");
        grow.await.unwrap().unwrap();
        assert_eq!(during(&registry).unwrap().0, 3);

        let r = registry.clone();
        let alter = tokio::spawn(async move {
            r.alter_configs("t", false, |_| Ok(BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]))).await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(during(&registry).unwrap().1, BTreeMap::new(), "config visible before the write finished");
        alter.await.unwrap().unwrap();
        assert_eq!(during(&registry).unwrap().1.get("retention.ms").map(String::as_str), Some("1000"));
        faults.sync_delay_ms.store(0, Ordering::SeqCst);
        registry.close_all().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `strand.meta` as written by every strand so far (format version 1): two topics, one with
    /// an override, and producer ids reserved up to 2000. A data directory holding it opens
    /// with its topics, cluster id and producer ids, and the file written next changes nothing
    /// but what changed.
    const META_V1_GOLDEN: &str = "010707070707070707070707070707070702066f72646572730102030405060708090a0b0c0d0e0f1006010c726574656e74696f6e2e6d7304313030300a7765622e636c69636b731112131415161718191a1b1c1d1e1f200200a01f1993a59c";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[tokio::test]
    async fn a_data_directory_with_a_version_1_metadata_file_opens() {
        let dir = std::env::temp_dir().join(format!("strand-meta-v1-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let golden = unhex(META_V1_GOLDEN);
        std::fs::write(dir.join(META_FILE), &golden).unwrap();
        let registry = TopicRegistry::open(Runtime::real(), dir.clone(), TopicConfig::default()).await.unwrap();
        assert_eq!(registry.cluster_id(), Uuid::from_bytes([7; 16]));
        let orders = registry.get("orders").expect("orders");
        assert_eq!(orders.id, Uuid::from_bytes(std::array::from_fn(|i| i as u8 + 1)));
        assert_eq!(orders.partitions.len(), 3);
        assert_eq!(orders.overrides, BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]));
        assert_eq!(orders.config.retention_ms, 1000);
        let clicks = registry.get_by_id(Uuid::from_bytes(std::array::from_fn(|i| i as u8 + 17))).expect("web.clicks by id");
        assert_eq!((clicks.name.as_str(), clicks.partitions.len()), ("web.clicks", 1));
        assert!(dir.join("orders-2").is_dir() && dir.join("web.clicks-0").is_dir());
        assert_eq!(std::fs::read(dir.join(META_FILE)).unwrap(), golden, "opening rewrote the file");

        // Ids continue after the reserved block; the file then differs only in the block end.
        assert_eq!(registry.allocate_producer_id().await.unwrap(), 2000);
        let mut expected = decode_meta(&golden).unwrap();
        expected.producer_id_block_end = 2000 + PRODUCER_ID_BLOCK;
        let mut bytes = postcard::to_allocvec(&expected).unwrap();
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(std::fs::read(dir.join(META_FILE)).unwrap(), bytes);
        registry.close_all().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn hosted(registry: &TopicRegistry) -> Vec<(String, usize, BTreeMap<String, String>)> {
        registry.all().iter().map(|t| (t.name.clone(), t.partitions.len(), t.overrides.clone())).collect()
    }

    /// The registry's changes are records applied to its image; the hosted topics follow the
    /// image, and a restart restores the same image (placement on this node included) from
    /// the metadata file.
    #[tokio::test]
    async fn the_image_and_the_hosted_partitions_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("strand-meta-image-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let node = NodeId(7);
        let registry = TopicRegistry::open_as(Runtime::real(), dir.clone(), TopicConfig::default(), node).await.unwrap();
        let retention = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        registry.create("a", 2, retention.clone()).await.unwrap();
        registry.create("b", 1, BTreeMap::new()).await.unwrap();
        registry.add_partitions("a", 4, false).await.unwrap();
        registry.alter_configs("a", false, |_| Ok(BTreeMap::from([("segment.ms".to_string(), "5000".to_string())]))).await.unwrap();
        registry.delete("b").await.unwrap();
        assert_eq!(registry.allocate_producer_id().await.unwrap(), 0);
        assert!(!dir.join("b-0").exists() && dir.join("a-3").is_dir());

        let segment_ms = BTreeMap::from([("segment.ms".to_string(), "5000".to_string())]);
        assert_eq!(hosted(&registry), [("a".to_string(), 4, segment_ms.clone())]);
        assert_eq!(registry.get("a").unwrap().config.segment_ms, 5000);
        let snapshot = registry.with_image(|image| {
            let a = image.topic("a").unwrap();
            assert_eq!(a.configs, segment_ms);
            assert!(a.partitions.iter().all(|p| p.replicas == [node] && p.leader == Some(node)));
            assert!(image.topic("b").is_none());
            assert_eq!(image.next_producer_id(), PRODUCER_ID_BLOCK);
            image.snapshot()
        });
        registry.close_all().await;
        drop(registry);

        let reopened = TopicRegistry::open_as(Runtime::real(), dir.clone(), TopicConfig::default(), node).await.unwrap();
        assert_eq!(reopened.with_image(MetadataImage::snapshot), snapshot);
        assert_eq!(hosted(&reopened), [("a".to_string(), 4, segment_ms)]);
        assert_eq!(reopened.allocate_producer_id().await.unwrap(), PRODUCER_ID_BLOCK);
        reopened.close_all().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A change whose metadata write fails is not applied: the image and the hosted topics
    /// stay as they were, a delete keeps the topic and its data.
    #[tokio::test]
    async fn a_change_whose_metadata_write_fails_changes_nothing() {
        use std::sync::atomic::Ordering;
        let dir = std::env::temp_dir().join(format!("strand-meta-fail-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (rt, faults) = crate::log::tests::faulty_runtime();
        let registry = TopicRegistry::open(rt, dir.clone(), TopicConfig::default()).await.unwrap();
        registry.create("t", 1, BTreeMap::new()).await.unwrap();
        let before = registry.with_image(MetadataImage::snapshot);
        let storage = |e: AdminError| e.code;

        faults.eio_on_sync.store(true, Ordering::SeqCst);
        assert_eq!(registry.create("u", 2, BTreeMap::new()).await.map(|_| ()).map_err(storage), Err(ErrorCode::KAFKA_STORAGE_ERROR));
        assert_eq!(registry.add_partitions("t", 3, false).await.map_err(storage), Err(ErrorCode::KAFKA_STORAGE_ERROR));
        let altered = registry.alter_configs("t", false, |_| Ok(BTreeMap::from([("retention.ms".to_string(), "1".to_string())])));
        assert_eq!(altered.await.map_err(storage), Err(ErrorCode::KAFKA_STORAGE_ERROR));
        assert_eq!(registry.delete("t").await.map(|_| ()).map_err(storage), Err(ErrorCode::KAFKA_STORAGE_ERROR));
        assert!(registry.allocate_producer_id().await.is_err());
        assert_eq!(registry.with_image(MetadataImage::snapshot), before);
        assert_eq!(hosted(&registry), [("t".to_string(), 1, BTreeMap::new())]);
        assert!(registry.get("u").is_none() && dir.join("t-0").is_dir());
        // Directories the failed changes created are gone with them (a retried create has a
        // new topic id, which an old directory's partition.metadata would not match).
        for gone in ["u-0", "u-1", "t-1", "t-2"] {
            assert!(!dir.join(gone).exists(), "{gone} outlived the change that failed");
        }

        faults.eio_on_sync.store(false, Ordering::SeqCst);
        registry.add_partitions("t", 3, false).await.unwrap();
        registry.create("u", 2, BTreeMap::new()).await.unwrap();
        assert_eq!(registry.allocate_producer_id().await.unwrap(), 0);
        assert_eq!(hosted(&registry).iter().map(|(n, p, _)| (n.as_str(), *p)).collect::<Vec<_>>(), [("t", 3), ("u", 2)]);
        registry.close_all().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A deleted topic leaves lookups at once, but its directories go only once the image
    /// without it is durable and published.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deleted_topic_loses_its_directories_only_after_the_image_without_it_is_durable() {
        use std::sync::atomic::Ordering;
        use std::time::Duration;
        let dir = std::env::temp_dir().join(format!("strand-meta-delete-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (rt, faults) = crate::log::tests::faulty_runtime();
        let registry = Arc::new(TopicRegistry::open(rt, dir.clone(), TopicConfig::default()).await.unwrap());
        registry.create("gone", 2, BTreeMap::new()).await.unwrap();
        faults.sync_delay_ms.store(400, Ordering::SeqCst);
        let r = registry.clone();
        let delete = tokio::spawn(async move { r.delete("gone").await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(registry.get("gone").is_none(), "a topic being deleted is still served");
        assert!(registry.with_image(|image| image.topic("gone").is_some()), "the image changed before the write finished");
        assert!(dir.join("gone-0").is_dir() && dir.join("gone-1").is_dir(), "data removed before the delete was durable");
        delete.await.unwrap().unwrap();
        assert!(registry.with_image(|image| image.topic("gone").is_none()));
        assert!(!dir.join("gone-0").exists() && !dir.join("gone-1").exists());
        faults.sync_delay_ms.store(0, Ordering::SeqCst);
        registry.close_all().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_flipped_read_of_partition_metadata_does_not_disown_the_directory() {
        use crate::partition::Acks;
        let dir = std::env::temp_dir().join(format!("strand-marker-flip-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (rt, faults) = crate::log::tests::faulty_runtime();
        let registry = TopicRegistry::open(rt.clone(), dir.clone(), TopicConfig::default()).await.unwrap();
        let t = registry.create("t", 2, BTreeMap::new()).await.unwrap();
        for (_, p) in t.hosted() {
            p.append(crate::protocol::batch::build_simple_batch(0, 0, &[b"a", b"b", b"c"]), Acks::Durable).await.unwrap();
        }
        registry.close_all().await;
        drop((t, registry));

        // Each partition's marker reads flipped once (simulator seed 3: a flipped topic id
        // read as another topic's left the partition closed, NOT_LEADER_OR_FOLLOWER for good).
        faults.corrupt_next_reads("partition.metadata", 2);
        let registry = TopicRegistry::open(rt, dir.clone(), TopicConfig::default()).await.unwrap();
        assert_eq!(faults.corrupt_reads_left(), 0);
        let t = registry.get("t").unwrap();
        assert_eq!(t.hosted().map(|(_, p)| p.log_end_offset()).collect::<Vec<_>>(), [3, 3]);
        registry.close_all().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_single_node_replaces_a_directory_an_earlier_topic_of_the_name_left() {
        let dir = std::env::temp_dir().join(format!("strand-marker-stale-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let registry = TopicRegistry::open(Runtime::real(), dir.clone(), TopicConfig::default()).await.unwrap();
        // What a create that failed half-way (and could not remove its directory) leaves.
        std::fs::create_dir_all(dir.join("u-1")).unwrap();
        std::fs::write(dir.join("u-1").join(PARTITION_METADATA_FILE), partition_metadata(TopicId([7; 16]))).unwrap();
        let u = registry.create("u", 2, BTreeMap::new()).await.unwrap();
        assert_eq!(u.hosted().count(), 2, "every partition of a single node's topic is hosted (simulator seed 164)");
        assert_eq!(std::fs::read(dir.join("u-1").join(PARTITION_METADATA_FILE)).unwrap(), partition_metadata(TopicId::from(u.id)));
        registry.close_all().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn meta_crc_detects_corruption() {
        let meta = MetaFile { version: META_VERSION, cluster_id: [7; 16], topics: vec![], producer_id_block_end: 0 };
        let mut bytes = postcard::to_allocvec(&meta).unwrap();
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_be_bytes());
        assert!(decode_meta(&bytes).is_ok());
        bytes[0] ^= 1;
        assert!(decode_meta(&bytes).unwrap_err().contains("CRC"));
    }
}
