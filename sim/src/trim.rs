//! The DeleteRecords workload (KIP-107): one client produces small batches to its own topic and,
//! between them, moves the topic's log start to a random offset up to what it has had
//! acknowledged (often inside a batch), asks for the earliest offset, and fetches from random
//! offsets, under the same faults as everything else. What it saw goes to
//! `check::deleted_records_stay_deleted`.
//!
//! A topic of its own, so the main partition's invariants (every acknowledged record survives,
//! offsets dense from 0) stay as strong as they are.

use std::time::Duration;

use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{DeleteRecordsRequest, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use madsim::rand::Rng;
use strand::client::Client;

use crate::scenario::{connect, event, Shared};

pub const TRIM_TOPIC: &str = "trim";
const OFFSET_OUT_OF_RANGE: i16 = 1;
const TIMEOUT: Duration = Duration::from_secs(10);

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_static_str(TRIM_TOPIC))
}

/// Produce `values` as one batch with acks=all: Ok(Ok(base offset)) when acknowledged.
async fn produce(client: &mut Client, values: &[String], now_ms: i64) -> anyhow::Result<Result<i64, i16>> {
    crate::scenario::produce_once(client, TRIM_TOPIC, values, now_ms, -1, None).await
}

/// DeleteRecords before `offset`: (error code, low watermark).
async fn delete_records(client: &mut Client, offset: i64) -> anyhow::Result<(i16, i64)> {
    let request = DeleteRecordsRequest::default().with_timeout_ms(5_000).with_topics(vec![DeleteRecordsTopic::default()
        .with_name(topic_name())
        .with_partitions(vec![DeleteRecordsPartition::default().with_partition_index(0).with_offset(offset)])]);
    let response = tokio::time::timeout(TIMEOUT, client.send_at(&request, 2)).await.map_err(|_| anyhow::anyhow!("delete records timed out"))??;
    let p = response.topics.first().and_then(|t| t.partitions.first()).ok_or_else(|| anyhow::anyhow!("empty DeleteRecords response"))?;
    Ok((p.error_code, p.low_watermark))
}

/// ListOffsets earliest: the log start, when answered without an error.
pub async fn earliest(client: &mut Client) -> anyhow::Result<Option<i64>> {
    let request = ListOffsetsRequest::default().with_replica_id((-1).into()).with_topics(vec![ListOffsetsTopic::default()
        .with_name(topic_name())
        .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-2)])]);
    let response = tokio::time::timeout(TIMEOUT, client.send_at(&request, 4)).await.map_err(|_| anyhow::anyhow!("list offsets timed out"))??;
    let p = response.topics.first().and_then(|t| t.partitions.first()).ok_or_else(|| anyhow::anyhow!("empty ListOffsets response"))?;
    Ok((p.error_code == 0).then_some(p.offset))
}

/// One fetch from `from`: (error code, (offset, value) of the records at or past `from`, high
/// watermark).
pub async fn fetch(client: &mut Client, from: i64) -> anyhow::Result<(i16, Vec<(i64, String)>, i64)> {
    let request = strand::client::fetch_request(TRIM_TOPIC, [(0, from)], 0, 1 << 20, 1 << 20);
    let response = tokio::time::timeout(TIMEOUT, client.send_at(&request, 11)).await.map_err(|_| anyhow::anyhow!("fetch timed out"))??;
    let p = &response.responses[0].partitions[0];
    let mut out = Vec::new();
    if let Some(mut records) = p.records.clone() {
        for set in RecordBatchDecoder::decode_all(&mut records)? {
            for r in set.records {
                if r.offset >= from {
                    out.push((r.offset, String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()));
                }
            }
        }
    }
    Ok((p.error_code, out, p.high_watermark))
}

