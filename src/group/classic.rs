//! The classic group protocol (JoinGroup / SyncGroup / Heartbeat / LeaveGroup), as Kafka's
//! `ClassicGroup`: Empty -> PreparingRebalance -> CompletingRebalance -> Stable, generations,
//! leader election, MEMBER_ID_REQUIRED, static membership, session and rebalance timeouts.
//! Assignment is the clients' business: the leader's SyncGroup carries it, the coordinator
//! hands each member its part.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{GroupConfig, Now, Output, Reply, Token};
use crate::protocol::errors::ErrorCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassicState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl ClassicState {
    pub fn name(self) -> &'static str {
        match self {
            ClassicState::Empty => "Empty",
            ClassicState::PreparingRebalance => "PreparingRebalance",
            ClassicState::CompletingRebalance => "CompletingRebalance",
            ClassicState::Stable => "Stable",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClassicMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// A JoinGroup waiting for the rebalance to complete: (token, request version).
    pub join: Option<Token>,
    /// A SyncGroup waiting for the leader's assignment.
    pub sync: Option<Token>,
    pub last_seen_ms: u64,
}

impl ClassicMember {
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(n, _)| n == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct Classic {
    pub state: ClassicState,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    pub members: BTreeMap<String, ClassicMember>,
    /// group.instance.id -> member id.
    pub static_members: BTreeMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not joined yet -> expiry (monotonic ms).
    pub pending: BTreeMap<String, u64>,
    /// A rebalance in progress completes at the latest here (monotonic ms).
    pub rebalance_deadline_ms: u64,
    /// group.initial.rebalance.delay.ms: a first rebalance of an empty group waits until here.
    pub initial_delay_until_ms: Option<u64>,
    /// Upper bound for extending the initial delay.
    pub initial_delay_max_ms: u64,
}

impl Classic {
    pub fn new(generation: i32) -> Classic {
        Classic {
            state: ClassicState::Empty,
            protocol_type: None,
            protocol: None,
            generation,
            leader: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending: BTreeMap::new(),
            rebalance_deadline_ms: 0,
            initial_delay_until_ms: None,
            initial_delay_max_ms: 0,
        }
    }

    /// Protocols every member supports, in the first member's order.
    fn candidates(&self) -> Vec<String> {
        let mut it = self.members.values();
        let Some(first) = it.next() else { return Vec::new() };
        let mut c: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in it {
            c.retain(|n| m.protocols.iter().any(|(p, _)| p == n));
        }
        c
    }

    /// Kafka's selectProtocol: each member votes for its most preferred candidate.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidates();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                *votes.entry(n.as_str()).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        candidates.into_iter().find(|c| votes.get(c.as_str()) == Some(&best))
    }

    /// Whether a member with these protocols could join (same type, a protocol in common).
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let candidates = self.candidates();
        protocols.iter().any(|(n, _)| candidates.contains(n))
    }
}

pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new dynamic member first gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub error: ErrorCode,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub members: Vec<JoinMember>,
    pub skip_assignment: bool,
}

impl JoinResponse {
    pub fn error(error: ErrorCode, member_id: &str) -> JoinResponse {
        JoinResponse {
            error,
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

pub struct SyncRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    pub error: ErrorCode,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    pub fn error(error: ErrorCode) -> SyncResponse {
        SyncResponse { error, protocol_type: None, protocol_name: None, assignment: Bytes::new() }
    }
}

/// Whether `instance_id` is mapped to a member other than `member_id` (a fenced zombie).
pub fn fenced(c: &Classic, member_id: &str, instance_id: Option<&str>) -> bool {
    match instance_id {
        Some(i) => c.static_members.get(i).is_some_and(|m| m != member_id),
        None => false,
    }
}

impl Classic {
    pub fn join_response(&self, member_id: &str, out_members: bool) -> JoinResponse {
        let protocol = self.protocol.clone().unwrap_or_default();
        JoinResponse {
            error: ErrorCode::NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if out_members {
                self.members
                    .values()
                    .map(|m| JoinMember { member_id: m.id.clone(), instance_id: m.instance_id.clone(), metadata: m.metadata(&protocol) })
                    .collect()
            } else {
                Vec::new()
            },
            skip_assignment: false,
        }
    }

    /// Start a rebalance (or restart the wait): parked syncs learn REBALANCE_IN_PROGRESS.
    pub fn prepare_rebalance(&mut self, now: Now, config: &GroupConfig, out: &mut Output) {
        if self.state == ClassicState::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(t) = m.sync.take() {
                    out.replies.push((t, Reply::Sync(SyncResponse::error(ErrorCode::REBALANCE_IN_PROGRESS))));
                }
            }
        }
        let timeout = self.members.values().map(|m| m.rebalance_timeout_ms.max(0) as u64).max().unwrap_or(0);
        if self.state == ClassicState::Empty && config.initial_rebalance_delay_ms > 0 {
            self.initial_delay_until_ms = Some(now.mono_ms + config.initial_rebalance_delay_ms);
            self.initial_delay_max_ms = now.mono_ms + timeout.max(config.initial_rebalance_delay_ms);
        }
        if self.state != ClassicState::PreparingRebalance {
            self.rebalance_deadline_ms = now.mono_ms + timeout;
        }
        self.state = ClassicState::PreparingRebalance;
    }

