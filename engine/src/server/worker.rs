//! A worker: one thread pinned to one core, with its own runtime, its own `SO_REUSEPORT`
//! listener and its own connections; it shares only the connection counter, the client gate,
//! the counters and the drain signal with the other workers.

use std::io;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_util::future::{Either, select};
use ringstream_limits::client_table::Rule;

use crate::config::LimitMode;
use crate::conn::http;
use crate::error::EngineError;
use crate::protections::gate::{Admission, ClientGate, ClientSlot, Refusal};
use crate::routes::broadcast::Hub;
use crate::server::access_log::{AccessLog, FLUSH_INTERVAL};
use crate::server::conn_count::{ConnSlot, ConnectionCounter};
use crate::server::context::{SharedState, WorkerContext};
use crate::server::drain::DrainSignal;
use crate::server::driver::{ChosenDriver, build_runtime};
use crate::server::generation::Generations;
use crate::server::metrics::Metrics;
use crate::server::registry::sweep_forever;
use crate::server::ring_receive::RingUse;
use crate::server::runtime::{TcpAcceptor, sleep, spawn_detached};

/// At most this many 503 answers are in flight per worker; past it a connection the server has
/// no room for is closed without one.
const MAX_REFUSALS_IN_FLIGHT: usize = 256;
/// Pause before accepting again when the process is out of file descriptors, so the accept
/// loop never spins on `EMFILE`.
const FD_EXHAUSTED_PAUSE: Duration = Duration::from_millis(50);
/// How often worker 0 forgets idle clients of the shared client table.
const CLIENT_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Idle clients forgotten per shard and sweep at most.
const CLIENT_SWEEP_BUDGET: usize = 256;
/// Client sweeps per window of the loopback watch (a minute).
const LOOPBACK_WINDOW_SWEEPS: u32 = 60;
/// How long connections get to finish after the drain deadline forced them shut.
const FORCED_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What the server hands each worker.
#[derive(Debug)]
pub struct WorkerSpec {
    /// Index of the worker, for logs.
    pub index: usize,
    /// The core to pin to.
    pub core: Option<usize>,
    /// This worker's listening socket.
    pub listener: std::net::TcpListener,
    /// The driver chosen at start-up.
    pub driver: ChosenDriver,
    /// When WebSocket sessions arm the worker's buffer ring (`receive`).
    pub ring_use: RingUse,
    /// The configuration, and its replacements on reload.
    pub generations: Arc<Generations>,
    /// The server-wide connection count.
    pub counter: Arc<ConnectionCounter>,
    /// The server's counters.
    pub metrics: Arc<Metrics>,
    /// Broadcast topics and every worker's inbox.
    pub hub: Arc<Hub>,
    /// Set when the server starts draining.
    pub drain: Arc<DrainSignal>,
    /// The access log, when it is on.
    pub access_log: Option<Arc<AccessLog>>,
}

/// Starts the worker thread; it reports on `ready` once it accepts connections (or why it
/// cannot) and returns when its drain is complete.
pub fn spawn(
    spec: WorkerSpec,
    ready: Sender<Result<(), EngineError>>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("ringstream-w{}", spec.index))
        .spawn(move || run(spec, ready))
}

