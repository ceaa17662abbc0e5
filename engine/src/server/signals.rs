//! Termination signals (SIGTERM, SIGINT), SIGHUP (reload the configuration) and SIGUSR1
//! (reopen the access log), taken synchronously by the thread that runs the server.
//!
//! The signals are blocked before any worker starts, so every thread inherits the mask and
//! only the waiting thread ever receives them: no async-signal-safety concerns, no handler.

use std::io;
use std::time::Duration;

/// The blocked set of termination signals.
#[derive(Debug)]
pub struct TerminationSignals {
    set: libc::sigset_t,
}

impl TerminationSignals {
    /// Blocks SIGTERM, SIGINT, SIGHUP and SIGUSR1 in the calling thread (and so in threads it starts
    /// later).
    pub fn block() -> io::Result<Self> {
        // SAFETY: all-zero is a valid `sigset_t` for `sigemptyset` to initialise.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, writable `sigset_t`; the signal numbers are valid.
        let rc = unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::sigaddset(&mut set, libc::SIGHUP);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(Self { set })
    }

    /// Waits up to `timeout` for one of the signals; returns its number.
    pub fn wait(&self, timeout: Duration) -> Option<i32> {
        let ts = libc::timespec {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(timeout.subsec_nanos().min(999_999_999) as i32),
        };
        // SAFETY: `self.set` was initialised in `block`; `ts` is a valid timespec; a null
        // siginfo pointer is allowed.
        let signo = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
        (signo > 0).then_some(signo)
    }
}
