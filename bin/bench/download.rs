//! The `download` load: C connections each GET a file (or a range of it) again and again on
//! keep-alive, every response's head checked and its body counted to the byte, optionally
//! compared with the pattern `make-file` writes; bytes/s, the server's CPU per GiB sent, and
//! the client's own CPU, which must stay below a core for the figure to be the server's.
//!
//! Each connection reads into one 1 MiB buffer it keeps for the whole run: on loopback the
//! client's work is the kernel's copy of every byte into that buffer, and large reads keep
//! the number of system calls per GiB small.
//!
//! The client runs on compio's poll (epoll) driver by default, not io_uring. On loopback the
//! TCP work of a transfer lands on whichever core handles the ACKs, and with io_uring reads on
//! 64 connections most of it landed on the client's core: against nginx the client's core was
//! 100% busy (half of it softirq) while the server's was 30% busy. With epoll, or with one
//! blocking thread per connection, the same load kept the server's core 95-100% busy with the
//! client's at about 90%. Both the cores' loads are reported, so a run shows which side
//! limited it. `--io-driver uring` remains for comparison.
//!
//! - `response`: the response head (status, `Content-Length`, `Content-Range`, keep-alive).
//! - `exchange`: one response's progress on a connection, checked against what was asked.
//! - `pattern`: make-file's content (each 8-byte word is its own offset) and its check.

mod exchange;
mod pattern;
mod response;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use compio::BufResult;
use compio::io::{AsyncRead as _, AsyncWriteExt as _};
use compio::net::TcpStream;

use super::Phase;
use super::stats::Stats;
use super::window::{Window, join_within};
use exchange::{Exchange, Expect};
pub use pattern::Check;

/// Bytes each connection reads at most at once, into the one buffer it keeps.
const READ_BUF: usize = 1 << 20;
/// How long the connections get, once the measurement ends, to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
const GIB: f64 = (1u64 << 30) as f64;

/// `ringstream bench download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// http://IP:PORT/PATH of a file, e.g. http://127.0.0.1:8080/files/big.bin.
    #[arg(long)]
    url: String,
    /// Concurrent connections, each downloading one response at a time.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Ask for bytes FIRST-LAST of the file (inclusive) and expect 206 with that Content-Range.
    #[arg(long, value_name = "FIRST-LAST", value_parser = parse_range)]
    range: Option<(u64, u64)>,
    /// The file's size: a 200's Content-Length, a 206's complete length (bytes or a unit:
    /// 1GiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    expect_size: Option<u64>,
    /// The file was written by `bench make-file`: compare bodies with its pattern, one word
    /// per 4 KiB page or every byte.
    #[arg(long, value_name = "HOW")]
    check_pattern: Option<Check>,
    /// A per-connection bandwidth cap (bytes/s or a unit: 100MiB) to report the achieved
    /// per-connection rate against.
    #[arg(long, value_name = "BYTES_PER_SEC", value_parser = parse_bytes)]
    rate_check: Option<u64>,
    /// The client's completion driver: poll (epoll) keeps the kernel's TCP work of many
    /// connections off the client's core better than uring does on loopback.
    #[arg(long, value_name = "DRIVER", default_value = "poll")]
    io_driver: ClientDriver,
    #[command(flatten)]
    measure: super::Measure,
}

/// `--io-driver` of the download client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientDriver {
    /// epoll: readiness, then a read of up to 1 MiB.
    Poll,
    /// io_uring receives.
    Uring,
}

/// The single-threaded client runtime on the chosen driver.
pub fn runtime(args: &DownloadArgs) -> std::io::Result<compio::runtime::Runtime> {
    let mut proactor = compio::driver::ProactorBuilder::new();
    proactor.driver_type(match args.io_driver {
        ClientDriver::Poll => compio::driver::DriverType::Poll,
        ClientDriver::Uring => compio::driver::DriverType::IoUring,
    });
    compio::runtime::RuntimeBuilder::new()
        .with_proactor(proactor)
        .build()
}

