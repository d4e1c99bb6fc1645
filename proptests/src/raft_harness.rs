//! A deterministic harness for `strand::raft`: 3-5 cores (and spare nodes that can join as
//! learners) over a message bus that drops, duplicates, reorders and delays messages, with
//! one-way link cuts, crashes that lose whatever a node had not persisted (or keep a random
//! prefix of it: a write may reach the disk without the core hearing of it), restarts,
//! snapshots, membership changes and leadership transfers.
//!
//! Each node's storage is a model: a durable log plus the writes submitted and not yet done.
//! The hard state is made durable before a call's messages leave (the shell's contract). Every
//! node applies committed entries to its state machine (the list of entries it applied).
//!
//! Checked on every event: election safety (at most one leader per term), state-machine safety
//! (every node applies the same entry at each index: the cluster's committed log is one),
//! leader completeness (a new leader's log holds every entry any node applied); every few
//! events and at the end: log matching (two logs with an entry of the same index and term are
//! identical up to there); a commit or durable index never inside a multi-index entry (half
//! the schedules propose mostly record batches of 2-4 indexes, as a partition log's offsets,
//! which the shell sends whole). After the faults heal: a leader within a bounded number of ticks,
//! and a proposal of that leader applied on every member.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

use bytes::Bytes;
use strand::raft::{
    Entry, HardState, LogIndex, LogState, LogWrite, Membership, Msg, NodeId, Options, Output, Payload, RaftCore,
    Replicate, Role, SnapshotMeta, Term,
};

/// splitmix64: the harness's only source of randomness, from the schedule's seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A log in storage: where it starts and the entries after that, one per index: an entry of
/// `n` indexes (a record batch, `Payload::Batch`) is held `n` times in a row. (Each batch's
/// bytes are unique, so equal neighbouring batch cells are one entry.)
#[derive(Clone, Debug, Default)]
pub struct StoredLog {
    pub snapshot: SnapshotMeta,
    pub entries: Vec<Entry>,
}

/// Whether the cells at two neighbouring indexes belong to one multi-index entry.
fn same_batch(a: Option<&Entry>, b: Option<&Entry>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if matches!(a.payload, Payload::Batch { .. }) && a == b)
}

impl StoredLog {
    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.snapshot.index.0 + self.entries.len() as u64)
    }
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        if index <= self.snapshot.index {
            return None;
        }
        self.entries.get((index.0 - self.snapshot.index.0 - 1) as usize)
    }
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        self.entry(index).map(|e| e.term)
    }
    /// Whether `index` is the last index of its entry (or the log start).
    pub fn is_entry_end(&self, index: LogIndex) -> bool {
        index <= self.snapshot.index || !same_batch(self.entry(index), self.entry(index.next()))
    }
    /// The first index of the entry holding `index`.
    pub fn entry_start(&self, index: LogIndex) -> LogIndex {
        let mut at = index;
        while at.0 > self.snapshot.index.0 + 1 && same_batch(self.entry(at.prev()), self.entry(at)) {
            at = at.prev();
        }
        at
    }
    /// The entries as the core knows them (each multi-index entry once), for a restart.
    pub fn distinct_entries(&self) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            if i == 0 || !same_batch(Some(&self.entries[i - 1]), Some(e)) {
                out.push(e.clone());
            }
        }
        out
    }
    fn apply(&mut self, write: &LogWrite) {
        match write {
            LogWrite::Append { truncate_from, first_index, entries, .. } => {
                if let Some(from) = truncate_from {
                    assert!(*from > self.snapshot.index, "truncate below the snapshot");
                    assert!(self.is_entry_end(from.prev()), "truncate from {from:?}, inside an entry");
                    self.entries.truncate((from.0 - self.snapshot.index.0 - 1) as usize);
                }
                assert_eq!(*first_index, self.last_index().next(), "append continues the log");
                for e in entries {
                    self.entries.extend(std::iter::repeat_n(e.clone(), e.span() as usize));
                }
            }
            LogWrite::Restore { meta, .. } => {
                self.snapshot = meta.clone();
                self.entries.clear();
            }
        }
    }
    fn compact(&mut self, meta: SnapshotMeta) {
        let drop = (meta.index.0 - self.snapshot.index.0) as usize;
        self.entries.drain(..drop.min(self.entries.len()));
        self.snapshot = meta;
    }
}

pub struct Node {
    pub id: NodeId,
    pub core: Option<RaftCore>,
    /// What survives a crash.
    pub hard: HardState,
    pub disk: StoredLog,
    /// The disk's snapshot payload: the state machine up to the snapshot.
    pub disk_applied: Vec<Entry>,
    /// The log as the running core sees it (disk + pending writes).
    pub mem: StoredLog,
    pub pending: VecDeque<LogWrite>,
    /// The state machine: every entry applied, in order, from index 1.
    pub applied: Vec<Entry>,
    /// applied[..verified] was checked against the cluster's committed log.
    pub verified: usize,
    pub incarnation: u32,
}

