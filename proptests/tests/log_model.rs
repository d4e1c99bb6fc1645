//! Model-based property test of the partition log with crashes.
//!
//! Random operations: append a batch of random values, read from a random offset, sync,
//! and crash-restart, where a crash drops the log without closing it and then cuts every
//! segment file at a random length between what was synced and what was written (a torn,
//! partly persisted tail), sometimes with a flipped byte in the unsynced part it kept. Invariant after every restart: the log equals a prefix of the
//! model that contains every synced record; reads always return exactly the model's values.
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
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 1..6).prop_map(Op::Append),
        2 => any::<u16>().prop_map(Op::Read),
        2 => Just(Op::Sync),
        1 => (any::<u8>(), prop::option::of(any::<u16>())).prop_map(|(fraction, garbage)| Op::Crash { fraction, garbage }),
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

async fn run(ops: Vec<Op>, case: u64) -> Result<(), TestCaseError> {
    let dir = std::env::temp_dir().join(format!("strand-prop-{}-{case}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = Runtime::real();
    let mut log = PartitionLog::open(rt.clone(), dir.clone(), config()).await.unwrap();
    let mut model: Vec<Vec<u8>> = Vec::new();
    let mut synced_records = 0usize;
    // Bytes of each segment file known to be synced.
    let mut synced_len: BTreeMap<PathBuf, u64> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Append(values) => {
                let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
                let info = log.append(build_simple_batch(0, 1, &refs), 1).await.unwrap();
                prop_assert_eq!(info.base_offset, model.len() as i64);
                model.extend(values);
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
                log.mark_durable(point.upto);
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
                prop_assert_eq!(log.durable_offset() as usize, end);
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
