//! A request on a proxy route, from the connection's side: an upstream connection (pooled or
//! new), the head sent, the client's body decoded and re-framed as it streams upstream, the
//! response head judged and rewritten, and the response body streamed back, each wait under
//! its deadline (see [`crate::routes::proxy`] for the rules this follows).

use std::rc::Rc;
use std::time::Instant;

use ringstream_protocol::http::{
    BodyDecoder, BodyKind, CHUNK_END, EMPTY_HEADER, LAST_CHUNK, ResponseBody, parse_response,
    write_chunk_size,
};

use super::refusal::HeaderList;
use super::{BodyTarget, Connection, RequestInfo, Stop};
use crate::config::{HttpLimits, ProxyConfig, RouteKind};
use crate::conn::ws::tunnel::UpstreamTunnel;
use crate::protections::gate::RateHeaders;
use crate::routes::proxy::pool::ActiveExchange;
use crate::routes::proxy::response::{ClientFraming, Relayed, client_head};
use crate::routes::proxy::{ProxyAsk, ProxyRequest};
use crate::server::registry::ConnGuard;
use crate::server::transport::Transport;
use crate::server::upstream::UpstreamConn;

/// The upstream read buffer: a response head must fit in it, and body pieces are read into it.
const UPSTREAM_BUFFER: usize = 16 * 1024;
/// How often a client waiting for the upstream's answer is looked at.
const CLIENT_CHECK: std::time::Duration = std::time::Duration::from_millis(500);
/// Most response fields from an upstream.
const MAX_RESPONSE_FIELDS: usize = 128;

/// The request body's way upstream: the client's framing decoded, ringstream's written.
pub(super) struct UpstreamBody {
    conn: UpstreamConn,
    chunked: bool,
    deadline: Instant,
    scratch: Vec<u8>,
}

impl UpstreamBody {
    /// Sends one piece of the body.
    pub(super) async fn write(&mut self, guard: &ConnGuard, data: &[u8]) -> Result<(), Stop> {
        let mut piece = std::mem::take(&mut self.scratch);
        piece.clear();
        if self.chunked {
            write_chunk_size(&mut piece, data.len());
            piece.extend_from_slice(data);
            piece.extend_from_slice(CHUNK_END);
        } else {
            piece.extend_from_slice(data);
        }
        match guard
            .within(self.deadline, self.conn.write_all(piece))
            .await
        {
            Some((Ok(()), piece)) => {
                self.scratch = piece;
                Ok(())
            }
            _ => Err(Stop::Refuse(502)),
        }
    }

    /// Ends a chunked body.
    async fn finish(&mut self, guard: &ConnGuard) -> Result<(), Stop> {
        if !self.chunked {
            return Ok(());
        }
        match guard
            .within(self.deadline, self.conn.write_all(LAST_CHUNK.to_vec()))
            .await
        {
            Some((Ok(()), _)) => Ok(()),
            _ => Err(Stop::Refuse(502)),
        }
    }
}

/// How a proxied request ended.
pub(super) enum Proxied {
    /// The response was relayed; `true` when the client's connection closes after it.
    Done(bool),
    /// The upstream accepted a WebSocket upgrade, whose 101 is queued: the connection is a
    /// tunnel from now on.
    Tunnel(Box<UpstreamTunnel>),
}

/// What every attempt at one request shares.
struct Exchange<'a> {
    request: &'a RequestInfo,
    forward: &'a ProxyRequest,
    route_index: usize,
    config: &'a ProxyConfig,
    limits: &'a HttpLimits,
    /// The `RateLimit` fields an allowed answer carries (`rate_limit_headers`).
    rate_headers: Option<&'a RateHeaders>,
}

/// How one attempt at sending the request ended.
enum Attempt {
    /// The upstream answered: its connection, the upstream's index, the exchange, and the
    /// response head's summary with the bytes read after it in the buffer.
    Answered(UpstreamConn, ActiveExchange, Relayed, Vec<u8>),
    /// The pooled connection it went on was closed: try again.
    Again,
    /// Upstream `usize` failed before anything of the request was consumed: try another.
    Failed(usize, u16),
}

