//! Each worker's table of open connections: their deadlines, enforced by one sweeper task per
//! worker instead of one timer per read or write, and their idle state, which the drain uses.
//!
//! A connection arms a deadline before it waits ([`ConnGuard::within`], [`ConnGuard::until`]); the sweeper visits the
//! table every [`SWEEP_INTERVAL`], marks connections whose deadline has passed and wakes them.
//! The woken wait returns `None` and drops the I/O future it was running, which cancels the
//! operation. Timeouts therefore fire between their deadline and one sweep interval later.
//!
//! Each entry also holds the connection's share of the server-wide [`BufferBudget`], given back
//! when its guard drops. The registry's length is published to the worker's [`OpenGauge`]
//! (one relaxed store per connection opened or closed), for `/stats`.

use std::cell::RefCell;
use std::future::Future;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;

use crate::server::buffer_budget::BufferBudget;
use crate::server::metrics::OpenGauge;

/// How often the sweeper checks deadlines: the granularity of every connection timeout.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// What a connection is doing, as the drain needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// HTTP, between requests: the drain shuts it down at once.
    Idle,
    /// HTTP, in the middle of a request: the drain lets it finish.
    Busy,
    /// WebSocket: the drain wakes it so that it sends close 1001 itself.
    WebSocket,
}

#[derive(Debug)]
struct Entry {
    fd: RawFd,
    activity: Activity,
    deadline: Option<Instant>,
    expired: bool,
    /// Set for a WebSocket connection when the drain starts (never cleared): its waits for the
    /// client end so that it sends close 1001; its writes are left to finish.
    drain_woken: bool,
    waker: Option<Waker>,
    /// Bytes of the buffer budget this connection holds.
    held: usize,
}

/// One worker's open connections. Single-threaded: lives in the worker's runtime.
#[derive(Debug, Clone, Default)]
pub struct ConnRegistry {
    shared: Rc<Shared>,
}

/// Behind one `Rc`, so that a connection's guard stays two words.
#[derive(Debug, Default)]
struct Shared {
    entries: RefCell<Slab<Entry>>,
    budget: Arc<BufferBudget>,
    /// Where the number of entries is published (none in unit tests).
    open: Option<OpenGauge>,
}

impl Shared {
    /// Publishes the number of open connections, after one came or went.
    fn publish_len(&self, entries: &Slab<Entry>) {
        if let Some(open) = &self.open {
            open.set(entries.len());
        }
    }
}

impl ConnRegistry {
    /// An empty registry whose connections take buffered bytes from `budget`, and that keeps
    /// their number in `open`.
    pub fn new(budget: Arc<BufferBudget>, open: OpenGauge) -> Self {
        Self {
            shared: Rc::new(Shared {
                entries: RefCell::default(),
                budget,
                open: Some(open),
            }),
        }
    }

    /// The server-wide budget for buffered bytes.
    pub fn budget(&self) -> &BufferBudget {
        &self.shared.budget
    }

    /// Records a new connection; the returned guard removes it when dropped. Keep it with the
    /// stream that owns `fd` in a [`Registered`], which drops it first.
    pub fn register(&self, fd: RawFd) -> ConnGuard {
        let mut entries = self.shared.entries.borrow_mut();
        let key = entries.insert(Entry {
            fd,
            activity: Activity::Idle,
            deadline: None,
            expired: false,
            drain_woken: false,
            waker: None,
            held: 0,
        });
        self.shared.publish_len(&entries);
        drop(entries);
        ConnGuard {
            registry: self.clone(),
            key,
        }
    }

    /// Number of open connections on this worker.
    pub fn len(&self) -> usize {
        self.shared.entries.borrow().len()
    }

    /// Whether this worker has no open connection.
    pub fn is_empty(&self) -> bool {
        self.shared.entries.borrow().is_empty()
    }

    /// Marks every connection whose deadline is at or before `now` and wakes it.
    pub fn expire(&self, now: Instant) {
        self.expire_where(|e| e.deadline.is_some_and(|d| d <= now));
    }

