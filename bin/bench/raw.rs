//! The physical ceiling: the same echo traffic without WebSocket, against a trivial TCP echo
//! server on the same kernel.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use compio::BufResult;
use compio::io::{AsyncReadExt, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream};

use super::Phase;
use super::stats::Stats;

/// How the raw server receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RawRecv {
    /// One receive per read into the connection's own buffer (re-armed after every read).
    Plain,
    /// One multishot receive per connection into the worker's provided-buffer ring.
    Multishot,
    /// Multishot receive, each ring buffer copied into the connection's own buffer and given
    /// back at once (what a server that parses in a buffer of its own would do).
    MultishotCopy,
    /// Not an echo: the kernel's share of a WebSocket handshake. Reads a request head, answers
    /// a fixed 101 (the load generator's key), reads the client's close frame, answers 1000
    /// and closes: no parsing, no SHA-1, against `ringstream bench handshake`.
    Handshake,
}

/// The 101 for the load generator's fixed key.
const SWITCHING: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
/// An unmasked close frame with code 1000.
const CLOSE_1000: [u8; 4] = [0x88, 0x02, 0x03, 0xe8];
/// The load generator's close frame: 2 header bytes, a 4-byte mask, a 2-byte code.
const CLIENT_CLOSE_LEN: usize = 8;

/// The raw server's runtime: the engine's default ring flags (`COOP_TASKRUN | TASKRUN_FLAG`),
/// or `SINGLE_ISSUER | DEFER_TASKRUN` given `defer_taskrun`, and a provided-buffer ring of
/// 16 KiB buffers for multishot receives.
pub fn runtime(defer_taskrun: bool) -> std::io::Result<compio::runtime::Runtime> {
    let mut proactor = compio::driver::ProactorBuilder::new();
    proactor.capacity(4096);
    if defer_taskrun {
        proactor.single_issuer(true).defer_taskrun(true);
    } else {
        proactor.coop_taskrun(true).taskrun_flag(true);
    }
    if let Some(buffers) = std::num::NonZero::new(1024) {
        proactor.buffer_pool_size(buffers);
    }
    proactor.buffer_pool_buffer_len(16 * 1024);
    compio::runtime::RuntimeBuilder::new()
        .with_proactor(proactor)
        .build()
}

/// Echoes every byte back until the peer closes (single-threaded; prints its address).
pub async fn serve(listen: SocketAddr, recv: RawRecv, buffer: usize) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let connection = async move {
            let _ = stream.set_nodelay(true);
            match recv {
                RawRecv::Plain => echo_plain(stream, buffer).await,
                RawRecv::Multishot => echo_multishot(stream, None).await,
                RawRecv::MultishotCopy => echo_multishot(stream, Some(buffer)).await,
                RawRecv::Handshake => answer_handshake(stream).await,
            }
        };
        compio::runtime::spawn(connection).detach();
    }
}

/// One connection of `--recv handshake`: head in, 101 out, close frame in, close out.
async fn answer_handshake(mut stream: TcpStream) {
    let mut buf = Vec::with_capacity(1024);
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let BufResult(read, returned) = stream.append(buf).await;
        buf = returned;
        if !matches!(read, Ok(n) if n > 0) || buf.len() == buf.capacity() {
            return;
        }
    }
    if stream.write_all(SWITCHING).await.0.is_err() {
        return;
    }
    buf.clear();
    while buf.len() < CLIENT_CLOSE_LEN {
        let BufResult(read, returned) = stream.append(buf).await;
        buf = returned;
        if !matches!(read, Ok(n) if n > 0) {
            return;
        }
    }
    let _ = stream.write_all(CLOSE_1000.to_vec()).await;
}

async fn echo_plain(mut stream: TcpStream, buffer: usize) {
    let mut buf = Vec::with_capacity(buffer);
    loop {
        buf.clear();
        let BufResult(read, returned) = stream.append(buf).await;
        buf = returned;
        if !matches!(read, Ok(n) if n > 0) {
            return;
        }
        let BufResult(written, returned) = stream.write_all(buf).await;
        buf = returned;
        if written.is_err() {
            return;
        }
    }
}

/// Echoes what a multishot receive brings in: straight from the ring buffer, or, given
/// `copy_into` (a capacity), copied into the connection's own buffer first, the ring buffer
/// being given back at once.
async fn echo_multishot(stream: TcpStream, copy_into: Option<usize>) {
    use compio::io::AsyncReadMulti;
    use futures_util::StreamExt;
    let mut reader = &stream;
    let mut own = copy_into.map(Vec::with_capacity);
    let mut reads = std::pin::pin!(reader.read_multi(0));
    while let Some(read) = reads.next().await {
        match read {
            Ok(ring_buffer) => {
                let written = match own.take() {
                    None => (&mut &stream).write_all(ring_buffer).await.0,
                    Some(mut buf) => {
                        buf.clear();
                        buf.extend_from_slice(&ring_buffer);
                        drop(ring_buffer);
                        if buf.is_empty() {
                            return;
                        }
                        let BufResult(written, returned) = (&mut &stream).write_all(buf).await;
                        own = Some(returned);
                        written
                    }
                };
                if written.is_err() {
                    return;
                }
            }
            // The ring ran dry: the multishot receive ended and is armed again.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
            Err(_) => return,
        }
    }
}

