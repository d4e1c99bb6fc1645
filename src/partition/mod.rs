//! A partition replica on this node: the log plus its group-commit flusher and high watermark.
//!
//! Single-node for now (replication comes with a later issue): the high watermark is the
//! durable offset, so consumers never see a record that a crash could take back.
//!
//! Group commit: appends write under the log lock and return; the flusher task takes the files
//! with unsynced writes, syncs them *without* the lock (appends continue meanwhile), then
//! publishes the new durable offset on a watch channel. Every append that arrived during one
//! sync is covered by the next. A failed sync marks the log failed: waiters get an error and
//! later appends are refused until restart (the sync is never retried as if it had worked).

use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{watch, Mutex, Notify};

pub mod rounds;

use crate::config::TopicConfig;
use crate::log::{AppendInfo, Error, PartitionLog, ReadInfo, Result};
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
    rt: Runtime,
    dir: PathBuf,
    /// `None` once closed.
    log: Mutex<Option<PartitionLog>>,
    high_watermark: watch::Sender<i64>,
    log_start_offset: AtomicI64,
    log_end_offset: AtomicI64,
    /// The leader epoch this replica appends in (the metadata image's, for this partition).
    leader_epoch: AtomicI32,
    /// Set (with the reason) when the log failed.
    failed: std::sync::Mutex<Option<String>>,
    flush_wanted: Notify,
    flusher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Shared with the other partitions on this disk: aligns the starts of their syncs.
    rounds: Arc<rounds::SyncRounds>,
    /// Bytes appended since the last sync point was taken (updated under the log lock).
    unsynced_bytes: AtomicU64,
    /// How long each group commit's fdatasync took.
    pub sync_latency: crate::metrics::Histogram,
    /// How long each append held the log (validation and the write into the page cache).
    pub append_latency: crate::metrics::Histogram,
}

impl Partition {
    /// Open the log and start its flusher task, syncing on its own schedule.
    pub async fn open(rt: Runtime, dir: PathBuf, config: TopicConfig) -> Result<Arc<Partition>> {
        Partition::open_in(rt, dir, config, Arc::default()).await
    }

    /// Open the log and start its flusher task, its syncs aligned with those of the other
    /// partitions sharing `rounds` (see `rounds`).
    pub async fn open_in(rt: Runtime, dir: PathBuf, config: TopicConfig, rounds: Arc<rounds::SyncRounds>) -> Result<Arc<Partition>> {
        let log = PartitionLog::open(rt.clone(), dir.clone(), config).await?;
        #[cfg(feature = "planted-bugs")]
        let initial = if crate::runtime::planted("high-watermark-back") && log.durable_offset() > log.log_start_offset() {
            log.durable_offset() - 1 // Planted bug: publish a high watermark below what was visible.
        } else {
            log.durable_offset()
        };
        #[cfg(not(feature = "planted-bugs"))]
        let initial = log.durable_offset();
        let (high_watermark, _) = watch::channel(initial);
        let partition = Arc::new(Partition {
            rt,
            dir,
            log_start_offset: AtomicI64::new(log.log_start_offset()),
            log_end_offset: AtomicI64::new(log.log_end_offset()),
            leader_epoch: AtomicI32::new(log.leader_epoch()),
            log: Mutex::new(Some(log)),
            high_watermark,
            failed: std::sync::Mutex::new(None),
            flush_wanted: Notify::new(),
            flusher: std::sync::Mutex::new(None),
            rounds,
            unsynced_bytes: AtomicU64::new(0),
            sync_latency: Default::default(),
            append_latency: Default::default(),
        });
        let task = tokio::spawn(flush_loop(partition.clone()));
        *partition.flusher.lock().expect("flusher lock") = Some(task);
        Ok(partition)
    }

    fn closed_error(&self) -> Error {
        Error::Closed { dir: self.dir.clone() }
    }

    fn failure(&self) -> Option<String> {
        self.failed.lock().expect("failed lock").clone()
    }

