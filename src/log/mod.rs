//! One partition's durable log: an append-only sequence of segment files named by base offset
//! (`{base_offset:020}.log`), each with a sparse offset index (`.index`) and time index
//! (`.timeindex`), rebuilt when in doubt.
//!
//! Owns: segment roll (size, age, index full), retention (time, size; whole segments only, log
//! start offset advanced), reads by offset and by timestamp, crash recovery (scan from the
//! recovery checkpoint, validate every batch's CRC, cut a torn or corrupt tail, rebuild indexes).
//!
//! Never: decodes or re-encodes records; treats data as durable before `sync_data` returned Ok;
//! retries a failed sync (a failed sync marks the log failed until restart).
//!
//! Invariants: `log_start_offset <= durable_offset <= log_end_offset`; segment base offsets
//! strictly increase; batches within the log have dense increasing offsets.
//!
//! Files in a partition directory:
//! - `{base_offset:020}.log`, `.index`, `.timeindex`: segments (see `segment.rs`);
//! - `recovery-checkpoint`: the offset below which every byte was synced when it was written;
//!   recovery scans only the segments that may hold data at or past it;
//! - `log-start-offset`: the log start offset, so retention never moves it backwards.
//! Both checkpoints are 8 bytes (i64 BE) plus a CRC-32C (u32 BE), replaced atomically.
//! - `leader-epoch-checkpoint`: the leader-epoch cache (see `epochs.rs`).
//!
//! A replica's log also has a high watermark (the Raft commit index, set by its owner): it
//! never moves back, and `truncate_to` never cuts below it (`truncate.rs`).

pub mod epochs;
pub mod producers;
mod replicated;
mod segment;
mod truncate;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::config::{TimestampType, TopicConfig};
use crate::protocol::batch::{self, split_batches, validate_record_set, BatchError};
use segment::Segment;
use crate::runtime::{DiskFile, Runtime};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("record batch of {size_bytes} bytes exceeds max.message.bytes {max_bytes}")]
    MessageTooLarge { size_bytes: usize, max_bytes: usize },
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange { offset: i64, log_start_offset: i64, log_end_offset: i64 },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("log {dir} is failed after an IO error ({reason}); restart to recover")]
    Failed { dir: PathBuf, reason: String },
    #[error("partition {dir} is closed (its topic was deleted, or the broker is stopping)")]
    Closed { dir: PathBuf },
    #[error("{path}: corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("producer {producer_id}: sequence {got} is not the next one ({expected})")]
    OutOfOrderSequence { producer_id: i64, expected: i32, got: i32 },
    #[error("producer {producer_id}: epoch {got} is older than the current {current}")]
    InvalidProducerEpoch { producer_id: i64, current: i16, got: i16 },
    #[error("a produce request from an idempotent producer must carry exactly one batch per partition, not {batches}")]
    IdempotentBatchCount { batches: usize },
    #[error("the request's batches hold {span} records for one partition, more than {max}")]
    OffsetSpan { span: i64, max: i64 },
    #[error("a replicated batch starts at offset {got}, not at the log end {expected}")]
    NotContiguous { expected: i64, got: i64 },
    #[error("a replicated batch at offset {offset} has leader epoch {epoch}, older than the log's {latest}")]
    EpochBack { offset: i64, epoch: i32, latest: i32 },
}

pub type Result<T> = std::result::Result<T, Error>;

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record.
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// The LogAppendTime stamped on the batches, or -1 for CreateTime topics.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
}

/// Bytes read from the log: whole batches, starting with the batch containing the requested
/// offset (which may begin before it, as in Kafka).
#[derive(Debug, Clone, Default)]
pub struct ReadInfo {
    pub records: Bytes,
    /// First offset of the first returned batch, if any.
    pub first_batch_offset: Option<i64>,
}

/// Files with unsynced writes, and the offset they make durable once synced.
pub struct SyncPoint {
    pub files: Vec<std::sync::Arc<dyn DiskFile>>,
    /// `log_end_offset` at the time the sync point was taken.
    pub upto: i64,
    /// Size of the active segment file (the last of `files`) at that time.
    pub active_bytes: u64,
    /// The log's truncation count when the point was taken: a sync that a truncation overtook
    /// proves nothing about the bytes written since (`mark_durable` ignores it).
    truncations: u64,
}

const RECOVERY_CHECKPOINT: &str = "recovery-checkpoint";
const LOG_START_CHECKPOINT: &str = "log-start-offset";
const EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";

/// Whether `name` is a file the log writes in its directory (segments, their indexes, the
/// checkpoints, a `.swap` left by an interrupted atomic write): the replica manager removes a
/// directory holding nothing else.
pub fn is_log_file(name: &str) -> bool {
    let segment = |ext: &str| name.strip_suffix(ext).is_some_and(|stem| stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()));
    segment(".log")
        || segment(".index")
        || segment(".timeindex")
        || [RECOVERY_CHECKPOINT, LOG_START_CHECKPOINT, EPOCH_CHECKPOINT, crate::replica::store::RAFT_STATE_FILE].contains(&name)
        || name.ends_with(".swap")
}
/// Largest read issued at once when skipping from an index entry to the wanted batch.
const READ_SLACK_BYTES: usize = 64 * 1024;

