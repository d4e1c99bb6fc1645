//! strand's own client commands against the real broker process.
#![cfg(not(madsim))]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{strand_bin, Broker};

fn strand(broker: &Broker, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new(strand_bin());
    cmd.args(args).args(["-b", &broker.addr()]).stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn topic_produce_consume_describe_delete() {
    let broker = Broker::start("cli");
    let (ok, out, err) = strand(&broker, &["topic", "create", "cli-orders", "-p", "3", "-c", "retention.ms=86400000"], None);
    assert!(ok, "{out}{err}");
    let (ok, _, err) = strand(&broker, &["topic", "create", "cli-orders", "-p", "3"], None);
    assert!(!ok && err.contains("TopicAlreadyExists"), "{err}");
    let (ok, _, err) = strand(&broker, &["topic", "create", "x", "-c", "retention.ms"], None);
    assert!(!ok && err.contains("KEY=VALUE"), "{err}");

    let lines: Vec<String> = (0..1000).map(|i| format!("key{}:value{i}", i % 37)).collect();
    let (ok, _, err) = strand(&broker, &["produce", "cli-orders", "--key-separator", ":"], Some(&(lines.join("\n") + "\n")));
    assert!(ok, "{err}");
    assert!(err.contains("produced 1000 record(s)"), "{err}");

    let (ok, out, err) = strand(&broker, &["consume", "cli-orders", "--from-beginning", "--max", "1000", "--key-separator", ":"], None);
    assert!(ok, "{err}");
    let mut got: Vec<&str> = out.lines().collect();
    let mut want: Vec<&str> = lines.iter().map(String::as_str).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);

    // One partition alone, in order: values of one key keep their produce order.
    let (ok, out, _) = strand(&broker, &["consume", "cli-orders", "--partition", "0", "--from-beginning", "--idle-timeout-ms", "1000", "--key-separator", ":"], None);
    assert!(ok);
    let mut last_for_key = std::collections::BTreeMap::new();
    for line in out.lines() {
        let (k, v) = line.split_once(':').unwrap();
        let n: u32 = v.trim_start_matches("value").parse().unwrap();
        if let Some(prev) = last_for_key.insert(k.to_string(), n) {
            assert!(prev < n, "order of key {k}: {prev} then {n}");
        }
    }

    let (ok, out, _) = strand(&broker, &["topic", "describe", "cli-orders"], None);
    assert!(ok);
    let high_watermarks: i64 = out
        .lines()
        .filter(|l| l.split_whitespace().count() == 4 && l.trim_start().starts_with(char::is_numeric))
        .map(|l| l.split_whitespace().nth(3).unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(high_watermarks, 1000, "{out}");
    assert!(out.contains("retention.ms=86400000  (set)"), "{out}");

    let (ok, _, err) = strand(&broker, &["topic", "alter", "cli-orders", "--set", "retention.bytes=abc"], None);
    assert!(!ok && err.contains("retention.bytes"), "{err}");
    let (ok, _, err) = strand(&broker, &["topic", "alter", "cli-orders", "--partitions", "5"], None);
    assert!(ok, "{err}");
    let (_, out, _) = strand(&broker, &["topic", "list"], None);
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["cli-orders"]);
    let (ok, _, _) = strand(&broker, &["topic", "delete", "cli-orders"], None);
    assert!(ok);
    let (ok, _, err) = strand(&broker, &["topic", "describe", "cli-orders"], None);
    assert!(!ok && err.contains("UnknownTopicOrPartition"), "{err}");
}
