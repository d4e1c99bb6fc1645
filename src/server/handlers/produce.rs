//! Produce: validate and append each partition's record set in request order, then (acks=1 or
//! all) answer once every append is durable. acks=0 sends no response; if any partition failed,
//! the connection is closed so the client notices, as Kafka does.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::produce_request::ProduceRequest;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, ProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ResponseKind, TopicName};

use super::{str_bytes, topic_or_create};
use crate::limits::{PRODUCE_TIMEOUT_MS_MAX, REQUEST_PARTITIONS_MAX};
use crate::partition::{Acks, Partition};
use crate::protocol::errors::ErrorCode;
use crate::server::dispatch::Reply;
use crate::server::Broker;

/// A partition's answer, or the wait that produces it.
enum Outcome {
    Done(PartitionProduceResponse),
    Waiting { index: i32, partition: Arc<Partition>, base_offset: i64, upto: i64, log_append_time_ms: i64 },
}

fn error_response(index: i32, code: ErrorCode, message: Option<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(message.map(|m| str_bytes(&m)))
}

pub async fn handle(broker: &Arc<Broker>, version: i16, req: ProduceRequest) -> Reply {
    let acks = match req.acks {
        0 => Acks::None,
        1 | -1 => Acks::Durable,
        _ => return invalid_acks(&req, version),
    };
    let partition_count: usize = req.topic_data.iter().map(|t| t.partition_data.len()).sum();
    if partition_count > REQUEST_PARTITIONS_MAX {
        return Reply::Malformed(format!("produce names {partition_count} partitions"));
    }
    let transactional = req.transactional_id.is_some();
    let mut topics: Vec<(TopicName, uuid::Uuid, Vec<Outcome>)> = Vec::new();
    let mut any_error = false;
    for td in req.topic_data {
        // v13+ names topics by id (KIP-516); earlier versions by name.
        let topic = if version >= 13 {
            broker.topics.get_by_id(td.topic_id).ok_or(ErrorCode::UNKNOWN_TOPIC_ID)
        } else {
            topic_or_create(broker, td.name.as_str(), true).await.map_err(|e| e.code)
        };
        // Only the group coordinator writes its internal topic.
        let topic = topic.and_then(|t| if super::groups::is_internal(&t.name) { Err(ErrorCode::INVALID_TOPIC_EXCEPTION) } else { Ok(t) });
        let mut outcomes = Vec::new();
        for pd in td.partition_data {
            let outcome = match (&topic, transactional) {
                (_, true) => Outcome::Done(error_response(
                    pd.index,
                    ErrorCode::INVALID_REQUEST,
                    Some("transactions are not supported by strand yet".into()),
                )),
                (Err(code), _) => Outcome::Done(error_response(pd.index, *code, None)),
                (Ok(topic), _) => match topic.lookup(pd.index) {
                    Err(code) => Outcome::Done(error_response(pd.index, code, None)),
                    Ok(partition) => match pd.records {
                        None => Outcome::Done(error_response(pd.index, ErrorCode::INVALID_RECORD, Some("no records".into()))),
                        Some(records) => match partition.append(records, Acks::None).await {
                            Ok(info) => Outcome::Waiting {
                                index: pd.index,
                                partition: partition.clone(),
                                base_offset: info.base_offset,
                                upto: info.last_offset + 1,
                                log_append_time_ms: info.log_append_time_ms,
                            },
                            Err(e) => {
                                let code = ErrorCode::from(&e);
                                tracing::debug!(topic = %topic.name, partition = pd.index, error = %e, "produce rejected");
                                Outcome::Done(error_response(pd.index, code, Some(e.to_string())))
                            }
                        },
                    },
                },
            };
            any_error |= matches!(outcome, Outcome::Done(_));
            outcomes.push(outcome);
        }
        topics.push((td.name, td.topic_id, outcomes));
    }
    if acks == Acks::None {
        return if any_error { Reply::Close } else { Reply::NoResponse };
    }
    // Kafka applies timeout_ms only to acks=all's wait for the in-sync replicas; acks=1 is
    // answered once the leader's write is done (here: durable), bounded only by our cap.
    let timeout_ms = if req.acks == 1 { PRODUCE_TIMEOUT_MS_MAX } else { (req.timeout_ms.max(0) as u64).min(PRODUCE_TIMEOUT_MS_MAX) };
    let timeout = Duration::from_millis(timeout_ms);
    // One deadline for the whole request. Durability waits resolve together (one group commit
    // covers every partition), so waiting for them in order costs no more than waiting at once.
    let clock = broker.rt.clock.clone();
    let deadline = clock.monotonic() + timeout;
    Reply::Later(Box::pin(async move {
        let mut responses = Vec::with_capacity(topics.len());
        for (name, topic_id, outcomes) in topics {
            let mut partition_responses = Vec::with_capacity(outcomes.len());
            for outcome in outcomes {
                let response = match outcome {
                    Outcome::Done(r) => r,
                    Outcome::Waiting { index, partition, base_offset, upto, log_append_time_ms } => {
                        let remaining = deadline.saturating_sub(clock.monotonic());
                        match tokio::time::timeout(remaining, partition.wait_durable(upto)).await {
                            Ok(Ok(())) => PartitionProduceResponse::default()
                                .with_index(index)
                                .with_base_offset(base_offset)
                                .with_log_append_time_ms(log_append_time_ms)
                                .with_log_start_offset(partition.log_start_offset()),
                            Ok(Err(e)) => error_response(index, ErrorCode::from(&e), Some(e.to_string())),
                            Err(_) => error_response(index, ErrorCode::REQUEST_TIMED_OUT, None),
                        }
                    }
                };
                partition_responses.push(response);
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_topic_id(topic_id)
                    .with_partition_responses(partition_responses),
            );
        }
        ResponseKind::Produce(ProduceResponse::default().with_responses(responses))
    }))
}

