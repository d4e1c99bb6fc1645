//! The `Disk` trait: the small file-system surface the log and metadata store need.
//!
//! Kept small on purpose so a faithful fake (SimDisk, issue [sim]) is possible: the simulated
//! disk keeps written bytes volatile until `sync_data`, and may lose or tear them on a crash.
//! Callers must therefore treat data as durable only after `sync_data` returns `Ok`, and a
//! directory entry (create, rename, remove) as durable only after `sync_dir` of its parent.
//! After a failed `sync_data` nothing written since the last successful one may be assumed
//! durable, and the same sync must not be retried as if nothing happened (the log marks
//! itself failed instead).

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

/// A boxed IO future. Futures own their arguments (`'static`) so callers can release locks
/// while the IO runs.
pub type IoFuture<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send + 'static>>;

pub trait Disk: Send + Sync + 'static {
    /// Open a file for reading and writing; create it (empty) when `create` is true and it
    /// does not exist. A missing file without `create` is `io::ErrorKind::NotFound`.
    fn open(&self, path: &Path, create: bool) -> IoFuture<Arc<dyn DiskFile>>;
    /// Remove a file.
    fn remove(&self, path: &Path) -> IoFuture<()>;
    /// Atomically rename a file, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> IoFuture<()>;
    /// File and directory names directly inside `dir`, sorted by name.
    fn list(&self, dir: &Path) -> IoFuture<Vec<String>>;
    /// Create a directory and its parents; succeed if it exists.
    fn create_dir_all(&self, dir: &Path) -> IoFuture<()>;
    /// Remove a directory and everything below it.
    fn remove_dir_all(&self, dir: &Path) -> IoFuture<()>;
    /// Make the directory's entries (creates, renames, removes) durable.
    fn sync_dir(&self, dir: &Path) -> IoFuture<()>;
    /// Whether a file or directory exists.
    fn exists(&self, path: &Path) -> IoFuture<bool>;
}

pub trait DiskFile: Send + Sync + 'static {
    /// Read up to `len` bytes at `pos`. Returns fewer only at end of file.
    fn read_at(&self, pos: u64, len: usize) -> IoFuture<Bytes>;
    /// Write all of `data` at `pos`, extending the file if needed. Volatile until `sync_data`.
    fn write_at(&self, pos: u64, data: Bytes) -> IoFuture<()>;
    /// Write `parts` one after another from `pos`, as one `write_at` of their concatenation
    /// would (same volatility and crash behaviour). The real disk hands them to the kernel in
    /// one `pwritev`, so an append need not first copy a request's records into one buffer.
    fn write_parts_at(&self, pos: u64, parts: Vec<Bytes>) -> IoFuture<()> {
        let mut whole = bytes::BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
        for part in &parts {
            whole.extend_from_slice(part);
        }
        self.write_at(pos, whole.freeze())
    }
    /// A hint that bytes before `pos` (already synced) will rarely be read again: the real disk
    /// drops them from the page cache (posix_fadvise DONTNEED), so the kernel reuses those pages
    /// for new appends. Never changes what reads return. Default: nothing.
    fn release_cache_before(&self, pos: u64) -> IoFuture<()> {
        let _ = pos;
        Box::pin(async { Ok(()) })
    }
    /// fdatasync: everything written so far becomes durable, or an error says it may not be.
    fn sync_data(&self) -> IoFuture<()>;
    /// Truncate or extend the file to `len` bytes.
    fn set_len(&self, len: u64) -> IoFuture<()>;
    /// The current length in bytes.
    fn len(&self) -> IoFuture<u64>;
    /// The path this file was opened at (for error messages).
    fn path(&self) -> &Path;
}

/// Write `data` to `path` atomically and durably: write `path.swap`, sync it, rename over
/// `path`, sync the directory. Used for small metadata files and checkpoints.
pub async fn write_atomic(disk: &dyn Disk, path: &Path, data: Bytes) -> io::Result<()> {
    let mut swap = PathBuf::from(path);
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".swap");
    swap.set_file_name(name);
    let file = disk.open(&swap, true).await?;
    file.set_len(0).await?;
    file.write_at(0, data).await?;
    file.sync_data().await?;
    drop(file);
    disk.rename(&swap, path).await?;
    #[cfg(feature = "planted-bugs")]
    if crate::runtime::planted("skip-dir-sync") {
        // Planted bug: the rename is not made durable.
        return Ok(());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    disk.sync_dir(dir).await
}

/// Read a whole file, or `None` if it does not exist.
pub async fn read_whole(disk: &dyn Disk, path: &Path) -> io::Result<Option<Bytes>> {
    let file = match disk.open(path, false).await {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.len().await?;
    let len = usize::try_from(len).map_err(|_| io::Error::other("file too large"))?;
    Ok(Some(file.read_at(0, len).await?))
}
