//! RFC 6455 numbers: opcodes (§5.2) and close codes (§7.4).

/// A frame's opcode (RFC 6455 §5.2); reserved values are not representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// `0x0`: continues a fragmented message.
    Continuation,
    /// `0x1`: UTF-8 text.
    Text,
    /// `0x2`: binary data.
    Binary,
    /// `0x8`: close.
    Close,
    /// `0x9`: ping.
    Ping,
    /// `0xA`: pong.
    Pong,
}

impl OpCode {
    /// The opcode of the low nibble `bits`; `None` for the reserved values 3-7 and B-F.
    pub fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    /// The wire value.
    pub fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Close, ping and pong (RFC 6455 §5.5).
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }

    /// Text and binary: the opcodes that start a message.
    pub fn is_data(self) -> bool {
        matches!(self, Self::Text | Self::Binary)
    }
}

/// Close codes the server sends (RFC 6455 §7.4.1).
pub mod close_code {
    /// Normal closure (also the idle timeout).
    pub const NORMAL: u16 = 1000;
    /// The server is going away (drain).
    pub const GOING_AWAY: u16 = 1001;
    /// A protocol violation.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Data of a type the endpoint cannot accept.
    pub const UNSUPPORTED: u16 = 1003;
    /// Data inconsistent with the message type (invalid UTF-8 in text).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A policy violation (rate limits).
    pub const POLICY: u16 = 1008;
    /// A message too big to process.
    pub const TOO_BIG: u16 = 1009;
    /// The server met a condition it could not handle (a handler panicked).
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The server cannot serve the connection right now (a slow subscriber, by choice).
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// Reported, never sent: the peer's close frame carried no code.
    pub const NO_STATUS: u16 = 1005;
    /// Reported, never sent: the connection ended without a close frame.
    pub const ABNORMAL: u16 = 1006;
}

/// Whether a server may send `code`: what a peer may send, and the IANA-registered
/// server-side codes 1012 (restart), 1013 (try again later) and 1014 (bad gateway).
pub fn is_sendable_close_code(code: u16) -> bool {
    is_valid_close_code(code) || matches!(code, 1012..=1014)
}

/// Whether a peer may send `code` in a close frame (RFC 6455 §7.4.1-2): 1000-1003, 1007-1011,
/// and the registered and private ranges 3000-4999. 1004, 1005, 1006 and 1015 are reserved
/// and never go on the wire.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_round_trip_and_reserved_ones_are_refused() {
        for bits in 0..16u8 {
            match OpCode::from_bits(bits) {
                Some(op) => assert_eq!(op.bits(), bits),
                None => assert!(matches!(bits, 3..=7 | 0xB..=0xF)),
            }
        }
    }

    #[test]
    fn close_codes() {
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999,
        ] {
            assert!(is_valid_close_code(ok), "{ok}");
        }
        for bad in [
            0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 2000, 2999, 5000,
        ] {
            assert!(!is_valid_close_code(bad), "{bad}");
        }
        for server_side in [1012, 1013, 1014] {
            assert!(is_sendable_close_code(server_side), "{server_side}");
        }
        for never in [999, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert!(!is_sendable_close_code(never), "{never}");
        }
    }
}
