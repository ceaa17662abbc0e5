//! What a benchmark run counts: operations, errors, a latency histogram, server CPU time.

use std::time::Duration;

/// Latencies are kept per microsecond up to this bound; slower ones share the last bucket.
const HISTOGRAM_US: usize = 100_000;

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
            histogram: vec![0; HISTOGRAM_US + 1],
        }
    }

    /// Counts one verified operation that took `latency`.
    pub fn record(&mut self, latency: Duration) {
        self.ops += 1;
        let us = usize::try_from(latency.as_micros()).unwrap_or(HISTOGRAM_US);
        self.histogram[us.min(HISTOGRAM_US)] += 1;
    }

    /// Counts one failure.
    pub fn error(&mut self, what: String) {
        self.errors += 1;
        self.first_error.get_or_insert(what);
    }

    /// The latency under which `fraction` of the operations completed, in microseconds.
    pub fn percentile_us(&self, fraction: f64) -> usize {
        let target = (self.ops as f64 * fraction).ceil() as u64;
        let mut seen = 0u64;
        for (us, &count) in self.histogram.iter().enumerate() {
            seen += u64::from(count);
            if seen >= target.max(1) {
                return us;
            }
        }
        HISTOGRAM_US
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
        stats.record(Duration::from_secs(5));
        assert_eq!(stats.percentile_us(1.0), HISTOGRAM_US);
    }

    #[test]
    fn reads_its_own_cpu_time() {
        assert!(process_cpu_seconds(std::process::id()).is_some());
    }
}
