//! The KIP-848 consumer group protocol (ConsumerGroupHeartbeat): the coordinator owns the
//! assignment. A change of membership or subscription bumps the group epoch and computes a new
//! target assignment; each member then moves towards its target one heartbeat at a time:
//! first it gives up partitions that are no longer its own (and must confirm), then it moves to
//! the new epoch and receives partitions as soon as no other member still holds them.
//!
//! Invariant (checked after every step): no partition is held (assigned or being revoked) by
//! two members at once.

use std::collections::{BTreeMap, BTreeSet};

use super::assignor::{self, AssignorMember, TopicPartitions};
use super::{GroupConfig, Now};
use crate::protocol::errors::ErrorCode;

/// member_epoch values with a meaning of their own (KIP-848).
pub const LEAVE_EPOCH: i32 = -1;
pub const STATIC_LEAVE_EPOCH: i32 = -2;

#[derive(Debug, Clone)]
pub struct ConsumerMember {
    pub id: String,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub subscribed: BTreeSet<String>,
    /// KIP-848 `subscribed_topic_regex` (RE2 syntax, matched against whole topic names).
    pub subscribed_regex: Option<SubscriptionRegex>,
    pub assignor: Option<String>,
    /// What the member may own now.
    pub assigned: TopicPartitions,
    /// What the member must give up before it moves on.
    pub revoking: TopicPartitions,
    pub revoke_deadline_ms: Option<u64>,
    pub last_seen_ms: u64,
    /// The assignment last sent to the member.
    pub last_sent: Option<TopicPartitions>,
    /// Left with epoch -2 (static): keeps its place until the session times out.
    pub departed: bool,
}

#[derive(Debug, Clone)]
pub struct Consumer {
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, ConsumerMember>,
    pub target: BTreeMap<String, TopicPartitions>,
    pub static_members: BTreeMap<String, String>,
    /// Partition counts of subscribed topics when the target was computed.
    pub topics_seen: BTreeMap<String, i32>,
}

pub struct HeartbeatRequest {
    pub group_id: String,
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub subscribed: Option<Vec<String>>,
    pub subscribed_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub owned: Option<TopicPartitions>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatResponse {
    pub error: ErrorCode,
    pub message: Option<String>,
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    pub assignment: Option<TopicPartitions>,
}

impl HeartbeatResponse {
    pub fn error(error: ErrorCode, message: impl Into<String>, member_id: &str, epoch: i32) -> HeartbeatResponse {
        HeartbeatResponse { error, message: Some(message.into()), member_id: member_id.to_string(), member_epoch: epoch, heartbeat_interval_ms: 0, assignment: None }
    }
}

/// A subscription regex as the member sent it, compiled once, anchored at both ends (Kafka
/// matches whole topic names).
#[derive(Debug, Clone)]
pub struct SubscriptionRegex {
    pub source: String,
    regex: regex_automata::meta::Regex,
}

impl PartialEq for SubscriptionRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl SubscriptionRegex {
    pub fn compile(source: &str) -> Result<SubscriptionRegex, String> {
        if source.len() > 4096 {
            return Err("regular expression longer than 4096 bytes".into());
        }
        let regex = regex_automata::meta::Regex::new(&format!("^(?:{source})$")).map_err(|e| e.to_string())?;
        Ok(SubscriptionRegex { source: source.to_string(), regex })
    }

    pub fn matches(&self, topic: &str) -> bool {
        self.regex.is_match(topic)
    }
}

impl ConsumerMember {
    /// Topic names this member subscribes to: its names plus existing topics its regex matches.
    pub fn effective_subscription(&self, topics: &BTreeMap<String, i32>) -> BTreeSet<String> {
        let mut out = self.subscribed.clone();
        if let Some(re) = &self.subscribed_regex {
            out.extend(topics.keys().filter(|t| re.matches(t)).cloned());
        }
        out
    }

