//! `strand group` against the real broker process: committed offsets for an empty group made
//! with reset-offsets --execute, then list, describe (offsets and lag), a dry run that changes
//! nothing, delete, and describe of the deleted group failing with its name.
#![cfg(not(madsim))]

mod common;

use common::Broker;

fn strand(broker: &Broker, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    common::strand_cli(broker, args, stdin)
}

/// The rows of the table whose header line starts with `first_column`, as whitespace-separated
/// cells, up to the first blank line or the end.
fn table(out: &str, first_column: &str) -> Vec<Vec<String>> {
    let mut lines = out.lines().skip_while(|l| l.split_whitespace().next() != Some(first_column));
    assert!(lines.next().is_some(), "no table headed {first_column} in:\n{out}");
    lines.take_while(|l| !l.trim().is_empty()).map(|l| l.split_whitespace().map(str::to_string).collect()).collect()
}

/// (partition, NEW-OFFSET) rows of a reset-offsets table for `topic`.
fn new_offsets(out: &str, topic: &str) -> Vec<(i32, i64)> {
    table(out, "TOPIC")
        .iter()
        .filter(|r| r[0] == topic)
        .map(|r| {
            assert_eq!(r.len(), 3, "{r:?} in:\n{out}");
            (r[1].parse().unwrap(), r[2].parse().unwrap())
        })
        .collect()
}

/// (partition, CURRENT-OFFSET, LOG-END-OFFSET, LAG, CONSUMER-ID) rows of a describe table for `topic`.
fn described(out: &str, topic: &str) -> Vec<(i32, String, String, String, String)> {
    table(out, "TOPIC")
        .iter()
        .filter(|r| r[0] == topic)
        .map(|r| {
            assert_eq!(r.len(), 6, "{r:?} in:\n{out}");
            (r[1].parse().unwrap(), r[2].clone(), r[3].clone(), r[4].clone(), r[5].clone())
        })
        .collect()
}

#[test]
fn group_reset_list_describe_delete() {
    let broker = Broker::start("group-cli");
    let topic = "gcli-orders";
    let (ok, out, err) = strand(&broker, &["topic", "create", topic, "-p", "2"], None);
    assert!(ok, "{out}{err}");
    // 10 lines, 5 to each partition, so each log ends at offset 5.
    for p in ["0", "1"] {
        let lines: String = (0..5).map(|i| format!("p{p}-line{i}\n")).collect();
        let (ok, _, err) = strand(&broker, &["produce", topic, "--partition", p], Some(&lines));
        assert!(ok, "{err}");
        assert!(err.contains("produced 5 record(s)"), "{err}");
    }

    // Exactly one of the --to-*/--shift-by options.
    let (ok, _, err) = strand(&broker, &["group", "reset-offsets", "g1", "--topic", topic], None);
    assert!(!ok, "{err}");
    let (ok, _, err) = strand(&broker, &["group", "reset-offsets", "g1", "--topic", topic, "--to-earliest", "--to-offset", "3"], None);
    assert!(!ok, "{err}");

    // A group that never existed.
    let (ok, _, err) = strand(&broker, &["group", "describe", "nobody"], None);
    assert!(!ok && err.contains("'nobody'") && err.contains("does not exist"), "{err}");

    // Committed offsets for an empty group: the group comes into being.
    let (ok, out, err) = strand(&broker, &["group", "reset-offsets", "g1", "--topic", topic, "--to-offset", "3", "--execute"], None);
    assert!(ok, "{out}{err}");
    assert_eq!(new_offsets(&out, topic), vec![(0, 3), (1, 3)], "{out}");
    assert!(!out.contains("dry run"), "{out}");

    let (ok, out, err) = strand(&broker, &["group", "list"], None);
    assert!(ok, "{out}{err}");
    let groups: Vec<Vec<String>> = table(&out, "GROUP");
    assert!(groups.iter().any(|r| r[0] == "g1"), "{out}");

    let (ok, out, err) = strand(&broker, &["group", "describe", "g1"], None);
    assert!(ok, "{out}{err}");
    let want: Vec<(i32, String, String, String, String)> = (0..2).map(|p| (p, "3".into(), "5".into(), "2".into(), "-".into())).collect();
    assert_eq!(described(&out, topic), want, "{out}");

    // Dry runs change nothing, and show clamped offsets.
    for (args, expect) in [
        (&["--to-earliest"][..], vec![(0, 0), (1, 0)]),
        (&["--to-latest"][..], vec![(0, 5), (1, 5)]),
        (&["--to-offset", "99"][..], vec![(0, 5), (1, 5)]),
        (&["--shift-by", "-1"][..], vec![(0, 2), (1, 2)]),
        (&["--shift-by", "100"][..], vec![(0, 5), (1, 5)]),
        (&["--shift-by", "-100", "--partition", "1"][..], vec![(1, 0)]),
    ] {
        let mut cmd = vec!["group", "reset-offsets", "g1", "--topic", topic];
        cmd.extend_from_slice(args);
        let (ok, out, err) = strand(&broker, &cmd, None);
        assert!(ok, "{args:?}: {out}{err}");
        assert_eq!(new_offsets(&out, topic), expect, "{args:?}: {out}");
        assert!(out.contains("dry run; pass --execute to apply"), "{args:?}: {out}");
    }
    let (ok, out, err) = strand(&broker, &["group", "describe", "g1"], None);
    assert!(ok, "{out}{err}");
    assert_eq!(described(&out, topic), want, "dry runs changed offsets:\n{out}");

    // A partition the topic does not have is named.
    let (ok, _, err) = strand(&broker, &["group", "reset-offsets", "g1", "--topic", topic, "--partition", "7", "--to-earliest"], None);
    assert!(!ok && err.contains("partition 7"), "{err}");

    let (ok, out, err) = strand(&broker, &["group", "delete", "g1"], None);
    assert!(ok, "{out}{err}");
    assert!(out.contains("deleted group g1"), "{out}");
    let (ok, _, err) = strand(&broker, &["group", "describe", "g1"], None);
    assert!(!ok && err.contains("'g1'") && err.contains("does not exist"), "{err}");
    let (ok, out, _) = strand(&broker, &["group", "list"], None);
    assert!(ok && !table(&out, "GROUP").iter().any(|r| r[0] == "g1"), "{out}");
    let (ok, _, err) = strand(&broker, &["group", "delete", "g1"], None);
    assert!(!ok && err.contains("GroupIdNotFound"), "{err}");
}
