//! One segment: `{base_offset:020}.log` plus its sparse offset and time indexes.
//!
//! The indexes live in memory. They are written to `.index` / `.timeindex` when the segment is
//! sealed (rolled) or the log is closed, and rebuilt by scanning the `.log` file whenever they
//! are missing or fail their sanity checks, so a stale index can never misdirect a read.
//!
//! Index file formats (Kafka's): `.index` entries are (relative offset u32 BE, position u32 BE);
//! `.timeindex` entries are (timestamp i64 BE, relative offset u32 BE). A time index entry
//! (ts, o) says: the largest timestamp among records up to offset `o` is `ts`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::{Error, Result};
use crate::protocol::batch::{split_valid_prefix, BatchView};
use crate::runtime::{DiskFile, Runtime};

pub const OFFSET_INDEX_ENTRY_BYTES: usize = 8;
pub const TIME_INDEX_ENTRY_BYTES: usize = 12;

pub fn log_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.log"))
}
pub fn index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.index"))
}
pub fn time_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.timeindex"))
}

pub struct Segment {
    pub base_offset: i64,
    pub file: Arc<dyn DiskFile>,
    /// Bytes of whole batches in the file.
    pub size_bytes: u64,
    /// The offset after the last batch.
    pub next_offset: i64,
    /// (offset relative to base, position): the first batch at or after every
    /// `index_interval_bytes` of data.
    pub offset_index: Vec<(u32, u32)>,
    /// (max timestamp so far, absolute offset of that batch's last record), timestamps increasing.
    pub time_index: Vec<(i64, i64)>,
    pub bytes_since_index_entry: u64,
    /// Largest batch max_timestamp in the segment (-1 if none).
    pub max_timestamp: i64,
    /// Last offset of the first batch holding `max_timestamp` (Kafka's "shallow" offset of the
    /// max timestamp, also what the time index holds): it says which batch, not which record.
    /// ListOffsets MAX_TIMESTAMP reads that batch's records for the record (`PartitionLog::
    /// offset_for_max_timestamp`), so appends, loaded index files and a recovery scan, which
    /// all set this the same way, give the same answer.
    pub max_timestamp_offset: i64,
    /// Wall time of the first append to this segment, for `segment.ms`.
    pub first_append_wall_ms: Option<i64>,
    /// Wall-clock time of the last append to this segment, or of the open that loaded it.
    pub last_write_wall_ms: Option<i64>,
}

