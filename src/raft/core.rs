//! [`RaftCore`]: one member of one Raft group, stepped by its shell. See the module docs.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;

use bytes::Bytes;

use super::log::{LogState, RaftLog};
use super::message::{span_of, AppendResult, Entry, LogWrite, Msg, Output, Payload, Replicate};
use super::progress::{Progress, ProgressState};
use super::{planted, HardState, LogIndex, Membership, NodeId, SnapshotMeta, Term};

/// Settings of one core. Times are in ticks; the shell decides how long a tick is.
#[derive(Clone, Debug)]
pub struct Options {
    /// A follower that hears from no leader for a random time in [this, 2 x this) campaigns;
    /// a leader that has not heard from a majority for this long steps down (check-quorum).
    pub election_timeout_ticks: u32,
    pub heartbeat_interval_ticks: u32,
    pub pre_vote: bool,
    pub check_quorum: bool,
    /// Appends in flight per follower.
    pub max_inflight_msgs: usize,
    /// Entries per append.
    pub max_entries_per_msg: u64,
    /// Replicas (the leader included) that must hold an entry before it commits, if more than a
    /// majority of the voters (Kafka's `min.insync.replicas`; capped at the number of voters).
    pub min_commit_replicas: usize,
    /// A learner is promoted only if it is at most this many entries behind the commit index.
    pub promote_max_lag: u64,
    /// Seeds the core's election jitter; the shell draws it from its seeded source.
    pub jitter_seed: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 1,
            pre_vote: true,
            check_quorum: true,
            max_inflight_msgs: 8,
            max_entries_per_msg: 64,
            min_commit_replicas: 1,
            promote_max_lag: 0,
            jitter_seed: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// Why a proposal, configuration change or transfer was refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("not the leader (the leader is {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("a leadership transfer is in progress")]
    Transferring,
    #[error("a configuration change is not committed yet")]
    ConfigPending,
    #[error("the leader has not committed an entry of its own term yet")]
    NotReady,
    #[error("invalid configuration change: {0}")]
    InvalidConfig(String),
    #[error("learner {0} is not caught up with the leader")]
    LearnerBehind(NodeId),
}

/// A write submitted to the shell and not yet reported durable.
#[derive(Clone, Debug)]
struct PendingWrite {
    id: u64,
    /// The log end once this write is done.
    end: LogIndex,
    /// Entries from here on are (or will be) cut by this write.
    truncate_from: Option<LogIndex>,
}

pub struct RaftCore {
    id: NodeId,
    opts: Options,
    term: Term,
    voted_for: Option<NodeId>,
    role: Role,
    leader: Option<NodeId>,
    log: RaftLog,
    commit: LogIndex,
    /// Our own log is durable (and is what the core thinks it is) up to here.
    durable: LogIndex,
    writes: VecDeque<PendingWrite>,
    next_write_id: u64,
    votes: BTreeMap<NodeId, bool>,
    progress: BTreeMap<NodeId, Progress>,
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    randomized_timeout: u32,
    /// Leader: ticks since it took office (check-quorum's clock).
    leader_ticks: u64,
    /// Leader: the latest heartbeat round started, and reads waiting for a round's answers:
    /// (token, read index, round).
    read_round: u64,
    pending_reads: VecDeque<(u64, LogIndex, u64)>,
    /// Leadership transfer target and ticks since it began.
    transfer: Option<(NodeId, u32)>,
    /// Follower: the leader is owed an acknowledgement up to here once it is durable.
    ack_owed: Option<(NodeId, LogIndex)>,
    /// Follower: the highest match index acknowledged to the leader of this term.
    acked: LogIndex,
    rng: u64,
    /// Invariant bookkeeping.
    checked: (Term, Option<NodeId>, LogIndex),
}

impl RaftCore {
    /// A core for node `id` over a log that storage read back as `log` (all of it durable), with
    /// the durable hard state `hard`. `commit_hint` is an index known to be committed (a
    /// checkpoint; it is capped at the log end), or 0.
    pub fn new(id: NodeId, opts: Options, hard: HardState, log: LogState, commit_hint: LogIndex) -> RaftCore {
        assert!(opts.election_timeout_ticks > opts.heartbeat_interval_ticks && opts.heartbeat_interval_ticks > 0);
        assert!(opts.max_inflight_msgs > 0 && opts.max_entries_per_msg > 0);
        let log = RaftLog::new(log);
        let commit = log.snapshot().index.max(commit_hint.min(log.last_index()));
        let durable = log.last_index();
        let mut core = RaftCore {
            id,
            rng: opts.jitter_seed ^ 0x9e37_79b9_7f4a_7c15 ^ (id.0 as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9),
            opts,
            term: hard.term,
            voted_for: hard.voted_for,
            role: Role::Follower,
            leader: None,
            log,
            commit,
            durable,
            writes: VecDeque::new(),
            next_write_id: 1,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_timeout: 0,
            leader_ticks: 0,
            read_round: 0,
            pending_reads: VecDeque::new(),
            transfer: None,
            ack_owed: None,
            acked: LogIndex(0),
            checked: (hard.term, hard.voted_for, commit),
        };
        core.reset_randomized_timeout();
        core.check_invariants();
        core
    }

