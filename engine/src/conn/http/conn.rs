//! One HTTP/1.1 connection: read a head, route it, read or refuse its body, answer, repeat.
//!
//! The read buffer is parsed in place; pipelined requests are answered in order and their
//! responses leave in one write when the buffer holds no further complete request. Every wait
//! has a deadline taken from PROTECTIONS.md: `header_timeout` from the first byte of a head
//! (or from accept for the first request), `keepalive_timeout` between requests,
//! `upload_timeout` and `min_upload_rate` for a body, `send_timeout` for each write.

use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringstream_protocol::http::{BodyDecoder, BodyKind, Request, parse_request};

use super::refuse;
use crate::config::{HttpLimits, RouteKind, bounds};
use crate::conn::ws;
use crate::protections::gate::{ClientSlot, RateHeaders, Refusal, RequestCheck};
use crate::routes::Refused;
use crate::routes::broadcast::LocalTopics;
use crate::routes::broadcast::publish::{self, PublishHead};
use crate::routes::files::FileRequest;
use crate::routes::files::respond as files;
use crate::routes::handler::RequestHead;
use crate::routes::observe;
use crate::routes::plain::{self, MethodClass};
use crate::routes::upload::request::{self as upload, UploadRequest};
use crate::routes::upload::store::{Stored, Upload};
use crate::server::conn_count::ConnSlot;
use crate::server::context::WorkerContext;
use crate::server::registry::{Activity, ConnGuard};
use crate::server::transport::Transport;
use ringstream_limits::gcra::GcraState;

/// A fresh connection's read buffer starts this big (most request heads fit); it grows, up to
/// the head limit, only for a client that sends a larger head. Kept small because an idle
/// keep-alive or WebSocket connection keeps it.
const INITIAL_BUFFER: usize = 1024;

/// The read buffer while an upload's body streams in.
const UPLOAD_BUFFER: usize = 64 * 1024;