pub struct PartitionLog {
    rt: Runtime,
    dir: PathBuf,
    config: TopicConfig,
    /// Ordered by base offset; never empty (the last one is the active segment).
    segments: Vec<Segment>,
    log_start_offset: i64,
    durable_offset: i64,
    /// Set after a failed sync or an unrecoverable write error: appends are refused.
    failed: Option<String>,
    /// Idempotent producers' recent batches (rebuilt from the last segments at open).
    producers: producers::ProducerStates,
    /// Leader epoch -> its first offset, durable in `leader-epoch-checkpoint`.
    epochs: epochs::EpochCache,
    /// The epoch stamped on appended batches (`set_leader_epoch`).
    leader_epoch: i32,
    /// The commit index as its owner last published it (never below the log start).
    high_watermark: i64,
    /// How many times the log was truncated (see `SyncPoint`).
    truncations: u64,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// What a checkpoint that fails its CRC means.
#[derive(Debug, Clone, Copy)]
enum IfCorrupt {
    /// Nothing: go on without it (the recovery checkpoint: recovery then scans every segment).
    Ignore,
    /// The partition cannot open (the log start: without it the start would fall back to the
    /// first segment's base and records deleted below it would be served again).
    Fail,
}

/// Reads of a checkpoint before a CRC failure counts as a corrupt file rather than a bad read.
const CHECKPOINT_READS: usize = 3;

async fn read_checkpoint(rt: &Runtime, path: &Path, if_corrupt: IfCorrupt) -> Result<Option<i64>> {
    for _ in 0..CHECKPOINT_READS {
        match crate::runtime::disk::read_whole(rt.disk.as_ref(), path).await.map_err(io_err(path))? {
            None => return Ok(None),
            Some(b) if b.len() == 12 && crc32c::crc32c(&b[..8]) == u32::from_be_bytes(b[8..12].try_into().expect("4 bytes")) => {
                return Ok(Some(i64::from_be_bytes(b[..8].try_into().expect("8 bytes"))));
            }
            Some(_) => {}
        }
    }
    match if_corrupt {
        IfCorrupt::Ignore => {
            tracing::warn!(path = %path.display(), "checkpoint is corrupt; ignoring it");
            Ok(None)
        }
        IfCorrupt::Fail => Err(Error::Corrupt {
            path: path.to_path_buf(),
            detail: format!(
                "the checkpoint fails its CRC in {CHECKPOINT_READS} reads; without it, records deleted below the log start \
                 would be served again (remove the file to start the partition from its first segment)"
            ),
        }),
    }
}

async fn write_checkpoint(rt: &Runtime, path: &Path, value: i64) -> Result<()> {
    let mut b = Vec::with_capacity(12);
    b.extend_from_slice(&value.to_be_bytes());
    b.extend_from_slice(&crc32c::crc32c(&value.to_be_bytes()).to_be_bytes());
    crate::runtime::disk::write_atomic(rt.disk.as_ref(), path, Bytes::from(b)).await.map_err(io_err(path))
}

impl PartitionLog {
    /// Open (or create) the log in `dir`, recovering as needed: segments that may hold data at
    /// or past the recovery checkpoint are scanned batch by batch (CRC, magic, dense offsets);
    /// the first bad batch and everything after it is cut off.
    pub async fn open(rt: Runtime, dir: PathBuf, config: TopicConfig) -> Result<PartitionLog> {
        let d = dir.clone();
        rt.disk.create_dir_all(&dir).await.map_err(io_err(&d))?;
        let names = rt.disk.list(&dir).await.map_err(io_err(&d))?;
        let mut bases: Vec<i64> = Vec::new();
        for name in &names {
            if name.ends_with(".swap") {
                rt.disk.remove(&dir.join(name)).await.map_err(io_err(&d))?;
            } else if let Some(stem) = name.strip_suffix(".log") {
                if let Ok(base) = stem.parse::<i64>() {
                    bases.push(base);
                }
            }
        }
        bases.sort_unstable();
        let recovery_point = read_checkpoint(&rt, &dir.join(RECOVERY_CHECKPOINT), IfCorrupt::Ignore).await?.unwrap_or(0);
        let start_checkpoint = read_checkpoint(&rt, &dir.join(LOG_START_CHECKPOINT), IfCorrupt::Fail).await?;
        let interval = config.index_interval_bytes.max(0) as u64;
        let mut segments: Vec<Segment> = Vec::new();
        let mut cut_rest = false;
        for (i, &base) in bases.iter().enumerate() {
            let path = segment::log_path(&dir, base);
            if cut_rest {
                tracing::warn!(path = %path.display(), "removing segment after a corrupt tail");
                for p in [path.clone(), segment::index_path(&dir, base), segment::time_index_path(&dir, base)] {
                    let _ = rt.disk.remove(&p).await;
                }
                continue;
            }
            let file = rt.disk.open(&path, false).await.map_err(io_err(&path))?;
            let next_base = bases.get(i + 1).copied();
            let trusted = next_base.is_some_and(|next| next <= recovery_point);
            if trusted {
                let mut seg = Segment::new(base, file.clone());
                seg.size_bytes = file.len().await.map_err(io_err(&path))?;
                seg.next_offset = next_base.expect("trusted segments have a successor");
                if seg.load_indexes(&rt, &dir).await {
                    segments.push(seg);
                    continue;
                }
                tracing::info!(path = %path.display(), "index missing or inconsistent; rebuilding by scan");
            }
            let (seg, problem) = segment::scan(&rt, base, file.clone(), interval).await?;
            if let Some(problem) = problem {
                tracing::warn!(path = %path.display(), %problem, valid_bytes = seg.size_bytes, "truncating torn or corrupt tail");
                let cut = truncate_point(seg.size_bytes);
                file.set_len(cut).await.map_err(io_err(&path))?;
                file.sync_data().await.map_err(io_err(&path))?;
                cut_rest = true;
            } else {
                // What the scan read may be only in the page cache (a process killed before its
                // fsync); the log end it sets becomes the durable offset below, so make it so.
                file.sync_data().await.map_err(io_err(&path))?;
                if let Some(next) = next_base {
                    if seg.next_offset != next {
                        return Err(Error::Corrupt {
                            path,
                            detail: format!("segment ends at offset {} but the next segment starts at {next}", seg.next_offset),
                        });
                    }
                }
            }
            segments.push(seg);
        }
        if cut_rest {
            rt.disk.sync_dir(&dir).await.map_err(io_err(&d))?;
        }
        // A cut tail can end the log below its start (records DeleteRecords had already removed
        // were damaged). Appending there would hand out offsets below the start, and those
        // records would vanish once the log grew past it. Kafka starts such a log afresh at
        // its start offset; so does strand.
        let end = segments.last().map(|s| s.next_offset);
        if let (Some(start), Some(end)) = (start_checkpoint, end) {
            if start > end {
                tracing::warn!(dir = %dir.display(), start, end, "log ends below its start offset after recovery; starting it empty at the start offset");
                for seg in segments.drain(..) {
                    for p in [segment::log_path(&dir, seg.base_offset), segment::index_path(&dir, seg.base_offset), segment::time_index_path(&dir, seg.base_offset)] {
                        match rt.disk.remove(&p).await {
                            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::Io { path: p, source: e }),
                            _ => {}
                        }
                    }
                }
                rt.disk.sync_dir(&dir).await.map_err(io_err(&d))?;
            }
        }
        if segments.is_empty() {
            let base = start_checkpoint.unwrap_or(0).max(0);
            let path = segment::log_path(&dir, base);
            let file = rt.disk.open(&path, true).await.map_err(io_err(&path))?;
            rt.disk.sync_dir(&dir).await.map_err(io_err(&d))?;
            if let Some(parent) = dir.parent() {
                rt.disk.sync_dir(parent).await.map_err(io_err(parent))?;
            }
            segments.push(Segment::new(base, file));
        }
        let opened_ms = rt.clock.wall_ms();
        for seg in &mut segments {
            seg.last_write_wall_ms = Some(opened_ms);
        }
        let log_end_offset = segments.last().expect("non-empty").next_offset;
        let first_base = segments[0].base_offset;
        let log_start_offset = start_checkpoint.unwrap_or(first_base).max(first_base).min(log_end_offset);
        let mut log = PartitionLog {
            rt,
            dir,
            config,
            segments,
            log_start_offset,
            durable_offset: log_end_offset,
            failed: None,
            producers: producers::ProducerStates::default(),
            epochs: epochs::EpochCache::default(),
            leader_epoch: 0,
            high_watermark: log_start_offset,
            truncations: 0,
        };
        log.load_epochs().await?;
        log.leader_epoch = log.epochs.latest().map_or(0, |e| e.epoch);
        log.rebuild_producers().await;
        log.check_invariants();
        Ok(log)
    }

