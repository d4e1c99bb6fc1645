//! SimDisk: an in-memory `Disk` per node, owned by the simulation so it outlives node crashes.
//!
//! Fault model (each part switched and rated per seed):
//! - Written bytes are volatile until `sync_data` on that file. `crash()` (called when the
//!   harness kills the node) keeps the durable image and, for the unsynced part, a seeded
//!   choice per 512-byte sector: each sector that differs from the durable image is kept or
//!   lost independently, so a later sector can survive while an earlier one is lost (a torn
//!   write); the file keeps its written length half the time, else lands anywhere between the
//!   durable and the written length.
//!   Three in ten such sectors hold random bytes past the durable length instead (it was being
//!   written when power failed), so recovery must find the damage by checksum, not by length.
//!   Synced bytes are never damaged: that would be data loss no single-node log can survive.
//! - EIO on `sync_data` (rate `sync_eio_per_mille`): nothing becomes durable; the broker must
//!   not treat the data as synced, nor retry as if it were.
//! - ENOSPC on `write_at` (rate `write_enospc_per_mille`) after writing a seeded prefix of the
//!   data (a partial write).
//! - EIO on `write_at` (rate `write_eio_per_mille`), after a seeded prefix of the data landed.
//! - Transient read corruption (rate `read_corrupt_per_mille`): a read returns the data with one
//!   bit flipped; the stored bytes are intact. The broker must catch it by checksum and never
//!   serve it, and recovery must re-read before cutting anything.
//! - Latency: every operation sleeps 0..`latency_us_max` microseconds of simulated time, and
//!   an fdatasync stalls for 10-300 ms with chance `sync_stall_per_mille`.
//! - Directory operations (create, rename, remove) are volatile until `sync_dir`, as POSIX
//!   promises no more: they are journaled in order, so a crash keeps a seeded *prefix* of the
//!   operations since the last `sync_dir` (a rename is atomic: old name or new, never both or
//!   neither). A file whose name is lost is gone, however well its data was synced. A latent
//!   (persistent) error in *synced* data is not modelled: on a single node it is data loss no log
//!   can undo; replication will address it.
//!
//! All randomness comes from `madsim::rand` (the run's seed).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use madsim::rand::Rng;
use strand::runtime::{Disk, DiskFile, IoFuture};

const SECTOR_BYTES: usize = 512;

#[derive(Debug, Clone, Default)]
pub struct DiskFaults {
    pub sync_eio_per_mille: u32,
    pub write_enospc_per_mille: u32,
    pub write_eio_per_mille: u32,
    /// A read returns one flipped bit (transient: the next read is clean).
    pub read_corrupt_per_mille: u32,
    pub latency_us_max: u64,
    /// Chance (per mille) that an fdatasync stalls for 10-300 ms, as real disks sometimes do.
    pub sync_stall_per_mille: u32,
}

#[derive(Default, Clone)]
struct FileState {
    /// Which file this is (an inode): names come and go, the content stays with the id.
    id: u64,
    durable: Vec<u8>,
    written: Vec<u8>,
}

/// A directory operation not yet made durable by `sync_dir`.
#[derive(Debug, Clone)]
enum NsOp {
    Create { path: PathBuf, id: u64 },
    Remove { path: PathBuf },
    Rename { from: PathBuf, to: PathBuf },
}

#[derive(Default)]
struct State {
    /// The namespace as the node sees it, with each file's content.
    files: BTreeMap<PathBuf, FileState>,
    /// The namespace as of the last `sync_dir`.
    durable_names: BTreeMap<PathBuf, u64>,
    /// Directory operations since then, in order.
    ops: Vec<NsOp>,
    /// Content of files removed or replaced since then (a crash may bring their names back).
    unlinked: BTreeMap<u64, FileState>,
    next_id: u64,
    faults: DiskFaults,
}

impl State {
    fn unlink(&mut self, path: &Path) -> Option<FileState> {
        let f = self.files.remove(path)?;
        self.unlinked.insert(f.id, f.clone());
        Some(f)
    }

    /// `sync_dir`: every directory operation so far is durable (ext4 commits its whole journal).
    fn commit_names(&mut self) {
        self.durable_names = self.files.iter().map(|(p, f)| (p.clone(), f.id)).collect();
        self.ops.clear();
        self.unlinked.clear();
    }
}

/// Cheap to clone; clones share the same disk.
#[derive(Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

fn per_mille(rate: u32) -> bool {
    rate > 0 && madsim::rand::thread_rng().gen_range(0..1000) < rate
}

impl SimDisk {
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    pub fn set_faults(&self, faults: DiskFaults) {
        self.state.lock().expect("disk lock").faults = faults;
    }

