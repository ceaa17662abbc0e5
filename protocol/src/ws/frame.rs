//! The frame header (RFC 6455 §5.2): parsing, the checks a server applies to client frames,
//! and writing.

use super::coding::OpCode;

/// Control frames carry at most this many payload bytes (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: u64 = 125;
/// The longest header: 2 bytes, a 64-bit length and a mask.
pub const MAX_HEADER_LEN: usize = 14;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Last frame of its message.
    pub fin: bool,
    /// The three RSV bits (extensions); 0 without extensions.
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key (client frames must have one).
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
}

/// A frame header that must fail the connection; every variant closes with 1002.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// An opcode RFC 6455 reserves.
    ReservedOpcode,
    /// RSV bits set, but no extension was negotiated.
    ReservedBits,
    /// A client frame without a mask (RFC 6455 §5.1).
    Unmasked,
    /// A control frame with FIN clear (§5.5).
    FragmentedControl,
    /// A control frame with more than 125 payload bytes (§5.5).
    ControlTooLong,
    /// A length in a longer form than needed, or a 64-bit length with its top bit set (§5.2).
    BadLength,
}

impl FrameError {
    /// The close code to fail the connection with.
    pub fn close_code(&self) -> u16 {
        super::coding::close_code::PROTOCOL_ERROR
    }
}

impl FrameHeader {
    /// Parses the header at the start of `buf`: `Ok(None)` until it is complete, then the
    /// header and its length in bytes.
    pub fn parse(buf: &[u8]) -> Result<Option<(Self, usize)>, FrameError> {
        let [b0, b1, rest @ ..] = buf else {
            return Ok(None);
        };
        let opcode = OpCode::from_bits(b0 & 0x0f).ok_or(FrameError::ReservedOpcode)?;
        let masked = b1 & 0x80 != 0;
        let (payload_len, len_bytes) = match b1 & 0x7f {
            126 => {
                let Some(&[hi, lo]) = rest.first_chunk::<2>() else {
                    return Ok(None);
                };
                let len = u64::from(u16::from_be_bytes([hi, lo]));
                // §5.2: "the minimal number of bytes MUST be used to encode the length".
                if len < 126 {
                    return Err(FrameError::BadLength);
                }
                (len, 2)
            }
            127 => {
                let Some(bytes) = rest.first_chunk::<8>() else {
                    return Ok(None);
                };
                let len = u64::from_be_bytes(*bytes);
                if len <= u64::from(u16::MAX) || len >> 63 != 0 {
                    return Err(FrameError::BadLength);
                }
                (len, 8)
            }
            len => (u64::from(len), 0),
        };
        let mut header_len = 2 + len_bytes;
        let mask = if masked {
            let Some(key) = buf[header_len..].first_chunk::<4>() else {
                return Ok(None);
            };
            header_len += 4;
            Some(*key)
        } else {
            None
        };
        let header = Self {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0x07,
            opcode,
            mask,
            payload_len,
        };
        Ok(Some((header, header_len)))
    }

    /// The rules for a frame a client sends to a server without extensions.
    pub fn validate_client(&self) -> Result<(), FrameError> {
        if self.rsv != 0 {
            return Err(FrameError::ReservedBits);
        }
        if self.mask.is_none() {
            return Err(FrameError::Unmasked);
        }
        if self.opcode.is_control() {
            if !self.fin {
                return Err(FrameError::FragmentedControl);
            }
            if self.payload_len > MAX_CONTROL_PAYLOAD {
                return Err(FrameError::ControlTooLong);
            }
        }
        Ok(())
    }

    /// Appends the header in its shortest form.
    pub fn write(&self, out: &mut Vec<u8>) {
        let mut bytes = [0u8; MAX_HEADER_LEN];
        let len = self.encode(&mut bytes);
        out.extend_from_slice(&bytes[..len]);
    }

    /// Encodes the header into `bytes`; returns how many bytes it took.
    pub fn encode(&self, bytes: &mut [u8; MAX_HEADER_LEN]) -> usize {
        bytes[0] = (u8::from(self.fin) << 7) | ((self.rsv & 0x07) << 4) | self.opcode.bits();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut at = 2;
        if self.payload_len < 126 {
            bytes[1] = mask_bit | self.payload_len as u8;
        } else if let Ok(len) = u16::try_from(self.payload_len) {
            bytes[1] = mask_bit | 126;
            bytes[2..4].copy_from_slice(&len.to_be_bytes());
            at = 4;
        } else {
            bytes[1] = mask_bit | 127;
            bytes[2..10].copy_from_slice(&self.payload_len.to_be_bytes());
            at = 10;
        }
        if let Some(key) = self.mask {
            bytes[at..at + 4].copy_from_slice(&key);
            at += 4;
        }
        at
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use proptest::prelude::*;

    fn header(opcode: OpCode, len: u64, mask: Option<[u8; 4]>) -> FrameHeader {
        FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask,
            payload_len: len,
        }
    }

