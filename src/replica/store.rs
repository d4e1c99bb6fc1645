//! A partition replica's Raft storage: the partition log *is* the Raft log ([replication],
//! item 1). The record batch at offsets `b..b + n` is the entry at indexes `b + 1..=b + n`
//! (`raft::Payload::Batch`), its `partition_leader_epoch` is the entry's term, the log end
//! offset is the last index and the commit index is the high watermark. Raft's own entry, the
//! `LeaderChange` a new leader appends, is a Kafka control batch of one record (control type
//! 2, `LeaderChangeMessage`, as KRaft writes in `__cluster_metadata`), which every client skips.
//! The core's term index is the log's leader-epoch cache, shifted by one.
//!
//! Besides the log, one small file: `raft-state`, the term and vote (made durable before a
//! message that depends on them leaves) and the log start's index, term and membership (what
//! the core calls its snapshot), with a CRC-32C.
//!
//! Durability: `write` submits a log write (truncation and appends) without syncing; `sync`
//! makes everything written so far durable and returns the last write id it covers, which the
//! shell reports to the core with `persisted`. A truncation overtaking a sync is the log's
//! concern (`SyncPoint` carries the truncation count).

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::log::{self, PartitionLog};
use crate::protocol::batch::{self, split_batches};
use crate::raft::{Entry, HardState, LogIndex, LogState, LogWrite, Membership, NodeId, Payload, SnapshotMeta, Term};
use crate::runtime::disk::{read_whole, write_atomic};
use crate::runtime::Runtime;

/// The replica's Raft state file in the partition directory.
pub const RAFT_STATE_FILE: &str = "raft-state";
const RAFT_STATE_VERSION: u32 = 1;

/// Bytes asked of one log read while collecting an append's batches.
const READ_BYTES: usize = 1 << 20;

