//! `__consumer_offsets` stays bounded: a partition that grows past `offsets_topic_compact_bytes`
//! is compacted (live records copied forward, the prefix deleted), and the committed offsets
//! are exactly the same after a crash and replay.
#![cfg(not(madsim))]

mod common;

use std::time::{Duration, Instant};

use common::Broker;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

fn consumer(addr: &str, group: &str) -> BaseConsumer {
    ClientConfig::new().set("bootstrap.servers", addr).set("group.id", group).set("enable.auto.commit", "false").create().unwrap()
}

fn committed(c: &BaseConsumer, topic: &str, partitions: i32) -> Vec<Offset> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    c.committed_offsets(tpl, Duration::from_secs(10)).unwrap().elements().iter().map(|e| e.offset()).collect()
}

#[test]
fn offsets_topic_is_compacted_and_replays_the_same() {
    let mut broker = Broker::start_with("group-compaction", &["offsets_topic_compact_bytes = 4096", "offsets_topic_num_partitions = 4"]);
    let addr = broker.addr();
    let out = std::process::Command::new(common::strand_bin()).args(["topic", "create", "ct", "-p", "3", "-b", &addr]).output().unwrap();
    assert!(out.status.success());
    // Two groups that share an offsets partition or not; many commits each.
    let a = consumer(&addr, "compact-a");
    let b = consumer(&addr, "compact-b");
    for i in 0..400i64 {
        for (c, p) in [(&a, (i % 3) as i32), (&b, 0)] {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset("ct", p, Offset::Offset(i)).unwrap();
            c.commit(&tpl, CommitMode::Sync).unwrap();
        }
    }
    let want_a = committed(&a, "ct", 3);
    let want_b = committed(&b, "ct", 3);
    assert_eq!(want_a, vec![Offset::Offset(399), Offset::Offset(397), Offset::Offset(398)]);
    assert_eq!(want_b, vec![Offset::Offset(399), Offset::Invalid, Offset::Invalid]);
    // Some partition of __consumer_offsets must start above 0 (its prefix was deleted).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lows: Vec<i64> = (0..4).map(|p| a.fetch_watermarks("__consumer_offsets", p, Duration::from_secs(5)).unwrap().0).collect();
        if lows.iter().any(|l| *l > 0) {
            break;
        }
        assert!(Instant::now() < deadline, "no compaction happened: low watermarks {lows:?}\n{}", broker.log_tail());
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(a);
    drop(b);
    broker.kill9();
    broker.restart();
    let a = consumer(&addr, "compact-a");
    let b = consumer(&addr, "compact-b");
    assert_eq!(committed(&a, "ct", 3), want_a, "group a after replay of the compacted log");
    assert_eq!(committed(&b, "ct", 3), want_b, "group b after replay of the compacted log");
}