/// `ringstream bench make-file`.
#[derive(Debug, Args)]
pub struct MakeFileArgs {
    /// The file to write (created or truncated).
    #[arg(long)]
    path: PathBuf,
    /// Its size: bytes or a unit (1GiB, 64KiB, 10MB).
    #[arg(long, value_parser = parse_bytes)]
    size: u64,
}

/// A size: a bare number of bytes or one with a unit, as in the config file.
fn parse_bytes(text: &str) -> Result<u64, String> {
    text.parse()
        .or_else(|_| ringstream::config::parse_size(text))
        .map_err(|_| format!("{text:?} is not a size (bytes, or a unit: 64KiB, 1GiB, 100MB)"))
}

/// `FIRST-LAST`, inclusive, as in `Range: bytes=FIRST-LAST`.
fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("{text:?} is not FIRST-LAST (byte offsets, FIRST <= LAST)");
    let (first, last) = text.split_once('-').ok_or_else(bad)?;
    let (first, last): (u64, u64) = (
        first.parse().map_err(|_| bad())?,
        last.parse().map_err(|_| bad())?,
    );
    if first > last {
        return Err(bad());
    }
    Ok((first, last))
}

/// Writes a file of make-file's pattern.
pub fn make_file(args: &MakeFileArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    pattern::write_file(&args.path, args.size)
        .with_context(|| format!("writing {}", args.path.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "wrote {}: {} bytes in {seconds:.2} s ({:.2} GiB/s)",
        args.path.display(),
        args.size,
        args.size as f64 / GIB / seconds.max(1e-9)
    );
    Ok(())
}

/// Where to connect and what to send.
#[derive(Debug)]
struct Target {
    addr: SocketAddr,
    request: Vec<u8>,
}

impl Target {
    /// `GET` of `http://IP:PORT/PATH`, with `Range` when asked.
    fn new(url: &str, range: Option<(u64, u64)>) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let addr = authority
            .parse()
            .map_err(|e| format!("{authority}: not an IP:PORT address ({e})"))?;
        let range = range.map_or(String::new(), |(first, last)| {
            format!("Range: bytes={first}-{last}\r\n")
        });
        let request = format!("GET /{path} HTTP/1.1\r\nHost: {authority}\r\n{range}\r\n");
        Ok(Self {
            addr,
            request: request.into_bytes(),
        })
    }
}

/// What every connection of a run shares (one thread: cells, no atomics).
struct Shared {
    phase: Cell<Phase>,
    /// Completed responses (with their time to the end of the head) and every error.
    stats: RefCell<Stats>,
    /// Body bytes received while measuring, per connection.
    received: Vec<Cell<u64>>,
    expect: Expect,
}

impl Shared {
    fn error(&self, what: String) {
        self.stats.borrow_mut().error(what);
    }
}

/// Connection `id`: request, read the whole response, again, until the measurement ends
/// (then it stops after its current read, mid-response or not).
async fn download(target: Rc<Target>, shared: Rc<Shared>, id: usize) {
    let mut buf = Vec::with_capacity(READ_BUF);
    let mut request = target.request.clone();
    let mut exchange = Exchange::new(shared.expect);
    let mut open: Option<TcpStream> = None;
    while shared.phase.get() != Phase::Done {
        let stream = match open.as_mut() {
            Some(stream) => stream,
            None => match TcpStream::connect(target.addr).await {
                Ok(stream) => open.insert(stream),
                Err(e) => return shared.error(format!("connect: {e}")),
            },
        };
        let BufResult(written, returned) = stream.write_all(request).await;
        request = returned;
        if let Err(e) = written {
            return shared.error(format!("write: {e}"));
        }
        exchange.begin();
        let sent = Instant::now();
        let mut to_head = Duration::ZERO;
        let keep_alive = loop {
            let BufResult(read, returned) = stream.read(buf).await;
            buf = returned;
            let fed = match read {
                Ok(0) => return shared.error(exchange.describe_close()),
                Ok(n) => match exchange.feed(&buf[..n]) {
                    Ok(fed) => fed,
                    Err(e) => return shared.error(e),
                },
                Err(e) => return shared.error(format!("read: {e}")),
            };
            if fed.head {
                to_head = sent.elapsed();
            }
            match shared.phase.get() {
                Phase::Warmup => {}
                Phase::Measure => {
                    let received = &shared.received[id];
                    received.set(received.get() + fed.body);
                    if fed.done.is_some() {
                        shared.stats.borrow_mut().record(to_head);
                    }
                }
                Phase::Done => return,
            }
            if let Some(keep_alive) = fed.done {
                break keep_alive;
            }
        };
        if !keep_alive {
            open = None;
        }
    }
}