/// A connection to the raw server with Nagle off; a failure is counted in `stats`.
async fn connect(addr: SocketAddr, stats: &RefCell<Stats>) -> Option<TcpStream> {
    match TcpStream::connect(addr).await {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            Some(stream)
        }
        Err(e) => {
            stats.borrow_mut().error(format!("connect: {e}"));
            None
        }
    }
}

/// One connection of the raw echo load: `depth` messages of `size` bytes out in one write,
/// the same bytes back; each message counts as one operation.
pub async fn echo(
    addr: SocketAddr,
    size: usize,
    depth: usize,
    phase: Rc<Cell<Phase>>,
    stats: Rc<RefCell<Stats>>,
) {
    let Some(mut stream) = connect(addr, &stats).await else {
        return;
    };
    let message: Vec<u8> = (0..size * depth).map(|i| i as u8).collect();
    let mut out = message.clone();
    let mut back = Vec::with_capacity(message.len().max(1));
    while phase.get() != Phase::Done {
        let sent = Instant::now();
        let BufResult(result, returned) = stream.write_all(out).await;
        out = returned;
        if let Err(e) = result {
            return stats.borrow_mut().error(format!("write: {e}"));
        }
        back.clear();
        while back.len() < message.len() {
            let BufResult(result, returned) = stream.append(back).await;
            back = returned;
            match result {
                Ok(n) if n > 0 => {}
                _ => return stats.borrow_mut().error("read: closed".into()),
            }
        }
        if back != message {
            return stats.borrow_mut().error("wrong echo".into());
        }
        if phase.get() == Phase::Measure {
            let elapsed = sent.elapsed();
            for _ in 0..depth {
                stats.borrow_mut().record(elapsed);
            }
        }
    }
}

/// One connection of the open-loop raw echo (`raw-tcp --rate`): a `size`-byte message on
/// `schedule` whatever the echoes do, each echo checked byte for byte (its first bytes carry
/// the message's number) and timed from its scheduled send time.
pub async fn echo_at_rate(
    addr: SocketAddr,
    size: usize,
    schedule: super::echo_rate::Schedule,
    phase: Rc<Cell<Phase>>,
    stats: Rc<RefCell<Stats>>,
) {
    use std::collections::VecDeque;
    let Some(stream) = connect(addr, &stats).await else {
        return;
    };
    let (mut reading, mut writing) = stream.into_split();
    let in_flight: RefCell<VecDeque<Instant>> = RefCell::new(VecDeque::new());
    let send = async {
        let mut message = vec![0u8; size];
        let mut due = Instant::now() + schedule.offset;
        let mut n: u64 = 0;
        while phase.get() != Phase::Done {
            compio::time::sleep_until(due).await;
            numbered(n, &mut message);
            in_flight.borrow_mut().push_back(due);
            let BufResult(result, returned) = writing.write_all(message).await;
            message = returned;
            if let Err(e) = result {
                return stats.borrow_mut().error(format!("write: {e}"));
            }
            n += 1;
            due += schedule.interval;
        }
        let deadline = Instant::now() + std::time::Duration::from_secs(2);
        while !in_flight.borrow().is_empty() && Instant::now() < deadline {
            compio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    };
    let receive = async {
        let mut expected = vec![0u8; size];
        let mut back: Vec<u8> = Vec::with_capacity(size.max(64) * 4);
        let mut n: u64 = 0;
        loop {
            while back.len() < size {
                let BufResult(result, returned) = reading.append(back).await;
                back = returned;
                if !matches!(result, Ok(k) if k > 0) {
                    return stats.borrow_mut().error("read: closed".into());
                }
            }
            while back.len() >= size {
                numbered(n, &mut expected);
                if back[..size] != expected[..] {
                    return stats.borrow_mut().error(format!("echo {n} is wrong"));
                }
                back.drain(..size);
                let Some(due) = in_flight.borrow_mut().pop_front() else {
                    return stats
                        .borrow_mut()
                        .error(format!("an echo of {n} before it was sent"));
                };
                n += 1;
                if phase.get() == Phase::Measure {
                    stats.borrow_mut().record(due.elapsed());
                }
            }
        }
    };
    futures_util::future::select(std::pin::pin!(send), std::pin::pin!(receive)).await;
}

/// Message `n` of the open-loop raw echo: its number's bytes, then a pattern that depends on it.
fn numbered(n: u64, message: &mut [u8]) {
    let number = n.to_le_bytes();
    for (i, byte) in message.iter_mut().enumerate() {
        *byte = number
            .get(i)
            .copied()
            .unwrap_or((n as u8).wrapping_add(i as u8));
    }
}