#[derive(Clone, Copy, Debug)]
pub struct Faults {
    pub drop_percent: u64,
    pub duplicate_percent: u64,
}

pub struct Cluster {
    pub rng: Rng,
    pub opts: Options,
    pub nodes: BTreeMap<NodeId, Node>,
    pub initial: Membership,
    /// In flight: (from, to, message).
    pub bus: Vec<(NodeId, NodeId, Msg)>,
    pub cut: BTreeSet<(NodeId, NodeId)>,
    pub faults: Faults,
    /// Every entry applied by any node, by index (from 1): the cluster's one committed log.
    pub committed: Vec<Entry>,
    pub leaders: BTreeMap<Term, NodeId>,
    pub next_proposal: u64,
    /// Snapshot payloads sent (the data of a Snapshot message is an index into this).
    pub snapshot_store: Vec<Vec<Entry>>,
    pub trace: Vec<String>,
    pub tracing: bool,
    pub events: u64,
    /// Targeted crashes, in percent: a leader right after its commit index moves, and a node
    /// right after it became leader (before it could replicate its first entry).
    pub crash_on_commit_percent: u64,
    pub crash_on_election_percent: u64,
    /// Nodes the targeted nemesis crashed in this event, restarted later by the schedule.
    pending_crash: Vec<NodeId>,
    /// Copies of sent messages held back, delivered much later (long network delays: a
    /// stale leader's append arriving after a new term began).
    pub delayed: Vec<(NodeId, NodeId, Msg)>,
    pub delay_percent: u64,
    /// Each event, the chance that one crashed node restarts (besides the restart events).
    pub restart_percent: u64,
    /// Check after every call that the core asked to persist the term and vote it holds (the
    /// shell contract). Off with RAFT_NO_HS_CHECK=1, so that planted bugs must be caught by
    /// their consequences.
    pub check_hard_state_contract: bool,
    /// Reads asked for (read-index): token -> (node, how many entries any node had applied
    /// when the read was asked for).
    pub reads: BTreeMap<u64, (NodeId, usize)>,
    pub next_read: u64,
    pub reads_confirmed: u64,
    /// Of the proposals, the percentage that are record batches of 2-4 indexes.
    pub batch_percent: u64,
}

fn data_id(e: &Entry) -> String {
    match &e.payload {
        Payload::Data(d) => format!("t{}:{}", e.term.0, u64::from_be_bytes(d[..8].try_into().unwrap())),
        Payload::LeaderChange => format!("t{}:lc", e.term.0),
        Payload::Config(m) => format!("t{}:cfg{:?}/{:?}", e.term.0, m.voters, m.learners),
        Payload::Batch { count, bytes } => format!("t{}:{}x{count}", e.term.0, u64::from_be_bytes(bytes[..8].try_into().unwrap())),
    }
}

impl Cluster {
    /// `voters` voters with ids 1..=voters and `spares` more nodes outside the configuration.
    pub fn new(seed: u64, voters: u32, spares: u32, opts: Options) -> Cluster {
        let initial = Membership::voters(1..=voters);
        let mut rng = Rng::new(seed);
        let mut nodes = BTreeMap::new();
        for id in 1..=voters + spares {
            let id = NodeId(id);
            let snapshot = SnapshotMeta { membership: initial.clone(), ..SnapshotMeta::default() };
            let disk = StoredLog { snapshot, entries: Vec::new() };
            let mut node = Node {
                id,
                core: None,
                hard: HardState::default(),
                mem: disk.clone(),
                disk,
                disk_applied: Vec::new(),
                pending: VecDeque::new(),
                applied: Vec::new(),
                verified: 0,
                incarnation: 0,
            };
            node.core = Some(Self::boot(&node, &opts, rng.next_u64()));
            nodes.insert(id, node);
        }
        Cluster {
            rng,
            opts,
            nodes,
            initial,
            bus: Vec::new(),
            cut: BTreeSet::new(),
            faults: Faults { drop_percent: 0, duplicate_percent: 0 },
            committed: Vec::new(),
            leaders: BTreeMap::new(),
            next_proposal: 0,
            snapshot_store: Vec::new(),
            trace: Vec::new(),
            tracing: false,
            events: 0,
            crash_on_commit_percent: 0,
            crash_on_election_percent: 0,
            pending_crash: Vec::new(),
            delayed: Vec::new(),
            delay_percent: 0,
            restart_percent: 0,
            check_hard_state_contract: std::env::var("RAFT_NO_HS_CHECK").is_err(),
            reads: BTreeMap::new(),
            next_read: 0,
            reads_confirmed: 0,
            batch_percent: 0,
        }
    }

