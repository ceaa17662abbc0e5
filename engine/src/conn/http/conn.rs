//! One HTTP/1.1 connection: read a head, route it, read or refuse its body, answer, repeat.
//!
//! The read buffer is parsed in place; pipelined requests are answered in order and their
//! responses leave in one write when the buffer holds no further complete request. Every wait
//! has a deadline taken from PROTECTIONS.md: `header_timeout` from the first byte of a head
//! (or from accept for the first request), `keepalive_timeout` between requests,
//! `upload_timeout` and `min_upload_rate` for a body, `send_timeout` for each write.

mod access;
mod auth;
mod memory;
mod proxy;
mod read;
mod refusal;
mod transfer;

use read::check_route_limits;
use refusal::HeaderList;

use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use ringstream_protocol::http::BodyKind;
use ringstream_protocol::ws::deflate::DeflateParams;

use crate::conn::access_entry::AccessEntry;
use crate::conn::ws;
use crate::conn::ws::tunnel::UpstreamTunnel;
use crate::protections::gate::{ClientSlot, RateHeaders, Refusal};
use crate::routes::Refused;
use crate::routes::ask::{Ask, Upgrade};
use crate::routes::auth::AuthAsk;
use crate::routes::broadcast::publish::{self, PublishHead};
use crate::routes::files::FileRequest;
use crate::routes::observe;
use crate::routes::plain::{self, MethodClass, Page};
use crate::routes::role::Attachment;
use crate::routes::upload::request as upload;
use crate::routes::upload::store::{Stored, Upload};
use crate::server::conn_count::ConnSlot;
use crate::server::context::WorkerContext;
use crate::server::registry::{ConnGuard, Registered};
use crate::server::runtime::spawn_detached;
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
    /// To a proxy route's upstream, re-framed.
    Upstream(&'a mut proxy::UpstreamBody),
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
    /// The auth endpoint's 401 or 403, with its `WWW-Authenticate` for a 401.
    Unauthorized(u16, Option<Vec<u8>>),
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
    WebSocket(usize, Attachment, Option<DeflateParams>),
    /// The upstream of a proxy route accepted a WebSocket upgrade, and the 101 was sent: the
    /// connection is a tunnel to it on this route from now on.
    Tunnel(usize, Box<UpstreamTunnel>),
}

/// The facts about a parsed request the connection keeps once the head's bytes are released.
#[derive(Debug)]
struct RequestInfo {
    /// What the head asks of its route (decided while the head was at hand), with the route's
    /// index; `None` for a 404. Taken out when the request is answered.
    target: Option<(usize, Ask)>,
    /// For a connection whose client its heads name, when this head names another client than
    /// the one admitted so far (or the first): its admission.
    admission: Option<Result<ClientSlot, Refusal>>,
    /// With `client_id = "auth"` on a route with an auth hook: the client's address, admitted
    /// under the name the hook's answer gives (by this address when it gives none).
    named_by_auth: Option<IpAddr>,
    /// The question for the route's auth endpoint, when it has one.
    auth: Option<Box<AuthAsk>>,
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

/// The answer a request gets once its body is taken (published, stored, or read and dropped).
enum Answer {
    /// A publish's count of members reached.
    Published(publish::Published),
    /// An upload's 201, on this route.
    Stored(usize, Stored),
    /// A file of this route.
    File(usize, Box<FileRequest>),
    /// The counters, on this route: which of its documents.
    Observe(usize, observe::View),
    /// The route's configured answer.
    Plain(usize),
    /// Relayed from a proxy route's upstream as it came; `true` when the connection closes
    /// after it.
    Proxied(bool),
    /// 404.
    NotFound,
}

/// What a read brought.
enum ReadOutcome {
    Data,
    Eof,
    TimedOut,
    Failed,
    /// The buffer budget could not hold a larger head before the read's deadline.
    Busy,
}

/// Serves HTTP/1.1 on `io` until the client leaves, a protection closes the connection, or the
/// server drains. `guard` keeps the connection in the worker's registry while it lives.
/// `client` is the connection's admitted client, or `None` when its first request head names
/// the client; `conn_slot` its place in the server-wide count, released when it ends.
pub fn serve<T: Transport + 'static>(
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
        stream: Registered::new(guard, io),
        client,
        peer: None,
        buf: Vec::with_capacity(INITIAL_BUFFER),
        pos: 0,
        // Allocated by the first response, then reused.
        out: Vec::new(),
        send_timeout: ctx.limits.send_timeout,
        ctx,
        bandwidth: GcraState::default(),
        log: None,
    };
    async move {
        // Out of the match, so that the HTTP phase's outcome is not kept during the WebSocket
        // phase.
        let (route, attachment, deflate, session_log) = match conn.run().await {
            Ok(Next::WebSocket(route, attachment, deflate)) => {
                // The request's line waits for the session's end.
                (route, attachment, deflate, conn.log_upgrade())
            }
            // Boxed: the refusal's state is the largest of the HTTP phase (BENCHMARKS.md, idle
            // memory); a proxy's tunnel goes the same way, for the same reason.
            outcome => {
                Box::pin(conn.finish(outcome)).await;
                // The server-wide place, held to the very end on every path.
                drop(conn_slot);
                return;
            }
        };
        // The WebSocket phase is a task of its own: this one, sized for the HTTP phase, ends
        // here, and an open WebSocket keeps only the state its own phase needs (BENCHMARKS.md,
        // idle memory). What the HTTP phase kept besides (its response buffer, its log line)
        // is dropped with it.
        let Connection {
            stream,
            client,
            buf,
            pos,
            ctx,
            ..
        } = conn;
        let session = ws::serve(
            stream,
            ctx,
            route,
            attachment,
            client,
            buf,
            pos,
            session_log,
            deflate,
            conn_slot,
        );
        spawn_detached(session);
    }
}

