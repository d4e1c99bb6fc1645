//! Unit tests of the log on real files (a fresh temp directory per test).

use std::path::PathBuf;

use bytes::Bytes;

use super::*;
use crate::protocol::batch::{build_simple_batch, split_batches};
use crate::runtime::Runtime;

pub(super) struct TempDir(pub(super) PathBuf);
impl TempDir {
    pub(super) fn new(name: &str) -> TempDir {
        let n = std::sync::atomic::AtomicU64::new(0);
        let _ = n;
        let dir = std::env::temp_dir().join(format!("strand-log-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn small_config() -> TopicConfig {
    let mut c = TopicConfig::default();
    c.set("segment.bytes", "1024").unwrap();
    c.set("index.interval.bytes", "128").unwrap();
    c
}

pub(super) fn batch(values: &[&str], ts: i64) -> Bytes {
    let v: Vec<&[u8]> = values.iter().map(|s| s.as_bytes()).collect();
    build_simple_batch(0, ts, &v)
}

/// All (offset, value) pairs readable from `from`, one batch at a time.
pub(super) async fn read_all(log: &PartitionLog, from: i64) -> Vec<(i64, String)> {
    use kafka_protocol::records::RecordBatchDecoder;
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let r = log.read(offset, 1, log.durable_offset()).await.unwrap();
        if r.records.is_empty() {
            return out;
        }
        let mut buf = r.records.clone();
        let set = RecordBatchDecoder::decode(&mut buf).unwrap();
        for rec in set.records {
            if rec.offset >= offset {
                out.push((rec.offset, String::from_utf8(rec.value.unwrap().to_vec()).unwrap()));
            }
        }
        let (batches, _) = split_batches(&r.records).unwrap();
        offset = batches.last().unwrap().next_offset();
    }
}

pub(super) async fn sync_all(log: &mut PartitionLog) {
    let point = log.sync_point();
    for f in &point.files {
        f.sync_data().await.unwrap();
    }
    log.mark_durable(&point);
}

#[tokio::test]
async fn append_read_across_segments_and_reopen() {
    let dir = TempDir::new("segments");
    let rt = Runtime::real();
    let mut log = PartitionLog::open(rt.clone(), dir.0.clone(), small_config()).await.unwrap();
    let mut expected = Vec::new();
    for i in 0..60 {
        let values = [format!("value-{i}-a"), format!("value-{i}-b")];
        let info = log.append(batch(&[&values[0], &values[1]], 1000 + i), 5000).await.unwrap();
        assert_eq!(info.base_offset, 2 * i);
        assert_eq!(info.last_offset, 2 * i + 1);
        expected.push((2 * i, values[0].clone()));
        expected.push((2 * i + 1, values[1].clone()));
    }
    assert!(log.segments.len() > 3, "small segment.bytes rolls: {} segments", log.segments.len());
    // Not durable yet: nothing readable below the durable offset.
    assert_eq!(log.durable_offset(), log.segments.last().unwrap().base_offset);
    sync_all(&mut log).await;
    assert_eq!(log.durable_offset(), 120);
    assert_eq!(read_all(&log, 0).await, expected);
    // Reads from the middle of a batch start at that batch; every offset is reachable.
    for start in [0, 1, 37, 64, 119] {
        let got = read_all(&log, start).await;
        assert_eq!(got, expected[start as usize..].to_vec(), "from {start}");
    }
    // max_bytes bounds the response but one batch always comes back.
    let r = log.read(0, 10, 120).await.unwrap();
    assert_eq!(split_batches(&r.records).unwrap().0.len(), 1);
    let r = log.read(0, 100_000, 120).await.unwrap();
    assert_eq!(split_batches(&r.records).unwrap().0.len(), 60);
    // Out of range.
    assert!(matches!(log.read(121, 100, 120).await, Err(Error::OffsetOutOfRange { .. })));
    assert!(log.read(120, 100, 120).await.unwrap().records.is_empty());
    log.close().await.unwrap();
    let log = PartitionLog::open(rt, dir.0.clone(), small_config()).await.unwrap();
    assert_eq!(log.log_end_offset(), 120);
    assert_eq!(read_all(&log, 0).await, expected);
}

#[tokio::test]
async fn truncated_tail_is_cut_at_the_last_whole_batch() {
    let dir = TempDir::new("torn");
    let rt = Runtime::real();
    let mut log = PartitionLog::open(rt.clone(), dir.0.clone(), TopicConfig::default()).await.unwrap();
    for i in 0..5 {
        log.append(batch(&[&format!("v{i}")], 1), 1).await.unwrap();
    }
    sync_all(&mut log).await;
    drop(log); // a crash: no close
    let seg = dir.0.join(format!("{:020}.log", 0));
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 3).unwrap();
    let log = PartitionLog::open(rt, dir.0.clone(), TopicConfig::default()).await.unwrap();
    assert_eq!(log.log_end_offset(), 4);
    let got: Vec<String> = read_all(&log, 0).await.into_iter().map(|(_, v)| v).collect();
    assert_eq!(got, vec!["v0", "v1", "v2", "v3"]);
}

#[tokio::test]
async fn flipped_bit_in_last_batch_is_detected_and_cut() {
    let dir = TempDir::new("bitflip");
    let rt = Runtime::real();
    let mut log = PartitionLog::open(rt.clone(), dir.0.clone(), TopicConfig::default()).await.unwrap();
    for i in 0..5 {
        log.append(batch(&[&format!("v{i}")], 1), 1).await.unwrap();
    }
    sync_all(&mut log).await;
    drop(log);
    let seg = dir.0.join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&seg).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    let mut log = PartitionLog::open(rt, dir.0.clone(), TopicConfig::default()).await.unwrap();
    assert_eq!(log.log_end_offset(), 4);
    // The log keeps working after the cut.
    let info = log.append(batch(&["after"], 1), 1).await.unwrap();
    assert_eq!(info.base_offset, 4);
    sync_all(&mut log).await;
    assert_eq!(read_all(&log, 3).await, vec![(3, "v3".to_string()), (4, "after".to_string())]);
}

/// Simulator regression (sim seed 51 before the fix): a crash left valid batches followed by a
/// zero-filled torn sector; recovery read the zero length field, discarded the whole chunk and
/// cut the segment to 0, losing acknowledged records.
#[tokio::test]
async fn zero_filled_torn_tail_keeps_the_valid_batches() {
    let dir = TempDir::new("zerotail");
    let rt = Runtime::real();
    let mut log = PartitionLog::open(rt.clone(), dir.0.clone(), TopicConfig::default()).await.unwrap();
    for i in 0..3 {
        log.append(batch(&[&format!("v{i}")], 1), 1).await.unwrap();
    }
    sync_all(&mut log).await;
    drop(log);
    let seg = dir.0.join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(&[0u8; 20]);
    std::fs::write(&seg, &bytes).unwrap();
    let log = PartitionLog::open(rt, dir.0.clone(), TopicConfig::default()).await.unwrap();
    assert_eq!(log.log_end_offset(), 3);
    let values: Vec<String> = read_all(&log, 0).await.into_iter().map(|(_, v)| v).collect();
    assert_eq!(values, vec!["v0", "v1", "v2"]);
}

