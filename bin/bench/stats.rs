//! What a benchmark run counts: operations, errors, a latency histogram, server CPU time, and
//! how busy a pinned process's core was.

use std::time::Duration;

/// Latencies are kept per microsecond below this bound...
const FINE_US: usize = 100_000;
/// ...then per millisecond...
const COARSE_STEP_US: usize = 1_000;
/// ...up to this bound; slower ones share the last bucket.
const MAX_US: usize = 10_000_000;
/// Buckets of the histogram.
const BUCKETS: usize = FINE_US + (MAX_US - FINE_US) / COARSE_STEP_US + 1;

/// The bucket of a latency of `us` microseconds.
fn bucket(us: usize) -> usize {
    if us < FINE_US {
        us
    } else {
        FINE_US + (us.min(MAX_US) - FINE_US) / COARSE_STEP_US
    }
}

/// The lowest latency, in microseconds, that falls in bucket `b`.
fn bucket_floor_us(b: usize) -> usize {
    if b < FINE_US {
        b
    } else {
        FINE_US + (b - FINE_US) * COARSE_STEP_US
    }
}

/// Counters of one run (single-threaded: the client runs on one core).
#[derive(Debug)]
pub struct Stats {
    /// Completed, verified operations inside the measured window.
    pub ops: u64,
    /// Failed operations (wrong echo, refused handshake, I/O error), whenever they happened.
    pub errors: u64,
    /// The first error, for the report.
    pub first_error: Option<String>,
    histogram: Vec<u32>,
}

impl Stats {
    /// Empty counters.
    pub fn new() -> Self {
        Self {
            ops: 0,
            errors: 0,
            first_error: None,
            histogram: vec![0; BUCKETS],
        }
    }

    /// Counts one verified operation that took `latency`.
    pub fn record(&mut self, latency: Duration) {
        self.ops += 1;
        let us = usize::try_from(latency.as_micros()).unwrap_or(MAX_US);
        self.histogram[bucket(us)] += 1;
    }

    /// Counts one failure.
    pub fn error(&mut self, what: String) {
        self.errors += 1;
        self.first_error.get_or_insert(what);
    }

    /// The end of a run: the first error printed, and an error if any operation failed.
    pub fn outcome(&self) -> anyhow::Result<()> {
        if let Some(first) = &self.first_error {
            eprintln!("first error: {first}");
        }
        if self.errors > 0 {
            anyhow::bail!("{} operations failed", self.errors);
        }
        Ok(())
    }

    /// The latency under which `fraction` of the operations completed, in microseconds (to
    /// the microsecond below 100 ms, to the millisecond below 10 s, 10 s past it).
    pub fn percentile_us(&self, fraction: f64) -> usize {
        let target = (self.ops as f64 * fraction).ceil() as u64;
        let mut seen = 0u64;
        for (b, &count) in self.histogram.iter().enumerate() {
            seen += u64::from(count);
            if seen >= target.max(1) {
                return bucket_floor_us(b);
            }
        }
        MAX_US
    }
}

/// User plus system CPU seconds a process has used, from `/proc/PID/stat`.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some((utime + stime) / ticks.max(1) as f64)
}

/// CPU seconds the threads `pid` has now have used, from each one's `schedstat` (in
/// nanoseconds, where `/proc/PID/stat` counts 10 ms ticks). Threads that ended are not counted,
/// so this suits a process whose threads live as long as it does (redis-server's), and makes a
/// small share of a core over a few seconds readable. `None` without schedstats.
pub fn threads_cpu_seconds(pid: u32) -> Option<f64> {
    let mut total_ns = 0u64;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        // A thread that ends between the listing and the read is skipped.
        let Ok(text) = std::fs::read_to_string(entry.ok()?.path().join("schedstat")) else {
            continue;
        };
        total_ns += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total_ns as f64 / 1e9)
}

/// The one CPU `pid` may run on (`taskset -c N`), from `Cpus_allowed_list` in
/// `/proc/PID/status`; `None` when it may run on several.
pub fn pinned_core(pid: u32) -> Option<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let list = status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))?;
    list.trim().parse().ok()
}

