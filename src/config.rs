//! Broker and topic configuration, with Kafka's key names (`retention.ms` -> `retention_ms`).
//!
//! Precedence for the broker: CLI flags override `--config strand.toml`, which overrides the
//! defaults. Topic configs are the per-topic overrides Kafka accepts on CreateTopics and
//! IncrementalAlterConfigs; unknown keys or bad values are INVALID_CONFIG with a message naming
//! the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::limits::MESSAGE_BYTES_MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// Per-topic settings (Kafka's topic-level configs we honour).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// `segment.bytes`: roll the active segment when it would exceed this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment when its first batch is this old.
    pub segment_ms: i64,
    /// `retention.ms`: delete whole segments whose newest record is older; -1 keeps forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete oldest whole segments while the partition is larger; -1 = no limit.
    pub retention_bytes: i64,
    /// `max.message.bytes`: largest record batch accepted (after compression).
    pub max_message_bytes: i32,
    /// `message.timestamp.type`.
    pub message_timestamp_type: TimestampType,
    /// `index.interval.bytes`: bytes between offset/time index entries.
    pub index_interval_bytes: i32,
    /// `segment.index.bytes`: most bytes an offset index may take before the segment rolls.
    pub segment_index_bytes: i32,
    /// `cleanup.policy`: only `delete` is supported (compaction is not implemented yet).
    pub cleanup_policy: String,
}

impl Default for TopicConfig {
    fn default() -> Self {
        // Kafka's defaults (LogConfig / ServerLogConfigs).
        TopicConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            max_message_bytes: 1024 * 1024 + 12,
            message_timestamp_type: TimestampType::CreateTime,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 * 1024 * 1024,
            cleanup_policy: "delete".into(),
        }
    }
}

/// The topic config keys we accept, in the order DescribeConfigs lists them.
pub const TOPIC_CONFIG_KEYS: &[&str] = &[
    "cleanup.policy",
    "index.interval.bytes",
    "max.message.bytes",
    "message.timestamp.type",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.index.bytes",
    "segment.ms",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn parse_num<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ConfigError> {
    value
        .trim()
        .parse::<T>()
        .map_err(|_| ConfigError(format!("invalid value '{value}' for config '{key}': not a valid number")))
}

fn not_int(key: &str, value: &str) -> ConfigError {
    ConfigError(format!("invalid value '{value}' for config '{key}': not a number of type INT (at most {})", i32::MAX))
}

fn at_least<T: PartialOrd + std::fmt::Display + Copy>(key: &str, v: T, min: T) -> Result<T, ConfigError> {
    if v < min {
        return Err(ConfigError(format!("invalid value {v} for config '{key}': must be at least {min}")));
    }
    Ok(v)
}

impl TopicConfig {
    /// Set one Kafka config key. Rejects unknown keys and out-of-range values.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match key {
            // An INT in Kafka (so at most 2^31-1): a segment's index positions are u32.
            "segment.bytes" => {
                self.segment_bytes = at_least(key, parse_num::<i32>(key, value).map_err(|_| not_int(key, value))?, 14)? as u64
            }
            "segment.ms" => self.segment_ms = at_least(key, parse_num(key, value)?, 1)?,
            "retention.ms" => self.retention_ms = at_least(key, parse_num(key, value)?, -1)?,
            "retention.bytes" => self.retention_bytes = at_least(key, parse_num(key, value)?, -1)?,
            "max.message.bytes" => {
                let v: i64 = at_least(key, parse_num(key, value)?, 0)?;
                if v > MESSAGE_BYTES_MAX {
                    return Err(ConfigError(format!(
                        "invalid value {v} for config '{key}': must be at most {MESSAGE_BYTES_MAX}"
                    )));
                }
                self.max_message_bytes = v as i32;
            }
            "index.interval.bytes" => self.index_interval_bytes = at_least(key, parse_num(key, value)?, 0)?,
            "segment.index.bytes" => self.segment_index_bytes = at_least(key, parse_num(key, value)?, 4096)?,
            "message.timestamp.type" => {
                self.message_timestamp_type = match value.trim() {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    other => {
                        return Err(ConfigError(format!(
                            "invalid value '{other}' for config '{key}': expected CreateTime or LogAppendTime"
                        )))
                    }
                }
            }
            "cleanup.policy" => {
                if value.trim() != "delete" {
                    return Err(ConfigError(format!(
                        "invalid value '{value}' for config '{key}': strand supports only 'delete' (compaction is not implemented)"
                    )));
                }
                self.cleanup_policy = "delete".into();
            }
            other => return Err(ConfigError(format!("unknown topic config '{other}'"))),
        }
        Ok(())
    }

    /// Reset one key to the default.
    pub fn reset(&mut self, key: &str) -> Result<(), ConfigError> {
        let default = TopicConfig::default();
        let value = default.get(key).ok_or_else(|| ConfigError(format!("unknown topic config '{key}'")))?;
        self.set(key, &value)
    }

    /// The value of one key as Kafka prints it.
    pub fn get(&self, key: &str) -> Option<String> {
        Some(match key {
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "segment.index.bytes" => self.segment_index_bytes.to_string(),
            "message.timestamp.type" => match self.message_timestamp_type {
                TimestampType::CreateTime => "CreateTime".into(),
                TimestampType::LogAppendTime => "LogAppendTime".into(),
            },
            "cleanup.policy" => self.cleanup_policy.clone(),
            _ => return None,
        })
    }

    /// Whether `key` differs from the broker-wide default (DescribeConfigs' config source).
    pub fn is_default(&self, key: &str) -> bool {
        TopicConfig::default().get(key) == self.get(key)
    }

    /// Build from a map of overrides.
    pub fn from_overrides(overrides: &BTreeMap<String, String>) -> Result<TopicConfig, ConfigError> {
        let mut c = TopicConfig::default();
        for (k, v) in overrides {
            c.set(k, v)?;
        }
        Ok(c)
    }
}