#[tokio::test]
async fn corruption_is_never_served() {
    let dir = TempDir::new("served");
    let rt = Runtime::real();
    let mut log = PartitionLog::open(rt.clone(), dir.0.clone(), TopicConfig::default()).await.unwrap();
    log.append(batch(&["good"], 1), 1).await.unwrap();
    sync_all(&mut log).await;
    let seg = dir.0.join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&seg).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&seg, &bytes).unwrap();
    assert!(matches!(log.read(0, 1000, 1).await, Err(Error::Corrupt { .. })));
}

#[tokio::test]
async fn bad_input_is_rejected_and_changes_nothing() {
    let dir = TempDir::new("badinput");
    let rt = Runtime::real();
    let mut config = TopicConfig::default();
    config.set("max.message.bytes", "200").unwrap();
    let mut log = PartitionLog::open(rt, dir.0.clone(), config).await.unwrap();
    let big = "x".repeat(500);
    assert!(matches!(log.append(batch(&[&big], 1), 1).await, Err(Error::MessageTooLarge { .. })));
    let mut corrupt = batch(&["v"], 1).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert!(matches!(log.append(Bytes::from(corrupt), 1).await, Err(Error::Batch(BatchError::BadCrc { .. }))));
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.append(batch(&["ok"], 1), 1).await.unwrap().base_offset, 0);
}

#[tokio::test]
async fn log_append_time_is_stamped() {
    let dir = TempDir::new("lat");
    let mut config = TopicConfig::default();
    config.set("message.timestamp.type", "LogAppendTime").unwrap();
    let mut log = PartitionLog::open(Runtime::real(), dir.0.clone(), config).await.unwrap();
    let info = log.append(batch(&["a", "b"], 5), 777_000).await.unwrap();
    assert_eq!(info.log_append_time_ms, 777_000);
    sync_all(&mut log).await;
    let r = log.read(0, 1000, 2).await.unwrap();
    let (b, _) = split_batches(&r.records).unwrap();
    assert!(b[0].is_log_append_time());
    assert_eq!(b[0].max_timestamp(), 777_000);
    b[0].validate(0).unwrap();
}

#[tokio::test]
async fn timestamps_and_retention() {
    let dir = TempDir::new("retention");
    let rt = Runtime::real();
    let mut config = small_config();
    config.set("retention.ms", "10000").unwrap();
    let mut log = PartitionLog::open(rt.clone(), dir.0.clone(), config.clone()).await.unwrap();
    for i in 0..40i64 {
        log.append(batch(&[&format!("value-{i:04}-{}", "p".repeat(40))], 1_000 + i * 100), 50_000).await.unwrap();
    }
    sync_all(&mut log).await;
    assert_eq!(log.offset_for_timestamp(0).await.unwrap(), Some((0, 1_000)));
    assert_eq!(log.offset_for_timestamp(2_050).await.unwrap(), Some((11, 2_100)));
    assert_eq!(log.offset_for_timestamp(1_000_000).await.unwrap(), None);
    assert_eq!(log.offset_for_max_timestamp().await.unwrap(), Some((39, 4_900)));
    let segments_before = log.segments.len();
    // Records with timestamps up to 2_500 are older than retention at now = 12_550.
    let deleted = log.maintain(12_550).await.unwrap();
    assert!(deleted > 0 && deleted < segments_before, "deleted {deleted} of {segments_before}");
    let start = log.log_start_offset();
    assert!(start > 0 && start <= 16, "start {start}");
    assert!(matches!(log.read(0, 100, 40).await, Err(Error::OffsetOutOfRange { .. })));
    assert_eq!(read_all(&log, start).await.len() as i64, 40 - start);
    // The log start offset survives a restart.
    drop(log);
    let mut log = PartitionLog::open(rt.clone(), dir.0.clone(), config.clone()).await.unwrap();
    assert_eq!(log.log_start_offset(), start);
    // Retention by bytes keeps at least retention.bytes.
    let mut by_size = config.clone();
    by_size.set("retention.ms", "-1").unwrap();
    by_size.set("retention.bytes", "2048").unwrap();
    log.set_config(by_size);
    log.maintain(12_550).await.unwrap();
    let size = log.size_bytes();
    assert!(size >= 2048 && size < 2048 + 1024 + 200, "size {size}");
    // Everything past retention: the active segment rolls and the old ones go.
    let mut all_old = config.clone();
    all_old.set("retention.ms", "1").unwrap();
    log.set_config(all_old);
    log.maintain(1_000_000).await.unwrap();
    assert_eq!(log.log_start_offset(), 40);
    assert_eq!(log.log_end_offset(), 40);
    assert!(log.read(40, 100, 40).await.unwrap().records.is_empty());
}

#[tokio::test]
async fn missing_or_bad_indexes_are_rebuilt() {
    let dir = TempDir::new("indexes");
    let rt = Runtime::real();
    let mut log = PartitionLog::open(rt.clone(), dir.0.clone(), small_config()).await.unwrap();
    for i in 0..40 {
        log.append(batch(&[&format!("value-{i}-{}", "q".repeat(30))], 1), 1).await.unwrap();
    }
    log.close().await.unwrap();
    // Break one sealed segment's index and delete another's.
    let mut names: Vec<_> = std::fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    let indexes: Vec<_> = names.iter().filter(|n| n.ends_with(".index")).cloned().collect();
    assert!(indexes.len() >= 3);
    std::fs::write(dir.0.join(&indexes[0]), [0u8; 16]).unwrap();
    std::fs::remove_file(dir.0.join(&indexes[1])).unwrap();
    let log = PartitionLog::open(rt, dir.0.clone(), small_config()).await.unwrap();
    let got = read_all(&log, 0).await;
    assert_eq!(got.len(), 40);
    for (i, (offset, value)) in got.iter().enumerate() {
        assert_eq!(*offset, i as i64);
        assert!(value.starts_with(&format!("value-{i}-")));
    }
}

#[tokio::test]
async fn partition_group_commit_many_appenders() {
    use crate::partition::{Acks, Partition};
    let dir = TempDir::new("groupcommit");
    let p = Partition::open(Runtime::real(), dir.0.clone(), TopicConfig::default()).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let mut offsets = Vec::new();
            for i in 0..25 {
                let info = p.append(batch(&[&format!("t{t}-{i}")], 1), Acks::Durable).await.unwrap();
                // Acknowledged means durable means visible.
                assert!(p.high_watermark() > info.last_offset);
                offsets.push(info.base_offset);
            }
            offsets
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    assert_eq!(all, (0..200).collect::<Vec<i64>>());
    assert_eq!(p.high_watermark(), 200);
    assert_eq!(p.log_end_offset(), 200);
    p.close().await.unwrap();
}

/// A disk that can be told to fail writes (after writing part of the data, as a full disk
/// does) or syncs, over the real one.
pub(crate) mod faulty {
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use bytes::Bytes;

    use crate::runtime::real::StdDisk;
    use crate::runtime::{Disk, DiskFile, IoFuture};

    #[derive(Default)]
    pub struct Faults {
        pub enospc: AtomicBool,
        pub eio_on_sync: AtomicBool,
        /// Every sync first sleeps this long (ms).
        pub sync_delay_ms: std::sync::atomic::AtomicU64,
        /// Every read first sleeps this long (ms).
        pub read_delay_ms: std::sync::atomic::AtomicU64,
        /// (file name suffix, n): the next n reads of such files come back with one of their
        /// first 8 bytes flipped (a batch's base offset, a checkpoint's value), a different one
        /// each time (byte n % 8, n counting down).
        pub corrupt_reads: std::sync::Mutex<Option<(&'static str, u64)>>,
        /// Files written to since their last successful sync (what a power loss could take back).
        pub unsynced: std::sync::Mutex<std::collections::BTreeSet<std::path::PathBuf>>,
    }