    // ---- accessors -------------------------------------------------------------------------

    pub fn id(&self) -> NodeId {
        self.id
    }
    pub fn term(&self) -> Term {
        self.term
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn hard_state(&self) -> HardState {
        HardState { term: self.term, voted_for: self.voted_for }
    }
    pub fn commit_index(&self) -> LogIndex {
        self.commit
    }
    pub fn durable_index(&self) -> LogIndex {
        self.durable
    }
    pub fn last_index(&self) -> LogIndex {
        self.log.last_index()
    }
    pub fn log(&self) -> &RaftLog {
        &self.log
    }
    pub fn options(&self) -> &Options {
        &self.opts
    }

    pub fn membership(&self) -> &Membership {
        self.log.membership()
    }
    /// A leader whose commit index is already an entry of its own term: only then is its
    /// commit index at least every earlier leader's (a partition's high watermark never moves
    /// back when the shell publishes only this).
    pub fn leader_ready(&self) -> bool {
        self.role == Role::Leader && self.log.term_at(self.commit) == Some(self.term)
    }
    /// Leader: ticks since `node` last answered (0 for ourselves); `None` off the leader or for
    /// a node that is not a member. A leader that just took office counts from then.
    pub fn heard_ticks_ago(&self, node: NodeId) -> Option<u64> {
        if self.role != Role::Leader {
            return None;
        }
        if node == self.id {
            return Some(0);
        }
        self.progress.get(&node).map(|p| self.leader_ticks.saturating_sub(p.last_heard_tick))
    }

    /// The leader's known match index of `node`.
    pub fn match_index(&self, node: NodeId) -> Option<LogIndex> {
        if node == self.id {
            return Some(self.durable);
        }
        self.progress.get(&node).map(|p| p.match_index)
    }

    // ---- inputs ----------------------------------------------------------------------------

    /// One logical tick.
    pub fn tick(&mut self, out: &mut Output) {
        if self.role == Role::Leader {
            self.tick_leader(out);
        } else {
            self.election_elapsed = self.election_elapsed.saturating_add(1);
            if self.election_elapsed >= self.randomized_timeout && self.promotable() {
                self.start_election(false, out);
            }
        }
        self.check_invariants();
    }

    /// Append application data (leader only). Returns the indexes the entries took.
    pub fn propose(&mut self, data: Vec<Bytes>, out: &mut Output) -> Result<Range<LogIndex>, ProposeError> {
        self.propose_payloads(data.into_iter().map(Payload::Data).collect(), out)
    }

    /// Append record batches (leader only), each `(records, bytes)` taking `records` indexes
    /// (a partition's offsets). Returns the indexes they took.
    pub fn propose_batches(&mut self, batches: Vec<(u32, Bytes)>, out: &mut Output) -> Result<Range<LogIndex>, ProposeError> {
        assert!(batches.iter().all(|b| b.0 > 0), "a batch holds at least one record");
        self.propose_payloads(batches.into_iter().map(|(count, bytes)| Payload::Batch { count, bytes }).collect(), out)
    }

    fn propose_payloads(&mut self, payloads: Vec<Payload>, out: &mut Output) -> Result<Range<LogIndex>, ProposeError> {
        self.check_can_propose()?;
        let first = self.log.last_index().next();
        let entries: Vec<Entry> = payloads.into_iter().map(|payload| Entry { term: self.term, payload }).collect();
        self.append_local(entries, out);
        self.broadcast_append(out);
        self.check_invariants();
        Ok(first..self.log.last_index().next())
    }

    /// Change the configuration by at most one voter (leader only): add a caught-up learner as
    /// a voter, remove a voter, add or remove learners.
    pub fn propose_membership(&mut self, new: Membership, out: &mut Output) -> Result<LogIndex, ProposeError> {
        self.check_can_propose()?;
        if self.log.membership_index() > self.commit {
            return Err(ProposeError::ConfigPending);
        }
        // The fix for single-server changes: never change the configuration before an entry
        // of this term is committed (Ongaro, raft-dev 2015).
        if self.log.term_at(self.commit) != Some(self.term) {
            return Err(ProposeError::NotReady);
        }
        let old = self.log.membership().clone();
        if new.voters.is_empty() {
            return Err(ProposeError::InvalidConfig("no voters".into()));
        }
        if let Some(both) = new.voters.intersection(&new.learners).next() {
            return Err(ProposeError::InvalidConfig(format!("node {both} is both voter and learner")));
        }
        let added: Vec<NodeId> = new.voters.difference(&old.voters).copied().collect();
        let removed = old.voters.difference(&new.voters).count();
        if added.len() + removed > 1 {
            return Err(ProposeError::InvalidConfig("more than one voter changes at once".into()));
        }
        for v in &added {
            if !old.learners.contains(v) {
                return Err(ProposeError::InvalidConfig(format!("add node {v} as a learner first")));
            }
            let matched = self.progress.get(v).map(|p| p.match_index).unwrap_or_default();
            if matched.0 + self.opts.promote_max_lag < self.commit.0 {
                return Err(ProposeError::LearnerBehind(*v));
            }
        }
        let index = self.log.last_index().next();
        self.append_local(vec![Entry { term: self.term, payload: Payload::Config(new) }], out);
        self.broadcast_append(out);
        self.check_invariants();
        Ok(index)
    }

    /// Hand leadership to voter `to`: stop taking proposals, bring it up to date, tell it to
    /// campaign. Abandoned after an election timeout.
    pub fn transfer_leadership(&mut self, to: NodeId, out: &mut Output) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        if to == self.id || !self.log.membership().voters.contains(&to) {
            return Err(ProposeError::InvalidConfig(format!("node {to} is not another voter")));
        }
        self.transfer = Some((to, 0));
        if self.progress[&to].match_index == self.log.last_index() {
            out.send.push((to, Msg::TimeoutNow { term: self.term }));
        } else {
            while self.send_append(to, out) {}
        }
        self.check_invariants();
        Ok(())
    }

