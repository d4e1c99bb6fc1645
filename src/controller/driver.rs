//! The Raft shell of the metadata quorum: one task per node drives a [`RaftCore`] with the
//! inter-broker transport's messages, a ticker and proposals, and executes what each call
//! asks in the core's order: the hard state durable, the log writes durable (then the core
//! hears `persisted`), then the messages. Committed entries go to the state machine (`apply`)
//! in order; a proposal is answered once its entry is committed with the term it was proposed
//! in. A storage error ends the task (fail-stop): the node stops taking part instead of going
//! on with a log it cannot trust.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use super::log_store::LogStore;
use crate::raft::{Entry, LogIndex, Membership, Msg, NodeId, Options, Output, ProposeError, RaftCore, Replicate, Role, SnapshotMeta, Term};
use crate::runtime::Runtime;
use crate::transport::{Envelope, GroupId, Message, TransportHandle};

/// Proposals queued for the driver at most.
pub const QUORUM_COMMANDS_MAX: usize = 1024;
/// Proposals forwarded to the leader and not answered yet, at most (more are refused as if
/// there were no leader; the caller retries).
pub const FORWARDED_MAX: usize = 1024;

#[derive(Clone, Debug)]
pub struct QuorumConfig {
    pub node_id: NodeId,
    pub voters: Vec<NodeId>,
    /// How long one Raft tick is.
    pub tick_ms: u64,
    pub options: Options,
    pub dir: PathBuf,
}

/// What the leader knows of a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// Since the member last answered the leader (0 for the leader itself).
    pub heard_ms_ago: u64,
    /// The member's log is known to match the leader's up to here.
    pub match_index: LogIndex,
}

/// What the node's core says of itself, after every step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumStatus {
    pub term: Term,
    pub role: Role,
    pub leader: Option<NodeId>,
    pub commit_index: LogIndex,
    /// The leader has committed an entry of its own term (it knows the whole committed log).
    pub leader_ready: bool,
    /// On the leader: every member (itself included). Empty elsewhere.
    pub peers: BTreeMap<NodeId, PeerStatus>,
    /// False once the driver stopped (a storage error).
    pub running: bool,
}

type ProposeReply = oneshot::Sender<Result<LogIndex, ProposeError>>;

enum Command {
    Propose { data: Bytes, reply: ProposeReply },
    /// Stop the driver; a leader first hands its leadership to its most caught-up voter.
    Stop { done: oneshot::Sender<()> },
    /// The state machine's state up to `index` (applied there): the log may start after it.
    Compact { index: LogIndex, data: Bytes },
}

/// The quorum shell's own messages between nodes (in [`Message::Control`]): a follower
/// forwards a proposal to the leader it knows, which answers once the entry is committed in
/// the term it was proposed in (`Ok(index)`), or at once when it cannot propose
/// (`Err(leader it knows)`).
#[derive(Debug, Serialize, Deserialize)]
enum Control {
    /// `term`: the term of the leader it is sent to, as the sender knows it. A leader proposes
    /// it only in that term, so a forward that arrives late (queued while the leader was cut off,
    /// delivered after it was re-elected in a later term) cannot land after a barrier the
    /// proposer committed meanwhile under another leader.
    Forward { id: u64, term: Term, data: Bytes },
    Forwarded { id: u64, result: Result<u64, Option<NodeId>> },
}

/// Who waits for an entry to commit.
enum Waiter {
    Local(ProposeReply),
    Remote { to: NodeId, id: u64 },
}

#[derive(Clone)]
pub struct QuorumHandle {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<QuorumStatus>,
}

impl QuorumHandle {
    /// Propose `data` (on a follower: forwarded to the leader); the answer comes once it is
    /// committed (its index), or says why not. `Err(None)`: the outcome is unknown (the entry
    /// may still commit): `timeout_ms` passed, or the leader it was forwarded to lost its
    /// leadership before answering.
    pub async fn propose(&self, data: Bytes, timeout_ms: u64) -> Result<LogIndex, Option<ProposeError>> {
        let (reply, answer) = oneshot::channel();
        self.commands.try_send(Command::Propose { data, reply }).map_err(|_| None)?;
        match tokio::time::timeout(Duration::from_millis(timeout_ms), answer).await {
            Ok(Ok(result)) => result.map_err(Some),
            _ => Err(None),
        }
    }
    pub fn status(&self) -> QuorumStatus {
        self.status.borrow().clone()
    }

    /// The state machine's snapshot at `index` (everything up to it applied, nothing after):
    /// the log is compacted to start after it, if `index` is committed and durable here and no
    /// membership change is pending past it (else it is ignored; the next one will do). Never
    /// waits: when the driver's queue is full the snapshot is dropped.
    pub fn compact(&self, index: LogIndex, data: Bytes) {
        let _ = self.commands.try_send(Command::Compact { index, data });
    }

