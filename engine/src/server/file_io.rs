//! Files on the worker's runtime: a download's source (read through io_uring, or on the
//! runtime's blocking pool, and asked whether its pages are cached) and an upload's sink.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use compio::BufResult;
use compio::buf::{IntoInner, IoBuf};
use compio::driver::op::AsyncifyFd;
use compio::driver::{SharedFd, ToSharedFd};
use compio::io::{AsyncReadAt, AsyncWriteAtExt};

/// An open regular file, handed to compio (which owns it from then on).
fn compio_file(file: std::fs::File) -> compio::fs::File {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let fd = file.into_raw_fd();
    // SAFETY: `fd` was just released by `file`, so this is its only owner; it is an open
    // regular file, which is what compio's `File` wraps.
    unsafe { compio::fs::File::from_raw_fd(fd) }
}

/// A regular file read at given offsets on the worker's runtime (io_uring reads; page-cache
/// hits complete without a thread).
#[derive(Debug)]
pub struct FileSource {
    file: compio::fs::File,
}

impl FileSource {
    /// Takes over an open file.
    pub fn new(file: std::fs::File) -> Self {
        Self {
            file: compio_file(file),
        }
    }

    /// Appends up to `len` bytes read at `offset` to `buf` (fewer at the end of the file, or
    /// when the kernel returns less).
    pub async fn read_at(
        &self,
        mut buf: Vec<u8>,
        offset: u64,
        len: usize,
    ) -> (io::Result<usize>, Vec<u8>) {
        buf.reserve(len);
        let start = buf.len();
        let BufResult(result, slice) = self
            .file
            .read_at(buf.slice(start..start + len), offset)
            .await;
        (result, slice.into_inner())
    }

    /// [`FileSource::read_at`] on a thread of the runtime's blocking pool (`pread(2)`), for
    /// pieces not in the page cache: the worker then never runs any part of a read that may
    /// wait for the disk. An io_uring read first tries to copy the pages on the worker, and on
    /// some file systems that try itself waits (FUSE asks its daemon for the file's
    /// attributes before a read; a disk file system may read an extent block). The pool
    /// keeps the file and the buffer until the read ends, even when the download is dropped.
    pub async fn read_at_in_pool(
        &self,
        mut buf: Vec<u8>,
        offset: u64,
        len: usize,
    ) -> (io::Result<usize>, Vec<u8>) {
        let op = AsyncifyFd::new(self.file.to_shared_fd(), move |file: &std::fs::File| {
            let start = buf.len();
            buf.resize(start + len, 0);
            let result = std::os::unix::fs::FileExt::read_at(file, &mut buf[start..], offset);
            buf.truncate(start + *result.as_ref().unwrap_or(&0));
            BufResult(result, buf)
        });
        let BufResult(result, op) = compio::runtime::submit(op).await;
        (result, op.into_inner())
    }

    /// Whether every page of `len` bytes at `offset` is in the page cache (`page_cache`).
    pub fn is_cached(&self, offset: u64, len: usize) -> bool {
        super::page_cache::is_cached(self.file.as_raw_fd(), offset, len as u64)
    }

    /// The file, shared with an operation that may outlive the caller's borrow.
    pub fn shared_fd(&self) -> SharedFd<std::fs::File> {
        self.file.to_shared_fd()
    }

    /// The descriptor, for `sendfile(2)`.
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// A regular file written at given offsets on the worker's runtime (uploads).
#[derive(Debug)]
pub struct FileSink {
    file: compio::fs::File,
}

impl FileSink {
    /// Takes over a file open for writing.
    pub fn new(file: std::fs::File) -> Self {
        Self {
            file: compio_file(file),
        }
    }

    /// Writes all of `buf` at `offset`; gives the buffer back.
    pub async fn write_all_at(&self, buf: Vec<u8>, offset: u64) -> (io::Result<()>, Vec<u8>) {
        let mut file = &self.file;
        let BufResult(result, buf) = file.write_all_at(buf, offset).await;
        (result, buf)
    }

    /// `fsync`.
    pub async fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all().await
    }
}