    /// Append. With `Acks::Durable` returns only after the data is durable (group commit: many
    /// concurrent appends share one fdatasync). With `Acks::None`, call `wait_durable` later
    /// if needed.
    pub async fn append(&self, records: Bytes, acks: Acks) -> Result<AppendInfo> {
        let info = {
            let mut guard = self.log.lock().await;
            let log = guard.as_mut().ok_or_else(|| self.closed_error())?;
            let started = self.rt.clock.monotonic();
            let len = records.len() as u64;
            let result = log.append(records, self.rt.clock.wall_ms()).await;
            if result.is_ok() {
                self.unsynced_bytes.fetch_add(len, Ordering::SeqCst);
            }
            self.append_latency.record(self.rt.clock.monotonic() - started);
            self.log_end_offset.store(log.log_end_offset(), Ordering::SeqCst);
            self.note_failure(log);
            result?
        };
        self.flush_wanted.notify_one();
        if acks == Acks::Durable {
            self.wait_durable(info.last_offset + 1).await?;
        }
        Ok(info)
    }

    /// Wait until everything below `upto` is durable, or the log failed.
    pub async fn wait_durable(&self, upto: i64) -> Result<()> {
        let mut rx = self.high_watermark.subscribe();
        loop {
            if *rx.borrow_and_update() >= upto {
                return Ok(());
            }
            if let Some(reason) = self.failure() {
                return Err(Error::Failed { dir: self.dir.clone(), reason });
            }
            if rx.changed().await.is_err() {
                return Err(self.closed_error());
            }
        }
    }

