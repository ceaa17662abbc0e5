//! Turning measured windows into per-operation figures: one line per run, and a Markdown table
//! of medians over the repetitions.

use std::fmt::{self, Write as _};
use std::fs;

use crate::scenarios::{SendMode, Window};

/// Thread names given by this program.
pub const WORKER_THREAD: &str = "rs-worker";
pub const IO_THREAD: &str = "rs-fred-io";

/// Which way the worker talks to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// (a) fred on a tokio I/O thread, bridged by channels.
    Fred,
    /// (b) redis-protocol on a compio socket in the worker.
    Resp,
}

impl fmt::Display for LinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fred => "(a) fred + I/O thread",
            Self::Resp => "(b) redis-protocol in worker",
        })
    }
}

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// The worker publishes.
    Send(SendMode),
    /// The worker receives from its subscription at this rate (msg/s).
    Receive(u64),
    /// The worker renews leases with this many calls outstanding.
    Lease(usize),
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Send(SendMode::Rate(r)) => write!(f, "PUBLISH sent, {r}/s"),
            Self::Send(SendMode::Saturate) => f.write_str("PUBLISH sent, saturated"),
            Self::Receive(r) => write!(f, "message received, {r}/s"),
            Self::Lease(c) => write!(f, "lease EVALSHA, {c} in flight"),
        }
    }
}

/// Per-operation figures of one window.
#[derive(Debug, Clone, Copy)]
struct Figures {
    ops_per_s: f64,
    process_us: f64,
    worker_us: f64,
    io_us: f64,
    redis_us: f64,
    p50_us: f64,
    p99_us: f64,
    failures: f64,
    /// Share of one CPU used by other processes during the window.
    other: f64,
    /// Share of the machine's CPUs stolen by the hypervisor during the window.
    steal: f64,
}

impl Figures {
    fn of(window: &Window) -> Self {
        let ops = window.ops.max(1) as f64;
        let usage = &window.usage;
        let thread = |name: &str| usage.threads_us.get(name).copied().unwrap_or(0.0) / ops;
        let mut latencies = window.latencies_ns.clone();
        latencies.sort_unstable();
        let wall_us = usage.wall.as_secs_f64() * 1e6;
        Self {
            ops_per_s: window.ops as f64 / usage.wall.as_secs_f64(),
            process_us: usage.process_us / ops,
            worker_us: thread(WORKER_THREAD),
            io_us: thread(IO_THREAD),
            redis_us: usage.redis_us / ops,
            p50_us: percentile(&latencies, 0.50) / 1e3,
            p99_us: percentile(&latencies, 0.99) / 1e3,
            failures: window.failures as f64,
            other: other_share(window),
            steal: usage.steal_us / (wall_us * crate::cpu::online_cpus() as f64),
        }
    }
}

/// Share of one CPU that other processes of the machine used during `window`.
pub fn other_share(window: &Window) -> f64 {
    window.usage.other_us / 1e6 / window.usage.wall.as_secs_f64()
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Median, smallest and largest of `values`.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(values.to_vec()), min, max)
}

/// All repetitions of one scenario.
#[derive(Debug)]
pub struct Row {
    scenario: Scenario,
    /// (repetition, link, window)
    runs: Vec<(usize, LinkKind, Window)>,
}

impl Row {
    pub fn new(scenario: Scenario) -> Self {
        Self {
            scenario,
            runs: Vec::new(),
        }
    }

    pub fn add(&mut self, rep: usize, kind: LinkKind, window: Window) {
        self.runs.push((rep, kind, window));
    }

    fn figures(&self, kind: LinkKind) -> Vec<Figures> {
        self.runs
            .iter()
            .filter(|(_, k, _)| *k == kind)
            .map(|(_, _, w)| Figures::of(w))
            .collect()
    }

