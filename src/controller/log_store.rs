//! The metadata quorum's Raft log on a [`Disk`]: the storage side of the Raft shell.
//!
//! Files in the quorum directory:
//! - `quorum.state`: the hard state (term, vote), replaced atomically (`write_atomic`);
//! - `quorum.snapshot`: the log start (snapshot meta, its data, and the generation of the log
//!   file that continues it), replaced atomically;
//! - `quorum-{generation}.log`: frames `[len u32 LE][crc32c u32 LE][postcard (index, entry)]`.
//!
//! Appends are written at the end and synced before they are reported durable; a truncation
//! cuts the file first (`set_len`) and is synced with the appends after it. Restoring a
//! snapshot starts a new, empty log file of the next generation *before* the snapshot naming it
//! is written, so a crash leaves either the old snapshot and old log or the new snapshot and
//! the empty new log, never a snapshot followed by frames of another history. Recovery reads
//! frames up to the first torn or corrupt one, skips those the snapshot covers, and cuts the
//! file there. Every error is returned: the caller stops the node (fail-stop), it never goes on
//! with a log it cannot trust.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::raft::{Entry, HardState, LogIndex, LogState, LogWrite, Membership, SnapshotMeta};
use crate::runtime::disk::{read_whole, write_atomic, Disk, DiskFile};

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
    generation: u64,
}

/// A checksummed postcard value: [crc32c u32 LE][postcard].
fn encode_checked<T: Serialize>(value: &T) -> Bytes {
    let body = postcard::to_allocvec(value).expect("postcard encodes our own types");
    let mut out = BytesMut::with_capacity(body.len() + 4);
    out.put_u32_le(crc32c::crc32c(&body));
    out.put_slice(&body);
    out.freeze()
}

fn decode_checked<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &Path) -> io::Result<T> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {why}", what.display()));
    if bytes.len() < 4 {
        return Err(bad("too short"));
    }
    let crc = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[4..]) != crc {
        return Err(bad("checksum mismatch"));
    }
    postcard::from_bytes(&bytes[4..]).map_err(|e| bad(&e.to_string()))
}

/// The frames of `entries` (the first at `first_index`) and each one's position, the first
/// frame going at file position `at`.
fn encode_frames(first_index: LogIndex, entries: &[Entry], at: u64) -> (BytesMut, Vec<u64>) {
    let mut buf = BytesMut::new();
    let mut positions = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let index = LogIndex(first_index.0 + i as u64);
        let body = postcard::to_allocvec(&(index, entry)).expect("postcard encodes our own types");
        positions.push(at + buf.len() as u64);
        buf.put_u32_le(body.len() as u32);
        buf.put_u32_le(crc32c::crc32c(&body));
        buf.put_slice(&body);
    }
    (buf, positions)
}

pub struct LogStore {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    generation: u64,
    file: Arc<dyn DiskFile>,
    hard: HardState,
    snapshot: SnapshotMeta,
    snapshot_data: Bytes,
    /// The entries after the snapshot, and the file position of each one's frame.
    entries: Vec<Entry>,
    positions: Vec<u64>,
    /// The end of the last good frame: where the next append goes.
    end: u64,
}

impl LogStore {
    fn state_path(&self) -> PathBuf {
        self.dir.join("quorum.state")
    }
    fn snapshot_path(dir: &Path) -> PathBuf {
        dir.join("quorum.snapshot")
    }
    fn log_path(dir: &Path, generation: u64) -> PathBuf {
        dir.join(format!("quorum-{generation:020}.log"))
    }

