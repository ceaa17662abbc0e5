//! GCRA, the generic cell rate algorithm: a rate with a burst, in one integer of state.
//!
//! The state is the theoretical arrival time (`tat`) of the next cell: the instant at which the
//! key would be back to a full burst allowance if nothing more arrived. A cell of cost `n`
//! conforms when, after adding `n` emission intervals to `tat`, it would sit no further in the
//! future than the tolerance `tau` (the burst). Times are nanoseconds on the caller's clock;
//! nothing here reads a clock.

mod lease;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use lease::{LeaseTerms, Leased};

/// A quota: `burst` cells at once, refilled at one cell per `emission_interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// `T`: nanoseconds between cells at the sustained rate.
    emission_interval: u64,
    /// `tau`: how far ahead of now `tat` may run, i.e. `burst * T`.
    tau: u64,
    /// Cells allowed at once from a full allowance.
    burst: u64,
}

/// The per-key state of a [`Gcra`] quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcraState {
    /// Theoretical arrival time, in nanoseconds on the caller's clock.
    tat: u64,
}

/// The answer to one request for cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; `remaining` more cells would be allowed right now.
    Allow {
        /// Cells still available at this instant.
        remaining: u64,
        /// How long until the whole burst is available again if nothing more arrives.
        reset_after: Duration,
    },
    /// Refused; the same request would be allowed after `retry_after` (`None` if it can never
    /// be, because it costs more than the whole burst).
    Deny {
        /// How long to wait before the same request conforms.
        retry_after: Option<Duration>,
    },
}

impl Decision {
    /// Whether the request was allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allow { .. })
    }
}

impl Gcra {
    /// `count` cells per `period`, with bursts of up to `burst` cells (at least 1).
    /// Returns `None` for a zero `count` or `period` (no quota: callers treat it as "off").
    pub fn new(count: u64, period: Duration, burst: u64) -> Option<Self> {
        let period = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
        if count == 0 || period == 0 {
            return None;
        }
        let emission_interval = (period / count).max(1);
        let burst = burst.max(1);
        Some(Self {
            emission_interval,
            tau: emission_interval.saturating_mul(burst),
            burst,
        })
    }

    /// Cells allowed at once from a full allowance.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Nanoseconds between cells at the sustained rate.
    pub fn emission_interval_ns(&self) -> u64 {
        self.emission_interval
    }

    /// Asks for `cost` cells at `now` (nanoseconds); on success the cells are taken.
    pub fn check(&self, state: &mut GcraState, now: u64, cost: u64) -> Decision {
        if cost > self.burst {
            return Decision::Deny { retry_after: None };
        }
        let tat = state.tat.max(now);
        let new_tat = tat.saturating_add(self.emission_interval.saturating_mul(cost));
        let allowed_until = now.saturating_add(self.tau);
        if new_tat <= allowed_until {
            state.tat = new_tat;
            Decision::Allow {
                remaining: (allowed_until - new_tat) / self.emission_interval,
                reset_after: Duration::from_nanos(new_tat - now),
            }
        } else {
            Decision::Deny {
                retry_after: Some(Duration::from_nanos(new_tat - allowed_until)),
            }
        }
    }
}

/// A [`GcraState`] several threads share: one atomic integer, updated by compare-and-swap, so a
/// quota holds exactly across cores without a lock.
#[derive(Debug, Default)]
pub struct AtomicGcraState {
    tat: AtomicU64,
}

impl AtomicGcraState {
    /// Asks `quota` for `cost` cells at `now`, as [`Gcra::check`] does; a denial changes nothing.
    pub fn check(&self, quota: &Gcra, now: u64, cost: u64) -> Decision {
        let mut current = self.tat.load(Ordering::Acquire);
        loop {
            let mut state = GcraState { tat: current };
            let decision = quota.check(&mut state, now, cost);
            if !decision.is_allowed() {
                return decision;
            }
            match self.tat.compare_exchange_weak(
                current,
                state.tat,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return decision,
                Err(seen) => current = seen,
            }
        }
    }

    /// Whether the state is back to a full allowance at `now` (forgetting it loses nothing).
    pub fn is_at_rest(&self, now: u64) -> bool {
        self.tat.load(Ordering::Acquire) <= now
    }