    fn boot(node: &Node, opts: &Options, jitter_seed: u64) -> RaftCore {
        let state = LogState::from_entries(node.disk.snapshot.clone(), &node.disk.distinct_entries());
        let opts = Options { jitter_seed, ..opts.clone() };
        RaftCore::new(node.id, opts, node.hard, state, LogIndex(0))
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }
    pub fn live(&self) -> Vec<NodeId> {
        self.nodes.values().filter(|n| n.core.is_some()).map(|n| n.id).collect()
    }
    pub fn core(&self, id: NodeId) -> &RaftCore {
        self.nodes[&id].core.as_ref().expect("node is up")
    }
    /// Live nodes that think they lead.
    pub fn leaders_now(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|n| n.core.as_ref().is_some_and(|c| c.role() == Role::Leader))
            .map(|n| n.id)
            .collect()
    }

    pub fn note(&mut self, line: impl FnOnce() -> String) {
        if self.tracing {
            let l = line();
            self.trace.push(format!("[{}] {l}", self.events));
        }
    }

    // ---- driving a node --------------------------------------------------------------------

    /// Execute what a call left in `out`, for node `id`; then check the invariants.
    pub fn execute(&mut self, id: NodeId, out: Output) {
        let leader_committed = out.commit_index.is_some()
            && self.nodes[&id].core.as_ref().is_some_and(|c| c.role() == Role::Leader);
        let node = self.nodes.get_mut(&id).unwrap();
        // 1. the hard state, durable before any message leaves
        if let Some(hs) = out.hard_state {
            node.hard = hs;
        }
        // 2. writes: applied to the core's view now, to the disk when persisted
        for w in &out.writes {
            node.mem.apply(w);
            if let LogWrite::Restore { data, .. } = w {
                let slot = u64::from_be_bytes(data[..8].try_into().unwrap()) as usize;
                node.applied = self.snapshot_store[slot].clone();
                node.verified = 0;
            }
            node.pending.push_back(w.clone());
        }
        // 3. messages
        let mut msgs: Vec<(NodeId, Msg)> = out.send;
        for r in out.replicate {
            match r {
                Replicate::Entries { to, term, mut prev_index, mut prev_term, commit, range } => {
                    // Whole entries only (see `Replicate::Entries`): start at the entry that
                    // `prev_index` is inside, end at the end of the one `range.end - 1` is in.
                    let mut start = range.start;
                    if !node.mem.is_entry_end(prev_index) {
                        start = node.mem.entry_start(prev_index);
                        prev_index = start.prev();
                        prev_term = node.mem.term_at(prev_index).expect("the index before an entry is in the log");
                    }
                    let mut end = range.end.max(start);
                    while end > start && !node.mem.is_entry_end(end.prev()) {
                        end = end.next();
                    }
                    let mut entries = Vec::new();
                    let mut i = start;
                    while i < end {
                        let e = node.mem.entry(i).expect("replicated range is in the log").clone();
                        i = LogIndex(i.0 + e.span());
                        entries.push(e);
                    }
                    assert_eq!(i, end, "whole entries");
                    msgs.push((to, Msg::Append { term, prev_index, prev_term, commit, entries }));
                }
                Replicate::Snapshot { to, term, meta } => {
                    assert!(node.applied.len() as u64 >= meta.index.0, "snapshot past what the leader applied");
                    let slot = self.snapshot_store.len() as u64;
                    self.snapshot_store.push(node.applied[..meta.index.0 as usize].to_vec());
                    let data = Bytes::copy_from_slice(&slot.to_be_bytes());
                    msgs.push((to, Msg::Snapshot { term, meta, data }));
                }
            }
        }
        for (to, msg) in msgs {
            if self.cut.contains(&(id, to)) {
                continue;
            }
            if self.delay_percent > 0 && self.delayed.len() < 64 && self.rng.chance(self.delay_percent) {
                self.delayed.push((id, to, msg.clone()));
            }
            self.bus.push((id, to, msg));
        }
        // 4. reads: a confirmed read index covers everything committed before the read
        for (token, index) in out.reads_ready {
            let (node, committed_then) = self.reads.remove(&token).expect("a read we asked for");
            assert_eq!(node, id, "read {token} confirmed by another node");
            assert!(
                index.0 >= committed_then as u64,
                "linearizable reads: node {id} confirmed read {token} at index {} but {committed_then} entries were committed before it was asked",
                index.0
            );
            self.reads_confirmed += 1;
        }
        for token in out.reads_failed {
            self.reads.remove(&token);
        }
        self.apply_committed(id);
        let new_leader = self.check_node(id);
        if (leader_committed && self.crash_on_commit_percent > 0 && self.rng.chance(self.crash_on_commit_percent))
            || (new_leader && self.crash_on_election_percent > 0 && self.rng.chance(self.crash_on_election_percent))
        {
            self.pending_crash.push(id);
        }
    }

    /// Apply newly committed entries to the node's state machine and to the cluster's log.
    fn apply_committed(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).unwrap();
        let Some(core) = node.core.as_ref() else { return };
        let commit = core.commit_index();
        while (node.applied.len() as u64) < commit.0 {
            let index = LogIndex(node.applied.len() as u64 + 1);
            let entry = node.mem.entry(index).unwrap_or_else(|| panic!("node {id}: committed entry {index:?} is not in its log")).clone();
            node.applied.push(entry);
        }
        // state-machine safety
        let from = node.verified;
        node.verified = node.applied.len();
        for (i, e) in node.applied.iter().enumerate().skip(from) {
            match self.committed.get(i) {
                Some(c) => assert!(
                    c == e,
                    "state-machine safety: node {id} applied {} at index {} where another applied {}",
                    data_id(e),
                    i + 1,
                    data_id(c)
                ),
                None => self.committed.push(e.clone()),
            }
        }
    }

    /// Returns whether the node just became the leader of a new term.
    fn check_node(&mut self, id: NodeId) -> bool {
        let node = &self.nodes[&id];
        let Some(core) = node.core.as_ref() else { return false };
        if self.check_hard_state_contract {
            assert_eq!(core.hard_state(), node.hard, "node {id}: the durable hard state lags the core's after execute");
        }
        assert_eq!(core.last_index(), node.mem.last_index(), "node {id}: the core's log end and storage's differ");
        // A batch commits whole: the commit index (a partition's high watermark) and the durable
        // index are never inside an entry.
        assert!(node.mem.is_entry_end(core.commit_index()), "node {id}: commit index {:?} inside an entry", core.commit_index());
        assert!(node.mem.is_entry_end(core.durable_index()), "node {id}: durable index {:?} inside an entry", core.durable_index());
        if core.role() == Role::Leader {
            let term = core.term();
            if let Some(other) = self.leaders.get(&term) {
                assert_eq!(*other, id, "election safety: nodes {other} and {id} both lead term {term:?}");
            } else {
                // a new leader: leader completeness
                for (i, c) in self.committed.iter().enumerate() {
                    let index = LogIndex(i as u64 + 1);
                    if index <= node.mem.snapshot.index {
                        continue;
                    }
                    let have = node.mem.entry(index);
                    assert!(
                        have == Some(c),
                        "leader completeness: node {id}, leader of {term:?}, lacks committed {} at {index:?} (has {:?})",
                        data_id(c),
                        have.map(data_id)
                    );
                }
                self.leaders.insert(term, id);
                return true;
            }
        }
        false
    }

    /// Log matching over every pair of live nodes' logs.
    pub fn check_log_matching(&self) {
        let logs: Vec<(NodeId, &StoredLog)> = self.nodes.values().map(|n| (n.id, &n.mem)).collect();
        for (i, (a, la)) in logs.iter().enumerate() {
            for (b, lb) in &logs[i + 1..] {
                let lo = la.snapshot.index.max(lb.snapshot.index).next();
                let hi = la.last_index().min(lb.last_index());
                let mut top = None;
                let mut k = hi.0;
                while k >= lo.0 && k > 0 {
                    if la.term_at(LogIndex(k)) == lb.term_at(LogIndex(k)) {
                        top = Some(k);
                        break;
                    }
                    k -= 1;
                }
                let Some(top) = top else { continue };
                for j in lo.0..=top {
                    let (ea, eb) = (la.entry(LogIndex(j)), lb.entry(LogIndex(j)));
                    assert!(
                        ea == eb,
                        "log matching: nodes {a} and {b} agree on the term at {top} but differ at {j}: {:?} vs {:?}",
                        ea.map(data_id),
                        eb.map(data_id)
                    );
                }
            }
        }
    }

    // ---- events ----------------------------------------------------------------------------

    pub fn tick(&mut self, id: NodeId) {
        let Some(core) = self.nodes.get_mut(&id).unwrap().core.as_mut() else { return };
        let mut out = Output::default();
        core.tick(&mut out);
        self.execute(id, out);
    }

    /// Deliver the message at `at` in the bus (it leaves the bus unless duplicated).
    pub fn deliver(&mut self, at: usize) {
        let (from, to, msg) = if self.faults.duplicate_percent > 0 && self.rng.chance(self.faults.duplicate_percent) {
            self.bus[at].clone()
        } else {
            self.bus.swap_remove(at)
        };
        if self.faults.drop_percent > 0 && self.rng.chance(self.faults.drop_percent) {
            self.note(|| format!("drop {from}->{to} {msg:?}"));
            return;
        }
        if self.nodes[&to].core.is_none() {
            return;
        }
        if self.tracing {
            let line = format!("{from}->{to} {}", short(&msg));
            self.note(|| line);
        }
        let core = self.nodes.get_mut(&to).unwrap().core.as_mut().unwrap();
        let mut out = Output::default();
        core.step(from, msg, &mut out);
        self.execute(to, out);
    }

    /// Complete the node's oldest `count` pending writes.
    pub fn persist(&mut self, id: NodeId, count: usize) {
        let node = self.nodes.get_mut(&id).unwrap();
        if node.core.is_none() {
            return;
        }
        let mut last = None;
        for _ in 0..count {
            let Some(w) = node.pending.pop_front() else { break };
            node.disk.apply(&w);
            if let LogWrite::Restore { .. } = &w {
                node.disk_applied = node.mem_applied_snapshot();
            }
            last = Some(w.id());
        }
        let Some(last) = last else { return };
        let mut out = Output::default();
        node.core.as_mut().unwrap().persisted(last, &mut out);
        // The core's durable index must be honest: the disk holds its view of the log that far.
        let durable = node.core.as_ref().unwrap().durable_index();
        assert!(durable <= node.disk.last_index(), "node {id}: durable index {durable:?} past the disk's log end");
        let lo = node.disk.snapshot.index.max(node.mem.snapshot.index).next();
        for i in lo.0..=durable.0 {
            assert!(
                node.disk.entry(LogIndex(i)) == node.mem.entry(LogIndex(i)),
                "node {id}: durable index {durable:?} but the disk differs from the core's log at {i}"
            );
        }
        self.execute(id, out);
    }

    pub fn crash(&mut self, id: NodeId) {
        let keep = {
            let n = &self.nodes[&id];
            if n.core.is_none() {
                return;
            }
            self.rng.below(n.pending.len() as u64 + 1) as usize
        };
        let node = self.nodes.get_mut(&id).unwrap();
        // A prefix of the pending writes may have reached the disk; the rest is lost.
        for _ in 0..keep {
            let w = node.pending.pop_front().unwrap();
            node.disk.apply(&w);
            if let LogWrite::Restore { .. } = &w {
                node.disk_applied = node.mem_applied_snapshot();
            }
        }
        node.pending.clear();
        node.core = None;
        self.reads.retain(|_, r| r.0 != id);
        self.note(|| format!("crash {id} (kept {keep} pending writes)"));
    }

    pub fn restart(&mut self, id: NodeId) {
        let seed = self.rng.next_u64();
        let node = self.nodes.get_mut(&id).unwrap();
        if node.core.is_some() {
            return;
        }
        node.incarnation += 1;
        node.mem = node.disk.clone();
        node.applied = node.disk_applied.clone();
        node.verified = 0;
        let core = Self::boot(node, &self.opts, seed);
        node.core = Some(core);
        self.note(|| format!("restart {id}"));
        let _ = self.check_node(id);
    }

    /// Propose one entry on `id` if it leads; returns its index.
    pub fn propose(&mut self, id: NodeId) -> Option<LogIndex> {
        self.next_proposal += 1;
        let data = Bytes::copy_from_slice(&self.next_proposal.to_be_bytes());
        // Some proposals are record batches taking 2-4 indexes (a partition's offsets).
        let records = if self.batch_percent > 0 && self.rng.chance(self.batch_percent) { 2 + self.rng.below(3) as u32 } else { 0 };
        let core = self.nodes.get_mut(&id).unwrap().core.as_mut()?;
        let mut out = Output::default();
        let r = if records > 0 { core.propose_batches(vec![(records, data)], &mut out) } else { core.propose(vec![data], &mut out) };
        let r = r.ok()?;
        let n = self.next_proposal;
        self.note(|| format!("propose {n} on {id} at {:?}", r.start));
        self.execute(id, out);
        Some(r.start)
    }

    /// Ask node `id` for a read-index read; returns whether it took it.
    pub fn read(&mut self, id: NodeId) -> bool {
        let token = self.next_read;
        let committed = self.committed.len();
        let Some(core) = self.nodes.get_mut(&id).unwrap().core.as_mut() else { return false };
        let mut out = Output::default();
        if core.read_index(token, &mut out).is_err() {
            return false;
        }
        self.next_read += 1;
        self.reads.insert(token, (id, committed));
        self.note(|| format!("read {token} on {id}"));
        self.execute(id, out);
        true
    }

    pub fn propose_membership(&mut self, id: NodeId, m: Membership) -> bool {
        let Some(core) = self.nodes.get_mut(&id).unwrap().core.as_mut() else { return false };
        let mut out = Output::default();
        let ok = core.propose_membership(m.clone(), &mut out).is_ok();
        if ok {
            self.note(|| format!("membership on {id}: {:?} / {:?}", m.voters, m.learners));
        }
        self.execute(id, out);
        ok
    }

    pub fn transfer(&mut self, id: NodeId, to: NodeId) {
        let Some(core) = self.nodes.get_mut(&id).unwrap().core.as_mut() else { return };
        let mut out = Output::default();
        if core.transfer_leadership(to, &mut out).is_ok() {
            self.note(|| format!("transfer {id} -> {to}"));
        }
        self.execute(id, out);
    }

    /// Snapshot node `id` at a random index up to what is committed, applied and durable.
    pub fn compact(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).unwrap();
        let Some(core) = node.core.as_mut() else { return };
        let upto = core.commit_index().min(core.durable_index()).min(LogIndex(node.applied.len() as u64));
        if upto <= node.mem.snapshot.index || upto <= node.disk.snapshot.index {
            return;
        }
        // only what is on disk too (the durable index may count a write still pending?)
        if upto > node.disk.last_index() {
            return;
        }
        let mut at = LogIndex(node.mem.snapshot.index.0 + 1 + self.rng.below(upto.0 - node.mem.snapshot.index.0));
        // A log starts after a whole entry (a partition's segments hold whole batches).
        while !node.mem.is_entry_end(at) {
            at = at.prev();
        }
        if at <= node.mem.snapshot.index {
            return;
        }
        let node = self.nodes.get_mut(&id).unwrap();
        let core = node.core.as_mut().unwrap();
        core.compact(at);
        let meta = core.log().snapshot().clone();
        node.mem.compact(meta.clone());
        node.disk.compact(meta);
        node.disk_applied = node.applied[..at.0 as usize].to_vec();
        self.note(|| format!("compact {id} at {at:?}"));
        let _ = self.check_node(id);
    }

    /// Cut (or heal) the link from `a` to `b`.
    pub fn set_cut(&mut self, a: NodeId, b: NodeId, cut: bool) {
        if cut {
            self.cut.insert((a, b));
        } else {
            self.cut.remove(&(a, b));
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    // ---- random schedules ------------------------------------------------------------------

    /// One random event.
    pub fn random_event(&mut self) {
        self.events += 1;
        let ids = self.ids();
        let pick = |rng: &mut Rng| ids[rng.below(ids.len() as u64) as usize];
        let roll = self.rng.below(1000);
        match roll {
            0..=449 => {
                if !self.bus.is_empty() {
                    // mostly oldest-first with some reordering (delay)
                    let n = self.bus.len() as u64;
                    let at = if self.rng.chance(70) { self.rng.below(n.min(3)) } else { self.rng.below(n) } as usize;
                    self.deliver(at);
                }
            }
            450..=649 => {
                if self.rng.chance(20) {
                    for id in self.ids() {
                        self.tick(id);
                    }
                } else {
                    let id = pick(&mut self.rng);
                    self.tick(id);
                }
            }
            650..=789 => {
                let id = pick(&mut self.rng);
                let count = 1 + self.rng.below(3) as usize;
                self.persist(id, count);
            }
            790..=829 => {
                if let Some(&l) = self.leaders_now().first() {
                    let n = 1 + self.rng.below(3);
                    for _ in 0..n {
                        self.propose(l);
                    }
                }
            }
            830..=869 => {
                // a read on every node that believes it leads (a deposed one too)
                for l in self.leaders_now() {
                    self.read(l);
                }
            }
            870..=879 => {
                let id = pick(&mut self.rng);
                self.crash(id);
            }
            880..=904 => {
                let id = pick(&mut self.rng);
                self.restart(id);
            }
            905..=924 => {
                // partitions: one-way cuts, an isolated node, halves, heal. A new partition
                // replaces the last one (a one-way cut adds to it) and lasts until the next
                // partition event, long enough for the majority side to elect and commit.
                let kind = self.rng.below(8);
                if kind == 2 || kind == 5 {
                    self.heal();
                }
                match kind {
                    0 => {
                        let (a, b) = (pick(&mut self.rng), pick(&mut self.rng));
                        if a != b {
                            self.set_cut(a, b, true);
                            self.note(|| format!("cut {a}->{b}"));
                        }
                    }
                    1 | 3 | 4 => {
                        // an isolated node: the leader, more often than not
                        let a = match self.leaders_now().first() {
                            Some(&l) if kind != 1 => l,
                            _ => pick(&mut self.rng),
                        };
                        self.heal();
                        for b in self.ids() {
                            if b != a {
                                self.set_cut(a, b, true);
                                self.set_cut(b, a, true);
                            }
                        }
                        self.note(|| format!("isolate {a}"));
                    }
                    2 | 5 => {
                        let ids = self.ids();
                        let split = 1 + self.rng.below(ids.len() as u64 - 1) as usize;
                        for a in &ids[..split] {
                            for b in &ids[split..] {
                                self.set_cut(*a, *b, true);
                                self.set_cut(*b, *a, true);
                            }
                        }
                        self.note(|| format!("halves at {split}"));
                    }
                    _ => {
                        self.heal();
                        self.note(|| "heal".to_string());
                    }
                }
            }
            925..=932 => {
                // a long-delayed copy arrives
                if !self.delayed.is_empty() {
                    let at = self.rng.below(self.delayed.len() as u64) as usize;
                    let m = self.delayed.swap_remove(at);
                    self.bus.push(m);
                    let last = self.bus.len() - 1;
                    self.deliver(last);
                }
            }
            933..=939 => {
                // lose or duplicate a message in flight
                if !self.bus.is_empty() {
                    let at = self.rng.below(self.bus.len() as u64) as usize;
                    if self.rng.chance(50) {
                        self.bus.swap_remove(at);
                    } else {
                        let m = self.bus[at].clone();
                        self.bus.push(m);
                    }
                }
            }
            940..=959 => {
                let id = pick(&mut self.rng);
                self.compact(id);
            }
            960..=979 => self.random_membership_change(),
            _ => {
                if let Some(&l) = self.leaders_now().first() {
                    let to = pick(&mut self.rng);
                    if to != l {
                        self.transfer(l, to);
                    }
                }
            }
        }
        for id in std::mem::take(&mut self.pending_crash) {
            self.crash(id);
        }
        if self.restart_percent > 0 && self.rng.chance(self.restart_percent) {
            let down: Vec<NodeId> = self.nodes.values().filter(|n| n.core.is_none()).map(|n| n.id).collect();
            if !down.is_empty() {
                let id = down[self.rng.below(down.len() as u64) as usize];
                self.restart(id);
            }
        }
        if self.events % 25 == 0 {
            self.check_log_matching();
        }
    }

    fn random_membership_change(&mut self) {
        let Some(&l) = self.leaders_now().first() else { return };
        let mut m = self.core(l).membership().clone();
        let ids = self.ids();
        match self.rng.below(4) {
            0 => {
                // add a learner
                let outside: Vec<NodeId> = ids.iter().copied().filter(|i| !m.contains(*i)).collect();
                if outside.is_empty() {
                    return;
                }
                m.learners.insert(outside[self.rng.below(outside.len() as u64) as usize]);
            }
            1 => {
                // promote a learner
                let Some(&v) = m.learners.iter().next() else { return };
                m.learners.remove(&v);
                m.voters.insert(v);
            }
            2 => {
                // remove a voter (keep three)
                if m.voters.len() <= 3 {
                    return;
                }
                let vs: Vec<NodeId> = m.voters.iter().copied().collect();
                let v = vs[self.rng.below(vs.len() as u64) as usize];
                m.voters.remove(&v);
            }
            _ => {
                let Some(&v) = m.learners.iter().next() else { return };
                m.learners.remove(&v);
            }
        }
        self.propose_membership(l, m);
    }

    /// Heal everything and run the cluster reliably: within `max_rounds` rounds (a round ticks
    /// every node, persists every write and delivers every message) some node must lead, known
    /// as leader by every live voter; then a proposal of it must be applied by every member.
    pub fn check_liveness(&mut self, max_rounds: u32) -> Result<(), String> {
        self.crash_on_commit_percent = 0;
        self.crash_on_election_percent = 0;
        self.pending_crash.clear();
        self.delayed.clear();
        self.heal();
        self.faults = Faults { drop_percent: 0, duplicate_percent: 0 };
        for id in self.ids() {
            self.restart(id);
        }
        // (leader, term, index of its proposal)
        let mut proposal: Option<(NodeId, Term, LogIndex)> = None;
        for _ in 0..max_rounds {
            self.round();
            if let Some((leader, term, index)) = proposal {
                let members: Vec<NodeId> = self.core(leader).membership().members().collect();
                if members.iter().all(|m| self.nodes[m].applied.len() as u64 >= index.0) {
                    self.check_log_matching();
                    return Ok(());
                }
                if self.core(leader).term() != term || self.core(leader).role() != Role::Leader {
                    proposal = None; // deposed before it committed: the entry may be lost, try again
                }
            }
            if proposal.is_none() {
                if let Some(l) = self.stable_leader() {
                    let term = self.core(l).term();
                    proposal = self.propose(l).map(|i| (l, term, i));
                }
            }
        }
        Err(format!("no proposal of a stable leader applied everywhere within {max_rounds} rounds after heal (last try {proposal:?}); {}", self.describe()))
    }

    pub fn round(&mut self) {
        for id in self.ids() {
            self.tick(id);
        }
        for _ in 0..4 {
            for id in self.ids() {
                self.persist(id, usize::MAX);
            }
            let mut delivered = 0u32;
            while !self.bus.is_empty() {
                self.deliver(0);
                delivered += 1;
                assert!(delivered < 100_000, "a message storm: 100,000 deliveries in one round without quiescing; {}", self.describe());
            }
        }
    }

    /// A leader that every live voter of its configuration follows in its term.
    pub fn stable_leader(&self) -> Option<NodeId> {
        let leaders = self.leaders_now();
        let [l] = leaders[..] else { return None };
        let core = self.core(l);
        let ok = core.membership().voters.iter().all(|v| {
            self.nodes[v].core.as_ref().is_some_and(|c| c.term() == core.term() && c.leader() == Some(l))
        });
        ok.then_some(l)
    }

    pub fn describe(&self) -> String {
        let mut s = String::new();
        for n in self.nodes.values() {
            match &n.core {
                Some(c) => {
                    let _ = write!(
                        s,
                        "[{} {:?} t{} leader {:?} last {} commit {} durable {} applied {} voters {:?}] ",
                        n.id,
                        c.role(),
                        c.term().0,
                        c.leader().map(|l| l.0),
                        c.last_index().0,
                        c.commit_index().0,
                        c.durable_index().0,
                        n.applied.len(),
                        c.membership().voters.iter().map(|v| v.0).collect::<Vec<_>>()
                    );
                }
                None => {
                    let _ = write!(s, "[{} down] ", n.id);
                }
            }
        }
        s
    }
}

impl Node {
    /// The state machine the snapshot now on disk stands for.
    fn mem_applied_snapshot(&self) -> Vec<Entry> {
        self.applied[..(self.disk.snapshot.index.0 as usize).min(self.applied.len())].to_vec()
    }
}

fn short(msg: &Msg) -> String {
    match msg {
        Msg::Append { term, prev_index, prev_term, commit, entries } => format!(
            "Append t{} prev {}/t{} commit {} [{}]",
            term.0,
            prev_index.0,
            prev_term.0,
            commit.0,
            entries.iter().map(data_id).collect::<Vec<_>>().join(" ")
        ),
        other => format!("{other:?}"),
    }
}

/// Run one random schedule of `events` events from `seed`; Err names the seed's failure.
pub fn run_schedule(seed: u64, events: u32, tracing: bool) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    // Churn (a quarter of the schedules): three voters, one entry per append, and leaders
    // crashing the moment they commit or win: the shape of the paper's Figure 8.
    let churn = rng.chance(25);
    let voters = if churn { 3 } else { 3 + rng.below(3) as u32 };
    let spares = if churn { 0 } else { rng.below(2) as u32 };
    let opts = Options {
        election_timeout_ticks: 6 + rng.below(6) as u32,
        heartbeat_interval_ticks: 1 + rng.below(2) as u32,
        max_inflight_msgs: 1 + rng.below(4) as usize,
        max_entries_per_msg: if churn { 1 } else { 1 + rng.below(4) },
        pre_vote: rng.chance(80),
        check_quorum: rng.chance(80),
        ..Options::default()
    };
    let faults = Faults { drop_percent: rng.below(15), duplicate_percent: rng.below(10) };
    let targeted = churn || rng.chance(50);
    let mut c = Cluster::new(rng.next_u64(), voters, spares, opts);
    c.faults = faults;
    c.restart_percent = if churn { 30 } else { 0 };
    if targeted {
        let base = if churn { 30 } else { 0 };
        c.crash_on_commit_percent = base + rng.below(30);
        c.crash_on_election_percent = base + rng.below(30);
    }
    if rng.chance(50) {
        c.delay_percent = 1 + rng.below(10);
    }
    // Half the schedules replicate a partition-like log: most entries are record batches.
    if rng.chance(50) {
        c.batch_percent = 60;
    }
    c.tracing = tracing;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for _ in 0..events {
            c.random_event();
        }
        c.check_log_matching();
        c.check_liveness(300)
    }));
    if std::env::var("RAFT_STATS").is_ok() {
        let max_term = c.leaders.keys().last().map(|t| t.0).unwrap_or(0);
        let snaps = c.snapshot_store.len();
        let cfgs = c.committed.iter().filter(|e| matches!(e.payload, Payload::Config(_))).count();
        let batch_cells = c.committed.iter().filter(|e| matches!(e.payload, Payload::Batch { .. })).count();
        eprintln!("seed {seed}: voters {voters} committed {} leaders {} max term {max_term} snapshots sent {snaps} configs {cfgs} batch indexes {batch_cells} reads {} ok {}", c.committed.len(), c.leaders.len(), c.reads_confirmed, matches!(result, Ok(Ok(()))));
    }
    let verdict = match result {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => e,
        Err(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into()),
    };
    let tail: Vec<String> = c.trace.iter().rev().take(60).rev().cloned().collect();
    Err(format!("seed {seed}: {verdict}\n{}", tail.join("\n")))
}