/// Busy and total clock ticks of CPU `core` since boot, from `/proc/stat`. Busy is user,
/// system, irq and softirq: what the core did for whichever process, including the kernel's
/// network work that no process's CPU time shows. Niced time is left out: on a shared machine
/// background jobs (builds, test runs) run niced, and a benchmark's processes do not. Total
/// adds nice, idle, iowait and steal.
pub fn core_ticks(core: usize) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let name = format!("cpu{core}");
    let line = stat
        .lines()
        .find(|line| line.split_whitespace().next() == Some(name.as_str()))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = ticks[..] else {
        return None;
    };
    let busy = user + system + irq + softirq;
    Some((busy, busy + nice + idle + iowait + steal))
}

/// How busy a process's core is over a window, when the process is pinned to one.
#[derive(Debug, Clone, Copy)]
pub struct CoreLoad {
    core: usize,
    start: (u64, u64),
}

impl CoreLoad {
    /// Starts the window on `pid`'s core; `None` when it is not pinned to one core.
    pub fn start(pid: u32) -> Option<Self> {
        let core = pinned_core(pid)?;
        Some(Self {
            core,
            start: core_ticks(core)?,
        })
    }

    /// Percent of the window the core was busy.
    pub fn busy_pct(&self) -> Option<f64> {
        let (busy, total) = core_ticks(self.core)?;
        let total = total.checked_sub(self.start.1).filter(|&t| t > 0)?;
        Some((busy - self.start.0) as f64 * 100.0 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut stats = Stats::new();
        for us in 1..=100 {
            stats.record(Duration::from_micros(us));
        }
        assert_eq!(stats.percentile_us(0.5), 50);
        assert_eq!(stats.percentile_us(0.99), 99);
        stats.record(Duration::from_secs(50));
        assert_eq!(stats.percentile_us(1.0), MAX_US);
    }

    #[test]
    fn slow_latencies_are_kept_to_the_millisecond() {
        let mut stats = Stats::new();
        for ms in [99, 100, 250, 2_500, 9_999] {
            stats.record(Duration::from_micros(ms * 1000 + 999));
        }
        let got: Vec<usize> = [0.2, 0.4, 0.6, 0.8, 1.0]
            .iter()
            .map(|&f| stats.percentile_us(f))
            .collect();
        assert_eq!(got, [99_999, 100_000, 250_000, 2_500_000, 9_999_000]);
        assert_eq!(bucket(MAX_US), BUCKETS - 1);
        assert_eq!(bucket_floor_us(bucket(MAX_US)), MAX_US);
    }

    #[test]
    fn reads_its_own_cpu_time() {
        assert!(process_cpu_seconds(std::process::id()).is_some());
    }

    #[test]
    fn reads_its_threads_cpu_time_finer_than_a_tick() {
        let pid = std::process::id();
        let Some(before) = threads_cpu_seconds(pid) else {
            return; // a kernel without schedstats
        };
        // Spin until the sum has grown by 1 ms: a reader of 10 ms ticks would jump from 0 to
        // 10 ms or more, this one stops just past 1 ms.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let grown = loop {
            let grown = threads_cpu_seconds(pid).expect("schedstat") - before;
            if grown >= 0.001 || std::time::Instant::now() > deadline {
                break grown;
            }
        };
        assert!((0.001..0.009).contains(&grown), "grew by {grown} s");
        assert_eq!(threads_cpu_seconds(u32::MAX), None);
    }

    #[test]
    fn reads_core_ticks() {
        let (busy, total) = core_ticks(0).expect("cpu0 in /proc/stat");
        assert!(busy <= total && total > 0);
        assert_eq!(core_ticks(100_000), None);
        // Pinned or not, the answer is a core or None, never a panic.
        if let Some(core) = pinned_core(std::process::id()) {
            assert!(core_ticks(core).is_some());
        }
    }
}
