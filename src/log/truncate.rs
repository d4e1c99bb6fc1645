//! What a replica does to its log when it diverges from its leader's: cut a divergent
//! uncommitted suffix (`truncate_to`, Kafka's `truncateTo`) or, behind the leader's log start,
//! start afresh there (`truncate_fully_and_start_at`, Kafka's `truncateFullyAndStartAt`).
//!
//! Never: cuts at or below the high watermark (asserted: a committed record is never taken
//! back); leaves a sync that ran before the cut able to mark what is written after it durable.
//!
//! Crash order of `truncate_to`: the recovery checkpoint is lowered first (so recovery rescans
//! the bytes about to change rather than trusting indexes written for the old ones), then the
//! leader-epoch cache drops the cut epochs, then later segments are removed and the directory
//! synced, and last the segment holding the cut is shortened and synced. A crash at any point
//! leaves a log that is a prefix of the old one, no shorter than the cut point's batch: the
//! caller's next truncation finishes the job.

use super::segment::{self, Segment};
use super::{batch, io_err, write_checkpoint, Error, PartitionLog, Result, LOG_START_CHECKPOINT, RECOVERY_CHECKPOINT};

impl PartitionLog {
    /// Remove every batch holding an offset at or past `offset`. A batch that straddles
    /// `offset` goes whole (as in Kafka), so the new log end is the largest batch boundary at
    /// or below `offset`; it is returned. `offset` at or past the log end changes nothing.
    ///
    /// Panics if that would cut below the high watermark: a replica that must do so has lost
    /// committed data, and it stops rather than serving a log that contradicts the quorum.
    pub async fn truncate_to(&mut self, offset: i64) -> Result<i64> {
        if let Some(reason) = &self.failed {
            return Err(Error::Failed { dir: self.dir.clone(), reason: reason.clone() });
        }
        let end = self.log_end_offset();
        if offset >= end {
            return Ok(end);
        }
        let (i, position, new_end) = self.cut_point(offset).await?;
        assert!(
            new_end >= self.high_watermark,
            "{}: truncating to {offset} (the batch boundary {new_end}) would cut below the high watermark {}",
            self.dir.display(),
            self.high_watermark
        );
        write_checkpoint(&self.rt, &self.dir.join(RECOVERY_CHECKPOINT), self.durable_offset.min(new_end)).await?;
        let epochs_before = self.epochs.clone();
        self.epochs.truncate_from_end(new_end);
        if self.epochs != epochs_before {
            if let Err(e) = self.write_epochs().await {
                // Nothing is cut yet: the log stays as it was.
                self.epochs = epochs_before;
                return Err(e);
            }
        }
        // From here on a failure leaves the files and the in-memory state apart: the log
        // refuses further work until reopened (recovery makes them agree again).
        self.truncations += 1;
        if let Err(e) = self.cut(i, position, new_end).await {
            self.failed = Some(format!("truncation to {new_end} failed: {e}"));
            return Err(e);
        }
        self.durable_offset = self.durable_offset.min(new_end);
        self.leader_epoch = self.leader_epoch.max(self.epochs.latest().map_or(0, |e| e.epoch));
        self.rebuild_producers().await;
        tracing::info!(dir = %self.dir.display(), from = end, to = new_end, "log truncated");
        self.check_invariants();
        Ok(new_end)
    }

    /// The segment holding `offset` (index), the byte position of the first batch that ends
    /// past `offset`, and that batch's base offset. Reads batch headers from the index entry
    /// before `offset` on, checking each continues the one before (a bad read is an error).
    async fn cut_point(&self, offset: i64) -> Result<(usize, u64, i64)> {
        let offset = offset.max(self.log_start_offset);
        let i = self.segments.partition_point(|s| s.base_offset <= offset).saturating_sub(1);
        let seg = &self.segments[i];
        let (mut pos, mut expected) = seg.lookup(offset);
        while pos < seg.size_bytes {
            let header = seg.file.read_at(pos, batch::HEADER_BYTES).await.map_err(io_err(seg.file.path()))?;
            if header.len() != batch::HEADER_BYTES {
                return Err(super::corrupt(seg.file.as_ref(), pos, "short read of a batch header".into()));
            }
            let length = i32::from_be_bytes(header[batch::BATCH_LENGTH_AT..batch::BATCH_LENGTH_AT + 4].try_into().expect("4 bytes"));
            let size = batch::LOG_OVERHEAD_BYTES + usize::try_from(length).unwrap_or(0);
            if size < batch::HEADER_BYTES || pos + size as u64 > seg.size_bytes {
                return Err(super::corrupt(seg.file.as_ref(), pos, format!("batch length {length} does not fit the segment")));
            }
            let view = batch::BatchView::header_only(&header, size);
            if view.base_offset() != expected {
                return Err(super::corrupt(seg.file.as_ref(), pos, format!("batch base offset {} where {expected} was expected", view.base_offset())));
            }
            if view.next_offset() > offset {
                return Ok((i, pos, expected));
            }
            expected = view.next_offset();
            pos += size as u64;
        }
        // `offset` is below the log end, so some batch of this segment ends past it.
        Err(super::corrupt(seg.file.as_ref(), pos, format!("no batch holds offset {offset} before the segment's end")))
    }

