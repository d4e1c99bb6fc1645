//! Fetch: read committed data (below the high watermark) from many partitions, honouring
//! max_bytes (response), partition_max_bytes, min_bytes and max_wait_ms (long-poll).
//!
//! Kafka semantics kept: whole batches are returned, so the first batch may start before the
//! fetch offset; the first non-empty partition may exceed max_bytes by one batch (KIP-74);
//! fetch sessions (KIP-227) are not created: we answer session_id 0, which tells clients to
//! keep sending full fetch requests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::FetchRequest;
use kafka_protocol::messages::fetch_response::{FetchResponse, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{ResponseKind, TopicName};
use tokio::sync::watch;

use crate::limits::{FETCH_RESPONSE_BYTES_MAX, FETCH_WAIT_MS_MAX, REQUEST_PARTITIONS_MAX};
use crate::partition::Partition;
use crate::protocol::errors::ErrorCode;
use crate::server::dispatch::Reply;
use crate::server::Broker;

struct Target {
    index: i32,
    partition: Result<Arc<Partition>, ErrorCode>,
    fetch_offset: i64,
    partition_max_bytes: usize,
}

struct TopicTargets {
    name: TopicName,
    topic_id: uuid::Uuid,
    partitions: Vec<Target>,
}

pub async fn handle(broker: &Arc<Broker>, version: i16, req: FetchRequest) -> Reply {
    let partition_count: usize = req.topics.iter().map(|t| t.partitions.len()).sum();
    if partition_count > REQUEST_PARTITIONS_MAX {
        return Reply::Malformed(format!("fetch names {partition_count} partitions"));
    }
    let max_wait = Duration::from_millis((req.max_wait_ms.max(0) as u64).min(FETCH_WAIT_MS_MAX));
    let min_bytes = req.min_bytes.max(0) as usize;
    let max_bytes = if req.max_bytes <= 0 { FETCH_RESPONSE_BYTES_MAX } else { (req.max_bytes as usize).min(FETCH_RESPONSE_BYTES_MAX) };
    let read_committed = req.isolation_level == 1;
    let mut targets = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        // v13+ names topics by id (KIP-516).
        let topic = if version >= 13 {
            broker.topics.get_by_id(t.topic_id).ok_or(ErrorCode::UNKNOWN_TOPIC_ID)
        } else {
            broker.topics.get(t.topic.as_str()).ok_or(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)
        };
        let partitions = t
            .partitions
            .into_iter()
            .map(|p| Target {
                index: p.partition,
                partition: match &topic {
                    Ok(topic) => topic.lookup(p.partition).cloned(),
                    Err(code) => Err(*code),
                },
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes.max(0) as usize,
            })
            .collect();
        targets.push(TopicTargets { name: t.topic, topic_id: t.topic_id, partitions });
    }
    // Subscribe before the first read so an append between the read and the wait wakes us.
    let mut watches: Vec<watch::Receiver<i64>> = targets
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter_map(|t| t.partition.as_ref().ok())
        .map(|p| {
            let mut rx = p.watch_high_watermark();
            rx.borrow_and_update();
            rx
        })
        .collect();
    if crate::buggify!() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (response, bytes, errors) = read_all(&targets, max_bytes, read_committed).await;
    if max_wait.is_zero() || bytes >= min_bytes || errors || watches.is_empty() {
        return Reply::Now(ResponseKind::Fetch(response));
    }
    let clock = broker.rt.clock.clone();
    let deadline = clock.monotonic() + max_wait;
    Reply::Later(Box::pin(async move {
        loop {
            let remaining = deadline.saturating_sub(clock.monotonic());
            let woke = tokio::time::timeout(remaining, any_changed(&mut watches)).await;
            let (response, bytes, errors) = read_all(&targets, max_bytes, read_committed).await;
            if woke.is_err() || bytes >= min_bytes || errors || clock.monotonic() >= deadline {
                return ResponseKind::Fetch(response);
            }
        }
    }))
}