    /// Whether the member subscribes to `topic`, by name or by its regex.
    pub fn subscribes_to(&self, topic: &str) -> bool {
        self.subscribed.contains(topic) || self.subscribed_regex.as_ref().is_some_and(|re| re.matches(topic))
    }
}

fn minus(a: &TopicPartitions, b: &TopicPartitions) -> TopicPartitions {
    let mut out = TopicPartitions::new();
    for (t, ps) in a {
        let rest: BTreeSet<i32> = match b.get(t) {
            Some(bs) => ps.difference(bs).copied().collect(),
            None => ps.clone(),
        };
        if !rest.is_empty() {
            out.insert(t.clone(), rest);
        }
    }
    out
}

fn intersect(a: &TopicPartitions, b: &TopicPartitions) -> TopicPartitions {
    let mut out = TopicPartitions::new();
    for (t, ps) in a {
        if let Some(bs) = b.get(t) {
            let both: BTreeSet<i32> = ps.intersection(bs).copied().collect();
            if !both.is_empty() {
                out.insert(t.clone(), both);
            }
        }
    }
    out
}

impl Consumer {
    pub fn new(epoch: i32) -> Consumer {
        Consumer {
            epoch,
            assignment_epoch: epoch,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            static_members: BTreeMap::new(),
            topics_seen: BTreeMap::new(),
        }
    }

    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.epoch {
            "Assigning"
        } else if self.members.values().any(|m| m.epoch != self.assignment_epoch || !m.revoking.is_empty() || Some(&m.assigned) != self.target.get(&m.id)) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    fn subscribed_topics(&self, topics: &BTreeMap<String, i32>) -> BTreeMap<String, i32> {
        let all: BTreeSet<String> = self.members.values().flat_map(|m| m.effective_subscription(topics)).collect();
        all.into_iter().filter_map(|t| topics.get(&t).map(|c| (t, *c))).collect()
    }

    /// Bump the group epoch and compute the new target assignment. Returns the new epoch.
    fn bump(&mut self, topics: &BTreeMap<String, i32>, assignor_name: &str) -> i32 {
        self.epoch += 1;
        let subscribed = self.subscribed_topics(topics);
        let empty = TopicPartitions::new();
        let effective: BTreeMap<String, BTreeSet<String>> =
            self.members.iter().map(|(id, m)| (id.clone(), m.effective_subscription(topics))).collect();
        let members: BTreeMap<String, AssignorMember<'_>> = self
            .members
            .keys()
            .map(|id| (id.clone(), AssignorMember { subscribed: &effective[id], current: self.target.get(id).unwrap_or(&empty) }))
            .collect();
        let name = self.members.values().find_map(|m| m.assignor.clone()).unwrap_or_else(|| assignor_name.to_string());
        self.target = assignor::assign(&name, &members, &subscribed);
        self.topics_seen = subscribed;
        self.assignment_epoch = self.epoch;
        self.epoch
    }

    fn held_by_other(&self, me: &str, topic: &str, p: i32) -> bool {
        self.members.iter().any(|(id, m)| {
            id != me
                && (m.assigned.get(topic).is_some_and(|s| s.contains(&p)) || m.revoking.get(topic).is_some_and(|s| s.contains(&p)))
        })
    }

