//! Appending batches that already have their offsets and leader epochs: a follower's copy of
//! its leader's batches, or a leader's batches after its Raft core placed them
//! (`replica/store.rs`). Unlike `append`, nothing is assigned and nothing is de-duplicated
//! (the leader did that before proposing); the batches are written as they are, byte for byte,
//! so every replica of an offset holds the same bytes.

use bytes::Bytes;

use super::{batch, validate_record_set, Error, PartitionLog, Result};

impl PartitionLog {
    /// What the idempotent-producer state says of `batch` (a leader asks before proposing it;
    /// the state covers every batch in the log, committed or not, as Kafka's leader's does).
    pub fn producer_verdict(&self, batch: &batch::BatchView<'_>) -> super::producers::Verdict {
        self.producers.check(batch)
    }

    /// Append `records`, whole batches whose base offsets and partition leader epochs are set:
    /// the first must start at the log end and each continue the one before, and their epochs
    /// never go back (a batch of an epoch older than the log's latest is refused). The data is
    /// written but not yet durable.
    pub async fn append_replicated(&mut self, records: Bytes, now_ms: i64) -> Result<()> {
        if let Some(reason) = &self.failed {
            return Err(Error::Failed { dir: self.dir.clone(), reason: reason.clone() });
        }
        let batches = validate_record_set(&records)?;
        let mut expected = self.log_end_offset();
        let mut epoch = self.epochs.latest().map_or(i32::MIN, |e| e.epoch);
        let mut starts: Vec<(i32, i64)> = Vec::new();
        for b in &batches {
            if b.base_offset() != expected {
                return Err(Error::NotContiguous { expected, got: b.base_offset() });
            }
            if b.partition_leader_epoch() < epoch {
                return Err(Error::EpochBack { offset: b.base_offset(), epoch: b.partition_leader_epoch(), latest: epoch });
            }
            if b.partition_leader_epoch() > epoch || starts.is_empty() {
                starts.push((b.partition_leader_epoch(), b.base_offset()));
            }
            epoch = b.partition_leader_epoch();
            expected = b.next_offset();
        }
        let headers: Vec<(Bytes, usize)> = batches
            .iter()
            .scan(0usize, |pos, b| {
                let at = *pos;
                *pos += b.size_bytes();
                Some((records.slice(at..at + batch::HEADER_BYTES), b.size_bytes()))
            })
            .collect();
        let span = expected - self.log_end_offset();
        drop(batches);
        self.maybe_roll(records.len() as u64, span, now_ms).await?;
        for (epoch, offset) in starts {
            self.note_epoch(epoch, offset).await?;
        }
        self.write_at_end(vec![records], &headers, now_ms).await?;
        assert_eq!(self.log_end_offset(), expected, "log end offset advanced by the appended records");
        self.check_invariants();
        Ok(())
    }
}