    /// The node crashed: unsynced directory operations and data are lost or torn.
    pub fn crash(&self) {
        let mut rng = madsim::rand::thread_rng();
        let mut state = self.state.lock().expect("disk lock");
        // Names: the durable namespace plus a seeded prefix of the journaled operations.
        let keep = rng.gen_range(0..=state.ops.len());
        let mut names = state.durable_names.clone();
        for op in state.ops[..keep].iter().cloned() {
            match op {
                NsOp::Create { path, id } => {
                    names.insert(path, id);
                }
                NsOp::Remove { path } => {
                    names.remove(&path);
                }
                NsOp::Rename { from, to } => {
                    if let Some(id) = names.remove(&from) {
                        names.insert(to, id);
                    }
                }
            }
        }
        let mut contents: BTreeMap<u64, FileState> = std::mem::take(&mut state.unlinked);
        for f in std::mem::take(&mut state.files).into_values() {
            contents.insert(f.id, f);
        }
        for (path, id) in &names {
            if let Some(f) = contents.get(id) {
                state.files.insert(path.clone(), f.clone());
            }
        }
        state.commit_names();
        for f in state.files.values_mut() {
            let durable = f.durable.clone();
            let written = &f.written;
            let max_len = durable.len().max(written.len());
            let min_len = durable.len().min(written.len());
            // The size update often reaches the disk with the data (half the time here); when it
            // does not, the file ends anywhere in between.
            let len = if max_len == min_len || rng.gen_bool(0.5) { written.len() } else { rng.gen_range(min_len..=max_len) };
            let mut out = Vec::with_capacity(len);
            for start in (0..len).step_by(SECTOR_BYTES) {
                let end = (start + SECTOR_BYTES).min(len);
                let sector = |image: &[u8]| -> Vec<u8> {
                    let mut v = image.get(start.min(image.len())..end.min(image.len())).unwrap_or(&[]).to_vec();
                    v.resize(end - start, 0);
                    v
                };
                let (d, w) = (sector(&durable), sector(written));
                // A sector the last sync did not cover survives the crash or not, independently;
                // one that was being written when power failed may hold garbage.
                if d == w {
                    out.extend_from_slice(&d);
                } else if rng.gen_bool(0.3) {
                    // Garbage only past the durable length: synced bytes stay as synced.
                    let keep = durable.len().saturating_sub(start).min(d.len());
                    out.extend_from_slice(&d[..keep]);
                    out.extend((keep..d.len()).map(|_| rng.gen::<u8>()));
                } else {
                    out.extend_from_slice(if rng.gen_bool(0.5) { &w } else { &d });
                }
            }
            f.durable = out.clone();
            f.written = out;
        }
    }

    /// (path, durable length, written length) of every file, for the trace.
    pub fn describe(&self) -> Vec<(String, usize, usize)> {
        let state = self.state.lock().expect("disk lock");
        state.files.iter().map(|(p, f)| (p.display().to_string(), f.durable.len(), f.written.len())).collect()
    }

    /// Bytes a file holds now (tests and debugging).
    pub fn file_len(&self, path: &Path) -> Option<usize> {
        self.state.lock().expect("disk lock").files.get(path).map(|f| f.written.len())
    }