    /// Read-index (Ongaro §6.4): a linearizable read without writing to the log. The leader
    /// notes its commit index, starts a heartbeat round, and once a majority of voters
    /// answered that round (so no other leader can have been elected before the read arrived)
    /// puts `(token, index)` in `Output::reads_ready`. Needs `leader_ready()`: until an entry
    /// of its term commits, a new leader's commit index may lag what earlier leaders committed.
    pub fn read_index(&mut self, token: u64, out: &mut Output) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        if !self.leader_ready() {
            return Err(ProposeError::NotReady);
        }
        if planted("raft-read-without-quorum") {
            out.reads_ready.push((token, self.commit));
            return Ok(());
        }
        self.read_round += 1;
        self.pending_reads.push_back((token, self.commit, self.read_round));
        self.broadcast_heartbeat(out);
        self.confirm_reads(out);
        self.check_invariants();
        Ok(())
    }

    /// The shell finished write `id` (and so every write before it).
    pub fn persisted(&mut self, id: u64, out: &mut Output) {
        let mut end = None;
        while self.writes.front().is_some_and(|w| w.id <= id) {
            end = Some(self.writes.pop_front().expect("front").end);
        }
        let Some(end) = end else { return };
        let mut durable = end;
        for later in &self.writes {
            if let Some(from) = later.truncate_from {
                durable = durable.min(LogIndex(from.0.saturating_sub(1)));
            }
        }
        self.durable = durable.min(self.log.last_index());
        if self.role == Role::Leader {
            self.maybe_commit(out);
        } else if let Some((leader, owed)) = self.ack_owed {
            // Everything up to `owed` matches the leader, so a durable prefix of it may be
            // acknowledged at once: the leader can commit without waiting for the whole window.
            let upto = self.durable.min(owed);
            if upto > self.acked {
                self.acked = upto;
                out.send.push((leader, Msg::AppendResponse { term: self.term, result: AppendResult::Ok { match_index: upto } }));
            }
            if self.durable >= owed {
                self.ack_owed = None;
            }
        }
        self.check_invariants();
    }

    /// The shell holds a snapshot (or, for a partition log, retention removed entries) up to
    /// `index`: the log now starts after it. `index` must be committed and durable here.
    pub fn compact(&mut self, index: LogIndex) {
        assert!(index <= self.commit && index <= self.durable, "compact {index:?} past commit {:?} / durable {:?}", self.commit, self.durable);
        self.log.compact(index);
        self.check_invariants();
    }

    /// A message from a peer.
    pub fn step(&mut self, from: NodeId, msg: Msg, out: &mut Output) {
        assert_ne!(from, self.id, "a message from ourselves");
        let term = msg.term();
        if term > self.term {
            match &msg {
                Msg::PreVote { .. } => {}
                Msg::PreVoteResponse { granted: true, .. } => {}
                // We hear from a leader: a vote now would only disrupt it (check-quorum lease).
                Msg::Vote { transfer: false, .. } if self.in_lease() => return,
                Msg::Append { .. } | Msg::Heartbeat { .. } | Msg::Snapshot { .. } => self.become_follower(term, Some(from), out),
                _ => self.become_follower(term, None, out),
            }
        } else if term < self.term {
            let stale_leader = matches!(msg, Msg::Append { .. } | Msg::Heartbeat { .. } | Msg::Snapshot { .. });
            if !(stale_leader && planted("raft-accept-stale-append")) {
                if stale_leader {
                    // Tell the old leader our term, so it steps down.
                    out.send.push((from, Msg::HeartbeatResponse { term: self.term, round: 0 }));
                } else if matches!(msg, Msg::PreVote { .. }) {
                    out.send.push((from, Msg::PreVoteResponse { term: self.term, granted: false }));
                }
                self.check_invariants();
                return;
            }
        }
        match msg {
            Msg::PreVote { term, last_index, last_term } => {
                let granted = term > self.term
                    && !self.in_lease()
                    && self.is_voter(from)
                    && self.log_is_behind_or_equal(last_index, last_term);
                let term = if granted { term } else { self.term };
                out.send.push((from, Msg::PreVoteResponse { term, granted }));
            }
            Msg::Vote { last_index, last_term, .. } => self.handle_vote(from, last_index, last_term, out),
            Msg::PreVoteResponse { granted, .. } => {
                if self.role == Role::PreCandidate {
                    self.votes.insert(from, granted);
                    match self.tally() {
                        Some(true) => self.campaign(false, out),
                        Some(false) => self.become_follower(self.term, None, out),
                        None => {}
                    }
                }
            }
            Msg::VoteResponse { term, granted } => {
                if self.role == Role::Candidate && term == self.term {
                    self.votes.insert(from, granted);
                    match self.tally() {
                        Some(true) => self.become_leader(out),
                        Some(false) => self.become_follower(self.term, None, out),
                        None => {}
                    }
                }
            }
            Msg::Append { prev_index, prev_term, commit, entries, .. } => {
                self.handle_append(from, prev_index, prev_term, commit, entries, out)
            }
            Msg::Heartbeat { commit, round, .. } => {
                self.follow(from, out);
                let commit = commit.min(self.log.last_index());
                self.advance_commit(commit, out);
                out.send.push((from, Msg::HeartbeatResponse { term: self.term, round }));
            }
            Msg::Snapshot { meta, data, .. } => self.handle_snapshot(from, meta, data, out),
            Msg::AppendResponse { result, .. } => {
                if self.role == Role::Leader {
                    self.handle_append_response(from, result, out);
                }
            }
            Msg::HeartbeatResponse { round, .. } => {
                if self.role == Role::Leader {
                    let ticks = self.leader_ticks;
                    let last = self.log.last_index();
                    if let Some(pr) = self.progress.get_mut(&from) {
                        pr.last_heard_tick = ticks;
                        pr.heartbeat_round = pr.heartbeat_round.max(round);
                        // Lost appends: free a slot so the pipeline cannot stall for good.
                        if pr.state == ProgressState::Replicate && pr.inflight.len() >= self.opts.max_inflight_msgs {
                            pr.inflight.pop_front();
                        }
                        if pr.match_index < last {
                            let mut sent = false;
                            while self.send_append(from, out) {
                                sent = true;
                            }
                            if !sent {
                                self.send_empty_append(from, out);
                            }
                        }
                    }
                    self.confirm_reads(out);
                }
            }
            Msg::TimeoutNow { .. } => {
                if self.role != Role::Leader && self.promotable() {
                    self.start_election(true, out);
                }
            }
        }
        self.check_invariants();
    }

    // ---- elections -------------------------------------------------------------------------

    fn promotable(&self) -> bool {
        self.log.membership().voters.contains(&self.id)
    }

    fn is_voter(&self, node: NodeId) -> bool {
        self.log.membership().voters.contains(&node)
    }

    /// Whether we heard from a leader within an election timeout (check-quorum's lease).
    fn in_lease(&self) -> bool {
        self.opts.check_quorum && self.leader.is_some() && self.election_elapsed < self.opts.election_timeout_ticks
    }

    /// §5.4.1: a candidate's log at least as up to date as ours.
    fn log_is_behind_or_equal(&self, last_index: LogIndex, last_term: Term) -> bool {
        let (our_index, our_term) = (self.log.last_index(), self.log.last_term());
        last_term > our_term || (last_term == our_term && last_index >= our_index)
    }

    fn reset_randomized_timeout(&mut self) {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let t = self.opts.election_timeout_ticks;
        self.randomized_timeout = t + (z % t as u64) as u32;
    }

    fn start_election(&mut self, transfer: bool, out: &mut Output) {
        if self.opts.pre_vote && !transfer {
            self.role = Role::PreCandidate;
            self.leader = None;
            self.election_elapsed = 0;
            self.reset_randomized_timeout();
            self.votes.clear();
            self.votes.insert(self.id, true);
            if self.tally() == Some(true) {
                return self.campaign(false, out);
            }
            let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
            let term = Term(self.term.0 + 1);
            for v in self.other_voters() {
                out.send.push((v, Msg::PreVote { term, last_index, last_term }));
            }
        } else {
            self.campaign(transfer, out);
        }
    }

    fn campaign(&mut self, transfer: bool, out: &mut Output) {
        self.term = Term(self.term.0 + 1);
        self.voted_for = Some(self.id);
        self.role = Role::Candidate;
        self.leader = None;
        self.election_elapsed = 0;
        self.reset_randomized_timeout();
        self.progress.clear();
        self.ack_owed = None;
        self.save_hard_state(out);
        self.votes.clear();
        self.votes.insert(self.id, true);
        if self.tally() == Some(true) {
            return self.become_leader(out);
        }
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        for v in self.other_voters() {
            out.send.push((v, Msg::Vote { term: self.term, last_index, last_term, transfer }));
        }
    }

    fn handle_vote(&mut self, from: NodeId, last_index: LogIndex, last_term: Term, out: &mut Output) {
        let before = out.hard_state;
        let can_vote = self.voted_for == Some(from) || (self.voted_for.is_none() && self.leader.is_none());
        let up_to_date = self.log_is_behind_or_equal(last_index, last_term) || planted("raft-vote-for-stale-log");
        let granted = can_vote && up_to_date && self.is_voter(from) && self.role != Role::Leader;
        if granted {
            self.voted_for = Some(from);
            self.election_elapsed = 0;
            self.save_hard_state(out);
        }
        if planted("raft-vote-without-persist") {
            out.hard_state = before;
        }
        out.send.push((from, Msg::VoteResponse { term: self.term, granted }));
    }

    /// Some(true): a majority granted; Some(false): a majority refused; None: undecided.
    fn tally(&self) -> Option<bool> {
        let voters = &self.log.membership().voters;
        let quorum = self.log.membership().quorum();
        let granted = voters.iter().filter(|v| self.votes.get(v) == Some(&true)).count();
        let refused = voters.iter().filter(|v| self.votes.get(v) == Some(&false)).count();
        if granted >= quorum {
            Some(true)
        } else if refused >= quorum || voters.is_empty() {
            Some(false)
        } else {
            None
        }
    }

    fn other_voters(&self) -> Vec<NodeId> {
        self.log.membership().voters.iter().copied().filter(|&v| v != self.id).collect()
    }

    fn save_hard_state(&mut self, out: &mut Output) {
        out.hard_state = Some(self.hard_state());
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>, out: &mut Output) {
        if term > self.term {
            self.term = term;
            self.voted_for = None;
            self.save_hard_state(out);
        }
        self.role = Role::Follower;
        self.leader = leader;
        out.reads_failed.extend(self.pending_reads.drain(..).map(|r| r.0));
        self.votes.clear();
        self.progress.clear();
        self.transfer = None;
        self.ack_owed = None;
        self.acked = LogIndex(0);
        self.election_elapsed = 0;
        self.reset_randomized_timeout();
    }

    /// A current-term message from the leader `from`.
    fn follow(&mut self, from: NodeId, out: &mut Output) {
        if self.role == Role::Leader {
            assert!(planted("raft-accept-stale-append"), "node {}: two leaders in term {:?} ({} and {from})", self.id, self.term, self.id);
        }
        if self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(self.term, Some(from), out);
        }
        self.election_elapsed = 0;
    }

    fn become_leader(&mut self, out: &mut Output) {
        assert_eq!(self.role, Role::Candidate);
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.transfer = None;
        self.ack_owed = None;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.leader_ticks = 0;
        self.read_round = 0;
        self.progress.clear();
        self.sync_progress();
        self.append_local(vec![Entry { term: self.term, payload: Payload::LeaderChange }], out);
        self.broadcast_append(out);
    }

    // ---- the leader ------------------------------------------------------------------------

    fn check_can_propose(&self) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        if self.transfer.is_some() {
            return Err(ProposeError::Transferring);
        }
        Ok(())
    }

    fn tick_leader(&mut self, out: &mut Output) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if let Some((to, elapsed)) = self.transfer {
            self.transfer = (elapsed + 1 < self.opts.election_timeout_ticks).then_some((to, elapsed + 1));
        }
        self.leader_ticks += 1;
        if self.opts.check_quorum {
            // Step down as soon as a majority of voters has been silent for an election timeout.
            let (ticks, timeout) = (self.leader_ticks, self.opts.election_timeout_ticks as u64);
            let membership = self.log.membership();
            let active = membership
                .voters
                .iter()
                .filter(|v| **v == self.id || self.progress.get(v).is_some_and(|p| ticks - p.last_heard_tick < timeout))
                .count();
            if active < membership.quorum() {
                return self.become_follower(self.term, None, out);
            }
        }
        if self.election_elapsed >= self.opts.election_timeout_ticks {
            self.election_elapsed = 0;
            // A snapshot that got no answer for an election timeout is sent again.
            for pr in self.progress.values_mut() {
                if let ProgressState::Snapshot(_) = pr.state {
                    pr.become_probe();
                }
            }
        }
        if self.heartbeat_elapsed >= self.opts.heartbeat_interval_ticks {
            self.broadcast_heartbeat(out);
        }
    }

    fn broadcast_heartbeat(&mut self, out: &mut Output) {
        self.heartbeat_elapsed = 0;
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for to in peers {
            let pr = self.progress.get_mut(&to).expect("peer");
            if pr.state == ProgressState::Probe {
                pr.probe_sent = false;
            }
            let commit = pr.match_index.min(self.commit);
            out.send.push((to, Msg::Heartbeat { term: self.term, commit, round: self.read_round }));
        }
    }

    /// Release the reads whose heartbeat round a majority of voters answered.
    fn confirm_reads(&mut self, out: &mut Output) {
        while let Some(&(token, index, round)) = self.pending_reads.front() {
            let membership = self.log.membership();
            let answered = membership
                .voters
                .iter()
                .filter(|v| **v == self.id || self.progress.get(v).is_some_and(|p| p.heartbeat_round >= round))
                .count();
            if answered < membership.quorum() {
                break;
            }
            self.pending_reads.pop_front();
            out.reads_ready.push((token, index));
        }
    }

    /// Progress for exactly the members of the configuration in force (but us). A new one
    /// counts as heard from now (check-quorum gives it an election timeout).
    fn sync_progress(&mut self) {
        let members: Vec<NodeId> = self.log.membership().members().filter(|&m| m != self.id).collect();
        self.progress.retain(|id, _| members.contains(id));
        let (next, ticks) = (self.log.last_index().next(), self.leader_ticks);
        for m in members {
            self.progress.entry(m).or_insert_with(|| Progress::new(next, ticks));
        }
    }

    fn append_local(&mut self, entries: Vec<Entry>, out: &mut Output) {
        assert_eq!(self.role, Role::Leader);
        let first = self.log.last_index().next();
        let config = entries.iter().any(|e| matches!(e.payload, Payload::Config(_)));
        self.log.append(first, &entries);
        let id = self.next_write_id();
        self.writes.push_back(PendingWrite { id, end: self.log.last_index(), truncate_from: None });
        out.writes.push(LogWrite::Append { id, truncate_from: None, first_index: first, entries });
        if config {
            self.sync_progress();
        }
    }

    fn next_write_id(&mut self) -> u64 {
        let id = self.next_write_id;
        self.next_write_id += 1;
        id
    }

    fn broadcast_append(&mut self, out: &mut Output) {
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for to in peers {
            while self.send_append(to, out) {}
        }
    }

    /// Send `to` the next append (or the snapshot) if its window allows; whether one was sent.
    fn send_append(&mut self, to: NodeId, out: &mut Output) -> bool {
        let (first, last) = (self.log.first_index(), self.log.last_index());
        let Some(pr) = self.progress.get_mut(&to) else { return false };
        if !pr.can_send(self.opts.max_inflight_msgs) {
            return false;
        }
        if pr.next_index < first {
            let meta = self.log.snapshot().clone();
            pr.state = ProgressState::Snapshot(meta.index);
            pr.inflight.clear();
            out.replicate.push(Replicate::Snapshot { to, term: self.term, meta });
            return true;
        }
        let next = pr.next_index.min(last.next());
        let end = LogIndex((next.0 + self.opts.max_entries_per_msg).min(last.0 + 1));
        if pr.state == ProgressState::Replicate && next == end {
            return false;
        }
        let prev_index = next.prev();
        let prev_term = self.log.term_at(prev_index).expect("prev is in the log");
        let commit = self.commit;
        match pr.state {
            ProgressState::Replicate => {
                pr.inflight.push_back(end.prev());
                pr.next_index = end;
            }
            _ => pr.probe_sent = true,
        }
        out.replicate.push(Replicate::Entries { to, term: self.term, prev_index, prev_term, commit, range: next..end });
        true
    }

    /// An append with no entries at the follower's `next_index - 1` (Replicate, window sent):
    /// a follower that lost some of the appends in flight answers it with a rejection, which
    /// sends the leader back to probing from its log end; one that has them acknowledges.
    fn send_empty_append(&mut self, to: NodeId, out: &mut Output) {
        let Some(pr) = self.progress.get(&to) else { return };
        if pr.state != ProgressState::Replicate || pr.next_index <= self.log.first_index() {
            return;
        }
        let next = pr.next_index.min(self.log.last_index().next());
        let prev_index = next.prev();
        let prev_term = self.log.term_at(prev_index).expect("prev is in the log");
        out.replicate.push(Replicate::Entries { to, term: self.term, prev_index, prev_term, commit: self.commit, range: next..next });
    }

    fn handle_append_response(&mut self, from: NodeId, result: AppendResult, out: &mut Output) {
        let last = self.log.last_index();
        let ticks = self.leader_ticks;
        let Some(pr) = self.progress.get_mut(&from) else { return };
        pr.last_heard_tick = ticks;
        match result {
            AppendResult::Ok { match_index } => {
                let match_index = match_index.min(last);
                if let ProgressState::Snapshot(at) = pr.state {
                    if match_index < at {
                        pr.become_probe();
                    }
                }
                if pr.acknowledge(match_index) {
                    self.maybe_commit(out);
                }
                if self.role != Role::Leader {
                    return;
                }
                if let Some((to, _)) = self.transfer {
                    if to == from && self.progress[&from].match_index == self.log.last_index() {
                        out.send.push((to, Msg::TimeoutNow { term: self.term }));
                    }
                }
                while self.send_append(from, out) {}
            }
            AppendResult::Reject { rejected, hint_index, hint_term } => {
                if rejected < pr.match_index {
                    return; // an answer to an append older than what we know
                }
                // Not our latest probe. (Ours may have been sent from further back: the shell
                // starts an append at the beginning of the entry its `prev_index` is inside.)
                if pr.state == ProgressState::Probe && rejected >= pr.next_index {
                    return;
                }
                let mut next = rejected;
                match hint_term {
                    None => next = next.min(hint_index),
                    Some(t) => {
                        let end = self.log.end_of_term(t);
                        let has_term = end.is_some_and(|e| e.0 > 0 && self.log.term_at(e.prev()) == Some(t));
                        next = match end {
                            Some(e) if has_term => next.min(e),
                            Some(e) => next.min(e).min(hint_index),
                            None => next.min(hint_index),
                        };
                    }
                }
                let next = next.max(pr.match_index.next()).max(LogIndex(1)).min(last.next());
                pr.next_index = next;
                pr.become_probe();
                while self.send_append(from, out) {}
            }
        }
    }

    /// §5.4.2: the commit index moves to the highest index held by enough voters, only if the
    /// entry there is of our term.
    fn maybe_commit(&mut self, out: &mut Output) {
        let membership = self.log.membership();
        if membership.voters.is_empty() {
            return;
        }
        let mut matched: Vec<LogIndex> = membership
            .voters
            .iter()
            .map(|v| if *v == self.id { self.durable } else { self.progress.get(v).map(|p| p.match_index).unwrap_or_default() })
            .collect();
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let needed = if planted("raft-commit-on-one-ack") {
            // Planted bug: the leader's own copy is enough.
            1
        } else {
            membership.quorum().max(self.opts.min_commit_replicas.min(membership.voters.len()))
        };
        let candidate = matched[needed - 1];
        if candidate <= self.commit {
            return;
        }
        if self.log.term_at(candidate) != Some(self.term) && !planted("raft-commit-previous-term") {
            return;
        }
        self.commit = candidate;
        out.commit_index = Some(candidate);
        // A leader removed from the configuration steps down once that change is committed.
        if !self.promotable() && self.log.membership_index() <= self.commit {
            self.become_follower(self.term, None, out);
        }
    }

    // ---- the follower ----------------------------------------------------------------------

    fn advance_commit(&mut self, commit: LogIndex, out: &mut Output) {
        if commit > self.commit {
            self.commit = commit;
            out.commit_index = Some(commit);
        }
    }

    fn owe_ack(&mut self, leader: NodeId, upto: LogIndex, out: &mut Output) {
        if self.durable >= upto {
            self.acked = self.acked.max(upto);
            out.send.push((leader, Msg::AppendResponse { term: self.term, result: AppendResult::Ok { match_index: upto } }));
        } else {
            let owed = self.ack_owed.filter(|o| o.0 == leader).map(|o| o.1).unwrap_or_default();
            self.ack_owed = Some((leader, owed.max(upto)));
        }
    }

    fn handle_append(
        &mut self,
        from: NodeId,
        mut prev_index: LogIndex,
        mut prev_term: Term,
        leader_commit: LogIndex,
        mut entries: Vec<Entry>,
        out: &mut Output,
    ) {
        self.follow(from, out);
        // Entries up to our commit index are committed, so they match: skip them.
        if prev_index < self.commit {
            let mut skip = 0;
            while skip < entries.len() && prev_index < self.commit {
                prev_index = LogIndex(prev_index.0 + entries[skip].span());
                skip += 1;
            }
            // The committed prefix is the same entries everywhere, so an entry never straddles
            // our commit index.
            assert!(
                prev_index <= self.commit || skip == 0,
                "node {}: an entry of the leader's ends at {prev_index:?}, past our commit index {:?} inside it",
                self.id,
                self.commit
            );
            entries.drain(..skip);
            if entries.is_empty() {
                return self.owe_ack(from, prev_index, out);
            }
            prev_term = self.log.term_at(prev_index).expect("commit index is in the log");
        }
        match self.log.term_at(prev_index) {
            None => {
                let result = AppendResult::Reject { rejected: prev_index, hint_index: self.log.last_index().next(), hint_term: None };
                out.send.push((from, Msg::AppendResponse { term: self.term, result }));
                return;
            }
            Some(t) if t != prev_term => {
                assert!(prev_index > self.commit, "node {}: committed entry {prev_index:?} does not match the leader's", self.id);
                let result = AppendResult::Reject {
                    rejected: prev_index,
                    hint_index: self.log.epoch_start(prev_index),
                    hint_term: Some(t),
                };
                out.send.push((from, Msg::AppendResponse { term: self.term, result }));
                return;
            }
            Some(_) => {}
        }
        let matched_upto = if planted("raft-batch-counted-as-one") {
            // Planted bug: count entries, not the indexes they take.
            LogIndex(prev_index.0 + entries.len() as u64)
        } else {
            LogIndex(prev_index.0 + span_of(&entries))
        };
        // The first entry we do not have, or have with another term. An entry whose first index
        // we hold in its term is the same entry (only that term's leader made entries of it),
        // so it ends where ours does.
        let mut truncate_from = None;
        let mut first_new = entries.len();
        let mut index = prev_index.next();
        for (i, entry) in entries.iter().enumerate() {
            let at = index;
            index = LogIndex(index.0 + entry.span());
            match self.log.term_at(at) {
                Some(t) if t == entry.term => continue,
                Some(_) => {
                    if planted("raft-keep-conflicting-suffix") {
                        // Keep what we have; take only entries past our end (that our terms allow).
                        let mut end = prev_index;
                        first_new = entries.iter().take_while(|e| {
                            end = LogIndex(end.0 + e.span());
                            end <= self.log.last_index()
                        }).count();
                        let last_term = self.log.last_term();
                        let keep = entries[first_new..].iter().take_while(|e| e.term >= last_term).count();
                        entries.truncate(first_new + keep);
                        break;
                    }
                    truncate_from = Some(at);
                    first_new = i;
                    break;
                }
                None => {
                    first_new = i;
                    break;
                }
            }
        }
        if first_new < entries.len() {
            if let Some(from_index) = truncate_from {
                assert!(from_index > self.commit, "node {}: truncating committed entry {from_index:?}", self.id);
                assert_ne!(self.role, Role::Leader, "a leader never truncates its own log");
                self.log.truncate(from_index);
                self.durable = self.durable.min(from_index.prev());
            }
            let new: Vec<Entry> = entries.split_off(first_new);
            let first_index = self.log.last_index().next();
            self.log.append(first_index, &new);
            let id = self.next_write_id();
            self.writes.push_back(PendingWrite { id, end: self.log.last_index(), truncate_from });
            out.writes.push(LogWrite::Append { id, truncate_from, first_index, entries: new });
        }
        self.advance_commit(leader_commit.min(matched_upto), out);
        self.owe_ack(from, matched_upto, out);
    }

    fn handle_snapshot(&mut self, from: NodeId, meta: SnapshotMeta, data: Bytes, out: &mut Output) {
        self.follow(from, out);
        if meta.index <= self.commit || self.log.term_at(meta.index) == Some(meta.term) {
            // We have it already (committed, or the same entry): nothing to replace.
            self.advance_commit(meta.index, out);
            let upto = self.commit;
            return self.owe_ack(from, upto, out);
        }
        let index = meta.index;
        self.log.restore(meta.clone());
        self.durable = LogIndex(0);
        let id = self.next_write_id();
        self.writes.push_back(PendingWrite { id, end: index, truncate_from: Some(LogIndex(1)) });
        out.writes.push(LogWrite::Restore { id, meta, data });
        self.advance_commit(index, out);
        self.owe_ack(from, index, out);
    }

    // ---- invariants ------------------------------------------------------------------------

    fn check_invariants(&mut self) {
        let (term, vote, commit) = self.checked;
        assert!(self.term >= term, "node {}: term went back from {term:?} to {:?}", self.id, self.term);
        if self.term == term && vote.is_some() {
            assert_eq!(self.voted_for, vote, "node {}: a second vote in term {term:?}", self.id);
        }
        assert!(self.commit >= commit, "node {}: commit index went back from {commit:?} to {:?}", self.id, self.commit);
        assert!(self.commit <= self.log.last_index(), "node {}: commit index past the log end", self.id);
        assert!(self.commit >= self.log.snapshot().index, "node {}: commit index before the log start", self.id);
        assert!(self.durable <= self.log.last_index(), "node {}: durable index past the log end", self.id);
        if self.role == Role::Leader {
            assert_eq!(self.leader, Some(self.id));
            assert!(self.log.last_term() <= self.term, "node {}: leader's log holds a later term", self.id);
        }
        self.checked = (self.term, self.voted_for, self.commit);
    }
}
