//! InitProducerId for idempotent producers (KIP-98). Clients such as kafka-python 3 and the Java
//! client enable idempotence by default and ask for a producer id before producing.
//!
//! Ids are unique across restarts (reserved durably in blocks by the topic registry). Epoch
//! bumps (v3+, KIP-360) return the same id with the next epoch. Transactional ids are refused:
//! strand has no transaction coordinator yet.

use std::sync::Arc;

use kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use kafka_protocol::messages::{ProducerId, ResponseKind};

use crate::protocol::errors::ErrorCode;
use crate::server::dispatch::Reply;
use crate::server::Broker;

pub async fn init_producer_id(broker: &Arc<Broker>, _version: i16, req: InitProducerIdRequest) -> Reply {
    let response = InitProducerIdResponse::default();
    if req.transactional_id.is_some() {
        return Reply::Now(ResponseKind::InitProducerId(response.with_error_code(ErrorCode::INVALID_REQUEST.code())));
    }
    // KIP-360: a producer that hit an error asks to bump its epoch and keep its id.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return Reply::Now(ResponseKind::InitProducerId(
            response.with_producer_id(req.producer_id).with_producer_epoch(req.producer_epoch + 1),
        ));
    }
    let response = match broker.topics.allocate_producer_id().await {
        Ok(id) => response.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::warn!(error = %e, "could not reserve producer ids");
            response.with_error_code(ErrorCode::KAFKA_STORAGE_ERROR.code())
        }
    };
    Reply::Now(ResponseKind::InitProducerId(response))
}
