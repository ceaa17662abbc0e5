//! The `broadcast` load: subscribers and publishers on one topic, every delivery verified and
//! timed.
//!
//! Every connection is open and upgraded (its 101 read, so the server counts it as a member)
//! before the first message is published. Publishers are members too and get their own
//! messages back (`echo_to_sender`): each keeps at most `window` of its messages outstanding
//! (sent, not yet received back), which bounds what a subscriber that keeps up has queued at
//! the server to about `window × size` bytes per publisher, well under `max_backpressure`.
//!
//! Every member checks every message it receives ([`message`]: per publisher in order, no
//! gap, payload intact); subscribers also time it (receive time minus the send time the
//! message carries). When the measurement ends each publisher sends an end marker carrying
//! how many messages it sent: a member that has every marker has seen everything, and closes.
//!
//! Each connection owns one read buffer that keeps its size while the stream runs; every
//! frame a read brings is parsed and checked in place, without allocating.

mod message;

use std::cell::{Cell, RefCell};
use std::io;
use std::ops::Range;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use compio::BufResult;
use compio::io::{AsyncReadExt, AsyncWriteExt};
use compio::net::TcpStream;
use ringstream_protocol::ws::{FrameHeader, OpCode, apply_mask};

use super::Phase;
use super::stats::{Stats, process_cpu_seconds};
use super::ws::{Client, KEY, Target};
use message::{
    Header, MESSAGE_HEADER_LEN, Received, Verifier, Violation, encode_end_marker, encode_message,
};

/// Connections being opened at once before the run.
const CONNECT_CONCURRENCY: usize = 64;
/// How long opening every connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the connections get, once the measurement ends, to receive the end markers and
/// close.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Free room a read needs at the end of the buffer; below it, unparsed bytes move to the front.
const MIN_READ_ROOM: usize = 16 * 1024;
/// Largest server frame accepted (the server's `max_message_size` is far below it).
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// `ringstream bench broadcast`.
#[derive(Debug, Args)]
pub struct BroadcastArgs {
    /// ws://IP:PORT/PATH of a broadcast topic, e.g. ws://127.0.0.1:8080/ws/broadcast/bench.
    #[arg(long)]
    url: String,
    /// Connections that only read.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Connections that publish (members too: they get their own messages back).
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Message size in bytes, at least 24 (publisher, sequence number, send time).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Messages a publisher may have sent and not yet received back.
    #[arg(long, default_value_t = 64)]
    window: usize,
    #[command(flatten)]
    measure: super::Measure,
}

/// Appends a masked client frame carrying `payload`.
fn push_client_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    push_client_header(out, opcode, payload.len());
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], KEY, 0);
}

fn push_client_header(out: &mut Vec<u8>, opcode: OpCode, len: usize) {
    FrameHeader {
        fin: true,
        rsv: 0,
        opcode,
        mask: Some(KEY),
        payload_len: len as u64,
    }
    .write(out);
}

/// Appends message `header` as a masked binary frame of `size` payload bytes.
fn push_message(out: &mut Vec<u8>, header: Header, size: usize) {
    push_client_header(out, OpCode::Binary, size);
    let start = out.len();
    out.resize(start + size, 0);
    encode_message(header, &mut out[start..]);
    apply_mask(&mut out[start..], KEY, 0);
}

/// One member connection: its stream, its one read buffer, its verifier.
struct Member {
    stream: TcpStream,
    /// Bytes read; `buf[pos..]` is not parsed yet.
    buf: Vec<u8>,
    pos: usize,
    /// Pongs and the close waiting to be written (allocated by the first ping).
    out: Vec<u8>,
    verifier: Verifier,
}

impl Member {
    fn new(client: Client, verifier: Verifier) -> Self {
        Self {
            stream: client.stream,
            buf: client.buf,
            pos: client.pos,
            out: Vec::new(),
            verifier,
        }
    }