/// Where a request body goes.
enum BodyTarget<'a> {
    /// Nowhere: the route takes no body.
    Discard,
    /// Into memory (a publish, bounded by `max_message_size`).
    Collect(&'a mut Vec<u8>),
    /// Into an upload's temporary file.
    Upload(&'a mut Upload),
}

/// Why a connection stops serving requests.
#[derive(Debug)]
enum Stop {
    /// Answer with this status (`Connection: close`), then close politely.
    Refuse(u16),
    /// Like `Refuse`, with headers the status requires (426 names the WebSocket version,
    /// 405 its `Allow`).
    RefuseWith(Refused),
    /// A client gate refusal (403, 429 with `Retry-After`), with the rate headers of a 429.
    Limited(Refusal, Option<RateHeaders>),
    /// Close at once: the peer left, an I/O error, an idle keep-alive expired, or the drain.
    Close,
}

/// What follows the HTTP exchange.
#[derive(Debug)]
enum Next {
    /// The connection is finished.
    Done,
    /// The 101 was sent: the connection speaks WebSocket on this route from now on (with the
    /// request head a handler route hands its handler, or the broadcast topic it joined).
    WebSocket(usize, ws::Attachment),
}

/// The facts about a parsed request the connection keeps once the head's bytes are released.
#[derive(Debug)]
struct RequestInfo {
    /// For a WebSocket route: the upgrade decision, taken while the head was at hand.
    upgrade: Option<Result<ws::Accepted, ws::Refusal>>,
    /// For an accepted upgrade on a handler route: the head, copied for the handler.
    head: Option<Box<RequestHead>>,
    /// For an accepted upgrade on a broadcast route: the topic it joins.
    topic: Option<Box<str>>,
    /// On a publish route: what the head asks for.
    publish: Option<PublishHead>,
    /// On a files route: what the head asks of the file.
    file: Option<Box<FileRequest>>,
    /// On an upload route: what the head asks to store.
    upload: Option<UploadRequest>,
    /// For the first request of a connection whose client the head names: the admission.
    admission: Option<Result<ClientSlot, Refusal>>,
    /// Index of the matched route, `None` for a 404.
    route: Option<usize>,
    method: MethodClass,
    target_len: usize,
    header_count: usize,
    keep_alive: bool,
    body: BodyKind,
    expect_continue: bool,
    head_len: usize,
}

/// What became of a request's body.
enum Taken {
    /// Read and dropped (or there was none).
    Nothing,
    /// Published to a topic.
    Published(publish::Published),
    /// Stored by an upload route.
    Stored(Stored),
}

/// What a read brought.
enum ReadOutcome {
    Data,
    Eof,
    TimedOut,
    Failed,
}

/// Serves HTTP/1.1 on `io` until the client leaves, a protection closes the connection, or the
/// server drains. `guard` keeps the connection in the worker's registry while it lives.
/// `client` is the connection's admitted client, or `None` when its first request head names
/// the client; `conn_slot` its place in the server-wide count, released when it ends.
pub fn serve<T: Transport>(
    io: T,
    ctx: Rc<WorkerContext>,
    guard: ConnGuard,
    client: Option<ClientSlot>,
    conn_slot: ConnSlot,
) -> impl Future<Output = ()> {
    // Built here and captured by the block below, not passed to an `async fn`: an `async fn`
    // keeps its arguments beside what they were moved into, and every open WebSocket keeps
    // this future for its whole life.
    let mut conn = Connection {
        guard,
        client,
        peer: None,
        io,
        buf: Vec::with_capacity(INITIAL_BUFFER),
        pos: 0,
        // Allocated by the first response, then reused.
        out: Vec::new(),
        send_timeout: ctx.limits.send_timeout,
        ctx,
        bandwidth: GcraState::default(),
    };
    async move {
        // The server-wide place, held to the very end on every path.
        let _open = conn_slot;
        // Out of the match, so that the HTTP phase's outcome is not kept during the WebSocket
        // phase.
        let (route, attachment) = match conn.run().await {
            Ok(Next::WebSocket(route, attachment)) => (route, attachment),
            // Boxed: the refusal's state is the largest of the HTTP phase, and every open
            // WebSocket would keep room for it (BENCHMARKS.md, idle memory).
            outcome => return Box::pin(conn.finish(outcome)).await,
        };
        let Connection {
            guard,
            client,
            io,
            buf,
            pos,
            ctx,
            ..
        } = conn;
        ws::serve(guard, io, ctx, route, attachment, client, buf, pos).await;
    }
}

impl<T: Transport> Connection<T> {
    /// Ends a connection that did not become a WebSocket: nothing more, or the refusal its
    /// last request earned.
    async fn finish(self, outcome: Result<Next, Stop>) {
        let (status, headers) = match outcome {
            Ok(Next::Done | Next::WebSocket(..)) | Err(Stop::Close) => return,
            Err(Stop::Refuse(status)) => (status, &[][..]),
            Err(Stop::RefuseWith(refused)) => (refused.status, refused.headers),
            Err(Stop::Limited(refusal, _)) if refusal.silent => return,
            Err(Stop::Limited(refusal, rate)) => {
                let retry_after = refusal.retry_after_header();
                let mut headers = HeaderList::default();
                if let Some((name, value)) = &retry_after {
                    headers.push(name, value.as_bytes());
                }
                if let Some(rate) = &rate {
                    headers.push_rate(rate);
                }
                let date = self.ctx.date.now();
                self.ctx.counters().refusals.count(refusal.status);
                refuse::refuse(
                    &self.io,
                    self.out,
                    refusal.status,
                    headers.as_slice(),
                    &date,
                    self.send_timeout,
                )
                .await;
                return;
            }
        };
        let date = self.ctx.date.now();
        self.ctx.counters().refusals.count(status);
        refuse::refuse(
            &self.io,
            self.out,
            status,
            headers,
            &date,
            self.send_timeout,
        )
        .await;
    }
}

/// A few extra response headers, kept on the stack.
#[derive(Default)]
struct HeaderList<'a> {
    entries: [(&'static str, &'a [u8]); 3],
    len: usize,
}

