//! The upgrade request as a handler sees it.

use std::net::SocketAddr;

use ringstream_protocol::http::Request;

/// The request that opened a WebSocket connection: target, headers, the peer's address and
/// the negotiated subprotocol. Copied once at the upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    target: String,
    path_len: usize,
    headers: Vec<(String, Vec<u8>)>,
    peer: SocketAddr,
    subprotocol: Option<String>,
}

impl RequestHead {
    /// Copies what a handler may need from a parsed upgrade request (the peer is set once
    /// the upgrade is accepted).
    pub(crate) fn capture(request: &Request<'_, '_>) -> Self {
        Self {
            target: request.target.to_owned(),
            path_len: request.path().len(),
            headers: request
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), h.value.to_vec()))
                .collect(),
            peer: SocketAddr::from(([0, 0, 0, 0], 0)),
            subprotocol: None,
        }
    }

    /// Records the client's address.
    pub(crate) fn set_peer(&mut self, peer: SocketAddr) {
        self.peer = peer;
    }

    /// Records the subprotocol the 101 named.
    pub(crate) fn set_subprotocol(&mut self, protocol: Option<&str>) {
        self.subprotocol = protocol.map(str::to_owned);
    }

    /// The request-target as sent (`/chat?room=1`).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        &self.target[..self.path_len]
    }

    /// The query string after `?`, if any (not decoded).
    pub fn query(&self) -> Option<&str> {
        self.target[self.path_len..].strip_prefix('?')
    }

    /// The value of a query parameter `name` (`?name=value&...`), not percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query()?.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Every header, in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// The client's address (the TCP peer).
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The subprotocol agreed in the handshake, if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }
}