    /// Stop this node's part in the quorum (graceful shutdown). A leader first transfers its
    /// leadership (so the others need not wait an election timeout), waiting at most one
    /// election timeout for it. Returns once the driver has stopped.
    pub async fn stop(&self) {
        let (done, stopped) = oneshot::channel();
        if self.commands.send(Command::Stop { done }).await.is_ok() {
            let _ = stopped.await;
        }
    }
    /// Changes of the status (for waiting on a leader or a commit index).
    pub fn watch(&self) -> watch::Receiver<QuorumStatus> {
        self.status.clone()
    }
}

/// What the state machine is given, in log order, once per start of the node.
pub enum Applied<'a> {
    /// The state up to `meta.index` (at start, or installed from the leader): the state machine
    /// replaces its state with `data`'s.
    Snapshot { meta: &'a SnapshotMeta, data: &'a Bytes },
    /// A committed entry.
    Entry { index: LogIndex, entry: &'a Entry },
}

/// The state machine.
pub type Apply = Box<dyn FnMut(Applied<'_>) + Send>;

/// Open the quorum's log in `config.dir` and start its driver on this node.
pub async fn start(
    runtime: &Runtime,
    config: QuorumConfig,
    transport: TransportHandle,
    inbox: mpsc::Receiver<Envelope>,
    apply: Apply,
) -> io::Result<QuorumHandle> {
    let membership = Membership { voters: config.voters.iter().copied().collect(), learners: Default::default() };
    let store = LogStore::open(runtime.disk.clone(), config.dir.clone(), membership).await?;
    let options = Options { jitter_seed: crate::runtime::rng::random_u64(), ..config.options.clone() };
    let core = RaftCore::new(config.node_id, options, store.hard_state(), store.log_state(), LogIndex(0));
    let status = QuorumStatus {
        term: core.term(),
        role: core.role(),
        leader: core.leader(),
        commit_index: core.commit_index(),
        leader_ready: false,
        peers: BTreeMap::new(),
        running: true,
    };
    let (status_tx, status_rx) = watch::channel(status);
    let (commands_tx, commands_rx) = mpsc::channel(QUORUM_COMMANDS_MAX);
    let driver = Driver {
        core,
        store,
        transport,
        applied: LogIndex(0),
        pending: BTreeMap::new(),
        forwarded: BTreeMap::new(),
        next_forward: 1,
        apply,
        status: status_tx,
        tick_ms: config.tick_ms,
        stopping: None,
    };
    tokio::spawn(driver.run(inbox, commands_rx, config.tick_ms));
    Ok(QuorumHandle { commands: commands_tx, status: status_rx })
}

struct Driver {
    core: RaftCore,
    store: LogStore,
    transport: TransportHandle,
    applied: LogIndex,
    /// Proposals waiting for their entry to commit: index -> (term proposed in, who waits).
    pending: BTreeMap<LogIndex, (Term, Waiter)>,
    /// Proposals this node forwarded to a leader: id -> the proposer's reply.
    forwarded: BTreeMap<u64, ProposeReply>,
    next_forward: u64,
    apply: Apply,
    status: watch::Sender<QuorumStatus>,
    tick_ms: u64,
    /// A stop was asked: who waits, and ticks left for a leadership transfer.
    stopping: Option<(oneshot::Sender<()>, u32)>,
}

impl Driver {
    async fn run(mut self, mut inbox: mpsc::Receiver<Envelope>, mut commands: mpsc::Receiver<Command>, tick_ms: u64) {
        let (meta, data) = self.store.snapshot();
        if meta.index > LogIndex(0) {
            (self.apply)(Applied::Snapshot { meta, data });
        }
        self.applied = meta.index;
        let mut ticker = tokio::time::interval(Duration::from_millis(tick_ms));
        loop {
            let mut out = Output::default();
            tokio::select! {
                biased;
                Some(envelope) = inbox.recv() => {
                    if envelope.group == GroupId::Metadata && envelope.from != self.core.id() {
                        match envelope.msg {
                            Message::Raft(crate::raft::Msg::Append { entries, .. })
                                if entries.iter().any(|e| matches!(e.payload, crate::raft::Payload::Batch { .. })) =>
                            {
                                // The metadata log holds one-index entries only (its store
                                // counts them so): a peer of another build.
                                tracing::warn!(node = %self.core.id(), from = %envelope.from, "metadata quorum: dropping an append carrying record batches");
                            }
                            Message::Raft(msg) => self.core.step(envelope.from, msg, &mut out),
                            Message::Control(bytes) => self.control(envelope.from, &bytes, &mut out),
                        }
                    }
                }
                Some(command) = commands.recv() => match command {
                    Command::Propose { data, reply } => self.propose(data, reply, &mut out),
                    Command::Compact { index, data } => {
                        if let Err(e) = self.compact(index, data).await {
                            tracing::error!(node = %self.core.id(), error = %e, "metadata quorum: snapshot write failed; this node stops taking part (fail-stop)");
                            self.status.send_modify(|s| s.running = false);
                            return;
                        }
                    }
                    Command::Stop { done } => {
                        let me = self.core.id();
                        let best = self
                            .core
                            .membership()
                            .voters
                            .iter()
                            .copied()
                            .filter(|v| *v != me)
                            .max_by_key(|v| self.core.match_index(*v));
                        if let (Role::Leader, Some(to)) = (self.core.role(), best) {
                            let _ = self.core.transfer_leadership(to, &mut out);
                        }
                        self.stopping = Some((done, self.core_election_ticks()));
                    }
                },
                _ = ticker.tick() => {
                    if let Some((_, left)) = &mut self.stopping {
                        *left = left.saturating_sub(1);
                    }
                    self.core.tick(&mut out);
                    // Forwarded proposals whose proposer gave up (timed out) are forgotten.
                    self.forwarded.retain(|_, reply| !reply.is_closed());
                }
            }
            if let Err(e) = self.execute(out).await {
                tracing::error!(node = %self.core.id(), error = %e, "metadata quorum: log write failed; this node stops taking part (fail-stop)");
                self.status.send_modify(|s| s.running = false);
                return;
            }
            self.apply_committed();
            if self.core.leader() != self.status.borrow().leader && !self.forwarded.is_empty() {
                // The leader they went to is not the leader any more: their answers may never
                // come. Dropping the replies tells each proposer at once that the outcome is
                // unknown (it settles that itself) instead of after its timeout.
                self.forwarded.clear();
            }
            if let Some((_, left)) = &self.stopping {
                if self.core.role() != Role::Leader || *left == 0 {
                    let (done, _) = self.stopping.take().expect("checked");
                    self.status.send_modify(|s| s.running = false);
                    tracing::info!(node = %self.core.id(), "metadata quorum: this node stopped");
                    let _ = done.send(());
                    return;
                }
            }
            let c = &self.core;
            let peers = match c.role() {
                Role::Leader => c
                    .membership()
                    .members()
                    .filter_map(|m| {
                        let heard = c.heard_ticks_ago(m)?;
                        let match_index = c.match_index(m)?;
                        Some((m, PeerStatus { heard_ms_ago: heard.saturating_mul(self.tick_ms), match_index }))
                    })
                    .collect(),
                _ => BTreeMap::new(),
            };
            let status = QuorumStatus {
                term: c.term(),
                role: c.role(),
                leader: c.leader(),
                commit_index: c.commit_index(),
                leader_ready: c.leader_ready(),
                peers,
                running: true,
            };
            self.status.send_if_modified(|s| {
                let changed = *s != status;
                *s = status;
                changed
            });
        }
    }

    async fn compact(&mut self, index: LogIndex, data: Bytes) -> io::Result<()> {
        let c = &self.core;
        let start = self.store.snapshot().0.index;
        if index <= start || index > c.commit_index() || index > c.durable_index() || index > self.applied || c.log().membership_index() > index {
            return Ok(());
        }
        let term = self.store.entry(index).expect("a committed index past the log start is in the log").term;
        let meta = SnapshotMeta { index, term, membership: c.log().membership().clone() };
        self.store.compact(meta, data).await?;
        self.core.compact(index);
        tracing::debug!(node = %self.core.id(), ?index, "metadata quorum: log compacted to a snapshot");
        Ok(())
    }

    fn core_election_ticks(&self) -> u32 {
        self.core.options().election_timeout_ticks
    }

    /// A proposal of this node: proposed here when we lead, forwarded to the leader we know,
    /// refused when we know none.
    fn propose(&mut self, data: Bytes, reply: ProposeReply, out: &mut Output) {
        if self.core.role() == Role::Leader {
            match self.core.propose(vec![data], out) {
                Ok(range) => {
                    self.pending.insert(range.start, (self.core.term(), Waiter::Local(reply)));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
            return;
        }
        match self.core.leader() {
            Some(leader) if self.forwarded.len() < FORWARDED_MAX => {
                let id = self.next_forward;
                self.next_forward += 1;
                self.forwarded.insert(id, reply);
                self.send_control(leader, &Control::Forward { id, term: self.core.term(), data });
            }
            leader => {
                let _ = reply.send(Err(ProposeError::NotLeader { leader }));
            }
        }
    }

    fn send_control(&self, to: NodeId, control: &Control) {
        let bytes = Bytes::from(postcard::to_allocvec(control).expect("postcard encodes our own types"));
        let from = self.core.id();
        self.transport.send(to, Envelope { group: GroupId::Metadata, from, msg: Message::Control(bytes) });
    }

    /// A control message from a peer. One that does not decode is dropped (and logged): the
    /// transport checked the frame, so this is a peer of another build.
    fn control(&mut self, from: NodeId, bytes: &[u8], out: &mut Output) {
        let control: Control = match postcard::from_bytes(bytes) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(node = %self.core.id(), %from, error = %e, "metadata quorum: dropping a control message that does not decode");
                return;
            }
        };
        match control {
            Control::Forward { id, term, data } => {
                let refused = if self.core.role() == Role::Leader && self.core.term() == term {
                    match self.core.propose(vec![data], out) {
                        Ok(range) if crate::raft::planted("raft-forward-ack-before-commit") => {
                            // Planted bug: answered before the entry is committed.
                            self.send_control(from, &Control::Forwarded { id, result: Ok(range.start.0) });
                            None
                        }
                        Ok(range) => {
                            self.pending.insert(range.start, (self.core.term(), Waiter::Remote { to: from, id }));
                            None
                        }
                        Err(_) => Some(self.core.leader()),
                    }
                } else {
                    Some(self.core.leader())
                };
                if let Some(leader) = refused {
                    self.send_control(from, &Control::Forwarded { id, result: Err(leader) });
                }
            }
            Control::Forwarded { id, result } => {
                if let Some(reply) = self.forwarded.remove(&id) {
                    let _ = reply.send(result.map(LogIndex).map_err(|leader| ProposeError::NotLeader { leader }));
                }
            }
        }
    }

    /// Execute `out` in the core's order, then the outputs its `persisted` calls leave.
    async fn execute(&mut self, mut out: Output) -> io::Result<()> {
        loop {
            if let Some(hard) = out.hard_state.take() {
                self.store.save_hard_state(hard).await?;
            }
            let mut last_write = None;
            for write in std::mem::take(&mut out.writes) {
                self.store.write(&write).await?;
                last_write = Some(write.id());
            }
            let from = self.core.id();
            for (to, msg) in out.send.drain(..) {
                self.transport.send(to, Envelope { group: GroupId::Metadata, from, msg: msg.into() });
            }
            for replicate in out.replicate.drain(..) {
                let (to, msg) = match replicate {
                    Replicate::Entries { to, term, prev_index, prev_term, commit, range } => {
                        let entries: Vec<Entry> = (range.start.0..range.end.0)
                            .map(|i| self.store.entry(LogIndex(i)).cloned().expect("the core replicates what the log holds"))
                            .collect();
                        (to, Msg::Append { term, prev_index, prev_term, commit, entries })
                    }
                    Replicate::Snapshot { to, term, meta } => {
                        let (stored, data) = self.store.snapshot();
                        assert_eq!(*stored, meta, "the core's log start is the store's");
                        (to, Msg::Snapshot { term, meta, data: data.clone() })
                    }
                };
                self.transport.send(to, Envelope { group: GroupId::Metadata, from, msg: msg.into() });
            }
            let Some(id) = last_write else { return Ok(()) };
            let mut next = Output::default();
            self.core.persisted(id, &mut next);
            out = next;
        }
    }

    fn apply_committed(&mut self) {
        let commit = self.core.commit_index();
        let (meta, data) = self.store.snapshot();
        if self.applied < meta.index {
            // A snapshot from the leader replaced the log: the state machine starts from it.
            (self.apply)(Applied::Snapshot { meta, data });
            self.applied = meta.index;
        }
        while self.applied < commit {
            let index = self.applied.next();
            let entry = self.store.entry(index).expect("committed entries are in the log");
            (self.apply)(Applied::Entry { index, entry });
            self.applied = index;
        }
        // Answer the proposals whose index is committed: ours if the entry there is still of the
        // term we proposed it in, else it was overwritten by another leader's.
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > commit {
                break;
            }
            let (index, (term, waiter)) = entry.remove_entry();
            let ours = self.store.entry(index).map(|e| e.term) == Some(term);
            let leader = self.core.leader();
            match waiter {
                Waiter::Local(reply) => {
                    let _ = reply.send(if ours { Ok(index) } else { Err(ProposeError::NotLeader { leader }) });
                }
                Waiter::Remote { to, id } => {
                    let result = if ours { Ok(index.0) } else { Err(leader) };
                    self.send_control(to, &Control::Forwarded { id, result });
                }
            }
        }
    }
}