impl<'a> HeaderList<'a> {
    fn push(&mut self, name: &'static str, value: &'a [u8]) {
        if let Some(entry) = self.entries.get_mut(self.len) {
            *entry = (name, value);
            self.len += 1;
        }
    }

    fn push_rate(&mut self, rate: &'a RateHeaders) {
        self.push("RateLimit-Policy", rate.policy.as_bytes());
        self.push("RateLimit", rate.state.as_bytes());
    }

    fn as_slice(&self) -> &[(&'static str, &'a [u8])] {
        &self.entries[..self.len]
    }
}

struct Connection<T> {
    /// Declared before `io` so that it drops first: the registry must never hold the descriptor
    /// of a closed stream.
    guard: ConnGuard,
    /// The admitted client; `None` until the first request head names it.
    client: Option<ClientSlot>,
    /// The TCP peer's address, asked of the kernel only when the first head names the client.
    peer: Option<IpAddr>,
    io: T,
    /// Bytes read and not yet consumed start at `pos`.
    buf: Vec<u8>,
    pos: usize,
    /// Responses waiting to be written.
    out: Vec<u8>,
    /// `send_timeout` of the route being answered (the global one before any route is known).
    send_timeout: Duration,
    ctx: Rc<WorkerContext>,
    /// The `rate_limit_bandwidth` budget of this connection's file responses.
    bandwidth: GcraState,
}

impl<T: Transport> Connection<T> {
    async fn run(&mut self) -> Result<Next, Stop> {
        let mut first = true;
        loop {
            let Some(mut request) = self.next_head(first).await? else {
                self.flush().await?;
                return Ok(Next::Done);
            };
            first = false;
            let ctx = Rc::clone(&self.ctx);
            let limits = request
                .route
                .map_or(&ctx.limits, |i| &ctx.router.routes()[i].limits);
            self.send_timeout = limits.send_timeout;
            check_route_limits(&request, limits)?;
            if let Some(admission) = request.admission.take() {
                self.client = Some(admission.map_err(|refusal| Stop::Limited(refusal, None))?);
            }
            ctx.counters().route(request.route).requests.add(1);
            let rate_headers = match self.check_rate(&request)? {
                Some(headers) => headers,
                // Refused with a 429 that keeps the connection: on to the next request.
                None => continue,
            };
            if let (Some(_), Some(route)) = (&request.upgrade, request.route) {
                return self.upgrade(request, route).await;
            }
            // The body is taken first (published, stored, or read and dropped); what to answer
            // is decided once it is in: the drain may have started while it arrived.
            // Publishing, storing and file sending are boxed: their states stay out of the
            // future every open WebSocket keeps for its whole life (BENCHMARKS.md, idle
            // memory).
            let taken = match (request.publish.take(), request.upload.take(), request.route) {
                (Some(head), _, Some(route)) => {
                    Taken::Published(Box::pin(self.publish(&request, head, route)).await?)
                }
                (_, Some(upload), Some(route)) => {
                    Taken::Stored(Box::pin(self.store_upload(&request, upload, route)).await?)
                }
                _ => {
                    self.read_body(&request, limits, BodyTarget::Discard)
                        .await?;
                    Taken::Nothing
                }
            };
            let close = !request.keep_alive || ctx.draining.get();
            let date = ctx.date.now();
            match (taken, request.file.take(), request.route) {
                (Taken::Published(answer), _, _) => answer.write(&date, close, &mut self.out),
                (Taken::Stored(stored), _, Some(route)) => {
                    upload::created(
                        &stored,
                        &ctx.router.routes()[route],
                        &date,
                        close,
                        &mut self.out,
                    );
                }
                (_, Some(file), Some(route)) => {
                    Box::pin(self.serve_file(&file, route, request.method, close)).await?;
                }
                _ => self.respond(&request, close, rate_headers.as_ref())?,
            }
            if close {
                self.flush().await?;
                // FIN after the last response; a failure here changes nothing for the client.
                let _ = self.io.shutdown_write().await;
                return Ok(Next::Done);
            }
        }
    }

