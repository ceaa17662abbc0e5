//! Measures what it costs a compio worker thread to talk to Redis, two ways:
//!
//! * (a) `fred` on a dedicated tokio current-thread I/O thread, bridged by bounded channels;
//! * (b) `redis-protocol` (RESP2) on a compio `TcpStream` inside the worker itself.
//!
//! For PUBLISH (sending), SUBSCRIBE (receiving) and an EVALSHA lease renewal it reports CPU
//! time per operation of this process (whole and per thread) and of the Redis server, and
//! latency for the lease. It starts its own redis-server on a free loopback port pinned to
//! CPU 1, pins itself to CPU 0, and stops the server at the end.
//!
//! `redis-link-measure [--secs S] [--reps N] [--send-rates R,..] [--recv-rates R,..]
//!  [--concurrency C,..] [--only send,recv,lease] [--redis-server PATH] [--no-pin]
//!  [--nice N] [--quiet-wait SECS] [--driver io-uring|poll]`

mod cpu;
mod fred_link;
mod link;
mod redis_server;
mod report;
mod resp_link;
mod scenarios;

use std::future::Future;
use std::net::SocketAddr;
use std::process::{Child, ExitCode, Stdio};
use std::thread;
use std::time::Duration;

use compio::driver::{DriverType, ProactorBuilder};
use compio::runtime::RuntimeBuilder;

use crate::fred_link::FredConfig;
use crate::link::{GCRA_SCRIPT, LinkError};
use crate::redis_server::{Control, RedisServer};
use crate::report::{LinkKind, Row, Scenario};
use crate::resp_link::{RespLink, RespSubscriber};
use crate::scenarios::{SendMode, WARMUP, Window};

/// CPU of the measuring process and of the Redis server.
const MEASURE_CPU: usize = 0;
const REDIS_CPU: usize = 1;

/// Commands in flight at most per link: the channel plus the I/O thread's own limit for (a),
/// the connection's limit for (b).
const FRED_QUEUE: usize = 512;
const FRED_IN_FLIGHT: usize = 512;
const RESP_IN_FLIGHT: usize = 1024;
/// Capacity of the I/O thread → worker message channel in (a).
const FRED_MESSAGE_QUEUE: usize = 1024;

/// Other processes' CPU (share of one CPU) below which the machine counts as quiet.
const QUIET_SHARE: f64 = 0.25;

#[derive(Debug, Clone)]
struct Args {
    secs: f64,
    reps: usize,
    send_rates: Vec<u64>,
    recv_rates: Vec<u64>,
    concurrency: Vec<usize>,
    only: Vec<String>,
    redis_server: String,
    pin: bool,
    /// Nice value of the measuring process, the Redis server and the load generator.
    nice: i32,
    /// Longest wait, before each run, for other processes to leave the machine quiet.
    quiet_wait: Duration,
    /// The worker's compio driver.
    driver: DriverType,
}

impl Args {
    fn parse() -> Result<Self, String> {
        let mut args = Self {
            secs: 3.0,
            reps: 5,
            send_rates: vec![5_000, 20_000],
            recv_rates: vec![5_000, 20_000],
            concurrency: vec![1, 16],
            only: vec!["send".into(), "recv".into(), "lease".into()],
            redis_server: "redis-server".into(),
            pin: true,
            nice: -10,
            quiet_wait: Duration::from_secs(10),
            driver: DriverType::IoUring,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            if flag == "--no-pin" {
                args.pin = false;
                continue;
            }
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let bad = |_| format!("bad value for {flag}: {value}");
            match flag.as_str() {
                "--secs" => {
                    args.secs = value
                        .parse()
                        .map_err(|e: std::num::ParseFloatError| bad(e.to_string()))?
                }
                "--reps" => {
                    args.reps = value
                        .parse()
                        .map_err(|e: std::num::ParseIntError| bad(e.to_string()))?
                }
                "--send-rates" => args.send_rates = list(&value).map_err(bad)?,
                "--recv-rates" => args.recv_rates = list(&value).map_err(bad)?,
                "--concurrency" => args.concurrency = list(&value).map_err(bad)?,
                "--only" => args.only = value.split(',').map(str::to_owned).collect(),
                "--redis-server" => args.redis_server = value,
                "--driver" => {
                    args.driver = match value.as_str() {
                        "io-uring" => DriverType::IoUring,
                        "poll" => DriverType::Poll,
                        _ => return Err(format!("--driver is io-uring or poll, not {value}")),
                    }
                }
                "--nice" => {
                    args.nice = value
                        .parse()
                        .map_err(|e: std::num::ParseIntError| bad(e.to_string()))?
                }
                "--quiet-wait" => {
                    let secs: f64 = value
                        .parse()
                        .map_err(|e: std::num::ParseFloatError| bad(e.to_string()))?;
                    args.quiet_wait = Duration::from_secs_f64(secs.max(0.0));
                }
                _ => return Err(format!("unknown argument {flag}")),
            }
        }
        if args.secs.is_nan() || args.secs <= 0.0 || args.reps == 0 {
            return Err("--secs and --reps must be positive".into());
        }
        Ok(args)
    }

