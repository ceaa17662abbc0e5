//! One connection served on a worker context of its own, in a runtime on the test thread,
//! with the worker's deadline sweeper running beside it.

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::memory::{self, Client, Written};
use crate::config::ServerConfig;
use crate::conn::http;
use crate::protections::gate::{Admission, ClientGate};
use crate::routes::broadcast::Hub;
use crate::routes::state;
use crate::server::conn_count::ConnectionCounter;
use crate::server::context::{SharedState, WorkerContext};
use crate::server::driver::{ChosenDriver, build_runtime};
use crate::server::generation::Generation;
use crate::server::metrics::Metrics;
use crate::server::registry::sweep_forever;
use crate::server::runtime::{sleep, spawn_detached, timeout};

/// A connection that has not ended by then fails the test (no test needs a tenth of it).
const LONGEST_CONNECTION: Duration = Duration::from_secs(10);

/// What a connection left behind.
#[derive(Debug)]
pub struct Served {
    /// Every write, in order.
    pub writes: Vec<Written>,
    /// When the server sent its FIN, if it did.
    pub fin: Option<Duration>,
    /// How long the connection lived.
    pub elapsed: Duration,
    /// Bytes the server read.
    pub bytes_read: usize,
    /// The server's counters.
    pub metrics: Arc<Metrics>,
}

impl Served {
    /// Everything the client received, with every `Date` value replaced by `<date>`.
    pub fn output(&self) -> Bytes {
        let bytes: Vec<u8> = self.writes.iter().flat_map(|w| &w.bytes).copied().collect();
        without_dates(&bytes)
    }
}

/// What the client does once its chunks are sent.
#[derive(Debug, Clone, Copy)]
pub enum Then {
    /// Closes its sending side.
    Eof,
    /// Sends nothing more, and never closes.
    Silent,
    /// Closes its sending side once the server has sent its FIN.
    EofAfterFin,
}

/// A client that sends `chunks` (one read each) and then does `then`.
pub fn script(chunks: Vec<Vec<u8>>, then: Then) -> impl FnOnce(Client) -> ScriptFuture {
    move |client| {
        Box::pin(async move {
            for chunk in chunks {
                client.send(chunk);
            }
            match then {
                Then::Eof => client.close(),
                Then::Silent => {}
                Then::EofAfterFin => {
                    client.wait_for(|_, fin| fin).await;
                    client.close();
                }
            }
        })
    }
}

/// The future of a [`script`].
pub type ScriptFuture = std::pin::Pin<Box<dyn Future<Output = ()>>>;

/// Serves one connection of `config` with `conn::http::serve` until it ends, while `client`
/// plays the client.
pub fn serve<F, Fut>(config: ServerConfig, client: F) -> Served
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let runtime = build_runtime(ChosenDriver::Poll, None, false).unwrap();
    runtime.block_on(async move {
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::new(1));
        let counter = ConnectionCounter::new(
            config.connection_limits.max_connections,
            config.connection_limits.max_buffered_bytes,
        );
        let gate = Arc::new(ClientGate::new(&config, Arc::clone(&metrics)));
        let shared = SharedState {
            connections: Arc::clone(&counter),
            metrics: Arc::clone(&metrics),
            hub: Arc::new(Hub::new(1)),
            access_log: None,
        };
        let generation = Generation {
            number: 0,
            routes: state::open(&config).unwrap(),
            gate: Arc::clone(&gate),
            config: Arc::clone(&config),
        };
        let ctx = Rc::new(WorkerContext::new(&generation, 0, shared));
        // As a worker does: one sweeper wakes the connections whose deadline passed.
        spawn_detached(sweep_forever(ctx.registry.clone()));
        let (io, end) = memory::pair();
        spawn_detached(client(end.clone()));
        // As the accept loop does: the connection's place, its client, its registry entry.
        let conn_slot = counter.try_acquire().unwrap();
        let client_slot = match gate.on_accept(memory::PEER.ip()) {
            Admission::Admit(slot) => Some(slot),
            Admission::AtFirstRequest => None,
            Admission::Refuse(refusal) => panic!("refused at accept: {refusal:?}"),
        };
        let guard = ctx.registry.register(-1);
        let started = Instant::now();
        let served = http::serve(io, Rc::clone(&ctx), guard, client_slot, conn_slot);
        let ended = async {
            served.await;
            // A WebSocket session goes on in a task of its own after the upgrade: the
            // connection has ended when it gives its place back.
            while counter.open() > 0 {
                sleep(Duration::from_millis(1)).await;
            }
        };
        timeout(LONGEST_CONNECTION, ended)
            .await
            .expect("the connection did not end");
        let elapsed = started.elapsed();
        assert!(ctx.registry.is_empty(), "the connection left the registry");
        assert_eq!(counter.open(), 0, "the connection gave back its place");
        assert_eq!(
            end.misuses(),
            (0, 0),
            "no read without room, no write after the FIN"
        );
        Served {
            writes: end.writes(),
            fin: end.fin(),
            elapsed,
            bytes_read: end.bytes_read(),
            metrics,
        }
    })
}

/// Asserts that a wait ended by a deadline of `timeout` lasted `waited`: never less (no
/// deadline fires early), and less than a few seconds (it fired at all; the sweeper's
/// granularity and a loaded machine make any tighter bound flaky).
pub fn assert_deadline(waited: Duration, timeout: Duration) {
    assert!(waited >= timeout, "{waited:?} < {timeout:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

/// `bytes` with the value of every `Date` header replaced by `<date>`; a `Bytes`, whose
/// `Debug` shows text as text and every other byte escaped.
pub fn without_dates(bytes: &[u8]) -> Bytes {
    const FIELD: &[u8] = b"\r\nDate: ";
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(at) = find(rest, FIELD) {
        let value = at + FIELD.len();
        out.extend_from_slice(&rest[..value]);
        out.extend_from_slice(b"<date>");
        let end = find(&rest[value..], b"\r\n").map_or(rest.len(), |e| value + e);
        rest = &rest[end..];
    }
    out.extend_from_slice(rest);
    out.into()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Every way to cut `bytes` in two non-empty reads, and the whole in one.
pub fn splits(bytes: &[u8]) -> impl Iterator<Item = Vec<Vec<u8>>> + '_ {
    (1..bytes.len())
        .map(|at| vec![bytes[..at].to_vec(), bytes[at..].to_vec()])
        .chain(std::iter::once(vec![bytes.to_vec()]))
}

/// `bytes` one byte per read.
pub fn bytewise(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes.iter().map(|b| vec![*b]).collect()
}
