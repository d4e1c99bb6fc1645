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
//! PLACEHOLDER: the API below is the contract; implementation lands with the log work.

use std::path::PathBuf;

use bytes::Bytes;

use crate::config::TopicConfig;
use crate::protocol::batch::BatchError;
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
    #[error("{path}: corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
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
}

pub struct PartitionLog {
    _private: (),
}

impl PartitionLog {
    /// Open (or create) the log in `dir`, recovering as needed.
    pub async fn open(_rt: Runtime, _dir: PathBuf, _config: TopicConfig) -> Result<PartitionLog> {
        todo!("log implementation")
    }
    /// Validate and append one or more record batches (as a producer sent them), assigning
    /// offsets. The data is written but not yet durable.
    pub async fn append(&mut self, _records: Bytes, _now_ms: i64) -> Result<AppendInfo> {
        todo!("log implementation")
    }
    /// Files that need `sync_data` for everything appended so far to be durable.
    pub fn sync_point(&self) -> SyncPoint {
        todo!("log implementation")
    }
    /// Record that a sync of `sync_point()` taken at `upto` succeeded.
    pub fn mark_durable(&mut self, _upto: i64) {
        todo!("log implementation")
    }
    /// Record that a sync failed: the log refuses appends until reopened.
    pub fn mark_failed(&mut self, _reason: String) {
        todo!("log implementation")
    }
    pub fn log_start_offset(&self) -> i64 {
        todo!("log implementation")
    }
    pub fn log_end_offset(&self) -> i64 {
        todo!("log implementation")
    }
    pub fn durable_offset(&self) -> i64 {
        todo!("log implementation")
    }
    /// Read whole batches from `offset`, at most `max_bytes` (but at least one batch when one
    /// exists, as KIP-74), never past `upto` (exclusive).
    pub async fn read(&self, _offset: i64, _max_bytes: usize, _upto: i64) -> Result<ReadInfo> {
        todo!("log implementation")
    }
    /// The first offset whose batch max timestamp >= `timestamp_ms`, with that timestamp.
    pub async fn offset_for_timestamp(&self, _timestamp_ms: i64) -> Result<Option<(i64, i64)>> {
        todo!("log implementation")
    }
    /// The (max timestamp, offset) of the record with the largest timestamp, if any.
    pub fn max_timestamp_and_offset(&self) -> Option<(i64, i64)> {
        todo!("log implementation")
    }
    /// Apply retention and age-based roll. Returns the number of segments deleted.
    pub async fn maintain(&mut self, _now_ms: i64) -> Result<usize> {
        todo!("log implementation")
    }
    pub fn set_config(&mut self, _config: TopicConfig) {
        todo!("log implementation")
    }
    /// Sync and write the recovery checkpoint / clean-shutdown marker.
    pub async fn close(self) -> Result<()> {
        todo!("log implementation")
    }
}
