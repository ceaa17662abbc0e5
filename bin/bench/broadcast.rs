//! The `broadcast` load: subscribers and publishers on one topic, every delivery verified and
//! timed.
//!
//! Every connection is open and upgraded (its 101 read, so the server counts it as a member)
//! before the first message is published. Publishers are members too and get their own
//! messages back (`echo_to_sender`): each keeps at most `window` of its messages outstanding
//! (sent, and not yet back at the publisher or not yet at every subscriber), which bounds
//! what a subscriber that keeps up has queued at the server to about `window × size` bytes per
//! publisher, well under `max_backpressure`.
//!
//! The subscribers may be on another address than the publishers (`--subscribe-url`): another
//! node of a cluster, whose members get the publishers' messages through the cluster's broker
//! while the publishers get theirs back from their own node. Before the run the first
//! publisher sends probes until the first subscriber gets one (the subscribers' node has
//! joined the topic). `--broker-pid` reports the broker's CPU time per delivery beside the
//! nodes' (`--server-pid` once per node).
//!
//! `--socketio` speaks to a Socket.IO server instead ([`socketio`]: engine.io's framing over
//! the same WebSocket, each message an event whose argument is the payload), with the same
//! messages and the same checks.
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
//! - `socketio`: the Socket.IO packets a member reads and writes, without IO.
//! - `roles`: what a subscriber and a publisher do on their connection.
//! - `watch`: how far every subscriber got, which closes the publishers' windows.
//! - `connect`: opening every connection before the run.

mod connect;
mod member;
mod message;
mod roles;
mod socketio;
mod watch;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use clap::Args;

use super::Phase;
use super::stats::Stats;
use super::window::{Window, join_within};
use super::ws::Target;
use connect::{connect_all, wait_for_join};
use member::{Framing, Member};
use message::{MESSAGE_HEADER_LEN, Verifier};
use roles::{publish, subscribe};
use watch::Watch;

/// What `--deflate` offers: Chromium's offer.
const DEFLATE_OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits";
/// How long opening every connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the subscribers' node may take to join the topic across the cluster.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the connections get, once the measurement ends, to receive the end markers and
/// close, beyond twice what was in flight took to deliver (see [`drain_limit`]).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The most the drain waits, however slow the server.
const MAX_DRAIN: Duration = Duration::from_secs(60);

