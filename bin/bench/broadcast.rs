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

//! - `message`: the message layout (publisher, sequence number, send time) and its verifier.
//! - `member`: one connection, its read buffer, the frames it reads and writes.
//! - `roles`: what a subscriber and a publisher do on their connection.
//! - `connect`: opening every connection before the run.

mod connect;
mod member;
mod message;
mod roles;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use clap::Args;

use super::Phase;
use super::stats::Stats;
use super::window::{Window, join_within};
use super::ws::Target;
use connect::connect_all;
use member::Member;
use message::{MESSAGE_HEADER_LEN, Verifier};
use roles::{publish, subscribe};

/// How long opening every connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the connections get, once the measurement ends, to receive the end markers and
/// close.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

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

    let window = Window::run(&args.measure, &shared.phase).await;
    let stuck = join_within(tasks, DRAIN_TIMEOUT).await;
    if stuck > 0 {
        shared.stats.borrow_mut().error(format!(
            "{stuck} connections had not received every end marker and closed \
             {DRAIN_TIMEOUT:?} after the measurement"
        ));
    }
    report(
        &args,
        &shared.stats.borrow(),
        shared.published.get(),
        &window,
    )
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
    let server_cpu_us = window.server_cpu_us_per(deliveries);
    let own_cpu_pct = window.own_cpu_pct();
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
