//! Three replicas of one partition (`strand::replica`), each a `RaftCore` on a `ReplicaStore`
//! over its own SimDisk, stepped in one task by a seeded schedule: messages delivered in random
//! order or dropped, nodes cut off and healed, power losses (the core and the open log dropped,
//! the disk losing or tearing what was not synced, then reopened from it), a replica whose disk
//! fails stopping (fail-stop), proposals of record batches at whoever leads. Checked as it runs:
//! every core's log end and term index are its partition log's end and leader-epoch cache; a
//! high watermark never goes back within a run of a node, nor passes the commit index; at the
//! end, after healing: every replica holds the same bytes up to the high watermark, and every
//! batch a leader saw committed is there at its offset. Each seed's schedules must elect
//! several leaders and commit, and the sweep as a whole must cut divergent suffixes (ci/run.sh
//! sums them), or it tests nothing.
//!
//! Run by ci/run.sh: `RUSTFLAGS="--cfg madsim" cargo test -p strand-sim --test replicas`
//! (`MADSIM_TEST_NUM` seeds; the planted bug `replica-ack-before-fsync` must be caught).
#![cfg(madsim)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use bytes::Bytes;

use std::sync::Arc;

use madsim::rand::Rng as _;
use strand::config::TopicConfig;
use strand::protocol::batch::{build_simple_batch, split_batches};
use strand::raft::{LogIndex, LogWrite, Msg, NodeId, Options, Output, RaftCore, Replicate, Role};
use strand::replica::store::{place_batch, ReplicaStore, StoreError};
use strand::runtime::Runtime;
use strand_sim::clock::SimClock;
use strand_sim::disk::{DiskFaults, SimDisk};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

struct Replica {
    dir: PathBuf,
    disk: SimDisk,
    clock: SimClock,
    core: Option<RaftCore>,
    store: Option<ReplicaStore>,
    /// The high watermark this run of the node last showed.
    hw: i64,
}

struct Cluster {
    rng: Rng,
    nodes: BTreeMap<NodeId, Replica>,
    bus: Vec<(NodeId, NodeId, Msg)>,
    isolated: BTreeSet<NodeId>,
    /// Batches a leader proposed: base offset -> (term, bytes).
    proposed: BTreeMap<i64, Vec<(u64, Bytes)>>,
    /// Offsets whose batch a leader saw committed: offset -> bytes.
    committed: BTreeMap<i64, Bytes>,
    next_value: u64,
    /// Divergent suffixes cut (writes with a truncation), control batches written by leaders.
    truncations: u64,
    max_term: u64,
    /// The shell's byte limit per append: unlimited, or (half the schedules) so small that an
    /// append often carries less than the core asked for.
    append_bytes: usize,
}

const MEMBERS: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];

fn options(seed: u64) -> Options {
    Options { election_timeout_ticks: 8, heartbeat_interval_ticks: 1, max_entries_per_msg: 7, jitter_seed: seed, ..Options::default() }
}

impl Cluster {
    async fn new(root: &std::path::Path, seed: u64, faults: DiskFaults) -> Cluster {
        let mut nodes = BTreeMap::new();
        for id in MEMBERS {
            let dir = root.join(format!("node{}", id.0)).join("t-0");
            let disk = SimDisk::new();
            disk.set_faults(faults.clone());
            nodes.insert(id, Replica { dir, disk, clock: SimClock::new(), core: None, store: None, hw: 0 });
        }
        let mut c = Cluster {
            rng: Rng(seed),
            nodes,
            bus: Vec::new(),
            isolated: BTreeSet::new(),
            proposed: BTreeMap::new(),
            committed: BTreeMap::new(),
            next_value: 0,
            truncations: 0,
            max_term: 0,
            append_bytes: usize::MAX,
        };
        if c.rng.chance(50) {
            c.append_bytes = 100 + c.rng.below(300) as usize;
        }
        for id in MEMBERS {
            c.start(id).await;
        }
        c
    }