    /// Load the leader-epoch cache and fit it to the recovered log (an epoch whose batches
    /// were lost in a crash is dropped). A missing or damaged checkpoint of a log that holds
    /// batches is rebuilt from their `partition_leader_epoch`.
    async fn load_epochs(&mut self) -> Result<()> {
        let path = self.dir.join(EPOCH_CHECKPOINT);
        let mut loaded = None;
        for _ in 0..CHECKPOINT_READS {
            match crate::runtime::disk::read_whole(self.rt.disk.as_ref(), &path).await.map_err(io_err(&path))? {
                None => break,
                Some(b) => {
                    if let Some(cache) = epochs::EpochCache::decode(&b) {
                        loaded = Some(cache);
                        break;
                    }
                }
            }
        }
        let empty = self.log_end_offset() == self.segments[0].base_offset;
        let mut cache = match &loaded {
            Some(cache) => cache.clone(),
            None if empty => epochs::EpochCache::default(),
            None => {
                tracing::warn!(dir = %self.dir.display(), "leader-epoch checkpoint missing or damaged; rebuilding it from the batches");
                let mut cache = epochs::EpochCache::default();
                let complete = self
                    .visit_batches(0, |b| {
                        let epoch = b.partition_leader_epoch();
                        if epoch >= 0 && cache.latest().is_none_or(|l| epoch > l.epoch) {
                            cache.assign(epoch, b.base_offset());
                        }
                    })
                    .await;
                if !complete {
                    return Err(Error::Corrupt {
                        path,
                        detail: "the leader-epoch checkpoint is missing or damaged and the log cannot be read back to rebuild it".into(),
                    });
                }
                cache
            }
        };
        cache.truncate_from_end(self.log_end_offset());
        cache.truncate_from_start(self.log_start_offset);
        self.epochs = cache;
        if loaded.as_ref() != Some(&self.epochs) {
            self.write_epochs().await?;
        }
        Ok(())
    }

    async fn write_epochs(&self) -> Result<()> {
        let path = self.dir.join(EPOCH_CHECKPOINT);
        crate::runtime::disk::write_atomic(self.rt.disk.as_ref(), &path, Bytes::from(self.epochs.encode())).await.map_err(io_err(&path))
    }