    /// Answers a request on a files route: the head (with any answers queued before it) and
    /// the file's bytes leave now; a body that could not be sent whole closes the connection.
    async fn serve_file(
        &mut self,
        file: &FileRequest,
        route: usize,
        method: MethodClass,
        close: bool,
    ) -> Result<(), Stop> {
        let ctx = Rc::clone(&self.ctx);
        let exchange = files::Exchange {
            io: &self.io,
            guard: &self.guard,
            ctx: &ctx,
            route_index: route,
            client: self.client.as_ref(),
            close,
            bandwidth: &mut self.bandwidth,
        };
        let out = std::mem::take(&mut self.out);
        match files::answer(exchange, file, method, out).await {
            Ok(out) => {
                self.out = out;
                Ok(())
            }
            Err(_) => Err(Stop::Close),
        }
    }

    /// Stores the body of an upload request: the route admits it before a byte is read, the
    /// body streams into its temporary file under the route's limits, and the route stores
    /// it; the temporary file is deleted on every path that does not end in the rename.
    async fn store_upload(
        &mut self,
        request: &RequestInfo,
        upload: UploadRequest,
        route_index: usize,
    ) -> Result<Stored, Stop> {
        let ctx = Rc::clone(&self.ctx);
        let route = &ctx.router.routes()[route_index];
        let (RouteKind::Upload(config), Some(dir)) = (
            &route.kind,
            ctx.routes.get(route_index).and_then(|s| s.upload.as_ref()),
        ) else {
            return Err(Stop::Refuse(500));
        };
        let address = match self.client.as_ref().map(ClientSlot::address) {
            Some(address) => address,
            None => self.io.peer_addr().map_err(|_| Stop::Close)?.ip(),
        };
        let mut admitted = upload::admit(upload, config, dir, address).map_err(Stop::RefuseWith)?;
        let mut limits = route.limits.clone();
        limits.max_body_size = admitted.max_size;
        let read = self
            .read_body(request, &limits, BodyTarget::Upload(&mut admitted.file))
            .await;
        // The large read buffer of the body is not kept by an idle connection.
        self.buf.shrink_to(INITIAL_BUFFER.max(self.buf.len()));
        read?;
        let stored = upload::store(admitted.file, config, dir)
            .await
            .map_err(Stop::RefuseWith)?;
        ctx.counters()
            .route(Some(route_index))
            .bytes_in
            .add(stored.size);
        Ok(stored)
    }

    /// Queues the answer of a route without a body of its own (or a 404).
    fn respond(
        &mut self,
        request: &RequestInfo,
        close: bool,
        rate_headers: Option<&RateHeaders>,
    ) -> Result<(), Stop> {
        let ctx = Rc::clone(&self.ctx);
        let date = ctx.date.now();
        let mut extra = HeaderList::default();
        if let Some(rate) = rate_headers {
            extra.push_rate(rate);
        }
        match request.route.map(|i| &ctx.router.routes()[i].kind) {
            Some(
                kind @ (RouteKind::Stats { allowed_clients }
                | RouteKind::Metrics { allowed_clients }),
            ) => {
                let address = self.client.as_ref().map(ClientSlot::address);
                if !address.is_some_and(|a| allowed_clients.contains(a)) {
                    return Err(Stop::Refuse(403));
                }
                observe::respond(kind, &ctx, request.method, &date, close, &mut self.out);
            }
            Some(kind) => plain::respond(
                kind,
                request.method,
                &date,
                close,
                extra.as_slice(),
                &mut self.out,
            ),
            None => plain::not_found(request.method, &date, close, &mut self.out),
        }
        Ok(())
    }