    /// Cells of `quota` in use at `now`: taken and not yet earned back (0 at rest, the burst
    /// when the next cell would be refused). A read, for reports; it changes nothing.
    pub fn used(&self, quota: &Gcra, now: u64) -> u64 {
        self.tat
            .load(Ordering::Relaxed)
            .saturating_sub(now)
            .div_ceil(quota.emission_interval)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use proptest::prelude::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_full_burst_then_one_cell_per_interval() {
        let quota = Gcra::new(10, Duration::from_secs(1), 10).unwrap();
        let mut state = GcraState::default();
        let now = 5 * SECOND;
        for i in 0..10 {
            assert_eq!(
                quota.check(&mut state, now, 1),
                Decision::Allow {
                    remaining: 9 - i,
                    reset_after: Duration::from_millis(100 * (i + 1)),
                }
            );
        }
        assert_eq!(
            quota.check(&mut state, now, 1),
            Decision::Deny {
                retry_after: Some(Duration::from_millis(100))
            }
        );
        assert!(quota.check(&mut state, now + SECOND / 10, 1).is_allowed());
        assert!(!quota.check(&mut state, now + SECOND / 10, 1).is_allowed());
    }

    #[test]
    fn costs_above_the_burst_are_never_allowed() {
        let quota = Gcra::new(1000, Duration::from_secs(60), 1000).unwrap();
        let mut state = GcraState::default();
        assert_eq!(
            quota.check(&mut state, 0, 1001),
            Decision::Deny { retry_after: None }
        );
        assert!(quota.check(&mut state, 0, 1000).is_allowed());
    }

    #[test]
    fn zero_quota_is_off() {
        assert!(Gcra::new(0, Duration::from_secs(1), 5).is_none());
        assert!(Gcra::new(5, Duration::ZERO, 5).is_none());
    }

    #[test]
    fn the_shared_state_holds_the_quota_across_threads() {
        let quota = Gcra::new(1000, Duration::from_secs(1), 1000).unwrap();
        let state = AtomicGcraState::default();
        let allowed = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        if state.check(&quota, SECOND, 1).is_allowed() {
                            allowed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(allowed.load(Ordering::Relaxed), 1000);
        assert!(!state.is_at_rest(SECOND));
        assert!(state.is_at_rest(2 * SECOND));
    }

    proptest! {
        /// In any window of length `t`, at most `rate * t + burst` cells are allowed.
        #[test]
        fn never_more_than_rate_times_window_plus_burst(
            count in 1u64..1000,
            burst in 1u64..50,
            gaps in proptest::collection::vec(0u64..(SECOND / 10), 1..400),
        ) {
            let quota = Gcra::new(count, Duration::from_secs(1), burst).unwrap();
            let mut state = GcraState::default();
            let mut now = SECOND;
            let mut allowed = Vec::new();
            for gap in gaps {
                now += gap;
                if quota.check(&mut state, now, 1).is_allowed() {
                    allowed.push(now);
                }
            }
            for (i, &start) in allowed.iter().enumerate() {
                for (j, &end) in allowed.iter().enumerate().skip(i) {
                    let window = end - start;
                    let cells = (j - i + 1) as u64;
                    // rate * window, rounded up, plus the burst.
                    let limit = (window * count).div_ceil(SECOND) + burst;
                    prop_assert!(cells <= limit, "{cells} cells in {window} ns (limit {limit})");
                }
            }
        }

        /// Retrying at `now + retry_after` is allowed: the wait it names is honest.
        #[test]
        fn retry_after_is_honest(
            count in 1u64..1000,
            burst in 1u64..50,
            cost in 1u64..50,
            used in 0u64..100,
        ) {
            let quota = Gcra::new(count, Duration::from_secs(1), burst).unwrap();
            let mut state = GcraState::default();
            let now = SECOND;
            for _ in 0..used {
                quota.check(&mut state, now, 1);
            }
            match quota.check(&mut state, now, cost) {
                Decision::Allow { .. } => {}
                Decision::Deny { retry_after: None } => prop_assert!(cost > burst),
                Decision::Deny { retry_after: Some(wait) } => {
                    let later = now + u64::try_from(wait.as_nanos()).unwrap();
                    prop_assert!(quota.check(&mut state, later, cost).is_allowed());
                }
            }
        }
    }
}
