//! Idempotent producers (KIP-98): per partition, the last few batches of each producer id, so a
//! retried batch is recognised and answered with the offsets it already has instead of being
//! stored twice, and a gap in the sequence is refused.
//!
//! Kafka's rules (ProducerStateManager): same epoch → the batch must repeat one of the last five
//! (a duplicate) or continue right after the last; a newer epoch starts again at sequence 0; an
//! older epoch is fenced. A producer id with no state here (new, or its state was not
//! rebuilt at start) is accepted at any sequence, as Kafka does once it has lost a producer's
//! state, so a restart never refuses a producer that did nothing wrong.
//!
//! Bounded: at most `PRODUCERS_MAX` ids per partition (the least recently used is dropped) and
//! five batches each; ids idle for `PRODUCER_EXPIRY_MS` are dropped (Kafka's
//! `producer.id.expiration.ms`).

use std::collections::{BTreeMap, VecDeque};

use crate::protocol::batch::BatchView;

/// Batches remembered per producer (Kafka's `NUM_BATCHES_TO_RETAIN`, which clients rely on:
/// at most five requests in flight per connection with idempotence).
pub const BATCHES_KEPT: usize = 5;
pub const PRODUCERS_MAX: usize = 10_000;
pub const PRODUCER_EXPIRY_MS: i64 = 24 * 3_600_000;

/// How many times this process started a partition with empty producer state because the
/// last segments could not be read back (the simulator uses it to excuse duplicates then).
pub static REBUILDS_ABANDONED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cached {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone)]
struct Entry {
    epoch: i16,
    batches: VecDeque<Cached>,
    last_append_wall_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not idempotent, a new producer, or the next batch in sequence.
    Append,
    /// A retry of a batch already in the log at these offsets.
    Duplicate { base_offset: i64, last_offset: i64 },
    /// A sequence gap (OUT_OF_ORDER_SEQUENCE_NUMBER).
    OutOfOrder { expected: i32, got: i32 },
    /// An older epoch than the producer's current one (INVALID_PRODUCER_EPOCH).
    StaleEpoch { current: i16, got: i16 },
}

