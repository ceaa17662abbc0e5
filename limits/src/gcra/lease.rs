//! Leases: a bucket that holds a share of a client's budget granted by a store several nodes
//! share, instead of the budget itself.
//!
//! A node of a cluster decides a shared rule from its lease at the cost of a local decision
//! (one compare-and-swap on the bucket's integer) and asks the store for more cells ahead of
//! need, off the request path. The bucket's integer then holds the lease's balance: 0 means
//! "never leased", anything else is [`OFFSET`] plus a signed balance. A lease may run one
//! chunk into debt while the store's answer is on its way, so a client new to a node, or
//! faster than the renewals, is not refused for want of a round trip; later grants repay the
//! debt. Over any window a node admits at most one chunk more than the store granted it.
//!
//! A bucket is either a GCRA state or a lease for the life of the server, never both.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::AtomicGcraState;

/// Added to the balance so that a lease is never 0 (which means "never leased").
const OFFSET: u64 = 1 << 62;

/// How a rule is leased: the chunk asked for at a time (and the debt allowed), and the
/// rate's emission interval (for `Retry-After`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTerms {
    /// Cells asked for at a time, and the most the lease may owe (at least 1).
    pub chunk: u64,
    /// Nanoseconds between cells at the sustained rate.
    pub interval_ns: u64,
}

/// What a leased decision found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leased {
    /// Allowed, taken from the lease; `renew`: ask the store for that many cells (the first
    /// use, or the balance just fell under half a chunk).
    Allow {
        /// Cells left in the lease (0 while it is in debt).
        remaining: u64,
        /// Cells to ask the store for, if it is time to.
        renew: Option<u64>,
    },
    /// Refused: the lease and the debt it may run hold less than the cost.
    Deny {
        /// About how long until enough is granted at the sustained rate.
        retry_after: Duration,
        /// Cells to ask the store for.
        renew: u64,
    },
}

fn balance_of(raw: u64) -> i64 {
    if raw == 0 {
        0
    } else {
        raw.wrapping_sub(OFFSET) as i64
    }
}

impl AtomicGcraState {
    /// Takes `cost` cells from the lease this bucket holds, running at most one chunk into
    /// debt.
    pub fn take_leased(&self, cost: u64, terms: LeaseTerms) -> Leased {
        let chunk = i64::try_from(terms.chunk.max(1)).unwrap_or(i64::MAX);
        let low_water = (chunk + 1) / 2;
        let cost_signed = i64::try_from(cost).unwrap_or(i64::MAX);
        let mut current = self.tat.load(Ordering::Acquire);
        loop {
            let balance = balance_of(current);
            let after = balance.saturating_sub(cost_signed);
            if after < -chunk {
                let missing = (-chunk).saturating_sub(after).unsigned_abs();
                return Leased::Deny {
                    retry_after: Duration::from_nanos(terms.interval_ns.saturating_mul(missing)),
                    renew: terms.chunk.max(1).max(missing),
                };
            }
            let next = OFFSET.wrapping_add(after as u64);
            match self
                .tat
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    let crossed = balance >= low_water && after < low_water;
                    // A chunk, and the debt to repay first.
                    let renew = (current == 0 || crossed)
                        .then(|| terms.chunk.max(1) + after.min(0).unsigned_abs());
                    return Leased::Allow {
                        remaining: after.max(0).unsigned_abs(),
                        renew,
                    };
                }
                Err(seen) => current = seen,
            }
        }
    }

    /// Adds `cells` to the lease (a bucket never leased starts from 0).
    pub fn grant(&self, cells: i64) {
        let mut current = self.tat.load(Ordering::Acquire);
        loop {
            let next = OFFSET.wrapping_add(balance_of(current).saturating_add(cells) as u64);
            match self
                .tat
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// The lease's balance (`None`: never leased).
    pub fn lease_balance(&self) -> Option<i64> {
        let current = self.tat.load(Ordering::Acquire);
        (current != 0).then(|| balance_of(current))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TERMS: LeaseTerms = LeaseTerms {
        chunk: 4,
        interval_ns: 1_000,
    };

    fn allow(bucket: &AtomicGcraState) -> Option<u64> {
        match bucket.take_leased(1, TERMS) {
            Leased::Allow { renew, .. } => renew,
            Leased::Deny { .. } => panic!("refused"),
        }
    }

    #[test]
    fn a_new_lease_runs_one_chunk_into_debt_and_asks_for_cells_at_once() {
        let bucket = AtomicGcraState::default();
        assert_eq!(bucket.lease_balance(), None);
        assert_eq!(
            allow(&bucket),
            Some(5),
            "the first use asks for a chunk and its debt"
        );
        for _ in 0..3 {
            assert_eq!(allow(&bucket), None);
        }
        assert_eq!(bucket.lease_balance(), Some(-4));
        assert_eq!(
            bucket.take_leased(1, TERMS),
            Leased::Deny {
                retry_after: Duration::from_nanos(1_000),
                renew: 4
            }
        );
        // The store grants 4: the debt is repaid, nothing more is allowed.
        bucket.grant(4);
        assert_eq!(bucket.lease_balance(), Some(0));
        bucket.grant(4);
        assert_eq!(
            bucket.take_leased(1, TERMS),
            Leased::Allow {
                remaining: 3,
                renew: None
            }
        );
    }

    #[test]
    fn renewal_is_asked_once_when_the_balance_falls_under_half_a_chunk() {
        let bucket = AtomicGcraState::default();
        bucket.grant(6);
        let renewals: Vec<Option<u64>> = (0..6).map(|_| allow(&bucket)).collect();
        assert_eq!(renewals, [None, None, None, None, Some(4), None]);
    }

    #[test]
    fn a_cost_larger_than_the_lease_and_its_debt_asks_for_what_is_missing() {
        let bucket = AtomicGcraState::default();
        bucket.grant(1);
        assert_eq!(
            bucket.take_leased(10, TERMS),
            Leased::Deny {
                retry_after: Duration::from_nanos(5_000),
                renew: 5
            }
        );
        assert_eq!(bucket.lease_balance(), Some(1), "a refusal takes nothing");
    }
}
