//! Graceful drain: the cross-thread signal that starts it, and each worker's registry of open
//! connections that it uses to close idle ones at once and everything at the deadline.

use std::cell::RefCell;
use std::future::poll_fn;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Waker};

use slab::Slab;

/// Set once by the signal thread; every worker waits on it. Touched only at start-up and at
/// shutdown, never on the request path (connections read the flag through their worker).
#[derive(Debug, Default)]
pub struct DrainSignal {
    draining: AtomicBool,
    waiters: Mutex<Vec<Waker>>,
}

impl DrainSignal {
    /// Starts the drain and wakes every worker.
    pub fn start(&self) {
        self.draining.store(true, Ordering::SeqCst);
        let waiters = match self.waiters.lock() {
            Ok(mut w) => std::mem::take(&mut *w),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        waiters.into_iter().for_each(Waker::wake);
    }

    /// Whether the drain has started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Completes once the drain has started.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.is_draining() {
                return Poll::Ready(());
            }
            let mut waiters = match self.waiters.lock() {
                Ok(w) => w,
                Err(poisoned) => poisoned.into_inner(),
            };
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            drop(waiters);
            // Re-check after registering: `start` may have run in between.
            if self.is_draining() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

#[derive(Debug)]
struct Entry {
    fd: RawFd,
    idle: bool,
}

/// One worker's open connections. Single-threaded: lives in the worker's runtime.
#[derive(Debug, Clone, Default)]
pub struct ConnRegistry {
    entries: Rc<RefCell<Slab<Entry>>>,
}

impl ConnRegistry {
    /// Records a new connection; the returned guard removes it when dropped. Declare the guard
    /// after the stream that owns `fd`, so that it drops first and the registry never holds a
    /// descriptor that was closed (and possibly reused).
    pub fn register(&self, fd: RawFd) -> ConnGuard {
        let key = self.entries.borrow_mut().insert(Entry { fd, idle: true });
        ConnGuard {
            registry: self.clone(),
            key,
        }
    }

    /// Number of open connections on this worker.
    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    /// Whether this worker has no open connection.
    pub fn is_empty(&self) -> bool {
        self.entries.borrow().is_empty()
    }

    /// Shuts down every connection that is between requests; their pending read returns 0 and
    /// they close. Connections in the middle of a request are left to finish.
    pub fn shutdown_idle(&self) {
        for (_, entry) in self.entries.borrow().iter().filter(|(_, e)| e.idle) {
            shutdown_fd(entry.fd);
        }
    }

    /// Shuts down every connection (drain deadline): pending reads and writes fail and the
    /// connections close.
    pub fn shutdown_all(&self) {
        for (_, entry) in self.entries.borrow().iter() {
            shutdown_fd(entry.fd);
        }
    }
}

fn shutdown_fd(fd: RawFd) {
    // SAFETY: `fd` belongs to a connection that is still registered, so its stream (the owner of
    // the descriptor) is alive on this thread and the descriptor is open; shutdown(2) neither
    // closes nor invalidates it, it only ends the TCP streams in both directions.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// Keeps one connection registered while it lives.
#[derive(Debug)]
pub struct ConnGuard {
    registry: ConnRegistry,
    key: usize,
}

impl ConnGuard {
    /// Marks the connection as waiting for a request (`true`) or working on one (`false`).
    pub fn set_idle(&self, idle: bool) {
        if let Some(entry) = self.registry.entries.borrow_mut().get_mut(self.key) {
            entry.idle = idle;
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.registry.entries.borrow_mut().try_remove(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn drain_signal_is_sticky() {
        let signal = DrainSignal::default();
        assert!(!signal.is_draining());
        signal.start();
        assert!(signal.is_draining());
    }
}