    /// Move one member towards its target.
    fn reconcile(&mut self, id: &str, owned: Option<&TopicPartitions>, fresh_revocation_ok: bool, now: Now) {
        let target = self.target.get(id).cloned().unwrap_or_default();
        let m = self.members.get(id).expect("member exists");
        if !m.revoking.is_empty() {
            // Released only when the member reports what it owns and the revoked are gone.
            let released = fresh_revocation_ok && owned.is_some_and(|o| intersect(o, &m.revoking).is_empty());
            if !released {
                return;
            }
            let m = self.members.get_mut(id).expect("member exists");
            m.revoking.clear();
            m.revoke_deadline_ms = None;
        }
        let m = self.members.get(id).expect("member exists");
        if m.epoch < self.assignment_epoch {
            let to_revoke = minus(&m.assigned, &target);
            let m = self.members.get_mut(id).expect("member exists");
            if !to_revoke.is_empty() {
                m.assigned = intersect(&m.assigned, &target);
                m.revoking = to_revoke;
                m.revoke_deadline_ms = Some(now.mono_ms + m.rebalance_timeout_ms.max(0) as u64);
                return;
            }
            m.previous_epoch = m.epoch;
            m.epoch = self.assignment_epoch;
        }
        // Take whatever of the target no other member holds any more.
        let wanted = minus(&target, &self.members[id].assigned);
        let mut free = Vec::new();
        for (t, ps) in &wanted {
            for &p in ps {
                if !self.held_by_other(id, t, p) {
                    free.push((t.clone(), p));
                }
            }
        }
        let m = self.members.get_mut(id).expect("member exists");
        for (t, p) in free {
            m.assigned.entry(t).or_default().insert(p);
        }
    }

    fn remove(&mut self, id: &str) -> Option<ConsumerMember> {
        let m = self.members.remove(id)?;
        if let Some(i) = &m.instance_id {
            if self.static_members.get(i).is_some_and(|x| x == id) {
                self.static_members.remove(i);
            }
        }
        Some(m)
    }

    /// ConsumerGroupHeartbeat. Returns the response and whether the group epoch changed (the
    /// caller persists it).
    pub fn heartbeat(
        &mut self,
        now: Now,
        req: HeartbeatRequest,
        new_member_id: String,
        topics: &BTreeMap<String, i32>,
        config: &GroupConfig,
    ) -> (HeartbeatResponse, bool) {
        let start_epoch = self.epoch;
        let r = self.heartbeat_inner(now, req, new_member_id, topics, config);
        (r, self.epoch != start_epoch)
    }

