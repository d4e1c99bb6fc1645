//! librdkafka (the rdkafka crate) against the real broker process over TCP.
#![cfg(not(madsim))]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Broker;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

pub fn producer(addr: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", addr)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "500000")
        .set("message.timeout.ms", "60000");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("producer")
}

pub fn consumer(addr: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "strand-it")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer")
}

fn admin(addr: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", addr).create().expect("admin")
}

async fn create_topic(addr: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let r = admin(addr).create_topics([&t], &AdminOptions::new()).await.expect("create_topics");
    assert!(r[0].is_ok(), "create {name}: {:?}", r[0]);
}

/// A consumed record: (partition, offset, key, value, headers).
pub type Consumed = (i32, i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, Vec<u8>)>);

/// Read `expected` records from the given partitions from offset 0 (bounded by `timeout`).
pub fn consume_all(addr: &str, topic: &str, partitions: i32, expected: usize, timeout: Duration) -> Vec<Consumed> {
    let c = consumer(addr);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::with_capacity(expected);
    while out.len() < expected {
        assert!(Instant::now() < deadline, "consumed {} of {expected} records before the deadline", out.len());
        match c.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => panic!("consume error: {e}"),
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect())
                    .unwrap_or_default();
                out.push((m.partition(), m.offset(), m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec), headers));
            }
        }
    }
    // Nothing beyond what was produced.
    let extra = c.poll(Duration::from_millis(500));
    assert!(extra.is_none(), "unexpected extra record: {:?}", extra.map(|m| m.map(|m| m.offset())));
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn three_partitions_100k_keyed_records_with_headers() {
    let broker = Broker::start("rdkafka-100k");
    let addr = broker.addr();
    create_topic(&addr, "orders", 3, &[]).await;
    let p = producer(&addr, &[]);
    const N: usize = 100_000;
    let mut futures = Vec::with_capacity(N);
    for i in 0..N {
        let key = format!("key-{}", i % 997);
        let value = format!("value-{i}");
        let headers = OwnedHeaders::new()
            .insert(Header { key: "seq", value: Some(&i.to_string()) })
            .insert(Header { key: "origin", value: Some("rdkafka") });
        let record = FutureRecord::to("orders").key(&key).payload(&value).headers(headers);
        futures.push(p.send_result(record).map_err(|(e, _)| e).expect("enqueue"));
    }
    let mut by_position: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    let mut key_partition_acked: BTreeMap<usize, i32> = BTreeMap::new();
    for (i, f) in futures.into_iter().enumerate() {
        let d = f.await.expect("delivery future").unwrap_or_else(|(e, _)| panic!("record {i} failed: {e}"));
        let expected_partition = *key_partition_acked.entry(i % 997).or_insert(d.partition);
        assert_eq!(d.partition, expected_partition, "key-{} acknowledged on two partitions", i % 997);
        assert!(by_position.insert((d.partition, d.offset), i).is_none(), "two records acknowledged at one offset");
    }
    let records = consume_all(&addr, "orders", 3, N, Duration::from_secs(120));
    let mut key_partition: BTreeMap<Vec<u8>, i32> = BTreeMap::new();
    let mut next_offset = [0i64; 3];
    // Index (in production order) of the last record read from each partition.
    let mut last_produced: [Option<usize>; 3] = [None; 3];
    for (partition, offset, key, value, headers) in &records {
        // Dense, in order, per partition.
        assert_eq!(*offset, next_offset[*partition as usize], "partition {partition}");
        next_offset[*partition as usize] += 1;
        let i = *by_position.get(&(*partition, *offset)).unwrap_or_else(|| panic!("record at {partition}/{offset} was never acknowledged"));
        // Each partition holds its records in the order they were produced.
        if let Some(prev) = last_produced[*partition as usize] {
            assert!(i > prev, "partition {partition}: record {i} stored after record {prev}");
        }
        last_produced[*partition as usize] = Some(i);
        assert_eq!(key.as_deref(), Some(format!("key-{}", i % 997).as_bytes()));
        assert_eq!(value.as_deref(), Some(format!("value-{i}").as_bytes()));
        assert_eq!(headers, &vec![("seq".to_string(), i.to_string().into_bytes()), ("origin".to_string(), b"rdkafka".to_vec())]);
        let k = key.clone().unwrap();
        assert_eq!(*key_partition.entry(k).or_insert(*partition), *partition, "one key, one partition");
    }
    assert_eq!(next_offset.iter().sum::<i64>(), N as i64);
    assert!(next_offset.iter().all(|n| *n > 0), "every partition got records: {next_offset:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_compression_codec_round_trips() {
    let broker = Broker::start("rdkafka-codecs");
    let addr = broker.addr();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        create_topic(&addr, &topic, 1, &[]).await;
        let p = producer(&addr, &[("compression.type", codec)]);
        let mut futures = Vec::new();
        for i in 0..2000 {
            let value = format!("{codec} record {i} {}", "z".repeat(i % 50));
            futures.push(p.send_result(FutureRecord::<(), _>::to(&topic).payload(&value)).map_err(|(e, _)| e).unwrap());
        }
        for f in futures {
            f.await.unwrap().unwrap_or_else(|(e, _)| panic!("{codec}: {e}"));
        }
        let records = consume_all(&addr, &topic, 1, 2000, Duration::from_secs(60));
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.1, i as i64);
            assert_eq!(r.3.as_deref(), Some(format!("{codec} record {i} {}", "z".repeat(i % 50)).as_bytes()), "{codec}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_and_admin_errors() {
    let broker = Broker::start("rdkafka-admin");
    let addr = broker.addr();
    create_topic(&addr, "meta", 4, &[]).await;
    let c = consumer(&addr);
    let md = c.fetch_metadata(Some("meta"), Duration::from_secs(10)).unwrap();
    assert_eq!(md.brokers().len(), 1);
    assert_eq!(md.brokers()[0].port() as u16, broker.port);
    assert_eq!(md.brokers()[0].host(), "127.0.0.1");
    let t = &md.topics()[0];
    assert_eq!(t.name(), "meta");
    assert!(t.error().is_none());
    assert_eq!(t.partitions().len(), 4);
    assert!(t.partitions().iter().all(|p| p.leader() == md.brokers()[0].id()));

    let a = admin(&addr);
    let opts = AdminOptions::new();
    let again = a.create_topics([&NewTopic::new("meta", 1, TopicReplication::Fixed(1))], &opts).await.unwrap();
    assert_eq!(again[0].as_ref().unwrap_err().1, RDKafkaErrorCode::TopicAlreadyExists);
    let bad = a.create_topics([&NewTopic::new("bad/name", 1, TopicReplication::Fixed(1))], &opts).await.unwrap();
    assert_eq!(bad[0].as_ref().unwrap_err().1, RDKafkaErrorCode::InvalidTopic);
    let rf = a.create_topics([&NewTopic::new("rf3", 1, TopicReplication::Fixed(3))], &opts).await.unwrap();
    assert_eq!(rf[0].as_ref().unwrap_err().1, RDKafkaErrorCode::InvalidReplicationFactor);
    let bad_config = a.create_topics([&NewTopic::new("cfg", 1, TopicReplication::Fixed(1)).set("retention.ms", "soon")], &opts).await.unwrap();
    assert_eq!(bad_config[0].as_ref().unwrap_err().1, RDKafkaErrorCode::InvalidConfig);

    let deleted = a.delete_topics(&["meta"], &opts).await.unwrap();
    assert!(deleted[0].is_ok(), "{:?}", deleted[0]);
    let md = c.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    assert!(md.topics().iter().all(|t| t.name() != "meta"), "deleted topic still listed");
    let gone = a.delete_topics(&["meta"], &opts).await.unwrap();
    assert_eq!(gone[0].as_ref().unwrap_err().1, RDKafkaErrorCode::UnknownTopicOrPartition);
}

#[tokio::test(flavor = "multi_thread")]
async fn message_too_large_is_rejected_and_the_topic_keeps_working() {
    let broker = Broker::start("rdkafka-too-large");
    let addr = broker.addr();
    create_topic(&addr, "small", 1, &[("max.message.bytes", "10000")]).await;
    let p = producer(&addr, &[("message.max.bytes", "100000"), ("compression.type", "none"), ("retries", "0")]);
    let big = "b".repeat(20_000);
    let r = p.send(FutureRecord::<(), _>::to("small").payload(&big), Duration::from_secs(30)).await;
    match r {
        Err((KafkaError::MessageProduction(code), _)) => assert_eq!(code, RDKafkaErrorCode::MessageSizeTooLarge),
        other => panic!("expected MessageSizeTooLarge, got {other:?}"),
    }
    let ok = p.send(FutureRecord::<(), _>::to("small").payload("fits"), Duration::from_secs(30)).await;
    let d = ok.unwrap_or_else(|(e, _)| panic!("{e}"));
    assert_eq!(d.offset, 0, "the rejected batch took no offset");
    let records = consume_all(&addr, "small", 1, 1, Duration::from_secs(30));
    assert_eq!(records[0].3.as_deref(), Some(&b"fits"[..]));
    p.flush(Duration::from_secs(5)).unwrap();
}

/// KIP-98 idempotent producers: librdkafka with `enable.idempotence=true` round-trips exactly
/// once, in order; and a retried batch (the same request sent again, as a client does after a
/// lost response) is answered with its original offsets and not stored twice.
#[tokio::test(flavor = "multi_thread")]
async fn idempotent_producer_exactly_once_and_retries_deduplicated() {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let broker = Broker::start("rdkafka-idempotent");
    let addr = broker.addr();
    create_topic(&addr, "idem", 2, &[]).await;
    let p = producer(&addr, &[("enable.idempotence", "true"), ("compression.type", "lz4")]);
    let mut futures = Vec::new();
    for i in 0..20_000 {
        let value = format!("idem {i}");
        futures.push(p.send_result(FutureRecord::<(), _>::to("idem").partition(i % 2).payload(&value)).map_err(|(e, _)| e).unwrap());
    }
    for f in futures {
        f.await.unwrap().unwrap_or_else(|(e, _)| panic!("{e}"));
    }
    let records = consume_all(&addr, "idem", 2, 20_000, Duration::from_secs(60));
    let mut next = [0usize; 2];
    for r in &records {
        let i = next[r.0 as usize] * 2 + r.0 as usize;
        assert_eq!(r.3.as_deref(), Some(format!("idem {i}").as_bytes()), "partition {} in order, each once", r.0);
        next[r.0 as usize] += 1;
    }
    assert_eq!(next, [10_000, 10_000]);

    // The same request twice, from strand's own client.
    let mut c = strand::client::Client::connect(&addr).await.unwrap();
    let (_, pid) = c.send(&InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(60_000).with_producer_id((-1).into()).with_producer_epoch(-1), 4).await.unwrap();
    assert_eq!(pid.error_code, 0);
    let records: Vec<(Option<bytes::Bytes>, Option<bytes::Bytes>)> = (0..3).map(|i| (None, Some(bytes::Bytes::from(format!("retry {i}"))))).collect();
    let batch = strand::protocol::batch::build_producer_batch(0, 1000, pid.producer_id.0, pid.producer_epoch, 0, &records);
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str("idem")))
        .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch))])]);
    let first = c.send_at(&request, 8).await.unwrap().responses[0].partition_responses[0].clone();
    let again = c.send_at(&request, 8).await.unwrap().responses[0].partition_responses[0].clone();
    assert_eq!((first.error_code, again.error_code), (0, 0));
    assert_eq!(first.base_offset, 10_000);
    assert_eq!(again.base_offset, first.base_offset, "the retry got the original offset");
    let all = consume_all(&addr, "idem", 1, 10_003, Duration::from_secs(60));
    assert_eq!(all.len(), 10_003);
    let c2: BaseConsumer = consumer(&addr);
    let (_, high) = c2.fetch_watermarks("idem", 0, Duration::from_secs(5)).unwrap();
    assert_eq!(high, 10_003, "stored once");
}

