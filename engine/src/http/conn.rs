//! One HTTP/1.1 connection: read a head, route it, read or refuse its body, answer, repeat.
//!
//! The read buffer is parsed in place; pipelined requests are answered in order and their
//! responses leave in one write when the buffer holds no further complete request. Every wait
//! has a deadline taken from PROTECTIONS.md: `header_timeout` from the first byte of a head
//! (or from accept for the first request), `keepalive_timeout` between requests,
//! `upload_timeout` and `min_upload_rate` for a body, `send_timeout` for each write.

use std::mem::MaybeUninit;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringstream_protocol::http::{BodyDecoder, BodyKind, Request, parse_request};

use super::apps::{self, MethodClass};
use super::refuse;
use crate::config::{HttpLimits, RouteKind, bounds};
use crate::context::WorkerContext;
use crate::handler::RequestHead;
use crate::registry::{Activity, ConnGuard};
use crate::transport::Transport;
use crate::ws;

/// A fresh connection's read buffer starts this big (most request heads fit); it grows, up to
/// the head limit, only for a client that sends a larger head. Kept small because an idle
/// keep-alive or WebSocket connection keeps it.
const INITIAL_BUFFER: usize = 1024;

/// Extra headers a refusal must carry.
type RefusalHeaders = &'static [(&'static str, &'static [u8])];

/// Why a connection stops serving requests.
#[derive(Debug)]
enum Stop {
    /// Answer with this status (`Connection: close`), then close politely.
    Refuse(u16),
    /// Like `Refuse`, with headers the status requires (426 names the WebSocket version).
    RefuseWith(u16, RefusalHeaders),
    /// Close at once: the peer left, an I/O error, an idle keep-alive expired, or the drain.
    Close,
}

/// What follows the HTTP exchange.
#[derive(Debug)]
enum Next {
    /// The connection is finished.
    Done,
    /// The 101 was sent: the connection speaks WebSocket on this route from now on (with the
    /// request head a handler route hands its handler).
    WebSocket(usize, Option<Box<RequestHead>>),
}