    fn heartbeat_inner(
        &mut self,
        now: Now,
        req: HeartbeatRequest,
        new_member_id: String,
        topics: &BTreeMap<String, i32>,
        config: &GroupConfig,
    ) -> HeartbeatResponse {
        let mut req = req;
        // A topic listed with no partitions owns nothing (clients send such entries).
        if let Some(o) = req.owned.as_mut() {
            o.retain(|_, ps| !ps.is_empty());
        }
        let req = req;
        let err = |e: ErrorCode, msg: &str| HeartbeatResponse::error(e, msg, &req.member_id, req.member_epoch);
        // Some(None): the request clears the regex (an empty string, as Kafka's heartbeat).
        let regex: Option<Option<SubscriptionRegex>> = match req.subscribed_regex.as_deref() {
            None => None,
            Some("") => Some(None),
            Some(re) => match SubscriptionRegex::compile(re) {
                Ok(r) => Some(Some(r)),
                Err(e) => return err(ErrorCode::INVALID_REGULAR_EXPRESSION, &format!("subscribed_topic_regex '{re}': {e}")),
            },
        };
        if let Some(a) = &req.server_assignor {
            if !assignor::known(a) {
                return err(ErrorCode::UNSUPPORTED_ASSIGNOR, &format!("unknown server assignor '{a}' (strand has uniform and range)"));
            }
        }
        let mut fresh_revocation_ok = true;
        let id: String;
        match req.member_epoch {
            0 => {
                if req.subscribed.is_none() && req.subscribed_regex.is_none() {
                    return err(ErrorCode::INVALID_REQUEST, "a joining member must send subscribed_topic_names or subscribed_topic_regex");
                }
                let subscribed = req.subscribed.clone().unwrap_or_default();
                if req.rebalance_timeout_ms <= 0 {
                    return err(ErrorCode::INVALID_REQUEST, "a joining member must send a positive rebalance_timeout_ms");
                }
                id = if req.member_id.is_empty() { new_member_id } else { req.member_id.clone() };
                let mut replaced: Option<ConsumerMember> = None;
                if let Some(instance) = &req.instance_id {
                    if let Some(old_id) = self.static_members.get(instance).cloned() {
                        let old = &self.members[&old_id];
                        if !old.departed && old_id != id {
                            return err(ErrorCode::UNRELEASED_INSTANCE_ID, &format!("instance {instance} is still held by member {old_id}"));
                        }
                        replaced = self.remove(&old_id);
                        if let Some(t) = self.target.remove(&old_id) {
                            self.target.insert(id.clone(), t);
                        }
                    }
                }
                if replaced.is_none() && self.members.contains_key(&id) {
                    // A known member rejoining from scratch: it starts over.
                    self.remove(&id);
                    self.target.remove(&id);
                }
                if replaced.is_none() && self.members.len() >= config.max_size {
                    return err(ErrorCode::GROUP_MAX_SIZE_REACHED, "the group is full");
                }
                let subscribed: BTreeSet<String> = subscribed.iter().cloned().collect();
                let regex = regex.clone().flatten();
                tracing::debug!(group = %req.group_id, member = %id, topics = ?subscribed, regex = ?regex.as_ref().map(|r| &r.source), "consumer group: member joins");
                let mut member = ConsumerMember {
                    id: id.clone(),
                    epoch: 0,
                    previous_epoch: -1,
                    instance_id: req.instance_id.clone(),
                    rack_id: req.rack_id.clone(),
                    client_id: req.client_id.clone(),
                    client_host: req.client_host.clone(),
                    rebalance_timeout_ms: req.rebalance_timeout_ms,
                    subscribed: subscribed.clone(),
                    subscribed_regex: regex.clone(),
                    assignor: req.server_assignor.clone(),
                    assigned: TopicPartitions::new(),
                    revoking: TopicPartitions::new(),
                    revoke_deadline_ms: None,
                    last_seen_ms: now.mono_ms,
                    last_sent: None,
                    departed: false,
                };
                let keep_epoch = match replaced {
                    Some(old) if old.subscribed == subscribed && old.subscribed_regex == regex => {
                        // KIP-848 static membership: the new incarnation takes over.
                        member.epoch = old.epoch;
                        member.previous_epoch = old.previous_epoch;
                        member.assigned = old.assigned;
                        member.revoking = old.revoking;
                        member.revoke_deadline_ms = old.revoke_deadline_ms;
                        true
                    }
                    _ => false,
                };
                if let Some(i) = &req.instance_id {
                    self.static_members.insert(i.clone(), id.clone());
                }
                self.members.insert(id.clone(), member);
                if !keep_epoch {
                    self.bump(topics, &config.default_assignor);
                }
                fresh_revocation_ok = false;
            }
            LEAVE_EPOCH | STATIC_LEAVE_EPOCH => {
                if !self.members.contains_key(&req.member_id) {
                    return err(ErrorCode::UNKNOWN_MEMBER_ID, "unknown member");
                }
                if req.member_epoch == STATIC_LEAVE_EPOCH && self.members[&req.member_id].instance_id.is_some() {
                    let m = self.members.get_mut(&req.member_id).expect("checked");
                    m.departed = true;
                    m.last_seen_ms = now.mono_ms;
                } else {
                    self.remove(&req.member_id);
                    self.bump(topics, &config.default_assignor);
                }
                return HeartbeatResponse {
                    error: ErrorCode::NONE,
                    message: None,
                    member_id: req.member_id.clone(),
                    member_epoch: req.member_epoch,
                    heartbeat_interval_ms: config.consumer_heartbeat_interval_ms,
                    assignment: None,
                };
            }
            epoch => {
                let Some(m) = self.members.get(&req.member_id) else {
                    return err(ErrorCode::UNKNOWN_MEMBER_ID, "unknown member; rejoin with epoch 0");
                };
                if epoch != m.epoch {
                    let lost_response = epoch == m.previous_epoch
                        && req.owned.as_ref().is_none_or(|o| minus(o, &m.assigned).is_empty());
                    if !lost_response {
                        return err(ErrorCode::FENCED_MEMBER_EPOCH, &format!("member epoch {epoch} is not the current {}", m.epoch));
                    }
                }
                if req.instance_id.is_some() && m.instance_id != req.instance_id {
                    return err(ErrorCode::FENCED_INSTANCE_ID, "instance id does not match the member");
                }
                id = req.member_id.clone();
                let m = self.members.get_mut(&id).expect("checked");
                m.last_seen_ms = now.mono_ms;
                m.departed = false;
                if req.rebalance_timeout_ms > 0 {
                    m.rebalance_timeout_ms = req.rebalance_timeout_ms;
                }
                let mut changed = false;
                if let Some(s) = &req.subscribed {
                    let s: BTreeSet<String> = s.iter().cloned().collect();
                    if s != m.subscribed {
                        m.subscribed = s;
                        changed = true;
                    }
                }
                if let Some(re) = regex {
                    if re != m.subscribed_regex {
                        m.subscribed_regex = re;
                        changed = true;
                    }
                }
                if req.server_assignor.is_some() && req.server_assignor != m.assignor {
                    m.assignor = req.server_assignor.clone();
                    changed = true;
                }
                if changed || self.subscribed_topics(topics) != self.topics_seen {
                    self.bump(topics, &config.default_assignor);
                }
            }
        }
        self.reconcile(&id, req.owned.as_ref(), fresh_revocation_ok, now);
        let m = self.members.get_mut(&id).expect("member exists");
        let send = req.member_epoch == 0 || m.last_sent.as_ref() != Some(&m.assigned) || req.owned.as_ref().is_some_and(|o| *o != m.assigned);
        let assignment = send.then(|| m.assigned.clone());
        if send {
            m.last_sent = Some(m.assigned.clone());
        }
        HeartbeatResponse {
            error: ErrorCode::NONE,
            message: None,
            member_id: id,
            member_epoch: m.epoch,
            heartbeat_interval_ms: config.consumer_heartbeat_interval_ms,
            assignment,
        }
    }

