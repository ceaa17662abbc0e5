//! `ringstream bench`: the load generator. One thread (pin it with `taskset`), many
//! connections, every answer verified; reports the rate, latency p50/p99 and, given the
//! server's PID, the server's CPU time per operation.
//!
//! Layout: `ws` (echo and handshake), `echo_rate` (the echo in open loop), `broadcast`,
//! `download` and `raw` are the loads;
//! `window` is the warm-up and measured window they all run in; `stats` what they count.

mod broadcast;
mod download;
mod echo_rate;
mod raw;
mod stats;
mod window;
mod ws;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use stats::Stats;
use window::{Window, join_within};

/// `ringstream bench MODE`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to measure.
    #[command(subcommand)]
    pub mode: Mode,
}

/// The load shapes of BENCHMARKS.md.
#[derive(Debug, Subcommand)]
pub enum Mode {
    /// On open WebSocket connections: send a message, wait for its echo, verify it.
    Echo {
        /// ws://IP:PORT/PATH of an echo endpoint.
        #[arg(long)]
        url: String,
        /// Message size in bytes.
        #[arg(long, default_value_t = 32)]
        size: usize,
        /// Messages in flight per connection.
        #[arg(long, default_value_t = 1)]
        depth: usize,
        /// Send text frames (ASCII payloads, valid UTF-8) and expect text echoes, for
        /// servers whose echo handles text only.
        #[arg(long)]
        text: bool,
        /// Open loop: offer this many messages per second in all, each connection its share
        /// on a fixed schedule whatever the echoes do, latency timed from each message's
        /// scheduled send time (instead of `--depth` messages in flight per connection).
        #[arg(long, conflicts_with = "depth")]
        rate: Option<f64>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// K subscribers and P publishers on one topic: verified deliveries/s and their latency.
    Broadcast(broadcast::BroadcastArgs),
    /// C connections each GET a file (or a range of it) in a loop: verified bytes/s and the
    /// server's CPU per GiB.
    Download(download::DownloadArgs),
    /// Write a file for `download --check-pattern`: each 8-byte word is its own offset.
    MakeFile(download::MakeFileArgs),
    /// Connect, upgrade, close handshake, disconnect: one operation.
    Handshake {
        /// ws://IP:PORT/PATH of a WebSocket endpoint.
        #[arg(long)]
        url: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// The echo load without WebSocket, against `raw-tcp-server`: the ceiling of this kernel.
    RawTcp {
        /// IP:PORT of a `raw-tcp-server`.
        #[arg(long)]
        addr: SocketAddr,
        /// Bytes per message.
        #[arg(long, default_value_t = 32)]
        size: usize,
        /// Messages written together and awaited together per connection (as `echo --depth`).
        #[arg(long, default_value_t = 1)]
        depth: usize,
        /// Open loop, as `echo --rate`: this many messages per second in all, each connection
        /// its share on a fixed schedule.
        #[arg(long, conflicts_with = "depth")]
        rate: Option<f64>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// A trivial single-threaded TCP echo server for `raw-tcp` (prints `listening on ADDR`).
    RawTcpServer {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// How connections receive.
        #[arg(long, value_enum, default_value_t = raw::RawRecv::Plain)]
        recv: raw::RawRecv,
        /// Each connection's own buffer under `--recv plain` and `multishot-copy`
        /// (multishot receives land in the worker's ring of 16 KiB buffers).
        #[arg(long, default_value_t = 64 * 1024)]
        buffer: usize,
        /// Set the ring up with `SINGLE_ISSUER | DEFER_TASKRUN` instead of the engine's
        /// default `COOP_TASKRUN | TASKRUN_FLAG`.
        #[arg(long)]
        defer_taskrun: bool,
    },
}

/// Options every load shares.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Concurrent connections (or handshake workers).
    #[arg(long, default_value_t = 100)]
    connections: usize,
    #[command(flatten)]
    measure: Measure,
}

/// How long a load runs and how it reports: shared by every mode.
#[derive(Debug, Args)]
pub struct Measure {
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Seconds of load before the measurement starts.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// The server's PID, to report its CPU time per operation (per delivery, per GiB sent;
    /// and, for downloads, its core's load when it is pinned to one core). Given once per
    /// process of a server made of several (the nodes of a cluster), their CPU times add up;
    /// the core is the first one's.
    #[arg(long)]
    pub server_pid: Vec<u32>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Load runs, nothing is counted.
    Warmup,
    /// Load runs and is counted.
    Measure,
    /// Connections finish their operation and stop.
    Done,
}

/// Runs the chosen load to completion.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let runtime = match &args.mode {
        Mode::Download(download) => download::runtime(download),
        Mode::RawTcpServer { defer_taskrun, .. } => raw::runtime(*defer_taskrun),
        _ => compio::runtime::Runtime::new(),
    }
    .context("building the client runtime")?;
    runtime.block_on(async move {
        match args.mode {
            Mode::RawTcpServer {
                listen,
                recv,
                buffer,
                ..
            } => Ok(raw::serve(listen, recv, buffer).await?),
            Mode::Broadcast(args) => broadcast::run(args).await,
            Mode::Download(args) => download::run(args).await,
            Mode::MakeFile(args) => download::make_file(&args),
            Mode::Echo {
                url,
                size,
                text,
                rate: Some(rate),
                run,
                ..
            } => {
                let rate = positive_rate(rate)?;
                let target = ws::Target::from_url(&url).map_err(anyhow::Error::msg)?;
                let payload = if text {
                    ws::Payload::Text
                } else {
                    ws::Payload::Binary
                };
                let label = format!("echo {size} B at {rate:.0}/s");
                let index = Cell::new(0);
                measure(&label, &run, |phase, stats| {
                    let schedule = echo_rate::Schedule::new(rate, run.connections, index.get());
                    index.set(index.get() + 1);
                    echo_rate::echo_at_rate(target.clone(), size, payload, schedule, phase, stats)
                })
                .await
            }
            Mode::Echo {
                url,
                size,
                depth,
                text,
                rate: None,
                run,
            } => {
                let target = ws::Target::from_url(&url).map_err(anyhow::Error::msg)?;
                let (payload, kind) = if text {
                    (ws::Payload::Text, " text")
                } else {
                    (ws::Payload::Binary, "")
                };
                let label = format!("echo {size} B{kind}, depth {depth}");
                let shape = ws::EchoShape {
                    size,
                    depth: depth.max(1),
                    payload,
                };
                measure(&label, &run, |phase, stats| {
                    ws::echo(target.clone(), shape, phase, stats)
                })
                .await
            }
            Mode::Handshake { url, run } => {
                let target = ws::Target::from_url(&url).map_err(anyhow::Error::msg)?;
                measure("handshake", &run, |phase, stats| {
                    ws::handshake(target.clone(), phase, stats)
                })
                .await
            }
            Mode::RawTcp {
                addr,
                size,
                rate: Some(rate),
                run,
                ..
            } => {
                let rate = positive_rate(rate)?;
                let label = format!("raw-tcp echo {size} B at {rate:.0}/s");
                let index = Cell::new(0);
                measure(&label, &run, |phase, stats| {
                    let schedule = echo_rate::Schedule::new(rate, run.connections, index.get());
                    index.set(index.get() + 1);
                    raw::echo_at_rate(addr, size, schedule, phase, stats)
                })
                .await
            }
            Mode::RawTcp {
                addr,
                size,
                depth,
                rate: None,
                run,
            } => {
                let label = format!("raw-tcp echo {size} B, depth {depth}");
                measure(&label, &run, |phase, stats| {
                    raw::echo(addr, size, depth.max(1), phase, stats)
                })
                .await
            }
        }
    })
}