    /// Remove the segments after `i`, then cut segment `i` at `position` (where `new_end`'s
    /// batch starts) and trim its in-memory indexes to what is left.
    async fn cut(&mut self, i: usize, position: u64, new_end: i64) -> Result<()> {
        let later: Vec<Segment> = self.segments.drain(i + 1..).collect();
        // Last first: a crash part way leaves a prefix of the log.
        for seg in later.iter().rev() {
            remove_segment_files(self, seg.base_offset).await?;
        }
        // The segment holding the cut is active again: its index files, written when it was
        // sealed, describe bytes about to go (they are written again when it is next sealed).
        for p in [segment::index_path(&self.dir, self.segments[i].base_offset), segment::time_index_path(&self.dir, self.segments[i].base_offset)] {
            remove_if_present(self, &p).await?;
        }
        self.rt.disk.sync_dir(&self.dir).await.map_err(io_err(&self.dir))?;
        let seg = &mut self.segments[i];
        let file = seg.file.clone();
        file.set_len(position).await.map_err(io_err(file.path()))?;
        file.sync_data().await.map_err(io_err(file.path()))?;
        seg.size_bytes = position;
        seg.next_offset = new_end;
        let position32 = u32::try_from(position).expect("segment size < 4 GiB");
        seg.offset_index.retain(|&(_, pos)| pos < position32);
        seg.time_index.retain(|&(_, offset)| offset < new_end);
        (seg.max_timestamp, seg.max_timestamp_offset) = seg.time_index.last().copied().unwrap_or((-1, -1));
        seg.bytes_since_index_entry = position - seg.offset_index.last().map_or(0, |&(_, pos)| u64::from(pos));
        if seg.is_empty() {
            seg.first_append_wall_ms = None;
        }
        Ok(())
    }

    /// Empty the log and start it at `offset` (a follower whose log ends below its leader's
    /// log start, or diverges from it entirely, fetches from there). Everything in the log is
    /// discarded; `offset` may be below the current start. Panics if the high watermark is
    /// past `offset` (committed records would be lost that the leader still has).
    pub async fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<()> {
        if let Some(reason) = &self.failed {
            return Err(Error::Failed { dir: self.dir.clone(), reason: reason.clone() });
        }
        assert!(offset >= 0, "a log cannot start at {offset}");
        assert!(
            offset >= self.high_watermark,
            "{}: restarting the log at {offset} would discard committed records up to the high watermark {}",
            self.dir.display(),
            self.high_watermark
        );
        self.truncations += 1;
        match self.restart_at(offset).await {
            Ok(()) => {
                tracing::info!(dir = %self.dir.display(), offset, "log emptied and restarted at the leader's log start");
                self.check_invariants();
                Ok(())
            }
            Err(e) => {
                self.failed = Some(format!("restarting the log at {offset} failed: {e}"));
                Err(e)
            }
        }
    }

    async fn restart_at(&mut self, offset: i64) -> Result<()> {
        // The recovery checkpoint first (nothing left to trust), then the files; a crash after
        // the segments are gone opens an empty log at the old start checkpoint, and one after
        // the new start is written opens an empty log there.
        write_checkpoint(&self.rt, &self.dir.join(RECOVERY_CHECKPOINT), 0).await?;
        let old: Vec<Segment> = self.segments.drain(..).collect();
        for seg in old.iter().rev() {
            remove_segment_files(self, seg.base_offset).await?;
        }
        self.rt.disk.sync_dir(&self.dir).await.map_err(io_err(&self.dir))?;
        write_checkpoint(&self.rt, &self.dir.join(LOG_START_CHECKPOINT), offset).await?;
        self.epochs = super::epochs::EpochCache::default();
        self.write_epochs().await?;
        let path = segment::log_path(&self.dir, offset);
        let file = self.rt.disk.open(&path, true).await.map_err(io_err(&path))?;
        self.rt.disk.sync_dir(&self.dir).await.map_err(io_err(&self.dir))?;
        let mut seg = Segment::new(offset, file);
        seg.last_write_wall_ms = Some(self.rt.clock.wall_ms());
        self.segments.push(seg);
        self.log_start_offset = offset;
        self.durable_offset = offset;
        self.high_watermark = offset;
        self.producers = super::producers::ProducerStates::default();
        Ok(())
    }
}

async fn remove_if_present(log: &PartitionLog, path: &std::path::Path) -> Result<()> {
    match log.rt.disk.remove(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io { path: path.to_path_buf(), source: e }),
    }
}

async fn remove_segment_files(log: &PartitionLog, base: i64) -> Result<()> {
    for p in [segment::log_path(&log.dir, base), segment::index_path(&log.dir, base), segment::time_index_path(&log.dir, base)] {
        remove_if_present(log, &p).await?;
    }
    Ok(())
}
