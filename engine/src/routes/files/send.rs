//! Streaming a file's range to the client: a piece at a time, each `sendfile(2)`d, or read
//! through io_uring into the connection's buffer and sent from it. The `auto` path sends the
//! pieces the page cache does not hold with `sendfile` on the runtime's blocking pool, so
//! that no disk read happens on the worker thread. A download holds at most `chunk_size` in
//! memory; every write has the route's `send_timeout` (a client that stops reading is
//! closed) and the whole response `download_timeout`. Pacing waits on a timer that ends on a
//! 1 ms grid, so the capped downloads of a worker that are due together wake together.

use std::ops::Range;
use std::time::{Duration, Instant};

use futures_util::future::Either;

use super::pace::Pacer;
use crate::config::SendPath;
use crate::server::coarse_clock;
use crate::server::registry::ConnGuard;
use crate::server::transfers::Progress;
use crate::server::transport::{FileSource, Transport};

/// Why a body was not sent whole (the connection must close: the client was promised
/// `Content-Length` bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The client stopped reading for `send_timeout`, or left.
    Client,
    /// `download_timeout` passed.
    Timeout,
    /// The file could not be read, or shrank while being sent.
    File,
}

/// Deadlines of one body, and how its pieces are sent.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// How the bytes are sent.
    pub path: SendPath,
    /// The most one write may wait for the client.
    pub send_timeout: Duration,
    /// When the whole response must be done.
    pub download: Instant,
}

/// The bytes to send: a range of an open file.
#[derive(Debug)]
pub struct Body<'a> {
    /// The file.
    pub file: &'a FileSource,
    /// Its bytes to send.
    pub range: Range<u64>,
}

/// Sends `body` after what `out` already holds (the response head, and any answers before
/// it); returns `out`, emptied, for reuse. Counts the bytes written in `sent`.
pub async fn stream_body<T: Transport>(
    io: &T,
    guard: &ConnGuard,
    body: Body<'_>,
    pacer: &mut Pacer<'_>,
    deadlines: Deadlines,
    mut out: Vec<u8>,
    sent: &mut Progress,
) -> Result<Vec<u8>, Cut> {
    let Body { file, range } = body;
    let mut offset = range.start;
    while offset < range.end {
        let piece = pacer.next_piece(range.end - offset);
        let mut paused = false;
        loop {
            let now = coarse_clock::fine_now_ns();
            let Err(wait) = pacer.ask(piece, now) else {
                break;
            };
            if Instant::now() + wait > deadlines.download {
                return Err(Cut::Timeout);
            }
            crate::server::runtime::sleep(on_the_grid(now, wait)).await;
            paused = true;
        }
        let cold = deadlines.path == SendPath::Auto && !file.is_cached(offset, piece);
        if cold {
            crate::server::page_cache::count_cold_piece();
        }
        if matches!(deadlines.path, SendPath::Sendfile | SendPath::Auto) {
            let deadline = deadlines
                .download
                .min(Instant::now() + deadlines.send_timeout);
            out = write(io, guard, out, deadline, deadlines, sent).await?;
            let piece_sent = if cold {
                Either::Left(io.send_cold_file(file, offset, piece))
            } else {
                Either::Right(io.send_file(file, offset, piece, paused))
            };
            match guard.within(deadline, piece_sent).await {
                Some(Ok(0)) | Some(Err(_)) => return Err(Cut::File),
                Some(Ok(n)) => {
                    offset += n as u64;
                    sent.add(n as u64);
                    continue;
                }
                None if Instant::now() >= deadlines.download => return Err(Cut::Timeout),
                None => return Err(Cut::Client),
            }
        }
        // `copy` and `zerocopy`: pieces of at most `chunk_size`, read, then sent.
        let read = file.read_at(out, offset, piece);
        let Some((read, buf)) = guard.within(deadlines.download, read).await else {
            return Err(Cut::Timeout);
        };
        out = buf;
        match read {
            Ok(0) | Err(_) => return Err(Cut::File),
            Ok(n) => offset += n as u64,
        }
        let deadline = deadlines
            .download
            .min(Instant::now() + deadlines.send_timeout);
        out = write(io, guard, out, deadline, deadlines, sent).await?;
    }
    Ok(out)
}

/// Writes `out` (the head, or a piece read into it) before `deadline`; gives it back empty.
async fn write<T: Transport>(
    io: &T,
    guard: &ConnGuard,
    out: Vec<u8>,
    deadline: Instant,
    deadlines: Deadlines,
    sent: &mut Progress,
) -> Result<Vec<u8>, Cut> {
    if out.is_empty() {
        return Ok(out);
    }
    let mut out = {
        let written = if deadlines.path == SendPath::Zerocopy {
            guard.within(deadline, io.write_all_zerocopy(out)).await
        } else {
            guard.within(deadline, io.write_all(out)).await
        };
        match written {
            Some((Ok(()), written)) => written,
            Some((Err(_), _)) => return Err(Cut::Client),
            None if Instant::now() >= deadlines.download => return Err(Cut::Timeout),
            None => return Err(Cut::Client),
        }
    };
    sent.add(out.len() as u64);
    out.clear();
    Ok(out)
}

/// Paced pieces wake on a shared grid of this many nanoseconds, so that the worker's capped
/// downloads due about the same time wake together: one wake-up sends several pieces.
const GRID_NS: u64 = 1_000_000;

/// `wait` from `now`, stretched to end on the grid.
fn on_the_grid(now: u64, wait: Duration) -> Duration {
    let end = now.saturating_add(ringstream_limits::clock::nanos(wait));
    Duration::from_nanos(end.div_ceil(GRID_NS).saturating_mul(GRID_NS) - now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_waits_end_on_the_grid() {
        let ms = GRID_NS;
        // Asked at 1.5 ms to wait 0.2 ms: woken at 2 ms.
        let wait = on_the_grid(ms + ms / 2, Duration::from_nanos(ms / 5));
        assert_eq!(wait, Duration::from_nanos(ms / 2));
        // A wait that ends on the grid is kept as it is.
        assert_eq!(
            on_the_grid(ms / 2, Duration::from_nanos(ms / 2)),
            Duration::from_nanos(ms / 2)
        );
        assert_eq!(on_the_grid(3 * ms, Duration::ZERO), Duration::ZERO);
    }
}
