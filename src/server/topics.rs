//! The topic registry: which topics exist, their ids, configs and partitions, stored durably.
//!
//! The metadata file `strand.meta` in the data directory is the source of truth: postcard bytes
//! followed by their CRC-32C, replaced atomically (`.swap` + rename + directory sync). A topic
//! exists once the file naming it is durable; partition directories not named by the file are
//! leftovers of an interrupted create or delete and are removed at start.
//!
//! Admin operations (create, delete, alter, add partitions) are serialised by one async lock;
//! lookups take a short std lock that is never held across an await.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::{validate_topic_name, TopicConfig};
use crate::limits::TOPIC_PARTITIONS_MAX;
use crate::partition::Partition;
use crate::protocol::errors::ErrorCode;
use crate::runtime::disk::{read_whole, write_atomic};
use crate::runtime::{rng, Runtime};

const META_FILE: &str = "strand.meta";
const META_VERSION: u32 = 1;

pub struct Topic {
    pub name: String,
    pub id: Uuid,
    /// Only the keys the user set (DescribeConfigs reports the rest as defaults).
    pub overrides: BTreeMap<String, String>,
    pub config: TopicConfig,
    pub partitions: Vec<Arc<Partition>>,
}

impl Topic {
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index).ok().and_then(|i| self.partitions.get(i))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct TopicRecord {
    name: String,
    id: [u8; 16],
    partitions: i32,
    overrides: Vec<(String, String)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct MetaFile {
    version: u32,
    cluster_id: [u8; 16],
    topics: Vec<TopicRecord>,
    /// Producer ids below this may have been handed out; a restart continues from here.
    producer_id_block_end: i64,
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

pub struct TopicRegistry {
    rt: Runtime,
    data_dir: PathBuf,
    defaults: TopicConfig,
    cluster_id: Uuid,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
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
    let segment = |ext: &str| {
        name.strip_suffix(ext).is_some_and(|stem| stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
    };
    segment(".log")
        || segment(".index")
        || segment(".timeindex")
        || name == "recovery-checkpoint"
        || name == "log-start-offset"
        || name.ends_with(".swap")
}

impl TopicRegistry {
    /// Load the metadata file (or start a new cluster), open every partition, remove leftovers.
    pub async fn open(rt: Runtime, data_dir: PathBuf, defaults: TopicConfig) -> anyhow::Result<TopicRegistry> {
        rt.disk
            .create_dir_all(&data_dir)
            .await
            .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", data_dir.display()))?;
        let meta_path = data_dir.join(META_FILE);
        let existing = read_meta(&rt, &meta_path).await?;
        let is_new = existing.is_none();
        let meta = match existing {
            Some(meta) => meta,
            None => MetaFile {
                version: META_VERSION,
                cluster_id: *rng::random_uuid().as_bytes(),
                topics: Vec::new(),
                producer_id_block_end: 0,
            },
        };
        let registry = TopicRegistry {
            rt: rt.clone(),
            data_dir: data_dir.clone(),
            defaults,
            cluster_id: Uuid::from_bytes(meta.cluster_id),
            topics: RwLock::new(BTreeMap::new()),
            admin: tokio::sync::Mutex::new(()),
            // Never reuse an id that may have been handed out before the restart.
            producer_ids: std::sync::Mutex::new((meta.producer_id_block_end, meta.producer_id_block_end)),
            sync_rounds: Arc::default(),
        };
        let mut opened = BTreeMap::new();
        for t in &meta.topics {
            let overrides: BTreeMap<String, String> = t.overrides.iter().cloned().collect();
            let config = registry.config_with(&overrides).map_err(|e| anyhow::anyhow!("topic {}: {}", t.name, e.message))?;
            let mut partitions = Vec::new();
            for p in 0..t.partitions {
                let dir = partition_dir(&data_dir, &t.name, p);
                let partition = Partition::open_in(rt.clone(), dir.clone(), config.clone(), registry.sync_rounds.clone())
                    .await
                    .map_err(|e| anyhow::anyhow!("opening {}: {e}", dir.display()))?;
                partitions.push(partition);
            }
            let topic = Topic { name: t.name.clone(), id: Uuid::from_bytes(t.id), overrides, config, partitions };
            opened.insert(t.name.clone(), Arc::new(topic));
        }
        // Remove partition directories no topic owns (an interrupted create or delete).
        for name in rt.disk.list(&data_dir).await? {
            if let Some((topic, p)) = parse_partition_dir(&name) {
                let owned = opened.get(topic).is_some_and(|t| p >= 0 && (p as usize) < t.partitions.len());
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
        *registry.topics.write().expect("topics lock") = opened;
        if is_new {
            // A new cluster: its id must be durable before any client sees it.
            registry.persist().await?;
        }
        Ok(registry)
    }

    pub fn cluster_id(&self) -> Uuid {
        self.cluster_id
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().expect("topics lock").get(name).cloned()
    }

    pub fn get_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.topics.read().expect("topics lock").values().find(|t| t.id == id).cloned()
    }

    /// Every topic, ordered by name.
    pub fn all(&self) -> Vec<Arc<Topic>> {
        self.topics.read().expect("topics lock").values().cloned().collect()
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
        validate_topic_name(name).map_err(|m| AdminError::new(ErrorCode::INVALID_TOPIC_EXCEPTION, m))?;
        if self.get(name).is_some() {
            return Err(AdminError::new(ErrorCode::TOPIC_ALREADY_EXISTS, format!("Topic '{name}' already exists.")));
        }
        // Kafka: '.' and '_' collide in metric names.
        let canon = name.replace('.', "_");
        if let Some(other) = self.all().iter().find(|t| t.name.replace('.', "_") == canon) {
            return Err(AdminError::new(
                ErrorCode::INVALID_TOPIC_EXCEPTION,
                format!("Topic '{name}' collides with existing topic: {}", other.name),
            ));
        }
        if partitions < 1 || partitions > TOPIC_PARTITIONS_MAX {
            return Err(AdminError::new(
                ErrorCode::INVALID_PARTITIONS,
                format!("Number of partitions must be between 1 and {TOPIC_PARTITIONS_MAX}, got {partitions}."),
            ));
        }
        self.config_with(overrides)
    }

    /// Create a topic: open its partitions, then make the metadata durable.
    pub async fn create(
        &self,
        name: &str,
        partitions: i32,
        overrides: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, AdminError> {
        let _admin = self.admin.lock().await;
        let config = self.validate_create(name, partitions, &overrides)?;
        let opened = self.open_partitions(name, 0..partitions, &config).await?;
        let topic = Arc::new(Topic { name: name.to_string(), id: rng::random_uuid(), overrides, config, partitions: opened });
        if let Err(e) = self.persist_then_publish(topic.clone()).await {
            // Never visible; its directories are orphans the next start removes.
            close_partitions(&topic.partitions).await;
            return Err(AdminError::new(ErrorCode::KAFKA_STORAGE_ERROR, format!("writing topic metadata: {e}")));
        }
        tracing::info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// Delete a topic: make its absence durable, then remove its data.
    pub async fn delete(&self, name: &str) -> Result<Arc<Topic>, AdminError> {
        let _admin = self.admin.lock().await;
        let topic = self.topics.write().expect("topics lock").remove(name).ok_or_else(|| {
            AdminError::new(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, format!("Topic '{name}' does not exist."))
        })?;
        if let Err(e) = self.persist().await {
            self.topics.write().expect("topics lock").insert(name.to_string(), topic);
            return Err(AdminError::new(ErrorCode::KAFKA_STORAGE_ERROR, format!("writing topic metadata: {e}")));
        }
        for (p, partition) in topic.partitions.iter().enumerate() {
            let _ = partition.close().await;
            let dir = partition_dir(&self.data_dir, name, p as i32);
            if let Err(e) = self.rt.disk.remove_dir_all(&dir).await {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove deleted partition; it is removed at next start");
            }
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(topic)
    }

    /// Grow a topic to `count` partitions.
    pub async fn add_partitions(&self, name: &str, count: i32, validate_only: bool) -> Result<(), AdminError> {
        let _admin = self.admin.lock().await;
        let topic = self.get(name).ok_or_else(|| {
            AdminError::new(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, format!("Topic '{name}' does not exist."))
        })?;
        let current = topic.partitions.len() as i32;
        if count == current {
            return Err(AdminError::new(ErrorCode::INVALID_PARTITIONS, format!("Topic already has {current} partitions.")));
        }
        if count < current {
            return Err(AdminError::new(
                ErrorCode::INVALID_PARTITIONS,
                format!("Topic currently has {current} partitions, which is higher than the requested {count}."),
            ));
        }
        if count > TOPIC_PARTITIONS_MAX {
            return Err(AdminError::new(
                ErrorCode::INVALID_PARTITIONS,
                format!("Number of partitions must be at most {TOPIC_PARTITIONS_MAX}, got {count}."),
            ));
        }
        if validate_only {
            return Ok(());
        }
        let added = self.open_partitions(name, current..count, &topic.config).await?;
        let grown = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            overrides: topic.overrides.clone(),
            config: topic.config.clone(),
            partitions: topic.partitions.iter().chain(&added).cloned().collect(),
        });
        if let Err(e) = self.persist_then_publish(grown).await {
            // The new partitions were never visible; their directories are orphans the next
            // start removes.
            close_partitions(&added).await;
            return Err(AdminError::new(ErrorCode::KAFKA_STORAGE_ERROR, format!("writing topic metadata: {e}")));
        }
        Ok(())
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
        let topic = self.get(name).ok_or_else(|| {
            AdminError::new(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, format!("Topic '{name}' does not exist."))
        })?;
        let overrides = alter(&topic.overrides)?;
        let config = self.config_with(&overrides)?;
        if validate_only {
            return Ok(());
        }
        let altered = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            overrides,
            config: config.clone(),
            partitions: topic.partitions.clone(),
        });
        if let Err(e) = self.persist_then_publish(altered).await {
            return Err(AdminError::new(ErrorCode::KAFKA_STORAGE_ERROR, format!("writing topic metadata: {e}")));
        }
        for partition in &topic.partitions {
            partition.set_config(config.clone()).await;
        }
        Ok(())
    }

    /// A producer id never handed out before (InitProducerId). Reserves a new block durably
    /// when the current one is used up.
    pub async fn allocate_producer_id(&self) -> anyhow::Result<i64> {
        // Ids come from a block whose end is durable in the metadata file, so none is handed
        // out twice across a crash. The end moves only after the file with the new end is
        // durable: until then every caller waits here (regression: the end was raised before
        // the write, and a concurrent caller took an id from the unwritten block; after a
        // crash the same id went to another producer, whose batches were then acknowledged as
        // "duplicates" of the first one's and never written: simulator seeds 1792 and 2328).
        {
            let mut ids = self.producer_ids.lock().expect("producer id lock");
            if ids.0 < ids.1 {
                ids.0 += 1;
                return Ok(ids.0 - 1);
            }
        }
        let _admin = self.admin.lock().await;
        let new_end = {
            let mut ids = self.producer_ids.lock().expect("producer id lock");
            if ids.0 < ids.1 {
                ids.0 += 1;
                return Ok(ids.0 - 1);
            }
            ids.1 + PRODUCER_ID_BLOCK
        };
        self.persist_with(new_end).await?;
        let mut ids = self.producer_ids.lock().expect("producer id lock");
        ids.1 = new_end;
        ids.0 += 1;
        Ok(ids.0 - 1)
    }

    /// The broker-wide topic defaults.
    pub fn defaults(&self) -> &TopicConfig {
        &self.defaults
    }

    async fn persist(&self) -> anyhow::Result<()> {
        let block_end = self.producer_ids.lock().expect("producer id lock").1;
        self.persist_with(block_end).await
    }

    /// Write the metadata file with `producer_id_block_end`. Callers hold the admin lock.
    async fn persist_with(&self, producer_id_block_end: i64) -> anyhow::Result<()> {
        let topics = self.topics.read().expect("topics lock").clone();
        self.persist_topics(topics, producer_id_block_end).await
    }

    /// Make `change` to the topics durable, then (only then) visible: the metadata file is
    /// written from the current topics with `change` applied, and the map is changed after
    /// the write succeeded. Callers hold the admin lock (so nothing else changes the map).
    async fn persist_then_publish(&self, change: Arc<Topic>) -> anyhow::Result<()> {
        let mut next = self.topics.read().expect("topics lock").clone();
        next.insert(change.name.clone(), change.clone());
        let block_end = self.producer_ids.lock().expect("producer id lock").1;
        self.persist_topics(next, block_end).await?;
        self.topics.write().expect("topics lock").insert(change.name.clone(), change);
        Ok(())
    }

    /// Open (creating) partitions `range` of topic `name`; if one fails, close those opened.
    async fn open_partitions(&self, name: &str, range: std::ops::Range<i32>, config: &TopicConfig) -> Result<Vec<Arc<Partition>>, AdminError> {
        let mut opened = Vec::with_capacity(range.len());
        for p in range {
            let dir = partition_dir(&self.data_dir, name, p);
            match Partition::open_in(self.rt.clone(), dir, config.clone(), self.sync_rounds.clone()).await {
                Ok(partition) => opened.push(partition),
                Err(e) => {
                    close_partitions(&opened).await;
                    return Err(AdminError::new(ErrorCode::KAFKA_STORAGE_ERROR, format!("creating partition {p}: {e}")));
                }
            }
        }
        Ok(opened)
    }

    async fn persist_topics(&self, topics: BTreeMap<String, Arc<Topic>>, producer_id_block_end: i64) -> anyhow::Result<()> {
        let meta = MetaFile {
            version: META_VERSION,
            cluster_id: *self.cluster_id.as_bytes(),
            topics: topics
                .values()
                .map(|t| TopicRecord {
                    name: t.name.clone(),
                    id: *t.id.as_bytes(),
                    partitions: t.partitions.len() as i32,
                    overrides: t.overrides.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                })
                .collect(),
            producer_id_block_end,
        };
        let mut bytes = postcard::to_allocvec(&meta)?;
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_be_bytes());
        write_atomic(self.rt.disk.as_ref(), &self.data_dir.join(META_FILE), Bytes::from(bytes)).await?;
        Ok(())
    }

    /// Close every partition (sync and checkpoint).
    pub async fn close_all(&self) {
        for topic in self.all() {
            for partition in &topic.partitions {
                if let Err(e) = partition.close().await {
                    tracing::error!(topic = %topic.name, error = %e, "closing partition failed");
                }
            }
        }
    }
}

/// Close partitions that never became visible (a create or grow that failed part-way).
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
