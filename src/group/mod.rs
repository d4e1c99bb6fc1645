//! The group coordinator: a sans-IO core. Plain structs stepped by requests and ticks (with the
//! time passed in); each step returns its answer or parks it, and leaves in [`Output`] the
//! replies that became ready and the records to write to `__consumer_offsets`.
//!
//! The shell (`server::groups`) writes a step's records and waits until they are durable
//! before it releases that step's replies, so no client ever sees state a crash could take
//! back: a commit is acknowledged only once durable, a generation is announced only once it is
//! durable (so a restart never reuses one).
//!
//! Two protocols: `classic` (JoinGroup/SyncGroup, client-side assignment) and `consumer`
//! (KIP-848 ConsumerGroupHeartbeat, server-side assignment). Committed offsets are shared.

pub mod assignor;
pub mod classic;
pub mod consumer;
pub mod records;

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::protocol::errors::ErrorCode;
use classic::{Classic, ClassicState, JoinRequest, JoinResponse, SyncRequest, SyncResponse};
use consumer::Consumer;
use records::{GroupConfigValue, GroupRecord, GroupValue, OffsetValue, RecordKey, RecordValue};

/// Identifies a parked request in the shell.
pub type Token = u64;

/// The time, as the shell's runtime clock reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Monotonic milliseconds (timeouts).
    pub mono_ms: u64,
    /// Wall-clock milliseconds since the epoch (commit timestamps, retention).
    pub wall_ms: i64,
}

