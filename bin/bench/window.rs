//! The measurement window every load shares: warm-up, then the measured seconds with the CPU
//! time the server (every process of it), a broker between its nodes and the bench used in
//! them, then the connections' stop.

use std::cell::Cell;
use std::time::{Duration, Instant};

use super::stats::{CoreLoad, process_cpu_seconds, threads_cpu_seconds};
use super::{Measure, Phase};

/// The measured window: its length, the CPU seconds used in it, and how busy the server's
/// and the bench's cores were (in percent; when each is pinned to one core).
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Seconds from the start of the measurement to its end, as the clock saw them.
    pub seconds: f64,
    /// CPU seconds the server used in the window (given `--server-pid`; every process of it).
    pub server_cpu: Option<f64>,
    /// CPU seconds the broker between the server's nodes used in the window (given its PID),
    /// to the nanosecond where the kernel keeps schedstats.
    pub broker_cpu: Option<f64>,
    /// CPU seconds this process used in the window.
    pub own_cpu: Option<f64>,
    /// How busy the server's core was, when it is pinned to one.
    pub server_core_busy: Option<f64>,
    /// How busy the bench's core was, when it is pinned to one.
    pub own_core_busy: Option<f64>,
}

impl Window {
    /// Runs the window over a load already started in [`Phase::Warmup`]: waits
    /// `measure.warmup` seconds, sets `phase` to [`Phase::Measure`] for `measure.seconds`,
    /// then to [`Phase::Done`], reading the CPU times and core loads at both ends.
    pub async fn run(measure: &Measure, phase: &Cell<Phase>) -> Self {
        Self::run_with(measure, phase, None).await
    }

    /// [`Window::run`], also reading the CPU time of `broker`, a process between the
    /// server's nodes.
    pub async fn run_with(measure: &Measure, phase: &Cell<Phase>, broker: Option<u32>) -> Self {
        compio::time::sleep(Duration::from_secs_f64(measure.warmup)).await;
        let own_pid = std::process::id();
        let server_before = cpu_seconds_of(&measure.server_pid);
        // A broker uses a few percent of a core: ticks of 10 ms would not show it.
        let broker_cpu_seconds = match broker.and_then(threads_cpu_seconds) {
            Some(_) => threads_cpu_seconds,
            None => process_cpu_seconds,
        };
        let broker_before = broker.and_then(broker_cpu_seconds);
        let own_before = process_cpu_seconds(own_pid);
        let server_core = measure
            .server_pid
            .first()
            .copied()
            .and_then(CoreLoad::start);
        let own_core = CoreLoad::start(own_pid);
        let started = Instant::now();
        phase.set(Phase::Measure);
        compio::time::sleep(Duration::from_secs_f64(measure.seconds)).await;
        phase.set(Phase::Done);
        let seconds = started.elapsed().as_secs_f64();
        let server_after = cpu_seconds_of(&measure.server_pid);
        let broker_after = broker.and_then(broker_cpu_seconds);
        let own_after = process_cpu_seconds(own_pid);
        Self {
            seconds,
            server_cpu: server_before.zip(server_after).map(|(a, b)| b - a),
            broker_cpu: broker_before.zip(broker_after).map(|(a, b)| b - a),
            own_cpu: own_before.zip(own_after).map(|(a, b)| b - a),
            server_core_busy: server_core.and_then(|load| load.busy_pct()),
            own_core_busy: own_core.and_then(|load| load.busy_pct()),
        }
    }

    /// The server's CPU microseconds per operation, given `ops` operations (none for 0).
    pub fn server_cpu_us_per(&self, ops: u64) -> Option<f64> {
        self.server_cpu
            .filter(|_| ops > 0)
            .map(|cpu| cpu * 1e6 / ops as f64)
    }

    /// The broker's CPU microseconds per operation, given `ops` operations (none for 0).
    pub fn broker_cpu_us_per(&self, ops: u64) -> Option<f64> {
        self.broker_cpu
            .filter(|_| ops > 0)
            .map(|cpu| cpu * 1e6 / ops as f64)
    }

    /// The share of one core this process used in the window, in percent.
    pub fn own_cpu_pct(&self) -> Option<f64> {
        self.own_cpu.map(|cpu| cpu * 100.0 / self.seconds)
    }
}

/// The CPU seconds `pids` used together, or `None` when there are none or one cannot be read.
fn cpu_seconds_of(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| process_cpu_seconds(pid)).sum()
}

/// Waits for `tasks` to end, all within `limit` from now; returns how many were still running
/// then (they are abandoned).
pub async fn join_within<T>(tasks: Vec<compio::runtime::JoinHandle<T>>, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    let mut stuck = 0;
    for task in tasks {
        let left = deadline.saturating_duration_since(Instant::now());
        if compio::time::timeout(left, task).await.is_err() {
            stuck += 1;
        }
    }
    stuck
}

#[cfg(test)]
mod tests {
    use super::cpu_seconds_of;

    #[test]
    fn the_cpu_time_of_several_processes_adds_up() {
        let own = std::process::id();
        assert_eq!(cpu_seconds_of(&[]), None);
        let one = cpu_seconds_of(&[own]).expect("own CPU time");
        let two = cpu_seconds_of(&[own, own]).expect("own CPU time twice");
        assert!(two >= 2.0 * one, "{two} < 2 × {one}");
        // A process that is gone makes the sum unknown, not smaller.
        assert_eq!(cpu_seconds_of(&[own, u32::MAX]), None);
    }
}
