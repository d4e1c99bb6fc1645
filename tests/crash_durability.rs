//! kill -9 the broker while producers are busy: every record acknowledged with acks=all must
//! be readable at exactly its acknowledged offset after restart.
#![cfg(not(madsim))]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Broker;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// `message_timeout_ms` bounds how long a record may wait for its acknowledgement.
fn producer_with_timeout(addr: &str, message_timeout_ms: u32) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("queue.buffering.max.messages", "500000")
        .set("message.timeout.ms", message_timeout_ms.to_string())
        .set("retries", "0")
        // Many small batches, so that many are in flight when the broker dies.
        .set("batch.num.messages", "500")
        .create()
        .unwrap()
}

/// A producer whose records must all be acknowledged: generous timeout.
fn producer(addr: &str) -> FutureProducer {
    producer_with_timeout(addr, 60_000)
}

/// Everything in partitions 0..partitions of `topic`, as (partition, offset) -> value.
fn read_everything(addr: &str, topic: &str, partitions: i32, at_least: usize) -> BTreeMap<(i32, i64), Vec<u8>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "crash-check")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut idle = 0;
    while std::time::Instant::now() < deadline && (out.len() < at_least || idle < 5) {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                idle = 0;
                let v = m.payload().unwrap_or_default().to_vec();
                if let Some(prev) = out.insert((m.partition(), m.offset()), v.clone()) {
                    assert_eq!(prev, v, "one value per offset");
                }
            }
            Some(Err(e)) => panic!("consume: {e}"),
            None => idle += 1,
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_records_survive_kill_9() {
    let mut broker = Broker::start_with("crash", &["num_partitions = 2"]);
    let addr = broker.addr();
    let topic = "durable";
    let mut acknowledged: BTreeMap<(i32, i64), Vec<u8>> = BTreeMap::new();
    for cycle in 0..3 {
        let p = producer(&addr);
        // First batch: all 20,000 enqueued at once.
        let mut first_batch = Vec::new();
        for i in 0..20_000 {
            let v = format!("c{cycle}-a{i}");
            first_batch.push((v.clone(), p.send_result(FutureRecord::<(), _>::to(topic).payload(&v)).map_err(|(e, _)| e).unwrap()));
        }
        // Second batch: a steady stream from another thread (1 ms pause every 100 records), which
        // keeps sending through the kill below.
        let sender = {
            // Its own producer: once the broker is dead, its records fail after 3 s.
            let p = producer_with_timeout(&addr, 3_000);
            std::thread::spawn(move || {
                let mut futures = Vec::new();
                for i in 0..20_000 {
                    let v = format!("c{cycle}-b{i}");
                    futures.push((v.clone(), p.send_result(FutureRecord::<(), _>::to(topic).payload(&v)).map_err(|(e, _)| e).unwrap()));
                    if i % 100 == 99 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                futures
            })
        };
        for (v, f) in first_batch {
            let d = f.await.unwrap().unwrap_or_else(|(e, _)| panic!("cycle {cycle}: {e}"));
            assert!(acknowledged.insert((d.partition, d.offset), v.into_bytes()).is_none());
        }
        // The first batch is fully acknowledged: kill now, mid-stream.
        broker.kill9();
        // Every outcome is settled (acknowledged, or failed by message.timeout.ms) before the
        // restart, so nothing from this producer reaches the restarted broker.
        let mut acked_in_flight = 0;
        for (v, f) in sender.join().unwrap() {
            if let Ok(Ok(d)) = f.await {
                acked_in_flight += 1;
                assert!(acknowledged.insert((d.partition, d.offset), v.into_bytes()).is_none());
            }
        }
        drop(p);
        eprintln!("cycle {cycle}: {acked_in_flight} of 20000 in-flight records acknowledged before the kill");
        broker.restart();
        let found = read_everything(&addr, topic, 2, acknowledged.len());
        for (pos, value) in &acknowledged {
            assert_eq!(found.get(pos), Some(value), "cycle {cycle}: acknowledged record at {pos:?} lost or changed ({acked_in_flight} acked in flight)");
        }
        // Offsets stay dense per partition.
        for part in 0..2 {
            let offsets: Vec<i64> = found.keys().filter(|(p, _)| *p == part).map(|(_, o)| *o).collect();
            assert_eq!(offsets, (0..offsets.len() as i64).collect::<Vec<_>>(), "partition {part} dense");
        }
    }
    assert!(broker.is_running());
    let status = broker.stop();
    assert!(status.success(), "clean shutdown exits 0, got {status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_exits_zero_and_keeps_everything() {
    let mut broker = Broker::start_with("sigterm", &["num_partitions = 2"]);
    let addr = broker.addr();
    let topic = "clean";
    let mut acknowledged: BTreeMap<(i32, i64), Vec<u8>> = BTreeMap::new();
    for round in 0..2 {
        let p = producer(&addr);
        let mut futures = Vec::new();
        for i in 0..2_000 {
            let v = format!("r{round}-{i}");
            futures.push((v.clone(), p.send_result(FutureRecord::<(), _>::to(topic).payload(&v)).map_err(|(e, _)| e).unwrap()));
        }
        for (v, f) in futures {
            let d = f.await.unwrap().unwrap_or_else(|(e, _)| panic!("round {round}: {e}"));
            // Offsets continue after a restart: none is handed out twice.
            assert!(acknowledged.insert((d.partition, d.offset), v.into_bytes()).is_none(), "offset reused");
        }
        drop(p);
        broker.stop();
        broker.restart();
        let found = read_everything(&addr, topic, 2, acknowledged.len());
        assert_eq!(found, acknowledged, "round {round}: after a clean shutdown the log holds exactly what was acknowledged");
    }
    broker.stop();
}

/// The newest segment file (`{base_offset:020}.log`) of a partition directory.
fn active_segment(partition_dir: &std::path::Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(partition_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", partition_dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap_or_else(|| panic!("no .log segment in {}", partition_dir.display()))
}

/// After kill -9, the active segment ends in a torn write (zeros, a cut-off batch, a batch with a
/// bad CRC): recovery must cut exactly the torn bytes, keep every acknowledged record at its
/// offset, and hand out the next offsets to new records.
#[tokio::test(flavor = "multi_thread")]
async fn torn_tail_after_kill_9_is_cut_and_writing_continues() {
    let mut broker = Broker::start_with("torn", &["num_partitions = 1"]);
    let addr = broker.addr();
    let topic = "torn";
    let mut acknowledged: BTreeMap<(i32, i64), Vec<u8>> = BTreeMap::new();
    for (cycle, tail) in ["zeros", "cut-off batch", "bad crc"].iter().enumerate() {
        let p = producer(&addr);
        let mut futures = Vec::new();
        for i in 0..500 {
            let v = format!("t{cycle}-{i}-{}", "x".repeat(i % 40));
            futures.push((v.clone(), p.send_result(FutureRecord::<(), _>::to(topic).payload(&v)).map_err(|(e, _)| e).unwrap()));
        }
        for (v, f) in futures {
            let d = f.await.unwrap().unwrap_or_else(|(e, _)| panic!("cycle {cycle}: {e}"));
            assert!(acknowledged.insert((d.partition, d.offset), v.into_bytes()).is_none(), "cycle {cycle}: offset handed out twice");
        }
        drop(p);
        broker.kill9();
        let segment = active_segment(&broker.data_dir().join(format!("{topic}-0")));
        let bytes = std::fs::read(&segment).unwrap();
        assert!(bytes.len() > 61, "{}: {} bytes", segment.display(), bytes.len());
        let first_batch_len = 12 + i32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;
        let garbage: Vec<u8> = match *tail {
            "zeros" => vec![0; 4096],
            // The first batch's header and part of its records: the length says more follows.
            "cut-off batch" => bytes[..first_batch_len.min(bytes.len()) - 5].to_vec(),
            // A copy of the first batch placed where the next batch belongs (base offset =
            // the next offset), whose CRC does not match: a byte inside its last record flipped.
            _ => {
                let mut b = bytes[..first_batch_len].to_vec();
                b[..8].copy_from_slice(&(acknowledged.len() as i64).to_be_bytes());
                let last = b.len() - 1;
                b[last] ^= 0xff;
                b
            }
        };
        let mut f = std::fs::OpenOptions::new().append(true).open(&segment).unwrap();
        std::io::Write::write_all(&mut f, &garbage).unwrap();
        drop(f);
        broker.restart();
        let found = read_everything(&addr, topic, 1, acknowledged.len());
        assert_eq!(found.len(), acknowledged.len(), "cycle {cycle} ({tail}): record count after recovery");
        assert!(found == acknowledged, "cycle {cycle} ({tail}): the log after recovery differs from what was acknowledged");
    }
    // New records go right after the last acknowledged one.
    let d = producer(&addr)
        .send(FutureRecord::<(), _>::to(topic).payload("after"), Duration::from_secs(30))
        .await
        .unwrap_or_else(|(e, _)| panic!("{e}"));
    assert_eq!((d.partition, d.offset), (0, acknowledged.len() as i64));
    broker.stop();
}
