//! Refusals: the answer a stopped connection owes its client, and the request-rate check
//! that can refuse a request while keeping the connection.

use ringstream_protocol::http::{BodyKind, write_error_response};

use super::{Connection, Next, RequestInfo, Stop, access};
use crate::conn::http::refuse;
use crate::protections::gate::{RateHeaders, RequestCheck};
use crate::routes::ask::Ask;
use crate::routes::plain;
use crate::server::transport::Transport;

impl<T: Transport> Connection<T> {
    /// Ends a connection that did not become a WebSocket route's: nothing more, the refusal
    /// its last request earned, or a proxy route's tunnel.
    pub(super) async fn finish(mut self, outcome: Result<Next, Stop>) {
        let (status, headers) = match outcome {
            Ok(Next::Tunnel(route, tunnel)) => {
                return self.tunnel(route, tunnel).await;
            }
            Ok(Next::Done | Next::WebSocket(..)) | Err(Stop::Close) => {
                self.log_end(None);
                return;
            }
            Err(Stop::Refuse(status)) => (status, &[][..]),
            Err(Stop::RefuseWith(refused)) => (refused.status, refused.headers),
            Err(Stop::Unauthorized(status, challenge)) => {
                let mut headers = HeaderList::default();
                if let Some(challenge) = &challenge {
                    headers.push("WWW-Authenticate", challenge);
                }
                return self.refuse(status, headers.as_slice()).await;
            }
            Err(Stop::Limited(refusal, _)) if refusal.silent => {
                self.log_end(Some(access::CLOSED_SILENTLY));
                return;
            }
            Err(Stop::Limited(refusal, rate)) => {
                let retry_after = refusal.retry_after_header();
                let mut headers = HeaderList::default();
                if let Some((name, value)) = &retry_after {
                    headers.push(name, value.as_bytes());
                }
                if let Some(rate) = &rate {
                    headers.push_rate(rate);
                }
                return self.refuse(refusal.status, headers.as_slice()).await;
            }
        };
        self.refuse(status, headers).await;
    }

    /// Answers `status` with `headers` after the answers already queued, logs it, and closes
    /// politely.
    async fn refuse(mut self, status: u16, headers: &[(&str, &[u8])]) {
        let date = self.ctx.date.now();
        self.ctx.counters().refusals.count(status);
        write_error_response(&mut self.out, status, &date, headers);
        self.log_end(Some(status));
        refuse::send_then_linger(self.stream.io(), self.out, self.send_timeout).await;
    }
}

/// A few extra response headers, kept on the stack.
#[derive(Default)]
pub(super) struct HeaderList<'a> {
    entries: [(&'static str, &'a [u8]); 3],
    len: usize,
}

impl<'a> HeaderList<'a> {
    pub(super) fn push(&mut self, name: &'static str, value: &'a [u8]) {
        if let Some(entry) = self.entries.get_mut(self.len) {
            *entry = (name, value);
            self.len += 1;
        }
    }

    pub(super) fn push_rate(&mut self, rate: &'a RateHeaders) {
        self.push("RateLimit-Policy", rate.policy.as_bytes());
        self.push("RateLimit", rate.state.as_bytes());
    }

    pub(super) fn as_slice(&self) -> &[(&'static str, &'a [u8])] {
        &self.entries[..self.len]
    }
}

impl<T: Transport> Connection<T> {
    /// Checks the request against its client's request rate. `Ok(Some(headers))`: serve it,
    /// with these rate headers if any; `Ok(None)`: a 429 was queued and the connection stays
    /// open (a request without a body); `Err`: a 429 that closes the connection.
    pub(super) fn check_rate(
        &mut self,
        request: &RequestInfo,
    ) -> Result<Option<Option<RateHeaders>>, Stop> {
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
                    && !matches!(request.target, Some((_, Ask::Upgrade(_))))
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
}
