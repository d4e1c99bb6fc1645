//! Request handlers: each takes a decoded request and returns a [`Reply`](super::dispatch::Reply).

pub mod admin;
pub mod configs;
pub mod epochs;
pub mod fetch;
pub mod groups;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod producer_id;

use std::sync::Arc;

use kafka_protocol::protocol::StrBytes;

use super::topics::{AdminError, Topic};
use super::Broker;
use crate::config::validate_topic_name;
use crate::protocol::errors::ErrorCode;

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Find a topic, auto-creating it (Kafka's `auto.create.topics.enable`) when allowed.
pub async fn topic_or_create(broker: &Arc<Broker>, name: &str, allow_create: bool) -> Result<Arc<Topic>, AdminError> {
    if let Some(t) = broker.topics.get(name) {
        return Ok(t);
    }
    if groups::is_internal(name) {
        // Created with its own settings, as the coordinator needs it.
        return broker
            .groups
            .offsets_topic(&broker.topics)
            .await
            .map_err(|code| AdminError::new(code, format!("{name} is not available")));
    }
    if !(allow_create && broker.config.auto_create_topics_enable) {
        return Err(AdminError::new(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, format!("Topic '{name}' does not exist.")));
    }
    validate_topic_name(name).map_err(|m| AdminError::new(ErrorCode::INVALID_TOPIC_EXCEPTION, m))?;
    match broker.topics.create(name, broker.config.num_partitions, Default::default()).await {
        Ok(t) => Ok(t),
        // Another request created it meanwhile.
        Err(e) if e.code == ErrorCode::TOPIC_ALREADY_EXISTS => {
            broker.topics.get(name).ok_or(e)
        }
        Err(e) => Err(e),
    }
}
