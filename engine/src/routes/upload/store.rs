//! The upload directory and one upload in progress.
//!
//! A body is written to `.ringstream-upload-N.part` (a hidden name: no files route serves it,
//! and no client name can be it), hashed as it goes, and renamed to its final name with
//! `renameat2`: `RENAME_NOREPLACE` unless the route overwrites, so two uploads racing for one
//! name cannot both win. Dropping an [`Upload`] that was not finished deletes its temporary
//! file: every failure (limit, timeout, client gone, drain, panic) cleans up. What a killed
//! process left behind is deleted when the directory is opened at the next start.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};

use crate::server::transfers::Transfer;
use crate::server::transport::FileSink;

/// Prefix and suffix of temporary upload files.
const TEMP_PREFIX: &str = ".ringstream-upload-";
const TEMP_SUFFIX: &str = ".part";
/// Bytes gathered before one write to the file.
pub const WRITE_BATCH: usize = 256 * 1024;

/// An open upload directory.
#[derive(Debug)]
pub struct UploadDir {
    dir: OwnedFd,
    path: PathBuf,
    next_temp: AtomicU64,
    /// Uploads in progress per client address.
    in_progress: Mutex<HashMap<IpAddr, u32>>,
}

impl UploadDir {
    /// Opens `path` (it must be a directory) and deletes the temporary files a killed
    /// process left in it; returns how many were deleted with the directory.
    pub fn open(path: &Path) -> io::Result<(Self, usize)> {
        let dir = File::open(path)?;
        if !dir.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", path.display()),
            ));
        }
        let mut removed = 0;
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX) {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        let this = Self {
            dir: dir.into(),
            path: path.to_owned(),
            next_temp: AtomicU64::new(u64::from(std::process::id()) << 32),
            in_progress: Mutex::new(HashMap::new()),
        };
        Ok((this, removed))
    }

    /// The directory's path, for logs.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a file called `name` exists in the directory.
    pub fn exists(&self, name: &str) -> bool {
        let Ok(name) = CString::new(name) else {
            return false;
        };
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: the directory descriptor is open while `self` lives; `name` is NUL-terminated
        // and `stat` has room for a `struct stat`, which the kernel fills on success only.
        let rc = unsafe {
            libc::fstatat(
                self.dir.as_raw_fd(),
                name.as_ptr(),
                stat.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        rc == 0
    }

    /// Takes one of `client`'s `max` upload places; `None` when it has them all.
    pub fn admit(self: &Arc<Self>, client: IpAddr, max: u32) -> Option<UploadSlot> {
        let mut counts = self
            .in_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(client).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(UploadSlot {
            dir: Arc::clone(self),
            client,
        })
    }

    /// Starts an upload that will be stored as `name`: creates its temporary file.
    pub fn begin(self: &Arc<Self>, name: String) -> io::Result<Upload> {
        let serial = self.next_temp.fetch_add(1, Ordering::Relaxed);
        let temp = format!("{TEMP_PREFIX}{serial:x}{TEMP_SUFFIX}");
        let c_temp = CString::new(temp.as_str())?;
        // SAFETY: the directory descriptor is open while `self` lives and `c_temp` is a
        // NUL-terminated string alive for the call; the result is checked below.
        let fd = unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                c_temp.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                0o640,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by `openat` and belongs to nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        Ok(Upload {
            dir: Arc::clone(self),
            temp: Some(c_temp),
            name,
            file: FileSink::new(file),
            hasher: Sha256::new(),
            size: 0,
            pending: Vec::new(),
            batch: WRITE_BATCH,
            listed: None,
        })
    }

    fn unlink(&self, name: &CString) {
        // SAFETY: the directory descriptor is open while `self` lives; `name` is NUL-terminated.
        unsafe {
            libc::unlinkat(self.dir.as_raw_fd(), name.as_ptr(), 0);
        }
    }

    fn rename(&self, from: &CString, to: &CString, overwrite: bool) -> io::Result<()> {
        let flags: libc::c_uint = if overwrite { 0 } else { libc::RENAME_NOREPLACE };
        let dir = self.dir.as_raw_fd();
        // SAFETY: both names are NUL-terminated strings relative to the open directory
        // descriptor; renameat2 reads them and touches no other memory.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                dir,
                from.as_ptr(),
                dir,
                to.as_ptr(),
                flags,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// `fsync` of the directory (the rename's entry), on the driver like the file's own sync:
    /// an io_uring operation, or the poll driver's blocking pool, never a wait on the worker.
    async fn sync(&self) -> io::Result<()> {
        let dir = File::from(self.dir.try_clone()?);
        FileSink::new(dir).sync_all().await
    }
}

/// One of a client's upload places; released when dropped.
#[derive(Debug)]
pub struct UploadSlot {
    dir: Arc<UploadDir>,
    client: IpAddr,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut counts = self
            .dir
            .in_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

/// What a finished upload is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its name in the directory.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, in lowercase hex.
    pub sha256: String,
}

/// Why a complete body was not stored.
#[derive(Debug)]
pub enum NotStored {
    /// A file of that name appeared meanwhile (409).
    Exists,
    /// Writing, syncing or renaming failed (500).
    Io(io::Error),
}

/// An upload in progress: its temporary file, deleted unless [`Upload::finish`] renames it.
#[derive(Debug)]
pub struct Upload {
    dir: Arc<UploadDir>,
    /// The temporary file's name; `None` once renamed.
    temp: Option<CString>,
    name: String,
    file: FileSink,
    hasher: Sha256,
    size: u64,
    /// Body bytes not written yet.
    pending: Vec<u8>,
    /// Bytes gathered before one write: [`WRITE_BATCH`], or none at all.
    batch: usize,
    /// Its entry among the transfers in progress, when it has one.
    listed: Option<Transfer>,
}

impl Upload {
    /// The directory's path, for logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The name it will be stored as.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counts the body's bytes in `listed` as they come, until the upload ends.
    pub fn list(&mut self, listed: Option<Transfer>) {
        self.listed = listed;
    }

    /// Writes each piece of the body as it comes rather than in batches (when the memory
    /// for a batch is not to be had).
    pub fn write_unbatched(&mut self) {
        self.batch = 0;
    }

    /// Takes body bytes; writes them to the file in batches.
    pub async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.hasher.update(data);
        if let Some(listed) = &self.listed {
            listed.add(data.len() as u64);
        }
        // The batch never grows past its size: what would not fit goes after a write.
        if !self.pending.is_empty() && self.pending.len() + data.len() > self.batch {
            self.flush().await?;
        }
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(self.batch.max(data.len()));
        }
        self.pending.extend_from_slice(data);
        if self.pending.len() >= self.batch {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let len = pending.len() as u64;
        let (result, mut buf) = self.file.write_all_at(pending, self.size).await;
        result?;
        self.size += len;
        buf.clear();
        self.pending = buf;
        Ok(())
    }

    /// Writes what is left, syncs when asked, and renames the file to its final name
    /// (without replacing an existing one unless `overwrite`).
    pub async fn finish(mut self, overwrite: bool, fsync: bool) -> Result<Stored, NotStored> {
        self.flush().await.map_err(NotStored::Io)?;
        if fsync {
            self.file.sync_all().await.map_err(NotStored::Io)?;
        }
        let name = CString::new(self.name.as_str()).map_err(|e| NotStored::Io(e.into()))?;
        let Some(temp) = &self.temp else {
            return Err(NotStored::Io(io::Error::other("already finished")));
        };
        match self.dir.rename(temp, &name, overwrite) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => return Err(NotStored::Exists),
            Err(e) => return Err(NotStored::Io(e)),
        }
        self.temp = None;
        if fsync {
            self.dir.sync().await.map_err(NotStored::Io)?;
        }
        let digest = std::mem::take(&mut self.hasher).finalize();
        Ok(Stored {
            name: std::mem::take(&mut self.name),
            size: self.size,
            sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
        })
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(temp) = &self.temp {
            self.dir.unlink(temp);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("ringstream-up-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    #[test]
    fn leftovers_are_cleaned_and_places_are_counted_per_client() {
        let path = temp_dir("clean");
        std::fs::write(path.join(".ringstream-upload-7.part"), b"half").unwrap();
        std::fs::write(path.join("kept.txt"), b"whole").unwrap();
        let (dir, removed) = UploadDir::open(&path).unwrap();
        assert_eq!(removed, 1);
        assert!(dir.exists("kept.txt") && !dir.exists("nope"));
        let dir = Arc::new(dir);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = dir.admit(ip, 2).unwrap();
        let _b = dir.admit(ip, 2).unwrap();
        assert!(dir.admit(ip, 2).is_none());
        assert!(dir.admit("10.0.0.2".parse().unwrap(), 2).is_some());
        drop(a);
        assert!(dir.admit(ip, 2).is_some());
        std::fs::remove_dir_all(path).unwrap();
    }
}