    /// The epoch stamped on the batches appended from now on (the partition's leader epoch, the
    /// Raft term, when this replica leads). It never goes back.
    pub fn set_leader_epoch(&mut self, epoch: i32) {
        assert!(epoch >= self.leader_epoch, "leader epoch {epoch} set after {}", self.leader_epoch);
        self.leader_epoch = epoch;
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    pub fn epochs(&self) -> &epochs::EpochCache {
        &self.epochs
    }

    /// OffsetForLeaderEpoch: `(epoch, end offset)` as `EpochCache::end_offset_for`.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The commit index moved to `hw` (clamped to the log end: a follower may learn a commit
    /// index past what it holds). It never moves back.
    pub fn advance_high_watermark(&mut self, hw: i64) {
        // Clamped to the log end and only raised: the invariants hold by construction, and
        // this runs after every group commit, so it does not walk the segments to recheck them.
        let hw = hw.min(self.log_end_offset());
        if hw > self.high_watermark {
            self.high_watermark = hw;
        }
    }

    /// Call `visit` on every batch header of the segments from `from` on, in order. Returns
    /// false if a part could not be read back whole and valid (a read is tried a few times).
    async fn visit_batches(&self, from: usize, mut visit: impl FnMut(&batch::BatchView<'_>)) -> bool {
        const CHUNK_BYTES: u64 = 1 << 20;
        /// Reads of one chunk before giving up (a read may be transiently bad, as recovery
        /// also assumes).
        const ATTEMPTS: usize = 3;
        for seg in &self.segments[from..] {
            let mut pos = 0u64;
            while pos < seg.size_bytes {
                let want = (seg.size_bytes - pos).min(CHUNK_BYTES);
                let mut advanced = None;
                for _ in 0..ATTEMPTS {
                    let Ok(chunk) = seg.file.read_at(pos, want as usize).await else { continue };
                    if chunk.len() as u64 != want {
                        continue;
                    }
                    let Ok((batches, covered)) = split_batches(&chunk) else { continue };
                    if covered == 0 {
                        // One batch larger than the chunk: read exactly it.
                        let len = i32::from_be_bytes(chunk[batch::BATCH_LENGTH_AT..batch::BATCH_LENGTH_AT + 4].try_into().expect("4 bytes"));
                        let size = batch::LOG_OVERHEAD_BYTES as u64 + len.max(0) as u64;
                        let Ok(whole) = seg.file.read_at(pos, size as usize).await else { continue };
                        match validate_record_set(&whole) {
                            Ok(v) if v.len() == 1 && whole.len() as u64 == size => {
                                visit(&v[0]);
                                advanced = Some(size);
                                break;
                            }
                            _ => continue,
                        }
                    }
                    if batches.iter().enumerate().any(|(i, b)| b.validate(i).is_err()) {
                        continue;
                    }
                    for b in &batches {
                        visit(b);
                    }
                    advanced = Some(covered as u64);
                    break;
                }
                match advanced {
                    Some(n) => pos += n,
                    None => return false,
                }
            }
        }
        true
    }

    fn active(&self) -> &Segment {
        self.segments.last().expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments.last_mut().expect("a log always has an active segment")
    }

    fn check_invariants(&self) {
        assert!(self.log_start_offset <= self.high_watermark, "log start {} > high watermark {}", self.log_start_offset, self.high_watermark);
        assert!(self.high_watermark <= self.log_end_offset(), "high watermark {} > log end {}", self.high_watermark, self.log_end_offset());
        if let Some(latest) = self.epochs.latest() {
            // (At the log end only when retention emptied the log: the epoch still holds the start.)
            assert!(latest.start_offset <= self.log_end_offset(), "epoch {latest:?} starts past the log end {}", self.log_end_offset());
            assert!(self.epochs.entries()[0].start_offset >= self.log_start_offset, "epoch cache starts below the log start {}", self.log_start_offset);
        }
        assert!(self.log_start_offset <= self.durable_offset, "log start {} > durable {}", self.log_start_offset, self.durable_offset);
        assert!(self.durable_offset <= self.log_end_offset(), "durable {} > log end {}", self.durable_offset, self.log_end_offset());
        for w in self.segments.windows(2) {
            assert!(w[0].base_offset < w[1].base_offset, "segment bases increase");
            assert_eq!(w[0].next_offset, w[1].base_offset, "segments are contiguous");
        }
    }

    /// Validate and append one or more record batches (as a producer sent them), assigning
    /// offsets. The data is written but not yet durable.
    pub async fn append(&mut self, records: Bytes, now_ms: i64) -> Result<AppendInfo> {
        if let Some(reason) = &self.failed {
            return Err(Error::Failed { dir: self.dir.clone(), reason: reason.clone() });
        }
        let max_bytes = self.config.max_message_bytes.max(0) as usize;
        let batches = validate_record_set(&records)?;
        if let Some(b) = batches.iter().find(|b| b.size_bytes() > max_bytes) {
            return Err(Error::MessageTooLarge { size_bytes: b.size_bytes(), max_bytes });
        }
        let span: i64 = batches.iter().map(|b| i64::from(b.records_count())).sum();
        if span > crate::limits::REQUEST_OFFSET_SPAN_MAX {
            return Err(Error::OffsetSpan { span, max: crate::limits::REQUEST_OFFSET_SPAN_MAX });
        }
        if batches.iter().any(|b| b.producer_id() >= 0 && b.base_sequence() >= 0) {
            if batches.len() != 1 {
                return Err(Error::IdempotentBatchCount { batches: batches.len() });
            }
            let b = &batches[0];
            match self.producers.check(b) {
                producers::Verdict::Append => {}
                producers::Verdict::Duplicate { base_offset, last_offset } => {
                    // A retry: answer with the offsets the batch already has.
                    return Ok(AppendInfo { base_offset, last_offset, log_append_time_ms: -1, log_start_offset: self.log_start_offset });
                }
                producers::Verdict::OutOfOrder { expected, got } => {
                    return Err(Error::OutOfOrderSequence { producer_id: b.producer_id(), expected, got });
                }
                producers::Verdict::StaleEpoch { current, got } => {
                    return Err(Error::InvalidProducerEpoch { producer_id: b.producer_id(), current, got });
                }
            }
        }
        let sizes: Vec<usize> = batches.iter().map(|b| b.size_bytes()).collect();
        drop(batches);
        // Assign offsets: base_offset and partition_leader_epoch are outside the CRC, so only
        // a copy of each batch's header is patched and the records are written from the
        // request buffer as they came (no copy of the batch). LogAppendTime rewrites the
        // timestamp type and max_timestamp, which are inside the CRC: that batch is copied,
        // patched and its CRC recomputed; its records are still untouched.
        let log_append_time = self.config.message_timestamp_type == TimestampType::LogAppendTime;
        let base_offset = self.log_end_offset();
        let mut next = base_offset;
        let mut pos = 0;
        let mut parts = Vec::with_capacity(2 * sizes.len());
        let mut headers = Vec::with_capacity(sizes.len());
        for &size in &sizes {
            let whole = if log_append_time { size } else { batch::HEADER_BYTES };
            let mut patched = BytesMut::from(&records[pos..pos + whole]);
            batch::set_base_offset(&mut patched, next);
            batch::set_partition_leader_epoch(&mut patched, self.leader_epoch);
            if log_append_time {
                batch::set_log_append_time(&mut patched, now_ms);
            }
            let patched = patched.freeze();
            headers.push((patched.slice(..batch::HEADER_BYTES), size));
            parts.push(patched);
            if whole < size {
                parts.push(records.slice(pos + whole..pos + size));
            }
            let view = batch::BatchView::header_only(&headers.last().expect("just pushed").0, size);
            next = view.next_offset();
            pos += size;
        }
        let total_bytes = pos as u64;
        self.maybe_roll(total_bytes, span, now_ms).await?;
        self.note_epoch(self.leader_epoch, base_offset).await?;
        self.write_at_end(parts, &headers, now_ms).await?;
        assert_eq!(self.log_end_offset(), next, "log end offset advanced by the appended records");
        self.check_invariants();
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_append_time_ms: if log_append_time { now_ms } else { -1 },
            log_start_offset: self.log_start_offset,
        })
    }

