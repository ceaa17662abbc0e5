//! The file side of a `sink` route: WebSocket messages from every worker appended as JSON
//! lines to one file by one writer thread, with size-based rotation.
//!
//! Workers encode each message with [`encode_line`] and queue whole lines with
//! [`SinkWriter::append`], which never blocks; the `ringstream-sink` thread gathers what is
//! queued into one `write(2)` (retried on a short write). A rotation happens between two
//! whole lines: no file grows past `max_bytes` unless one line alone is longer.
//! The bytes queued and not yet written are bounded by the workers: past [`MAX_BACKLOG`]
//! ([`SinkWriter::has_room`] is false) they stop reading from sink clients, and TCP holds the
//! clients back.
//!
//! Durability: there is no `fsync`. Lines reach the page cache, so a killed process leaves
//! whole lines behind, and a power loss may lose the last ones. A `kill -9` could in theory
//! tear a write that spans a page boundary; what guarantees a reader whole lines after a
//! restart is the repair at [`SinkWriter::open`], which cuts the file after its last `'\n'`.
//! A failed write is cut back the same way before the file is reopened. The writer assumes
//! it is the file's only writer; a file moved away or deleted by someone else is noticed
//! within a second and recreated.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write as _};
use std::net::IpAddr;
use std::os::unix::fs::{FileExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ringstream_protocol::json;

/// Queued bytes past which workers stop reading from sink clients.
pub const MAX_BACKLOG: usize = 8 << 20;
/// The most bytes the writer gathers into one `write(2)` from batches already queued.
const MAX_WRITE: usize = 1 << 20;
/// How often the writer checks that the path still names its file, and logs errors at most.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Where and how a sink route writes its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkFileConfig {
    /// The file lines are appended to.
    pub path: PathBuf,
    /// Rotate once the file would grow past this many bytes (0 = never rotate).
    pub max_bytes: u64,
    /// Rotated files kept: path.1 (newest) .. path.{keep}; older ones are deleted. At least 1.
    pub keep: u32,
}

/// What the writer has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Lines written.
    pub lines: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Rotations done.
    pub rotations: u64,
    /// Failed opens, writes and rotations (a failed open or write drops its batch).
    pub write_errors: u64,
    /// Lines of the batches a failed open or write dropped (a full disk): whole lines, never
    /// a part of one.
    pub dropped_lines: u64,
}

/// Counters shared by the workers and the writer thread.
#[derive(Debug, Default)]
struct Shared {
    backlog: AtomicUsize,
    lines: AtomicU64,
    bytes: AtomicU64,
    rotations: AtomicU64,
    write_errors: AtomicU64,
    dropped_lines: AtomicU64,
    /// Set by [`SinkWriter::reopen_soon`]: the next batch opens the path afresh.
    reopen: AtomicBool,
    /// Written batches' buffers, emptied, for the next batches ([`SinkWriter::buffer`]): a
    /// fresh allocation for each batch costs page faults and zeroing on one side and giving
    /// the pages back on the other.
    spare: Mutex<Vec<Vec<u8>>>,
}

/// Batches gathered into one write at most (`IOV_MAX` is 1024).
const MAX_PARTS: usize = 64;
/// Emptied buffers kept for reuse at most.
const MAX_SPARE: usize = 16;
/// A buffer larger than this is not kept (one batch was unusually large).
const MAX_SPARE_CAPACITY: usize = 1024 * 1024;

impl Shared {
    /// Keeps `buffer`, emptied, for a later batch (unless enough are kept).
    fn recycle(&self, mut buffer: Vec<u8>) {
        if buffer.capacity() > MAX_SPARE_CAPACITY {
            return;
        }
        buffer.clear();
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        if spare.len() < MAX_SPARE {
            spare.push(buffer);
        }
    }
}

