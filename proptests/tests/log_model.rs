//! Model-based property test of the partition log with crashes.
//!
//! Random operations: append a batch of random values, read from a random offset, sync,
//! and crash-restart, where a crash drops the log without closing it and then cuts every
//! segment file at a random length between what was synced and what was written (a torn,
//! partly persisted tail), sometimes with a flipped byte in the unsynced part it kept. Invariant after every restart: the log equals a prefix of the
//! model that contains every synced record; reads always return exactly the model's values.
//!
//! A replica's operations join them: a new leader epoch, a high watermark moved up, a
//! truncation to a random offset at or above it (a divergent suffix cut; what follows is
//! written again with other values), and a sync that a truncation overtakes (its point taken
//! and synced before the cut, marked durable after new appends). Also checked: the log never
//! loses what it called durable, the leader-epoch cache is exactly the epochs of the batches
//! the log holds (after truncations and crashes too), and a truncation never goes below the
//! high watermark.
#![cfg(not(madsim))]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kafka_protocol::records::RecordBatchDecoder;
use proptest::prelude::*;
use strand::config::TopicConfig;
use strand::log::PartitionLog;
use strand::protocol::batch::{build_simple_batch, split_batches};
use strand::runtime::Runtime;

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Vec<u8>>),
    Read(u16),
    Sync,
    /// Crash and restart; the fraction (0..=255) picks each file's cut point. With `garbage`,
    /// one byte of the kept unsynced region is also flipped (a torn write can leave junk).
    Crash { fraction: u8, garbage: Option<u16> },
    /// The replica leads in a new epoch.
    NewEpoch,
    /// The commit index moves up to a fraction of the way from where it is to the durable end.
    Commit(u8),
    /// Truncate to a fraction of the way from the high watermark to the log end.
    Truncate(u8),
    /// Take a sync point and sync it, then truncate (as `Truncate`) and append, then report the
    /// sync as done.
    SyncOvertaken(u8, Vec<Vec<u8>>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 1..6).prop_map(Op::Append),
        2 => any::<u16>().prop_map(Op::Read),
        2 => Just(Op::Sync),
        1 => (any::<u8>(), prop::option::of(any::<u16>())).prop_map(|(fraction, garbage)| Op::Crash { fraction, garbage }),
        1 => Just(Op::NewEpoch),
        1 => any::<u8>().prop_map(Op::Commit),
        1 => any::<u8>().prop_map(Op::Truncate),
        1 => (any::<u8>(), prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 1..4)).prop_map(|(f, v)| Op::SyncOvertaken(f, v)),
    ]
}

fn config() -> TopicConfig {
    let mut c = TopicConfig::default();
    c.set("segment.bytes", "700").unwrap();
    c.set("index.interval.bytes", "100").unwrap();
    c
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

async fn read_from(log: &PartitionLog, from: i64) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let r = log.read(offset, 300, log.durable_offset()).await.expect("read");
        if r.records.is_empty() {
            return out;
        }
        let mut buf = r.records.clone();
        for set in RecordBatchDecoder::decode_all(&mut buf).expect("decode") {
            for rec in set.records {
                if rec.offset >= offset {
                    out.push((rec.offset, rec.value.map(|v| v.to_vec()).unwrap_or_default()));
                }
            }
        }
        offset = split_batches(&r.records).unwrap().0.last().unwrap().next_offset();
    }
}

/// The offsets where a batch starts, and the end.
fn boundaries(epochs: &[i32], batch_starts: &[bool]) -> Vec<i64> {
    let mut b: Vec<i64> = batch_starts.iter().enumerate().filter(|(_, s)| **s).map(|(o, _)| o as i64).collect();
    b.push(epochs.len() as i64);
    b
}