    /// A request on a publish route: refused (before its body is read) or its body read, up to
    /// the route's `max_message_size` (413 past it), and published to the topic.
    async fn publish(
        &mut self,
        request: &RequestInfo,
        head: PublishHead,
        route_index: usize,
    ) -> Result<publish::Published, Stop> {
        let ctx = Rc::clone(&self.ctx);
        let route = &ctx.router.routes()[route_index];
        if !publish::allowed(route, self.client.as_ref().map(ClientSlot::address)) {
            return Err(Stop::Refuse(403));
        }
        let (topic, text) = match head {
            PublishHead::Publish { topic, text } => (topic, text),
            PublishHead::Refuse(405) => {
                return Err(Stop::RefuseWith(Refused::with(405, publish::ALLOW_POST)));
            }
            PublishHead::Refuse(401) => {
                return Err(Stop::RefuseWith(Refused::with(
                    401,
                    publish::BEARER_CHALLENGE,
                )));
            }
            PublishHead::Refuse(status) => return Err(Stop::Refuse(status)),
        };
        let mut limits = route.limits.clone();
        limits.max_body_size = limits.max_body_size.min(route.ws.max_message_size);
        let mut body = Vec::new();
        self.read_body(request, &limits, BodyTarget::Collect(&mut body))
            .await?;
        if text && std::str::from_utf8(&body).is_err() {
            return Err(Stop::Refuse(400));
        }
        let frame = crate::routes::broadcast::encode_frame(text, &body);
        let (subscribers, local) = match ctx.hub.topics.get(&topic) {
            Some(topic) => {
                let subscribers = topic.total();
                (subscribers, ctx.publish(&topic, &frame, None).queued)
            }
            None => (0, 0),
        };
        let traffic = ctx.counters().route(Some(route_index));
        traffic.messages_in.add(1);
        traffic.bytes_in.add(body.len() as u64);
        Ok(publish::Published {
            topic,
            subscribers,
            local_reached: local,
        })
    }

    /// Checks the request against its client's request rate. `Ok(Some(headers))`: serve it,
    /// with these rate headers if any; `Ok(None)`: a 429 was queued and the connection stays
    /// open (a request without a body); `Err`: a 429 that closes the connection.
    fn check_rate(&mut self, request: &RequestInfo) -> Result<Option<Option<RateHeaders>>, Stop> {
        let Some(client) = &self.client else {
            return Ok(Some(None));
        };
        let path = request
            .route
            .map_or("", |i| self.ctx.router.routes()[i].path.as_str());
        match self.ctx.gate.check_request(client, request.route, path) {
            RequestCheck::Allowed(headers) => Ok(Some(headers)),
            RequestCheck::Refused { refusal, headers } => {
                let keep = request.body == BodyKind::None
                    && request.upgrade.is_none()
                    && request.keep_alive
                    && !self.ctx.draining.get();
                if !keep {
                    return Err(Stop::Limited(refusal, Some(headers)));
                }
                let retry_after = refusal.retry_after_header();
                let mut extra = HeaderList::default();
                if let Some((name, value)) = &retry_after {
                    extra.push(name, value.as_bytes());
                }
                extra.push_rate(&headers);
                let date = self.ctx.date.now();
                self.ctx.counters().refusals.count(429);
                plain::too_many_requests(request.method, &date, extra.as_slice(), &mut self.out);
                Ok(None)
            }
        }
    }

