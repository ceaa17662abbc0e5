//! The WebSocket handler API: application code registered in code on a route, for everything
//! that is not echo.
//!
//! A handler is an async function that receives a [`WebSocket`] per connection. The engine keeps
//! the connection's protocol side in its own task (the pump): it reads, enforces every
//! protection of the route (`max_message_size`, the rates, heartbeats, the idle timeout, the
//! drain), answers pings and writes. The handler sees whole, validated messages only, and may
//! await anything between two of them without stalling the heartbeat. The two sides meet in
//! two bounded queues: messages in (the pump stops reading while it is full, so a slow handler
//! slows its client down instead of growing memory) and frames out (`send` waits once
//! `max_backpressure` bytes are queued, so a client that does not read slows its handler down;
//! `send_timeout` closes it).
//!
//! Handlers run on the worker thread that accepted the connection; their futures need not be
//! `Send`. [`crate::routes::handler::task`] gives them timers and local tasks.
//!
//! ```no_run
//! use ringstream_engine::config::{RouteKind, ServerConfig};
//! use ringstream_engine::handler::{Message, WsHandler};
//!
//! let upper = WsHandler::new(|mut ws| async move {
//!     while let Some(message) = ws.recv().await {
//!         let reply = message.as_text().map(str::to_uppercase).unwrap_or_default();
//!         if ws.send(Message::text(reply)).await.is_err() {
//!             break;
//!         }
//!     }
//! });
//! let config = ServerConfig::new("127.0.0.1:8080".parse().unwrap())
//!     .route("/ws/upper", RouteKind::handler(upper));
//! ringstream_engine::run(config, |_| {}).unwrap();
//! ```

mod head;
mod link;
mod message;
pub(crate) mod pump;
mod socket;
pub mod task;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use head::RequestHead;
pub(crate) use link::{Link, Signal};
pub use message::{CloseError, Closed, Message};
pub use socket::{WebSocket, WsSender};

type BoxedHandler = dyn Fn(WebSocket) -> Pin<Box<dyn Future<Output = ()>>> + Send + Sync;

/// A WebSocket handler: called once per accepted connection with its [`WebSocket`].
#[derive(Clone)]
pub struct WsHandler(Arc<BoxedHandler>);

impl WsHandler {
    /// Wraps an async function. The function is shared by every worker (hence `Send + Sync`);
    /// the future it returns runs on one worker and need not be `Send`.
    pub fn new<F, Fut>(handler: F) -> Self
    where
        F: Fn(WebSocket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        Self(Arc::new(move |ws| Box::pin(handler(ws))))
    }

    /// Starts the handler for one connection as a task of the current worker.
    pub(crate) fn start(&self, ws: WebSocket) {
        crate::server::runtime::spawn_detached((self.0)(ws));
    }
}

impl fmt::Debug for WsHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WsHandler(..)")
    }
}

/// Two handlers are equal when they are the same registration (configurations compare equal
/// only if they would run the same code).
impl PartialEq for WsHandler {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