    /// Session and revocation timeouts. Returns true when the group epoch changed.
    pub fn tick(&mut self, now: Now, topics: &BTreeMap<String, i32>, config: &GroupConfig) -> bool {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.last_seen_ms + config.consumer_session_timeout_ms <= now.mono_ms
                    || m.revoke_deadline_ms.is_some_and(|d| d <= now.mono_ms)
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            self.remove(id);
        }
        if !gone.is_empty() {
            self.bump(topics, &config.default_assignor);
            return true;
        }
        false
    }

    /// Whether an offset commit from (member, epoch) is acceptable.
    pub fn validate_commit(&self, member_id: &str, epoch: i32) -> ErrorCode {
        // Kafka's ConsumerGroup.validateOffsetCommit: a commit from outside the group
        // (epoch -1) is accepted while the group has no members, whatever member id it names.
        if epoch < 0 && self.members.is_empty() {
            return ErrorCode::NONE;
        }
        match self.members.get(member_id) {
            None => ErrorCode::UNKNOWN_MEMBER_ID,
            Some(m) if epoch > m.epoch => ErrorCode::FENCED_MEMBER_EPOCH,
            Some(m) if epoch < m.epoch => ErrorCode::STALE_MEMBER_EPOCH,
            Some(_) => ErrorCode::NONE,
        }
    }

    pub fn check(&self, group: &str) {
        let mut holder: BTreeMap<(&str, i32), &str> = BTreeMap::new();
        for (id, m) in &self.members {
            assert!(m.epoch <= self.epoch, "group {group}: member {id} epoch {} above group epoch {}", m.epoch, self.epoch);
            for set in [&m.assigned, &m.revoking] {
                for (t, ps) in set {
                    for &p in ps {
                        if let Some(other) = holder.insert((t.as_str(), p), id.as_str()) {
                            panic!("group {group}: {t}-{p} held by both {other} and {id}");
                        }
                    }
                }
            }
        }
    }
}
