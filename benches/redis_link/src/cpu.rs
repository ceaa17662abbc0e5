//! CPU time read from the kernel: the whole measuring process (`getrusage`), each of its
//! threads (`/proc/self/task/*/schedstat`), and the Redis server (`/proc/PID/task/*/schedstat`
//! and `/proc/PID/stat`).
//!
//! `schedstat`'s first field is the thread's time on a CPU in nanoseconds (user and system
//! together), so short runs are measured exactly rather than in 10 ms clock ticks.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::time::{Duration, Instant};

/// CPU counters at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    /// User + system time of the whole process, in microseconds (`RUSAGE_SELF`).
    process_us: u64,
    /// Times a thread of this process was preempted (`ru_nivcsw`).
    process_preempted: u64,
    /// Times a thread of the Redis server was preempted (`nonvoluntary_ctxt_switches`).
    redis_preempted: u64,
    /// Each live thread of this process: (tid, name, ns on CPU).
    threads: Vec<(u32, String, u64)>,
    /// Sum over the Redis server's threads of their ns on CPU.
    redis_ns: u64,
    /// utime + stime of the Redis server from `/proc/PID/stat`, in clock ticks.
    redis_ticks: u64,
    /// Sum over helper processes of this program (the load generator) of their ns on CPU.
    helpers_ns: u64,
    /// Busy and stolen time of the whole machine (`/proc/stat`).
    system: SystemTicks,
}

/// The `cpu` line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemTicks {
    /// user + nice + system + irq + softirq, all CPUs.
    busy: u64,
    /// Time the hypervisor ran something else while a CPU of this machine wanted to run.
    steal: u64,
}

impl SystemTicks {
    pub fn read() -> io::Result<Self> {
        let text = fs::read_to_string("/proc/stat")?;
        let line = text.lines().find(|l| l.starts_with("cpu ")).unwrap_or("");
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or(0);
        Ok(Self {
            busy: field(0) + field(1) + field(2) + field(5) + field(6),
            steal: field(7),
        })
    }
}

/// CPU spent between two snapshots.
#[derive(Debug, Clone)]
pub struct Usage {
    pub wall: Duration,
    /// Whole measuring process, µs (getrusage).
    pub process_us: f64,
    /// Per thread name, µs (schedstat); threads sharing a name are added up.
    pub threads_us: BTreeMap<String, f64>,
    /// Redis server, µs (schedstat of all its threads).
    pub redis_us: f64,
    /// Redis server, µs (utime + stime of /proc/PID/stat: 10 ms resolution, a cross-check).
    pub redis_stat_us: f64,
    /// Helper processes (load generator), µs.
    pub helpers_us: f64,
    /// CPU the rest of the machine used meanwhile (other processes, e.g. builds), µs: the
    /// machine's busy time less this process, Redis and the helpers (10 ms resolution).
    pub other_us: f64,
    /// Time stolen by the hypervisor, µs.
    pub steal_us: f64,
    /// Preemptions of this process's threads and of Redis's (a sign of competition for the
    /// CPU, from other processes or between the process's own threads).
    pub process_preempted: u64,
    pub redis_preempted: u64,
}

impl Snapshot {
    /// Reads every counter now; `redis_pid` is the server started by this program,
    /// `helpers` other processes it started whose CPU is not the measuring process's.
    pub fn take(redis_pid: u32, helpers: &[u32]) -> io::Result<Self> {
        let at = Instant::now();
        let mut helpers_ns = 0;
        for &pid in helpers {
            helpers_ns += process_schedstat_ns(pid)?;
        }
        let (process_us, process_preempted) = process_rusage()?;
        Ok(Self {
            at,
            process_us,
            process_preempted,
            redis_preempted: preemptions(redis_pid)?,
            threads: own_threads()?,
            redis_ns: process_schedstat_ns(redis_pid)?,
            redis_ticks: stat_ticks(redis_pid)?,
            helpers_ns,
            system: SystemTicks::read()?,
        })
    }

