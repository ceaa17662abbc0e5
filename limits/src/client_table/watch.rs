//! Watching clients' connection counts: what the table shares with every connection's pass
//! (the number of connected clients, and whoever watches the counts change).
//!
//! A server that shares per-client counts with other nodes mirrors each client's count when it
//! changes; the table tells it through a [`CountWatcher`], after the count moved, on every path
//! a connection opens or ends by. Without a watcher nothing is called.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use super::ClientState;
use crate::identity::ClientKey;

/// Told when a client's count of open connections changed (read it with
/// [`ClientState::connections`]). The table keeps no client's key in its state, so the key
/// comes with each opening; a closing names the client by its state (the same `Arc` as when
/// it opened: a client with connections is never forgotten).
pub trait CountWatcher: Send + Sync + std::fmt::Debug {
    /// A connection of `client`, kept under `key`, opened (the count has grown).
    fn opened(&self, key: ClientKey, client: &Arc<ClientState>);
    /// A connection of `client` ended (the count has shrunk).
    fn closed(&self, client: &Arc<ClientState>);
}

/// What the table and every connection's pass share.
#[derive(Debug, Default)]
pub(super) struct TableShared {
    /// Clients with at least one connection open.
    connected_clients: AtomicUsize,
    watcher: OnceLock<Arc<dyn CountWatcher>>,
}

impl TableShared {
    pub(super) fn connected_clients(&self) -> usize {
        self.connected_clients.load(Ordering::Acquire)
    }

    /// `client`'s count went from `before` to `before + 1`.
    pub(super) fn opened(&self, key: ClientKey, client: &Arc<ClientState>, before: u32) {
        if before == 0 {
            self.connected_clients.fetch_add(1, Ordering::AcqRel);
        }
        if let Some(watcher) = self.watcher.get() {
            watcher.opened(key, client);
        }
    }

    /// `client`'s count went from `before` to `before - 1`.
    pub(super) fn closed(&self, client: &Arc<ClientState>, before: u32) {
        if before == 1 {
            self.connected_clients.fetch_sub(1, Ordering::AcqRel);
        }
        if let Some(watcher) = self.watcher.get() {
            watcher.closed(client);
        }
    }

    /// Sets the watcher; a table has at most one (`false`: one was set before).
    pub(super) fn watch(&self, watcher: Arc<dyn CountWatcher>) -> bool {
        self.watcher.set(watcher).is_ok()
    }
}
