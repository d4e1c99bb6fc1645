//! Stock clients in other languages: kafka-python and kcat (Debian's, librdkafka 2.0).
//! `ci/setup.sh` installs both; a missing one fails the test rather than skipping it.
#![cfg(not(madsim))]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::Broker;

fn need_kcat() {
    let have = Command::new("kcat").arg("-V").output().map(|o| o.status.success()).unwrap_or(false);
    assert!(have, "kcat is not on PATH: run ci/setup.sh");
}

/// Run `tests/clients/<script>` against the broker with kafka-python (120 s at most); its
/// trimmed stdout. Fails the test when kafka-python is missing or the script fails.
fn run_python(broker: &Broker, script: &str, args: &[&str]) -> String {
    let have = Command::new("python3").args(["-c", "import kafka"]).status().map(|s| s.success()).unwrap_or(false);
    assert!(have, "kafka-python is not installed (python3 -c 'import kafka' fails): run ci/setup.sh");
    let path = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("timeout").args(["120", "python3", &path, &broker.addr()]).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        broker.log_tail()
    );
    stdout.trim().to_string()
}

#[test]
fn kafka_python_round_trip() {
    let broker = Broker::start("kafka-python");
    assert_eq!(run_python(&broker, "kafka_python_roundtrip.py", &["py-topic", "500"]), "ok 500");
}

/// strand has no transaction coordinator: a transactional producer is told so at once
/// (FindCoordinator answers INVALID_REQUEST) instead of retrying COORDINATOR_NOT_AVAILABLE for
/// its whole 60 s timeout.
#[test]
fn kafka_python_transactions_fail_fast() {
    let broker = Broker::start("kafka-python-txn");
    let out = run_python(&broker, "kafka_python_transactions.py", &[]);
    assert!(out.starts_with("ok "), "{out}");
}

/// kafka-python's admin client: the older AlterConfigs (incremental=False) and DeleteRecords.
#[test]
fn kafka_python_admin_alter_configs_and_delete_records() {
    let broker = Broker::start("kafka-python-admin");
    assert_eq!(run_python(&broker, "kafka_python_admin.py", &[]), "ok");
}

/// ListOffsets MAX_TIMESTAMP (KIP-734) answers the record carrying the max timestamp inside an
/// uncompressed batch, and a compressed batch's first offset (issue 21).
#[test]
fn kafka_python_list_offsets_max_timestamp() {
    let broker = Broker::start("kafka-python-max-ts");
    assert_eq!(run_python(&broker, "kafka_python_max_timestamp.py", &[]), "ok");
}

/// KIP-430: with no authorizer, topics, the cluster and groups answer every operation their
/// resource type supports when the admin client asks (issue 21).
#[test]
fn kafka_python_authorized_operations() {
    let broker = Broker::start("kafka-python-acl-ops");
    assert_eq!(run_python(&broker, "kafka_python_authorized_operations.py", &[]), "ok");
}

/// KIP-848 group configs (issue 21): kafka-python's admin client describes and alters a
/// group's `consumer.*` configs (bounds refused with INVALID_CONFIG naming them, stored before
/// the group exists), they survive a SIGKILL and restart, and `strand group describe` shows them.
#[test]
fn kafka_python_group_configs() {
    let mut broker = Broker::start("kafka-python-group-configs");
    assert_eq!(run_python(&broker, "kafka_python_group_configs.py", &["set"]), "ok");
    // Durable once acknowledged: SIGKILL, no clean shutdown.
    broker.kill9();
    broker.restart();
    assert_eq!(run_python(&broker, "kafka_python_group_configs.py", &["check"]), "ok");
    let (ok, out, err) = common::strand_cli(&broker, &["group", "describe", "py-cfg-group"], None);
    assert!(ok, "{out}{err}");
    let configs: Vec<&str> = out.lines().skip_while(|l| *l != "configs:").skip(1).map(str::trim).collect();
    assert_eq!(configs, vec!["consumer.session.timeout.ms=50000  (set)", "consumer.heartbeat.interval.ms=7000  (set)"], "{out}");
}

