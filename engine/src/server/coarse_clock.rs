//! The clock the limiters read: `CLOCK_MONOTONIC_COARSE`, the kernel's last tick.
//!
//! A rate decision reads the time once. `Instant::now()` (`CLOCK_MONOTONIC`) costs about 30 ns
//! on this project's reference VM, more than the rest of a decision; the coarse clock is a
//! plain read of the vDSO page (about 9 ns) at the resolution of the kernel tick (1–4 ms),
//! which quotas counted per second and per minute do not notice. Like every monotonic clock it
//! never goes back, so no quota ever allows more than its rate: a tick of lag only delays a
//! refill by that tick.

/// Nanoseconds on the coarse monotonic clock (origin: boot).
pub fn now_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC_COARSE)
}

fn read(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` through the valid, exclusive pointer it is
    // given; both clocks read here exist on every Linux since 2.6.32.
    let rc = unsafe { libc::clock_gettime(clock, &raw mut ts) };
    if rc != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// Nanoseconds on the monotonic clock to the nanosecond: the coarse clock's timeline, for
/// pacing a capped download, where a tick's lag would be most of the time between two pieces.
pub fn fine_now_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_moves_forward_with_real_time() {
        let before = now_ns();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let after = now_ns();
        assert!(after > before + 10_000_000, "{before} -> {after}");
    }
}