async fn append(log: &mut PartitionLog, model: &mut Vec<Vec<u8>>, epochs: &mut Vec<i32>, batch_starts: &mut Vec<bool>, values: Vec<Vec<u8>>) -> Result<(), TestCaseError> {
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    let info = log.append(build_simple_batch(0, 1, &refs), 1).await.unwrap();
    prop_assert_eq!(info.base_offset, model.len() as i64);
    epochs.extend(values.iter().map(|_| log.leader_epoch()));
    batch_starts.extend((0..values.len()).map(|i| i == 0));
    model.extend(values);
    Ok(())
}

/// Cut the log at a fraction of the way from the high watermark to its end, and the model to
/// the batch boundary it reports. The cut file is synced, and so is every earlier segment.
async fn truncate(
    log: &mut PartitionLog,
    dir: &Path,
    fraction: u8,
    model: &mut Vec<Vec<u8>>,
    epochs: &mut Vec<i32>,
    batch_starts: &mut Vec<bool>,
    synced_records: &mut usize,
    synced_len: &mut BTreeMap<PathBuf, u64>,
) -> Result<(), TestCaseError> {
    let (hw, end) = (log.high_watermark(), log.log_end_offset());
    let to = hw + (end - hw) * i64::from(fraction) / 255;
    let new_end = log.truncate_to(to).await.unwrap();
    prop_assert!(new_end <= to && new_end >= hw, "truncated to {} for {} (high watermark {})", new_end, to, hw);
    prop_assert_eq!(new_end, log.log_end_offset());
    prop_assert!(boundaries(epochs, batch_starts).contains(&new_end), "truncated to {}, not a batch boundary", new_end);
    model.truncate(new_end as usize);
    epochs.truncate(new_end as usize);
    batch_starts.truncate(new_end as usize);
    *synced_records = (*synced_records).min(new_end as usize);
    *synced_len = segment_files(dir).into_iter().map(|f| { let l = std::fs::metadata(&f).unwrap().len(); (f, l) }).collect();
    check_epochs(log, epochs)?;
    let got = read_from(log, log.log_start_offset()).await;
    let durable = log.durable_offset() as usize;
    let want: Vec<(i64, Vec<u8>)> = model[..durable].iter().enumerate().map(|(o, v)| (o as i64, v.clone())).collect();
    prop_assert_eq!(got, want);
    Ok(())
}

/// The leader-epoch cache holds, for each epoch among the records, its first offset.
fn check_epochs(log: &PartitionLog, epochs: &[i32]) -> Result<(), TestCaseError> {
    let mut want: Vec<(i32, i64)> = Vec::new();
    for (offset, &epoch) in epochs.iter().enumerate() {
        if want.last().is_none_or(|&(e, _)| e != epoch) {
            want.push((epoch, offset as i64));
        }
    }
    let got: Vec<(i32, i64)> = log.epochs().entries().iter().map(|e| (e.epoch, e.start_offset)).collect();
    prop_assert_eq!(got, want, "the leader-epoch cache");
    Ok(())
}