impl<T: Transport> Connection<T> {
    /// Forwards a request on proxy route `route_index` and relays the answer.
    pub(super) async fn proxy(
        &mut self,
        request: &RequestInfo,
        ask: ProxyAsk,
        route_index: usize,
        rate_headers: Option<&RateHeaders>,
    ) -> Result<Proxied, Stop> {
        let ctx = Rc::clone(&self.ctx);
        let route = &ctx.router.routes()[route_index];
        let RouteKind::Proxy(config) = &route.kind else {
            return Err(Stop::Refuse(500));
        };
        let forward = match ask {
            ProxyAsk::Forward(forward) => forward,
            ProxyAsk::Refused(refused) => return Err(Stop::RefuseWith(refused)),
        };
        self.hold_more(UPSTREAM_BUFFER, Instant::now() + config.upstream_timeout)
            .await?;
        let exchange = Exchange {
            request,
            forward: &forward,
            route_index,
            config,
            limits: &route.limits,
            rate_headers,
        };
        let relayed = self.exchange(&exchange).await;
        self.hold_less(UPSTREAM_BUFFER);
        relayed
    }

    async fn exchange(&mut self, exchange: &Exchange<'_>) -> Result<Proxied, Stop> {
        let Exchange {
            route_index,
            config,
            ..
        } = *exchange;
        let ctx = Rc::clone(&self.ctx);
        let mut tried: Vec<usize> = Vec::new();
        let mut status = 502;
        let mut body_sent = false;
        loop {
            let now = Instant::now();
            let choice = {
                let mut pools = ctx.upstreams.borrow_mut();
                let pool = pools.route(route_index, config);
                if tried.is_empty() && pool.all_down(now) {
                    return Err(Stop::Refuse(503));
                }
                pool.choose(config, now, &tried)
                    .map(|i| (i, pool.take_idle(i, now, config)))
            };
            let Some((upstream, idle)) = choice else {
                return Err(Stop::Refuse(status));
            };
            let attempt = self
                .attempt(exchange, upstream, idle, &mut body_sent)
                .await?;
            match attempt {
                Attempt::Answered(conn, active, relayed, rest) => {
                    ctx.upstreams
                        .borrow_mut()
                        .route(route_index, config)
                        .succeeded(upstream);
                    if relayed.status == 101 {
                        return Ok(Proxied::Tunnel(Box::new(UpstreamTunnel {
                            conn,
                            rest,
                            active,
                        })));
                    }
                    let close = self.relay(conn, active, relayed, rest, config).await?;
                    return Ok(Proxied::Done(close));
                }
                Attempt::Again => {}
                Attempt::Failed(failed, code) => {
                    let now = Instant::now();
                    ctx.upstreams
                        .borrow_mut()
                        .route(route_index, config)
                        .failed(failed, now, config);
                    if body_sent {
                        return Err(Stop::Refuse(code));
                    }
                    tried.push(failed);
                    status = code;
                }
            }
        }
    }