    /// Starts the drain on this worker: HTTP connections between requests are shut down (their
    /// pending read returns 0 and they close), WebSocket connections are woken to send close
    /// 1001, and HTTP connections in the middle of a request are left to finish.
    pub fn begin_drain(&self) {
        for (_, entry) in self.shared.entries.borrow().iter() {
            if entry.activity == Activity::Idle {
                shutdown_fd(entry.fd);
            }
        }
        let mut wakers = Vec::new();
        for (_, entry) in self.shared.entries.borrow_mut().iter_mut() {
            if entry.activity == Activity::WebSocket {
                entry.drain_woken = true;
                wakers.extend(entry.waker.take());
            }
        }
        wakers.into_iter().for_each(Waker::wake);
    }

    fn expire_where(&self, due: impl Fn(&Entry) -> bool) {
        let mut wakers = Vec::new();
        for (_, entry) in self.shared.entries.borrow_mut().iter_mut() {
            if !entry.expired && due(entry) {
                entry.expired = true;
                wakers.extend(entry.waker.take());
            }
        }
        // Woken outside the borrow: waking only schedules the task, but keep it obviously safe.
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Shuts down every connection (drain deadline): pending reads and writes fail and the
    /// connections close.
    pub fn shutdown_all(&self) {
        for (_, entry) in self.shared.entries.borrow().iter() {
            shutdown_fd(entry.fd);
        }
    }

    fn with_entry<R>(&self, key: usize, f: impl FnOnce(&mut Entry) -> R) -> Option<R> {
        self.shared.entries.borrow_mut().get_mut(key).map(f)
    }
}

fn shutdown_fd(fd: RawFd) {
    // A registered connection's stream (the descriptor's owner) is alive on this thread, so the
    // descriptor is open; shutdown(2) ends its TCP streams but neither closes nor frees it.
    // SAFETY: `fd` is open for the duration of the call (above); shutdown has no memory effects.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// Checks deadlines every [`SWEEP_INTERVAL`] until the worker's runtime stops.
pub async fn sweep_forever(registry: ConnRegistry) {
    loop {
        crate::server::runtime::sleep(SWEEP_INTERVAL).await;
        if !registry.is_empty() {
            registry.expire(Instant::now());
        }
    }
}

/// A connection's stream with its place in the registry. The fields are in the one order that
/// makes the drain's `shutdown(fd)` sound: fields drop in declaration order, so the guard
/// (which takes the descriptor out of the table) goes before the stream (which closes it), and
/// the registry never holds a closed, possibly reused, descriptor.
#[derive(Debug)]
pub struct Registered<T> {
    guard: ConnGuard,
    io: T,
}

impl<T> Registered<T> {
    /// `io` kept in the registry by `guard` (from [`ConnRegistry::register`] with its
    /// descriptor).
    pub fn new(guard: ConnGuard, io: T) -> Self {
        Self { guard, io }
    }

    /// The stream.
    pub fn io(&self) -> &T {
        &self.io
    }

    /// Its place in the registry: deadlines, activity.
    pub fn guard(&self) -> &ConnGuard {
        &self.guard
    }
}

/// Keeps one connection registered while it lives.
#[derive(Debug)]
pub struct ConnGuard {
    registry: ConnRegistry,
    key: usize,
}

impl ConnGuard {
    /// Records what the connection is doing, for the drain.
    pub fn set_activity(&self, activity: Activity) {
        self.registry
            .with_entry(self.key, |e| e.activity = activity);
    }

    /// Bytes of the buffer budget this connection holds.
    pub fn held(&self) -> usize {
        self.registry.with_entry(self.key, |e| e.held).unwrap_or(0)
    }

    /// Sets the connection's share of the buffer budget to `total` bytes if it holds as much
    /// already or the budget has room for the difference; `false` (nothing changed) if not.
    pub fn try_hold(&self, total: usize) -> bool {
        let budget = self.registry.budget();
        self.registry
            .with_entry(self.key, |e| {
                if total > e.held && !budget.try_take(total - e.held) {
                    return false;
                }
                if total < e.held {
                    budget.give_back(e.held - total);
                }
                e.held = total;
                true
            })
            .unwrap_or(false)
    }

    /// Sets the connection's share of the buffer budget to `total` bytes, room or not: for
    /// memory already allocated.
    pub fn hold(&self, total: usize) {
        let budget = self.registry.budget();
        self.registry.with_entry(self.key, |e| {
            if total > e.held {
                budget.take(total - e.held);
            } else {
                budget.give_back(e.held - total);
            }
            e.held = total;
        });
    }

    /// The server-wide budget for buffered bytes.
    pub fn budget(&self) -> &BufferBudget {
        self.registry.budget()
    }

    /// Runs `future` until it completes or `deadline` passes; `None` if the deadline passed
    /// first (the future is then dropped, which cancels its I/O). The drain does not end it: a
    /// write under way when the drain starts finishes, so frames stay whole.
    pub fn within<F: Future>(&self, deadline: Instant, future: F) -> Deadline<'_, F> {
        Deadline::arm(self, deadline, future, false)
    }

    /// [`ConnGuard::within`] for a future the caller keeps (to go on with it afterwards).
    pub fn within_pinned<'f, F: Future>(
        &self,
        deadline: Instant,
        future: Pin<&'f mut F>,
    ) -> Deadline<'_, Pin<&'f mut F>> {
        Deadline::arm(self, deadline, future, false)
    }

