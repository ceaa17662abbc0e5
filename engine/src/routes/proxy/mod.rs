//! The `proxy` route: ringstream in front of the user's app. A request below the route's path
//! passes every protection of the route (client lists and rates, head and body limits,
//! timeouts) and is then forwarded to an upstream: its head rewritten here ([`forward`]), its
//! body decoded and re-framed by the HTTP connection as it streams, the upstream chosen and
//! its connection pooled per worker ([`pool`]), and its response head judged and rewritten
//! for the client ([`response`]). Nothing is buffered whole in either direction.
//!
//! Errors answer exactly: 502 when the upstream refuses, resets or answers with an invalid
//! head before a byte of the response reached the client, 504 past `connect_timeout` or
//! `upstream_timeout`, 503 when every upstream is marked down. Once the response head went
//! out, an upstream failure closes the client's connection. A request goes again on another
//! connection only if nothing of its body was read from the client and it was never answered:
//! a pooled connection the upstream closed between requests never surfaces as a 502.

pub mod forward;
pub mod health;
pub mod pool;
pub mod response;

use ringstream_protocol::http::{BodyKind, Method, Request, Version};

use super::Refused;
use crate::config::{ProxyConfig, Route};
use crate::conn::ws;
use forward::{Hop, upstream_head};

/// A request a proxy route forwards, captured while its head was at hand.
#[derive(Debug)]
pub struct ProxyRequest {
    /// The head as it goes upstream.
    pub head: Vec<u8>,
    /// A `HEAD` request: its response has no body whatever its fields say.
    pub to_head: bool,
    /// Whether it may be sent once more when the connection it went on turns out closed
    /// (RFC 9110 §9.2.2; only ever for a request without a body).
    pub idempotent: bool,
    /// An HTTP/1.0 client: a response of unknown length runs until the close.
    pub client_http10: bool,
    /// For a WebSocket upgrade, the `Sec-WebSocket-Accept` the upstream's 101 must carry;
    /// the connection then becomes a tunnel ([`crate::conn::ws::tunnel`]).
    pub upgrade: Option<[u8; 28]>,
}

/// What a request asks of a proxy route.
#[derive(Debug)]
pub enum ProxyAsk {
    /// Forward it (a WebSocket upgrade too, once the handshake is valid).
    Forward(Box<ProxyRequest>),
    /// An upgrade the route refuses before asking the upstream (400, 403, 426).
    Refused(Refused),
}

impl ProxyAsk {
    /// Captures `request` for `route`, sent by `hop`.
    pub fn capture(
        request: &Request<'_, '_>,
        route: &Route,
        config: &ProxyConfig,
        hop: Hop,
    ) -> Self {
        let upgrade = if request.is_upgrade_to("websocket") {
            // The handshake and `allowed_origins` are checked here; subprotocols are the app's.
            match ws::decide(request, &[], &route.ws) {
                Ok(accepted) => Some(accepted.accept_value()),
                Err(refused) => return Self::Refused(refused),
            }
        } else {
            None
        };
        let mut head = Vec::with_capacity(256 + request.head_len);
        upstream_head(request, config, hop, upgrade.is_some(), &mut head);
        let idempotent = request.body == BodyKind::None
            && matches!(
                request.method,
                Method::Get | Method::Head | Method::Options | Method::Put | Method::Delete
            );
        Self::Forward(Box::new(ProxyRequest {
            head,
            to_head: request.method == Method::Head,
            idempotent,
            client_http10: request.version == Version::Http10,
            upgrade,
        }))
    }
}