#[test]
fn kcat_round_trip() {
    need_kcat();
    let broker = Broker::start("kcat");
    let lines: Vec<String> = (0..300).map(|i| format!("key{i}:line {i}")).collect();
    kcat_produce(&broker, "kcat-topic", &lines);
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

/// Group tests: skip `group.initial.rebalance.delay.ms` (3 s by default, as Kafka).
const GROUP_BROKER_CONFIG: &[&str] = &["group_initial_rebalance_delay_ms = 0"];

fn create_topic(broker: &Broker, name: &str, partitions: i32) {
    let out = Command::new("timeout")
        .args(["60", common::strand_bin(), "topic", "create", name, "-p", &partitions.to_string(), "-b", &broker.addr()])
        .output()
        .unwrap();
    assert!(out.status.success(), "create {name}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Produce `lines` (`key:value`) with kcat, acks=all.
fn kcat_produce(broker: &Broker, topic: &str, lines: &[String]) {
    let mut producer = Command::new("timeout")
        .args(["60", "kcat", "-b", &broker.addr(), "-P", "-t", topic, "-K:", "-X", "request.required.acks=-1"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    producer.stdin.take().unwrap().write_all((lines.join("\n") + "\n").as_bytes()).unwrap();
    assert!(producer.wait().unwrap().success(), "kcat -P failed:\n{}", broker.log_tail());
}

/// One run of kcat's balanced consumer in `group` until every assigned partition is at its
/// end (-e); returns the values read. No -o: in -G mode it would override committed offsets,
/// so a group without offsets starts at auto.offset.reset=earliest. Offsets are committed on
/// exit (enable.auto.commit, consumer close).
fn kcat_group_run(broker: &Broker, group: &str, topic: &str) -> Vec<String> {
    let out = Command::new("timeout")
        .args(["120", "kcat", "-b", &broker.addr(), "-G", group, topic, "-e", "-q", "-f", "%s\\n"])
        .args(["-X", "auto.offset.reset=earliest", "-X", "enable.auto.commit=true", "-X", "auto.commit.interval.ms=1000"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kcat -G {group} failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        broker.log_tail()
    );
    let mut got: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    got.sort();
    got
}

#[test]
fn kcat_balanced_consumer_resumes_from_committed_offsets() {
    need_kcat();
    let broker = Broker::start_with("kcat-group", GROUP_BROKER_CONFIG);
    create_topic(&broker, "kcat-g", 3);
    let first: Vec<String> = (0..60).map(|i| format!("key{i}:old-{i:03}")).collect();
    kcat_produce(&broker, "kcat-g", &first);
    // librdkafka's default partitioner spreads the keys over all three partitions.
    let out = Command::new("timeout")
        .args(["60", "kcat", "-b", &broker.addr(), "-C", "-t", "kcat-g", "-o", "beginning", "-e", "-q", "-f", "%p\\n"])
        .output()
        .unwrap();
    let used: std::collections::BTreeSet<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(used.len(), 3, "records landed on partitions {used:?}");

    let mut expected: Vec<String> = (0..60).map(|i| format!("old-{i:03}")).collect();
    expected.sort();
    assert_eq!(kcat_group_run(&broker, "kcat-grp", "kcat-g"), expected, "first run reads everything");
    assert_eq!(kcat_group_run(&broker, "kcat-grp", "kcat-g"), Vec::<String>::new(), "second run: offsets were committed");
    let more: Vec<String> = (0..5).map(|i| format!("more{i}:new-{i}")).collect();
    kcat_produce(&broker, "kcat-g", &more);
    let expected: Vec<String> = (0..5).map(|i| format!("new-{i}")).collect();
    assert_eq!(kcat_group_run(&broker, "kcat-grp", "kcat-g"), expected, "third run reads exactly the new records");
    // Another group has its own offsets.
    assert_eq!(kcat_group_run(&broker, "kcat-other", "kcat-g").len(), 65, "a second group reads everything");
}

#[test]
fn kafka_python_group_shares_partitions_and_resumes() {
    let broker = Broker::start_with("kafka-python-group", GROUP_BROKER_CONFIG);
    create_topic(&broker, "py-group", 4);
    assert_eq!(run_python(&broker, "kafka_python_group.py", &["py-group", "4", "400"]), "ok 400");
}

/// OffsetForLeaderEpoch from the leader-epoch cache, with Kafka's current-leader-epoch check,
/// and a KIP-320 consumer reading records that carry their leader epoch ([replication]).
#[test]
fn kafka_python_offset_for_leader_epoch() {
    let broker = Broker::start("kafka-python-epochs");
    assert_eq!(run_python(&broker, "kafka_python_offset_for_leader_epoch.py", &[]), "ok");
}
