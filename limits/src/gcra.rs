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

/// A quota: `burst` cells at once, refilled at `count` cells per `period`.
///
/// The time `n` cells take is computed from the rate itself, `n * period / count` rounded up,
/// not from a whole number of nanoseconds per cell: a byte rate of 100 MiB/s is 9.54 ns a
/// byte, and a per-cell interval of 9 ns would let 6% more through (and any rate above 1 GB/s
/// would be held to 1 GB/s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Cells per `period`.
    count: u64,
    /// Nanoseconds.
    period: u64,
    /// One cell's time, rounded up (`time_of(1)`, kept: every decision divides by it).
    cell: u64,
    /// `tau`: how far ahead of now `tat` may run: the burst's time, and the rounding of up to
    /// `burst` single cells (less than one cell's time in all), so that a burst of single
    /// cells is allowed at once. A burst asked in larger pieces may owe its last piece a few
    /// nanoseconds.
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
        let burst = burst.max(1);
        let mut quota = Self {
            count,
            period,
            cell: 0,
            tau: 0,
            burst,
        };
        quota.cell = quota.time_of(1);
        let rounding = if period % count == 0 {
            0
        } else {
            (burst - 1).min(quota.cell - 1)
        };
        quota.tau = quota.time_of(burst).saturating_add(rounding);
        Some(quota)
    }

    /// Nanoseconds `cells` take at the sustained rate, rounded up (at least 1 for any cell):
    /// the sum over any split of a cost is never less than the cost's own time, so the rate
    /// is never exceeded.
    pub fn time_of(&self, cells: u64) -> u64 {
        match cells.checked_mul(self.period) {
            Some(product) => product.div_ceil(self.count),
            None => {
                let product = u128::from(cells) * u128::from(self.period);
                u64::try_from(product.div_ceil(u128::from(self.count))).unwrap_or(u64::MAX)
            }
        }
    }

    /// The rate as cells per period: `(count, period in nanoseconds)`.
    pub fn rate(&self) -> (u64, u64) {
        (self.count, self.period)
    }

    /// Cells allowed at once from a full allowance.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Nanoseconds between cells at the sustained rate, rounded up.
    pub fn emission_interval_ns(&self) -> u64 {
        self.cell
    }

    /// Asks for `cost` cells at `now` (nanoseconds); on success the cells are taken.
    pub fn check(&self, state: &mut GcraState, now: u64, cost: u64) -> Decision {
        if cost > self.burst {
            return Decision::Deny { retry_after: None };
        }
        let tat = state.tat.max(now);
        let new_tat = tat.saturating_add(self.time_of(cost));
        let allowed_until = now.saturating_add(self.tau);
        if new_tat <= allowed_until {
            state.tat = new_tat;
            Decision::Allow {
                remaining: (allowed_until - new_tat) / self.cell,
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
            .div_ceil(quota.cell)
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

    /// Sends `total` cells in pieces of `piece`, each as soon as it is allowed; the seconds
    /// the last piece went at.
    fn seconds_to_send(quota: &Gcra, total: u64, piece: u64) -> f64 {
        let mut state = GcraState::default();
        let (mut now, mut sent) = (SECOND, 0);
        while sent < total {
            match quota.check(&mut state, now, piece) {
                Decision::Allow { .. } => sent += piece,
                Decision::Deny { retry_after } => {
                    now += u64::try_from(retry_after.unwrap().as_nanos()).unwrap();
                }
            }
        }
        (now - SECOND) as f64 / SECOND as f64
    }

    #[test]
    fn byte_rates_hold_at_any_speed() {
        // 100 MiB/s is 9.54 ns a byte: whole nanoseconds a byte would send 6% too fast.
        let mib = 1 << 20;
        for (rate, piece) in [
            (100 * mib, 256 * 1024),
            (600_000_000, 64 * 1024),
            (3_000_000_000, 4 * mib),
            (1_000_003, 4096),
        ] {
            let quota = Gcra::new(rate, Duration::from_secs(1), piece).unwrap();
            let total = (rate * 4).div_ceil(piece) * piece;
            let seconds = seconds_to_send(&quota, total, piece);
            // The first piece goes at once, and the rest at the rate (each piece's time
            // rounded by less than a nanosecond).
            let expected = (total - piece) as f64 / rate as f64;
            assert!(
                (seconds - expected).abs() < expected * 1e-5,
                "{rate} B/s: {seconds} s, not {expected}"
            );
        }
    }

    #[test]
    fn a_burst_is_allowed_in_any_split() {
        // 3 a second: a cell is 333,333,333.3 ns, and three single cells still make a burst.
        let quota = Gcra::new(3, Duration::from_secs(1), 3).unwrap();
        let mut state = GcraState::default();
        for _ in 0..3 {
            assert!(quota.check(&mut state, SECOND, 1).is_allowed());
        }
        assert!(!quota.check(&mut state, SECOND, 1).is_allowed());
        let quota = Gcra::new(100 << 20, Duration::from_secs(1), 1 << 20).unwrap();
        let mut state = GcraState::default();
        for _ in 0..255 {
            assert!(quota.check(&mut state, SECOND, 4096).is_allowed());
        }
        // The last of 256 pieces owes the rounding of the 255 before it.
        match quota.check(&mut state, SECOND, 4096) {
            Decision::Deny {
                retry_after: Some(wait),
            } => assert!(wait < Duration::from_micros(1), "{wait:?}"),
            other => assert!(other.is_allowed(), "{other:?}"),
        }
        assert!(!quota.check(&mut state, SECOND, 4096).is_allowed());
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
