//! Which CPUs this process may run on, for the worker count and pinning.

/// The CPU ids this thread is allowed to run on (respects `taskset` and cpusets), ascending.
/// Falls back to `0..available_parallelism` when the kernel will not say.
pub fn allowed_cpus() -> Vec<usize> {
    let mut cpus = Vec::new();
    // SAFETY: `cpu_set_t` is a plain bitset for which all-zero is a valid value.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `set` is a valid, writable `cpu_set_t` of the size passed; pid 0 is this thread.
    let rc = unsafe { libc::sched_getaffinity(0, size, &mut set) };
    if rc == 0 {
        for cpu in 0..libc::CPU_SETSIZE as usize {
            // SAFETY: `cpu` is below CPU_SETSIZE and `set` was initialised above.
            if unsafe { libc::CPU_ISSET(cpu, &set) } {
                cpus.push(cpu);
            }
        }
    }
    if cpus.is_empty() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        cpus.extend(0..n);
    }
    cpus
}
