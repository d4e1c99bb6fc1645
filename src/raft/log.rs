//! The core's view of its own log, without the bytes: where it starts, where it ends, the first
//! index of every term in it (Kafka's leader-epoch cache: term -> start offset) and the
//! configuration entries in it. The bytes live in the shell's storage.

use super::{Entry, LogIndex, Membership, Payload, SnapshotMeta, Term};

/// What a restarting node read back from its storage: enough to rebuild a [`RaftLog`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogState {
    /// Everything up to `snapshot.index` is gone from the log.
    pub snapshot: SnapshotMeta,
    /// (term, first index of that term) for every term with entries after the snapshot,
    /// strictly increasing in both.
    pub epochs: Vec<(Term, LogIndex)>,
    /// Configuration entries after the snapshot, in order.
    pub configs: Vec<(LogIndex, Membership)>,
    pub last_index: LogIndex,
}

impl LogState {
    /// The state of a log holding `entries` right after `snapshot`.
    pub fn from_entries(snapshot: SnapshotMeta, entries: &[Entry]) -> LogState {
        let mut log = RaftLog::new(LogState { last_index: snapshot.index, snapshot, ..LogState::default() });
        let first = log.last_index().next();
        log.append(first, entries);
        log.state
    }
}

#[derive(Clone, Debug)]
pub struct RaftLog {
    state: LogState,
}

impl RaftLog {
    pub fn new(state: LogState) -> RaftLog {
        let log = RaftLog { state };
        log.check();
        log
    }

    pub fn snapshot(&self) -> &SnapshotMeta {
        &self.state.snapshot
    }
    /// The first index still in the log.
    pub fn first_index(&self) -> LogIndex {
        self.state.snapshot.index.next()
    }
    pub fn last_index(&self) -> LogIndex {
        self.state.last_index
    }
    pub fn last_term(&self) -> Term {
        self.state.epochs.last().map(|e| e.0).unwrap_or(self.state.snapshot.term)
    }
    pub fn epochs(&self) -> &[(Term, LogIndex)] {
        &self.state.epochs
    }
    pub fn state(&self) -> &LogState {
        &self.state
    }

    /// The term of the entry at `index`; None when it is before the snapshot or after the end.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.state.snapshot.index {
            return Some(self.state.snapshot.term);
        }
        if index < self.state.snapshot.index || index > self.state.last_index {
            return None;
        }
        let at = self.state.epochs.partition_point(|e| e.1 <= index);
        assert!(at > 0, "index {index:?} after the snapshot lies in no epoch");
        Some(self.state.epochs[at - 1].0)
    }

    /// The first index of the epoch holding `index` (for a follower's rejection hint).
    pub fn epoch_start(&self, index: LogIndex) -> LogIndex {
        if index <= self.state.snapshot.index {
            return index;
        }
        let at = self.state.epochs.partition_point(|e| e.1 <= index);
        assert!(at > 0);
        self.state.epochs[at - 1].1
    }

    /// The end (last index + 1) of the largest term <= `term` in this log, as Kafka's
    /// OffsetForLeaderEpoch; None if every entry still here has a larger term.
    pub fn end_of_term(&self, term: Term) -> Option<LogIndex> {
        let at = self.state.epochs.partition_point(|e| e.0 <= term);
        if at == 0 {
            return (self.state.snapshot.term <= term).then(|| self.first_index());
        }
        Some(self.state.epochs.get(at).map(|e| e.1).unwrap_or(self.state.last_index.next()))
    }

    /// The configuration in force: the latest one in the log, or the snapshot's.
    pub fn membership(&self) -> &Membership {
        self.state.configs.last().map(|c| &c.1).unwrap_or(&self.state.snapshot.membership)
    }
    /// The index of the latest configuration entry (the snapshot's index if none is in the log).
    pub fn membership_index(&self) -> LogIndex {
        self.state.configs.last().map(|c| c.0).unwrap_or(self.state.snapshot.index)
    }

    /// Append `entries` at `first`, which must be the log end + 1.
    pub fn append(&mut self, first: LogIndex, entries: &[Entry]) {
        assert_eq!(first, self.state.last_index.next(), "append must continue the log");
        let mut index = first;
        for entry in entries {
            assert!(entry.term >= self.last_term(), "terms never go back along a log");
            if self.state.epochs.last().map(|e| e.0) != Some(entry.term) {
                self.state.epochs.push((entry.term, index));
            }
            if let Payload::Config(m) = &entry.payload {
                self.state.configs.push((index, m.clone()));
            }
            // A batch takes `span` indexes: its first is `index`, its last the log's new end.
            self.state.last_index = LogIndex(index.0 + entry.span() - 1);
            index = self.state.last_index.next();
        }
        self.check();
    }

    /// Drop every entry from `from` on.
    pub fn truncate(&mut self, from: LogIndex) {
        assert!(from > self.state.snapshot.index, "truncate below the log start");
        if from > self.state.last_index {
            return;
        }
        self.state.epochs.retain(|e| e.1 < from);
        self.state.configs.retain(|c| c.0 < from);
        self.state.last_index = from.prev();
        self.check();
    }

    /// Move the log start: entries up to `index` are gone.
    pub fn compact(&mut self, index: LogIndex) {
        if index <= self.state.snapshot.index {
            return;
        }
        assert!(index <= self.state.last_index, "compact past the log end");
        let term = self.term_at(index).expect("index is in the log");
        let membership = self
            .state
            .configs
            .iter()
            .rev()
            .find(|c| c.0 <= index)
            .map(|c| c.1.clone())
            .unwrap_or_else(|| self.state.snapshot.membership.clone());
        // Keep the epoch holding index + 1 (re-based to index + 1) and every later one.
        let at = self.state.epochs.partition_point(|e| e.1 <= index.next());
        let mut epochs: Vec<(Term, LogIndex)> = Vec::new();
        if index < self.state.last_index {
            let holding = self.state.epochs[at - 1];
            epochs.push((holding.0, index.next()));
            epochs.extend_from_slice(&self.state.epochs[at..]);
        }
        self.state.epochs = epochs;
        self.state.configs.retain(|c| c.0 > index);
        self.state.snapshot = SnapshotMeta { index, term, membership };
        self.check();
    }

    /// Replace the whole log by a snapshot.
    pub fn restore(&mut self, meta: SnapshotMeta) {
        self.state = LogState { last_index: meta.index, snapshot: meta, epochs: Vec::new(), configs: Vec::new() };
        self.check();
    }

    fn check(&self) {
        let s = &self.state;
        assert!(s.last_index >= s.snapshot.index, "log ends before its start: {s:?}");
        assert_eq!(s.epochs.is_empty(), s.last_index == s.snapshot.index, "epochs cover exactly the entries: {s:?}");
        if let Some(first) = s.epochs.first() {
            assert_eq!(first.1, s.snapshot.index.next(), "first epoch starts at the log start: {s:?}");
            assert!(first.0 >= s.snapshot.term, "epoch term below the snapshot's: {s:?}");
        }
        for w in s.epochs.windows(2) {
            assert!(w[0].0 < w[1].0 && w[0].1 < w[1].1, "epochs strictly increasing: {s:?}");
        }
        if let Some(last) = s.epochs.last() {
            assert!(last.1 <= s.last_index);
        }
        for w in s.configs.windows(2) {
            assert!(w[0].0 < w[1].0);
        }
        if let Some(c) = s.configs.first() {
            assert!(c.0 > s.snapshot.index && s.configs.last().unwrap().0 <= s.last_index);
        }
    }
}