/// `rate` if it is a positive, finite number of messages per second.
fn positive_rate(rate: f64) -> anyhow::Result<f64> {
    if rate > 0.0 && rate.is_finite() {
        Ok(rate)
    } else {
        anyhow::bail!("--rate must be a positive number of messages per second")
    }
}

/// Starts `run.connections` tasks from `task`, warms up, measures, reports.
async fn measure<F, Fut>(label: &str, run: &RunArgs, task: F) -> anyhow::Result<()>
where
    F: Fn(Rc<Cell<Phase>>, Rc<RefCell<Stats>>) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let phase = Rc::new(Cell::new(Phase::Warmup));
    let stats = Rc::new(RefCell::new(Stats::new()));
    let tasks: Vec<_> = (0..run.connections)
        .map(|_| compio::runtime::spawn(task(Rc::clone(&phase), Rc::clone(&stats))))
        .collect();
    let window = Window::run(&run.measure, &phase).await;
    // Each finishes its current operation; a stuck one is abandoned after a while.
    join_within(tasks, Duration::from_secs(5)).await;
    let stats = stats.borrow();
    let rate = stats.ops as f64 / run.measure.seconds;
    let cpu_us = window.server_cpu_us_per(stats.ops);
    let (p50, p99) = (stats.percentile_us(0.5), stats.percentile_us(0.99));
    if run.measure.json {
        println!(
            "{{\"mode\":\"{label}\",\"connections\":{},\"seconds\":{},\"ops\":{},\"ops_per_sec\":{rate:.0},\"errors\":{},\"p50_us\":{p50},\"p99_us\":{p99},\"server_cpu_us_per_op\":{}}}",
            run.connections,
            run.measure.seconds,
            stats.ops,
            stats.errors,
            cpu_us.map_or("null".into(), |v| format!("{v:.2}"))
        );
    } else {
        println!(
            "{label}: {} connections, {:.0} s: {} ops, {rate:.0} ops/s, p50 {p50} µs, p99 {p99} µs, \
             {} errors{}",
            run.connections,
            run.measure.seconds,
            stats.ops,
            stats.errors,
            cpu_us.map_or(String::new(), |v| format!(", server CPU {v:.2} µs/op"))
        );
    }
    stats.outcome()
}
