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
use tokio::sync::{mpsc, oneshot, watch};

use super::log_store::LogStore;
use crate::raft::{Entry, LogIndex, Membership, Msg, NodeId, Options, Output, ProposeError, RaftCore, Replicate, Role, Term};
use crate::runtime::Runtime;
use crate::transport::{Envelope, GroupId, TransportHandle};

/// Proposals queued for the driver at most.
pub const QUORUM_COMMANDS_MAX: usize = 1024;

#[derive(Clone, Debug)]
pub struct QuorumConfig {
    pub node_id: NodeId,
    pub voters: Vec<NodeId>,
    /// How long one Raft tick is.
    pub tick_ms: u64,
    pub options: Options,
    pub dir: PathBuf,
}

/// What the node's core says of itself, after every step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumStatus {
    pub term: Term,
    pub role: Role,
    pub leader: Option<NodeId>,
    pub commit_index: LogIndex,
    /// False once the driver stopped (a storage error).
    pub running: bool,
}

type ProposeReply = oneshot::Sender<Result<LogIndex, ProposeError>>;

enum Command {
    Propose { data: Bytes, reply: ProposeReply },
}

#[derive(Clone)]
pub struct QuorumHandle {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<QuorumStatus>,
}

impl QuorumHandle {
    /// Propose `data`; the answer comes once it is committed (its index), or says why not.
    /// Bounded by `timeout_ms` (REQUEST_TIMED_OUT for the caller when it passes: Err(None)).
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
}

/// The state machine: every committed entry, in order, once (per start of the node).
pub type Apply = Box<dyn FnMut(LogIndex, &Entry) + Send>;

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
    let status = QuorumStatus { term: core.term(), role: core.role(), leader: core.leader(), commit_index: core.commit_index(), running: true };
    let (status_tx, status_rx) = watch::channel(status);
    let (commands_tx, commands_rx) = mpsc::channel(QUORUM_COMMANDS_MAX);
    let driver = Driver { core, store, transport, applied: LogIndex(0), pending: BTreeMap::new(), apply, status: status_tx };
    tokio::spawn(driver.run(inbox, commands_rx, config.tick_ms));
    Ok(QuorumHandle { commands: commands_tx, status: status_rx })
}

struct Driver {
    core: RaftCore,
    store: LogStore,
    transport: TransportHandle,
    applied: LogIndex,
    /// Proposals waiting for their entry to commit: index -> (term proposed in, reply).
    pending: BTreeMap<LogIndex, (Term, ProposeReply)>,
    apply: Apply,
    status: watch::Sender<QuorumStatus>,
}

impl Driver {
    async fn run(mut self, mut inbox: mpsc::Receiver<Envelope>, mut commands: mpsc::Receiver<Command>, tick_ms: u64) {
        self.applied = self.store.snapshot().0.index;
        let mut ticker = tokio::time::interval(Duration::from_millis(tick_ms));
        loop {
            let mut out = Output::default();
            tokio::select! {
                biased;
                Some(envelope) = inbox.recv() => {
                    if envelope.group == GroupId::Metadata && envelope.from != self.core.id() {
                        self.core.step(envelope.from, envelope.msg, &mut out);
                    }
                }
                Some(command) = commands.recv() => match command {
                    Command::Propose { data, reply } => match self.core.propose(vec![data], &mut out) {
                        Ok(range) => {
                            self.pending.insert(range.start, (self.core.term(), reply));
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    },
                },
                _ = ticker.tick() => self.core.tick(&mut out),
            }
            if let Err(e) = self.execute(out).await {
                tracing::error!(node = %self.core.id(), error = %e, "metadata quorum: log write failed; this node stops taking part (fail-stop)");
                self.status.send_modify(|s| s.running = false);
                return;
            }
            self.apply_committed();
            let c = &self.core;
            let status = QuorumStatus { term: c.term(), role: c.role(), leader: c.leader(), commit_index: c.commit_index(), running: true };
            self.status.send_if_modified(|s| {
                let changed = *s != status;
                *s = status;
                changed
            });
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
                self.transport.send(to, Envelope { group: GroupId::Metadata, from, msg });
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
                self.transport.send(to, Envelope { group: GroupId::Metadata, from, msg });
            }
            let Some(id) = last_write else { return Ok(()) };
            let mut next = Output::default();
            self.core.persisted(id, &mut next);
            out = next;
        }
    }

    fn apply_committed(&mut self) {
        let commit = self.core.commit_index();
        let start = self.store.snapshot().0.index;
        if self.applied < start {
            self.applied = start;
        }
        while self.applied < commit {
            let index = self.applied.next();
            let entry = self.store.entry(index).expect("committed entries are in the log").clone();
            (self.apply)(index, &entry);
            self.applied = index;
        }
        // Answer the proposals whose index is committed: ours if the entry there is still of the
        // term we proposed it in, else it was overwritten by another leader's.
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > commit {
                break;
            }
            let (index, (term, reply)) = entry.remove_entry();
            let ours = self.store.entry(index).map(|e| e.term) == Some(term);
            let _ = reply.send(if ours { Ok(index) } else { Err(ProposeError::NotLeader { leader: self.core.leader() }) });
        }
    }
}
