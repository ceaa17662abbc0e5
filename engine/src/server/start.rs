//! Starting the workers, and running the server until a signal drains it.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::cluster::Cluster;
use crate::config::{ReceiveMode, ServerConfig};
use crate::error::EngineError;
use crate::protections::gate::ClientGate;
use crate::routes::broadcast::Hub;
use crate::routes::state::{self, RouteStates};
use crate::server::access_log::AccessLog;
use crate::server::conn_count::ConnectionCounter;
use crate::server::cpus::allowed_cpus;
use crate::server::drain::DrainSignal;
use crate::server::driver::{self, ChosenDriver};
use crate::server::generation::{Generation, Generations};
use crate::server::listener::bind_reuseport;
use crate::server::metrics::Metrics;
use crate::server::reload::{self, ReloadSource};
use crate::server::ring_receive::RingUse;
use crate::server::rlimit::raise_nofile;
use crate::server::signals::TerminationSignals;
use crate::server::worker::{self, WorkerSpec};

/// File descriptors kept back from `max_connections` for listeners, rings, logs and files.
const RESERVED_FDS: u64 = 64;

/// A running server: its workers accept connections until [`Server::begin_drain`].
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    driver: ChosenDriver,
    workers: Vec<JoinHandle<()>>,
    drain: Arc<DrainSignal>,
    /// The configuration new connections get, and its replacements.
    generations: Arc<Generations>,
    /// What the routes of every generation share (sink files are flushed once the workers
    /// are done), the latest last.
    routes: Mutex<Vec<RouteStates>>,
    metrics: Arc<Metrics>,
    /// The access log, written out once the workers are done.
    access_log: Option<Arc<AccessLog>>,
    /// The link to the other nodes, stopped once the workers are done.
    cluster: Option<Arc<Cluster>>,
}

impl Server {
    /// Binds the listeners and starts one worker per core. Returns once every worker accepts
    /// connections, or the first reason one could not.
    pub fn start(mut config: ServerConfig) -> Result<Self, EngineError> {
        limit_connections_to_fds(&mut config);
        let driver = driver::choose(config.io_driver, config.io_uring_setup)?;
        let ring_use = driver::ring_use(driver, config.receive);
        let cpus = allowed_cpus();
        let count = if config.workers == 0 {
            cpus.len()
        } else {
            config.workers
        };
        let listeners = bind_reuseport(
            config.listen,
            count,
            config.backlog,
            config.allow_shared_port,
        )?;
        let local_addr = listeners[0].local_addr()?;
        let config = Arc::new(config);
        let counter = ConnectionCounter::new(
            config.connection_limits.max_connections,
            config.connection_limits.max_buffered_bytes,
        );
        let metrics = Arc::new(Metrics::new(count));
        let mut gate = ClientGate::new(&config, Arc::clone(&metrics));
        let hub = Arc::new(Hub::new(count));
        let cluster = match &config.cluster {
            Some(cluster_config) => {
                let cluster = Cluster::start(cluster_config.clone(), &hub, gate.shared_table())?;
                hub.topics.join_cluster(Arc::clone(&cluster));
                gate = gate.with_cluster(Arc::clone(&cluster), cluster_config.secret.as_bytes());
                Some(cluster)
            }
            None => None,
        };
        let gate = Arc::new(gate);
        let routes = state::open(&config)?;
        let generations = Arc::new(Generations::new(Generation {
            number: 0,
            config: Arc::clone(&config),
            routes: Arc::clone(&routes),
            gate,
        }));
        let access_log = match &config.access_log {
            Some(log) => Some(Arc::new(AccessLog::open(log).map_err(EngineError::Io)?)),
            None => None,
        };
        let drain = Arc::new(DrainSignal::default());
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut server = Self {
            local_addr,
            driver,
            workers: Vec::with_capacity(count),
            drain,
            generations,
            routes: Mutex::new(vec![routes]),
            metrics: Arc::clone(&metrics),
            access_log,
            cluster,
        };
        for (index, listener) in listeners.into_iter().enumerate() {
            let spec = WorkerSpec {
                index,
                core: Some(cpus[index % cpus.len()]),
                listener,
                driver,
                ring_use,
                generations: Arc::clone(&server.generations),
                counter: Arc::clone(&counter),
                metrics: Arc::clone(&metrics),
                hub: Arc::clone(&hub),
                drain: Arc::clone(&server.drain),
                access_log: server.access_log.clone(),
            };
            match worker::spawn(spec, ready_tx.clone()) {
                Ok(handle) => server.workers.push(handle),
                Err(e) => return Err(server.abort(EngineError::Io(e))),
            }
        }
        drop(ready_tx);
        for _ in 0..count {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(server.abort(e)),
                Err(_) => {
                    let e = EngineError::Worker {
                        index: 0,
                        reason: "exited during start-up".into(),
                    };
                    return Err(server.abort(e));
                }
            }
        }
        tracing::info!(
            %local_addr,
            workers = count,
            driver = %driver,
            // What the workers run: the poll driver receives per read whatever was asked.
            receive = %if ring_use == RingUse::Never {
                ReceiveMode::PerRead
            } else {
                config.receive
            },
            max_connections = config.connection_limits.max_connections,
            max_buffered_bytes = config.connection_limits.max_buffered_bytes,
            "ringstream started"
        );
        Ok(server)
    }

    /// The address the workers listen on (with the port picked, if 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The driver the workers run on.
    pub fn driver(&self) -> ChosenDriver {
        self.driver
    }

    /// Stops accepting and lets in-flight requests finish (up to `drain_timeout`).
    pub fn begin_drain(&self) {
        self.drain.start();
    }

    /// Opens the access log's file afresh (SIGUSR1, after logrotate moved it away).
    pub fn reopen_logs(&self) {
        if let Some(log) = &self.access_log {
            log.reopen();
            tracing::info!("access log reopened");
        }
    }

    /// Replaces the configuration with `next` for the connections accepted from now on (open
    /// ones keep theirs): routes, limits, file roots, tokens, upstreams and auth settings.
    /// Keys that need a restart keep their running values and are named in the answer.
    /// A route state that cannot be opened (a missing root, an unwritable sink file) refuses
    /// the whole reload and changes nothing.
    pub fn reload(&self, mut next: ServerConfig) -> Result<Vec<&'static str>, EngineError> {
        let current = self.generations.current();
        limit_connections_to_fds(&mut next);
        let kept = reload::keep_restart_keys(&current.config, &mut next);
        let mut all = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let latest = Some((&*current.config, &current.routes));
        let routes = state::reopen(&next, latest, &all)?;
        let gate = Arc::new(current.gate.reloaded(&next));
        all.push(Arc::clone(&routes));
        self.generations.publish(Generation {
            number: current.number + 1,
            config: Arc::new(next),
            routes,
            gate,
        });
        Ok(kept)
    }

    /// The server's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether every worker has finished.
    pub fn is_finished(&self) -> bool {
        self.workers.iter().all(JoinHandle::is_finished)
    }

    /// Waits for every worker to finish.
    pub fn join(self) -> Result<(), EngineError> {
        let mut result = Ok(());
        for (index, handle) in self.workers.into_iter().enumerate() {
            if handle.join().is_err() {
                result = Err(EngineError::Worker {
                    index,
                    reason: "panicked".into(),
                });
            }
        }
        // Every line the workers queued reaches the file before the process exits.
        let generations = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        for sink in generations
            .iter()
            .flat_map(|routes| routes.iter())
            .filter_map(|r| r.sink.as_ref())
        {
            sink.shutdown();
        }
        if let Some(log) = &self.access_log {
            log.shutdown();
        }
        if let Some(cluster) = &self.cluster {
            cluster.shutdown();
        }
        result
    }

    fn abort(self, error: EngineError) -> EngineError {
        self.begin_drain();
        // The start-up error is the one worth reporting.
        let _ = self.join();
        error
    }
}

