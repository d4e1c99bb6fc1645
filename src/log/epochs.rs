//! The leader-epoch cache: for each leader epoch (the Raft term) that wrote to this log, the
//! offset of its first batch. It answers OffsetForLeaderEpoch (the end offset of an epoch, as a
//! follower or a KIP-320 client asks after a leader change) and tells a follower where its log
//! diverges from its leader's, which drives `PartitionLog::truncate_to`.
//!
//! Kafka keeps the same map in `leader-epoch-checkpoint`; strand writes that file in Kafka's
//! text form (a version line `0`, a count line, then one `epoch start_offset` line per epoch)
//! followed by one more line, `crc32c <8 hex digits>` over the bytes before it, so a damaged
//! file is noticed (it is then rebuilt from the batches' own `partition_leader_epoch`).
//!
//! Invariants (asserted): epochs strictly increase, and so do their start offsets.
//!
//! Durability order, which keeps the file a superset of what the log holds: an entry is
//! written (and synced) before the first batch of its epoch is appended, and removed before
//! the batches it covers are cut. After a crash the file may name an epoch whose batches never
//! reached the disk; `truncate_from_end(log_end)` at open drops it.

use std::fmt::Write as _;

/// Kafka's `UNDEFINED_EPOCH` / `UNDEFINED_EPOCH_OFFSET`.
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<EpochEntry>,
}