/// Group coordinator settings (Kafka's names in the comments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `offsets.topic.num.partitions`.
    pub offsets_partitions: i32,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: u64,
    /// `group.max.size`.
    pub max_size: usize,
    /// `offsets.retention.minutes`, in ms.
    pub offsets_retention_ms: i64,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// `group.consumer.session.timeout.ms`.
    pub consumer_session_timeout_ms: u64,
    /// `group.consumer.heartbeat.interval.ms`.
    pub consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.min.session.timeout.ms` and `group.consumer.max.session.timeout.ms`:
    /// the bounds of a group's `consumer.session.timeout.ms`.
    pub consumer_min_session_timeout_ms: i32,
    pub consumer_max_session_timeout_ms: i32,
    /// `group.consumer.min.heartbeat.interval.ms` and `group.consumer.max.heartbeat.interval.ms`:
    /// the bounds of a group's `consumer.heartbeat.interval.ms`.
    pub consumer_min_heartbeat_interval_ms: i32,
    pub consumer_max_heartbeat_interval_ms: i32,
    /// The first of `group.consumer.assignors`.
    pub default_assignor: String,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            offsets_partitions: 50,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: i32::MAX as usize,
            offsets_retention_ms: 7 * 24 * 3_600_000,
            offset_metadata_max_bytes: 4096,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
            consumer_min_session_timeout_ms: 45_000,
            consumer_max_session_timeout_ms: 60_000,
            consumer_min_heartbeat_interval_ms: 5_000,
            consumer_max_heartbeat_interval_ms: 15_000,
            default_assignor: assignor::UNIFORM.to_string(),
        }
    }
}

/// KIP-848 group configs (Kafka's `GroupConfig`; the share-group ones wait for share groups).
pub const CONSUMER_SESSION_TIMEOUT_MS: &str = "consumer.session.timeout.ms";
pub const CONSUMER_HEARTBEAT_INTERVAL_MS: &str = "consumer.heartbeat.interval.ms";
pub const GROUP_CONFIG_KEYS: [&str; 2] = [CONSUMER_SESSION_TIMEOUT_MS, CONSUMER_HEARTBEAT_INTERVAL_MS];

impl GroupConfig {
    /// This config with a group's overrides applied (they were validated when set).
    pub fn with_overrides(&self, overrides: Option<&BTreeMap<String, String>>) -> GroupConfig {
        let mut c = self.clone();
        let get = |key: &str| overrides.and_then(|o| o.get(key)).and_then(|v| v.parse::<i32>().ok()).filter(|v| *v > 0);
        if let Some(v) = get(CONSUMER_SESSION_TIMEOUT_MS) {
            c.consumer_session_timeout_ms = v as u64;
        }
        if let Some(v) = get(CONSUMER_HEARTBEAT_INTERVAL_MS) {
            c.consumer_heartbeat_interval_ms = v;
        }
        c
    }

    /// A group's config value for `key` (one of `GROUP_CONFIG_KEYS`) with its overrides.
    pub fn group_config_value(&self, key: &str) -> Option<i64> {
        match key {
            CONSUMER_SESSION_TIMEOUT_MS => Some(self.consumer_session_timeout_ms as i64),
            CONSUMER_HEARTBEAT_INTERVAL_MS => Some(i64::from(self.consumer_heartbeat_interval_ms)),
            _ => None,
        }
    }

    /// Kafka's `GroupConfig.validate`: only known keys, each an int of at least 1, each within
    /// the broker's bounds (the message names the bound, as Kafka's), and a session timeout
    /// above the heartbeat interval once the defaults fill in what `overrides` leaves out.
    pub fn validate_group_overrides(&self, overrides: &BTreeMap<String, String>) -> Result<(), String> {
        for (key, value) in overrides {
            if !GROUP_CONFIG_KEYS.contains(&key.as_str()) {
                return Err(format!("Unknown group config name: {key}"));
            }
            match value.trim().parse::<i32>() {
                Ok(v) if v >= 1 => {}
                Ok(v) => return Err(format!("Invalid value {v} for configuration {key}: Value must be at least 1")),
                Err(_) => return Err(format!("Invalid value {value} for configuration {key}: Not a number of type INT")),
            }
        }
        let get = |key: &str, default: i64| overrides.get(key).and_then(|v| v.trim().parse::<i64>().ok()).unwrap_or(default);
        let heartbeat = get(CONSUMER_HEARTBEAT_INTERVAL_MS, i64::from(self.consumer_heartbeat_interval_ms));
        let session = get(CONSUMER_SESSION_TIMEOUT_MS, self.consumer_session_timeout_ms as i64);
        let bounds = [
            (CONSUMER_HEARTBEAT_INTERVAL_MS, heartbeat, "group.consumer.min.heartbeat.interval.ms", self.consumer_min_heartbeat_interval_ms, "group.consumer.max.heartbeat.interval.ms", self.consumer_max_heartbeat_interval_ms),
            (CONSUMER_SESSION_TIMEOUT_MS, session, "group.consumer.min.session.timeout.ms", self.consumer_min_session_timeout_ms, "group.consumer.max.session.timeout.ms", self.consumer_max_session_timeout_ms),
        ];
        for (key, value, min_name, min, max_name, max) in bounds {
            // Only an overridden value is held to the bounds: the broker's own default is the
            // operator's choice (Kafka refuses to start when it lies outside them; strand's
            // tests and simulator run shorter timeouts than Kafka's minimums).
            if !overrides.contains_key(key) {
                continue;
            }
            if value < i64::from(min) {
                return Err(format!("{key} must be greater than or equal to {min_name} ({min})"));
            }
            if value > i64::from(max) {
                return Err(format!("{key} must be less than or equal to {max_name} ({max})"));
            }
        }
        if session <= heartbeat {
            return Err(format!("{CONSUMER_SESSION_TIMEOUT_MS} must be greater than {CONSUMER_HEARTBEAT_INTERVAL_MS} ({session} <= {heartbeat})"));
        }
        Ok(())
    }
}

/// Longest group id accepted (Kafka has no limit; ours bounds memory and record size).
pub const GROUP_ID_BYTES_MAX: usize = 4096;
/// An empty group without offsets is removed after this long.
pub const EMPTY_GROUP_GRACE_MS: i64 = 600_000;

/// A reply that was parked or is ready now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Join(JoinResponse),
    Sync(SyncResponse),
}

#[derive(Debug, Default)]
pub struct Output {
    pub replies: Vec<(Token, Reply)>,
    pub records: Vec<GroupRecord>,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Classic(Classic),
    Consumer(Consumer),
}

#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    /// Its `__consumer_offsets` partition.
    pub partition: i32,
    pub kind: Kind,
    pub offsets: BTreeMap<(String, i32), OffsetValue>,
    /// Wall time the group was last seen without members.
    pub empty_since_wall_ms: Option<i64>,
}

impl Group {
    pub fn is_empty(&self) -> bool {
        match &self.kind {
            Kind::Classic(c) => c.members.is_empty() && c.pending.is_empty(),
            Kind::Consumer(c) => c.members.is_empty(),
        }
    }

    pub fn state(&self) -> &'static str {
        match &self.kind {
            Kind::Classic(c) => c.state.name(),
            Kind::Consumer(c) => c.state(),
        }
    }

    pub fn protocol_type(&self) -> String {
        match &self.kind {
            Kind::Classic(c) => c.protocol_type.clone().unwrap_or_default(),
            Kind::Consumer(_) => "consumer".to_string(),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Classic(_) => "classic",
            Kind::Consumer(_) => "consumer",
        }
    }

    fn generation(&self) -> i32 {
        match &self.kind {
            Kind::Classic(c) => c.generation,
            Kind::Consumer(c) => c.epoch,
        }
    }

    fn record(&self) -> GroupRecord {
        let (kind, protocol) = match &self.kind {
            Kind::Classic(c) => ("classic", c.protocol.clone()),
            Kind::Consumer(_) => ("consumer", None),
        };
        GroupRecord {
            partition: self.partition,
            key: RecordKey::Group { group: self.id.clone() },
            value: Some(RecordValue::Group(GroupValue {
                kind: kind.to_string(),
                protocol_type: self.protocol_type(),
                generation: self.generation(),
                protocol,
            })),
        }
    }
}

/// One partition of an OffsetCommit, with the shell's verdict on the partition itself
/// (e.g. UNKNOWN_TOPIC_OR_PARTITION) already filled in.
#[derive(Debug, Clone)]
pub struct CommitPartition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub error: ErrorCode,
}

#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    /// Classic: generation id. Consumer: member epoch. -1: a commit from outside the group.
    pub generation: i32,
    pub partitions: Vec<CommitPartition>,
    /// OffsetCommit v9+: a commit with a generation to a group that does not exist gets
    /// GROUP_ID_NOT_FOUND; older versions get ILLEGAL_GENERATION (Kafka's
    /// `OffsetMetadataManager.validateOffsetCommit`).
    pub group_id_not_found: bool,
}

#[derive(Debug, Clone)]
pub struct DescribedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone)]
pub struct Description {
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<DescribedMember>,
}

/// Kafka's `Utils.abs(groupId.hashCode) % partitions`, with Java's String.hashCode.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group_id.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    (h & 0x7fff_ffff) % partitions.max(1)
}

pub fn validate_group_id(group_id: &str) -> ErrorCode {
    if group_id.is_empty() || group_id.len() > GROUP_ID_BYTES_MAX {
        ErrorCode::INVALID_GROUP_ID
    } else {
        ErrorCode::NONE
    }
}

pub struct Coordinator {
    pub config: GroupConfig,
    groups: BTreeMap<String, Group>,
    /// Each group's config overrides (KIP-848), whether or not the group exists: Kafka stores
    /// a config set for a group before its first member as well.
    group_configs: BTreeMap<String, BTreeMap<String, String>>,
    out: Output,
    /// Member ids are `{client_id}-{nonce}-{seq}`: unique per coordinator incarnation.
    nonce: u64,
    member_seq: u64,
}

impl Coordinator {
    /// `nonce` (random per start) keeps member ids of different incarnations apart.
    pub fn new(config: GroupConfig, nonce: u64) -> Coordinator {
        Coordinator { config, groups: BTreeMap::new(), group_configs: BTreeMap::new(), out: Output::default(), nonce, member_seq: 0 }
    }

    /// A group's config overrides, if any.
    pub fn group_configs(&self, group_id: &str) -> Option<&BTreeMap<String, String>> {
        self.group_configs.get(group_id)
    }

    /// The settings that apply to `group_id`: the broker's, with the group's overrides.
    pub fn config_for(&self, group_id: &str) -> GroupConfig {
        self.config.with_overrides(self.group_configs.get(group_id))
    }

    /// Replace a group's config overrides (validated by the caller with
    /// `GroupConfig::validate_group_overrides`) and queue the record that makes it durable; no
    /// overrides left writes a tombstone. Members see the change at their next heartbeat and
    /// the next session check.
    pub fn set_group_configs(&mut self, group_id: &str, overrides: BTreeMap<String, String>) {
        let partition = partition_for(group_id, self.config.offsets_partitions);
        let key = RecordKey::GroupConfig { group: group_id.to_string() };
        if overrides.is_empty() {
            if self.group_configs.remove(group_id).is_some() {
                self.out.records.push(GroupRecord { partition, key, value: None });
            }
        } else {
            self.out.records.push(GroupRecord {
                partition,
                key,
                value: Some(RecordValue::GroupConfig(GroupConfigValue { configs: overrides.clone() })),
            });
            self.group_configs.insert(group_id.to_string(), overrides);
        }
    }

    /// Replies and records produced since the last call.
    pub fn take_output(&mut self) -> Output {
        std::mem::take(&mut self.out)
    }

    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.get(id)
    }

    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.member_seq += 1;
        let prefix: String = client_id.chars().filter(|c| c.is_ascii_graphic()).take(64).collect();
        let prefix = if prefix.is_empty() { "member".to_string() } else { prefix };
        format!("{prefix}-{:016x}-{:08x}", self.nonce, self.member_seq)
    }

    fn new_group(&self, id: &str, kind: Kind) -> Group {
        Group {
            id: id.to_string(),
            partition: partition_for(id, self.config.offsets_partitions),
            kind,
            offsets: BTreeMap::new(),
            empty_since_wall_ms: None,
        }
    }

    fn persist_group(&mut self, id: &str) {
        let record = self.groups[id].record();
        self.out.records.push(record);
    }

    // ---- classic protocol ----

    pub fn join(&mut self, now: Now, token: Token, req: JoinRequest) {
        let reply_err = |out: &mut Output, e: ErrorCode, member: &str| out.replies.push((token, Reply::Join(JoinResponse::error(e, member))));
        if validate_group_id(&req.group_id) != ErrorCode::NONE {
            return reply_err(&mut self.out, ErrorCode::INVALID_GROUP_ID, &req.member_id);
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms || req.session_timeout_ms > self.config.max_session_timeout_ms {
            return reply_err(&mut self.out, ErrorCode::INVALID_SESSION_TIMEOUT, &req.member_id);
        }
        let group_id = req.group_id.clone();
        match self.groups.get_mut(&group_id) {
            None if !req.member_id.is_empty() => return reply_err(&mut self.out, ErrorCode::UNKNOWN_MEMBER_ID, &req.member_id),
            None => {
                let g = self.new_group(&group_id, Kind::Classic(Classic::new(0)));
                self.groups.insert(group_id.clone(), g);
            }
            Some(g) => {
                if let Kind::Consumer(c) = &g.kind {
                    if !c.members.is_empty() {
                        return reply_err(&mut self.out, ErrorCode::INCONSISTENT_GROUP_PROTOCOL, &req.member_id);
                    }
                    g.kind = Kind::Classic(Classic::new(c.epoch));
                }
            }
        }
        let member_id = self.new_member_id(&req.client_id);
        let config = self.config.clone();
        let g = self.groups.get_mut(&group_id).expect("present");
        let Kind::Classic(c) = &mut g.kind else { unreachable!("converted above") };
        let advanced = c.join(now, token, req, member_id, &config, &mut self.out);
        if advanced {
            self.persist_group(&group_id);
        }
        self.check_group(&group_id);
    }

    pub fn sync(&mut self, now: Now, token: Token, req: SyncRequest) {
        let group_id = req.group_id.clone();
        match self.groups.get_mut(&group_id).map(|g| &mut g.kind) {
            Some(Kind::Classic(c)) => c.sync(now, token, req, &mut self.out),
            _ => self.out.replies.push((token, Reply::Sync(SyncResponse::error(ErrorCode::UNKNOWN_MEMBER_ID)))),
        }
        self.check_group(&group_id);
    }

    pub fn heartbeat(&mut self, now: Now, group_id: &str, member_id: &str, instance_id: Option<&str>, generation: i32) -> ErrorCode {
        match self.groups.get_mut(group_id).map(|g| &mut g.kind) {
            Some(Kind::Classic(c)) => c.heartbeat(now, member_id, instance_id, generation),
            _ => ErrorCode::UNKNOWN_MEMBER_ID,
        }
    }

    /// LeaveGroup: one error per (member id, instance id).
    pub fn leave(&mut self, now: Now, group_id: &str, members: &[(String, Option<String>)]) -> Vec<ErrorCode> {
        let config = self.config.clone();
        let Some(Kind::Classic(c)) = self.groups.get_mut(group_id).map(|g| &mut g.kind) else {
            return vec![ErrorCode::UNKNOWN_MEMBER_ID; members.len()];
        };
        let errors: Vec<ErrorCode> = members.iter().map(|(m, i)| c.leave(now, m, i.as_deref(), &config, &mut self.out)).collect();
        if c.maybe_complete_join(now, &mut self.out) {
            self.persist_group(group_id);
        }
        self.check_group(group_id);
        errors
    }

    // ---- consumer protocol (KIP-848) ----

    /// `topics`: every topic's partition count, by name.
    pub fn consumer_heartbeat(&mut self, now: Now, req: consumer::HeartbeatRequest, topics: &BTreeMap<String, i32>) -> consumer::HeartbeatResponse {
        // Kafka's throwIfConsumerGroupHeartbeatRequestIsInvalid: "GroupId can't be empty." is
        // INVALID_REQUEST (JoinGroup's INVALID_GROUP_ID is the classic protocol's answer).
        if req.group_id.is_empty() {
            return consumer::HeartbeatResponse::error(ErrorCode::INVALID_REQUEST, "GroupId can't be empty.", &req.member_id, req.member_epoch);
        }
        if validate_group_id(&req.group_id) != ErrorCode::NONE {
            return consumer::HeartbeatResponse::error(ErrorCode::INVALID_GROUP_ID, "invalid group id", &req.member_id, req.member_epoch);
        }
        let group_id = req.group_id.clone();
        match self.groups.get_mut(&group_id) {
            None => {
                if req.member_epoch != 0 {
                    return consumer::HeartbeatResponse::error(ErrorCode::UNKNOWN_MEMBER_ID, "unknown group", &req.member_id, req.member_epoch);
                }
                let g = self.new_group(&group_id, Kind::Consumer(Consumer::new(0)));
                self.groups.insert(group_id.clone(), g);
            }
            Some(g) => {
                if let Kind::Classic(c) = &g.kind {
                    if !c.members.is_empty() || !c.pending.is_empty() {
                        return consumer::HeartbeatResponse::error(
                            ErrorCode::GROUP_ID_NOT_FOUND,
                            format!("group {group_id} is a classic group with members"),
                            &req.member_id,
                            req.member_epoch,
                        );
                    }
                    g.kind = Kind::Consumer(Consumer::new(c.generation));
                }
            }
        }
        let member_id = uuid_like(self.nonce, {
            self.member_seq += 1;
            self.member_seq
        });
        let config = self.config_for(&group_id);
        let g = self.groups.get_mut(&group_id).expect("present");
        let Kind::Consumer(c) = &mut g.kind else { unreachable!("converted above") };
        let (response, bumped) = c.heartbeat(now, req, member_id, topics, &config);
        if bumped {
            self.persist_group(&group_id);
        }
        self.check_group(&group_id);
        response
    }

    // ---- offsets ----

    /// OffsetCommit: one error per partition, in order. Accepted commits are applied now and
    /// their records queued (the shell answers once they are durable).
    pub fn commit(&mut self, now: Now, req: CommitRequest) -> Vec<ErrorCode> {
        // A group-level error goes to every partition the shell has not already refused
        // (Kafka answers UNKNOWN_TOPIC_OR_PARTITION before it asks the coordinator).
        let all = |e: ErrorCode| req.partitions.iter().map(|p| if p.error != ErrorCode::NONE { p.error } else { e }).collect::<Vec<_>>();
        if validate_group_id(&req.group_id) != ErrorCode::NONE {
            return all(ErrorCode::INVALID_GROUP_ID);
        }
        // Kafka: a negative generation is a commit from outside group management (admin
        // tools, assign()); it creates a "simple" group, or is accepted by an empty one,
        // whatever member id it names.
        let verdict = match self.groups.get(&req.group_id).map(|g| &g.kind) {
            None if req.generation < 0 => {
                let g = self.new_group(&req.group_id, Kind::Classic(Classic::new(0)));
                self.groups.insert(req.group_id.clone(), g);
                ErrorCode::NONE
            }
            None if req.group_id_not_found => ErrorCode::GROUP_ID_NOT_FOUND,
            None => ErrorCode::ILLEGAL_GENERATION,
            Some(Kind::Classic(c)) => {
                if req.generation < 0 && c.state == ClassicState::Empty {
                    ErrorCode::NONE
                } else if classic::fenced(c, &req.member_id, req.instance_id.as_deref()) {
                    ErrorCode::FENCED_INSTANCE_ID
                } else if !c.members.contains_key(&req.member_id) {
                    ErrorCode::UNKNOWN_MEMBER_ID
                } else if req.generation != c.generation {
                    ErrorCode::ILLEGAL_GENERATION
                } else if c.state == ClassicState::CompletingRebalance {
                    ErrorCode::REBALANCE_IN_PROGRESS
                } else {
                    ErrorCode::NONE
                }
            }
            Some(Kind::Consumer(c)) => c.validate_commit(&req.member_id, req.generation),
        };
        if verdict != ErrorCode::NONE {
            return all(verdict);
        }
        let max_meta = self.config.offset_metadata_max_bytes;
        let g = self.groups.get_mut(&req.group_id).expect("present");
        let mut errors = Vec::with_capacity(req.partitions.len());
        for p in req.partitions {
            if p.error != ErrorCode::NONE {
                errors.push(p.error);
                continue;
            }
            let metadata = p.metadata.unwrap_or_default();
            if metadata.len() > max_meta {
                errors.push(ErrorCode::OFFSET_METADATA_TOO_LARGE);
                continue;
            }
            let value = OffsetValue { offset: p.offset, leader_epoch: p.leader_epoch, metadata, commit_timestamp_ms: now.wall_ms };
            g.offsets.insert((p.topic.clone(), p.partition), value.clone());
            self.out.records.push(GroupRecord {
                partition: g.partition,
                key: RecordKey::Offset { group: g.id.clone(), topic: p.topic, partition: p.partition },
                value: Some(RecordValue::Offset(value)),
            });
            errors.push(ErrorCode::NONE);
        }
        errors
    }

    /// OffsetFetch for one group: `partitions` None = every committed partition. A consumer
    /// group member may name itself (member id, epoch) to be checked against stale epochs.
    #[allow(clippy::type_complexity)]
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[(String, i32)]>,
        member: Option<(&str, i32)>,
    ) -> Result<Vec<(String, i32, Option<OffsetValue>)>, ErrorCode> {
        if validate_group_id(group_id) != ErrorCode::NONE {
            return Err(ErrorCode::INVALID_GROUP_ID);
        }
        let group = self.groups.get(group_id);
        if let (Some(Group { kind: Kind::Consumer(c), .. }), Some((m, epoch))) = (group, member) {
            if !m.is_empty() && epoch >= 0 {
                match c.members.get(m) {
                    None => return Err(ErrorCode::UNKNOWN_MEMBER_ID),
                    Some(x) if x.epoch != epoch => return Err(ErrorCode::STALE_MEMBER_EPOCH),
                    Some(_) => {}
                }
            }
        }
        Ok(match partitions {
            Some(list) => list
                .iter()
                .map(|(t, p)| (t.clone(), *p, group.and_then(|g| g.offsets.get(&(t.clone(), *p)).cloned())))
                .collect(),
            None => group
                .map(|g| g.offsets.iter().map(|((t, p), v)| (t.clone(), *p, Some(v.clone()))).collect())
                .unwrap_or_default(),
        })
    }

    // ---- admin ----

    pub fn describe(&self, group_id: &str) -> Option<Description> {
        let g = self.groups.get(group_id)?;
        Some(match &g.kind {
            Kind::Classic(c) => {
                let protocol = c.protocol.clone().unwrap_or_default();
                Description {
                    state: c.state.name().to_string(),
                    protocol_type: c.protocol_type.clone().unwrap_or_default(),
                    protocol: protocol.clone(),
                    members: c
                        .members
                        .values()
                        .map(|m| DescribedMember {
                            member_id: m.id.clone(),
                            instance_id: m.instance_id.clone(),
                            client_id: m.client_id.clone(),
                            client_host: m.client_host.clone(),
                            metadata: m.metadata(&protocol),
                            assignment: m.assignment.clone(),
                        })
                        .collect(),
                }
            }
            Kind::Consumer(c) => Description {
                state: c.state().to_string(),
                protocol_type: "consumer".into(),
                protocol: String::new(),
                members: c
                    .members
                    .values()
                    .map(|m| DescribedMember {
                        member_id: m.id.clone(),
                        instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        metadata: Bytes::new(),
                        assignment: encode_consumer_assignment(&m.assigned),
                    })
                    .collect(),
            },
        })
    }

    /// DeleteGroups for one group.
    pub fn delete(&mut self, group_id: &str) -> ErrorCode {
        let Some(g) = self.groups.get(group_id) else { return ErrorCode::GROUP_ID_NOT_FOUND };
        if !g.is_empty() {
            return ErrorCode::NON_EMPTY_GROUP;
        }
        let g = self.groups.remove(group_id).expect("present");
        self.tombstone_group(g);
        ErrorCode::NONE
    }

    fn tombstone_group(&mut self, g: Group) {
        for (t, p) in g.offsets.keys() {
            self.out.records.push(GroupRecord {
                partition: g.partition,
                key: RecordKey::Offset { group: g.id.clone(), topic: t.clone(), partition: *p },
                value: None,
            });
        }
        self.out.records.push(GroupRecord { partition: g.partition, key: RecordKey::Group { group: g.id }, value: None });
    }

    /// OffsetDelete: per-partition errors, or a group-level error.
    pub fn offset_delete(&mut self, group_id: &str, partitions: &[(String, i32)]) -> Result<Vec<ErrorCode>, ErrorCode> {
        let Some(g) = self.groups.get_mut(group_id) else { return Err(ErrorCode::GROUP_ID_NOT_FOUND) };
        let subscribed = |topic: &str| -> bool {
            match &g.kind {
                Kind::Classic(c) => !c.members.is_empty() && c.protocol_type.as_deref() == Some("consumer") && classic_subscribes(c, topic),
                Kind::Consumer(c) => c.members.values().any(|m| m.subscribes_to(topic)),
            }
        };
        let verdicts: Vec<ErrorCode> = partitions
            .iter()
            .map(|(t, _)| if subscribed(t) { ErrorCode::GROUP_SUBSCRIBED_TO_TOPIC } else { ErrorCode::NONE })
            .collect();
        for ((t, p), e) in partitions.iter().zip(&verdicts) {
            if *e == ErrorCode::NONE && g.offsets.remove(&(t.clone(), *p)).is_some() {
                self.out.records.push(GroupRecord {
                    partition: g.partition,
                    key: RecordKey::Offset { group: g.id.clone(), topic: t.clone(), partition: *p },
                    value: None,
                });
            }
        }
        Ok(verdicts)
    }

    // ---- time ----

    /// Session, rebalance and revocation timeouts; offset retention of empty groups.
    pub fn tick(&mut self, now: Now, topics: &BTreeMap<String, i32>) {
        let config = self.config.clone();
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for id in ids {
            let group_config = self.group_configs.get(&id).map(|o| config.with_overrides(Some(o)));
            let g = self.groups.get_mut(&id).expect("listed");
            let changed = match &mut g.kind {
                Kind::Classic(c) => c.tick(now, &config, &mut self.out),
                Kind::Consumer(c) => c.tick(now, topics, group_config.as_ref().unwrap_or(&config)),
            };
            if changed {
                self.persist_group(&id);
            }
            let g = self.groups.get_mut(&id).expect("listed");
            if !g.is_empty() {
                g.empty_since_wall_ms = None;
            } else {
                let since = *g.empty_since_wall_ms.get_or_insert(now.wall_ms);
                let expired_offsets = since + config.offsets_retention_ms <= now.wall_ms;
                let idle = g.offsets.is_empty() && since + EMPTY_GROUP_GRACE_MS <= now.wall_ms;
                if expired_offsets || idle {
                    let g = self.groups.remove(&id).expect("listed");
                    self.tombstone_group(g);
                    continue;
                }
            }
            self.check_group(&id);
        }
    }

    // ---- recovery ----

    /// Apply one record read back from `__consumer_offsets` partition `partition`, in log order.
    pub fn replay(&mut self, partition: i32, key: &RecordKey, value: Option<&RecordValue>, wall_ms: i64) {
        let group_id = key.group().to_string();
        match (key, value) {
            (RecordKey::GroupConfig { .. }, Some(RecordValue::GroupConfig(v))) => {
                self.group_configs.insert(group_id, v.configs.clone());
            }
            (RecordKey::GroupConfig { .. }, _) => {
                self.group_configs.remove(&group_id);
            }
            (RecordKey::Group { .. }, None) => {
                self.groups.remove(&group_id);
            }
            (RecordKey::Group { .. }, Some(RecordValue::Group(v))) => {
                #[cfg(feature = "planted-bugs")]
                let generation = if crate::runtime::planted("group-generation-reset") { 0 } else { v.generation };
                #[cfg(not(feature = "planted-bugs"))]
                let generation = v.generation;
                let kind = if v.kind == "consumer" {
                    Kind::Consumer(Consumer::new(generation))
                } else {
                    let mut c = Classic::new(generation);
                    c.protocol_type = (!v.protocol_type.is_empty()).then(|| v.protocol_type.clone());
                    Kind::Classic(c)
                };
                let mut g = self.groups.remove(&group_id).unwrap_or_else(|| self.new_group(&group_id, kind.clone()));
                g.kind = kind;
                g.partition = partition;
                g.empty_since_wall_ms = Some(wall_ms);
                self.groups.insert(group_id, g);
            }
            (RecordKey::Offset { topic, partition: p, .. }, v) => {
                let g = self.groups.entry(group_id.clone()).or_insert_with(|| Group {
                    id: group_id.clone(),
                    partition,
                    kind: Kind::Classic(Classic::new(0)),
                    offsets: BTreeMap::new(),
                    empty_since_wall_ms: Some(wall_ms),
                });
                match v {
                    Some(RecordValue::Offset(o)) => {
                        g.offsets.insert((topic.clone(), *p), o.clone());
                    }
                    _ => {
                        g.offsets.remove(&(topic.clone(), *p));
                    }
                }
            }
            (RecordKey::Group { .. }, Some(RecordValue::Offset(_) | RecordValue::GroupConfig(_))) => {}
        }
    }

    /// Every live record (what a compaction would keep), for one `__consumer_offsets` partition.
    pub fn snapshot(&self, partition: i32) -> Vec<GroupRecord> {
        let mut out = Vec::new();
        for (id, configs) in &self.group_configs {
            if partition_for(id, self.config.offsets_partitions) == partition {
                out.push(GroupRecord {
                    partition,
                    key: RecordKey::GroupConfig { group: id.clone() },
                    value: Some(RecordValue::GroupConfig(GroupConfigValue { configs: configs.clone() })),
                });
            }
        }
        for g in self.groups.values().filter(|g| g.partition == partition) {
            out.push(g.record());
            for ((t, p), v) in &g.offsets {
                out.push(GroupRecord {
                    partition,
                    key: RecordKey::Offset { group: g.id.clone(), topic: t.clone(), partition: *p },
                    value: Some(RecordValue::Offset(v.clone())),
                });
            }
        }
        out
    }

    fn check_group(&self, id: &str) {
        if let Some(g) = self.groups.get(id) {
            match &g.kind {
                Kind::Classic(c) => c.check(id),
                Kind::Consumer(c) => c.check(id),
            }
        }
    }
}

fn classic_subscribes(c: &Classic, topic: &str) -> bool {
    let protocol = c.protocol.clone().unwrap_or_default();
    c.members.values().any(|m| decode_subscription(&m.metadata(&protocol)).iter().any(|t| t == topic))
}

/// Topics of a consumer protocol Subscription (int16 version, array of string topics, ...).
pub fn decode_subscription(b: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = 2usize;
    let Some(n) = b.get(at..at + 4).map(|x| i32::from_be_bytes([x[0], x[1], x[2], x[3]])) else { return out };
    at += 4;
    for _ in 0..n.clamp(0, 100_000) {
        let Some(len) = b.get(at..at + 2).map(|x| i16::from_be_bytes([x[0], x[1]])) else { return out };
        at += 2;
        let len = len.max(0) as usize;
        let Some(s) = b.get(at..at + len) else { return out };
        out.push(String::from_utf8_lossy(s).into_owned());
        at += len;
    }
    out
}

/// A consumer protocol Subscription (version 0) of `topics`, without user data: what a
/// classic consumer sends as JoinGroup metadata.
pub fn encode_subscription(topics: &[&str]) -> Bytes {
    let mut b = Vec::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        b.extend_from_slice(&(t.len() as i16).to_be_bytes());
        b.extend_from_slice(t.as_bytes());
    }
    b.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(b)
}

/// A consumer protocol Assignment (version 0) of `tp`, for DescribeGroups of consumer groups.
pub fn encode_consumer_assignment(tp: &assignor::TopicPartitions) -> Bytes {
    let mut b = Vec::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(tp.len() as i32).to_be_bytes());
    for (t, ps) in tp {
        b.extend_from_slice(&(t.len() as i16).to_be_bytes());
        b.extend_from_slice(t.as_bytes());
        b.extend_from_slice(&(ps.len() as i32).to_be_bytes());
        for p in ps {
            b.extend_from_slice(&p.to_be_bytes());
        }
    }
    b.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(b)
}

/// A 22-character member id for KIP-848 v0 clients (which let the coordinator choose).
fn uuid_like(nonce: u64, seq: u64) -> String {
    format!("{nonce:016x}{seq:016x}")
}

#[cfg(test)]
mod tests;