/// Broker settings. Field names follow Kafka's server configs where one exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// `host:port` clients are told to connect to (defaults to `listen`).
    pub advertised_listener: Option<String>,
    /// Directory for logs and metadata (`log.dirs`).
    pub data_dir: PathBuf,
    /// `node.id`.
    pub node_id: i32,
    /// `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// `num.partitions` for auto-created topics.
    pub num_partitions: i32,
    /// `log.retention.check.interval.ms`.
    pub log_retention_check_interval_ms: u64,
    /// Topic config defaults applied to topics without overrides (Kafka's `log.*` keys).
    pub log_segment_bytes: Option<u64>,
    pub log_retention_ms: Option<i64>,
    pub log_retention_bytes: Option<i64>,
    pub message_max_bytes: Option<i32>,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets` (fixed once created).
    pub offsets_topic_num_partitions: i32,
    /// `__consumer_offsets` partitions are compacted (live records copied forward, the prefix
    /// deleted) when they hold more than this many bytes (and 4x their live records).
    pub offsets_topic_compact_bytes: u64,
    /// `offsets.retention.minutes`: committed offsets of an empty group are kept this long.
    pub offsets_retention_minutes: i64,
    /// `group.initial.rebalance.delay.ms`.
    pub group_initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms`.
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub group_max_session_timeout_ms: i32,
    /// `group.max.size`.
    pub group_max_size: i32,
    /// `group.consumer.session.timeout.ms` (KIP-848 groups).
    pub group_consumer_session_timeout_ms: u64,
    /// `group.consumer.heartbeat.interval.ms` (KIP-848 groups).
    pub group_consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.min.session.timeout.ms` / `group.consumer.max.session.timeout.ms` and
    /// `group.consumer.min.heartbeat.interval.ms` / `group.consumer.max.heartbeat.interval.ms`:
    /// the bounds of a group's `consumer.session.timeout.ms` and `consumer.heartbeat.interval.ms`
    /// (group configs, KIP-848).
    pub group_consumer_min_session_timeout_ms: i32,
    pub group_consumer_max_session_timeout_ms: i32,
    pub group_consumer_min_heartbeat_interval_ms: i32,
    pub group_consumer_max_heartbeat_interval_ms: i32,
    /// `connections.max.idle.ms`: a connection that neither sends a request nor takes a
    /// response for this long is closed; so is one that does not finish sending a request or
    /// reading a response within it.
    pub connections_max_idle_ms: u64,
    /// `controller.quorum.voters`: `id@host:port,...`, the metadata quorum's voters and where
    /// each one's inter-broker listener is. Unset: a single node keeping its metadata in
    /// `strand.meta` (a quorum of one). Set: this node is one of the voters (combined mode:
    /// broker and controller), and its own entry's address is where it listens for peers.
    pub controller_quorum: Option<String>,
    /// The cluster's id (Kafka's `cluster.id` from `kafka-storage format`): needed the first
    /// time a quorum node starts on an empty data directory, then stored there and checked.
    pub cluster_id: Option<String>,
    /// `broker.rack`.
    pub broker_rack: Option<String>,
    /// `broker.session.timeout.ms`: a broker the active controller has not heard from for this
    /// long (in combined mode, its Raft follower's answers are its heartbeats) is fenced (its partitions lose their leader until it is back).
    pub broker_session_timeout_ms: u64,
    /// How long one tick of the metadata quorum's Raft is. An election starts after 10 to 20
    /// ticks without a leader (Kafka's `controller.quorum.election.timeout.ms` is 1000).
    pub controller_tick_ms: u64,
    /// The metadata log is compacted to a snapshot of the image every this many entries (Kafka's
    /// `metadata.log.max.record.bytes.between.snapshots`, counted in entries).
    pub metadata_snapshot_entries: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: "127.0.0.1:9092".parse().expect("static address"),
            advertised_listener: None,
            data_dir: PathBuf::from("./data"),
            node_id: 1,
            auto_create_topics_enable: true,
            num_partitions: 1,
            log_retention_check_interval_ms: 300_000,
            log_segment_bytes: None,
            log_retention_ms: None,
            log_retention_bytes: None,
            message_max_bytes: None,
            offsets_topic_num_partitions: 50,
            offsets_topic_compact_bytes: 16 * 1024 * 1024,
            offsets_retention_minutes: 7 * 24 * 60,
            group_initial_rebalance_delay_ms: 3_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_size: i32::MAX,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_heartbeat_interval_ms: 5_000,
            group_consumer_min_session_timeout_ms: 45_000,
            group_consumer_max_session_timeout_ms: 60_000,
            group_consumer_min_heartbeat_interval_ms: 5_000,
            group_consumer_max_heartbeat_interval_ms: 15_000,
            connections_max_idle_ms: 600_000,
            controller_quorum: None,
            cluster_id: None,
            broker_rack: None,
            broker_session_timeout_ms: 9_000,
            controller_tick_ms: 50,
            metadata_snapshot_entries: 1_000,
        }
    }
}

impl BrokerConfig {
    /// Parse a TOML file's text. Errors name the problem in one line.
    pub fn from_toml(text: &str) -> Result<BrokerConfig, ConfigError> {
        let c: BrokerConfig = toml::from_str(text).map_err(|e| ConfigError(e.message().to_string()))?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.num_partitions < 1 || self.num_partitions > crate::limits::TOPIC_PARTITIONS_MAX {
            return Err(ConfigError(format!(
                "num_partitions {} must be between 1 and {}",
                self.num_partitions,
                crate::limits::TOPIC_PARTITIONS_MAX
            )));
        }
        if self.offsets_topic_num_partitions < 1 || self.offsets_topic_num_partitions > 1000 {
            return Err(ConfigError(format!(
                "offsets_topic_num_partitions {} must be between 1 and 1000",
                self.offsets_topic_num_partitions
            )));
        }
        if self.offsets_retention_minutes < 1 {
            return Err(ConfigError(format!("offsets_retention_minutes {} must be at least 1", self.offsets_retention_minutes)));
        }
        if self.group_min_session_timeout_ms < 1 || self.group_min_session_timeout_ms > self.group_max_session_timeout_ms {
            return Err(ConfigError(format!(
                "group_min_session_timeout_ms {} must be at least 1 and at most group_max_session_timeout_ms {}",
                self.group_min_session_timeout_ms, self.group_max_session_timeout_ms
            )));
        }
        if self.group_max_size < 1 {
            return Err(ConfigError(format!("group_max_size {} must be at least 1", self.group_max_size)));
        }
        if self.group_consumer_session_timeout_ms < 1 || self.group_consumer_heartbeat_interval_ms < 1 {
            return Err(ConfigError("group_consumer_session_timeout_ms and group_consumer_heartbeat_interval_ms must be at least 1".into()));
        }
        for (min_key, min, max_key, max) in [
            (
                "group_consumer_min_session_timeout_ms",
                self.group_consumer_min_session_timeout_ms,
                "group_consumer_max_session_timeout_ms",
                self.group_consumer_max_session_timeout_ms,
            ),
            (
                "group_consumer_min_heartbeat_interval_ms",
                self.group_consumer_min_heartbeat_interval_ms,
                "group_consumer_max_heartbeat_interval_ms",
                self.group_consumer_max_heartbeat_interval_ms,
            ),
        ] {
            if min < 1 || min > max {
                return Err(ConfigError(format!("{min_key} {min} must be at least 1 and at most {max_key} {max}")));
            }
        }
        if self.group_initial_rebalance_delay_ms > 300_000 {
            return Err(ConfigError(format!(
                "group_initial_rebalance_delay_ms {} must be at most 300000",
                self.group_initial_rebalance_delay_ms
            )));
        }
        if self.connections_max_idle_ms < 1_000 {
            return Err(ConfigError(format!("connections_max_idle_ms {} must be at least 1000", self.connections_max_idle_ms)));
        }
        if self.node_id < 0 {
            return Err(ConfigError(format!("node_id {} must not be negative", self.node_id)));
        }
        self.topic_defaults()?;
        if let Some(q) = &self.controller_quorum {
            let voters = parse_quorum(q)?;
            let me = u32::try_from(self.node_id).unwrap_or(u32::MAX);
            if !voters.iter().any(|(id, _)| id.0 == me) {
                return Err(ConfigError(format!(
                    "controller_quorum '{q}' does not list this node's id {} (combined mode: every node is a voter)",
                    self.node_id
                )));
            }
        }
        if let Some(id) = &self.cluster_id {
            validate_cluster_id(id)?;
        }
        if !(1_000..=3_600_000).contains(&self.broker_session_timeout_ms) {
            return Err(ConfigError(format!("broker_session_timeout_ms {} must be between 1000 and 3600000", self.broker_session_timeout_ms)));
        }
        if self.metadata_snapshot_entries < 1 {
            return Err(ConfigError("metadata_snapshot_entries must be at least 1".into()));
        }
        if !(5..=10_000).contains(&self.controller_tick_ms) {
            return Err(ConfigError(format!("controller_tick_ms {} must be between 5 and 10000", self.controller_tick_ms)));
        }
        if let Some(a) = &self.advertised_listener {
            parse_host_port(a)?;
        }
        Ok(())
    }

    /// The topic config every topic starts from before its own overrides.
    pub fn topic_defaults(&self) -> Result<TopicConfig, ConfigError> {
        let mut c = TopicConfig::default();
        if let Some(v) = self.log_segment_bytes {
            c.set("segment.bytes", &v.to_string()).map_err(|e| ConfigError(format!("log_segment_bytes: {e}")))?;
        }
        if let Some(v) = self.log_retention_ms {
            c.set("retention.ms", &v.to_string()).map_err(|e| ConfigError(format!("log_retention_ms: {e}")))?;
        }
        if let Some(v) = self.log_retention_bytes {
            c.set("retention.bytes", &v.to_string()).map_err(|e| ConfigError(format!("log_retention_bytes: {e}")))?;
        }
        if let Some(v) = self.message_max_bytes {
            c.set("max.message.bytes", &v.to_string()).map_err(|e| ConfigError(format!("message_max_bytes: {e}")))?;
        }
        Ok(c)
    }

    /// The group coordinator's settings.
    pub fn group_config(&self) -> crate::group::GroupConfig {
        crate::group::GroupConfig {
            offsets_partitions: self.offsets_topic_num_partitions,
            min_session_timeout_ms: self.group_min_session_timeout_ms,
            max_session_timeout_ms: self.group_max_session_timeout_ms,
            initial_rebalance_delay_ms: self.group_initial_rebalance_delay_ms,
            max_size: self.group_max_size as usize,
            offsets_retention_ms: self.offsets_retention_minutes.saturating_mul(60_000),
            offset_metadata_max_bytes: 4096,
            consumer_session_timeout_ms: self.group_consumer_session_timeout_ms,
            consumer_heartbeat_interval_ms: self.group_consumer_heartbeat_interval_ms,
            consumer_min_session_timeout_ms: self.group_consumer_min_session_timeout_ms,
            consumer_max_session_timeout_ms: self.group_consumer_max_session_timeout_ms,
            consumer_min_heartbeat_interval_ms: self.group_consumer_min_heartbeat_interval_ms,
            consumer_max_heartbeat_interval_ms: self.group_consumer_max_heartbeat_interval_ms,
            default_assignor: crate::group::assignor::UNIFORM.to_string(),
        }
    }

    /// The (host, port) clients are told to use.
    pub fn advertised(&self) -> (String, i32) {
        match &self.advertised_listener {
            Some(a) => parse_host_port(a).expect("validated at load"),
            None => (self.listen.ip().to_string(), i32::from(self.listen.port())),
        }
    }
}

/// The voters of `controller_quorum`, by id. Hosts are resolved here (a name that does not
/// resolve is an error naming it).
pub fn parse_quorum(s: &str) -> Result<Vec<(crate::raft::NodeId, SocketAddr)>, ConfigError> {
    use std::net::ToSocketAddrs;
    let mut out: Vec<(crate::raft::NodeId, SocketAddr)> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('@')
            .ok_or_else(|| ConfigError(format!("controller quorum entry '{part}' must be id@host:port")))?;
        let id: u32 = id
            .parse()
            .map_err(|_| ConfigError(format!("controller quorum entry '{part}': id '{id}' is not a number 0-{}", u32::MAX)))?;
        let (host, port) = parse_host_port(addr).map_err(|_| ConfigError(format!("controller quorum entry '{part}' must be id@host:port")))?;
        let resolved = (host.as_str(), port as u16)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| ConfigError(format!("controller quorum entry '{part}': host '{host}' does not resolve")))?;
        if out.iter().any(|(other, _)| other.0 == id) {
            return Err(ConfigError(format!("controller quorum lists node {id} twice")));
        }
        out.push((crate::raft::NodeId(id), resolved));
    }
    if out.is_empty() {
        return Err(ConfigError("controller quorum is empty; give id@host:port,...".into()));
    }
    if out.len() > 9 {
        return Err(ConfigError(format!("controller quorum has {} voters; at most 9 are supported", out.len())));
    }
    out.sort();
    Ok(out)
}

/// A cluster id: Kafka's form (16 bytes in URL-safe base64 without padding, 22 characters, as
/// `kafka-storage random-uuid` prints) or a UUID with hyphens.
pub fn parse_cluster_id(id: &str) -> Result<uuid::Uuid, ConfigError> {
    if let Ok(u) = uuid::Uuid::parse_str(id) {
        return Ok(u);
    }
    let bad = || ConfigError(format!("cluster id '{id}' must be 22 characters of URL-safe base64 (as Kafka's) or a UUID"));
    if id.len() != 22 {
        return Err(bad());
    }
    let mut bits: u128 = 0;
    for (i, c) in id.bytes().enumerate() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return Err(bad()),
        } as u128;
        if i < 21 {
            bits = (bits << 6) | v;
        } else {
            // 21 x 6 = 126 bits; the last character carries the final 2 bits and 4 zero bits.
            if v & 0xf != 0 {
                return Err(bad());
            }
            bits = (bits << 2) | (v >> 4);
        }
    }
    Ok(uuid::Uuid::from_u128(bits))
}

pub fn validate_cluster_id(id: &str) -> Result<(), ConfigError> {
    parse_cluster_id(id).map(|_| ())
}

/// Parse `host:port`.
pub fn parse_host_port(s: &str) -> Result<(String, i32), ConfigError> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| ConfigError(format!("advertised listener '{s}' must be host:port")))?;
    let port: u16 = port
        .parse()
        .map_err(|_| ConfigError(format!("advertised listener '{s}': port '{port}' is not a number 0-65535")))?;
    if host.is_empty() {
        return Err(ConfigError(format!("advertised listener '{s}': host is empty")));
    }
    Ok((host.trim_matches(|c| c == '[' || c == ']').to_string(), i32::from(port)))
}

/// Kafka's topic name rule: 1..=249 chars of [a-zA-Z0-9._-], not "." or "..".
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name '{name}' is not allowed"));
    }
    if name.len() > crate::limits::TOPIC_NAME_BYTES_MAX {
        return Err(format!("topic name is {} bytes, the limit is {}", name.len(), crate::limits::TOPIC_NAME_BYTES_MAX));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '_' || *c == '-')) {
        return Err(format!("topic name '{name}' contains '{c}'; only ASCII letters, digits, '.', '_' and '-' are allowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_config_set_and_get_round_trip() {
        let mut c = TopicConfig::default();
        c.set("retention.ms", "1000").unwrap();
        c.set("message.timestamp.type", "LogAppendTime").unwrap();
        assert_eq!(c.get("retention.ms").unwrap(), "1000");
        assert_eq!(c.get("message.timestamp.type").unwrap(), "LogAppendTime");
        assert!(!c.is_default("retention.ms"));
        c.reset("retention.ms").unwrap();
        assert!(c.is_default("retention.ms"));
        assert!(c.set("retention.ms", "abc").unwrap_err().0.contains("retention.ms"));
        assert!(c.set("no.such.key", "1").unwrap_err().0.contains("no.such.key"));
        assert!(c.set("cleanup.policy", "compact").is_err());
        assert!(c.set("segment.bytes", "1").is_err());
        // An INT, as in Kafka: 4 GiB and more would overflow a segment's u32 index positions.
        let e = c.set("segment.bytes", "4294967296").unwrap_err().0;
        assert!(e.contains("segment.bytes") && e.contains("INT"), "{e}");
        c.set("segment.bytes", &i32::MAX.to_string()).unwrap();
        assert_eq!(c.segment_bytes, i32::MAX as u64);
        let mut broker = BrokerConfig::default();
        broker.log_segment_bytes = Some(5 << 30);
        assert!(broker.validate().unwrap_err().0.contains("log_segment_bytes"));
    }

    #[test]
    fn broker_toml_rejects_unknown_keys() {
        let e = BrokerConfig::from_toml("listen = \"127.0.0.1:1\"\nbogus = 3\n").unwrap_err();
        assert!(e.0.contains("bogus"), "{e}");
        let c = BrokerConfig::from_toml("num_partitions = 3\n").unwrap();
        assert_eq!(c.num_partitions, 3);
        assert!(BrokerConfig::from_toml("num_partitions = 0\n").is_err());
    }

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1-x_y").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a/b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }
}
