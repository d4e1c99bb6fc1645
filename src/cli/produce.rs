//! `strand produce TOPIC`: one record per stdin line, optionally `KEY<sep>VALUE`. Keyed records
//! go where Kafka's default partitioner puts them; unkeyed ones round-robin per batch. Lines are
//! sent in batches when 64 KiB accumulate, when stdin pauses for 50 ms, and at EOF.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail};
use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::io::AsyncBufReadExt;

use crate::cli::ProduceArgs;
use crate::client::partitioner::partition_for_key;
use crate::client::{error_name, Client};
use crate::runtime::Runtime;

const BATCH_BYTES: usize = 64 * 1024;
const LINGER: Duration = Duration::from_millis(50);

/// Split a line into (key, value) at the first separator.
pub fn split_line<'a>(line: &'a str, separator: Option<&str>) -> (Option<&'a str>, &'a str) {
    match separator {
        Some(sep) if !sep.is_empty() => match line.split_once(sep) {
            Some((k, v)) => (Some(k), v),
            None => (None, line),
        },
        _ => (None, line),
    }
}

pub fn parse_acks(s: &str) -> anyhow::Result<i16> {
    match s {
        "0" => Ok(0),
        "1" => Ok(1),
        "all" | "-1" => Ok(-1),
        other => bail!("--acks must be 0, 1 or all, not '{other}'"),
    }
}

/// Encode one batch of (key, value) records, timestamped now.
pub fn encode_batch(records: &[(Option<Bytes>, Bytes)], timestamp_ms: i64) -> anyhow::Result<Bytes> {
    let records: Vec<(Option<Bytes>, Option<Bytes>)> = records.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
    Ok(crate::protocol::batch::build_batch(0, timestamp_ms, &records))
}

pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let acks = parse_acks(&args.acks)?;
    let runtime = crate::cli::tokio_runtime()?;
    runtime.block_on(async move {
        let mut client = Client::connect(&args.connect.bootstrap_server).await?;
        let partitions = crate::cli::topic::partition_count(&mut client, &args.topic, true).await?;
        if let Some(p) = args.partition {
            if p < 0 || p >= partitions {
                bail!("--partition {p}: topic '{}' has partitions 0..{}", args.topic, partitions - 1);
            }
        }
        let clock = Runtime::real().clock;
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        let mut pending: BTreeMap<i32, Vec<(Option<Bytes>, Bytes)>> = BTreeMap::new();
        let mut pending_bytes = 0usize;
        let mut round_robin = 0i32;
        let mut sent = 0u64;
        loop {
            let next = if pending.is_empty() {
                Ok(lines.next_line().await)
            } else {
                tokio::time::timeout(LINGER, lines.next_line()).await
            };
            let eof = match next {
                Ok(Ok(Some(line))) => {
                    let (key, value) = split_line(&line, args.key_separator.as_deref());
                    let partition = match (args.partition, key) {
                        (Some(p), _) => p,
                        (None, Some(k)) => partition_for_key(k.as_bytes(), partitions),
                        (None, None) => round_robin,
                    };
                    pending_bytes += line.len();
                    pending.entry(partition).or_default().push((key.map(|k| Bytes::copy_from_slice(k.as_bytes())), Bytes::copy_from_slice(value.as_bytes())));
                    if pending_bytes < BATCH_BYTES {
                        continue;
                    }
                    false
                }
                Ok(Ok(None)) => true,
                Ok(Err(e)) => return Err(anyhow!("reading stdin: {e}")),
                Err(_) => false, // stdin paused: send what we have
            };
            if !pending.is_empty() {
                sent += send(&mut client, &args.topic, acks, std::mem::take(&mut pending), clock.wall_ms()).await?;
                pending_bytes = 0;
                round_robin = (round_robin + 1) % partitions;
            }
            if eof {
                break;
            }
        }
        eprintln!("produced {sent} record(s) to {}", args.topic);
        Ok(())
    })
}

async fn send(client: &mut Client, topic: &str, acks: i16, batches: BTreeMap<i32, Vec<(Option<Bytes>, Bytes)>>, now_ms: i64) -> anyhow::Result<u64> {
    let mut count = 0u64;
    let mut partition_data = Vec::new();
    for (p, records) in &batches {
        count += records.len() as u64;
        partition_data.push(PartitionProduceData::default().with_index(*p).with_records(Some(encode_batch(records, now_ms)?)));
    }
    let request = ProduceRequest::default().with_acks(acks).with_timeout_ms(30_000).with_topic_data(vec![
        TopicProduceData::default().with_name(TopicName(StrBytes::from_string(topic.to_string()))).with_partition_data(partition_data),
    ]);
    // v12 names topics; v13+ would need topic ids.
    let version = client.version_for::<ProduceRequest>(12)?;
    if acks == 0 {
        client.send_no_response(&request, version).await?;
        return Ok(count);
    }
    let response = client.send_at(&request, version).await?;
    for t in &response.responses {
        for p in &t.partition_responses {
            if p.error_code != 0 {
                bail!(
                    "producing to {topic}-{}: {}{}",
                    p.index,
                    error_name(p.error_code),
                    p.error_message.as_ref().map(|m| format!(": {}", m.as_str())).unwrap_or_default()
                );
            }
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_the_first_separator() {
        assert_eq!(split_line("k:v:w", Some(":")), (Some("k"), "v:w"));
        assert_eq!(split_line("no-sep", Some(":")), (None, "no-sep"));
        assert_eq!(split_line("k:v", None), (None, "k:v"));
        assert!(parse_acks("2").is_err());
        assert_eq!(parse_acks("all").unwrap(), -1);
    }

    #[test]
    fn encoded_batch_is_one_valid_batch() {
        let b = encode_batch(&[(Some(Bytes::from_static(b"k")), Bytes::from_static(b"v1")), (None, Bytes::from_static(b"v2"))], 5).unwrap();
        let views = crate::protocol::batch::validate_record_set(&b).unwrap();
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].records_count(), 2);
    }
}
