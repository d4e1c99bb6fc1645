//! strand's own client commands against the real broker process.
#![cfg(not(madsim))]

mod common;

use common::Broker;

fn strand(broker: &Broker, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    common::strand_cli(broker, args, stdin)
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

    // DeleteRecords: partition 0 from offset 2 on; every partition up to its end; bad input.
    let (ok, out, err) = strand(&broker, &["topic", "delete-records", "cli-orders", "--partition", "0", "--before", "2"], None);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "cli-orders-0: log start offset 2");
    let (ok, out, _) = strand(&broker, &["consume", "cli-orders", "--partition", "0", "--from-beginning", "--idle-timeout-ms", "1000", "--key-separator", ":"], None);
    assert!(ok);
    assert_eq!(out.lines().count() as i64, high_watermarks_of(&broker, 0) - 2, "partition 0 from offset 2 on");
    let (ok, _, err) = strand(&broker, &["topic", "delete-records", "cli-orders", "--partition", "0", "--before", "100000"], None);
    assert!(!ok && err.contains("cli-orders-0: OffsetOutOfRange"), "{err}");
    let (ok, _, err) = strand(&broker, &["topic", "delete-records", "cli-orders", "--before", "-3"], None);
    assert!(!ok && err.contains("'-3' is not an offset"), "{err}");
    let (ok, out, err) = strand(&broker, &["topic", "delete-records", "cli-orders", "--before", "end"], None);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    let (ok, out, _) = strand(&broker, &["consume", "cli-orders", "--from-beginning", "--idle-timeout-ms", "1000"], None);
    assert!(ok && out.is_empty(), "nothing left to consume: {out}");

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

/// The high watermark of one partition, from `strand topic describe`.
fn high_watermarks_of(broker: &Broker, partition: i64) -> i64 {
    let (ok, out, err) = strand(broker, &["topic", "describe", "cli-orders"], None);
    assert!(ok, "{err}");
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() == 4 && f[0].parse::<i64>() == Ok(partition))
        .map(|f| f[3].parse().unwrap())
        .unwrap_or_else(|| panic!("no partition {partition} in {out}"))
}

/// The client library's pipeline against an in-process broker: many produce requests in flight
/// on one connection, answered in order, interleaved with acks=0 requests that get no answer.
#[test]
fn pipelined_produce_in_process() {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{CreateTopicsRequest, ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use strand::runtime::Runtime;

    let dir = common::unique_temp_dir("pipeline");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let config = strand::config::BrokerConfig { listen: "127.0.0.1:0".parse().unwrap(), data_dir: dir.join("data"), ..Default::default() };
        let server = strand::server::start(Runtime::real(), config).await.unwrap();
        let addr = server.local_addr().to_string();
        let mut client = strand::client::Client::connect(&addr).await.unwrap();
        let topic = CreatableTopic::default().with_name(TopicName(StrBytes::from_static_str("piped"))).with_num_partitions(1).with_replication_factor(1);
        let (_, r) = client.send(&CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(10_000), 7).await.unwrap();
        assert_eq!(r.topics[0].error_code, 0);

        let request = |acks: i16| {
            let values: Vec<(Option<bytes::Bytes>, bytes::Bytes)> = (0..10).map(|i| (None, bytes::Bytes::from(format!("v{i}")))).collect();
            let batch = strand::cli::produce::encode_batch(&values, 1).unwrap();
            ProduceRequest::default().with_acks(acks).with_timeout_ms(10_000).with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("piped")))
                .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch))])])
        };
        let (mut writer, mut reader) = client.into_pipeline(8, Runtime::real().clock);
        let version = writer.version_for::<ProduceRequest>(9).unwrap();
        let reading = tokio::spawn(async move {
            let mut base_offsets = Vec::new();
            while let Some((r, _latency)) = reader.recv::<ProduceRequest>().await.unwrap() {
                let p = &r.responses[0].partition_responses[0];
                assert_eq!(p.error_code, 0);
                base_offsets.push(p.base_offset);
            }
            base_offsets
        });
        for i in 0..100 {
            if i % 10 == 5 {
                writer.send_no_response(&request(0), version).await.unwrap();
            }
            writer.send(&request(-1), version).await.unwrap();
        }
        drop(writer);
        let base_offsets = reading.await.unwrap();
        assert_eq!(base_offsets.len(), 100);
        assert!(base_offsets.windows(2).all(|w| w[0] < w[1]), "{base_offsets:?}");
        // 100 acked and 10 unacked batches of 10 records, in send order on one connection.
        assert_eq!(*base_offsets.last().unwrap(), 1090);
        server.shutdown().await.unwrap();
    });
    let _ = std::fs::remove_dir_all(&dir);
}
