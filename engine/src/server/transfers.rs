//! Uploads and downloads in progress, for `/stats` and the dashboard: a bounded registry that
//! every worker shares.
//!
//! A transfer takes the registry's lock twice, when it begins and when it ends (its
//! [`Transfer`] is dropped, on every path); in between, its progress is one relaxed atomic add
//! per piece sent or chunk stored (64 KiB or more for a download), with no lock. At most
//! [`MAX_TRACKED`] transfers are listed at once; past that, new ones run unlisted and are
//! counted.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use slab::Slab;

/// Transfers listed at once; more run unlisted (counted in [`Transfers::unlisted`]).
pub const MAX_TRACKED: usize = 1024;

/// Bytes of a name kept for the listing (a longer one is cut at a character boundary).
const MAX_NAME: usize = 256;

/// Which way a transfer's body goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A request body stored by an upload route.
    Upload,
    /// A file sent by a files route.
    Download,
}

impl Direction {
    /// The name `/stats` gives it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Upload => "upload",
            Self::Download => "download",
        }
    }
}

/// What a new transfer is.
#[derive(Debug, Clone, Copy)]
pub struct NewTransfer<'a> {
    /// Which way its body goes.
    pub direction: Direction,
    /// The route's path.
    pub route: &'a str,
    /// The file's name or path below the route.
    pub name: &'a str,
    /// The client's address, when known.
    pub client: Option<IpAddr>,
    /// The body's size, when known in advance (`Content-Length`, a file's range).
    pub size: Option<u64>,
}

/// One transfer in progress, as listed.
#[derive(Debug)]
pub struct TransferInfo {
    /// Unique for the life of the server, in the order transfers began.
    pub id: u64,
    /// Which way its body goes.
    pub direction: Direction,
    /// The route's path.
    pub route: Box<str>,
    /// The file's name or path below the route (at most [`MAX_NAME`] bytes).
    pub name: Box<str>,
    /// The client's address, when known.
    pub client: Option<IpAddr>,
    /// The body's size, when known in advance.
    pub size: Option<u64>,
    /// When it began.
    pub started: Instant,
    bytes: AtomicU64,
}

impl TransferInfo {
    /// Body bytes moved so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// Every transfer in progress, across workers.
#[derive(Debug, Default)]
pub struct Transfers {
    entries: Mutex<Slab<Arc<TransferInfo>>>,
    next_id: AtomicU64,
    unlisted: AtomicU64,
}

impl Transfers {
    /// Lists a new transfer until the returned handle drops; `None` (the transfer runs
    /// unlisted, and is counted) when [`MAX_TRACKED`] are listed already.
    pub fn begin(self: &Arc<Self>, new: NewTransfer<'_>) -> Option<Transfer> {
        let mut entries = self.lock();
        if entries.len() >= MAX_TRACKED {
            self.unlisted.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let info = Arc::new(TransferInfo {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            direction: new.direction,
            route: new.route.into(),
            name: cut(new.name, MAX_NAME).into(),
            client: new.client,
            size: new.size,
            started: Instant::now(),
            bytes: AtomicU64::new(0),
        });
        let key = entries.insert(Arc::clone(&info));
        Some(Transfer {
            registry: Arc::clone(self),
            key,
            info,
        })
    }

    /// Transfers in progress now: the first `limit` in the order they began, and how many
    /// there are in all.
    pub fn snapshot(&self, limit: usize) -> (Vec<Arc<TransferInfo>>, usize) {
        let mut listed: Vec<Arc<TransferInfo>> =
            self.lock().iter().map(|(_, t)| t.clone()).collect();
        let total = listed.len();
        listed.sort_unstable_by_key(|t| t.id);
        listed.truncate(limit);
        (listed, total)
    }

    /// Transfers that ran unlisted because [`MAX_TRACKED`] were listed already.
    pub fn unlisted(&self) -> u64 {
        self.unlisted.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Slab<Arc<TransferInfo>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// One listed transfer: moves its bytes forward, and leaves the listing when dropped.
#[derive(Debug)]
pub struct Transfer {
    registry: Arc<Transfers>,
    key: usize,
    info: Arc<TransferInfo>,
}

impl Transfer {
    /// Counts `n` more body bytes.
    pub fn add(&self, n: u64) {
        self.info.bytes.fetch_add(n, Ordering::Relaxed);
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.registry.lock().try_remove(self.key);
    }
}

/// What one response has written so far: every byte (its head too, and any answers queued
/// before it) for the access log and the counters, and its body's bytes for its listing.
#[derive(Debug)]
pub struct Progress {
    /// Bytes written so far.
    pub written: u64,
    /// Bytes written before the body began (counted in `written`, not in the listing).
    before_body: u64,
    listed: Option<Transfer>,
}

impl Progress {
    /// A response whose first `before_body` bytes are not its body, listed by `listed`.
    pub fn new(before_body: u64, listed: Option<Transfer>) -> Self {
        Self {
            written: 0,
            before_body,
            listed,
        }
    }

    /// Counts `n` more bytes written.
    pub fn add(&mut self, n: u64) {
        let body_before = self.written.saturating_sub(self.before_body);
        self.written += n;
        if let Some(listed) = &self.listed {
            listed.add(self.written.saturating_sub(self.before_body) - body_before);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn download<'a>(name: &'a str) -> NewTransfer<'a> {
        NewTransfer {
            direction: Direction::Download,
            route: "/files/",
            name,
            client: None,
            size: Some(10),
        }
    }

    #[test]
    fn transfers_are_listed_while_they_run_in_the_order_they_began() {
        let transfers = Arc::new(Transfers::default());
        let a = transfers.begin(download("a"));
        let b = transfers.begin(download("b"));
        if let Some(b) = &b {
            b.add(3);
            b.add(4);
        }
        let (listed, total) = transfers.snapshot(10);
        assert_eq!(total, 2);
        let names: Vec<(&str, u64)> = listed.iter().map(|t| (&*t.name, t.bytes())).collect();
        assert_eq!(names, vec![("a", 0), ("b", 7)]);
        drop(a);
        let (listed, total) = transfers.snapshot(10);
        assert_eq!((listed.len(), total), (1, 1));
        drop(b);
        assert_eq!(transfers.snapshot(10).1, 0);
    }

    #[test]
    fn the_listing_is_bounded_and_counts_what_it_leaves_out() {
        let transfers = Arc::new(Transfers::default());
        let held: Vec<Option<Transfer>> = (0..MAX_TRACKED + 3)
            .map(|_| transfers.begin(download("x")))
            .collect();
        assert_eq!(held.iter().filter(|t| t.is_some()).count(), MAX_TRACKED);
        assert_eq!(transfers.unlisted(), 3);
        let (listed, total) = transfers.snapshot(100);
        assert_eq!((listed.len(), total), (100, MAX_TRACKED));
    }

    #[test]
    fn a_responses_head_is_written_but_not_counted_as_its_body() {
        let transfers = Arc::new(Transfers::default());
        let listed = transfers.begin(download("f"));
        let mut progress = Progress::new(100, listed);
        progress.add(60);
        progress.add(60);
        progress.add(1000);
        assert_eq!(progress.written, 1120);
        assert_eq!(transfers.snapshot(1).0[0].bytes(), 1020);
    }

    #[test]
    fn long_names_are_cut_at_a_character_boundary() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("héllo", 3), "hé");
        assert_eq!(cut("abc", 10), "abc");
    }
}
