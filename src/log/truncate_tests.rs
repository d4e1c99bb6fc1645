//! Truncation and the leader-epoch cache, on real files.

use super::tests::{batch, producer_batch, read_all, small_config, sync_all, TempDir};
use super::*;
use crate::runtime::Runtime;

/// 30 batches of 2 records: epoch 0 for offsets 0..20, epoch 3 for 20..40, epoch 5 for 40..60.
async fn three_epochs(dir: &TempDir) -> PartitionLog {
    let mut log = PartitionLog::open(Runtime::real(), dir.0.clone(), small_config()).await.unwrap();
    for i in 0..30 {
        if i == 10 {
            log.set_leader_epoch(3);
        }
        if i == 20 {
            log.set_leader_epoch(5);
        }
        let (a, b) = (format!("v{}", 2 * i), format!("v{}", 2 * i + 1));
        log.append(batch(&[&a, &b], 1000 + i), 5000).await.unwrap();
    }
    sync_all(&mut log).await;
    log
}

fn values(range: std::ops::Range<i64>) -> Vec<(i64, String)> {
    range.map(|o| (o, format!("v{o}"))).collect()
}

fn stored_epochs(log: &PartitionLog) -> Vec<(i32, i64)> {
    log.epochs().entries().iter().map(|e| (e.epoch, e.start_offset)).collect()
}

#[tokio::test]
async fn batches_carry_the_leader_epoch_and_the_cache_answers_offset_for_leader_epoch() {
    let dir = TempDir::new("epochs");
    let log = three_epochs(&dir).await;
    assert!(log.segments.len() >= 3, "the test needs several segments");
    assert_eq!(stored_epochs(&log), vec![(0, 0), (3, 20), (5, 40)]);
    let r = log.read(20, 1, 60).await.unwrap();
    let (batches, _) = split_batches(&r.records).unwrap();
    assert_eq!(batches[0].partition_leader_epoch(), 3);
    assert_eq!(log.end_offset_for_epoch(0), (0, 20));
    assert_eq!(log.end_offset_for_epoch(4), (3, 40));
    assert_eq!(log.end_offset_for_epoch(5), (5, 60));
    assert_eq!(log.end_offset_for_epoch(6), (-1, -1));
    drop(log);
    let log = PartitionLog::open(Runtime::real(), dir.0.clone(), small_config()).await.unwrap();
    assert_eq!(stored_epochs(&log), vec![(0, 0), (3, 20), (5, 40)], "the cache is durable");
    assert_eq!(log.leader_epoch(), 5, "a reopened log appends in its latest epoch");
}

#[tokio::test]
async fn truncate_to_cuts_a_suffix_across_segments_and_the_log_grows_again_from_there() {
    let dir = TempDir::new("truncate");
    let mut log = three_epochs(&dir).await;
    log.advance_high_watermark(24);
    let segments_before = log.segments.len();
    // 25 is inside the batch 24..26: the whole batch goes.
    assert_eq!(log.truncate_to(25).await.unwrap(), 24);
    assert_eq!(log.log_end_offset(), 24);
    assert_eq!(log.durable_offset(), 24);
    assert!(log.segments.len() < segments_before, "later segments are removed");
    assert_eq!(stored_epochs(&log), vec![(0, 0), (3, 20)], "epoch 5 wrote nothing left");
    assert_eq!(log.end_offset_for_epoch(3), (3, 24));
    assert_eq!(read_all(&log, 0).await, values(0..24));
    // A new leader's batches continue from the cut, with its epoch.
    log.set_leader_epoch(7);
    for i in 12..40 {
        let (a, b) = (format!("v{}", 2 * i), format!("v{}", 2 * i + 1));
        let info = log.append(batch(&[&a, &b], 2000 + i), 6000).await.unwrap();
        assert_eq!(info.base_offset, 2 * i);
    }
    sync_all(&mut log).await;
    assert_eq!(stored_epochs(&log), vec![(0, 0), (3, 20), (7, 24)]);
    assert_eq!(read_all(&log, 0).await, values(0..80));
    assert_eq!(read_all(&log, 33).await, values(33..80), "reads through the trimmed index");
    log.maintain(6000).await.unwrap();
    drop(log);
    let log = PartitionLog::open(Runtime::real(), dir.0.clone(), small_config()).await.unwrap();
    assert_eq!(read_all(&log, 0).await, values(0..80));
    assert_eq!(stored_epochs(&log), vec![(0, 0), (3, 20), (7, 24)]);
    assert_eq!(log.offset_for_timestamp(1011).await.unwrap(), Some((22, 1011)));
    assert_eq!(log.offset_for_timestamp(1013).await.unwrap(), Some((24, 2012)), "the cut batches' timestamps are gone");
}

