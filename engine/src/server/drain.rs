//! The cross-thread signal that starts the graceful drain (each worker then closes its own
//! connections through its [`crate::server::registry::ConnRegistry`]).

use std::future::poll_fn;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Waker};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_signal_is_sticky() {
        let signal = DrainSignal::default();
        assert!(!signal.is_draining());
        signal.start();
        assert!(signal.is_draining());
    }
}
