//! A partition replica on this node: the log plus its group-commit flusher and high watermark.
//!
//! Single-node for now (replication comes with a later issue): the high watermark is the
//! durable offset, so consumers never see a record that a crash could take back.
//!
//! PLACEHOLDER: the API below is the contract; implementation lands with the log work.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::TopicConfig;
use crate::log::{AppendInfo, ReadInfo, Result};
use crate::runtime::Runtime;

/// How long a produce waits for durability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// acks=0: answer (or not) without waiting.
    None,
    /// acks=1 / acks=all: answer once the batch is durable (fdatasync'd).
    Durable,
}

pub struct Partition {
    _private: (),
}

impl Partition {
    /// Open the log and start its flusher task.
    pub async fn open(_rt: Runtime, _dir: PathBuf, _config: TopicConfig) -> Result<Arc<Partition>> {
        todo!("partition implementation")
    }
    /// Append; with `Acks::Durable` returns only after the data is durable (group commit: many
    /// concurrent appends share one fdatasync).
    pub async fn append(&self, _records: Bytes, _acks: Acks) -> Result<AppendInfo> {
        todo!("partition implementation")
    }
    /// Wait until everything below `upto` is durable, or the log failed.
    pub async fn wait_durable(&self, _upto: i64) -> Result<()> {
        todo!("partition implementation")
    }
    /// Read committed data (below the high watermark).
    pub async fn read(&self, _offset: i64, _max_bytes: usize) -> Result<ReadInfo> {
        todo!("partition implementation")
    }
    pub fn high_watermark(&self) -> i64 {
        todo!("partition implementation")
    }
    pub fn log_start_offset(&self) -> i64 {
        todo!("partition implementation")
    }
    pub fn log_end_offset(&self) -> i64 {
        todo!("partition implementation")
    }
    /// Resolves when the high watermark moves past `offset` (for fetch long-poll).
    pub fn watch_high_watermark(&self) -> tokio::sync::watch::Receiver<i64> {
        todo!("partition implementation")
    }
    pub async fn offset_for_timestamp(&self, _timestamp_ms: i64) -> Result<Option<(i64, i64)>> {
        todo!("partition implementation")
    }
    pub async fn max_timestamp_and_offset(&self) -> Option<(i64, i64)> {
        todo!("partition implementation")
    }
    pub async fn set_config(&self, _config: TopicConfig) {
        todo!("partition implementation")
    }
    pub async fn maintain(&self) -> Result<usize> {
        todo!("partition implementation")
    }
    /// Stop the flusher, sync, write the checkpoint.
    pub async fn close(&self) -> Result<()> {
        todo!("partition implementation")
    }
}