#[tokio::test]
async fn truncate_to_a_segment_boundary_and_to_the_log_start() {
    let dir = TempDir::new("truncate-boundary");
    let mut log = three_epochs(&dir).await;
    let second = log.segments[1].base_offset;
    assert_eq!(log.truncate_to(second).await.unwrap(), second);
    assert_eq!(log.segments.len(), 2, "the segment starting at the cut stays, empty, as the active one");
    assert!(log.active().is_empty());
    assert_eq!(read_all(&log, 0).await, values(0..second));
    assert_eq!(log.truncate_to(0).await.unwrap(), 0);
    assert_eq!(log.log_end_offset(), 0);
    assert!(log.epochs().entries().is_empty());
    log.set_leader_epoch(9);
    log.append(batch(&["v0", "v1"], 1), 1).await.unwrap();
    sync_all(&mut log).await;
    drop(log);
    let log = PartitionLog::open(Runtime::real(), dir.0.clone(), small_config()).await.unwrap();
    assert_eq!(read_all(&log, 0).await, values(0..2));
    assert_eq!(stored_epochs(&log), vec![(9, 0)]);
}

#[tokio::test]
#[should_panic(expected = "below the high watermark")]
async fn truncating_below_the_high_watermark_stops_the_node() {
    let dir = TempDir::new("truncate-hw");
    let mut log = three_epochs(&dir).await;
    log.advance_high_watermark(30);
    let _ = log.truncate_to(29).await;
}

#[tokio::test]
async fn a_sync_overtaken_by_a_truncation_does_not_make_later_writes_durable() {
    let dir = TempDir::new("truncate-sync");
    let mut log = three_epochs(&dir).await;
    log.append(batch(&["v60", "v61"], 1), 1).await.unwrap();
    let point = log.sync_point();
    assert_eq!(point.upto, 62);
    log.truncate_to(58).await.unwrap();
    for o in (58..66).step_by(2) {
        let (a, b) = (format!("v{o}"), format!("v{}", o + 1));
        log.append(batch(&[&a, &b], 1), 1).await.unwrap();
    }
    for f in &point.files {
        f.sync_data().await.unwrap();
    }
    log.mark_durable(&point);
    assert_eq!(log.durable_offset(), 58, "offsets 58..62 now hold other bytes than the sync covered");
    sync_all(&mut log).await;
    assert_eq!(log.durable_offset(), 66);
}

#[tokio::test]
async fn a_missing_or_damaged_epoch_checkpoint_is_rebuilt_from_the_batches() {
    let dir = TempDir::new("epochs-rebuild");
    let log = three_epochs(&dir).await;
    drop(log);
    let path = dir.0.join(EPOCH_CHECKPOINT);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[5] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let log = PartitionLog::open(Runtime::real(), dir.0.clone(), small_config()).await.unwrap();
    assert_eq!(stored_epochs(&log), vec![(0, 0), (3, 20), (5, 40)]);
    drop(log);
    std::fs::remove_file(&path).unwrap();
    let log = PartitionLog::open(Runtime::real(), dir.0.clone(), small_config()).await.unwrap();
    assert_eq!(stored_epochs(&log), vec![(0, 0), (3, 20), (5, 40)]);
    assert!(path.exists(), "the rebuilt cache is written back");
}

