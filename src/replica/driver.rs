//! The Raft shell of one partition replica: a task that drives a [`RaftCore`] on a
//! [`ReplicaStore`] with the inter-broker transport's messages for its group, a ticker and
//! appends, and executes what each call asks in the core's order: the term and vote durable
//! before any message leaves; the log writes submitted, the messages sent (a leader may send
//! entries before its own copy is synced: it counts itself only once it is), then one sync for
//! all of the call's writes, after which the core hears `persisted`. An append is answered once
//! its batch is committed in the term it was proposed in (acks=all); its offsets are then final.
//! A storage error ends the task (fail-stop): the replica stops taking part rather than go on
//! with a log it cannot trust, and its handle answers every append with an error.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use super::store::{place_batch, ReplicaStore, StoreError};
use crate::log::producers::Verdict;
use crate::protocol::batch::validate_record_set;
use crate::raft::{LogIndex, Msg, NodeId, Options, Output, ProposeError, RaftCore, Replicate, Role, Term};
use crate::transport::{Envelope, GroupId, Message, TransportHandle};

/// Appends queued for a driver at most (more wait in the caller's `send`).
pub const REPLICA_COMMANDS_MAX: usize = 1024;
/// Appends proposed and not yet committed, at most (more are refused: retriable).
pub const REPLICA_PENDING_MAX: usize = 4096;
/// Batch bytes in one append to a follower, at most (beyond one batch).
pub const APPEND_BYTES_MAX: usize = 8 << 20;

#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    pub node_id: NodeId,
    pub group: GroupId,
    /// How long one Raft tick is.
    pub tick_ms: u64,
    pub options: Options,
    /// Kafka's `min.insync.replicas`: an append needs this many replicas in sync (the leader
    /// counts) or it is refused before it is proposed (NOT_ENOUGH_REPLICAS), and a batch
    /// commits only once this many replicas hold it durably (besides a majority).
    pub min_insync_replicas: usize,
    /// Kafka's `replica.lag.time.max.ms`, in ticks: a follower is in sync while it answered
    /// within this long and holds everything the leader held this long ago.
    pub replica_lag_ticks: u32,
}

/// What the replica shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub term: Term,
    pub leader: Option<NodeId>,
    pub is_leader: bool,
    /// The replicas in sync (on the leader; empty elsewhere), in node order, the leader among
    /// them.
    pub isr: Vec<NodeId>,
    /// The high watermark this replica publishes: its commit index, on a leader only once an
    /// entry of its own term is committed (so it never moves back across leaders).
    pub high_watermark: i64,
    pub log_end_offset: i64,
    /// False once the task stopped (a storage error, or `stop`).
    pub running: bool,
}

/// Why an append was not acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("not the leader (the leader is {0:?})")]
    NotLeader(Option<NodeId>),
    #[error("the batch was proposed but lost its leader before it committed; it may or may not be in the log")]
    Unknown,
    #[error("invalid batch: {0}")]
    Invalid(String),
    #[error("too many appends in flight")]
    Busy,
    #[error("{in_sync} replicas in sync, fewer than min.insync.replicas {min}")]
    NotEnoughReplicas { in_sync: usize, min: usize },
    #[error("producer {producer_id}: sequence {got} is not the next one ({expected})")]
    OutOfOrderSequence { producer_id: i64, expected: i32, got: i32 },
    #[error("producer {producer_id}: epoch {got} is older than the current {current}")]
    InvalidProducerEpoch { producer_id: i64, current: i16, got: i16 },
    #[error("the replica stopped")]
    Stopped,
}

/// Offsets of an acknowledged append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
}

enum Command {
    Append { records: Bytes, reply: oneshot::Sender<Result<Appended, AppendError>> },
    /// Batches from `offset` up to the high watermark (at most `max_bytes`, at least one batch).
    Read { offset: i64, max_bytes: usize, reply: oneshot::Sender<Result<Bytes, String>> },
    Stop { done: oneshot::Sender<()> },
}

#[derive(Clone)]
pub struct ReplicaHandle {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<ReplicaStatus>,
}