    impl Faults {
        pub fn corrupt_next_reads(&self, suffix: &'static str, n: u64) {
            *self.corrupt_reads.lock().unwrap() = Some((suffix, n));
        }
        pub fn corrupt_reads_left(&self) -> u64 {
            self.corrupt_reads.lock().unwrap().map_or(0, |(_, n)| n)
        }
    }

    pub struct FaultyDisk {
        pub inner: StdDisk,
        pub faults: Arc<Faults>,
    }

    struct FaultyFile {
        inner: Arc<dyn DiskFile>,
        faults: Arc<Faults>,
    }

    impl Disk for FaultyDisk {
        fn open(&self, path: &Path, create: bool) -> IoFuture<Arc<dyn DiskFile>> {
            let f = self.inner.open(path, create);
            let faults = self.faults.clone();
            Box::pin(async move { Ok(Arc::new(FaultyFile { inner: f.await?, faults }) as Arc<dyn DiskFile>) })
        }
        fn remove(&self, path: &Path) -> IoFuture<()> { self.inner.remove(path) }
        fn rename(&self, from: &Path, to: &Path) -> IoFuture<()> { self.inner.rename(from, to) }
        fn list(&self, dir: &Path) -> IoFuture<Vec<String>> { self.inner.list(dir) }
        fn create_dir_all(&self, dir: &Path) -> IoFuture<()> { self.inner.create_dir_all(dir) }
        fn remove_dir_all(&self, dir: &Path) -> IoFuture<()> { self.inner.remove_dir_all(dir) }
        fn sync_dir(&self, dir: &Path) -> IoFuture<()> { self.inner.sync_dir(dir) }
        fn exists(&self, path: &Path) -> IoFuture<bool> { self.inner.exists(path) }
    }

    impl DiskFile for FaultyFile {
        fn read_at(&self, pos: u64, len: usize) -> IoFuture<Bytes> {
            let delay = self.faults.read_delay_ms.load(Ordering::SeqCst);
            let corrupt = {
                let mut c = self.faults.corrupt_reads.lock().unwrap();
                match c.as_mut() {
                    Some((suffix, n)) if *n > 0 && self.inner.path().to_string_lossy().ends_with(*suffix) => {
                        let at = *n as usize % 8;
                        *n -= 1;
                        Some(at)
                    }
                    _ => None,
                }
            };
            let read = self.inner.read_at(pos, len);
            Box::pin(async move {
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                let data = read.await?;
                match corrupt {
                    Some(at) if !data.is_empty() => {
                        let mut v = data.to_vec();
                        let i = at % v.len();
                        v[i] ^= 0xff;
                        Ok(Bytes::from(v))
                    }
                    _ => Ok(data),
                }
            })
        }
        fn write_at(&self, pos: u64, data: Bytes) -> IoFuture<()> {
            if self.faults.enospc.load(Ordering::SeqCst) {
                // Part of the data lands, then the disk is full.
                let half = data.slice(..data.len() / 2);
                let w = self.inner.write_at(pos, half);
                return Box::pin(async move {
                    w.await?;
                    Err(std::io::Error::from_raw_os_error(28)) // ENOSPC
                });
            }
            self.faults.unsynced.lock().unwrap().insert(self.inner.path().to_path_buf());
            self.inner.write_at(pos, data)
        }
        fn sync_data(&self) -> IoFuture<()> {
            if self.faults.eio_on_sync.load(Ordering::SeqCst) {
                return Box::pin(async { Err(std::io::Error::from_raw_os_error(5)) }); // EIO
            }
            let delay = self.faults.sync_delay_ms.load(Ordering::SeqCst);
            let sync = self.inner.sync_data();
            let (faults, path) = (self.faults.clone(), self.inner.path().to_path_buf());
            Box::pin(async move {
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                sync.await?;
                faults.unsynced.lock().unwrap().remove(&path);
                Ok(())
            })
        }
        fn set_len(&self, len: u64) -> IoFuture<()> { self.inner.set_len(len) }
        fn len(&self) -> IoFuture<u64> { self.inner.len() }
        fn path(&self) -> &Path { self.inner.path() }
    }
}

pub(crate) fn faulty_runtime() -> (Runtime, std::sync::Arc<faulty::Faults>) {
    let faults = std::sync::Arc::new(faulty::Faults::default());
    let disk = faulty::FaultyDisk { inner: crate::runtime::real::StdDisk::new(), faults: faults.clone() };
    (Runtime { disk: std::sync::Arc::new(disk), clock: Runtime::real().clock }, faults)
}

#[tokio::test]
async fn full_disk_fails_the_produce_keeps_reads_and_recovers() {
    use std::sync::atomic::Ordering;

    use crate::partition::{Acks, Partition};
    use crate::protocol::errors::ErrorCode;
    let dir = TempDir::new("enospc");
    let (rt, faults) = faulty_runtime();
    let p = Partition::open(rt.clone(), dir.0.clone(), TopicConfig::default()).await.unwrap();
    p.append(batch(&["before"], 1), Acks::Durable).await.unwrap();
    faults.enospc.store(true, Ordering::SeqCst);
    let err = p.append(batch(&["while-full"], 1), Acks::Durable).await.unwrap_err();
    assert_eq!(ErrorCode::from(&err), ErrorCode::KAFKA_STORAGE_ERROR, "{err}");
    // Reads keep working; the partial write was cut off.
    let r = p.read(0, 10_000).await.unwrap();
    assert_eq!(split_batches(&r.records).unwrap().0.len(), 1);
    assert_eq!(p.log_end_offset(), 1);
    faults.enospc.store(false, Ordering::SeqCst);
    let info = p.append(batch(&["after"], 1), Acks::Durable).await.unwrap();
    assert_eq!(info.base_offset, 1, "the failed append took no offset");
    p.close().await.unwrap();
    let log = PartitionLog::open(rt, dir.0.clone(), TopicConfig::default()).await.unwrap();
    let values: Vec<String> = read_all(&log, 0).await.into_iter().map(|(_, v)| v).collect();
    assert_eq!(values, vec!["before", "after"]);
}

#[tokio::test]
async fn failed_fsync_fails_the_partition_until_restart() {
    use std::sync::atomic::Ordering;

    use crate::partition::{Acks, Partition};
    use crate::protocol::errors::ErrorCode;
    let dir = TempDir::new("eio");
    let (rt, faults) = faulty_runtime();
    let p = Partition::open(rt.clone(), dir.0.clone(), TopicConfig::default()).await.unwrap();
    p.append(batch(&["durable"], 1), Acks::Durable).await.unwrap();
    faults.eio_on_sync.store(true, Ordering::SeqCst);
    let err = p.append(batch(&["lost?"], 1), Acks::Durable).await.unwrap_err();
    assert_eq!(ErrorCode::from(&err), ErrorCode::KAFKA_STORAGE_ERROR, "{err}");
    assert_eq!(p.high_watermark(), 1, "nothing unsynced became visible");
    // The sync is not retried as if it had worked: even with a healthy disk, appends are refused.
    faults.eio_on_sync.store(false, Ordering::SeqCst);
    let err = p.append(batch(&["later"], 1), Acks::Durable).await.unwrap_err();
    assert!(matches!(err, Error::Failed { .. }), "{err}");
    let r = p.read(0, 10_000).await.unwrap();
    assert_eq!(split_batches(&r.records).unwrap().0.len(), 1, "reads keep working below the high watermark");
    drop(p);
    // A restart recovers: everything on disk is validated again.
    let p = Partition::open(rt, dir.0.clone(), TopicConfig::default()).await.unwrap();
    assert!(p.log_end_offset() >= 1);
    p.append(batch(&["after restart"], 1), Acks::Durable).await.unwrap();
}

pub(super) fn producer_batch(pid: i64, epoch: i16, seq: i32, values: &[&str]) -> Bytes {
    let records: Vec<(Option<Bytes>, Option<Bytes>)> = values.iter().map(|v| (None, Some(Bytes::from(v.to_string())))).collect();
    crate::protocol::batch::build_producer_batch(0, 1000, pid, epoch, seq, &records)
}

#[tokio::test]
async fn idempotent_retries_are_stored_once_across_segments_and_restarts() {
    let dir = TempDir::new("idempotent");
    let rt = Runtime::real();
    let mut log = PartitionLog::open(rt.clone(), dir.0.clone(), small_config()).await.unwrap();
    let mut seq = 0;
    let mut offsets = Vec::new();
    // Enough batches to span several 1 KiB segments.
    for i in 0..30 {
        let values = [format!("p{i}-a"), format!("p{i}-b")];
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let b = producer_batch(42, 0, seq, &refs);
        let first = log.append(b.clone(), 0).await.unwrap();
        let retry = log.append(b, 0).await.unwrap();
        assert_eq!((retry.base_offset, retry.last_offset), (first.base_offset, first.last_offset), "a retry gets the original offsets");
        offsets.push(first.base_offset);
        seq += 2;
    }
    assert_eq!(log.log_end_offset(), 60, "every batch stored once");
    // A gap and an old epoch are refused.
    let gap = log.append(producer_batch(42, 0, seq + 3, &["x"]), 0).await.unwrap_err();
    assert!(matches!(gap, Error::OutOfOrderSequence { expected, got, .. } if expected == seq && got == seq + 3), "{gap}");
    let new_epoch = log.append(producer_batch(42, 1, 0, &["e1"]), 0).await.unwrap();
    assert_eq!(new_epoch.base_offset, 60);
    let old = log.append(producer_batch(42, 0, seq, &["x"]), 0).await.unwrap_err();
    assert!(matches!(old, Error::InvalidProducerEpoch { current: 1, got: 0, .. }), "{old}");
    // Two batches from an idempotent producer in one request are refused.
    let mut two = producer_batch(42, 1, 1, &["y"]).to_vec();
    two.extend_from_slice(&producer_batch(42, 1, 2, &["z"]));
    assert!(matches!(log.append(Bytes::from(two), 0).await.unwrap_err(), Error::IdempotentBatchCount { batches: 2 }));
    sync_all(&mut log).await;
    log.close().await.unwrap();
    // After a restart the last batches are still recognised.
    let mut log = PartitionLog::open(rt.clone(), dir.0.clone(), small_config()).await.unwrap();
    let retry = log.append(producer_batch(42, 1, 0, &["e1"]), 0).await.unwrap();
    assert_eq!(retry.base_offset, 60, "a retry after a restart is still a duplicate");
    assert_eq!(log.log_end_offset(), 61);
    let next = log.append(producer_batch(42, 1, 1, &["e2"]), 0).await.unwrap();
    assert_eq!(next.base_offset, 61);
    let gap = log.append(producer_batch(42, 1, 5, &["x"]), 0).await.unwrap_err();
    assert!(matches!(gap, Error::OutOfOrderSequence { .. }), "{gap}");
}

/// Small syncs wait for the round of syncs in progress (so partitions share journal commits);
/// large ones do not wait behind it.
#[tokio::test]
async fn small_syncs_wait_for_the_running_round_large_ones_do_not() {
    use crate::partition::rounds::SyncRounds;
    use crate::partition::{Acks, Partition};
    use std::sync::Arc;
    let dir = TempDir::new("syncrounds");
    let rounds = Arc::new(SyncRounds::default());
    let p = Partition::open_in(Runtime::real(), dir.0.clone(), TopicConfig::default(), rounds.clone()).await.unwrap();
    // Another partition's sync is running: hold its place in the round.
    let running = rounds.enter(None).await;
    let small = p.append(batch(&["small"], 1), Acks::None).await.unwrap();
    tokio::time::sleep(crate::partition::rounds::ROUND_WAIT_MAX / 2).await;
    assert!(p.high_watermark() <= small.last_offset, "a small sync started inside a running round");
    // ... but not for longer than ROUND_WAIT_MAX: a round that never ends (a hung sync) does
    // not hold this partition's sync.
    tokio::time::timeout(std::time::Duration::from_secs(10), p.wait_durable(small.last_offset + 1)).await.unwrap().unwrap();
    drop(running);

    let running = rounds.enter(None).await;
    let value = "x".repeat(600 * 1024);
    let large = p.append(batch(&[&value], 2), Acks::None).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), p.wait_durable(large.last_offset + 1))
        .await
        .expect("a large sync waited for the running round")
        .unwrap();
    drop(running);
    p.close().await.unwrap();
}