async fn run(ops: Vec<Op>, case: u64) -> Result<(), TestCaseError> {
    let dir = std::env::temp_dir().join(format!("strand-prop-{}-{case}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = Runtime::real();
    let mut log = PartitionLog::open(rt.clone(), dir.clone(), config()).await.unwrap();
    let mut model: Vec<Vec<u8>> = Vec::new();
    // The leader epoch each record of the model was appended in.
    let mut epochs: Vec<i32> = Vec::new();
    // Whether each record of the model starts a batch.
    let mut batch_starts: Vec<bool> = Vec::new();
    let mut synced_records = 0usize;
    // Bytes of each segment file known to be synced.
    let mut synced_len: BTreeMap<PathBuf, u64> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Append(values) => {
                append(&mut log, &mut model, &mut epochs, &mut batch_starts, values).await?;
            }
            Op::NewEpoch => {
                let next = log.leader_epoch() + 1;
                log.set_leader_epoch(next);
            }
            Op::Commit(fraction) => {
                // A commit index is a batch boundary (a Raft entry is a batch).
                let hw = log.high_watermark();
                let target = hw + (log.durable_offset() - hw) * i64::from(fraction) / 255;
                let boundary = boundaries(&epochs, &batch_starts).into_iter().filter(|&b| b <= target).max().unwrap_or(0);
                log.advance_high_watermark(boundary.max(hw));
            }
            Op::Truncate(fraction) => {
                truncate(&mut log, &dir, fraction, &mut model, &mut epochs, &mut batch_starts, &mut synced_records, &mut synced_len).await?;
            }
            Op::SyncOvertaken(fraction, values) => {
                let point = log.sync_point();
                for f in &point.files {
                    f.sync_data().await.unwrap();
                }
                truncate(&mut log, &dir, fraction, &mut model, &mut epochs, &mut batch_starts, &mut synced_records, &mut synced_len).await?;
                append(&mut log, &mut model, &mut epochs, &mut batch_starts, values).await?;
                log.mark_durable(&point);
                // What the log now calls durable is what it would acknowledge: a crash must keep it.
                synced_records = log.durable_offset() as usize;
            }
            Op::Read(at) => {
                let durable = log.durable_offset();
                let from = if durable == 0 { 0 } else { i64::from(at) % (durable + 1) };
                let got = read_from(&log, from).await;
                let want: Vec<(i64, Vec<u8>)> =
                    (from..durable).map(|o| (o, model[o as usize].clone())).collect();
                prop_assert_eq!(got, want);
            }
            Op::Sync => {
                let point = log.sync_point();
                for f in &point.files {
                    f.sync_data().await.unwrap();
                }
                log.mark_durable(&point);
                synced_records = point.upto as usize;
                for f in segment_files(&dir) {
                    let len = std::fs::metadata(&f).unwrap().len();
                    synced_len.insert(f, len);
                }
            }
            Op::Crash { fraction, garbage } => {
                drop(log);
                let files = segment_files(&dir);
                for (i, f) in files.iter().enumerate() {
                    let len = std::fs::metadata(f).unwrap().len();
                    // A roll syncs the segment it seals, so only the active (last) segment can
                    // hold unsynced bytes: up to its length at the last sync is durable.
                    let floor = if i + 1 < files.len() { len } else { synced_len.get(f).copied().unwrap_or(0).min(len) };
                    let cut = floor + (len - floor) * u64::from(fraction) / 255;
                    std::fs::OpenOptions::new().write(true).open(f).unwrap().set_len(cut).unwrap();
                    if let Some(at) = garbage {
                        if cut > floor {
                            let mut bytes = std::fs::read(f).unwrap();
                            let i = (floor + u64::from(at) % (cut - floor)) as usize;
                            bytes[i] ^= 0x5a;
                            std::fs::write(f, &bytes).unwrap();
                        }
                    }
                }
                log = PartitionLog::open(rt.clone(), dir.clone(), config()).await.unwrap();
                let end = log.log_end_offset() as usize;
                prop_assert!(end >= synced_records, "lost synced records: end {} < synced {}", end, synced_records);
                prop_assert!(end <= model.len(), "log end {} beyond what was written {}", end, model.len());
                model.truncate(end);
                epochs.truncate(end);
                batch_starts.truncate(end);
                prop_assert_eq!(log.durable_offset() as usize, end);
                check_epochs(&log, &epochs)?;
                let got = read_from(&log, 0).await;
                let want: Vec<(i64, Vec<u8>)> = model.iter().enumerate().map(|(o, v)| (o as i64, v.clone())).collect();
                prop_assert_eq!(got, want);
                synced_records = end;
                synced_len = segment_files(&dir).into_iter().map(|f| { let l = std::fs::metadata(&f).unwrap().len(); (f, l) }).collect();
            }
        }
    }
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn log_is_a_prefix_of_the_model_with_every_synced_record(ops in prop::collection::vec(op(), 1..60)) {
        static CASE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let case = CASE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops, case))?;
    }
}