    /// Polls `future` until it completes or `deadline` passes (or the drain wakes a WebSocket
    /// connection); `None` then, with `future` left as it was so that the caller can go on
    /// polling it later: a read stays pending across a heartbeat.
    pub fn until<'f, F: Future>(
        &self,
        deadline: Instant,
        future: Pin<&'f mut F>,
    ) -> Deadline<'_, Pin<&'f mut F>> {
        Deadline::arm(self, deadline, future, true)
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let shared = &self.registry.shared;
        let mut entries = shared.entries.borrow_mut();
        let removed = entries.try_remove(self.key);
        shared.publish_len(&entries);
        drop(entries);
        if let Some(entry) = removed {
            self.registry.budget().give_back(entry.held);
        }
    }
}

/// A future raced against its connection's deadline, which is armed while the `Deadline`
/// lives. A plain future rather than an `async fn`: the future it runs is stored once, in
/// place, instead of being moved into a pinned local of a second state machine (a copy of
/// several hundred bytes per read or write).
#[must_use = "a deadline wait does nothing unless it is awaited"]
pub struct Deadline<'g, F> {
    guard: &'g ConnGuard,
    future: F,
    /// Whether the drain's wake-up of a WebSocket connection ends the wait.
    wake_on_drain: bool,
}

impl<F> std::fmt::Debug for Deadline<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deadline")
            .field("key", &self.guard.key)
            .field("wake_on_drain", &self.wake_on_drain)
            .finish_non_exhaustive()
    }
}

impl<'g, F> Deadline<'g, F> {
    fn arm(guard: &'g ConnGuard, deadline: Instant, future: F, wake_on_drain: bool) -> Self {
        guard.registry.with_entry(guard.key, |e| {
            e.deadline = Some(deadline);
            e.expired = deadline <= Instant::now();
        });
        Self {
            guard,
            future,
            wake_on_drain,
        }
    }
}

impl<F> Drop for Deadline<'_, F> {
    /// Disarms the deadline, whether the wait completed, gave up or was dropped. The waker
    /// stays (it is the connection's own task, and the next wait is usually polled by the same
    /// task: cloning it again for every read and write costs more than the rest of a wait); a
    /// disarmed deadline never wakes it, and the drain's wake-up of an idle task is harmless.
    fn drop(&mut self) {
        self.guard.registry.with_entry(self.guard.key, |e| {
            e.deadline = None;
        });
    }
}

