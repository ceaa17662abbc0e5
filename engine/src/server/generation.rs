//! The configuration every worker serves, and its replacement on reload: a [`Generation`] is
//! one configuration with what it opened (route states, the client gate's rules), shared by
//! every worker. A reload publishes a new one; each worker takes it up at its next accept, so
//! connections accepted from then on get it, while open connections keep the generation they
//! started with until they end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::ServerConfig;
use crate::protections::gate::ClientGate;
use crate::routes::state::RouteStates;

/// One configuration, as every worker serves it.
#[derive(Debug)]
pub struct Generation {
    /// Counts reloads: 0 for the configuration the server started with.
    pub number: u64,
    /// The configuration.
    pub config: Arc<ServerConfig>,
    /// What its routes share (sink files, files roots, upload directories, auth caches).
    pub routes: RouteStates,
    /// Its per-client rules, over the clients of every generation.
    pub gate: Arc<ClientGate>,
}

/// The generation new connections get.
#[derive(Debug)]
pub struct Generations {
    current: Mutex<Arc<Generation>>,
    /// The current generation's number, read at each accept without the lock.
    number: AtomicU64,
}

impl Generations {
    /// Starts with `first`.
    pub fn new(first: Generation) -> Self {
        Self {
            number: AtomicU64::new(first.number),
            current: Mutex::new(Arc::new(first)),
        }
    }

    /// The generation new connections get.
    pub fn current(&self) -> Arc<Generation> {
        Arc::clone(&self.current.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The current generation's number (one atomic load).
    pub fn number(&self) -> u64 {
        self.number.load(Ordering::Acquire)
    }

    /// Makes `next` the generation new connections get.
    pub fn publish(&self, next: Generation) {
        let number = next.number;
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        self.number.store(number, Ordering::Release);
    }
}
