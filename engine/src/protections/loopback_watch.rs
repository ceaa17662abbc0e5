//! The warning for a reverse proxy nobody told the server about.
//!
//! Loopback is exempt from per-client rules by default. Behind a reverse proxy on the same
//! host with no `trusted_proxies`, every user arrives from loopback, so no per-client rule
//! ever applies. [`LoopbackWatch`] counts admissions while that configuration is in force,
//! and reports once when most clients in a window came from an exempt loopback address.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Admissions a window needs before its loopback share means anything.
const MIN_ADMISSIONS: u64 = 100;

/// Counts admitted connections and those from exempt loopback addresses.
#[derive(Debug)]
pub struct LoopbackWatch {
    /// False when a proxy is trusted or loopback is not exempt: nothing to watch.
    enabled: AtomicBool,
    admitted: AtomicU64,
    from_loopback: AtomicU64,
    warned: AtomicBool,
}

/// One window's figures, reported once per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopbackShare {
    /// Connections admitted in the window.
    pub admitted: u64,
    /// Of those, from an exempt loopback address.
    pub from_loopback: u64,
}

impl LoopbackWatch {
    /// Watches only when no proxy is trusted and loopback is exempt.
    pub fn new(no_trusted_proxies: bool, loopback_exempt: bool) -> Self {
        Self {
            enabled: AtomicBool::new(no_trusted_proxies && loopback_exempt),
            admitted: AtomicU64::new(0),
            from_loopback: AtomicU64::new(0),
            warned: AtomicBool::new(false),
        }
    }

    /// Follows a reloaded configuration: watches only when no proxy is trusted and loopback is
    /// exempt.
    pub fn reconfigure(&self, no_trusted_proxies: bool, loopback_exempt: bool) {
        self.enabled
            .store(no_trusted_proxies && loopback_exempt, Ordering::Relaxed);
    }

    /// Counts one admission from `address`, `exempt` from per-client rules or not.
    pub fn record(&self, address: IpAddr, exempt: bool) {
        if !self.enabled.load(Ordering::Relaxed) || self.warned.load(Ordering::Relaxed) {
            return;
        }
        self.admitted.fetch_add(1, Ordering::Relaxed);
        if exempt && address.is_loopback() {
            self.from_loopback.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Ends a window: its figures, once per process, when most admissions were loopback.
    pub fn end_window(&self) -> Option<LoopbackShare> {
        if !self.enabled.load(Ordering::Relaxed) || self.warned.load(Ordering::Relaxed) {
            return None;
        }
        let share = LoopbackShare {
            admitted: self.admitted.swap(0, Ordering::Relaxed),
            from_loopback: self.from_loopback.swap(0, Ordering::Relaxed),
        };
        let most = share.admitted >= MIN_ADMISSIONS && share.from_loopback * 2 > share.admitted;
        if most && !self.warned.swap(true, Ordering::Relaxed) {
            return Some(share);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const REMOTE: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));

    fn admit(watch: &LoopbackWatch, local: u64, remote: u64) {
        (0..local).for_each(|_| watch.record(LOCAL, true));
        (0..remote).for_each(|_| watch.record(REMOTE, false));
    }

    #[test]
    fn reports_once_when_most_admissions_are_exempt_loopback() {
        let watch = LoopbackWatch::new(true, true);
        admit(&watch, 60, 40);
        assert_eq!(
            watch.end_window(),
            Some(LoopbackShare {
                admitted: 100,
                from_loopback: 60
            })
        );
        admit(&watch, 100, 0);
        assert_eq!(watch.end_window(), None, "only once per process");
    }

    #[test]
    fn quiet_for_a_minority_a_small_window_or_a_trusted_proxy() {
        let watch = LoopbackWatch::new(true, true);
        admit(&watch, 50, 50);
        assert_eq!(watch.end_window(), None, "half is not most");
        admit(&watch, 99, 0);
        assert_eq!(watch.end_window(), None, "too few to judge");
        admit(&watch, 100, 0);
        assert!(watch.end_window().is_some(), "windows start afresh");

        let trusted = LoopbackWatch::new(false, true);
        admit(&trusted, 1000, 0);
        assert_eq!(trusted.end_window(), None);
        let not_exempt = LoopbackWatch::new(true, false);
        not_exempt.record(LOCAL, false);
        assert_eq!(not_exempt.end_window(), None);
    }

    #[test]
    fn a_reload_that_trusts_a_proxy_stops_the_watch() {
        let watch = LoopbackWatch::new(true, true);
        watch.reconfigure(false, true);
        admit(&watch, 1000, 0);
        assert_eq!(watch.end_window(), None);
        watch.reconfigure(true, true);
        admit(&watch, 1000, 0);
        assert!(watch.end_window().is_some());
    }
}