#[derive(Debug, Clone, Default)]
pub struct ProducerStates {
    map: BTreeMap<i64, Entry>,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerStates {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// What to do with `batch` (one batch of a produce request).
    pub fn check(&self, batch: &BatchView<'_>) -> Verdict {
        let (pid, epoch, first) = (batch.producer_id(), batch.producer_epoch(), batch.base_sequence());
        if pid < 0 || first < 0 {
            return Verdict::Append;
        }
        let Some(e) = self.map.get(&pid) else { return Verdict::Append };
        #[cfg(feature = "planted-bugs")]
        if crate::runtime::planted("producer-dedup-off") {
            // Planted bug: every batch is new, so a retry is stored twice.
            return Verdict::Append;
        }
        if epoch < e.epoch {
            return Verdict::StaleEpoch { current: e.epoch, got: epoch };
        }
        if epoch > e.epoch {
            return if first == 0 { Verdict::Append } else { Verdict::OutOfOrder { expected: 0, got: first } };
        }
        let last = batch.last_sequence();
        if let Some(c) = e.batches.iter().find(|c| c.first_seq == first && c.last_seq == last) {
            return Verdict::Duplicate { base_offset: c.base_offset, last_offset: c.last_offset };
        }
        match e.batches.back() {
            Some(prev) if first != next_seq(prev.last_seq) => Verdict::OutOfOrder { expected: next_seq(prev.last_seq), got: first },
            _ => Verdict::Append,
        }
    }

    /// Remember `batch`, now in the log at its own base offset.
    pub fn record(&mut self, batch: &BatchView<'_>, wall_ms: i64) {
        let (pid, epoch, first) = (batch.producer_id(), batch.producer_epoch(), batch.base_sequence());
        if pid < 0 || first < 0 {
            return;
        }
        if !self.map.contains_key(&pid) && self.map.len() >= PRODUCERS_MAX {
            // Drop the least recently used producer.
            if let Some((&oldest, _)) = self.map.iter().min_by_key(|(id, e)| (e.last_append_wall_ms, **id)) {
                self.map.remove(&oldest);
            }
        }
        let e = self.map.entry(pid).or_insert(Entry { epoch, batches: VecDeque::new(), last_append_wall_ms: wall_ms });
        if epoch > e.epoch {
            e.epoch = epoch;
            e.batches.clear();
        }
        e.batches.push_back(Cached { first_seq: first, last_seq: batch.last_sequence(), base_offset: batch.base_offset(), last_offset: batch.last_offset() });
        while e.batches.len() > BATCHES_KEPT {
            e.batches.pop_front();
        }
        e.last_append_wall_ms = e.last_append_wall_ms.max(wall_ms);
    }

    /// Drop producers idle for longer than `PRODUCER_EXPIRY_MS`.
    pub fn expire(&mut self, now_wall_ms: i64) {
        self.map.retain(|_, e| now_wall_ms - e.last_append_wall_ms <= PRODUCER_EXPIRY_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::batch::{build_producer_batch, set_base_offset, validate_record_set};
    use bytes::Bytes;

    fn batch(pid: i64, epoch: i16, seq: i32, n: usize, base_offset: i64) -> Vec<u8> {
        let records: Vec<(Option<Bytes>, Option<Bytes>)> = (0..n).map(|i| (None, Some(Bytes::from(format!("r{i}"))))).collect();
        let mut b = build_producer_batch(0, 1000, pid, epoch, seq, &records).to_vec();
        set_base_offset(&mut b, base_offset);
        b
    }

    fn view(b: &[u8]) -> BatchView<'_> {
        validate_record_set(b).unwrap()[0]
    }

    #[test]
    fn duplicates_gaps_and_epochs() {
        let mut s = ProducerStates::default();
        let b0 = batch(7, 0, 0, 3, 10);
        assert_eq!(s.check(&view(&b0)), Verdict::Append);
        s.record(&view(&b0), 0);
        // The same batch again (a retry) is a duplicate at its original offsets.
        assert_eq!(s.check(&view(&batch(7, 0, 0, 3, 99))), Verdict::Duplicate { base_offset: 10, last_offset: 12 });
        // A gap is refused; the next in sequence is fine.
        assert_eq!(s.check(&view(&batch(7, 0, 5, 1, 99))), Verdict::OutOfOrder { expected: 3, got: 5 });
        let b1 = batch(7, 0, 3, 2, 13);
        assert_eq!(s.check(&view(&b1)), Verdict::Append);
        s.record(&view(&b1), 0);
        // A new epoch restarts at 0; an old epoch is fenced.
        assert_eq!(s.check(&view(&batch(7, 1, 4, 1, 99))), Verdict::OutOfOrder { expected: 0, got: 4 });
        let b2 = batch(7, 1, 0, 1, 15);
        assert_eq!(s.check(&view(&b2)), Verdict::Append);
        s.record(&view(&b2), 0);
        assert_eq!(s.check(&view(&batch(7, 0, 5, 1, 99))), Verdict::StaleEpoch { current: 1, got: 0 });
        // Non-idempotent batches and unknown producers are always appended.
        assert_eq!(s.check(&view(&batch(-1, -1, -1, 1, 99))), Verdict::Append);
        assert_eq!(s.check(&view(&batch(8, 0, 42, 1, 99))), Verdict::Append);
    }

    #[test]
    fn only_five_batches_are_remembered_and_idle_producers_expire() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            let b = batch(1, 0, i, 1, i64::from(i));
            s.record(&view(&b), 0);
        }
        assert_eq!(s.check(&view(&batch(1, 0, 6, 1, 0))), Verdict::Duplicate { base_offset: 6, last_offset: 6 });
        assert_eq!(s.check(&view(&batch(1, 0, 2, 1, 0))), Verdict::Duplicate { base_offset: 2, last_offset: 2 });
        // Sequence 1 is older than the five kept: not a known duplicate, and not next either.
        assert_eq!(s.check(&view(&batch(1, 0, 1, 1, 0))), Verdict::OutOfOrder { expected: 7, got: 1 });
        s.expire(PRODUCER_EXPIRY_MS + 1);
        assert!(s.is_empty());
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut s = ProducerStates::default();
        let b = batch(3, 0, i32::MAX - 1, 2, 0);
        assert_eq!(view(&b).last_sequence(), i32::MAX);
        s.record(&view(&b), 0);
        assert_eq!(s.check(&view(&batch(3, 0, 0, 1, 2))), Verdict::Append);
    }
}
