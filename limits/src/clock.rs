//! Time as the policies see it: nanoseconds on a monotonic clock the caller owns.
//!
//! Nothing in this crate reads a clock by itself. The engine implements [`Clock`] on the
//! monotonic clock it already reads; tests use [`FakeClock`] and move time by hand.

use std::cell::Cell;
use std::time::Duration;

/// A monotonic clock in nanoseconds (any fixed origin).
pub trait Clock {
    /// Nanoseconds since the clock's origin; never decreases.
    fn now_ns(&self) -> u64;
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct FakeClock {
    now: Cell<u64>,
}

impl FakeClock {
    /// A clock at `start` nanoseconds.
    pub fn at(start: u64) -> Self {
        Self {
            now: Cell::new(start),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.now.set(self.now.get().saturating_add(by));
    }
}

impl Clock for FakeClock {
    fn now_ns(&self) -> u64 {
        self.now.get()
    }
}

/// `duration` in nanoseconds, saturating.
pub fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fake_clock_moves_only_when_told_and_saturates() {
        let clock = FakeClock::at(5);
        assert_eq!(clock.now_ns(), 5);
        clock.advance(Duration::from_micros(2));
        assert_eq!(clock.now_ns(), 2_005);
        clock.advance(Duration::MAX);
        assert_eq!(clock.now_ns(), u64::MAX);
        assert_eq!(nanos(Duration::MAX), u64::MAX);
    }
}