/// Runs the download load and reports it.
pub async fn run(args: DownloadArgs) -> anyhow::Result<()> {
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let target = Rc::new(Target::new(&args.url, args.range).map_err(anyhow::Error::msg)?);
    let shared = Rc::new(Shared {
        phase: Cell::new(Phase::Warmup),
        stats: RefCell::new(Stats::new()),
        received: (0..args.connections).map(|_| Cell::new(0)).collect(),
        expect: Expect {
            range: args.range,
            size: args.expect_size,
            check: args.check_pattern,
        },
    });
    let tasks: Vec<_> = (0..args.connections)
        .map(|id| compio::runtime::spawn(download(Rc::clone(&target), Rc::clone(&shared), id)))
        .collect();

    let window = Window::run(&args.measure, &shared.phase).await;
    let stuck = join_within(tasks, STOP_TIMEOUT).await;
    if stuck > 0 {
        shared.error(format!(
            "{stuck} connections received nothing for {STOP_TIMEOUT:?} after the measurement"
        ));
    }
    let received: Vec<u64> = shared.received.iter().map(Cell::get).collect();
    report(&args, &shared.stats.borrow(), &received, &window)
}

/// The achieved per-connection rates against `--rate-check`.
struct RateCheck {
    cap: u64,
    mean: f64,
    min: f64,
    max: f64,
}

impl RateCheck {
    fn new(cap: u64, received: &[u64], seconds: f64) -> Self {
        let rates = received.iter().map(|&bytes| bytes as f64 / seconds);
        Self {
            cap,
            mean: received.iter().sum::<u64>() as f64 / seconds / received.len() as f64,
            min: rates.clone().fold(f64::INFINITY, f64::min),
            max: rates.fold(0.0, f64::max),
        }
    }

    fn ratio(&self, rate: f64) -> f64 {
        rate / self.cap as f64
    }
}