    /// Reads more bytes. Parsed bytes are dropped first, and unparsed ones move to the front
    /// when the room runs low, so the buffer keeps its size however long the stream runs.
    async fn read_more(&mut self) -> io::Result<()> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.buf.capacity() - self.buf.len() < MIN_READ_ROOM {
            self.buf.drain(..self.pos);
            self.pos = 0;
            // Only a frame larger than the buffer needs more.
            self.buf.reserve(MIN_READ_ROOM);
        }
        let BufResult(result, buf) = self.stream.append(std::mem::take(&mut self.buf)).await;
        self.buf = buf;
        match result? {
            0 => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            _ => Ok(()),
        }
    }

    /// The next complete frame in the buffer and its payload's range, or `None`.
    fn next_frame(&mut self) -> io::Result<Option<(FrameHeader, Range<usize>)>> {
        let Some((header, len)) = FrameHeader::parse(&self.buf[self.pos..])
            .map_err(|e| io::Error::other(format!("bad server frame: {e:?}")))?
        else {
            return Ok(None);
        };
        let payload = usize::try_from(header.payload_len)
            .ok()
            .filter(|&n| n <= MAX_FRAME)
            .ok_or_else(|| io::Error::other("server frame too large"))?;
        if header.mask.is_some() || !header.fin {
            return Err(io::Error::other("masked or fragmented server frame"));
        }
        let start = self.pos + len;
        if self.buf.len() < start + payload {
            return Ok(None);
        }
        self.pos = start + payload;
        Ok(Some((header, start..self.pos)))
    }

    /// Handles every complete frame in the buffer: binary messages go to `on_message`
    /// verified, pings get a pong queued; a close from the server is an error.
    fn take_frames(
        &mut self,
        mut on_message: impl FnMut(Result<Received, Violation>),
    ) -> io::Result<()> {
        while let Some((header, range)) = self.next_frame()? {
            match header.opcode {
                OpCode::Binary => on_message(self.verifier.check(&self.buf[range])),
                // The server pings every heartbeat_interval, busy or not.
                OpCode::Ping => push_client_frame(&mut self.out, OpCode::Pong, &self.buf[range]),
                OpCode::Pong => {}
                OpCode::Close => {
                    return Err(io::Error::other(format!(
                        "closed by the server: {}",
                        describe_close(&self.buf[range])
                    )));
                }
                other => return Err(io::Error::other(format!("unexpected {other:?} frame"))),
            }
        }
        Ok(())
    }

    /// Writes the queued pongs.
    async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let BufResult(result, mut out) = self.stream.write_all(std::mem::take(&mut self.out)).await;
        out.clear();
        self.out = out;
        result
    }

    /// The close handshake (RFC 6455 §5.5.1): sends 1000, reads up to the server's close.
    async fn close(mut self) -> io::Result<()> {
        self.out.clear();
        push_client_frame(&mut self.out, OpCode::Close, &1000u16.to_be_bytes());
        self.flush().await?;
        loop {
            while let Some((header, _)) = self.next_frame()? {
                if header.opcode == OpCode::Close {
                    return Ok(());
                }
            }
            self.read_more().await?;
        }
    }
}

/// `1008 slow consumer` from a close frame's payload.
fn describe_close(payload: &[u8]) -> String {
    match payload {
        [hi, lo, reason @ ..] => format!(
            "{} {}",
            u16::from_be_bytes([*hi, *lo]),
            String::from_utf8_lossy(reason)
        ),
        _ => "no status".into(),
    }
}