fn run(spec: WorkerSpec, ready: Sender<Result<(), EngineError>>) {
    let index = spec.index;
    let fail = |reason: String| EngineError::Worker { index, reason };
    let rt = match build_runtime(spec.driver, spec.core, spec.ring_use != RingUse::Never) {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(fail(format!(
                "cannot build its {} runtime: {e}",
                spec.driver
            ))));
            return;
        }
    };
    rt.block_on(async move {
        let acceptor = match TcpAcceptor::from_std(spec.listener, spec.ring_use) {
            Ok(acceptor) => acceptor,
            Err(e) => {
                let _ = ready.send(Err(fail(format!("cannot register its listener: {e}"))));
                return;
            }
        };
        let shared = SharedState {
            connections: Arc::clone(&spec.counter),
            metrics: Arc::clone(&spec.metrics),
            hub: Arc::clone(&spec.hub),
            access_log: spec.access_log.clone(),
        };
        let first = spec.generations.current();
        let ctx = Rc::new(WorkerContext::new(&first, index, shared));
        spawn_detached(sweep_forever(ctx.registry.clone()));
        spawn_detached(deliver_posts(Rc::clone(&ctx)));
        if ctx.access_log.is_some() {
            spawn_detached(flush_access_log(Rc::clone(&ctx)));
        }
        crate::routes::proxy::health::spawn_checks(&ctx);
        if index == 0 {
            // The clients, their table and the loopback watch are every generation's.
            spawn_detached(sweep_clients(Arc::clone(&first.gate)));
        }
        drop(first);
        let _ = ready.send(Ok(()));
        tracing::debug!(worker = index, core = ?spec.core, "accepting");
        let ctx = accept_until_drain(
            &acceptor,
            ctx,
            &spec.generations,
            &spec.counter,
            &spec.drain,
        )
        .await;
        drop(acceptor);
        let drain_timeout = ctx.config.drain_timeout;
        drain(&ctx, drain_timeout, index).await;
        if let Some(log) = &ctx.access_log {
            log.flush();
        }
    });
}

/// Accepts connections until the drain starts; returns the context of the latest
/// configuration.
async fn accept_until_drain(
    acceptor: &TcpAcceptor,
    mut ctx: Rc<WorkerContext>,
    generations: &Generations,
    counter: &Arc<ConnectionCounter>,
    drain: &DrainSignal,
) -> Rc<WorkerContext> {
    let mut drain_started = pin!(drain.wait());
    let mut last_fd_warning: Option<Instant> = None;
    loop {
        let accepted = match select(pin!(acceptor.accept()), drain_started.as_mut()).await {
            Either::Left((accepted, _)) => accepted,
            Either::Right(((), _)) => return ctx,
        };
        if generations.number() != ctx.generation {
            ctx = take_up(&ctx, generations);
        }
        let ctx = &ctx;
        let (transport, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_fd_exhaustion(&e) => {
                if last_fd_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                    tracing::warn!(
                        error = %e,
                        "out of file descriptors: pausing accept (raise the nofile limit or lower max_connections)"
                    );
                    last_fd_warning = Some(Instant::now());
                }
                sleep(FD_EXHAUSTED_PAUSE).await;
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                continue;
            }
        };
        ctx.counters().accepted.add(1);
        let Some(conn_slot) = counter.try_acquire() else {
            ctx.gate
                .connection_violation(peer.ip(), "", Rule::MaxConnections, LimitMode::Enforce);
            refuse_at_accept(transport, ctx, OVERLOADED);
            continue;
        };
        let client = match ctx.gate.on_accept(peer.ip()) {
            Admission::Admit(client) => Some(client),
            Admission::AtFirstRequest => None,
            Admission::Refuse(refusal) => {
                drop(conn_slot);
                if !refusal.silent {
                    refuse_at_accept(transport, ctx, refusal);
                }
                continue;
            }
        };
        serve(transport, ctx, conn_slot, client);
    }
}

/// This worker's context for the configuration a reload published: the connections accepted
/// from now on get it; the open ones keep theirs.
fn take_up(ctx: &Rc<WorkerContext>, generations: &Generations) -> Rc<WorkerContext> {
    let generation = generations.current();
    let next = Rc::new(ctx.reloaded(&generation));
    crate::routes::proxy::health::spawn_checks(&next);
    tracing::debug!(
        worker = ctx.index(),
        generation = generation.number,
        "worker took up the reloaded configuration"
    );
    next
}

/// 503 + `Retry-After` for a connection past `max_connections`.
const OVERLOADED: Refusal = Refusal {
    status: 503,
    retry_after: Some(1),
    silent: false,
};

fn serve(
    transport: crate::server::transport::TcpTransport,
    ctx: &Rc<WorkerContext>,
    conn_slot: ConnSlot,
    client: Option<ClientSlot>,
) {
    let guard = ctx.registry.register(transport.raw_fd());
    if let Some(tls) = &ctx.config.tls {
        let config = Arc::clone(tls.server());
        spawn_detached(crate::server::tls::serve(
            transport,
            config,
            Rc::clone(ctx),
            guard,
            client,
            conn_slot,
        ));
        return;
    }
    spawn_detached(http::serve(
        transport,
        Rc::clone(ctx),
        guard,
        client,
        conn_slot,
    ));
}