impl EpochCache {
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Whether appending a batch of `epoch` at `offset` needs a new entry (so the caller can
    /// persist it before the batch is written). An epoch below the latest cannot be appended:
    /// `Err` with the latest.
    pub fn needs_entry(&self, epoch: i32, offset: i64) -> Result<bool, EpochEntry> {
        match self.latest() {
            None => Ok(true),
            Some(l) if epoch > l.epoch => {
                assert!(offset >= l.start_offset, "epoch {epoch} would start at {offset}, below epoch {} at {}", l.epoch, l.start_offset);
                Ok(true)
            }
            Some(l) if epoch == l.epoch => Ok(false),
            Some(l) => Err(l),
        }
    }

    /// Record that `epoch` starts at `start_offset`. A new epoch at the start offset of the
    /// latest one replaces it (that epoch wrote nothing).
    pub fn assign(&mut self, epoch: i32, start_offset: i64) {
        assert!(epoch >= 0, "epoch {epoch} is negative");
        if let Some(l) = self.entries.last() {
            if l.epoch == epoch {
                return;
            }
            assert!(epoch > l.epoch, "epoch {epoch} assigned after {}", l.epoch);
            assert!(start_offset >= l.start_offset, "epoch {epoch} at {start_offset} starts below epoch {} at {}", l.epoch, l.start_offset);
            if l.start_offset == start_offset {
                self.entries.pop();
            }
        }
        self.entries.push(EpochEntry { epoch, start_offset });
        self.check();
    }

    /// The log now ends at `end_offset`: epochs that start at or past it wrote nothing left.
    pub fn truncate_from_end(&mut self, end_offset: i64) {
        self.entries.retain(|e| e.start_offset < end_offset);
    }

    /// The log now starts at `start_offset`: epochs wholly below it go, and the one holding it
    /// starts there (as Kafka's `truncateFromStart`).
    pub fn truncate_from_start(&mut self, start_offset: i64) {
        let below = self.entries.partition_point(|e| e.start_offset <= start_offset);
        if below == 0 {
            return;
        }
        let mut holding = self.entries[below - 1];
        holding.start_offset = start_offset;
        self.entries.drain(..below);
        self.entries.insert(0, holding);
        self.check();
    }

    /// OffsetForLeaderEpoch, as Kafka's `LeaderEpochFileCache.endOffsetFor`: the largest epoch
    /// at or below `requested` and the offset where the next epoch starts (or `log_end` when it
    /// is the latest). An epoch above the latest, or an empty cache: `(UNDEFINED_EPOCH,
    /// UNDEFINED_EPOCH_OFFSET)`. An epoch below the first: `(requested, first start)`.
    pub fn end_offset_for(&self, requested: i32, log_end: i64) -> (i32, i64) {
        if requested == UNDEFINED_EPOCH {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        }
        match self.latest() {
            Some(l) if l.epoch == requested => return (requested, log_end),
            None => return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET),
            _ => {}
        }
        let higher = self.entries.partition_point(|e| e.epoch <= requested);
        let Some(next) = self.entries.get(higher) else { return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET) };
        match higher.checked_sub(1).map(|i| self.entries[i]) {
            None => (requested, next.start_offset),
            Some(floor) => (floor.epoch, next.start_offset),
        }
    }

    /// The epoch of the batch holding `offset` (the latest entry starting at or before it).
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        let i = self.entries.partition_point(|e| e.start_offset <= offset);
        i.checked_sub(1).map(|i| self.entries[i].epoch)
    }

    fn check(&self) {
        for w in self.entries.windows(2) {
            assert!(w[0].epoch < w[1].epoch, "epochs increase: {:?}", self.entries);
            assert!(w[0].start_offset < w[1].start_offset, "epoch start offsets increase: {:?}", self.entries);
        }
    }

    /// The checkpoint file's bytes (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut s = format!("0\n{}\n", self.entries.len());
        for e in &self.entries {
            let _ = writeln!(s, "{} {}", e.epoch, e.start_offset);
        }
        let crc = crc32c::crc32c(s.as_bytes());
        let _ = writeln!(s, "crc32c {crc:08x}");
        s.into_bytes()
    }

    /// Parse a checkpoint; `None` if it is not exactly what `encode` writes (a damaged file).
    pub fn decode(bytes: &[u8]) -> Option<EpochCache> {
        let text = std::str::from_utf8(bytes).ok()?;
        let body_len = text.trim_end_matches('\n').rfind('\n')? + 1;
        let (body, tail) = text.split_at(body_len);
        let crc = u32::from_str_radix(tail.strip_prefix("crc32c ")?.strip_suffix('\n')?, 16).ok()?;
        if crc32c::crc32c(body.as_bytes()) != crc {
            return None;
        }
        let mut lines = body.lines();
        if lines.next()? != "0" {
            return None;
        }
        let count: usize = lines.next()?.parse().ok()?;
        let mut cache = EpochCache::default();
        for line in lines.by_ref().take(count) {
            let (epoch, offset) = line.split_once(' ')?;
            let entry = EpochEntry { epoch: epoch.parse().ok()?, start_offset: offset.parse().ok()? };
            let ordered = cache.entries.last().is_none_or(|l| entry.epoch > l.epoch && entry.start_offset > l.start_offset);
            if entry.epoch < 0 || entry.start_offset < 0 || !ordered {
                return None;
            }
            cache.entries.push(entry);
        }
        (cache.entries.len() == count && lines.next().is_none()).then_some(cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> EpochCache {
        let mut c = EpochCache::default();
        for &(epoch, start) in entries {
            c.assign(epoch, start);
        }
        c
    }

    #[test]
    fn end_offset_for_matches_kafkas_rules() {
        let c = cache(&[(1, 0), (3, 10), (5, 25)]);
        assert_eq!(c.end_offset_for(5, 40), (5, 40), "the latest epoch ends at the log end");
        assert_eq!(c.end_offset_for(3, 40), (3, 25));
        assert_eq!(c.end_offset_for(4, 40), (3, 25), "an epoch with no entry: the one below it");
        assert_eq!(c.end_offset_for(1, 40), (1, 10));
        assert_eq!(c.end_offset_for(0, 40), (0, 0), "below the first epoch: the first start");
        assert_eq!(c.end_offset_for(6, 40), (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET), "above the latest");
        assert_eq!(c.end_offset_for(UNDEFINED_EPOCH, 40), (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET));
        assert_eq!(EpochCache::default().end_offset_for(0, 0), (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET));
        assert_eq!((c.epoch_for_offset(0), c.epoch_for_offset(24), c.epoch_for_offset(25), c.epoch_for_offset(99)), (Some(1), Some(3), Some(5), Some(5)));
        assert_eq!(cache(&[(2, 10)]).epoch_for_offset(9), None);
    }

    #[test]
    fn truncation_from_either_end() {
        let mut c = cache(&[(1, 0), (3, 10), (5, 25)]);
        c.truncate_from_end(25);
        assert_eq!(c, cache(&[(1, 0), (3, 10)]));
        c.truncate_from_end(11);
        assert_eq!(c, cache(&[(1, 0), (3, 10)]), "epoch 3 still has offset 10");
        let mut d = cache(&[(1, 0), (3, 10), (5, 25)]);
        d.truncate_from_start(12);
        assert_eq!(d, cache(&[(3, 12), (5, 25)]));
        d.truncate_from_start(25);
        assert_eq!(d, cache(&[(5, 25)]));
        d.truncate_from_start(3);
        assert_eq!(d, cache(&[(5, 25)]), "a start below the first entry changes nothing");
    }

    #[test]
    fn an_epoch_that_wrote_nothing_is_replaced() {
        let c = cache(&[(1, 0), (2, 7), (4, 7)]);
        assert_eq!(c.entries(), &[EpochEntry { epoch: 1, start_offset: 0 }, EpochEntry { epoch: 4, start_offset: 7 }]);
        assert_eq!(c.needs_entry(4, 9), Ok(false));
        assert_eq!(c.needs_entry(5, 9), Ok(true));
        assert_eq!(c.needs_entry(3, 9), Err(EpochEntry { epoch: 4, start_offset: 7 }));
    }

    #[test]
    fn checkpoint_round_trips_and_damage_is_noticed() {
        let c = cache(&[(0, 0), (2, 17), (9, 1000)]);
        let bytes = c.encode();
        assert_eq!(EpochCache::decode(&bytes), Some(c.clone()));
        assert!(String::from_utf8(bytes.clone()).unwrap().starts_with("0\n3\n0 0\n2 17\n9 1000\ncrc32c "));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x04;
            assert_ne!(EpochCache::decode(&bad), Some(c.clone()), "a flipped bit at byte {i} went unnoticed");
        }
        assert_eq!(EpochCache::decode(&bytes[..bytes.len() - 3]), None);
        assert_eq!(EpochCache::decode(b""), None);
        assert_eq!(EpochCache::decode(&EpochCache::default().encode()), Some(EpochCache::default()));
    }
}