    /// Answers an upgrade request on a WebSocket route: the 101, or the refusal it earned.
    async fn upgrade(&mut self, request: RequestInfo, route: usize) -> Result<Next, Stop> {
        let accepted = match &request.upgrade {
            Some(Ok(accepted)) => accepted,
            Some(Err(refusal)) => {
                return Err(Stop::RefuseWith(Refused::with(
                    refusal.status,
                    refusal.headers,
                )));
            }
            None => return Err(Stop::Refuse(500)),
        };
        // RFC 6455 §4.1: the opening handshake is a GET without a body.
        if request.body != BodyKind::None {
            return Err(Stop::Refuse(400));
        }
        if self.ctx.draining.get() {
            return Err(Stop::Refuse(503));
        }
        let ctx = Rc::clone(&self.ctx);
        let subprotocols = ctx.router.routes()[route].kind.subprotocols();
        let protocol = ws::write_accepted(&mut self.out, accepted, subprotocols);
        let attachment = if let Some(mut head) = request.head {
            head.set_subprotocol(protocol);
            // Asked of the kernel here rather than kept by every connection.
            head.set_peer(self.io.peer_addr().map_err(|_| Stop::Close)?);
            ws::Attachment::Handler(head)
        } else if let Some(topic) = &request.topic {
            // Joined before the 101 leaves: whatever is published once the client has its 101
            // reaches it, from any worker. Leaving is dropping the membership, on any path.
            let limits = &ctx.router.routes()[route].ws;
            ws::Attachment::Broadcast(LocalTopics::join(
                &ctx.topics,
                ctx.hub.topics.get_or_create(topic),
                limits.max_backpressure,
                limits.slow_consumer,
            ))
        } else {
            ws::Attachment::None
        };
        self.flush().await?;
        ctx.counters().route(Some(route)).upgrades.add(1);
        Ok(Next::WebSocket(route, attachment))
    }

    /// Returns the next request head, waiting for bytes as needed; `None` when the client
    /// closed cleanly between requests (or the drain closed an idle connection).
    async fn next_head(&mut self, first: bool) -> Result<Option<RequestInfo>, Stop> {
        // For the first request the header timeout runs from accept: a client that connects and
        // sends nothing is a slowloris too.
        let mut head_started = first.then(Instant::now);
        loop {
            if self.pos < self.buf.len() {
                if let Some(request) = self.parse_head()? {
                    return Ok(Some(request));
                }
                head_started.get_or_insert_with(Instant::now);
            }
            // Everything parsed so far is answered before waiting for more.
            self.flush().await?;
            let idle = self.pos == self.buf.len();
            self.guard
                .set_activity(if idle { Activity::Idle } else { Activity::Busy });
            let deadline = match head_started {
                Some(started) => started + self.ctx.limits.header_timeout,
                None if self.ctx.draining.get() => return Ok(None),
                None => Instant::now() + self.ctx.limits.keepalive_timeout,
            };
            let outcome = self.read_more(deadline).await;
            self.guard.set_activity(Activity::Busy);
            match outcome {
                ReadOutcome::Data => {}
                ReadOutcome::Eof if idle => return Ok(None),
                ReadOutcome::Eof | ReadOutcome::Failed => return Err(Stop::Close),
                ReadOutcome::TimedOut if head_started.is_some() => return Err(Stop::Refuse(408)),
                ReadOutcome::TimedOut => return Err(Stop::Close),
            }
        }
    }