    /// Start (or restart) a node from its disk. A disk error keeps it down until a later try.
    async fn start(&mut self, id: NodeId) {
        let seed = self.rng.next();
        let node = self.nodes.get_mut(&id).unwrap();
        let mut config = TopicConfig::default();
        config.set("segment.bytes", "2048").unwrap();
        let runtime = Runtime { disk: Arc::new(node.disk.clone()), clock: Arc::new(node.clock.clone()) };
        let store = match ReplicaStore::open(runtime, node.dir.clone(), config, &MEMBERS).await {
            Ok(store) => store,
            Err(StoreError::Io { .. } | StoreError::Log(strand::log::Error::Io { .. })) => return,
            Err(e) => panic!("node {id}: the replica did not open: {e}"),
        };
        let core = RaftCore::new(id, options(seed), store.hard_state(), store.log_state(), LogIndex(0));
        node.core = Some(core);
        node.store = Some(store);
        node.hw = 0;
        self.check(id);
    }

    /// The node stops. With `power_loss`, its disk loses (or tears) what was not synced.
    fn crash(&mut self, id: NodeId, power_loss: bool) {
        let node = self.nodes.get_mut(&id).unwrap();
        node.core = None;
        node.store = None; // dropped, not closed: no final sync or checkpoint
        if power_loss {
            node.disk.crash();
        }
        self.bus.retain(|m| m.1 != id);
    }

    /// A disk error stops the replica (fail-stop); anything else is a bug.
    fn failed(&mut self, id: NodeId, e: StoreError) {
        match e {
            StoreError::Io { .. } | StoreError::Log(strand::log::Error::Io { .. } | strand::log::Error::Failed { .. }) => {
                self.crash(id, false);
            }
            e => panic!("node {id}: {e}"),
        }
    }

    /// Carry out `out` for `id`: the term and vote first, then the writes, then the messages.
    async fn execute(&mut self, id: NodeId, out: Output) {
        if let Err(e) = self.try_execute(id, out).await {
            self.failed(id, e);
            return;
        }
        self.note_commits(id).await;
        self.check(id);
    }

    async fn try_execute(&mut self, id: NodeId, out: Output) -> Result<(), StoreError> {
        let node = self.nodes.get_mut(&id).unwrap();
        let store = node.store.as_mut().unwrap();
        if let Some(hard) = out.hard_state {
            store.save_hard_state(hard).await?;
        }
        for w in &out.writes {
            if let LogWrite::Append { truncate_from: Some(_), .. } = w {
                self.truncations += 1;
            }
            store.write(w).await?;
        }
        let mut msgs = out.send;
        for r in out.replicate {
            match r {
                Replicate::Entries { to, term, prev_index, commit, range, .. } => {
                    let (prev_index, prev_term, entries) = store.entries_for(prev_index, range.end, self.append_bytes).await?;
                    msgs.push((to, Msg::Append { term, prev_index, prev_term, commit, entries }));
                }
                Replicate::Snapshot { to, term, meta } => msgs.push((to, Msg::Snapshot { term, meta, data: Bytes::new() })),
            }
        }
        if let Some(commit) = out.commit_index {
            store.set_commit(commit);
        }
        for (to, msg) in msgs {
            if !self.isolated.contains(&id) && !self.isolated.contains(&to) {
                self.bus.push((id, to, msg));
            }
        }
        Ok(())
    }