    #[test]
    fn rfc_examples() {
        // RFC 6455 §5.7: a single-frame unmasked text message "Hello".
        let (h, n) = FrameHeader::parse(&[0x81, 0x05, b'H']).unwrap().unwrap();
        assert_eq!(
            (h.fin, h.opcode, h.payload_len, h.mask, n),
            (true, OpCode::Text, 5, None, 2)
        );
        // A masked "Hello".
        let (h, n) = FrameHeader::parse(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d])
            .unwrap()
            .unwrap();
        assert_eq!((h.mask, n), (Some([0x37, 0xfa, 0x21, 0x3d]), 6));
        // 256 bytes binary: 16-bit length; 64 KiB: 64-bit length.
        let (h, n) = FrameHeader::parse(&[0x82, 0x7E, 0x01, 0x00])
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, n), (256, 4));
        let (h, n) = FrameHeader::parse(&[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0])
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, n), (65536, 10));
    }

    #[test]
    fn client_rules() {
        let key = Some([1, 2, 3, 4]);
        assert_eq!(header(OpCode::Text, 1, key).validate_client(), Ok(()));
        assert_eq!(
            header(OpCode::Text, 1, None).validate_client(),
            Err(FrameError::Unmasked)
        );
        let mut rsv = header(OpCode::Text, 1, key);
        rsv.rsv = 4;
        assert_eq!(rsv.validate_client(), Err(FrameError::ReservedBits));
        let mut ping = header(OpCode::Ping, 1, key);
        ping.fin = false;
        assert_eq!(ping.validate_client(), Err(FrameError::FragmentedControl));
        assert_eq!(
            header(OpCode::Close, 126, key).validate_client(),
            Err(FrameError::ControlTooLong)
        );
        assert_eq!(header(OpCode::Pong, 125, key).validate_client(), Ok(()));
        assert_eq!(
            FrameHeader::parse(&[0x83, 0x80]),
            Err(FrameError::ReservedOpcode)
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 0x7E, 0, 5]),
            Err(FrameError::BadLength)
        );
        let mut long = [0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(FrameHeader::parse(&long), Err(FrameError::BadLength));
        long[2] = 0;
        long[8] = 0xff;
        assert_eq!(FrameHeader::parse(&long), Err(FrameError::BadLength));
    }

    #[test]
    fn every_split_point_waits_then_agrees() {
        for h in [
            header(OpCode::Text, 5, Some([9, 8, 7, 6])),
            header(OpCode::Binary, 300, Some([1, 2, 3, 4])),
            header(OpCode::Binary, 70_000, Some([1, 2, 3, 4])),
            header(OpCode::Ping, 0, None),
        ] {
            let mut bytes = Vec::new();
            h.write(&mut bytes);
            let whole = FrameHeader::parse(&bytes).unwrap().unwrap();
            assert_eq!(whole, (h, bytes.len()));
            for cut in 0..bytes.len() {
                assert_eq!(FrameHeader::parse(&bytes[..cut]), Ok(None), "cut at {cut}");
            }
        }
    }

    fn any_opcode() -> impl Strategy<Value = OpCode> {
        prop_oneof![
            Just(OpCode::Continuation),
            Just(OpCode::Text),
            Just(OpCode::Binary),
            Just(OpCode::Close),
            Just(OpCode::Ping),
            Just(OpCode::Pong),
        ]
    }

    proptest! {
        #[test]
        fn write_then_parse_round_trips(
            fin in any::<bool>(),
            rsv in 0u8..8,
            opcode in any_opcode(),
            mask in proptest::option::of(any::<[u8; 4]>()),
            payload_len in prop_oneof![0u64..200, 0u64..70_000, 0u64..(1 << 63)],
        ) {
            let h = FrameHeader { fin, rsv, opcode, mask, payload_len };
            let mut bytes = Vec::new();
            h.write(&mut bytes);
            prop_assert_eq!(FrameHeader::parse(&bytes), Ok(Some((h, bytes.len()))));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
            let _ = FrameHeader::parse(&bytes);
        }
    }
}