fn invalid_acks(req: &ProduceRequest, _version: i16) -> Reply {
    let responses = req
        .topic_data
        .iter()
        .map(|td| {
            TopicProduceResponse::default().with_name(td.name.clone()).with_topic_id(td.topic_id).with_partition_responses(
                td.partition_data
                    .iter()
                    .map(|pd| error_response(pd.index, ErrorCode::INVALID_REQUIRED_ACKS, None))
                    .collect(),
            )
        })
        .collect();
    Reply::Now(ResponseKind::Produce(ProduceResponse::default().with_responses(responses)))
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};

    use super::*;

    async fn produce(broker: &Arc<Broker>, acks: i16, timeout_ms: i32) -> (i16, i64) {
        let req = ProduceRequest::default().with_acks(acks).with_timeout_ms(timeout_ms).with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(str_bytes("t")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(crate::protocol::batch::build_simple_batch(0, 1, &[b"v"])))])]);
        let Reply::Later(wait) = handle(broker, 8, req).await else { panic!("acks {acks} is answered after the wait") };
        let ResponseKind::Produce(r) = wait.await else { panic!("a produce response") };
        let p = &r.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }

    /// Kafka applies timeout_ms only to acks=all (its wait for the in-sync replicas): on a disk
    /// whose fdatasync takes 300 ms, acks=1 with timeout 0 gets its offset, acks=all with
    /// timeout 0 gets REQUEST_TIMED_OUT, acks=all with a long timeout its offset.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_timeout_bounds_acks_all_only() {
        let (rt, faults) = crate::log::tests::faulty_runtime();
        let test = crate::server::TestServer::start_on("produce-timeout", rt).await;
        let broker = test.broker.clone();
        broker.topics.create("t", 1, Default::default()).await.expect("create");
        faults.sync_delay_ms.store(300, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(produce(&broker, 1, 0).await, (0, 0));
        assert_eq!(produce(&broker, -1, 0).await.0, ErrorCode::REQUEST_TIMED_OUT.code());
        assert_eq!(produce(&broker, -1, 10_000).await, (0, 2));
        faults.sync_delay_ms.store(0, std::sync::atomic::Ordering::SeqCst);
        test.stop().await;
    }
}