struct Connection<T> {
    /// The stream, and its place in the worker's registry (deadlines, the drain).
    stream: Registered<T>,
    /// The admitted client; `None` until the first request head names it.
    client: Option<ClientSlot>,
    /// The TCP peer's address, asked of the kernel at the first head of a connection whose
    /// client its heads name (a trusted proxy's, or `client_id` from a header or query).
    peer: Option<IpAddr>,
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
    /// The open request's access log line (allocated by the first request when the log is on).
    log: Option<Box<AccessEntry>>,
}

impl<T: Transport> Connection<T> {
    /// The connection as a tunnel to the upstream of proxy route `route`, after its 101.
    pub(super) fn tunnel(
        mut self,
        route: usize,
        tunnel: Box<UpstreamTunnel>,
    ) -> impl Future<Output = ()> {
        let session_log = self.log_upgrade();
        let Connection {
            stream,
            client,
            buf,
            pos,
            ctx,
            ..
        } = self;
        ws::tunnel::serve(stream, ctx, route, client, buf, pos, tunnel, session_log)
    }

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
            ctx.route_traffic(request.route).requests.add(1);
            // A client the auth hook names is held to its rates once the answer named it.
            let mut rate_headers = None;
            if request.named_by_auth.is_none() {
                rate_headers = match self.check_rate(&request)? {
                    Some(headers) => headers,
                    // Refused with a 429 that keeps the connection: on to the next request.
                    None => {
                        self.log_end(None);
                        continue;
                    }
                };
            }
            // The app says who may, before anything is answered, upgraded or forwarded.
            if request.auth.is_some()
                && !Box::pin(self.pass_auth(&mut request, &mut rate_headers)).await?
            {
                self.log_end(None);
                continue;
            }
            // The body is taken first (published, stored, or read and dropped); what to answer
            // is decided once it is in: the drain may have started while it arrived.
            // Publishing, storing and file sending are boxed: their states stay out of the
            // future every open WebSocket keeps for its whole life (BENCHMARKS.md, idle
            // memory).
            let answer = match request.target.take() {
                Some((route, Ask::Upgrade(upgrade))) => {
                    return self.upgrade(&request, upgrade, route).await;
                }
                Some((route, Ask::Publish(head))) => {
                    Answer::Published(Box::pin(self.publish(&request, head, route)).await?)
                }
                Some((route, Ask::Upload(upload))) => {
                    let stored = Box::pin(self.store_upload(&request, upload, route)).await?;
                    Answer::Stored(route, stored)
                }
                Some((route, Ask::Proxy(ask))) => {
                    match Box::pin(self.proxy(&request, ask, route, rate_headers.as_ref())).await? {
                        proxy::Proxied::Done(close) => Answer::Proxied(close),
                        proxy::Proxied::Tunnel(tunnel) => {
                            self.flush().await?;
                            return Ok(Next::Tunnel(route, tunnel));
                        }
                    }
                }
                Some((route, Ask::File(file))) => {
                    self.discard_body(&request, limits).await?;
                    Answer::File(route, file)
                }
                Some((route, Ask::Observe(view))) => {
                    self.discard_body(&request, limits).await?;
                    Answer::Observe(route, view)
                }
                Some((route, Ask::Plain)) => {
                    self.discard_body(&request, limits).await?;
                    Answer::Plain(route)
                }
                None => {
                    self.discard_body(&request, limits).await?;
                    Answer::NotFound
                }
            };
            let close = !request.keep_alive
                || ctx.draining.get()
                || matches!(answer, Answer::Proxied(true));
            self.answer(answer, request.method, close, rate_headers.as_ref())
                .await?;
            self.log_end(None);
            if close {
                self.flush().await?;
                // FIN after the last response; a failure here changes nothing for the client.
                let _ = self.stream.io().shutdown_write().await;
                return Ok(Next::Done);
            }
        }
    }

    /// Queues (or, for a file, sends) the answer of a request whose body was taken.
    async fn answer(
        &mut self,
        answer: Answer,
        method: MethodClass,
        close: bool,
        rate_headers: Option<&RateHeaders>,
    ) -> Result<(), Stop> {
        let ctx = Rc::clone(&self.ctx);
        let date = ctx.date.now();
        match answer {
            Answer::Published(published) => published.write(&date, close, &mut self.out),
            Answer::Stored(route, stored) => {
                let route = &ctx.router.routes()[route];
                upload::created(&stored, route, &date, close, &mut self.out);
            }
            Answer::File(route, file) => {
                Box::pin(self.serve_file(&file, route, method, close)).await?;
            }
            Answer::Observe(route, view) => {
                let address = self.client.as_ref().map(ClientSlot::address);
                let kind = &ctx.router.routes()[route].kind;
                let page = Page {
                    method,
                    date: &date,
                    close,
                    extra: &[],
                };
                observe::respond(kind, view, &ctx, address, page, &mut self.out)
                    .map_err(Stop::RefuseWith)?;
            }
            Answer::Plain(route) => {
                let mut extra = HeaderList::default();
                if let Some(rate) = rate_headers {
                    extra.push_rate(rate);
                }
                let kind = &ctx.router.routes()[route].kind;
                plain::respond(kind, method, &date, close, extra.as_slice(), &mut self.out);
            }
            Answer::NotFound => plain::not_found(method, &date, close, &mut self.out),
            // Written as it came.
            Answer::Proxied(_) => {}
        }
        Ok(())
    }

    /// A request on a publish route: the route admits it before its body is read, the body is
    /// read under the route's limits, and the route delivers it.
    async fn publish(
        &mut self,
        request: &RequestInfo,
        head: PublishHead,
        route_index: usize,
    ) -> Result<publish::Published, Stop> {
        let ctx = Rc::clone(&self.ctx);
        let route = &ctx.router.routes()[route_index];
        let address = self.client.as_ref().map(ClientSlot::address);
        let admitted = publish::admit(route, head, address).map_err(Stop::RefuseWith)?;
        let mut limits = route.limits.clone();
        limits.max_body_size = admitted.max_body_size;
        let mut body = Vec::new();
        let read = self
            .read_body(request, &limits, BodyTarget::Collect(&mut body))
            .await;
        let delivered = read.and_then(|()| {
            publish::deliver(&ctx, route_index, admitted, &body).map_err(Stop::RefuseWith)
        });
        self.hold_less(body.capacity());
        let mut published = delivered?;
        published.count_other_nodes().await;
        Ok(published)
    }

    /// Answers an upgrade request on a WebSocket route: the 101, or the refusal it earned.
    async fn upgrade(
        &mut self,
        request: &RequestInfo,
        upgrade: Result<Upgrade, Refused>,
        route: usize,
    ) -> Result<Next, Stop> {
        let Upgrade { accepted, joins } = upgrade.map_err(Stop::RefuseWith)?;
        // RFC 6455 §4.1: the opening handshake is a GET without a body.
        if request.body != BodyKind::None {
            return Err(Stop::Refuse(400));
        }
        if self.ctx.draining.get() {
            return Err(Stop::Refuse(503));
        }
        let ctx = Rc::clone(&self.ctx);
        let route_config = &ctx.router.routes()[route];
        let protocol =
            ws::write_accepted(&mut self.out, &accepted, route_config.kind.subprotocols());
        let attachment = joins
            .attach(&ctx, route_config, protocol, accepted.deflate(), || {
                self.stream.io().peer_addr()
            })
            .map_err(|_| Stop::Close)?;
        self.flush().await?;
        ctx.route_traffic(Some(route)).upgrades.add(1);
        Ok(Next::WebSocket(route, attachment, accepted.deflate()))
    }
}