    fn remove_member(&mut self, member_id: &str, out: &mut Output) -> Option<ClassicMember> {
        let m = self.members.remove(member_id)?;
        if let Some(i) = &m.instance_id {
            if self.static_members.get(i).is_some_and(|id| id == member_id) {
                self.static_members.remove(i);
            }
        }
        if let Some(t) = m.join {
            out.replies.push((t, Reply::Join(JoinResponse::error(ErrorCode::UNKNOWN_MEMBER_ID, member_id))));
        }
        if let Some(t) = m.sync {
            out.replies.push((t, Reply::Sync(SyncResponse::error(ErrorCode::UNKNOWN_MEMBER_ID))));
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
        Some(m)
    }

    /// A member left or expired: rebalance the others.
    pub fn member_gone(&mut self, member_id: &str, now: Now, config: &GroupConfig, out: &mut Output) -> bool {
        if self.remove_member(member_id, out).is_none() {
            return false;
        }
        tracing::info!(member = member_id, state = self.state.name(), "classic group: member removed");
        match self.state {
            ClassicState::Stable | ClassicState::CompletingRebalance => self.prepare_rebalance(now, config, out),
            ClassicState::PreparingRebalance | ClassicState::Empty => {}
        }
        true
    }

    /// Complete the join phase if everyone rejoined (or the deadline passed). Returns true when
    /// the generation advanced (the caller persists it).
    pub fn maybe_complete_join(&mut self, now: Now, out: &mut Output) -> bool {
        if self.state != ClassicState::PreparingRebalance {
            return false;
        }
        let all_joined = self.members.values().all(|m| m.join.is_some()) && self.pending.is_empty();
        let delayed = self.initial_delay_until_ms.is_some_and(|t| now.mono_ms < t);
        let expired = now.mono_ms >= self.rebalance_deadline_ms;
        if (!all_joined || delayed) && !expired {
            return false;
        }
        if expired || !all_joined {
            let missing: Vec<String> = self.members.values().filter(|m| m.join.is_none()).map(|m| m.id.clone()).collect();
            for id in missing {
                self.remove_member(&id, out);
            }
        }
        self.pending.clear();
        self.initial_delay_until_ms = None;
        self.generation += 1;
        if self.members.is_empty() {
            // Kafka keeps the protocol type of an empty group (tools list "consumer" groups by it).
            self.state = ClassicState::Empty;
            self.protocol = None;
            self.leader = None;
            return true;
        }
        self.protocol = self.select_protocol();
        if self.leader.as_ref().is_none_or(|l| !self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = ClassicState::CompletingRebalance;
        let leader = self.leader.clone().unwrap_or_default();
        tracing::info!(generation = self.generation, members = self.members.len(), %leader, protocol = ?self.protocol, "classic group: join phase complete");
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let response = self.join_response(&id, id == leader);
            let m = self.members.get_mut(&id).expect("listed");
            m.last_seen_ms = now.mono_ms;
            if let Some(t) = m.join.take() {
                out.replies.push((t, Reply::Join(response)));
            }
        }
        true
    }

    /// JoinGroup. Replies (now or later) go to `out`; returns true when the generation advanced.
    pub fn join(&mut self, now: Now, token: Token, req: JoinRequest, new_member_id: String, config: &GroupConfig, out: &mut Output) -> bool {
        tracing::debug!(group = %req.group_id, member = %req.member_id, instance = ?req.instance_id, state = self.state.name(), generation = self.generation, "JoinGroup");
        let reply = |out: &mut Output, r: JoinResponse| out.replies.push((token, Reply::Join(r)));
        if !self.supports(&req.protocol_type, &req.protocols) {
            reply(out, JoinResponse::error(ErrorCode::INCONSISTENT_GROUP_PROTOCOL, &req.member_id));
            return false;
        }
        if req.member_id.is_empty() {
            // A new member, or a static member coming back under a new member id.
            if let Some(instance) = req.instance_id.clone() {
                if let Some(old_id) = self.static_members.get(&instance).cloned() {
                    let was_leader = self.leader.as_deref() == Some(old_id.as_str());
                    let mut member = self.remove_member(&old_id, &mut Output::default()).expect("static map points at a member");
                    // The old incarnation's parked requests are fenced.
                    if let Some(t) = member.join.take() {
                        out.replies.push((t, Reply::Join(JoinResponse::error(ErrorCode::FENCED_INSTANCE_ID, &old_id))));
                    }
                    if let Some(t) = member.sync.take() {
                        out.replies.push((t, Reply::Sync(SyncResponse::error(ErrorCode::FENCED_INSTANCE_ID))));
                    }
                    let same_protocols = member.protocols == req.protocols;
                    member.id = new_member_id.clone();
                    member.client_id = req.client_id.clone();
                    member.client_host = req.client_host.clone();
                    member.session_timeout_ms = req.session_timeout_ms;
                    member.rebalance_timeout_ms = req.rebalance_timeout_ms;
                    member.protocols = req.protocols.clone();
                    member.last_seen_ms = now.mono_ms;
                    self.static_members.insert(instance, new_member_id.clone());
                    if was_leader {
                        self.leader = Some(new_member_id.clone());
                    }
                    if self.state == ClassicState::Stable && same_protocols {
                        // KIP-345: a static member that restarts keeps its assignment; no rebalance.
                        self.members.insert(new_member_id.clone(), member);
                        let mut r = self.join_response(&new_member_id, false);
                        if was_leader {
                            // The leader learns the members but must not reassign.
                            r = self.join_response(&new_member_id, true);
                            r.skip_assignment = true;
                        }
                        reply(out, r);
                        return false;
                    }
                    member.join = Some(token);
                    self.members.insert(new_member_id.clone(), member);
                    if self.state != ClassicState::PreparingRebalance {
                        self.prepare_rebalance(now, config, out);
                    }
                    return self.maybe_complete_join(now, out);
                }
            } else if req.require_known_member_id {
                if self.members.len() + self.pending.len() >= config.max_size {
                    reply(out, JoinResponse::error(ErrorCode::GROUP_MAX_SIZE_REACHED, ""));
                    return false;
                }
                self.pending.insert(new_member_id.clone(), now.mono_ms + req.session_timeout_ms.max(0) as u64);
                reply(out, JoinResponse::error(ErrorCode::MEMBER_ID_REQUIRED, &new_member_id));
                return false;
            }
            if self.members.len() + self.pending.len() >= config.max_size {
                reply(out, JoinResponse::error(ErrorCode::GROUP_MAX_SIZE_REACHED, ""));
                return false;
            }
            return self.add_and_rebalance(now, token, req, new_member_id, config, out);
        }
        // A known member id.
        if fenced(self, &req.member_id, req.instance_id.as_deref()) {
            reply(out, JoinResponse::error(ErrorCode::FENCED_INSTANCE_ID, &req.member_id));
            return false;
        }
        if self.pending.remove(&req.member_id).is_some() {
            let id = req.member_id.clone();
            return self.add_and_rebalance(now, token, req, id, config, out);
        }
        let Some(member) = self.members.get_mut(&req.member_id) else {
            reply(out, JoinResponse::error(ErrorCode::UNKNOWN_MEMBER_ID, &req.member_id));
            return false;
        };
        member.last_seen_ms = now.mono_ms;
        let changed = member.protocols != req.protocols;
        member.protocols = req.protocols;
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        if let Some(old) = member.join.replace(token) {
            // A duplicate join: the older one is answered as superseded.
            out.replies.push((old, Reply::Join(JoinResponse::error(ErrorCode::UNKNOWN_MEMBER_ID, &req.member_id))));
        }
        let is_leader = self.leader.as_deref() == Some(req.member_id.as_str());
        match self.state {
            ClassicState::PreparingRebalance => {}
            ClassicState::CompletingRebalance | ClassicState::Stable if !changed && !is_leader => {
                // Nothing changed: repeat the current generation's answer.
                let m = self.members.get_mut(&req.member_id).expect("present");
                m.join = None;
                let r = self.join_response(&req.member_id, false);
                reply(out, r);
                return false;
            }
            ClassicState::CompletingRebalance if !changed => {
                let m = self.members.get_mut(&req.member_id).expect("present");
                m.join = None;
                let r = self.join_response(&req.member_id, true);
                reply(out, r);
                return false;
            }
            _ => self.prepare_rebalance(now, config, out),
        }
        self.maybe_complete_join(now, out)
    }

    fn add_and_rebalance(&mut self, now: Now, token: Token, req: JoinRequest, id: String, config: &GroupConfig, out: &mut Output) -> bool {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(i) = &req.instance_id {
            self.static_members.insert(i.clone(), id.clone());
        }
        self.members.insert(
            id.clone(),
            ClassicMember {
                id: id.clone(),
                instance_id: req.instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                session_timeout_ms: req.session_timeout_ms,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                protocol_type: req.protocol_type,
                protocols: req.protocols,
                assignment: Bytes::new(),
                join: Some(token),
                sync: None,
                last_seen_ms: now.mono_ms,
            },
        );
        if self.state == ClassicState::PreparingRebalance {
            // group.initial.rebalance.delay.ms: each newcomer extends the first wait, up to
            // the rebalance timeout.
            if let Some(until) = self.initial_delay_until_ms {
                self.initial_delay_until_ms = Some((until.max(now.mono_ms + config.initial_rebalance_delay_ms)).min(self.initial_delay_max_ms));
            }
        } else {
            self.prepare_rebalance(now, config, out);
        }
        self.maybe_complete_join(now, out)
    }

    /// SyncGroup. The reply goes to `out` (now or when the leader's assignment arrives).
    pub fn sync(&mut self, now: Now, token: Token, req: SyncRequest, out: &mut Output) {
        tracing::debug!(group = %req.group_id, member = %req.member_id, generation = req.generation, state = self.state.name(), "SyncGroup");
        let reply = |out: &mut Output, r: SyncResponse| out.replies.push((token, Reply::Sync(r)));
        if fenced(self, &req.member_id, req.instance_id.as_deref()) {
            return reply(out, SyncResponse::error(ErrorCode::FENCED_INSTANCE_ID));
        }
        if !self.members.contains_key(&req.member_id) {
            return reply(out, SyncResponse::error(ErrorCode::UNKNOWN_MEMBER_ID));
        }
        if req.generation != self.generation {
            return reply(out, SyncResponse::error(ErrorCode::ILLEGAL_GENERATION));
        }
        if req.protocol_type.as_ref().is_some_and(|t| Some(t) != self.protocol_type.as_ref())
            || req.protocol_name.as_ref().is_some_and(|n| Some(n) != self.protocol.as_ref())
        {
            return reply(out, SyncResponse::error(ErrorCode::INCONSISTENT_GROUP_PROTOCOL));
        }
        let ok = |c: &Classic, assignment: Bytes| SyncResponse {
            error: ErrorCode::NONE,
            protocol_type: c.protocol_type.clone(),
            protocol_name: c.protocol.clone(),
            assignment,
        };
        match self.state {
            ClassicState::Empty => reply(out, SyncResponse::error(ErrorCode::UNKNOWN_MEMBER_ID)),
            ClassicState::PreparingRebalance => reply(out, SyncResponse::error(ErrorCode::REBALANCE_IN_PROGRESS)),
            ClassicState::Stable => {
                let m = self.members.get_mut(&req.member_id).expect("checked");
                m.last_seen_ms = now.mono_ms;
                let a = m.assignment.clone();
                let r = ok(self, a);
                reply(out, r);
            }
            ClassicState::CompletingRebalance => {
                let m = self.members.get_mut(&req.member_id).expect("checked");
                m.last_seen_ms = now.mono_ms;
                if let Some(old) = m.sync.replace(token) {
                    out.replies.push((old, Reply::Sync(SyncResponse::error(ErrorCode::UNKNOWN_MEMBER_ID))));
                }
                if self.leader.as_deref() == Some(req.member_id.as_str()) {
                    let given: BTreeMap<String, Bytes> = req.assignments.into_iter().collect();
                    let ids: Vec<String> = self.members.keys().cloned().collect();
                    for id in ids {
                        let assignment = given.get(&id).cloned().unwrap_or_default();
                        let r = ok(self, assignment.clone());
                        let m = self.members.get_mut(&id).expect("listed");
                        m.assignment = assignment;
                        if let Some(t) = m.sync.take() {
                            out.replies.push((t, Reply::Sync(r)));
                        }
                    }
                    self.state = ClassicState::Stable;
                }
            }
        }
    }

    pub fn heartbeat(&mut self, now: Now, member_id: &str, instance_id: Option<&str>, generation: i32) -> ErrorCode {
        tracing::trace!(member = member_id, generation, state = self.state.name(), "Heartbeat");
        if fenced(self, member_id, instance_id) {
            return ErrorCode::FENCED_INSTANCE_ID;
        }
        let Some(m) = self.members.get_mut(member_id) else { return ErrorCode::UNKNOWN_MEMBER_ID };
        if generation != self.generation {
            return ErrorCode::ILLEGAL_GENERATION;
        }
        m.last_seen_ms = now.mono_ms;
        match self.state {
            ClassicState::Empty => ErrorCode::UNKNOWN_MEMBER_ID,
            ClassicState::PreparingRebalance => ErrorCode::REBALANCE_IN_PROGRESS,
            ClassicState::CompletingRebalance | ClassicState::Stable => ErrorCode::NONE,
        }
    }

    /// LeaveGroup for one member (by id, or by instance id with an empty member id).
    pub fn leave(&mut self, now: Now, member_id: &str, instance_id: Option<&str>, config: &GroupConfig, out: &mut Output) -> ErrorCode {
        let id = if member_id.is_empty() {
            match instance_id.and_then(|i| self.static_members.get(i)) {
                Some(id) => id.clone(),
                None => return ErrorCode::UNKNOWN_MEMBER_ID,
            }
        } else {
            if fenced(self, member_id, instance_id) {
                return ErrorCode::FENCED_INSTANCE_ID;
            }
            member_id.to_string()
        };
        if self.pending.remove(&id).is_some() {
            return ErrorCode::NONE;
        }
        if self.member_gone(&id, now, config, out) {
            ErrorCode::NONE
        } else {
            ErrorCode::UNKNOWN_MEMBER_ID
        }
    }

    /// Session and rebalance timeouts. Returns true when the generation advanced.
    pub fn tick(&mut self, now: Now, config: &GroupConfig, out: &mut Output) -> bool {
        self.pending.retain(|_, until| *until > now.mono_ms);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join.is_none() && m.last_seen_ms + m.session_timeout_ms.max(0) as u64 <= now.mono_ms)
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            self.member_gone(&id, now, config, out);
        }
        if self.state == ClassicState::PreparingRebalance && self.members.is_empty() && self.pending.is_empty() {
            self.rebalance_deadline_ms = now.mono_ms;
        }
        self.maybe_complete_join(now, out)
    }

    /// Check the state machine's own invariants; a broken one is a bug.
    pub fn check(&self, group: &str) {
        if let Some(l) = &self.leader {
            assert!(self.members.contains_key(l) || self.state == ClassicState::Empty || self.state == ClassicState::PreparingRebalance, "group {group}: leader {l} is not a member");
        }
        for (i, id) in &self.static_members {
            assert!(self.members.get(id).is_some_and(|m| m.instance_id.as_deref() == Some(i)), "group {group}: static member {i} -> {id} is not a member");
        }
        if self.state == ClassicState::Empty {
            assert!(self.members.is_empty(), "group {group}: Empty with members");
        }
        for m in self.members.values() {
            assert!(m.sync.is_none() || self.state == ClassicState::CompletingRebalance, "group {group}: parked sync in {:?}", self.state);
            assert!(m.join.is_none() || self.state == ClassicState::PreparingRebalance, "group {group}: parked join in {:?}", self.state);
        }
    }
}
