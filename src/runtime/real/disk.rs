//! `StdDisk`: std::fs with every blocking call moved off the async workers.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::runtime::{Disk, DiskFile, IoFuture};

pub struct StdDisk;

impl StdDisk {
    pub fn new() -> StdDisk {
        StdDisk
    }
}

impl Default for StdDisk {
    fn default() -> Self {
        StdDisk::new()
    }
}

/// Run a blocking closure on tokio's blocking pool (in simulation there is no real disk IO
/// through this type, so a plain call is fine there).
fn blocking<T, F>(f: F) -> IoFuture<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    #[cfg(not(madsim))]
    {
        Box::pin(async move {
            match tokio::task::spawn_blocking(f).await {
                Ok(r) => r,
                Err(e) => Err(io::Error::other(format!("blocking disk task failed: {e}"))),
            }
        })
    }
    #[cfg(madsim)]
    {
        Box::pin(async move { f() })
    }
}

impl Disk for StdDisk {
    fn open(&self, path: &Path, create: bool) -> IoFuture<Arc<dyn DiskFile>> {
        let path = path.to_path_buf();
        blocking(move || {
            let file = OpenOptions::new().read(true).write(true).create(create).open(&path)?;
            Ok(Arc::new(StdFile { file: Arc::new(file), path, released_to: Arc::default() }) as Arc<dyn DiskFile>)
        })
    }

