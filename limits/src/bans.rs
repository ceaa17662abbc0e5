//! Bans: a client that collects `ban_after_violations` denials within `ban_window` is refused
//! everything for `ban_duration`.
//!
//! The window opens at a client's first violation and closes `ban_window` later; the count
//! starts again after it. A client's state is two integers, kept in its core's
//! [`crate::table::KeyedTable`] entry.

/// When violations turn into a ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BanPolicy {
    /// Violations within the window that ban (at least 1).
    pub after_violations: u32,
    /// Length of the window, in nanoseconds.
    pub window_ns: u64,
    /// Length of the ban, in nanoseconds.
    pub duration_ns: u64,
}

/// One client's violations and ban.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BanState {
    window_start: u64,
    violations: u32,
    banned_until: u64,
}

impl BanState {
    /// The time left on the client's ban at `now`, in nanoseconds; `None` if not banned.
    pub fn banned_for(&self, now: u64) -> Option<u64> {
        (self.banned_until > now).then(|| self.banned_until - now)
    }

    /// Records a violation at `now`; returns the ban's length when this one starts a ban.
    pub fn record_violation(&mut self, policy: &BanPolicy, now: u64) -> Option<u64> {
        if self.violations == 0 || now.saturating_sub(self.window_start) >= policy.window_ns {
            self.window_start = now;
            self.violations = 0;
        }
        self.violations += 1;
        if self.violations < policy.after_violations.max(1) {
            return None;
        }
        self.violations = 0;
        self.banned_until = now.saturating_add(policy.duration_ns);
        Some(policy.duration_ns)
    }

    /// Bans the client for `duration_ns` from `now`, unless a longer ban already runs (a ban
    /// another node decided).
    pub fn impose(&mut self, now: u64, duration_ns: u64) {
        self.banned_until = self.banned_until.max(now.saturating_add(duration_ns));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;
    const POLICY: BanPolicy = BanPolicy {
        after_violations: 3,
        window_ns: 10 * SECOND,
        duration_ns: 60 * SECOND,
    };

    #[test]
    fn the_third_violation_within_the_window_bans() {
        let mut state = BanState::default();
        assert_eq!(state.record_violation(&POLICY, 0), None);
        assert_eq!(state.record_violation(&POLICY, 4 * SECOND), None);
        assert_eq!(state.banned_for(5 * SECOND), None);
        assert_eq!(
            state.record_violation(&POLICY, 9 * SECOND),
            Some(60 * SECOND)
        );
        assert_eq!(state.banned_for(9 * SECOND), Some(60 * SECOND));
        assert_eq!(state.banned_for(68 * SECOND), Some(SECOND));
        assert_eq!(state.banned_for(69 * SECOND), None);
    }

    #[test]
    fn violations_spread_wider_than_the_window_never_ban() {
        let mut state = BanState::default();
        for i in 0..100 {
            assert_eq!(state.record_violation(&POLICY, i * 6 * SECOND), None, "{i}");
        }
    }

    #[test]
    fn an_imposed_ban_never_shortens_a_running_one() {
        let mut state = BanState::default();
        state.impose(0, 10 * SECOND);
        assert_eq!(state.banned_for(SECOND), Some(9 * SECOND));
        state.impose(SECOND, 2 * SECOND);
        assert_eq!(state.banned_for(SECOND), Some(9 * SECOND));
        state.impose(5 * SECOND, 20 * SECOND);
        assert_eq!(state.banned_for(5 * SECOND), Some(20 * SECOND));
    }

    #[test]
    fn a_ban_after_one_violation_is_possible() {
        let policy = BanPolicy {
            after_violations: 1,
            ..POLICY
        };
        let mut state = BanState::default();
        assert_eq!(state.record_violation(&policy, 5), Some(60 * SECOND));
        assert!(state.banned_for(6).is_some());
    }
}