    /// Parses the buffered bytes; `Ok(None)` if the head is not complete yet.
    fn parse_head(&mut self) -> Result<Option<RequestInfo>, Stop> {
        // A connection whose client the head names needs the peer's address with it.
        let peer = match (&self.client, self.peer) {
            (Some(_), _) => None,
            (None, Some(peer)) => Some(peer),
            (None, None) => {
                let peer = self.io.peer_addr().map_err(|_| Stop::Close)?.ip();
                self.peer = Some(peer);
                Some(peer)
            }
        };
        let mut slots = [const { MaybeUninit::uninit() }; bounds::MAX_HEADERS_CEILING];
        let parsed = parse_request(&self.buf[self.pos..], &mut slots, &self.ctx.head_limits);
        match parsed {
            Ok(Some(request)) => {
                let info = describe(&request, &self.ctx, peer);
                self.pos += info.head_len;
                Ok(Some(info))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(Stop::Refuse(e.status())),
        }
    }

    /// Reads the request body into `keep`, or discards it when `keep` is `None` (routes that
    /// take no body), enforcing `max_body_size`, `upload_timeout` and `min_upload_rate`.
    async fn read_body(
        &mut self,
        request: &RequestInfo,
        limits: &HttpLimits,
        mut target: BodyTarget<'_>,
    ) -> Result<(), Stop> {
        match request.body {
            BodyKind::None => return Ok(()),
            // Refused before a byte of it is read (PROTECTIONS.md), `Expect: 100-continue` too.
            BodyKind::Length(n) if n > limits.max_body_size => return Err(Stop::Refuse(413)),
            BodyKind::Length(0) => return Ok(()),
            BodyKind::Length(_) | BodyKind::Chunked => {}
        }
        if request.expect_continue && self.pos == self.buf.len() {
            ringstream_protocol::http::write_continue(&mut self.out);
        }
        if matches!(target, BodyTarget::Upload(_)) && self.buf.capacity() < UPLOAD_BUFFER {
            // Large bodies are read in large pieces; `run` gives the memory back afterwards.
            self.buf.reserve(UPLOAD_BUFFER - self.buf.len());
        }
        let mut decoder = BodyDecoder::new(request.body, limits.max_body_size);
        let started = Instant::now();
        let mut received: u64 = 0;
        loop {
            if self.pos < self.buf.len() {
                let decoded = decoder
                    .decode(&self.buf[self.pos..])
                    .map_err(|e| Stop::Refuse(e.status()))?;
                let data = &self.buf[self.pos..][decoded.data.clone()];
                match &mut target {
                    BodyTarget::Discard => {}
                    BodyTarget::Collect(keep) => keep.extend_from_slice(data),
                    BodyTarget::Upload(upload) => {
                        upload.write(data).await.map_err(|_| Stop::Refuse(500))?;
                    }
                }
                self.pos += decoded.consumed;
                received += decoded.data.len() as u64;
                if decoded.done {
                    return Ok(());
                }
                if decoded.consumed > 0 && self.pos < self.buf.len() {
                    continue;
                }
            }
            self.flush().await?;
            match self
                .read_more(body_deadline(started, received, limits))
                .await
            {
                ReadOutcome::Data => {}
                ReadOutcome::TimedOut => return Err(Stop::Refuse(408)),
                ReadOutcome::Eof | ReadOutcome::Failed => return Err(Stop::Close),
            }
        }
    }

    /// Reads more bytes into the buffer before `deadline`. Consumed bytes are dropped first, and
    /// the buffer grows only when it is full of an unfinished head (bounded by the head limit,
    /// which the parser enforces).
    async fn read_more(&mut self, deadline: Instant) -> ReadOutcome {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.len() == self.buf.capacity() {
            self.buf.reserve(self.buf.capacity().max(INITIAL_BUFFER));
        }
        let buf = std::mem::take(&mut self.buf);
        match self.guard.within(deadline, self.io.read_append(buf)).await {
            Some((result, buf)) => {
                self.buf = buf;
                match result {
                    Ok(0) => ReadOutcome::Eof,
                    Ok(_) => ReadOutcome::Data,
                    Err(_) => ReadOutcome::Failed,
                }
            }
            // The cancelled read keeps the buffer until the kernel lets go of it; the
            // connection is closing, so it is not needed again.
            None => ReadOutcome::TimedOut,
        }
    }

    /// Writes the pending responses within the route's `send_timeout`.
    async fn flush(&mut self) -> Result<(), Stop> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let deadline = Instant::now() + self.send_timeout;
        match self.guard.within(deadline, self.io.write_all(out)).await {
            Some((Ok(()), mut out)) => {
                out.clear();
                self.out = out;
                Ok(())
            }
            Some((Err(_), _)) | None => Err(Stop::Close),
        }
    }
}