/// The workload: `rounds` rounds of produce, then maybe a DeleteRecords, a ListOffsets
/// earliest and a fetch from a random offset; spread over about `spread_ms`, so the faults hit
/// it.
pub async fn workload(rec: Shared, rounds: usize, spread_ms: u64, clock: crate::clock::SimClock) {
    let mut client: Option<Client> = None;
    let think_ms_max = spread_ms / rounds.max(1) as u64;
    for round in 0..rounds {
        tokio::time::sleep(Duration::from_millis(madsim::rand::thread_rng().gen_range(0..=think_ms_max))).await;
        if client.is_none() {
            client = connect().await;
        }
        let Some(c) = client.as_mut() else { continue };
        let n = madsim::rand::thread_rng().gen_range(1..=5);
        let values: Vec<String> = (0..n).map(|i| format!("t{round}-r{i}")).collect();
        match produce(c, &values, strand::runtime::Clock::wall_ms(&clock)).await {
            Ok(Ok(base)) => {
                event(&rec, format!("trim: round {round} acked at {base}"));
                rec.lock().expect("recorder lock").history.trim_acked.push((base, values));
            }
            Ok(Err(code)) => event(&rec, format!("trim: round {round} produce error {code}")),
            Err(e) => {
                event(&rec, format!("trim: round {round} produce: {e}"));
                client = None;
                continue;
            }
        }
        // Up to the end of what was acknowledged (durable, so below the high watermark).
        let (acked_end, known_start) = {
            let r = rec.lock().expect("recorder lock");
            let end = r.history.trim_acked.iter().map(|(b, v)| b + v.len() as i64).max().unwrap_or(0);
            (end, r.history.trim_starts_seen.last().copied().unwrap_or(0))
        };
        let (delete, look, read) = {
            let mut rng = madsim::rand::thread_rng();
            (rng.gen_bool(0.4), rng.gen_bool(0.5), rng.gen_bool(0.5))
        };
        if delete && acked_end > known_start {
            let offset = madsim::rand::thread_rng().gen_range(known_start..=acked_end);
            rec.lock().expect("recorder lock").history.trim_delete_attempts.push(offset);
            match delete_records(c, offset).await {
                Ok((0, low)) => {
                    event(&rec, format!("trim: delete before {offset}: acked, low watermark {low}"));
                    let mut r = rec.lock().expect("recorder lock");
                    r.history.trim_deletes_acked.push((offset, low));
                    r.history.trim_starts_seen.push(low);
                }
                Ok((code, _)) => event(&rec, format!("trim: delete before {offset}: error {code}")),
                Err(e) => {
                    event(&rec, format!("trim: delete before {offset}: {e}"));
                    client = None;
                    continue;
                }
            }
        }
        if look {
            match earliest(c).await {
                Ok(Some(start)) => rec.lock().expect("recorder lock").history.trim_starts_seen.push(start),
                Ok(None) => {}
                Err(_) => {
                    client = None;
                    continue;
                }
            }
        }
        if read && acked_end > 0 {
            let from = madsim::rand::thread_rng().gen_range(0..acked_end);
            // The highest start acknowledged before this fetch was sent: below it nothing may
            // be served.
            let acked_start = rec.lock().expect("recorder lock").history.trim_deletes_acked.iter().map(|(o, _)| *o).max().unwrap_or(0);
            match fetch(c, from).await {
                Ok((code, records, _)) => {
                    if from < acked_start && (code != OFFSET_OUT_OF_RANGE || !records.is_empty()) {
                        let msg = format!("fetch at {from}, below the acknowledged start {acked_start}: error {code}, {} records", records.len());
                        rec.lock().expect("recorder lock").history.trim_violations.push(msg);
                    }
                    if code == 0 {
                        rec.lock().expect("recorder lock").history.trim_observed.extend(records);
                    }
                }
                Err(_) => client = None,
            }
        }
    }
    event(&rec, "trim: done".into());
}

/// After the run: the log start and every record from it to the high watermark.
pub async fn final_state() -> Result<(i64, Vec<(i64, String)>), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut client: Option<Client> = None;
    let mut start = None;
    let mut log: Vec<(i64, String)> = Vec::new();
    loop {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("final read of '{TRIM_TOPIC}' did not complete (start {start:?}, {} records)", log.len()));
        }
        if client.is_none() {
            client = connect().await;
        }
        let Some(c) = client.as_mut() else { continue };
        if start.is_none() {
            match earliest(c).await {
                Ok(s) => start = s,
                Err(_) => client = None,
            }
            continue;
        }
        let from = log.last().map(|(o, _)| o + 1).unwrap_or(start.expect("set"));
        match fetch(c, from).await {
            Ok((0, records, high_watermark)) => {
                log.extend(records);
                if log.last().map(|(o, _)| o + 1).unwrap_or(from) >= high_watermark {
                    return Ok((start.expect("set"), log));
                }
            }
            Ok((code, _, _)) => return Err(format!("final read of '{TRIM_TOPIC}' from {from}: error {code}")),
            Err(_) => client = None,
        }
    }
}