/// Runs the server until SIGTERM or SIGINT, then drains it; a second signal exits at once.
/// SIGUSR1 reopens the access log. A server run this way has no configuration to read again:
/// SIGHUP is logged and ignored (see [`run_reloadable`]).
/// `on_ready` is called with the bound address once every worker accepts connections.
pub fn run(config: ServerConfig, on_ready: impl FnOnce(SocketAddr)) -> Result<(), EngineError> {
    run_reloadable(config, on_ready, &mut || {
        Err("this server was given its configuration in code: nothing to read again".into())
    })
}

/// [`run`], and SIGHUP reloads: `source` reads the configuration again
/// ([`crate::server::reload`]).
pub fn run_reloadable(
    config: ServerConfig,
    on_ready: impl FnOnce(SocketAddr),
    source: &mut ReloadSource<'_>,
) -> Result<(), EngineError> {
    let signals = TerminationSignals::block()?;
    let server = Server::start(config)?;
    on_ready(server.local_addr());
    let poll = Duration::from_millis(100);
    while !server.is_finished() {
        if let Some(signo) = signals.wait(poll) {
            if signo == libc::SIGUSR1 {
                server.reopen_logs();
                continue;
            }
            if signo == libc::SIGHUP {
                reload::reload(&server, source);
                continue;
            }
            tracing::info!(
                signal = signo,
                "draining: no new connections, finishing requests"
            );
            server.begin_drain();
            break;
        }
    }
    while !server.is_finished() {
        if let Some(signo) = signals.wait(poll) {
            if signo == libc::SIGUSR1 {
                server.reopen_logs();
                continue;
            }
            if signo == libc::SIGHUP {
                tracing::warn!("reload ignored: the server is draining");
                continue;
            }
            tracing::warn!(
                signal = signo,
                "second signal: exiting without waiting for the drain"
            );
            std::process::exit(128 + signo);
        }
    }
    server.join()?;
    tracing::info!("drained; exiting");
    Ok(())
}

/// Keeps `max_connections` below the open-file limit, so that a full server answers 503
/// instead of failing `accept` with `EMFILE`.
fn limit_connections_to_fds(config: &mut ServerConfig) {
    let Some(nofile) = raise_nofile() else {
        return;
    };
    let fit = usize::try_from(nofile.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
    let max = &mut config.connection_limits.max_connections;
    if *max > fit {
        tracing::info!(
            nofile,
            configured = *max,
            effective = fit,
            "the open-file limit fits {fit} connections; max_connections lowered to match"
        );
        *max = fit.max(1);
    } else {
        tracing::info!(nofile, "the open-file limit fits {fit} connections");
    }
}