    fn window(&self) -> Duration {
        Duration::from_secs_f64(self.secs)
    }
}

fn list<T: std::str::FromStr>(value: &str) -> Result<Vec<T>, String> {
    value
        .split(',')
        .map(|v| v.trim().parse().map_err(|_| format!("not a number: {v}")))
        .collect()
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    // Internal: the load generator of the receiving measurement, started as a child process.
    if argv.get(1).map(String::as_str) == Some("publish-load") {
        return match load_generator(&argv[2..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("publish-load: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let args = match Args::parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), LinkError> {
    let pin = args.pin && cpu::online_cpus() >= 2;
    if args.pin && !pin {
        eprintln!("fewer than 2 CPUs: not pinning");
    }
    if pin {
        cpu::pin_current_thread(MEASURE_CPU)?;
    }
    if args.nice != 0 {
        // Threads started from now on inherit it.
        cpu::set_current_thread_nice(args.nice)?;
    }
    let redis = RedisServer::start(&args.redis_server, pin.then_some(REDIS_CPU), args.nice)?;
    let mut control = Control::connect(redis.addr())?;
    let lease_sha = control.call_text(&[b"SCRIPT", b"LOAD", GCRA_SCRIPT.as_bytes()])?;
    let info = control.call_text(&[b"INFO", b"server"])?;
    let redis_version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .to_owned();

    let env = report::Environment::probe(redis_version, pin, args.nice, args.driver);
    println!("{env}");
    eprintln!(
        "redis-server pid {} on 127.0.0.1:{}, window {} s, {} repetitions",
        redis.pid(),
        redis.port(),
        args.secs,
        args.reps
    );

    let mut scenarios = Vec::new();
    if args.only.iter().any(|o| o == "send") {
        scenarios.extend(
            args.send_rates
                .iter()
                .map(|&r| Scenario::Send(SendMode::Rate(r))),
        );
        scenarios.push(Scenario::Send(SendMode::Saturate));
    }
    if args.only.iter().any(|o| o == "recv") {
        scenarios.extend(args.recv_rates.iter().map(|&r| Scenario::Receive(r)));
    }
    if args.only.iter().any(|o| o == "lease") {
        scenarios.extend(args.concurrency.iter().map(|&c| Scenario::Lease(c)));
    }

    let ctx = Context {
        addr: redis.addr(),
        redis_pid: redis.pid(),
        lease_sha,
        window: args.window(),
        pin,
        nice: args.nice,
        driver: args.driver,
    };
    let mut rows = Vec::new();
    for scenario in scenarios {
        let mut row = Row::new(scenario);
        for rep in 0..args.reps {
            // Alternate which option goes first, so that drift affects both alike.
            let order = if rep % 2 == 0 {
                [LinkKind::Fred, LinkKind::Resp]
            } else {
                [LinkKind::Resp, LinkKind::Fred]
            };
            for option in order {
                // A failed run is reported and left out; the others still count.
                match measure(args, &ctx, scenario, option, rep) {
                    Ok(window) => row.add(rep, option, window),
                    Err(e) => eprintln!("{scenario} | {option} | rep {rep} | failed: {e}"),
                }
            }
        }
        rows.push(row);
    }
    println!("{}", report::table(&rows));
    drop(control);
    drop(redis);
    Ok(())
}

/// What every run needs to know.
#[derive(Debug, Clone)]
struct Context {
    addr: SocketAddr,
    redis_pid: u32,
    lease_sha: String,
    window: Duration,
    pin: bool,
    nice: i32,
    driver: DriverType,
}

/// Runs one measurement, after waiting (a bounded time) for other processes of the machine
/// to leave it quiet.
fn measure(
    args: &Args,
    ctx: &Context,
    scenario: Scenario,
    option: LinkKind,
    rep: usize,
) -> Result<Window, LinkError> {
    let share = cpu::wait_for_quiet(QUIET_SHARE, args.quiet_wait)?;
    if share > QUIET_SHARE {
        eprintln!(
            "  (others still use {:.0}% of a CPU; running anyway)",
            share * 100.0
        );
    }
    let window = run_once(ctx, scenario, option)?;
    eprintln!("{}", report::describe(scenario, option, rep, &window));
    Ok(window)
}

fn run_once(ctx: &Context, scenario: Scenario, option: LinkKind) -> Result<Window, LinkError> {
    let (redis_pid, window, addr) = (ctx.redis_pid, ctx.window, ctx.addr);
    match option {
        LinkKind::Fred => {
            let subscribe = matches!(scenario, Scenario::Receive(_)).then_some(FRED_MESSAGE_QUEUE);
            let (link, messages, io) = fred_link::start(FredConfig {
                port: addr.port(),
                lease_sha: ctx.lease_sha.clone(),
                queue: FRED_QUEUE,
                max_in_flight: FRED_IN_FLIGHT,
                subscribe,
            })?;
            let (pin, nice) = (ctx.pin, ctx.nice);
            let result = on_worker(ctx.driver, move || async move {
                match scenario {
                    Scenario::Send(mode) => {
                        scenarios::measure_publish(&link, mode, window, redis_pid).await
                    }
                    Scenario::Lease(c) => {
                        scenarios::measure_lease(&link, c, window, redis_pid).await
                    }
                    Scenario::Receive(rate) => {
                        let mut messages = messages.ok_or(LinkError::Closed)?;
                        let (warmup, count) = receive_counts(rate, window);
                        let load = LoadGenerator::start(addr, rate, warmup + count, pin, nice)?;
                        let result = scenarios::measure_receive(
                            &mut messages,
                            warmup,
                            count,
                            redis_pid,
                            &[load.pid()],
                        )
                        .await;
                        load.finish()?;
                        let mut window = result?;
                        window.failures = messages.lost();
                        Ok(window)
                    }
                }
            });
            io.join();
            result
        }
        LinkKind::Resp => {
            let lease_sha = ctx.lease_sha.clone();
            let (pin, nice) = (ctx.pin, ctx.nice);
            on_worker(ctx.driver, move || async move {
                match scenario {
                    Scenario::Send(mode) => {
                        let link = RespLink::connect(addr, RESP_IN_FLIGHT, lease_sha).await?;
                        scenarios::measure_publish(&link, mode, window, redis_pid).await
                    }
                    Scenario::Lease(c) => {
                        let link = RespLink::connect(addr, RESP_IN_FLIGHT, lease_sha).await?;
                        scenarios::measure_lease(&link, c, window, redis_pid).await
                    }
                    Scenario::Receive(rate) => {
                        let mut subscriber = RespSubscriber::connect(addr, link::CHANNEL).await?;
                        let (warmup, count) = receive_counts(rate, window);
                        let load = LoadGenerator::start(addr, rate, warmup + count, pin, nice)?;
                        let result = scenarios::measure_receive(
                            &mut subscriber,
                            warmup,
                            count,
                            redis_pid,
                            &[load.pid()],
                        )
                        .await;
                        load.finish()?;
                        result
                    }
                }
            })
        }
    }
}

/// Messages of the warm-up and of the window when receiving at `rate`.
fn receive_counts(rate: u64, window: Duration) -> (u64, u64) {
    let per = |d: Duration| (u128::from(rate) * d.as_nanos() / 1_000_000_000) as u64;
    (per(WARMUP), per(window))
}

/// Runs `body` on a fresh thread named `rs-worker` with its own compio runtime on `driver`,
/// bounded in time.
fn on_worker<F, Fut>(driver: DriverType, body: F) -> Result<Window, LinkError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<Window, LinkError>>,
{
    let worker = thread::Builder::new()
        .name("rs-worker".into())
        .spawn(move || {
            let mut proactor = ProactorBuilder::new();
            proactor.driver_type(driver);
            let runtime = RuntimeBuilder::new().with_proactor(proactor).build()?;
            runtime.block_on(async move {
                let limit = WARMUP * 2 + Duration::from_secs(60);
                compio::time::timeout(limit, body())
                    .await
                    .unwrap_or(Err(LinkError::Timeout))
            })
        })?;
    worker
        .join()
        .unwrap_or(Err(LinkError::Protocol("worker thread panicked".into())))
}

/// A child process (this program, `publish-load`) that publishes at a fixed rate on its own
/// (b)-style connection, pinned with the Redis server so that it does not share the measured
/// CPU. Its CPU time is not part of this process's (and is reported apart).
#[derive(Debug)]
struct LoadGenerator {
    child: Child,
}

impl LoadGenerator {
    fn start(
        addr: SocketAddr,
        rate: u64,
        count: u64,
        pin: bool,
        nice: i32,
    ) -> std::io::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut command = redis_server::launcher(exe.as_os_str(), pin.then_some(REDIS_CPU), nice);
        command
            .arg("publish-load")
            .args([addr.to_string(), rate.to_string(), count.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        Ok(Self {
            child: command.spawn()?,
        })
    }

    fn pid(&self) -> u32 {
        // nice and taskset replace themselves with the generator: this is the generator's PID.
        self.child.id()
    }

    fn finish(mut self) -> std::io::Result<()> {
        let status = self.child.wait()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "publish-load exited with {status}"
            )))
        }
    }
}

/// `publish-load ADDR RATE COUNT`: publishes COUNT messages at RATE per second, then waits
/// for every reply.
fn load_generator(args: &[String]) -> Result<(), LinkError> {
    let parse_err = || LinkError::Protocol("usage: publish-load ADDR RATE COUNT".into());
    let [addr, rate, count] = args else {
        return Err(parse_err());
    };
    let addr: SocketAddr = addr.parse().map_err(|_| parse_err())?;
    let rate: u64 = rate.parse().map_err(|_| parse_err())?;
    let count: u64 = count.parse().map_err(|_| parse_err())?;
    let runtime = RuntimeBuilder::new().build()?;
    runtime.block_on(async move {
        let link = RespLink::connect(addr, RESP_IN_FLIGHT, String::new()).await?;
        let mut seq = 0;
        scenarios::publish_at_rate(&link, rate, count, &mut seq).await?;
        scenarios::drain(&link, seq).await
    })
}