    /// Sync a node's log and tell its core.
    async fn persist(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).unwrap();
        let Some(store) = node.store.as_mut() else { return };
        match store.sync().await {
            Ok(Some(last)) => {
                let mut out = Output::default();
                node.core.as_mut().unwrap().persisted(last, &mut out);
                Box::pin(self.execute(id, out)).await;
            }
            Ok(None) => {}
            Err(e) => self.failed(id, e),
        }
    }

    async fn deliver(&mut self, at: usize) {
        let (from, to, msg) = self.bus.remove(at);
        let Some(core) = self.nodes.get_mut(&to).unwrap().core.as_mut() else { return };
        let mut out = Output::default();
        core.step(from, msg, &mut out);
        self.execute(to, out).await;
    }

    async fn tick(&mut self, id: NodeId) {
        let Some(core) = self.nodes.get_mut(&id).unwrap().core.as_mut() else { return };
        let mut out = Output::default();
        core.tick(&mut out);
        self.execute(id, out).await;
    }

    /// A producer's batch of 1-3 records, placed at the leader's log end in its term.
    async fn propose(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).unwrap();
        let Some(core) = node.core.as_mut() else { return };
        if core.role() != Role::Leader {
            return;
        }
        let count = 1 + (self.next_value % 3) as usize;
        let values: Vec<Vec<u8>> = (0..count).map(|i| format!("v{}-{i}", self.next_value).into_bytes()).collect();
        self.next_value += 1;
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let base = core.last_index().0 as i64;
        let bytes = place_batch(&build_simple_batch(0, 1_000, &refs), base, core.term().0 as i32);
        let mut out = Output::default();
        let Ok(range) = core.propose_batches(vec![(count as u32, bytes.clone())], &mut out) else { return };
        assert_eq!(range.start, LogIndex(base as u64 + 1), "the core placed the batch where the leader put it");
        self.proposed.entry(base).or_default().push((core.term().0, bytes));
        self.execute(id, out).await;
    }

    /// A leader's commit index covers proposals: those still in its log are committed.
    async fn note_commits(&mut self, id: NodeId) {
        let node = &self.nodes[&id];
        let (Some(core), Some(store)) = (node.core.as_ref(), node.store.as_ref()) else { return };
        if core.role() != Role::Leader {
            return;
        }
        let commit = core.commit_index().0 as i64;
        let candidates: Vec<(i64, Bytes)> = self
            .proposed
            .range(..commit)
            .filter(|(o, _)| !self.committed.contains_key(o))
            .flat_map(|(o, v)| v.iter().map(move |(_, b)| (*o, b.clone())))
            .collect();
        for (offset, bytes) in candidates {
            // (A read the disk corrupted is not evidence either way: checked again later.)
            let Ok(read) = store.log().read(offset, 1 << 20, commit).await else { continue };
            let Ok((batches, _)) = split_batches(&read.records) else { continue };
            if batches.first().is_some_and(|b| b.base_offset() == offset && b.bytes() == &bytes[..]) {
                self.committed.insert(offset, bytes);
            }
        }
    }

    /// A core's view of its log is its partition log's; the high watermark never goes back.
    fn check(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).unwrap();
        let (Some(core), Some(store)) = (node.core.as_ref(), node.store.as_ref()) else { return };
        assert_eq!(core.last_index().0 as i64, store.log().log_end_offset(), "node {id}: core's log end vs the partition's");
        assert_eq!(core.log().epochs(), &store.log_state().epochs[..], "node {id}: core's term index vs the leader-epoch cache");
        self.max_term = self.max_term.max(core.term().0);
        let hw = store.log().high_watermark();
        assert!(hw >= node.hw, "node {id}: high watermark went back from {} to {hw}", node.hw);
        assert!(hw <= core.commit_index().0 as i64, "node {id}: high watermark {hw} past the commit index");
        node.hw = hw;
    }

    async fn random_event(&mut self) {
        let ids: Vec<NodeId> = MEMBERS.to_vec();
        let pick = ids[self.rng.below(3) as usize];
        match self.rng.below(100) {
            0..=44 => {
                if !self.bus.is_empty() {
                    let n = self.bus.len() as u64;
                    let at = if self.rng.chance(70) { self.rng.below(n.min(3)) } else { self.rng.below(n) } as usize;
                    if self.rng.chance(5) {
                        self.bus.remove(at);
                    } else {
                        self.deliver(at).await;
                    }
                }
            }
            45..=59 => self.tick(pick).await,
            60..=74 => self.persist(pick).await,
            75..=89 => {
                for id in ids {
                    self.propose(id).await;
                }
            }
            90..=93 => {
                if self.isolated.is_empty() && self.rng.chance(50) {
                    self.isolated.insert(pick);
                } else {
                    self.isolated.clear();
                }
            }
            94..=95 => {
                // Power loss on one node, or now and then on all of them at once.
                if self.rng.chance(5) {
                    for id in MEMBERS {
                        self.crash(id, true);
                    }
                } else if self.nodes[&pick].core.is_some() {
                    self.crash(pick, true);
                }
            }
            _ => {
                let down: Vec<NodeId> = self.nodes.iter().filter(|(_, n)| n.core.is_none()).map(|(id, _)| *id).collect();
                for id in down {
                    self.start(id).await;
                }
            }
        }
    }

    /// Heal everything and run until a batch proposed after the heal is committed and every
    /// replica's commit index is its leader's log end (liveness).
    async fn settle(&mut self) {
        self.isolated.clear();
        for n in self.nodes.values() {
            n.disk.set_faults(DiskFaults::default());
        }
        let down: Vec<NodeId> = self.nodes.iter().filter(|(_, n)| n.core.is_none()).map(|(id, _)| *id).collect();
        for id in down {
            self.start(id).await;
        }
        let healed_at = self.committed.keys().last().copied();
        for _ in 0..400 {
            if self.committed.keys().last().copied() == healed_at {
                for id in MEMBERS {
                    self.propose(id).await;
                }
            }
            let down: Vec<NodeId> = self.nodes.iter().filter(|(_, n)| n.core.is_none()).map(|(id, _)| *id).collect();
            for id in down {
                self.start(id).await;
            }
            for id in MEMBERS {
                self.tick(id).await;
                self.persist(id).await;
            }
            while !self.bus.is_empty() {
                self.deliver(0).await;
            }
            for id in MEMBERS {
                self.persist(id).await;
            }
            while !self.bus.is_empty() {
                self.deliver(0).await;
            }
            let leaders: Vec<&RaftCore> = self.nodes.values().filter_map(|n| n.core.as_ref()).filter(|c| c.leader_ready()).collect();
            if let [leader] = leaders[..] {
                let end = leader.last_index();
                let proposed_after_heal = self.committed.keys().last().copied() != healed_at;
                if proposed_after_heal && leader.commit_index() == end && self.nodes.values().all(|n| n.core.as_ref().is_some_and(|c| c.commit_index() == end)) {
                    return;
                }
            }
        }
        panic!("no batch proposed after healing was committed on every replica");
    }

    /// Every replica's batches up to its high watermark, as bytes.
    async fn log_bytes(&self, id: NodeId) -> Vec<(i64, Bytes)> {
        let store = self.nodes[&id].store.as_ref().unwrap();
        let hw = store.log().high_watermark();
        let mut out = Vec::new();
        let mut offset = store.log().log_start_offset();
        while offset < hw {
            let read = store.log().read(offset, 1 << 20, hw).await.unwrap();
            let (batches, _) = split_batches(&read.records).unwrap();
            for b in &batches {
                out.push((b.base_offset(), Bytes::copy_from_slice(b.bytes())));
                offset = b.next_offset();
            }
        }
        out
    }
}