    /// Write `parts` (the bytes of the whole batches whose headers and sizes are `headers`) at
    /// the end of the active segment, then index them and record their producers. A failed write
    /// is cut off again, so the file stays a sequence of whole batches; if even that fails, the
    /// log cannot be trusted until recovery.
    async fn write_at_end(&mut self, parts: Vec<Bytes>, headers: &[(Bytes, usize)], now_ms: i64) -> Result<()> {
        let position = self.active().size_bytes;
        let file = self.active().file.clone();
        if let Err(e) = file.write_parts_at(position, parts).await {
            if let Err(e2) = file.set_len(position).await {
                self.failed = Some(format!("write failed ({e}) and could not be undone ({e2})"));
            }
            return Err(Error::Io { path: file.path().to_path_buf(), source: e });
        }
        let interval = self.config.index_interval_bytes.max(0) as u64;
        let written: Vec<batch::BatchView<'_>> = headers.iter().map(|(h, size)| batch::BatchView::header_only(h, *size)).collect();
        let seg = self.active_mut();
        seg.first_append_wall_ms.get_or_insert(now_ms);
        seg.last_write_wall_ms = Some(now_ms);
        let mut p = position;
        for b in &written {
            seg.note_batch(b, p, interval);
            p += b.size_bytes() as u64;
        }
        for b in &written {
            self.producers.record(b, now_ms);
        }
        Ok(())
    }

    /// Before a batch of `epoch` is written at `offset`: a new epoch's entry is made durable
    /// first, so the checkpoint always covers every batch on disk.
    async fn note_epoch(&mut self, epoch: i32, offset: i64) -> Result<()> {
        match self.epochs.needs_entry(epoch, offset) {
            Ok(false) => Ok(()),
            Ok(true) => {
                let before = self.epochs.clone();
                self.epochs.assign(epoch, offset);
                let written = self.write_epochs().await;
                if written.is_err() {
                    // The batch is not written either; the next append tries the entry again
                    // (an entry missing from the file would make the cache miss an epoch).
                    self.epochs = before;
                }
                written
            }
            Err(latest) => panic!("{}: a batch of epoch {epoch} appended after epoch {} (from offset {})", self.dir.display(), latest.epoch, latest.start_offset),
        }
    }

    /// Rebuild idempotent producers' state from the batches of the last two segments (as Kafka
    /// does without producer snapshots). Anything unexpected (a read error, a batch that does
    /// not validate) leaves the state empty instead: unknown producers are accepted at any
    /// sequence, so an incomplete state could refuse a good producer but an empty one cannot.
    async fn rebuild_producers(&mut self) {
        let from = self.segments.len().saturating_sub(2);
        let mut states = producers::ProducerStates::default();
        let now = self.rt.clock.wall_ms();
        if self.visit_batches(from, |b| states.record(b, now)).await {
            self.producers = states;
        } else {
            producers::REBUILDS_ABANDONED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(dir = %self.dir.display(), "cannot read back producer state; idempotent producers start fresh");
            self.producers = producers::ProducerStates::default();
        }
    }

    /// Roll to a new segment if appending `incoming_bytes` holding `incoming_offsets` records
    /// would overfill the active one (in bytes, or in offsets past what its u32 relative
    /// offsets hold), its index is full, or it is older than `segment.ms`.
    async fn maybe_roll(&mut self, incoming_bytes: u64, incoming_offsets: i64, now_ms: i64) -> Result<()> {
        let seg = self.active();
        if seg.is_empty() {
            return Ok(());
        }
        let index_entries_max = (self.config.segment_index_bytes.max(8) as usize) / segment::OFFSET_INDEX_ENTRY_BYTES;
        let too_big = seg.size_bytes + incoming_bytes > self.config.segment_bytes;
        let index_full = seg.offset_index.len() >= index_entries_max;
        let too_old = seg.first_append_wall_ms.is_some_and(|t| now_ms - t >= self.config.segment_ms);
        let offsets_full = seg.next_offset - seg.base_offset + incoming_offsets > i64::from(u32::MAX);
        if too_big || index_full || too_old || offsets_full {
            self.roll().await?;
        }
        Ok(())
    }

    /// Seal the active segment (sync it, write its indexes) and start a new one at the log end.
    async fn roll(&mut self) -> Result<()> {
        let dir = self.dir.clone();
        let file = self.active().file.clone();
        if let Err(e) = file.sync_data().await {
            self.failed = Some(format!("sync while rolling failed: {e}"));
            return Err(Error::Io { path: file.path().to_path_buf(), source: e });
        }
        self.active().write_indexes(&self.rt, &dir).await?;
        let base = self.log_end_offset();
        let path = segment::log_path(&dir, base);
        let file = self.rt.disk.open(&path, true).await.map_err(io_err(&path))?;
        self.rt.disk.sync_dir(&dir).await.map_err(io_err(&dir))?;
        // Everything before the new segment is synced: it is durable and need not be scanned.
        self.durable_offset = base;
        self.segments.push(Segment::new(base, file));
        write_checkpoint(&self.rt, &dir.join(RECOVERY_CHECKPOINT), base).await?;
        tracing::debug!(dir = %dir.display(), base, "rolled segment");
        Ok(())
    }

    /// Files that need `sync_data` for everything appended so far to be durable.
    pub fn sync_point(&self) -> SyncPoint {
        let upto = self.log_end_offset();
        let files = if self.durable_offset < upto { vec![self.active().file.clone()] } else { Vec::new() };
        SyncPoint { files, upto, active_bytes: self.active().size_bytes, truncations: self.truncations }
    }

    /// Record that the sync of `point` succeeded. A point taken before a truncation proves
    /// nothing (the bytes it covered may have been cut and others written in their place):
    /// it is ignored, and the next sync covers what is there now.
    pub fn mark_durable(&mut self, point: &SyncPoint) {
        #[cfg(feature = "planted-bugs")]
        let stale_counts = crate::runtime::planted("replica-stale-sync-counts");
        #[cfg(not(feature = "planted-bugs"))]
        let stale_counts = false;
        if point.truncations != self.truncations && !stale_counts {
            return;
        }
        // (Planted bug: a sync overtaken by a truncation counts; it is clamped to the log end.)
        let upto = if stale_counts { point.upto.min(self.log_end_offset()) } else { point.upto };
        assert!(upto <= self.log_end_offset(), "durable {upto} beyond log end {}", self.log_end_offset());
        if upto > self.durable_offset {
            self.durable_offset = upto;
        }
        self.check_invariants();
    }

