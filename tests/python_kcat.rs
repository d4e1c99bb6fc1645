//! Stock clients in other languages: kafka-python and kcat (Debian's, librdkafka 2.0).
//! `ci/setup.sh` installs both; a missing one fails the test rather than skipping it.
#![cfg(not(madsim))]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::Broker;

#[test]
fn kafka_python_round_trip() {
    let have = Command::new("python3").args(["-c", "import kafka"]).status().map(|s| s.success()).unwrap_or(false);
    assert!(have, "kafka-python is not installed: run ci/setup.sh");
    let broker = Broker::start("kafka-python");
    let script = r#"
import sys
from kafka import KafkaProducer, KafkaConsumer, TopicPartition
addr = sys.argv[1]
p = KafkaProducer(bootstrap_servers=addr, acks="all")
futures = [p.send("py-topic", key=f"k{i}".encode(), value=f"value-{i}".encode()) for i in range(500)]
p.flush()
offsets = [f.get(timeout=30).offset for f in futures]
assert offsets == list(range(500)), offsets[:10]
c = KafkaConsumer(bootstrap_servers=addr, consumer_timeout_ms=10000, group_id=None)
c.assign([TopicPartition("py-topic", 0)])
c.seek_to_beginning()
got = []
for m in c:
    got.append((m.offset, m.key, m.value))
    if len(got) == 500:
        break
assert got == [(i, f"k{i}".encode(), f"value-{i}".encode()) for i in range(500)], got[:5]
print("ok", len(got))
"#;
    let out = Command::new("python3").args(["-c", script, &broker.addr()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "kafka-python failed:\n{stdout}\n{}\n{}", String::from_utf8_lossy(&out.stderr), broker.log_tail());
    assert!(stdout.contains("ok 500"), "{stdout}");
}

#[test]
fn kcat_round_trip() {
    let have = Command::new("kcat").arg("-V").output().map(|o| o.status.success()).unwrap_or(false);
    assert!(have, "kcat is not installed: run ci/setup.sh");
    let broker = Broker::start("kcat");
    let lines: Vec<String> = (0..300).map(|i| format!("key{i}:line {i}")).collect();
    let mut producer = Command::new("kcat")
        .args(["-b", &broker.addr(), "-P", "-t", "kcat-topic", "-K:", "-X", "request.required.acks=-1"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    producer.stdin.take().unwrap().write_all((lines.join("\n") + "\n").as_bytes()).unwrap();
    assert!(producer.wait().unwrap().success(), "kcat -P failed:\n{}", broker.log_tail());
    let out = Command::new("timeout")
        .args(["60", "kcat", "-b", &broker.addr(), "-C", "-t", "kcat-topic", "-o", "beginning", "-e", "-q", "-K:"])
        .output()
        .unwrap();
    assert!(out.status.success(), "kcat -C failed: {}", String::from_utf8_lossy(&out.stderr));
    let got: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(got, lines);
    // Metadata listing through librdkafka 2.0.
    let out = Command::new("timeout").args(["30", "kcat", "-b", &broker.addr(), "-L", "-t", "kcat-topic"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("topic \"kcat-topic\" with 1 partitions"), "{text}");
}