/// Extracts what the connection needs from a parsed head; `peer` is given when the head must
/// name the connection's client.
fn describe(request: &Request<'_, '_>, ctx: &WorkerContext, peer: Option<IpAddr>) -> RequestInfo {
    let route = ctx.router.find_index(request.path());
    let admission = peer.map(|peer| {
        let path = route.map_or("", |i| ctx.router.routes()[i].path.as_str());
        ctx.gate.on_first_request(peer, request, path)
    });
    let kind = route.map(|i| &ctx.router.routes()[i]);
    let mut upgrade = kind
        .filter(|route| route.kind.is_websocket())
        .map(|route| ws::decide(request, route.kind.subprotocols(), &route.ws));
    let head = match (kind, &upgrade) {
        (Some(route), Some(Ok(_))) if matches!(route.kind, RouteKind::Handler { .. }) => {
            Some(Box::new(RequestHead::capture(request)))
        }
        _ => None,
    };
    let mut topic = None;
    if let (Some(route), Some(Ok(_))) = (kind, &upgrade)
        && let RouteKind::Broadcast { topic: source, .. } = &route.kind
    {
        match source.resolve(&route.path, request.path()) {
            Some(name) => topic = Some(name.into()),
            None => upgrade = Some(Err(ws::Refusal::NOT_FOUND)),
        }
    }
    let publish = kind
        .filter(|route| matches!(route.kind, RouteKind::Publish { .. }))
        .map(|route| publish::decide(route, request));
    let upload = kind.and_then(|route| match &route.kind {
        RouteKind::Upload(_) => Some(UploadRequest::capture(request, route)),
        _ => None,
    });
    let file = kind.and_then(|route| match &route.kind {
        RouteKind::Files(files) => Some(Box::new(FileRequest::capture(request, route, files))),
        _ => None,
    });
    RequestInfo {
        upgrade,
        head,
        topic,
        publish,
        file,
        upload,
        admission,
        route,
        method: MethodClass::of(&request.method),
        target_len: request.target.len(),
        header_count: request.headers.len(),
        keep_alive: request.keep_alive,
        body: request.body,
        expect_continue: request.expect_continue,
        head_len: request.head_len,
    }
}

/// The head was read under the loosest limits of any route; now that the route is known its
/// own, possibly stricter, limits apply.
fn check_route_limits(request: &RequestInfo, limits: &HttpLimits) -> Result<(), Stop> {
    if request.head_len > limits.max_header_bytes || request.header_count > limits.max_headers {
        return Err(Stop::Refuse(431));
    }
    if request.target_len > limits.max_uri_bytes {
        return Err(Stop::Refuse(414));
    }
    Ok(())
}

/// The instant the body read gives up: `upload_timeout` after it started, or earlier once the
/// grace period is over and the bytes received fall below `min_upload_rate`.
fn body_deadline(started: Instant, received: u64, limits: &HttpLimits) -> Instant {
    let hard = started + limits.upload_timeout;
    if limits.min_upload_rate == 0 {
        return hard;
    }
    // The time by which `received` bytes would be exactly at the minimum rate.
    let earned = Duration::from_secs_f64(received as f64 / limits.min_upload_rate as f64);
    hard.min(started + earned.max(limits.min_upload_rate_after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_deadline_follows_the_minimum_rate_after_the_grace_period() {
        let limits = HttpLimits {
            upload_timeout: Duration::from_secs(300),
            min_upload_rate: 1000,
            min_upload_rate_after: Duration::from_secs(10),
            ..HttpLimits::default()
        };
        let t0 = Instant::now();
        assert_eq!(body_deadline(t0, 0, &limits), t0 + Duration::from_secs(10));
        assert_eq!(
            body_deadline(t0, 50_000, &limits),
            t0 + Duration::from_secs(50)
        );
        assert_eq!(
            body_deadline(t0, 10_000_000, &limits),
            t0 + Duration::from_secs(300)
        );
        let no_rate = HttpLimits {
            min_upload_rate: 0,
            ..limits
        };
        assert_eq!(
            body_deadline(t0, 0, &no_rate),
            t0 + Duration::from_secs(300)
        );
    }
}