    /// Record that a sync failed: the log refuses appends until reopened.
    pub fn mark_failed(&mut self, reason: String) {
        tracing::error!(dir = %self.dir.display(), %reason, "log failed; refusing appends until restart");
        self.failed = Some(reason);
    }

    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    pub fn durable_offset(&self) -> i64 {
        self.durable_offset
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size_bytes).sum()
    }

    /// Read whole batches from `offset`, at most `max_bytes` (but at least one batch when one
    /// exists, as KIP-74), never past `upto` (exclusive). Every batch returned passes its CRC:
    /// corruption on disk is an error, never served.
    pub async fn read(&self, offset: i64, max_bytes: usize, upto: i64) -> Result<ReadInfo> {
        self.read_plan(offset, max_bytes, upto)?.read().await
    }

    /// What `read` needs from the log, to run the disk reads after the caller lets go of the
    /// log (see `ReadPlan`).
    pub fn read_plan(&self, offset: i64, max_bytes: usize, upto: i64) -> Result<ReadPlan> {
        let log_end_offset = self.log_end_offset();
        if offset < self.log_start_offset || offset > log_end_offset {
            return Err(Error::OffsetOutOfRange { offset, log_start_offset: self.log_start_offset, log_end_offset });
        }
        let first = self.segments.partition_point(|s| s.base_offset <= offset).saturating_sub(1);
        // The segment holding `offset`, then as many after it as can fill `max_bytes`.
        let (mut segments, mut after_first) = (Vec::new(), 0u64);
        for seg in &self.segments[first..] {
            if seg.base_offset >= upto || (!segments.is_empty() && after_first >= max_bytes as u64) {
                break;
            }
            if !segments.is_empty() {
                after_first += seg.size_bytes;
            }
            segments.push(PlannedSegment {
                file: seg.file.clone(),
                size_bytes: seg.size_bytes,
                start: if seg.base_offset <= offset { seg.lookup(offset) } else { (0, seg.base_offset) },
            });
        }
        Ok(ReadPlan { offset, max_bytes, upto, min_one_batch: true, segments })
    }

    /// The first record at or after the log start whose timestamp >= `timestamp_ms`: its
    /// offset and timestamp, as Kafka. In a compressed CreateTime batch the records cannot be
    /// read without decompressing, which strand never does: there the first batch whose max
    /// timestamp matches answers with its base offset (or the log start, if later) and that max
    /// timestamp, so a consumer may see a few earlier records of that batch.
    pub async fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<(i64, i64)>> {
        self.timestamp_plan(timestamp_ms).find().await
    }

    /// What `offset_for_timestamp` needs from the log, to read the disk after the caller lets go
    /// of the log (as `read_plan`): the segments that may hold the answer, in offset order.
    pub fn timestamp_plan(&self, timestamp_ms: i64) -> TimestampPlan {
        let segments = self
            .segments
            .iter()
            .filter(|seg| seg.max_timestamp >= timestamp_ms && seg.next_offset > self.log_start_offset)
            .map(|seg| PlannedSegment { file: seg.file.clone(), size_bytes: seg.size_bytes, start: seg.lookup_time_position(timestamp_ms) })
            .collect();
        TimestampPlan { timestamp_ms, log_start_offset: self.log_start_offset, segments }
    }

    /// KIP-734's ListOffsets MAX_TIMESTAMP: the first record at or after the log start that
    /// carries the largest timestamp in the log, and that timestamp, as Kafka (whose
    /// `UnifiedLog.fetchOffsetByTimestamp` finds the segment with the largest timestamp, reads
    /// the first batch holding it and answers `RecordBatch.offsetOfMaxTimestamp`). The
    /// segments and the time index only say which batch (its last offset, Kafka's "shallow"
    /// offset), so the record is read from the log itself, whether the segment's state came
    /// from appends, from its index files or from a recovery scan: all three answer alike. In
    /// a LogAppendTime batch every record has the batch's time, so its first record answers; a
    /// compressed CreateTime batch cannot be looked into without its codec, which the broker
    /// never runs, so it answers its first offset (batch granularity: DESIGN.md).
    pub async fn offset_for_max_timestamp(&self) -> Result<Option<(i64, i64)>> {
        match self.max_timestamp_plan() {
            Some(plan) => plan.find().await,
            None => Ok(None),
        }
    }

    /// What `offset_for_max_timestamp` reads, planned under the partition's lock as
    /// `timestamp_plan`: the lookup of the first record at or after the largest timestamp of
    /// any batch still (partly) at or after the log start. None when no batch carries a
    /// timestamp.
    pub fn max_timestamp_plan(&self) -> Option<TimestampPlan> {
        let max_timestamp = self
            .segments
            .iter()
            .filter(|s| s.max_timestamp >= 0 && s.max_timestamp_offset >= self.log_start_offset)
            .map(|s| s.max_timestamp)
            .max()?;
        Some(self.timestamp_plan(max_timestamp))
    }

    /// Apply retention (whole segments only) and age-based roll; write the recovery checkpoint.
    /// Returns the number of segments deleted.
    pub async fn maintain(&mut self, now_ms: i64) -> Result<usize> {
        if self.failed.is_some() {
            return Ok(0);
        }
        self.producers.expire(now_ms);
        let active = self.active();
        if !active.is_empty() && active.first_append_wall_ms.is_some_and(|t| now_ms - t >= self.config.segment_ms) {
            self.roll().await?;
        }
        // Time: a segment whose newest record is older than retention.ms. The active segment is
        // rolled first when it alone is past retention, as Kafka does.
        let retention_ms = self.config.retention_ms;
        if retention_ms >= 0 {
            let active = self.active();
            let past_retention = active.retention_time_ms().is_some_and(|t| now_ms - t > retention_ms);
            if !active.is_empty() && past_retention && self.durable_offset == self.log_end_offset() {
                self.roll().await?;
            }
        }
        let mut deletable = 0;
        let mut size = self.size_bytes();
        let retention_bytes = self.config.retention_bytes;
        for seg in &self.segments[..self.segments.len() - 1] {
            let expired = retention_ms >= 0 && seg.retention_time_ms().is_some_and(|t| now_ms - t > retention_ms);
            // Kafka deletes the oldest segment while what remains would still be >= the limit.
            let oversize = retention_bytes >= 0 && size - seg.size_bytes >= retention_bytes as u64;
            if !(expired || oversize) || seg.next_offset > self.durable_offset {
                break;
            }
            size -= seg.size_bytes;
            deletable += 1;
        }
        if deletable > 0 {
            let new_start = self.segments[deletable].base_offset;
            self.advance_start(new_start, deletable).await?;
        }
        write_checkpoint(&self.rt, &self.dir.join(RECOVERY_CHECKPOINT), self.durable_offset).await?;
        self.check_invariants();
        Ok(deletable)
    }

    /// Move the log start to `new_start` and remove the first `segments` segments (all below
    /// it). The new start is persisted first: a crash then leaves extra files, never a start
    /// that moved back.
    async fn advance_start(&mut self, new_start: i64, segments: usize) -> Result<()> {
        #[cfg(feature = "planted-bugs")]
        let persist = !(crate::runtime::planted("log-start-in-memory") && segments == 0);
        #[cfg(not(feature = "planted-bugs"))]
        let persist = true;
        if persist {
            write_checkpoint(&self.rt, &self.dir.join(LOG_START_CHECKPOINT), new_start).await?;
        }
        self.log_start_offset = self.log_start_offset.max(new_start);
        self.high_watermark = self.high_watermark.max(self.log_start_offset);
        let epochs_before = self.epochs.clone();
        self.epochs.truncate_from_start(self.log_start_offset);
        if self.epochs != epochs_before {
            self.write_epochs().await?;
        }
        let removed: Vec<Segment> = self.segments.drain(..segments).collect();
        for seg in &removed {
            for p in [segment::log_path(&self.dir, seg.base_offset), segment::index_path(&self.dir, seg.base_offset), segment::time_index_path(&self.dir, seg.base_offset)] {
                match self.rt.disk.remove(&p).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::Io { path: p, source: e }),
                }
            }
        }
        if !removed.is_empty() {
            self.rt.disk.sync_dir(&self.dir).await.map_err(io_err(&self.dir))?;
        }
        Ok(())
    }

    /// Seal the active segment if it holds anything, so everything before the log end can
    /// later be removed as whole segments.
    pub async fn roll_if_nonempty(&mut self) -> Result<()> {
        if let Some(reason) = &self.failed {
            return Err(Error::Failed { dir: self.dir.clone(), reason: reason.clone() });
        }
        if !self.active().is_empty() {
            self.roll().await?;
        }
        Ok(())
    }

    /// Kafka's DeleteRecords: the log now starts at `offset`, which may fall inside a batch
    /// (reads from there return that whole batch, as Kafka's do); segments wholly below it are
    /// removed. An offset past the durable offset (the high watermark) is out of range, as in
    /// Kafka; one at or below the current start changes nothing. Returns the number of
    /// segments removed.
    pub async fn delete_records_before(&mut self, offset: i64) -> Result<usize> {
        if let Some(reason) = &self.failed {
            return Err(Error::Failed { dir: self.dir.clone(), reason: reason.clone() });
        }
        if offset > self.durable_offset {
            return Err(Error::OffsetOutOfRange { offset, log_start_offset: self.log_start_offset, log_end_offset: self.durable_offset });
        }
        let new_start = offset;
        if new_start <= self.log_start_offset {
            return Ok(0);
        }
        let n = self.segments[..self.segments.len() - 1].iter().take_while(|s| s.next_offset <= new_start).count();
        self.advance_start(new_start, n).await?;
        self.check_invariants();
        Ok(n)
    }

    pub fn set_config(&mut self, config: TopicConfig) {
        self.config = config;
    }

    /// Sync, write the active segment's indexes and the recovery checkpoint.
    pub async fn close(mut self) -> Result<()> {
        if self.failed.is_some() {
            return Ok(());
        }
        let file = self.active().file.clone();
        file.sync_data().await.map_err(io_err(file.path()))?;
        let upto = self.log_end_offset();
        if upto > self.durable_offset {
            self.durable_offset = upto;
        }
        self.active().write_indexes(&self.rt, &self.dir).await?;
        write_checkpoint(&self.rt, &self.dir.join(RECOVERY_CHECKPOINT), self.durable_offset).await?;
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Where to cut a segment whose first bad batch starts at `valid_bytes`.
fn truncate_point(valid_bytes: u64) -> u64 {
    #[cfg(feature = "planted-bugs")]
    if crate::runtime::planted("torn-tail-off-by-one") && valid_bytes > 0 {
        // Planted bug: cut one byte into the last valid batch.
        return valid_bytes - 1;
    }
    valid_bytes
}

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod truncate_tests;

/// A read planned under the partition's lock and run without it, so appends, syncs and other
/// reads of the partition go on while this one waits for the disk. It covers the segments as
/// they were when planned: appends only add bytes past each planned `size_bytes`, and nothing
/// rewrites bytes below it. Retention may remove a planned segment meanwhile; its open handle
/// still reads on a real disk (the simulated one fails the read, which `Partition::read`
/// answers as the out-of-range offset the fetch then asks for, as Kafka does).
pub struct ReadPlan {
    offset: i64,
    max_bytes: usize,
    upto: i64,
    /// Serve the first batch even when it alone is over `max_bytes` (KIP-74's rule for the
    /// first partition with data in a fetch; `within_max_bytes` turns it off).
    min_one_batch: bool,
    segments: Vec<PlannedSegment>,
}

struct PlannedSegment {
    file: Arc<dyn DiskFile>,
    /// Bytes of whole batches in the segment when planned.
    size_bytes: u64,
    /// Where to start reading and the base offset the batch there must have.
    start: (u64, i64),
}

impl PlannedSegment {
    /// Up to `want` bytes from `pos` (a batch start), or more if the batch there is larger: at
    /// least one whole batch either way.
    async fn read_window(&self, pos: u64, want: usize) -> Result<Bytes> {
        let buf = self.file.read_at(pos, want).await.map_err(io_err(self.file.path()))?;
        if !split_batches(&buf).map_err(|e| corrupt(self.file.as_ref(), pos, e.to_string()))?.0.is_empty() {
            return Ok(buf);
        }
        // One batch larger than the window: read it whole.
        if buf.len() < batch::LOG_OVERHEAD_BYTES {
            return Err(corrupt(self.file.as_ref(), pos, "short read inside the segment".into()));
        }
        let total = batch::LOG_OVERHEAD_BYTES + u32::from_be_bytes(buf[8..12].try_into().expect("4 bytes")) as usize;
        let whole = self.file.read_at(pos, total).await.map_err(io_err(self.file.path()))?;
        if split_batches(&whole).map_err(|e| corrupt(self.file.as_ref(), pos, e.to_string()))?.0.is_empty() {
            return Err(corrupt(self.file.as_ref(), pos, "batch extends past the segment end".into()));
        }
        Ok(whole)
    }
}

/// A read found something other than whole, valid batches at `pos` of `file`.
fn corrupt(file: &dyn DiskFile, pos: u64, detail: String) -> Error {
    Error::Corrupt { path: file.path().to_path_buf(), detail: format!("at position {pos}: {detail}") }
}

impl ReadPlan {
    /// Serve nothing rather than a first batch over `max_bytes` (KIP-74: only the first
    /// partition with data in a fetch may go over its limits).
    pub fn within_max_bytes(mut self) -> ReadPlan {
        self.min_one_batch = false;
        self
    }

    /// The batches are served as slices of the buffers read (one per read window, so usually
    /// one in all), not copied again: a fetch's records go from the read to the response as is.
    pub async fn read(self) -> Result<ReadInfo> {
        let (offset, max_bytes, upto) = (self.offset, self.max_bytes, self.upto);
        let mut parts: Vec<Bytes> = Vec::new();
        let mut served = 0usize;
        let mut first_batch_offset = None;
        'segments: for seg in &self.segments {
            let (mut pos, mut expected) = seg.start;
            while pos < seg.size_bytes {
                let budget = if served == 0 && self.min_one_batch { max_bytes.max(1) } else { max_bytes.saturating_sub(served) };
                if budget == 0 {
                    break 'segments;
                }
                let mut want = (seg.size_bytes - pos).min((budget + READ_SLACK_BYTES) as u64) as usize;
                if crate::buggify!() {
                    want = want.min(100); // a short read window: exercises the one-batch path
                }
                let buf = seg.read_window(pos, want).await?;
                let (batches, _) = split_batches(&buf).map_err(|e| corrupt(seg.file.as_ref(), pos, e.to_string()))?;
                // Batches in `buf` from `at`; those served are `buf[from..at]`.
                let (mut at, mut from, mut done) = (0usize, None, false);
                for b in &batches {
                    let size = b.size_bytes();
                    // The base offset is outside the CRC: check it against the index and the
                    // batch before, so a bit flipped there (a bad read) is never served as
                    // other offsets (regression: simulator seed 15861 served a batch as 600..603
                    // that is stored as 604..607).
                    if b.base_offset() != expected {
                        return Err(corrupt(seg.file.as_ref(), pos, format!("batch base offset {} where {expected} was expected", b.base_offset())));
                    }
                    expected = b.next_offset();
                    if b.next_offset() <= offset {
                        pos += size as u64;
                        at += size;
                        continue;
                    }
                    if b.next_offset() > upto || ((served > 0 || !self.min_one_batch) && served + size > max_bytes) {
                        done = true;
                        break;
                    }
                    b.validate(pos as usize).map_err(|e| corrupt(seg.file.as_ref(), pos, e.to_string()))?;
                    first_batch_offset.get_or_insert(b.base_offset());
                    from.get_or_insert(at);
                    served += size;
                    pos += size as u64;
                    at += size;
                }
                if let Some(from) = from {
                    parts.push(buf.slice(from..at));
                }
                if done {
                    break 'segments;
                }
            }
        }
        let records = match parts.len() {
            0 => Bytes::new(),
            1 => parts.pop().expect("one part"),
            _ => {
                let mut out = BytesMut::with_capacity(served);
                parts.iter().for_each(|p| out.extend_from_slice(p));
                out.freeze()
            }
        };
        debug_assert_eq!(records.len(), served);
        Ok(ReadInfo { records, first_batch_offset })
    }
}