/// Appends whole lines to a sink file from any worker thread, on one writer thread.
#[derive(Debug)]
pub struct SinkWriter {
    shared: Arc<Shared>,
    /// `None` once shut down; dropping the sender is what ends the thread, after it has
    /// written everything queued before.
    sender: RwLock<Option<Sender<Vec<u8>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl SinkWriter {
    /// Opens (creating, mode 0o640, `O_APPEND|O_CLOEXEC`) the file, repairs a torn last line
    /// left by a crash (truncates the file after its last `'\n'`, with a warning saying how
    /// many bytes were cut), and starts the writer thread `ringstream-sink`.
    pub fn open(config: SinkFileConfig) -> io::Result<SinkWriter> {
        Self::open_named(config, "sink file")
    }

    /// [`SinkWriter::open`] for a file its errors and warnings call `label` (the access log
    /// shares this writer; its thread is `ringstream-log`).
    pub fn open_named(config: SinkFileConfig, label: &'static str) -> io::Result<SinkWriter> {
        let context = |e: io::Error| {
            let path = config.path.display();
            io::Error::new(e.kind(), format!("{label} {path}: {e}"))
        };
        if config.keep == 0 {
            return Err(context(io::Error::new(
                io::ErrorKind::InvalidInput,
                "keep must be at least 1",
            )));
        }
        let (file, size, id) = open_repaired(&config.path, label).map_err(context)?;
        let shared = Arc::new(Shared::default());
        let (sender, receiver) = mpsc::channel();
        let file = RotatingFile {
            shared: Arc::clone(&shared),
            file: Some(file),
            size,
            id,
            last_check: Instant::now(),
            last_warning: None,
            config: config.clone(),
            label,
        };
        let thread = std::thread::Builder::new()
            .name(
                if label == "sink file" {
                    "ringstream-sink"
                } else {
                    "ringstream-log"
                }
                .into(),
            )
            .spawn(move || file.run(receiver))
            .map_err(context)?;
        Ok(SinkWriter {
            shared,
            sender: RwLock::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues a batch of whole lines (each ends in `'\n'`; one is added if the last is
    /// missing); never blocks the caller. Dropped after [`SinkWriter::shutdown`].
    pub fn append(&self, mut lines: Vec<u8>) {
        if lines.is_empty() {
            return;
        }
        if lines.last() != Some(&b'\n') {
            lines.push(b'\n');
        }
        let sender = self.sender.read().unwrap_or_else(|e| e.into_inner());
        let Some(sender) = sender.as_ref() else {
            return;
        };
        let len = lines.len();
        self.shared.backlog.fetch_add(len, Relaxed);
        if sender.send(lines).is_err() {
            self.shared.backlog.fetch_sub(len, Relaxed);
        }
    }

    /// An empty buffer for a batch of lines: one a written batch left, or a new one of
    /// `capacity` bytes.
    pub fn buffer(&self, capacity: usize) -> Vec<u8> {
        let kept = self
            .shared
            .spare
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        kept.unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    /// Bytes queued and not yet written.
    pub fn backlog(&self) -> usize {
        self.shared.backlog.load(Relaxed)
    }

    /// Whether a worker may queue more: the backlog is below [`MAX_BACKLOG`]. Workers stop
    /// reading from sink clients while this is false.
    pub fn has_room(&self) -> bool {
        self.backlog() < MAX_BACKLOG
    }

    /// Makes the writer open its path afresh before its next write (SIGUSR1: logrotate
    /// moved the file away). A moved file is noticed within a second without it too.
    pub fn reopen_soon(&self) {
        self.shared.reopen.store(true, Relaxed);
    }

    /// Lines and bytes written, rotations and write errors so far.
    pub fn stats(&self) -> SinkStats {
        SinkStats {
            lines: self.shared.lines.load(Relaxed),
            bytes: self.shared.bytes.load(Relaxed),
            rotations: self.shared.rotations.load(Relaxed),
            write_errors: self.shared.write_errors.load(Relaxed),
            dropped_lines: self.shared.dropped_lines.load(Relaxed),
        }
    }

    /// Writes everything queued, stops the thread and joins it (idempotent; also done on drop).
    pub fn shutdown(&self) {
        drop(
            self.sender
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!("the sink writer thread panicked");
        }
    }
}

impl Drop for SinkWriter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The writer thread's file: the open descriptor and its size, tracked in memory.
struct RotatingFile {
    shared: Arc<Shared>,
    config: SinkFileConfig,
    /// `None` after a failed write or open: the next batch reopens the path.
    file: Option<File>,
    size: u64,
    /// `(st_dev, st_ino)` of `file`, to notice the path naming another file (or none).
    id: (u64, u64),
    last_check: Instant,
    last_warning: Option<Instant>,
    /// What warnings call the file (`sink file`, `access log`).
    label: &'static str,
}

impl RotatingFile {
    /// Writes batches until every sender is gone and the queue is empty.
    fn run(mut self, receiver: Receiver<Vec<u8>>) {
        let mut held = None;
        let mut parts: Vec<Vec<u8>> = Vec::new();
        loop {
            let Some(mut batch) = held.take().or_else(|| receiver.recv().ok()) else {
                return;
            };
            let first_line = memchr::memchr(b'\n', &batch).map_or(batch.len(), |i| i + 1);
            let Some(room) = self.prepare(first_line) else {
                // The file could not be opened (counted and logged): the batch is dropped.
                self.drop_batch(&batch);
                self.shared.backlog.fetch_sub(batch.len(), Relaxed);
                self.shared.recycle(batch);
                continue;
            };
            // What does not fit goes to the next file, split after a whole line (a single
            // line longer than `max_bytes` gets a file of its own).
            if batch.len() > room {
                let cut = memchr::memrchr(b'\n', &batch[..room]).map_or(first_line, |i| i + 1);
                let rest = batch.split_off(cut);
                if !rest.is_empty() {
                    held = Some(rest);
                }
            }
            // What is already queued goes into the same (vectored) write, as long as it fits
            // the current file; the first batch that does not is held for the next write.
            let mut total = batch.len();
            parts.push(batch);
            while held.is_none() && total < room && parts.len() < MAX_PARTS {
                match receiver.try_recv() {
                    Ok(more) if total + more.len() <= room => {
                        total += more.len();
                        parts.push(more);
                    }
                    Ok(more) => held = Some(more),
                    Err(_) => break,
                }
            }
            if let Err(e) = self.write(&parts) {
                self.warn("write failed; batch dropped", &e);
                for part in &parts {
                    self.drop_batch(part);
                }
            }
            self.shared.backlog.fetch_sub(total, Relaxed);
            for part in parts.drain(..) {
                self.shared.recycle(part);
            }
        }
    }

    /// Makes the file ready for a write starting with a line of `len` bytes (reopening it if
    /// needed, rotating it if that line would push it past `max_bytes`), and returns how many
    /// bytes one write may hold, or `None` if there is no file to write to.
    fn prepare(&mut self, len: usize) -> Option<usize> {
        if self.shared.reopen.swap(false, Relaxed) {
            self.file = None;
        }
        if self.last_check.elapsed() >= CHECK_INTERVAL {
            self.last_check = Instant::now();
            let same =
                std::fs::metadata(&self.config.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id);
            if !same {
                self.file = None;
            }
        }
        if self.file.is_none() {
            self.reopen();
        }
        let max = self.config.max_bytes;
        if self.file.is_some() && max > 0 && self.size > 0 && self.size + len as u64 > max {
            match self.rotate() {
                Ok(()) => {
                    self.shared.rotations.fetch_add(1, Relaxed);
                    self.reopen();
                }
                Err(e) => self.warn("rotation failed; still appending", &e),
            }
        }
        self.file.as_ref()?;
        let room = match max {
            0 => u64::MAX,
            _ => max.saturating_sub(self.size),
        };
        Some(usize::try_from(room).unwrap_or(usize::MAX).min(MAX_WRITE))
    }

    /// Opens the path afresh (a new file after a rotation, or the file that replaced ours).
    fn reopen(&mut self) {
        match open_repaired(&self.config.path, self.label) {
            Ok((file, size, id)) => (self.file, self.size, self.id) = (Some(file), size, id),
            Err(e) => {
                self.file = None;
                self.warn("open failed", &e);
            }
        }
    }

    /// Shifts path.{keep-1} -> path.{keep} .. path.1 -> path.2, then path -> path.1.
    fn rotate(&self) -> io::Result<()> {
        let path = &self.config.path;
        for n in (1..self.config.keep).rev() {
            match std::fs::rename(rotated(path, n), rotated(path, n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(path, rotated(path, 1))
    }

    /// Appends the gathered batches to the file [`RotatingFile::prepare`] made ready, in one
    /// vectored write (more while it writes part); on failure cuts the file back to its last
    /// whole line and drops the descriptor so the next batch reopens the path.
    fn write(&mut self, parts: &[Vec<u8>]) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let written = match file.write_vectored(rest) {
                Ok(0) => Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
                Err(e) => Err(e),
            };
            match written {
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) => {
                    let _ = file.set_len(self.size);
                    self.file = None;
                    return Err(e);
                }
            }
        }
        let bytes: usize = parts.iter().map(Vec::len).sum();
        let lines: usize = parts
            .iter()
            .map(|p| memchr::memchr_iter(b'\n', p).count())
            .sum();
        self.size += bytes as u64;
        self.shared.lines.fetch_add(lines as u64, Relaxed);
        self.shared.bytes.fetch_add(bytes as u64, Relaxed);
        Ok(())
    }

    /// Counts the lines of a batch that was not written.
    fn drop_batch(&self, batch: &[u8]) {
        let lines = memchr::memchr_iter(b'\n', batch).count();
        self.shared.dropped_lines.fetch_add(lines as u64, Relaxed);
    }

    /// Counts an error and logs it, at most once per [`CHECK_INTERVAL`].
    fn warn(&mut self, what: &str, e: &io::Error) {
        let errors = self.shared.write_errors.fetch_add(1, Relaxed) + 1;
        if self
            .last_warning
            .is_none_or(|t| t.elapsed() >= CHECK_INTERVAL)
        {
            self.last_warning = Some(Instant::now());
            let path = self.config.path.display();
            let label = self.label;
            tracing::warn!(path = %path, error = %e, errors, "{label} {what}");
        }
    }
}

/// `path.n`.
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = OsString::from(path);
    name.push(format!(".{n}"));
    name.into()
}

/// Opens `path` for appending and cuts a torn last line; returns the file, its size and id.
fn open_repaired(path: &Path, label: &str) -> io::Result<(File, u64, (u64, u64))> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    let len = meta.len();
    let mut whole = 0;
    let mut end = len;
    let mut buf = [0; 4096];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            whole = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if whole < len {
        file.set_len(whole)?;
        let cut = len - whole;
        tracing::warn!(path = %path.display(), bytes = cut, "{label}: cut a torn last line");
    }
    Ok((file, whole, (meta.dev(), meta.ino())))
}

/// Appends one message as a JSON line: `{"ts":<unix ms>,"peer":"<ip>","text":"..."}` for a
/// text message (RFC 8259 §7 escapes: `"`, `\`, control characters as `\n \r \t \b \f` or
/// `\u00XX`; everything else literal UTF-8; invalid UTF-8, which the WebSocket layer refuses
/// before here, becomes U+FFFD), or `{"ts":..,"peer":..,"binary":"<base64>"}` (standard
/// alphabet, padded) for a binary message. Ends with `'\n'`, the line's only newline.
pub fn encode_line(out: &mut Vec<u8>, unix_ms: u64, peer: IpAddr, text: bool, payload: &[u8]) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{{\"ts\":{unix_ms},\"peer\":\"{peer}\",");
    if text {
        out.extend_from_slice(b"\"text\":\"");
        json::escape_into(out, &String::from_utf8_lossy(payload));
    } else {
        out.extend_from_slice(b"\"binary\":\"");
        let start = out.len();
        out.resize(start + payload.len().div_ceil(3) * 4, 0);
        // The room is exactly the padded encoding's length, so the encoding cannot fail.
        let _ = BASE64.encode_slice(payload, &mut out[start..]);
    }
    out.extend_from_slice(b"\"}\n");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    /// A fresh empty directory for one test.
    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ringstream-sink-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn config(dir: &Path, max_bytes: u64, keep: u32) -> SinkFileConfig {
        let path = dir.join("sink.log");
        SinkFileConfig {
            path,
            max_bytes,
            keep,
        }
    }

    /// Batch `b` of thread `t`: `k` lines `"t b i payload\n"` (19 bytes each).
    fn batch(t: usize, b: usize, k: usize) -> Vec<u8> {
        let lines = (0..k).map(|i| format!("{t} {b:05} {i:02} payload\n"));
        lines.collect::<String>().into_bytes()
    }

    /// The lines of `paths` (oldest first), each checked whole, as `(t, b, i)`.
    fn read_lines(paths: &[PathBuf]) -> Vec<(usize, usize, usize)> {
        let mut lines = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(path).unwrap();
            assert!(text.is_empty() || text.ends_with('\n'), "{text:?}");
            for line in text.lines() {
                let fields: Vec<&str> = line.split(' ').collect();
                assert_eq!(fields.len(), 4, "{line:?}");
                assert_eq!(fields[3], "payload", "{line:?}");
                let n = |s: &str| s.parse::<usize>().unwrap();
                lines.push((n(fields[0]), n(fields[1]), n(fields[2])));
            }
        }
        lines
    }

    /// Checks that every batch of `k` lines is whole and contiguous; returns `(t, b)` of each.
    fn batches(lines: &[(usize, usize, usize)], k: usize) -> Vec<(usize, usize)> {
        assert_eq!(lines.len() % k, 0);
        let whole = |c: &[(usize, usize, usize)]| {
            let (t, b, _) = c[0];
            assert!(c.iter().enumerate().all(|(i, &l)| l == (t, b, i)), "{c:?}");
            (t, b)
        };
        lines.chunks(k).map(whole).collect()
    }

    /// `path` and its rotated files, oldest first.
    fn files(path: &Path, keep: u32) -> Vec<PathBuf> {
        let mut files: Vec<_> = (1..=keep).rev().map(|n| rotated(path, n)).collect();
        files.retain(|p| p.exists());
        files.push(path.to_owned());
        files
    }

    #[test]
    fn encode_line_escapes_text_and_encodes_binary() {
        let text = "say \"hi\" \\ back\nslash\r\t\u{8}\u{c}\u{1}\u{1f} é€😀 \u{7f}";
        let mut out = Vec::new();
        encode_line(
            &mut out,
            1_700_000_000_123,
            [192, 0, 2, 1].into(),
            true,
            text.as_bytes(),
        );
        let binary = [0, 0xff, b'\n', 1];
        encode_line(&mut out, 7, "::1".parse().unwrap(), false, &binary);
        let lines: Vec<&[u8]> = out.split_inclusive(|&b| b == b'\n').collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].windows(12).any(|w| w == br#"\b\f\u0001\u"#));
        let first: serde_json::Value = serde_json::from_slice(lines[0]).unwrap();
        assert_eq!(first["ts"], 1_700_000_000_123u64);
        assert_eq!(first["peer"], "192.0.2.1");
        assert_eq!(first["text"], text);
        let second: serde_json::Value = serde_json::from_slice(lines[1]).unwrap();
        let expected = serde_json::json!({"ts": 7, "peer": "::1", "binary": "AP8KAQ=="});
        assert_eq!(second, expected);
    }

    #[test]
    fn batches_from_four_threads_arrive_whole() {
        fn shared<T: Send + Sync>(_: &T) {}
        let dir = temp_dir("threads");
        let config = config(&dir, 0, 1);
        let sink = SinkWriter::open(config.clone()).unwrap();
        shared(&sink);
        std::thread::scope(|s| {
            for t in 0..4 {
                let sink = &sink;
                s.spawn(move || (0..250).for_each(|b| sink.append(batch(t, b, 5))));
            }
        });
        sink.shutdown();
        let batches = batches(&read_lines(&files(&config.path, 1)), 5);
        assert_eq!(batches.len(), 1000);
        for t in 0..4 {
            let mine: Vec<usize> = batches.iter().filter(|l| l.0 == t).map(|l| l.1).collect();
            assert_eq!(mine, (0..250).collect::<Vec<_>>());
        }
        let size = std::fs::metadata(&config.path).unwrap().len();
        let stats = sink.stats();
        assert_eq!(
            (stats.lines, stats.bytes, stats.write_errors),
            (5000, size, 0)
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rotation_splits_between_whole_lines_and_keeps_files_within_max_bytes() {
        let dir = temp_dir("rotate");
        let config = config(&dir, 200, 64);
        let sink = SinkWriter::open(config.clone()).unwrap();
        // 19-byte lines: ten fit in 200 bytes. 60 batches of 2, then one batch of 16 lines
        // (304 bytes, more than a file holds), which is split after a whole line.
        (0..60).for_each(|b| sink.append(batch(0, b, 2)));
        sink.append(batch(0, 60, 16));
        sink.shutdown();
        let files = files(&config.path, 64);
        assert_eq!(files.len(), 14);
        assert_eq!(sink.stats().rotations, 13);
        for file in &files[..13] {
            assert_eq!(std::fs::metadata(file).unwrap().len(), 190);
        }
        let lines = read_lines(&files);
        let expected: Vec<(usize, usize, usize)> = (0..60)
            .flat_map(|b| batches_of(b, 2))
            .chain(batches_of(60, 16))
            .collect();
        assert_eq!(lines, expected);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_line_longer_than_max_bytes_gets_a_file_of_its_own() {
        let dir = temp_dir("long");
        let config = config(&dir, 10, 8);
        let sink = SinkWriter::open(config.clone()).unwrap();
        sink.append(b"a\n".to_vec());
        sink.append(format!("{}\n", "x".repeat(30)).into_bytes());
        sink.append(b"b\n".to_vec());
        sink.shutdown();
        let contents: Vec<String> = files(&config.path, 8)
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect();
        assert_eq!(contents, ["a\n", &format!("{}\n", "x".repeat(30)), "b\n"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn batches_of(b: usize, k: usize) -> Vec<(usize, usize, usize)> {
        (0..k).map(|i| (0, b, i)).collect()
    }

    #[test]
    fn rotation_deletes_files_past_keep() {
        let dir = temp_dir("keep");
        let config = config(&dir, 100, 2);
        let sink = SinkWriter::open(config.clone()).unwrap();
        // Five 19-byte lines per file: 100 lines make 20 files, of which 3 are kept.
        (0..50).for_each(|b| sink.append(batch(0, b, 2)));
        sink.shutdown();
        assert!(!rotated(&config.path, 3).exists());
        let files = files(&config.path, 2);
        assert_eq!(files.len(), 3);
        let kept = read_lines(&files);
        let all: Vec<(usize, usize, usize)> = (0..50).flat_map(|b| batches_of(b, 2)).collect();
        assert_eq!(kept, all[85..]);
        assert_eq!(sink.stats().rotations, 19);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn open_cuts_a_torn_last_line_and_names_the_path_in_errors() {
        let dir = temp_dir("torn");
        let config = config(&dir, 0, 1);
        std::fs::write(&config.path, "a\nb\npartial").unwrap();
        let sink = SinkWriter::open(config.clone()).unwrap();
        assert_eq!(std::fs::read(&config.path).unwrap(), b"a\nb\n");
        sink.append(b"c\n".to_vec());
        sink.shutdown();
        assert_eq!(std::fs::read(&config.path).unwrap(), b"a\nb\nc\n");
        std::fs::write(&config.path, "no newline at all").unwrap();
        drop(SinkWriter::open(config.clone()).unwrap());
        assert_eq!(std::fs::read(&config.path).unwrap(), b"");
        let missing = SinkFileConfig {
            path: dir.join("missing/sink.log"),
            ..config.clone()
        };
        let err = SinkWriter::open(missing).unwrap_err();
        assert!(err.to_string().contains("missing/sink.log"), "{err}");
        let err = SinkWriter::open(SinkFileConfig { keep: 0, ..config }).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn backlog_returns_to_zero_after_shutdown() {
        let dir = temp_dir("backlog");
        let sink = SinkWriter::open(config(&dir, 0, 1)).unwrap();
        for b in 0..1000 {
            sink.append(batch(0, b, 10));
            assert!(sink.backlog() <= (b + 1) * 190);
        }
        assert!(sink.has_room());
        sink.shutdown();
        assert_eq!((sink.backlog(), sink.has_room()), (0, true));
        sink.append(batch(0, 0, 1));
        sink.shutdown();
        assert_eq!(sink.backlog(), 0);
        assert_eq!(sink.stats().lines, 10_000);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_deleted_file_is_recreated() {
        let dir = temp_dir("deleted");
        let config = config(&dir, 0, 1);
        let sink = SinkWriter::open(config.clone()).unwrap();
        sink.append(b"a\n".to_vec());
        while sink.stats().lines < 1 {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::fs::remove_file(&config.path).unwrap();
        std::thread::sleep(CHECK_INTERVAL + Duration::from_millis(100));
        sink.append(b"b\n".to_vec());
        sink.shutdown();
        assert_eq!(std::fs::read(&config.path).unwrap(), b"b\n");
        assert_eq!(sink.stats().write_errors, 0);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
