//! The access log (`access_log = "PATH" | "stdout"`): one line per HTTP request, in nginx's
//! `combined` format or as JSON ([`line`]), written off the workers.
//!
//! Each worker formats its lines into a batch of its own ([`WorkerAccessLog`]) and hands the
//! batch to one writer thread for the whole server when it passes [`BATCH_BYTES`] (one wake-up
//! of the writer and one `write(2)` per few hundred lines), and at
//! least every [`FLUSH_INTERVAL`] (the worker's deadline sweep), so a quiet server's lines
//! are on disk within a fraction of a second. A file is written by the sink's line writer
//! ([`SinkWriter`]: whole lines, one `write(2)` per gathered batch, the file reopened when
//! logrotate moves it away, or at once on SIGUSR1); standard output by a thread of its own.
//! A worker never waits for the writer: while more than the writer's backlog bound is queued,
//! batches are dropped and their lines counted (`ringstream_access_log_dropped_lines_total`).

pub mod line;

use std::cell::RefCell;
use std::io::{self, Write as _};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::{AccessLogConfig, AccessLogFormat, AccessLogTarget};
use crate::routes::sink::file::{MAX_BACKLOG, SinkFileConfig, SinkWriter};

pub use line::{ClosedBy, RequestLine, SessionFields};

/// A worker hands its batch to the writer once it holds this many bytes.
pub const BATCH_BYTES: usize = 64 * 1024;
/// A worker hands over what it holds at least this often.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// The server's access log: the writer every worker hands its batches to.
#[derive(Debug)]
pub struct AccessLog {
    format: AccessLogFormat,
    writer: Writer,
    /// Lines dropped because the writer was behind (or gone).
    dropped: AtomicU64,
}

#[derive(Debug)]
enum Writer {
    File(SinkWriter),
    Stdout(StdoutWriter),
}

impl AccessLog {
    /// Opens the log `config` names (creating the file, mode 0o640) and starts its writer.
    pub fn open(config: &AccessLogConfig) -> io::Result<Self> {
        let writer = match &config.target {
            AccessLogTarget::File(path) => Writer::File(SinkWriter::open_named(
                SinkFileConfig {
                    path: path.clone(),
                    max_bytes: 0,
                    keep: 1,
                },
                "access log",
            )?),
            AccessLogTarget::Stdout => Writer::Stdout(StdoutWriter::start()?),
        };
        Ok(Self {
            format: config.format,
            writer,
            dropped: AtomicU64::new(0),
        })
    }

    /// Lines dropped so far because the writer was behind.
    pub fn dropped_lines(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Lines the writer could not write (a full disk, a file that cannot be opened).
    pub fn failed_lines(&self) -> u64 {
        match &self.writer {
            Writer::File(file) => file.stats().dropped_lines,
            Writer::Stdout(stdout) => stdout.failed_lines.load(Relaxed),
        }
    }

    /// An empty buffer for a worker's next batch: one the file's writer is done with, when
    /// it has one.
    fn buffer(&self) -> Vec<u8> {
        match &self.writer {
            Writer::File(file) => file.buffer(BATCH_BYTES),
            Writer::Stdout(_) => Vec::with_capacity(BATCH_BYTES),
        }
    }

    /// Reopens the file at its path before the next write (SIGUSR1, after logrotate).
    pub fn reopen(&self) {
        if let Writer::File(file) = &self.writer {
            file.reopen_soon();
        }
    }

    /// Writes everything queued and stops the writer (once every worker has finished).
    pub fn shutdown(&self) {
        match &self.writer {
            Writer::File(file) => file.shutdown(),
            Writer::Stdout(stdout) => stdout.shutdown(),
        }
    }

    /// Queues `batch` (whole lines, `lines` of them), or drops it while the writer is behind.
    fn hand_over(&self, batch: Vec<u8>, lines: u64) {
        match &self.writer {
            Writer::File(file) if file.has_room() => file.append(batch),
            Writer::Stdout(stdout) if stdout.backlog.load(Relaxed) < MAX_BACKLOG => {
                stdout.append(batch);
            }
            _ => {
                self.dropped.fetch_add(lines, Relaxed);
            }
        }
    }
}

/// One worker's side of the access log: its batch of formatted lines.
#[derive(Debug)]
pub struct WorkerAccessLog {
    log: Arc<AccessLog>,
    batch: RefCell<(Vec<u8>, u64)>,
}

impl WorkerAccessLog {
    /// This worker's batch for `log`.
    pub fn new(log: Arc<AccessLog>) -> Self {
        Self {
            log,
            batch: RefCell::new((Vec::with_capacity(BATCH_BYTES), 0)),
        }
    }