/// What every task of a run shares (one thread: cells, no atomics).
struct Shared {
    /// The clock of the send times messages carry.
    start: Instant,
    phase: Cell<Phase>,
    /// Deliveries to subscribers with their latency, and every error.
    stats: RefCell<Stats>,
    /// Messages published while measuring.
    published: Cell<u64>,
    publishers: usize,
    size: usize,
    window: usize,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A subscriber: reads, verifies and times every delivery until every end marker arrived.
async fn subscribe(mut member: Member, shared: Rc<Shared>) {
    if let Err(e) = receive(&mut member, &shared).await {
        return shared.stats.borrow_mut().error(format!("subscriber: {e}"));
    }
    if let Err(e) = member.close().await {
        shared
            .stats
            .borrow_mut()
            .error(format!("subscriber close: {e}"));
    }
}

async fn receive(member: &mut Member, shared: &Shared) -> io::Result<()> {
    while !member.verifier.all_ended() {
        member.read_more().await?;
        // One clock read per read: every frame it brought arrived at the same time.
        let received_ns = shared.now_ns();
        let measuring = shared.phase.get() == Phase::Measure;
        {
            let mut stats = shared.stats.borrow_mut();
            member.take_frames(|message| match message {
                Ok(Received::Message(header)) if measuring => {
                    stats.record(Duration::from_nanos(
                        received_ns.saturating_sub(header.sent_ns),
                    ));
                }
                Ok(_) => {}
                Err(violation) => stats.error(violation.to_string()),
            })?;
        }
        member.flush().await?;
    }
    Ok(())
}

/// Publisher `id`: keeps `window` messages outstanding until the measurement ends, then sends
/// its end marker and waits for it to come back.
async fn publish(mut member: Member, id: u64, shared: Rc<Shared>) {
    if let Err(e) = send_and_receive(&mut member, id, &shared).await {
        return shared
            .stats
            .borrow_mut()
            .error(format!("publisher {id}: {e}"));
    }
    if let Err(e) = member.close().await {
        shared
            .stats
            .borrow_mut()
            .error(format!("publisher {id} close: {e}"));
    }
}

async fn send_and_receive(member: &mut Member, id: u64, shared: &Shared) -> io::Result<()> {
    let (size, window) = (shared.size, shared.window as u64);
    let mut batch = Vec::with_capacity((size + 14) * shared.window);
    let (mut sent, mut echoed) = (0u64, 0u64);
    let (mut ended, mut end_back) = (false, false);
    while !end_back {
        batch.clear();
        if !ended && shared.phase.get() == Phase::Done {
            push_client_frame(&mut batch, OpCode::Binary, &encode_end_marker(id, sent));
            ended = true;
        } else if !ended {
            let sent_ns = shared.now_ns();
            let room = window - (sent - echoed);
            for seq in sent..sent + room {
                let header = Header {
                    publisher: id,
                    seq,
                    sent_ns,
                };
                push_message(&mut batch, header, size);
            }
            sent += room;
            if shared.phase.get() == Phase::Measure {
                shared.published.set(shared.published.get() + room);
            }
        }
        if !batch.is_empty() {
            let BufResult(result, returned) = member.stream.write_all(batch).await;
            batch = returned;
            result?;
        }
        member.read_more().await?;
        member.take_frames(|message| match message {
            Ok(Received::Message(header)) if header.publisher == id => echoed += 1,
            Ok(Received::End { publisher }) if publisher == id => end_back = true,
            Ok(_) => {}
            Err(violation) => shared.stats.borrow_mut().error(violation.to_string()),
        })?;
        member.flush().await?;
    }
    Ok(())
}

/// Opens and upgrades `count` connections, `CONNECT_CONCURRENCY` at a time.
async fn connect_all(target: &Target, count: usize) -> anyhow::Result<Vec<Client>> {
    let next = Rc::new(Cell::new(0usize));
    let opened: Rc<RefCell<Vec<Option<Client>>>> =
        Rc::new(RefCell::new((0..count).map(|_| None).collect()));
    let workers: Vec<_> = (0..CONNECT_CONCURRENCY.min(count))
        .map(|_| {
            let (target, next, opened) = (target.clone(), Rc::clone(&next), Rc::clone(&opened));
            compio::runtime::spawn(async move {
                loop {
                    let i = next.get();
                    if i >= count {
                        return Ok::<(), String>(());
                    }
                    next.set(i + 1);
                    let client = Client::open(&target)
                        .await
                        .map_err(|e| format!("connection {} of {count}: {e}", i + 1))?;
                    opened.borrow_mut()[i] = Some(client);
                }
            })
        })
        .collect();
    for worker in workers {
        worker
            .await
            .map_err(|e| anyhow!("connecting: {e}"))?
            .map_err(anyhow::Error::msg)?;
    }
    let clients = opened.take().into_iter().flatten().collect::<Vec<_>>();
    if clients.len() != count {
        bail!("opened {} of {count} connections", clients.len());
    }
    Ok(clients)
}

/// Runs the broadcast load and reports it.
pub async fn run(args: BroadcastArgs) -> anyhow::Result<()> {
    if args.size < MESSAGE_HEADER_LEN {
        bail!(
            "--size must be at least {MESSAGE_HEADER_LEN} bytes (publisher, sequence number, \
             send time)"
        );
    }
    if args.subscribers == 0 || args.publishers == 0 || args.window == 0 {
        bail!("--subscribers, --publishers and --window must be at least 1");
    }
    let target = Target::from_url(&args.url).map_err(anyhow::Error::msg)?;
    let shared = Rc::new(Shared {
        start: Instant::now(),
        phase: Cell::new(Phase::Warmup),
        stats: RefCell::new(Stats::new()),
        published: Cell::new(0),
        publishers: args.publishers,
        size: args.size,
        window: args.window,
    });
    let connections = args.subscribers + args.publishers;
    let mut clients = compio::time::timeout(CONNECT_TIMEOUT, connect_all(&target, connections))
        .await
        .map_err(|_| anyhow!("opening {connections} connections took over {CONNECT_TIMEOUT:?}"))?
        .with_context(|| format!("opening {connections} connections to {}", args.url))?;
    let member = |client| Member::new(client, Verifier::new(shared.publishers, shared.size));
    let publishers = clients.split_off(args.subscribers);
    let mut tasks = Vec::with_capacity(connections);
    for client in clients {
        tasks.push(compio::runtime::spawn(subscribe(
            member(client),
            Rc::clone(&shared),
        )));
    }
    for (id, client) in publishers.into_iter().enumerate() {
        tasks.push(compio::runtime::spawn(publish(
            member(client),
            id as u64,
            Rc::clone(&shared),
        )));
    }

    compio::time::sleep(Duration::from_secs_f64(args.measure.warmup)).await;
    let server_before = args.measure.server_pid.and_then(process_cpu_seconds);
    let own_before = process_cpu_seconds(std::process::id());
    let measured = Instant::now();
    shared.phase.set(Phase::Measure);
    compio::time::sleep(Duration::from_secs_f64(args.measure.seconds)).await;
    shared.phase.set(Phase::Done);
    let elapsed = measured.elapsed().as_secs_f64();
    let server_after = args.measure.server_pid.and_then(process_cpu_seconds);
    let own_after = process_cpu_seconds(std::process::id());

    let stuck = super::join_within(tasks, DRAIN_TIMEOUT).await;
    if stuck > 0 {
        shared.stats.borrow_mut().error(format!(
            "{stuck} connections had not received every end marker and closed \
             {DRAIN_TIMEOUT:?} after the measurement"
        ));
    }
    let window = Window {
        seconds: elapsed,
        server_cpu: server_before.zip(server_after).map(|(a, b)| b - a),
        own_cpu: own_before.zip(own_after).map(|(a, b)| b - a),
    };
    report(
        &args,
        &shared.stats.borrow(),
        shared.published.get(),
        &window,
    )
}

/// The measured window: its length and the CPU seconds used in it.
struct Window {
    seconds: f64,
    server_cpu: Option<f64>,
    own_cpu: Option<f64>,
}

/// Prints the run's one line (text or JSON; "ops" are deliveries); an error when any
/// delivery failed its checks.
fn report(
    args: &BroadcastArgs,
    stats: &Stats,
    published: u64,
    window: &Window,
) -> anyhow::Result<()> {
    let deliveries = stats.ops;
    let rate = deliveries as f64 / window.seconds;
    let server_cpu_us = window
        .server_cpu
        .filter(|_| deliveries > 0)
        .map(|cpu| cpu * 1e6 / deliveries as f64);
    let own_cpu_pct = window.own_cpu.map(|cpu| cpu * 100.0 / window.seconds);
    let (p50, p99) = (stats.percentile_us(0.5), stats.percentile_us(0.99));
    let label = format!("broadcast {} B, window {}", args.size, args.window);
    let (subscribers, publishers) = (args.subscribers, args.publishers);
    if args.measure.json {
        println!(
            "{{\"mode\":\"{label}\",\"connections\":{},\"subscribers\":{subscribers},\
             \"publishers\":{publishers},\"seconds\":{},\"ops\":{deliveries},\
             \"ops_per_sec\":{rate:.0},\"published\":{published},\"errors\":{},\
             \"p50_us\":{p50},\"p99_us\":{p99},\"server_cpu_us_per_op\":{},\
             \"client_cpu_pct\":{}}}",
            subscribers + publishers,
            args.measure.seconds,
            stats.errors,
            server_cpu_us.map_or("null".into(), |v| format!("{v:.3}")),
            own_cpu_pct.map_or("null".into(), |v| format!("{v:.0}")),
        );
    } else {
        println!(
            "{label}: {subscribers} subscribers, {publishers} publishers, {:.0} s: \
             {published} published, {deliveries} deliveries, {rate:.0} deliveries/s, \
             p50 {p50} µs, p99 {p99} µs, {} errors{}{}",
            args.measure.seconds,
            stats.errors,
            server_cpu_us.map_or(String::new(), |v| format!(
                ", server CPU {v:.3} µs/delivery"
            )),
            own_cpu_pct.map_or(String::new(), |v| format!(", bench CPU {v:.0}%")),
        );
    }
    stats.outcome()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn message(header: Header, size: usize) -> Vec<u8> {
        let mut payload = vec![0; size];
        encode_message(header, &mut payload);
        payload
    }

    #[test]
    fn published_frames_unmask_to_the_message() {
        let mut out = Vec::new();
        let header = Header {
            publisher: 1,
            seq: 0,
            sent_ns: 1234,
        };
        push_message(&mut out, header, 200);
        let (frame, len) = FrameHeader::parse(&out).unwrap().unwrap();
        assert_eq!((frame.opcode, frame.payload_len), (OpCode::Binary, 200));
        let mut payload = out[len..].to_vec();
        apply_mask(&mut payload, frame.mask.unwrap(), 0);
        assert_eq!(payload, message(header, 200)[..]);
        let mut verifier = Verifier::new(2, 200);
        assert_eq!(verifier.check(&payload), Ok(Received::Message(header)));
    }
}