/// `ringstream bench broadcast`.
#[derive(Debug, Args)]
pub struct BroadcastArgs {
    /// ws://IP:PORT/PATH of a broadcast topic, e.g. ws://127.0.0.1:8080/ws/broadcast/bench;
    /// the publishers connect here, and the subscribers too unless --subscribe-url is given.
    #[arg(long)]
    url: String,
    /// ws://IP:PORT/PATH of the same topic where the subscribers connect, e.g. on another node
    /// of a cluster.
    #[arg(long)]
    subscribe_url: Option<String>,
    /// Speak Socket.IO (engine.io 4 over a WebSocket, e.g. --url
    /// 'ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket&room=bench'): each message is
    /// an event `m` whose argument is the payload, as a Buffer (binary) or as a hexadecimal
    /// string (text).
    #[arg(long, value_enum)]
    socketio: Option<socketio::Payload>,
    /// The PID of a broker between the servers (the Redis of a cluster): its CPU time per
    /// delivery is reported apart from the servers'.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Connections that only read.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Connections that publish (members too: they get their own messages back).
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Offer permessage-deflate as browsers do (`client_max_window_bits`) and inflate what
    /// comes compressed; the run fails if the server does not agree.
    #[arg(long)]
    deflate: bool,
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
    /// How far every subscriber got, per publisher.
    watch: Watch,
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
    let offer = |target: Target| match args.deflate {
        true => target.with_header(DEFLATE_OFFER),
        false => target,
    };
    let publish_target = offer(Target::from_url(&args.url).map_err(anyhow::Error::msg)?);
    let subscribe_url = args.subscribe_url.as_deref().unwrap_or(&args.url);
    let subscribe_target = offer(Target::from_url(subscribe_url).map_err(anyhow::Error::msg)?);
    let framing = args.socketio.map_or(Framing::WebSocket, Framing::SocketIo);
    let shared = Rc::new(Shared {
        start: Instant::now(),
        phase: Cell::new(Phase::Warmup),
        stats: RefCell::new(Stats::new()),
        published: Cell::new(0),
        watch: Watch::new(args.publishers, args.window, args.subscribers),
        publishers: args.publishers,
        size: args.size,
        window: args.window,
    });
    // Subscribers first: every one is a member before a publisher can send.
    let clients = compio::time::timeout(CONNECT_TIMEOUT, async {
        let subscribers = connect_all(&subscribe_target, framing, args.subscribers)
            .await
            .with_context(|| {
                format!(
                    "opening {} subscribers to {subscribe_url}",
                    args.subscribers
                )
            })?;
        let publishers = connect_all(&publish_target, framing, args.publishers)
            .await
            .with_context(|| format!("opening {} publishers to {}", args.publishers, args.url))?;
        anyhow::Ok((subscribers, publishers))
    });
    let connections = args.subscribers + args.publishers;
    let (subscribers, publishers) = clients.await.map_err(|_| {
        anyhow!("opening {connections} connections took over {CONNECT_TIMEOUT:?}")
    })??;
    if args.deflate
        && let Some(refused) = subscribers
            .iter()
            .chain(&publishers)
            .position(|c| !c.deflate_agreed)
    {
        bail!("--deflate: the server did not agree permessage-deflate (connection {refused})");
    }
    let member = |client| {
        Member::new(
            client,
            framing,
            Verifier::new(shared.publishers, shared.size),
        )
    };
    let mut subscribers: Vec<Member> = subscribers.into_iter().map(member).collect();
    let mut publishers: Vec<Member> = publishers.into_iter().map(member).collect();
    if let (Some(_), [publisher, ..], [subscriber, ..]) = (
        &args.subscribe_url,
        &mut publishers[..],
        &mut subscribers[..],
    ) {
        compio::time::timeout(JOIN_TIMEOUT, wait_for_join(publisher, subscriber))
            .await
            .map_err(|_| anyhow!("no probe reached {subscribe_url} within {JOIN_TIMEOUT:?}"))?
            .with_context(|| format!("probing from {} to {subscribe_url}", args.url))?;
    }
    let mut tasks = Vec::with_capacity(connections);
    for member in subscribers {
        tasks.push(compio::runtime::spawn(subscribe(
            member,
            Rc::clone(&shared),
        )));
    }
    for (id, member) in publishers.into_iter().enumerate() {
        tasks.push(compio::runtime::spawn(publish(
            member,
            id as u64,
            Rc::clone(&shared),
        )));
    }

    let window = Window::run_with(&args.measure, &shared.phase, args.broker_pid).await;
    let deliveries = shared.stats.borrow().ops;
    let drain = drain_limit(&args, deliveries as f64 / window.seconds);
    let stuck = join_within(tasks, drain).await;
    if stuck > 0 {
        shared.stats.borrow_mut().error(format!(
            "{stuck} connections had not received every end marker and closed \
             {drain:?} after the measurement"
        ));
    }
    report(
        &args,
        &shared.stats.borrow(),
        shared.published.get(),
        &window,
    )
}