/// KIP-107 DeleteRecords through librdkafka's admin client: the low watermark moves into the
/// middle of the log, consumers from the beginning start there, an offset past the high
/// watermark is refused with Kafka's code, `Offset::End` means the high watermark, and the new
/// start survives a `kill -9`. (librdkafka refuses unknown partitions itself, from metadata;
/// the broker's answers to them are `handlers::admin`'s unit test.)
#[tokio::test(flavor = "multi_thread")]
async fn delete_records_moves_the_low_watermark_and_it_survives_a_crash() {
    let mut broker = Broker::start("rdkafka-delete-records");
    let addr = broker.addr();
    create_topic(&addr, "trim", 2, &[("segment.bytes", "2048")]).await;
    let p = producer(&addr, &[("linger.ms", "0")]);
    for i in 0..100 {
        let value = format!("value-{i:03}-{}", "x".repeat(100));
        p.send(FutureRecord::<(), _>::to("trim").partition(0).payload(&value), Duration::from_secs(30)).await.unwrap_or_else(|(e, _)| panic!("{e}"));
    }
    let a = admin(&addr);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let delete = |tp: &[(&str, i32, Offset)]| {
        let mut tpl = TopicPartitionList::new();
        for (t, p, o) in tp {
            tpl.add_partition_offset(t, *p, *o).unwrap();
        }
        tpl
    };
    let r = a.delete_records(&delete(&[("trim", 0, Offset::Offset(40))]), &opts).await.expect("delete_records");
    let e = r.find_partition("trim", 0).unwrap();
    assert!(e.error().is_ok(), "{:?}", e.error());
    assert_eq!(e.offset(), Offset::Offset(40), "the new low watermark");

    let c = consumer(&addr);
    assert_eq!(c.fetch_watermarks("trim", 0, Duration::from_secs(10)).unwrap(), (40, 100));
    let records = consume_all(&addr, "trim", 1, 60, Duration::from_secs(30));
    assert_eq!(records.first().map(|r| r.1), Some(40), "a consumer from the beginning starts at the new start");
    assert!(records.iter().map(|r| r.1).eq(40..100));

    // Past the high watermark: OFFSET_OUT_OF_RANGE, and the start stays.
    let r = a.delete_records(&delete(&[("trim", 0, Offset::Offset(101))]), &opts).await.expect("delete_records");
    match r.find_partition("trim", 0).unwrap().error() {
        Err(KafkaError::OffsetFetch(code)) | Err(KafkaError::AdminOp(code)) => assert_eq!(code, RDKafkaErrorCode::OffsetOutOfRange),
        other => panic!("expected OffsetOutOfRange, got {other:?}"),
    }
    // Offset::End is the high watermark: partition 1 is empty, so 0; moving back changes nothing.
    let r = a.delete_records(&delete(&[("trim", 1, Offset::End), ("trim", 0, Offset::Offset(10))]), &opts).await.expect("delete_records");
    assert_eq!(r.find_partition("trim", 1).unwrap().offset(), Offset::Offset(0));
    assert_eq!(r.find_partition("trim", 0).unwrap().offset(), Offset::Offset(40));
    assert_eq!(c.fetch_watermarks("trim", 0, Duration::from_secs(10)).unwrap(), (40, 100));

    broker.kill9();
    broker.restart();
    let c = consumer(&addr);
    assert_eq!(c.fetch_watermarks("trim", 0, Duration::from_secs(10)).unwrap(), (40, 100), "the start survives a crash");
    let r = a.delete_records(&delete(&[("trim", 0, Offset::End)]), &opts).await.expect("delete_records");
    assert_eq!(r.find_partition("trim", 0).unwrap().offset(), Offset::Offset(100));
    assert_eq!(c.fetch_watermarks("trim", 0, Duration::from_secs(10)).unwrap(), (100, 100));
}