    /// One try on upstream `upstream`: with `idle` (a pooled connection) or a new one.
    async fn attempt(
        &mut self,
        exchange: &Exchange<'_>,
        upstream: usize,
        idle: Option<UpstreamConn>,
        body_sent: &mut bool,
    ) -> Result<Attempt, Stop> {
        let Exchange {
            request,
            forward,
            route_index,
            config,
            limits,
            rate_headers,
        } = *exchange;
        let ctx = Rc::clone(&self.ctx);
        let guard = self.stream.guard();
        let reused = idle.is_some();
        let mut conn = match idle {
            Some(conn) => {
                ctx.counters().proxy.reuses.add(1);
                conn
            }
            None => {
                let addr = &config.upstreams[upstream];
                let deadline = Instant::now() + config.connect_timeout;
                match guard.within(deadline, UpstreamConn::connect(addr)).await {
                    Some(Ok(conn)) => {
                        ctx.counters().proxy.connects.add(1);
                        conn
                    }
                    Some(Err(e)) => {
                        tracing::warn!(upstream = %addr, error = %e, "proxy: upstream connection failed");
                        return Ok(Attempt::Failed(upstream, 502));
                    }
                    None => {
                        tracing::warn!(upstream = %addr, "proxy: upstream connection timed out");
                        return Ok(Attempt::Failed(upstream, 504));
                    }
                }
            }
        };
        let active = ActiveExchange::begin(&ctx, route_index, upstream, config);
        let deadline = Instant::now() + config.upstream_timeout;
        match guard
            .within(deadline, conn.write_all(forward.head.clone()))
            .await
        {
            Some((Ok(()), _)) => {}
            _ if reused => return Ok(Attempt::Again),
            _ => return Ok(Attempt::Failed(upstream, 502)),
        }
        if request.body != BodyKind::None {
            *body_sent = true;
            let mut body = UpstreamBody {
                conn,
                chunked: request.body == BodyKind::Chunked,
                deadline,
                scratch: Vec::new(),
            };
            self.read_body(request, limits, BodyTarget::Upstream(&mut body))
                .await?;
            body.finish(self.stream.guard()).await?;
            conn = body.conn;
        }
        let deadline = Instant::now() + config.upstream_timeout;
        let mut buf = Vec::with_capacity(UPSTREAM_BUFFER);
        loop {
            let read = self.await_upstream(&conn, buf, deadline).await?;
            let Some((result, returned)) = read else {
                tracing::warn!(upstream = %config.upstreams[upstream], "proxy: upstream_timeout before the response head");
                return Ok(Attempt::Failed(upstream, 504));
            };
            buf = returned;
            match result {
                Ok(0) | Err(_) if buf.is_empty() && reused && forward.idempotent => {
                    return Ok(Attempt::Again);
                }
                Ok(0) | Err(_) => return Ok(Attempt::Failed(upstream, 502)),
                Ok(_) => {}
            }
            let close = !request.keep_alive || ctx.draining.get();
            let mut slots = [EMPTY_HEADER; MAX_RESPONSE_FIELDS];
            match parse_response(&buf, &mut slots, forward.to_head, UPSTREAM_BUFFER - 1) {
                Ok(Some(head)) if head.status == 101 => {
                    // Only to an upgrade, with the accept value the client's key calls for
                    // and no extension (the tunnel reads the client's frames as sent).
                    let accepted = forward.upgrade.is_some_and(|accept| {
                        let mut answers = head.headers.iter();
                        let accept_ok = answers.clone().any(|h| {
                            h.name.eq_ignore_ascii_case("sec-websocket-accept")
                                && h.value == accept.as_slice()
                        });
                        accept_ok
                            && !answers
                                .any(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
                    });
                    if !accepted {
                        tracing::warn!(upstream = %config.upstreams[upstream], "proxy: a 101 that does not answer the client's handshake");
                        return Ok(Attempt::Failed(upstream, 502));
                    }
                    let relayed = client_head(&head, false, false, &[], &mut self.out);
                    let len = head.head_len;
                    buf.drain(..len);
                    return Ok(Attempt::Answered(conn, active, relayed, buf));
                }
                Ok(Some(head)) if (100..200).contains(&head.status) => {
                    // Interim answers (103 Early Hints, a 100 the client did not ask of the
                    // upstream) are not relayed.
                    let len = head.head_len;
                    buf.drain(..len);
                }
                Ok(Some(head)) => {
                    let mut extra = HeaderList::default();
                    if let Some(rate) = rate_headers {
                        extra.push_rate(rate);
                    }
                    let relayed = client_head(
                        &head,
                        forward.client_http10,
                        close,
                        extra.as_slice(),
                        &mut self.out,
                    );
                    let len = head.head_len;
                    buf.drain(..len);
                    return Ok(Attempt::Answered(conn, active, relayed, buf));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(upstream = %config.upstreams[upstream], error = ?e, "proxy: invalid response head");
                    return Ok(Attempt::Failed(upstream, 502));
                }
            }
        }
    }

    /// Reads from the upstream until `deadline` (`None` past it), looking at the client
    /// every [`CLIENT_CHECK`]: a client that closed or reset its connection meanwhile ends the
    /// exchange at once (its place in the connection counts goes with it), as nginx drops an
    /// upstream request whose client went. The upstream's read stays pending across the looks.
    async fn await_upstream(
        &self,
        conn: &UpstreamConn,
        buf: Vec<u8>,
        deadline: Instant,
    ) -> Result<Option<(std::io::Result<usize>, Vec<u8>)>, Stop> {
        let guard = self.stream.guard();
        let mut read = std::pin::pin!(conn.read_append(buf));
        loop {
            let wake_at = (Instant::now() + CLIENT_CHECK).min(deadline);
            if let Some(done) = guard.until(wake_at, read.as_mut()).await {
                return Ok(Some(done));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            if self.stream.io().peer_gone() {
                return Err(Stop::Close);
            }
        }
    }

    /// Streams the response body to the client and gives the upstream connection back to the
    /// pool when it may carry another request. `Ok(true)`: the client's connection closes.
    async fn relay(
        &mut self,
        conn: UpstreamConn,
        active: ActiveExchange,
        relayed: Relayed,
        mut buf: Vec<u8>,
        config: &ProxyConfig,
    ) -> Result<bool, Stop> {
        let mut decoder = relayed
            .decoded_as()
            .map(|kind| BodyDecoder::new(kind, u64::MAX));
        let mut pos = 0;
        let mut done = relayed.upstream_body == ResponseBody::None;
        while !done {
            // Everything buffered goes into the client's batch.
            while pos < buf.len() {
                let (data, consumed, finished) = match &mut decoder {
                    Some(decoder) => {
                        let decoded = decoder.decode(&buf[pos..]).map_err(|_| Stop::Close)?;
                        (
                            pos + decoded.data.start..pos + decoded.data.end,
                            decoded.consumed,
                            decoded.done,
                        )
                    }
                    None => (pos..buf.len(), buf.len() - pos, false),
                };
                if !data.is_empty() {
                    frame_piece(&mut self.out, relayed.framing, &buf[data]);
                }
                pos += consumed;
                if finished {
                    done = true;
                    break;
                }
                if consumed == 0 {
                    break;
                }
            }
            if done {
                break;
            }
            if pos == buf.len() {
                buf.clear();
                pos = 0;
            } else if buf.len() == buf.capacity() {
                // A chunk-size line split by the buffer's end.
                buf.drain(..pos);
                pos = 0;
            }
            // What the client has so far leaves before the wait for more.
            self.flush().await?;
            let deadline = Instant::now() + config.upstream_timeout;
            let guard = self.stream.guard();
            let read = guard.within(deadline, conn.read_append(buf)).await;
            let Some((result, returned)) = read else {
                return Err(Stop::Close);
            };
            buf = returned;
            match result {
                Ok(0) if relayed.upstream_body == ResponseBody::UntilClose => done = true,
                Ok(0) | Err(_) => return Err(Stop::Close),
                Ok(_) => {}
            }
        }
        if relayed.framing == ClientFraming::Chunked {
            self.out.extend_from_slice(LAST_CHUNK);
        }
        let reusable = relayed.upstream_keep_alive && pos == buf.len();
        let close = relayed.framing == ClientFraming::UntilClose;
        if reusable {
            let ctx = Rc::clone(&self.ctx);
            let route = active.route;
            let upstream = active.upstream;
            drop(active);
            ctx.upstreams.borrow_mut().route(route, config).give_back(
                upstream,
                conn,
                Instant::now(),
                config,
            );
        }
        Ok(close)
    }
}

/// Appends one piece of the response body in the client's framing.
fn frame_piece(out: &mut Vec<u8>, framing: ClientFraming, data: &[u8]) {
    if framing == ClientFraming::Chunked {
        write_chunk_size(out, data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(CHUNK_END);
    } else {
        out.extend_from_slice(data);
    }
}