/// Resolves when any receiver sees a new value (or its sender is gone). Polls in a fixed order.
async fn any_changed(watches: &mut [watch::Receiver<i64>]) {
    let mut futures: Vec<Pin<Box<dyn Future<Output = Result<(), watch::error::RecvError>> + Send + '_>>> =
        watches.iter_mut().map(|rx| Box::pin(rx.changed()) as _).collect();
    std::future::poll_fn(|cx| {
        for f in futures.iter_mut() {
            if f.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await
}

/// Read every partition once. Returns the response, the record bytes in it, and whether any
/// partition had an error (errors are answered at once, not long-polled).
async fn read_all(targets: &[TopicTargets], max_bytes: usize, read_committed: bool) -> (FetchResponse, usize, bool) {
    let mut total = 0usize;
    let mut errors = false;
    let mut topics = Vec::with_capacity(targets.len());
    for t in targets {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for target in &t.partitions {
            let mut data = PartitionData::default()
                .with_partition_index(target.index)
                .with_aborted_transactions(if read_committed { Some(Vec::new()) } else { None })
                .with_records(Some(Bytes::new()));
            match &target.partition {
                Err(code) => {
                    errors = true;
                    data = data.with_error_code(code.code()).with_high_watermark(-1);
                }
                Ok(partition) => {
                    // KIP-74: once something was returned, stop at the response budget; only
                    // the first non-empty partition gets a whole batch larger than its limits
                    // (a later one whose first batch does not fit gets nothing this time).
                    let budget = max_bytes.saturating_sub(total);
                    if total == 0 || budget > 0 {
                        let limit = target.partition_max_bytes.min(if total == 0 { max_bytes } else { budget });
                        let read = if total == 0 {
                            partition.read(target.fetch_offset, limit).await
                        } else {
                            partition.read_within(target.fetch_offset, limit).await
                        };
                        match read {
                            Ok(read) => {
                                total += read.records.len();
                                data = data.with_records(Some(read.records));
                            }
                            Err(e) => {
                                errors = true;
                                data = data.with_error_code(ErrorCode::from(&e).code());
                            }
                        }
                    }
                    // Taken after the read: the read stops at the high watermark it saw, and
                    // the mark only grows, so the records never pass the one reported.
                    let high_watermark = partition.high_watermark();
                    data = data
                        .with_high_watermark(high_watermark)
                        .with_last_stable_offset(high_watermark)
                        .with_log_start_offset(partition.log_start_offset());
                }
            }
            partitions.push(data);
        }
        topics.push(
            FetchableTopicResponse::default().with_topic(t.name.clone()).with_topic_id(t.topic_id).with_partitions(partitions),
        );
    }
    (FetchResponse::default().with_responses(topics), total, errors)
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::TopicName;

    use super::*;
    use crate::partition::Acks;

    /// KIP-74: only the first partition with data may get a batch larger than the limits; a
    /// later partition whose first batch does not fit its partition_max_bytes (or what is left
    /// of max_bytes) gets none this time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_the_first_partition_with_data_goes_over_the_limit() {
        let test = crate::server::TestServer::start("fetch-limits").await;
        let broker = test.broker.clone();
        let topic = broker.topics.create("t", 3, Default::default()).await.expect("create");
        let big = vec![b'x'; 2_000];
        for p in 0..3 {
            let batch = crate::protocol::batch::build_simple_batch(0, 1, &[&big[..]]);
            topic.partition(p).unwrap().append(batch, Acks::Durable).await.unwrap();
        }
        let req = FetchRequest::default().with_max_wait_ms(0).with_max_bytes(10_000).with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(crate::server::handlers::str_bytes("t")))
            .with_partitions((0..3).map(|p| FetchPartition::default().with_partition(p).with_partition_max_bytes(1_000)).collect())]);
        let Reply::Now(ResponseKind::Fetch(r)) = handle(&broker, 12, req).await else { panic!("answered at once") };
        let sizes: Vec<(i32, usize, i64)> = r.responses[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.records.as_ref().map_or(0, Bytes::len), p.high_watermark))
            .collect();
        assert_eq!(sizes.len(), 3);
        assert!(sizes[0].1 > 2_000, "the first partition gets its whole batch: {sizes:?}");
        assert_eq!((sizes[1].1, sizes[2].1), (0, 0), "later partitions stay within the limits: {sizes:?}");
        assert!(sizes.iter().all(|s| s.2 == 1 && s.0 >= 0));
        test.stop().await;
    }
}