impl<F: Future> Future for Deadline<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `future` is pinned structurally: it is never moved out of `self` (neither
        // here nor in `Drop`, which only touches the registry), and `Deadline` implements
        // `Unpin` only when `F` does.
        let this = unsafe { self.get_unchecked_mut() };
        let (guard, wake_on_drain) = (this.guard, this.wake_on_drain);
        // One visit to the entry: the expiry is checked and the waker left for the sweeper
        // before the future is polled (if it completes now, the drop disarms the deadline).
        let expired = guard
            .registry
            .with_entry(guard.key, |e| {
                if e.expired || (wake_on_drain && e.drain_woken) {
                    return true;
                }
                match &e.waker {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    _ => e.waker = Some(cx.waker().clone()),
                }
                false
            })
            .unwrap_or(true);
        if expired {
            return Poll::Ready(None);
        }
        // SAFETY: `this.future` lives inside the pinned `Deadline` and is never moved out of it
        // (neither here nor in `Drop`), so pinning it again is sound.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        future.poll(cx).map(Some)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn guards_unregister_on_drop() {
        let registry = ConnRegistry::default();
        let a = registry.register(-1);
        let b = registry.register(-1);
        assert_eq!(registry.len(), 2);
        drop(a);
        assert_eq!(registry.len(), 1);
        drop(b);
        assert!(registry.is_empty());
    }

    #[test]
    fn a_connections_share_of_the_buffer_budget_goes_back_when_it_ends() {
        let budget = std::sync::Arc::new(BufferBudget::new(1000));
        let metrics = std::sync::Arc::new(crate::server::metrics::Metrics::new(1));
        let registry = ConnRegistry::new(std::sync::Arc::clone(&budget), metrics.open_gauge(0));
        let a = registry.register(-1);
        let b = registry.register(-1);
        assert_eq!(metrics.open_per_worker(), vec![2]);
        assert!(a.try_hold(700));
        assert!(!b.try_hold(400), "700 + 400 > 1000");
        assert_eq!((b.held(), budget.used()), (0, 700));
        assert!(a.try_hold(500), "giving back always succeeds");
        assert!(b.try_hold(400));
        b.hold(600);
        assert!(
            budget.over(),
            "memory already allocated is counted regardless"
        );
        drop(a);
        assert_eq!(budget.used(), 600);
        assert_eq!(metrics.open_per_worker(), vec![1]);
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_wait_past_its_deadline_is_woken_and_gives_up() {
        let registry = ConnRegistry::default();
        let guard = registry.register(-1);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut wait = Box::pin(guard.within(deadline, std::future::pending::<()>()));
        let flag = std::sync::Arc::new(Flag(false.into()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        registry.expire(deadline - Duration::from_secs(1));
        assert!(!flag.0.load(std::sync::atomic::Ordering::SeqCst));
        registry.expire(deadline);
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(wait.as_mut().poll(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn a_wait_that_completes_in_time_returns_its_output_and_disarms() {
        let registry = ConnRegistry::default();
        let guard = registry.register(-1);
        let far = Instant::now() + Duration::from_secs(60);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut wait = Box::pin(guard.within(far, std::future::ready(7)));
        assert_eq!(wait.as_mut().poll(&mut cx), Poll::Ready(Some(7)));
        drop(wait);
        registry.expire(far + Duration::from_secs(1));
        assert!(registry.with_entry(guard.key, |e| !e.expired).unwrap());
    }

    #[test]
    fn a_wait_dropped_before_it_ends_disarms_its_deadline() {
        let registry = ConnRegistry::default();
        let guard = registry.register(-1);
        let soon = Instant::now() + Duration::from_secs(1);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut wait = Box::pin(guard.within(soon, std::future::pending::<()>()));
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        drop(wait);
        registry.expire(soon + Duration::from_secs(1));
        let entry = registry.with_entry(guard.key, |e| (e.deadline, e.expired));
        assert_eq!(entry, Some((None, false)));
    }

    #[test]
    fn a_deadline_already_past_gives_up_at_once() {
        let registry = ConnRegistry::default();
        let guard = registry.register(-1);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut wait = Box::pin(guard.within(Instant::now(), std::future::ready(1)));
        assert_eq!(wait.as_mut().poll(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn the_drain_ends_a_websocket_wait_for_the_client_but_not_a_write() {
        let registry = ConnRegistry::default();
        let guard = registry.register(-1);
        guard.set_activity(Activity::WebSocket);
        let far = Instant::now() + Duration::from_secs(60);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut write = std::pin::pin!(std::future::pending::<()>());
        let mut writing = Box::pin(guard.within_pinned(far, write.as_mut()));
        assert!(writing.as_mut().poll(&mut cx).is_pending());
        registry.begin_drain();
        assert!(
            writing.as_mut().poll(&mut cx).is_pending(),
            "a write goes on"
        );
        drop(writing);
        let mut read = std::pin::pin!(std::future::pending::<()>());
        let mut reading = Box::pin(guard.until(far, read.as_mut()));
        assert_eq!(
            reading.as_mut().poll(&mut cx),
            Poll::Ready(None),
            "a read ends"
        );
    }
}