/// A lookup by timestamp planned under the partition's lock and run without it (see
/// `ReadPlan`).
pub struct TimestampPlan {
    timestamp_ms: i64,
    log_start_offset: i64,
    segments: Vec<PlannedSegment>,
}

impl TimestampPlan {
    pub async fn find(self) -> Result<Option<(i64, i64)>> {
        let (timestamp_ms, log_start_offset) = (self.timestamp_ms, self.log_start_offset);
        for seg in &self.segments {
            // As in `read`: every batch scanned must pass its CRC (the max timestamp is inside
            // it) and have the base offset that follows the one before (it is outside it), so
            // a bad read fails the lookup instead of answering another offset.
            let (mut pos, mut expected) = seg.start;
            while pos < seg.size_bytes {
                let want = (seg.size_bytes - pos).min(READ_SLACK_BYTES as u64 * 4) as usize;
                let buf = seg.read_window(pos, want).await?;
                let (batches, _) = split_batches(&buf).map_err(|e| corrupt(seg.file.as_ref(), pos, e.to_string()))?;
                for b in &batches {
                    if b.base_offset() != expected {
                        return Err(corrupt(seg.file.as_ref(), pos, format!("batch base offset {} where {expected} was expected", b.base_offset())));
                    }
                    b.validate(pos as usize).map_err(|e| corrupt(seg.file.as_ref(), pos, e.to_string()))?;
                    if b.max_timestamp() >= timestamp_ms && b.next_offset() > log_start_offset {
                        match b.find_record_by_timestamp(timestamp_ms, log_start_offset) {
                            batch::RecordSearch::Found { offset, timestamp } => return Ok(Some((offset, timestamp))),
                            // The max timestamp claimed a match the records do not hold.
                            batch::RecordSearch::NotFound => {}
                            // Compressed, or LogAppendTime (every record has the max timestamp).
                            batch::RecordSearch::Opaque => return Ok(Some((b.base_offset().max(log_start_offset), b.max_timestamp()))),
                        }
                    }
                    expected = b.next_offset();
                    pos += b.size_bytes() as u64;
                }
            }
        }
        Ok(None)
    }
}
