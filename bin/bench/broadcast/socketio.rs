//! Socket.IO over a plain WebSocket, without IO: what the broadcast load speaks to a Socket.IO
//! server (engine.io protocol 4 and Socket.IO protocol 5, as socket.io-client speaks them with
//! `transports: ["websocket"]`, so the server does what it does for its own clients).
//!
//! - After the 101 the server sends engine.io's open packet (`0{"sid":..}`); the client
//!   connects to the main namespace (`40`) and the server acknowledges it (`40{"sid":..}`).
//! - A message is an event named `m` whose one argument is the payload, carried one of two
//!   ways ([`Payload`]): a Buffer, which Socket.IO sends as a text frame announcing one
//!   attachment followed by a binary frame of the bytes; or a string of the bytes in
//!   hexadecimal, one text frame.
//! - The server pings (`2`) every `pingInterval`; the client answers `3`.

use std::fmt;

/// The client's connect to the main namespace.
pub const CONNECT: &[u8] = b"40";
/// engine.io's pong, the answer to a ping.
pub const PONG: &[u8] = b"3";
/// A binary event `m` with one attachment: the next binary frame is its argument.
pub const BINARY_EVENT: &[u8] = br#"451-["m",{"_placeholder":true,"num":0}]"#;
/// A text event `m` with one string argument: the prefix before the string's characters...
const TEXT_EVENT_PREFIX: &[u8] = br#"42["m",""#;
/// ...and the suffix after them.
const TEXT_EVENT_SUFFIX: &[u8] = br#""]"#;
const HEX: &[u8; 16] = b"0123456789abcdef";

/// How a message's bytes travel as the argument of a Socket.IO event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Payload {
    /// A Buffer: a text frame announcing the attachment, then a binary frame of the bytes
    /// (two frames per message each way).
    Binary,
    /// A string of the bytes in hexadecimal: one text frame (`42["m","0a1b.."]`), twice the
    /// bytes.
    Text,
}

impl Payload {
    /// The name the reports use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Binary => "binary",
            Self::Text => "text",
        }
    }
}

/// What one text frame from the server says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerPacket<'a> {
    /// engine.io's open packet.
    Open,
    /// The namespace connect's acknowledgement.
    Connected,
    /// A ping, to answer with [`PONG`].
    Ping,
    /// A binary event: the next binary frame is the message.
    Attachment,
    /// A text event: the message in hexadecimal.
    Hex(&'a [u8]),
}

/// A text frame that is none of the packets the broadcast load expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unexpected(pub String);

impl fmt::Display for Unexpected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unexpected Socket.IO packet {:?}", self.0)
    }
}

impl std::error::Error for Unexpected {}

/// Reads one text frame's payload.
pub fn parse(frame: &[u8]) -> Result<ServerPacket<'_>, Unexpected> {
    if frame == b"2" {
        return Ok(ServerPacket::Ping);
    }
    if frame == BINARY_EVENT {
        return Ok(ServerPacket::Attachment);
    }
    if let Some(hex) = frame
        .strip_prefix(TEXT_EVENT_PREFIX)
        .and_then(|rest| rest.strip_suffix(TEXT_EVENT_SUFFIX))
    {
        return Ok(ServerPacket::Hex(hex));
    }
    if frame.starts_with(b"0{") {
        return Ok(ServerPacket::Open);
    }
    if frame.starts_with(b"40") {
        return Ok(ServerPacket::Connected);
    }
    let shown = &frame[..frame.len().min(80)];
    Err(Unexpected(String::from_utf8_lossy(shown).into_owned()))
}

/// Length of the text event carrying a message of `size` bytes.
pub fn text_event_len(size: usize) -> usize {
    TEXT_EVENT_PREFIX.len() + 2 * size + TEXT_EVENT_SUFFIX.len()
}

/// Writes the text event of a message into `out` (`out.len() == text_event_len(size)`):
/// `encode` fills the message's `size` bytes, which are then spelled in hexadecimal in place.
pub fn write_text_event(out: &mut [u8], size: usize, encode: impl FnOnce(&mut [u8])) {
    let (prefix, rest) = out.split_at_mut(TEXT_EVENT_PREFIX.len());
    prefix.copy_from_slice(TEXT_EVENT_PREFIX);
    let (digits, suffix) = rest.split_at_mut(2 * size);
    suffix.copy_from_slice(TEXT_EVENT_SUFFIX);
    // The bytes go in the second half; spelling them from the front overwrites only bytes
    // already spelled (byte i's digits land at 2i and 2i + 1, at most size + i).
    encode(&mut digits[size..]);
    for i in 0..size {
        let byte = digits[size + i];
        digits[2 * i] = HEX[usize::from(byte >> 4)];
        digits[2 * i + 1] = HEX[usize::from(byte & 0xf)];
    }
}

/// Decodes lowercase hexadecimal `hex` into `out` (cleared first); `false` when it is not.
pub fn decode_hex(hex: &[u8], out: &mut Vec<u8>) -> bool {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    out.clear();
    if !hex.len().is_multiple_of(2) {
        return false;
    }
    for pair in hex.chunks_exact(2) {
        match (digit(pair[0]), digit(pair[1])) {
            (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn server_packets() {
        assert_eq!(parse(b"2"), Ok(ServerPacket::Ping));
        assert_eq!(
            parse(br#"0{"sid":"x","upgrades":[],"pingInterval":25000}"#),
            Ok(ServerPacket::Open)
        );
        assert_eq!(parse(br#"40{"sid":"y"}"#), Ok(ServerPacket::Connected));
        assert_eq!(parse(BINARY_EVENT), Ok(ServerPacket::Attachment));
        assert_eq!(
            parse(br#"42["m","00ff"]"#),
            Ok(ServerPacket::Hex(b"00ff".as_slice()))
        );
        // Another event, two attachments, a disconnect: not what the load sends.
        for other in [
            br#"42["other","00"]"#.as_slice(),
            br#"452-["m",{"_placeholder":true,"num":0}]"#,
            b"41",
            b"44{\"message\":\"refused\"}",
            b"",
        ] {
            assert!(parse(other).is_err(), "{other:?}");
        }
    }

    #[test]
    fn text_events_spell_the_message_and_decode_back() {
        for size in [0, 1, 24, 64, 301] {
            let message: Vec<u8> = (0..size).map(|i| (i * 37 + 5) as u8).collect();
            let mut event = vec![0; text_event_len(size)];
            write_text_event(&mut event, size, |out| out.copy_from_slice(&message));
            let Ok(ServerPacket::Hex(hex)) = parse(&event) else {
                panic!("size {size}: {:?}", String::from_utf8_lossy(&event));
            };
            let spelled: String = message.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, spelled.as_bytes());
            let mut decoded = Vec::new();
            assert!(decode_hex(hex, &mut decoded));
            assert_eq!(decoded, message);
        }
    }

    #[test]
    fn bad_hex_is_refused() {
        let mut out = Vec::new();
        for bad in [b"0".as_slice(), b"0g", b"0A", b"zz00"] {
            assert!(!decode_hex(bad, &mut out), "{bad:?}");
        }
    }
}