impl Segment {
    pub fn new(base_offset: i64, file: Arc<dyn DiskFile>) -> Segment {
        Segment {
            base_offset,
            file,
            size_bytes: 0,
            next_offset: base_offset,
            offset_index: Vec::new(),
            time_index: Vec::new(),
            bytes_since_index_entry: 0,
            max_timestamp: -1,
            max_timestamp_offset: -1,
            first_append_wall_ms: None,
            last_write_wall_ms: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }

    /// The time `retention.ms` counts from: the newest record timestamp or, when no record
    /// carries one (a producer may send -1), when this broker last wrote or opened the segment.
    /// Kafka falls back to the file's modification time; an open stands in for it here (it
    /// can only make the segment live longer, never shorter).
    pub fn retention_time_ms(&self) -> Option<i64> {
        if self.max_timestamp >= 0 {
            Some(self.max_timestamp)
        } else {
            self.last_write_wall_ms
        }
    }

    /// Account for a batch just written at `position`. Keeps the in-memory indexes.
    pub fn note_batch(&mut self, batch: &BatchView<'_>, position: u64, index_interval_bytes: u64) {
        assert_eq!(batch.base_offset(), self.next_offset, "batches in a segment are dense");
        assert_eq!(position, self.size_bytes, "batches are appended at the end");
        let relative = u32::try_from(batch.base_offset() - self.base_offset).expect("segment spans < 2^32 offsets");
        let pos = u32::try_from(position).expect("segment size < 4 GiB");
        if self.bytes_since_index_entry >= index_interval_bytes && position > 0 {
            self.offset_index.push((relative, pos));
            self.bytes_since_index_entry = 0;
        }
        let size = batch.size_bytes() as u64;
        self.bytes_since_index_entry += size;
        self.size_bytes += size;
        self.next_offset = batch.next_offset();
        let ts = batch.max_timestamp();
        if ts > self.max_timestamp {
            self.max_timestamp = ts;
            self.max_timestamp_offset = batch.last_offset();
            self.time_index.push((ts, batch.last_offset()));
        }
    }

    /// The last index entry at or before `offset`: (position, base offset of the batch there).
    pub fn lookup(&self, offset: i64) -> (u64, i64) {
        let relative = offset - self.base_offset;
        let i = self.offset_index.partition_point(|(rel, _)| i64::from(*rel) <= relative);
        if i == 0 {
            (0, self.base_offset)
        } else {
            let (rel, pos) = self.offset_index[i - 1];
            (u64::from(pos), self.base_offset + i64::from(rel))
        }
    }

    /// Where to start scanning for the first batch with max_timestamp >= `ts`: (position, base
    /// offset of the batch there), as `lookup`.
    pub fn lookup_time_position(&self, ts: i64) -> (u64, i64) {
        // Entries with timestamp < ts cover offsets that cannot match; start after the last one.
        let i = self.time_index.partition_point(|(t, _)| *t < ts);
        if i == 0 {
            return (0, self.base_offset);
        }
        self.lookup(self.time_index[i - 1].1 + 1)
    }

    pub fn offset_index_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.offset_index.len() * OFFSET_INDEX_ENTRY_BYTES);
        for (rel, pos) in &self.offset_index {
            b.put_u32(*rel);
            b.put_u32(*pos);
        }
        b.freeze()
    }

    pub fn time_index_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.time_index.len() * TIME_INDEX_ENTRY_BYTES);
        for (ts, offset) in &self.time_index {
            b.put_i64(*ts);
            b.put_u32(u32::try_from(offset - self.base_offset).expect("segment spans < 2^32 offsets"));
        }
        b.freeze()
    }

    /// Write both index files and sync them (they are rebuilt if this is interrupted).
    pub async fn write_indexes(&self, rt: &Runtime, dir: &Path) -> Result<()> {
        for (path, bytes) in [
            (index_path(dir, self.base_offset), self.offset_index_bytes()),
            (time_index_path(dir, self.base_offset), self.time_index_bytes()),
        ] {
            let io = |source| Error::Io { path: path.clone(), source };
            let f = rt.disk.open(&path, true).await.map_err(io)?;
            f.set_len(0).await.map_err(io)?;
            f.write_at(0, bytes).await.map_err(io)?;
            f.sync_data().await.map_err(io)?;
        }
        Ok(())
    }

    /// Load index files for a sealed segment whose extent is known, checking that they agree
    /// with it. Returns false (leaving the indexes empty) if anything is off. The files carry no
    /// checksum, so each is read twice and must read the same: a bit flipped in one read could
    /// pass the checks (a time index entry still increasing but smaller, making the segment look
    /// old to retention).
    pub async fn load_indexes(&mut self, rt: &Runtime, dir: &Path) -> bool {
        async fn read_twice(rt: &Runtime, path: &Path) -> Option<Bytes> {
            let first = crate::runtime::disk::read_whole(rt.disk.as_ref(), path).await.ok()??;
            let second = crate::runtime::disk::read_whole(rt.disk.as_ref(), path).await.ok()??;
            (first == second).then_some(first)
        }
        let offsets = read_twice(rt, &index_path(dir, self.base_offset)).await;
        let times = read_twice(rt, &time_index_path(dir, self.base_offset)).await;
        let (Some(offsets), Some(times)) = (offsets, times) else { return false };
        if offsets.len() % OFFSET_INDEX_ENTRY_BYTES != 0 || times.len() % TIME_INDEX_ENTRY_BYTES != 0 {
            return false;
        }
        let mut offset_index = Vec::with_capacity(offsets.len() / OFFSET_INDEX_ENTRY_BYTES);
        for c in offsets.chunks_exact(OFFSET_INDEX_ENTRY_BYTES) {
            let rel = u32::from_be_bytes(c[0..4].try_into().expect("4 bytes"));
            let pos = u32::from_be_bytes(c[4..8].try_into().expect("4 bytes"));
            let increasing = offset_index.last().is_none_or(|(r, p)| rel > *r && pos > *p);
            let inside = i64::from(rel) < self.next_offset - self.base_offset && u64::from(pos) < self.size_bytes;
            if !increasing || !inside || pos == 0 {
                return false;
            }
            offset_index.push((rel, pos));
        }
        let mut time_index = Vec::with_capacity(times.len() / TIME_INDEX_ENTRY_BYTES);
        for c in times.chunks_exact(TIME_INDEX_ENTRY_BYTES) {
            let ts = i64::from_be_bytes(c[0..8].try_into().expect("8 bytes"));
            let rel = u32::from_be_bytes(c[8..12].try_into().expect("4 bytes"));
            let offset = self.base_offset + i64::from(rel);
            let increasing = time_index.last().is_none_or(|(t, o)| ts > *t && offset > *o);
            if !increasing || offset >= self.next_offset {
                return false;
            }
            time_index.push((ts, offset));
        }
        if let Some((ts, offset)) = time_index.last() {
            self.max_timestamp = *ts;
            self.max_timestamp_offset = *offset;
        }
        self.offset_index = offset_index;
        self.time_index = time_index;
        true
    }
}

/// Reads of one position a scan makes before it gives up on a disk whose reads keep returning
/// different bytes (an I/O error: nothing is cut).
const SCAN_READS_PER_POSITION_MAX: u32 = 8;