/// Answers a connection refused before it sent anything (503 when the server is full, 403 or
/// 429 from the client gate), without reading its request. On a TLS listener the connection
/// is closed unanswered (an answer would cost the handshake the refusal spares).
fn refuse_at_accept(
    transport: crate::server::transport::TcpTransport,
    ctx: &Rc<WorkerContext>,
    refusal: Refusal,
) {
    if ctx.config.tls.is_some() {
        if !refusal.silent {
            ctx.counters().refusals.count(refusal.status);
        }
        return;
    }
    if ctx.refusals_in_flight.get() >= MAX_REFUSALS_IN_FLIGHT {
        return;
    }
    ctx.refusals_in_flight.set(ctx.refusals_in_flight.get() + 1);
    if !refusal.silent {
        ctx.counters().refusals.count(refusal.status);
    }
    let ctx = Rc::clone(ctx);
    spawn_detached(async move {
        http::refuse_unread(transport, refusal, ctx.date.now(), ctx.send_timeout()).await;
        ctx.refusals_in_flight.set(ctx.refusals_in_flight.get() - 1);
    });
}

/// Fans out the frames other workers published to topics with members on this worker, in the
/// order each worker posted them.
async fn deliver_posts(ctx: Rc<WorkerContext>) {
    let mut batch = Vec::new();
    loop {
        std::future::poll_fn(|cx| ctx.hub.poll_posts(ctx.index(), cx, &mut batch)).await;
        let topics = ctx.topics.borrow();
        for post in batch.drain(..) {
            ctx.count_delivery(topics.deliver(&post.topic, &post.frame, None));
        }
    }
}

/// Forgets idle clients of the shared table now and then, so a quiet server gives memory
/// back (lookups also forget a few as they go).
/// Also ends a window of the loopback watch every [`LOOPBACK_WINDOW_SWEEPS`] sweeps.
async fn sweep_clients(gate: Arc<ClientGate>) {
    let mut sweeps: u32 = 0;
    loop {
        sleep(CLIENT_SWEEP_INTERVAL).await;
        gate.table().sweep(gate.now(), CLIENT_SWEEP_BUDGET);
        sweeps = sweeps.wrapping_add(1);
        if !sweeps.is_multiple_of(LOOPBACK_WINDOW_SWEEPS) {
            continue;
        }
        if let Some(share) = gate.end_loopback_window() {
            tracing::warn!(
                admitted = share.admitted,
                from_loopback = share.from_loopback,
                "most clients connect from loopback, which is exempt from per-client limits: \
                 behind a reverse proxy on this host, list it in trusted_proxies so its clients \
                 are told apart (or set exempt = [] to limit loopback clients too)"
            );
        }
    }
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Lets in-flight requests finish for up to `drain_timeout`, then closes what is left.
async fn drain(ctx: &WorkerContext, drain_timeout: Duration, index: usize) {
    ctx.draining.set(true);
    ctx.registry.begin_drain();
    let deadline = Instant::now() + drain_timeout;
    if !wait_until_empty(ctx, deadline).await {
        tracing::warn!(
            worker = index,
            open = ctx.registry.len(),
            "drain timeout: closing the remaining connections"
        );
        ctx.registry.shutdown_all();
        wait_until_empty(ctx, Instant::now() + FORCED_CLOSE_GRACE).await;
    }
}

/// Hands this worker's access log lines to the writer every [`FLUSH_INTERVAL`].
async fn flush_access_log(ctx: Rc<WorkerContext>) {
    loop {
        sleep(FLUSH_INTERVAL).await;
        if let Some(log) = &ctx.access_log {
            log.flush();
        }
    }
}

/// Polls the registry until it is empty or `deadline` passes; true if it emptied.
async fn wait_until_empty(ctx: &WorkerContext, deadline: Instant) -> bool {
    while !ctx.registry.is_empty() {
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(10)).await;
    }
    true
}