    /// Read committed data (below the high watermark) from `offset` (see `PartitionLog::read`).
    /// The log is locked only to plan the read: a consumer catching up from disk does not hold
    /// up this partition's appends and syncs.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadInfo> {
        self.read_planned(offset, max_bytes, true).await
    }

    /// As `read`, but a first batch over `max_bytes` is not served either (see
    /// `ReadPlan::within_max_bytes`).
    pub async fn read_within(&self, offset: i64, max_bytes: usize) -> Result<ReadInfo> {
        self.read_planned(offset, max_bytes, false).await
    }

    async fn read_planned(&self, offset: i64, max_bytes: usize, min_one_batch: bool) -> Result<ReadInfo> {
        let plan = {
            let guard = self.log.lock().await;
            let log = guard.as_ref().ok_or_else(|| self.closed_error())?;
            let plan = log.read_plan(offset, max_bytes, self.high_watermark())?;
            if min_one_batch { plan } else { plan.within_max_bytes() }
        };
        match plan.read().await {
            Ok(read) => Ok(read),
            Err(e) => {
                // Retention may have removed a segment the read was planned over (a read then
                // fails only on the simulated disk, whose handles die with their names): once
                // whoever holds the log is done, an offset below the new start is out of range.
                drop(self.log.lock().await);
                if offset < self.log_start_offset() {
                    return Err(Error::OffsetOutOfRange { offset, log_start_offset: self.log_start_offset(), log_end_offset: self.log_end_offset() });
                }
                Err(e)
            }
        }
    }

    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    /// The leader epoch the metadata gives this partition: batches appended from now on carry
    /// it, and the leader-epoch cache starts it at their offset. A lower epoch than the one in
    /// use (an image replayed from further back at a restart) changes nothing.
    pub async fn set_leader_epoch(&self, epoch: i32) {
        if epoch <= self.leader_epoch() {
            return;
        }
        let mut guard = self.log.lock().await;
        if let Some(log) = guard.as_mut() {
            if epoch > log.leader_epoch() {
                log.set_leader_epoch(epoch);
                self.leader_epoch.store(epoch, Ordering::SeqCst);
            }
        }
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::SeqCst)
    }

    /// OffsetForLeaderEpoch: `(epoch, end offset)`, as `EpochCache::end_offset_for`.
    pub async fn end_offset_for_epoch(&self, epoch: i32) -> Result<(i32, i64)> {
        let guard = self.log.lock().await;
        let log = guard.as_ref().ok_or_else(|| self.closed_error())?;
        Ok(log.end_offset_for_epoch(epoch))
    }

    /// The epoch of the batch holding `offset` (for ListOffsets' answer), or -1 if none is known.
    pub async fn epoch_for_offset(&self, offset: i64) -> i32 {
        let guard = self.log.lock().await;
        guard.as_ref().and_then(|log| log.epochs().epoch_for_offset(offset)).unwrap_or(crate::log::epochs::UNDEFINED_EPOCH)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::SeqCst)
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset.load(Ordering::SeqCst)
    }

    /// Changes whenever the high watermark moves (for fetch long-poll).
    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    /// The lookup by timestamp of `PartitionLog::offset_for_timestamp`, reading the disk without
    /// holding the log (as `read`).
    pub async fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<(i64, i64)>> {
        let plan = {
            let guard = self.log.lock().await;
            let log = guard.as_ref().ok_or_else(|| self.closed_error())?;
            log.timestamp_plan(timestamp_ms)
        };
        plan.find().await
    }

    /// `PartitionLog::offset_for_max_timestamp` (KIP-734), reading the disk without holding the
    /// log: (offset, timestamp) of the first record carrying the largest timestamp.
    pub async fn offset_for_max_timestamp(&self) -> Result<Option<(i64, i64)>> {
        let plan = {
            let guard = self.log.lock().await;
            let log = guard.as_ref().ok_or_else(|| self.closed_error())?;
            log.max_timestamp_plan()
        };
        match plan {
            Some(plan) => plan.find().await,
            None => Ok(None),
        }
    }

    pub async fn set_config(&self, config: TopicConfig) {
        if let Some(log) = self.log.lock().await.as_mut() {
            log.set_config(config);
        }
    }

    /// Retention and age-based roll.
    pub async fn maintain(&self) -> Result<usize> {
        let mut guard = self.log.lock().await;
        let Some(log) = guard.as_mut() else { return Ok(0) };
        let deleted = log.maintain(self.rt.clock.wall_ms()).await;
        self.note_failure(log);
        let deleted = deleted?;
        self.log_start_offset.store(log.log_start_offset(), Ordering::SeqCst);
        self.publish(log);
        Ok(deleted)
    }

    /// Bytes of log on disk.
    pub async fn size_bytes(&self) -> u64 {
        self.log.lock().await.as_ref().map(|l| l.size_bytes()).unwrap_or(0)
    }

    /// Seal the active segment if it holds anything (see `PartitionLog::roll_if_nonempty`).
    pub async fn roll(&self) -> Result<()> {
        let mut guard = self.log.lock().await;
        let log = guard.as_mut().ok_or_else(|| self.closed_error())?;
        let rolled = log.roll_if_nonempty().await;
        self.note_failure(log);
        rolled?;
        self.publish(log);
        Ok(())
    }

    /// Kafka's DeleteRecords: move the log start to `offset` (at most the high watermark).
    pub async fn delete_records_before(&self, offset: i64) -> Result<usize> {
        let mut guard = self.log.lock().await;
        let log = guard.as_mut().ok_or_else(|| self.closed_error())?;
        let n = log.delete_records_before(offset).await;
        self.note_failure(log);
        let n = n?;
        self.log_start_offset.store(log.log_start_offset(), Ordering::SeqCst);
        Ok(n)
    }

    /// If the log failed (outside the flusher too: a write that could not be undone, a sync
    /// while rolling), record why and wake every produce waiting for durability, so it gets
    /// the error now rather than at its timeout. The flusher sees the failure and stops.
    fn note_failure(&self, log: &PartitionLog) {
        let Some(reason) = log.failure() else { return };
        let mut failed = self.failed.lock().expect("failed lock");
        if failed.is_none() {
            *failed = Some(reason.to_string());
            drop(failed);
            self.high_watermark.send_modify(|_| {});
        }
    }

    fn publish(&self, log: &mut PartitionLog) {
        // A single replica: its durable offset is the commit index.
        log.advance_high_watermark(log.durable_offset());
        let durable = log.durable_offset();
        self.high_watermark.send_if_modified(|hw| {
            assert!(durable >= *hw, "high watermark moved back from {hw} to {durable}");
            let changed = durable != *hw;
            *hw = durable;
            changed
        });
    }

    /// Stop the flusher, sync, write the checkpoint. Idempotent.
    pub async fn close(&self) -> Result<()> {
        let task = self.flusher.lock().expect("flusher lock").take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        let log = self.log.lock().await.take();
        let Some(log) = log else { return Ok(()) };
        let log_end_offset = log.log_end_offset();
        let failed = log.failure().is_some();
        log.close().await?;
        if !failed {
            // Everything is synced now: release anyone still waiting.
            self.high_watermark.send_if_modified(|hw| {
                let changed = log_end_offset > *hw;
                *hw = (*hw).max(log_end_offset);
                changed
            });
        }
        Ok(())
    }
}

