//! The records of `__consumer_offsets`: what the coordinator writes and replays at start.
//!
//! Each record's key says what it is about, its value the latest state; a record with no value
//! (a tombstone) deletes. Keys and values are a version byte followed by postcard bytes (strand's
//! own encoding, not Kafka's; see DESIGN.md). The record batch around them carries the CRC.

use serde::{Deserialize, Serialize};

const KEY_VERSION: u8 = 1;
const VALUE_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordKey {
    /// A committed offset of one partition.
    Offset { group: String, topic: String, partition: i32 },
    /// A group's metadata (kind, generation or group epoch).
    Group { group: String },
    /// A group's dynamic configs (KIP-848 GroupConfig, set by IncrementalAlterConfigs on
    /// resource type GROUP), kept whether or not the group exists.
    GroupConfig { group: String },
}

impl RecordKey {
    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. } | RecordKey::Group { group } | RecordKey::GroupConfig { group } => group,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupValue {
    /// "classic" or "consumer".
    pub kind: String,
    pub protocol_type: String,
    /// Classic: the generation. Consumer: the group epoch.
    pub generation: i32,
    pub protocol: Option<String>,
}

/// A group's config overrides, by Kafka's key (`consumer.session.timeout.ms`, ...), validated
/// when set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupConfigValue {
    pub configs: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordValue {
    Offset(OffsetValue),
    Group(GroupValue),
    GroupConfig(GroupConfigValue),
}

/// One record for the coordinator to write: which `__consumer_offsets` partition, key, value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    pub partition: i32,
    pub key: RecordKey,
    pub value: Option<RecordValue>,
}

fn versioned<T: Serialize>(version: u8, t: &T) -> Vec<u8> {
    let mut out = vec![version];
    out.extend(postcard::to_allocvec(t).expect("in-memory postcard encoding cannot fail"));
    out
}

pub fn encode_key(key: &RecordKey) -> Vec<u8> {
    versioned(KEY_VERSION, key)
}

pub fn encode_value(value: &RecordValue) -> Vec<u8> {
    match value {
        RecordValue::Offset(v) => versioned(VALUE_VERSION, v),
        RecordValue::Group(v) => versioned(VALUE_VERSION, v),
        RecordValue::GroupConfig(v) => versioned(VALUE_VERSION, v),
    }
}

pub fn decode_key(bytes: &[u8]) -> Result<RecordKey, String> {
    match bytes.split_first() {
        Some((&KEY_VERSION, rest)) => postcard::from_bytes(rest).map_err(|e| format!("bad record key: {e}")),
        Some((v, _)) => Err(format!("unknown record key version {v}")),
        None => Err("empty record key".into()),
    }
}

pub fn decode_value(key: &RecordKey, bytes: &[u8]) -> Result<RecordValue, String> {
    match bytes.split_first() {
        Some((&VALUE_VERSION, rest)) => match key {
            RecordKey::Offset { .. } => postcard::from_bytes(rest).map(RecordValue::Offset),
            RecordKey::Group { .. } => postcard::from_bytes(rest).map(RecordValue::Group),
            RecordKey::GroupConfig { .. } => postcard::from_bytes(rest).map(RecordValue::GroupConfig),
        }
        .map_err(|e| format!("bad record value: {e}")),
        Some((v, _)) => Err(format!("unknown record value version {v}")),
        None => Err("empty record value".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let k = RecordKey::Offset { group: "g".into(), topic: "t".into(), partition: 3 };
        let v = RecordValue::Offset(OffsetValue { offset: 42, leader_epoch: -1, metadata: "m".into(), commit_timestamp_ms: 7 });
        assert_eq!(decode_key(&encode_key(&k)).unwrap(), k);
        assert_eq!(decode_value(&k, &encode_value(&v)).unwrap(), v);
        assert!(decode_key(&[]).is_err());
        assert!(decode_key(&[9, 1, 2]).is_err());
        assert!(decode_key(&[KEY_VERSION, 0xff, 0xff, 0xff]).is_err());
        assert!(decode_value(&k, &[VALUE_VERSION]).is_err());
        let k = RecordKey::GroupConfig { group: "g".into() };
        let v = RecordValue::GroupConfig(GroupConfigValue {
            configs: [("consumer.session.timeout.ms".to_string(), "50000".to_string())].into_iter().collect(),
        });
        assert_eq!(decode_key(&encode_key(&k)).unwrap(), k);
        assert_eq!(decode_value(&k, &encode_value(&v)).unwrap(), v);
    }
}
