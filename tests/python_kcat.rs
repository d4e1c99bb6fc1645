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
    assert!(have, "kafka-python is not installed (python3 -c 'import kafka' fails): run ci/setup.sh");
    let broker = Broker::start("kafka-python");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/kafka_python_roundtrip.py");
    let out = Command::new("timeout").args(["120", "python3", script, &broker.addr(), "py-topic", "500"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kafka-python round trip failed ({}):\n{stdout}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        broker.log_tail()
    );
    assert_eq!(stdout.trim(), "ok 500");
}

#[test]
fn kcat_round_trip() {
    let have = Command::new("kcat").arg("-V").output().map(|o| o.status.success()).unwrap_or(false);
    assert!(have, "kcat is not on PATH: run ci/setup.sh");
    let broker = Broker::start("kcat");
    let lines: Vec<String> = (0..300).map(|i| format!("key{i}:line {i}")).collect();
    let mut producer = Command::new("timeout")
        .args(["60", "kcat", "-b", &broker.addr(), "-P", "-t", "kcat-topic", "-K:", "-X", "request.required.acks=-1"])
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