/// A producer id is handed out only from a block whose end is durable: a second caller arriving
/// while the first one's reservation is still being written waits for it (regression: it took an
/// id from the unwritten block; after a crash the id went to another producer too, whose
/// batches were acknowledged as duplicates and never written: simulator seeds 1792, 2328).
#[tokio::test]
async fn producer_ids_come_only_from_a_durable_block() {
    use crate::server::topics::TopicRegistry;
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    let dir = TempDir::new("producer-ids");
    let (rt, faults) = faulty_runtime();
    let registry = std::sync::Arc::new(TopicRegistry::open(rt.clone(), dir.0.clone(), TopicConfig::default()).await.unwrap());
    faults.sync_delay_ms.store(400, Ordering::SeqCst);
    let r = registry.clone();
    let first = tokio::spawn(async move { r.allocate_producer_id().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = registry.clone();
    let second = tokio::spawn(async move { r.allocate_producer_id().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!second.is_finished(), "an id was handed out while its block's end was not yet durable");
    let (a, b) = (first.await.unwrap(), second.await.unwrap());
    assert_ne!(a, b);
    faults.sync_delay_ms.store(0, Ordering::SeqCst);
    drop(registry);
    let reopened = TopicRegistry::open(rt, dir.0.clone(), TopicConfig::default()).await.unwrap();
    let c = reopened.allocate_producer_id().await.unwrap();
    assert!(c > a.max(b), "id {c} after a restart repeats one of {a}, {b}");
}

/// The base offset is outside the CRC: a bit flipped there on disk (or in a bad read) must fail
/// the read, never serve the batch as other offsets (regression: simulator seed 15861).
#[tokio::test]
async fn a_flipped_base_offset_is_never_served() {
    let dir = TempDir::new("flipped-base");
    let rt = Runtime::real();
    let mut log = PartitionLog::open(rt.clone(), dir.0.clone(), TopicConfig::default()).await.unwrap();
    let first = log.append(batch(&["a", "b", "c", "d"], 1), 5).await.unwrap();
    let second = log.append(batch(&["e", "f", "g", "h"], 2), 5).await.unwrap();
    assert_eq!((first.base_offset, second.base_offset), (0, 4));
    sync_all(&mut log).await;
    assert_eq!(read_all(&log, 0).await.len(), 8);
    // Flip a bit of the second batch's base offset (4 -> 0) in the file under the open log.
    let path = dir.0.join("00000000000000000000.log");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2 + 7; // both batches are the same size; byte 7 is the offset's lowest
    assert_eq!(bytes[at], 4);
    bytes[at] ^= 4;
    std::fs::write(&path, &bytes).unwrap();
    for from in [0, 4, 5] {
        let r = log.read(from, 1 << 20, log.durable_offset()).await;
        assert!(matches!(r, Err(Error::Corrupt { .. })), "read from {from} served a batch with a flipped base offset: {r:?}");
    }
}

/// A lookup by timestamp checks what it scans as reads do: a flipped base offset (outside the
/// CRC) or a flipped timestamp (inside it) fails the lookup instead of answering another offset.
#[tokio::test]
async fn a_timestamp_lookup_never_answers_from_a_corrupt_batch() {
    let dir = TempDir::new("flipped-timestamp-lookup");
    let rt = Runtime::real();
    let mut log = PartitionLog::open(rt.clone(), dir.0.clone(), TopicConfig::default()).await.unwrap();
    log.append(batch(&["a", "b", "c", "d"], 1_000), 5).await.unwrap();
    log.append(batch(&["e", "f", "g", "h"], 2_000), 5).await.unwrap();
    sync_all(&mut log).await;
    assert_eq!(log.offset_for_timestamp(1_500).await.unwrap(), Some((4, 2_000)));
    let path = dir.0.join("00000000000000000000.log");
    let clean = std::fs::read(&path).unwrap();
    let half = clean.len() / 2; // both batches are the same size
    // The second batch's base offset, lowest byte: 4 -> 0.
    let mut flipped = clean.clone();
    assert_eq!(flipped[half + 7], 4);
    flipped[half + 7] ^= 4;
    std::fs::write(&path, &flipped).unwrap();
    let r = log.offset_for_timestamp(1_500).await;
    assert!(matches!(r, Err(Error::Corrupt { .. })), "a flipped base offset was answered: {r:?}");
    // The first batch's max timestamp (bytes 35..43 of a batch), a high bit: 1000 -> far later,
    // which would make the first batch the answer for 1500.
    let mut flipped = clean.clone();
    flipped[40] ^= 0x10;
    std::fs::write(&path, &flipped).unwrap();
    let r = log.offset_for_timestamp(1_500).await;
    assert!(matches!(r, Err(Error::Corrupt { .. })), "a flipped max timestamp was answered: {r:?}");
    std::fs::write(&path, &clean).unwrap();
    assert_eq!(log.offset_for_timestamp(1_500).await.unwrap(), Some((4, 2_000)));
}

/// A read (or a lookup by timestamp) waiting for the disk does not hold up appends and syncs
/// of the same partition (it used to hold the partition's log for the whole read: a consumer
/// catching up from disk stalled the producers).
#[tokio::test]
async fn appends_and_syncs_go_on_while_a_read_waits_for_the_disk() {
    use crate::partition::{Acks, Partition};
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    let dir = TempDir::new("read-unlocked");
    let (rt, faults) = faulty_runtime();
    let p = Partition::open(rt, dir.0.clone(), TopicConfig::default()).await.unwrap();
    let first = p.append(batch(&["first"], 1), Acks::Durable).await.unwrap();
    faults.read_delay_ms.store(2_000, Ordering::SeqCst);
    let reader = {
        let p = p.clone();
        tokio::spawn(async move { p.read(0, 1 << 20).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = tokio::time::timeout(Duration::from_millis(1_000), p.append(batch(&["second"], 2), Acks::Durable))
        .await
        .expect("an append (and its sync) waited for a read")
        .unwrap();
    assert!(!reader.is_finished(), "the read is still waiting for the disk");
    assert_eq!(p.high_watermark(), second.last_offset + 1);
    let read = reader.await.unwrap().unwrap();
    assert_eq!(read.first_batch_offset, Some(first.base_offset));
    // A lookup by timestamp reads without holding the log either.
    let lookup = {
        let p = p.clone();
        tokio::spawn(async move { p.offset_for_timestamp(0).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::time::timeout(Duration::from_millis(1_000), p.append(batch(&["third"], 3), Acks::Durable))
        .await
        .expect("an append (and its sync) waited for a lookup by timestamp")
        .unwrap();
    assert_eq!(lookup.await.unwrap().unwrap(), Some((first.base_offset, 1)));
    let (batches, _) = crate::protocol::batch::split_batches(&read.records).unwrap();
    assert_eq!(batches.len(), 1, "the read covers the log as it was when it started");
    faults.read_delay_ms.store(0, Ordering::SeqCst);
    p.close().await.unwrap();
}

/// Kafka's DeleteRecords: the start may move into the middle of a segment and of a batch;
/// segments wholly below it go, offsets below it are out of range, the batch holding it is
/// still served whole, an offset past the durable one is refused and changes nothing, and the
/// new start survives a restart.
#[tokio::test]
async fn delete_records_moves_the_start_inside_a_segment_and_survives_a_restart() {
    let dir = TempDir::new("delete-records");
    let rt = Runtime::real();
    let mut log = PartitionLog::open(rt.clone(), dir.0.clone(), small_config()).await.unwrap();
    for i in 0..30i64 {
        log.append(batch(&[&format!("a-{i:03}-{}", "p".repeat(60)), &format!("b-{i:03}")], 1_000 + i), 5_000).await.unwrap();
    }
    sync_all(&mut log).await;
    assert_eq!(log.durable_offset(), 60);
    let segments_before = log.segments.len();
    assert!(segments_before > 3, "{segments_before} segments");
    // Offset 33 is the second record of the batch at 32, in the middle of some segment.
    let holding = log.segments.iter().position(|s| s.base_offset <= 33 && 33 < s.next_offset).unwrap();
    assert!(log.segments[holding].base_offset < 32, "33 is not the segment's first batch");
    let removed = log.delete_records_before(33).await.unwrap();
    assert_eq!(removed, holding, "every segment wholly below 33 is removed, and no other");
    assert_eq!(log.segments.len(), segments_before - holding);
    assert_eq!(log.log_start_offset(), 33);
    for below in [0, 31, 32] {
        assert!(matches!(log.read(below, 100, 60).await, Err(Error::OffsetOutOfRange { .. })), "read at {below}");
    }
    let got = read_all(&log, 33).await;
    assert_eq!(got.first().map(|(o, _)| *o), Some(33));
    assert_eq!(got.len(), 60 - 33);
    let r = log.read(33, 1, 60).await.unwrap();
    assert_eq!(split_batches(&r.records).unwrap().0[0].base_offset(), 32, "the batch holding the start comes whole");
    // Lookups by timestamp answer no offset below the start.
    assert_eq!(log.offset_for_timestamp(0).await.unwrap(), Some((33, 1_016)));
    // Moving back, or to where it is, changes nothing; past the durable offset is refused.
    assert_eq!(log.delete_records_before(10).await.unwrap(), 0);
    assert_eq!(log.delete_records_before(33).await.unwrap(), 0);
    log.append(batch(&["unsynced"], 2_000), 5_000).await.unwrap();
    assert_eq!(log.log_end_offset(), 61);
    assert!(matches!(log.delete_records_before(61).await, Err(Error::OffsetOutOfRange { .. })));
    assert_eq!(log.log_start_offset(), 33);
    // Up to the durable offset is allowed: everything below it is gone.
    log.delete_records_before(60).await.unwrap();
    assert_eq!(log.log_start_offset(), 60);
    drop(log);
    let log = PartitionLog::open(rt, dir.0.clone(), small_config()).await.unwrap();
    assert_eq!(log.log_start_offset(), 60);
    assert!(matches!(log.read(59, 100, 60).await, Err(Error::OffsetOutOfRange { .. })));
}

/// The log-start checkpoint is what keeps records deleted inside a segment deleted: a bad read
/// of it is read again (simulator seed 2563: one transiently corrupt read moved the start back
/// to the segment's base after a restart, serving deleted records again), and a checkpoint
/// that stays corrupt stops the partition from opening rather than move the start back. A
/// corrupt recovery checkpoint only costs a full scan.
#[tokio::test]
async fn a_corrupt_log_start_checkpoint_is_read_again_and_never_moves_the_start_back() {
    let dir = TempDir::new("start-checkpoint");
    let (rt, faults) = faulty_runtime();
    let mut log = PartitionLog::open(rt.clone(), dir.0.clone(), small_config()).await.unwrap();
    for i in 0..6i64 {
        log.append(batch(&["a", "b"], 1_000 + i), 5_000).await.unwrap();
    }
    sync_all(&mut log).await;
    log.delete_records_before(3).await.unwrap();
    assert_eq!(log.segments.len(), 1, "the start is inside the only segment");
    log.close().await.unwrap();

    // Two bad reads: the third is good.
    faults.corrupt_next_reads(LOG_START_CHECKPOINT, 2);
    let log = PartitionLog::open(rt.clone(), dir.0.clone(), small_config()).await.unwrap();
    assert_eq!(faults.corrupt_reads_left(), 0, "the bad reads were used up");
    assert_eq!(log.log_start_offset(), 3);
    log.close().await.unwrap();

    // A corrupt recovery checkpoint is ignored (recovery scans everything).
    let recovery = dir.0.join(RECOVERY_CHECKPOINT);
    let mut bytes = std::fs::read(&recovery).unwrap();
    bytes[0] ^= 0x01;
    std::fs::write(&recovery, &bytes).unwrap();
    let log = PartitionLog::open(rt.clone(), dir.0.clone(), small_config()).await.unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (3, 12));
    drop(log);

    // A corrupt log-start checkpoint: the partition does not open.
    let start = dir.0.join(LOG_START_CHECKPOINT);
    let mut bytes = std::fs::read(&start).unwrap();
    bytes[7] ^= 0x01;
    std::fs::write(&start, &bytes).unwrap();
    match PartitionLog::open(rt.clone(), dir.0.clone(), small_config()).await {
        Err(Error::Corrupt { path, .. }) => assert_eq!(path, start),
        Err(e) => panic!("expected Corrupt naming the checkpoint, got {e}"),
        Ok(log) => panic!("opened with log start {}", log.log_start_offset()),
    }
    // As the message says: without the file the partition starts from its first segment.
    std::fs::remove_file(&start).unwrap();
    let log = PartitionLog::open(rt, dir.0.clone(), small_config()).await.unwrap();
    assert_eq!(log.log_start_offset(), 0);
}

/// Recovery cuts a segment only where two reads from the same position return the same bad
/// bytes. Two bad reads in a row that differ (simulator seed 24858: a flipped bit in the stored
/// CRC, then one in the body on the re-read) cut nothing; damage that is really on the disk is
/// still cut; reads that never agree fail the open rather than cut synced data.
#[tokio::test]
async fn recovery_cuts_only_damage_two_reads_agree_on() {
    let dir = TempDir::new("scan-rereads");
    let (rt, faults) = faulty_runtime();
    let mut log = PartitionLog::open(rt.clone(), dir.0.clone(), small_config()).await.unwrap();
    for i in 0..6i64 {
        log.append(batch(&[&format!("a{i}"), &format!("b{i}")], 1_000 + i), 5_000).await.unwrap();
    }
    sync_all(&mut log).await;
    let expected = read_all(&log, 0).await;
    assert_eq!(expected.len(), 12);
    drop(log); // no close: the segment is scanned at the next open

    // Two bad reads that differ (bytes 2 and 1 of the first batch's base offset), then good ones.
    faults.corrupt_next_reads(".log", 2);
    let log = PartitionLog::open(rt.clone(), dir.0.clone(), small_config()).await.unwrap();
    assert_eq!(faults.corrupt_reads_left(), 0, "both bad reads were used");
    assert_eq!(log.log_end_offset(), 12, "nothing was cut");
    assert_eq!(read_all(&log, 0).await, expected);
    drop(log);

    // Reads that never agree: the open fails and the file is untouched.
    let seg = dir.0.join(format!("{:020}.log", 0));
    let len = std::fs::metadata(&seg).unwrap().len();
    faults.corrupt_next_reads(".log", 1_000);
    match PartitionLog::open(rt.clone(), dir.0.clone(), small_config()).await {
        Err(Error::Io { path, .. }) => assert_eq!(path, seg),
        Err(e) => panic!("expected an I/O error naming the segment, got {e}"),
        Ok(log) => panic!("opened with log end {}", log.log_end_offset()),
    }
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), len, "nothing was cut");
    faults.corrupt_next_reads(".log", 0);

    // Damage on the disk (a flipped byte in the last batch) is the same on every read: cut.
    let mut bytes = std::fs::read(&seg).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let log = PartitionLog::open(rt, dir.0.clone(), small_config()).await.unwrap();
    assert_eq!(log.log_end_offset(), 10, "the damaged last batch is cut");
    assert_eq!(read_all(&log, 0).await, expected[..10].to_vec());
}

/// Index files carry no checksum: each is read twice at open and must read the same, else the
/// segment is scanned. A bit flipped in one read of a sealed segment's time index could pass
/// the checks (one entry, still "increasing") and give the segment a max timestamp decades
/// away (retention would then never delete it, and ListOffsets' max timestamp would be wrong).
#[tokio::test]
async fn an_index_read_that_does_not_read_the_same_twice_is_rebuilt() {
    let dir = TempDir::new("index-twice");
    let (rt, faults) = faulty_runtime();
    let mut config = small_config();
    // One batch per segment: each sealed segment's time index holds one entry.
    config.set("segment.bytes", "100").unwrap();
    let mut log = PartitionLog::open(rt.clone(), dir.0.clone(), config.clone()).await.unwrap();
    for i in 0..40i64 {
        log.append(batch(&[&format!("value-{i:04}-{}", "p".repeat(40))], 1_000 + i * 100), 50_000).await.unwrap();
    }
    sync_all(&mut log).await;
    let expected: Vec<(i64, i64)> = log.segments.iter().map(|s| (s.base_offset, s.max_timestamp)).collect();
    assert!(expected.len() > 2);
    log.close().await.unwrap();
    let clean = PartitionLog::open(rt.clone(), dir.0.clone(), config.clone()).await.unwrap();
    assert_eq!(clean.segments.iter().map(|s| (s.base_offset, s.max_timestamp)).collect::<Vec<_>>(), expected);
    drop(clean);

    // The first time index read flips a byte of its first entry's timestamp.
    faults.corrupt_next_reads(".timeindex", 1);
    let log = PartitionLog::open(rt, dir.0.clone(), config).await.unwrap();
    assert_eq!(faults.corrupt_reads_left(), 0);
    assert_eq!(log.segments.iter().map(|s| (s.base_offset, s.max_timestamp)).collect::<Vec<_>>(), expected);
    assert_eq!(log.offset_for_max_timestamp().await.unwrap(), Some((39, 4_900)));
}

/// A batch with its offset range and record count rewritten (CRC recomputed so only these
/// fields are wrong), as a hostile client could send.
fn batch_with_counts(last_offset_delta: i32, count: i32) -> Vec<u8> {
    use crate::protocol::batch::{ATTRIBUTES_AT, CRC_AT, LAST_OFFSET_DELTA_AT, RECORDS_COUNT_AT};
    let mut b = batch(&["v"], 1).to_vec();
    b[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4].copy_from_slice(&last_offset_delta.to_be_bytes());
    b[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&b[ATTRIBUTES_AT..]);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

#[tokio::test]
async fn offset_ranges_that_do_not_match_the_count_or_overflow_a_segment_are_rejected() {
    let dir = TempDir::new("offsetspan");
    let rt = Runtime::real();
    let mut log = PartitionLog::open(rt.clone(), dir.0.clone(), TopicConfig::default()).await.unwrap();
    log.append(batch(&["first"], 1), 1).await.unwrap();
    // A batch claiming 2^31 offsets for one record (it once pushed a segment's relative offsets
    // past u32 and panicked the broker, again on every restart).
    let wide = batch_with_counts(i32::MAX, 1);
    let err = log.append(Bytes::from(wide.repeat(3)), 1).await.unwrap_err();
    assert!(matches!(err, Error::Batch(BatchError::BadCount { last_offset_delta: i32::MAX, .. })), "{err}");
    assert_eq!(crate::protocol::errors::ErrorCode::from(&err), crate::protocol::errors::ErrorCode::INVALID_RECORD);
    // Consistent counts, each within the per-batch limit, but together more offsets than one
    // request may take.
    let full = crate::limits::BATCH_RECORDS_MAX;
    let many = batch_with_counts(full - 1, full);
    let n = (crate::limits::REQUEST_OFFSET_SPAN_MAX / i64::from(full)) as usize + 1;
    let err = log.append(Bytes::from(many.repeat(n)), 1).await.unwrap_err();
    assert!(matches!(err, Error::OffsetSpan { .. }), "{err}");
    assert_eq!(log.log_end_offset(), 1);
    // The largest request allowed, several times over: the segment rolls before its relative
    // offsets would leave u32, and the log reopens.
    let allowed = Bytes::from(many.repeat(n - 1));
    for _ in 0..6 {
        log.append(allowed.clone(), 1).await.unwrap();
    }
    let end = log.log_end_offset();
    assert_eq!(end, 1 + 6 * crate::limits::REQUEST_OFFSET_SPAN_MAX);
    assert!(log.segments.len() >= 2, "rolled before 2^32 offsets");
    for s in &log.segments {
        assert!(s.next_offset - s.base_offset <= i64::from(u32::MAX));
    }
    sync_all(&mut log).await;
    drop(log);
    let log = PartitionLog::open(rt, dir.0.clone(), TopicConfig::default()).await.unwrap();
    assert_eq!(log.log_end_offset(), end);
}

#[tokio::test]
async fn recovery_syncs_what_it_scanned_before_calling_it_durable() {
    // A process killed before its fsync leaves the appended bytes in the page cache; reopening
    // reads them back, but a power loss could still take them. They may only count as durable
    // (be served, acknowledge a duplicate retry) once recovery has synced them.
    let dir = TempDir::new("recoverysync");
    let (rt, faults) = faulty_runtime();
    let mut log = PartitionLog::open(rt.clone(), dir.0.clone(), small_config()).await.unwrap();
    for i in 0..20 {
        log.append(batch(&[&format!("v{i}")], 1), 1).await.unwrap();
    }
    assert!(log.segments.len() >= 2, "rolled: the tail spans the active segment only");
    let active = segment::log_path(&dir.0, log.segments.last().unwrap().base_offset);
    assert!(faults.unsynced.lock().unwrap().contains(&active));
    let end = log.log_end_offset();
    drop(log); // killed before the flusher ran
    let log = PartitionLog::open(rt, dir.0.clone(), small_config()).await.unwrap();
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.durable_offset(), end);
    let unsynced = faults.unsynced.lock().unwrap().clone();
    assert!(unsynced.iter().all(|p| p.extension().is_none_or(|e| e != "log")), "segments left unsynced: {unsynced:?}");
}

#[tokio::test]
async fn a_failure_outside_the_flusher_answers_waiting_produces_at_once() {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use crate::partition::{Acks, Partition};
    use crate::protocol::errors::ErrorCode;
    let dir = TempDir::new("failwake");
    let (rt, faults) = faulty_runtime();
    let p = Partition::open(rt, dir.0.clone(), TopicConfig::default()).await.unwrap();
    p.append(batch(&["durable"], 1), Acks::Durable).await.unwrap();
    faults.sync_delay_ms.store(1500, Ordering::SeqCst);
    let first = tokio::spawn({
        let p = p.clone();
        async move { p.append(batch(&["in the running sync"], 1), Acks::Durable).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Appended after the flusher took its sync point: only a later sync could cover it.
    let second = tokio::spawn({
        let p = p.clone();
        async move { p.append(batch(&["after it"], 1), Acks::Durable).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A roll's sync fails: the log is failed, and no later sync will run.
    faults.eio_on_sync.store(true, Ordering::SeqCst);
    p.roll().await.unwrap_err();
    let err = tokio::time::timeout(Duration::from_millis(500), second)
        .await
        .expect("the waiting produce is answered when the log fails, not at its timeout")
        .unwrap()
        .unwrap_err();
    assert_eq!(ErrorCode::from(&err), ErrorCode::KAFKA_STORAGE_ERROR, "{err}");
    // The first one too is answered at once, with the error (its sync may yet succeed, but the
    // partition is failed: the producer retries after a restart).
    let first = tokio::time::timeout(Duration::from_millis(500), first).await.unwrap().unwrap();
    assert!(matches!(first, Err(Error::Failed { .. })), "{first:?}");
}

#[tokio::test]
async fn segments_without_record_timestamps_expire_from_their_last_write() {
    // A producer may send timestamp -1: the segment's max timestamp is then -1, and it used to
    // count as older than any retention.ms (deleted at the first maintain after its roll).
    let dir = TempDir::new("notimestamps");
    let rt = Runtime::real();
    let mut config = small_config();
    config.set("retention.ms", "10000").unwrap();
    let mut log = PartitionLog::open(rt.clone(), dir.0.clone(), config.clone()).await.unwrap();
    for i in 0..40 {
        log.append(batch(&[&format!("value-{i:04}-{}", "p".repeat(40))], -1), 50_000).await.unwrap();
    }
    sync_all(&mut log).await;
    assert!(log.segments.len() > 2);
    assert_eq!(log.maintain(59_000).await.unwrap(), 0, "within retention of their last write");
    assert_eq!(log.log_start_offset(), 0);
    // After a restart the open stands in for the last write: kept for retention.ms from it.
    drop(log);
    let mut log = PartitionLog::open(rt.clone(), dir.0.clone(), config).await.unwrap();
    let opened = rt.clock.wall_ms();
    assert_eq!(log.maintain(opened + 5_000).await.unwrap(), 0);
    assert_eq!(read_all(&log, 0).await.len(), 40);
    let deleted = log.maintain(opened + 20_000).await.unwrap();
    assert!(deleted > 2, "deleted {deleted}");
    assert_eq!(log.log_start_offset(), 40, "everything past retention, the active segment rolled first");
}

#[tokio::test]
async fn a_closed_partition_answers_unknown_partition_not_a_storage_error() {
    // A request holding a partition whose topic is deleted meanwhile (the delete closes it).
    use crate::partition::{Acks, Partition};
    use crate::protocol::errors::ErrorCode;
    let dir = TempDir::new("closed");
    let p = Partition::open(Runtime::real(), dir.0.clone(), TopicConfig::default()).await.unwrap();
    p.append(batch(&["before"], 1), Acks::Durable).await.unwrap();
    p.close().await.unwrap();
    let err = p.append(batch(&["after"], 1), Acks::Durable).await.unwrap_err();
    assert_eq!(ErrorCode::from(&err), ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, "{err}");
    let err = p.read(0, 1000).await.unwrap_err();
    assert_eq!(ErrorCode::from(&err), ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, "{err}");
}

#[tokio::test]
async fn a_tail_cut_below_the_deleted_records_start_restarts_the_log_at_its_start() {
    // DeleteRecords moved the start to 8; then damage cuts the active segment's tail back to
    // offset 5. Appending at 5 would give records offsets below the start, and they would be
    // lost once the log passed 8 and the start applied again. As Kafka, the log starts afresh
    // at 8.
    let dir = TempDir::new("cut-below-start");
    let rt = Runtime::real();
    let mut log = PartitionLog::open(rt.clone(), dir.0.clone(), TopicConfig::default()).await.unwrap();
    let mut ends = Vec::new();
    for i in 0..10 {
        log.append(batch(&[&format!("v{i}")], 1), 1).await.unwrap();
        ends.push(log.active().size_bytes);
    }
    sync_all(&mut log).await;
    log.delete_records_before(8).await.unwrap();
    assert_eq!(log.segments.len(), 1);
    drop(log);
    let seg = segment::log_path(&dir.0, 0);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.truncate(ends[4] as usize + 7); // offsets 0..=4 whole, then a torn batch
    std::fs::write(&seg, &bytes).unwrap();
    let mut log = PartitionLog::open(rt.clone(), dir.0.clone(), TopicConfig::default()).await.unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (8, 8));
    assert_eq!(log.append(batch(&["after"], 1), 1).await.unwrap().base_offset, 8);
    sync_all(&mut log).await;
    drop(log);
    let log = PartitionLog::open(rt, dir.0.clone(), TopicConfig::default()).await.unwrap();
    assert_eq!(read_all(&log, 8).await, vec![(8, "after".to_string())]);
}

#[tokio::test]
async fn a_timestamp_lookup_answers_the_record_inside_an_uncompressed_batch() {
    // Found by a black-box audit: kafka-python's offsets_for_times answered a batch's first
    // offset and max timestamp for every target inside the batch.
    let dir = TempDir::new("ts-record");
    let mut log = PartitionLog::open(Runtime::real(), dir.0.clone(), TopicConfig::default()).await.unwrap();
    log.append(batch(&["single"], 500), 1).await.unwrap();
    log.append(crate::protocol::batch::timestamped_batch(0, &[1_000, 2_000, 3_000, 4_000, 5_000]), 1).await.unwrap();
    sync_all(&mut log).await;
    // The batch holds offsets 1..=5 with timestamps 1000..=5000.
    assert_eq!(log.offset_for_timestamp(0).await.unwrap(), Some((0, 500)));
    assert_eq!(log.offset_for_timestamp(600).await.unwrap(), Some((1, 1_000)));
    assert_eq!(log.offset_for_timestamp(3_500).await.unwrap(), Some((4, 4_000)));
    assert_eq!(log.offset_for_timestamp(5_000).await.unwrap(), Some((5, 5_000)));
    assert_eq!(log.offset_for_timestamp(5_001).await.unwrap(), None);
    log.delete_records_before(3).await.unwrap();
    assert_eq!(log.offset_for_timestamp(0).await.unwrap(), Some((3, 3_000)), "never below the log start");
}

/// `batch` rewritten to claim gzip (CRC recomputed): the broker never decompresses, so its
/// records stay readable to the test but opaque to the log.
fn claiming_gzip(batch: Bytes) -> Bytes {
    use crate::protocol::batch::{ATTRIBUTES_AT, CRC_AT};
    let mut b = batch.to_vec();
    b[ATTRIBUTES_AT + 1] |= 1; // codec bits 0..3 of the attributes' low byte: 1 = gzip
    let crc = crc32c::crc32c(&b[ATTRIBUTES_AT..]);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

#[tokio::test]
async fn a_max_timestamp_lookup_answers_the_record_holding_it() {
    // Issue 21, found with librdkafka's tests: ListOffsets MAX_TIMESTAMP (KIP-734) answered
    // the last offset of the batch holding the max timestamp, not the record carrying it.
    let dir = TempDir::new("max-ts-record");
    let rt = Runtime::real();
    let mut log = PartitionLog::open(rt.clone(), dir.0.clone(), TopicConfig::default()).await.unwrap();
    log.append(batch(&["single"], 500), 1).await.unwrap();
    log.append(crate::protocol::batch::timestamped_batch(0, &[1_000, 9_000, 3_000]), 1).await.unwrap(); // 1..=3
    log.append(crate::protocol::batch::timestamped_batch(0, &[9_000, 2_000]), 1).await.unwrap(); // 4..=5
    sync_all(&mut log).await;
    assert_eq!(log.offset_for_max_timestamp().await.unwrap(), Some((2, 9_000)), "the first record with the max");
    // The same answer from the index files a clean close wrote, and from a recovery scan.
    log.close().await.unwrap();
    let log = PartitionLog::open(rt.clone(), dir.0.clone(), TopicConfig::default()).await.unwrap();
    assert_eq!(log.offset_for_max_timestamp().await.unwrap(), Some((2, 9_000)), "after a clean reopen");
    drop(log);
    for f in std::fs::read_dir(&dir.0).unwrap() {
        let path = f.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".index") || name.ends_with(".timeindex") || name == "recovery-checkpoint" {
            std::fs::remove_file(path).unwrap();
        }
    }
    let mut log = PartitionLog::open(rt.clone(), dir.0.clone(), TopicConfig::default()).await.unwrap();
    assert_eq!(log.offset_for_max_timestamp().await.unwrap(), Some((2, 9_000)), "after a recovery scan");
    // Never below the log start: the next record with that timestamp.
    log.delete_records_before(3).await.unwrap();
    assert_eq!(log.offset_for_max_timestamp().await.unwrap(), Some((4, 9_000)));
    // A compressed CreateTime batch answers at batch granularity: its first offset.
    log.append(claiming_gzip(crate::protocol::batch::timestamped_batch(0, &[1_000, 20_000, 3_000])), 1).await.unwrap(); // 6..=8
    sync_all(&mut log).await;
    assert_eq!(log.offset_for_max_timestamp().await.unwrap(), Some((6, 20_000)));

    // LogAppendTime: every record has the batch's time, so its first record carries the max.
    let dir = TempDir::new("max-ts-append-time");
    let mut config = TopicConfig::default();
    config.set("message.timestamp.type", "LogAppendTime").unwrap();
    let mut log = PartitionLog::open(rt, dir.0.clone(), config).await.unwrap();
    log.append(crate::protocol::batch::timestamped_batch(0, &[1_000, 5_000, 3_000]), 777_000).await.unwrap();
    sync_all(&mut log).await;
    assert_eq!(log.offset_for_max_timestamp().await.unwrap(), Some((0, 777_000)));
}