/// Validate every batch of a segment file from the start and rebuild the segment's state.
/// Stops at the first torn, corrupt or out-of-sequence batch and returns the valid length, so
/// the caller can cut the tail. Reads in bounded chunks. A problem is believed only when two
/// reads from its position return the same bytes: a transient read error must not cut synced
/// data, and two bad reads in a row are not enough (simulator seed 24858: a flipped bit in the
/// stored CRC, then one in the batch body on the re-read, and recovery cut acknowledged
/// batches).
pub async fn scan(
    rt: &Runtime,
    base_offset: i64,
    file: Arc<dyn DiskFile>,
    index_interval_bytes: u64,
) -> Result<(Segment, Option<String>)> {
    const CHUNK_BYTES: usize = 1 << 20;
    let _ = rt;
    let path = file.path().to_path_buf();
    let io = |source| Error::Io { path: path.clone(), source };
    let len = file.len().await.map_err(io)?;
    let mut seg = Segment::new(base_offset, file.clone());
    let mut pos = 0u64;
    // The last problem's position and the bytes read from it, and how many reads saw a
    // problem there.
    let mut suspect: Option<(u64, Bytes)> = None;
    let mut reads_here = 0u32;
    let problem = loop {
        if pos >= len {
            break None;
        }
        let want = (len - pos).min(CHUNK_BYTES as u64) as usize;
        let mut buf = file.read_at(pos, want).await.map_err(io)?;
        let (mut batches, _, mut stop) = split_valid_prefix(&buf);
        let mut stop_message = stop.as_ref().map(|e| e.to_string());
        if batches.is_empty() && stop.is_none() {
            // Either one batch larger than the chunk, or a torn tail.
            let total = if buf.len() >= crate::protocol::batch::LOG_OVERHEAD_BYTES {
                crate::protocol::batch::LOG_OVERHEAD_BYTES as u64 + u64::from(u32::from_be_bytes(buf[8..12].try_into().expect("4 bytes")))
            } else {
                u64::MAX
            };
            if pos.saturating_add(total) <= len && total as usize > buf.len() {
                buf = file.read_at(pos, total as usize).await.map_err(io)?;
                (batches, _, stop) = split_valid_prefix(&buf);
                stop_message = stop.as_ref().map(|e| e.to_string());
            }
            if batches.is_empty() && stop_message.is_none() {
                stop_message = Some(format!("torn batch ({} bytes left)", len - pos));
            }
        }
        let before = pos;
        for b in &batches {
            if let Err(p) = check(b, &seg, pos) {
                stop_message = Some(p);
                break;
            }
            seg.note_batch(b, pos, index_interval_bytes);
            pos += b.size_bytes() as u64;
        }
        if let Some(message) = stop_message {
            let seen = buf.slice(((pos - before) as usize).min(buf.len())..);
            match &suspect {
                Some((at, bytes)) if *at == pos && same_prefix(bytes, &seen) => {
                    break Some(format!("at position {pos}: {message}"));
                }
                Some((at, _)) if *at == pos => {
                    reads_here += 1;
                    if reads_here >= SCAN_READS_PER_POSITION_MAX {
                        return Err(io(std::io::Error::other(format!(
                            "{reads_here} reads at position {pos} returned different bytes each time; not cutting anything"
                        ))));
                    }
                }
                _ => reads_here = 1,
            }
            suspect = Some((pos, seen));
            continue; // read again from `pos` before believing it
        }
        if pos == before {
            break Some(format!("at position {pos}: no progress"));
        }
    };
    Ok((seg, problem))
}

/// Whether two reads from one position agree on the bytes both hold.
fn same_prefix(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// A stored batch must be valid and continue the segment's offsets exactly.
fn check(b: &BatchView<'_>, seg: &Segment, pos: u64) -> std::result::Result<(), String> {
    #[cfg(feature = "planted-bugs")]
    let skip_crc = crate::runtime::planted("skip-recovery-crc");
    #[cfg(not(feature = "planted-bugs"))]
    let skip_crc = false;
    if !skip_crc {
        b.validate(pos as usize).map_err(|e| e.to_string())?;
    }
    if b.base_offset() != seg.next_offset {
        return Err(format!("batch base offset {} where {} was expected", b.base_offset(), seg.next_offset));
    }
    // The indexes hold offsets and positions relative to the segment as u32.
    if b.next_offset() - seg.base_offset > i64::from(u32::MAX) {
        return Err(format!("batch ends at offset {}, more than 2^32 past the segment base {}", b.next_offset(), seg.base_offset));
    }
    if pos + b.size_bytes() as u64 > u64::from(u32::MAX) {
        return Err(format!("batch ends at byte {}, past the 4 GiB a segment may hold", pos + b.size_bytes() as u64));
    }
    Ok(())
}