    /// (a) ÷ (b) of one figure for each repetition (the two ran back to back).
    fn ratios(&self, figure: fn(&Figures) -> f64) -> Vec<f64> {
        let of = |rep: usize, kind: LinkKind| {
            self.runs
                .iter()
                .find(|(r, k, _)| *r == rep && *k == kind)
                .map(|(_, _, w)| figure(&Figures::of(w)))
        };
        let mut reps: Vec<usize> = self.runs.iter().map(|(r, _, _)| *r).collect();
        reps.dedup();
        reps.iter()
            .filter_map(
                |&rep| match (of(rep, LinkKind::Fred), of(rep, LinkKind::Resp)) {
                    (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                    _ => None,
                },
            )
            .collect()
    }
}

/// One line describing a run (progress output).
pub fn describe(scenario: Scenario, kind: LinkKind, rep: usize, window: &Window) -> String {
    let f = Figures::of(window);
    let u = &window.usage;
    let ops = window.ops.max(1) as f64;
    let mut line = format!(
        "{scenario} | {kind} | rep {rep} | {} ops in {:.2} s ({:.0}/s) | process {:.2} µs/op |",
        window.ops,
        u.wall.as_secs_f64(),
        f.ops_per_s,
        f.process_us
    );
    for (name, us) in &u.threads_us {
        let _ = write!(line, " {name} {:.2}", us / ops);
    }
    let _ = write!(
        line,
        " | redis {:.2} µs/op (stat {:.2}) | helpers {:.2} µs/op | others {:.0}% of a CPU, steal {:.0} ms, preempted {}/{} | failures {}",
        f.redis_us,
        u.redis_stat_us / ops,
        u.helpers_us / ops,
        f.other * 100.0,
        u.steal_us / 1e3,
        u.process_preempted,
        u.redis_preempted,
        window.failures
    );
    if !window.latencies_ns.is_empty() {
        let _ = write!(line, " | p50 {:.1} µs p99 {:.1} µs", f.p50_us, f.p99_us);
    }
    line
}

/// The Markdown tables: medians per option, then (a) ÷ (b) per repetition pair.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str(
        "| Measurement | Option | ops/s | process CPU µs/op: median (min–max) | worker thread µs/op | I/O thread µs/op | redis CPU µs/op | p50 µs | p99 µs | failures | others' CPU % | steal % |\n",
    );
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for row in rows {
        for kind in [LinkKind::Fred, LinkKind::Resp] {
            let figures = row.figures(kind);
            if figures.is_empty() {
                continue;
            }
            let m = |f: fn(&Figures) -> f64| median(figures.iter().map(f).collect());
            let (process, low, high) =
                spread(&figures.iter().map(|f| f.process_us).collect::<Vec<_>>());
            let latency = |v: f64| {
                if v.is_nan() {
                    "–".to_owned()
                } else {
                    format!("{v:.0}")
                }
            };
            let io = if kind == LinkKind::Fred {
                format!("{:.2}", m(|f| f.io_us))
            } else {
                "–".into()
            };
            let _ = writeln!(
                out,
                "| {} | {kind} | {:.0} | {process:.2} ({low:.2}–{high:.2}) | {:.2} | {io} | {:.2} | {} | {} | {} | {:.0} | {:.0} |",
                row.scenario,
                m(|f| f.ops_per_s),
                m(|f| f.worker_us),
                m(|f| f.redis_us),
                latency(m(|f| f.p50_us)),
                latency(m(|f| f.p99_us)),
                figures.iter().map(|f| f.failures).sum::<f64>(),
                m(|f| f.other) * 100.0,
                m(|f| f.steal) * 100.0,
            );
        }
    }
    out.push_str(
        "\n| Measurement | (a) ÷ (b) process CPU: median (min–max) | (a) ÷ (b) redis CPU | (a) ÷ (b) p50 latency | pairs |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|\n");
    for row in rows {
        let process = row.ratios(|f| f.process_us);
        if process.is_empty() {
            continue;
        }
        let (ratio, low, high) = spread(&process);
        let redis = median(row.ratios(|f| f.redis_us));
        let p50 = median(row.ratios(|f| f.p50_us));
        let p50 = if p50.is_nan() {
            "–".to_owned()
        } else {
            format!("{p50:.2}")
        };
        let _ = writeln!(
            out,
            "| {} | {ratio:.2} ({low:.2}–{high:.2}) | {redis:.2} | {p50} | {} |",
            row.scenario,
            process.len()
        );
    }
    out
}

/// The machine the figures come from.
#[derive(Debug)]
pub struct Environment {
    cpu_model: String,
    kernel: String,
    redis_version: String,
    pinned: bool,
    nice: i32,
    driver: compio::driver::DriverType,
}

impl Environment {
    pub fn probe(
        redis_version: String,
        pinned: bool,
        nice: i32,
        driver: compio::driver::DriverType,
    ) -> Self {
        let cpu_model = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            })
            .unwrap_or_else(|| "?".into());
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_owned())
            .unwrap_or_else(|_| "?".into());
        Self {
            cpu_model,
            kernel,
            redis_version,
            pinned,
            nice,
            driver,
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "CPU: {} ({} CPUs online)",
            self.cpu_model,
            crate::cpu::online_cpus()
        )?;
        writeln!(f, "Kernel: {}", self.kernel)?;
        writeln!(f, "Redis: {}", self.redis_version)?;
        writeln!(
            f,
            "Pinning: {}",
            if self.pinned {
                "measuring process on CPU 0, redis-server (and the receive test's load generator) on CPU 1"
            } else {
                "none"
            }
        )?;
        writeln!(f, "Nice value of all three: {}", self.nice)?;
        write!(f, "Worker's compio driver: {:?}", self.driver)
    }
}