    fn remove(&self, path: &Path) -> IoFuture<()> {
        let path = path.to_path_buf();
        blocking(move || std::fs::remove_file(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> IoFuture<()> {
        let (from, to) = (from.to_path_buf(), to.to_path_buf());
        blocking(move || std::fs::rename(from, to))
    }

    fn list(&self, dir: &Path) -> IoFuture<Vec<String>> {
        let dir = dir.to_path_buf();
        blocking(move || {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(dir)? {
                names.push(entry?.file_name().to_string_lossy().into_owned());
            }
            names.sort();
            Ok(names)
        })
    }

    fn create_dir_all(&self, dir: &Path) -> IoFuture<()> {
        let dir = dir.to_path_buf();
        blocking(move || std::fs::create_dir_all(dir))
    }

    fn remove_dir_all(&self, dir: &Path) -> IoFuture<()> {
        let dir = dir.to_path_buf();
        blocking(move || std::fs::remove_dir_all(dir))
    }

    fn sync_dir(&self, dir: &Path) -> IoFuture<()> {
        let dir = dir.to_path_buf();
        blocking(move || File::open(dir)?.sync_all())
    }

    fn exists(&self, path: &Path) -> IoFuture<bool> {
        let path = path.to_path_buf();
        blocking(move || path.try_exists())
    }
}

/// Slices per `pwritev` call (Linux's IOV_MAX is 1024).
const IOV_PER_CALL: usize = 1024;

fn pwritev_all(file: &File, mut pos: u64, parts: &[Bytes]) -> io::Result<()> {
    let mut part = 0; // the first part not completely written
    let mut skip = 0; // bytes of `parts[part]` already written
    loop {
        while part < parts.len() && skip == parts[part].len() {
            part += 1;
            skip = 0;
        }
        if part == parts.len() {
            return Ok(());
        }
        let slices: Vec<io::IoSlice<'_>> = std::iter::once(&parts[part][skip..])
            .chain(parts[part + 1..].iter().map(|p| &p[..]))
            .take(IOV_PER_CALL)
            .map(io::IoSlice::new)
            .collect();
        let mut left = match rustix::io::pwritev(file, &slices, pos) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "pwritev wrote nothing")),
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        pos += left as u64;
        while left > 0 {
            let used = left.min(parts[part].len() - skip);
            skip += used;
            left -= used;
            if skip == parts[part].len() {
                part += 1;
                skip = 0;
            }
        }
    }
}

struct StdFile {
    file: Arc<File>,
    path: PathBuf,
    /// How far `release_cache_before` has released this file's pages.
    released_to: Arc<std::sync::atomic::AtomicU64>,
}

/// `release_cache_before` releases in steps of at least this much (one fadvise per step).
const CACHE_RELEASE_STEP_BYTES: u64 = 8 * 1024 * 1024;

impl DiskFile for StdFile {
    fn read_at(&self, pos: u64, len: usize) -> IoFuture<Bytes> {
        let file = self.file.clone();
        blocking(move || {
            let mut buf = vec![0u8; len];
            let mut filled = 0;
            while filled < len {
                match file.read_at(&mut buf[filled..], pos + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            buf.truncate(filled);
            Ok(Bytes::from(buf))
        })
    }

    fn write_at(&self, pos: u64, data: Bytes) -> IoFuture<()> {
        // An append is a copy into the page cache (tens of microseconds for a large batch):
        // done on the calling worker, as a handoff to the blocking pool and back costs two
        // context switches, more than the write. Durability waits (fdatasync) stay off the
        // workers.
        let file = self.file.clone();
        Box::pin(async move { file.write_all_at(&data, pos) })
    }

    fn write_parts_at(&self, pos: u64, parts: Vec<Bytes>) -> IoFuture<()> {
        // Inline like `write_at`. pwritev may write less than asked (and takes at most
        // IOV_MAX slices): loop until every part is written.
        let file = self.file.clone();
        Box::pin(async move { pwritev_all(&file, pos, &parts) })
    }

    fn release_cache_before(&self, pos: u64) -> IoFuture<()> {
        use std::sync::atomic::Ordering::SeqCst;
        let from = self.released_to.load(SeqCst);
        if pos < from.saturating_add(CACHE_RELEASE_STEP_BYTES) {
            return Box::pin(async { Ok(()) });
        }
        let (file, released_to) = (self.file.clone(), self.released_to.clone());
        blocking(move || {
            if let Some(len) = std::num::NonZeroU64::new(pos - from) {
                rustix::fs::fadvise(&*file, from, Some(len), rustix::fs::Advice::DontNeed)?;
            }
            released_to.fetch_max(pos, SeqCst);
            Ok(())
        })
    }

    fn sync_data(&self) -> IoFuture<()> {
        let file = self.file.clone();
        blocking(move || file.sync_data())
    }

    fn set_len(&self, len: u64) -> IoFuture<()> {
        let file = self.file.clone();
        blocking(move || file.set_len(len))
    }

    fn len(&self) -> IoFuture<u64> {
        let file = self.file.clone();
        blocking(move || Ok(file.metadata()?.len()))
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    /// More parts than one pwritev takes, empty ones among them, at a nonzero position: the
    /// file holds exactly their concatenation.
    #[test]
    fn write_parts_at_writes_every_part_in_order() {
        let dir = std::env::temp_dir().join(format!("strand-pwritev-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        let parts: Vec<Bytes> = (0..3 * IOV_PER_CALL + 7)
            .map(|i| if i % 5 == 0 { Bytes::new() } else { Bytes::from(vec![(i % 251) as u8; 1 + i % 13]) })
            .collect();
        file.write_all_at(b"head", 0).unwrap();
        pwritev_all(&file, 4, &parts).unwrap();
        let mut expected = b"head".to_vec();
        for p in &parts {
            expected.extend_from_slice(p);
        }
        assert_eq!(std::fs::read(&path).unwrap(), expected);
        pwritev_all(&file, 0, &[Bytes::new(), Bytes::new()]).unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), expected.len(), "empty parts write nothing");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Releasing synced pages is only a hint: every byte reads back the same afterwards.
    #[tokio::test]
    async fn released_cache_reads_back_the_same() {
        let dir = std::env::temp_dir().join(format!("strand-release-{}", std::process::id()));
        let disk = StdDisk::new();
        disk.create_dir_all(&dir).await.unwrap();
        let file = disk.open(&dir.join("f"), true).await.unwrap();
        let data: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
        file.write_at(0, Bytes::from(data.clone())).await.unwrap();
        file.sync_data().await.unwrap();
        file.release_cache_before(4 * 1024 * 1024).await.unwrap(); // below one step: no-op
        file.release_cache_before(16 * 1024 * 1024).await.unwrap();
        file.release_cache_before(12 * 1024 * 1024).await.unwrap(); // behind what was released
        assert_eq!(&file.read_at(0, data.len()).await.unwrap()[..], &data[..]);
        disk.remove_dir_all(&dir).await.unwrap();
    }
}