    /// Open (or create) the store in `dir`. A new store starts with `initial` as its
    /// configuration.
    pub async fn open(disk: Arc<dyn Disk>, dir: PathBuf, initial: Membership) -> io::Result<LogStore> {
        disk.create_dir_all(&dir).await?;
        let state_path = dir.join("quorum.state");
        let hard = match read_whole(disk.as_ref(), &state_path).await? {
            Some(b) => decode_checked(&b, &state_path)?,
            None => HardState::default(),
        };
        let snapshot_path = Self::snapshot_path(&dir);
        let (snapshot, snapshot_data, generation) = match read_whole(disk.as_ref(), &snapshot_path).await? {
            Some(b) => {
                let s: StoredSnapshot = decode_checked(&b, &snapshot_path)?;
                (s.meta, Bytes::from(s.data), s.generation)
            }
            None => (SnapshotMeta { membership: initial, ..SnapshotMeta::default() }, Bytes::new(), 0),
        };
        let log_path = Self::log_path(&dir, generation);
        let file = disk.open(&log_path, true).await?;
        let len = file.len().await?;
        let bytes = file.read_at(0, usize::try_from(len).map_err(|_| io::Error::other("log too large"))?).await?;
        let (mut entries, mut positions) = (Vec::new(), Vec::new());
        let mut pos = 0usize;
        while pos + 8 <= bytes.len() {
            let n = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().expect("4 bytes"));
            let Some(body) = bytes.get(pos + 8..pos + 8 + n) else { break };
            if crc32c::crc32c(body) != crc {
                break;
            }
            let Ok((index, entry)) = postcard::from_bytes::<(LogIndex, Entry)>(body) else { break };
            if index > snapshot.index {
                let expected = LogIndex(snapshot.index.0 + entries.len() as u64 + 1);
                let last_term = entries.last().map(|e: &Entry| e.term).unwrap_or(snapshot.term);
                if index != expected || entry.term < last_term {
                    break;
                }
                positions.push(pos as u64);
                entries.push(entry);
            }
            pos += 8 + n;
        }
        if (pos as u64) < len {
            tracing::warn!(path = %log_path.display(), at = pos, len, "quorum log: cutting a torn or corrupt tail");
            file.set_len(pos as u64).await?;
            file.sync_data().await?;
        }
        Ok(LogStore { disk, dir, generation, file, hard, snapshot, snapshot_data, entries, positions, end: pos as u64 })
    }

    pub fn hard_state(&self) -> HardState {
        self.hard
    }
    /// What the Raft core needs to start over this log (all of it is durable).
    pub fn log_state(&self) -> LogState {
        LogState::from_entries(self.snapshot.clone(), &self.entries)
    }
    pub fn snapshot(&self) -> (&SnapshotMeta, &Bytes) {
        (&self.snapshot, &self.snapshot_data)
    }
    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.snapshot.index.0 + self.entries.len() as u64)
    }
    /// The entry at `index`, if the log (past its start) holds it.
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        if index <= self.snapshot.index {
            return None;
        }
        self.entries.get((index.0 - self.snapshot.index.0 - 1) as usize)
    }

    pub async fn save_hard_state(&mut self, hard: HardState) -> io::Result<()> {
        write_atomic(self.disk.as_ref(), &self.state_path(), encode_checked(&hard)).await?;
        self.hard = hard;
        Ok(())
    }

    /// Execute one of the core's writes, durably.
    pub async fn write(&mut self, write: &LogWrite) -> io::Result<()> {
        match write {
            LogWrite::Append { truncate_from, first_index, entries, .. } => {
                if let Some(from) = truncate_from {
                    assert!(*from > self.snapshot.index, "truncate below the log start");
                    let keep = (from.0 - self.snapshot.index.0 - 1) as usize;
                    if keep < self.entries.len() {
                        self.end = self.positions[keep];
                        self.entries.truncate(keep);
                        self.positions.truncate(keep);
                        self.file.set_len(self.end).await?;
                    }
                }
                assert_eq!(*first_index, self.last_index().next(), "append continues the log");
                let (buf, positions) = encode_frames(*first_index, entries, self.end);
                self.positions.extend(positions);
                self.entries.extend(entries.iter().cloned());
                let len = buf.len() as u64;
                if len > 0 {
                    self.file.write_at(self.end, buf.freeze()).await?;
                    self.end += len;
                }
                self.file.sync_data().await?;
            }
            LogWrite::Restore { meta, data, .. } => {
                // The new, empty log file first; then the snapshot that names it.
                let generation = self.generation + 1;
                let path = Self::log_path(&self.dir, generation);
                let file = self.disk.open(&path, true).await?;
                file.set_len(0).await?;
                file.sync_data().await?;
                self.disk.sync_dir(&self.dir).await?;
                let stored = StoredSnapshot { meta: meta.clone(), data: data.to_vec(), generation };
                write_atomic(self.disk.as_ref(), &Self::snapshot_path(&self.dir), encode_checked(&stored)).await?;
                let old = Self::log_path(&self.dir, self.generation);
                self.generation = generation;
                self.file = file;
                self.snapshot = meta.clone();
                self.snapshot_data = data.clone();
                self.entries.clear();
                self.positions.clear();
                self.end = 0;
                // The old file is garbage now; failing to remove it loses nothing.
                let _ = self.disk.remove(&old).await;
            }
        }
        Ok(())
    }

    /// A snapshot of the state up to `index` (committed and durable here): the log now starts
    /// after it, and its file holds only what follows. As a restore: the entries after `index`
    /// are written to a new log file of the next generation and synced *before* the snapshot
    /// naming that generation is written, so a crash leaves the old snapshot with the old log or
    /// the new snapshot with the new one; the old file is removed last.
    pub async fn compact(&mut self, meta: SnapshotMeta, data: Bytes) -> io::Result<()> {
        if meta.index <= self.snapshot.index {
            return Ok(());
        }
        assert!(meta.index <= self.last_index(), "snapshot past the log end");
        let drop = (meta.index.0 - self.snapshot.index.0) as usize;
        let kept: Vec<Entry> = self.entries[drop..].to_vec();
        let generation = self.generation + 1;
        let path = Self::log_path(&self.dir, generation);
        let file = self.disk.open(&path, true).await?;
        file.set_len(0).await?;
        let (buf, positions) = encode_frames(meta.index.next(), &kept, 0);
        let end = buf.len() as u64;
        if end > 0 {
            file.write_at(0, buf.freeze()).await?;
        }
        file.sync_data().await?;
        self.disk.sync_dir(&self.dir).await?;
        let stored = StoredSnapshot { meta: meta.clone(), data: data.to_vec(), generation };
        write_atomic(self.disk.as_ref(), &Self::snapshot_path(&self.dir), encode_checked(&stored)).await?;
        let old = Self::log_path(&self.dir, self.generation);
        self.generation = generation;
        self.file = file;
        self.entries = kept;
        self.positions = positions;
        self.end = end;
        self.snapshot = meta;
        self.snapshot_data = data;
        // The old file is garbage now; failing to remove it loses nothing.
        let _ = self.disk.remove(&old).await;
        Ok(())
    }
}