/// Kafka's control record type of a `LeaderChangeMessage` (KRaft).
const LEADER_CHANGE_CONTROL_TYPE: i16 = 2;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct RaftStateFile {
    version: u32,
    hard: HardState,
    start: SnapshotMeta,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Log(#[from] log::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("batch at offset {offset}: {detail}")]
    BadBatch { offset: i64, detail: String },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The Raft storage of one partition replica.
pub struct ReplicaStore {
    rt: Runtime,
    dir: PathBuf,
    log: PartitionLog,
    state: RaftStateFile,
    /// Writes submitted and not yet covered by a sync.
    unsynced: VecDeque<u64>,
}

impl ReplicaStore {
    /// Open the replica in `dir` (its log and its Raft state). A new replica starts with
    /// `members` as voters.
    pub async fn open(rt: Runtime, dir: PathBuf, config: crate::config::TopicConfig, members: &[NodeId]) -> Result<ReplicaStore> {
        let log = PartitionLog::open(rt.clone(), dir.clone(), config).await?;
        let path = dir.join(RAFT_STATE_FILE);
        let state = match read_whole(rt.disk.as_ref(), &path).await.map_err(|source| StoreError::Io { path: path.clone(), source })? {
            Some(bytes) => decode_state(&bytes).map_err(|detail| StoreError::Corrupt { path: path.clone(), detail })?,
            None => RaftStateFile {
                version: RAFT_STATE_VERSION,
                hard: HardState::default(),
                start: SnapshotMeta {
                    index: LogIndex(log.log_start_offset() as u64),
                    term: Term(0),
                    membership: Membership { voters: members.iter().copied().collect(), learners: Default::default() },
                },
            },
        };
        let store = ReplicaStore { rt, dir, log, state, unsynced: VecDeque::new() };
        assert_eq!(
            store.state.start.index.0 as i64,
            store.log.log_start_offset(),
            "{}: the Raft log start and the partition's log start differ (retention on a replica comes with [replication]'s log-start handling)",
            store.dir.display()
        );
        Ok(store)
    }

    pub fn log(&self) -> &PartitionLog {
        &self.log
    }

    #[cfg(test)]
    pub(crate) fn log_mut_for_tests(&mut self) -> &mut PartitionLog {
        &mut self.log
    }

    /// What the idempotent-producer state says of `batch` (see `PartitionLog::producer_verdict`).
    pub fn producer_verdict(&self, batch: &batch::BatchView<'_>) -> log::producers::Verdict {
        self.log.producer_verdict(batch)
    }

    pub fn hard_state(&self) -> HardState {
        self.state.hard
    }

    /// What the core needs to restart on this log: its start, its terms and its end.
    pub fn log_state(&self) -> LogState {
        let end = self.log.log_end_offset();
        let epochs = self
            .log
            .epochs()
            .entries()
            .iter()
            .filter(|e| e.start_offset < end)
            .map(|e| (Term(u64::try_from(e.epoch).expect("leader epochs are not negative")), LogIndex(e.start_offset as u64 + 1)))
            .collect();
        LogState { snapshot: self.state.start.clone(), epochs, configs: Vec::new(), last_index: LogIndex(end as u64) }
    }

    /// Make the term and vote durable.
    pub async fn save_hard_state(&mut self, hard: HardState) -> Result<()> {
        let next = RaftStateFile { hard, ..self.state.clone() };
        self.write_state(&next).await?;
        self.state = next;
        Ok(())
    }

    async fn write_state(&self, state: &RaftStateFile) -> Result<()> {
        let path = self.dir.join(RAFT_STATE_FILE);
        let mut bytes = postcard::to_allocvec(state).expect("postcard encodes our own types");
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_be_bytes());
        write_atomic(self.rt.disk.as_ref(), &path, Bytes::from(bytes)).await.map_err(|source| StoreError::Io { path, source })
    }

    /// Submit a write of the core (not yet durable: see `sync`).
    pub async fn write(&mut self, write: &LogWrite) -> Result<()> {
        match write {
            LogWrite::Append { id, truncate_from, first_index, entries } => {
                if let Some(from) = truncate_from {
                    let offset = from.0 as i64 - 1;
                    let end = self.log.truncate_to(offset).await?;
                    assert_eq!(end, offset, "{}: truncation from index {from:?} is inside a batch", self.dir.display());
                }
                assert_eq!(first_index.0 as i64 - 1, self.log.log_end_offset(), "{}: an append continues the log", self.dir.display());
                let now = self.rt.clock.wall_ms();
                let mut records = BytesMut::new();
                let mut index = *first_index;
                for entry in entries {
                    records.extend_from_slice(&entry_to_batch(index, entry, now));
                    index = LogIndex(index.0 + entry.span());
                }
                if !records.is_empty() {
                    self.log.append_replicated(records.freeze(), now).await?;
                }
                self.unsynced.push_back(*id);
            }
            LogWrite::Restore { id, meta, .. } => {
                // A partition's "snapshot" is only a log start: begin the log afresh there.
                let next = RaftStateFile { start: meta.clone(), ..self.state.clone() };
                self.log.truncate_fully_and_start_at(meta.index.0 as i64).await?;
                self.write_state(&next).await?;
                self.state = next;
                self.unsynced.push_back(*id);
            }
        }
        Ok(())
    }

    /// Make every write submitted so far durable; the last write id that covers (None if none
    /// was waiting).
    pub async fn sync(&mut self) -> Result<Option<u64>> {
        let Some(&last) = self.unsynced.back() else { return Ok(None) };
        let point = self.log.sync_point();
        #[cfg(feature = "planted-bugs")]
        if crate::runtime::planted("replica-ack-before-fsync") {
            // Planted bug: report the writes durable without syncing them.
            self.log.mark_durable(&point);
            self.unsynced.clear();
            return Ok(Some(last));
        }
        for file in &point.files {
            if let Err(source) = file.sync_data().await {
                self.log.mark_failed(format!("sync failed: {source}"));
                return Err(StoreError::Io { path: file.path().to_path_buf(), source });
            }
        }
        self.log.mark_durable(&point);
        self.unsynced.clear();
        Ok(Some(last))
    }

    /// The commit index moved: the high watermark follows.
    pub fn set_commit(&mut self, commit: LogIndex) {
        self.log.advance_high_watermark(commit.0 as i64);
    }

    /// The entries for an append whose previous index the core gave as `prev_index`, through
    /// index `end - 1`: whole batches, from the one holding offset `prev_index` (which may
    /// begin before it: then the append starts there and `prev_index` moves back to its start)
    /// through the one holding `end - 2` (see `raft::Replicate::Entries`), but no more batches
    /// once `max_bytes` are taken (at least one is: a shorter append is answered with a shorter
    /// match, and the leader goes on from there). Returns the (possibly moved) previous index,
    /// its term and the entries.
    pub async fn entries_for(&self, prev_index: LogIndex, end: LogIndex, max_bytes: usize) -> Result<(LogIndex, Term, Vec<Entry>)> {
        let log_end = self.log.log_end_offset();
        // Covering index `end - 1` is covering offset `end - 2`: read until the next offset
        // reaches `end - 1`.
        let want = end.0 as i64 - 1;
        let mut prev = prev_index;
        let mut entries = Vec::new();
        let mut offset = prev_index.0 as i64;
        let mut taken = 0usize;
        'read: while offset < log_end {
            let read = self.log.read(offset, READ_BYTES, log_end).await?;
            let (batches, _) = split_batches(&read.records).map_err(|e| StoreError::BadBatch { offset, detail: e.to_string() })?;
            if batches.is_empty() {
                break;
            }
            for b in &batches {
                if entries.is_empty() {
                    if b.base_offset() < offset {
                        // `prev_index` is inside this batch: the append starts with it.
                        prev = LogIndex(b.base_offset() as u64);
                    } else if offset >= want {
                        break 'read; // at a batch boundary and nothing asked for
                    }
                } else if b.base_offset() != offset {
                    return Err(StoreError::BadBatch { offset: b.base_offset(), detail: format!("expected the batch at {offset}") });
                }
                entries.push(batch_to_entry(b)?);
                offset = b.next_offset();
                taken += b.size_bytes();
                if offset >= want || taken >= max_bytes {
                    break 'read;
                }
            }
        }
        Ok((prev, self.term_at(prev), entries))
    }

    /// The term of the entry ending at `index` (the epoch of offset `index - 1`).
    fn term_at(&self, index: LogIndex) -> Term {
        if index <= self.state.start.index {
            return self.state.start.term;
        }
        let epoch = self.log.epochs().epoch_for_offset(index.0 as i64 - 1).expect("an offset in the log has an epoch");
        Term(epoch as u64)
    }

    pub async fn close(self) -> Result<()> {
        self.log.close().await?;
        Ok(())
    }
}

