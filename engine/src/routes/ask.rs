//! What a request asks of its route, decided once from its parsed head by the route's kind:
//! the one place an HTTP request meets the list of route kinds (every match exhaustive). The
//! HTTP connection acts on an [`Ask`] without knowing which kind produced it.

use std::io;
use std::net::SocketAddr;

use ringstream_protocol::http::Request;
use ringstream_protocol::ws::deflate::DeflateParams;

use super::Refused;
use super::broadcast::publish::{self, PublishHead};
use super::files::FileRequest;
use super::handler::{RequestHead, WsHandler};
use super::observe;
use super::proxy::ProxyAsk;
use super::proxy::forward::Hop;
use super::upload::request::UploadRequest;
use crate::config::{Route, RouteKind};
use crate::conn::ws::{self, Accepted};
use crate::routes::broadcast::LocalTopics;
use crate::routes::role::Attachment;
use crate::server::context::WorkerContext;

/// What a request asks of the route it matched.
#[derive(Debug)]
pub enum Ask {
    /// An answer from the route's configuration alone (`health`, `static_text`).
    Plain,
    /// The server's counters (`stats`, `metrics`, `dashboard`), for the allowed clients only:
    /// which of the route's documents.
    Observe(observe::View),
    /// A WebSocket upgrade on a WebSocket route: accepted, with what the connection brings to
    /// its role, or refused with a status.
    Upgrade(Result<Upgrade, Refused>),
    /// A publish: what its head asks, checked before its body is read.
    Publish(PublishHead),
    /// A file below the route's root.
    File(Box<FileRequest>),
    /// A body to store under a name.
    Upload(UploadRequest),
    /// A request for the route's upstream.
    Proxy(ProxyAsk),
}

/// An upgrade the route accepts.
#[derive(Debug)]
pub struct Upgrade {
    /// The handshake's answer.
    pub accepted: Accepted,
    /// What the connection joins after its 101.
    pub joins: Joins,
}

/// What a WebSocket connection joins after its 101, besides its route.
#[derive(Debug)]
pub enum Joins {
    /// An echo route.
    Echo,
    /// A sink route.
    Sink,
    /// A handler route: the handler, and the request head it is given.
    Handler(WsHandler, Box<RequestHead>),
    /// A broadcast route: the topic it names, and whether a member receives its own messages.
    Topic(Box<str>, bool),
}

impl Joins {
    /// What the connection brings to its role once its 101 is queued with `protocol`: a
    /// handler's head, told the subprotocol and the peer (asked of the kernel with `peer`
    /// here rather than kept by every connection); a topic's membership, joined before the
    /// 101 leaves so that whatever is published once the client has its 101 reaches it, from
    /// any worker (leaving is dropping the membership, on any path), and sent compressed when
    /// the upgrade agreed `deflate`.
    pub fn attach(
        self,
        ctx: &WorkerContext,
        route: &Route,
        protocol: Option<&str>,
        deflate: Option<DeflateParams>,
        peer: impl FnOnce() -> io::Result<SocketAddr>,
    ) -> io::Result<Attachment> {
        Ok(match self {
            Self::Echo => Attachment::Echo,
            Self::Sink => Attachment::Sink,
            Self::Handler(handler, mut head) => {
                head.set_subprotocol(protocol);
                head.set_peer(peer()?);
                Attachment::Handler(handler, head)
            }
            Self::Topic(topic, echo_to_sender) => {
                let membership = LocalTopics::join(
                    &ctx.topics,
                    ctx.hub.topics.get_or_create(&topic),
                    route.ws.max_backpressure,
                    route.ws.slow_consumer,
                    deflate.map(|params| params.server_max_window_bits),
                );
                Attachment::Broadcast(membership, echo_to_sender)
            }
        })
    }
}

/// Decides what `request` asks of `route`; `hop` names who sent it (asked of the kernel for
/// proxy routes only).
pub fn ask(route: &Route, request: &Request<'_, '_>, hop: &dyn Fn() -> Hop) -> Ask {
    let upgrade = |joins: &dyn Fn() -> Result<Joins, Refused>| {
        let decided =
            ws::decide(request, route.kind.subprotocols(), &route.ws).and_then(|accepted| {
                Ok(Upgrade {
                    accepted,
                    joins: joins()?,
                })
            });
        Ask::Upgrade(decided)
    };
    match &route.kind {
        RouteKind::Health | RouteKind::StaticText { .. } => Ask::Plain,
        RouteKind::Stats { .. } | RouteKind::Metrics { .. } | RouteKind::Dashboard { .. } => {
            Ask::Observe(observe::view(route, request.path()))
        }
        RouteKind::Echo { .. } => upgrade(&|| Ok(Joins::Echo)),
        RouteKind::Sink { .. } => upgrade(&|| Ok(Joins::Sink)),
        RouteKind::Handler { handler, .. } => upgrade(&|| {
            let head = Box::new(RequestHead::capture(request));
            Ok(Joins::Handler(handler.clone(), head))
        }),
        RouteKind::Broadcast {
            topic,
            echo_to_sender,
            ..
        } => upgrade(&|| {
            topic
                .resolve(&route.path, request.path())
                .map(|name| Joins::Topic(name.into(), *echo_to_sender))
                .ok_or(Refused::status(404))
        }),
        RouteKind::Publish { .. } => Ask::Publish(publish::decide(route, request)),
        RouteKind::Files(files) => Ask::File(Box::new(FileRequest::capture(request, route, files))),
        RouteKind::Upload(_) => Ask::Upload(UploadRequest::capture(request, route)),
        RouteKind::Proxy(config) => Ask::Proxy(ProxyAsk::capture(request, route, config, hop())),
    }
}