/// (batches committed, truncations, highest term) of one schedule.
async fn run(seed: u64, events: u32, faults: DiskFaults) -> (usize, u64, u64) {
    let root = PathBuf::from("/data");
    let mut c = Cluster::new(&root, seed, faults).await;
    for _ in 0..events {
        c.random_event().await;
    }
    c.settle().await;
    let first = c.log_bytes(NodeId(1)).await;
    for id in [NodeId(2), NodeId(3)] {
        assert!(c.log_bytes(id).await == first, "seed {seed}: replicas 1 and {id} differ below the high watermark");
    }
    let held: BTreeMap<i64, Bytes> = first.into_iter().collect();
    for (offset, bytes) in &c.committed {
        assert_eq!(held.get(offset), Some(bytes), "seed {seed}: the batch committed at {offset} is gone");
    }
    for n in c.nodes.values_mut() {
        n.store.take().unwrap().close().await.unwrap();
    }
    (c.committed.len(), c.truncations, c.max_term)
}

#[madsim::test]
async fn replicas_of_a_partition_log_agree_under_power_loss() {
    // Several schedules per madsim seed (MADSIM_TEST_NUM seeds in all).
    let schedules = 4;
    let (mut committed, mut truncations, mut terms) = (0, 0, 0);
    for _ in 0..schedules {
        let mut rng = madsim::rand::thread_rng();
        let seed: u64 = rng.gen();
        let faults = if rng.gen_bool(0.5) {
            DiskFaults { sync_eio_per_mille: rng.gen_range(0..20), write_eio_per_mille: rng.gen_range(0..10), latency_us_max: 200, ..DiskFaults::default() }
        } else {
            DiskFaults::default()
        };
        let (c, t, m) = run(seed, 3000, faults.clone()).await;
        eprintln!("schedule {seed}: {c} batches committed, {t} truncations, term {m} ({faults:?})");
        committed += c;
        truncations += t;
        terms += m;
    }
    // The schedules must reach what they are for: elections and commits. (Divergent suffixes
    // cut are counted over the whole sweep by ci/run.sh: four schedules may all go without.)
    assert!(committed > 0 && terms > schedules * 2, "{committed} committed, {truncations} truncations, {terms} terms in all");
}