/// The facts about a parsed request the connection keeps once the head's bytes are released.
#[derive(Debug)]
struct RequestInfo {
    /// For a WebSocket route: the upgrade decision, taken while the head was at hand.
    upgrade: Option<Result<ws::Accepted, ws::Refusal>>,
    /// For an accepted upgrade on a handler route: the head, copied for the handler.
    head: Option<Box<RequestHead>>,
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

/// What a read brought.
enum ReadOutcome {
    Data,
    Eof,
    TimedOut,
    Failed,
}

/// Serves HTTP/1.1 on `io` until the client leaves, a protection closes the connection, or the
/// server drains. `guard` keeps the connection in the worker's registry while it lives.
pub async fn serve<T: Transport>(io: T, ctx: Rc<WorkerContext>, guard: ConnGuard) {
    let mut conn = Connection {
        guard,
        io,
        buf: Vec::with_capacity(INITIAL_BUFFER),
        pos: 0,
        // Allocated by the first response, then reused.
        out: Vec::new(),
        send_timeout: ctx.limits.send_timeout,
        ctx,
    };
    let (status, headers) = match conn.run().await {
        Ok(Next::Done) | Err(Stop::Close) => return,
        Ok(Next::WebSocket(route, head)) => {
            let Connection {
                guard,
                io,
                buf,
                pos,
                ctx,
                ..
            } = conn;
            return ws::serve(guard, io, ctx, route, head, buf, pos).await;
        }
        Err(Stop::Refuse(status)) => (status, &[][..]),
        Err(Stop::RefuseWith(status, headers)) => (status, headers),
    };
    let date = conn.ctx.date.now();
    refuse::refuse(
        &conn.io,
        conn.out,
        status,
        headers,
        &date,
        conn.send_timeout,
    )
    .await;
}

struct Connection<T> {
    /// Declared before `io` so that it drops first: the registry must never hold the descriptor
    /// of a closed stream.
    guard: ConnGuard,
    io: T,
    /// Bytes read and not yet consumed start at `pos`.
    buf: Vec<u8>,
    pos: usize,
    /// Responses waiting to be written.
    out: Vec<u8>,
    /// `send_timeout` of the route being answered (the global one before any route is known).
    send_timeout: Duration,
    ctx: Rc<WorkerContext>,
}

impl<T: Transport> Connection<T> {
    async fn run(&mut self) -> Result<Next, Stop> {
        let mut first = true;
        loop {
            let Some(request) = self.next_head(first).await? else {
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
            if let (Some(_), Some(route)) = (&request.upgrade, request.route) {
                return self.upgrade(request, route).await;
            }
            self.read_body(&request, limits).await?;
            let close = !request.keep_alive || ctx.draining.get();
            let date = ctx.date.now();
            match request.route {
                Some(i) => apps::respond(
                    &ctx.router.routes()[i].kind,
                    request.method,
                    &date,
                    close,
                    &mut self.out,
                ),
                None => apps::not_found(request.method, &date, close, &mut self.out),
            }
            if close {
                self.flush().await?;
                // FIN after the last response; a failure here changes nothing for the client.
                let _ = self.io.shutdown_write().await;
                return Ok(Next::Done);
            }
        }
    }

    /// Answers an upgrade request on a WebSocket route: the 101, or the refusal it earned.
    async fn upgrade(&mut self, request: RequestInfo, route: usize) -> Result<Next, Stop> {
        let accepted = match &request.upgrade {
            Some(Ok(accepted)) => accepted,
            Some(Err(refusal)) => return Err(Stop::RefuseWith(refusal.status, refusal.headers)),
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
        let mut head = request.head;
        if let Some(head) = &mut head {
            head.set_subprotocol(protocol);
            // Asked of the kernel here rather than kept by every connection.
            head.set_peer(self.io.peer_addr().map_err(|_| Stop::Close)?);
        }
        self.flush().await?;
        Ok(Next::WebSocket(route, head))
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
        let mut slots = [const { MaybeUninit::uninit() }; bounds::MAX_HEADERS_CEILING];
        let parsed = parse_request(&self.buf[self.pos..], &mut slots, &self.ctx.head_limits);
        match parsed {
            Ok(Some(request)) => {
                let info = describe(&request, &self.ctx);
                self.pos += info.head_len;
                Ok(Some(info))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(Stop::Refuse(e.status())),
        }
    }

    /// Reads the request body and discards it (the built-in routes take none), enforcing
    /// `max_body_size`, `upload_timeout` and `min_upload_rate`.
    async fn read_body(&mut self, request: &RequestInfo, limits: &HttpLimits) -> Result<(), Stop> {
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
        let mut decoder = BodyDecoder::new(request.body, limits.max_body_size);
        let started = Instant::now();
        let mut received: u64 = 0;
        loop {
            if self.pos < self.buf.len() {
                let decoded = decoder
                    .decode(&self.buf[self.pos..])
                    .map_err(|e| Stop::Refuse(e.status()))?;
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

/// Extracts what the connection needs from a parsed head.
fn describe(request: &Request<'_, '_>, ctx: &WorkerContext) -> RequestInfo {
    let route = ctx.router.find_index(request.path());
    let kind = route.map(|i| &ctx.router.routes()[i]);
    let upgrade = kind
        .filter(|route| route.kind.is_websocket())
        .map(|route| ws::decide(request, route.kind.subprotocols(), &route.ws));
    let head = match (kind, &upgrade) {
        (Some(route), Some(Ok(_))) if matches!(route.kind, RouteKind::Handler { .. }) => {
            Some(Box::new(RequestHead::capture(request)))
        }
        _ => None,
    };
    RequestInfo {
        upgrade,
        head,
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
