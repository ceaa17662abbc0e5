//! The opening handshake, server side (RFC 6455 §4.2): validating the upgrade request,
//! computing `Sec-WebSocket-Accept`, writing the 101.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::deflate::DeflateParams;
use crate::http::{Header, Method, Request, Version};

/// RFC 6455 §1.3: appended to the client's key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why an upgrade request is refused; each variant knows its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not a GET (400).
    NotGet,
    /// Not HTTP/1.1 (400).
    NotHttp11,
    /// `Connection` does not list `upgrade`, or `Upgrade` does not list `websocket` (400).
    NotAnUpgrade,
    /// `Sec-WebSocket-Key` missing, or not the base64 of 16 bytes (400).
    BadKey,
    /// `Sec-WebSocket-Version` missing or not 13 (426, with `Sec-WebSocket-Version: 13`).
    UnsupportedVersion,
}

impl HandshakeError {
    /// The status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::UnsupportedVersion => 426,
            Self::NotGet | Self::NotHttp11 | Self::NotAnUpgrade | Self::BadKey => 400,
        }
    }
}

/// A valid upgrade request.
#[derive(Debug, Clone, Copy)]
pub struct Upgrade<'b, 'h> {
    key: &'b [u8],
    headers: &'h [Header<'b>],
}

impl<'b> Upgrade<'b, '_> {
    /// The `Sec-WebSocket-Key` value.
    pub fn key(&self) -> &'b [u8] {
        self.key
    }

    /// Every `Sec-WebSocket-Extensions` value the client sent, in order.
    pub fn extensions(&self) -> impl Iterator<Item = &'b [u8]> + '_ {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
            .map(|h| h.value)
    }

    /// The subprotocols the client offers, in its order (every `Sec-WebSocket-Protocol`
    /// header, comma-separated).
    pub fn protocols(&self) -> impl Iterator<Item = &'b str> + '_ {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-protocol"))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
    }
}

/// Checks the request against RFC 6455 §4.2.1.
pub fn validate_upgrade<'b, 'h>(
    request: &Request<'b, 'h>,
) -> Result<Upgrade<'b, 'h>, HandshakeError> {
    if request.method != Method::Get {
        return Err(HandshakeError::NotGet);
    }
    if request.version != Version::Http11 {
        return Err(HandshakeError::NotHttp11);
    }
    if !request.is_upgrade_to("websocket") {
        return Err(HandshakeError::NotAnUpgrade);
    }
    let key = request
        .header("sec-websocket-key")
        .map(<[u8]>::trim_ascii)
        .ok_or(HandshakeError::BadKey)?;
    // §4.2.1: the key is the base64 encoding of 16 bytes, which is always 24 characters.
    match BASE64.decode(key) {
        Ok(decoded) if decoded.len() == 16 => {}
        _ => return Err(HandshakeError::BadKey),
    }
    if request
        .header("sec-websocket-version")
        .map(<[u8]>::trim_ascii)
        != Some(b"13")
    {
        return Err(HandshakeError::UnsupportedVersion);
    }
    Ok(Upgrade {
        key,
        headers: request.headers,
    })
}

/// `Sec-WebSocket-Accept` for `key`: base64 of the SHA-1 of the key and the GUID.
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(GUID);
    let mut out = [0u8; 28];
    // A 20-byte digest is always 28 base64 characters.
    let written = BASE64
        .encode_slice(sha.digest().bytes(), &mut out)
        .unwrap_or(0);
    debug_assert_eq!(written, 28);
    out
}

/// Appends the 101 answer, with the chosen subprotocol and the agreed permessage-deflate
/// parameters, if any (the only extension the server takes).
pub fn write_switching_protocols(
    out: &mut Vec<u8>,
    accept: &[u8; 28],
    protocol: Option<&str>,
    deflate: Option<&DeflateParams>,
) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept);
    if let Some(protocol) = protocol {
        out.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
        out.extend_from_slice(protocol.as_bytes());
    }
    if let Some(params) = deflate {
        out.extend_from_slice(b"\r\nSec-WebSocket-Extensions: ");
        params.write_response(out);
    }
    out.extend_from_slice(b"\r\n\r\n");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use std::mem::MaybeUninit;

    use super::*;
    use crate::http::{HEADER_SLOTS, HeadLimits, parse_request};

    const GOOD: &str = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    fn check(raw: &str) -> Result<(Vec<u8>, Vec<String>), HandshakeError> {
        let mut slots = [const { MaybeUninit::uninit() }; HEADER_SLOTS];
        let request = parse_request(raw.as_bytes(), &mut slots, &HeadLimits::default())
            .unwrap()
            .unwrap();
        validate_upgrade(&request)
            .map(|u| (u.key().to_vec(), u.protocols().map(str::to_owned).collect()))
    }

    #[test]
    fn rfc_6455_example() {
        // §1.3 and §4.2.2.
        assert_eq!(
            &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let (key, protocols) = check(GOOD).unwrap();
        assert_eq!(key, b"dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(protocols, ["chat", "superchat"]);
    }

    #[test]
    fn refusals_and_their_statuses() {
        let cases = [
            (GOOD.replacen("GET", "POST", 1), HandshakeError::NotGet, 400),
            (
                GOOD.replace("HTTP/1.1", "HTTP/1.0"),
                HandshakeError::NotHttp11,
                400,
            ),
            (
                GOOD.replace("Upgrade: websocket\r\n", ""),
                HandshakeError::NotAnUpgrade,
                400,
            ),
            (
                GOOD.replace("Connection: Upgrade", "Connection: close"),
                HandshakeError::NotAnUpgrade,
                400,
            ),
            (
                GOOD.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                HandshakeError::BadKey,
                400,
            ),
            (
                GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
                HandshakeError::BadKey,
                400,
            ),
            (
                GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "not base64 at all!!!!!!"),
                HandshakeError::BadKey,
                400,
            ),
            (
                GOOD.replace("Version: 13", "Version: 8"),
                HandshakeError::UnsupportedVersion,
                426,
            ),
            (
                GOOD.replace("Sec-WebSocket-Version: 13\r\n", ""),
                HandshakeError::UnsupportedVersion,
                426,
            ),
        ];
        for (raw, error, status) in cases {
            assert_eq!(check(&raw).unwrap_err(), error, "{raw}");
            assert_eq!(error.status(), status);
        }
        // Token lists and case do not matter.
        let mixed = GOOD
            .replace("Connection: Upgrade", "Connection: keep-alive, UPGRADE")
            .replace("Upgrade: websocket", "Upgrade: WebSocket");
        assert!(check(&mixed).is_ok());
    }

    #[test]
    fn the_101() {
        let mut out = Vec::new();
        write_switching_protocols(
            &mut out,
            &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            Some("chat"),
            None,
        );
        assert_eq!(
            out,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
        );
    }
}