impl ReplicaHandle {
    /// Append one producer batch (acks=all): answered once it is committed.
    pub async fn append(&self, records: Bytes) -> Result<Appended, AppendError> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Append { records, reply }).await.map_err(|_| AppendError::Stopped)?;
        rx.await.map_err(|_| AppendError::Stopped)?
    }

    /// Committed batches from `offset` (whole batches, below the high watermark).
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes, String> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Read { offset, max_bytes, reply }).await.map_err(|_| "stopped".to_string())?;
        rx.await.map_err(|_| "stopped".to_string())?
    }

    pub fn status(&self) -> ReplicaStatus {
        self.status.borrow().clone()
    }

    /// Stop the task (the store is closed). Returns once it stopped.
    pub async fn stop(&self) {
        let (done, rx) = oneshot::channel();
        if self.commands.send(Command::Stop { done }).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Start the driver of the replica in `store` on this node.
/// Several replicas of one broker share its transport.
pub fn start(config: ReplicaConfig, store: ReplicaStore, transport: Arc<TransportHandle>, inbox: mpsc::Receiver<Envelope>) -> ReplicaHandle {
    let options = Options {
        jitter_seed: crate::runtime::rng::random_u64(),
        min_commit_replicas: config.min_insync_replicas.max(1),
        ..config.options.clone()
    };
    let core = RaftCore::new(config.node_id, options, store.hard_state(), store.log_state(), LogIndex(0));
    let (status_tx, status_rx) = watch::channel(ReplicaStatus { running: true, ..ReplicaStatus::default() });
    let (commands_tx, commands_rx) = mpsc::channel(REPLICA_COMMANDS_MAX);
    let driver = Driver {
        core,
        store,
        transport,
        group: config.group,
        pending: BTreeMap::new(),
        next_waiter: 0,
        min_insync: config.min_insync_replicas.max(1),
        lag_ticks: config.replica_lag_ticks.max(1),
        ends: VecDeque::new(),
        status: status_tx,
    };
    tokio::spawn(driver.run(inbox, commands_rx, config.tick_ms));
    ReplicaHandle { commands: commands_tx, status: status_rx }
}

type AppendReply = oneshot::Sender<Result<Appended, AppendError>>;

struct Driver {
    core: RaftCore,
    store: ReplicaStore,
    transport: Arc<TransportHandle>,
    group: GroupId,
    /// Appends waiting for their batch to commit: (last index, waiter number) -> (term, first
    /// index, who waits). A producer's retry of a batch not yet committed waits beside it.
    pending: BTreeMap<(LogIndex, u64), (Term, LogIndex, AppendReply)>,
    next_waiter: u64,
    min_insync: usize,
    lag_ticks: u32,
    /// Leader: its log end at each of the last `lag_ticks` ticks, oldest first.
    ends: VecDeque<LogIndex>,
    status: watch::Sender<ReplicaStatus>,
}

impl Driver {
    async fn run(mut self, mut inbox: mpsc::Receiver<Envelope>, mut commands: mpsc::Receiver<Command>, tick_ms: u64) {
        let mut ticker = tokio::time::interval(Duration::from_millis(tick_ms));
        loop {
            let mut out = Output::default();
            tokio::select! {
                biased;
                Some(envelope) = inbox.recv() => {
                    if envelope.group == self.group && envelope.from != self.core.id() {
                        if let Message::Raft(msg) = envelope.msg {
                            self.core.step(envelope.from, msg, &mut out);
                        }
                    }
                }
                Some(command) = commands.recv() => match command {
                    Command::Append { records, reply } => self.append(records, reply, &mut out),
                    Command::Read { offset, max_bytes, reply } => {
                        let hw = self.store.log().high_watermark();
                        let read = self.store.log().read(offset, max_bytes, hw).await;
                        let _ = reply.send(read.map(|r| r.records).map_err(|e| e.to_string()));
                    }
                    Command::Stop { done } => {
                        self.fail_pending(AppendError::Stopped);
                        self.status.send_modify(|s| s.running = false);
                        if let Err(e) = self.store.close().await {
                            tracing::warn!(error = %e, "replica: closing the log failed");
                        }
                        let _ = done.send(());
                        return;
                    }
                },
                _ = ticker.tick() => {
                    self.core.tick(&mut out);
                    if self.core.role() == Role::Leader {
                        self.ends.push_back(self.core.last_index());
                        while self.ends.len() > self.lag_ticks as usize {
                            self.ends.pop_front();
                        }
                    } else {
                        self.ends.clear();
                    }
                }
            }
            if let Err(e) = self.execute(out).await {
                tracing::error!(node = %self.core.id(), group = ?self.group, error = %e, "replica: storage failed; this replica stops taking part (fail-stop)");
                self.fail_pending(AppendError::Stopped);
                self.status.send_modify(|s| s.running = false);
                return;
            }
            self.answer_committed();
            self.publish();
        }
    }

    /// A producer's batch: on the leader, placed at the log end in the current term and
    /// proposed; elsewhere refused with the leader we know.
    fn append(&mut self, records: Bytes, reply: AppendReply, out: &mut Output) {
        if self.core.role() != Role::Leader {
            let _ = reply.send(Err(AppendError::NotLeader(self.core.leader())));
            return;
        }
        if self.pending.len() >= REPLICA_PENDING_MAX {
            let _ = reply.send(Err(AppendError::Busy));
            return;
        }
        let in_sync = self.isr().len();
        if in_sync < self.min_insync {
            let _ = reply.send(Err(AppendError::NotEnoughReplicas { in_sync, min: self.min_insync }));
            return;
        }
        let count = match validate_record_set(&records) {
            Ok(batches) if batches.len() == 1 && batches[0].records_count() > 0 && !batches[0].is_control() => {
                let b = &batches[0];
                if b.producer_id() >= 0 && b.base_sequence() >= 0 {
                    // Idempotence (KIP-98) against every batch in the log, committed or not:
                    // a new leader rebuilt the state from its log, so it survives failover.
                    match self.store.producer_verdict(b) {
                        Verdict::Append => {}
                        Verdict::Duplicate { base_offset, last_offset } => {
                            let (first, last) = (LogIndex(base_offset as u64 + 1), LogIndex(last_offset as u64 + 1));
                            match self.core.log().term_at(first) {
                                Some(term) => self.wait(last, term, first, reply),
                                // Before the log start: committed long ago (the producer state
                                // outlives the batches it remembers).
                                None => {
                                    let _ = reply.send(Ok(Appended { base_offset, last_offset }));
                                }
                            }
                            return;
                        }
                        Verdict::OutOfOrder { expected, got } => {
                            let _ = reply.send(Err(AppendError::OutOfOrderSequence { producer_id: b.producer_id(), expected, got }));
                            return;
                        }
                        Verdict::StaleEpoch { current, got } => {
                            let _ = reply.send(Err(AppendError::InvalidProducerEpoch { producer_id: b.producer_id(), current, got }));
                            return;
                        }
                    }
                }
                b.records_count() as u32
            }
            Ok(batches) => {
                let _ = reply.send(Err(AppendError::Invalid(format!("one data batch per append, not {}", batches.len()))));
                return;
            }
            Err(e) => {
                let _ = reply.send(Err(AppendError::Invalid(e.to_string())));
                return;
            }
        };
        let term = self.core.term();
        let base = self.core.last_index();
        let placed = place_batch(&records, base.0 as i64, i32::try_from(term.0).expect("a term fits a leader epoch"));
        match self.core.propose_batches(vec![(count, placed)], out) {
            Ok(range) => {
                assert_eq!(range.start, base.next(), "the core placed the batch where the shell did");
                self.wait(range.end.prev(), term, range.start, reply);
            }
            Err(ProposeError::NotLeader { leader }) => {
                let _ = reply.send(Err(AppendError::NotLeader(leader)));
            }
            Err(_) => {
                let _ = reply.send(Err(AppendError::NotLeader(None)));
            }
        }
    }

    /// Answer `reply` once the batch at `first..=last` is committed in `term` (see
    /// `answer_committed`).
    fn wait(&mut self, last: LogIndex, term: Term, first: LogIndex, reply: AppendReply) {
        self.next_waiter += 1;
        self.pending.insert((last, self.next_waiter), (term, first, reply));
    }

    /// Execute `out` in the core's order, then what the `persisted` call leaves.
    async fn execute(&mut self, mut out: Output) -> Result<(), StoreError> {
        loop {
            if let Some(hard) = out.hard_state.take() {
                self.store.save_hard_state(hard).await?;
            }
            for write in std::mem::take(&mut out.writes) {
                self.store.write(&write).await?;
            }
            let from = self.core.id();
            for (to, msg) in out.send.drain(..) {
                self.transport.send(to, Envelope { group: self.group.clone(), from, msg: msg.into() });
            }
            for replicate in out.replicate.drain(..) {
                let (to, msg) = match replicate {
                    Replicate::Entries { to, term, prev_index, commit, range, .. } => {
                        let (prev_index, prev_term, entries) = self.store.entries_for(prev_index, range.end, APPEND_BYTES_MAX).await?;
                        (to, Msg::Append { term, prev_index, prev_term, commit, entries })
                    }
                    Replicate::Snapshot { to, term, meta } => (to, Msg::Snapshot { term, meta, data: Bytes::new() }),
                };
                self.transport.send(to, Envelope { group: self.group.clone(), from, msg: msg.into() });
            }
            if let Some(commit) = out.commit_index {
                self.store.set_commit(commit);
            }
            let Some(id) = self.store.sync().await? else { return Ok(()) };
            let mut next = Output::default();
            self.core.persisted(id, &mut next);
            out = next;
        }
    }

    /// Answer the appends whose batch is committed: acknowledged if the log still holds the
    /// batch in the term it was proposed in, else it was replaced by another leader's.
    fn answer_committed(&mut self) {
        let commit = self.core.commit_index();
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 > commit {
                break;
            }
            let ((last, _), (term, first, reply)) = entry.remove_entry();
            let ours = self.core.log().term_at(first) == Some(term) && self.core.log().term_at(last) == Some(term);
            let _ = reply.send(if ours {
                Ok(Appended { base_offset: first.0 as i64 - 1, last_offset: last.0 as i64 - 1 })
            } else {
                Err(AppendError::Unknown)
            });
        }
        // Proposals of a leader that lost its office may never commit in their term.
        if self.core.role() != Role::Leader && !self.pending.is_empty() {
            self.fail_pending(AppendError::Unknown);
        }
    }

    /// The replicas in sync (leader only): the leader, and each voter that answered within
    /// `lag_ticks` and holds the log up to where the leader's ended `lag_ticks` ago. A new
    /// leader counts a follower in sync only once it has heard from it.
    fn isr(&self) -> Vec<NodeId> {
        let c = &self.core;
        if c.role() != Role::Leader {
            return Vec::new();
        }
        let behind = self.ends.front().copied().unwrap_or_else(|| c.last_index());
        c.membership()
            .voters
            .iter()
            .copied()
            .filter(|&v| {
                v == c.id()
                    || (c.heard_ticks_ago(v).is_some_and(|t| t <= u64::from(self.lag_ticks)) && c.match_index(v).is_some_and(|m| m >= behind))
            })
            .collect()
    }

    fn fail_pending(&mut self, e: AppendError) {
        for (_, (_, _, reply)) in std::mem::take(&mut self.pending) {
            let _ = reply.send(Err(e.clone()));
        }
    }

    fn publish(&mut self) {
        let c = &self.core;
        let is_leader = c.role() == Role::Leader;
        // A leader shows its commit index only once an entry of its term is committed: before
        // that it may be below what the previous leader showed.
        let high_watermark =
            if c.leader_ready() { self.store.log().high_watermark() } else { self.status.borrow().high_watermark };
        let isr = self.isr();
        let c = &self.core;
        let status = ReplicaStatus {
            term: c.term(),
            leader: c.leader(),
            is_leader,
            isr,
            high_watermark,
            log_end_offset: self.store.log().log_end_offset(),
            running: true,
        };
        self.status.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
    }
}