/// Syncs of fewer unsynced bytes than this are aligned with other partitions' (see `rounds`).
const ALIGNED_SYNC_BYTES_MAX: u64 = 512 * 1024;

/// Take a sync point and the bytes appended since the last one; `None` once the log is closed
/// or failed.
async fn take_sync_point(p: &Partition) -> Option<(crate::log::SyncPoint, u64)> {
    let guard = p.log.lock().await;
    match guard.as_ref() {
        Some(log) if log.failure().is_none() => Some((log.sync_point(), p.unsynced_bytes.swap(0, Ordering::SeqCst))),
        _ => None,
    }
}

/// The group-commit loop; `close()` ends it.
async fn flush_loop(p: Arc<Partition>) {
    // The sync round this flusher was last in (see `SyncRounds::enter`).
    let mut last_round = None;
    loop {
        // Notify keeps one permit, so an append between two syncs is never missed.
        let wanted = p.flush_wanted.notified();
        let Some((point, pending_bytes)) = take_sync_point(&p).await else { return };
        if point.files.is_empty() {
            // Idle: whatever round runs when data comes is not one this flusher just missed.
            last_round = None;
            wanted.await;
            continue;
        }
        #[cfg(feature = "planted-bugs")]
        if crate::runtime::planted("ack-before-fsync") {
            // Planted bug: publish the new high watermark (and so answer acks) before syncing.
            let mut guard = p.log.lock().await;
            let Some(log) = guard.as_mut() else { return };
            log.mark_durable(&point);
            p.publish(log);
        }
        // A small sync (latency-bound: the journal commit dominates) waits for the round in
        // progress, if any, so it shares the next journal commit with the other partitions',
        // and then takes a fresh sync point: what arrived meanwhile rides along. A large one
        // (throughput-bound) goes at once rather than idle behind the slowest.
        let (point, ticket) = if pending_bytes < ALIGNED_SYNC_BYTES_MAX {
            let ticket = p.rounds.enter(last_round).await;
            last_round = Some(ticket.round());
            let Some((fresh, _)) = take_sync_point(&p).await else { return };
            (fresh, Some(ticket))
        } else {
            last_round = None;
            (point, None)
        };
        if point.files.is_empty() {
            continue;
        }
        let mut error = None;
        let started = p.rt.clock.monotonic();
        for file in &point.files {
            if let Err(e) = file.sync_data().await {
                error = Some(format!("fdatasync of {} failed: {e}", file.path().display()));
                break;
            }
        }
        p.sync_latency.record(p.rt.clock.monotonic() - started);
        drop(ticket);
        let mut guard = p.log.lock().await;
        let Some(log) = guard.as_mut() else { return };
        match error {
            None => {
                log.mark_durable(&point);
                p.publish(log);
                drop(guard);
                // Acks are out; let the kernel reuse the pages of older synced data, beside the
                // next sync rather than before it (one task per sync at most, and the real disk
                // does nothing until 8 MiB more can go). A failed hint changes nothing that
                // reads return: ignore it.
                let before = point.active_bytes.saturating_sub(crate::limits::PAGE_CACHE_WINDOW_BYTES);
                if let (Some(active), true) = (point.files.last().cloned(), before > 0) {
                    tokio::spawn(async move {
                        let _ = active.release_cache_before(before).await;
                    });
                }
            }
            Some(reason) => {
                log.mark_failed(reason.clone());
                *p.failed.lock().expect("failed lock") = Some(reason);
                // Wake every waiter so it sees the failure.
                p.high_watermark.send_modify(|_| {});
                return;
            }
        }
    }
}
