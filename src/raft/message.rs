//! What goes in and out of the core: messages between peers, log entries, and the [`Output`] a
//! call leaves for the shell.

use std::ops::Range;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{HardState, LogIndex, Membership, NodeId, SnapshotMeta, Term};

/// One log entry. The core sees only its term and, for Raft's own entries, its meaning; a data
/// entry's bytes (a record batch, a metadata record) pass through untouched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub term: Term,
    pub payload: Payload,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// The application's bytes.
    Data(Bytes),
    /// Appended by every new leader at the start of its term, so an entry of its term can
    /// commit (and carry the earlier terms' entries with it).
    LeaderChange,
    /// A new configuration; in force from the moment it is appended.
    Config(Membership),
    /// A record batch of `count` records: the one entry takes `count` consecutive indexes (a
    /// partition log's offsets: the batch at offsets `b..b + count` is the entry at indexes
    /// `b + 1..=b + count`, so a log's last index is its end offset and the commit index is
    /// the high watermark). The other payloads take one index each.
    Batch { count: u32, bytes: Bytes },
}

impl Entry {
    /// How many indexes the entry takes (at least 1).
    pub fn span(&self) -> u64 {
        match &self.payload {
            Payload::Batch { count, .. } => u64::from(*count).max(1),
            _ => 1,
        }
    }
}

/// The indexes `entries` take, one after another.
pub fn span_of(entries: &[Entry]) -> u64 {
    entries.iter().map(Entry::span).sum()
}

/// How a follower answers an append.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendResult {
    /// The follower's log matches the leader's up to `match_index`, and is durable that far.
    Ok { match_index: LogIndex },
    /// The entry at `rejected` (the append's previous index) did not match. `hint_term` is the
    /// term the follower has at `rejected` (None: its log ends before it) and `hint_index` the
    /// first index of that term in its log (or its log end + 1).
    Reject { rejected: LogIndex, hint_index: LogIndex, hint_term: Option<Term> },
}

/// Messages between the cores of one group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// Would you vote for me in `term` (our term + 1)? Changes nothing on the receiver.
    PreVote { term: Term, last_index: LogIndex, last_term: Term },
    PreVoteResponse { term: Term, granted: bool },
    /// `transfer`: sent on a leader's request (TimeoutNow), so peers that still hear from that
    /// leader answer it anyway.
    Vote { term: Term, last_index: LogIndex, last_term: Term, transfer: bool },
    VoteResponse { term: Term, granted: bool },
    Append { term: Term, prev_index: LogIndex, prev_term: Term, commit: LogIndex, entries: Vec<Entry> },
    AppendResponse { term: Term, result: AppendResult },
    /// `commit` is at most what the leader knows the receiver has. `round` numbers the
    /// leader's heartbeat rounds (read-index confirms leadership by a round's answers).
    Heartbeat { term: Term, commit: LogIndex, round: u64 },
    /// `round`: the round answered (0 when answering a message of another term).
    HeartbeatResponse { term: Term, round: u64 },
    /// Replace your log with one that starts after `meta` (snapshot data, possibly empty).
    Snapshot { term: Term, meta: SnapshotMeta, data: Bytes },
    /// Start an election now (leadership transfer).
    TimeoutNow { term: Term },
}

impl Msg {
    pub fn term(&self) -> Term {
        match self {
            Msg::PreVote { term, .. }
            | Msg::PreVoteResponse { term, .. }
            | Msg::Vote { term, .. }
            | Msg::VoteResponse { term, .. }
            | Msg::Append { term, .. }
            | Msg::AppendResponse { term, .. }
            | Msg::Heartbeat { term, .. }
            | Msg::HeartbeatResponse { term, .. }
            | Msg::Snapshot { term, .. }
            | Msg::TimeoutNow { term } => *term,
        }
    }
}

/// A log write for the shell, executed in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogWrite {
    /// Remove every entry from `truncate_from` on (if set), then append `entries` starting at
    /// `first_index`.
    Append { id: u64, truncate_from: Option<LogIndex>, first_index: LogIndex, entries: Vec<Entry> },
    /// Discard the whole log; it now starts after `meta` and holds the snapshot `data`.
    Restore { id: u64, meta: SnapshotMeta, data: Bytes },
}

impl LogWrite {
    pub fn id(&self) -> u64 {
        match self {
            LogWrite::Append { id, .. } | LogWrite::Restore { id, .. } => *id,
        }
    }
}

/// Something only the shell can send: it holds the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replicate {
    /// Send `Msg::Append { term, prev_index, prev_term, commit, entries }` with the entries of
    /// `range` read from the log. The core does not know where its multi-index entries
    /// ([`Payload::Batch`]) begin and end, so `prev_index` and the range's ends may fall inside
    /// one; the shell sends whole entries only: when `prev_index` is inside an entry it starts
    /// at that entry instead (`prev_index` then the index before it, `prev_term` that index's
    /// term), and when `range.end - 1` is inside one it sends all of it. Even an empty range
    /// then carries the entry `prev_index` is inside. (A follower's answer to a longer append
    /// is as good as to the one asked for; with one-index entries nothing changes.)
    Entries { to: NodeId, term: Term, prev_index: LogIndex, prev_term: Term, commit: LogIndex, range: Range<LogIndex> },
    /// Send `Msg::Snapshot { term, meta, data }` with the snapshot (or, for a partition log, no
    /// data: the follower starts its log at the leader's log start).
    Snapshot { to: NodeId, term: Term, meta: SnapshotMeta },
}

/// What a call asks the shell to do, in this order: make `hard_state` durable; submit
/// `writes` (in order); send `send` and `replicate`. A shell may let several calls accumulate
/// into one `Output` before executing it.
#[derive(Debug, Default)]
pub struct Output {
    pub hard_state: Option<HardState>,
    pub writes: Vec<LogWrite>,
    pub send: Vec<(NodeId, Msg)>,
    pub replicate: Vec<Replicate>,
    /// The commit index moved up to here.
    pub commit_index: Option<LogIndex>,
    /// Reads confirmed (read-index): (the caller's token, the index to serve at or after). A
    /// read that sees the state machine at or past that index sees every write committed
    /// before the read was asked for.
    pub reads_ready: Vec<(u64, LogIndex)>,
    /// Reads that will not be confirmed (this node stopped leading): retry on the leader.
    pub reads_failed: Vec<u64>,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.writes.is_empty()
            && self.send.is_empty()
            && self.replicate.is_empty()
            && self.commit_index.is_none()
            && self.reads_ready.is_empty()
            && self.reads_failed.is_empty()
    }
}