/// How long the end markers may take once the measurement ends: what is in flight then (each
/// publisher's window, to every member) takes `in flight ÷ rate` to deliver at the measured
/// rate; twice that plus `DRAIN_TIMEOUT`, at most `MAX_DRAIN`. A server that needs seconds to
/// deliver its backlog (a Socket.IO node fanning out to 1,000 members) gets them.
fn drain_limit(args: &BroadcastArgs, deliveries_per_second: f64) -> Duration {
    let members = (args.subscribers + args.publishers) as f64;
    let in_flight = (args.publishers * args.window) as f64 * members;
    let backlog = if deliveries_per_second > 0.0 {
        in_flight / deliveries_per_second
    } else {
        0.0
    };
    (DRAIN_TIMEOUT + Duration::from_secs_f64((2.0 * backlog).min(MAX_DRAIN.as_secs_f64())))
        .min(MAX_DRAIN)
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
    let broker_cpu_us = window.broker_cpu_us_per(deliveries);
    let own_cpu_pct = window.own_cpu_pct();
    let (p50, p99) = (stats.percentile_us(0.5), stats.percentile_us(0.99));
    let over = match args.socketio {
        Some(payload) => format!(" over Socket.IO ({})", payload.name()),
        None => String::new(),
    };
    let across = if args.subscribe_url.is_some() {
        ", subscribers on another address"
    } else {
        ""
    };
    let label = format!(
        "broadcast {} B{over}, window {}{across}",
        args.size, args.window
    );
    let (subscribers, publishers) = (args.subscribers, args.publishers);
    if args.measure.json {
        println!(
            "{{\"mode\":\"{label}\",\"connections\":{},\"subscribers\":{subscribers},\
             \"publishers\":{publishers},\"seconds\":{},\"ops\":{deliveries},\
             \"ops_per_sec\":{rate:.0},\"published\":{published},\"errors\":{},\
             \"p50_us\":{p50},\"p99_us\":{p99},\"server_cpu_us_per_op\":{},\
             \"broker_cpu_us_per_op\":{},\"client_cpu_pct\":{}}}",
            subscribers + publishers,
            args.measure.seconds,
            stats.errors,
            server_cpu_us.map_or("null".into(), |v| format!("{v:.3}")),
            broker_cpu_us.map_or("null".into(), |v| format!("{v:.3}")),
            own_cpu_pct.map_or("null".into(), |v| format!("{v:.0}")),
        );
    } else {
        println!(
            "{label}: {subscribers} subscribers, {publishers} publishers, {:.0} s: \
             {published} published, {deliveries} deliveries, {rate:.0} deliveries/s, \
             p50 {p50} µs, p99 {p99} µs, {} errors{}{}{}",
            args.measure.seconds,
            stats.errors,
            server_cpu_us.map_or(String::new(), |v| format!(
                ", server CPU {v:.3} µs/delivery"
            )),
            broker_cpu_us.map_or(String::new(), |v| format!(
                ", broker CPU {v:.3} µs/delivery"
            )),
            own_cpu_pct.map_or(String::new(), |v| format!(", bench CPU {v:.0}%")),
        );
    }
    stats.outcome()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BroadcastArgs,
    }

    fn args(line: &str) -> BroadcastArgs {
        Cli::try_parse_from(
            ["broadcast", "--url", "ws://127.0.0.1:1/t"]
                .into_iter()
                .chain(line.split_whitespace()),
        )
        .unwrap()
        .args
    }

    #[test]
    fn the_drain_waits_twice_the_backlog_at_the_measured_rate() {
        // 64 messages to 1,001 members: 0.064 s at 1 M deliveries/s, 3.2 s at 20,000.
        let shape = args("--subscribers 1000 --window 64");
        let fast = drain_limit(&shape, 1e6).as_secs_f64();
        assert!((fast - 5.128).abs() < 0.001, "{fast}");
        let slow = drain_limit(&shape, 20_000.0).as_secs_f64();
        assert!((slow - 11.406).abs() < 0.001, "{slow}");
        // Nothing delivered, or next to nothing: the floor, and the ceiling.
        assert_eq!(drain_limit(&shape, 0.0), DRAIN_TIMEOUT);
        assert_eq!(drain_limit(&shape, 1.0), MAX_DRAIN);
        // Every publisher's window counts, and every member's copy.
        let more = args("--subscribers 1000 --publishers 4 --window 64");
        assert!(drain_limit(&more, 20_000.0) > drain_limit(&shape, 20_000.0));
        assert!(
            args("--subscribe-url ws://127.0.0.1:2/t --socketio text")
                .socketio
                .is_some()
        );
    }
}
