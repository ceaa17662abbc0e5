//! Deciding a WebSocket upgrade: RFC 6455 §4.2 checks, the `Origin` allowlist and the
//! subprotocol, then the 101 answer.

use ringstream_protocol::http::Request;
use ringstream_protocol::ws::deflate::{DeflateParams, negotiate};
use ringstream_protocol::ws::handshake::{
    HandshakeError, accept_key, validate_upgrade, write_switching_protocols,
};

use crate::config::WsLimits;
use crate::routes::Refused;

/// Header sent with 426: the only version this server speaks (RFC 6455 §4.4).
const VERSION_HEADER: (&str, &[u8]) = ("Sec-WebSocket-Version", b"13");

/// An upgrade the server will answer with 101.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The `Sec-WebSocket-Accept` value.
    accept: [u8; 28],
    /// Index of the chosen subprotocol in the route's list.
    protocol: Option<usize>,
    /// The permessage-deflate parameters agreed, if the route offers it and the client asked.
    deflate: Option<DeflateParams>,
}

impl Accepted {
    /// The `Sec-WebSocket-Accept` value the handshake's key calls for.
    pub fn accept_value(&self) -> [u8; 28] {
        self.accept
    }

    /// The permessage-deflate parameters agreed, if any.
    pub fn deflate(&self) -> Option<DeflateParams> {
        self.deflate
    }

    /// An acceptance with a made-up key, for tests of what follows it.
    #[cfg(test)]
    pub fn for_tests() -> Self {
        Self {
            accept: [b'a'; 28],
            protocol: None,
            deflate: None,
        }
    }
}

impl From<HandshakeError> for Refused {
    fn from(e: HandshakeError) -> Self {
        let status = e.status();
        Self {
            status,
            headers: if status == 426 {
                &[VERSION_HEADER]
            } else {
                &[]
            },
        }
    }
}

/// Checks an upgrade request against RFC 6455 and the route's `allowed_origins`, and picks the
/// first of the route's `subprotocols` that the client offers.
pub fn decide(
    request: &Request<'_, '_>,
    subprotocols: &[String],
    limits: &WsLimits,
) -> Result<Accepted, Refused> {
    let upgrade = validate_upgrade(request)?;
    if !limits.allowed_origins.is_empty() {
        let allowed = request.header("origin").is_some_and(|origin| {
            limits
                .allowed_origins
                .iter()
                .any(|o| o.as_bytes().eq_ignore_ascii_case(origin))
        });
        if !allowed {
            return Err(Refused::status(403));
        }
    }
    let protocol = subprotocols
        .iter()
        .position(|ours| upgrade.protocols().any(|offered| offered == ours.as_str()));
    let deflate = limits
        .deflate()
        .and_then(|config| negotiate(upgrade.extensions(), &config));
    Ok(Accepted {
        accept: accept_key(upgrade.key()),
        protocol,
        deflate,
    })
}

/// Appends the 101 answer to `out`; returns the subprotocol it names.
pub fn write_accepted<'a>(
    out: &mut Vec<u8>,
    accepted: &Accepted,
    subprotocols: &'a [String],
) -> Option<&'a str> {
    let protocol = accepted
        .protocol
        .and_then(|i| subprotocols.get(i))
        .map(String::as_str);
    write_switching_protocols(out, &accepted.accept, protocol, accepted.deflate.as_ref());
    protocol
}