    fn latency(&self) -> Duration {
        let max = self.state.lock().expect("disk lock").faults.latency_us_max;
        if max == 0 {
            Duration::ZERO
        } else {
            Duration::from_micros(madsim::rand::thread_rng().gen_range(0..=max))
        }
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file", path.display()))
}

async fn pause(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

impl Disk for SimDisk {
    fn open(&self, path: &Path, create: bool) -> IoFuture<Arc<dyn DiskFile>> {
        let (disk, path) = (self.clone(), path.to_path_buf());
        Box::pin(async move {
            pause(disk.latency()).await;
            let mut state = disk.state.lock().expect("disk lock");
            if !state.files.contains_key(&path) {
                if !create {
                    return Err(not_found(&path));
                }
                state.next_id += 1;
                let id = state.next_id;
                state.files.insert(path.clone(), FileState { id, ..FileState::default() });
                state.ops.push(NsOp::Create { path: path.clone(), id });
            }
            drop(state);
            Ok(Arc::new(SimFile { disk: disk.clone(), path }) as Arc<dyn DiskFile>)
        })
    }

    fn remove(&self, path: &Path) -> IoFuture<()> {
        let (disk, path) = (self.clone(), path.to_path_buf());
        Box::pin(async move {
            let mut state = disk.state.lock().expect("disk lock");
            state.unlink(&path).ok_or_else(|| not_found(&path))?;
            state.ops.push(NsOp::Remove { path });
            Ok(())
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> IoFuture<()> {
        let (disk, from, to) = (self.clone(), from.to_path_buf(), to.to_path_buf());
        Box::pin(async move {
            let mut state = disk.state.lock().expect("disk lock");
            let f = state.files.remove(&from).ok_or_else(|| not_found(&from))?;
            state.unlink(&to);
            state.files.insert(to.clone(), f);
            state.ops.push(NsOp::Rename { from, to });
            Ok(())
        })
    }

    fn list(&self, dir: &Path) -> IoFuture<Vec<String>> {
        let (disk, dir) = (self.clone(), dir.to_path_buf());
        Box::pin(async move {
            let state = disk.state.lock().expect("disk lock");
            let mut names: Vec<String> = Vec::new();
            for p in state.files.keys() {
                if let Ok(rest) = p.strip_prefix(&dir) {
                    if let Some(first) = rest.components().next() {
                        let name = first.as_os_str().to_string_lossy().into_owned();
                        if !names.contains(&name) {
                            names.push(name);
                        }
                    }
                }
            }
            names.sort();
            Ok(names)
        })
    }

    fn create_dir_all(&self, _dir: &Path) -> IoFuture<()> {
        Box::pin(async { Ok(()) })
    }

    fn remove_dir_all(&self, dir: &Path) -> IoFuture<()> {
        let (disk, dir) = (self.clone(), dir.to_path_buf());
        Box::pin(async move {
            let mut state = disk.state.lock().expect("disk lock");
            let gone: Vec<PathBuf> = state.files.keys().filter(|p| p.starts_with(&dir)).cloned().collect();
            for path in gone {
                state.unlink(&path);
                state.ops.push(NsOp::Remove { path });
            }
            Ok(())
        })
    }

    fn sync_dir(&self, _dir: &Path) -> IoFuture<()> {
        let disk = self.clone();
        Box::pin(async move {
            disk.state.lock().expect("disk lock").commit_names();
            Ok(())
        })
    }

    fn exists(&self, path: &Path) -> IoFuture<bool> {
        let (disk, path) = (self.clone(), path.to_path_buf());
        Box::pin(async move { Ok(disk.state.lock().expect("disk lock").files.keys().any(|p| p.starts_with(&path))) })
    }
}

struct SimFile {
    disk: SimDisk,
    path: PathBuf,
}

impl DiskFile for SimFile {
    fn read_at(&self, pos: u64, len: usize) -> IoFuture<Bytes> {
        let (disk, path) = (self.disk.clone(), self.path.clone());
        Box::pin(async move {
            pause(disk.latency()).await;
            let state = disk.state.lock().expect("disk lock");
            let corrupt = per_mille(state.faults.read_corrupt_per_mille);
            let f = state.files.get(&path).ok_or_else(|| not_found(&path))?;
            let start = (pos as usize).min(f.written.len());
            let end = start.saturating_add(len).min(f.written.len());
            let mut data = f.written[start..end].to_vec();
            if corrupt && !data.is_empty() {
                let mut rng = madsim::rand::thread_rng();
                let i = rng.gen_range(0..data.len());
                data[i] ^= 1 << rng.gen_range(0..8);
            }
            Ok(Bytes::from(data))
        })
    }

    fn write_at(&self, pos: u64, data: Bytes) -> IoFuture<()> {
        let (disk, path) = (self.disk.clone(), self.path.clone());
        Box::pin(async move {
            pause(disk.latency()).await;
            let mut state = disk.state.lock().expect("disk lock");
            let enospc = per_mille(state.faults.write_enospc_per_mille);
            let eio = !enospc && per_mille(state.faults.write_eio_per_mille);
            let f = state.files.get_mut(&path).ok_or_else(|| not_found(&path))?;
            let take = if enospc || eio { madsim::rand::thread_rng().gen_range(0..=data.len()) } else { data.len() };
            let pos = pos as usize;
            if f.written.len() < pos + take {
                f.written.resize(pos + take, 0);
            }
            f.written[pos..pos + take].copy_from_slice(&data[..take]);
            if enospc {
                return Err(io::Error::from_raw_os_error(28));
            }
            if eio {
                return Err(io::Error::from_raw_os_error(5));
            }
            Ok(())
        })
    }

    fn sync_data(&self) -> IoFuture<()> {
        let (disk, path) = (self.disk.clone(), self.path.clone());
        Box::pin(async move {
            pause(disk.latency()).await;
            let stall = per_mille(disk.state.lock().expect("disk lock").faults.sync_stall_per_mille);
            if stall {
                pause(Duration::from_millis(madsim::rand::thread_rng().gen_range(10..=300))).await;
            }
            let mut state = disk.state.lock().expect("disk lock");
            let eio = per_mille(state.faults.sync_eio_per_mille);
            let f = state.files.get_mut(&path).ok_or_else(|| not_found(&path))?;
            if eio {
                return Err(io::Error::from_raw_os_error(5));
            }
            f.durable = f.written.clone();
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> IoFuture<()> {
        let (disk, path) = (self.disk.clone(), self.path.clone());
        Box::pin(async move {
            let mut state = disk.state.lock().expect("disk lock");
            let f = state.files.get_mut(&path).ok_or_else(|| not_found(&path))?;
            f.written.resize(len as usize, 0);
            Ok(())
        })
    }

    fn len(&self) -> IoFuture<u64> {
        let (disk, path) = (self.disk.clone(), self.path.clone());
        Box::pin(async move {
            let state = disk.state.lock().expect("disk lock");
            Ok(state.files.get(&path).ok_or_else(|| not_found(&path))?.written.len() as u64)
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}
