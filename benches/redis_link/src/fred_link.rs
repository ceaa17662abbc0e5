//! Option (a): a dedicated I/O thread runs the `fred` client on a tokio current-thread
//! runtime; the worker thread reaches it through a bounded `tokio::sync::mpsc` channel
//! (`try_send`, never blocking the worker), and replies come back through oneshots that the
//! worker awaits on its compio runtime. Subscribed messages go the other way through a second
//! bounded channel that the worker drains in batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use bytes::Bytes;
use fred::bytes_utils::Str;
use fred::prelude::{
    Builder, ClientLike, Config, EventInterface, LuaInterface, PubsubInterface, TcpConfig, Value,
};
use fred::types::Message as PubsubMessage;
use futures_channel::oneshot;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::link::{CHANNEL, LEASE_ARGS, LeaseReply, Link, LinkError, Message, MessageSource};

/// How the I/O thread is set up.
#[derive(Debug, Clone)]
pub struct FredConfig {
    pub port: u16,
    /// SHA1 of the loaded lease script.
    pub lease_sha: String,
    /// Capacity of the worker → I/O thread request channel.
    pub queue: usize,
    /// Commands the I/O thread keeps in flight at most.
    pub max_in_flight: usize,
    /// Subscribe to [`CHANNEL`] and forward its messages (through a channel of this capacity).
    pub subscribe: Option<usize>,
}

/// A request from the worker to the I/O thread.
#[derive(Debug)]
enum Request {
    Publish(Bytes),
    Lease {
        key: String,
        reply: oneshot::Sender<Result<LeaseReply, LinkError>>,
    },
}

/// Counters the I/O thread keeps for the worker.
#[derive(Debug, Default)]
struct Counters {
    publishes_answered: AtomicU64,
    publish_errors: AtomicU64,
    messages_lost: AtomicU64,
}

/// The worker's end of the link (moved to the worker thread).
#[derive(Debug)]
pub struct FredLink {
    requests: mpsc::Sender<Request>,
    counters: Arc<Counters>,
}

/// The worker's end of the subscription.
#[derive(Debug)]
pub struct FredMessages {
    messages: mpsc::Receiver<Bytes>,
    counters: Arc<Counters>,
}

/// The I/O thread; join it after the worker has dropped its ends.
#[derive(Debug)]
pub struct IoThread {
    handle: thread::JoinHandle<()>,
}

/// Starts the I/O thread and waits until its client is connected (and subscribed).
pub fn start(config: FredConfig) -> Result<(FredLink, Option<FredMessages>, IoThread), LinkError> {
    let (request_tx, request_rx) = mpsc::channel(config.queue);
    let (message_tx, message_rx) = match config.subscribe {
        Some(capacity) => {
            let (tx, rx) = mpsc::channel(capacity);
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };
    let counters = Arc::new(Counters::default());
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    let thread_counters = Arc::clone(&counters);
    let handle = thread::Builder::new()
        .name("rs-fred-io".into())
        .spawn(move || {
            io_thread(config, request_rx, message_tx, thread_counters, ready_tx);
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            // The thread has ended (or is ending) after reporting its failure.
            let _ = handle.join();
            return Err(e);
        }
        Err(_) => {
            let _ = handle.join();
            return Err(LinkError::Closed);
        }
    }
    let link = FredLink {
        requests: request_tx,
        counters: Arc::clone(&counters),
    };
    let messages = message_rx.map(|messages| FredMessages { messages, counters });
    Ok((link, messages, IoThread { handle }))
}

impl IoThread {
    pub fn join(self) {
        // A panic of the I/O thread was already printed by the panic hook.
        let _ = self.handle.join();
    }
}

fn io_thread(
    config: FredConfig,
    requests: mpsc::Receiver<Request>,
    messages: Option<mpsc::Sender<Bytes>>,
    counters: Arc<Counters>,
    ready: std::sync::mpsc::SyncSender<Result<(), LinkError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(e.into()));
            return;
        }
    };
    runtime.block_on(async move {
        let client = match connect(&config).await {
            Ok(client) => client,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let executor = Executor {
            client: client.clone(),
            channel: Str::from_static(CHANNEL),
            lease_sha: config.lease_sha.clone().into(),
            counters: Arc::clone(&counters),
        };
        match messages {
            Some(messages) => {
                let pushes = client.message_rx();
                if let Err(e) = client.subscribe(CHANNEL).await {
                    let _ = ready.send(Err(e.into()));
                    return;
                }
                let _ = ready.send(Ok(()));
                // The subscription lasts as long as the worker keeps its request sender.
                tokio::select! {
                    () = executor.serve(requests, config.max_in_flight) => {}
                    () = forward(pushes, messages, &counters) => {}
                }
            }
            None => {
                let _ = ready.send(Ok(()));
                executor.serve(requests, config.max_in_flight).await;
            }
        }
        let _ = client.quit().await;
    });
}

