//! Bad input gets a clear error and loses nothing: garbage on one connection closes only that
//! connection; a corrupt batch gets CORRUPT_MESSAGE; an unknown ApiVersions version gets the
//! KIP-511 fallback; bad flags and config files are one-line errors.
#![cfg(not(madsim))]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::{strand_bin, Broker};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

fn send_frame(s: &mut TcpStream, payload: &[u8]) {
    let _ = s.write_all(payload);
}

/// True if the broker closed the connection (EOF or reset) within the timeout.
fn closed_by_broker(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

fn request(api_key: ApiKey, version: i16, correlation_id: i32, body: &impl Encodable) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("bad-input-test")))
        .encode(&mut buf, api_key.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.to_vec()
}

fn read_response(s: &mut TcpStream) -> Bytes {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    Bytes::from(body)
}

async fn produce_and_consume(addr: &str, topic: &str, value: &str) {
    let p: FutureProducer = ClientConfig::new().set("bootstrap.servers", addr).set("acks", "all").create().unwrap();
    let d = p.send(FutureRecord::<(), _>::to(topic).payload(value), Duration::from_secs(30)).await.unwrap_or_else(|(e, _)| panic!("{e}"));
    // No group coordinator yet (consumer groups are a later issue): no auto-commit, or close waits for one.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "bad-input")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, d.partition, Offset::Offset(d.offset)).unwrap();
    c.assign(&tpl).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(std::time::Instant::now() < deadline, "record not consumed back");
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            assert_eq!(m.payload(), Some(value.as_bytes()));
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_closes_only_that_connection() {
    let mut broker = Broker::start("garbage");
    let addr = broker.addr();
    produce_and_consume(&addr, "steady", "before").await;
    let huge_api_array = {
        // A Metadata v1 request whose topics array claims 2^31-1 entries.
        let mut b = BytesMut::new();
        b.put_i32(0);
        b.put_i16(3);
        b.put_i16(1);
        b.put_i32(7);
        b.put_i16(-1);
        b.put_i32(i32::MAX);
        let len = (b.len() - 4) as i32;
        b[..4].copy_from_slice(&len.to_be_bytes());
        b.to_vec()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("frame length 0x7fffffff", 0x7fff_ffffi32.to_be_bytes().to_vec()),
        ("negative frame length", (-5i32).to_be_bytes().to_vec()),
        ("unknown api key", { let mut v = 10i32.to_be_bytes().to_vec(); v.extend_from_slice(&[0x27, 0x0f, 0, 0, 0, 0, 0, 1, 0xff, 0xff]); v }),
        ("random bytes", { let mut v = 64i32.to_be_bytes().to_vec(); v.extend((0..64u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)); v }),
        ("array length 2^31", huge_api_array),
        ("unsupported produce version", { let mut v = 10i32.to_be_bytes().to_vec(); v.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xff]); v }),
    ];
    for (what, payload) in cases {
        let mut s = TcpStream::connect(&addr).unwrap();
        send_frame(&mut s, &payload);
        assert!(closed_by_broker(&mut s), "{what}: connection should be closed");
        assert!(broker.is_running(), "{what}: broker died");
    }
    produce_and_consume(&addr, "steady", "after").await;
    assert!(broker.is_running());
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_batch_gets_corrupt_message_and_nothing_is_lost() {
    let broker = Broker::start("corrupt-batch");
    let addr = broker.addr();
    produce_and_consume(&addr, "victim", "good-1").await;
    let mut batch = strand::protocol::batch::build_simple_batch(0, 1000, &[b"evil"]).to_vec();
    let last = batch.len() - 1;
    batch[last] ^= 0x01;
    let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str("victim")))
        .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(Bytes::from(batch)))])]);
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(&request(ApiKey::Produce, 8, 42, &req)).unwrap();
    let mut resp = read_response(&mut s);
    let header = ResponseHeader::decode(&mut resp, ApiKey::Produce.response_header_version(8)).unwrap();
    assert_eq!(header.correlation_id, 42);
    let resp = ProduceResponse::decode(&mut resp, 8).unwrap();
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 2, "CORRUPT_MESSAGE");
    // Same connection and topic still work.
    produce_and_consume(&addr, "victim", "good-2").await;
}

#[test]
fn api_versions_unknown_version_gets_v0_fallback() {
    let broker = Broker::start("apiversions");
    let mut s = TcpStream::connect(broker.addr()).unwrap();
    let req = kafka_protocol::messages::ApiVersionsRequest::default();
    // Version 99 does not exist; encode the v3 body but claim v99 in the header.
    let mut frame = request(ApiKey::ApiVersions, 3, 5, &req);
    frame[6..8].copy_from_slice(&99i16.to_be_bytes());
    s.write_all(&frame).unwrap();
    let mut resp = read_response(&mut s);
    let header = ResponseHeader::decode(&mut resp, 0).unwrap();
    assert_eq!(header.correlation_id, 5);
    let body = kafka_protocol::messages::ApiVersionsResponse::decode(&mut resp, 0).unwrap();
    assert_eq!(body.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(body.api_keys.iter().any(|k| k.api_key == ApiKey::Produce as i16));
    assert!(body.api_keys.iter().any(|k| k.api_key == ApiKey::ApiVersions as i16 && k.max_version >= 3));
}

fn run_strand(args: &[&str]) -> (i32, String) {
    let out = Command::new(strand_bin()).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn bad_flags_and_config_are_one_line_errors() {
    let (code, err) = run_strand(&["broker", "--listen", "not-an-address"]);
    assert_ne!(code, 0);
    assert!(err.contains("not-an-address"), "{err}");
    let (code, err) = run_strand(&["broker", "--config", "/nonexistent/strand.toml"]);
    assert_ne!(code, 0);
    assert!(err.contains("/nonexistent/strand.toml"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let dir = std::env::temp_dir().join(format!("strand-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("strand.toml");
    std::fs::write(&cfg, "num_partitions = 0\n").unwrap();
    let (code, err) = run_strand(&["broker", "--config", cfg.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("num_partitions"), "{err}");
    std::fs::write(&cfg, "retention_forever = true\n").unwrap();
    let (code, err) = run_strand(&["broker", "--config", cfg.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("retention_forever"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    let (code, _) = run_strand(&["broker", "--no-such-flag"]);
    assert_eq!(code, 2);
}
