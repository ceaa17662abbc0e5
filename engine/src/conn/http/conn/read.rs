//! Reading: request heads (parsed in place, described once), bodies under their limits and
//! deadlines, and the writes that flush queued answers.

use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ringstream_protocol::http::{BodyDecoder, BodyKind, Request, parse_request};

use super::memory::BUSY;
use super::{BodyTarget, Connection, ReadOutcome, RequestInfo, Stop};
use crate::config::{HttpLimits, bounds};
use crate::conn::access_entry::AccessEntry;
use crate::protections::gate::ClientSlot;
use crate::routes::ask::ask;
use crate::routes::auth::AuthAsk;
use crate::routes::plain::MethodClass;
use crate::routes::proxy::forward::Hop;
use crate::routes::upload::request::failed_write;
use crate::server::context::WorkerContext;
use crate::server::registry::Activity;
use crate::server::transport::Transport;

impl<T: Transport> Connection<T> {
    /// Returns the next request head, waiting for bytes as needed; `None` when the client
    /// closed cleanly between requests (or the drain closed an idle connection).
    pub(super) async fn next_head(&mut self, first: bool) -> Result<Option<RequestInfo>, Stop> {
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
            if idle {
                self.give_back_read_buffer();
            }
            self.stream
                .guard()
                .set_activity(if idle { Activity::Idle } else { Activity::Busy });
            let deadline = match head_started {
                Some(started) => started + self.ctx.limits.header_timeout,
                None if self.ctx.draining.get() => return Ok(None),
                None => Instant::now() + self.ctx.limits.keepalive_timeout,
            };
            let outcome = self.read_more(deadline).await;
            self.stream.guard().set_activity(Activity::Busy);
            match outcome {
                ReadOutcome::Data => {}
                ReadOutcome::Eof if idle => return Ok(None),
                ReadOutcome::Eof | ReadOutcome::Failed => return Err(Stop::Close),
                ReadOutcome::TimedOut if head_started.is_some() => return Err(Stop::Refuse(408)),
                ReadOutcome::TimedOut => return Err(Stop::Close),
                ReadOutcome::Busy => return Err(Stop::RefuseWith(BUSY)),
            }
        }
    }

    /// Parses the buffered bytes; `Ok(None)` if the head is not complete yet.
    pub(super) fn parse_head(&mut self) -> Result<Option<RequestInfo>, Stop> {
        // A connection whose client its heads name needs the peer's address with each head.
        let peer = match (&self.client, self.peer) {
            (_, Some(peer)) => Some(peer),
            (Some(_), None) => None,
            (None, None) => {
                let peer = self.stream.io().peer_addr().map_err(|_| Stop::Close)?.ip();
                self.peer = Some(peer);
                Some(peer)
            }
        };
        let mut slots = [const { MaybeUninit::uninit() }; bounds::MAX_HEADERS_CEILING];
        let parsed = parse_request(&self.buf[self.pos..], &mut slots, &self.ctx.head_limits);
        match parsed {
            Ok(Some(request)) => {
                let io = self.stream.io();
                let ctx = &self.ctx;
                let hop = || {
                    let peer = io
                        .peer_addr()
                        .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
                    let trusted = ctx.config.clients.trusted_proxies.contains(peer);
                    Hop { peer, trusted }
                };
                let info = describe(&request, ctx, peer, self.client.as_ref(), &hop);
                if ctx.access_log.is_some() {
                    let target = info.target.as_ref().map(|(_, ask)| ask);
                    let out_len = self.out.len();
                    AccessEntry::begin(&mut self.log, out_len, &request, info.route, target, &hop);
                }
                self.pos += info.head_len;
                Ok(Some(info))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(Stop::Refuse(e.status())),
        }
    }

    /// Reads and drops the body of a request whose route takes none, under `limits`.
    pub(super) async fn discard_body(
        &mut self,
        request: &RequestInfo,
        limits: &HttpLimits,
    ) -> Result<(), Stop> {
        self.read_body(request, limits, BodyTarget::Discard).await
    }

    /// Reads the request body into `keep`, or discards it when `keep` is `None` (routes that
    /// take no body), enforcing `max_body_size`, `upload_timeout` and `min_upload_rate`.
    pub(super) async fn read_body(
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
        let mut decoder = BodyDecoder::new(request.body, limits.max_body_size);
        let max_body = usize::try_from(limits.max_body_size).unwrap_or(usize::MAX);
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
                    BodyTarget::Collect(keep) => {
                        let need = keep.len() + data.len();
                        if keep.capacity() < need {
                            // A body of known length is held whole at once; a chunked one
                            // doubles, never past the limit the decoder enforces.
                            let want = match request.body {
                                BodyKind::Length(n) => usize::try_from(n).unwrap_or(usize::MAX),
                                _ => (keep.capacity() * 2).min(max_body),
                            }
                            .max(need);
                            let deadline = body_deadline(started, received, limits);
                            self.hold_more(want - keep.capacity(), deadline).await?;
                            keep.reserve_exact(want - keep.len());
                        }
                        keep.extend_from_slice(data);
                    }
                    BodyTarget::Upstream(body) => body.write(self.stream.guard(), data).await?,
                    BodyTarget::Upload(upload) => {
                        let written = upload.write(data).await;
                        written.map_err(|e| Stop::Refuse(failed_write(&e, upload.dir())))?;
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
                ReadOutcome::Busy => return Err(Stop::RefuseWith(BUSY)),
                ReadOutcome::Eof | ReadOutcome::Failed => return Err(Stop::Close),
            }
        }
    }

    /// Reads more bytes into the buffer before `deadline`. Consumed bytes are dropped first, and
    /// the buffer grows only when it is full of an unfinished head (bounded by the head limit,
    /// which the parser enforces).
    pub(super) async fn read_more(&mut self, deadline: Instant) -> ReadOutcome {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.len() == self.buf.capacity() && self.grow_read_buffer(deadline).await.is_err() {
            return ReadOutcome::Busy;
        }
        let buf = std::mem::take(&mut self.buf);
        match self
            .stream
            .guard()
            .within(deadline, self.stream.io().read_append(buf))
            .await
        {
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
    pub(super) async fn flush(&mut self) -> Result<(), Stop> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.log_sniff();
        let out = std::mem::take(&mut self.out);
        let deadline = Instant::now() + self.send_timeout;
        match self
            .stream
            .guard()
            .within(deadline, self.stream.io().write_all(out))
            .await
        {
            Some((Ok(()), mut out)) => {
                self.log_sent(out.len());
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
fn describe(
    request: &Request<'_, '_>,
    ctx: &WorkerContext,
    peer: Option<IpAddr>,
    current: Option<&ClientSlot>,
    hop: &dyn Fn() -> Hop,
) -> RequestInfo {
    let route = ctx.router.find_index(request.path());
    let path = route.map_or("", |i| ctx.router.routes()[i].path.as_str());
    let hooked = route.is_some_and(|i| ctx.router.routes()[i].auth.is_some());
    let (admission, named_by_auth) = match peer {
        // The auth hook's answer names the client: only the lists apply before it.
        Some(peer) if hooked && ctx.gate.names_by_auth() => {
            match ctx.gate.before_auth(peer, request, path) {
                Ok(address) => (None, Some(address)),
                Err(refusal) => (Some(Err(refusal)), None),
            }
        }
        Some(peer) => (ctx.gate.on_request(peer, request, path, current), None),
        None => (None, None),
    };
    let target = route.map(|i| (i, ask(&ctx.router.routes()[i], request, hop)));
    let auth = route.and_then(|i| {
        let auth = ctx.router.routes()[i].auth.as_deref()?;
        Some(Box::new(AuthAsk::capture(request, auth, hop())))
    });
    RequestInfo {
        target,
        admission,
        named_by_auth,
        auth,
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
pub(super) fn check_route_limits(request: &RequestInfo, limits: &HttpLimits) -> Result<(), Stop> {
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
    pub(super) fn body_deadline_follows_the_minimum_rate_after_the_grace_period() {
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
