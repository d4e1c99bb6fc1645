//! Raft consensus as a sans-IO core: [`RaftCore`] is a plain struct stepped by messages
//! ([`RaftCore::step`]), logical ticks ([`RaftCore::tick`]), proposals and storage completions
//! ([`RaftCore::persisted`]). Every call appends what the shell must do to an [`Output`]: the
//! hard state to make durable, log writes to submit, messages to send, ranges of the log to
//! ship to a follower, and the new commit index. The core does no IO, reads no clock and owns
//! no global randomness (its election jitter comes from a seed the caller draws from the
//! seeded source and hands in with [`Options::jitter_seed`]).
//!
//! What it implements (Ongaro's thesis numbering):
//! - leader election with pre-vote (§9.6) and check-quorum (a leader that has not heard from a
//!   majority of voters for an election timeout steps down; a follower that heard from a leader
//!   within an election timeout ignores votes, so a rejoining node cannot disrupt a healthy
//!   leader), and leadership transfer (§3.10) through `TimeoutNow`;
//! - log replication with pipelining (up to [`Options::max_inflight_msgs`] appends in flight per
//!   follower, each of at most [`Options::max_entries_per_msg`] entries, so the bytes in flight
//!   per follower are bounded by their product times the largest entry), fast backtracking
//!   (the follower answers a mismatch with the term it has there and that term's first index,
//!   as Kafka's OffsetForLeaderEpoch) and truncation of a divergent uncommitted suffix;
//! - commitment only by counting replicas of an entry of the leader's own term (§3.6.2, the
//!   paper's Figure 8); a new leader appends a `LeaderChange` entry at once so its term can
//!   commit; `min_commit_replicas` raises the count (Kafka's `min.insync.replicas`);
//! - single-server membership changes (§4.1) with the known fix (a leader proposes a change only
//!   once an entry of its own term is committed and no change is pending), configurations that
//!   take effect when appended, non-voting learners that catch up before promotion, and a leader
//!   that steps down once a configuration without it is committed;
//! - read-index (§6.4): a read confirmed by a heartbeat round a majority answered after it
//!   was asked, so it sees every write committed before it;
//! - a log start: entries below it are gone (a snapshot for the metadata log, retention for a
//!   partition log) and a follower behind it is sent a [`Replicate::Snapshot`].
//!
//! Durability contract with the shell: `Output::hard_state` is durable before any message of
//! that output (or a later one) leaves the node; `Output::writes` are executed in order, and
//! the shell reports each one done with [`RaftCore::persisted`] (a write id covers every write
//! before it). A follower acknowledges entries only once they are durable; the leader counts its
//! own copy only once durable too.
//!
//! Invariants checked after every call (a failure panics: the node stops, it does not limp):
//! term never decreases; at most one vote per term; the commit index never decreases and never
//! passes the log end; a leader never truncates its own log; the durable index never passes
//! the log end; the log's term index is strictly increasing.

mod core;
mod log;
mod message;
mod progress;
#[cfg(test)]
mod tests;

pub use self::core::{Options, ProposeError, RaftCore, Role};
pub use self::log::{LogState, RaftLog};
pub use self::message::{span_of, AppendResult, Entry, LogWrite, Msg, Output, Payload, Replicate};

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A node of a Raft group (a broker id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct NodeId(pub u32);

/// A Raft term: Kafka's leader epoch for a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Term(pub u64);

/// A position in a Raft log. Entries start at 1; index 0 is "before the first entry".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct LogIndex(pub u64);

impl LogIndex {
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }
    pub fn prev(self) -> LogIndex {
        assert!(self.0 > 0, "no index before 0");
        LogIndex(self.0 - 1)
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What must survive a crash before the node says anything that depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HardState {
    pub term: Term,
    pub voted_for: Option<NodeId>,
}

/// A configuration: who votes and who only follows.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Membership {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
}

impl Membership {
    pub fn voters(ids: impl IntoIterator<Item = u32>) -> Membership {
        Membership { voters: ids.into_iter().map(NodeId).collect(), learners: BTreeSet::new() }
    }
    /// Every node that receives the log: voters and learners.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }
    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }
    /// Votes (or replicas) needed for a majority of the voters.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }
}

/// The start of a log: every entry up to and including `index` is gone from it (folded into a
/// snapshot, or removed by retention), `term` is the term of the entry at `index`, and
/// `membership` the configuration in force there.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub index: LogIndex,
    pub term: Term,
    pub membership: Membership,
}

/// Whether a planted bug (feature `planted-bugs`, `src/runtime/planted.rs`) is on. Always false
/// in a normal build.
#[inline]
pub fn planted(_name: &str) -> bool {
    #[cfg(feature = "planted-bugs")]
    {
        crate::runtime::planted(_name)
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        false
    }
}