fn decode_state(bytes: &[u8]) -> std::result::Result<RaftStateFile, String> {
    if bytes.len() < 4 {
        return Err("raft state file is truncated".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().expect("4 bytes")) {
        return Err("raft state file fails its CRC-32C check".into());
    }
    let state: RaftStateFile = postcard::from_bytes(body).map_err(|e| format!("raft state file does not decode: {e}"))?;
    if state.version != RAFT_STATE_VERSION {
        return Err(format!("raft state version {} is not supported", state.version));
    }
    Ok(state)
}

/// The bytes of the entry at `index`: a data batch as it is (its offsets and epoch were set
/// when it was proposed: checked), `LeaderChange` as a control batch.
pub fn entry_to_batch(index: LogIndex, entry: &Entry, now_ms: i64) -> Bytes {
    let base = index.0 as i64 - 1;
    let epoch = i32::try_from(entry.term.0).expect("a term fits a leader epoch");
    match &entry.payload {
        Payload::Batch { count, bytes } => {
            let (batches, _) = split_batches(bytes).expect("a proposed batch was validated");
            assert!(
                batches.len() == 1
                    && batches[0].base_offset() == base
                    && batches[0].partition_leader_epoch() == epoch
                    && batches[0].records_count() as u32 == *count,
                "entry at index {index:?} of term {epoch}: its batch says offset {}, epoch {}, {} records",
                batches.first().map_or(-1, |b| b.base_offset()),
                batches.first().map_or(-1, |b| b.partition_leader_epoch()),
                batches.first().map_or(-1, |b| b.records_count()),
            );
            bytes.clone()
        }
        Payload::LeaderChange => leader_change_batch(base, epoch, now_ms),
        Payload::Data(_) | Payload::Config(_) => {
            panic!("a partition log holds record batches and leader changes only, not {:?} (index {index:?})", entry.payload)
        }
    }
}

/// A batch read back from the log as the entry it is: a `Batch` of its records (a leader's
/// control batch is one record: the core needs no more of it once it is in the log).
pub fn batch_to_entry(b: &batch::BatchView<'_>) -> Result<Entry> {
    let term = Term(u64::try_from(b.partition_leader_epoch()).map_err(|_| StoreError::BadBatch {
        offset: b.base_offset(),
        detail: format!("negative leader epoch {}", b.partition_leader_epoch()),
    })?);
    // Every batch travels as its bytes, the leader's control batch too (as a one-record
    // batch): a follower writes exactly what the leader wrote.
    let bytes = Bytes::copy_from_slice(b.bytes());
    let count = u32::try_from(b.records_count()).ok().filter(|&c| c > 0).ok_or_else(|| StoreError::BadBatch {
        offset: b.base_offset(),
        detail: format!("{} records", b.records_count()),
    })?;
    Ok(Entry { term, payload: Payload::Batch { count, bytes } })
}

/// A leader's first entry of its term: a control batch of one `LeaderChangeMessage` record.
pub fn leader_change_batch(base_offset: i64, epoch: i32, now_ms: i64) -> Bytes {
    use kafka_protocol::messages::LeaderChangeMessage;
    use kafka_protocol::protocol::Encodable;
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let mut key = BytesMut::new();
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&LEADER_CHANGE_CONTROL_TYPE.to_be_bytes());
    let mut value = BytesMut::new();
    LeaderChangeMessage::default().encode(&mut value, 0).expect("encoding an in-memory message cannot fail");
    let record = Record {
        transactional: false,
        control: true,
        partition_leader_epoch: epoch,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: base_offset,
        sequence: -1,
        timestamp: now_ms,
        key: Some(key.freeze()),
        value: Some(value.freeze()),
        headers: Default::default(),
        delete_horizon: false,
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &[record], &RecordEncodeOptions { version: 2, compression: Compression::None })
        .expect("encoding an in-memory batch cannot fail");
    let mut out = buf;
    batch::set_base_offset(&mut out, base_offset);
    batch::set_partition_leader_epoch(&mut out, epoch);
    out.freeze()
}

/// The batch bytes a leader proposes for `records` (a producer's batch) at `base_offset` in
/// `epoch`: the header patched as `PartitionLog::append` does (outside the CRC).
pub fn place_batch(records: &[u8], base_offset: i64, epoch: i32) -> Bytes {
    let mut b = BytesMut::from(records);
    batch::set_base_offset(&mut b, base_offset);
    batch::set_partition_leader_epoch(&mut b, epoch);
    b.freeze()
}
