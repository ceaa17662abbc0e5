//! The answers of a route's auth endpoint, kept per credential for `auth_cache` and shared by
//! every worker. Bounded: past [`MAX_ENTRIES`] the expired answers go, and if none has, all
//! of them (the endpoint is asked again, nothing is wrongly allowed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::Verdict;

/// Most answers kept per route.
pub const MAX_ENTRIES: usize = 100_000;

/// A kept answer: until when, and what.
type Kept = (Instant, Arc<Verdict>);

/// One route's kept answers.
#[derive(Debug)]
pub struct AuthCache {
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], Kept>>,
}

impl AuthCache {
    /// A cache keeping answers for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
        }
    }

    /// The answer kept for `key`, if it has not expired at `now`.
    pub fn get(&self, key: &[u8; 32], now: Instant) -> Option<Arc<Verdict>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(key)
            .filter(|(expires, _)| now < *expires)
            .map(|(_, verdict)| Arc::clone(verdict))
    }

    /// Keeps `verdict` for `key` from `now` (a failure is never kept).
    pub fn put(&self, key: [u8; 32], verdict: Arc<Verdict>, now: Instant) {
        if *verdict == Verdict::Failed {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (expires, _)| now < *expires);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (now + self.ttl, verdict));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::auth::Grant;

    #[test]
    fn answers_expire_and_failures_are_never_kept() {
        let cache = AuthCache::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let allow = Arc::new(Verdict::Allow(Grant::default()));
        cache.put([1; 32], Arc::clone(&allow), t0);
        cache.put([2; 32], Arc::new(Verdict::Failed), t0);
        assert_eq!(
            cache.get(&[1; 32], t0 + Duration::from_secs(9)),
            Some(allow)
        );
        assert_eq!(cache.get(&[1; 32], t0 + Duration::from_secs(10)), None);
        assert_eq!(cache.get(&[2; 32], t0), None);
    }

    #[test]
    fn a_full_cache_drops_expired_answers_first() {
        let cache = AuthCache::new(Duration::from_secs(1));
        let t0 = Instant::now();
        let deny = Arc::new(Verdict::Deny {
            status: 403,
            challenge: None,
        });
        for i in 0..MAX_ENTRIES as u32 {
            let mut key = [0; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            cache.put(key, Arc::clone(&deny), t0);
        }
        let later = t0 + Duration::from_secs(2);
        cache.put([9; 32], Arc::clone(&deny), later);
        assert_eq!(cache.get(&[9; 32], later), Some(deny));
        assert_eq!(
            cache
                .entries
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len(),
            1
        );
    }
}
