//! Whether a range of an open file is in the page cache, asked without reading it, so that a
//! download sends cached pieces with `sendfile(2)` and reads the others through io_uring
//! (a `sendfile` of an uncached page reads the disk inside the call, on the worker thread).
//!
//! `cachestat(2)` (Linux 6.5) answers with one call. Where it is missing (an older kernel, or
//! a seccomp filter that refuses it), `mincore(2)` over a mapping of the range answers
//! instead: three calls, still without touching a page. The first call decides which one the
//! process uses from then on.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// `cachestat`'s number: system calls added since Linux 5.1 share one number on every
/// architecture (the libc crate does not name it on x86_64 yet).
const SYS_CACHESTAT: libc::c_long = 451;
/// Pages asked of `mincore` at a time (its answer is a byte per page, kept on the stack).
const MINCORE_WINDOW: usize = 1024;
/// The page size assumed when `sysconf` cannot say.
const FALLBACK_PAGE: u64 = 4096;

/// Which probe the process uses.
const PROBE_UNKNOWN: u8 = 0;
const PROBE_CACHESTAT: u8 = 1;
const PROBE_MINCORE: u8 = 2;
static PROBE: AtomicU8 = AtomicU8::new(PROBE_UNKNOWN);
/// Download pieces read through io_uring because the page cache did not hold them.
static COLD_PIECES: AtomicU64 = AtomicU64::new(0);

/// Counts a piece read because it was not cached.
pub fn count_cold_piece() {
    COLD_PIECES.fetch_add(1, Ordering::Relaxed);
}

/// Download pieces read because the page cache did not hold them, on every worker
/// (`/stats` `files.cold_pieces`, `/metrics` `ringstream_file_cold_pieces_total`).
pub fn cold_pieces() -> u64 {
    COLD_PIECES.load(Ordering::Relaxed)
}

/// `struct cachestat_range` of the kernel's UAPI.
#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

/// `struct cachestat` of the kernel's UAPI.
#[repr(C)]
#[derive(Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// Whether every page of `len` bytes at `offset` of `fd` (an open regular file) is in the
/// page cache. A page being read in counts as cached for `cachestat` (its read is already
/// under way) and as missing for `mincore`. A file the probes cannot ask about (a file
/// system without a page cache, a mapping refused) counts as cached: it is sent as before.
pub fn is_cached(fd: RawFd, offset: u64, len: u64) -> bool {
    if len == 0 {
        return true;
    }
    if PROBE.load(Ordering::Relaxed) != PROBE_MINCORE {
        match cachestat(fd, offset, len) {
            Ok(answer) => {
                PROBE.store(PROBE_CACHESTAT, Ordering::Relaxed);
                return answer;
            }
            Err(errno) if errno == libc::ENOSYS || errno == libc::EPERM => {
                PROBE.store(PROBE_MINCORE, Ordering::Relaxed);
            }
            Err(_) => return true,
        }
    }
    mincore(fd, offset, len).unwrap_or(true)
}

/// The pages `[first, last]` that `len` bytes at `offset` touch, in pages of `page` bytes.
fn pages_of(offset: u64, len: u64, page: u64) -> (u64, u64) {
    let first = offset / page;
    let last = (offset + len - 1) / page;
    (first, last)
}

fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant of the process and touches no memory.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .unwrap_or(FALLBACK_PAGE)
}

/// `cachestat` of the range: whether all its pages are cached, or the call's errno.
fn cachestat(fd: RawFd, offset: u64, len: u64) -> Result<bool, i32> {
    let range = CachestatRange { off: offset, len };
    let mut stat = Cachestat::default();
    // SAFETY: both pointers are to live values of the kernel's layouts for the duration of
    // the call; the kernel reads `range` and writes `stat`, and touches nothing else.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            fd,
            &raw const range,
            &raw mut stat,
            0 as libc::c_uint,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL));
    }
    let (first, last) = pages_of(offset, len, page_size());
    Ok(stat.nr_cache > last - first)
}

/// `mincore` over a shared read-only mapping of the range; `None` when it cannot be asked.
fn mincore(fd: RawFd, offset: u64, len: u64) -> Option<bool> {
    let page = page_size();
    let (first, last) = pages_of(offset, len, page);
    let mut at = first;
    while at <= last {
        let pages = (last - at + 1).min(MINCORE_WINDOW as u64);
        if !mincore_window(fd, at * page, pages, page)? {
            return Some(false);
        }
        at += pages;
    }
    Some(true)
}

/// `mincore` of `pages` pages from the page-aligned `start`.
fn mincore_window(fd: RawFd, start: u64, pages: u64, page: u64) -> Option<bool> {
    let bytes = usize::try_from(pages * page).ok()?;
    let start = libc::off_t::try_from(start).ok()?;
    // SAFETY: a fresh shared read-only mapping the kernel places; nothing reads through it
    // (a page past the file's end would fault), it is only asked about and unmapped below.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            start,
        )
    };
    if map == libc::MAP_FAILED {
        return None;
    }
    let mut resident = [0u8; MINCORE_WINDOW];
    // SAFETY: `map` is a mapping of `bytes` bytes made above, and `resident` holds a byte
    // for each of its `pages` pages (at most MINCORE_WINDOW).
    let rc = unsafe { libc::mincore(map, bytes, resident.as_mut_ptr()) };
    // SAFETY: `map` and `bytes` are the mapping made above, unmapped once; nothing refers to it.
    unsafe { libc::munmap(map, bytes) };
    if rc != 0 {
        return None;
    }
    let pages = usize::try_from(pages).ok()?;
    Some(resident[..pages].iter().all(|&r| r & 1 == 1))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use std::io::Write;
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn pages_cover_the_range() {
        assert_eq!(pages_of(0, 1, 4096), (0, 0));
        assert_eq!(pages_of(0, 4096, 4096), (0, 0));
        assert_eq!(pages_of(4095, 2, 4096), (0, 1));
        assert_eq!(pages_of(8192, 4097, 4096), (2, 3));
    }

    /// A file just written is in the page cache; after `POSIX_FADV_DONTNEED` of clean pages
    /// it is not. Both probes say so.
    #[test]
    fn a_written_file_is_cached_and_a_dropped_one_is_not() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/tmp")
            .join(format!("page-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("file");
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(&vec![7u8; 256 * 1024]).unwrap();
        file.sync_all().unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let fd = file.as_raw_fd();
        assert!(is_cached(fd, 0, 256 * 1024));
        assert_eq!(mincore(fd, 1000, 100_000), Some(true));
        // SAFETY: fadvise on an open descriptor touches no memory of this process.
        let rc = unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0);
        // tmpfs keeps its pages (they are the file): only a disk-backed file drops them.
        if mincore(fd, 0, 256 * 1024) == Some(false) {
            assert!(!is_cached(fd, 0, 256 * 1024));
            if let Ok(answer) = cachestat(fd, 0, 4096) {
                assert!(!answer);
            }
        }
        assert!(is_cached(fd, 0, 0));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