async fn connect(config: &FredConfig) -> Result<fred::prelude::Client, LinkError> {
    let redis = Config::from_url(&format!("redis://127.0.0.1:{}", config.port))?;
    let client = Builder::from_config(redis)
        .with_performance_config(|perf| {
            // Room for bursts of pushes between two polls of the forwarding task.
            perf.broadcast_channel_capacity = 4096;
        })
        .with_connection_config(|conn| {
            conn.tcp = TcpConfig {
                nodelay: Some(true),
                ..TcpConfig::default()
            };
        })
        .build()?;
    client.init().await?;
    Ok(client)
}

/// Runs the worker's requests on the fred client.
struct Executor {
    client: fred::prelude::Client,
    channel: Str,
    lease_sha: Str,
    counters: Arc<Counters>,
}

impl Executor {
    /// Takes requests until the worker drops its sender, with up to `max_in_flight` commands
    /// awaiting replies at once (fred pipelines them on its connection).
    async fn serve(&self, mut requests: mpsc::Receiver<Request>, max_in_flight: usize) {
        let mut in_flight = FuturesUnordered::new();
        let mut batch = Vec::with_capacity(max_in_flight.min(256));
        loop {
            let room = max_in_flight.saturating_sub(in_flight.len()).min(256);
            tokio::select! {
                biased;
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                received = requests.recv_many(&mut batch, room), if room > 0 => {
                    if received == 0 {
                        break;
                    }
                    in_flight.extend(batch.drain(..).map(|request| self.execute(request)));
                }
            }
        }
        while in_flight.next().await.is_some() {}
    }

    async fn execute(&self, request: Request) {
        match request {
            Request::Publish(payload) => {
                let sent = self
                    .client
                    .publish::<i64, _, _>(self.channel.clone(), payload)
                    .await;
                if sent.is_err() {
                    self.counters.publish_errors.fetch_add(1, Ordering::Relaxed);
                }
                self.counters
                    .publishes_answered
                    .fetch_add(1, Ordering::Relaxed);
            }
            Request::Lease { key, reply } => {
                let result = self
                    .client
                    .evalsha::<Vec<i64>, _, _, _>(self.lease_sha.clone(), key, LEASE_ARGS.to_vec())
                    .await
                    .map_err(LinkError::from)
                    .and_then(|values: Vec<i64>| LeaseReply::from_pair(&values));
                // The worker may have stopped waiting; nothing to do then.
                let _ = reply.send(result);
            }
        }
    }
}

/// Hands each pushed message's payload to the worker, waiting when its channel is full.
async fn forward(
    mut pushes: tokio::sync::broadcast::Receiver<PubsubMessage>,
    messages: mpsc::Sender<Bytes>,
    counters: &Counters,
) {
    loop {
        match pushes.recv().await {
            Ok(message) => {
                let payload = match message.value {
                    Value::Bytes(bytes) => bytes,
                    Value::String(text) => text.into_inner(),
                    _ => continue,
                };
                if messages.send(payload).await.is_err() {
                    return;
                }
            }
            Err(RecvError::Lagged(lost)) => {
                counters.messages_lost.fetch_add(lost, Ordering::Relaxed);
            }
            Err(RecvError::Closed) => return,
        }
    }
}

impl FredLink {
    /// Hands a request to the I/O thread: `try_send`, and only when the channel is full,
    /// an awaited `send` (tokio's channel waits with plain wakers, so a compio task can wait).
    async fn send(&self, request: Request) -> Result<(), LinkError> {
        match self.requests.try_send(request) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(request)) => self
                .requests
                .send(request)
                .await
                .map_err(|_| LinkError::Closed),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(LinkError::Closed),
        }
    }
}

impl Link for FredLink {
    fn try_publish(&self, message: &Message) -> Result<(), LinkError> {
        let request = Request::Publish(Bytes::copy_from_slice(message.as_bytes()));
        self.requests.try_send(request).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => LinkError::Full,
            mpsc::error::TrySendError::Closed(_) => LinkError::Closed,
        })
    }

    async fn publish(&self, message: &Message) -> Result<(), LinkError> {
        self.send(Request::Publish(Bytes::copy_from_slice(message.as_bytes())))
            .await
    }

    fn publishes_answered(&self) -> u64 {
        self.counters.publishes_answered.load(Ordering::Relaxed)
    }

    fn publish_errors(&self) -> u64 {
        self.counters.publish_errors.load(Ordering::Relaxed)
    }

    async fn renew_lease(&self, key: &str) -> Result<LeaseReply, LinkError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.send(Request::Lease {
            key: key.to_owned(),
            reply: reply_tx,
        })
        .await?;
        reply_rx
            .await
            .map_err(|oneshot::Canceled| LinkError::Closed)?
    }
}

impl FredMessages {
    /// Messages the I/O thread could not take from fred's broadcast channel in time.
    pub fn lost(&self) -> u64 {
        self.counters.messages_lost.load(Ordering::Relaxed)
    }
}

impl MessageSource for FredMessages {
    async fn next_batch(&mut self, out: &mut Vec<Bytes>) -> Result<(), LinkError> {
        match self.messages.recv_many(out, 1024).await {
            0 => Err(LinkError::Closed),
            _ => Ok(()),
        }
    }
}