/// Prints the run's one line (text or JSON; "ops" are completed responses, the latencies
/// their time to the end of the head); an error when any response failed its checks.
fn report(
    args: &DownloadArgs,
    stats: &Stats,
    received: &[u64],
    window: &Window,
) -> anyhow::Result<()> {
    let bytes: u64 = received.iter().sum();
    let gib = bytes as f64 / GIB;
    let gib_per_sec = gib / window.seconds;
    let responses = stats.ops;
    let rate = responses as f64 / window.seconds;
    let server_cpu_us = window.server_cpu_us_per(responses);
    let server_cpu_per_gib = window.server_cpu.filter(|_| bytes > 0).map(|cpu| cpu / gib);
    let own_cpu_pct = window.own_cpu_pct();
    let rate_check = args
        .rate_check
        .map(|cap| RateCheck::new(cap, received, window.seconds));
    // A 1 GiB response may take longer than the window: then none completes in it.
    let percentile = |fraction| (responses > 0).then(|| stats.percentile_us(fraction) as f64);
    let (p50, p99) = (percentile(0.5), percentile(0.99));
    let label = match args.range {
        Some((first, last)) => format!("download bytes {first}-{last}"),
        None => "download".to_owned(),
    };
    let null_or = |value: Option<f64>, digits: usize| {
        value.map_or("null".into(), |v| format!("{v:.digits$}"))
    };
    if args.measure.json {
        let rate_fields = rate_check.as_ref().map_or(String::new(), |check| {
            format!(
                ",\"rate_cap\":{},\"conn_rate_mean\":{:.0},\"conn_rate_min\":{:.0},\
                 \"conn_rate_max\":{:.0},\"rate_ratio\":{:.3}",
                check.cap,
                check.mean,
                check.min,
                check.max,
                check.ratio(check.mean)
            )
        });
        println!(
            "{{\"mode\":\"{label}\",\"connections\":{},\"seconds\":{},\"ops\":{responses},\
             \"ops_per_sec\":{rate:.1},\"errors\":{},\"p50_us\":{},\"p99_us\":{},\
             \"server_cpu_us_per_op\":{},\"client_cpu_pct\":{},\"bytes\":{bytes},\
             \"gib_per_sec\":{gib_per_sec:.3},\"server_cpu_s_per_gib\":{},\
             \"server_core_busy_pct\":{},\"client_core_busy_pct\":{}{rate_fields}}}",
            args.connections,
            args.measure.seconds,
            stats.errors,
            null_or(p50, 0),
            null_or(p99, 0),
            null_or(server_cpu_us, 1),
            null_or(own_cpu_pct, 0),
            null_or(server_cpu_per_gib, 4),
            null_or(window.server_core_busy, 0),
            null_or(window.own_core_busy, 0),
        );
    } else {
        let heads = match (p50, p99) {
            (Some(p50), Some(p99)) => format!(", head p50 {p50} µs, p99 {p99} µs"),
            _ => String::new(),
        };
        let pct = |label: &str, value: Option<f64>| {
            value.map_or(String::new(), |v| format!(", {label} {v:.0}%"))
        };
        println!(
            "{label}: {} connections, {:.0} s: {bytes} bytes, {gib_per_sec:.3} GiB/s, \
             {responses} responses{heads}, {} errors{}{}{}{}",
            args.connections,
            args.measure.seconds,
            stats.errors,
            server_cpu_per_gib.map_or(String::new(), |v| format!(", server CPU {v:.4} s/GiB")),
            pct("bench CPU", own_cpu_pct),
            pct("server core busy", window.server_core_busy),
            pct("bench core busy", window.own_core_busy),
        );
        if let Some(check) = &rate_check {
            let mib = |rate: f64| rate / (1 << 20) as f64;
            println!(
                "per connection: mean {:.2} MiB/s ({:.3}× the cap of {:.2} MiB/s), \
                 min {:.2} ({:.3}×), max {:.2} ({:.3}×)",
                mib(check.mean),
                check.ratio(check.mean),
                mib(check.cap as f64),
                mib(check.min),
                check.ratio(check.min),
                mib(check.max),
                check.ratio(check.max)
            );
        }
    }
    stats.outcome()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn requests() {
        let target = Target::new("http://127.0.0.1:8080/files/big.bin", Some((5, 9))).unwrap();
        assert_eq!(target.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            target.request,
            b"GET /files/big.bin HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nRange: bytes=5-9\r\n\r\n"
        );
        assert!(Target::new("ws://127.0.0.1:1/x", None).is_err());
        assert!(Target::new("http://localhost:1/x", None).is_err());
    }

    #[test]
    fn sizes_and_ranges() {
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("1 G").is_err());
        assert_eq!(parse_range("0-0"), Ok((0, 0)));
        assert_eq!(parse_range("4093-1048575"), Ok((4093, 1_048_575)));
        for bad in ["5-4", "5-", "-5", "a-b", "5"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn per_connection_rates_against_the_cap() {
        let check = RateCheck::new(100, &[900, 1000, 1100], 10.0);
        assert_eq!((check.mean, check.min, check.max), (100.0, 90.0, 110.0));
        assert_eq!(check.ratio(check.min), 0.9);
    }
}
