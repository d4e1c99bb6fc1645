//! The leader's view of one follower: how far its log is known to match, what to send next,
//! and how many appends are in flight.

use std::collections::VecDeque;

use super::LogIndex;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// Where the follower's log matches is unknown: one append at a time, until one succeeds.
    Probe,
    /// Matching: appends are pipelined, `next_index` runs ahead of the acknowledgements.
    Replicate,
    /// A snapshot ending at this index is on its way; nothing else is sent until it is answered.
    Snapshot(LogIndex),
}

#[derive(Clone, Debug)]
pub struct Progress {
    /// The follower's log is known to match the leader's (and be durable) up to here.
    pub match_index: LogIndex,
    pub next_index: LogIndex,
    pub state: ProgressState,
    /// The last index of each append in flight (Replicate), oldest first.
    pub inflight: VecDeque<LogIndex>,
    /// Probe: an append is out; wait for its answer or the next heartbeat before sending another.
    pub probe_sent: bool,
    /// The leader's tick count when it last heard from this follower (check-quorum).
    pub last_heard_tick: u64,
    /// The latest heartbeat round this follower answered (read-index).
    pub heartbeat_round: u64,
}

impl Progress {
    pub fn new(next_index: LogIndex, now_tick: u64) -> Progress {
        Progress {
            match_index: LogIndex(0),
            next_index,
            state: ProgressState::Probe,
            inflight: VecDeque::new(),
            probe_sent: false,
            last_heard_tick: now_tick,
            heartbeat_round: 0,
        }
    }

    /// Whether another append may be sent now.
    pub fn can_send(&self, max_inflight: usize) -> bool {
        match self.state {
            ProgressState::Probe => !self.probe_sent,
            ProgressState::Replicate => self.inflight.len() < max_inflight,
            ProgressState::Snapshot(_) => false,
        }
    }

    /// An acknowledgement up to `index`: returns whether it moved the match forward.
    pub fn acknowledge(&mut self, index: LogIndex) -> bool {
        while self.inflight.front().is_some_and(|&end| end <= index) {
            self.inflight.pop_front();
        }
        if index <= self.match_index && self.state != ProgressState::Probe {
            return false;
        }
        let moved = index > self.match_index;
        self.match_index = self.match_index.max(index);
        self.next_index = self.next_index.max(self.match_index.next());
        self.probe_sent = false;
        if let ProgressState::Snapshot(at) = self.state {
            if self.match_index >= at {
                self.become_probe();
            }
        }
        if self.state == ProgressState::Probe {
            self.state = ProgressState::Replicate;
            self.inflight.clear();
            self.next_index = self.match_index.next();
        }
        moved
    }

    pub fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.inflight.clear();
        self.probe_sent = false;
        self.next_index = self.next_index.max(self.match_index.next());
    }
}
