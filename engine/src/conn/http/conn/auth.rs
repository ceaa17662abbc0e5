//! The auth hook, from the connection's side: the kept answer for the credential, or the
//! question sent to the app's endpoint (on a pooled connection when one is idle) and its
//! answer read within `auth_timeout`; then the verdict applied (see [`crate::routes::auth`]),
//! and with `client_id = "auth"` the client it names admitted.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use ringstream_protocol::http::{EMPTY_HEADER, ResponseBody, parse_response};

use super::memory::BUSY;
use super::{Connection, RequestInfo, Stop};
use crate::config::{AuthConfig, AuthFailure};
use crate::protections::gate::RateHeaders;
use crate::routes::auth::{AuthAsk, Grant, Verdict, verdict};
use crate::server::transport::Transport;
use crate::server::upstream::UpstreamConn;

/// The endpoint's answer must fit in this (its head and any body it sends).
const ANSWER_BUFFER: usize = 16 * 1024;
/// Most fields of the endpoint's answer.
const MAX_ANSWER_FIELDS: usize = 64;

impl<T: Transport> Connection<T> {
    /// Puts `request` to its route's auth hook: `Err` with the answer when the hook refuses
    /// it (or it asks for a topic the grant does not list: 403). With `client_id = "auth"`
    /// the client the answer names is admitted, and `rate_headers` set by its request rate;
    /// `Ok(false)` when that rate refused it with a 429 that keeps the connection.
    pub(super) async fn pass_auth(
        &mut self,
        request: &mut RequestInfo,
        rate_headers: &mut Option<RateHeaders>,
    ) -> Result<bool, Stop> {
        let (Some(ask), Some(route)) = (request.auth.take(), request.route) else {
            return Ok(true);
        };
        let grant = self.authorize(ask, route).await?;
        let within = |grant: &Grant| {
            request
                .target
                .as_ref()
                .is_none_or(|(_, ask)| grant.allows(ask))
        };
        if !grant.as_ref().is_none_or(within) {
            return Err(Stop::Refuse(403));
        }
        let Some(address) = request.named_by_auth else {
            return Ok(true);
        };
        let ctx = Rc::clone(&self.ctx);
        let name = grant.as_ref().and_then(|grant| grant.client.as_deref());
        let path = ctx.router.routes()[route].path.as_str();
        if let Some(admission) = ctx
            .gate
            .after_auth(address, name, path, self.client.as_ref())
        {
            self.client = Some(admission.map_err(|refusal| Stop::Limited(refusal, None))?);
        }
        match self.check_rate(request)? {
            Some(headers) => {
                *rate_headers = headers;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Asks route `route_index`'s auth endpoint about a request; `Ok(None)` when it passes
    /// because the endpoint failed and failures are open.
    pub(super) async fn authorize(
        &mut self,
        ask: Box<AuthAsk>,
        route_index: usize,
    ) -> Result<Option<Grant>, Stop> {
        let ctx = Rc::clone(&self.ctx);
        let route = &ctx.router.routes()[route_index];
        let Some(auth) = route.auth.as_deref() else {
            return Ok(None);
        };
        let cache = ctx
            .routes
            .get(route_index)
            .and_then(|s| s.auth_cache.as_ref());
        let now = Instant::now();
        let answer = match cache.and_then(|cache| cache.get(&ask.key, now)) {
            Some(kept) => kept,
            None => {
                let answer = Arc::new(self.ask_endpoint(&ask, auth, route_index).await);
                if let Some(cache) = cache {
                    cache.put(ask.key, Arc::clone(&answer), Instant::now());
                }
                answer
            }
        };
        match &*answer {
            Verdict::Allow(grant) => Ok(Some(grant.clone())),
            Verdict::Deny { status, challenge } => {
                Err(Stop::Unauthorized(*status, challenge.clone()))
            }
            Verdict::Failed => match auth.failure {
                AuthFailure::Closed => Err(Stop::RefuseWith(BUSY)),
                AuthFailure::Open => Ok(None),
            },
        }
    }

    /// The endpoint's verdict on `ask` (a failure for any trouble on the way).
    async fn ask_endpoint(&self, ask: &AuthAsk, auth: &AuthConfig, route_index: usize) -> Verdict {
        let ctx = &self.ctx;
        let guard = self.stream.guard();
        let deadline = Instant::now() + auth.timeout;
        let idle = ctx
            .upstreams
            .borrow_mut()
            .take_auth(route_index, Instant::now());
        let conn = match idle {
            Some(conn) => conn,
            None => match guard
                .within(deadline, UpstreamConn::connect(&auth.endpoint))
                .await
            {
                Some(Ok(conn)) => conn,
                Some(Err(e)) => {
                    tracing::warn!(endpoint = %auth.endpoint, error = %e, "auth: endpoint connection failed");
                    return Verdict::Failed;
                }
                None => {
                    tracing::warn!(endpoint = %auth.endpoint, "auth: endpoint connection timed out");
                    return Verdict::Failed;
                }
            },
        };
        if !matches!(
            guard
                .within(deadline, conn.write_all(ask.head.clone()))
                .await,
            Some((Ok(()), _))
        ) {
            tracing::warn!(endpoint = %auth.endpoint, "auth: the question could not be sent");
            return Verdict::Failed;
        }
        let answer = Vec::with_capacity(ANSWER_BUFFER);
        let buf = match guard
            .within(deadline, conn.read_head(answer, ANSWER_BUFFER))
            .await
        {
            Some((Ok(true), buf)) => buf,
            Some(_) => {
                tracing::warn!(endpoint = %auth.endpoint, "auth: the endpoint closed without an answer");
                return Verdict::Failed;
            }
            None => {
                tracing::warn!(endpoint = %auth.endpoint, "auth: no answer within auth_timeout");
                return Verdict::Failed;
            }
        };
        let mut slots = [EMPTY_HEADER; MAX_ANSWER_FIELDS];
        match parse_response(&buf, &mut slots, false, ANSWER_BUFFER - 1) {
            Ok(Some(head)) => {
                let answer = verdict(head.status, head.headers);
                if answer == Verdict::Failed {
                    tracing::warn!(endpoint = %auth.endpoint, status = head.status, "auth: the endpoint answered neither 2xx, 401 nor 403");
                }
                // The connection is kept only when the answer's body is all here.
                let whole = match head.body {
                    ResponseBody::None => buf.len() == head.head_len,
                    ResponseBody::Length(n) => (buf.len() - head.head_len) as u64 == n,
                    ResponseBody::Chunked | ResponseBody::UntilClose => false,
                };
                if head.keep_alive && whole {
                    let now = Instant::now();
                    ctx.upstreams
                        .borrow_mut()
                        .give_back_auth(route_index, conn, now);
                }
                answer
            }
            Ok(None) | Err(_) => {
                tracing::warn!(endpoint = %auth.endpoint, "auth: not an HTTP answer");
                Verdict::Failed
            }
        }
    }
}