    /// What was spent from `self` to `later`.
    pub fn usage_until(&self, later: &Snapshot) -> Usage {
        let mut threads_us = BTreeMap::new();
        for (tid, name, ns) in &later.threads {
            // A thread that started after `self` counts from zero.
            let before = self
                .threads
                .iter()
                .find(|(t, _, _)| t == tid)
                .map_or(0, |(_, _, ns)| *ns);
            *threads_us.entry(name.clone()).or_insert(0.0) +=
                ns.saturating_sub(before) as f64 / 1e3;
        }
        let tick_us = 1e6 / clock_ticks_per_second();
        let process_us = later.process_us.saturating_sub(self.process_us) as f64;
        let redis_us = later.redis_ns.saturating_sub(self.redis_ns) as f64 / 1e3;
        let helpers_us = later.helpers_ns.saturating_sub(self.helpers_ns) as f64 / 1e3;
        let busy_us = later.system.busy.saturating_sub(self.system.busy) as f64 * tick_us;
        Usage {
            wall: later.at.duration_since(self.at),
            process_us,
            threads_us,
            redis_us,
            redis_stat_us: later.redis_ticks.saturating_sub(self.redis_ticks) as f64 * tick_us,
            helpers_us,
            other_us: (busy_us - process_us - redis_us - helpers_us).max(0.0),
            steal_us: later.system.steal.saturating_sub(self.system.steal) as f64 * tick_us,
            process_preempted: later
                .process_preempted
                .saturating_sub(self.process_preempted),
            redis_preempted: later.redis_preempted.saturating_sub(self.redis_preempted),
        }
    }
}

/// (user + system µs, involuntary context switches) of this process.
fn process_rusage() -> io::Result<(u64, u64)> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is valid for writes of one `rusage`, which getrusage fills on success.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getrusage returned 0, so it initialised the whole struct (it was zeroed anyway).
    let usage = unsafe { usage.assume_init() };
    let us = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
    Ok((
        us(usage.ru_utime) + us(usage.ru_stime),
        usage.ru_nivcsw as u64,
    ))
}

/// Involuntary context switches of all threads of process `pid`.
fn preemptions(pid: u32) -> io::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(status) = fs::read_to_string(entry?.path().join("status")) else {
            continue;
        };
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

fn own_threads() -> io::Result<Vec<(u32, String, u64)>> {
    let mut threads = Vec::new();
    for entry in fs::read_dir("/proc/self/task")? {
        let entry = entry?;
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // A thread may end between the listing and the reads: skip it.
        let Ok(name) = fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        let Ok(ns) = schedstat_ns(&entry.path().join("schedstat")) else {
            continue;
        };
        threads.push((tid, name.trim_end().to_owned(), ns));
    }
    Ok(threads)
}

fn process_schedstat_ns(pid: u32) -> io::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(format!("/proc/{pid}/task"))? {
        if let Ok(ns) = schedstat_ns(&entry?.path().join("schedstat")) {
            total += ns;
        }
    }
    Ok(total)
}

fn schedstat_ns(path: &std::path::Path) -> io::Result<u64> {
    let text = fs::read_to_string(path)?;
    text.split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {text:?}", path.display()),
            )
        })
}

/// utime + stime (fields 14 and 15) of `/proc/PID/stat`.
fn stat_ticks(pid: u32) -> io::Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis
    // start with field 3.
    let after_name = text.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    match (field(14), field(15)) {
        (Some(utime), Some(stime)) => Ok(utime + stime),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat: {text:?}"),
        )),
    }
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Waits until the rest of the machine is quiet: busy below `max_share` of one CPU over a
/// 300 ms sample (this program being idle between runs). Gives up after `limit`; returns the
/// last sampled share.
pub fn wait_for_quiet(max_share: f64, limit: Duration) -> io::Result<f64> {
    let start = Instant::now();
    let sample = Duration::from_millis(300);
    loop {
        let before = SystemTicks::read()?;
        std::thread::sleep(sample);
        let after = SystemTicks::read()?;
        let busy_s = after.busy.saturating_sub(before.busy) as f64 / clock_ticks_per_second();
        let share = busy_s / sample.as_secs_f64();
        if share <= max_share || start.elapsed() >= limit {
            return Ok(share);
        }
        std::thread::sleep(Duration::from_millis(700));
    }
}

/// Restricts the calling thread (and the threads it starts later) to one CPU.
pub fn pin_current_thread(core: usize) -> io::Result<()> {
    if core >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("no CPU {core}"),
        ));
    }
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `core` was checked to be below CPU_SETSIZE, so it indexes inside `set`.
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t for the duration of the call; pid 0 is this thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the nice value of the calling thread (threads it starts later inherit it).
pub fn set_current_thread_nice(nice: i32) -> io::Result<()> {
    // SAFETY: setpriority only changes scheduling; who 0 with PRIO_PROCESS is this thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The nice value of the calling thread.
pub fn current_thread_nice() -> i32 {
    // SAFETY: getpriority only reads; who 0 with PRIO_PROCESS is this thread. (-1 is also a
    // valid value, so errors cannot be told apart; none is possible for the caller itself.)
    unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
}

/// Number of CPUs online.
pub fn online_cpus() -> usize {
    // SAFETY: sysconf only reads a configuration value.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}
