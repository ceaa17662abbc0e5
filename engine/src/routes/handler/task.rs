//! Timers and local tasks for WebSocket handlers. Handlers run on the worker thread that
//! accepted their connection; these functions must be called from there (inside a handler, or
//! a task it spawned).

use std::future::Future;
use std::time::Duration;

/// Runs `future` as an independent task on the current worker. A panic inside it ends that
/// task only.
pub fn spawn<F: Future + 'static>(future: F) {
    crate::server::runtime::spawn_detached(future);
}

/// Waits for `duration`.
pub async fn sleep(duration: Duration) {
    crate::server::runtime::sleep(duration).await;
}