#[tokio::test]
async fn an_epoch_whose_batches_were_lost_in_a_crash_leaves_the_cache() {
    let dir = TempDir::new("epochs-crash");
    let mut log = three_epochs(&dir).await;
    log.set_leader_epoch(8);
    log.append(batch(&["v60"], 1), 1).await.unwrap();
    let active = segment::log_path(&dir.0, log.active().base_offset);
    drop(log);
    // The crash lost the unsynced batch of epoch 8 (its checkpoint entry was already written).
    let len = std::fs::metadata(&active).unwrap().len();
    let last_batch = split_batches(&std::fs::read(&active).unwrap()).unwrap().0.last().unwrap().size_bytes() as u64;
    std::fs::OpenOptions::new().write(true).open(&active).unwrap().set_len(len - last_batch).unwrap();
    let log = PartitionLog::open(Runtime::real(), dir.0.clone(), small_config()).await.unwrap();
    assert_eq!(log.log_end_offset(), 60);
    assert_eq!(stored_epochs(&log), vec![(0, 0), (3, 20), (5, 40)]);
    assert_eq!(log.end_offset_for_epoch(8), (-1, -1));
}

#[tokio::test]
async fn truncate_fully_and_start_at_empties_the_log_and_starts_it_there() {
    let dir = TempDir::new("truncate-fully");
    let mut log = three_epochs(&dir).await;
    log.advance_high_watermark(50);
    log.truncate_fully_and_start_at(500).await.unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset(), log.durable_offset(), log.high_watermark()), (500, 500, 500, 500));
    assert!(log.epochs().entries().is_empty());
    assert_eq!(read_all(&log, 500).await, vec![]);
    log.set_leader_epoch(6);
    log.append(batch(&["v500", "v501"], 1), 1).await.unwrap();
    sync_all(&mut log).await;
    drop(log);
    let log = PartitionLog::open(Runtime::real(), dir.0.clone(), small_config()).await.unwrap();
    assert_eq!(log.log_start_offset(), 500);
    assert_eq!(read_all(&log, 500).await, values(500..502));
    assert_eq!(stored_epochs(&log), vec![(6, 500)]);
    let names: Vec<String> = std::fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).filter(|n| n.ends_with(".log")).collect();
    assert_eq!(names, vec![format!("{:020}.log", 500)], "every old segment is gone");
}

#[tokio::test]
async fn idempotent_producer_state_follows_the_truncation() {
    let dir = TempDir::new("truncate-producers");
    let mut log = PartitionLog::open(Runtime::real(), dir.0.clone(), small_config()).await.unwrap();
    for seq in 0..4 {
        log.append(producer_batch(42, 0, seq, &["x"]), 1).await.unwrap();
    }
    sync_all(&mut log).await;
    log.truncate_to(2).await.unwrap();
    // Sequence 2 was cut: it is the next one expected, not a duplicate of offset 2.
    assert!(matches!(log.append(producer_batch(42, 0, 3, &["x"]), 1).await, Err(Error::OutOfOrderSequence { expected: 2, got: 3, .. })));
    let info = log.append(producer_batch(42, 0, 2, &["x"]), 1).await.unwrap();
    assert_eq!(info.base_offset, 2);
}

/// The replica manager removes a deleted topic's directory only when it holds nothing but the
/// log's own files: every file the log writes must count as one (the leader-epoch checkpoint
/// once did not, and the simulator found directories of deleted topics left behind).
#[tokio::test]
async fn every_file_the_log_writes_is_known_as_a_log_file() {
    let dir = TempDir::new("log-files");
    let mut log = three_epochs(&dir).await;
    log.truncate_to(30).await.unwrap();
    log.maintain(10_000).await.unwrap();
    log.delete_records_before(5).await.unwrap();
    log.close().await.unwrap();
    let names: Vec<String> = std::fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    for wanted in ["recovery-checkpoint", "log-start-offset", "leader-epoch-checkpoint"] {
        assert!(names.iter().any(|n| n == wanted), "{wanted} missing from {names:?}");
    }
    for name in &names {
        assert!(is_log_file(name), "{name} is written by the log but not known as a log file");
    }
}
