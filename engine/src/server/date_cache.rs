//! The worker's cached `Date` header value, re-formatted at most once per second.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use ringstream_protocol::http::HttpDate;

/// Per-worker `Date` cache: one clock read per use, one formatting per second.
#[derive(Debug)]
pub struct DateCache {
    secs: Cell<u64>,
    date: Cell<HttpDate>,
}

impl DateCache {
    /// A cache holding the current time.
    pub fn new() -> Self {
        let secs = unix_secs();
        Self {
            secs: Cell::new(secs),
            date: Cell::new(HttpDate::from_unix_secs(secs)),
        }
    }

    /// The `Date` value for a response sent now.
    pub fn now(&self) -> HttpDate {
        let secs = unix_secs();
        if secs != self.secs.get() {
            self.secs.set(secs);
            self.date.set(HttpDate::from_unix_secs(secs));
        }
        self.date.get()
    }
}

impl Default for DateCache {
    fn default() -> Self {
        Self::new()
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