    /// The server's log.
    pub fn log(&self) -> &AccessLog {
        &self.log
    }

    /// Formats `line` into the batch, handing the batch over once it is large enough.
    pub fn record(&self, line: &RequestLine<'_>) {
        let full = {
            let mut batch = self.batch.borrow_mut();
            let (bytes, lines) = &mut *batch;
            match self.log.format {
                AccessLogFormat::Combined => line.write_combined(bytes),
                AccessLogFormat::Json => line.write_json(bytes),
            }
            *lines += 1;
            bytes.len() >= BATCH_BYTES
        };
        if full {
            self.flush();
        }
    }

    /// Hands over what the batch holds.
    pub fn flush(&self) {
        let (bytes, lines) = {
            let mut batch = self.batch.borrow_mut();
            if batch.1 == 0 {
                return;
            }
            let bytes = std::mem::replace(&mut batch.0, self.log.buffer());
            (bytes, std::mem::take(&mut batch.1))
        };
        self.log.hand_over(bytes, lines);
    }
}

/// Standard output's writer thread.
#[derive(Debug)]
struct StdoutWriter {
    sender: Mutex<Option<Sender<Vec<u8>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    backlog: Arc<AtomicUsize>,
    failed_lines: Arc<AtomicU64>,
}

impl StdoutWriter {
    fn start() -> io::Result<Self> {
        let (sender, receiver) = mpsc::channel::<Vec<u8>>();
        let backlog = Arc::new(AtomicUsize::new(0));
        let failed_lines = Arc::new(AtomicU64::new(0));
        let (queued, failed) = (Arc::clone(&backlog), Arc::clone(&failed_lines));
        let thread = std::thread::Builder::new()
            .name("ringstream-log".into())
            .spawn(move || {
                while let Ok(mut batch) = receiver.recv() {
                    // Gather what is already queued into the same write.
                    while let Ok(more) = receiver.try_recv() {
                        batch.extend(more);
                    }
                    // Locked per batch: the server prints its address on stdout too.
                    let mut stdout = io::stdout().lock();
                    if stdout
                        .write_all(&batch)
                        .and_then(|()| stdout.flush())
                        .is_err()
                    {
                        let lines = batch.iter().filter(|&&b| b == b'\n').count();
                        failed.fetch_add(lines as u64, Relaxed);
                    }
                    queued.fetch_sub(batch.len(), Relaxed);
                }
            })?;
        Ok(Self {
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
            backlog,
            failed_lines,
        })
    }

    fn append(&self, batch: Vec<u8>) {
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = sender.as_ref() {
            let len = batch.len();
            self.backlog.fetch_add(len, Relaxed);
            if sender.send(batch).is_err() {
                self.backlog.fetch_sub(len, Relaxed);
            }
        }
    }

    fn shutdown(&self) {
        drop(self.sender.lock().unwrap_or_else(|e| e.into_inner()).take());
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!("the access log writer thread panicked");
        }
    }
}

/// The status of the first final answer at the start of `bytes` (an interim
/// `100 Continue` is skipped); 0 when none is there.
pub fn status_of(mut bytes: &[u8]) -> u16 {
    loop {
        let Some(line) = bytes.strip_prefix(b"HTTP/1.1 ") else {
            return 0;
        };
        let status = line
            .get(..3)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| digits.parse().ok())
            .unwrap_or(0);
        if status != 100 {
            return status;
        }
        match bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(end) => bytes = &bytes[end + 4..],
            None => return 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_is_the_first_final_answers() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n\r\n"), 200);
        assert_eq!(
            status_of(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 413 Content Too Large\r\n"),
            413
        );
        assert_eq!(status_of(b"HTTP/1.1 100 Continue\r\n\r\n"), 0);
        assert_eq!(status_of(b"garbage"), 0);
        assert_eq!(status_of(b""), 0);
    }
}
